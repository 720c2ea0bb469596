/**
 * The decoded form of a cached instruction (the decode half of the decode/execute split): for the prefix-free
 * instructions of 32-bit code that SeaBIOS's and compilers' i386 code executes most, which of
 * `decoded-exec.ts`'s handlers runs it and its operands — ModRM, the memory operand's base, index and scale,
 * displacement, immediate — decoded once from the bytes when the instruction enters the cache
 * (`insn-cache.ts`). Every other instruction (any prefix, 16-bit code, real mode, a form not listed) gets
 * {@link FORM_STEP}: it runs through the general decoder (`step.ts`).
 *
 * The records live in typed arrays of the page ({@link DecodedForms}), indexed by the instruction's page offset:
 * no object per instruction.
 *
 * @module
 */

/** No decoded form: the general decoder runs the instruction. */
export const FORM_STEP = 1;
/** ALU r/m32, r32 (01 09 11 19 21 29 31 39); `x` = the ALU operation (0 ADD … 7 CMP). */
export const FORM_ALU_EV_GV = 2;
/** ALU r32, r/m32 (03 0B … 3B). */
export const FORM_ALU_GV_EV = 3;
/** ALU r/m8, r8 (00 08 … 38). */
export const FORM_ALU_EB_GB = 4;
/** ALU r8, r/m8 (02 0A … 3A). */
export const FORM_ALU_GB_EB = 5;
/** ALU EAX, imm32 (05 0D … 3D). */
export const FORM_ALU_EAX_IMM = 6;
/** ALU AL, imm8 (04 0C … 3C). */
export const FORM_ALU_AL_IMM = 7;
/** INC r32 (40–47); `x` = the register. */
export const FORM_INC_R = 8;
/** DEC r32 (48–4F). */
export const FORM_DEC_R = 9;
/** PUSH r32 (50–57). */
export const FORM_PUSH_R = 10;
/** POP r32 (58–5F). */
export const FORM_POP_R = 11;
/** PUSH imm32 / PUSH imm8 sign-extended (68, 6A); `imm` = the value pushed. */
export const FORM_PUSH_IMM = 12;
/** Jcc rel8 / rel32 (70–7F, 0F 80–8F); `x` = the condition, `imm` = the displacement. */
export const FORM_JCC = 13;
/** JMP rel8 / rel32 (EB, E9). */
export const FORM_JMP = 14;
/** Group 1 r/m32, imm (81, 83); `x` = the ALU operation, `imm` = the immediate (83's sign-extended). */
export const FORM_GRP1_EV = 15;
/** Group 1 r/m8, imm8 (80, 82). */
export const FORM_GRP1_EB = 16;
/** TEST r/m32, r32 (85). */
export const FORM_TEST_EV_GV = 17;
/** TEST r/m8, r8 (84). */
export const FORM_TEST_EB_GB = 18;
/** MOV r/m8, r8 (88). */
export const FORM_MOV_EB_GB = 19;
/** MOV r/m32, r32 (89). */
export const FORM_MOV_EV_GV = 20;
/** MOV r8, r/m8 (8A). */
export const FORM_MOV_GB_EB = 21;
/** MOV r32, r/m32 (8B). */
export const FORM_MOV_GV_EV = 22;
/** LEA r32, m (8D with a memory operand). */
export const FORM_LEA = 23;
/** NOP (90 without F3). */
export const FORM_NOP = 24;
/** MOV r8, imm8 (B0–B7); `x` = the register. */
export const FORM_MOV_R8_IMM = 25;
/** MOV r32, imm32 (B8–BF). */
export const FORM_MOV_R32_IMM = 26;
/** Shift/rotate r/m32 (C1, D1, D3); `x` = the opcode, `imm` = C1's count. */
export const FORM_SHIFT_EV = 27;
/** Shift/rotate r/m8 (C0, D0, D2). */
export const FORM_SHIFT_EB = 28;
/** RET / RET imm16 (C3, C2); `imm` = the bytes released. */
export const FORM_RET = 29;
/** MOV r/m8, imm8 (C6 /0). */
export const FORM_MOV_EB_IMM = 30;
/** MOV r/m32, imm32 (C7 /0). */
export const FORM_MOV_EV_IMM = 31;
/** CALL rel32 (E8). */
export const FORM_CALL = 32;
/** TEST r/m32, imm32 (F7 /0). */
export const FORM_TEST_EV_IMM = 33;
/** TEST r/m8, imm8 (F6 /0). */
export const FORM_TEST_EB_IMM = 34;
/** Group 5 INC, DEC, CALL, JMP, PUSH r/m32 (FF /0 /1 /2 /4 /6); `x` = the operation. */
export const FORM_GRP5 = 35;
/** MOVZX / MOVSX r32, r/m8 (0F B6, 0F BE); `x` = 1 for MOVSX. */
export const FORM_MOVX8 = 36;
/** MOVZX / MOVSX r32, r/m16 (0F B7, 0F BF); `x` = 1 for MOVSX. */
export const FORM_MOVX16 = 37;
/** SETcc r/m8 (0F 90–9F); `x` = the condition. */
export const FORM_SETCC = 38;

