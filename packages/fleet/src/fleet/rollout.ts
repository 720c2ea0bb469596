/**
 * Rolling an upgrade across a fleet in waves: a canary, then growing shares of the fleet. Each wave's hosts upgrade
 * in parallel (each its own simulated host, run on worker threads); a wave whose failed hosts pass the policy's
 * tolerance stops the rollout — halted as it is, or with the wave's upgraded hosts rolled back — and a wave that
 * passes is committed (each host unloads its old module). Time is simulated: a wave lasts as long as its slowest
 * host, plus the bake time the policy waits before the next.
 *
 * @module
 */
import { UsageError } from '@vac/core';
import { fleetBuild } from './builds.js';
import { checkFaultInjection, drawHostFault, type FaultInjection } from './faults.js';
import type { HostJob, HostOutcome, HostPlanSettings } from './host-job.js';
import { HostPool } from './pool.js';
import { seededRandom } from './random.js';
import { generateFleet, type FleetHostSpec, type FleetSpec } from './spec.js';

/** How the rollout goes. */
export interface RolloutPolicy {
  /** The build the fleet runs. Default `'linux-6.12'`. */
  readonly fromBuild?: string;
  /** The build it rolls out. */
  readonly toBuild: string;
  /** The new module's parameters. */
  readonly toParams?: Readonly<Record<string, string | number | boolean>>;
  /** Hosts in the canary wave. Default 1. */
  readonly canaryHosts?: number;
  /** The waves after the canary, as cumulative percentages of the fleet. Default `[10, 50, 100]`. */
  readonly waves?: readonly number[];
  /** Failed hosts a wave tolerates. Default 0. */
  readonly maxFailedHostsPerWave?: number;
  /** What a failed wave does: `'halt'`, or `'rollback-wave'` (its upgraded hosts go back; default). */
  readonly onWaveFailure?: 'halt' | 'rollback-wave';
  /** Simulated time waited after each wave before judging it and going on, ns. Default 60 s. */
  readonly bakeNs?: number;
  /** Each host's upgrade plan. */
  readonly hostPlan?: HostPlanSettings;
  /** Failures injected into the hosts' upgrades at a rate (see `FaultInjection`). Default none. */
  readonly injectFaults?: FaultInjection;
}

/** Options of {@link runRollout}. */
export interface RolloutOptions {
  /** Worker threads (0: in this thread). Default 0. The report does not depend on it. */
  readonly workers?: number;
}

/** One host in a {@link FleetReport}. */
export interface HostRecord extends Omit<HostOutcome, 'outcome'> {
  /** {@link HostOutcome.outcome}, or `not-reached` for a host of a wave the rollout did not get to. */
  readonly outcome: HostOutcome['outcome'] | 'not-reached';
  /** Its wave (0: the canary), or -1 when the rollout never reached it. */
  readonly wave: number;
  /** When its upgrade started, ns from the rollout's start. */
  readonly startNs: number;
}

/** One wave in a {@link FleetReport}. */
export interface WaveRecord {
  /** `canary`, `10%`, … */
  readonly label: string;
  /** Hosts in it. */
  readonly hosts: number;
  /** Upgraded (and committed). */
  readonly upgraded: number;
  /** Failed. */
  readonly failed: number;
  /** Upgraded, then rolled back with the wave. */
  readonly rolledBack: number;
  /** Start, ns from the rollout's start. */
  readonly startNs: number;
  /** End (after its slowest host, its rollback, and the bake), ns. */
  readonly endNs: number;
  /** `passed`, `halted`, `rolled-back`. */
  readonly verdict: 'passed' | 'halted' | 'rolled-back';
  /** The first failures (at most 3), with their host. */
  readonly failures: readonly string[];
}

