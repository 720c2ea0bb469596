/**
 * Bit instructions (BT BTS BTR BTC, BSF BSR), double shifts (SHLD SHRD), CMPXCHG and XADD (SDM Vol. 2).
 *
 * @module
 */

import { readRm8, readRmV, rmAddr, writeRm8, writeRmV } from './addressing.js';
import { add, logic, sub } from './alu.js';
import { rd16, rd32 } from './data-memory.js';
import { fetch8, sext16 } from './decode.js';
import { AF, CF, OF, PARITY, SF, STATUS, ZF } from './flags.js';
import { ABANDONED, DELIVERED, interrupt } from './interrupts.js';
import { getR8, getRv, setR8, setRv } from './registers.js';
import { R } from './run-context.js';
import { segAddr } from './segments.js';

/**
 * BT/BTS/BTR/BTC (SDM Vol. 2A). `kind` 0 BT, 1 BTS, 2 BTR, 3 BTC; -1: the 0F BA group, whose ModRM.reg
 * (4–7) says which and whose offset is an imm8. A register offset into memory is signed and selects a
 * word/dword at `offset >> 4` (`>> 5`) operands from the address, wrapping within the address size; an
 * immediate offset and any register destination take the offset modulo the operand size. CF ← the bit;
 * ZF, OF, SF, AF, PF are left as they were (what this machine's hardware does: fixtures/real-kvm.json).
 */
export function bitOp(kind: number, imm: boolean): number {
  const s = R.S;
  const m = fetch8();
  let k = kind;
  if (imm) {
    k = ((m >> 3) & 7) - 4;
    if (k < 0) return interrupt(6, R.S.eip) === DELIVERED ? DELIVERED : ABANDONED;
  }
  const bits = R.o32 ? 32 : 16;
  const size = bits >> 3;
  let v: number;
  let bit: number;
  if (m >= 0xc0) {
    bit = (imm ? fetch8() : getRv((m >> 3) & 7)) & (bits - 1);
    v = getRv(m & 7);
  } else {
    let lin: number;
    if (imm) {
      lin = rmAddr(m, size);
      bit = fetch8() & (bits - 1);
    } else {
      rmAddr(m, 0); // decodes the operand (R.eaOff, R.eaSeg); the bit offset moves it
      const off = getRv((m >> 3) & 7);
      const signed = R.o32 ? off | 0 : sext16(off);
      const disp = Math.floor(signed / bits) * size;
      bit = signed - Math.floor(signed / bits) * bits;
      const amask = R.a32 ? 0xffffffff : 0xffff;
      const offset = ((R.eaOff + disp) & amask) >>> 0;
      lin = segAddr(R.eaSeg, offset, size);
    }
    R.eaLin = lin;
    v = R.o32 ? rd32(lin) : rd16(lin);
    if (v < 0) return ABANDONED;
  }
  const cf = (v >>> bit) & 1;
  s.eflags = (s.eflags & ~CF) | cf;
  if (k === 0) return DELIVERED;
  const mask = (1 << bit) >>> 0;
  const r = (k === 1 ? v | mask : k === 2 ? v & ~mask : v ^ mask) >>> 0;
  writeRmV(m, R.o32 ? r : r & 0xffff);
  return DELIVERED;
}

/**
 * BSF/BSR (SDM Vol. 2A): source 0 → ZF ← 1 and the destination is unchanged; else ZF ← 0 and the index of
 * the lowest/highest set bit. CF, OF, SF, AF, PF are undefined: the model sets them as `test src, src`
 * would (CF = OF = AF = 0, SF and PF from the source), as this machine's processor does
 * (fixtures/real-kvm.json `bsf-bsr`, `bsf-zero-keeps-dest`).
 */
export function bitScan(reg: number, v: number, reverse: boolean): void {
  const s = R.S;
  logic(v, R.o32 ? 0xffffffff : 0xffff, R.o32 ? 0x80000000 : 0x8000);
  if (v === 0) return;
  const idx = reverse ? 31 - Math.clz32(v) : 31 - Math.clz32(v & -v);
  setRv(reg, idx);
}

/**
 * SHLD (0F A4 ib, 0F A5 CL) / SHRD (0F AC, 0F AD) (SDM Vol. 2B): the count is masked to 5 bits; 0 changes
 * nothing. CF ← the last bit shifted out, SF/ZF/PF from the result, OF ← the sign changed (defined for a
 * count of 1; the model uses that formula for every count), AF ← 1 (undefined by the SDM; what this
 * machine's processor does: fixtures/real-kvm.json `shld-shrd`). A 16-bit count above 16 is
 * undefined: the model shifts the 48-bit concatenation `dst:src:dst`, as Intel processors do.
 */
