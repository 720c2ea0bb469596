/**
 * A vCPU: its registers, its `kvm_run` area, and the run loop (`kvm_arch_vcpu_ioctl_run` →
 * `vcpu_enter_guest`, arch/x86/kvm/x86.c; `vcpu_load` / `vcpu_put`, virt/kvm/kvm_main.c).
 *
 * KVM_RUN loads the vCPU on the caller's CPU (VMCS migration or a new ASID happen in the vendor's
 * `load`/`prepareEntry`), tells VAC which instance runs there, writes the guest's user-return MSRs, then
 * enters the guest: the real-mode interpreter executes the guest's machine code until an exit. Exits that
 * need user space (I/O, MMIO, HLT, failures) return; the rest (the end of a time slice) re-enter. On the way
 * out the vCPU is put and the user-return MSRs get their host values back.
 *
 * @module
 */
import { KernelError, PERF_GUEST_ACTIVE, vcpuLabel, type EventBus, type Syscall, type Thread, type VendorVcpu, type VcpuTag } from '@vac/core';
import {
  KVM_EXIT_DEBUG,
  KVM_EXIT_DIRTY_RING_FULL,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_EXIT_IRQ_WINDOW_OPEN,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_X86_RDMSR,
  KVM_EXIT_X86_WRMSR,
  KVM_INTERNAL_ERROR_EMULATION,
  KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
  KVM_MP_STATE_HALTED,
  KVM_MP_STATE_RUNNABLE,
  KVM_MP_STATE_UNINITIALIZED,
  KVM_PIO_DATA_OFFSET,
  KVM_RUN_X86_SMM,
  KVM_X86_DISABLE_EXITS_HLT,
} from '../abi/constants.js';
import { KVM_RUN_OFFSETS, type KvmRunView } from '../abi/kvm-run.js';
import { RUN_AREAS } from './kept-areas.js';
import { KVM_SREGS_CODEC, type kvm_regs, type kvm_sregs } from '../abi/structs.js';
import { GuestCpuState, GuestPending } from '../guest/cpu-state.js';
import { GuestExit, GuestExitReason } from '../guest/exit.js';
import { runGuest } from '../guest/interpreter.js';
import type { GuestMemory } from '../guest/memory.js';
import type { GuestPlatform } from '../guest/platform.js';
import { dirtyRingPass, type DirtyRing } from './dirty-ring.js';
import { kernelWrite } from './kernel-io.js';
import { rsm } from './smm.js';
import { ArchPlatform } from './vcpu-platform.js';
import { processRequests, VcpuRequest } from './vcpu-requests.js';
import { clearResumeFlag, resumeFlag, SINGLESTEP_DR6, writeDebugExit, type GuestDebug } from './vcpu-guest-debug.js';
import { vcpuArch } from './vcpu-arch.js';
import { readRegs, readSegments, writeRegs, writeSegments } from './regfile-copy.js';
import { loadSyncRegs, storeSyncRegs, syncRegsRequested } from './sync-regs.js';
import type { KvmInstance } from './instance.js';
import { kernelMmio, kernelPio } from './irqchip-io.js';
import { INTR_BLOCK, INTR_ENTER, VcpuIntr } from './vcpu-intr.js';
import type { Vm } from './vm.js';

// kvm_run field offsets, read once (the exit path writes them directly: it runs on every KVM_RUN).
const OFF_EXIT_REASON = KVM_RUN_OFFSETS.exit_reason;
const OFF_IO_DIRECTION = KVM_RUN_OFFSETS['io.direction'];
const OFF_IO_SIZE = KVM_RUN_OFFSETS['io.size'];
const OFF_IO_PORT = KVM_RUN_OFFSETS['io.port'];
const OFF_IO_COUNT = KVM_RUN_OFFSETS['io.count'];
const OFF_IO_DATA_OFFSET = KVM_RUN_OFFSETS['io.data_offset'];
const OFF_READY = KVM_RUN_OFFSETS.ready_for_interrupt_injection;
const OFF_IF_FLAG = KVM_RUN_OFFSETS.if_flag;
const OFF_RUN_FLAGS = KVM_RUN_OFFSETS.flags;
const OFF_CR8 = KVM_RUN_OFFSETS.cr8;
const OFF_APIC_BASE = KVM_RUN_OFFSETS.apic_base;
const OFF_REQUEST_WINDOW = KVM_RUN_OFFSETS.request_interrupt_window;
const OFF_MSR_ERROR = KVM_RUN_OFFSETS['msr.error'];
const OFF_MSR_REASON = KVM_RUN_OFFSETS['msr.reason'];
const OFF_IMMEDIATE_EXIT = KVM_RUN_OFFSETS.immediate_exit;
/** RFLAGS.IF. */
const X86_EFLAGS_IF = 0x200;
/** `KVM_RUN_X86_SMM`, as a constant of this module. */
const RUN_FLAGS_SMM = KVM_RUN_X86_SMM;

/** What one pass of the run loop ended with. */
const enum Step {
  /** An exit for user space is in `kvm_run`. */
  Exit,
  /** The time slice ended in guest mode; enter again. */
  Slice,
  /** An exit the kernel handled (an in-kernel device's port or MMIO access): enter again at once. */
  Again,
  /** The vCPU halted with an in-kernel irqchip: it blocks until woken. */
  Block,
}

/** Counters of one vCPU (the binary stats fd's names where they exist). */
export interface VcpuStats {
  /** VM entries. */
  entries: number;
  /** Exits to user space. */
  exits: number;
  /** `io_exits`. */
  io_exits: number;
  /** `mmio_exits`. */
  mmio_exits: number;
  /** `halt_exits`. */
  halt_exits: number;
  /** Exits caused by a PMI/NMI while in guest mode (`nmi_window`-like; handled in the kernel). */
  nmi_exits: number;
  /** `signal_exits`. */
  signal_exits: number;
  /** Guest instructions executed. */
  instructions: number;
  /** Times the vCPU was loaded on a different CPU than last time. */
  migrations: number;
  /** Times woken by a posted-interrupt wakeup. */
  pi_wakeups: number;
  /** Port and MMIO accesses the in-kernel devices handled (no exit to user space). */
  kernel_io: number;
}

/**
 * A vCPU's `kvm_sregs` at reset (kvm_vcpu_reset → vmx_vcpu_reset / init_vmcb; SDM Vol. 3A Table 10-1): the codec's
 * compiled zero with CR0, the GDT limit and the APIC base set (`makeKvmSregs` with the same values copies its
 * argument field by field through the generic path; every vCPU made paid that).
 */
function resetSregsObject(): kvm_sregs {
  const s = KVM_SREGS_CODEC.zero();
  s.cr0 = 0x60000010n;
  s.gdt.limit = 0xffff;
  s.apic_base = 0xfee00900n;
  return s;
}

