/**
 * A small VMM helper: the handful of /dev/kvm calls every minimal VMM makes to run real-mode code, through the
 * public ABI only (`open`, `ioctl`, `mmap` on a {@link Process}). This is user-space code, a convenience for
 * VMM authors and tests; it does nothing a C VMM could not do, and it never reaches into the module.
 *
 * Failures are not wrapped: a failing syscall's `KernelError` propagates as thrown, with its errno
 * (`EBUSY`, `ENOMEM`, …). As in C, fds opened before the failure stay open in the process; its exit (or
 * `kill`) releases them.
 *
 * @module
 */
import { O_RDWR, UsageError, isKernelError, type Mapping, type Process } from '@vac/core';
import {
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_CAP_SREGS2,
  KVM_CAP_NESTED_STATE,
  KVM_CAP_XCRS,
  KVM_CAP_XSAVE2,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  KVM_ENABLE_CAP,
  KVM_GET_IRQCHIP,
  KVM_GET_LAPIC,
  KVM_GET_PIT2,
  KVM_IRQCHIP_IOAPIC,
  KVM_IRQCHIP_PIC_MASTER,
  KVM_IRQCHIP_PIC_SLAVE,
  KVM_REINJECT_CONTROL,
  KVM_SET_GSI_ROUTING,
  KVM_SET_IRQCHIP,
  KVM_SET_LAPIC,
  KVM_SET_PIT2,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_CLOCK,
  KVM_GET_CPUID2,
  KVM_GET_DEBUGREGS,
  KVM_GET_MP_STATE,
  KVM_GET_NESTED_STATE,
  KVM_GET_MSRS,
  KVM_GET_MSR_INDEX_LIST,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_SREGS2,
  KVM_GET_TSC_KHZ,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_GET_XCRS,
  KVM_GET_XSAVE,
  KVM_GET_XSAVE2,
  KVM_RUN,
  KVM_SET_CLOCK,
  KVM_SET_CPUID2,
  KVM_SET_DEBUGREGS,
  KVM_SET_MP_STATE,
  KVM_SET_NESTED_STATE,
  KVM_SET_MSRS,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_SREGS2,
  KVM_SET_TSC_KHZ,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_VCPU_EVENTS,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
  KVM_X86_SETUP_MCE,
} from './abi/constants.js';
import { KvmRunView } from './abi/kvm-run.js';
import { KVM_NESTED_STATE_CODEC, type kvm_nested_state } from './abi/structs-nested.js';
import type { StructCodec } from './abi/codec.js';
import { argBytes, flexArg, structArg } from './vmm-args.js';
import { decodeKvmIrqchip } from './irqchip/state/irqchip-state.js';
import {
  KVM_IRQCHIP_CODEC,
  KVM_PIT_STATE2_CODEC,
  makeKvmIrqRouting,
  makeKvmLapicState,
  type kvm_ioapic_state,
  type kvm_irqchip,
  type kvm_irq_routing_entry,
  type kvm_pic_state,
  type kvm_pit_state2,
} from './abi/structs-irq.js';
import { makeKvmEnableCap } from './abi/structs.js';
import { KVM_CPUID_ENTRY2_CODEC, KVM_REGS_CODEC, KVM_SREGS_CODEC, makeKvmRegs, makeKvmSregs, type kvm_cpuid_entry2, type kvm_msr_entry, type kvm_regs, type kvm_sregs, type kvm_userspace_memory_region } from './abi/structs.js';
import {
  KVM_CPUID2_CODEC,
  KVM_DEBUGREGS_CODEC,
  KVM_MP_STATE_CODEC,
  KVM_SREGS2_CODEC,
  KVM_VCPU_EVENTS_CODEC,
  KVM_XCRS_CODEC,
  KVM_XSAVE_CODEC,
  makeKvmClockData,
  makeKvmMsrList,
  type kvm_clock_data,
  type kvm_debugregs,
  type kvm_sregs2,
  type kvm_vcpu_events,
  type kvm_xcrs,
  type kvm_xsave,
} from './abi/structs-x86.js';

/**
 * Map a vCPU's `kvm_run` area: `KVM_GET_VCPU_MMAP_SIZE` on the system fd, `mmap` of the vCPU fd, and a
 * {@link KvmRunView} over the mapping.
 *
 * @param proc the VMM process
 * @param sys its `/dev/kvmX` fd (`KVM_GET_VCPU_MMAP_SIZE` is a system ioctl)
 * @param vcpuFd the fd `KVM_CREATE_VCPU` returned
 * @returns the view of `struct kvm_run` (its `bytes` also reach the PIO data page)
 * @throws `KernelError` from the ioctl or the mmap (EBADF, ENOMEM, …)
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { KVM_EXIT_HLT, KVM_RUN, createRealModeVm, kvm, mapKvmRun } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const { sys, vcpus } = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4] }); // hlt
 * const vcpu = vcpus[0]!;
 * const run = mapKvmRun(proc, sys, vcpu.fd); // a second mapping of the same kvm_run page
 * proc.ioctl(vcpu.fd, KVM_RUN, 0);
 * console.log(run.exit_reason === KVM_EXIT_HLT); // true: both mappings show the same page
 * ```
 */
export function mapKvmRun(proc: Process, sys: number, vcpuFd: number): KvmRunView {
  return mapKvmRunArea(proc, sys, vcpuFd).run;
}

function mapKvmRunArea(proc: Process, sys: number, vcpuFd: number): { readonly run: KvmRunView; readonly mapping: Mapping } {
  const mapping = proc.mmap(vcpuFd, proc.ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0));
  return { run: new KvmRunView(mapping.bytes.buffer, mapping.bytes.byteOffset), mapping };
}

/** Registers for {@link createRealModeVcpu}: fixed values, or a function of the vCPU id. */
export type RealModeRegs = Partial<kvm_regs> | ((id: number) => Partial<kvm_regs>);

/** Options of {@link createRealModeVcpu}. */
export interface RealModeVcpuOptions {
  /** The vCPU id passed to `KVM_CREATE_VCPU`. Default 0. */
  readonly id?: number;
  /** Where the code starts (RIP, with CS base 0). Default 0x1000. */
  readonly guestPhysAddr?: number;
  /**
   * Register values for `KVM_SET_REGS`, over the defaults `rip = guestPhysAddr`, `rflags = 2` (all others 0).
   * A function gets the vCPU id.
   */
  readonly regs?: RealModeRegs;
}

