/**
 * System instructions: group 7 (0F 01: LGDT LIDT SGDT SIDT SMSW LMSW …), control registers, x87 control.
 *
 * @module
 */

import { rmAddr } from './addressing.js';
import { rd16, rd32, wr16, wr32 } from './data-memory.js';
import { fetch8 } from './decode.js';
import { ABANDONED, DELIVERED, interrupt } from './interrupts.js';
import { getR16, getR32, setR16, setR32 } from './registers.js';
import { cpl, lldt, ltr, syncMode } from './descriptors.js';
import { R, fail, raise, raiseError } from './run-context.js';
import { x87Init, x87Read } from './x87-state.js';

/**
 * CR0's reserved bits (6–15, 17, 19–28): a write drops them, without a fault (KVM `kvm_set_cr0`:
 * `cr0 &= ~CR0_RESERVED_BITS`; a real /dev/kvm: fixtures/real-kvm.json `mov-cr0-reserved-bits-dropped`).
 */
export const CR0_RESERVED = 0x1ffaffc0;

/** CR4 bits this model accepts (SDM Vol. 3A §2.5: VME … PKE, CET, PKS); others raise #GP. */
export const CR4_KNOWN = 0x01ff7fff;

/** The value a `mov crN` or `lmsw` writes to CR0, or -1 when it raises #GP (SDM MOV—Move to/from CR). */
export function cr0Check(value: number): number {
  const v = value & ~CR0_RESERVED;
  if ((v & 0x80000000) !== 0 && (v & 1) === 0) return -1; // PG without PE
  if ((v & 0x20000000) !== 0 && (v & 0x40000000) === 0) return -1; // NW without CD
  return (v | 0x10) >>> 0; // ET is hard-wired to 1 (KVM: `cr0 |= X86_CR0_ET`)
}

/**
 * CR0 ← `v` (already checked by {@link cr0Check}). PE switches the interpreter between real and protected mode
 * (the segment registers keep their caches until reloaded: SDM Vol. 3A §10.9); setting PG ends the run with an
 * internal error after the instruction, since paging is not executed.
 */
export function setCr0(v: number): void {
  const s = R.S;
  s.cr0 = (s.cr0 & ~0xffffffffn) | BigInt(v >>> 0);
  syncMode();
  if ((v & 0x80000000) !== 0) R.enteredPaging = true;
}

/**
 * `mov r32, crN` (0F 20) / `mov crN, r32` (0F 22): the ModRM mod bits are ignored, the operand is always a
 * 32-bit register (zero-extended on a read). CR0, CR2, CR3, CR4 exist outside 64-bit mode; any other CR is
 * #UD. CR0's reserved bits are dropped; PG without PE or NW without CD raises #GP, as do CR4's reserved bits.
 */
export function movCr(write: boolean): number {
  const s = R.S;
  const m = fetch8();
  const cr = (m >> 3) & 7;
  const r = m & 7;
  if (cr === 1 || cr > 4) raise(6);
  if (!write) {
    const v = cr === 0 ? s.cr0 : cr === 2 ? s.cr2 : cr === 3 ? s.cr3 : s.cr4;
    setR32(r, Number(v & 0xffffffffn));
    return DELIVERED;
  }
  const v = getR32(r);
  switch (cr) {
    case 0: {
      const c = cr0Check(v);
      if (c < 0) raise(13);
      // kvm_set_cr0's PAE PDPTE load when paging starts: the vCPU's to do (GuestPlatform.cr0PagingAllowed).
      if ((c & 0x80000000) !== 0 && R.P.cr0PagingAllowed?.(c) === false) raise(13);
      setCr0(c);
      break;
    }
    case 2: s.cr2 = BigInt(v); break;
    case 3: s.cr3 = BigInt(v); break;
    default:
      if ((v & ~CR4_KNOWN) !== 0 || (v & 0x20000) !== 0) raise(13); // reserved bits; PCIDE needs long mode
      s.cr4 = BigInt(v);
      break;
  }
  return DELIVERED;
}

/**
 * Group 7 (0F 01): SGDT, SIDT, LGDT, LIDT, SMSW, LMSW, INVLPG (SDM Vol. 2). LGDT/LIDT with a 16-bit
 * operand size load a 24-bit base; SGDT/SIDT store the limit and the full 32-bit base. SMSW to a register
 * stores all of CR0's low 16 (or, with 0x66, 32) bits, to memory 16 bits. LMSW writes CR0.PE/MP/EM/TS and
 * cannot clear PE. The mod = 11 encodings (VMCALL, MONITOR, XGETBV, …) are not implemented.
 */
