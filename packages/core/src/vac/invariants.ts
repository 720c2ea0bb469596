/**
 * The exported invariant checker (docs/spec.md §4).
 *
 * @module
 */
import type { Violation } from '../hardware.js';
import type { Host } from '../host/host.js';
import { ownershipViolations } from '../host/ownership.js';
import { unneededVirtualization } from './virtualization.js';

/**
 * Check the invariants of docs/spec.md §4 on a live host: the hardware's own checks (a CPU with two owners, a
 * VMCS on two CPUs' lists, …), the host's (every module whole, every device and open file owned by a loaded module;
 * virtualization on only where a loaded module enabled it) and those of every loaded module that registered a
 * checker (VAC: usage count vs per-CPU state, VPIDs, ASIDs, SEV ASIDs, user-return MSRs, attached instances; KVM
 * instances: their VMs, vCPUs, memslots and registers). Returns every violation found; an empty array means the host
 * is consistent. Linear in the size of the host.
 */
export function checkInvariants(host: Host): Violation[] {
  const out: Violation[] = [...host.hardware.check(), ...ownershipViolations(host), ...unneededVirtualization(host)];
  for (const [, check] of host.invariantCheckers()) out.push(...check());
  return out;
}