/** A vCPU made by {@link createRealModeVcpu} or {@link createRealModeVm}. */
export interface RealModeVcpu {
  /** Its vCPU id. */
  readonly id: number;
  /** Its fd (for `KVM_RUN`, `KVM_GET_REGS`, …). */
  readonly fd: number;
  /** Its mapped `kvm_run` area. */
  readonly run: KvmRunView;
  /**
   * The mapping under `run` (the mapping holds the vCPU file, so the vCPU, its VM and the module stay in use until
   * it is unmapped: see {@link releaseRealModeVm}).
   */
  readonly runMapping: Mapping;
}

/**
 * Create one vCPU set up to run real-mode code: `KVM_CREATE_VCPU`, {@link mapKvmRun}, `KVM_GET_SREGS` /
 * CS base and selector 0 / `KVM_SET_SREGS`, and `KVM_SET_REGS` with RIP at `guestPhysAddr`.
 *
 * @throws `KernelError` from the first failing ioctl or mmap
 *
 * @example
 * ```ts
 * import { O_RDWR, createHost } from '@vac/core';
 * import { KVM_CREATE_VM, KVM_EXIT_HLT, KVM_RUN, KVM_SET_USER_MEMORY_REGION, createRealModeVcpu, kvm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const sys = proc.open('/dev/kvm0', O_RDWR);
 * const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
 * const memory = proc.mmapAnonymous(0x1000);
 * memory.bytes.set([0xf4]); // hlt, at guest-physical 0x1000
 * proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: memory.addr });
 * const { fd, run } = createRealModeVcpu(proc, sys, vm, { regs: { rbx: 2n } });
 * proc.ioctl(fd, KVM_RUN, 0);
 * console.log(run.exit_reason === KVM_EXIT_HLT); // true
 * ```
 */
export function createRealModeVcpu(proc: Process, sys: number, vm: number, options: RealModeVcpuOptions = {}): RealModeVcpu {
  const { id = 0, guestPhysAddr = 0x1000, regs = {} } = options;
  const fd = proc.ioctl(vm, KVM_CREATE_VCPU, id);
  const { run, mapping: runMapping } = mapKvmRunArea(proc, sys, fd);
  const sregs = makeKvmSregs();
  proc.ioctl(fd, KVM_GET_SREGS, sregs);
  sregs.cs.base = 0n;
  sregs.cs.selector = 0;
  proc.ioctl(fd, KVM_SET_SREGS, sregs);
  const extra = typeof regs === 'function' ? regs(id) : regs;
  proc.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: BigInt(guestPhysAddr), rflags: 2n, ...extra }));
  return { id, fd, run, runMapping };
}

/** Options of {@link createRealModeVm}. */
export interface RealModeVmOptions {
  /** The guest code, copied to the start of guest memory. */
  readonly code: ArrayLike<number>;
  /** How many vCPUs (ids 0, 1, …), each set up to start at `guestPhysAddr`. Default 1. */
  readonly vcpus?: number;
  /** Guest-physical address of memory slot 0, and the vCPUs' RIP. Default 0x1000. */
  readonly guestPhysAddr?: number;
  /** Size of the guest memory (a multiple of the page size). Default 0x1000. */
  readonly memorySize?: number;
  /** Register values for every vCPU, see {@link RealModeVcpuOptions.regs}. */
  readonly regs?: RealModeRegs;
}

/** A VM made by {@link createRealModeVm}: its fds, its guest memory and its vCPUs. */
export interface RealModeVm {
  /** The `/dev/kvmX` fd. */
  readonly sys: number;
  /** The VM fd. */
  readonly vm: number;
  /** The guest memory: anonymous process memory registered as slot 0. */
  readonly memory: Mapping;
  /** Where slot 0 starts in guest-physical memory. */
  readonly guestPhysAddr: number;
  /** The vCPUs, in id order. */
  readonly vcpus: RealModeVcpu[];
}

/**
 * Build a VM that runs `code` in real mode, as the classic minimal VMM does: `open(devPath)`,
 * `KVM_CREATE_VM`, anonymous guest memory holding `code` registered with `KVM_SET_USER_MEMORY_REGION`
 * (slot 0 at `guestPhysAddr`), then per vCPU {@link createRealModeVcpu}. The caller runs the vCPUs with
 * `KVM_RUN` and reads their exits from `run`.
 *
 * @param proc the VMM process (it needs access to `devPath`, e.g. group `kvm`)
 * @param devPath the KVM device, e.g. `/dev/kvm0`
 * @throws `KernelError` from the first failing syscall (e.g. EBUSY from `KVM_CREATE_VM` after reboot)
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { KVM_EXIT_HLT, KVM_EXIT_IO, KVM_RUN, createRealModeVm, kvm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
 * // mov dx, 0x3f8; add al, bl; add al, '0'; out dx, al; mov al, '\n'; out dx, al; hlt
 * const HELLO = [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4];
 * const { vcpus } = createRealModeVm(proc, '/dev/kvm0', { code: HELLO, regs: { rax: 2n, rbx: 2n } });
 * const { fd, run } = vcpus[0]!;
 * let out = '';
 * for (;;) {
 *   proc.ioctl(fd, KVM_RUN, 0);
 *   if (run.exit_reason !== KVM_EXIT_IO) break;
 *   out += String.fromCharCode(run.bytes[run.io.data_offset] ?? 0);
 * }
 * console.log(JSON.stringify(out), run.exit_reason === KVM_EXIT_HLT); // "4\n" true
 * ```
 */
export function createRealModeVm(proc: Process, devPath: string, options: RealModeVmOptions): RealModeVm {
  const { code, vcpus: n = 1, guestPhysAddr = 0x1000, memorySize = 0x1000, regs = {} } = options;
  const sys = proc.open(devPath, O_RDWR);
  const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
  const memory = proc.mmapAnonymous(memorySize);
  memory.bytes.set(code);
  proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: guestPhysAddr, memory_size: memorySize, userspace_addr: memory.addr });
  const vcpus: RealModeVcpu[] = [];
  for (let id = 0; id < n; id++) vcpus.push(createRealModeVcpu(proc, sys, vm, { id, guestPhysAddr, regs }));
  return { sys, vm, memory, guestPhysAddr, vcpus };
}

/**
 * Give back what {@link createRealModeVm} took in the kernel, as a VMM does when it is done with a VM: unmap each
 * vCPU's `kvm_run` area, close the vCPU fds, the VM fd and the `/dev/kvmX` fd. The last reference to the VM goes
 * with them, so the VM is destroyed and the module can be unloaded. The guest memory is the VMM's own and stays
 * mapped: a VMM moving the VM to another module registers it with the new VM (see docs/recipes.md); unmap it with
 * `proc.munmap(vm.memory.addr, vm.memory.length)` when it is no longer needed.
 *
 * @param proc the VMM process that made the VM
 * @param vm what {@link createRealModeVm} returned
 * @throws `KernelError` from the first failing `munmap` or `close` (e.g. EBADF when an fd was already closed)
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { createRealModeVm, kvm, releaseRealModeVm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4] });
 * releaseRealModeVm(proc, vm);
 * host.rmmod('kvm0'); // nothing of the VMM holds kvm0 any more
 * console.log(host.lsmod().map((m) => m.name)); // [ 'vac' ]
 * ```
 */
