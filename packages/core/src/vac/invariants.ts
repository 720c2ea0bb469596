/**
 * The exported invariant checker (docs/spec.md §4).
 *
 * @module
 */
import type { Violation } from '../hardware.js';
import type { Host } from '../host/host.js';

/**
 * Check the invariants of docs/spec.md §4 on a live host: the hardware's own checks (a CPU with two owners, a
 * VMCS on two CPUs' lists, …) and those of every loaded module that registered a checker (VAC: usage count
 * vs per-CPU state, VPIDs, ASIDs, SEV ASIDs, user-return MSRs; KVM instances: their vCPUs). Returns every
 * violation found; an empty array means the host is consistent.
 */
export function checkInvariants(host: Host): Violation[] {
  const out: Violation[] = [...host.hardware.check()];
  for (const [, check] of host.invariantCheckers()) out.push(...check());
  return out;
}
