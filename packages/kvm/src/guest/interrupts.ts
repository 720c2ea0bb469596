/**
 * Exceptions and interrupts: delivery through the IVT (SDM Vol. 3A §20.1.4), double and triple faults
 * (Vol. 3A §6.15), and the entry points the interrupt controllers (PIC, LAPIC) use.
 *
 * @module
 */

import { UsageError } from '@vac/core';
import { GuestCpuState, GuestPending, X86_EFLAGS_AC, X86_EFLAGS_IF, X86_EFLAGS_TF } from './cpu-state.js';
import { rd16 } from './data-memory.js';
import { GuestExit, GuestExitReason, type GuestExitReasonValue } from './exit.js';
import { emulationFailure } from './interpreter.js';
import type { GuestMemory } from './memory.js';
import { EMULATION_FAILED, R } from './run-context.js';
import { SEG_CS, loadSeg } from './segments.js';
import { push16 } from './stack.js';

export const DELIVERED = 0;

export const ABANDONED = 1;

/** {@link ivtDeliver} result: delivering raised exception `FAULTED + vector`. */
export const FAULTED = 0x100;

/** #DE, #TS, #NP, #SS, #GP: the "contributory" exceptions of SDM Vol. 3A Table 6-4 (real mode has no #PF). */
export function contributory(vector: number): boolean {
  return vector === 0 || vector === 10 || vector === 11 || vector === 12 || vector === 13;
}

/**
 * One real-mode delivery through the IVT (SDM Vol. 2A "INT n" pseudo-code, real-address mode; Vol. 3A
 * §20.1.4): the entry `vector·4 … vector·4 + 3` must lie within IDTR.limit (else #GP) and the three pushes
 * within SS's limit (else #SS); then FLAGS, CS, IP are pushed, IF, TF and AC cleared, CS:IP loaded from
 * the entry. Returns DELIVERED, ABANDONED (an MMIO read of the IVT must exit first), or FAULTED + the vector
 * that delivery raised (nothing changed).
 */
export function ivtDeliver(vector: number, returnIp: number): number {
  const s = R.S;
  if (vector * 4 + 3 > s.idtLimit) return FAULTED + 13;
  const sp = s.esp & 0xffff;
  for (let k = 2; k <= 6; k += 2) if (((sp - k) & 0xffff) + 1 > s.ssLimit) return FAULTED + 12;
  const entry = s.idtBase + vector * 4;
  const offset = rd16(entry);
  if (offset < 0) return ABANDONED;
  const selector = rd16(entry + 2);
  if (selector < 0) return ABANDONED;
  push16(s.eflags);
  s.eflags &= ~(X86_EFLAGS_IF | X86_EFLAGS_TF | X86_EFLAGS_AC);
  push16(s.csSelector);
  push16(returnIp);
  loadSeg(SEG_CS, selector);
  R.csBase = s.csBase;
  R.csLim = s.csLimit;
  R.ip = offset;
  s.ripHigh = 0;
  s.halted = false;
  return DELIVERED;
}

/**
 * Delivers `vector` (an exception, `int n`, or an external interrupt) through the IVT, with `returnIp`
 * pushed. An exception raised by the delivery is delivered next with `faultIp` (the instruction that was
 * being started), serially or — for two contributory exceptions — as a double fault (#DF, vector 8); a
 * fault while delivering #DF is a triple fault, which KVM reports as `KVM_EXIT_SHUTDOWN` (SDM Vol. 3A
 * §6.15 "Interrupt 8", Table 6-5). Returns DELIVERED, or ABANDONED with `exitKind` set when the run must
 * stop (shutdown, or an MMIO read of the IVT).
 */
export function deliver(vector: number, returnIp: number, faultIp: number): number {
  let v = vector;
  let back = returnIp;
  for (;;) {
    const r = ivtDeliver(v, back);
    if (r < FAULTED) return r;
    const nested = r - FAULTED;
    if (v === 8) {
      R.exitKind = GuestExitReason.Shutdown;
      return ABANDONED;
    }
    v = contributory(v) && contributory(nested) ? 8 : nested;
    back = faultIp;
  }
}

/** `int n`/`int3`/`into` and divide errors reached from inside an instruction. */
export function interrupt(vector: number, returnIp: number): number {
  return deliver(vector, returnIp, R.S.eip);
}

/** Raises #UD (vector 6) for an encoding the processor itself rejects; returns false if the IVT read must exit. */
export function invalidOpcode(start: number): boolean {
  return interrupt(6, start) === DELIVERED;
}