export function group7(start: number): number {
  const s = R.S;
  const m = fetch8();
  const sub3 = (m >> 3) & 7;
  if (m >= 0xc0) {
    if (sub3 === 4) { // SMSW r16/r32
      const v = Number(s.cr0 & 0xffffffffn);
      if (R.o32) setR32(m & 7, v);
      else setR16(m & 7, v & 0xffff);
      return DELIVERED;
    }
    if (sub3 === 6) return lmsw(getR16(m & 7));
    if (sub3 <= 3 || sub3 === 7) return interrupt(6, start) === DELIVERED ? DELIVERED : ABANDONED;
    return fail('0F 01 with mod = 11 (VMX, MONITOR, XGETBV, …) is not implemented by the guest interpreter');
  }
  switch (sub3) {
    case 0: case 1: { // SGDT / SIDT
      const lin = rmAddr(m, 6);
      const limit = sub3 === 0 ? s.gdtLimit : s.idtLimit;
      const base = sub3 === 0 ? s.gdtBase : s.idtBase;
      wr16(lin, limit);
      wr32(lin + 2, base);
      return DELIVERED;
    }
    case 2: case 3: { // LGDT / LIDT
      const lin = rmAddr(m, 6);
      const limit = rd16(lin);
      if (limit < 0) return ABANDONED;
      let base = rd32(lin + 2);
      if (base < 0) return ABANDONED;
      if (!R.o32) base &= 0xffffff;
      if (sub3 === 2) {
        s.gdtLimit = limit;
        s.gdtBase = base;
        s.gdtBaseHigh = 0;
      } else {
        s.idtLimit = limit;
        s.idtBase = base;
        s.idtBaseHigh = 0;
      }
      return DELIVERED;
    }
    case 4: // SMSW m16
      wr16(rmAddr(m, 2), Number(s.cr0 & 0xffffn));
      return DELIVERED;
    case 6: { // LMSW m16
      const v = rd16(rmAddr(m, 2));
      if (v < 0) return ABANDONED;
      return lmsw(v);
    }
    case 7: // INVLPG: no TLB is modelled (real mode does not page)
      rmAddr(m, 0);
      return DELIVERED;
    default:
      return interrupt(6, start) === DELIVERED ? DELIVERED : ABANDONED;
  }
}

/**
 * Group 6 (0F 00): SLDT, STR, LLDT, LTR (SDM Vol. 2). #UD in real mode; LLDT/LTR need CPL 0 (#GP(0)). SLDT/STR
 * store the 16-bit selector to memory, or zero-extended into a 32-bit register with a 32-bit operand size.
 * VERR/VERW are not implemented.
 */
export function group6(start: number): number {
  const s = R.S;
  const m = fetch8();
  const sub3 = (m >> 3) & 7;
  if (!R.pe || sub3 >= 6) return interrupt(6, start) === DELIVERED ? DELIVERED : ABANDONED;
  if (sub3 >= 4) return fail('VERR/VERW are not implemented by the guest interpreter');
  if (sub3 <= 1) {
    const v = sub3 === 0 ? s.ldtSelector : s.trSelector;
    if (m >= 0xc0) {
      if (R.o32) setR32(m & 7, v);
      else setR16(m & 7, v);
    } else {
      wr16(rmAddr(m, 2), v);
    }
    return DELIVERED;
  }
  let v: number;
  if (m >= 0xc0) v = getR16(m & 7);
  else {
    v = rd16(rmAddr(m, 2));
    if (v < 0) return ABANDONED;
  }
  if (cpl() !== 0) raiseError(13, 0);
  if (sub3 === 2) lldt(v);
  else ltr(v);
  return DELIVERED;
}

export function lmsw(v: number): number {
  const s = R.S;
  const old = Number(s.cr0 & 0xffffffffn);
  setCr0(((old & ~0xf) | (v & 0xf) | (old & 1)) >>> 0);
  return DELIVERED;
}

/**
 * The x87 instructions firmware uses to probe for an FPU: FNINIT (DB E3), FNSTCW m16 (D9 /7), FNSTSW m16
 * (DD /7), FNSTSW AX (DF E0). CR0.EM or CR0.TS raises #NM (vector 7). FNINIT puts x87 in its init configuration
 * (FCW 0x37F, FSW 0, all tags empty, FOP/FIP/FDP 0; SDM Vol. 2A FINIT/FNINIT). The state is the vCPU's FPU image
 * (`GuestPlatform.fxState`, x87-state.ts), the one KVM_GET_FPU / KVM_GET_XSAVE show and KVM_SET_FPU /
 * KVM_SET_XSAVE load. Other x87 instructions are not implemented.
 */
export function x87(op: number): void {
  const s = R.S;
  const m = fetch8();
  const known =
    (op === 0xdb && m === 0xe3) || (op === 0xdf && m === 0xe0) || ((op === 0xd9 || op === 0xdd) && m < 0xc0 && ((m >> 3) & 7) === 7);
  if (!known) fail('x87 instruction not implemented by the guest interpreter');
  if ((Number(s.cr0 & 0xcn) & 0xc) !== 0) raise(7); // EM or TS
  const image = R.P.fxState;
  if (image === undefined || image.length < 512) return fail('x87: the platform has no FPU state');
  if (op === 0xdb) x87Init(image);
  else if (op === 0xdf) setR16(0, x87Read(image).fsw);
  else {
    const w = x87Read(image);
    wr16(rmAddr(m, 2), op === 0xd9 ? w.fcw : w.fsw);
  }
}
