/**
 * Work KVM does at the next KVM_RUN before entering the guest (`vcpu_enter_guest`'s `kvm_check_request` calls and
 * `kvm_check_and_inject_events`, arch/x86/kvm/x86.c): a requested triple fault becomes KVM_EXIT_SHUTDOWN, the
 * kvmclock is written to guest memory, and a queued exception (from KVM_SET_VCPU_EVENTS) is delivered — in real mode
 * through the IVT, as `kvm_inject_realmode_interrupt` does (push FLAGS, CS, IP; clear IF, TF, AC; jump to the
 * vector). A queued NMI or interrupt (KVM_SET_VCPU_EVENTS, KVM_NMI, KVM_INTERRUPT, the `interrupt_bitmap` of
 * KVM_SET_SREGS) is left to the vCPU's interrupt state (`vcpu-intr.ts`), which injects it at the entry.
 *
 * A vCPU with nothing requested never comes here (`Vcpu.requests` is 0), so KVM_RUN's fast path is unchanged.
 *
 * @module
 */
import { KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_SHUTDOWN, KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_MP_STATE_HALTED, KVM_MP_STATE_RUNNABLE } from '../abi/constants.js';
import { KVM_REGS_CODEC, KVM_SREGS_CODEC } from '../abi/structs.js';
import { updateGuestPvclock } from './pvclock.js';
import { vcpuArch, type VcpuArch } from './vcpu-arch.js';
import { VcpuIntr } from './vcpu-intr.js';
import { injectPendingSmi, processSmi } from './smm.js';
import type { Vcpu } from './vcpu.js';

/** `Vcpu.requests` bits (the model's `vcpu->requests`). */
export const VcpuRequest = {
  /** `KVM_REQ_EVENT`: a queued event may need delivering. */
  Event: 1 << 0,
  /** `KVM_REQ_CLOCK_UPDATE`: write the kvmclock. */
  ClockUpdate: 1 << 1,
  /** `KVM_REQ_TRIPLE_FAULT`. */
  TripleFault: 1 << 2,
  /**
   * Not a request in Linux but `vcpu->arch.complete_userspace_io` of a KVM_EXIT_X86_RDMSR/WRMSR: the next KVM_RUN
   * completes the instruction with user space's answer before anything else (`Vcpu`'s run path handles it).
   */
  CompleteUserspaceMsr: 1 << 3,
  /** `KVM_REQ_SMI`: KVM_SMI (or an SMI IPI) asked for an SMI (`smm.ts`). */
  Smi: 1 << 4,
  /** `KVM_REQ_NMI`: NMIs were queued (KVM_NMI, an NMI IPI, KVM_SET_VCPU_EVENTS); the entry counts them in. */
  Nmi: 1 << 5,
  /**
   * Not a request in Linux but `vcpu_enter_guest`'s `req_immediate_exit`: this entry carries an event (an exception)
   * and another one waits that could not go with it (`kvm_check_and_inject_events` answered -EBUSY), so the guest is
   * entered and leaves again before its first instruction; the next entry injects the waiting event. Set by
   * {@link processRequests} and taken by the entry it prepares (`Vcpu`'s run path).
   */
  ImmediateExit: 1 << 6,
} as const;

/** `kvm_make_request`. */
export function makeRequest(v: Vcpu, req: number): void {
  v.requests |= req;
}

/**
 * How many NMIs `process_nmi` lets be pending: one while NMIs are blocked or one is being injected (the one in service
 * plus one latched, as the processor holds them), else two (KVM injects one at once and the other at the NMI window).
 */
export function nmiLimit(arch: VcpuArch): number {
  return arch.nmiMasked || arch.nmiInjected ? 1 : 2;
}

/** `process_nmi`: fold queued NMIs into the pending count, at most {@link nmiLimit} (the rest are dropped). */
export function processNmi(arch: VcpuArch): void {
  arch.nmiPending = Math.min(arch.nmiPending + arch.nmiQueued, nmiLimit(arch));
  arch.nmiQueued = 0;
}

/** IRQ-disable, trap and alignment-check flags cleared on delivery. */
const X86_EFLAGS_IF = 0x200n;
const X86_EFLAGS_TF = 0x100n;
const X86_EFLAGS_AC = 0x40000n;

/**
 * Deliver `vector` in real mode (`emulate_int_real`). @returns false when the IVT or the stack is not RAM (the
 * guest would take a shutdown on real hardware; KVM reports a delivery failure).
 */
function deliverRealMode(v: Vcpu, vector: number): boolean {
  const mem = v.memory;
  const regs = KVM_REGS_CODEC.zero();
  const sregs = KVM_SREGS_CODEC.zero();
  v.getRegs(regs);
  v.getSregs(sregs);
  const ivt = Number(sregs.idt.base) + vector * 4;
  const bytes: number[] = [];
  for (let i = 0; i < 4; i++) bytes.push(mem.read8(ivt + i));
  if (bytes.some((b) => b < 0)) return false;
  const newIp = (bytes[0] as number) | ((bytes[1] as number) << 8);
  const newCs = (bytes[2] as number) | ((bytes[3] as number) << 8);
  const ssBase = Number(sregs.ss.base);
  let sp = Number(regs.rsp & 0xffffn);
  const push = (w: number): boolean => {
    sp = (sp - 2) & 0xffff;
    return mem.write8(ssBase + sp, w & 0xff) && mem.write8(ssBase + ((sp + 1) & 0xffff), (w >> 8) & 0xff);
  };
  // A soft exception (#BP, #OF: kvm_exception_is_soft) returns past the instruction that raised it
  // (kvm_inject_realmode_interrupt's inc_eip = event_exit_inst_len).
  const returnIp = Number(regs.rip & 0xffffn) + (vector === 3 || vector === 4 ? vcpuArch(v).eventExitInstLen : 0);
  if (!push(Number(regs.rflags & 0xffffn)) || !push(sregs.cs.selector) || !push(returnIp)) return false;
  regs.rsp = (regs.rsp & ~0xffffn) | BigInt(sp);
  regs.rflags &= ~(X86_EFLAGS_IF | X86_EFLAGS_TF | X86_EFLAGS_AC);
  regs.rip = BigInt(newIp);
  sregs.cs.selector = newCs;
  sregs.cs.base = BigInt(newCs << 4);
  v.setRegs(regs);
  v.setSregs(sregs);
  return true;
}

