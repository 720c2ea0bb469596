/**
 * The length of an instruction, from its bytes alone (SDM Vol. 2A §2.1 "Instruction Format": prefixes, opcode,
 * ModRM, SIB, displacement, immediate), for the decoded-instruction cache (`insn-cache.ts`). 16- and 32-bit code
 * only (no REX, no VEX/EVEX: those opcodes are not executed by the interpreter, and get no length here).
 *
 * The length is a hint, never a semantic: the cache stores and checks exactly that many bytes, and an instruction
 * the general decoder finds longer simply fetches its remaining bytes from memory. So an opcode whose form is not
 * listed here returns 0 (not cached) rather than a guess.
 *
 * @module
 */

import { GUEST_MAX_INSN_BYTES } from './exit.js';

/** Bit 0: the opcode has a ModRM byte. Bits 1–3: its immediate (see {@link IMM_*}). 0xff: unknown (not cached). */
const ONE_BYTE = new Uint8Array(256);
const TWO_BYTE = new Uint8Array(256);

const MODRM = 1;
/** No immediate. */
const IMM_NONE = 0 << 1;
/** An 8-bit immediate. */
const IMM_8 = 1 << 1;
/** An operand-size immediate (2 or 4 bytes). */
const IMM_V = 2 << 1;
/** A 16-bit immediate. */
const IMM_16 = 3 << 1;
/** ENTER's 16-bit and 8-bit immediates. */
const IMM_16_8 = 4 << 1;
/** A far pointer: an operand-size offset and a 16-bit selector. */
const IMM_FAR = 5 << 1;
/** An address-size memory offset (MOV A0–A3). */
const IMM_MOFFS = 6 << 1;
/** Group 3 (F6/F7): an immediate (8 bits for F6, operand size for F7) only for /0 and /1 (TEST). */
const IMM_GROUP3 = 7 << 1;
const UNKNOWN = 0xff;

function set(table: Uint8Array, ops: readonly number[], v: number): void {
  for (const op of ops) table[op] = v;
}

