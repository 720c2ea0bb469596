/**
 * The guest CPU: an interpreter for x86 machine code in real mode and 32-bit protected mode without paging, the
 * part of `KVM_RUN` that in Linux is the hardware (VMX non-root / SVM guest mode) plus KVM's exit handlers.
 *
 * {@link runGuest} executes instructions from guest memory until one of them needs user space (port I/O,
 * `hlt`, MMIO), cannot be executed (emulation failure), shuts the vCPU down, or the instruction budget runs
 * out. It never allocates on the hot path: decoder scratch lives in one object (`run-context.ts`) for the duration
 * of one synchronous call (runs cannot nest), the exit goes into a caller-owned {@link GuestExit}, and instruction
 * fetch and data accesses cache the memslot they last hit.
 *
 * Where KVM's behaviour is visible to user space, it is modelled on arch/x86/kvm/x86.c:
 *
 * - **Port I/O** (`kvm_fast_pio`): the exit leaves RIP *on* the `in`/`out`; the next run completes it —
 *   `complete_fast_pio_in` merges the data into AL/AX (or zero-extends into RAX for 4 bytes) and skips the
 *   instruction, `complete_fast_pio_out` just skips it — unless user space moved RIP in between
 *   (`cui_linear_rip` no longer matches), in which case the completion is dropped. `out` to port 0x7e is
 *   the exception: with `KVM_X86_QUIRK_OUT_7E_INC_RIP` (on by default) RIP is advanced before the exit.
 * - **`hlt`** (`kvm_emulate_halt`): RIP is advanced past `hlt`, then the vCPU exits with `KVM_EXIT_HLT`
 *   (no in-kernel irqchip in this model).
 * - **MMIO** (`x86_emulate_instruction`, `complete_emulated_mmio`): a write is committed with the rest of
 *   the instruction (RIP advanced) and reported; a read exits with RIP unchanged and nothing committed, and
 *   the next run re-executes the instruction with the data user space supplied (the emulator's read cache).
 * - **Emulation failure** (`handle_emulation_failure` → `prepare_emulation_failure_exit`): an opcode the
 *   interpreter does not implement, or an instruction fetch from memory that is not RAM, exits with
 *   `KVM_EXIT_INTERNAL_ERROR`, sub-error `KVM_INTERNAL_ERROR_EMULATION`, and the instruction bytes.
 *
 * Instruction semantics and flags follow the Intel SDM Vol. 2 (instruction reference) and Vol. 1 §3.4.3
 * (EFLAGS); real-mode interrupt delivery follows Vol. 3A §20.1.4, protected-mode segmentation and delivery
 * through the IDT Vol. 3A §3–6 (`descriptors.ts`, `interrupts.ts`). The fast path of {@link execute} runs
 * real-mode code; 32-bit protected-mode code runs from its decoded forms (`decoded-exec.ts`), everything else through
 * the general decoder (`step.ts`). Not modelled: the A20 gate, TF
 * single-stepping, most of x87, paging, long and virtual-8086 mode, privilege-level changes, task switches
 * (each an internal-error exit).
 *
 * @module
 */

import { UsageError } from '@vac/core';
import { alu, cond } from './alu.js';
import { completePending } from './completions.js';
import { GuestCpuState, GuestPending } from './cpu-state.js';
import { byteAt } from './data-memory.js';
import { syncMode } from './descriptors.js';
import { GUEST_EMULATION_FLAG_INSTRUCTION_BYTES, GUEST_INTERNAL_ERROR_EMULATION, GUEST_MAX_INSN_BYTES, GuestExit, GuestExitReason, type GuestExitReasonValue, GuestIoDirection } from './exit.js';
import { AF, CF, OF, PARITY, SF, STATUS, ZF } from './flags.js';
import { executeDecoded } from './decoded-exec.js';
import { attachCache, fetchWindow } from './insn-cache.js';
import { DELIVERED, deliver, faulted } from './interrupts.js';
import type { GuestMemory } from './memory.js';
import type { GuestPlatform } from './platform.js';
import { completeInString, pio } from './port-io.js';
import { getR16, getR8, setR16, setR8 } from './registers.js';
import { DEFAULT_PLATFORM, EMULATION_FAILED, FAULT, GUEST_DEFAULT_QUIRKS, R } from './run-context.js';
import { step } from './step.js';

