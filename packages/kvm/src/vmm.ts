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
  KVM_CAP_SREGS2,
  KVM_CAP_NESTED_STATE,
  KVM_CAP_XCRS,
  KVM_CHECK_EXTENSION,
  KVM_GET_LAPIC,
  KVM_SET_LAPIC,
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
import { msrIndexList, msrListSet, restorableMsrs, restoreLapic, restoreVcpuRegisters, restoreVcpuSetup, saveVcpu, type SavedVcpu } from './vmm-vcpu.js';

import { enableSavedDirtyRing, harvestDirtyRings, type DirtyRingConfig, type SavedDirtyRing } from './vmm-dirty-ring.js';

export type { DirtyRingConfig, HarvestedPage, SavedDirtyRing } from './vmm-dirty-ring.js';
export { msrIndexList, parseSavedVcpu, restoreVcpu, saveVcpu, savedVcpuOf, type ParsedSavedVcpu, type SavedVcpu } from './vmm-vcpu.js';
import { createIrqchip, restoreIrqchipState, saveIrqchip, type IrqchipConfig, type SavedIrqchip } from './vmm-irqchip.js';

export { parseSavedIrqchip, savedIrqchipOf, type IrqchipConfig, type ParsedSavedIrqchip, type SavedIrqchip } from './vmm-irqchip.js';
import { KVM_CPUID_ENTRY2_CODEC, KVM_REGS_CODEC, KVM_SEGMENT_CODEC, KVM_SREGS_CODEC, makeKvmRegs, type kvm_cpuid_entry2, type kvm_msr_entry, type kvm_regs, type kvm_sregs, type kvm_userspace_memory_region } from './abi/structs.js';
import { argBytes, structArg } from './vmm-args.js';
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

/** Where CS's base and selector lie in `struct kvm_sregs` (`cs` is a `struct kvm_segment`). */
const CS_BASE_AT = KVM_SREGS_CODEC.offsetOf('cs') + KVM_SEGMENT_CODEC.offsetOf('base');
const CS_SELECTOR_AT = KVM_SREGS_CODEC.offsetOf('cs') + KVM_SEGMENT_CODEC.offsetOf('selector');

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
  // The C bytes of `struct kvm_sregs`, as a C VMM passes them (an object would be copied field by field through the
  // kernel's own-data checks): CS's base and selector zeroed in place.
  const sregs = argBytes(KVM_SREGS_CODEC.size);
  proc.ioctl(fd, KVM_GET_SREGS, sregs);
  const view = new DataView(sregs.buffer, sregs.byteOffset, sregs.byteLength);
  view.setBigUint64(CS_BASE_AT, 0n, true);
  view.setUint16(CS_SELECTOR_AT, 0, true);
  proc.ioctl(fd, KVM_SET_SREGS, sregs);
  const extra = typeof regs === 'function' ? regs(id) : regs;
  proc.ioctl(fd, KVM_SET_REGS, structArg(KVM_REGS_CODEC, makeKvmRegs({ rip: BigInt(guestPhysAddr), rflags: 2n, ...extra })));
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
 * A whole VM's KVM state: kvmclock, the in-kernel interrupt controllers and each vCPU (the memory is the VMM's and is
 * handed over, not saved).
 */
export interface SavedVm {
  /** KVM_GET_CLOCK. */
  readonly clock: kvm_clock_data;
  /** The in-kernel irqchip, PIT and routing, where the VM has them. */
  readonly irqchip?: SavedIrqchip | undefined;
  /** The dirty ring's configuration and what the save harvested from it, where the VM has one. */
  readonly dirtyRing?: SavedDirtyRing | undefined;
  /** The vCPUs, in id order. */
  readonly vcpus: readonly SavedVcpu[];
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
 * import { KVM_EXIT_IO, KVM_RUN, completePendingIo, createRealModeVm, kvm, parseSavedVcpu, saveVcpu } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'] });
 * // 0x1000: mov dx, 0x3f8; 0x1003: in al, dx; 0x1004: hlt
 * const vm = createRealModeVm(proc, '/dev/kvm0', { code: [0xba, 0xf8, 0x03, 0xec, 0xf4] });
 * const { fd, run } = vm.vcpus[0]!;
 * proc.ioctl(fd, KVM_RUN, 0);
 * console.log(run.exit_reason === KVM_EXIT_IO, parseSavedVcpu(saveVcpu(proc, vm.sys, fd, 0)).regs.rip.toString(16)); // true '1003': the `in` is pending
 * run.bytes[run.io.data_offset] = 0x41; // the VMM's answer to the `in`
 * completePendingIo(proc, fd, run);
 * const regs = parseSavedVcpu(saveVcpu(proc, vm.sys, fd, 0)).regs;
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
  /**
   * The dirty ring the VMM enabled (KVM_CAP_DIRTY_LOG_RING / _ACQ_REL), which KVM cannot report: needed by
   * {@link saveVm} for a VM with a ring (it harvests and resets the rings first).
   */
  readonly dirtyRing?: DirtyRingConfig | undefined;
}

/**
 * Save a whole VM: each vCPU's pending I/O completed ({@link completePendingIo}), the dirty rings harvested and reset
 * where the VM has them (the handle's `dirtyRing`; QEMU's `kvm_dirty_ring_reap`), then kvmclock and every vCPU
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
  const dirtyRing = harvestDirtyRings(proc, vm.vm, vm.vcpus, vm.dirtyRing);
  const clock = makeKvmClockData();
  proc.ioctl(vm.vm, KVM_GET_CLOCK, clock);
  const msrs = msrIndexList(proc, vm.sys);
  const vcpus = vm.vcpus.map((v) => saveVcpu(proc, vm.sys, v.fd, v.id, msrs));
  const irqchip = saveIrqchip(proc, vm.vm, vm.irqchip, vcpus.some((v) => v.lapic !== undefined));
  return { clock, vcpus, ...(irqchip === undefined ? {} : { irqchip }), ...(dirtyRing === undefined ? {} : { dirtyRing }) };
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
 * a new VM with its dirty ring of the saved size (enabled before anything else, as QEMU's `kvm_init` does; it starts
 * empty, as the source's is after the save's reset) and the given memory slots, its irqchip, PIT and routing as the VMM made them, `configure`, each vCPU
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
  if (saved.dirtyRing !== undefined) enableSavedDirtyRing(proc, vm, saved.dirtyRing);
  for (const slot of options.slots) proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, slot);
  if (saved.irqchip !== undefined) createIrqchip(proc, vm, saved.irqchip);
  options.configure?.(proc, sys, vm);
  const listed = msrListSet(options.msrIndexList ?? msrIndexList(proc, sys));
  const dropped = new Set<number>();
  // QEMU's kvm_put_msrs sends what kvm_get_supported_msrs found, and the banks from MCG_CAP.
  const restorable = saved.vcpus.map((s) => restorableMsrs(s, listed, dropped));
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
