/**
 * The execute half of the decode/execute split: runs one instruction of 32-bit protected-mode code from its decoded
 * form (`decoded-form.ts`) in the decoded-instruction cache (`insn-cache.ts`), with the same helpers — ALU and
 * flags, stack, segment-limit checks, data memory, branches — and so the same effects, faults and exits as the
 * general decoder (`step.ts`), which still runs every instruction without a decoded form. What is saved is the
 * decoding: fetching the bytes, the prefix scan, ModRM/SIB and the displacement and immediate, on every execution.
 *
 * An entry is used only as the cache allows (its bytes equal memory, decoded in this mode, the whole instruction
 * within the CS limit), so no fetch can fault; each handler reads its operands before it writes anything, so a
 * fault or an MMIO read exit leaves the instruction uncommitted, as in the general decoder.
 *
 * @module
 */

import { operandAddr } from './addressing.js';
import { alu, cond, dec, inc, logic, shift } from './alu.js';
import { near } from './control.js';
import { rd16, rd32, rd8, wr32, wr8 } from './data-memory.js';
import { stringOp } from './string-ops.js';
import {
  FORM_ALU_AL_IMM, FORM_ALU_EAX_IMM, FORM_ALU_EB_GB, FORM_ALU_EV_GV, FORM_ALU_GB_EB, FORM_ALU_GV_EV, FORM_CALL, FORM_DEC_R,
  FORM_GRP1_EB, FORM_GRP1_EV, FORM_GRP5, FORM_INC_R, FORM_JCC, FORM_JMP, FORM_LEA, FORM_MOVX16, FORM_MOVX8, FORM_MOV_EB_GB,
  FORM_MOV_EB_IMM, FORM_MOV_EV_GV, FORM_MOV_EV_IMM, FORM_MOV_GB_EB, FORM_MOV_MOFFS, FORM_STRING, FORM_MOV_GV_EV, FORM_MOV_R32_IMM, FORM_MOV_R8_IMM,
  FORM_NOP, FORM_POP_R, FORM_PUSH_IMM, FORM_PUSH_R, FORM_RET, FORM_SETCC, FORM_SHIFT_EB, FORM_SHIFT_EV, FORM_TEST_EB_GB,
  FORM_TEST_EB_IMM, FORM_TEST_EV_GV, FORM_TEST_EV_IMM, NO_REG, type DecodedForms,
} from './decoded-form.js';
import { sext16, sext8 } from './decode.js';
import { EPOCH, entryAt, window } from './insn-cache.js';
import { faulted } from './interrupts.js';
import { STEP_ABANDONED, STEP_DONE } from './interpreter.js';
import { getR16, getR32, getR8, setR32, setR8 } from './registers.js';
import { EMULATION_FAILED, FAULT, R } from './run-context.js';
import { addSp, peek32, push32 } from './stack.js';
import { movMoffs, step } from './step.js';

const M32 = 0xffffffff;
const S32 = 0x80000000;

/**
 * The linear address of the memory operand of entry `k` for a `size`-byte access (0: none, as LEA), after the
 * segment-limit check — what `rmAddr32` computes while decoding.
 */
function ea(f: DecodedForms, k: number, size: number): number {
  const r = R;
  let off = f.disp[k]!;
  const base = f.base[k]!;
  if (base !== NO_REG) off += getR32(base);
  const index = f.index[k]!;
  if (index !== NO_REG) off += getR32(index & 7) * (1 << (index >> 3));
  r.eaOff = off >>> 0;
  r.eaUsesSp = base === 4;
  const lin = operandAddr(base === 4 || base === 5, r.eaOff, size);
  r.eaLin = lin;
  return lin;
}

/** The r/m32 operand of entry `k` (register, or memory read at `R.eaLin`); -1 when an MMIO read exits first. */
function readEv(f: DecodedForms, k: number, m: number): number {
  return m >= 0xc0 ? getR32(m & 7) : rd32(ea(f, k, 4));
}

function readEb(f: DecodedForms, k: number, m: number): number {
  return m >= 0xc0 ? getR8(m & 7) : rd8(ea(f, k, 1));
}

/** Writes the r/m32 operand read by {@link readEv}. */
function writeEv(m: number, v: number): void {
  if (m >= 0xc0) setR32(m & 7, v);
  else wr32(R.eaLin, v);
}

function writeEb(m: number, v: number): void {
  if (m >= 0xc0) setR8(m & 7, v);
  else wr8(R.eaLin, v);
}