// The interpreter's public entry points that live with their concern.
export { GUEST_DEFAULT_QUIRKS, GUEST_QUIRK_OUT_7E_INC_RIP } from './run-context.js';
export { completeIn, completeMmioRead, completeOut, completePending } from './completions.js';
export { GUEST_INTERRUPT_BLOCKED, GUEST_INTERRUPT_DELIVERED, deliverInterrupt, injectEvent, interruptWindowOpen } from './interrupts.js';

/**
 * Executes guest code from `state` until an exit or until `budget` instructions have completed.
 *
 * At entry, a completion still owed to the previous exit is run first ({@link completePending} with
 * `exit.data`), so a caller can answer an `in` or MMIO read simply by writing the bytes into `exit.data`.
 * The result is written into `exit` (and returned): `Io`, `Hlt`, `Mmio`, `Shutdown`, `InternalError`, or
 * `Budget` when the budget ran out without an exit, or when an instruction made a request the host must act on
 * first ({@link GuestPlatform.requestPending}, e.g. kvmclock's update after the WRMSR that enables it) — calling
 * again continues exactly where it stopped.
 * A `rep`-prefixed string instruction counts one budget unit per iteration.
 *
 * @param state The vCPU's registers; updated in place.
 * @param memory Guest-physical memory (the VM's memslots). Must not change during the call.
 * @param budget Maximum number of instructions to complete (≥ 0).
 * @param exit Caller-owned exit record, reused across runs.
 * @param quirkMask KVM quirks in effect (`KVM_X86_QUIRK_*` bits); default {@link GUEST_DEFAULT_QUIRKS}.
 * @param platform The vCPU's CPUID table, MSRs and TSC (for `cpuid`, `rdmsr`/`wrmsr`, `rdtsc`); default: a
 *   platform with none ({@link defaultGuestPlatform}, shared by every run that passes none).
 */
export function runGuest(
  state: GuestCpuState,
  memory: GuestMemory,
  budget: number,
  exit: GuestExit,
  quirkMask: number = GUEST_DEFAULT_QUIRKS,
  platform: GuestPlatform = DEFAULT_PLATFORM,
): GuestExitReasonValue {
  if (R.running) throw new UsageError('ERR_INVALID_STATE', 'runGuest: runs cannot nest (called from a GuestMemory callback?)');
  R.running = true;
  // Pointer stores into module scope cost a write barrier each; skip them when the same vCPU runs again.
  // (The scratch keeps referring to the last run's objects until another run replaces them.)
  if (R.S !== state) R.S = state;
  if (R.M !== memory) R.M = memory;
  if (R.X !== exit) R.X = exit;
  if (R.P !== platform) R.P = platform;
  R.hasLookup = memory.lookup !== undefined;
  attachCache(memory);
  R.quirks = quirkMask;
  // Invalidate the slot caches (memslots may have changed since the last run) without touching pointers.
  R.cBase = R.cEnd = R.dBase = R.dEnd = R.wBase = R.wEnd = 0;
  syncMode();
  R.o32 = R.a32 = R.def32;
  R.lock = false;
  R.ovr = -1;
  R.rep = 0;
  R.prefixDirty = false;
  R.exitKind = 0;
  R.shadowSet = 0;
  R.enteredPaging = false;
  R.endRun = false;
  exit.executed = 0;
  state.halted = false; // a vCPU that runs is not halted (KVM_RUN after a KVM_EXIT_HLT continues past the hlt)
  let reason: number;
  try {
    if (state.pending === GuestPending.PioInString) completeInString();
    else if (state.pending !== GuestPending.None) completePending(state, exit.data);
    if (R.hasLookup) {
      // Prime the code-slot cache so the first instruction can already take the fast path.
      const slot = memory.lookup!(state.csBase + state.eip);
      if (slot !== undefined) {
        if (R.cBytes !== slot.bytes) R.cBytes = slot.bytes;
        R.cBase = slot.base;
        R.cEnd = slot.end;
      }
    }
    reason = 0;
    let left = budget;
    const unsupported = unsupportedMode(state);
    if (unsupported !== '') {
      left = 0;
      reason = notExecuted(exit, unsupported);
    }
    if (state.mmioCacheCount !== 0 && left > 0) {
      // Re-execute the instruction whose MMIO reads user space has now answered, then drop the cache —
      // unless it needs yet another MMIO read, in which case the cache must survive until that completes.
      // Once it completes, its interrupt shadow is as for any instruction (complete_emulated_mmio's emulation ends
      // in toggle_interruptibility): a shadow it ran in ends, one it opens (MOV SS, POP SS) holds for the next.
      const inShadow = state.interruptShadow !== 0;
      reason = execute(1);
      left--;
      if (!(reason === GuestExitReason.Mmio && exit.mmioIsWrite === 0)) state.mmioCacheCount = 0;
      if (exit.executed !== 0) {
        if (inShadow) state.interruptShadow = 0;
        if (R.shadowSet !== 0) {
          state.interruptShadow = R.shadowSet;
          R.shadowSet = 0;
        }
      }
    }
    if (reason === 0 && left > 0 && state.ripHigh !== 0) {
      // RIP above 4 GiB is past any real-mode CS limit: the first fetch raises #GP (IP pushed: its low 16 bits).
      R.csBase = state.csBase;
      R.csLim = state.csLimit;
      R.ip = state.eip;
      if (deliver(13, state.eip, state.eip, 0) === DELIVERED) state.eip = R.ip;
      else reason = R.exitKind;
    }
    // The interrupt shadow covers exactly one instruction: that one runs alone, then the shadow ends.
    while (reason === 0 && left > 0) {
      const before = exit.executed;
      const inShadow = state.interruptShadow !== 0;
      reason = execute(inShadow ? 1 : left);
      const ran = exit.executed - before;
      left -= ran;
      if (inShadow && ran > 0) state.interruptShadow = 0;
      if (R.shadowSet !== 0) {
        state.interruptShadow = R.shadowSet;
        R.shadowSet = 0;
      } else if (!inShadow) break;
    }
    if (R.enteredPaging) {
      R.enteredPaging = false;
      reason = notExecuted(exit, unsupportedMode(state));
    }
    if (reason === 0) reason = GuestExitReason.Budget;
  } catch (e) {
    if (e !== EMULATION_FAILED) throw e;
    emulationFailure(state, exit);
    reason = GuestExitReason.InternalError;
  } finally {
    R.running = false;
  }
  exit.reason = reason as GuestExitReasonValue;
  return exit.reason;
}