/** MOV AL/EAX, moffs32 and back (A0–A3); `x` = the opcode, `imm` = the offset. */
export const FORM_MOV_MOFFS = 39;
/**
 * A string instruction (MOVS CMPS STOS LODS SCAS) with any REP, segment-override, operand- or address-size prefixes;
 * `x` = the opcode, `modrm` = the prefixes ({@link packPrefixes}).
 */
export const FORM_STRING = 40;

/**
 * The prefixes of a {@link FORM_STRING} instruction in one byte: bits 0–1 the REP prefix (0 none, 2 REPNE, 3 REP/REPE),
 * bit 2 a 32-bit operand size, bit 3 a 32-bit address size, bits 4–6 the segment override + 1 (0: none).
 */
export function packPrefixes(rep: number, o32: boolean, a32: boolean, ovr: number): number {
  return rep | (o32 ? 4 : 0) | (a32 ? 8 : 0) | ((ovr + 1) << 4);
}

/** Segment register numbers of the segment-override prefixes (ES CS SS DS FS GS, as `segments.ts` numbers them). */
const OVERRIDE: Readonly<Record<number, number>> = { 0x26: 0, 0x2e: 1, 0x36: 2, 0x3e: 3, 0x64: 4, 0x65: 5 };

/** `base` / `index` of a memory operand without that register. */
export const NO_REG = 0xff;

/** The decoded forms of one page's cached instructions, by page offset. */
export class DecodedForms {
  /** The handler (a `FORM_*`); 0 where the entry has never been decoded. */
  readonly form: Uint8Array;
  /** The form's small operand: an ALU operation, register, condition or sub-opcode. */
  readonly x: Uint8Array;
  /** The ModRM byte (register operand: ≥ 0xC0). */
  readonly modrm: Uint8Array;
  /** The memory operand's base register, or {@link NO_REG}. */
  readonly base: Uint8Array;
  /** The memory operand's index register, or {@link NO_REG}; bits 3–4 the scale's log2. */
  readonly index: Uint8Array;
  /** The memory operand's displacement (disp8 sign-extended, disp32 as a signed 32-bit value). */
  readonly disp: Int32Array;
  /** The immediate (or branch displacement), sign-extended where the instruction extends it. */
  readonly imm: Int32Array;

  constructor(size: number) {
    this.form = new Uint8Array(size);
    this.x = new Uint8Array(size);
    this.modrm = new Uint8Array(size);
    this.base = new Uint8Array(size);
    this.index = new Uint8Array(size);
    this.disp = new Int32Array(size);
    this.imm = new Int32Array(size);
  }
}

const PREFIXES: ReadonlySet<number> = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]);

const STRING_OPS: ReadonlySet<number> = new Set([0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf]);

/** Reads the signed 32-bit little-endian value at `bytes[o]`. */
function le32(bytes: Uint8Array, o: number): number {
  return bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | (bytes[o + 3]! << 24);
}

/**
 * Decodes the ModRM operand at `bytes[o]` (32-bit addressing) into entry `k` of `f`; returns the offset of the
 * byte after it (SDM Vol. 2A §2.1.5, Table 2-2 and 2-3).
 */
