/**
 * Effective addresses of ModRM/SIB memory operands (SDM Vol. 2A §2.1.5, Tables 2-1 to 2-3) and the
 * ModRM operand accessors.
 *
 * @module
 */

import { rd16, rd32, rd8, wr16, wr32, wr8 } from './data-memory.js';
import { fetch16, fetch32, fetch8, sext8 } from './decode.js';
import { getR32, getR8, getRv, setR8, setRv } from './registers.js';
import { R } from './run-context.js';
import { SEG_DS, SEG_SS, segAddr, segBaseOf } from './segments.js';

/**
 * Decodes the memory operand of ModRM byte `m` (mod ≠ 3), fetching SIB/displacement; returns the linear
 * address of a `size`-byte access there (0: no access, as `lea`), after the segment-limit check.
 */
export function rmAddr(m: number, size: number): number {
  const r = R;
  if (r.a32) return rmAddr32(m, size);
  const s = r.S;
  const mod = m >> 6;
  let ea: number;
  let stack = false;
  switch (m & 7) {
    case 0: ea = (s.ebx & 0xffff) + (s.esi & 0xffff); break;
    case 1: ea = (s.ebx & 0xffff) + (s.edi & 0xffff); break;
    case 2: ea = (s.ebp & 0xffff) + (s.esi & 0xffff); stack = true; break;
    case 3: ea = (s.ebp & 0xffff) + (s.edi & 0xffff); stack = true; break;
    case 4: ea = s.esi & 0xffff; break;
    case 5: ea = s.edi & 0xffff; break;
    case 6:
      if (mod === 0) return operandAddr(false, (r.eaOff = fetch16()), size);
      ea = s.ebp & 0xffff;
      stack = true;
      break;
    default: ea = s.ebx & 0xffff; break;
  }
  if (mod === 1) ea += sext8(fetch8());
  else if (mod === 2) ea += fetch16();
  r.eaOff = ea & 0xffff;
  return operandAddr(stack, r.eaOff, size);
}

export function rmAddr32(m: number, size: number): number {
  const mod = m >> 6;
  const rm = m & 7;
  let ea: number;
  let stack = false;
  R.eaUsesSp = false;
  if (rm === 4) {
    const sib = fetch8();
    const base = sib & 7;
    const index = (sib >> 3) & 7;
    if (base === 5 && mod === 0) {
      ea = fetch32();
    } else {
      ea = getR32(base);
      if (base === 4 || base === 5) stack = true;
      if (base === 4) R.eaUsesSp = true;
    }
    if (index !== 4) ea += getR32(index) * (1 << (sib >> 6));
  } else if (rm === 5 && mod === 0) {
    ea = fetch32();
  } else {
    ea = getR32(rm);
    if (rm === 5) stack = true;
  }
  if (mod === 1) ea += sext8(fetch8());
  else if (mod === 2) ea += fetch32();
  R.eaOff = ea >>> 0;
  return operandAddr(stack, R.eaOff, size);
}

/** The segment of a memory operand: the override, else SS for BP/SP-based addresses, else DS. */
export function operandSeg(stack: boolean): number {
  if (R.ovr >= 0) return R.ovr;
  return stack ? SEG_SS : SEG_DS;
}

export function operandAddr(stack: boolean, offset: number, size: number): number {
  const r = R;
  const seg = operandSeg(stack);
  r.eaSeg = seg;
  if (size === 0) return segBaseOf(seg) + offset;
  return segAddr(seg, offset, size);
}

export function readRm8(m: number): number {
  const r = R;
  if (m >= 0xc0) return getR8(m & 7);
  r.eaLin = rmAddr(m, 1);
  return rd8(r.eaLin);
}

export function writeRm8(m: number, v: number): void {
  if (m >= 0xc0) setR8(m & 7, v);
  else wr8(R.eaLin, v);
}

export function readRmV(m: number): number {
  const r = R;
  if (m >= 0xc0) return getRv(m & 7);
  r.eaLin = rmAddr(m, r.o32 ? 4 : 2);
  return r.o32 ? rd32(r.eaLin) : rd16(r.eaLin);
}

export function writeRmV(m: number, v: number): void {
  const r = R;
  if (m >= 0xc0) setRv(m & 7, v);
  else if (r.o32) wr32(r.eaLin, v);
  else wr16(r.eaLin, v);
}
