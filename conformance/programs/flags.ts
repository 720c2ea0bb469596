/**
 * The arithmetic flags and which of them an instruction leaves undefined (Intel SDM Vol. 2, each
 * instruction's "Flags Affected"; Vol. 1 Appendix A, EFLAGS cross-reference). A flag the SDM leaves
 * undefined may differ between CPUs (and between KVM's emulator and hardware), so the guest programs never
 * let such a value reach a register or memory, and the comparison masks it in FLAGS.
 *
 * @module
 */

/** Carry. */ export const CF = 0x001;
/** Parity. */ export const PF = 0x004;
/** Auxiliary carry. */ export const AF = 0x010;
/** Zero. */ export const ZF = 0x040;
/** Sign. */ export const SF = 0x080;
/** Overflow. */ export const OF = 0x800;
/** All six arithmetic flags. */
export const ARITH = CF | PF | AF | ZF | SF | OF;

/** What an instruction does to the arithmetic flags. */
export interface FlagEffect {
  /** Flags it reads (must be defined before it). */
  readonly reads: number;
  /** Flags it sets to a defined value. */
  readonly defines: number;
  /** Flags it leaves undefined. */
  readonly undefines: number;
}

/** No flag read or written (MOV, XCHG, LEA, PUSH, NOT, …). */
export const NONE: FlagEffect = { reads: 0, defines: 0, undefines: 0 };
/** ADD, SUB, CMP, NEG, CMPS, SCAS, CMPXCHG, XADD: all six defined. */
export const ALL_DEFINED: FlagEffect = { reads: 0, defines: ARITH, undefines: 0 };
/** ADC, SBB: read CF, define all six. */
export const CARRY_IN: FlagEffect = { reads: CF, defines: ARITH, undefines: 0 };
/** AND, OR, XOR, TEST: CF = OF = 0, SF ZF PF defined, AF undefined. */
export const LOGIC: FlagEffect = { reads: 0, defines: CF | OF | SF | ZF | PF, undefines: AF };
/** INC, DEC: CF unaffected. */
export const INC_DEC: FlagEffect = { reads: 0, defines: OF | SF | ZF | AF | PF, undefines: 0 };
/** MUL, IMUL: CF OF defined, SF ZF AF PF undefined. */
export const MUL: FlagEffect = { reads: 0, defines: CF | OF, undefines: SF | ZF | AF | PF };
/** DIV, IDIV: all six undefined. */
export const DIV: FlagEffect = { reads: 0, defines: 0, undefines: ARITH };
/** POPF, SAHF (SAHF leaves OF alone). */
export const POPF: FlagEffect = { reads: 0, defines: ARITH, undefines: 0 };
/** SAHF: SF ZF AF PF CF from AH. */
export const SAHF: FlagEffect = { reads: 0, defines: SF | ZF | AF | PF | CF, undefines: 0 };
/** LAHF: reads SF ZF AF PF CF into AH. */
export const LAHF: FlagEffect = { reads: SF | ZF | AF | PF | CF, defines: 0, undefines: 0 };
/** PUSHF, INT n, and anything else that stores FLAGS: every flag must be defined. */
export const STORES_FLAGS: FlagEffect = { reads: ARITH, defines: 0, undefines: 0 };
/** CLC, STC. */
export const SET_CF: FlagEffect = { reads: 0, defines: CF, undefines: 0 };
/** CMC. */
export const CMC: FlagEffect = { reads: CF, defines: CF, undefines: 0 };
/** BT, BTS, BTR, BTC: CF defined, ZF unaffected, OF SF AF PF undefined. */
export const BIT_TEST: FlagEffect = { reads: 0, defines: CF, undefines: OF | SF | AF | PF };
/** BSF, BSR: ZF defined, the others undefined. */
export const BIT_SCAN: FlagEffect = { reads: 0, defines: ZF, undefines: CF | OF | SF | AF | PF };
/** DAA, DAS: OF undefined. */
export const DECIMAL: FlagEffect = { reads: AF | CF, defines: CF | AF | SF | ZF | PF, undefines: OF };
/** AAM, AAD: SF ZF PF defined, OF AF CF undefined. */
export const ASCII_MUL: FlagEffect = { reads: 0, defines: SF | ZF | PF, undefines: OF | AF | CF };

/** The flags a condition code (0–15, as in Jcc/SETcc/CMOVcc) reads. */
export function conditionReads(cc: number): number {
  switch (cc >> 1) {
    case 0: return OF;
    case 1: return CF;
    case 2: return ZF;
    case 3: return CF | ZF;
    case 4: return SF;
    case 5: return PF;
    case 6: return SF | OF;
    default: return ZF | SF | OF;
  }
}

/**
 * SHL/SAL, SHR, SAR by `count` (already masked to 5 bits) on a `width`-bit operand: nothing for 0; else
 * SF ZF PF defined, AF undefined, OF defined only for 1, CF defined unless SHL/SHR shift it all out.
 */
export function shiftEffect(kind: 'shl' | 'shr' | 'sar', count: number, width: number): FlagEffect {
  if (count === 0) return NONE;
  let defines = SF | ZF | PF;
  let undefines = AF;
  if (count === 1) defines |= OF;
  else undefines |= OF;
  if (kind === 'sar' || count < width) defines |= CF;
  else undefines |= CF;
  return { reads: 0, defines, undefines };
}

/** ROL/ROR, RCL/RCR by `count` (masked to 5 bits): CF for a non-zero count, OF only for 1; RCL/RCR read CF. */
export function rotateEffect(kind: 'rol' | 'ror' | 'rcl' | 'rcr', count: number): FlagEffect {
  const reads = kind === 'rcl' || kind === 'rcr' ? CF : 0;
  if (count === 0) return { reads, defines: 0, undefines: 0 };
  return { reads, defines: count === 1 ? CF | OF : CF, undefines: count === 1 ? 0 : OF };
}

/** SHLD/SHRD by `count` (masked to 5 bits, at most `width`): like SHL, with CF defined. */
export function doubleShiftEffect(count: number): FlagEffect {
  if (count === 0) return NONE;
  return { reads: 0, defines: SF | ZF | PF | CF | (count === 1 ? OF : 0), undefines: AF | (count === 1 ? 0 : OF) };
}
