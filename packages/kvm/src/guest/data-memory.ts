/**
 * Data reads and writes of guest memory through the slot caches. Reads return -1 when an MMIO read exit
 * has been prepared (the caller abandons the instruction); writes to non-RAM become an MMIO write exit
 * reported after the instruction commits.
 *
 * @module
 */

import { shift } from './alu.js';
import { GuestPending } from './cpu-state.js';
import { GuestExitReason } from './exit.js';
import { codeWritten } from './insn-cache.js';
import { R, fail } from './run-context.js';

/**
 * Whether linear address `lin` lies in a page holding cached instructions (`insn-cache.ts`): a write there must drop
 * the entries it overlaps. One bit-map load per write.
 */
function inCodePage(lin: number): boolean {
  return (R.codeBits[lin >>> 17]! & (1 << ((lin >>> 12) & 31))) !== 0;
}


export function rd8(lin: number): number {
  const r = R;
  if (lin >= r.dBase && lin < r.dEnd) return r.dBytes[lin - r.dBase]!;
  return rdSlow(lin, 1);
}

export function rd16(lin: number): number {
  const r = R;
  if (lin >= r.dBase && lin + 2 <= r.dEnd) {
    const o = lin - r.dBase;
    return r.dBytes[o]! | (r.dBytes[o + 1]! << 8);
  }
  return rdSlow(lin, 2);
}

export function rd32(lin: number): number {
  const r = R;
  if (lin >= r.dBase && lin + 4 <= r.dEnd) {
    const o = lin - r.dBase;
    return (r.dBytes[o]! | (r.dBytes[o + 1]! << 8) | (r.dBytes[o + 2]! << 16) | (r.dBytes[o + 3]! << 24)) >>> 0;
  }
  return rdSlow(lin, 4);
}

export function rdV(lin: number): number {
  return R.o32 ? rd32(lin) : rd16(lin);
}

export function byteAt(gpa: number): number {
  if (!R.hasLookup) return R.M.read8(gpa);
  const slot = R.M.lookup!(gpa);
  return slot === undefined ? -1 : slot.bytes[gpa - slot.base]!;
}

/** 256^i: the weight of byte i of a little-endian value (a table: `2 ** (8 * i)` is a call to Math.pow per byte). */
const BYTE_WEIGHT = Float64Array.from({ length: 8 }, (_, i) => 2 ** (8 * i));

export function rdSlow(lin: number, len: number): number {
  if (R.hasLookup) {
    const slot = R.M.lookup!(lin);
    if (slot !== undefined) {
      if (R.dBytes !== slot.bytes) R.dBytes = slot.bytes;
      R.dBase = slot.base;
      R.dEnd = slot.end;
      if (lin + len <= R.dEnd) {
        const o = lin - R.dBase;
        let v = 0;
        for (let i = len - 1; i >= 0; i--) v = v * 256 + R.dBytes[o + i]!;
        return v;
      }
    }
  }
  let v = 0;
  let mapped = 0;
  for (let i = 0; i < len; i++) {
    const b = byteAt(lin + i);
    if (b >= 0) {
      mapped++;
      v += b * BYTE_WEIGHT[i]!;
    }
  }
  if (mapped === len) return v;
  if (mapped === 0) return mmioRead(lin, len);
  return straddleRead(lin, len);
}

/**
 * A read that is part RAM, part not (it crosses the page boundary between a memslot and a hole): the RAM
 * bytes are read, and only the other page's part is an MMIO read exit — Linux's emulator splits an access
 * at the page boundary and exits for the fragment that is not RAM (`emulator_read_write`), which a real
 * /dev/kvm shows (fixtures/real-kvm.json, `mmio-straddle-*`).
 */
export function straddleRead(lin: number, len: number): number {
  const headRam = byteAt(lin) >= 0;
  let k = 1;
  while (k < len && (byteAt(lin + k) >= 0) === headRam) k++;
  const mmioAt = headRam ? lin + k : lin;
  const mmioLen = headRam ? len - k : k;
  const mv = mmioRead(mmioAt, mmioLen);
  if (mv < 0) return -1;
  let v = 0;
  for (let i = len - 1; i >= 0; i--) {
    const a = lin + i;
    const b = a >= mmioAt && a < mmioAt + mmioLen ? Math.floor(mv / 2 ** (8 * (a - mmioAt))) & 0xff : byteAt(a);
    v = v * 256 + b;
  }
  return v;
}

