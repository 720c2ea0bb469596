/**
 * Failures injected into a fleet rollout at a given rate ({@link FaultInjection}): on a share of the hosts, one
 * failure of the host's own kernel during its upgrade — the new module's init fails (`modprobe` is refused), the VM
 * creation of the plan's smoke test on the new module fails, or the n-th vCPU creation of the moves fails (the move
 * rolls back at its restore). Each is a fault of the model's fault injector (`host.faults`), so what follows — the
 * plan's failure rule, the rollout policy's reaction — is the model's own. Which hosts, which failure and which call
 * are drawn from the fleet's seed and the host's id alone, so any worker gives the same outcome.
 *
 * @module
 */
import { UsageError, type Host } from '@vac/core';
import { pick, seededRandom } from './random.js';
import type { FleetHostSpec } from './spec.js';

/** The failures a rollout can inject. */
export const INJECTED_FAULT_KINDS = ['module-init', 'vm-create', 'vcpu-create'] as const;

/** A failure a rollout can inject: see {@link INJECTED_FAULT_KINDS} and the module comment. */
export type InjectedFaultKind = (typeof INJECTED_FAULT_KINDS)[number];

/** How a rollout injects failures. */
export interface FaultInjection {
  /** Share of the hosts that get one failure, in [0, 1]. */
  readonly rate: number;
  /** The failures to draw from. Default all of {@link INJECTED_FAULT_KINDS}. */
  readonly kinds?: readonly InjectedFaultKind[];
}

/** The failure one host gets: its kind and, for `vcpu-create`, which vCPU creation of the moves fails (1-based). */
export interface InjectedFault {
  /** What fails. */
  readonly kind: InjectedFaultKind;
  /** Which call fails (1-based). */
  readonly nth: number;
}

/**
 * Check a {@link FaultInjection}.
 *
 * @throws UsageError for a rate outside [0, 1], an empty or unknown kind list
 */
export function checkFaultInjection(inj: FaultInjection | undefined): void {
  if (inj === undefined) return;
  if (typeof inj.rate !== 'number' || !(inj.rate >= 0 && inj.rate <= 1)) throw new UsageError('ERR_OUT_OF_RANGE', `rollout: injectFaults.rate must be in [0, 1], got ${String(inj.rate)}`);
  const kinds: unknown = inj.kinds ?? INJECTED_FAULT_KINDS;
  if (!Array.isArray(kinds) || kinds.length === 0 || !kinds.every((k) => (INJECTED_FAULT_KINDS as readonly unknown[]).includes(k))) {
    throw new UsageError('ERR_INVALID_ARG', `rollout: injectFaults.kinds must be a non-empty list of ${INJECTED_FAULT_KINDS.join(', ')}`);
  }
}

/** The failure `host` gets under `inj` (`undefined`: none), from the seed and the host's id only. */
export function drawHostFault(seed: number, host: FleetHostSpec, inj: FaultInjection | undefined): InjectedFault | undefined {
  if (inj === undefined || inj.rate === 0) return undefined;
  const r = seededRandom(seed, host.id, 4);
  if (!(r() < inj.rate)) return undefined;
  const kind = pick(r, inj.kinds ?? INJECTED_FAULT_KINDS);
  const vcpus = host.vms.reduce((n, v) => n + v.vcpus, 0);
  return { kind, nth: kind === 'vcpu-create' ? 1 + Math.floor(r() * vcpus) : 1 };
}

/** Arm `fault` on `host` before the upgrade that loads `newModule` (`host.faults`). */
export function armHostFault(host: Host, fault: InjectedFault, newModule: string): void {
  if (fault.kind === 'module-init') host.faults.failModuleInit(newModule, fault.nth);
  else host.faults.failNth(fault.kind === 'vm-create' ? 'vm' : 'vcpu', fault.nth);
}

/** The fault in words (`vcpu-create #3`). */
export function describeFault(fault: InjectedFault): string {
  return fault.kind === 'vcpu-create' ? `${fault.kind} #${fault.nth}` : fault.kind;
}
