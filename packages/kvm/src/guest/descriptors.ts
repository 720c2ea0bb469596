/**
 * Protected-mode segmentation (SDM Vol. 3A §3.4–3.5, §5.5–5.8): descriptors read from the GDT or LDT, the
 * checks of a segment-register load (MOV/POP Sreg, LDS…LSS, far JMP/CALL/RET, IRET, interrupt gates) with the
 * exceptions and error codes the SDM's pseudo-code gives, the accessed bit the processor sets in a loaded
 * descriptor, and LLDT/LTR.
 *
 * Only same-privilege transfers are executed: a far transfer or an interrupt that would change CPL (through
 * a call gate, to an inner ring through the TSS stack, a return to an outer ring), a task switch, or an
 * IRET to virtual-8086 mode ends the run with an emulation failure (`fail`).
 *
 * @module
 */

import { rd32, wr8 } from './data-memory.js';
import { R, fail, raiseError } from './run-context.js';
import { SEG_CS, SEG_SS } from './segments.js';

/** Low and high doublewords of the descriptor {@link readDescriptor} read last. */
let descLo = 0;
let descHi = 0;
/** Linear address of that descriptor (for the accessed and busy bits). */
let descAddr = 0;

/** The current privilege level: CS.RPL in protected mode (kept equal to CS.DPL by every CS load), 0 in real mode. */
export function cpl(): number {
  return R.pe ? R.S.csSelector & 3 : 0;
}

/**
 * Reads the descriptor `selector` names from the GDT (TI = 0) or the LDT (TI = 1) into the module's scratch.
 * Raises `vector`(selector) when the entry lies beyond the table's limit or the LDT is unusable.
 */
export function readDescriptor(selector: number, vector: number, ext: number): void {
  const s = R.S;
  const index = selector & 0xfff8;
  let base: number;
  let limit: number;
  if ((selector & 4) !== 0) {
    if (((s.ldtAttrs2 >> 16) & 1) !== 0 || (s.ldtAttrs0 & 0xff00) === 0) raiseError(vector, (selector & 0xfffc) | ext);
    base = s.ldtBase;
    limit = s.ldtLimit;
  } else {
    base = s.gdtBase;
    limit = s.gdtLimit;
  }
  if (index + 7 > limit) raiseError(vector, (selector & 0xfffc) | ext);
  descAddr = (base + index) >>> 0;
  const lo = rd32(descAddr);
  const hi = rd32(descAddr + 4);
  if (lo < 0 || hi < 0) fail('a descriptor table in MMIO is not implemented by the guest interpreter');
  descLo = lo;
  descHi = hi;
}

/** The descriptor's type field (bits 43:40). */
function dType(): number {
  return (descHi >>> 8) & 0xf;
}
/** S: 1 for a code or data segment, 0 for a system descriptor. */
function dS(): number {
  return (descHi >>> 12) & 1;
}
function dDpl(): number {
  return (descHi >>> 13) & 3;
}
function dPresent(): boolean {
  return (descHi & 0x8000) !== 0;
}
/** The segment base (bits 15:0 of the first doubleword are the limit, 31:16 base 15:0; base 23:16 and 31:24 in the second). */
function dBase(): number {
  return ((descLo >>> 16) | ((descHi & 0xff) << 16) | (descHi & 0xff000000)) >>> 0;
}
/** The effective limit: the 20-bit field, in 4-KiB units with G (bit 55) set. */
function dLimit(): number {
  const raw = (descLo & 0xffff) | (descHi & 0xf0000);
  return (descHi & 0x800000) !== 0 ? ((raw << 12) | 0xfff) >>> 0 : raw;
}

/** Sets the accessed bit of a code/data descriptor in memory, as the processor does when it loads one. */
function markAccessed(): void {
  if ((descHi & 0x100) === 0) {
    descHi = (descHi | 0x100) >>> 0;
    wr8(descAddr + 5, (descHi >>> 8) & 0xff);
  }
}