/** A vCPU of a VM. */
export class Vcpu {
  /** The vCPU id. */
  readonly id: number;
  /** Its VM. */
  readonly vm: Vm;
  /** How VAC knows it. */
  readonly tag: VcpuTag;
  /** `kvm0/vm1/vcpu0`. */
  readonly label: string;
  /** The vendor half (VMCS + VPID, or VMCB + ASIDs). */
  readonly vendor: VendorVcpu;
  /** The guest's registers. */
  readonly regs = new GuestCpuState();
  /** The interpreter's exit record (reused; allocated at the first run). */
  get exit(): GuestExit {
    return (this.#exit ??= new GuestExit());
  }
  #exit: GuestExit | undefined;
  /**
   * `struct kvm_sregs` fields the interpreter does not use (TR, LDTR, CR8, EFER, APIC base, the interrupt
   * bitmap), created at the first KVM_GET_SREGS / KVM_SET_SREGS (a vCPU nobody asks about costs nothing).
   * The segment registers, GDTR, IDTR and CR0/CR2/CR3/CR4 live in {@link Vcpu.regs}, where the guest's
   * `lgdt`, `mov cr0` and the like change them; this object's copies of those fields are not used.
   */
  get sregs(): kvm_sregs {
    return (this.#sregs ??= resetSregsObject());
  }
  #sregs: kvm_sregs | undefined;
  /**
   * What `cpuid`, `rdmsr`/`wrmsr` and `rdtsc` of this vCPU answer from: its x86 state, the one the CPUID, MSR and
   * TSC ioctls get and set (`vcpu-platform.ts`).
   */
  get platform(): GuestPlatform {
    return (this.#platform ??= new ArchPlatform(this));
  }
  #platform: ArchPlatform | undefined;
  /** Counters. */
  readonly stats: VcpuStats = { entries: 0, exits: 0, io_exits: 0, mmio_exits: 0, halt_exits: 0, nmi_exits: 0, signal_exits: 0, instructions: 0, migrations: 0, pi_wakeups: 0, kernel_io: 0 };
  /** The CPU it is loaded on, or -1. */
  loadedOn = -1;
  /** The CPU it ran on last, or -1. */
  lastCpu = -1;
  /** True while it executes guest code (including between ticks of a threaded KVM_RUN). */
  inGuest = false;
  /** @internal Links of its module's per-CPU wakeup lists (see `wakeup-lists.ts`). */
  wakeupNext: Vcpu | undefined = undefined;
  /** @internal */
  wakeupPrev: Vcpu | undefined = undefined;
  /** @internal */
  wakeupCpu = -1;
  /** A request to leave guest mode (suspend, reboot, a kick). */
  kicked = false;
  /**
   * Work for the next KVM_RUN before it enters the guest (`vcpu->requests`: a triple fault, a kvmclock update, an
   * event to deliver; `VcpuRequest` of `vcpu-requests.ts`). 0 in the usual case, which keeps KVM_RUN's fast path.
   */
  requests = 0;
  /**
   * `HF_SMM_MASK`: the vCPU is in System Management Mode (`smm.ts`), and its memory — the interpreter's and KVM's own
   * accesses for it — is address space 1 (`kvm_arch_vcpu_memslots_id`).
   */
  smm = false;

  /** The guest memory the vCPU uses now (`kvm_vcpu_memslots`): address space 1 in SMM, else the VM's memory. */
  get memory(): GuestMemory {
    return this.smm ? this.vm.smmMemory : this.vm.guestMemory;
  }
  /** @internal The vCPU's dirty ring (`vcpu->dirty_ring`, dirty-ring.ts) when the VM has one, else `undefined`. */
  dirtyRing: DirtyRing | undefined = undefined;
  /**
   * @internal KVM_SET_GUEST_DEBUG's state while debugging is enabled (`vcpu->guest_debug`, `vcpu-guest-debug.ts`), else
   * `undefined` — which keeps KVM_RUN's usual path: the guest then runs one instruction at a time.
   */
  guestDebug: GuestDebug | undefined = undefined;
  /** The thread inside KVM_RUN, if any. */
  thread: Thread | undefined;
  /** Set once the vCPU is freed. */
  freed = false;

  /**
   * The CPU whose wakeup list holds it while blocked (halted with an in-kernel irqchip), or -1. Setting it moves the
   * vCPU between its module's per-CPU wakeup lists (`pi_enable_wakeup_handler` / `pi_disable_wakeup_handler`).
   */
  get blockedOn(): number {
    return this.wakeupCpu;
  }

  /** @internal Block on `cpu`'s wakeup list, or (with -1) leave it. */
  set blockedOn(cpu: number) {
    if (cpu === this.wakeupCpu) return;
    const lists = this.#instance.wakeupLists;
    lists.remove(this);
    if (cpu >= 0) lists.add(cpu, this);
  }

  /**
   * @internal Its interrupt state (`vcpu-intr.ts`): made at creation with an in-kernel irqchip (its LAPIC), else at
   * the first KVM_INTERRUPT, KVM_NMI or `request_interrupt_window`.
   */
  intr: VcpuIntr | undefined;
  #run: KvmRunView | undefined;
  /** The vendor half was loaded at the last `load` (VAC had the CPU enabled). */
  #vendorLoaded = false;
  readonly #instance: KvmInstance;
  readonly #events: EventBus;

  /** @internal Created by `KVM_CREATE_VCPU`. */
  constructor(instance: KvmInstance, vm: Vm, id: number, tag: VcpuTag, vendor: VendorVcpu) {
    this.#instance = instance;
    this.#events = instance.host.events;
    this.vm = vm;
    this.id = id;
    this.tag = tag;
    this.label = vcpuLabel(tag);
    this.vendor = vendor;
  }

  /** The `kvm_run` area, allocated on first use (as Linux allocates the page lazily on first fault). */
  get run(): KvmRunView {
    let r = this.#run;
    if (r === undefined) {
      r = RUN_AREAS.take();
      this.#run = r;
    }
    return r;
  }

  /** Whether the `kvm_run` area exists yet. */
  get runAllocated(): boolean {
    return this.#run !== undefined;
  }

  // ---- load / put ------------------------------------------------------------------------------

  /** `vcpu_load` on `cpu`. */
  load(cpu: number): void {
    // The usual KVM_RUN: put at the end of the last one, on the CPU it ran on then. The rest is out of line.
    if ((this.loadedOn >= 0 || this.lastCpu !== cpu) && this.#loadedOrMigrating(cpu)) return;
    const inst = this.#instance;
    inst.vac.vcpuLoad(cpu);
    this.loadedOn = cpu;
    this.lastCpu = cpu;
    inst.running[cpu] = this;
    // A CPU VAC has not turned on (a failed re-enable at resume, after a reboot): no VMPTRLD / VMCB load
    // there; the entry then fails with KVM_EXIT_FAIL_ENTRY.
    this.#vendorLoaded = inst.vac.isEnabled(cpu);
    if (this.#vendorLoaded) this.vendor.load(cpu);
    inst.loadGuestUserReturnMsrs(cpu);
    const seq = this.#events.stamp('vcpu:load');
    if (seq >= 0) this.#emit('vcpu:load', seq, cpu);
  }

  /**
   * The start of {@link Vcpu.load} when the vCPU is still loaded or comes from another CPU: true when it is loaded on
   * `cpu` already (nothing to do); else it is put from where it is loaded, and a move is counted.
   */
  #loadedOrMigrating(cpu: number): boolean {
    if (this.loadedOn === cpu) return true;
    if (this.loadedOn >= 0) this.put(this.loadedOn);
    if (this.lastCpu !== cpu && this.lastCpu >= 0) this.stats.migrations++;
    return false;
  }

  /** `vcpu_put` from the CPU it is loaded on. */
  put(cpu: number = this.loadedOn): void {
    if (this.loadedOn < 0 || cpu !== this.loadedOn) return;
    const inst = this.#instance;
    if (this.#vendorLoaded) this.vendor.put(cpu);
    this.#vendorLoaded = false;
    inst.vac.vcpuPut(cpu);
    if (inst.running[cpu] === this) inst.running[cpu] = undefined;
    this.loadedOn = -1;
    this.inGuest = false;
    const seq = this.#events.stamp('vcpu:put');
    if (seq >= 0) this.#emit('vcpu:put', seq, cpu);
  }

  /**
   * Emit `vcpu:load` / `vcpu:put` for someone listening. Kept out of `load` and `put` (as the other cold paths
   * of KVM_RUN are) so that those stay small enough for V8 to inline the whole round trip.
   */
  #emit(name: 'vcpu:load' | 'vcpu:put', seq: number, cpu: number): void {
    const ev = this.#events;
    ev.deliver(name, { seq, tick: ev.tick, module: this.tag.instance, vm: this.tag.vm, vcpu: this.id, cpu });
  }

  // ---- KVM_RUN ---------------------------------------------------------------------------------

  /** The checks and completions at the start of KVM_RUN. Returns false when the call ends here (EINTR). */
  #begin(): boolean {
    if (this.vm.dead) throw vmDead();
    // The usual case: no IN or MMIO read waiting for user space's data (an OUT completes in the guest step), no
    // immediate_exit.
    const p = this.regs.pending;
    const run = this.#run ?? this.run;
    const bytes = run.bytes;
    if ((p === GuestPending.None || p === GuestPending.PioOut) && bytes[OFF_IMMEDIATE_EXIT] === 0 && bytes[OFF_REQUEST_WINDOW] === 0 && this.requests === 0 && !syncRegsRequested(run)) return true;
    return this.#beginSlow();
  }

  /** The rest of {@link Vcpu.#begin}: an IN or MMIO read awaits user space's data, or `immediate_exit` is set. */
  #beginSlow(): boolean {
    const run = this.run;
    // KVM_CAP_SYNC_REGS: the sets of kvm_dirty_regs loaded first (sync-regs.ts); kvm_valid_regs stored on the way out.
    if (syncRegsRequested(run)) {
      this.#syncRegs = true;
      try {
        loadSyncRegs(this);
      } catch (e) {
        this.#storeRegs();
        throw e;
      }
    }
    if (run.request_interrupt_window !== 0 && this.intr === undefined) this.intr = new VcpuIntr(this, undefined);
    // complete_userspace_io: hand user space's answer to the instruction that exited.
    const p = this.regs.pending;
    if (p === GuestPending.PioIn) this.exit.data.set(run.bytes.subarray(KVM_PIO_DATA_OFFSET, KVM_PIO_DATA_OFFSET + 8));
    else if (p === GuestPending.MmioRead) this.exit.data.set(run.mmio.data.subarray(0, 8));
    else if (p === GuestPending.PioInString) {
      const r = this.regs;
      this.exit.stringData.set(run.bytes.subarray(KVM_PIO_DATA_OFFSET, KVM_PIO_DATA_OFFSET + r.pendingSize * r.pendingCount));
    }
    // complete_userspace_io of a KVM_EXIT_X86_RDMSR/WRMSR, before immediate_exit is looked at (as in Linux).
    if ((this.requests & VcpuRequest.CompleteUserspaceMsr) !== 0 && this.#completeUserspaceMsr()) return true;
    // complete_emulated_mmio / complete_emulated_pio: an MMIO read or a string IN finishes now, before the requests
    // and the events of the entry (an SMI, an NMI or an interrupt then comes after it). Under KVM_SET_GUEST_DEBUG the
    // debug loop re-executes it (its single step is that instruction).
    if ((p === GuestPending.MmioRead || p === GuestPending.PioInString) && this.guestDebug === undefined && this.#completeUserspaceIo(p)) return true;
    if (run.immediate_exit !== 0) {
      // KVM_CAP_IMMEDIATE_EXIT: pending operations are completed, then EINTR without entering the guest;
      // `exit_reason` keeps what the last exit put there (kvm_arch_vcpu_ioctl_run: !vcpu->wants_to_run → -EINTR).
      if (p !== GuestPending.None) runGuest(this.regs, this.memory, 0, this.exit, this.vm.quirks, this.platform);
      this.#storeRegs();
      return false;
    }
    // vcpu_enter_guest's requests (a triple fault exits right away: the exit is in kvm_run).
    if (this.requests !== 0 && processRequests(this)) {
      this.#pendingExit = true;
    }
    return true;
  }

  /**
   * `complete_emulated_msr_access` / `complete_fast_msr_access`: the RDMSR or WRMSR that exited to user space (RIP still
   * at it) executes once more, taking `kvm_run.msr.error` (#GP when non-zero) and, for RDMSR, `msr.data` into EDX:EAX.
   * Returns true when that produced an exit for user space (delivering the #GP needed MMIO, or shut down): KVM_RUN
   * then returns it without entering the guest.
   */
  #completeUserspaceMsr(): boolean {
    this.requests &= ~VcpuRequest.CompleteUserspaceMsr;
    const platform = this.#platform as ArchPlatform;
    const msr = this.run.msr;
    platform.beginCompletion(msr.error !== 0, msr.data);
    const reason = runGuest(this.regs, this.memory, 1, this.exit, this.vm.quirks, platform);
    platform.endCompletion();
    const executed = this.exit.executed;
    this.stats.instructions += executed;
    this.#instance.host.clock.advanceInstructions(executed);
    if (reason === GuestExitReason.Budget) {
      // kvm_skip_emulated_instruction → kvm_vcpu_do_singlestep: the completed RDMSR/WRMSR is a single step.
      const dbg = this.guestDebug;
      if (dbg === undefined || !dbg.singlestep) return false;
      writeDebugExit(this.run, 1, BigInt(this.regs.csBase + this.regs.eip), SINGLESTEP_DR6, dbg.dr7);
      this.run.exit_reason = KVM_EXIT_DEBUG;
    } else if (this.#exitToUser(reason) !== Step.Exit) return false;
    this.#pendingExit = true;
    return true;
  }

  /**
   * `complete_emulated_mmio` / `complete_emulated_pio` (`complete_emulated_io`): the instruction whose MMIO read
   * user space answered is executed again with the data, or the string IN's data is stored (a REP INS with more to
   * go stays at the instruction). Returns true when that produced an exit for user space (another MMIO read): KVM_RUN
   * then returns it without entering the guest.
   */
  #completeUserspaceIo(p: number): boolean {
    const exit = this.exit;
    const reason = runGuest(this.regs, this.memory, p === GuestPending.MmioRead ? 1 : 0, exit, this.vm.quirks, this.platform);
    const executed = exit.executed;
    this.stats.instructions += executed;
    this.#instance.host.clock.advanceInstructions(executed);
    if (reason === GuestExitReason.Budget || this.#exitToUser(reason) !== Step.Exit) return false;
    this.#pendingExit = true;
    return true;
  }

  /** `kvm_msr_user_space`: the access the platform handed to user space, in `kvm_run.msr`. */
  #msrExit(): Step {
    const platform = this.#platform as ArchPlatform;
    const access = platform.userExit;
    if (access === undefined) return this.#internal('an MSR exit without an access');
    const run = this.run;
    run.exit_reason = access.write ? KVM_EXIT_X86_WRMSR : KVM_EXIT_X86_RDMSR;
    const msr = run.msr;
    msr.error = 0;
    run.bytes.fill(0, OFF_MSR_ERROR + 1, OFF_MSR_REASON); // msr.pad[7]
    msr.reason = access.reason;
    msr.index = access.index;
    msr.data = access.data;
    this.requests |= VcpuRequest.CompleteUserspaceMsr;
    return Step.Exit;
  }

  /** A KVM_RUN asked for KVM_CAP_SYNC_REGS since the vCPU was created: {@link Vcpu.#storeRegs} looks at `kvm_valid_regs`. */
  #syncRegs = false;

  /** `store_regs` on the way out of KVM_RUN, when a KVM_RUN ever asked for sync registers. */
  #storeRegs(): void {
    if (this.#syncRegs) storeSyncRegs(this);
  }

  /** A request produced an exit for user space before the guest was entered (see {@link Vcpu.#beginSlow}). */
  #pendingExit = false;

  /**
   * One entry into the guest on `cpu` for up to `budget` instructions (`vcpu_enter_guest`).
   * @returns what the pass ended with
   */
  #enter(cpu: number, budget: number): Step {
    const vendor = this.vendor;
    // VAC did not turn virtualization on here (a failed re-enable at resume, a reboot): no entry.
    // Linux would try VMLAUNCH in whatever VMX operation is active; the model reports the failed entry.
    if (!this.#instance.vac.isEnabled(cpu)) return this.#failEntry(cpu, 0n);
    // Requests, a dirty ring, interrupt state: out of line (the usual run has none of them).
    let pass = budget;
    if (this.requests !== 0 || this.dirtyRing !== undefined || this.intr !== undefined) {
      pass = this.#beforeEntry(budget);
      if (pass < 0) return ~pass as Step;
    }
    const dbg = this.guestDebug;
    vendor.prepareEntry(cpu);
    const fail = vendor.enter(cpu);
    this.stats.entries++;
    if (fail !== undefined) return this.#failEntry(cpu, fail);
    this.inGuest = true;
    // The exit record and the platform read straight from their fields once they exist (their getters make them).
    const exit = this.#exit ?? this.exit;
    let reason: number;
    if (dbg === undefined) {
      reason = runGuest(this.regs, this.memory, pass, exit, this.vm.quirks, this.#platform ?? this.platform);
      if (this.vm.kernelIo && reason !== GuestExitReason.Budget) reason = this.#inKernelIo(reason, pass);
    } else reason = this.#runDebug(dbg, pass);
    vendor.exit(cpu);
    const executed = exit.executed;
    this.stats.instructions += executed;
    this.#instance.host.clock.advanceInstructions(executed);
    // A pass the dirty ring shortened goes on in the same slice.
    if (reason === GuestExitReason.Budget) return pass === budget ? Step.Slice : Step.Again;
    this.inGuest = false;
    return this.#exitToUser(reason);
  }

  /**
   * What {@link Vcpu.#enter} does before the entry when the vCPU has requests, a dirty ring or interrupt state, in
   * `vcpu_enter_guest`'s order. Returns the length of the pass (≤ `budget`), or `~step` (a negative number) when the
   * pass ends here with `step`.
   */
  #beforeEntry(budget: number): number {
    // vcpu_enter_guest: the requests made since the last entry (a WRMSR's KVM_REQ_CLOCK_UPDATE ends its run).
    if (this.requests !== 0) {
      // req_immediate_exit (this entry's requests were processed at KVM_RUN's start, or just now): the guest is
      // entered with the exception alone and leaves before its first instruction; the other requests wait.
      if ((this.requests & VcpuRequest.ImmediateExit) === 0 && processRequests(this)) return ~Step.Exit;
      if ((this.requests & VcpuRequest.ImmediateExit) !== 0) {
        this.requests &= ~VcpuRequest.ImmediateExit;
        return 0;
      }
    }
    // KVM_REQ_DIRTY_RING_SOFT_FULL: a ring at its soft limit exits; else the pass stops before it can pass it.
    let pass = budget;
    if (this.dirtyRing !== undefined && (pass = dirtyRingPass(this, this.dirtyRing, budget)) === 0) return ~this.#dirtyRingFull();
    if (this.intr !== undefined) {
      const s = this.#injectEvents(pass);
      if (s !== undefined) return ~s;
      // A re-injected NMI or interrupt with another event waiting: this entry is an immediate exit (vcpu-intr.ts).
      if ((this.requests & VcpuRequest.ImmediateExit) !== 0) {
        this.requests &= ~VcpuRequest.ImmediateExit;
        return 0;
      }
    }
    return pass;
  }

  /**
   * The interrupt part of an entry (`vcpu-intr.ts`): events injected, and for a user-space PIC that asked for the
   * interrupt window, KVM_EXIT_IRQ_WINDOW_OPEN once the guest can take an interrupt (the guest runs one instruction at
   * a time until then). Returns the pass's result when it ends here, `undefined` to enter.
   */
  #injectEvents(budget: number): Step | undefined {
    const intr = this.intr as VcpuIntr;
    const s = intr.beforeEntry(this.memory, this.exit);
    if (s === INTR_BLOCK) return Step.Block;
    if (s !== INTR_ENTER) return this.#exitToUserSlow(s);
    if (this.run.request_interrupt_window === 0 || this.vm.irq?.full === true || (this.requests & VcpuRequest.ImmediateExit) !== 0) return undefined;
    // dm_request_for_irq_injection && kvm_vcpu_ready_for_interrupt_injection
    if (intr.readyForInjection()) {
      intr.windowExits++;
      this.run.exit_reason = KVM_EXIT_IRQ_WINDOW_OPEN;
      return Step.Exit;
    }
    // The window is closed: run until it opens (the IRQ-window exit comes right after the instruction that opens it).
    for (let left = budget; left > 0; ) {
      const reason = runGuest(this.regs, this.memory, 1, this.exit, this.vm.quirks, this.platform);
      const executed = this.exit.executed;
      this.stats.instructions += executed;
      this.#instance.host.clock.advanceInstructions(executed);
      left -= Math.max(1, executed);
      if (reason !== GuestExitReason.Budget) return this.#exitToUser(reason);
      if (intr.readyForInjection()) {
        intr.windowExits++;
        this.run.exit_reason = KVM_EXIT_IRQ_WINDOW_OPEN;
        return Step.Exit;
      }
    }
    return Step.Slice;
  }

  /**
   * The guest under KVM_SET_GUEST_DEBUG (`vcpu-guest-debug.ts`): one instruction at a time, the breakpoints checked
   * before each and the single step reported after it. An IN or OUT that exited is completed first (that completion is
   * the instruction a single step reports); an MMIO read is re-executed without the breakpoint checks (it already
   * passed them). Returns a {@link GuestExitReason}, or `KVM_EXIT_DEBUG` with the exit written in `kvm_run`.
   */
  #runDebug(dbg: GuestDebug, budget: number): number {
    const r = this.regs;
    const mem = this.memory;
    const x = this.exit;
    const platform = this.platform as ArchPlatform;
    let executed = 0;
    let reason: number = GuestExitReason.Budget;
    for (let left = budget; left > 0; ) {
      platform.passExecuted = executed; // the TSC a guest instruction reads counts the pass's earlier steps
      const p = r.pending;
      const completing = p === GuestPending.PioIn || p === GuestPending.PioOut || p === GuestPending.PioInString;
      const resuming = completing || p === GuestPending.MmioRead || r.mmioCacheCount !== 0;
      const rf = resumeFlag(r.eflags);
      if (!resuming) {
        const lin = r.csBase + r.eip;
        const stop = dbg.before(lin, mem.read8(lin), rf);
        if (stop !== undefined) {
          if (stop.exception === 3) vcpuArch(this).eventExitInstLen = 1; // VM_EXIT_INSTRUCTION_LEN of the INT3
          writeDebugExit(this.run, stop.exception, BigInt(lin), stop.dr6, dbg.dr7);
          reason = KVM_EXIT_DEBUG;
          break;
        }
      }
      reason = runGuest(r, mem, completing ? 0 : 1, x, this.vm.quirks, platform);
      executed += x.executed;
      left -= Math.max(1, x.executed);
      if (rf && !completing) r.eflags = clearResumeFlag(r.eflags);
      if (reason !== GuestExitReason.Budget) {
        // A write an in-kernel device takes (ioeventfd, coalesced zone) completes at the next step, as a user-space one would.
        const kernelPioWrite = reason === GuestExitReason.Io && x.ioDirection === 1 && x.ioCount === 1;
        const kernelMmioWrite = reason === GuestExitReason.Mmio && x.mmioIsWrite !== 0;
        if (!this.vm.kernelIo || !(kernelPioWrite || kernelMmioWrite)) break;
        if (!(kernelPioWrite ? kernelWrite(this.vm, true, x.ioPort, x.ioSize, x.data) : kernelWrite(this.vm, false, x.mmioPhysAddr, x.mmioLen, x.data))) break;
        if (kernelPioWrite) this.stats.io_exits++; // handle_io counts it, whoever takes the write
        reason = GuestExitReason.Budget;
        continue;
      }
      if (dbg.singlestep) {
        writeDebugExit(this.run, 1, BigInt(r.csBase + r.eip), SINGLESTEP_DR6, dbg.dr7);
        reason = KVM_EXIT_DEBUG;
        break;
      }
    }
    platform.passExecuted = 0;
    x.executed = executed;
    return reason;
  }

  /**
   * Writes the kernel takes itself (an ioeventfd or a coalesced zone: `kernel-io.ts`) do not exit: the guest goes on
   * with the rest of its budget (`kernel_pio` / `vcpu_mmio_write` found a device on the bus). A string OUT of more
   * than one element always exits (the model does not split it). @returns the reason the guest finally stopped
   */
  #inKernelIo(reason: number, budget: number): number {
    const x = this.exit;
    let used = 0;
    for (;;) {
      const pio = reason === GuestExitReason.Io && x.ioDirection === 1 && x.ioCount === 1;
      const mmio = reason === GuestExitReason.Mmio && x.mmioIsWrite !== 0;
      if (!pio && !mmio) return reason;
      const handled = pio ? kernelWrite(this.vm, true, x.ioPort, x.ioSize, x.data) : kernelWrite(this.vm, false, x.mmioPhysAddr, x.mmioLen, x.data);
      if (!handled) return reason;
      if (pio) this.stats.io_exits++; // handle_io counts it, whoever takes the write
      used += x.executed;
      this.stats.instructions += x.executed;
      this.#instance.host.clock.advanceInstructions(x.executed);
      // The write is done; the next run completes the instruction (an OUT or MMIO write completes in the guest step).
      reason = runGuest(this.regs, this.memory, Math.max(budget - used, 0), x, this.vm.quirks, this.platform);
    }
  }