/** Returns the cached value of a completed MMIO read, or prepares an MMIO read exit and returns -1. */
export function mmioRead(gpa: number, len: number): number {
  const s = R.S;
  if (s.mmioCacheCount > 0 && s.mmioCacheGpa0 === gpa && s.mmioCacheLen0 === len) return s.mmioCacheValue0;
  if (s.mmioCacheCount > 1 && s.mmioCacheGpa1 === gpa && s.mmioCacheLen1 === len) return s.mmioCacheValue1;
  if (s.mmioCacheCount >= 2) fail('instruction needs more than two MMIO reads');
  const x = R.X;
  x.mmioPhysAddr = gpa;
  x.mmioLen = len;
  x.mmioIsWrite = 0;
  x.data.fill(0);
  s.pending = GuestPending.MmioRead;
  s.pendingSize = len;
  s.pendingGpa = gpa;
  R.exitKind = GuestExitReason.Mmio;
  return -1;
}

export function wr8(lin: number, v: number): void {
  const r = R;
  if (inCodePage(lin)) codeWritten(lin, 1);
  if (lin >= r.wBase && lin < r.wEnd) {
    r.wBytes[lin - r.wBase] = v;
    return;
  }
  wrSlow(lin, v, 1);
}

export function wr16(lin: number, v: number): void {
  const r = R;
  if (inCodePage(lin) || inCodePage(lin + 1)) codeWritten(lin, 2);
  if (lin >= r.wBase && lin + 2 <= r.wEnd) {
    const o = lin - r.wBase;
    r.wBytes[o] = v;
    r.wBytes[o + 1] = v >> 8;
    return;
  }
  wrSlow(lin, v, 2);
}

export function wr32(lin: number, v: number): void {
  const r = R;
  if (inCodePage(lin) || inCodePage(lin + 3)) codeWritten(lin, 4);
  if (lin >= r.wBase && lin + 4 <= r.wEnd) {
    const o = lin - r.wBase;
    r.wBytes[o] = v;
    r.wBytes[o + 1] = v >> 8;
    r.wBytes[o + 2] = v >> 16;
    r.wBytes[o + 3] = v >> 24;
    return;
  }
  wrSlow(lin, v, 4);
}

export function wrV(lin: number, v: number): void {
  if (R.o32) wr32(lin, v);
  else wr16(lin, v);
}

export function wrSlow(lin: number, v: number, len: number): void {
  if (R.hasLookup) {
    const slot = R.M.lookup!(lin);
    if (slot !== undefined && !slot.readonly) {
      if (R.wBytes !== slot.bytes) R.wBytes = slot.bytes;
      R.wBase = slot.base;
      R.wEnd = slot.end;
      if (lin + len <= R.wEnd) {
        for (let i = 0; i < len; i++) R.wBytes[lin - R.wBase + i] = v >> (8 * i);
        return;
      }
    }
  }
  // Byte by byte: the RAM part is written; the part that is not RAM (one page's fragment) becomes the MMIO
  // write exit, as Linux's emulator splits the access at the page boundary.
  let mmioAt = -1;
  let mmioLen = 0;
  for (let i = 0; i < len; i++) {
    if (writeByte(lin + i, (v >>> (8 * i)) & 0xff)) continue;
    if (mmioAt < 0) mmioAt = lin + i;
    mmioLen++;
  }
  if (mmioLen === 0) return;
  const shift = mmioAt - lin;
  mmioWrite(mmioAt, Math.floor(v / 2 ** (8 * shift)), mmioLen);
}

export function writeByte(gpa: number, b: number): boolean {
  if (inCodePage(gpa)) codeWritten(gpa, 1);
  if (!R.hasLookup) return R.M.write8(gpa, b);
  const slot = R.M.lookup!(gpa);
  if (slot === undefined) return false;
  // A slot the memory does not let the fast path write: the memory decides (a KVM_MEM_READONLY slot refuses: MMIO).
  if (slot.readonly) return R.M.write8(gpa, b);
  slot.bytes[gpa - slot.base] = b;
  return true;
}

export function mmioWrite(gpa: number, v: number, len: number): void {
  if (R.exitKind !== 0) fail('instruction makes more than one MMIO write');
  const x = R.X;
  x.mmioPhysAddr = gpa;
  x.mmioLen = len;
  x.mmioIsWrite = 1;
  const d = x.data;
  d.fill(0);
  for (let i = 0; i < len; i++) d[i] = v >> (8 * i);
  R.exitKind = GuestExitReason.Mmio;
}