/**
 * Runs the decoded form `form` of entry `k` of `f`, the instruction at CS offset `start` (`R.ip` already past it);
 * returns STEP_DONE, or STEP_ABANDONED when an MMIO read must exit first (nothing committed).
 */
function exec(f: DecodedForms, k: number, form: number, start: number): number {
  const r = R;
  const s = r.S;
  const m = f.modrm[k]!;
  switch (form) {
    case FORM_ALU_EV_GV: {
      const a = readEv(f, k, m);
      if (a < 0) return STEP_ABANDONED;
      const x = f.x[k]!;
      const v = alu(x, a, getR32((m >> 3) & 7), M32, S32);
      if (x !== 7) writeEv(m, v);
      break;
    }
    case FORM_ALU_GV_EV: {
      const b = readEv(f, k, m);
      if (b < 0) return STEP_ABANDONED;
      const x = f.x[k]!;
      const reg = (m >> 3) & 7;
      const v = alu(x, getR32(reg), b, M32, S32);
      if (x !== 7) setR32(reg, v);
      break;
    }
    case FORM_ALU_EB_GB: {
      const a = readEb(f, k, m);
      if (a < 0) return STEP_ABANDONED;
      const x = f.x[k]!;
      const v = alu(x, a, getR8((m >> 3) & 7), 0xff, 0x80);
      if (x !== 7) writeEb(m, v);
      break;
    }
    case FORM_ALU_GB_EB: {
      const b = readEb(f, k, m);
      if (b < 0) return STEP_ABANDONED;
      const x = f.x[k]!;
      const reg = (m >> 3) & 7;
      const v = alu(x, getR8(reg), b, 0xff, 0x80);
      if (x !== 7) setR8(reg, v);
      break;
    }
    case FORM_ALU_EAX_IMM: {
      const x = f.x[k]!;
      const v = alu(x, s.eax >>> 0, f.imm[k]! >>> 0, M32, S32);
      if (x !== 7) setR32(0, v);
      break;
    }
    case FORM_ALU_AL_IMM: {
      const x = f.x[k]!;
      const v = alu(x, s.eax & 0xff, f.imm[k]!, 0xff, 0x80);
      if (x !== 7) s.eax = s.eax - (s.eax & 0xff) + v;
      break;
    }
    case FORM_INC_R: {
      const x = f.x[k]!;
      setR32(x, inc(getR32(x), M32, S32));
      break;
    }
    case FORM_DEC_R: {
      const x = f.x[k]!;
      setR32(x, dec(getR32(x), M32, S32));
      break;
    }
    case FORM_PUSH_R:
      push32(getR32(f.x[k]!)); // PUSH ESP pushes the value before the decrement
      break;
    case FORM_POP_R: {
      const v = peek32(0);
      if (v < 0) return STEP_ABANDONED;
      addSp(4);
      setR32(f.x[k]!, v); // POP ESP: ESP gets the popped value
      break;
    }
    case FORM_PUSH_IMM:
      push32(f.imm[k]! >>> 0);
      break;
    case FORM_JCC:
      if (cond(f.x[k]!)) r.ip = near(r.ip + f.imm[k]!);
      break;
    case FORM_JMP:
      r.ip = near(r.ip + f.imm[k]!);
      break;
    case FORM_CALL:
      push32(r.ip);
      r.ip = near(r.ip + f.imm[k]!);
      break;
    case FORM_RET: {
      const v = peek32(0);
      if (v < 0) return STEP_ABANDONED;
      addSp(4 + f.imm[k]!);
      r.ip = near(v);
      break;
    }
    case FORM_GRP1_EV: {
      const a = readEv(f, k, m);
      if (a < 0) return STEP_ABANDONED;
      const x = f.x[k]!;
      const v = alu(x, a, f.imm[k]! >>> 0, M32, S32);
      if (x !== 7) writeEv(m, v);
      break;
    }
    case FORM_GRP1_EB: {
      const a = readEb(f, k, m);
      if (a < 0) return STEP_ABANDONED;
      const x = f.x[k]!;
      const v = alu(x, a, f.imm[k]!, 0xff, 0x80);
      if (x !== 7) writeEb(m, v);
      break;
    }
    case FORM_TEST_EV_GV: {
      const a = readEv(f, k, m);
      if (a < 0) return STEP_ABANDONED;
      logic(a & getR32((m >> 3) & 7), M32, S32);
      break;
    }
    case FORM_TEST_EB_GB: {
      const a = readEb(f, k, m);
      if (a < 0) return STEP_ABANDONED;
      logic(a & getR8((m >> 3) & 7), 0xff, 0x80);
      break;
    }
    case FORM_TEST_EV_IMM: {
      const a = readEv(f, k, m);
      if (a < 0) return STEP_ABANDONED;
      logic(a & (f.imm[k]! >>> 0), M32, S32);
      break;
    }
    case FORM_TEST_EB_IMM: {
      const a = readEb(f, k, m);
      if (a < 0) return STEP_ABANDONED;
      logic(a & f.imm[k]!, 0xff, 0x80);
      break;
    }
    case FORM_MOV_EB_GB:
      if (m < 0xc0) ea(f, k, 1);
      writeEb(m, getR8((m >> 3) & 7));
      break;
    case FORM_MOV_EV_GV:
      if (m < 0xc0) ea(f, k, 4);
      writeEv(m, getR32((m >> 3) & 7));
      break;
    case FORM_MOV_GB_EB: {
      const v = readEb(f, k, m);
      if (v < 0) return STEP_ABANDONED;
      setR8((m >> 3) & 7, v);
      break;
    }
    case FORM_MOV_GV_EV: {
      const v = readEv(f, k, m);
      if (v < 0) return STEP_ABANDONED;
      setR32((m >> 3) & 7, v);
      break;
    }
    case FORM_MOV_EB_IMM:
      if (m < 0xc0) ea(f, k, 1);
      writeEb(m, f.imm[k]!);
      break;
    case FORM_MOV_EV_IMM:
      if (m < 0xc0) ea(f, k, 4);
      writeEv(m, f.imm[k]! >>> 0);
      break;
    case FORM_LEA:
      ea(f, k, 0);
      setR32((m >> 3) & 7, r.eaOff);
      break;
    case FORM_NOP:
      break;
    case FORM_MOV_R8_IMM:
      setR8(f.x[k]!, f.imm[k]!);
      break;
    case FORM_MOV_R32_IMM:
      setR32(f.x[k]!, f.imm[k]! >>> 0);
      break;
    case FORM_SHIFT_EV: {
      const v = readEv(f, k, m);
      if (v < 0) return STEP_ABANDONED;
      const op = f.x[k]!;
      writeEv(m, shift((m >> 3) & 7, v, op === 0xc1 ? f.imm[k]! : op === 0xd1 ? 1 : s.ecx & 0xff, 32));
      break;
    }
    case FORM_SHIFT_EB: {
      const v = readEb(f, k, m);
      if (v < 0) return STEP_ABANDONED;
      const op = f.x[k]!;
      writeEb(m, shift((m >> 3) & 7, v, op === 0xc0 ? f.imm[k]! : op === 0xd0 ? 1 : s.ecx & 0xff, 8));
      break;
    }
    case FORM_GRP5: {
      const v = readEv(f, k, m);
      if (v < 0) return STEP_ABANDONED;
      switch (f.x[k]!) {
        case 0: writeEv(m, inc(v, M32, S32)); break;
        case 1: writeEv(m, dec(v, M32, S32)); break;
        case 2: push32(r.ip); r.ip = near(v); break; // CALL r/m32
        case 4: r.ip = near(v); break; // JMP r/m32
        default: push32(v); break; // PUSH r/m32
      }
      break;
    }
    case FORM_MOVX8: {
      const v = readEb(f, k, m);
      if (v < 0) return STEP_ABANDONED;
      setR32((m >> 3) & 7, f.x[k] === 1 ? sext8(v) >>> 0 : v);
      break;
    }
    case FORM_MOVX16: {
      const v = m >= 0xc0 ? getR16(m & 7) : rd16(ea(f, k, 2));
      if (v < 0) return STEP_ABANDONED;
      setR32((m >> 3) & 7, f.x[k] === 1 ? sext16(v) >>> 0 : v);
      break;
    }
    case FORM_MOV_MOFFS:
      if (!movMoffs(f.x[k]!, f.imm[k]! >>> 0)) return STEP_ABANDONED;
      break;
    case FORM_STRING:
      r.rep = m & 3;
      r.o32 = (m & 4) !== 0;
      r.a32 = (m & 8) !== 0;
      r.ovr = (m >> 4) - 1;
      r.prefixDirty = true;
      if (!stringOp(f.x[k]!, start)) return STEP_ABANDONED;
      break;
    case FORM_SETCC:
      if (m < 0xc0) ea(f, k, 1);
      writeEb(m, cond(f.x[k]!) ? 1 : 0);
      break;
    default:
      break;
  }
  return STEP_DONE;
}

