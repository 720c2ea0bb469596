/**
 * The interrupt side of one vCPU in the run loop (arch/x86/kvm/x86.c `vcpu_enter_guest` →
 * `kvm_check_and_inject_events`, `vcpu_block`, `kvm_vcpu_has_events`, `post_kvm_run_save`; irq.c
 * `kvm_cpu_get_interrupt`): what is injected before an entry, whether a halted vCPU can wake, the `kvm_run`
 * fields user space reads on the way out, and — with an in-kernel LAPIC — the {@link LapicVcpu} the device models
 * call back (kicks, NMIs, the guest TSC).
 *
 * Made on first need: at KVM_CREATE_VCPU with an irqchip (the vCPU's LAPIC), or at the first KVM_INTERRUPT, KVM_NMI
 * or `request_interrupt_window` without one. A vCPU that never meets an interrupt has none, and its KVM_RUN pays one
 * `undefined` check.
 *
 * @module
 */
import {
  KVM_MP_STATE_HALTED,
  KVM_MP_STATE_INIT_RECEIVED,
  KVM_MP_STATE_RUNNABLE,
  KVM_MP_STATE_UNINITIALIZED,
} from '../abi/constants.js';
import { GuestCpuState, GuestPending } from '../guest/cpu-state.js';
import type { GuestExit } from '../guest/exit.js';
import { GUEST_INTERRUPT_DELIVERED, completePending, deliverInterrupt, injectEvent, interruptWindowOpen } from '../guest/interpreter.js';
import { KVM_APIC_SIPI, type LapicVcpu } from '../irqchip/lapic.js';
import type { VcpuInterrupts } from '../irqchip/vcpu-interrupts.js';
import { vcpuArch, type VcpuArch } from './vcpu-arch.js';
import { injectSmi } from './smm.js';
import { makeRequest, nmiLimit, processNmi, VcpuRequest } from './vcpu-requests.js';
import { guestTscAt } from './vcpu-tsc.js';
import { vmArch } from './vm-arch.js';
import type { Vcpu } from './vcpu.js';
import type { VmIrqchip } from './vm-irqchip.js';
import { vendorArch } from './vendor-arch.js';

/** {@link VcpuIntr.beforeEntry}: enter the guest. */
export const INTR_ENTER = -1;
/** {@link VcpuIntr.beforeEntry}: the vCPU cannot run (waits for INIT/SIPI): block. */
export const INTR_BLOCK = -2;

/** The NMI vector. */
const NMI_VECTOR = 2;

/** One vCPU's interrupt state. */
export class VcpuIntr implements LapicVcpu {
  /** The vCPU. */
  readonly vcpu: Vcpu;
  /** The VM's in-kernel irqchip, if it has one. */
  readonly irqchip: VmIrqchip | undefined;
  /** This vCPU's LAPIC and ExtINT source (with an in-kernel irqchip). */
  readonly chip: VcpuInterrupts | undefined;
  /** The vCPU's x86 state, where the queued events and the MP state live (what KVM_GET/SET_VCPU_EVENTS see). */
  readonly #arch: VcpuArch;

  /**
   * A vector user space queued with KVM_INTERRUPT and not yet injected, -1 if none (`vcpu->arch.interrupt`, a user-space
   * PIC only).
   */
  get queuedIrq(): number {
    const i = this.#arch.interrupt;
    return i.injected ? i.nr : -1;
  }
  set queuedIrq(vector: number) {
    const i = this.#arch.interrupt;
    i.injected = vector >= 0;
    i.soft = false;
    if (vector >= 0) i.nr = vector;
  }

  /**
   * NMIs queued (KVM_NMI, LINT0/1 in NMI mode, an NMI IPI) and not yet injected: `nmi_injected` + `nmi_pending` +
   * `nmi_queued`, the queued ones as `process_nmi` will count them ({@link nmiLimit}). Setting it folds them into
   * `nmi_pending` (at most 2).
   */
  get nmiPending(): number {
    const a = this.#arch;
    return (a.nmiInjected ? 1 : 0) + Math.min(a.nmiPending + a.nmiQueued, nmiLimit(a));
  }
  set nmiPending(n: number) {
    const a = this.#arch;
    a.nmiInjected = false;
    a.nmiQueued = 0;
    a.nmiPending = Math.min(Math.max(n, 0), 2);
  }

