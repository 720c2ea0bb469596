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
import { O_RDWR, type Mapping, type Process } from '@vac/core';
import {
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_SREGS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
} from './abi/constants.js';
import { KvmRunView } from './abi/kvm-run.js';
import { makeKvmRegs, makeKvmSregs, type kvm_regs } from './abi/structs.js';

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
 * const fd = proc.ioctl(vm, KVM_CREATE_VCPU, 0);
 * const run = mapKvmRun(proc, sys, fd);
 * proc.ioctl(fd, KVM_RUN, 0);
 * console.log(run.exit_reason);
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
 * const sys = proc.open('/dev/kvm0', O_RDWR);
 * const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
 * // ... KVM_SET_USER_MEMORY_REGION, KVM_MEMORY_ENCRYPT_OP, ...
 * const { fd, run } = createRealModeVcpu(proc, sys, vm, { regs: { rbx: 2n } });
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
 * const proc = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
 * const HELLO = [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4];
 * const { vcpus } = createRealModeVm(proc, '/dev/kvm0', { code: HELLO, regs: { rax: 2n, rbx: 2n } });
 * const { fd, run } = vcpus[0]!;
 * let out = '';
 * for (;;) {
 *   proc.ioctl(fd, KVM_RUN, 0);
 *   if (run.exit_reason !== KVM_EXIT_IO) break;
 *   out += String.fromCharCode(run.bytes[run.io.data_offset] ?? 0);
 * }
 * // out === '4\n', run.exit_reason === KVM_EXIT_HLT
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
  return { sys, vm, memory, vcpus };
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
 * const old = createRealModeVm(proc, '/dev/kvm0', { code: HELLO });
 * releaseRealModeVm(proc, old);
 * host.rmmod('kvm0'); // nothing of the VMM holds kvm0 any more
 * ```
 */
export function releaseRealModeVm(proc: Process, vm: RealModeVm): void {
  for (const v of vm.vcpus) proc.munmap(v.runMapping.addr, v.runMapping.length);
  for (const v of vm.vcpus) proc.close(v.fd);
  proc.close(vm.vm);
  proc.close(vm.sys);
}