/** Why {@link runForms} returned. */
const FORMS_STEP = 0;
const FORMS_STOP = 1;
const FORMS_AGAIN = 2;

/** What {@link runForms} last ended with (`FORMS_*`), in an object (a module `let` costs a hole check per read). */
const ENDED = { why: FORMS_STEP };

/** The prefix state of a decoded form without prefixes: 32-bit operands and addresses, no override, no REP. */
function noPrefixes(): void {
  const r = R;
  r.o32 = r.a32 = true;
  if (r.prefixDirty) {
    r.lock = false;
    r.ovr = -1;
    r.rep = 0;
    r.prefixDirty = false;
  }
}

/**
 * Runs up to `limit` instructions from their decoded forms, from CS offset `S.eip` on; returns how many completed.
 * `ENDED.why` says why it returned: `FORMS_STEP` — the instruction at `S.eip` is for the general decoder: it has no
 * decoded form (on a memory without the slot fast path, the fetch window then holds its cached bytes), or it raised an
 * exception or failed; `FORMS_STOP` — the run must end (an instruction exits, opened an interrupt shadow or asked the
 * host to act, an MMIO read must exit first); `FORMS_AGAIN` — the limit was reached.
 */
function runForms(limit: number): number {
  const r = R;
  const s = r.S;
  const c = r.code!;
  const csBase = s.csBase;
  const csLimit = s.csLimit;
  const epoch = EPOCH.now;
  r.csBase = csBase;
  r.csLim = csLimit;
  noPrefixes();
  let count = 0;
  let start = s.eip;
  let page = c.last;
  let pageLin = c.lastNumber * 4096;
  ENDED.why = FORMS_AGAIN;
  try {
    while (count < limit) {
      const lin = csBase + start;
      let k = lin - pageLin;
      let n = page !== undefined && k >= 0 && k < 4096 ? page.len[k]! : 0;
      // The cache's hit test (entryAt's), inline; anything else goes through entryAt (fill, compare, refuse).
      if (n === 0 || page!.mode[k] !== 3 || page!.checked[k] !== epoch || start + n - 1 > csLimit) {
        k = entryAt(lin, csLimit - start + 1);
        if (k < 0) {
          ENDED.why = FORMS_STEP;
          break;
        }
        page = c.last!;
        pageLin = lin - k;
        n = page.len[k]!;
      }
      const f = page!.forms;
      const form = f.form[k]!;
      if (form <= 1) {
        if (!r.hasLookup) window(page!, lin, k, n);
        ENDED.why = FORMS_STEP;
        break;
      }
      s.eip = start;
      r.ip = start + n;
      if (exec(f, k, form, start) !== STEP_DONE) {
        ENDED.why = FORMS_STOP;
        break;
      }
      if (form === FORM_STRING) noPrefixes();
      start = r.ip;
      count++;
      if (r.exitKind !== 0 || r.shadowSet !== 0 || r.endRun) {
        ENDED.why = FORMS_STOP;
        break;
      }
    }
    s.eip = start;
  } catch (e) {
    if (e !== FAULT && e !== EMULATION_FAILED) {
      r.X.executed += count; // the instructions before the failing one did complete
      throw e;
    }
    // The instruction at S.eip raised an exception or cannot be emulated: nothing of it is committed, and the general
    // decoder runs it again, to raise the same exception (or failure) with exactly its own fetch state.
    ENDED.why = FORMS_STEP;
  }
  return count;
}

