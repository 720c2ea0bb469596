/**
 * A VMM process running one VM, as user space holds it: the process, its `/dev/kvmX` fd, the VM fd, each vCPU's fd
 * and mapped `kvm_run`, the guest memory (the VMM's own anonymous mapping, registered as a memory slot), the
 * capabilities it enabled — and one simulated thread per vCPU that loops on `KVM_RUN` and handles the exits.
 *
 * It is built only from the public ABI and the host's public API (`host.spawn`, `proc.open`, `proc.ioctl`,
 * `proc.mmap`, `host.scheduler.spawn`), on `@vac/kvm`'s VMM helpers ({@link createRealModeVcpu}). Pausing is what a
 * VMM does: `immediate_exit` set in each `kvm_run` and a signal to each vCPU thread, whose `KVM_RUN` returns EINTR;
 * the thread sees the pause and leaves its loop.
 *
 * @module
 */
import { O_RDWR, UsageError, isKernelError, memfdCreate, type Host, type Mapping, type Process, type Thread } from '@vac/core';
import type { VmmSandbox } from './sandbox.js';
import type { CoreAllocator } from './smt.js';
import {
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VM,
  KVM_ENABLE_CAP,
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_EXIT_IO_OUT,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_RUN,
  KVM_SEV_INIT,
  KVM_SET_MSRS,
  KVM_SET_USER_MEMORY_REGION,
  createRealModeVcpu,
  makeKvmEnableCap,
  type EnabledCap,
  type KvmRunView,
  type RealModeRegs,
  type VmHandle,
  type kvm_userspace_memory_region,
} from '@vac/kvm';

/** What a vCPU thread does after an exit: run the vCPU again, or stop (the vCPU is done, e.g. it halted). */
export type ExitAction = 'continue' | 'stop';

/** Handles one exit of one vCPU (`run` holds it); the default prints port output and stops at HLT. */
export type ExitHandler = (vmm: GuestVmm, vcpu: number, run: KvmRunView) => ExitAction;

/** An MSR value the VMM sets on every vCPU after creating it (KVM_SET_MSRS), as a guest's boot would leave it. */
export interface InitialMsr {
  /** The MSR index. */
  readonly index: number;
  /** Its value. */
  readonly data: bigint;
}

/** Options of {@link GuestVmm.create}. */
export interface GuestVmmOptions {
  /** The process name (`vmm01`); default `vmm<pid>`. */
  readonly name?: string;
  /** The module's device, e.g. `/dev/kvm0`. */
  readonly devPath: string;
  /** The guest code, copied to the start of guest memory (real mode, run from `guestPhysAddr`). */
  readonly code: ArrayLike<number>;
  /** vCPUs (ids 0, 1, …). Default 1. */
  readonly vcpus?: number;
  /** Guest memory size (a multiple of 4096). Default 0x1000. */
  readonly memorySize?: number;
  /** Guest-physical address of the memory slot and the vCPUs' RIP. Default 0x1000. */
  readonly guestPhysAddr?: number;
  /** Registers of each vCPU (see `createRealModeVcpu`). */
  readonly regs?: RealModeRegs;
  /** The CPU of vCPU 0's thread; vCPU i runs on CPU `(cpu + i) % cpus`. Default 0. */
  readonly cpu?: number;
  /** Capabilities enabled on the VM before its vCPUs (KVM_ENABLE_CAP), in order; a move enables them again. */
  readonly enabledCaps?: readonly EnabledCap[];
  /**
   * The in-kernel interrupt controllers: `'kernel'` (KVM_CREATE_IRQCHIP: PIC, IOAPIC, LAPICs) or `'split'`
   * (KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP), 24 pins), made after the capabilities, before the vCPUs. Default none.
   * With an in-kernel LAPIC a HLT waits in the kernel instead of exiting to the VMM.
   */
  readonly irqchip?: 'kernel' | 'split';
  /** MSRs set on each vCPU once created. */
  readonly msrs?: readonly InitialMsr[];
  /**
   * Back the guest memory with a memfd (`memfd_create`, `ftruncate`, a shared mapping) instead of anonymous memory,
   * as QEMU's `memory-backend-memfd`: another VMM process can then adopt it ({@link moveByHandoff}). Default false.
   */
  readonly memfd?: boolean;
  /**
   * Make the VM an SEV guest (KVM_MEMORY_ENCRYPT_OP with `KVM_SEV_INIT` right after KVM_CREATE_VM, as QEMU's
   * `sev-guest` object does): its memory is encrypted with a key bound to its SEV ASID, so a move hands the
   * encryption context over (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM) instead of re-creating it — possible between modules
   * only when VAC mediates (`vac.cross_module_moves=Y`). Needs an AMD host with SEV. Default false.
   */
  readonly sev?: boolean;
  /**
   * The process the VMM is started under (`host.spawn({ parent })`): it shares the parent's mount namespace and
   * device cgroup, as a VMM a container runtime starts does ({@link VmmSandbox.launcher}). Default none (the host's).
   */
  readonly parent?: Process;
  /**
   * The CPU of each vCPU's thread, by vCPU id (its length must be `vcpus`), e.g. from {@link CoreAllocator}; overrides
   * `cpu`.
   */
  readonly vcpuCpus?: readonly number[];
  /** What the vCPU threads do with exits. Default {@link defaultExitHandler}. */
  readonly onExit?: ExitHandler;
}

