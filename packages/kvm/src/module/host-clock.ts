/**
 * The host's time as KVM sees it: nanoseconds since boot (`get_kvmclock_base_ns`, `ktime_get_boottime_ns`), the
 * wall clock (`ktime_get_real_ns`), the host TSC (`rdtsc`) and its frequency (`tsc_khz`).
 *
 * The simulated host has no wall-clock time: its clock is `host.clock` (@vac/core's simulated nanosecond clock, moved
 * by guest instructions, scheduler ticks and jumps to the next timer deadline). Boot is 0, and the wall clock starts
 * at the Unix epoch at boot. The TSC runs at the frequency the boot CPU's CPUID gives (leaf 0x16 EAX, the base
 * frequency in MHz; leaf 0x15, the TSC/crystal ratio) or, when the hardware model gives none, {@link DEFAULT_TSC_KHZ}
 * (docs/fidelity.md). The guest's `rdtsc`, its kvmclock, the LAPIC timer and the PIT all count this one clock.
 * Everything is deterministic: the same run gives the same clocks.
 *
 * @module
 */
import type { Host } from '@vac/core';

/** The TSC frequency of a hardware model whose CPUID does not give one (kHz). */
export const DEFAULT_TSC_KHZ = 2_000_000;

/** `ktime_get_boottime_ns()`: host nanoseconds since boot. */
export function hostNs(host: Host): bigint {
  return host.clock.now;
}

/** `ktime_get_real_ns()`: the host wall clock (the epoch at boot). */
export function hostRealtimeNs(host: Host): bigint {
  return hostNs(host);
}

/** `tsc_khz`: the host TSC frequency, from the boot CPU's CPUID 0x15/0x16. */
export function hostTscKhz(host: Host): number {
  const boot = host.cpus[0];
  if (boot === undefined) return DEFAULT_TSC_KHZ;
  const max = boot.readCpuid(0).eax >>> 0;
  if (max >= 0x15) {
    // CPUID 0x15: TSC = crystal (ECX Hz) × EBX / EAX.
    const l = boot.readCpuid(0x15);
    if (l.eax !== 0 && l.ebx !== 0 && l.ecx !== 0) return Math.floor(((l.ecx >>> 0) * (l.ebx >>> 0)) / (l.eax >>> 0) / 1000);
  }
  if (max >= 0x16) {
    const base = boot.readCpuid(0x16).eax & 0xffff; // MHz
    if (base !== 0) return base * 1000;
  }
  return DEFAULT_TSC_KHZ;
}

/** `rdtsc()` on the host: cycles since boot at {@link hostTscKhz}. */
export function hostTsc(host: Host): bigint {
  return hostTscAt(host, hostNs(host));
}

/** The host TSC at `ns` nanoseconds since boot. */
export function hostTscAt(host: Host, ns: bigint): bigint {
  return (ns * BigInt(hostTscKhz(host))) / 1_000_000n;
}
