/**
 * The bridge's warm-up: the model's code for the calls a live migration's downtime makes, run on a scratch host
 * when the bridge starts, so that V8 has compiled it before a VMM needs it.
 *
 * V8 compiles a function the first time it is called (parsing it, generating its bytecode) and runs it in its
 * interpreter until it has been called often enough for a compiler tier. Most of a migration's downtime calls are
 * ones a VMM makes once per migration — the vCPU's state (`KVM_GET_MSRS`, `KVM_GET_SREGS2`, `KVM_GET_XSAVE2`,
 * `KVM_GET_VCPU_EVENTS`, …) on the source, the same `KVM_SET_*` and `KVM_SET_IRQCHIP` on the destination — so in a
 * fresh bridge each costs the compilation of every model function on its path, 100–900 µs of the bridge's CPU
 * (`bench/bridge-replay.ts`), in the few milliseconds the guest is stopped. The warm-up makes those calls, with
 * arguments laid out as the bridge passes them (the argument's bytes), on a host of its own: one VM of the served
 * host's hardware model with an in-kernel irqchip and PIT, a memslot logging dirty pages with
 * `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`, and a vCPU. That host is then dropped: the served host, its processes, its
 * events and its answers are untouched (nothing of the warm-up's host is reachable from it).
 *
 * @module
 */
import { createHost, O_RDWR, type HardwareModel, type Process } from '@vac/core';
import {
  _IOC_SIZE,
  KVM_CAP_ADJUST_CLOCK,
  KVM_CAP_GET_TSC_KHZ,
  KVM_CAP_KVMCLOCK_CTRL,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CAP_TSC_CONTROL,
  KVM_CHECK_EXTENSION,
  KVM_CLEAR_DIRTY_LOG,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_ENABLE_CAP,
  KVM_GET_CLOCK,
  KVM_GET_DEBUGREGS,
  KVM_GET_DIRTY_LOG,
  KVM_GET_IRQCHIP,
  KVM_GET_LAPIC,
  KVM_GET_MP_STATE,
  KVM_GET_MSR_INDEX_LIST,
  KVM_GET_MSRS,
  KVM_GET_PIT2,
  KVM_GET_REGS,
  KVM_GET_SREGS2,
  KVM_GET_TSC_KHZ,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_XCRS,
  KVM_GET_XSAVE2,
  KVM_KVMCLOCK_CTRL,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_SET_CLOCK,
  KVM_SET_DEBUGREGS,
  KVM_SET_IRQCHIP,
  KVM_SET_LAPIC,
  KVM_SET_MP_STATE,
  KVM_SET_MSRS,
  KVM_SET_PIT2,
  KVM_SET_REGS,
  KVM_SET_SREGS2,
  KVM_SET_TSC_KHZ,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_VCPU_EVENTS,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
  ioctlName,
  kvm,
} from '@vac/kvm';

/** How many times the warm-up makes each call (enough for V8's baseline compiler to take most of the functions). */
export const WARM_UP_ROUNDS = 12;

/** The most MSRs one warm-up `KVM_GET_MSRS` reads (QEMU's list is about 40). */
const MAX_MSRS = 64;
/** `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`. */
const MANUAL_PROTECT_ENABLE = 1;
/** `KVM_PIT_SPEAKER_DUMMY`, as QEMU creates its PIT. */
const PIT_SPEAKER_DUMMY = 1;
const PAGE = 4096;
/** The capabilities a migration's QEMU checks while the guest is stopped. */
const CAPS = [KVM_CAP_KVMCLOCK_CTRL, KVM_CAP_ADJUST_CLOCK, KVM_CAP_GET_TSC_KHZ, KVM_CAP_TSC_CONTROL] as const;
/** The warm-up's guest RAM: 64 pages at guest-physical 0, one slot. */
const RAM = 64 * PAGE;

function bytesOf(size: number, fill: (v: DataView) => void = () => {}): Uint8Array {
  const out = new Uint8Array(size);
  fill(new DataView(out.buffer));
  return out;
}

/** What a warm-up did. */
export interface WarmUpReport {
  /** Milliseconds it took (wall time). */
  readonly ms: number;
  /** The ioctls it made. */
  readonly calls: number;
  /** The requests the model refused at least once (`KVM_KVMCLOCK_CTRL`: the scratch guest has no kvmclock), by name. */
  readonly refused: readonly string[];
}

/** Makes the warm-up's calls and counts them; a refusal is the model's answer, and its path is compiled too. */
class Caller {
  calls = 0;
  readonly refused = new Set<string>();
  readonly #p: Process;

  constructor(p: Process) {
    this.#p = p;
  }

  call(fd: number, request: number, arg: unknown): number {
    this.calls++;
    try {
      return this.#p.ioctl(fd, request, arg);
    } catch {
      this.refused.add(ioctlName(request));
      return -1;
    }
  }
}

