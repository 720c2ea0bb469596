/**
 * The status flags and the parity table the arithmetic instructions use (SDM Vol. 1 §3.4.3.1, "Status Flags").
 *
 * @module
 */

import { X86_EFLAGS_AF, X86_EFLAGS_CF, X86_EFLAGS_DF, X86_EFLAGS_OF, X86_EFLAGS_PF, X86_EFLAGS_SF, X86_EFLAGS_ZF } from './cpu-state.js';

export const CF = X86_EFLAGS_CF;

export const PF = X86_EFLAGS_PF;

export const AF = X86_EFLAGS_AF;

export const ZF = X86_EFLAGS_ZF;

export const SF = X86_EFLAGS_SF;

export const OF = X86_EFLAGS_OF;

export const DF = X86_EFLAGS_DF;

/** The six status flags arithmetic instructions write. */
export const STATUS = CF | PF | AF | ZF | SF | OF;

/** PF for each low result byte: set when the byte has an even number of 1 bits. */
export const PARITY = new Uint8Array(256);

for (let i = 0; i < 256; i++) {
  let bits = 0;
  for (let b = i; b !== 0; b >>= 1) bits += b & 1;
  PARITY[i] = (bits & 1) === 0 ? PF : 0;
}
