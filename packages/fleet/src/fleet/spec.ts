/**
 * What a fleet is: hosts of different vendors, SEV, CPU counts and VM loads, drawn from a seed
 * ({@link generateFleet}), so that the same seed gives the same fleet everywhere.
 *
 * @module
 */
import { UsageError } from '@vac/core';
import { pick, seededRandom } from './random.js';

/** One VM of a fleet host. */
export interface FleetVmSpec {
  /** vCPUs. */
  readonly vcpus: number;
  /** Whether its guest enabled interrupt-based async page faults (MSR_KVM_ASYNC_PF_INT holds a vector). */
  readonly asyncPfInt: boolean;
  /** Whether it is an SEV guest (on an SEV host only): its memory is encrypted, so it moves only if VAC mediates. */
  readonly sev: boolean;
}

/** One host of a fleet. */
export interface FleetHostSpec {
  /** Its index in the fleet (0, 1, …). */
  readonly id: number;
  /** `host0001`, … */
  readonly name: string;
  /** The hardware vendor. */
  readonly vendor: 'intel' | 'amd';
  /** An AMD host with SEV enabled. */
  readonly sev: boolean;
  /**
   * An SEV host whose VAC hands encryption contexts between modules (`vac.cross_module_moves=Y`, beyond the RFC):
   * its SEV guests move with the others. Without it they stay on the old module, which then stays loaded.
   */
  readonly vacMediates: boolean;
  /** Its CPUs. */
  readonly cpus: number;
  /** Its VMs. */
  readonly vms: readonly FleetVmSpec[];
}

/** How to draw a fleet. */
export interface FleetSpec {
  /** The seed. */
  readonly seed: number;
  /** How many hosts. */
  readonly hosts: number;
  /** Share of AMD hosts (the rest are Intel). Default 0.4. */
  readonly amdShare?: number;
  /** Share of AMD hosts with SEV. Default 0.5. */
  readonly sevShare?: number;
  /** CPU counts to draw from. Default `[16, 32, 64]`. */
  readonly cpus?: readonly number[];
  /** VMs per host, `[min, max]`. Default `[8, 24]`. */
  readonly vmsPerHost?: readonly [number, number];
  /** vCPU counts to draw from. Default `[1, 2, 4]`. */
  readonly vcpus?: readonly number[];
  /** Share of VMs whose guest uses interrupt-based async page faults. Default 0.3. */
  readonly asyncPfIntShare?: number;
  /** Share of the VMs of an SEV host that are SEV guests. Default 0.5. */
  readonly sevVmShare?: number;
  /** Share of SEV hosts whose VAC mediates moves of encryption contexts (`vac.cross_module_moves=Y`). Default 0 (the RFC). */
  readonly vacMediatedShare?: number;
}

function share(v: number | undefined, dflt: number, what: string): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !(x >= 0 && x <= 1)) throw new UsageError('ERR_OUT_OF_RANGE', `fleet: ${what} must be in [0, 1], got ${String(x)}`);
  return x;
}

function counts(v: readonly number[] | undefined, dflt: readonly number[], what: string): readonly number[] {
  const x: unknown = v ?? dflt;
  if (!Array.isArray(x) || x.length === 0 || !x.every((n) => Number.isSafeInteger(n) && (n as number) >= 1)) throw new UsageError('ERR_INVALID_ARG', `fleet: ${what} must be a non-empty list of positive integers`);
  return v ?? dflt;
}

/**
 * The hosts of a fleet, drawn from `spec.seed`: host `i` depends only on the seed and `i`.
 *
 * @throws UsageError for a share outside [0, 1], a count that is not a positive integer
 */
export function generateFleet(spec: FleetSpec): FleetHostSpec[] {
  if (!Number.isSafeInteger(spec.hosts) || spec.hosts < 1) throw new UsageError('ERR_OUT_OF_RANGE', `fleet: hosts must be a positive integer, got ${String(spec.hosts)}`);
  if (!Number.isSafeInteger(spec.seed)) throw new UsageError('ERR_INVALID_ARG', `fleet: seed must be an integer, got ${String(spec.seed)}`);
  const amdShare = share(spec.amdShare, 0.4, 'amdShare');
  const sevShare = share(spec.sevShare, 0.5, 'sevShare');
  const apf = share(spec.asyncPfIntShare, 0.3, 'asyncPfIntShare');
  const sevVms = share(spec.sevVmShare, 0.5, 'sevVmShare');
  const mediated = share(spec.vacMediatedShare, 0, 'vacMediatedShare');
  const cpus = counts(spec.cpus, [16, 32, 64], 'cpus');
  const vcpus = counts(spec.vcpus, [1, 2, 4], 'vcpus');
  const [lo, hi] = spec.vmsPerHost ?? [8, 24];
  if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || lo < 1 || hi < lo) throw new UsageError('ERR_OUT_OF_RANGE', `fleet: vmsPerHost must be [min, max] with 1 <= min <= max, got [${String(lo)}, ${String(hi)}]`);
  return Array.from({ length: spec.hosts }, (_, id) => {
    const r = seededRandom(spec.seed, id);
    const vendor = r() < amdShare ? 'amd' : 'intel';
    const sev = vendor === 'amd' && r() < sevShare;
    const n = lo + Math.floor(r() * (hi - lo + 1));
    // SEV guests and VAC's mediation come from a stream of their own, so the rest of the draw is as before them.
    const rs = seededRandom(spec.seed, id, 3);
    const vacMediates = sev && rs() < mediated;
    return {
      id,
      name: `host${String(id + 1).padStart(Math.max(4, String(spec.hosts).length), '0')}`,
      vendor,
      sev,
      vacMediates,
      cpus: pick(r, cpus),
      vms: Array.from({ length: n }, () => ({ vcpus: pick(r, vcpus), asyncPfInt: r() < apf, sev: sev && rs() < sevVms })),
    };
  });
}
