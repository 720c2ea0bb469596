/**
 * The stack: pushes, pops and peeks through SS, and ENTER.
 *
 * @module
 */

import { rd16, rd32, wr16, wr32 } from './data-memory.js';
import { fetch16, fetch8 } from './decode.js';
import { getRv, setRv } from './registers.js';
import { R, fail, raise } from './run-context.js';

export function push16(v: number): void {
  const s = R.S;
  const sp = ((s.esp & 0xffff) - 2) & 0xffff;
  if (sp + 1 > s.ssLimit) raise(12);
  s.esp = s.esp - (s.esp & 0xffff) + sp;
  wr16(s.ssBase + sp, v & 0xffff);
}

export function push32(v: number): void {
  const s = R.S;
  const sp = ((s.esp & 0xffff) - 4) & 0xffff;
  if (sp + 3 > s.ssLimit) raise(12);
  s.esp = s.esp - (s.esp & 0xffff) + sp;
  wr32(s.ssBase + sp, v);
}

export function pushV(v: number): void {
  if (R.o32) push32(v);
  else push16(v);
}

/** Reads the stack `offset` bytes above SP without popping; -1 when an MMIO read must exit first. */
export function peek16(offset: number): number {
  const s = R.S;
  const o = ((s.esp & 0xffff) + offset) & 0xffff;
  if (o + 1 > s.ssLimit) raise(12);
  return rd16(s.ssBase + o);
}

export function peek32(offset: number): number {
  const s = R.S;
  const o = ((s.esp & 0xffff) + offset) & 0xffff;
  if (o + 3 > s.ssLimit) raise(12);
  return rd32(s.ssBase + o);
}

export function peekV(offset: number): number {
  return R.o32 ? peek32(offset) : peek16(offset);
}

export function addSp(n: number): void {
  const s = R.S;
  s.esp = s.esp - (s.esp & 0xffff) + (((s.esp & 0xffff) + n) & 0xffff);
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
  const sp0 = s.esp & 0xffff;
  const pushes = level === 0 ? 1 : level + 1;
  for (let k = 1; k <= pushes; k++) if (((sp0 - k * w) & 0xffff) + w - 1 > s.ssLimit) raise(12);
  let bp = s.ebp & 0xffff;
  const copies: number[] = [];
  for (let i = 1; i < level; i++) {
    bp = (bp - w) & 0xffff;
    if (bp + w - 1 > s.ssLimit) raise(12);
    const v = R.o32 ? rd32(s.ssBase + bp) : rd16(s.ssBase + bp);
    if (v < 0) fail('ENTER reading its frame from MMIO is not implemented by the guest interpreter');
    copies.push(v);
  }
  pushV(getRv(5));
  const frame = s.esp & 0xffff;
  for (const v of copies) pushV(v);
  if (level > 0) pushV(frame);
  setRv(5, frame);
  addSp(-alloc);
}