export function releaseRealModeVm(proc: Process, vm: RealModeVm): void {
  for (const v of vm.vcpus) proc.munmap(v.runMapping.addr, v.runMapping.length);
  for (const v of vm.vcpus) proc.close(v.fd);
  proc.close(vm.vm);
  proc.close(vm.sys);
}

// ---- saving and restoring a whole VM -----------------------------------------------------------------------

/**
 * Everything KVM holds of one vCPU, as a VMM saves it to move the VM (QEMU's `kvm_arch_get_registers`): its CPUID,
 * TSC frequency, registers, system registers, FPU/XSAVE area, XCRs, pending events, MP state, debug registers,
 * machine-check setup and every MSR KVM lists. Plain data: it can be kept, compared or sent elsewhere.
 */
export interface SavedVcpu {
  /** The vCPU id. */
  readonly id: number;
  /** KVM_GET_CPUID2 (what the VMM set). */
  readonly cpuid: readonly kvm_cpuid_entry2[];
  /** KVM_GET_TSC_KHZ. */
  readonly tscKhz: number;
  /** KVM_GET_REGS. */
  readonly regs: kvm_regs;
  /** KVM_GET_SREGS2 (with the PDPTRs of PAE paging), or `undefined` where KVM lacks it. */
  readonly sregs2: kvm_sregs2 | undefined;
  /** KVM_GET_SREGS, where KVM lacks KVM_GET_SREGS2. */
  readonly sregs: kvm_sregs | undefined;
  /**
   * KVM_GET_XSAVE (the legacy FXSAVE area and, with XSAVE, the extended state), or KVM_GET_XSAVE2 where
   * KVM_CAP_XSAVE2 answers more than 4096 bytes (AMX permitted): then `region` has KVM_CAP_XSAVE2 / 4 words.
   */
  readonly xsave: kvm_xsave;
  /** KVM_GET_XCRS, where KVM has them (KVM_CAP_XCRS). */
  readonly xcrs: kvm_xcrs | undefined;
  /** KVM_GET_VCPU_EVENTS. */
  readonly events: kvm_vcpu_events;
  /** KVM_GET_MP_STATE. */
  readonly mpState: number;
  /** KVM_GET_DEBUGREGS. */
  readonly debugregs: kvm_debugregs;
  /** MCG_CAP (what KVM_X86_SETUP_MCE set), restored before the machine-check MSRs. */
  readonly mcgCap: bigint;
  /** Every MSR the vCPU reads: KVM_GET_MSR_INDEX_LIST, then the machine-check banks of `mcgCap`. */
  readonly msrs: readonly kvm_msr_entry[];
  /** KVM_GET_LAPIC's register page, where the vCPU has an in-kernel LAPIC (a full or split irqchip). */
  readonly lapic?: Uint8Array | undefined;
  /**
   * KVM_GET_NESTED_STATE's header, where KVM has it (KVM_CAP_NESTED_STATE): the model's guests never run a nested
   * guest, so it is the "no nested guest" state and there is no data after it.
   */
  readonly nestedState?: kvm_nested_state | undefined;
}

/**
 * What a VMM made of the in-kernel interrupt controllers. KVM has no call that reports the split irqchip's reserved
 * pins, KVM_CREATE_PIT2's flags, the PIT's reinjection mode or the GSI routing table: a VMM keeps what it set (QEMU
 * keeps its routing table in user space and commits it again) and passes it here.
 */
export interface IrqchipConfig {
  /** KVM_CREATE_IRQCHIP (`'kernel'`: PIC, IOAPIC and LAPICs) or KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) (`'split'`). */
  readonly mode: 'kernel' | 'split';
  /** The IOAPIC pins KVM_CAP_SPLIT_IRQCHIP reserved (`args[0]`). Default 24. */
  readonly splitPins?: number;
  /** KVM_CREATE_PIT2's `flags` (e.g. KVM_PIT_SPEAKER_DUMMY). Default 0. */
  readonly pitFlags?: number;
  /** KVM_REINJECT_CONTROL's `pit_reinject` the VMM set. Default true (KVM's default). */
  readonly pitReinject?: boolean;
  /** The table the VMM last gave KVM_SET_GSI_ROUTING; `undefined`: KVM's default routing (none was set). */
  readonly routing?: readonly kvm_irq_routing_entry[];
}

/** A VM's in-kernel interrupt controllers, saved: the VMM's configuration and the devices' state. */
export interface SavedIrqchip {
  /** What the VMM made (with the saved mode). */
  readonly config: IrqchipConfig;
  /** KVM_GET_IRQCHIP of the master and the slave PIC (a full irqchip). */
  readonly pic: readonly [kvm_pic_state, kvm_pic_state] | undefined;
  /** KVM_GET_IRQCHIP of the IOAPIC (a full irqchip). */
  readonly ioapic: kvm_ioapic_state | undefined;
  /** KVM_GET_PIT2, where the VM has a PIT. */
  readonly pit: kvm_pit_state2 | undefined;
}

/**
 * A whole VM's KVM state: kvmclock, the in-kernel interrupt controllers and each vCPU (the memory is the VMM's and is
 * handed over, not saved).
 */
export interface SavedVm {
  /** KVM_GET_CLOCK. */
  readonly clock: kvm_clock_data;
  /** The in-kernel irqchip, PIT and routing, where the VM has them. */
  readonly irqchip?: SavedIrqchip | undefined;
  /** The vCPUs, in id order. */
  readonly vcpus: readonly SavedVcpu[];
}

const MSR_IA32_MCG_CAP = 0x179;
const MSR_IA32_APICBASE = 0x1b;
const MSR_IA32_MC0_CTL = 0x400;
const MSR_IA32_MC0_CTL2 = 0x280;
const MCG_CMCI_P = 1n << 10n;

/**
 * The MSR indices KVM lists on `sys` (KVM_GET_MSR_INDEX_LIST; its E2BIG gives the count): what {@link saveVcpu}
 * saves besides the machine-check banks. A VMM asks once (QEMU's `kvm_get_supported_msrs`) and passes the list to
 * every {@link saveVcpu}.
 *
 * @example
 * ```ts
 * import { O_RDWR, createHost } from '@vac/core';
 * import { kvm, msrIndexList } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const msrs = msrIndexList(proc, proc.open('/dev/kvm0', O_RDWR));
 * console.log(msrs.length, msrs.includes(0x10)); // IA32_TSC is among them
 * ```
 */
