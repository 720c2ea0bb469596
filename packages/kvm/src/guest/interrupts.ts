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
import { attachCache } from './insn-cache.js';
import { EMULATION_FAILED, FAULT, R } from './run-context.js';

/** RFLAGS.NT (bit 14), RF (bit 16), VM (bit 17). */
const X86_EFLAGS_NT = 0x4000;
const X86_EFLAGS_RF = 0x10000;
const X86_EFLAGS_VM = 0x20000;
import { SEG_CS, loadSeg } from './segments.js';
import { push16, push32, stackAddr } from './stack.js';
import { checkGateTarget, gate, loadCodeSegment, readGate, syncMode } from './descriptors.js';

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
export function deliver(vector: number, returnIp: number, faultIp: number, code = -1, soft = false): number {
  let v = vector;
  let back = returnIp;
  let c = code;
  let ext = soft ? 0 : 1;
  for (;;) {
    const r = R.pe ? idtDeliver(v, back, c, ext) : ivtDeliver(v, back);
    if (r < FAULTED) return r;
    const nested = r - FAULTED;
    if (v === 8) {
      R.exitKind = GuestExitReason.Shutdown;
      return ABANDONED;
    }
    const double = contributory(v) && contributory(nested);
    v = double ? 8 : nested;
    c = double ? 0 : hasErrorCode(nested) ? R.faultError : -1;
    ext = 1;
    back = faultIp;
  }
}

/** The exceptions that push an error code in protected mode: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP (SDM Vol. 3A Table 6-1). */
export function hasErrorCode(vector: number): boolean {
  return vector === 8 || (vector >= 10 && vector <= 14) || vector === 17 || vector === 21;
}

/**
 * One protected-mode delivery through the IDT (SDM Vol. 3A §6.12.1, Vol. 2A "INT n" pseudo-code) to a handler
 * at the current privilege level: the gate ({@link readGate}), its code segment (a DPL above CPL raises
 * #GP(selector + EXT); below CPL would switch stacks through the TSS, which is not modelled), room on the
 * stack for EFLAGS, CS, EIP and the error code (`code` ≥ 0), 32- or 16-bit as the gate is; then the pushes,
 * TF, NT, RF and VM cleared (and IF, through an interrupt gate), CS:EIP loaded. Returns DELIVERED, or FAULTED +
 * the vector the delivery raised (with its error code in `R.faultError`; nothing changed).
 */
function idtDeliver(vector: number, returnIp: number, code: number, ext: number): number {
  const s = R.S;
  try {
    readGate(vector, ext);
    const size32 = gate.size32;
    const sel = gate.selector;
    const offset = gate.offset;
    checkGateTarget(sel, offset, ext);
    const w = size32 ? 4 : 2;
    const n = (code >= 0 ? 4 : 3) * w;
    stackAddr(-n, n);
    const flags = s.eflags;
    const oldCs = s.csSelector;
    if (size32) {
      push32(flags);
      push32(oldCs);
      push32(returnIp);
      if (code >= 0) push32(code);
    } else {
      push16(flags);
      push16(oldCs);
      push16(returnIp);
      if (code >= 0) push16(code);
    }
    R.ip = loadCodeSegment(sel, offset, false, true, ext);
    s.eflags &= ~(X86_EFLAGS_TF | X86_EFLAGS_NT | X86_EFLAGS_RF | X86_EFLAGS_VM | (gate.trap ? 0 : X86_EFLAGS_IF));
  } catch (e) {
    if (e !== FAULT) throw e;
    return FAULTED + R.faultVector;
  }
  s.ripHigh = 0;
  s.halted = false;
  return DELIVERED;
}

/**
 * Exceptions raised from inside an instruction (#DE, #UD, …) and delivered with `returnIp`. In protected mode a
 * fault-class exception sets RFLAGS.RF first, so the EFLAGS image pushed has it (SDM Vol. 3A §18.3.1.1; KVM's
 * `inject_pending_event` does the same for the exceptions it injects) and a delivery that triple-faults leaves it set.
 */
export function interrupt(vector: number, returnIp: number): number {
  if (R.pe && faultClass(vector)) R.S.eflags |= X86_EFLAGS_RF;
  return deliver(vector, returnIp, R.S.eip);
}

/** The fault-class exceptions (SDM Vol. 3A Table 6-1): #DE #BR #UD #NM #TS #NP #SS #GP #PF #MF #AC #XM #VE #CP. */
export function faultClass(vector: number): boolean {
  return vector === 0 || (vector >= 5 && vector <= 7) || (vector >= 10 && vector <= 14) || vector === 16 || vector === 17 || vector === 19 || vector === 20 || vector === 21;
}

/** `int n`, `int3`, `into`: a software interrupt (no error code; EXT clear in the error codes of what it raises). */
export function softwareInterrupt(vector: number, returnIp: number): number {
  return deliver(vector, returnIp, R.S.eip, -1, true);
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
  R.enteredPaging = false;
  R.S.pending = GuestPending.None;
  const v = R.faultVector;
  if (R.pe && faultClass(v)) R.S.eflags |= X86_EFLAGS_RF;
  if (deliver(v, start, start, hasErrorCode(v) ? R.faultError : -1) !== DELIVERED) return false;
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
  attachCache(memory);
  R.cBase = R.cEnd = R.dBase = R.dEnd = R.wBase = R.wEnd = 0;
  R.exitKind = 0;
  R.csBase = state.csBase;
  R.csLim = state.csLimit;
  R.ip = state.eip;
  syncMode();
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