/** Loads the hidden part of segment register `seg` (0–5) from the scratch descriptor, with `selector`. */
function loadCache(seg: number, selector: number): void {
  const base = dBase();
  const limit = dLimit();
  const a0 = (descHi >>> 8) & 0xf | ((descHi >>> 15) & 1) << 8 | ((descHi >>> 13) & 3) << 16;
  const a1 = ((descHi >>> 22) & 1) | ((descHi >>> 12) & 1) << 8 | ((descHi >>> 21) & 1) << 16;
  const a2 = ((descHi >>> 23) & 1) | ((descHi >>> 20) & 1) << 8;
  setSegment(seg, selector, base, limit, a0, a1, a2);
}

function setSegment(seg: number, selector: number, base: number, limit: number, a0: number, a1: number, a2: number): void {
  const s = R.S;
  switch (seg) {
    case 0: s.esSelector = selector; s.esBase = base; s.esBaseHigh = 0; s.esLimit = limit; s.esAttrs0 = a0; s.esAttrs1 = a1; s.esAttrs2 = a2; return;
    case 1: s.csSelector = selector; s.csBase = base; s.csBaseHigh = 0; s.csLimit = limit; s.csAttrs0 = a0; s.csAttrs1 = a1; s.csAttrs2 = a2; return;
    case 2: s.ssSelector = selector; s.ssBase = base; s.ssBaseHigh = 0; s.ssLimit = limit; s.ssAttrs0 = a0; s.ssAttrs1 = a1; s.ssAttrs2 = a2; return;
    case 3: s.dsSelector = selector; s.dsBase = base; s.dsBaseHigh = 0; s.dsLimit = limit; s.dsAttrs0 = a0; s.dsAttrs1 = a1; s.dsAttrs2 = a2; return;
    case 4: s.fsSelector = selector; s.fsBase = base; s.fsBaseHigh = 0; s.fsLimit = limit; s.fsAttrs0 = a0; s.fsAttrs1 = a1; s.fsAttrs2 = a2; return;
    default: s.gsSelector = selector; s.gsBase = base; s.gsBaseHigh = 0; s.gsLimit = limit; s.gsAttrs0 = a0; s.gsAttrs1 = a1; s.gsAttrs2 = a2; return;
  }
}

/**
 * A protected-mode load of data segment register `seg` (ES, SS, DS, FS, GS) with `selector` (SDM Vol. 2B
 * MOV/POP, "Protected Mode"): a null selector marks DS/ES/FS/GS unusable (and raises #GP(0) for SS); otherwise
 * #GP(selector) beyond the table's limit, for a system descriptor, for SS anything but a writable data segment
 * with RPL = DPL = CPL, for the others an execute-only code segment or (data and non-conforming code) DPL below
 * CPL or RPL; #SS(selector) / #NP(selector) when not present. The accessed bit is set in the descriptor.
 */
export function loadDataSegment(seg: number, selector: number): void {
  const sel = selector & 0xffff;
  const rpl = sel & 3;
  const c = cpl();
  if ((sel & 0xfffc) === 0) {
    if (seg === SEG_SS) raiseError(13, 0);
    // A null selector: the register becomes unusable (base, limit and attributes cleared).
    setSegment(seg, sel, 0, 0, 0, 0, 1 << 16);
    return;
  }
  readDescriptor(sel, 13, 0);
  const type = dType();
  const dpl = dDpl();
  const err = sel & 0xfffc;
  if (dS() === 0) raiseError(13, err);
  if (seg === SEG_SS) {
    if ((type & 0xa) !== 2 || rpl !== c || dpl !== c) raiseError(13, err); // writable data
    if (!dPresent()) raiseError(12, err);
  } else {
    if ((type & 0xa) === 8) raiseError(13, err); // execute-only code
    const conformingCode = (type & 0xc) === 0xc;
    if (!conformingCode && (rpl > dpl || c > dpl)) raiseError(13, err);
    if (!dPresent()) raiseError(11, err);
  }
  markAccessed();
  loadCache(seg, sel);
  if (seg === SEG_SS) R.stack32 = (descHi & 0x400000) !== 0;
}

