/**
 * Arithmetic and flags: ADD ADC SUB SBB CMP AND OR XOR INC DEC, the condition codes, shifts and rotates,
 * BCD adjusts, MUL/IMUL/DIV/IDIV and group 3 (SDM Vol. 2; Vol. 1 §3.4.3.1).
 *
 * @module
 */

import { readRm8, readRmV, writeRm8, writeRmV } from './addressing.js';
import { fetch8, fetchV, sext16, sext8 } from './decode.js';
import { AF, CF, OF, PARITY, PF, SF, STATUS, ZF } from './flags.js';
import { ABANDONED, DELIVERED, interrupt, invalidOpcode } from './interrupts.js';
import { setAx, setR32 } from './registers.js';
import { R } from './run-context.js';

/**
 * DAA / DAS (SDM Vol. 2A): AL adjusted after a packed-BCD add / subtract; CF and AF as the SDM's pseudo-code sets
 * them, SF/ZF/PF from AL. OF is undefined: cleared here, as KVM's emulator (`em_das`, an OR of AL) leaves it.
 */
export function decimalAdjust(subtract: boolean): void {
  const s = R.S;
  const oldAl = s.eax & 0xff;
  const oldCf = (s.eflags & CF) !== 0;
  let al = oldAl;
  let cf = false;
  let af = false;
  if ((al & 0x0f) > 9 || (s.eflags & AF) !== 0) {
    const r = subtract ? al - 6 : al + 6;
    cf = oldCf || r < 0 || r > 0xff;
    al = r & 0xff;
    af = true;
  }
  if (oldAl > 0x99 || oldCf) {
    al = (subtract ? al - 0x60 : al + 0x60) & 0xff;
    cf = true;
  } else if (!subtract) {
    cf = false;
  }
  s.eax = s.eax - (s.eax & 0xff) + al;
  logic(al, 0xff, 0x80);
  s.eflags = (s.eflags & ~(CF | AF)) | (cf ? CF : 0) | (af ? AF : 0);
}

/**
 * AAA / AAS (SDM Vol. 2A): after an unpacked-BCD add / subtract, AX ± 0x106 (AAS: AL − 6, AH − 1) when AL's low
 * nibble is above 9 or AF is set, with AF = CF = 1; else AF = CF = 0; then AL's high nibble is cleared. OF, SF, ZF
 * and PF are undefined: SF/ZF/PF are set from AL here and OF cleared.
 */
export function asciiAdjust(subtract: boolean): void {
  const s = R.S;
  let ax = s.eax & 0xffff;
  const adjust = (ax & 0x0f) > 9 || (s.eflags & AF) !== 0;
  if (adjust) ax = subtract ? (((ax & 0xff) - 6) & 0xff) | ((((ax >> 8) - 1) & 0xff) << 8) : (ax + 0x106) & 0xffff;
  ax &= 0xff0f;
  setAx(ax);
  logic(ax & 0xff, 0xff, 0x80);
  if (adjust) s.eflags |= CF | AF;
}

// The flag functions below spell the flag bits as literals (CF 1, PF 4, AF 0x10, ZF 0x40, SF 0x80, OF 0x800; the six
// status flags 0x8d5, without CF 0x8d4) rather than import them from flags.ts: from source, every use of an imported
// binding is a module-variable load with a TDZ check in V8's bytecode (5 bytes), and these functions are inlined
// into the decoder's hot paths only while the caller's cumulative inlining budget lasts (docs/performance.md).

/** ADD/ADC: result = a + b + carry; CF = unsigned carry out, OF = signed overflow, AF = carry out of bit 3. */
export function add(a: number, b: number, carry: number, mask: number, sign: number): number {
  const r = a + b + carry;
  const res = (r & mask) >>> 0;
  const s = R.S;
  s.eflags =
    (s.eflags & ~0x8d5) |
    PARITY[res & 0xff]! |
    (res === 0 ? 0x40 : 0) |
    ((res & sign) !== 0 ? 0x80 : 0) |
    ((a ^ b ^ res) & 0x10) |
    (r > mask ? 1 : 0) |
    (((a ^ res) & (b ^ res) & sign) !== 0 ? 0x800 : 0);
  return res;
}

