/**
 * Control transfer: near branch targets, far transfers (real mode: base = selector × 16; protected mode: through
 * the code segment's descriptor), and the FLAGS loads of POPF/IRET.
 *
 * @module
 */

import { X86_EFLAGS_FIXED } from './cpu-state.js';
import { cpl, loadCodeSegment } from './descriptors.js';
import { R } from './run-context.js';
import { SEG_CS, loadSeg } from './segments.js';

/** A near branch target: truncated to 16 bits with a 16-bit operand size (SDM Vol. 2A, JMP/Jcc/CALL). */
export function near(target: number): number {
  return R.o32 ? target >>> 0 : target & 0xffff;
}

/**
 * Far transfer: CS ← selector, IP ← offset. In real mode base = selector × 16; in protected mode the code
 * segment is checked and loaded from its descriptor (`ret`: the checks of a far RET/IRET), raising #GP/#NP
 * before anything changes.
 */
export function far(selector: number, offset: number, ret = false): void {
  if (R.pe) {
    R.ip = loadCodeSegment(selector, near(offset), ret, false, 0);
    return;
  }
  loadSeg(SEG_CS, selector);
  R.csBase = R.S.csBase;
  R.ip = near(offset);
}

/**
 * POPF/IRET (SDM Vol. 2B, POPF): at CPL 0 (real mode, or protected mode at ring 0) every flag is writable but
 * VM/VIF/VIP; in protected mode IOPL changes only at CPL 0 and IF only when CPL ≤ IOPL. A 16-bit load keeps
 * bits 31:16.
 */
export function loadFlags(v: number, size32: boolean): void {
  const s = R.S;
  let keep = size32 ? 0x1a0000 : ~0xffff;
  const c = cpl();
  if (c !== 0) {
    keep |= 0x3000;
    if (c > ((s.eflags >> 12) & 3)) keep |= 0x200;
  }
  const writable = (size32 ? 0x257fd5 : 0x7fd5) & ~keep;
  s.eflags = ((v & writable) | (s.eflags & keep) | X86_EFLAGS_FIXED) >>> 0;
}