/** Run the downtime's calls {@link WARM_UP_ROUNDS} times on a scratch host of `hardware` (module notes). */
export function warmUp(hardware: HardwareModel, rounds = WARM_UP_ROUNDS): WarmUpReport {
  const t0 = performance.now();
  const host = createHost({ cpus: 1, hardware });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ name: 'warm-up' });
  const c = new Caller(p);
  try {
    const sys = p.open('/dev/kvm0', O_RDWR);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
    p.ioctl(vm, KVM_CREATE_PIT2, bytesOf(_IOC_SIZE(KVM_CREATE_PIT2), (v) => v.setUint32(0, PIT_SPEAKER_DUMMY, true)));
    p.ioctl(vm, KVM_ENABLE_CAP, bytesOf(_IOC_SIZE(KVM_ENABLE_CAP), (v) => {
      v.setUint32(0, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, true);
      v.setBigUint64(8, BigInt(MANUAL_PROTECT_ENABLE), true);
    }));
    const ram = p.mmapAnonymous(RAM);
    const bitmap = p.mmapAnonymous(PAGE);
    const region = (flags: number): Uint8Array =>
      bytesOf(_IOC_SIZE(KVM_SET_USER_MEMORY_REGION), (v) => {
        v.setUint32(4, flags, true);
        v.setBigUint64(16, BigInt(RAM), true);
        v.setBigUint64(24, BigInt(ram.addr), true);
      });
    p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region(0));
    const vcpu = p.ioctl(vm, KVM_CREATE_VCPU, 0);
    p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region(KVM_MEM_LOG_DIRTY_PAGES));
    // The MSRs the host lists (the first MAX_MSRS of them), as a VMM reads and writes them back.
    const list = bytesOf(4 + 4 * 512, (v) => v.setUint32(0, 512, true));
    c.call(sys, KVM_GET_MSR_INDEX_LIST, list);
    const listed = new DataView(list.buffer);
    const n = Math.min(listed.getUint32(0, true), MAX_MSRS);
    const msrs = bytesOf(8 + 16 * n, (v) => {
      v.setUint32(0, n, true);
      for (let i = 0; i < n; i++) v.setUint32(8 + 16 * i, listed.getUint32(4 + 4 * i, true), true);
    });
    const dirtyLog = bytesOf(_IOC_SIZE(KVM_GET_DIRTY_LOG), (v) => v.setBigUint64(8, BigInt(bitmap.addr), true));
    const clearLog = bytesOf(_IOC_SIZE(KVM_CLEAR_DIRTY_LOG), (v) => {
      v.setUint32(4, RAM / PAGE, true);
      v.setBigUint64(16, BigInt(bitmap.addr), true);
    });
    const vmState = [KVM_GET_PIT2, KVM_GET_CLOCK] as const;
    const vcpuState = [KVM_GET_VCPU_EVENTS, KVM_GET_MP_STATE, KVM_GET_REGS, KVM_GET_XSAVE2, KVM_GET_XCRS, KVM_GET_SREGS2, KVM_GET_LAPIC, KVM_GET_DEBUGREGS] as const;
    const setOf = new Map<number, number>([
      [KVM_GET_PIT2, KVM_SET_PIT2],
      [KVM_GET_CLOCK, KVM_SET_CLOCK],
      [KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS],
      [KVM_GET_MP_STATE, KVM_SET_MP_STATE],
      [KVM_GET_REGS, KVM_SET_REGS],
      [KVM_GET_XSAVE2, KVM_SET_XSAVE],
      [KVM_GET_XCRS, KVM_SET_XCRS],
      [KVM_GET_SREGS2, KVM_SET_SREGS2],
      [KVM_GET_LAPIC, KVM_SET_LAPIC],
      [KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS],
    ]);
    for (let r = 0; r < rounds; r++) {
      // The source: the stop's notifiers, the vCPU's state, a dirty-bitmap sync, the devices.
      const got = new Map<number, Uint8Array>();
      for (const req of vmState) {
        const arg = new Uint8Array(_IOC_SIZE(req));
        c.call(vm, req, arg);
        got.set(req, arg);
      }
      // QEMU asks both the system fd (kvm_check_extension) and the VM fd (kvm_vm_check_extension).
      for (const fd of [sys, vm]) for (const cap of CAPS) c.call(fd, KVM_CHECK_EXTENSION, cap);
      for (const req of vcpuState) {
        const arg = new Uint8Array(_IOC_SIZE(req));
        c.call(vcpu, req, arg);
        got.set(req, arg);
      }
      const msrValues = new Uint8Array(msrs);
      c.call(vcpu, KVM_GET_MSRS, msrValues);
      c.call(vm, KVM_GET_DIRTY_LOG, new Uint8Array(dirtyLog));
      c.call(vm, KVM_CLEAR_DIRTY_LOG, new Uint8Array(clearLog));
      const chips: Uint8Array[] = [];
      for (let chip = 0; chip < 3; chip++) {
        const arg = bytesOf(_IOC_SIZE(KVM_GET_IRQCHIP), (v) => v.setUint32(0, chip, true));
        c.call(vm, KVM_GET_IRQCHIP, arg);
        chips.push(arg);
      }
      // The destination: the same state written back.
      c.call(vcpu, KVM_SET_MSRS, msrValues);
      for (const chip of chips) c.call(vm, KVM_SET_IRQCHIP, new Uint8Array(chip));
      const khz = c.call(vcpu, KVM_GET_TSC_KHZ, 0);
      if (khz > 0) c.call(vcpu, KVM_SET_TSC_KHZ, khz);
      // QEMU writes kvmclock back with no flags (`kvm_clock_data.flags` at offset 8).
      new DataView((got.get(KVM_GET_CLOCK) as Uint8Array).buffer).setUint32(8, 0, true);
      for (const [get, bytes] of got) c.call(get === KVM_GET_PIT2 || get === KVM_GET_CLOCK ? vm : vcpu, setOf.get(get) as number, new Uint8Array(bytes));
      c.call(vcpu, KVM_KVMCLOCK_CTRL, 0);
    }
  } finally {
    p.kill();
  }
  return { ms: performance.now() - t0, calls: c.calls, refused: [...c.refused] };
}