  /** `vcpu->arch.mp_state` as far as INIT/SIPI go: RUNNABLE, or INIT_RECEIVED waiting for a SIPI. */
  get mpState(): number {
    return this.#arch.mpState;
  }
  set mpState(s: number) {
    this.#arch.mpState = s;
  }

  /** Interrupts injected (`irq_injections`). */
  injections = 0;
  /** `request_irq_exits`: KVM_EXIT_IRQ_WINDOW_OPEN exits. */
  windowExits = 0;

  /** @internal */
  constructor(vcpu: Vcpu, irqchip: VmIrqchip | undefined) {
    this.vcpu = vcpu;
    this.#arch = vcpuArch(vcpu);
    this.irqchip = irqchip;
    this.chip = irqchip?.chip.addVcpu(this);
  }

  // ---- LapicVcpu -----------------------------------------------------------------------------------------

  /** {@inheritDoc LapicVcpu.vcpuId} */
  get vcpuId(): number {
    return this.vcpu.id;
  }

  /** `kvm_vcpu_is_reset_bsp`: the vCPU whose id is `kvm->arch.bsp_vcpu_id` (0 unless KVM_SET_BOOT_CPU_ID changed it). */
  isResetBsp(): boolean {
    return this.vcpu.id === vmArch(this.vcpu.vm).bspVcpuId;
  }

  /** {@inheritDoc LapicVcpu.guestTsc} */
  guestTsc(now: bigint): bigint {
    return guestTscAt(this.vcpu, now);
  }

  /** {@inheritDoc LapicVcpu.tscKhz} */
  tscKhz(): number {
    return vcpuArch(this.vcpu).tscKhz;
  }

  /** `kvm_inject_nmi`: one more NMI queued and `KVM_REQ_NMI` (the next entry's `process_nmi` keeps at most two). */
  injectNmi(): void {
    this.#arch.nmiQueued++;
    makeRequest(this.vcpu, VcpuRequest.Nmi);
    this.kick();
  }

  /**
   * `nmi_allowed` (`vmx_nmi_blocked` / `svm_nmi_blocked`, the same answer for an L1 vCPU): no NMI is injected while
   * NMIs are blocked — after an NMI until its IRET, in SMM — or in an STI / MOV SS shadow.
   */
  nmiAllowed(): boolean {
    return !this.#arch.nmiMasked && this.vcpu.regs.interruptShadow === 0;
  }

  /** `kvm_inject_smi` (an SMI IPI): `KVM_REQ_SMI`, and the vCPU is kicked to look at it. */
  injectSmi(): boolean {
    injectSmi(this.vcpu);
    this.kick();
    return true;
  }

  /** `kvm_vcpu_kick`: a vCPU asleep in KVM_RUN is woken (its thread runs at its next slice and looks again). */
  kick(): void {
    const t = this.vcpu.thread;
    if (t !== undefined) t.sleeping = false;
  }

  // ---- the run loop ------------------------------------------------------------------------------------------

