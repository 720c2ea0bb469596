/**
 * Instruction fetch through CS (with the slot cache and the CS-limit check), prefixes (SDM Vol. 2A §2.1.1) and
 * the LOCK-prefix rule.
 *
 * @module
 */

import { GUEST_MAX_INSN_BYTES } from './exit.js';
import { R, fail, raise } from './run-context.js';
import { SEG_CS, SEG_DS, SEG_ES, SEG_FS, SEG_GS, SEG_SS } from './segments.js';

/** 1 for the prefix bytes legal in 16-bit code. */
export const PREFIX = new Uint8Array(256);

for (const p of [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]) PREFIX[p] = 1;

export function fetch8(): number {
  const r = R;
  const lin = r.csBase + r.ip;
  if (lin >= r.cBase && lin < r.cEnd && r.ip <= r.csLim) {
    r.ip++;
    return r.cBytes[lin - r.cBase]!;
  }
  return fetchSlow();
}

export function fetchSlow(): number {
  const lin = R.csBase + R.ip;
  if (R.ip > R.csLim) raise(13); // past the CS limit (SDM Vol. 3A §20.1.1: #GP in real-address mode)
  if (R.ip - R.S.eip >= GUEST_MAX_INSN_BYTES) fail('instruction longer than 15 bytes');
  if (R.hasLookup) {
    const slot = R.M.lookup!(lin);
    if (slot !== undefined) {
      if (R.cBytes !== slot.bytes) R.cBytes = slot.bytes;
      R.cBase = slot.base;
      R.cEnd = slot.end;
      R.ip++;
      return R.cBytes[lin - R.cBase]!;
    }
  } else {
    const b = R.M.read8(lin);
    if (b >= 0) {
      R.ip++;
      return b;
    }
  }
  return fail('instruction fetch from guest-physical memory that is not RAM');
}

export function fetch16(): number {
  const r = R;
  const lin = r.csBase + r.ip;
  if (lin >= r.cBase && lin + 2 <= r.cEnd && r.ip + 1 <= r.csLim) {
    r.ip += 2;
    const o = lin - r.cBase;
    return r.cBytes[o]! | (r.cBytes[o + 1]! << 8);
  }
  const lo = fetch8();
  return lo | (fetch8() << 8);
}

export function fetch32(): number {
  const lo = fetch16();
  return lo + fetch16() * 0x10000;
}

/** Fetches an operand-size immediate (16 bits, or 32 with a 0x66 prefix). */
export function fetchV(): number {
  return R.o32 ? fetch32() : fetch16();
}

export function sext8(v: number): number {
  return (v << 24) >> 24;
}

export function sext16(v: number): number {
  return (v << 16) >> 16;
}

export function readPrefixes(op: number): number {
  const s = R.S;
  R.o32 = R.a32 = R.def32;
  R.lock = false;
  R.ovr = -1;
  R.rep = 0;
  R.prefixDirty = true;
  for (;;) {
    switch (op) {
      case 0x26: R.ovr = SEG_ES; break;
      case 0x2e: R.ovr = SEG_CS; break;
      case 0x36: R.ovr = SEG_SS; break;
      case 0x3e: R.ovr = SEG_DS; break;
      case 0x64: R.ovr = SEG_FS; break;
      case 0x65: R.ovr = SEG_GS; break;
      case 0x66: R.o32 = !R.def32; break; // the other operand size (SDM Vol. 2A §2.1.1: 16 ↔ 32 with CS.D)
      case 0x67: R.a32 = !R.def32; break;
      case 0xf0: R.lock = true; break; // checked once the opcode is known (lockable)
      case 0xf2: R.rep = 2; break;
      case 0xf3: R.rep = 3; break;
      default: return op;
    }
    if (R.ip - s.eip >= GUEST_MAX_INSN_BYTES) fail('instruction longer than 15 bytes');
    op = fetch8();
  }
}

/**
 * Whether a LOCK prefix is allowed on opcode `op` (whose ModRM, and for 0F its second byte, follow at `ip`):
 * only the read-modify-write forms with a memory destination — ADD ADC AND BTC BTR BTS CMPXCHG CMPXCHG8B DEC
 * INC NEG NOT OR SBB SUB XADD XCHG XOR (SDM Vol. 2A, LOCK). Anything else with LOCK raises #UD.
 */
export function lockable(op: number): boolean {
  const save = R.ip;
  let ok = false;
  if (op === 0x0f) {
    const op2 = fetch8();
    const m = fetch8();
    const r = (m >> 3) & 7;
    ok =
      m < 0xc0 &&
      (op2 === 0xab || op2 === 0xb3 || op2 === 0xbb || op2 === 0xb0 || op2 === 0xb1 || op2 === 0xc0 || op2 === 0xc1 ||
        (op2 === 0xba && r >= 5) || (op2 === 0xc7 && r === 1));
  } else if (op < 0x40 ? (op & 6) === 0 && op < 0x38 : (op >= 0x80 && op <= 0x87) || op === 0xf6 || op === 0xf7 || op === 0xfe || op === 0xff) {
    const m = fetch8();
    const r = (m >> 3) & 7;
    if (m < 0xc0) {
      if (op < 0x40) ok = true;
      else if (op <= 0x83) ok = r !== 7;
      else if (op === 0x86 || op === 0x87) ok = true;
      else if (op === 0xf6 || op === 0xf7) ok = r === 2 || r === 3;
      else if (op >= 0xfe) ok = r <= 1;
    }
  }
  R.ip = save;
  return ok;
}
