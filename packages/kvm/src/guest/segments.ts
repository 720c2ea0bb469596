/**
 * Segment registers by their `mov sreg` number (ES CS SS DS FS GS), segment-limit checks and real-mode loads
 * (SDM Vol. 3A §20.1.1).
 *
 * @module
 */

import { loadDataSegment } from './descriptors.js';
import { R, raise } from './run-context.js';

// Segment registers by their `mov sreg` encoding: 0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS (6 and 7 do not exist).
export const SEG_ES = 0;

export const SEG_CS = 1;

export const SEG_SS = 2;

export const SEG_DS = 3;

export const SEG_FS = 4;

export const SEG_GS = 5;

/** Base of segment register `i` (0–5). */
export function segBaseOf(i: number): number {
  const s = R.S;
  switch (i) {
    case 0: /* ES */ return s.esBase;
    case 1: /* CS */ return s.csBase;
    case 2: /* SS */ return s.ssBase;
    case 3: /* DS */ return s.dsBase;
    case 4: /* FS */ return s.fsBase;
    default: return s.gsBase;
  }
}

/** Selector of segment register `i` (0–5). */
export function selectorOf(i: number): number {
  const s = R.S;
  switch (i) {
    case 0: /* ES */ return s.esSelector;
    case 1: /* CS */ return s.csSelector;
    case 2: /* SS */ return s.ssSelector;
    case 3: /* DS */ return s.dsSelector;
    case 4: /* FS */ return s.fsSelector;
    default: return s.gsSelector;
  }
}

/** Limit of segment register `i` (0–5): real mode checks offsets against it too (SDM Vol. 3A §20.1.1). */
export function segLimitOf(i: number): number {
  const s = R.S;
  switch (i) {
    case 0: /* ES */ return s.esLimit;
    case 1: /* CS */ return s.csLimit;
    case 2: /* SS */ return s.ssLimit;
    case 3: /* DS */ return s.dsLimit;
    case 4: /* FS */ return s.fsLimit;
    default: return s.gsLimit;
  }
}

/**
 * The linear address of a `size`-byte access at `offset` in segment `seg`; an access reaching past the
 * segment's limit raises #SS for SS and #GP for the others (SDM Vol. 3A §20.1.1, Vol. 2 "Real-Address Mode
 * Exceptions").
 */
export function segAddr(seg: number, offset: number, size: number): number {
  if (R.pe) return pmSegAddr(seg, offset, size);
  if (offset + size - 1 > segLimitOf(seg)) raise(seg === SEG_SS ? 12 : 13);
  return segBaseOf(seg) + offset;
}

/** Packed attributes type/present/DPL of segment register `i` (see `GuestCpuState`'s `<seg>Attrs0`). */
function attrs0Of(i: number): number {
  const s = R.S;
  switch (i) {
    case 0: /* ES */ return s.esAttrs0;
    case 1: /* CS */ return s.csAttrs0;
    case 2: /* SS */ return s.ssAttrs0;
    case 3: /* DS */ return s.dsAttrs0;
    case 4: /* FS */ return s.fsAttrs0;
    default: return s.gsAttrs0;
  }
}

/** Packed attributes g/avl/unusable and db/s/l of segment register `i`. */
function attrs12Of(i: number): number {
  const s = R.S;
  switch (i) {
    case 0: /* ES */ return (s.esAttrs2 & 0x10000) | (s.esAttrs1 & 1);
    case 1: /* CS */ return (s.csAttrs2 & 0x10000) | (s.csAttrs1 & 1);
    case 2: /* SS */ return (s.ssAttrs2 & 0x10000) | (s.ssAttrs1 & 1);
    case 3: /* DS */ return (s.dsAttrs2 & 0x10000) | (s.dsAttrs1 & 1);
    case 4: /* FS */ return (s.fsAttrs2 & 0x10000) | (s.fsAttrs1 & 1);
    default: return (s.gsAttrs2 & 0x10000) | (s.gsAttrs1 & 1);
  }
}

/**
 * The protected-mode form of {@link segAddr} (SDM Vol. 3A §5.3, "Limit Checking"): an unusable (null) segment
 * raises #GP(0); an expand-down data segment (type 01x1b) allows offsets above its limit up to 0xffff, or
 * 0xffffffff with its B bit; others offsets up to the limit. #SS(0) for SS, #GP(0) for the rest. The linear
 * address wraps at 4 GiB. (Read-only and execute-only segments are not checked on access.)
 */
function pmSegAddr(seg: number, offset: number, size: number): number {
  const vector = seg === SEG_SS ? 12 : 13;
  const a12 = attrs12Of(seg);
  if ((a12 & 0x10000) !== 0) raise(vector);
  const last = offset + size - 1;
  const limit = segLimitOf(seg);
  const type = attrs0Of(seg) & 0xf;
  if ((type & 0xc) === 4) {
    const upper = (a12 & 1) !== 0 ? 0xffffffff : 0xffff;
    if (offset <= limit || last > upper) raise(vector);
  } else if (last > limit) {
    raise(vector);
  }
  return (segBaseOf(seg) + offset) >>> 0;
}

/**
 * A load of segment register `i` (0–5) by MOV/POP Sreg or LDS…LSS: in protected mode through its descriptor
 * (`loadDataSegment`); in real mode the selector, and base = selector × 16.
 */
export function loadSeg(i: number, selector: number): void {
  if (R.pe && i !== SEG_CS) {
    loadDataSegment(i, selector);
    return;
  }
  const s = R.S;
  const sel = selector & 0xffff;
  const base = sel << 4;
  switch (i) {
    case 0: /* ES */ s.esSelector = sel; s.esBase = base; s.esBaseHigh = 0; return;
    case 1: /* CS */ s.csSelector = sel; s.csBase = base; s.csBaseHigh = 0; return;
    case 2: /* SS */ s.ssSelector = sel; s.ssBase = base; s.ssBaseHigh = 0; return;
    case 3: /* DS */ s.dsSelector = sel; s.dsBase = base; s.dsBaseHigh = 0; return;
    case 4: /* FS */ s.fsSelector = sel; s.fsBase = base; s.fsBaseHigh = 0; return;
    default: s.gsSelector = sel; s.gsBase = base; s.gsBaseHigh = 0; return;
  }
}
