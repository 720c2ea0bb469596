/**
 * Machine code of the instructions the guest programs use, in the real Intel encodings (SDM Vol. 2,
 * Appendix A), with a NASM-style text for the listing. `asm16` (`@vac/kvm`) lays the programs out and
 * assembles their jumps and calls; these cover the rest, including instructions the model's interpreter
 * does not execute yet (which `asm16` deliberately does not offer).
 *
 * @module
 */

/** Encoded instruction. */
export interface Insn {
  readonly bytes: readonly number[];
  readonly text: string;
}

/** 8-bit registers in ModRM order. */
export const REG8 = ['al', 'cl', 'dl', 'bl', 'ah', 'ch', 'dh', 'bh'] as const;
/** 16-bit registers in ModRM order. */
export const REG16 = ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di'] as const;
/** 32-bit registers in ModRM order. */
export const REG32 = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi'] as const;
/** Segment registers in `mov Sreg` order. */
export const SREG = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;
/** 16-bit r/m encodings (mod ≠ 3). */
const RM16 = ['bx+si', 'bx+di', 'bp+si', 'bp+di', 'si', 'di', 'bp', 'bx'] as const;
/** Condition codes by number. */
export const CC = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'] as const;

/** A register operand (index into REG8/REG16/REG32 by `size`). */
export interface Reg {
  readonly kind: 'reg';
  readonly n: number;
}
/** A 16-bit memory operand: r/m 0–7 (6 with mod 0 is a direct address) and a displacement. */
export interface Mem {
  readonly kind: 'mem';
  readonly rm: number;
  readonly disp: number;
  /** Direct `[disp16]` (no base or index). */
  readonly direct: boolean;
}
/** A register or memory operand. */
export type Rm = Reg | Mem;

/** Register `n`. */
export const reg = (n: number): Reg => ({ kind: 'reg', n });
/** `[base+index+disp]` by r/m number. */
export const mem = (rm: number, disp = 0): Mem => ({ kind: 'mem', rm, disp: disp & 0xffff, direct: false });
/** `[disp16]`. */
export const direct = (addr: number): Mem => ({ kind: 'mem', rm: 6, disp: addr & 0xffff, direct: true });

/** Operand size: 8, 16 or 32 (32 with the 0x66 prefix). */
export type Size = 8 | 16 | 32;

function regName(n: number, size: Size): string {
  return (size === 8 ? REG8 : size === 16 ? REG16 : REG32)[n] as string;
}

function hex(v: number): string {
  return v < 10 ? String(v) : `0x${v.toString(16)}`;
}

/** NASM text of an operand. */
export function rmText(o: Rm, size: Size | undefined): string {
  if (o.kind === 'reg') return regName(o.n, size ?? 16);
  const prefix = size === 8 ? 'byte ' : size === 16 ? 'word ' : size === 32 ? 'dword ' : '';
  if (o.direct) return `${prefix}[${hex(o.disp)}]`;
  const d = o.disp === 0 && o.rm !== 6 ? '' : o.disp >= 0x8000 ? `-${hex(0x10000 - o.disp)}` : `+${hex(o.disp)}`;
  return `${prefix}[${RM16[o.rm]}${d}]`;
}

/** ModRM (and displacement) for `o` with ModRM.reg = `r`. */
export function modrm(o: Rm, r: number): number[] {
  if (o.kind === 'reg') return [0xc0 | (r << 3) | o.n];
  if (o.direct) return [(r << 3) | 6, o.disp & 0xff, o.disp >> 8];
  const d = o.disp;
  if (d === 0 && o.rm !== 6) return [(r << 3) | o.rm];
  if (d < 0x80 || d >= 0xff80) return [0x40 | (r << 3) | o.rm, d & 0xff];
  return [0x80 | (r << 3) | o.rm, d & 0xff, d >> 8];
}

function opsize(size: Size): number[] {
  return size === 32 ? [0x66] : [];
}