/** Report a failed delivery: KVM_EXIT_INTERNAL_ERROR with suberror KVM_INTERNAL_ERROR_DELIVERY_EV. */
function deliveryFailed(v: Vcpu, vector: number): void {
  const run = v.run;
  run.exit_reason = KVM_EXIT_INTERNAL_ERROR;
  const internal = run.internal;
  internal.suberror = KVM_INTERNAL_ERROR_DELIVERY_EV;
  internal.ndata = 1;
  internal.setData(0, BigInt(vector));
}

/**
 * What becomes of the NMIs and interrupts of an entry that carries an exception (`kvm_check_and_inject_events` with
 * `can_inject` false, arch/x86/kvm/x86.c): none is injected with it. One that is pending — an NMI
 * (`nmi_pending`), an interrupt user space queued (`interrupt.injected`), one the in-kernel irqchip has
 * (`kvm_cpu_has_injectable_intr`) — makes the entry an immediate exit (-EBUSY → `req_immediate_exit`), so the next
 * entry, before the exception handler's first instruction, injects it. An NMI or interrupt set as being injected
 * (`nmi.injected`, `interrupt.injected` of KVM_SET_VCPU_EVENTS) is not re-injected beside the exception, and the exit
 * after the entry drops it (`vmx_complete_interrupts` / `svm_complete_interrupts` clear `nmi_injected` and the
 * interrupt queue; only the exception was being delivered). KVM_GUESTDBG_BLOCKIRQ injects none and asks for no exit.
 */
function eventsAfterException(v: Vcpu, arch: VcpuArch): void {
  const chip = v.intr?.chip;
  const waiting = arch.nmiPending > 0 || arch.interrupt.injected || (chip !== undefined && chip.hasInterrupt());
  if (waiting && v.guestDebug?.blockIrq !== true) v.requests |= VcpuRequest.ImmediateExit;
  arch.nmiInjected = false;
  arch.interrupt.injected = false;
}

/**
 * Process the vCPU's requests at KVM_RUN entry. @returns true when KVM_RUN exits to user space right away (the exit
 * is in `kvm_run`), false to enter the guest.
 */
export function processRequests(v: Vcpu): boolean {
  const req = v.requests;
  v.requests = req & VcpuRequest.ImmediateExit;
  const arch = vcpuArch(v);
  if ((req & VcpuRequest.TripleFault) !== 0 || arch.tripleFault) {
    arch.tripleFault = false;
    v.run.exit_reason = KVM_EXIT_SHUTDOWN;
    return true;
  }
  if ((req & VcpuRequest.ClockUpdate) !== 0 || arch.clockUpdate) updateGuestPvclock(v);
  if ((req & VcpuRequest.Smi) !== 0) processSmi(v);
  if ((req & VcpuRequest.Nmi) !== 0) {
    // vcpu_block: kvm_vcpu_has_events saw KVM_REQ_NMI, so a halted vCPU is runnable again even if the NMI is blocked.
    if (arch.mpState === KVM_MP_STATE_HALTED) arch.mpState = KVM_MP_STATE_RUNNABLE;
    processNmi(arch);
    if (arch.nmiPending > 0) v.requests |= VcpuRequest.Event;
  }
  if ((req & VcpuRequest.Event) !== 0 || (v.requests & VcpuRequest.Event) !== 0) {
    v.requests &= ~VcpuRequest.Event;
    let canInject = true;
    // kvm_check_and_inject_events: an exception first; NMIs and interrupts go through the vCPU's interrupt state
    // (`vcpu-intr.ts`), which injects one of them at each entry once nothing else is in the way.
    const ex = arch.exception;
    if (ex.injected || ex.pending) {
      const vector = ex.nr;
      ex.injected = ex.pending = ex.hasPayload = false;
      const protectedMode = (v.regs.cr0 & 1n) !== 0n;
      if (protectedMode || !deliverRealMode(v, vector)) {
        deliveryFailed(v, vector);
        return true;
      }
      canInject = false;
      eventsAfterException(v, arch);
    }
    // KVM_GUESTDBG_BLOCKIRQ holds SMIs too (kvm_check_and_inject_events returns before them); clearing it makes
    // KVM_REQ_EVENT (vcpu-guest-debug.ts). An NMI or interrupt being injected goes first (vcpu-intr.ts re-injects it and
    // makes that entry an immediate exit): the SMI is looked at again at the next entry.
    if (v.guestDebug?.blockIrq !== true) {
      if (canInject && (arch.nmiInjected || arch.interrupt.injected)) {
        if (arch.smiPending) makeRequest(v, VcpuRequest.Event);
      } else injectPendingSmi(v, canInject);
    }
    if (arch.nmiInjected || arch.nmiPending > 0 || arch.nmiQueued > 0 || arch.interrupt.injected) v.intr ??= new VcpuIntr(v, undefined);
  }
  return false;
}