export function doubleShift(op: number): number {
  const s = R.S;
  const m = fetch8();
  const a = readRmV(m);
  if (a < 0) return ABANDONED;
  const b = getRv((m >> 3) & 7);
  const count = ((op & 1) === 0 ? fetch8() : s.ecx) & 0x1f;
  if (count === 0) return DELIVERED;
  const bits = R.o32 ? 32 : 16;
  const left = op < 0xa8;
  let res: number;
  let cf: number;
  if (bits === 32) {
    const wide = left ? (BigInt(a) << 32n) | BigInt(b) : (BigInt(b) << 32n) | BigInt(a);
    if (left) {
      const sh = wide << BigInt(count);
      res = Number((sh >> 32n) & 0xffffffffn);
      cf = Number((wide >> BigInt(64 - count)) & 1n);
    } else {
      res = Number((wide >> BigInt(count)) & 0xffffffffn);
      cf = Number((wide >> BigInt(count - 1)) & 1n);
    }
  } else {
    // dst:src:dst as 48 bits (left) or dst:src:dst read from the right (right)
    const wide = left ? a * 2 ** 32 + b * 2 ** 16 + a : a * 2 ** 32 + b * 2 ** 16 + a;
    if (left) {
      const sh = wide * 2 ** count;
      res = Math.floor(sh / 2 ** 32) % 0x10000;
      cf = Math.floor(wide / 2 ** (48 - count)) % 2;
    } else {
      const lowFirst = a + b * 2 ** 16 + a * 2 ** 32;
      res = Math.floor(lowFirst / 2 ** count) % 0x10000;
      cf = Math.floor(lowFirst / 2 ** (count - 1)) % 2;
    }
  }
  const sign = bits === 32 ? 0x80000000 : 0x8000;
  const of = ((res & sign) !== 0) !== ((a & sign) !== 0);
  s.eflags =
    (s.eflags & ~STATUS) |
    PARITY[res & 0xff]! |
    (res === 0 ? ZF : 0) |
    ((res & sign) !== 0 ? SF : 0) |
    AF |
    cf |
    (of ? OF : 0);
  writeRmV(m, res >>> 0);
  return DELIVERED;
}

/**
 * CMPXCHG r/m, r (SDM Vol. 2A): flags as `cmp acc, r/m`; equal → r/m ← r, else the accumulator ← r/m (a
 * 32-bit accumulator write zero-extends). A memory destination is written either way (the old value when
 * unequal), as the processor's locked write cycle does.
 */
export function cmpxchg(bits: number): number {
  const s = R.S;
  const m = fetch8();
  const d = bits === 8 ? readRm8(m) : readRmV(m);
  if (d < 0) return ABANDONED;
  const mask = bits === 8 ? 0xff : bits === 16 ? 0xffff : 0xffffffff;
  const sign = bits === 8 ? 0x80 : bits === 16 ? 0x8000 : 0x80000000;
  const acc = bits === 8 ? s.eax & 0xff : bits === 16 ? s.eax & 0xffff : s.eax >>> 0;
  sub(acc, d, 0, mask, sign);
  const reg = (m >> 3) & 7;
  if (acc === d) {
    if (bits === 8) writeRm8(m, getR8(reg));
    else writeRmV(m, getRv(reg));
  } else {
    if (m < 0xc0) {
      if (bits === 8) writeRm8(m, d);
      else writeRmV(m, d);
    }
    if (bits === 8) setR8(0, d);
    else setRv(0, d);
  }
  return DELIVERED;
}

/** XADD r/m, r (SDM Vol. 2B): temp ← r/m + r; r ← r/m; r/m ← temp; flags as ADD. */
export function xadd(bits: number): number {
  const m = fetch8();
  const d = bits === 8 ? readRm8(m) : readRmV(m);
  if (d < 0) return ABANDONED;
  const mask = bits === 8 ? 0xff : bits === 16 ? 0xffff : 0xffffffff;
  const sign = bits === 8 ? 0x80 : bits === 16 ? 0x8000 : 0x80000000;
  const reg = (m >> 3) & 7;
  const r = bits === 8 ? getR8(reg) : getRv(reg);
  const sum = add(d, r, 0, mask, sign);
  if (bits === 8) {
    setR8(reg, d);
    writeRm8(m, sum);
  } else {
    setRv(reg, d);
    writeRmV(m, sum);
  }
  return DELIVERED;
}