/** What {@link runRollout} did. */
export interface FleetReport {
  /** The fleet's seed. */
  readonly seed: number;
  /** From and to. */
  readonly fromBuild: string;
  /** The build rolled out. */
  readonly toBuild: string;
  /** `completed` (every wave passed), `halted`, `rolled-back`. */
  readonly outcome: 'completed' | 'halted' | 'rolled-back';
  /** The hosts, by id. */
  readonly hosts: readonly HostRecord[];
  /** The fleet's make-up. */
  readonly fleet: {
    readonly intel: number;
    readonly amd: number;
    readonly sev: number;
    /** SEV hosts whose VAC mediates moves of encryption contexts (`vac.cross_module_moves=Y`). */
    readonly sevMediated: number;
    readonly vms: number;
    /** SEV guests. */
    readonly sevVms: number;
    readonly vcpus: number;
  };
  /** The waves, in order (those reached). */
  readonly waves: readonly WaveRecord[];
  /** Simulated time of the rollout, ns. */
  readonly durationNs: number;
  /** The rate failures were injected at (`policy.injectFaults.rate`; 0 without). */
  readonly injectedFaultRate: number;
}

/** The hosts in rollout order: a seeded shuffle, so that the canary is not always host 1. */
function rolloutOrder(hosts: readonly FleetHostSpec[], seed: number): FleetHostSpec[] {
  const key = new Map(hosts.map((h) => [h.id, seededRandom(seed, h.id, 2)()]));
  return [...hosts].sort((a, b) => (key.get(a.id) ?? 0) - (key.get(b.id) ?? 0) || a.id - b.id);
}

function checkPolicy(p: RolloutPolicy, n: number): { canary: number; waves: number[]; maxFailed: number; bakeNs: number } {
  fleetBuild(p.toBuild);
  checkFaultInjection(p.injectFaults);
  fleetBuild(p.fromBuild ?? 'linux-6.12');
  const canary = p.canaryHosts ?? 1;
  if (!Number.isSafeInteger(canary) || canary < 0 || canary > n) throw new UsageError('ERR_OUT_OF_RANGE', `rollout: canaryHosts must be an integer in [0, ${n}], got ${String(canary)}`);
  const waves = [...(p.waves ?? [10, 50, 100])];
  if (waves.length === 0 || waves.some((w, i) => !(w > 0 && w <= 100) || (i > 0 && w <= (waves[i - 1] ?? 0))) || waves.at(-1) !== 100) {
    throw new UsageError('ERR_INVALID_ARG', `rollout: waves must be increasing percentages ending at 100, got [${waves.join(', ')}]`);
  }
  const maxFailed = p.maxFailedHostsPerWave ?? 0;
  if (!Number.isSafeInteger(maxFailed) || maxFailed < 0) throw new UsageError('ERR_OUT_OF_RANGE', `rollout: maxFailedHostsPerWave must be a non-negative integer, got ${String(maxFailed)}`);
  const bakeNs = p.bakeNs ?? 60_000_000_000;
  if (!Number.isSafeInteger(bakeNs) || bakeNs < 0) throw new UsageError('ERR_OUT_OF_RANGE', `rollout: bakeNs must be a non-negative integer, got ${String(bakeNs)}`);
  return { canary, waves, maxFailed, bakeNs };
}

/**
 * Roll `policy.toBuild` across the fleet `fleet` describes (see the module comment).
 *
 * @throws UsageError for a malformed fleet or policy (nothing is run)
 */