export function msrIndexList(proc: Process, sys: number): number[] {
  const head = makeKvmMsrList(0);
  try {
    proc.ioctl(sys, KVM_GET_MSR_INDEX_LIST, head);
  } catch (e) {
    if (!isKernelError(e, 'E2BIG')) throw e;
  }
  const list = makeKvmMsrList(head.nmsrs);
  proc.ioctl(sys, KVM_GET_MSR_INDEX_LIST, list);
  return list.indices.slice(0, list.nmsrs);
}

/** `struct kvm_msrs` bytes for `entries` (data 0 where not given). */
function msrsBytes(entries: ReadonlyArray<{ readonly index: number; readonly data?: bigint }>): Uint8Array<ArrayBuffer> {
  const b = argBytes(8 + 16 * entries.length);
  const dv = new DataView(b.buffer, 0, b.byteLength);
  dv.setUint32(0, entries.length, true);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as { readonly index: number; readonly data?: bigint };
    dv.setUint32(8 + 16 * i, e.index, true);
    dv.setBigUint64(16 + 16 * i, e.data ?? 0n, true);
  }
  return b;
}

/** KVM_GET_MSRS of `indices` (through the C bytes), keeping those the vCPU reads (a batch stops at the first it does not). */
function readMsrs(proc: Process, fd: number, indices: readonly number[]): kvm_msr_entry[] {
  const out: kvm_msr_entry[] = [];
  let start = 0;
  while (start < indices.length) {
    const count = Math.min(255, indices.length - start);
    const b = argBytes(8 + 16 * count);
    const dv = new DataView(b.buffer, 0, b.byteLength);
    dv.setUint32(0, count, true);
    for (let i = 0; i < count; i++) dv.setUint32(8 + 16 * i, indices[start + i] as number, true);
    const n = proc.ioctl(fd, KVM_GET_MSRS, b);
    for (let i = 0; i < n; i++) out.push({ index: indices[start + i] as number, data: dv.getBigUint64(16 + 16 * i, true) });
    start += n === count ? n : n + 1; // skip the one it could not read
  }
  return out;
}

/** Read struct `codec` with `req` through its C bytes. */
function getStruct<T extends object>(proc: Process, fd: number, req: number, codec: { readonly size: number; decode(view: DataView, offset?: number): T }): T {
  const b = argBytes(codec.size);
  proc.ioctl(fd, req, b);
  return codec.decode(new DataView(b.buffer, 0, b.byteLength), 0);
}

/**
 * The vCPU's XSAVE area as QEMU reads it (`kvm_get_xsave`): with KVM_CAP_XSAVE2 answering more than
 * `struct kvm_xsave`, KVM_GET_XSAVE2 into a buffer of that size (its `region` then has size / 4 words); else
 * KVM_GET_XSAVE.
 */
function getXsaveArea(proc: Process, sys: number, fd: number): kvm_xsave {
  const size = proc.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
  if (size <= 4096) return getStruct(proc, fd, KVM_GET_XSAVE, KVM_XSAVE_CODEC);
  const b = new Uint8Array(size);
  proc.ioctl(fd, KVM_GET_XSAVE2, b);
  return { region: new Uint32Array(b.buffer, 0, size / 4) };
}

/** Write struct `v` with `req` through its C bytes. */
function setStruct<T extends object>(proc: Process, fd: number, req: number, codec: StructCodec<T>, v: T): void {
  proc.ioctl(fd, req, structArg(codec, v));
}

/**
 * Save one vCPU. The vCPU must not be running (no thread inside KVM_RUN) and must have no I/O waiting for its
 * completion (see {@link saveVm}, which completes it first). The ioctls take the C bytes of their structures (as
 * a C VMM passes them), which the result holds decoded.
 *
 * @param proc the VMM process
 * @param sys its `/dev/kvmX` fd (for the capabilities)
 * @param fd the vCPU fd
 * @param id the vCPU id
 * @param msrs the MSRs to save ({@link msrIndexList}; asked of `sys` when not given)
 * @throws `KernelError` from the first failing ioctl
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { createRealModeVm, kvm, saveVcpu } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4], regs: { rax: 42n } });
 * const saved = saveVcpu(proc, vm.sys, vm.vcpus[0]!.fd, 0);
 * console.log(saved.regs.rax, saved.regs.rip.toString(16)); // 42n '1000'
 * ```
 */
export function saveVcpu(proc: Process, sys: number, fd: number, id: number, msrs: readonly number[] = msrIndexList(proc, sys)): SavedVcpu {
  const cpuidBytes = argBytes(KVM_CPUID2_CODEC.entriesOffset + 256 * KVM_CPUID_ENTRY2_CODEC.size);
  const cpuidView = new DataView(cpuidBytes.buffer, 0, cpuidBytes.byteLength);
  cpuidView.setUint32(0, 256, true);
  proc.ioctl(fd, KVM_GET_CPUID2, cpuidBytes);
  const cpuid = KVM_CPUID2_CODEC.decode(cpuidView).entries;
  const regs = getStruct(proc, fd, KVM_GET_REGS, KVM_REGS_CODEC);
  const hasSregs2 = proc.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0;
  const sregs2 = hasSregs2 ? getStruct(proc, fd, KVM_GET_SREGS2, KVM_SREGS2_CODEC) : undefined;
  const sregs = hasSregs2 ? undefined : getStruct(proc, fd, KVM_GET_SREGS, KVM_SREGS_CODEC);
  const xsave = getXsaveArea(proc, sys, fd);
  const xcrs = proc.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0 ? getStruct(proc, fd, KVM_GET_XCRS, KVM_XCRS_CODEC) : undefined;
  const events = getStruct(proc, fd, KVM_GET_VCPU_EVENTS, KVM_VCPU_EVENTS_CODEC);
  const mpState = getStruct(proc, fd, KVM_GET_MP_STATE, KVM_MP_STATE_CODEC).mp_state;
  const debugregs = getStruct(proc, fd, KVM_GET_DEBUGREGS, KVM_DEBUGREGS_CODEC);
  const [cap] = readMsrs(proc, fd, [MSR_IA32_MCG_CAP]);
  const mcgCap = cap?.data ?? 0n;
  const mce = mceBankMsrs(mcgCap);
  return {
    id,
    cpuid,
    tscKhz: proc.ioctl(fd, KVM_GET_TSC_KHZ, 0),
    regs,
    sregs2,
    sregs,
    xsave,
    xcrs,
    events,
    mpState,
    debugregs,
    mcgCap,
    msrs: readMsrs(proc, fd, [...msrs, ...mce]),
    lapic: readLapic(proc, fd),
    nestedState: readNestedState(proc, sys, fd),
  };
}