/**
 * Executes up to `limit` instructions of 32-bit protected-mode code (CR0.PE, CS.D = 1): runs of decoded forms, and the
 * general decoder for the instructions without one, until an exit, the limit, or a change of mode (CR0.PE or CS.D
 * changed: `R.modeChanged`, and the caller continues in its own loop). Adds what it executed to `X.executed`.
 */
export function executeDecoded(limit: number): void {
  const r = R;
  const s = r.S;
  let n = 0;
  r.modeChanged = false;
  while (n < limit) {
    n += runForms(limit - n);
    const why = ENDED.why;
    if (why === FORMS_STOP || n >= limit) break;
    if (why === FORMS_AGAIN) {
      if (!r.pe || !r.def32) {
        r.modeChanged = true;
        break;
      }
      continue;
    }
    const start = s.eip;
    r.loopExecuted = n;
    let done: boolean;
    try {
      done = step(start) === STEP_DONE;
    } catch (e) {
      if (e !== FAULT) {
        r.X.executed += n;
        throw e;
      }
      done = faulted(start);
    }
    if (!done) break;
    n++;
    if (r.exitKind !== 0 || r.shadowSet !== 0 || r.enteredPaging || r.endRun) break;
    if (!r.pe || !r.def32) {
      r.modeChanged = true;
      break;
    }
  }
  r.X.executed += n;
}