function modrm32(f: DecodedForms, k: number, bytes: Uint8Array, o: number): number {
  const m = bytes[o++]!;
  f.modrm[k] = m;
  f.base[k] = NO_REG;
  f.index[k] = NO_REG;
  f.disp[k] = 0;
  if (m >= 0xc0) return o;
  const mod = m >> 6;
  const rm = m & 7;
  if (rm === 4) {
    const sib = bytes[o++]!;
    const index = (sib >> 3) & 7;
    if (index !== 4) f.index[k] = index | ((sib >> 6) << 3);
    if ((sib & 7) === 5 && mod === 0) {
      f.disp[k] = le32(bytes, o);
      return o + 4;
    }
    f.base[k] = sib & 7;
  } else if (rm === 5 && mod === 0) {
    f.disp[k] = le32(bytes, o);
    return o + 4;
  } else f.base[k] = rm;
  if (mod === 1) {
    f.disp[k] = (bytes[o]! << 24) >> 24;
    return o + 1;
  }
  if (mod === 2) {
    f.disp[k] = le32(bytes, o);
    return o + 4;
  }
  return o;
}

/**
 * Decodes the instruction of `n` bytes at `bytes[off]` (an entry of page offset `off`), in code whose default
 * operand and address size is 32 bits when `def32` and in protected mode when `pe`, into entry `off` of `f`.
 * Anything without a decoded form — or whose decoded length would differ from `n` — gets {@link FORM_STEP}.
 */
export function decodeForm(f: DecodedForms, off: number, bytes: Uint8Array, n: number, pe: boolean, def32: boolean): void {
  f.form[off] = pe && def32 ? formOf(f, off, bytes, n) : FORM_STEP;
}

