/**
 * The TSC a vCPU counts, from the host's simulated clock (`host.clock`, @vac/core): the host TSC runs at
 * {@link HOST_TSC_KHZ} from boot, and a vCPU's TSC is that plus the offset a `wrmsr(IA32_TSC)` set
 * (`VcpuPlatform`). One clock: the guest's `rdtsc`, the LAPIC timer's TSC-deadline mode and the PIT all count the
 * same nanoseconds.
 *
 * @module
 */

/** The host TSC frequency in kHz (2 GHz), until the TSC-frequency ioctls give a vCPU its own. */
export const HOST_TSC_KHZ = 2_000_000;

/** Host TSC cycles at `ns` nanoseconds since boot. */
export function hostTscAt(ns: bigint): bigint {
  return (ns * BigInt(HOST_TSC_KHZ)) / 1_000_000n;
}