/**
 * Why the interpreter cannot execute the vCPU's mode, or '' when it can (real mode, and 32-bit protected mode
 * without paging): paging (CR0.PG), long mode (CS.L), virtual-8086 mode (EFLAGS.VM in protected mode).
 */
function unsupportedMode(state: GuestCpuState): string {
  const cr0 = state.cr0Low;
  if ((cr0 & 0x8000_0000) !== 0) return 'paging (CR0.PG = 1) is not implemented by the guest interpreter';
  if (((state.csAttrs1 >> 16) & 1) !== 0 && (cr0 & 1) !== 0) return 'long mode (CS.L = 1) is not implemented by the guest interpreter';
  if ((state.eflags & 0x20000) !== 0 && (cr0 & 1) !== 0) return 'virtual-8086 mode (EFLAGS.VM = 1) is not implemented by the guest interpreter';
  return '';
}

/** An internal-error exit without instruction bytes: the vCPU is in a mode the interpreter does not execute. */
function notExecuted(exit: GuestExit, detail: string): number {
  exit.suberror = GUEST_INTERNAL_ERROR_EMULATION;
  exit.flags = 0;
  exit.insnSize = 0;
  exit.detail = detail;
  return GuestExitReason.InternalError;
}

/**
 * Fills an emulation-failure exit the way `prepare_emulation_failure_exit` does: sub-error
 * `KVM_INTERNAL_ERROR_EMULATION`, the bytes of the instruction fetched so far (RIP still points at it),
 * padded to 15 with 0x90.
 */
export function emulationFailure(state: GuestCpuState, exit: GuestExit): void {
  const start = state.eip;
  let n = Math.min(Math.max(R.ip - start, 0), GUEST_MAX_INSN_BYTES);
  exit.insnBytes.fill(0x90);
  const base = state.csBase;
  for (let i = 0; i < n; i++) {
    const b = byteAt(base + start + i);
    if (b < 0) {
      n = i;
      break;
    }
    exit.insnBytes[i] = b;
  }
  exit.suberror = GUEST_INTERNAL_ERROR_EMULATION;
  exit.insnSize = n;
  exit.flags = n > 0 ? GUEST_EMULATION_FLAG_INSTRUCTION_BYTES : 0;
  exit.detail = R.failDetail;
  state.pending = GuestPending.None;
  state.mmioCacheCount = 0;
}