/**
 * The default exit handler: port output (`KVM_EXIT_IO`, direction out) is appended to {@link GuestVmm.output},
 * `KVM_EXIT_HLT` stops the vCPU, anything else is noted in {@link GuestVmm.problems} and stops it.
 */
export function defaultExitHandler(vmm: GuestVmm, vcpu: number, run: KvmRunView): ExitAction {
  if (run.exit_reason === KVM_EXIT_IO && run.io.direction === KVM_EXIT_IO_OUT) {
    const { size, count, data_offset: at } = run.io;
    for (let i = 0; i < size * count; i++) vmm.output.push(run.bytes[at + i] ?? 0);
    return 'continue';
  }
  if (run.exit_reason === KVM_EXIT_HLT) return 'stop';
  vmm.problems.push(`vCPU ${vcpu}: unexpected exit ${run.exit_reason}`);
  return 'stop';
}

/** The VM a {@link GuestVmm} runs now: which module, its fds, its vCPUs' `kvm_run` mappings. */
export interface VmIncarnation {
  /** The module's device. */
  readonly devPath: string;
  /** The fds. */
  readonly handle: VmHandle;
  /** Each vCPU's `kvm_run` mapping, in vCPU order (they hold the vCPU files). */
  readonly runMappings: readonly Mapping[];
}

/** `struct kvm_msrs` with `entries`. */
function msrsBytes(entries: readonly InitialMsr[]): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(8 + 16 * entries.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    v.setUint32(8 + 16 * i, e.index, true);
    v.setBigUint64(8 + 16 * i + 8, e.data, true);
  });
  return b;
}

/** A VMM process running one VM on simulated vCPU threads (see the module comment). */
export class GuestVmm {
  /** The host. */
  readonly host: Host;
  /** The VMM process. */
  readonly proc: Process;
  /** The guest memory (the VMM's own mapping; every incarnation of the VM registers it). */
  readonly memory: Mapping;
  /** The memfd behind the guest memory (the `memfd` option), or `undefined` for anonymous memory. */
  readonly memfd: number | undefined;
  /** The memory slots, as registered with every incarnation. */
  readonly slots: readonly kvm_userspace_memory_region[];
  /** The capabilities the VMM enabled on the VM, in order. */
  readonly enabledCaps: readonly EnabledCap[];
  /** Whether the VM is an SEV guest (the `sev` option). */
  readonly sev: boolean;
  /** The CPU of each vCPU's thread, by vCPU id. */
  readonly vcpuCpus: readonly number[];
  /** The bytes the guest wrote to I/O ports, in order (the default exit handler fills it). */
  readonly output: number[] = [];
  /** What went wrong in the vCPU threads (an unexpected exit, an error from KVM_RUN). */
  readonly problems: string[] = [];
  /** vCPUs that stopped (halted); they are not run again. */
  readonly stopped = new Set<number>();
  readonly #onExit: ExitHandler;
  #now: VmIncarnation;
  readonly #threads = new Map<number, Thread>();
  #pausing = false;