/** KVM_GET_NESTED_STATE into a buffer of KVM_CAP_NESTED_STATE bytes (QEMU's `kvm_get_nested_state`), or `undefined` without the cap. */
function readNestedState(proc: Process, sys: number, fd: number): kvm_nested_state | undefined {
  const max = proc.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_NESTED_STATE);
  if (max <= 0) return undefined;
  const b = argBytes(max);
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(4, max, true); // size: the buffer's
  proc.ioctl(fd, KVM_GET_NESTED_STATE, b);
  return KVM_NESTED_STATE_CODEC.decode(new DataView(b.buffer, b.byteOffset, b.byteLength), 0);
}

/** The machine-check bank MSRs `mcgCap` gives a vCPU (MCi_CTL/STATUS/ADDR/MISC, and MCi_CTL2 with CMCI), which come from MCG_CAP, not from KVM_GET_MSR_INDEX_LIST. */
function mceBankMsrs(mcgCap: bigint): number[] {
  const banks = Number(mcgCap & 0xffn);
  const mce: number[] = [];
  for (let i = 0; i < 4 * banks; i++) mce.push(MSR_IA32_MC0_CTL + i);
  if ((mcgCap & MCG_CMCI_P) !== 0n) for (let i = 0; i < banks; i++) mce.push(MSR_IA32_MC0_CTL2 + i);
  return mce;
}

/** KVM_GET_LAPIC's page, or `undefined` when the vCPU has no in-kernel LAPIC (EINVAL). */
function readLapic(proc: Process, fd: number): Uint8Array | undefined {
  const regs = argBytes(LAPIC_REGS_BYTES);
  try {
    proc.ioctl(fd, KVM_GET_LAPIC, regs);
  } catch (e) {
    if (isKernelError(e, 'EINVAL')) return undefined;
    throw e;
  }
  return regs.slice();
}

/** `sizeof(struct kvm_lapic_state)`: `char regs[KVM_APIC_REG_SIZE]`. */
const LAPIC_REGS_BYTES = 0x400;

/** `struct kvm_lapic_state` of `regs` (0x400 bytes) in the helpers' argument buffer. */
function lapicArg(regs: Uint8Array): Uint8Array<ArrayBuffer> {
  const b = argBytes(LAPIC_REGS_BYTES);
  b.set(regs);
  return b;
}

/**
 * Restore a vCPU saved by {@link saveVcpu} into a vCPU of the same configuration, in the order KVM needs (QEMU's
 * `kvm_arch_init_vcpu`, `kvm_apic_put` and `kvm_arch_put_registers`): CPUID and TSC frequency first (a vCPU that has
 * run takes only the CPUID it has), then the machine-check setup, the in-kernel LAPIC (the APIC base, then
 * KVM_SET_LAPIC), the system and general registers, the FPU/XSAVE area and XCRs, the MSRs (the TSC among them, which
 * KVM synchronizes across the VM's vCPUs, then IA32_TSC_DEADLINE), the events, the MP state and the debug registers.
 *
 * @throws `KernelError` from the first failing ioctl; `UsageError` `ERR_INVALID_STATE` when KVM refuses one of the
 *   saved MSRs (the state does not fit this module: another CPU model, another configuration)
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { createRealModeVm, kvm, restoreVcpu, saveVcpu } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * host.modprobe(kvm({ postfix: '1' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const a = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4], regs: { rax: 42n } });
 * const b = createRealModeVm(proc, '/dev/kvm1', { code: [0xf4] });
 * restoreVcpu(proc, b.vcpus[0]!.fd, saveVcpu(proc, a.sys, a.vcpus[0]!.fd, 0));
 * console.log(saveVcpu(proc, b.sys, b.vcpus[0]!.fd, 0).regs.rax); // 42n, now on kvm1
 * ```
 */
export function restoreVcpu(proc: Process, fd: number, saved: SavedVcpu): void {
  restoreVcpuSetup(proc, fd, saved);
  restoreLapic(proc, fd, saved);
  restoreVcpuRegisters(proc, fd, saved);
}

/** QEMU's `kvm_init_vcpu` part: CPUID, TSC frequency, machine-check setup. */
function restoreVcpuSetup(proc: Process, fd: number, saved: SavedVcpu): void {
  proc.ioctl(fd, KVM_SET_CPUID2, flexArg(KVM_CPUID2_CODEC, { nent: saved.cpuid.length }, saved.cpuid));
  if (proc.ioctl(fd, KVM_GET_TSC_KHZ, 0) !== saved.tscKhz) proc.ioctl(fd, KVM_SET_TSC_KHZ, saved.tscKhz);
  if (saved.mcgCap !== 0n) proc.ioctl(fd, KVM_X86_SETUP_MCE, [saved.mcgCap]);
}

/**
 * QEMU's `kvm_apic_put`: the APIC base first (`kvm_put_apicbase`: KVM_SET_LAPIC reads the x2APIC ID in the mode the
 * base selects, `kvm_apic_state_fixup`), then the register page (the timer restarts from the saved current count).
 */
function restoreLapic(proc: Process, fd: number, saved: SavedVcpu): void {
  if (saved.lapic === undefined) return;
  const base = (saved.sregs2 ?? saved.sregs)?.apic_base;
  if (base !== undefined && proc.ioctl(fd, KVM_SET_MSRS, msrsBytes([{ index: MSR_IA32_APICBASE, data: base }])) !== 1) {
    throw new UsageError('ERR_INVALID_STATE', `restoreVcpu: KVM refused APIC base 0x${base.toString(16)}`);
  }
  // The register page as the C structure (its only member); a page of another size goes through makeKvmLapicState.
  proc.ioctl(fd, KVM_SET_LAPIC, saved.lapic.length === LAPIC_REGS_BYTES ? lapicArg(saved.lapic) : makeKvmLapicState(saved.lapic));
}