function range(lo: number, hi: number): number[] {
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

// One-byte map. ALU rows 00–3F: r/m forms 0–3 of each row, AL/eAX immediates 4–5, the rest one byte.
for (let row = 0; row < 0x40; row += 8) {
  set(ONE_BYTE, [row, row + 1, row + 2, row + 3], MODRM);
  ONE_BYTE[row + 4] = IMM_8;
  ONE_BYTE[row + 5] = IMM_V;
}
set(ONE_BYTE, [0x62, 0x63, 0x8d, 0xc4, 0xc5], MODRM);
set(ONE_BYTE, range(0x84, 0x8f), MODRM);
set(ONE_BYTE, [0x68], IMM_V);
set(ONE_BYTE, [0x69, 0x81, 0xc7], MODRM | IMM_V);
set(ONE_BYTE, [0x6a, 0xa8, 0xcd, 0xd4, 0xd5, 0xeb], IMM_8);
set(ONE_BYTE, range(0x70, 0x7f), IMM_8);
set(ONE_BYTE, range(0xb0, 0xb7), IMM_8);
set(ONE_BYTE, range(0xe0, 0xe7), IMM_8);
set(ONE_BYTE, [0x6b, 0x80, 0x82, 0x83, 0xc0, 0xc1, 0xc6], MODRM | IMM_8);
set(ONE_BYTE, [0xa9], IMM_V);
set(ONE_BYTE, range(0xb8, 0xbf), IMM_V);
set(ONE_BYTE, [0xe8, 0xe9], IMM_V);
set(ONE_BYTE, [0xc2, 0xca], IMM_16);
set(ONE_BYTE, [0xc8], IMM_16_8);
set(ONE_BYTE, [0x9a, 0xea], IMM_FAR);
set(ONE_BYTE, range(0xa0, 0xa3), IMM_MOFFS);
set(ONE_BYTE, [...range(0xd0, 0xd3), ...range(0xd8, 0xdf), 0xfe, 0xff], MODRM);
set(ONE_BYTE, [0xf6, 0xf7], MODRM | IMM_GROUP3);
// Prefixes are consumed before the table is consulted; 0F has its own map.
set(ONE_BYTE, [0x0f], UNKNOWN);

// Two-byte map (0F xx): the forms the interpreter executes; everything else is not cached.
TWO_BYTE.fill(UNKNOWN);
set(TWO_BYTE, [0x06, 0x08, 0x09, 0x0b, 0x30, 0x31, 0x32, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa], IMM_NONE);
set(TWO_BYTE, range(0xc8, 0xcf), IMM_NONE);
set(TWO_BYTE, range(0x80, 0x8f), IMM_V);
set(TWO_BYTE, [0x00, 0x01, 0x20, 0x22, ...range(0x18, 0x1f), ...range(0x40, 0x4f), ...range(0x90, 0x9f)], MODRM);
set(TWO_BYTE, [0xa3, 0xa5, 0xab, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xc0, 0xc1, 0xc7], MODRM);
set(TWO_BYTE, [0xa4, 0xac, 0xba], MODRM | IMM_8);

/** 1 for the prefix bytes (the general decoder's set, `decode.ts`). */
const PREFIX_BYTE = new Uint8Array(256);
for (const p of [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]) PREFIX_BYTE[p] = 1;

/**
 * The length of the instruction whose bytes `byteAt(0)`, `byteAt(1)`, … return (-1 past readable memory), in code
 * whose default operand and address size is 32 bits when `def32`; 0 when it cannot be told (an opcode not in the
 * tables, bytes that are not readable, longer than 15 bytes).
 */
export function insnLength(byteAt: (i: number) => number, def32: boolean): number {
  let i = 0;
  let o32 = def32;
  let a32 = def32;
  let op = byteAt(0);
  while (op >= 0 && PREFIX_BYTE[op] !== 0) {
    if (op === 0x66) o32 = !def32;
    else if (op === 0x67) a32 = !def32;
    if (++i >= GUEST_MAX_INSN_BYTES) return 0;
    op = byteAt(i);
  }
  if (op < 0) return 0;
  i++;
  let form: number;
  if (op === 0x0f) {
    const op2 = byteAt(i);
    if (op2 < 0) return 0;
    i++;
    form = TWO_BYTE[op2]!;
  } else form = ONE_BYTE[op]!;
  if (form === UNKNOWN) return 0;
  let reg = 0;
  if ((form & MODRM) !== 0) {
    const m = byteAt(i);
    if (m < 0) return 0;
    i++;
    reg = (m >> 3) & 7;
    i += modrmTail(m, a32, byteAt(i));
  }
  const v = o32 ? 4 : 2;
  switch (form & ~MODRM) {
    case IMM_8: i += 1; break;
    case IMM_V: i += v; break;
    case IMM_16: i += 2; break;
    case IMM_16_8: i += 3; break;
    case IMM_FAR: i += v + 2; break;
    case IMM_MOFFS: i += a32 ? 4 : 2; break;
    case IMM_GROUP3: if (reg <= 1) i += op === 0xf6 ? 1 : v; break;
    default: break;
  }
  if (i > GUEST_MAX_INSN_BYTES) return 0;
  for (let k = 1; k < i; k++) if (byteAt(k) < 0) return 0;
  return i;
}

/** Bytes after ModRM byte `m`: SIB and displacement (`sib` is the byte after ModRM, read only when it is a SIB). */
function modrmTail(m: number, a32: boolean, sib: number): number {
  const mod = m >> 6;
  if (mod === 3) return 0;
  const rm = m & 7;
  if (!a32) {
    if (mod === 0) return rm === 6 ? 2 : 0;
    return mod === 1 ? 1 : 2;
  }
  let n = 0;
  if (rm === 4) {
    n = 1;
    if (mod === 0 && (sib & 7) === 5) return n + 4;
  }
  if (mod === 0) return rm === 5 ? n + 4 : n;
  return n + (mod === 1 ? 1 : 4);
}