/** SUB/SBB/CMP: result = a − b − borrow; CF = unsigned borrow, OF = signed overflow, AF = borrow from bit 4. */
export function sub(a: number, b: number, borrow: number, mask: number, sign: number): number {
  const r = a - b - borrow;
  const res = (r & mask) >>> 0;
  const s = R.S;
  s.eflags =
    (s.eflags & ~0x8d5) |
    PARITY[res & 0xff]! |
    (res === 0 ? 0x40 : 0) |
    ((res & sign) !== 0 ? 0x80 : 0) |
    ((a ^ b ^ res) & 0x10) |
    (r < 0 ? 1 : 0) |
    (((a ^ b) & (a ^ res) & sign) !== 0 ? 0x800 : 0);
  return res;
}

/**
 * AND/OR/XOR/TEST: OF and CF cleared, SF/ZF/PF from the result. AF is undefined per the SDM; this model
 * clears it.
 */
export function logic(r: number, mask: number, sign: number): number {
  const res = (r & mask) >>> 0;
  const s = R.S;
  s.eflags =
    (s.eflags & ~0x8d5) | PARITY[res & 0xff]! | (res === 0 ? 0x40 : 0) | ((res & sign) !== 0 ? 0x80 : 0);
  return res;
}

/** INC: like ADD 1, but CF is not affected. */
export function inc(a: number, mask: number, sign: number): number {
  const res = ((a + 1) & mask) >>> 0;
  const s = R.S;
  s.eflags =
    (s.eflags & ~0x8d4) |
    PARITY[res & 0xff]! |
    (res === 0 ? 0x40 : 0) |
    ((res & sign) !== 0 ? 0x80 : 0) |
    ((res & 0xf) === 0 ? 0x10 : 0) |
    (res === sign ? 0x800 : 0);
  return res;
}

/** DEC: like SUB 1, but CF is not affected. */
export function dec(a: number, mask: number, sign: number): number {
  const res = ((a - 1) & mask) >>> 0;
  const s = R.S;
  s.eflags =
    (s.eflags & ~0x8d4) |
    PARITY[res & 0xff]! |
    (res === 0 ? 0x40 : 0) |
    ((res & sign) !== 0 ? 0x80 : 0) |
    ((a & 0xf) === 0 ? 0x10 : 0) |
    (a === sign ? 0x800 : 0);
  return res;
}

/** The eight ALU operations of opcodes 00–3F and group 1 (80/81/83), by their /digit: ADD OR ADC SBB AND SUB XOR CMP. */
export function alu(op: number, a: number, b: number, mask: number, sign: number): number {
  switch (op) {
    case 0: return add(a, b, 0, mask, sign);
    case 1: return logic(a | b, mask, sign);
    case 2: return add(a, b, R.S.eflags & 1, mask, sign);
    case 3: return sub(a, b, R.S.eflags & 1, mask, sign);
    case 4: return logic(a & b, mask, sign);
    case 6: return logic(a ^ b, mask, sign);
    default: return sub(a, b, 0, mask, sign); // 5 SUB, 7 CMP
  }
}

/** The condition of Jcc/SETcc with condition code `cc` (SDM Vol. 2 Appendix B.1.4.7, Table B-1). */
export function cond(cc: number): boolean {
  const f = R.S.eflags;
  let r: boolean;
  switch (cc >> 1) {
    case 0: r = (f & 0x800) !== 0; break; // O
    case 1: r = (f & 1) !== 0; break; // B/C
    case 2: r = (f & 0x40) !== 0; break; // Z/E
    case 3: r = (f & 0x41) !== 0; break; // BE
    case 4: r = (f & 0x80) !== 0; break; // S
    case 5: r = (f & 4) !== 0; break; // P
    case 6: r = ((f >> 7) & 1) !== ((f >> 11) & 1); break; // L: SF ≠ OF
    default: r = (f & 0x40) !== 0 || ((f >> 7) & 1) !== ((f >> 11) & 1); break; // LE
  }
  return (cc & 1) === 0 ? r : !r;
}

/**
 * Group 2 shifts and rotates (SDM Vol. 2: RCL/RCR/ROL/ROR, SAL/SAR/SHL/SHR). The count is masked to 5
 * bits; a zero count changes no flags. OF is defined by the SDM only for 1-bit shifts: this model applies
 * the 1-bit formula for every count. AF is undefined after shifts: this model clears it.
 */