  /**
   * Before an entry (`vcpu_enter_guest` up to the VM entry): INIT and SIPI accepted (`kvm_apic_accept_events`), a
   * pending LAPIC timer delivered (`kvm_inject_pending_timer_irqs`), then one event injected
   * (`kvm_check_and_inject_events`): an NMI or interrupt being injected again ({@link VcpuIntr.#reinject}), else —
   * unless KVM_GUESTDBG_BLOCKIRQ is set — a pending NMI when {@link VcpuIntr.nmiAllowed} (NMIs are then blocked until
   * the handler's IRET: the delivery sets the blocking), else, when RFLAGS.IF = 1 and no STI/MOV SS shadow, the vector
   * `kvm_cpu_get_interrupt` acknowledges (the PIC's ExtINT first, then the LAPIC), through the IVT. A blocked NMI
   * stays pending (the IRET that unblocks it ends the run: the platform's `iret`). An instruction being re-executed
   * for its MMIO or string input goes first.
   * @returns {@link INTR_ENTER}, {@link INTR_BLOCK}, or a `GuestExitReason` the delivery ended with (a triple fault)
   */
  beforeEntry(memory: Parameters<typeof injectEvent>[1], exit: GuestExit): number {
    const chip = this.chip;
    const r = this.vcpu.regs;
    if (chip !== undefined) {
      // kvm_arch_vcpu_ioctl_run: an UNINITIALIZED AP blocks before anything else (and KVM_RUN ends with EAGAIN
      // once it wakes: vcpu.ts).
      if (this.mpState === KVM_MP_STATE_UNINITIALIZED) return INTR_BLOCK;
      if (chip.lapic.hasPendingInitOrSipi) this.acceptEvents();
      // vcpu_block: a HALTED vCPU becomes RUNNABLE once it has an event (kvm_vcpu_has_events), else it blocks.
      if (this.mpState === KVM_MP_STATE_HALTED && this.canWake()) this.mpState = KVM_MP_STATE_RUNNABLE;
      if (this.mpState !== KVM_MP_STATE_RUNNABLE) return INTR_BLOCK;
      if (chip.lapic.hasPendingTimer()) (this.irqchip as VmIrqchip).op(() => chip.lapic.injectPendingTimer());
    }
    const p = r.pending;
    if (p === GuestPending.MmioRead || p === GuestPending.PioInString || r.mmioCacheCount !== 0) return INTR_ENTER;
    const a = this.#arch;
    if (a.nmiQueued !== 0) processNmi(a);
    // An NMI or interrupt being injected (nmi.injected; interrupt.injected: KVM_INTERRUPT, KVM_SET_VCPU_EVENTS) is
    // injected again before anything new, the NMI first; KVM_GUESTDBG_BLOCKIRQ, tested after the re-injections, holds
    // only new events.
    if (a.nmiInjected || this.queuedIrq >= 0) return this.#reinject(memory, exit);
    if (this.vcpu.guestDebug?.blockIrq === true) return INTR_ENTER;
    const nmi = a.nmiPending > 0 && this.nmiAllowed();
    if (!nmi && (chip === undefined || !interruptWindowOpen(r) || !chip.hasInterrupt())) return INTR_ENTER;
    // complete_userspace_io runs before the injection: the pushed IP is the next instruction's.
    if (p !== GuestPending.None) completePending(r, exit.data);
    let res: number;
    if (nmi) {
      // inject_nmi: the delivery blocks NMIs (VMX: the interruptibility state's NMI blocking; SVM: nmi_masked) until
      // the handler's IRET.
      a.nmiPending--;
      a.nmiMasked = true;
      res = injectEvent(r, memory, NMI_VECTOR, exit);
    } else {
      const irqchip = this.irqchip as VmIrqchip;
      // kvm_cpu_get_interrupt as one irqchip operation (VmIrqchip.op written out: no closure per interrupt).
      let vector: number;
      try {
        vector = (chip as VcpuInterrupts).getInterrupt();
      } finally {
        irqchip.sync();
      }
      if (vector < 0) return INTR_ENTER;
      res = deliverInterrupt(r, memory, vector, exit);
    }
    if (res !== GUEST_INTERRUPT_DELIVERED) return res;
    this.injections++;
    return INTR_ENTER;
  }

