/**
 * Control transfer: near branch targets, far transfers, and the FLAGS loads of POPF/IRET.
 *
 * @module
 */

import { X86_EFLAGS_FIXED } from './cpu-state.js';
import { R } from './run-context.js';
import { SEG_CS, loadSeg } from './segments.js';

/** A near branch target: truncated to 16 bits with a 16-bit operand size (SDM Vol. 2A, JMP/Jcc/CALL). */
export function near(target: number): number {
  return R.o32 ? target >>> 0 : target & 0xffff;
}

/** Real-mode far transfer: CS ← selector (base = selector × 16), IP ← offset. */
export function far(selector: number, offset: number): void {
  loadSeg(SEG_CS, selector);
  R.csBase = R.S.csBase;
  R.ip = near(offset);
}

/** POPF/IRET in real mode (SDM Vol. 2B, POPF: CPL 0, all flags writable; VM/VIF/VIP/RF kept for 32-bit). */
export function loadFlags(v: number, size32: boolean): void {
  const s = R.S;
  if (size32) s.eflags = (v & 0x257fd5) | (s.eflags & 0x1a0000) | X86_EFLAGS_FIXED;
  else s.eflags = (s.eflags & ~0xffff) | (v & 0x7fd5) | X86_EFLAGS_FIXED;
}