/**
 * First CS offset of the fast-path window (see {@link execute}), as a small integer so the hot loop does
 * integer rather than floating-point arithmetic; when the window is not representable, an empty window. The fast
 * path is real-mode code: in protected mode the window is empty (every instruction takes the general decoder).
 */
export function fastLo(s: GuestCpuState): number {
  const r = R;
  if (r.pe) return 1;
  const lo = r.cBase - s.csBase;
  const hi = r.cEnd - s.csBase - 16;
  return lo >= -0x3fffffff && hi <= 0x3fffffff && lo <= hi ? lo | 0 : 1;
}

/** Last CS offset of the fast-path window (see {@link fastLo}). */
export function fastHi(s: GuestCpuState): number {
  const r = R;
  if (r.pe) return 0;
  const lo = r.cBase - s.csBase;
  const hi = Math.min(r.cEnd - s.csBase - 16, s.csLimit - 15); // the whole instruction within the CS limit too
  return lo >= -0x3fffffff && hi <= 0x3fffffff && lo <= hi ? hi | 0 : 0;
}

export const STEP_DONE = 0;

export const STEP_ABANDONED = 1;

/**
 * Executes up to `limit` instructions; returns the exit reason, or 0 when the limit was reached. 32-bit
 * protected-mode code runs from its decoded forms when the run has them ({@link executeDecoded}), everything else
 * in {@link executeGeneral}; each hands over to the other when the mode changes.
 */
export function execute(limit: number): number {
  const r = R;
  const x = r.X;
  let left = limit;
  for (;;) {
    const before = x.executed;
    if (r.decoded && r.pe && r.def32) executeDecoded(left);
    else executeGeneral(left);
    left -= x.executed - before;
    if (!r.modeChanged || left <= 0) return r.exitKind;
  }
}

/**
 * Executes up to `limit` instructions (see {@link execute}); adds them to `X.executed`.
 *
 * The loop first tries a fast path for the most common prefix-free instructions whose bytes lie entirely
 * inside the cached code slot (no per-byte fetch checks, no helper calls that would not be inlined);
 * everything else, and everything near a slot edge, goes through {@link step}.
 */