  /** `kvm_dirty_ring_check_request`: KVM_EXIT_DIRTY_RING_FULL without entering the guest. */
  #dirtyRingFull(): Step {
    this.run.exit_reason = KVM_EXIT_DIRTY_RING_FULL;
    return Step.Exit;
  }

  /** `KVM_EXIT_FAIL_ENTRY` with `hardware_entry_failure_reason = reason`. */
  #failEntry(cpu: number, reason: bigint): Step {
    const run = this.run;
    run.exit_reason = KVM_EXIT_FAIL_ENTRY;
    run.fail_entry.hardware_entry_failure_reason = reason;
    run.fail_entry.cpu = cpu;
    return Step.Exit;
  }

  #exitToUser(reason: number): Step {
    // The hottest exit, I/O, on its own; the others are in #exitToUserSlow, off the inlined path.
    if (reason !== GuestExitReason.Io) return this.#exitToUserSlow(reason);
    // The fields, not their getters (a guest ran, so both exist): the getters were a call each, not inlined.
    const run = this.#run ?? this.run;
    const x = this.#exit ?? this.exit;
    const irq = this.vm.irq;
    // handle_io / io_interception count every port I/O exit, the ones the in-kernel devices complete too.
    this.stats.io_exits++;
    if (irq !== undefined && kernelPio(irq, x, this.regs)) {
      this.stats.kernel_io++;
      return Step.Again;
    }
    // Written straight into the mapped kvm_run (same bytes as run.io.*).
    const dv = run.view;
    dv.setUint32(OFF_EXIT_REASON, KVM_EXIT_IO, true);
    dv.setUint8(OFF_IO_DIRECTION, x.ioDirection);
    dv.setUint8(OFF_IO_SIZE, x.ioSize);
    dv.setUint16(OFF_IO_PORT, x.ioPort, true);
    dv.setUint32(OFF_IO_COUNT, x.ioCount, true);
    dv.setUint32(OFF_IO_DATA_OFFSET, KVM_PIO_DATA_OFFSET, true);
    dv.setUint32(OFF_IO_DATA_OFFSET + 4, 0, true);
    if (x.ioDirection === 1) {
      const bytes = run.bytes;
      const src = x.data;
      const n = x.ioSize * x.ioCount;
      for (let i = 0; i < n; i++) bytes[KVM_PIO_DATA_OFFSET + i] = src[i] as number;
    }
    return Step.Exit;
  }

  #exitToUserSlow(reason: number): Step {
    const run = this.run;
    const x = this.exit;
    switch (reason) {
      case GuestExitReason.Hlt:
        // KVM_X86_DISABLE_EXITS_HLT: HLT does not exit; the vCPU halts in guest mode until something wakes it.
        if ((vcpuArch(this).disabledExits & KVM_X86_DISABLE_EXITS_HLT) !== 0) return Step.Block;
        this.stats.halt_exits++;
        if (this.vm.irq !== undefined) {
          // __kvm_emulate_halt with an in-kernel LAPIC: KVM_MP_STATE_HALTED (what KVM_GET_MP_STATE reports and a
          // restore sets), then vcpu_block until an event makes it RUNNABLE again (vcpu-intr.ts beforeEntry).
          (this.intr as VcpuIntr).mpState = KVM_MP_STATE_HALTED;
          return Step.Block;
        }
        run.exit_reason = KVM_EXIT_HLT;
        return Step.Exit;
      case GuestExitReason.Mmio: {
        const irq = this.vm.irq;
        if (irq !== undefined && kernelMmio(irq, this.intr as VcpuIntr, x)) {
          this.stats.kernel_io++;
          return Step.Again;
        }
        const slot = this.vm.memslots.slotAt(x.mmioPhysAddr);
        if (slot !== undefined && !slot.backed) {
          throw new KernelError('EFAULT', 'KVM_RUN', `guest memory at 0x${x.mmioPhysAddr.toString(16)} is not mapped in the VMM`);
        }
        run.exit_reason = KVM_EXIT_MMIO;
        const m = run.mmio;
        m.phys_addr = x.mmioPhysAddr;
        m.len = x.mmioLen;
        m.is_write = x.mmioIsWrite;
        m.data.fill(0);
        if (x.mmioIsWrite !== 0) m.data.set(x.data.subarray(0, x.mmioLen));
        this.stats.mmio_exits++;
        return Step.Exit;
      }
      case GuestExitReason.Shutdown:
        run.exit_reason = KVM_EXIT_SHUTDOWN;
        return Step.Exit;
      case GuestExitReason.X86Rdmsr:
      case GuestExitReason.X86Wrmsr:
        return this.#msrExit();
      case GuestExitReason.Rsm:
        // em_rsm: the state is loaded from SMRAM (a failure becomes a triple fault at the next entry); the guest goes on.
        rsm(this);
        return Step.Again;
      case KVM_EXIT_DEBUG: // written by #runDebug
        run.exit_reason = KVM_EXIT_DEBUG;
        return Step.Exit;
      default:
        return this.#internal(x.detail);
    }
  }

  #internal(detail: string): Step {
    const run = this.run;
    const x = this.exit;
    this.inGuest = false;
    run.exit_reason = KVM_EXIT_INTERNAL_ERROR;
    // prepare_emulation_failure_exit: data[0] is the flags, then (with the instruction bytes) insn_size and
    // insn_bytes (two words, NOP-padded), then the five words of the vendor's exit info (get_exit_info: none in
    // the model, zeros), then no extra data: ndata = 1 + 2 + 5 or 1 + 5.
    const ef = run.emulation_failure;
    ef.suberror = KVM_INTERNAL_ERROR_EMULATION;
    let infoStart = 1;
    ef.flags = 0;
    if (x.insnSize > 0 && detail === x.detail) {
      infoStart += 2;
      ef.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
      ef.insn_size = x.insnSize;
      ef.insn_bytes.fill(0x90);
      ef.insn_bytes.set(x.insnBytes.subarray(0, x.insnSize));
    }
    for (let i = 0; i < 5; i++) run.internal.setData(infoStart + i, 0n);
    ef.ndata = infoStart + 5;
    return Step.Exit;
  }

  #finish(cpu: number): void {
    this.stats.exits++;
    this.#storeRegs();
    this.#postRunSave();
    const seq = this.#events.stamp('vcpu:exit');
    if (seq >= 0) this.#emitExit(seq, cpu);
  }

  /**
   * `post_kvm_run_save`: what user space reads in `kvm_run` after every KVM_RUN — `if_flag`, `cr8`, `apic_base`, and
   * `ready_for_interrupt_injection` (always 1 with an in-kernel PIC).
   */
  #postRunSave(): void {
    const dv = (this.#run ?? this.run).view;
    const r = this.regs;
    const intr = this.intr;
    dv.setUint8(OFF_IF_FLAG, (r.eflags & X86_EFLAGS_IF) !== 0 ? 1 : 0);
    dv.setUint16(OFF_RUN_FLAGS, this.smm ? RUN_FLAGS_SMM : 0, true);
    // With interrupt state (an in-kernel irqchip, or a user-space PIC's requests) the rest is out of line.
    if (intr !== undefined) {
      this.#postRunSaveIntr(dv, intr);
      return;
    }
    dv.setUint8(OFF_READY, (r.eflags & X86_EFLAGS_IF) !== 0 && r.interruptShadow === 0 ? 1 : 0);
    // Both are rewritten on every exit (user space may have written over them); the 64-bit values are split into
    // halves only when they change, since a BigInt store costs more than the rest of this function (the split is
    // out of line, which keeps this function small enough for V8 to inline into KVM_RUN).
    const s = this.#sregs;
    this.#saveCr8(dv, s !== undefined ? s.cr8 : 0n);
    this.#saveApicBase(dv, s !== undefined ? s.apic_base : 0xfee00900n);
  }

  /**
   * {@link Vcpu.#postRunSave} for a vCPU with interrupt state: `ready_for_interrupt_injection` from it, and with an
   * in-kernel LAPIC its CR8 (read as a number, its TPR bits: an irqchip exit makes no BigInt at all) and APIC base.
   */
  #postRunSaveIntr(dv: DataView, intr: VcpuIntr): void {
    // A byte store, not dv.setUint8: TurboFan kept that DataView call a builtin call here (perf), ~1 % of the run.
    (this.#run as KvmRunView).bytes[OFF_READY] = this.vm.irq?.full === true || intr.readyForInjection() ? 1 : 0;
    const lapic = intr.chip?.lapic;
    const s = this.#sregs;
    if (lapic !== undefined) {
      dv.setUint32(OFF_CR8, lapic.cr8(), true);
      dv.setUint32(OFF_CR8 + 4, 0, true);
    } else this.#saveCr8(dv, s !== undefined ? s.cr8 : 0n);
    this.#saveApicBase(dv, lapic !== undefined ? lapic.apicBase : s !== undefined ? s.apic_base : 0xfee00900n);
  }

  /** `kvm_run.apic_base`, split into halves only when it changed. */
  #saveApicBase(dv: DataView, base: bigint): void {
    if (base !== this.#apicBaseSeen) this.#splitApicBase(base);
    dv.setUint32(OFF_APIC_BASE, this.#apicBaseLo, true);
    dv.setUint32(OFF_APIC_BASE + 4, this.#apicBaseHi, true);
  }

  /** `kvm_run.cr8` from the cached sregs (no in-kernel LAPIC), split into halves only when it changed. */
  #saveCr8(dv: DataView, cr8: bigint): void {
    if (cr8 !== this.#cr8Seen) this.#splitCr8(cr8);
    dv.setUint32(OFF_CR8, this.#cr8Lo, true);
    dv.setUint32(OFF_CR8 + 4, this.#cr8Hi, true);
  }

  #splitCr8(cr8: bigint): void {
    this.#cr8Seen = cr8;
    this.#cr8Lo = Number(cr8 & 0xffff_ffffn);
    this.#cr8Hi = Number(cr8 >> 32n);
  }

  #splitApicBase(base: bigint): void {
    this.#apicBaseSeen = base;
    this.#apicBaseLo = Number(base & 0xffff_ffffn);
    this.#apicBaseHi = Number(base >> 32n);
  }

  // The last cr8 and apic_base written by #postRunSave, and their 32-bit halves.
  #cr8Seen = 0n;
  #cr8Lo = 0;
  #cr8Hi = 0;
  #apicBaseSeen = 0n;
  #apicBaseLo = 0;
  #apicBaseHi = 0;

  #emitExit(seq: number, cpu: number): void {
    const ev = this.#events;
    ev.deliver('vcpu:exit', { seq, tick: ev.tick, module: this.tag.instance, vm: this.tag.vm, vcpu: this.id, cpu, reason: this.run.exit_reason });
  }

  /**
   * KVM_RUN called directly (not from a simulated thread): runs on `cpu` until the next exit. A vCPU that would
   * block (HLT with an in-kernel irqchip) waits in simulated time: the host's clock jumps to the next timer deadline
   * (a PIT tick, a LAPIC timer), again and again, until the vCPU can wake; with no deadline left — nothing could ever
   * wake it but another thread — it returns EINTR with `KVM_EXIT_INTR`, as a signal would. So does a vCPU that runs
   * (or waits, one quantum per deadline) longer than `limit` instructions (docs/fidelity.md).
   */
  runSync(cpu: number, quantum: number, limit: number): number {
    const r = this.runSyncOrError(cpu, quantum, limit);
    if (typeof r !== 'number') throw r;
    return r;
  }

  /**
   * @internal {@link Vcpu.runSync} with its EINTR returned instead of thrown (the vCPU ioctl hands it to `ioctl()`,
   * which throws it once: an exception unwinding through KVM_RUN's frames cost about 0.3 µs per frame). The same
   * effects in the same order; other errors are thrown.
   */
  runSyncOrError(cpu: number, quantum: number, limit: number): number | KernelError {
    if (!this.#begin()) return EINTR_IMMEDIATE_EXIT;
    this.thread = undefined;
    // The caller now runs on `cpu`: the simulated thread current there is scheduled out first
    // (kvm_sched_out puts its vCPU, whichever module's); its KVM_RUN loads it again at its next slice.
    this.#instance.host.scheduler.preempt(cpu);
    this.load(cpu);
    if (this.#pendingExit) return this.#exitPending(cpu);
    let interrupted: KernelError | undefined;
    try {
      interrupted = this.#runLoop(cpu, quantum, limit);
    } catch (e) {
      this.#leave(cpu);
      throw e;
    }
    this.#leave(cpu);
    return interrupted ?? 0;
  }

  /** A direct KVM_RUN whose request produced an exit before any entry (see {@link Vcpu.#beginSlow}). */
  #exitPending(cpu: number): number {
    this.#pendingExit = false;
    this.#finish(cpu);
    this.#leave(cpu);
    return 0;
  }

  /** The passes of {@link Vcpu.runSync}, until an exit to user space, or EINTR (returned, for `runSync` to throw). */
  #runLoop(cpu: number, quantum: number, limit: number): KernelError | undefined {
    // The usual KVM_RUN exits from its first pass; the passes after it are out of line (#runPasses).
    const step = this.#enter(cpu, quantum);
    if (step !== Step.Exit) return this.#runPasses(cpu, quantum, limit, step);
    this.#finish(cpu);
    return undefined;
  }

  /** {@link Vcpu.#runLoop} after a first pass that ended with `first` (no exit yet): the passes until one exits. */
  #runPasses(cpu: number, quantum: number, limit: number, first: Step): KernelError | undefined {
    let executed = 0;
    let step = first;
    for (;;) {
      if (step === Step.Exit) {
        this.#finish(cpu);
        return undefined;
      }
      executed += step === Step.Again ? Math.max(1, this.exit.executed) : quantum;
      if (step === Step.Block) {
        const waited = this.#waitInSimulatedTime(quantum, limit - executed);
        if (waited < 0) return this.#interrupted(EINTR_NOTHING_CAN_WAKE);
        executed += waited;
        this.#uninitializedWoke();
        // The PIT and the LAPIC timer ran in the wait: the vCPU was not loaded meanwhile.
      } else if (executed >= limit || this.kicked) return this.#interrupted(EINTR_INTERRUPTED);
      step = this.#enter(cpu, quantum);
    }
  }

  /**
   * A direct KVM_RUN's `kvm_vcpu_block`: while the vCPU cannot wake, the host's clock jumps to the next timer
   * deadline (each jump counts `quantum` instructions against `left`). Returns what it counted, or -1 when no
   * deadline is left or `left` runs out.
   */
  #waitInSimulatedTime(quantum: number, left: number): number {
    const intr = this.intr;
    if (intr === undefined) return -1;
    const clock = this.#instance.host.clock;
    let counted = 0;
    while (!intr.canWake()) {
      const next = clock.nextDeadline();
      if (next === undefined || counted + quantum > left) return -1;
      counted += quantum;
      if (next > clock.now) clock.advanceTo(next);
      else clock.advanceBy(0);
    }
    return counted;
  }

  /** Back to user space from a direct KVM_RUN: `vcpu_put`, then the return-to-user notifier (host MSRs back). */
  #leave(cpu: number): void {
    this.put(cpu);
    this.#instance.vac.returnToUser(cpu);
  }

  /**
   * KVM_RUN from a simulated thread: stays in guest mode across ticks (one slice of `quantum` instructions
   * per tick) until an exit, a signal (EINTR), or a kick. Preempt notifiers put and load the vCPU when the
   * thread leaves or gets a CPU.
   */
  *runThreaded(thread: Thread, quantum: () => number): Syscall<number> {
    if (!this.#begin()) throw EINTR_IMMEDIATE_EXIT;
    this.thread = thread;
    const unregister = thread.addPreemptNotifier({
      schedOut: (cpu) => this.put(cpu),
      // A vCPU asleep in kvm_vcpu_block is loaded again only when it wakes.
      schedIn: (cpu) => {
        if (this.blockedOn < 0) this.load(cpu);
      },
    });
    let cpu = thread.cpu;
    let left = quantum();
    this.load(cpu);
    try {
      if (this.#pendingExit) {
        this.#pendingExit = false;
        this.#finish(cpu);
        return 0;
      }
      for (;;) {
        cpu = thread.cpu;
        if (this.loadedOn !== cpu && this.blockedOn < 0) this.load(cpu);
        if (thread.signalPending || this.kicked) {
          thread.signalPending = false;
          throw this.#interrupted(EINTR_SIGNAL);
        }
        if (this.blockedOn >= 0) {
          if (this.intr?.canWake() === true) {
            // kvm_vcpu_check_block found an event: runnable again, on whatever CPU the thread is on.
            this.blockedOn = -1;
            thread.sleeping = false;
            this.#uninitializedWoke();
            continue;
          }
          // kvm_vcpu_block: the thread sleeps (schedule() → kvm_sched_out puts the vCPU) until a wakeup.
          if (this.loadedOn >= 0) this.put(this.loadedOn);
          thread.sleeping = true;
          yield;
          continue;
        }
        const step = this.#enter(cpu, left);
        if (step === Step.Exit) {
          this.#finish(cpu);
          return 0;
        }
        if (step === Step.Again) {
          // Handled in the kernel: enter again in the same slice while it lasts.
          left -= Math.max(1, this.exit.executed);
          if (left > 0) continue;
        }
        if (step === Step.Block) this.blockedOn = cpu;
        left = quantum();
        yield;
      }
    } finally {
      unregister();
      thread.sleeping = false;
      this.blockedOn = -1;
      this.thread = undefined;
      const at = this.loadedOn;
      if (at >= 0) this.put(at);
      // Back to user space on the CPU the thread is on: its user-return notifier restores the host MSRs.
      const back = at >= 0 ? at : this.lastCpu;
      if (back >= 0) this.#instance.vac.returnToUser(back);
    }
  }

  /**
   * `kvm_arch_vcpu_ioctl_run` for a vCPU in KVM_MP_STATE_UNINITIALIZED (an AP of a VM with an in-kernel irqchip) that
   * woke from `kvm_vcpu_block`: `kvm_apic_accept_events`, then KVM_RUN returns EAGAIN without entering the guest
   * (`exit_reason` unchanged; the VMM calls KVM_RUN again, as QEMU's `kvm_cpu_exec` does). Nothing otherwise.
   * @throws KernelError EAGAIN
   */
  #uninitializedWoke(): void {
    const intr = this.intr;
    if (intr === undefined || intr.mpState !== KVM_MP_STATE_UNINITIALIZED) return;
    intr.acceptEvents();
    this.inGuest = false;
    this.#storeRegs();
    this.#postRunSave();
    throw EAGAIN_UNINITIALIZED;
  }

  /** Leave KVM_RUN with `KVM_EXIT_INTR` (a signal, a kick, a sync run that would block): returns `eintr`, the EINTR to throw. */
  #interrupted(eintr: KernelError): KernelError {
    this.kicked = false;
    this.inGuest = false;
    this.run.exit_reason = KVM_EXIT_INTR;
    this.#storeRegs();
    this.#postRunSave();
    this.stats.signal_exits++;
    return eintr;
  }

  /**
   * The posted-interrupt wakeup found this vCPU blocked on `cpu`: it continues after its HLT. (In Linux the wakeup
   * means an interrupt was posted to the vCPU, which `vcpu_block` then finds and makes it RUNNABLE; the model's
   * wakeup carries no vector, so it makes the halted vCPU RUNNABLE itself.)
   */
  wake(): void {
    const intr = this.intr;
    if (intr !== undefined && intr.mpState === KVM_MP_STATE_HALTED) intr.mpState = KVM_MP_STATE_RUNNABLE;
    this.blockedOn = -1;
    if (this.thread !== undefined) this.thread.sleeping = false;
    this.stats.pi_wakeups++;
  }

  /** perf `state()` for this vCPU (it runs on the asking CPU): guest mode → `PERF_GUEST_ACTIVE`. */
  perfState(): number {
    // Real mode runs at CPL 0, so PERF_GUEST_USER is never set.
    return this.inGuest ? PERF_GUEST_ACTIVE : 0;
  }

  // ---- registers ----------------------------------------------------------------------------

  /** KVM_GET_REGS: every register, all 64 bits (`__get_regs`, arch/x86/kvm/x86.c). */
  getRegs(out: kvm_regs): void {
    readRegs(this.regs, out);
  }

  /**
   * KVM_SET_REGS: every register, all 64 bits, RFLAGS with bit 1 set (`__set_regs`: `kvm_set_rflags(vcpu,
   * regs->rflags | X86_EFLAGS_FIXED)`). The upper halves stay as written: real-mode code only clears one
   * with a 32-bit write to that register.
   */
  setRegs(v: kvm_regs): void {
    const r = this.regs;
    writeRegs(r, v);
    r.set64('rflags', v.rflags | 2n);
  }

  /** KVM_GET_SREGS. */
  getSregs(out: kvm_sregs): void {
    // Every segment register, LDTR and TR included, lives in the guest's register file (lldt/ltr load them).
    readSegments(this.regs, out);
    this.getSystemRegs(out);
    out.interrupt_bitmap = [...this.sregs.interrupt_bitmap];
  }

  /** KVM_GET_SREGS's descriptor tables and control registers (all of `kvm_sregs` but the segments and the bitmap). */
  getSystemRegs(out: Pick<kvm_sregs, 'gdt' | 'idt' | 'cr0' | 'cr2' | 'cr3' | 'cr4' | 'cr8' | 'efer' | 'apic_base'>): void {
    const s = this.sregs;
    const r = this.regs;
    out.gdt.base = r.gdtBase64;
    out.gdt.limit = r.gdtLimit;
    out.idt.base = r.idtBase64;
    out.idt.limit = r.idtLimit;
    // KVM_SREGS_U64_FIELDS, by name (a loop over the names is a megamorphic keyed access per field)
    out.cr0 = s.cr0;
    out.cr2 = s.cr2;
    out.cr3 = s.cr3;
    out.cr4 = s.cr4;
    out.cr8 = s.cr8;
    out.efer = s.efer;
    out.apic_base = s.apic_base;
    // kvm_get_apic_base, kvm_get_cr8: with an in-kernel LAPIC the APIC base and the TPR are the LAPIC's (one source
    // of truth; kvm_lapic_get_cr8).
    const lapic = this.intr?.chip?.lapic;
    if (lapic !== undefined) {
      out.apic_base = lapic.apicBase;
      out.cr8 = lapic.getCr8();
    }
    out.cr0 = r.cr0;
    out.cr2 = r.cr2;
    out.cr3 = r.cr3;
    out.cr4 = r.cr4;
  }

  /** KVM_SET_SREGS (already validated). */
  setSregs(v: kvm_sregs): void {
    writeSegments(this.regs, v);
    this.setSystemRegs(v, v.interrupt_bitmap);
  }

  /**
   * KVM_SET_SREGS (already validated) of the descriptor tables and control registers (all of `kvm_sregs` but the
   * segments) and the interrupt bitmap KVM keeps, after the segments.
   */
  setSystemRegs(v: Readonly<Pick<kvm_sregs, 'gdt' | 'idt' | 'cr0' | 'cr2' | 'cr3' | 'cr4' | 'cr8' | 'efer' | 'apic_base'>>, interruptBitmap: Readonly<kvm_sregs['interrupt_bitmap']>): void {
    const s = this.sregs;
    const r = this.regs;
    s.gdt = { base: v.gdt.base, limit: v.gdt.limit };
    r.gdtBase64 = v.gdt.base;
    r.gdtLimit = v.gdt.limit;
    r.idtBase64 = v.idt.base;
    r.idtLimit = v.idt.limit;
    s.cr0 = v.cr0;
    s.cr2 = v.cr2;
    s.cr3 = v.cr3;
    s.cr4 = v.cr4;
    s.cr8 = v.cr8;
    s.efer = v.efer;
    s.apic_base = v.apic_base;
    // kvm_set_apic_base → kvm_lapic_set_base, kvm_set_cr8 → kvm_lapic_set_tpr: an in-kernel LAPIC holds the APIC
    // base and the TPR (the caller validated both); the copies here are not read while it exists.
    const lapic = this.intr?.chip?.lapic;
    if (lapic !== undefined) {
      if (v.apic_base !== lapic.apicBase) lapic.setApicBase(v.apic_base, true);
      if (v.cr8 !== lapic.getCr8()) lapic.setCr8(v.cr8);
    }
    r.cr0 = v.cr0;
    r.cr2 = v.cr2;
    r.cr3 = v.cr3;
    r.cr4 = v.cr4;
    s.interrupt_bitmap = [...interruptBitmap];
  }
}

