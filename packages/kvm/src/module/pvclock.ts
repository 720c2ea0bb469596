/**
 * kvmclock (arch/x86/kvm/x86.c `kvm_guest_time_update`, `kvm_setup_guest_pvclock`, `kvm_write_wall_clock`,
 * `kvm_get_time_scale`, `get_kvmclock`): the VM's clock in nanoseconds, and the structures KVM writes into guest
 * memory for a guest that enabled MSR_KVM_SYSTEM_TIME(_NEW) / MSR_KVM_WALL_CLOCK(_NEW).
 *
 * The model's host has a stable TSC, so the master clock is in use: KVM_GET_CLOCK reports
 * `KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC` and the pvclock has `PVCLOCK_TSC_STABLE_BIT`.
 *
 * @module
 */
import { hostNs, hostRealtimeNs } from './host-clock.js';
import { vcpuArch } from './vcpu-arch.js';
import { guestTsc } from './vcpu-tsc.js';
import type { Vcpu } from './vcpu.js';
import { vmArch } from './vm-arch.js';
import type { Vm } from './vm.js';

/** `PVCLOCK_TSC_STABLE_BIT`. */
const PVCLOCK_TSC_STABLE_BIT = 1;
/** `PVCLOCK_GUEST_STOPPED`. */
const PVCLOCK_GUEST_STOPPED = 2;

/** `get_kvmclock_ns`: the VM's kvmclock now. */
export function kvmclockNs(vm: Vm): bigint {
  return BigInt.asUintN(64, hostNs(vm.instance.host) + vmArch(vm).kvmclockOffset);
}

/** `kvm_get_time_scale(scaled_hz, base_hz)`: shift and 32.32 multiplier turning base ticks into scaled ones. */
export function timeScale(scaledHz: bigint, baseHz: bigint): { shift: number; mul: number } {
  let tps64 = baseHz;
  let scaled64 = scaledHz;
  let shift = 0;
  while (tps64 > scaled64 * 2n || (tps64 & 0xffff_ffff_0000_0000n) !== 0n) {
    tps64 >>= 1n;
    shift--;
  }
  let tps32 = tps64 & 0xffff_ffffn;
  while (tps32 <= scaled64 || (scaled64 & 0xffff_ffff_0000_0000n) !== 0n) {
    if ((scaled64 & 0xffff_ffff_0000_0000n) !== 0n || (tps32 & 0x8000_0000n) !== 0n) scaled64 >>= 1n;
    else tps32 <<= 1n;
    shift++;
  }
  return { shift, mul: Number((scaled64 << 32n) / tps32) };
}

/** Write `bytes` at guest-physical `gpa` through the VM's memory slots; false when some byte is not RAM. */
function writeGuest(vm: Vm, gpa: bigint, bytes: Uint8Array): boolean {
  if (gpa + BigInt(bytes.length) > BigInt(Number.MAX_SAFE_INTEGER)) return false;
  const base = Number(gpa);
  for (let i = 0; i < bytes.length; i++) if (!vm.guestMemory.write8(base + i, bytes[i] as number)) return false;
  return true;
}

/** Read a little-endian u32 at `gpa`, or `undefined` when it is not RAM. */
function readGuestU32(vm: Vm, gpa: bigint): number | undefined {
  if (gpa + 4n > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  let v = 0;
  for (let i = 0; i < 4; i++) {
    const b = vm.guestMemory.read8(Number(gpa) + i);
    if (b < 0) return undefined;
    v += b * 2 ** (8 * i);
  }
  return v;
}

/** `kvm_write_wall_clock`: the VM's boot time (`pvclock_wall_clock`) at `gpa`, with the version protocol. */
export function writeWallClock(v: Vcpu, gpa: bigint): void {
  const vm = v.vm;
  if (gpa === 0n) return;
  let version = readGuestU32(vm, gpa);
  if (version === undefined) return;
  if ((version & 1) !== 0) version++; // first write: random junk
  version = (version + 1) >>> 0;
  const epoch = hostRealtimeNs(vm.instance.host) - kvmclockNs(vm); // kvm_get_wall_clock_epoch
  const wc = new Uint8Array(12);
  const dv = new DataView(wc.buffer);
  dv.setUint32(0, version, true);
  dv.setUint32(4, Number((epoch / 1_000_000_000n) & 0xffff_ffffn), true);
  dv.setUint32(8, Number(epoch % 1_000_000_000n), true);
  if (!writeGuest(vm, gpa, wc)) return;
  dv.setUint32(0, (version + 1) >>> 0, true);
  writeGuest(vm, gpa, wc.subarray(0, 4));
}

/**
 * `kvm_guest_time_update` → `kvm_setup_guest_pvclock`: write the vCPU's `pvclock_vcpu_time_info` (32 bytes) at the
 * GPA of MSR_KVM_SYSTEM_TIME(_NEW): version (odd while written, then even), TSC timestamp, system time, the
 * TSC-to-ns scale, flags (TSC stable; guest stopped after KVM_KVMCLOCK_CTRL).
 */
export function updateGuestPvclock(v: Vcpu): void {
  const arch = vcpuArch(v);
  const pv = arch.pvclock;
  arch.clockUpdate = false;
  if (!pv.active) return;
  const gpa = pv.msr & ~1n;
  const scale = timeScale(1_000_000_000n, BigInt(arch.tscKhz) * 1000n);
  const info = new Uint8Array(32);
  const dv = new DataView(info.buffer);
  pv.version = ((pv.version + 1) | 1) >>> 0;
  dv.setUint32(0, pv.version, true);
  dv.setBigUint64(8, guestTsc(v, arch), true);
  dv.setBigUint64(16, kvmclockNs(v.vm), true);
  dv.setUint32(24, scale.mul >>> 0, true);
  dv.setInt8(28, scale.shift);
  let flags = PVCLOCK_TSC_STABLE_BIT;
  if (pv.stoppedRequest) flags |= PVCLOCK_GUEST_STOPPED;
  pv.stoppedRequest = false;
  dv.setUint8(29, flags);
  if (!writeGuest(v.vm, gpa, info)) return;
  pv.version = (pv.version + 1) >>> 0;
  dv.setUint32(0, pv.version, true);
  writeGuest(v.vm, gpa, info.subarray(0, 4));
}