function imm(v: number, size: Size): number[] {
  if (size === 8) return [v & 0xff];
  if (size === 16) return [v & 0xff, (v >> 8) & 0xff];
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** A plain instruction from bytes and text. */
export const raw = (bytes: readonly number[], text: string): Insn => ({ bytes, text });

/** The two-operand ALU operations by their /digit. */
export const ALU = ['add', 'or', 'adc', 'sbb', 'and', 'sub', 'xor', 'cmp'] as const;
/** An ALU operation. */
export type AluOp = (typeof ALU)[number];

/** `op r/m, reg` (00/01 +8·op). */
export function aluRmReg(op: AluOp, dst: Rm, src: number, size: Size): Insn {
  const o = ALU.indexOf(op);
  return raw([...opsize(size), o * 8 + (size === 8 ? 0 : 1), ...modrm(dst, src)], `${op} ${rmText(dst, dst.kind === 'mem' ? undefined : size)}, ${regName(src, size)}`);
}

/** `op reg, r/m` (02/03 +8·op). */
export function aluRegRm(op: AluOp, dst: number, src: Rm, size: Size): Insn {
  const o = ALU.indexOf(op);
  return raw([...opsize(size), o * 8 + (size === 8 ? 2 : 3), ...modrm(src, dst)], `${op} ${regName(dst, size)}, ${rmText(src, src.kind === 'mem' ? undefined : size)}`);
}

/** `op r/m, imm` (80/81/83 /op; the accumulator short form 04/05 +8·op when `short`). */
export function aluImm(op: AluOp, dst: Rm, v: number, size: Size, form: 'full' | 'sext8' | 'acc' = 'full'): Insn {
  const o = ALU.indexOf(op);
  const text = `${op} ${rmText(dst, size)}, ${hex(v & (size === 8 ? 0xff : size === 16 ? 0xffff : 0xffffffff))}`;
  if (form === 'acc') return raw([...opsize(size), o * 8 + (size === 8 ? 4 : 5), ...imm(v, size)], text);
  if (form === 'sext8' && size !== 8) return raw([...opsize(size), 0x83, ...modrm(dst, o), v & 0xff], text);
  return raw([...opsize(size), size === 8 ? 0x80 : 0x81, ...modrm(dst, o), ...imm(v, size)], text);
}

/** `test r/m, reg` (84/85). */
export function testRmReg(dst: Rm, src: number, size: Size): Insn {
  return raw([...opsize(size), size === 8 ? 0x84 : 0x85, ...modrm(dst, src)], `test ${rmText(dst, dst.kind === 'mem' ? undefined : size)}, ${regName(src, size)}`);
}

/** `test r/m, imm` (F6/F7 /0). */
export function testImm(dst: Rm, v: number, size: Size): Insn {
  return raw([...opsize(size), size === 8 ? 0xf6 : 0xf7, ...modrm(dst, 0), ...imm(v, size)], `test ${rmText(dst, size)}, ${hex(v)}`);
}

/** Group 3 (F6/F7): not neg mul imul div idiv. */
export function group3(op: 'not' | 'neg' | 'mul' | 'imul' | 'div' | 'idiv', dst: Rm, size: Size): Insn {
  const d = { not: 2, neg: 3, mul: 4, imul: 5, div: 6, idiv: 7 }[op];
  return raw([...opsize(size), size === 8 ? 0xf6 : 0xf7, ...modrm(dst, d)], `${op} ${rmText(dst, size)}`);
}

/** INC/DEC r/m (FE/FF /0 /1). */
export function incDec(op: 'inc' | 'dec', dst: Rm, size: Size): Insn {
  return raw([...opsize(size), size === 8 ? 0xfe : 0xff, ...modrm(dst, op === 'inc' ? 0 : 1)], `${op} ${rmText(dst, size)}`);
}

/** Shifts and rotates by their /digit. */
export const SHIFTS = { rol: 0, ror: 1, rcl: 2, rcr: 3, shl: 4, shr: 5, sar: 7 } as const;
/** A shift or rotate. */
export type ShiftOp = keyof typeof SHIFTS;

/** `op r/m, count` (D0/D1 by 1, D2/D3 by CL, C0/C1 by imm8). */
export function shift(op: ShiftOp, dst: Rm, count: number | 'cl', size: Size): Insn {
  const d = SHIFTS[op];
  const w = size === 8 ? 0 : 1;
  if (count === 'cl') return raw([...opsize(size), 0xd2 + w, ...modrm(dst, d)], `${op} ${rmText(dst, size)}, cl`);
  if (count === 1) return raw([...opsize(size), 0xd0 + w, ...modrm(dst, d)], `${op} ${rmText(dst, size)}, 1`);
  return raw([...opsize(size), 0xc0 + w, ...modrm(dst, d), count & 0xff], `${op} ${rmText(dst, size)}, ${count}`);
}

/** MOV r/m, reg / reg, r/m / reg, imm / r/m, imm. */
export function movRmReg(dst: Rm, src: number, size: Size): Insn {
  return raw([...opsize(size), size === 8 ? 0x88 : 0x89, ...modrm(dst, src)], `mov ${rmText(dst, dst.kind === 'mem' ? undefined : size)}, ${regName(src, size)}`);
}
/** `mov reg, r/m`. */
export function movRegRm(dst: number, src: Rm, size: Size): Insn {
  return raw([...opsize(size), size === 8 ? 0x8a : 0x8b, ...modrm(src, dst)], `mov ${regName(dst, size)}, ${rmText(src, src.kind === 'mem' ? undefined : size)}`);
}
/** `mov reg, imm` (B0+r / B8+r). */
export function movRegImm(dst: number, v: number, size: Size): Insn {
  return raw([...opsize(size), (size === 8 ? 0xb0 : 0xb8) + dst, ...imm(v, size)], `mov ${regName(dst, size)}, ${hex(v >>> 0)}`);
}
/** `mov r/m, imm` (C6/C7 /0). */
export function movRmImm(dst: Rm, v: number, size: Size): Insn {
  return raw([...opsize(size), size === 8 ? 0xc6 : 0xc7, ...modrm(dst, 0), ...imm(v, size)], `mov ${rmText(dst, size)}, ${hex(v >>> 0)}`);
}
/** `mov Sreg, r/m16` (8E). */
export function movSregRm(sreg: number, src: Rm): Insn {
  return raw([0x8e, ...modrm(src, sreg)], `mov ${SREG[sreg]}, ${rmText(src, 16)}`);
}
/** `mov r/m16, Sreg` (8C). */
export function movRmSreg(dst: Rm, sreg: number): Insn {
  return raw([0x8c, ...modrm(dst, sreg)], `mov ${rmText(dst, 16)}, ${SREG[sreg]}`);
}
/** `xchg r/m, reg` (86/87). */
export function xchg(dst: Rm, src: number, size: Size): Insn {
  return raw([...opsize(size), size === 8 ? 0x86 : 0x87, ...modrm(dst, src)], `xchg ${rmText(dst, dst.kind === 'mem' ? undefined : size)}, ${regName(src, size)}`);
}
/** `lea r16, m` (8D). */
export function lea(dst: number, src: Mem): Insn {
  return raw([0x8d, ...modrm(src, dst)], `lea ${REG16[dst]}, ${rmText(src, undefined)}`);
}
/** `imul r, r/m` (0F AF) and `imul r, r/m, imm` (6B/69). */
export function imul2(dst: number, src: Rm, size: Size, v?: number): Insn {
  if (v === undefined) return raw([...opsize(size), 0x0f, 0xaf, ...modrm(src, dst)], `imul ${regName(dst, size)}, ${rmText(src, size)}`);
  const small = v >= -128 && v <= 127;
  return raw([...opsize(size), small ? 0x6b : 0x69, ...modrm(src, dst), ...(small ? [v & 0xff] : imm(v, size))], `imul ${regName(dst, size)}, ${rmText(src, size)}, ${v}`);
}
/** MOVZX/MOVSX r16, r/m8 (0F B6 / 0F BE). */
export function movx(op: 'movzx' | 'movsx', dst: number, src: Rm, size: 16 | 32, from: 8 | 16): Insn {
  const o = (op === 'movzx' ? 0xb6 : 0xbe) + (from === 16 ? 1 : 0);
  return raw([...opsize(size), 0x0f, o, ...modrm(src, dst)], `${op} ${regName(dst, size)}, ${rmText(src, from)}`);
}
/** SETcc r/m8 (0F 90+cc). */
export function setcc(cc: number, dst: Rm): Insn {
  return raw([0x0f, 0x90 + cc, ...modrm(dst, 0)], `set${CC[cc]} ${rmText(dst, 8)}`);
}
/** PUSH r/m16 (FF /6) / POP r/m16 (8F /0). */
export function pushRm(src: Rm): Insn {
  return raw([0xff, ...modrm(src, 6)], `push ${rmText(src, 16)}`);
}
/** `pop r/m16`. */
export function popRm(dst: Rm): Insn {
  return raw([0x8f, ...modrm(dst, 0)], `pop ${rmText(dst, 16)}`);
}

// ---- instructions the model's interpreter does not execute yet -----------------------------------------

/** BT/BTS/BTR/BTC r/m16, r16 (0F A3/AB/B3/BB) or imm8 (0F BA /4–7). */
export function bitTest(op: 'bt' | 'bts' | 'btr' | 'btc', dst: Rm, src: number | { imm: number }, size: 16 | 32): Insn {
  const i = ['bt', 'bts', 'btr', 'btc'].indexOf(op);
  if (typeof src === 'number') return raw([...opsize(size), 0x0f, 0xa3 + 8 * i, ...modrm(dst, src)], `${op} ${rmText(dst, size)}, ${regName(src, size)}`);
  return raw([...opsize(size), 0x0f, 0xba, ...modrm(dst, 4 + i), src.imm & 0xff], `${op} ${rmText(dst, size)}, ${src.imm}`);
}
/** BSF/BSR r, r/m (0F BC/BD). */
export function bitScan(op: 'bsf' | 'bsr', dst: number, src: Rm, size: 16 | 32): Insn {
  return raw([...opsize(size), 0x0f, op === 'bsf' ? 0xbc : 0xbd, ...modrm(src, dst)], `${op} ${regName(dst, size)}, ${rmText(src, size)}`);
}
/** SHLD/SHRD r/m, r, imm8|CL (0F A4/A5/AC/AD). */
export function shiftDouble(op: 'shld' | 'shrd', dst: Rm, src: number, count: number | 'cl', size: 16 | 32): Insn {
  const base = op === 'shld' ? 0xa4 : 0xac;
  if (count === 'cl') return raw([...opsize(size), 0x0f, base + 1, ...modrm(dst, src)], `${op} ${rmText(dst, size)}, ${regName(src, size)}, cl`);
  return raw([...opsize(size), 0x0f, base, ...modrm(dst, src), count & 0xff], `${op} ${rmText(dst, size)}, ${regName(src, size)}, ${count}`);
}
/** BSWAP r32 (0F C8+r). */
export function bswap(r: number): Insn {
  return raw([0x66, 0x0f, 0xc8 + r], `bswap ${REG32[r]}`);
}
/** CMPXCHG r/m, r (0F B0/B1); XADD r/m, r (0F C0/C1). */
export function cmpxchgXadd(op: 'cmpxchg' | 'xadd', dst: Rm, src: number, size: Size): Insn {
  const base = op === 'cmpxchg' ? 0xb0 : 0xc0;
  return raw([...opsize(size), 0x0f, base + (size === 8 ? 0 : 1), ...modrm(dst, src)], `${op} ${rmText(dst, dst.kind === 'mem' ? size : size)}, ${regName(src, size)}`);
}
/** CMOVcc r, r/m (0F 40+cc). */
export function cmov(cc: number, dst: number, src: Rm, size: 16 | 32): Insn {
  return raw([...opsize(size), 0x0f, 0x40 + cc, ...modrm(src, dst)], `cmov${CC[cc]} ${regName(dst, size)}, ${rmText(src, size)}`);
}
/** ENTER imm16, imm8 (C8). */
export function enter(size: number, level: number): Insn {
  return raw([0xc8, size & 0xff, size >> 8, level], `enter ${size}, ${level}`);
}
/** String I/O: INS/OUTS (6C/6D/6E/6F) with an optional REP. */
export function stringIo(op: 'insb' | 'insw' | 'outsb' | 'outsw', rep: boolean): Insn {
  const o = { insb: 0x6c, insw: 0x6d, outsb: 0x6e, outsw: 0x6f }[op];
  return raw([...(rep ? [0xf3] : []), o], `${rep ? 'rep ' : ''}${op}`);
}
/** Group 7 (0F 01): sgdt sidt lgdt lidt smsw lmsw invlpg. */
export function group7(op: 'sgdt' | 'sidt' | 'lgdt' | 'lidt' | 'smsw' | 'lmsw' | 'invlpg', o: Rm): Insn {
  const d = { sgdt: 0, sidt: 1, lgdt: 2, lidt: 3, smsw: 4, lmsw: 6, invlpg: 7 }[op];
  return raw([0x0f, 0x01, ...modrm(o, d)], `${op} ${rmText(o, op === 'smsw' || op === 'lmsw' ? 16 : undefined)}`);
}
/** MOV r32, CRn (0F 20) / MOV CRn, r32 (0F 22). */
export function movCr(dir: 'from' | 'to', cr: number, r: number): Insn {
  return dir === 'from' ? raw([0x0f, 0x20, 0xc0 | (cr << 3) | r], `mov ${REG32[r]}, cr${cr}`) : raw([0x0f, 0x22, 0xc0 | (cr << 3) | r], `mov cr${cr}, ${REG32[r]}`);
}