/** QEMU's `kvm_arch_put_registers` (KVM_PUT_FULL_STATE). */
function restoreVcpuRegisters(proc: Process, fd: number, saved: SavedVcpu): void {
  if (saved.sregs2 !== undefined) setStruct(proc, fd, KVM_SET_SREGS2, KVM_SREGS2_CODEC, saved.sregs2);
  if (saved.sregs !== undefined) setStruct(proc, fd, KVM_SET_SREGS, KVM_SREGS_CODEC, saved.sregs);
  // kvm_put_nested_state, after the system registers (SVM takes a nested state only with EFER.SVME set).
  if (saved.nestedState !== undefined) setStruct(proc, fd, KVM_SET_NESTED_STATE, KVM_NESTED_STATE_CODEC, saved.nestedState);
  setStruct(proc, fd, KVM_SET_REGS, KVM_REGS_CODEC, saved.regs);
  // KVM_SET_XSAVE reads the vCPU's uabi_size bytes: a larger (KVM_GET_XSAVE2) area goes as its C bytes.
  if (saved.xsave.region.length > 1024) proc.ioctl(fd, KVM_SET_XSAVE, new Uint8Array(saved.xsave.region.buffer, saved.xsave.region.byteOffset, 4 * saved.xsave.region.length));
  else setStruct(proc, fd, KVM_SET_XSAVE, KVM_XSAVE_CODEC, saved.xsave);
  if (saved.xcrs !== undefined) setStruct(proc, fd, KVM_SET_XCRS, KVM_XCRS_CODEC, saved.xcrs);
  // A batch stops at the first MSR KVM refuses. One that already holds the saved value needs no write (an MSR
  // KVM only takes with an in-kernel LAPIC, say, at its reset value); any other cannot be restored here.
  let rest = saved.msrs;
  while (rest.length > 0) {
    const batch = rest.slice(0, 255);
    const n = proc.ioctl(fd, KVM_SET_MSRS, msrsBytes(batch));
    if (n === batch.length) {
      rest = rest.slice(n);
      continue;
    }
    const bad = batch[n] as kvm_msr_entry;
    const [now] = readMsrs(proc, fd, [bad.index]);
    if (now?.data !== bad.data) throw new UsageError('ERR_INVALID_STATE', `restoreVcpu: KVM refused MSR 0x${bad.index.toString(16)} = 0x${bad.data.toString(16)}`);
    rest = rest.slice(n + 1);
  }
  // kvm_put_vcpu_events, then kvm_put_mp_state (an INIT/SIPI state with an in-kernel LAPIC), then the debug registers.
  setStruct(proc, fd, KVM_SET_VCPU_EVENTS, KVM_VCPU_EVENTS_CODEC, saved.events);
  setStruct(proc, fd, KVM_SET_MP_STATE, KVM_MP_STATE_CODEC, { mp_state: saved.mpState });
  setStruct(proc, fd, KVM_SET_DEBUGREGS, KVM_DEBUGREGS_CODEC, saved.debugregs);
}

/**
 * Complete what a vCPU's last exit left pending (the `in`/`out` or MMIO access user space has answered) without
 * re-entering the guest: `immediate_exit` = 1 and KVM_RUN, which returns EINTR (`kvm_arch_vcpu_ioctl_run`
 * completes the access first). After it the registers are the guest's as of the end of that instruction.
 *
 * @throws `KernelError` from KVM_RUN other than the expected EINTR
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { KVM_EXIT_IO, KVM_RUN, completePendingIo, createRealModeVm, kvm, saveVcpu } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * // 0x1000: mov dx, 0x3f8; 0x1003: in al, dx; 0x1004: hlt
 * const vm = createRealModeVm(proc, '/dev/kvm0', { code: [0xba, 0xf8, 0x03, 0xec, 0xf4] });
 * const { fd, run } = vm.vcpus[0]!;
 * proc.ioctl(fd, KVM_RUN, 0);
 * console.log(run.exit_reason === KVM_EXIT_IO, saveVcpu(proc, vm.sys, fd, 0).regs.rip.toString(16)); // true '1003': the `in` is pending
 * run.bytes[run.io.data_offset] = 0x41; // the VMM's answer to the `in`
 * completePendingIo(proc, fd, run);
 * const regs = saveVcpu(proc, vm.sys, fd, 0).regs;
 * console.log(regs.rip.toString(16), (regs.rax & 0xffn).toString(16)); // '1004' '41': done, AL holds the answer
 * ```
 */
export function completePendingIo(proc: Process, fd: number, run: KvmRunView): void {
  run.immediate_exit = 1;
  try {
    proc.ioctl(fd, KVM_RUN, 0);
  } catch (e) {
    if (!isKernelError(e, 'EINTR')) throw e;
  } finally {
    run.immediate_exit = 0;
  }
}

/** A VM as the VMM holds it: its fds and, per vCPU, its id, fd and mapped `kvm_run`. */
export interface VmHandle {
  /** The `/dev/kvmX` fd. */
  readonly sys: number;
  /** The VM fd. */
  readonly vm: number;
  /** The vCPUs. */
  readonly vcpus: ReadonlyArray<{ readonly id: number; readonly fd: number; readonly run: KvmRunView }>;
  /**
   * What the VMM made of the in-kernel interrupt controllers (see {@link IrqchipConfig}). Without it {@link saveVm}
   * finds the mode through the ABI and takes the defaults for what KVM cannot report.
   */
  readonly irqchip?: IrqchipConfig | undefined;
}

/**
 * Save a whole VM: each vCPU's pending I/O completed ({@link completePendingIo}), then kvmclock and every vCPU
 * ({@link saveVcpu}). The vCPUs must be stopped (no thread inside KVM_RUN). What the VMM configured itself —
 * memory slots, ioeventfds, coalesced zones, the MSR filter, enabled capabilities — is the VMM's to set again (see
 * {@link restoreVm}'s `configure`).
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { createRealModeVm, kvm, restoreVm, saveVm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 2, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * host.modprobe(kvm({ postfix: '1' }));
 * const vmm = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(vmm, '/dev/kvm0', { code: [0xf4] }); // hlt
 * const saved = saveVm(vmm, vm); // plain data
 * const copy = restoreVm(vmm, '/dev/kvm1', saved, {
 *   slots: [{ slot: 0, flags: 0, guest_phys_addr: vm.guestPhysAddr, memory_size: vm.memory.length, userspace_addr: vm.memory.addr }],
 * });
 * console.log(copy.vcpus.length); // 1, on kvm1, where the guest was on kvm0
 * ```
 */
export function saveVm(proc: Process, vm: VmHandle): SavedVm {
  for (const v of vm.vcpus) completePendingIo(proc, v.fd, v.run);
  const clock = makeKvmClockData();
  proc.ioctl(vm.vm, KVM_GET_CLOCK, clock);
  const msrs = msrIndexList(proc, vm.sys);
  const vcpus = vm.vcpus.map((v) => saveVcpu(proc, vm.sys, v.fd, v.id, msrs));
  const irqchip = saveIrqchip(proc, vm, vcpus.some((v) => v.lapic !== undefined));
  return irqchip === undefined ? { clock, vcpus } : { clock, irqchip, vcpus };
}