  /**
   * The re-injection of `kvm_check_and_inject_events`: an NMI being injected goes again whatever the NMI mask or the
   * interrupt shadow say, else the interrupt being injected whatever RFLAGS.IF says. Only one event goes per entry and
   * the exit after it empties the interrupt queue (`vmx_complete_interrupts` / `svm_complete_interrupts` clear
   * `nmi_injected` and `interrupt.injected` before looking at what the entry left half-delivered), so an interrupt set
   * as being injected beside a re-injected NMI is dropped. Nothing new can go with the re-injected event (`can_inject`
   * false): an SMI, a pending NMI or an injectable interrupt waiting makes the entry an immediate exit (-EBUSY →
   * `req_immediate_exit`), so the next entry takes it before the handler's first instruction — unless
   * KVM_GUESTDBG_BLOCKIRQ holds new events.
   */
  #reinject(memory: Parameters<typeof injectEvent>[1], exit: GuestExit): number {
    const r = this.vcpu.regs;
    const a = this.#arch;
    if (r.pending !== GuestPending.None) completePending(r, exit.data);
    const chip = this.chip;
    // kvm_cpu_has_injectable_intr, looked at while the queue still holds the interrupt: without an in-kernel LAPIC
    // kvm_cpu_has_extint answers interrupt.injected, so re-injecting a KVM_INTERRUPT vector is an immediate exit too.
    const waiting = a.smiPending || a.nmiPending > 0 || (chip !== undefined ? chip.hasInterrupt() : this.queuedIrq >= 0);
    let vector: number;
    if (a.nmiInjected) {
      a.nmiInjected = false;
      a.nmiMasked = true;
      vector = NMI_VECTOR;
    } else vector = this.queuedIrq;
    this.queuedIrq = -1;
    const res = injectEvent(r, memory, vector, exit);
    if (waiting && this.vcpu.guestDebug?.blockIrq !== true) makeRequest(this.vcpu, VcpuRequest.ImmediateExit);
    if (res !== GUEST_INTERRUPT_DELIVERED) return res;
    this.injections++;
    return INTR_ENTER;
  }

  /**
   * `kvm_apic_accept_events`: INIT resets the vCPU (an AP then waits for SIPI); SIPI starts a waiting AP at vector:0.
   * Nothing without an in-kernel LAPIC or a pending INIT/SIPI.
   */
  acceptEvents(): void {
    const irqchip = this.irqchip;
    const lapic = this.chip?.lapic;
    if (irqchip === undefined || lapic === undefined || !lapic.hasPendingInitOrSipi) return;
    // kvm_apic_init_sipi_allowed: in SMM an INIT stays latched (KVM_GET_VCPU_EVENTS' smi.latched_init) until RSM,
    // and a SIPI is dropped.
    if (this.vcpu.smm) {
      lapic.pendingEvents &= ~(1 << KVM_APIC_SIPI);
      return;
    }
    const res = irqchip.op(() => lapic.acceptEvents(this.mpState, this.isResetBsp()));
    const r = this.vcpu.regs;
    if (res.init) {
      // kvm_vcpu_reset(vcpu, true): the registers as at power-on (the LAPIC was reset by acceptEvents).
      r.copyFrom(new GuestCpuState());
      this.#arch.smiPending = false;
      this.nmiPending = 0;
      this.queuedIrq = -1;
      // vmx_vcpu_reset clears the interruptibility state at INIT (NMIs unblocked); SVM keeps nmi_masked (only a full
      // reset, __svm_vcpu_reset, clears it).
      if (vendorArch(this.vcpu.vm.instance).initUnblocksNmi) this.#arch.nmiMasked = false;
    }
    if (res.sipiVector !== undefined) {
      // kvm_vcpu_deliver_sipi_vector: CS = vector << 8 (base vector << 12), IP = 0.
      r.cs.loadRealMode(res.sipiVector << 8);
      r.eip = 0;
    }
    this.mpState = res.mpState;
  }

  /**
   * `kvm_arch_vcpu_runnable` for a halted (or INIT-waiting) vCPU: an INIT or SIPI, a LAPIC timer expiry, an NMI, or
   * an interrupt it can take now (RFLAGS.IF = 1, no shadow).
   */
  canWake(): boolean {
    const chip = this.chip;
    if (chip !== undefined && chip.lapic.hasPendingInitOrSipi && !this.vcpu.smm) return true;
    if (this.mpState === KVM_MP_STATE_INIT_RECEIVED || this.mpState === KVM_MP_STATE_UNINITIALIZED) return false;
    if ((this.vcpu.requests & VcpuRequest.Smi) !== 0 || (this.#arch.smiPending && !this.vcpu.smm)) return true;
    // kvm_vcpu_has_events: NMIs just queued (KVM_REQ_NMI) wake it even if blocked; pending ones only when allowed.
    const a = this.#arch;
    if ((this.vcpu.requests & VcpuRequest.Nmi) !== 0 || a.nmiInjected || (a.nmiPending > 0 && this.nmiAllowed())) return true;
    if (chip !== undefined && chip.lapic.hasPendingTimer()) return true;
    const r = this.vcpu.regs;
    if (!interruptWindowOpen(r)) return false;
    return this.queuedIrq >= 0 || (chip !== undefined && chip.hasInterrupt());
  }

  /**
   * `kvm_vcpu_ready_for_interrupt_injection`: the guest can take an interrupt user space injects with KVM_INTERRUPT
   * now (IF = 1, no shadow, no interrupt or NMI being injected, and with an in-kernel LAPIC its LINT0 passes ExtINT).
   * A pending NMI that is blocked does not close the window.
   */
  readyForInjection(): boolean {
    if (this.queuedIrq >= 0 || this.#arch.nmiInjected) return false;
    if (!interruptWindowOpen(this.vcpu.regs)) return false;
    return this.chip === undefined || this.chip.lapic.acceptsPicIntr();
  }
}
