/**
 * Segment registers by their `mov sreg` number (ES CS SS DS FS GS), segment-limit checks and real-mode loads
 * (SDM Vol. 3A §20.1.1).
 *
 * @module
 */

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
    case SEG_ES: return s.esBase;
    case SEG_CS: return s.csBase;
    case SEG_SS: return s.ssBase;
    case SEG_DS: return s.dsBase;
    case SEG_FS: return s.fsBase;
    default: return s.gsBase;
  }
}

/** Selector of segment register `i` (0–5). */
export function selectorOf(i: number): number {
  const s = R.S;
  switch (i) {
    case SEG_ES: return s.esSelector;
    case SEG_CS: return s.csSelector;
    case SEG_SS: return s.ssSelector;
    case SEG_DS: return s.dsSelector;
    case SEG_FS: return s.fsSelector;
    default: return s.gsSelector;
  }
}

/** Limit of segment register `i` (0–5): real mode checks offsets against it too (SDM Vol. 3A §20.1.1). */
export function segLimitOf(i: number): number {
  const s = R.S;
  switch (i) {
    case SEG_ES: return s.esLimit;
    case SEG_CS: return s.csLimit;
    case SEG_SS: return s.ssLimit;
    case SEG_DS: return s.dsLimit;
    case SEG_FS: return s.fsLimit;
    default: return s.gsLimit;
  }
}

/**
 * The linear address of a `size`-byte access at `offset` in segment `seg`; an access reaching past the
 * segment's limit raises #SS for SS and #GP for the others (SDM Vol. 3A §20.1.1, Vol. 2 "Real-Address Mode
 * Exceptions").
 */
export function segAddr(seg: number, offset: number, size: number): number {
  if (offset + size - 1 > segLimitOf(seg)) raise(seg === SEG_SS ? 12 : 13);
  return segBaseOf(seg) + offset;
}

/** A real-mode load of segment register `i` (0–5): the selector, and base = selector × 16. */
export function loadSeg(i: number, selector: number): void {
  const s = R.S;
  const sel = selector & 0xffff;
  const base = sel << 4;
  switch (i) {
    case SEG_ES: s.esSelector = sel; s.esBase = base; s.esBaseHigh = 0; return;
    case SEG_CS: s.csSelector = sel; s.csBase = base; s.csBaseHigh = 0; return;
    case SEG_SS: s.ssSelector = sel; s.ssBase = base; s.ssBaseHigh = 0; return;
    case SEG_DS: s.dsSelector = sel; s.dsBase = base; s.dsBaseHigh = 0; return;
    case SEG_FS: s.fsSelector = sel; s.fsBase = base; s.fsBaseHigh = 0; return;
    default: s.gsSelector = sel; s.gsBase = base; s.gsBaseHigh = 0; return;
  }
}