/**
 * The instruction at `start` raised exception {@link faultVector}: nothing it did is kept (an MMIO write it
 * prepared is not made), and the exception is delivered through the IVT with IP = `start` (a fault).
 * Returns false when the delivery stops the run (shutdown, or an MMIO read of the IVT).
 */
export function faulted(start: number): boolean {
  R.exitKind = 0;
  R.shadowSet = 0;
  R.enteredProtectedMode = false;
  R.S.pending = GuestPending.None;
  if (deliver(R.faultVector, start, start) !== DELIVERED) return false;
  R.S.eip = R.ip;
  return true;
}

/** {@link deliverInterrupt}: the vector was delivered through the IVT. */
export const GUEST_INTERRUPT_DELIVERED = 0;

/** {@link deliverInterrupt}: IF = 0 or an interrupt shadow holds it; the controller keeps it pending. */
export const GUEST_INTERRUPT_BLOCKED = 1;

/**
 * Whether the vCPU can take a maskable interrupt now: RFLAGS.IF = 1 and no STI / MOV SS shadow
 * (`kvm_run.ready_for_interrupt_injection` with an empty injection queue; `kvm_run.if_flag` is IF alone).
 */
export function interruptWindowOpen(state: GuestCpuState): boolean {
  return (state.eflags & X86_EFLAGS_IF) !== 0 && state.interruptShadow === 0;
}

/**
 * Delivers external interrupt `vector` (0–255) to a vCPU that is not running, as the processor does between
 * two instructions: when {@link interruptWindowOpen}, FLAGS, CS and IP are pushed, IF/TF/AC cleared and CS:IP
 * loaded from the IVT (SDM Vol. 3A §20.1.4), and a halted vCPU wakes (`halted` cleared; IP already points
 * past its `hlt`). Returns {@link GUEST_INTERRUPT_DELIVERED}, {@link GUEST_INTERRUPT_BLOCKED} (nothing changed:
 * keep it pending and ask for the window), or a {@link GuestExitReason}: `Shutdown` when the delivery
 * triple-faults (IVT entry beyond IDTR.limit and no room for #GP/#DF either, or a stack that faults), `Mmio`
 * when the IVT lies in MMIO (the exit is in `exit`; deliver again after completing it), `InternalError`.
 */
export function deliverInterrupt(state: GuestCpuState, memory: GuestMemory, vector: number, exit: GuestExit): number {
  if (!interruptWindowOpen(state)) return GUEST_INTERRUPT_BLOCKED;
  return injectEvent(state, memory, vector, exit);
}

/**
 * Delivers `vector` through the IVT whatever RFLAGS.IF and the interrupt shadow say: what VM entry does with an
 * event the hypervisor injects (an NMI, or an interrupt user space queued with KVM_INTERRUPT, which KVM injects
 * at the next entry as it is). An interrupt shadow the vCPU was in ends. Returns what {@link deliverInterrupt}
 * returns, never {@link GUEST_INTERRUPT_BLOCKED}.
 */
export function injectEvent(state: GuestCpuState, memory: GuestMemory, vector: number, exit: GuestExit): number {
  if (R.running) throw new UsageError('ERR_INVALID_STATE', 'deliverInterrupt: not while runGuest is running');
  if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw new UsageError('ERR_OUT_OF_RANGE', `deliverInterrupt: vector ${String(vector)} is not in 0..255`);
  R.running = true;
  if (R.S !== state) R.S = state;
  if (R.M !== memory) R.M = memory;
  if (R.X !== exit) R.X = exit;
  R.hasLookup = memory.lookup !== undefined;
  R.cBase = R.cEnd = R.dBase = R.dEnd = R.wBase = R.wEnd = 0;
  R.exitKind = 0;
  R.csBase = state.csBase;
  R.csLim = state.csLimit;
  R.ip = state.eip;
  try {
    const r = deliver(vector, state.eip, state.eip);
    if (r === DELIVERED) {
      state.eip = R.ip;
      state.interruptShadow = 0;
      if (R.exitKind === 0) return GUEST_INTERRUPT_DELIVERED;
    }
    exit.reason = R.exitKind as GuestExitReasonValue;
    return R.exitKind;
  } catch (e) {
    if (e !== EMULATION_FAILED) throw e;
    emulationFailure(state, exit);
    exit.reason = GuestExitReason.InternalError;
    return GuestExitReason.InternalError;
  } finally {
    R.running = false;
  }
}
