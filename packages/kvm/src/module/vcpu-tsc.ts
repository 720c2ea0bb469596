/**
 * The guest TSC (arch/x86/kvm/x86.c): guest TSC = host TSC × ratio + offset (`kvm_read_l1_tsc`), and
 * `kvm_synchronize_tsc`, which gives a new vCPU — or a vCPU whose TSC user space writes close to where the VM's TSC
 * already is — the VM's current offset, so that the vCPUs of a VM count the same TSC.
 *
 * @module
 */
import { hostNs, hostTscAt } from './host-clock.js';
import { vcpuArch, type VcpuArch } from './vcpu-arch.js';
import type { Vcpu } from './vcpu.js';
import { vmArch } from './vm-arch.js';
import { x86Caps } from './x86-caps.js';
import { vendorArch } from './vendor-arch.js';

/** The host TSC at `ns` (now by default) scaled to the vCPU's rate (`kvm_scale_tsc(rdtsc(), l1_tsc_scaling_ratio)`). */
function scaledHostTsc(v: Vcpu, arch: VcpuArch, ns: bigint = hostNs(v.vm.instance.host)): bigint {
  const [num, den] = arch.tscRatio;
  return (hostTscAt(v.vm.instance.host, ns) * BigInt(num)) / BigInt(den);
}

/**
 * The guest TSC now (`kvm_read_l1_tsc(vcpu, rdtsc())`) — for a guest instruction, as far into its run as it is
 * ({@link VcpuArch.runAheadNs}).
 */
export function guestTsc(v: Vcpu, arch: VcpuArch = vcpuArch(v)): bigint {
  return BigInt.asUintN(64, scaledHostTsc(v, arch, hostNs(v.vm.instance.host) + arch.runAheadNs) + arch.tscOffset);
}

/** The guest TSC when the host clock reads `ns` (the LAPIC's TSC-deadline timer converts with it). */
export function guestTscAt(v: Vcpu, ns: bigint): bigint {
  const arch = vcpuArch(v);
  return BigInt.asUintN(64, scaledHostTsc(v, arch, ns) + arch.tscOffset);
}

/**
 * `kvm_synchronize_tsc`: `data` is what user space wrote to IA32_TSC (KVM_SET_MSRS), or `undefined` at vCPU creation
 * (`kvm_arch_vcpu_postcreate`). A creation, a written 0, or a write within one second's worth of cycles of where the
 * VM's TSC is expected to be (once user space has written a TSC) synchronizes: at the same frequency as the last
 * synchronization the vCPU takes the VM's current offset; otherwise the offset that makes the TSC read `data` now
 * becomes the VM's current one.
 */
export function synchronizeTsc(v: Vcpu, data: bigint | undefined): void {
  const arch = vcpuArch(v);
  const vmA = vmArch(v.vm);
  const value = data ?? 0n;
  let offset = BigInt.asUintN(64, value - scaledHostTsc(v, arch)); // kvm_compute_l1_tsc_offset
  const ns = hostNs(v.vm.instance.host);
  const elapsed = ns - vmA.lastTscNsec;
  let synchronizing = false;
  if (arch.tscKhz !== 0) {
    if (value === 0n) synchronizing = true;
    else if (vmA.userSetTsc) {
      const expected = vmA.lastTscWrite + (elapsed * BigInt(arch.tscKhz)) / 1_000_000n; // nsec_to_cycles
      const hz = BigInt(arch.tscKhz) * 1000n;
      synchronizing = value < expected + hz && value + hz > expected;
    }
  }
  if (data !== undefined) vmA.userSetTsc = true;
  const matched = synchronizing && arch.tscKhz === vmA.lastTscKhz;
  if (matched) offset = vmA.curTscOffset;
  applyTscSync(v, offset, value, ns, matched);
}

/**
 * `__kvm_synchronize_tsc`: the vCPU takes `offset`; the VM remembers the synchronization (`tsc` the TSC value it
 * gave, at host `ns`), and an unmatched one starts a new current offset.
 */
function applyTscSync(v: Vcpu, offset: bigint, tsc: bigint, ns: bigint, matched: boolean): void {
  const arch = vcpuArch(v);
  const vmA = vmArch(v.vm);
  arch.tscOffset = offset;
  vmA.lastTscNsec = ns;
  vmA.lastTscWrite = tsc;
  vmA.lastTscKhz = arch.tscKhz;
  vmA.lastTscOffset = offset;
  if (!matched) vmA.curTscOffset = offset;
  arch.clockUpdate ||= arch.pvclock.active;
}

/**
 * KVM_SET_DEVICE_ATTR(KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET) (`kvm_arch_tsc_set_attr`): the vCPU's L1 TSC offset
 * becomes `offset`, a synchronization matched when the VM's last one was at this vCPU's frequency with this offset;
 * the VM's TSC counts as set by user space from then on (`user_set_tsc`).
 */
export function setTscOffset(v: Vcpu, offset: bigint): void {
  const arch = vcpuArch(v);
  const vmA = vmArch(v.vm);
  const matched = arch.tscKhz !== 0 && vmA.lastTscKhz === arch.tscKhz && vmA.lastTscOffset === offset;
  const tsc = BigInt.asUintN(64, scaledHostTsc(v, arch) + offset);
  vmA.userSetTsc = true; // a value from user space, as a host-initiated IA32_TSC write is
  applyTscSync(v, offset, tsc, hostNs(v.vm.instance.host), matched);
}

/** `tsc_tolerance_ppm` (x86.c module parameter, default 250). */
const TSC_TOLERANCE_PPM = 250;

/**
 * `kvm_set_tsc_khz` + `set_tsc_khz`: within `tsc_tolerance_ppm` of the host no scaling; otherwise the hardware ratio
 * (with TSC scaling), or catch-up for a faster guest TSC without it; a slower one without it is refused.
 * @returns false for the refusal (EINVAL)
 */
export function setTscKhz(v: Vcpu, khz: number): boolean {
  const caps = x86Caps(v.vm.instance);
  const arch = vcpuArch(v);
  const host = caps.tscKhz;
  const lo = Math.floor((host * (1_000_000 - TSC_TOLERANCE_PPM)) / 1_000_000);
  const hi = Math.floor((host * (1_000_000 + TSC_TOLERANCE_PPM)) / 1_000_000);
  const scale = khz < lo || khz > hi;
  if (scale && !vendorArch(v.vm.instance).tscControl && khz < host) return false; // "user requested TSC rate below hardware speed"
  // Keep the guest TSC continuous across the rate change.
  const now = guestTsc(v, arch);
  arch.tscKhz = khz;
  arch.tscRatio = scale ? [khz, host] : [1, 1];
  const later = guestTsc(v, arch);
  arch.tscOffset = BigInt.asUintN(64, arch.tscOffset + (now - later));
  arch.clockUpdate ||= arch.pvclock.active;
  return true;
}