/**
 * Checks `selector` as the target of a same-privilege far JMP/CALL, RET (with `ret` set) or IRET, or the code
 * segment of an interrupt gate (`gate`: DPL ≤ CPL is enough, nonconforming or not), and reads its descriptor:
 * #GP(0) for a null selector, #GP(selector) beyond the table's limit or for anything but a code segment with
 * the SDM's DPL/RPL relation, #NP(selector) when not present. `ext` is the EXT bit of the error codes.
 * Call gates, task gates, TSS descriptors and privilege changes are not modelled.
 */
function checkCodeSegment(selector: number, ret: boolean, gate: boolean, ext: number): void {
  const sel = selector & 0xffff;
  const rpl = sel & 3;
  const c = cpl();
  if ((sel & 0xfffc) === 0) raiseError(13, ext);
  readDescriptor(sel, 13, ext);
  const type = dType();
  const dpl = dDpl();
  const err = (sel & 0xfffc) | ext;
  if (dS() === 0) {
    if (type === 4 || type === 0xc || type === 5 || type === 1 || type === 9) {
      fail('far transfers through call gates, task gates or TSS descriptors are not implemented by the guest interpreter');
    }
    raiseError(13, err);
  }
  if ((type & 8) === 0) raiseError(13, err);
  const conforming = (type & 4) !== 0;
  if (gate) {
    if (dpl > c) raiseError(13, err);
    if (!conforming && dpl < c) fail('an interrupt to an inner privilege level (a TSS stack switch) is not implemented by the guest interpreter');
  } else if (ret) {
    if (rpl < c) raiseError(13, err);
    if (rpl > c) fail('a return to an outer privilege level is not implemented by the guest interpreter');
    if (conforming ? dpl > rpl : dpl !== rpl) raiseError(13, err);
  } else if (conforming ? dpl > c : rpl > c || dpl !== c) {
    raiseError(13, err);
  }
  if (!dPresent()) raiseError(11, err);
}

/**
 * A protected-mode far transfer to `selector:offset` at the current privilege level: the code segment is
 * checked ({@link checkCodeSegment}), `offset` must lie within its limit (#GP(0)), then CS is loaded (RPL = CPL,
 * accessed bit set) and the default operand size follows its D bit. Returns the new EIP.
 */
export function loadCodeSegment(selector: number, offset: number, ret: boolean, gate: boolean, ext: number): number {
  const c = cpl();
  checkCodeSegment(selector, ret, gate, ext);
  if (offset > dLimit()) raiseError(13, ext);
  markAccessed();
  loadCache(SEG_CS, ((selector & 0xfffc) | c) & 0xffff);
  R.def32 = (descHi & 0x400000) !== 0;
  R.csBase = R.S.csBase;
  R.csLim = R.S.csLimit;
  return offset;
}

/**
 * Checks a far transfer's target without loading anything (so a CALL can check its pushes next, and change
 * nothing when either faults).
 */
export function checkFarTarget(selector: number, offset: number, ret: boolean): void {
  checkCodeSegment(selector, ret, false, 0);
  if (offset > dLimit()) raiseError(13, 0);
}

/** Checks the code segment an interrupt gate names, and that `offset` lies within its limit (#GP(EXT)). */
export function checkGateTarget(selector: number, offset: number, ext: number): void {
  checkCodeSegment(selector, false, true, ext);
  if (offset > dLimit()) raiseError(13, ext);
}

/** The interrupt or trap gate {@link readGate} read: its kind, 16- or 32-bit, code selector and offset. */
export const gate = { trap: false, size32: false, selector: 0, offset: 0 };

/**
 * Reads IDT entry `vector` as an interrupt or trap gate (SDM Vol. 3A §6.11, §6.12.1): #GP(vector × 8 + 2 + EXT)
 * beyond the IDT's limit or for a descriptor that is not a 16/32-bit interrupt or trap gate, #NP(same) when not
 * present. A task gate is not modelled (emulation failure). Fills {@link gate}.
 */
