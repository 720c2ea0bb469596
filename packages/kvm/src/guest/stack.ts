/**
 * The stack: pushes, pops and peeks through SS (SP, or ESP when SS.B is set in protected mode), and ENTER.
 *
 * @module
 */

import { rd16, rd32, wr16, wr32 } from './data-memory.js';
import { fetch16, fetch8 } from './decode.js';
import { getRv, setRv } from './registers.js';
import { R, fail, raise } from './run-context.js';
import { SEG_SS, segAddr } from './segments.js';

/**
 * The linear address of the `size` bytes at stack offset SP + `delta` (SP, or ESP with a 32-bit stack, wrapping
 * within its width), after SS's limit check (#SS). Real mode keeps its own check (offset + size − 1 ≤ limit).
 */
export function stackAddr(delta: number, size: number): number {
  const s = R.S;
  if (R.stack32) return segAddr(SEG_SS, (s.esp + delta) >>> 0, size);
  const o = ((s.esp & 0xffff) + delta) & 0xffff;
  if (R.pe) return segAddr(SEG_SS, o, size);
  if (o + size - 1 > s.ssLimit) raise(12);
  return s.ssBase + o;
}

/** The linear address of the `size` bytes at offset `offset` of SS (EBP-relative frames: ENTER, LEAVE). */
export function ssAddr(offset: number, size: number): number {
  const s = R.S;
  if (R.pe) return segAddr(SEG_SS, offset, size);
  if (offset + size - 1 > s.ssLimit) raise(12);
  return s.ssBase + offset;
}

export function push16(v: number): void {
  const lin = stackAddr(-2, 2);
  addSp(-2);
  wr16(lin, v & 0xffff);
}

export function push32(v: number): void {
  const lin = stackAddr(-4, 4);
  addSp(-4);
  wr32(lin, v);
}

export function pushV(v: number): void {
  if (R.o32) push32(v);
  else push16(v);
}

/** Reads the stack `offset` bytes above SP without popping; -1 when an MMIO read must exit first. */
export function peek16(offset: number): number {
  return rd16(stackAddr(offset, 2));
}

export function peek32(offset: number): number {
  return rd32(stackAddr(offset, 4));
}

export function peekV(offset: number): number {
  return R.o32 ? peek32(offset) : peek16(offset);
}

/** SP += n (ESP with a 32-bit stack; the bits above the stack's width are kept). */
export function addSp(n: number): void {
  const s = R.S;
  if (R.stack32) s.esp = (s.esp + n) >>> 0;
  else s.esp = s.esp - (s.esp & 0xffff) + (((s.esp & 0xffff) + n) & 0xffff);
}

/**
 * ENTER imm16, imm8 (SDM Vol. 2A) with a 16-bit stack: push BP, copy `level − 1` frame pointers from the
 * old frame, push the new frame pointer, BP ← it, SP −= imm16. The whole frame is checked against SS's limit
 * before anything is written (#SS). Linux's emulator only handles level 0 (`em_enter`); the hardware, which
 * this models, handles every level (mod 32).
 */
export function enter(): void {
  const s = R.S;
  const alloc = fetch16();
  const level = fetch8() & 0x1f;
  const w = R.o32 ? 4 : 2;
  const mask = R.stack32 ? 0xffffffff : 0xffff;
  const pushes = level === 0 ? 1 : level + 1;
  for (let k = 1; k <= pushes; k++) stackAddr(-k * w, w);
  let bp = (s.ebp & mask) >>> 0;
  const copies: number[] = [];
  for (let i = 1; i < level; i++) {
    bp = ((bp - w) & mask) >>> 0;
    const lin = ssAddr(bp, w);
    const v = R.o32 ? rd32(lin) : rd16(lin);
    if (v < 0) fail('ENTER reading its frame from MMIO is not implemented by the guest interpreter');
    copies.push(v);
  }
  pushV(getRv(5));
  const frame = (s.esp & mask) >>> 0;
  for (const v of copies) pushV(v);
  if (level > 0) pushV(frame);
  setRv(5, frame);
  addSp(-alloc);
}