/*
 * KVM_RUN's normal non-zero answers: EINTR (immediate_exit, a signal or a kick, a direct run that would block for
 * ever) and EAGAIN (an uninitialized vCPU woken by INIT/SIPI). A VMM meets them at every pause, and making an `Error`
 * costs more than a whole KVM_RUN, so each is one shared stackless instance, thrown every time (as `-EINTR` is the
 * same number every time in Linux). `instanceof KernelError`, `code`, `errno`, `op` and `message` are as a fresh
 * error's; only identity is shared (docs/fidelity.md).
 */
const EINTR_IMMEDIATE_EXIT = KernelError.withoutStack('EINTR', 'KVM_RUN', 'immediate_exit');
const EINTR_NOTHING_CAN_WAKE = KernelError.withoutStack('EINTR', 'KVM_RUN', 'the vCPU halted and nothing can wake it');
const EINTR_INTERRUPTED = KernelError.withoutStack('EINTR', 'KVM_RUN', 'interrupted');
const EINTR_SIGNAL = KernelError.withoutStack('EINTR', 'KVM_RUN', 'interrupted by a signal');
const EAGAIN_UNINITIALIZED = KernelError.withoutStack('EAGAIN', 'KVM_RUN', 'the vCPU was uninitialized: woken by INIT/SIPI, not entered');

/** KVM_RUN on a dead VM (built out of line: the check is on every run). */
function vmDead(): KernelError {
  return new KernelError('EIO', 'KVM_RUN', 'the VM is dead');
}