function formOf(f: DecodedForms, k: number, bytes: Uint8Array, n: number): number {
  let op = bytes[k]!;
  let o = k + 1;
  if (PREFIXES.has(op)) {
    // Prefixes: decoded only for string instructions (the general decoder's rules: the last segment override and REP
    // prefix count; 66/67 select the other size).
    let rep = 0;
    let o32 = true;
    let a32 = true;
    let ovr = -1;
    for (; PREFIXES.has(op); op = bytes[o++]!) {
      if (op === 0xf0) return FORM_STEP;
      if (op === 0xf2 || op === 0xf3) rep = op & 3;
      else if (op === 0x66) o32 = false;
      else if (op === 0x67) a32 = false;
      else ovr = OVERRIDE[op]!;
    }
    if (!STRING_OPS.has(op) || o - k !== n) return FORM_STEP;
    f.modrm[k] = packPrefixes(rep, o32, a32, ovr);
    f.x[k] = op;
    return FORM_STRING;
  }
  let form: number;
  let x = 0;
  let imm = 0;
  if (op === 0x0f) {
    const op2 = bytes[o++]!;
    if (op2 >= 0x80 && op2 <= 0x8f) {
      form = FORM_JCC;
      x = op2 & 0xf;
      imm = le32(bytes, o);
      o += 4;
    } else if (op2 >= 0x90 && op2 <= 0x9f) {
      form = FORM_SETCC;
      x = op2 & 0xf;
      o = modrm32(f, k, bytes, o);
    } else if (op2 === 0xb6 || op2 === 0xbe || op2 === 0xb7 || op2 === 0xbf) {
      form = op2 & 1 ? FORM_MOVX16 : FORM_MOVX8;
      x = op2 >= 0xbe ? 1 : 0;
      o = modrm32(f, k, bytes, o);
    } else return FORM_STEP;
  } else if (op < 0x40) {
    if ((op & 7) >= 6) return FORM_STEP; // segment pushes/pops, prefixes, decimal adjust
    x = op >> 3;
    switch (op & 7) {
      case 0: form = FORM_ALU_EB_GB; o = modrm32(f, k, bytes, o); break;
      case 1: form = FORM_ALU_EV_GV; o = modrm32(f, k, bytes, o); break;
      case 2: form = FORM_ALU_GB_EB; o = modrm32(f, k, bytes, o); break;
      case 3: form = FORM_ALU_GV_EV; o = modrm32(f, k, bytes, o); break;
      case 4: form = FORM_ALU_AL_IMM; imm = bytes[o++]!; break;
      default: form = FORM_ALU_EAX_IMM; imm = le32(bytes, o); o += 4; break;
    }
  } else if (op < 0x60) {
    form = op < 0x48 ? FORM_INC_R : op < 0x50 ? FORM_DEC_R : op < 0x58 ? FORM_PUSH_R : FORM_POP_R;
    x = op & 7;
  } else if (op === 0x68) {
    form = FORM_PUSH_IMM;
    imm = le32(bytes, o);
    o += 4;
  } else if (op === 0x6a) {
    form = FORM_PUSH_IMM;
    imm = (bytes[o++]! << 24) >> 24;
  } else if (op >= 0x70 && op <= 0x7f) {
    form = FORM_JCC;
    x = op & 0xf;
    imm = (bytes[o++]! << 24) >> 24;
  } else if (op >= 0x80 && op <= 0x83) {
    form = op & 1 ? FORM_GRP1_EV : FORM_GRP1_EB;
    o = modrm32(f, k, bytes, o);
    x = (f.modrm[k]! >> 3) & 7;
    if (op === 0x81) {
      imm = le32(bytes, o);
      o += 4;
    } else imm = op === 0x83 ? (bytes[o++]! << 24) >> 24 : bytes[o++]!;
  } else if (op >= 0x84 && op <= 0x8b) {
    if (op === 0x86 || op === 0x87) return FORM_STEP;
    form = [FORM_TEST_EB_GB, FORM_TEST_EV_GV, 0, 0, FORM_MOV_EB_GB, FORM_MOV_EV_GV, FORM_MOV_GB_EB, FORM_MOV_GV_EV][op - 0x84]!;
    o = modrm32(f, k, bytes, o);
  } else if (STRING_OPS.has(op)) {
    form = FORM_STRING;
    x = op;
    f.modrm[k] = packPrefixes(0, true, true, -1);
  } else if (op >= 0xa0 && op <= 0xa3) {
    form = FORM_MOV_MOFFS;
    x = op;
    imm = le32(bytes, o);
    o += 4;
  } else if (op === 0x8d) {
    form = FORM_LEA;
    o = modrm32(f, k, bytes, o);
    if (f.modrm[k]! >= 0xc0) return FORM_STEP; // #UD: the general decoder raises it
  } else if (op === 0x90) form = FORM_NOP;
  else if (op >= 0xb0 && op <= 0xb7) {
    form = FORM_MOV_R8_IMM;
    x = op & 7;
    imm = bytes[o++]!;
  } else if (op >= 0xb8 && op <= 0xbf) {
    form = FORM_MOV_R32_IMM;
    x = op & 7;
    imm = le32(bytes, o);
    o += 4;
  } else if (op === 0xc0 || op === 0xc1 || (op >= 0xd0 && op <= 0xd3)) {
    form = op & 1 ? FORM_SHIFT_EV : FORM_SHIFT_EB;
    x = op;
    o = modrm32(f, k, bytes, o);
    if (op < 0xd0) imm = bytes[o++]!;
  } else if (op === 0xc2 || op === 0xc3) {
    form = FORM_RET;
    if (op === 0xc2) {
      imm = bytes[o]! | (bytes[o + 1]! << 8);
      o += 2;
    }
  } else if (op === 0xc6 || op === 0xc7) {
    form = op === 0xc6 ? FORM_MOV_EB_IMM : FORM_MOV_EV_IMM;
    o = modrm32(f, k, bytes, o);
    if ((f.modrm[k]! & 0x38) !== 0) return FORM_STEP; // #UD
    if (op === 0xc6) imm = bytes[o++]!;
    else {
      imm = le32(bytes, o);
      o += 4;
    }
  } else if (op === 0xe8 || op === 0xe9) {
    form = op === 0xe8 ? FORM_CALL : FORM_JMP;
    imm = le32(bytes, o);
    o += 4;
  } else if (op === 0xeb) {
    form = FORM_JMP;
    imm = (bytes[o++]! << 24) >> 24;
  } else if (op === 0xf6 || op === 0xf7) {
    form = op === 0xf6 ? FORM_TEST_EB_IMM : FORM_TEST_EV_IMM;
    o = modrm32(f, k, bytes, o);
    if ((f.modrm[k]! & 0x38) !== 0) return FORM_STEP; // NOT NEG MUL IMUL DIV IDIV (and the #UD of /1)
    if (op === 0xf6) imm = bytes[o++]!;
    else {
      imm = le32(bytes, o);
      o += 4;
    }
  } else if (op === 0xff) {
    form = FORM_GRP5;
    o = modrm32(f, k, bytes, o);
    x = (f.modrm[k]! >> 3) & 7;
    if (x === 3 || x === 5 || x === 7) return FORM_STEP; // far CALL/JMP, #UD
  } else return FORM_STEP;
  if (o - k !== n) return FORM_STEP; // the length table disagrees: let the general decoder decide
  f.x[k] = x;
  f.imm[k] = imm;
  return form;
}