/**
 * The irqchip part of {@link saveVm}: the PICs and the IOAPIC (KVM_GET_IRQCHIP: ENXIO without a full irqchip), the
 * PIT (KVM_GET_PIT2: ENXIO without one), with the VMM's configuration; `undefined` for a VM without an irqchip.
 */
function saveIrqchip(proc: Process, vm: VmHandle, lapics: boolean): SavedIrqchip | undefined {
  const master = getIrqchip(proc, vm.vm, KVM_IRQCHIP_PIC_MASTER);
  const mode = master !== undefined ? 'kernel' : lapics ? 'split' : vm.irqchip?.mode;
  if (mode === undefined) return undefined;
  if (vm.irqchip !== undefined && vm.irqchip.mode !== mode) {
    throw new UsageError('ERR_INVALID_STATE', `saveVm: the VM's irqchip is '${mode}', the VmHandle says '${vm.irqchip.mode}'`);
  }
  let pic: SavedIrqchip['pic'];
  let ioapic: SavedIrqchip['ioapic'];
  if (master !== undefined) {
    const slave = getIrqchip(proc, vm.vm, KVM_IRQCHIP_PIC_SLAVE);
    const io = getIrqchip(proc, vm.vm, KVM_IRQCHIP_IOAPIC);
    if (!('pic' in master.chip) || slave === undefined || !('pic' in slave.chip) || io === undefined || !('ioapic' in io.chip)) {
      throw new UsageError('ERR_INVALID_STATE', 'saveVm: KVM_GET_IRQCHIP answered another chip');
    }
    pic = [master.chip.pic, slave.chip.pic];
    ioapic = io.chip.ioapic;
  }
  const pit = getPit2(proc, vm.vm);
  return { config: { ...vm.irqchip, mode }, pic, ioapic, pit };
}

/** KVM_GET_IRQCHIP of chip `id`, or `undefined` when the VM has no such chip (ENXIO). */
function getIrqchip(proc: Process, vm: number, id: number): kvm_irqchip | undefined {
  const b = argBytes(KVM_IRQCHIP_CODEC.size);
  const view = new DataView(b.buffer, 0, b.byteLength);
  view.setUint32(KVM_IRQCHIP_CODEC.offsetOf('chip_id'), id, true);
  try {
    proc.ioctl(vm, KVM_GET_IRQCHIP, b);
  } catch (e) {
    if (isKernelError(e, 'ENXIO')) return undefined;
    throw e;
  }
  return decodeKvmIrqchip(view); // the union read by chip_id, as the object form of the call gives it
}

/** KVM_GET_PIT2, or `undefined` when the VM has no PIT (ENXIO). */
function getPit2(proc: Process, vm: number): kvm_pit_state2 | undefined {
  try {
    return getStruct(proc, vm, KVM_GET_PIT2, KVM_PIT_STATE2_CODEC);
  } catch (e) {
    if (isKernelError(e, 'ENXIO')) return undefined;
    throw e;
  }
}

/**
 * The irqchip of a restored VM before its vCPUs (QEMU's `kvm_irqchip_create` and `kvm_pit_realizefn` in `kvm_init`
 * and machine set-up): KVM_CREATE_IRQCHIP or KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP), KVM_CREATE_PIT2 and
 * KVM_REINJECT_CONTROL, and the VMM's routing table (KVM_SET_GSI_ROUTING).
 */
function createIrqchip(proc: Process, vm: number, saved: SavedIrqchip): void {
  const c = saved.config;
  if (c.mode === 'kernel') proc.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  else proc.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_SPLIT_IRQCHIP, args: [BigInt(c.splitPins ?? 24), 0n, 0n, 0n] }));
  if (saved.pit !== undefined) {
    proc.ioctl(vm, KVM_CREATE_PIT2, { flags: c.pitFlags ?? 0 });
    if (c.pitReinject === false) proc.ioctl(vm, KVM_REINJECT_CONTROL, { pit_reinject: 0 });
  }
  if (c.routing !== undefined) proc.ioctl(vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting(c.routing));
}

/**
 * The devices' state once the vCPUs exist (QEMU's `kvm_pic_put`, `kvm_ioapic_put`, `kvm_pit_put` in the device
 * post-load order): KVM_SET_IRQCHIP of the master PIC, the slave PIC and the IOAPIC, then KVM_SET_PIT2 (which
 * reloads each channel's count at the current time, `kvm_pit_load_count`).
 */
function restoreIrqchipState(proc: Process, vm: number, saved: SavedIrqchip): void {
  if (saved.pic !== undefined) {
    setStruct(proc, vm, KVM_SET_IRQCHIP, KVM_IRQCHIP_CODEC, { chip_id: KVM_IRQCHIP_PIC_MASTER, chip: { pic: saved.pic[0] } });
    setStruct(proc, vm, KVM_SET_IRQCHIP, KVM_IRQCHIP_CODEC, { chip_id: KVM_IRQCHIP_PIC_SLAVE, chip: { pic: saved.pic[1] } });
  }
  if (saved.ioapic !== undefined) setStruct(proc, vm, KVM_SET_IRQCHIP, KVM_IRQCHIP_CODEC, { chip_id: KVM_IRQCHIP_IOAPIC, chip: { ioapic: saved.ioapic } });
  if (saved.pit !== undefined) setStruct(proc, vm, KVM_SET_PIT2, KVM_PIT_STATE2_CODEC, saved.pit);
}

/** Options of {@link restoreVm}. */
export interface RestoreVmOptions {
  /** The memory slots to register (the guest memory is the VMM's: the same `userspace_addr` hands it over). */
  readonly slots: readonly kvm_userspace_memory_region[];
  /**
   * What the VMM sets up on the new VM before its vCPUs exist (capabilities such as KVM_CAP_X86_DISABLE_EXITS must
   * come first), e.g. its ioeventfds and MSR filter.
   */
  readonly configure?: (proc: Process, sys: number, vm: number) => void;
  /**
   * The target's KVM_GET_MSR_INDEX_LIST as the VMM already has it (QEMU's `kvm_get_supported_msrs` asks once); asked
   * of the target when not given.
   */
  readonly msrIndexList?: readonly number[];
}

/** A VM made by {@link restoreVm}. */
export interface RestoredVm {
  /** The `/dev/kvmX` fd. */
  readonly sys: number;
  /** The VM fd. */
  readonly vm: number;
  /** The vCPUs, in the saved order, with their `kvm_run` mapped. */
  readonly vcpus: RealModeVcpu[];
  /**
   * The saved MSRs left out because the target does not list them (KVM_GET_MSR_INDEX_LIST), ascending, each once:
   * what the guest lost in the move (`canMove` tells beforehand which of them matter).
   */
  readonly droppedMsrs: readonly number[];
}