function executeGeneral(limit: number): void {
  const s = R.S;
  let n = 0;
  R.modeChanged = false;
  // The code slot as seen from CS: offsets [lo, hi] start an instruction that fits entirely (≤ 15 bytes)
  // in the slot. Recomputed after every general-path instruction (which may refill the cache or load CS).
  const cached = R.fetchCached;
  let b = R.cBytes;
  let lo = cached ? 1 : fastLo(s);
  let hi = cached ? 0 : fastHi(s);
  // b[start - origin] is the byte at CS offset `start` (the slot's window starts at `lo`; a cached instruction's bytes
  // sit at its page offset, and its window admits that one instruction: lo = hi = start).
  let origin = lo;
  let rip = s.eip;
  loop: while (n < limit) {
    const start = rip;
    if (cached && (start < lo || start > hi)) {
      // The decoded-instruction cache, in real mode: the fetch window is this one instruction's cached bytes (or
      // empty), and the fast path runs on them. Protected-mode code runs from the decoded forms (`stepDecoded`).
      const off = R.pe ? -1 : fetchWindow(s.csBase + start, s.csLimit - start + 1);
      if (off >= 0) {
        b = R.cBytes;
        origin = start - off;
        lo = hi = start;
      } else {
        if (R.pe) R.cBase = R.cEnd = 0; // no cached window left over from real mode
        lo = 1;
        hi = 0;
      }
    }
    if (start >= lo && start <= hi) {
      const o = start - origin;
      const op = b[o]!;
      switch (op) {
        // The flag arithmetic below is `inc`/`dec`/`add`/`sub` written out by hand: calls from this loop
        // are often not inlined (the compiler's inlining budget is spent), and a call per ALU instruction
        // doubles its cost. The tests run every flag case through both this path and `step`.
        case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: case 0x46: case 0x47: {
          const v = getR16(op & 7);
          const res = (v + 1) & 0xffff;
          setR16(op & 7, res);
          s.eflags =
            (s.eflags & ~(STATUS & ~CF)) |
            PARITY[res & 0xff]! |
            (res === 0 ? ZF : 0) |
            ((res >> 8) & SF) |
            ((res & 0xf) === 0 ? AF : 0) |
            (res === 0x8000 ? OF : 0);
          rip = start + 1;
          n++;
          continue loop;
        }
        case 0x48: case 0x49: case 0x4a: case 0x4b: case 0x4c: case 0x4d: case 0x4e: case 0x4f: {
          const v = getR16(op & 7);
          const res = (v - 1) & 0xffff;
          setR16(op & 7, res);
          s.eflags =
            (s.eflags & ~(STATUS & ~CF)) |
            PARITY[res & 0xff]! |
            (res === 0 ? ZF : 0) |
            ((res >> 8) & SF) |
            ((v & 0xf) === 0 ? AF : 0) |
            (v === 0x8000 ? OF : 0);
          rip = start + 1;
          n++;
          continue loop;
        }
        case 0x70: case 0x71: case 0x72: case 0x73: case 0x74: case 0x75: case 0x76: case 0x77:
        case 0x78: case 0x79: case 0x7a: case 0x7b: case 0x7c: case 0x7d: case 0x7e: case 0x7f:
          rip = cond(op & 0xf) ? (start + 2 + ((b[o + 1]! << 24) >> 24)) & 0xffff : start + 2;
          n++;
          continue loop;
        case 0xeb:
          rip = (start + 2 + ((b[o + 1]! << 24) >> 24)) & 0xffff;
          n++;
          continue loop;
        case 0xe9:
          rip = (start + 3 + (b[o + 1]! | (b[o + 2]! << 8))) & 0xffff;
          n++;
          continue loop;
        case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
          setR8(op & 7, b[o + 1]!);
          rip = start + 2;
          n++;
          continue loop;
        case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf:
          setR16(op & 7, b[o + 1]! | (b[o + 2]! << 8));
          rip = start + 3;
          n++;
          continue loop;
        case 0x04: { // ADD AL, imm8
          const a = s.eax & 0xff;
          const c = b[o + 1]!;
          const r = a + c;
          const res = r & 0xff;
          s.eax = s.eax - a + res;
          s.eflags =
            (s.eflags & ~STATUS) |
            PARITY[res]! |
            (res === 0 ? ZF : 0) |
            (res & SF) |
            ((a ^ c ^ res) & AF) |
            (r >> 8) |
            ((((a ^ res) & (c ^ res)) << 4) & OF);
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x2c: case 0x3c: { // SUB / CMP AL, imm8
          const a = s.eax & 0xff;
          const c = b[o + 1]!;
          const r = a - c;
          const res = r & 0xff;
          if (op === 0x2c) s.eax = s.eax - a + res;
          s.eflags =
            (s.eflags & ~STATUS) |
            PARITY[res]! |
            (res === 0 ? ZF : 0) |
            (res & SF) |
            ((a ^ c ^ res) & AF) |
            (r < 0 ? CF : 0) |
            ((((a ^ c) & (a ^ res)) << 4) & OF);
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x0c: case 0x14: case 0x1c: case 0x24: case 0x34: {
          const r = alu(op >> 3, s.eax & 0xff, b[o + 1]!, 0xff, 0x80);
          s.eax = s.eax - (s.eax & 0xff) + r;
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x05: { // ADD AX, imm16
          const a = s.eax & 0xffff;
          const c = b[o + 1]! | (b[o + 2]! << 8);
          const r = a + c;
          const res = r & 0xffff;
          s.eax = s.eax - a + res;
          s.eflags =
            (s.eflags & ~STATUS) |
            PARITY[res & 0xff]! |
            (res === 0 ? ZF : 0) |
            ((res >> 8) & SF) |
            ((a ^ c ^ res) & AF) |
            (r >> 16) |
            ((((a ^ res) & (c ^ res)) >> 4) & OF);
          rip = start + 3;
          n++;
          continue loop;
        }
        case 0x2d: case 0x3d: { // SUB / CMP AX, imm16
          const a = s.eax & 0xffff;
          const c = b[o + 1]! | (b[o + 2]! << 8);
          const r = a - c;
          const res = r & 0xffff;
          if (op === 0x2d) s.eax = s.eax - a + res;
          s.eflags =
            (s.eflags & ~STATUS) |
            PARITY[res & 0xff]! |
            (res === 0 ? ZF : 0) |
            ((res >> 8) & SF) |
            ((a ^ c ^ res) & AF) |
            (r < 0 ? CF : 0) |
            ((((a ^ c) & (a ^ res)) >> 4) & OF);
          rip = start + 3;
          n++;
          continue loop;
        }
        case 0x0d: case 0x15: case 0x1d: case 0x25: case 0x35: {
          const r = alu(op >> 3, s.eax & 0xffff, b[o + 1]! | (b[o + 2]! << 8), 0xffff, 0x8000);
          s.eax = s.eax - (s.eax & 0xffff) + r;
          rip = start + 3;
          n++;
          continue loop;
        }
        case 0x00: case 0x08: case 0x10: case 0x18: case 0x20: case 0x28: case 0x30: case 0x38:
        case 0x02: case 0x0a: case 0x12: case 0x1a: case 0x22: case 0x2a: case 0x32: case 0x3a: {
          const m = b[o + 1]!;
          if (m < 0xc0) break; // memory operand: general path
          const rm = m & 7;
          const reg = (m >> 3) & 7;
          if ((op & 2) === 0) {
            const r = alu(op >> 3, getR8(rm), getR8(reg), 0xff, 0x80);
            if (op !== 0x38) setR8(rm, r);
          } else {
            const r = alu(op >> 3, getR8(reg), getR8(rm), 0xff, 0x80);
            if (op !== 0x3a) setR8(reg, r);
          }
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x01: case 0x09: case 0x11: case 0x19: case 0x21: case 0x29: case 0x31: case 0x39:
        case 0x03: case 0x0b: case 0x13: case 0x1b: case 0x23: case 0x2b: case 0x33: case 0x3b: {
          const m = b[o + 1]!;
          if (m < 0xc0) break;
          const rm = m & 7;
          const reg = (m >> 3) & 7;
          if ((op & 2) === 0) {
            const r = alu(op >> 3, getR16(rm), getR16(reg), 0xffff, 0x8000);
            if (op !== 0x39) setR16(rm, r);
          } else {
            const r = alu(op >> 3, getR16(reg), getR16(rm), 0xffff, 0x8000);
            if (op !== 0x3b) setR16(reg, r);
          }
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x88: case 0x8a: {
          const m = b[o + 1]!;
          if (m < 0xc0) break;
          if (op === 0x88) setR8(m & 7, getR8((m >> 3) & 7));
          else setR8((m >> 3) & 7, getR8(m & 7));
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x89: case 0x8b: {
          const m = b[o + 1]!;
          if (m < 0xc0) break;
          if (op === 0x89) setR16(m & 7, getR16((m >> 3) & 7));
          else setR16((m >> 3) & 7, getR16(m & 7));
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x90:
          rip = start + 1;
          n++;
          continue loop;
        case 0xee: case 0xec: // OUT DX, AL / IN AL, DX
          R.csBase = s.csBase;
          R.ip = start + 1;
          pio(op === 0xee ? GuestIoDirection.Out : GuestIoDirection.In, 1, s.edx & 0xffff, start);
          rip = R.ip;
          n++;
          break loop;
        case 0xf4: // HLT
          R.exitKind = GuestExitReason.Hlt;
          s.halted = true;
          rip = start + 1;
          n++;
          break loop;
        default:
          break;
      }
    }
    s.eip = start;
    R.loopExecuted = n;
    let done: boolean;
    try {
      done = step(start) === STEP_DONE;
    } catch (e) {
      if (e !== FAULT) {
        R.X.executed += n; // the instructions before the failing one did complete
        throw e;
      }
      done = faulted(start);
    }
    rip = s.eip;
    if (!done) break;
    n++;
    if (R.exitKind !== 0 || R.shadowSet !== 0 || R.enteredPaging || R.endRun) break;
    if (R.decoded && R.pe && R.def32) {
      R.modeChanged = true;
      break;
    }
    if (cached) {
      lo = 1;
      hi = 0;
    } else {
      b = R.cBytes;
      lo = origin = fastLo(s);
      hi = fastHi(s);
    }
  }
  s.eip = rip;
  R.X.executed += n;
}