  private constructor(host: Host, proc: Process, memory: Mapping, memfd: number | undefined, slots: readonly kvm_userspace_memory_region[], caps: readonly EnabledCap[], now: VmIncarnation, vcpuCpus: readonly number[], sev: boolean, onExit: ExitHandler) {
    this.host = host;
    this.proc = proc;
    this.memory = memory;
    this.memfd = memfd;
    this.slots = slots;
    this.enabledCaps = caps;
    this.sev = sev;
    this.vcpuCpus = vcpuCpus;
    this.#now = now;
    this.#onExit = onExit;
  }

  /**
   * Spawn a VMM process (uid 1000, group `kvm`) and build its VM: open `devPath`, KVM_CREATE_VM, the guest memory
   * with `code` registered as slot 0, the enabled capabilities, then each vCPU (`createRealModeVcpu`) and its MSRs.
   * The vCPUs do not run until {@link GuestVmm.start}.
   *
   * @throws `KernelError` from the first failing call (the process is killed, so nothing is left behind)
   */
  static create(host: Host, options: GuestVmmOptions): GuestVmm {
    const { devPath, code, vcpus = 1, memorySize = 0x1000, guestPhysAddr = 0x1000, regs = {}, cpu = 0, enabledCaps = [], msrs = [] } = options;
    if (!Number.isSafeInteger(vcpus) || vcpus < 1) throw new UsageError('ERR_OUT_OF_RANGE', `GuestVmm: vcpus must be a positive integer, got ${String(vcpus)}`);
    const cpus = host.cpus.length;
    if (options.vcpuCpus !== undefined && options.vcpuCpus.length !== vcpus) throw new UsageError('ERR_INVALID_ARG', `GuestVmm: vcpuCpus has ${options.vcpuCpus.length} CPUs for ${vcpus} vCPUs`);
    const vcpuCpus = options.vcpuCpus?.map((c) => host.checkCpu(c)) ?? Array.from({ length: vcpus }, (_, i) => (host.checkCpu(cpu) + i) % cpus);
    const proc = host.spawn({ uid: 1000, groups: ['kvm'], cpu: vcpuCpus[0] as number, ...(options.name === undefined ? {} : { name: options.name }), ...(options.parent === undefined ? {} : { parent: options.parent }) });
    try {
      const sys = proc.open(devPath, O_RDWR);
      const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
      if (options.sev === true) proc.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, { id: KVM_SEV_INIT, data: 0, error: 0, sev_fd: 0 });
      let memfd: number | undefined;
      if (options.memfd === true) {
        memfd = memfdCreate(proc, 'guest-ram');
        proc.ftruncate(memfd, memorySize);
      }
      const memory = memfd === undefined ? proc.mmapAnonymous(memorySize) : proc.mmap(memfd, memorySize);
      memory.bytes.set(Array.from(code));
      const slot: kvm_userspace_memory_region = { slot: 0, flags: 0, guest_phys_addr: guestPhysAddr, memory_size: memorySize, userspace_addr: memory.addr };
      proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, slot);
      for (const { cap, flags } of enabledCaps) proc.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap, args: [flags, 0n, 0n, 0n] }));
      if (options.irqchip === 'kernel') proc.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
      else if (options.irqchip === 'split') proc.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_SPLIT_IRQCHIP, args: [24n, 0n, 0n, 0n] }));
      const made = Array.from({ length: vcpus }, (_, id) => createRealModeVcpu(proc, sys, vm, { id, guestPhysAddr, regs }));
      if (msrs.length > 0) {
        for (const v of made) {
          if (proc.ioctl(v.fd, KVM_SET_MSRS, msrsBytes(msrs)) !== msrs.length) throw new UsageError('ERR_INVALID_STATE', `GuestVmm: ${devPath} refused one of the initial MSRs`);
        }
      }
      const vcpuFds = made.map((v) => ({ id: v.id, fd: v.fd, run: v.run }));
      const handle: VmHandle = options.irqchip === undefined ? { sys, vm, vcpus: vcpuFds } : { sys, vm, vcpus: vcpuFds, irqchip: { mode: options.irqchip } };
      const now = { devPath, handle, runMappings: made.map((v) => v.runMapping) };
      return new GuestVmm(host, proc, memory, memfd, [slot], [...enabledCaps], now, vcpuCpus, options.sev === true, options.onExit ?? defaultExitHandler);
    } catch (e) {
      proc.kill();
      throw e;
    }
  }

  /**
   * The VMM that took `previous`'s VM over in another process (a handoff: {@link moveByHandoff}): `proc` with the
   * guest memory mapped at its own address, its slots and the VM it restored. It goes on with `previous`'s output,
   * stopped vCPUs, exit handler and CPUs; its threads do not run until {@link GuestVmm.start}.
   */
  static successor(previous: GuestVmm, proc: Process, memory: Mapping, memfd: number, slots: readonly kvm_userspace_memory_region[], now: VmIncarnation): GuestVmm {
    const next = new GuestVmm(previous.host, proc, memory, memfd, slots, previous.enabledCaps, now, previous.vcpuCpus, previous.sev, previous.#onExit);
    next.output.push(...previous.output);
    next.problems.push(...previous.problems);
    for (const id of previous.stopped) next.stopped.add(id);
    return next;
  }

  /** The process name. */
  get name(): string {
    return this.proc.name;
  }

  /** The VM it runs now. */
  get current(): VmIncarnation {
    return this.#now;
  }

  /** The module's device it runs on now. */
  get devPath(): string {
    return this.#now.devPath;
  }

  /** Whether any vCPU thread is alive. */
  get running(): boolean {
    for (const t of this.#threads.values()) if (t.alive) return true;
    return false;
  }

  /** The guest's port output as text (bytes as Latin-1). */
  get outputText(): string {
    return String.fromCharCode(...this.output);
  }

  /** Start a thread for each vCPU that has not stopped (a no-op for those already running). */
  start(): void {
    this.#pausing = false;
    for (const v of this.#now.handle.vcpus) {
      if (this.stopped.has(v.id) || this.#threads.get(v.id)?.alive === true) continue;
      this.#threads.set(v.id, this.#spawn(v.id, v.fd, v.run, this.vcpuCpus[v.id] as number));
    }
  }

  #spawn(id: number, fd: number, run: KvmRunView, cpu: number): Thread {
    const self = this;
    const dev = this.#now.devPath.replace('/dev/', '');
    return this.host.scheduler.spawn(this.proc, { cpu, name: `${this.proc.name}/vcpu${id}@${dev}` }, function* (t) {
      for (;;) {
        if (self.#pausing) return;
        try {
          yield* t.ioctl(fd, KVM_RUN, 0);
        } catch (e) {
          if (isKernelError(e, 'EINTR')) continue;
          self.problems.push(`vCPU ${id}: KVM_RUN: ${(e as Error).message}`);
          self.stopped.add(id);
          return;
        }
        if (self.#onExit(self, id, run) === 'stop') {
          self.stopped.add(id);
          return;
        }
        yield* t.yield();
      }
    });
  }

  /**
   * Pause the VM as a VMM does: `immediate_exit` = 1 in each `kvm_run` and a signal to each vCPU thread; the host's
   * scheduler ticks until every thread has left `KVM_RUN` and its loop. Returns the ticks it took.
   *
   * @throws UsageError `ERR_INVALID_STATE` when the threads have not stopped after `maxTicks`
   */
  pause(maxTicks = 10_000): number {
    this.#pausing = true;
    const live = [...this.#threads.values()].filter((t) => t.alive);
    for (const v of this.#now.handle.vcpus) v.run.immediate_exit = 1;
    for (const t of live) t.signal();
    let ticks = 0;
    while (live.some((t) => t.alive)) {
      if (ticks === maxTicks) throw new UsageError('ERR_INVALID_STATE', `${this.name}: the vCPU threads did not stop within ${maxTicks} ticks`);
      this.host.scheduler.tick();
      ticks++;
    }
    for (const v of this.#now.handle.vcpus) v.run.immediate_exit = 0;
    this.#threads.clear();
    return ticks;
  }

  /** Switch to another incarnation of the VM (what a move does once the target holds the state); the VM must be paused. */
  adopt(next: VmIncarnation): void {
    if (this.running) throw new UsageError('ERR_INVALID_STATE', `${this.name}: adopt() needs the VM paused`);
    this.#now = next;
  }

  /**
   * Give the VM back: pause it, unmap each `kvm_run`, close the vCPU fds, the VM fd and the `/dev/kvmX` fd, then
   * end the process. The module is no longer used by it.
   */
  shutdown(): void {
    this.pause();
    this.proc.kill();
  }
}