/**
 * Restore a VM saved by {@link saveVm} on `devPath` (another module's `/dev/kvmX`, or the same one), in QEMU's order:
 * a new VM with the given memory slots, its irqchip, PIT and routing as the VMM made them, `configure`, each vCPU
 * created with its CPUID, TSC frequency and MCE setup, then the devices' state (each LAPIC, the PICs, the IOAPIC,
 * the PIT), every vCPU's registers ({@link restoreVcpu}) and kvmclock. Of the saved MSRs it restores those the target
 * lists (KVM_GET_MSR_INDEX_LIST, or `options.msrIndexList`) and the machine-check banks, as QEMU's `kvm_put_msrs`
 * does, and reports the others in `droppedMsrs` (`canMove` tells beforehand whether any of them holds a value the
 * guest would lose). The guest continues where it was saved; a PIT
 * channel restarts its count at the restore (`kvm_pit_load_count`), as on Linux.
 *
 * @throws `KernelError` from the first failing syscall; `UsageError` from {@link restoreVcpu}
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { createRealModeVm, kvm, restoreVm, saveVm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 2, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * host.modprobe(kvm({ postfix: '1' }));
 * const vmm = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(vmm, '/dev/kvm0', { code: [0xf4] }); // hlt
 * const saved = saveVm(vmm, vm); // plain data
 * const copy = restoreVm(vmm, '/dev/kvm1', saved, {
 *   slots: [{ slot: 0, flags: 0, guest_phys_addr: vm.guestPhysAddr, memory_size: vm.memory.length, userspace_addr: vm.memory.addr }],
 * });
 * console.log(copy.vcpus.length); // 1, on kvm1, where the guest was on kvm0
 * ```
 */
export function restoreVm(proc: Process, devPath: string, saved: SavedVm, options: RestoreVmOptions): RestoredVm {
  const sys = proc.open(devPath, O_RDWR);
  const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
  for (const slot of options.slots) proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, slot);
  if (saved.irqchip !== undefined) createIrqchip(proc, vm, saved.irqchip);
  options.configure?.(proc, sys, vm);
  const listed = new Set(options.msrIndexList ?? msrIndexList(proc, sys));
  const dropped = new Set<number>();
  const restorable = saved.vcpus.map((s) => listedMsrsOnly(s, listed, dropped));
  const vcpus: RealModeVcpu[] = [];
  for (const s of saved.vcpus) {
    const fd = proc.ioctl(vm, KVM_CREATE_VCPU, s.id);
    const { run, mapping: runMapping } = mapKvmRunArea(proc, sys, fd);
    restoreVcpuSetup(proc, fd, s);
    vcpus.push({ id: s.id, fd, run, runMapping });
  }
  // QEMU's load order: the devices (each LAPIC, the PICs, the IOAPIC, the PIT), then every vCPU's registers.
  saved.vcpus.forEach((s, i) => restoreLapic(proc, (vcpus[i] as RealModeVcpu).fd, s));
  if (saved.irqchip !== undefined) restoreIrqchipState(proc, vm, saved.irqchip);
  restorable.forEach((s, i) => restoreVcpuRegisters(proc, (vcpus[i] as RealModeVcpu).fd, s));
  // kvm_vm_ioctl_set_clock: after the vCPUs, so that their kvmclock follows the VM's
  proc.ioctl(vm, KVM_SET_CLOCK, makeKvmClockData({ clock: saved.clock.clock }));
  return { sys, vm, vcpus, droppedMsrs: [...dropped].sort((a, b) => a - b) };
}

/**
 * `saved` with only the MSRs the target lists and its machine-check banks (QEMU's `kvm_put_msrs` sends what
 * `kvm_get_supported_msrs` found, the banks from MCG_CAP); the others' indices added to `dropped`.
 */
function listedMsrsOnly(saved: SavedVcpu, listed: ReadonlySet<number>, dropped: Set<number>): SavedVcpu {
  const banks = Number(saved.mcgCap & 0xffn);
  const cmci = (saved.mcgCap & MCG_CMCI_P) !== 0n;
  let all = true;
  for (const m of saved.msrs) {
    if (listed.has(m.index) || isMceBankMsr(m.index, banks, cmci)) continue;
    dropped.add(m.index);
    all = false;
  }
  if (all) return saved;
  return { ...saved, msrs: saved.msrs.filter((m) => listed.has(m.index) || isMceBankMsr(m.index, banks, cmci)) };
}

/** Whether `index` is one of {@link mceBankMsrs}'s MSRs for `banks` banks (with MCi_CTL2 when `cmci`). */
function isMceBankMsr(index: number, banks: number, cmci: boolean): boolean {
  return (index >= MSR_IA32_MC0_CTL && index < MSR_IA32_MC0_CTL + 4 * banks) || (cmci && index >= MSR_IA32_MC0_CTL2 && index < MSR_IA32_MC0_CTL2 + banks);
}

/**
 * Move a VM made by {@link createRealModeVm} to another module (`devPath`, e.g. `/dev/kvm1`) over the same guest
 * memory: {@link saveVm}, {@link releaseRealModeVm} of the old one, {@link restoreVm} with its memory slot. The
 * vCPUs must be stopped. The old module is no longer used by the VM afterwards (it may be unloaded).
 *
 * @returns the VM on the new module (the same memory mapping)
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { KVM_EXIT_HLT, KVM_RUN, createRealModeVm, kvm, moveRealModeVm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * host.modprobe(kvm({ postfix: '1' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4] }); // hlt
 * const moved = moveRealModeVm(proc, vm, '/dev/kvm1');
 * host.rmmod('kvm0'); // the VM no longer uses kvm0
 * const vcpu = moved.vcpus[0]!;
 * proc.ioctl(vcpu.fd, KVM_RUN, 0);
 * console.log(vcpu.run.exit_reason === KVM_EXIT_HLT, moved.memory === vm.memory); // true true: on kvm1, same memory
 * ```
 */
export function moveRealModeVm(proc: Process, vm: RealModeVm, devPath: string, configure?: RestoreVmOptions['configure']): RealModeVm {
  const saved = saveVm(proc, vm);
  releaseRealModeVm(proc, vm);
  const slots = [{ slot: 0, flags: 0, guest_phys_addr: vm.guestPhysAddr, memory_size: vm.memory.length, userspace_addr: vm.memory.addr }];
  const next = restoreVm(proc, devPath, saved, configure === undefined ? { slots } : { slots, configure });
  return { sys: next.sys, vm: next.vm, memory: vm.memory, guestPhysAddr: vm.guestPhysAddr, vcpus: next.vcpus };
}