export async function runRollout(fleet: FleetSpec, policy: RolloutPolicy, options: RolloutOptions = {}): Promise<FleetReport> {
  const specs = generateFleet(fleet);
  const { canary, waves, maxFailed, bakeNs } = checkPolicy(policy, specs.length);
  const fromBuild = policy.fromBuild ?? 'linux-6.12';
  const order = rolloutOrder(specs, fleet.seed);
  const groups: Array<{ label: string; hosts: FleetHostSpec[] }> = [];
  if (canary > 0) groups.push({ label: 'canary', hosts: order.slice(0, canary) });
  let done = canary;
  for (const w of waves) {
    const upTo = Math.max(done, Math.ceil((w / 100) * order.length));
    if (upTo > done) groups.push({ label: `${w}%`, hosts: order.slice(done, upTo) });
    done = upTo;
  }
  const job = (h: FleetHostSpec, finalize: HostJob['finalize']): HostJob => {
    const fault = drawHostFault(fleet.seed, h, policy.injectFaults);
    return {
      host: h,
      seed: fleet.seed,
      fromBuild,
      toBuild: policy.toBuild,
      ...(policy.toParams === undefined ? {} : { toParams: policy.toParams }),
      plan: policy.hostPlan ?? {},
      finalize,
      ...(fault === undefined ? {} : { fault }),
    };
  };
  const records = new Map<number, HostRecord>();
  const waveRecords: WaveRecord[] = [];
  const pool = new HostPool(options.workers ?? 0);
  let now = 0;
  let outcome: FleetReport['outcome'] = 'completed';
  try {
    for (const [w, g] of groups.entries()) {
      const first = await pool.run(g.hosts.map((h) => job(h, 'commit')));
      const failed = first.filter((o) => o.outcome === 'failed');
      let results = first;
      let verdict: WaveRecord['verdict'] = 'passed';
      if (failed.length > maxFailed) {
        verdict = policy.onWaveFailure === 'halt' ? 'halted' : 'rolled-back';
        if (verdict === 'rolled-back') {
          // The upgraded hosts of the wave run again with a rollback at the end (the same job gives the same upgrade).
          const again = await pool.run(g.hosts.filter((_, i) => first[i]?.outcome === 'upgraded').map((h) => job(h, 'rollback')));
          let k = 0;
          results = first.map((o) => (o.outcome === 'upgraded' ? (again[k++] as HostOutcome) : o));
        }
      }
      let longest = 0; // a loop, not Math.max(...): a wave of a large fleet has more hosts than a call has arguments
      for (const o of results) longest = Math.max(longest, o.upgradeNs + o.rollbackNs);
      const end = now + longest;
      results.forEach((o) => records.set(o.id, { ...o, wave: w, startNs: now }));
      waveRecords.push({
        label: g.label,
        hosts: g.hosts.length,
        upgraded: results.filter((o) => o.outcome === 'upgraded').length,
        failed: results.filter((o) => o.outcome === 'failed').length,
        rolledBack: results.filter((o) => o.outcome === 'rolled-back').length,
        startNs: now,
        endNs: end + bakeNs,
        verdict,
        failures: failed.slice(0, 3).map((o) => `${specs[o.id]?.name ?? o.id}: ${o.failure ?? 'failed'}`),
      });
      now = end + bakeNs;
      if (verdict !== 'passed') {
        outcome = verdict;
        break;
      }
    }
  } finally {
    await pool.close();
  }
  const hosts: HostRecord[] = specs.map(
    (h) =>
      records.get(h.id) ?? {
        id: h.id,
        outcome: 'not-reached',
        vms: h.vms.length,
        moves: 0,
        failedMoves: 0,
        blackoutsNs: [],
        moveIoctls: 0,
        upgradeNs: 0,
        rollbackNs: 0,
        mappedBytes: 0,
        sevVms: h.vms.filter((v) => v.sev).length,
        sevStayed: 0,
        oldModuleKept: false,
        wave: -1,
        startNs: 0,
      },
  );
  return {
    seed: fleet.seed,
    fromBuild,
    toBuild: policy.toBuild,
    outcome,
    hosts,
    fleet: {
      intel: specs.filter((h) => h.vendor === 'intel').length,
      amd: specs.filter((h) => h.vendor === 'amd').length,
      sev: specs.filter((h) => h.sev).length,
      sevMediated: specs.filter((h) => h.vacMediates).length,
      vms: specs.reduce((a, h) => a + h.vms.length, 0),
      sevVms: specs.reduce((a, h) => a + h.vms.filter((v) => v.sev).length, 0),
      vcpus: specs.reduce((a, h) => a + h.vms.reduce((b, v) => b + v.vcpus, 0), 0),
    },
    waves: waveRecords,
    durationNs: now,
    injectedFaultRate: policy.injectFaults?.rate ?? 0,
  };
}
