/**
 * String instructions (MOVS CMPS STOS LODS SCAS) with REP/REPE/REPNE.
 *
 * @module
 */

import { sub } from './alu.js';
import { rd16, rd32, rd8, wr16, wr32, wr8 } from './data-memory.js';
import { DF, ZF } from './flags.js';
import { setR32 } from './registers.js';
import { R } from './run-context.js';
import { SEG_DS, SEG_ES, segAddr } from './segments.js';

/**
 * One iteration of a string instruction (MOVS, CMPS, STOS, LODS, SCAS; SDM Vol. 2). With a REP prefix the
 * instruction re-executes itself (RIP stays on it) until the count runs out or, for CMPS/SCAS, the ZF
 * condition ends it — so each iteration is one budget unit and an MMIO exit can interrupt it. Returns
 * false when an MMIO read must exit first.
 */
export function stringOp(op: number, start: number): boolean {
  const s = R.S;
  const size = (op & 1) === 0 ? 1 : R.o32 ? 4 : 2;
  const amask = R.a32 ? 0xffffffff : 0xffff;
  if (R.rep !== 0) {
    const count = R.a32 ? s.ecx >>> 0 : s.ecx & 0xffff;
    if (count === 0) return true;
  }
  const delta = (s.eflags & DF) !== 0 ? -size : size;
  const si = R.a32 ? s.esi >>> 0 : s.esi & 0xffff;
  const di = R.a32 ? s.edi >>> 0 : s.edi & 0xffff;
  // Limits first (SDM: #GP/#SS before any effect); LODS has no destination, STOS/SCAS no source.
  const src = op === 0xaa || op === 0xab || op === 0xae || op === 0xaf ? 0 : segAddr(R.ovr >= 0 ? R.ovr : SEG_DS, si, size);
  const dst = op === 0xac || op === 0xad ? 0 : segAddr(SEG_ES, di, size);
  const mask = size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff;
  const sign = size === 1 ? 0x80 : size === 2 ? 0x8000 : 0x80000000;
  let usesSi = false;
  let usesDi = false;
  let zfEnds = false;
  switch (op) {
    case 0xa4: case 0xa5: { // MOVS
      const v = size === 1 ? rd8(src) : size === 2 ? rd16(src) : rd32(src);
      if (v < 0) return false;
      if (size === 1) wr8(dst, v);
      else if (size === 2) wr16(dst, v);
      else wr32(dst, v);
      usesSi = usesDi = true;
      break;
    }
    case 0xa6: case 0xa7: { // CMPS: [DS:SI] − [ES:DI]
      const a = size === 1 ? rd8(src) : size === 2 ? rd16(src) : rd32(src);
      if (a < 0) return false;
      const b = size === 1 ? rd8(dst) : size === 2 ? rd16(dst) : rd32(dst);
      if (b < 0) return false;
      sub(a, b, 0, mask, sign);
      usesSi = usesDi = zfEnds = true;
      break;
    }
    case 0xaa: case 0xab: { // STOS
      const v = size === 1 ? s.eax & 0xff : size === 2 ? s.eax & 0xffff : s.eax >>> 0;
      if (size === 1) wr8(dst, v);
      else if (size === 2) wr16(dst, v);
      else wr32(dst, v);
      usesDi = true;
      break;
    }
    case 0xac: case 0xad: { // LODS
      const v = size === 1 ? rd8(src) : size === 2 ? rd16(src) : rd32(src);
      if (v < 0) return false;
      if (size === 1) s.eax = s.eax - (s.eax & 0xff) + v;
      else if (size === 2) s.eax = s.eax - (s.eax & 0xffff) + v;
      else setR32(0, v);
      usesSi = true;
      break;
    }
    default: { // SCAS: AL/AX/EAX − [ES:DI]
      const b = size === 1 ? rd8(dst) : size === 2 ? rd16(dst) : rd32(dst);
      if (b < 0) return false;
      const a = size === 1 ? s.eax & 0xff : size === 2 ? s.eax & 0xffff : s.eax >>> 0;
      sub(a, b, 0, mask, sign);
      usesDi = zfEnds = true;
      break;
    }
  }
  if (usesSi) {
    const v = (si + delta) & amask;
    s.esi = R.a32 ? v >>> 0 : s.esi - (s.esi & 0xffff) + v;
  }
  if (usesDi) {
    const v = (di + delta) & amask;
    s.edi = R.a32 ? v >>> 0 : s.edi - (s.edi & 0xffff) + v;
  }
  if (R.rep !== 0) {
    const count = ((R.a32 ? s.ecx >>> 0 : s.ecx & 0xffff) - 1) & amask;
    s.ecx = R.a32 ? count >>> 0 : s.ecx - (s.ecx & 0xffff) + count;
    let again = count !== 0;
    if (again && zfEnds) {
      const zf = (s.eflags & ZF) !== 0;
      again = R.rep === 3 ? zf : !zf; // REPE continues while equal, REPNE while not equal
    }
    if (again) R.ip = start;
  }
  return true;
}