export function shift(op: number, v: number, count: number, bits: number): number {
  count &= 0x1f;
  if (count === 0) return v;
  const mask = bits === 32 ? 0xffffffff : (1 << bits) - 1;
  const sign = bits === 32 ? 0x80000000 : 1 << (bits - 1);
  const s = R.S;
  let res: number;
  let cf: number;
  let of: boolean;
  switch (op) {
    case 0: { // ROL
      const c = count % bits;
      res = c === 0 ? v : (((v << c) | (v >>> (bits - c))) & mask) >>> 0;
      cf = res & 1;
      of = ((res & sign) !== 0) !== (cf !== 0);
      s.eflags = (s.eflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 1: { // ROR
      const c = count % bits;
      res = c === 0 ? v : (((v >>> c) | (v << (bits - c))) & mask) >>> 0;
      cf = (res & sign) !== 0 ? 1 : 0;
      of = ((res & sign) !== 0) !== ((res & (sign >>> 1)) !== 0);
      s.eflags = (s.eflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 2: { // RCL
      const c = bits === 32 ? count : count % (bits + 1);
      res = v;
      cf = s.eflags & CF;
      for (let i = 0; i < c; i++) {
        const out = (res & sign) !== 0 ? 1 : 0;
        res = (((res << 1) | cf) & mask) >>> 0;
        cf = out;
      }
      of = ((res & sign) !== 0) !== (cf !== 0);
      s.eflags = (s.eflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 3: { // RCR
      const c = bits === 32 ? count : count % (bits + 1);
      res = v;
      cf = s.eflags & CF;
      of = ((v & sign) !== 0) !== (cf !== 0);
      for (let i = 0; i < c; i++) {
        const out = res & 1;
        res = ((res >>> 1) | (cf !== 0 ? sign : 0)) >>> 0;
        cf = out;
      }
      s.eflags = (s.eflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 5: // SHR
      res = v >>> count;
      cf = (v >>> (count - 1)) & 1;
      of = (v & sign) !== 0;
      break;
    case 7: { // SAR
      const signed = bits === 32 ? v | 0 : bits === 16 ? sext16(v) : sext8(v);
      res = ((signed >> count) & mask) >>> 0;
      cf = (signed >> (count - 1)) & 1;
      of = false;
      break;
    }
    default: // 4 SHL, 6 SAL
      res = ((v << count) & mask) >>> 0;
      cf = count <= bits ? (v >>> (bits - count)) & 1 : 0;
      of = ((res & sign) !== 0) !== (cf !== 0);
      break;
  }
  s.eflags =
    (s.eflags & ~STATUS) |
    PARITY[res & 0xff]! |
    (res === 0 ? ZF : 0) |
    ((res & sign) !== 0 ? SF : 0) |
    cf |
    (of ? OF : 0);
  return res;
}

/** IMUL with two operands: truncated product, CF = OF = the product did not fit (SDM Vol. 2A, IMUL). */
export function imul2(a: number, b: number): number {
  const s = R.S;
  let res: number;
  let overflow: boolean;
  if (R.o32) {
    const sa = a | 0;
    const sb = b | 0;
    res = Math.imul(sa, sb);
    overflow = sa * sb !== res; // exact below 2^53; larger products differ from any int32 anyway
    res >>>= 0;
  } else {
    const p = sext16(a) * sext16(b);
    res = p & 0xffff;
    overflow = p !== sext16(res);
  }
  s.eflags = (s.eflags & ~(CF | OF)) | (overflow ? CF | OF : 0);
  return res;
}

/**
 * Group 3: TEST/NOT/NEG/MUL/IMUL/DIV/IDIV r/m (SDM Vol. 2). For MUL/IMUL only CF and OF are defined, and
 * for DIV/IDIV no flag is: the model leaves the undefined flags unchanged. A divide error raises #DE
 * (vector 0) with the faulting instruction's IP.
 */
export function group3(bits: number, start: number): number {
  const s = R.S;
  const m = fetch8();
  const sub3 = (m >> 3) & 7;
  if (sub3 === 1) return invalidOpcode(start) ? DELIVERED : ABANDONED;
  const mask = bits === 8 ? 0xff : bits === 16 ? 0xffff : 0xffffffff;
  const sign = bits === 8 ? 0x80 : bits === 16 ? 0x8000 : 0x80000000;
  const v = bits === 8 ? readRm8(m) : readRmV(m);
  if (v < 0) return ABANDONED;
  switch (sub3) {
    case 0: { // TEST r/m, imm
      const imm = bits === 8 ? fetch8() : fetchV();
      logic(v & imm, mask, sign);
      return DELIVERED;
    }
    case 2: // NOT: no flags
    case 3: { // NEG: CF = (operand ≠ 0), other flags as 0 − operand
      const r = sub3 === 2 ? (~v & mask) >>> 0 : sub(0, v, 0, mask, sign);
      if (bits === 8) writeRm8(m, r);
      else writeRmV(m, r);
      return DELIVERED;
    }
    case 4: { // MUL
      let hi: number;
      if (bits === 8) {
        const p = (s.eax & 0xff) * v;
        s.eax = s.eax - (s.eax & 0xffff) + p;
        hi = p >> 8;
      } else if (bits === 16) {
        const p = (s.eax & 0xffff) * v;
        hi = p >>> 16;
        s.eax = s.eax - (s.eax & 0xffff) + (p & 0xffff);
        s.edx = s.edx - (s.edx & 0xffff) + hi;
      } else {
        const p = BigInt(s.eax >>> 0) * BigInt(v);
        hi = Number(p >> 32n);
        setR32(0, Number(p & 0xffffffffn));
        setR32(2, hi);
      }
      s.eflags = (s.eflags & ~(CF | OF)) | (hi !== 0 ? CF | OF : 0);
      return DELIVERED;
    }
    case 5: { // IMUL (one operand)
      let overflow: boolean;
      if (bits === 8) {
        const p = sext8(s.eax & 0xff) * sext8(v);
        s.eax = s.eax - (s.eax & 0xffff) + (p & 0xffff);
        overflow = p !== sext8(p & 0xff);
      } else if (bits === 16) {
        const p = sext16(s.eax & 0xffff) * sext16(v);
        s.eax = s.eax - (s.eax & 0xffff) + (p & 0xffff);
        s.edx = s.edx - (s.edx & 0xffff) + ((p >> 16) & 0xffff);
        overflow = p !== sext16(p & 0xffff);
      } else {
        const p = BigInt(s.eax | 0) * BigInt(v | 0);
        const u = BigInt.asUintN(64, p);
        setR32(0, Number(u & 0xffffffffn));
        setR32(2, Number(u >> 32n));
        overflow = p !== BigInt(s.eax | 0);
      }
      s.eflags = (s.eflags & ~(CF | OF)) | (overflow ? CF | OF : 0);
      return DELIVERED;
    }
    case 6: { // DIV
      if (v === 0) return interrupt(0, start);
      if (bits === 8) {
        const d = s.eax & 0xffff;
        const q = Math.floor(d / v);
        if (q > 0xff) return interrupt(0, start);
        s.eax = s.eax - (s.eax & 0xffff) + (((d % v) << 8) | q);
      } else if (bits === 16) {
        const d = (s.edx & 0xffff) * 0x10000 + (s.eax & 0xffff);
        const q = Math.floor(d / v);
        if (q > 0xffff) return interrupt(0, start);
        s.eax = s.eax - (s.eax & 0xffff) + q;
        s.edx = s.edx - (s.edx & 0xffff) + (d % v);
      } else {
        const d = (BigInt(s.edx >>> 0) << 32n) | BigInt(s.eax >>> 0);
        const q = d / BigInt(v);
        if (q > 0xffffffffn) return interrupt(0, start);
        setR32(0, Number(q));
        setR32(2, Number(d % BigInt(v)));
      }
      return DELIVERED;
    }
    default: { // 7 IDIV: quotient truncated toward zero, remainder has the dividend's sign
      if (v === 0) return interrupt(0, start);
      if (bits === 8) {
        const d = sext16(s.eax & 0xffff);
        const dv = sext8(v);
        const q = Math.trunc(d / dv);
        if (q > 0x7f || q < -0x80) return interrupt(0, start);
        const r = d - q * dv;
        s.eax = s.eax - (s.eax & 0xffff) + (((r & 0xff) << 8) | (q & 0xff));
      } else if (bits === 16) {
        const d = ((s.edx & 0xffff) << 16) | (s.eax & 0xffff);
        const dv = sext16(v);
        const q = Math.trunc(d / dv);
        if (q > 0x7fff || q < -0x8000) return interrupt(0, start);
        const r = d - q * dv;
        s.eax = s.eax - (s.eax & 0xffff) + (q & 0xffff);
        s.edx = s.edx - (s.edx & 0xffff) + (r & 0xffff);
      } else {
        const d = BigInt.asIntN(64, (BigInt(s.edx >>> 0) << 32n) | BigInt(s.eax >>> 0));
        const dv = BigInt(v | 0);
        const q = d / dv; // BigInt division truncates toward zero
        if (q > 0x7fffffffn || q < -0x80000000n) return interrupt(0, start);
        setR32(0, Number(BigInt.asUintN(32, q)));
        setR32(2, Number(BigInt.asUintN(32, d % dv)));
      }
      return DELIVERED;
    }
  }
}