export function readGate(vector: number, ext: number): void {
  const s = R.S;
  const err = vector * 8 + 2 + ext;
  if (vector * 8 + 7 > s.idtLimit) raiseError(13, err);
  const addr = (s.idtBase + vector * 8) >>> 0;
  const lo = rd32(addr);
  const hi = rd32(addr + 4);
  if (lo < 0 || hi < 0) fail('an IDT in MMIO is not implemented by the guest interpreter');
  const type = (hi >>> 8) & 0x1f; // with S (bit 12 of the high doubleword): must be 0
  if (type === 5) fail('task gates are not implemented by the guest interpreter');
  if (type !== 6 && type !== 7 && type !== 0xe && type !== 0xf) raiseError(13, err);
  if ((hi & 0x8000) === 0) raiseError(11, err);
  gate.trap = (type & 1) !== 0;
  gate.size32 = (type & 8) !== 0;
  gate.selector = lo >>> 16;
  gate.offset = gate.size32 ? ((hi & 0xffff0000) | (lo & 0xffff)) >>> 0 : lo & 0xffff;
}

/**
 * LLDT r/m16 (SDM Vol. 2A): a null selector makes LDTR unusable; otherwise the GDT entry (TI must be 0) must be
 * an LDT descriptor (type 2), else #GP(selector), and present, else #NP(selector).
 */
export function lldt(selector: number): void {
  const s = R.S;
  const sel = selector & 0xffff;
  if ((sel & 0xfffc) === 0) {
    s.ldtSelector = sel;
    s.ldtBase = 0;
    s.ldtBaseHigh = 0;
    s.ldtLimit = 0;
    s.ldtAttrs0 = 0;
    s.ldtAttrs1 = 0;
    s.ldtAttrs2 = 1 << 16;
    return;
  }
  if ((sel & 4) !== 0) raiseError(13, sel & 0xfffc);
  readDescriptor(sel, 13, 0);
  if (dS() !== 0 || dType() !== 2) raiseError(13, sel & 0xfffc);
  if (!dPresent()) raiseError(11, sel & 0xfffc);
  s.ldtSelector = sel;
  s.ldtBase = dBase();
  s.ldtBaseHigh = 0;
  s.ldtLimit = dLimit();
  s.ldtAttrs0 = 2 | (1 << 8) | (dDpl() << 16);
  s.ldtAttrs1 = (descHi >>> 22) & 1;
  s.ldtAttrs2 = (descHi >>> 23) & 1 | ((descHi >>> 20) & 1) << 8;
}

/**
 * LTR r/m16 (SDM Vol. 2A): the GDT entry must be an available TSS (type 1 or 9), else #GP(selector) (#GP(0) for
 * a null selector), and present, else #NP(selector); it is marked busy (type 3 or 11) in the GDT and loaded.
 */
export function ltr(selector: number): void {
  const s = R.S;
  const sel = selector & 0xffff;
  if ((sel & 0xfffc) === 0) raiseError(13, 0);
  if ((sel & 4) !== 0) raiseError(13, sel & 0xfffc);
  readDescriptor(sel, 13, 0);
  const type = dType();
  if (dS() !== 0 || (type !== 1 && type !== 9)) raiseError(13, sel & 0xfffc);
  if (!dPresent()) raiseError(11, sel & 0xfffc);
  descHi = (descHi | 0x200) >>> 0;
  wr8(descAddr + 5, (descHi >>> 8) & 0xff);
  s.trSelector = sel;
  s.trBase = dBase();
  s.trBaseHigh = 0;
  s.trLimit = dLimit();
  s.trAttrs0 = (type | 2) | (1 << 8) | (dDpl() << 16);
  s.trAttrs1 = (descHi >>> 22) & 1;
  s.trAttrs2 = (descHi >>> 23) & 1 | ((descHi >>> 20) & 1) << 8;
}

/** SS.B, CS.D from the register file: what {@link R}'s mode fields say for the state as it stands. */
export function syncMode(): void {
  const s = R.S;
  R.pe = (s.cr0Low & 1) !== 0;
  R.def32 = R.pe && (s.csAttrs1 & 0xff) !== 0;
  R.stack32 = R.pe && (s.ssAttrs1 & 0xff) !== 0;
}

