/**
 * A small assembler for the 16-bit real-mode code the guest interpreter ({@link runGuest}) executes, so guests
 * can be written as instructions instead of byte arrays:
 *
 * ```ts
 * const code = asm16()
 *   .mov('dx', 0x3f8)
 *   .mov('al', 'v'.charCodeAt(0))
 *   .out('dx', 'al')
 *   .hlt()
 *   .bytes(); // [0xba, 0xf8, 0x03, 0xb0, 0x76, 0xee, 0xf4]
 * ```
 *
 * Every method emits the real Intel encoding (SDM Vol. 2, opcode tables in Appendix A), choosing the same
 * form NASM does where there are several, so existing byte-array guests assemble byte for byte:
 *
 * - register to register: the "r/m, reg" opcodes (`88`, `89`, `00`, `01`, … with ModRM.mod = 11);
 * - an immediate to AL/AX: the accumulator short forms (`04 ib`, `3C ib`, …), except that a 16-bit immediate
 *   that fits a sign-extended byte uses `83 /digit ib` for any register;
 * - `push imm`: `6A ib` when the value fits a sign-extended byte, else `68 iw`;
 * - shifts by 1: `D0`/`D1`; by CL: `D2`/`D3`; by another count: `C0`/`C1 ib`.
 *
 * **Jumps.** `jmp` and the `jcc` family are assembled short (rel8) when the target is within −128..127 bytes
 * of the next instruction, and near (rel16: `E9 cw`, `0F 8x cw`) otherwise. Sizes are chosen by iterating
 * the layout from "all short" and only ever growing a jump, so the result is deterministic and every short
 * jump that could be short is. Passing `'short'` or `'near'` forces the size (`'short'` out of range is an
 * error). `loop`, `loopz`, `loopnz` and `jcxz` exist only with rel8: out of range is an error. `call` is
 * always near (`E8 cw`). A near displacement wraps at 64 KiB, as IP does.
 *
 * **Addresses.** Code is laid out from `org` (default 0x1000, where {@link createRealModeVm} loads code and
 * starts the vCPU with CS base 0). Only label *addresses* depend on it (`mov si, {label}`, `push {label}`,
 * `dw {label}`); jumps are relative.
 *
 * **Errors.** Bad operands — an unknown register, mixed operand sizes, an immediate that does not fit, a
 * form the CPU has no encoding for or the interpreter does not execute (`mov cs, ax`, `pop cs`) — throw
 * `UsageError` from the method that was called. Label problems (undefined or duplicate labels, a jump out of
 * range, code past the 64 KiB segment) throw `UsageError` from the method that lays the code out
 * ({@link Asm16.bytes}, {@link Asm16.addressOf}) or from {@link Asm16.label}.
 *
 * **Memory operands.** {@link Asm16.mem}, {@link Asm16.byte} and {@link Asm16.word} build a memory operand
 * with real 16-bit ModRM addressing (SDM Vol. 2A §2.1.5, Table 2-1): a direct address `[disp16]` (a number
 * 0..0xFFFF or a `{ label }`), or `[bx]`, `[bp]`, `[si]`, `[di]`, `[bx+si]`, `[bx+di]`, `[bp+si]`, `[bp+di]`
 * plus an optional signed displacement, with an optional leading segment override (`26`/`2E`/`36`/`3E`/
 * `64`/`65` for ES/CS/SS/DS/FS/GS, emitted whenever it is written, even when it names the default segment):
 *
 * ```ts
 * const { mem, word } = Asm16;
 * asm16().inc(word(0x1800)).mov('ax', mem(0x1800)).mov(mem('bx', 'si', 4), 'al').add(word('es', 'di'), 1);
 * // inc word [0x1800]; mov ax, [0x1800]; mov [bx+si+4], al; add word [es:di], 1
 * ```
 *
 * - The displacement is taken modulo 64 KiB (the offset wraps, as the CPU computes it) and encoded as
 *   nothing when it is 0, a sign-extended disp8 (mod = 01) when it is −128..127 (or 0xFF80..0xFFFF), and a
 *   disp16 (mod = 10) otherwise; `[bp]` is always `[bp+0]` with a disp8, since mod = 00, r/m = 110 is the
 *   direct address. A `{ label }` direct address is always a disp16.
 * - `mov al/ax, [disp16]` and `mov [disp16], al/ax` use the one-byte-shorter `moffs` forms `A0`–`A3`, as
 *   NASM does; any other register, or any base/index form, uses `8A`/`8B`/`88`/`89 /r`.
 * - The operand size comes from the register operand. Where there is none (an immediate to memory,
 *   `inc`/`dec`/`not`/`neg`, shifts), `mem(…)` is ambiguous and must be `byte(…)` or `word(…)` (NASM's
 *   `byte [..]` / `word [..]`); a sized operand that disagrees with the register is an error, and so is a
 *   byte operand for `push`/`pop` or a segment register.
 * - A word immediate to memory that fits a sign-extended byte uses `83 /digit ib`, as for registers.
 *
 * Deliberately not offered: 32-bit operands and addressing (the `0x66`/`0x67` prefixes), `rep` prefixes,
 * far jumps and calls, indirect jumps and calls, multiply/divide, `xchg`, `lea`, and the other instructions
 * the interpreter runs but a first guest does not need; {@link Asm16.db} can always emit raw bytes.
 *
 * @module
 */

import { UsageError } from '@vac/core';

/** The 8-bit general registers, in ModRM order (AL = 0 … BH = 7). */
export type Asm16Reg8 = 'al' | 'cl' | 'dl' | 'bl' | 'ah' | 'ch' | 'dh' | 'bh';

/** The 16-bit general registers, in ModRM order (AX = 0 … DI = 7). */
export type Asm16Reg16 = 'ax' | 'cx' | 'dx' | 'bx' | 'sp' | 'bp' | 'si' | 'di';

/** The segment registers, in `mov Sreg` order (ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5). */
export type Asm16SegReg = 'es' | 'cs' | 'ss' | 'ds' | 'fs' | 'gs';

/** A general register of either size. */
export type Asm16Reg = Asm16Reg8 | Asm16Reg16;

/**
 * A condition of `jcc` (SDM Vol. 2A, Jcc; Vol. 1 Appendix B): the mnemonic without its `j`. Synonyms encode
 * the same (e.g. `'z'` and `'e'` are both condition 4).
 */
export type Asm16Condition =
  | 'o' | 'no' | 'b' | 'c' | 'nae' | 'nb' | 'nc' | 'ae' | 'z' | 'e' | 'nz' | 'ne' | 'be' | 'na' | 'a' | 'nbe'
  | 's' | 'ns' | 'p' | 'pe' | 'np' | 'po' | 'l' | 'nge' | 'ge' | 'nl' | 'le' | 'ng' | 'g' | 'nle';

/** The address of a label as a 16-bit immediate (`org` + the label's offset), e.g. `mov('si', { label: 'msg' })`. */
export interface Asm16LabelRef {
  /** The label's name, as given to {@link Asm16.label}. */
  readonly label: string;
}

/** A 16-bit immediate: a number (−32768..65535) or a label's address. */
export type Asm16Imm16 = number | Asm16LabelRef;

/** The size of a jump: `'short'` (rel8) or `'near'` (rel16). Omitted: the smallest that reaches. */
export type Asm16JumpSize = 'short' | 'near';

/**
 * The source of {@link Asm16.mov} for a destination `D`: a register of the same size, an immediate, a segment
 * register, or memory. At most one operand is memory; an unsized memory destination ({@link Asm16.mem})
 * takes its size from a register source.
 */
export type Asm16MovSource<D extends Asm16Reg | Asm16SegReg | Asm16.Mem> = D extends Asm16Reg8
  ? Asm16Reg8 | number | Asm16.Mem<8 | undefined>
  : D extends Asm16Reg16
    ? Asm16Reg16 | Asm16SegReg | Asm16Imm16 | Asm16.Mem<16 | undefined>
    : D extends Asm16.Mem<8>
      ? Asm16Reg8 | number
      : D extends Asm16.Mem<16>
        ? Asm16Reg16 | Asm16SegReg | Asm16Imm16
        : D extends Asm16.Mem
          ? Asm16Reg | Asm16SegReg
          : Asm16Reg16 | Asm16.Mem<16 | undefined>;

/**
 * The source of a two-operand ALU instruction (and `test`) for a destination `D`: a register of the same size,
 * an immediate, or memory. At most one operand is memory; an unsized memory destination ({@link Asm16.mem})
 * takes its size from a register source.
 */
export type Asm16AluSource<D extends Asm16Reg | Asm16.Mem> = D extends Asm16Reg8
  ? Asm16Reg8 | number | Asm16.Mem<8 | undefined>
  : D extends Asm16Reg16
    ? Asm16Reg16 | number | Asm16.Mem<16 | undefined>
    : D extends Asm16.Mem<8>
      ? Asm16Reg8 | number
      : D extends Asm16.Mem<16>
        ? Asm16Reg16 | number
        : Asm16Reg;

/** Options of {@link asm16}. */
export interface Asm16Options {
  /** The address (IP, with CS base 0) the code is loaded at, for label addresses. Default 0x1000. */
  readonly org?: number;
}

// ---------------------------------------------------------------------------------------------------------
// Operand tables.

const REG8: ReadonlyMap<string, number> = new Map(['al', 'cl', 'dl', 'bl', 'ah', 'ch', 'dh', 'bh'].map((r, i) => [r, i]));
const REG16: ReadonlyMap<string, number> = new Map(['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di'].map((r, i) => [r, i]));
const SREG: ReadonlyMap<string, number> = new Map(['es', 'cs', 'ss', 'ds', 'fs', 'gs'].map((r, i) => [r, i]));
const CS = 1;

const CONDITIONS: ReadonlyMap<string, number> = new Map([
  ['o', 0], ['no', 1], ['b', 2], ['c', 2], ['nae', 2], ['nb', 3], ['nc', 3], ['ae', 3],
  ['z', 4], ['e', 4], ['nz', 5], ['ne', 5], ['be', 6], ['na', 6], ['a', 7], ['nbe', 7],
  ['s', 8], ['ns', 9], ['p', 10], ['pe', 10], ['np', 11], ['po', 11], ['l', 12], ['nge', 12],
  ['ge', 13], ['nl', 13], ['le', 14], ['ng', 14], ['g', 15], ['nle', 15],
]);

/** ALU operations by their `/digit` (and `opcode >> 3`): SDM Vol. 2, Table A-6 group 1. */
const ALU = { add: 0, or: 1, adc: 2, sbb: 3, and: 4, sub: 5, xor: 6, cmp: 7 } as const;
type AluOp = keyof typeof ALU;

/** Shift/rotate operations by their `/digit`: group 2. */
const SHIFT = { rol: 0, ror: 1, rcl: 2, rcr: 3, shl: 4, shr: 5, sar: 7 } as const;
type ShiftOp = keyof typeof SHIFT;

/** Segment-override prefixes by segment register number (SDM Vol. 2A §2.1.1, group 2). */
const SEG_PREFIX: readonly number[] = [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65];

/** ModRM r/m of each 16-bit base/index combination (Table 2-1); `bp` alone (6) needs mod ≠ 00. */
const RM16: ReadonlyMap<string, number> = new Map([
  ['bx+si', 0], ['bx+di', 1], ['bp+si', 2], ['bp+di', 3], ['si', 4], ['di', 5], ['bp', 6], ['bx', 7],
]);

type Operand =
  | { readonly kind: 'r8' | 'r16' | 'sreg'; readonly n: number }
  | { readonly kind: 'imm'; readonly v: number }
  | { readonly kind: 'label'; readonly name: string }
  | { readonly kind: 'mem'; readonly m: Asm16.Mem };

/** Machine code with 16-bit label addresses still to fill in: a string is a label name, 2 bytes. */
type Part = number | string;

function describe(x: unknown): string {
  if (typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'mem') return describeMem(x as Asm16.Mem);
  return typeof x === 'string' ? `'${x}'` : typeof x === 'object' && x !== null ? JSON.stringify(x) : String(x);
}

/** NASM syntax of a memory operand, for messages: `word [es:bx+si+4]`. */
function describeMem(m: Asm16.Mem): string {
  const size = m.size === 8 ? 'byte ' : m.size === 16 ? 'word ' : '';
  const seg = m.seg === undefined ? '' : `${String(m.seg)}:`;
  const regs = [m.base, m.index].filter((r) => r !== undefined).map(String).join('+');
  const d = m.disp;
  const disp = typeof d === 'number' ? (regs === '' ? `0x${d.toString(16)}` : d === 0 ? '' : d < 0 ? `${d}` : `+${d}`) : `${regs === '' ? '' : '+'}${JSON.stringify(d)}`;
  return `${size}[${seg}${regs}${disp}]`;
}

/**
 * Checks the arguments of {@link Asm16.mem} (and `byte`, `word`, and a memory operand passed to an
 * instruction) and builds the operand.
 */
function makeMem<S extends Asm16.MemSize>(insn: string, size: S, args: readonly unknown[]): Asm16.Mem<S> {
  const fail: (why: string) => never = (why) => {
    throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: ${why}`);
  };
  if (size !== undefined && size !== 8 && size !== 16) fail(`operand size ${describe(size)} is not 8, 16 or undefined`);
  let rest = args;
  let seg: Asm16SegReg | undefined;
  if (typeof rest[0] === 'string' && SREG.has(rest[0])) {
    seg = rest[0] as Asm16SegReg;
    rest = rest.slice(1);
  }
  const first = rest[0];
  if (first === undefined) return fail('a memory operand needs an address (a number, { label }, or bx/bp/si/di)');
  if (typeof first === 'number' || (typeof first === 'object' && first !== null)) {
    if (rest.length > 1) fail(`a direct address takes no further operands, got ${rest.slice(1).map(describe).join(', ')}`);
    if (typeof first === 'number') {
      if (!Number.isInteger(first) || first < 0 || first > 0xffff) fail(`address ${describe(first)} is not in 0..0xffff`);
      return { kind: 'mem', base: undefined, index: undefined, disp: first, size, seg };
    }
    const name = (first as { label?: unknown }).label;
    if (typeof name !== 'string' || name === '') fail(`invalid address ${describe(first)}: expected a number or { label }`);
    return { kind: 'mem', base: undefined, index: undefined, disp: { label: name as string }, size, seg };
  }
  if (typeof first !== 'string') return fail(`invalid address ${describe(first)}`);
  const isAddrReg = (r: unknown): r is Asm16.Base | Asm16.Index => r === 'bx' || r === 'bp' || r === 'si' || r === 'di';
  if (!isAddrReg(first)) fail(`${describe(first)} cannot address memory: 16-bit addressing uses bx or bp, si or di`);
  let base: Asm16.Base | undefined;
  let index: Asm16.Index | undefined;
  let dispArg: unknown;
  let extra: readonly unknown[];
  if (typeof rest[1] === 'string') {
    const second = rest[1];
    if (!isAddrReg(second)) fail(`${describe(second)} cannot address memory: 16-bit addressing uses bx or bp, si or di`);
    const r1 = first as string;
    const r2 = second as string;
    if ((r1 === 'bx' || r1 === 'bp') && (r2 === 'si' || r2 === 'di')) {
      base = r1;
      index = r2;
    } else if ((r2 === 'bx' || r2 === 'bp') && (r1 === 'si' || r1 === 'di')) {
      fail(`write the base register first: ['${r2}'+'${r1}'] is ('${r2}', '${r1}')`);
    } else fail(`[${r1}+${r2}] cannot be encoded: 16-bit addressing takes at most one of bx/bp and one of si/di`);
    dispArg = rest[2];
    extra = rest.slice(3);
  } else {
    if (first === 'bx' || first === 'bp') base = first;
    else index = first as Asm16.Index;
    dispArg = rest[1];
    extra = rest.slice(2);
  }
  if (extra.length > 0) fail(`too many operands for a memory address: ${extra.map(describe).join(', ')}`);
  const disp = dispArg ?? 0;
  if (typeof disp !== 'number' || !Number.isInteger(disp) || disp < -0x8000 || disp > 0xffff) {
    fail(`displacement ${describe(disp)} does not fit 16 bits (-32768..65535)`);
  }
  return { kind: 'mem', base, index, disp: disp as number, size, seg };
}

/** Revalidates a memory operand passed to an instruction (it may have been written by hand). */
function checkMem(x: Asm16.Mem, insn: string): Asm16.Mem {
  const args: unknown[] = [];
  if (x.seg !== undefined) args.push(x.seg);
  if (x.base === undefined && x.index === undefined) args.push(x.disp);
  else {
    if (x.base !== undefined) args.push(x.base);
    if (x.index !== undefined) args.push(x.index);
    args.push(x.disp);
  }
  return makeMem(insn, x.size, args);
}

/** A direct address `[disp16]` (no base or index register): the `moffs` forms can encode it. */
const isDirect = (m: Asm16.Mem): boolean => m.base === undefined && m.index === undefined;

/** The address of a direct memory operand: two bytes, or a label to fill in. */
function directAddress(m: Asm16.Mem): Part[] {
  const d = m.disp;
  return typeof d === 'number' ? [d & 0xff, d >> 8] : [d.label];
}

/** ModRM (mod ≠ 11) and displacement of memory operand `m` with ModRM.reg = `reg` (Table 2-1). */
function modrmMem(m: Asm16.Mem, reg: number): Part[] {
  if (isDirect(m)) return [(reg << 3) | 6, ...directAddress(m)];
  const rm = RM16.get([m.base, m.index].filter((r) => r !== undefined).join('+'))!;
  const d = (m.disp as number) & 0xffff;
  if (d === 0 && rm !== 6) return [(reg << 3) | rm];
  if (fitsSimm8(d)) return [0x40 | (reg << 3) | rm, d & 0xff];
  return [0x80 | (reg << 3) | rm, d & 0xff, d >> 8];
}

/** The segment-override prefix of `m`, if it has one. */
const segPrefix = (m: Asm16.Mem): number[] => (m.seg === undefined ? [] : [SEG_PREFIX[SREG.get(m.seg)!]!]);

/**
 * The size of memory operand `m` given the register operand's size `reg` (if any): they must agree, and
 * one of them must be known.
 */
function memSize(m: Asm16.Mem, reg: 8 | 16 | undefined, insn: string): 8 | 16 {
  if (reg !== undefined && m.size !== undefined && reg !== m.size) {
    throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: operand sizes differ: the register is ${reg}-bit, the memory operand ${describeMem(m)} is ${m.size}-bit`);
  }
  const size = reg ?? m.size;
  if (size === undefined) {
    throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: the operand size of ${describeMem(m)} is ambiguous: use Asm16.byte(…) or Asm16.word(…)`);
  }
  return size;
}

function classify(x: unknown, insn: string): Operand {
  if (typeof x === 'string') {
    const r8 = REG8.get(x);
    if (r8 !== undefined) return { kind: 'r8', n: r8 };
    const r16 = REG16.get(x);
    if (r16 !== undefined) return { kind: 'r16', n: r16 };
    const s = SREG.get(x);
    if (s !== undefined) return { kind: 'sreg', n: s };
    throw new UsageError('ERR_UNKNOWN_NAME', `asm16: ${insn}: unknown register ${describe(x)}`);
  }
  if (typeof x === 'number') {
    if (!Number.isInteger(x)) throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: immediate ${x} is not an integer`);
    return { kind: 'imm', v: x };
  }
  if (typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'mem') return { kind: 'mem', m: checkMem(x as Asm16.Mem, insn) };
  if (typeof x === 'object' && x !== null && typeof (x as { label?: unknown }).label === 'string') {
    const name = (x as Asm16LabelRef).label;
    if (name === '') throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: empty label name`);
    return { kind: 'label', name };
  }
  throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: invalid operand ${describe(x)}`);
}

function reg8(x: unknown, insn: string): number {
  const o = classify(x, insn);
  if (o.kind !== 'r8') throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: expected an 8-bit register (al … bh), got ${describe(x)}`);
  return o.n;
}

function reg16(x: unknown, insn: string): number {
  const o = classify(x, insn);
  if (o.kind !== 'r16') throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: expected a 16-bit register (ax … di), got ${describe(x)}`);
  return o.n;
}

function imm8(v: number, insn: string): number {
  if (!Number.isInteger(v) || v < -0x80 || v > 0xff) throw new UsageError('ERR_OUT_OF_RANGE', `asm16: ${insn}: immediate ${v} does not fit 8 bits (-128..255)`);
  return v & 0xff;
}

function imm16(v: number, insn: string): number {
  if (!Number.isInteger(v) || v < -0x8000 || v > 0xffff) throw new UsageError('ERR_OUT_OF_RANGE', `asm16: ${insn}: immediate ${v} does not fit 16 bits (-32768..65535)`);
  return v & 0xffff;
}

function u8(v: unknown, insn: string, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff) throw new UsageError('ERR_OUT_OF_RANGE', `asm16: ${insn}: ${what} ${describe(v)} is not in 0..255`);
  return v;
}

/** A 16-bit value that a sign-extended imm8 reproduces. */
function fitsSimm8(v16: number): boolean {
  return v16 <= 0x7f || v16 >= 0xff80;
}

const modrm = (reg: number, rm: number): number => 0xc0 | (reg << 3) | rm;

// ---------------------------------------------------------------------------------------------------------
// Items and layout.

/** A relative transfer; `short`/`near` are its opcode bytes for each size (absent: no such form). */
interface Jump {
  readonly kind: 'jump';
  readonly insn: string;
  readonly target: string;
  readonly short: readonly number[] | undefined;
  readonly near: readonly number[] | undefined;
  readonly forced: Asm16JumpSize | undefined;
}

type Item =
  | { readonly kind: 'bytes'; readonly bytes: readonly number[] }
  | { readonly kind: 'label'; readonly name: string }
  | { readonly kind: 'fixup'; readonly insn: string; readonly parts: readonly Part[] }
  | Jump;

interface Layout {
  readonly bytes: number[];
  readonly labels: ReadonlyMap<string, number>;
}

/**
 * The builder {@link asm16} returns. Every instruction method appends one instruction and returns the
 * builder, so a guest is one chain; {@link Asm16.bytes} lays the code out and returns the machine code.
 * Operand order is Intel's: destination first.
 */
export class Asm16 {
  readonly #org: number;
  readonly #items: Item[] = [];
  readonly #labels = new Set<string>();

  /**
   * @param options - see {@link Asm16Options}
   */
  constructor(options: Asm16Options = {}) {
    const org = options.org ?? 0x1000;
    if (!Number.isInteger(org) || org < 0 || org > 0xffff) throw new UsageError('ERR_OUT_OF_RANGE', `asm16: org ${describe(org)} is not in 0..0xffff`);
    this.#org = org;
  }

  // ---- Memory operands -----------------------------------------------------------------------------------

  /**
   * A memory operand whose size comes from the other operand (NASM's `[…]`): `mem(0x1800)` is `[0x1800]`,
   * `mem({ label: 'n' })` is `[n]`, `mem('bx')` is `[bx]`, `mem('bp', -2)` is `[bp-2]`, `mem('bx', 'si', 4)`
   * is `[bx+si+4]`, and a leading segment register is an override: `mem('es', 'di')` is `[es:di]`. Static,
   * so it can be destructured: `const { mem, byte, word } = Asm16`. See the module notes for the encoding.
   *
   * @throws `UsageError` for a register that cannot address memory, two bases or two indexes, the index
   *   before the base, an address outside 0..0xFFFF, or a displacement outside −32768..65535
   */
  static mem(...address: Asm16.MemArgs): Asm16.Mem<undefined> {
    return makeMem('mem', undefined, address);
  }

  /** A byte memory operand (NASM's `byte […]`); the arguments are those of {@link Asm16.mem}. */
  static byte(...address: Asm16.MemArgs): Asm16.Mem<8> {
    return makeMem('byte', 8, address);
  }

  /** A word memory operand (NASM's `word […]`); the arguments are those of {@link Asm16.mem}. */
  static word(...address: Asm16.MemArgs): Asm16.Mem<16> {
    return makeMem('word', 16, address);
  }

  #emit(...bytes: number[]): this {
    this.#items.push({ kind: 'bytes', bytes });
    return this;
  }

  /** Emits machine code that may contain label addresses (strings) to fill in at layout. */
  #emitParts(insn: string, parts: readonly Part[]): this {
    if (parts.every((p) => typeof p === 'number')) this.#items.push({ kind: 'bytes', bytes: parts as number[] });
    else this.#items.push({ kind: 'fixup', insn, parts });
    return this;
  }

  /** Emits `[seg prefix] opcode… ModRM [disp] suffix…` for memory operand `m` with ModRM.reg = `reg`. */
  #rm(insn: string, opcode: readonly number[], m: Asm16.Mem, reg: number, ...suffix: Part[]): this {
    return this.#emitParts(insn, [...segPrefix(m), ...opcode, ...modrmMem(m, reg), ...suffix]);
  }

  #jump(insn: string, target: string, short: readonly number[] | undefined, near: readonly number[] | undefined, size: Asm16JumpSize | undefined): this {
    if (typeof target !== 'string' || target === '') throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: the target must be a label name, got ${describe(target)}`);
    if (size !== undefined && size !== 'short' && size !== 'near') throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: size ${describe(size)} is not 'short' or 'near'`);
    if (size === 'near' && near === undefined) throw new UsageError('ERR_NOT_SUPPORTED', `asm16: ${insn} has no near (rel16) form`);
    if (size === 'short' && short === undefined) throw new UsageError('ERR_NOT_SUPPORTED', `asm16: ${insn} has no short (rel8) form`);
    this.#items.push({ kind: 'jump', insn, target, short, near, forced: size });
    return this;
  }

  // ---- Labels and data -----------------------------------------------------------------------------------

  /**
   * Define a label at the current position. Jumps and `{ label }` immediates may refer to it before or after.
   *
   * @throws `UsageError` when the name is empty or already defined
   */
  label(name: string): this {
    if (typeof name !== 'string' || name === '') throw new UsageError('ERR_INVALID_ARG', `asm16: label: the name must be a non-empty string, got ${describe(name)}`);
    if (this.#labels.has(name)) throw new UsageError('ERR_DUPLICATE', `asm16: label '${name}' is defined twice`);
    this.#labels.add(name);
    this.#items.push({ kind: 'label', name });
    return this;
  }

  /**
   * `db`: raw bytes. Numbers are −128..255; a string contributes its characters, each 0..255 (Latin-1).
   */
  db(...values: ReadonlyArray<number | string>): this {
    const out: number[] = [];
    for (const v of values) {
      if (typeof v === 'string') {
        for (let i = 0; i < v.length; i++) {
          const c = v.charCodeAt(i);
          if (c > 0xff) throw new UsageError('ERR_INVALID_ARG', `asm16: db: character ${JSON.stringify(v[i])} of ${JSON.stringify(v)} is not a byte`);
          out.push(c);
        }
      } else out.push(imm8(v, 'db'));
    }
    return this.#emit(...out);
  }

  /** `dw`: little-endian 16-bit words; numbers are −32768..65535, `{ label }` is the label's address. */
  dw(...values: readonly Asm16Imm16[]): this {
    for (const v of values) {
      const o = classify(v, 'dw');
      if (o.kind === 'label') this.#emitParts('dw', [o.name]);
      else if (o.kind === 'imm') {
        const w = imm16(o.v, 'dw');
        this.#emit(w & 0xff, w >> 8);
      } else throw new UsageError('ERR_INVALID_ARG', `asm16: dw: expected a number or { label }, got ${describe(v)}`);
    }
    return this;
  }

  // ---- Data movement ---------------------------------------------------------------------------------------

  /**
   * `mov dst, src` (SDM Vol. 2B, MOV): `B0+r ib` (r8, imm8), `B8+r iw` (r16, imm16 or a label's address),
   * `88 /r` (r/m8, r8), `89 /r` (r/m16, r16), `8A /r` (r8, m8), `8B /r` (r16, m16), `8E /r` (Sreg, r/m16;
   * not CS), `8C /r` (r/m16, Sreg), `C6 /0 ib` (m8, imm8), `C7 /0 iw` (m16, imm16 or a label's address), and
   * the `moffs` forms `A0`/`A1` (AL/AX ← [disp16]) and `A2`/`A3` ([disp16] ← AL/AX) for a direct address.
   *
   * @throws `UsageError` for mixed sizes, an immediate that does not fit, an immediate to memory of
   *   unknown size, memory to memory, `mov cs, …`, or a segment register loaded from anything but a 16-bit
   *   register or memory
   */
  mov<D extends Asm16Reg | Exclude<Asm16SegReg, 'cs'> | Asm16.Mem>(dst: D, src: Asm16MovSource<D>): this {
    const d = classify(dst, 'mov');
    const s = classify(src, 'mov');
    if (d.kind === 'r8') {
      if (s.kind === 'r8') return this.#emit(0x88, modrm(s.n, d.n));
      if (s.kind === 'imm') return this.#emit(0xb0 + d.n, imm8(s.v, 'mov'));
      if (s.kind === 'mem') {
        memSize(s.m, 8, 'mov');
        if (d.n === 0 && isDirect(s.m)) return this.#emitParts('mov', [...segPrefix(s.m), 0xa0, ...directAddress(s.m)]);
        return this.#rm('mov', [0x8a], s.m, d.n);
      }
      throw new UsageError('ERR_INVALID_ARG', `asm16: mov: ${describe(dst)} is 8-bit, the source must be an 8-bit register, memory or an immediate, got ${describe(src)}`);
    }
    if (d.kind === 'r16') {
      if (s.kind === 'r16') return this.#emit(0x89, modrm(s.n, d.n));
      if (s.kind === 'sreg') return this.#emit(0x8c, modrm(s.n, d.n));
      if (s.kind === 'imm') {
        const v = imm16(s.v, 'mov');
        return this.#emit(0xb8 + d.n, v & 0xff, v >> 8);
      }
      if (s.kind === 'label') return this.#emitParts('mov', [0xb8 + d.n, s.name]);
      if (s.kind === 'mem') {
        memSize(s.m, 16, 'mov');
        if (d.n === 0 && isDirect(s.m)) return this.#emitParts('mov', [...segPrefix(s.m), 0xa1, ...directAddress(s.m)]);
        return this.#rm('mov', [0x8b], s.m, d.n);
      }
      throw new UsageError('ERR_INVALID_ARG', `asm16: mov: ${describe(dst)} is 16-bit, the source must not be the 8-bit ${describe(src)}`);
    }
    if (d.kind === 'sreg') {
      if (d.n === CS) throw new UsageError('ERR_NOT_SUPPORTED', `asm16: mov cs, … is not executable (#UD since the 80186): load CS with a far jump`);
      if (s.kind === 'r16') return this.#emit(0x8e, modrm(d.n, s.n));
      if (s.kind === 'mem') {
        memSize(s.m, 16, 'mov');
        return this.#rm('mov', [0x8e], s.m, d.n);
      }
      throw new UsageError('ERR_INVALID_ARG', `asm16: mov: a segment register can only be loaded from a 16-bit register or memory, got ${describe(src)}`);
    }
    if (d.kind === 'mem') {
      const m = d.m;
      switch (s.kind) {
        case 'r8':
        case 'r16': {
          const size = memSize(m, s.kind === 'r8' ? 8 : 16, 'mov');
          if (s.n === 0 && isDirect(m)) return this.#emitParts('mov', [...segPrefix(m), size === 8 ? 0xa2 : 0xa3, ...directAddress(m)]);
          return this.#rm('mov', [size === 8 ? 0x88 : 0x89], m, s.n);
        }
        case 'sreg':
          memSize(m, 16, 'mov');
          return this.#rm('mov', [0x8c], m, s.n);
        case 'imm': {
          if (memSize(m, undefined, 'mov') === 8) return this.#rm('mov', [0xc6], m, 0, imm8(s.v, 'mov'));
          const v = imm16(s.v, 'mov');
          return this.#rm('mov', [0xc7], m, 0, v & 0xff, v >> 8);
        }
        case 'label':
          if (memSize(m, undefined, 'mov') === 8) throw new UsageError('ERR_INVALID_ARG', `asm16: mov: a label's address is 16-bit, ${describeMem(m)} is a byte`);
          return this.#rm('mov', [0xc7], m, 0, s.name);
        default:
          throw new UsageError('ERR_NOT_SUPPORTED', `asm16: mov: memory to memory has no encoding, got ${describe(dst)}, ${describe(src)}`);
      }
    }
    throw new UsageError('ERR_INVALID_ARG', `asm16: mov: invalid destination ${describe(dst)}`);
  }

  /**
   * `push src` (SDM Vol. 2B, PUSH): `50+r` (r16), `06`/`0E`/`16`/`1E`/`0F A0`/`0F A8` (ES/CS/SS/DS/FS/GS),
   * `6A ib` or `68 iw` (immediate; `68 iw` for a label's address), `FF /6` (m16).
   */
  push(src: Asm16Reg16 | Asm16SegReg | Asm16Imm16 | Asm16.Mem<16 | undefined>): this {
    const s = classify(src, 'push');
    switch (s.kind) {
      case 'r16': return this.#emit(0x50 + s.n);
      case 'sreg': return s.n < 4 ? this.#emit(0x06 + 8 * s.n) : this.#emit(0x0f, s.n === 4 ? 0xa0 : 0xa8);
      case 'imm': {
        const v = imm16(s.v, 'push');
        return fitsSimm8(v) ? this.#emit(0x6a, v & 0xff) : this.#emit(0x68, v & 0xff, v >> 8);
      }
      case 'label':
        return this.#emitParts('push', [0x68, s.name]);
      case 'mem':
        if (s.m.size === 8) throw new UsageError('ERR_INVALID_ARG', `asm16: push: only 16-bit values can be pushed, got ${describe(src)}`);
        return this.#rm('push', [0xff], s.m, 6);
      default:
        throw new UsageError('ERR_INVALID_ARG', `asm16: push: only 16-bit values can be pushed, got ${describe(src)}`);
    }
  }

  /**
   * `pop dst` (SDM Vol. 2B, POP): `58+r` (r16), `07`/`17`/`1F`/`0F A1`/`0F A9` (ES/SS/DS/FS/GS), `8F /0`
   * (m16). `pop cs` does not exist.
   */
  pop(dst: Asm16Reg16 | Exclude<Asm16SegReg, 'cs'> | Asm16.Mem<16 | undefined>): this {
    const d = classify(dst, 'pop');
    if (d.kind === 'r16') return this.#emit(0x58 + d.n);
    if (d.kind === 'mem') {
      if (d.m.size === 8) throw new UsageError('ERR_INVALID_ARG', `asm16: pop: only 16-bit values can be popped, got ${describe(dst)}`);
      return this.#rm('pop', [0x8f], d.m, 0);
    }
    if (d.kind === 'sreg') {
      if (d.n === CS) throw new UsageError('ERR_NOT_SUPPORTED', `asm16: pop cs does not exist (0F is the two-byte opcode escape)`);
      return d.n < 4 ? this.#emit(0x07 + 8 * d.n) : this.#emit(0x0f, d.n === 4 ? 0xa1 : 0xa9);
    }
    throw new UsageError('ERR_INVALID_ARG', `asm16: pop: expected a 16-bit or segment register or memory, got ${describe(dst)}`);
  }

  /** `pushf` (`9C`): push FLAGS. */
  pushf(): this { return this.#emit(0x9c); }

  /** `popf` (`9D`): pop FLAGS. */
  popf(): this { return this.#emit(0x9d); }

  /** `pusha` (`60`): push AX, CX, DX, BX, the original SP, BP, SI, DI. */
  pusha(): this { return this.#emit(0x60); }

  /** `popa` (`61`): pop DI, SI, BP, (SP discarded), BX, DX, CX, AX. */
  popa(): this { return this.#emit(0x61); }

  // ---- Arithmetic and logic ----------------------------------------------------------------------------

  #alu(op: AluOp, dst: unknown, src: unknown): this {
    const digit = ALU[op];
    const d = classify(dst, op);
    const s = classify(src, op);
    if (d.kind === 'r8') {
      if (s.kind === 'r8') return this.#emit(digit * 8, modrm(s.n, d.n));
      if (s.kind === 'imm') {
        const v = imm8(s.v, op);
        return d.n === 0 ? this.#emit(digit * 8 + 4, v) : this.#emit(0x80, modrm(digit, d.n), v);
      }
      if (s.kind === 'mem') {
        memSize(s.m, 8, op);
        return this.#rm(op, [digit * 8 + 2], s.m, d.n);
      }
    } else if (d.kind === 'r16') {
      if (s.kind === 'r16') return this.#emit(digit * 8 + 1, modrm(s.n, d.n));
      if (s.kind === 'imm') {
        const v = imm16(s.v, op);
        if (fitsSimm8(v)) return this.#emit(0x83, modrm(digit, d.n), v & 0xff);
        return d.n === 0 ? this.#emit(digit * 8 + 5, v & 0xff, v >> 8) : this.#emit(0x81, modrm(digit, d.n), v & 0xff, v >> 8);
      }
      if (s.kind === 'mem') {
        memSize(s.m, 16, op);
        return this.#rm(op, [digit * 8 + 3], s.m, d.n);
      }
    } else if (d.kind === 'mem') {
      if (s.kind === 'r8' || s.kind === 'r16') {
        const size = memSize(d.m, s.kind === 'r8' ? 8 : 16, op);
        return this.#rm(op, [digit * 8 + (size === 8 ? 0 : 1)], d.m, s.n);
      }
      if (s.kind === 'imm') {
        if (memSize(d.m, undefined, op) === 8) return this.#rm(op, [0x80], d.m, digit, imm8(s.v, op));
        const v = imm16(s.v, op);
        return fitsSimm8(v) ? this.#rm(op, [0x83], d.m, digit, v & 0xff) : this.#rm(op, [0x81], d.m, digit, v & 0xff, v >> 8);
      }
      if (s.kind === 'mem') throw new UsageError('ERR_NOT_SUPPORTED', `asm16: ${op}: memory to memory has no encoding, got ${describe(dst)}, ${describe(src)}`);
    } else throw new UsageError('ERR_INVALID_ARG', `asm16: ${op}: the destination must be a general register, got ${describe(dst)}`);
    throw new UsageError('ERR_INVALID_ARG', `asm16: ${op}: the source must be a register of the destination's size or an immediate, got ${describe(dst)}, ${describe(src)}`);
  }

  /** `add dst, src` (SDM Vol. 2A, ADD): `00 /r`, `01 /r`, `04 ib`, `05 iw`, `80 /0 ib`, `81 /0 iw`, `83 /0 ib`; with memory also `02 /r` (r8, m8) and `03 /r` (r16, m16). */
  add<D extends Asm16Reg | Asm16.Mem>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('add', dst, src); }

  /** `or dst, src` (SDM Vol. 2B, OR): `08 /r`, `09 /r`, `0C ib`, `0D iw`, `80 /1 ib`, `81 /1 iw`, `83 /1 ib`; with memory also `0A /r` (r8, m8) and `0B /r` (r16, m16). */
  or<D extends Asm16Reg | Asm16.Mem>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('or', dst, src); }

  /** `adc dst, src` (SDM Vol. 2A, ADC): `10 /r`, `11 /r`, `14 ib`, `15 iw`, `80 /2 ib`, `81 /2 iw`, `83 /2 ib`; with memory also `12 /r` (r8, m8) and `13 /r` (r16, m16). */
  adc<D extends Asm16Reg | Asm16.Mem>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('adc', dst, src); }

  /** `sbb dst, src` (SDM Vol. 2B, SBB): `18 /r`, `19 /r`, `1C ib`, `1D iw`, `80 /3 ib`, `81 /3 iw`, `83 /3 ib`; with memory also `1A /r` (r8, m8) and `1B /r` (r16, m16). */
  sbb<D extends Asm16Reg | Asm16.Mem>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('sbb', dst, src); }

  /** `and dst, src` (SDM Vol. 2A, AND): `20 /r`, `21 /r`, `24 ib`, `25 iw`, `80 /4 ib`, `81 /4 iw`, `83 /4 ib`; with memory also `22 /r` (r8, m8) and `23 /r` (r16, m16). */
  and<D extends Asm16Reg | Asm16.Mem>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('and', dst, src); }

  /** `sub dst, src` (SDM Vol. 2B, SUB): `28 /r`, `29 /r`, `2C ib`, `2D iw`, `80 /5 ib`, `81 /5 iw`, `83 /5 ib`; with memory also `2A /r` (r8, m8) and `2B /r` (r16, m16). */
  sub<D extends Asm16Reg | Asm16.Mem>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('sub', dst, src); }

  /** `xor dst, src` (SDM Vol. 2B, XOR): `30 /r`, `31 /r`, `34 ib`, `35 iw`, `80 /6 ib`, `81 /6 iw`, `83 /6 ib`; with memory also `32 /r` (r8, m8) and `33 /r` (r16, m16). */
  xor<D extends Asm16Reg | Asm16.Mem>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('xor', dst, src); }

  /** `cmp a, b` (SDM Vol. 2A, CMP): `38 /r`, `39 /r`, `3C ib`, `3D iw`, `80 /7 ib`, `81 /7 iw`, `83 /7 ib`; with memory also `3A /r` (r8, m8) and `3B /r` (r16, m16). */
  cmp<D extends Asm16Reg | Asm16.Mem>(a: D, b: Asm16AluSource<D>): this { return this.#alu('cmp', a, b); }

  /**
   * `test a, b` (SDM Vol. 2B, TEST): `84 /r`, `85 /r`, `A8 ib`, `A9 iw`, `F6 /0 ib`, `F7 /0 iw`. Either operand
   * may be memory (`test r, m` is `test m, r`).
   */
  test<D extends Asm16Reg | Asm16.Mem>(a: D, b: Asm16AluSource<D>): this {
    const d = classify(a, 'test');
    const s = classify(b, 'test');
    // TEST is symmetric: `test r, m` is encoded as `test m, r` (84/85 /r), as NASM does.
    if ((d.kind === 'r8' || d.kind === 'r16') && s.kind === 'mem') {
      const size = memSize(s.m, d.kind === 'r8' ? 8 : 16, 'test');
      return this.#rm('test', [size === 8 ? 0x84 : 0x85], s.m, d.n);
    }
    if (d.kind === 'mem') {
      if (s.kind === 'r8' || s.kind === 'r16') {
        const size = memSize(d.m, s.kind === 'r8' ? 8 : 16, 'test');
        return this.#rm('test', [size === 8 ? 0x84 : 0x85], d.m, s.n);
      }
      if (s.kind === 'imm') {
        if (memSize(d.m, undefined, 'test') === 8) return this.#rm('test', [0xf6], d.m, 0, imm8(s.v, 'test'));
        const v = imm16(s.v, 'test');
        return this.#rm('test', [0xf7], d.m, 0, v & 0xff, v >> 8);
      }
      throw new UsageError('ERR_INVALID_ARG', `asm16: test: the second operand must be a register or an immediate, got ${describe(a)}, ${describe(b)}`);
    }
    if (d.kind === 'r8') {
      if (s.kind === 'r8') return this.#emit(0x84, modrm(s.n, d.n));
      if (s.kind === 'imm') return d.n === 0 ? this.#emit(0xa8, imm8(s.v, 'test')) : this.#emit(0xf6, modrm(0, d.n), imm8(s.v, 'test'));
    } else if (d.kind === 'r16') {
      if (s.kind === 'r16') return this.#emit(0x85, modrm(s.n, d.n));
      if (s.kind === 'imm') {
        const v = imm16(s.v, 'test');
        return d.n === 0 ? this.#emit(0xa9, v & 0xff, v >> 8) : this.#emit(0xf7, modrm(0, d.n), v & 0xff, v >> 8);
      }
    } else throw new UsageError('ERR_INVALID_ARG', `asm16: test: the first operand must be a general register, got ${describe(a)}`);
    throw new UsageError('ERR_INVALID_ARG', `asm16: test: the second operand must be a register of the first's size or an immediate, got ${describe(a)}, ${describe(b)}`);
  }

  /** Group 3 (`F6`/`F7 /digit`) on a register or sized memory. */
  #group3(insn: string, digit: number, r: unknown): this {
    const o = classify(r, insn);
    if (o.kind === 'r8') return this.#emit(0xf6, modrm(digit, o.n));
    if (o.kind === 'r16') return this.#emit(0xf7, modrm(digit, o.n));
    if (o.kind === 'mem') return this.#rm(insn, [memSize(o.m, undefined, insn) === 8 ? 0xf6 : 0xf7], o.m, digit);
    throw new UsageError('ERR_INVALID_ARG', `asm16: ${insn}: expected a general register or memory, got ${describe(r)}`);
  }

  /** `inc r` (SDM Vol. 2A, INC): `40+r` (r16), `FE /0` (r/m8), `FF /0` (m16). Memory must be sized. */
  inc(r: Asm16Reg | Asm16.Mem<8 | 16>): this {
    const o = classify(r, 'inc');
    if (o.kind === 'r8') return this.#emit(0xfe, modrm(0, o.n));
    if (o.kind === 'mem') return this.#rm('inc', [memSize(o.m, undefined, 'inc') === 8 ? 0xfe : 0xff], o.m, 0);
    return this.#emit(0x40 + reg16(r, 'inc'));
  }

  /** `dec r` (SDM Vol. 2A, DEC): `48+r` (r16), `FE /1` (r/m8), `FF /1` (m16). Memory must be sized. */
  dec(r: Asm16Reg | Asm16.Mem<8 | 16>): this {
    const o = classify(r, 'dec');
    if (o.kind === 'r8') return this.#emit(0xfe, modrm(1, o.n));
    if (o.kind === 'mem') return this.#rm('dec', [memSize(o.m, undefined, 'dec') === 8 ? 0xfe : 0xff], o.m, 1);
    return this.#emit(0x48 + reg16(r, 'dec'));
  }

  /** `not r` (SDM Vol. 2B, NOT): `F6 /2` (r/m8), `F7 /2` (r/m16). Memory must be sized. */
  not(r: Asm16Reg | Asm16.Mem<8 | 16>): this { return this.#group3('not', 2, r); }

  /** `neg r` (SDM Vol. 2B, NEG): `F6 /3` (r/m8), `F7 /3` (r/m16). Memory must be sized. */
  neg(r: Asm16Reg | Asm16.Mem<8 | 16>): this { return this.#group3('neg', 3, r); }

  #shift(op: ShiftOp, r: unknown, count: unknown): this {
    const digit = SHIFT[op];
    const o = classify(r, op);
    if (o.kind === 'mem') {
      const w = memSize(o.m, undefined, op) === 16 ? 1 : 0;
      if (count === 'cl') return this.#rm(op, [0xd2 + w], o.m, digit);
      const c = u8(count, op, 'count (a number or \'cl\')');
      return c === 1 ? this.#rm(op, [0xd0 + w], o.m, digit) : this.#rm(op, [0xc0 + w], o.m, digit, c);
    }
    if (o.kind !== 'r8' && o.kind !== 'r16') throw new UsageError('ERR_INVALID_ARG', `asm16: ${op}: expected a general register or memory, got ${describe(r)}`);
    const w = o.kind === 'r16' ? 1 : 0;
    const m = modrm(digit, o.n);
    if (count === 'cl') return this.#emit(0xd2 + w, m);
    const c = u8(count, op, 'count (a number or \'cl\')');
    return c === 1 ? this.#emit(0xd0 + w, m) : this.#emit(0xc0 + w, m, c);
  }

  /**
   * `shl r, count` (SDM Vol. 2B, SAL/SAR/SHL/SHR): `D0`/`D1 /4` (by 1), `D2`/`D3 /4` (by CL), `C0`/`C1 /4 ib`.
   * Every shift and rotate also takes sized memory ({@link Asm16.byte}, {@link Asm16.word}) with the same opcodes.
   */
  shl(r: Asm16Reg | Asm16.Mem<8 | 16>, count: number | 'cl'): this { return this.#shift('shl', r, count); }

  /** `shr r, count`: `D0`/`D1 /5` (by 1), `D2`/`D3 /5` (by CL), `C0`/`C1 /5 ib`. */
  shr(r: Asm16Reg | Asm16.Mem<8 | 16>, count: number | 'cl'): this { return this.#shift('shr', r, count); }

  /** `sar r, count`: `D0`/`D1 /7` (by 1), `D2`/`D3 /7` (by CL), `C0`/`C1 /7 ib`. */
  sar(r: Asm16Reg | Asm16.Mem<8 | 16>, count: number | 'cl'): this { return this.#shift('sar', r, count); }

  /** `rol r, count` (SDM Vol. 2B, RCL/RCR/ROL/ROR): `D0`/`D1 /0`, `D2`/`D3 /0`, `C0`/`C1 /0 ib`. */
  rol(r: Asm16Reg | Asm16.Mem<8 | 16>, count: number | 'cl'): this { return this.#shift('rol', r, count); }

  /** `ror r, count`: `D0`/`D1 /1`, `D2`/`D3 /1`, `C0`/`C1 /1 ib`. */
  ror(r: Asm16Reg | Asm16.Mem<8 | 16>, count: number | 'cl'): this { return this.#shift('ror', r, count); }

  /** `rcl r, count`: `D0`/`D1 /2`, `D2`/`D3 /2`, `C0`/`C1 /2 ib`. */
  rcl(r: Asm16Reg | Asm16.Mem<8 | 16>, count: number | 'cl'): this { return this.#shift('rcl', r, count); }

  /** `rcr r, count`: `D0`/`D1 /3`, `D2`/`D3 /3`, `C0`/`C1 /3 ib`. */
  rcr(r: Asm16Reg | Asm16.Mem<8 | 16>, count: number | 'cl'): this { return this.#shift('rcr', r, count); }

  // ---- Control transfer --------------------------------------------------------------------------------

  /** `jmp label` (SDM Vol. 2A, JMP): `EB cb` (short) or `E9 cw` (near); see the module notes for the size rule. */
  jmp(target: string, size?: Asm16JumpSize): this { return this.#jump('jmp', target, [0xeb], [0xe9], size); }

  /**
   * `jcc label` for any condition (SDM Vol. 2A, Jcc): `70+cc cb` (short) or `0F 80+cc cw` (near).
   *
   * @throws `UsageError` for an unknown condition
   */
  j(cond: Asm16Condition, target: string, size?: Asm16JumpSize): this {
    const cc = CONDITIONS.get(cond);
    if (cc === undefined) throw new UsageError('ERR_UNKNOWN_NAME', `asm16: unknown condition ${describe(cond)} (j${String(cond)})`);
    return this.#jump(`j${cond}`, target, [0x70 + cc], [0x0f, 0x80 + cc], size);
  }

  /** `jo`: jump if OF = 1 (`70`/`0F 80`). */
  jo(target: string, size?: Asm16JumpSize): this { return this.j('o', target, size); }
  /** `jno`: jump if OF = 0 (`71`/`0F 81`). */
  jno(target: string, size?: Asm16JumpSize): this { return this.j('no', target, size); }
  /** `jb`: jump if below, CF = 1 (`72`/`0F 82`). */
  jb(target: string, size?: Asm16JumpSize): this { return this.j('b', target, size); }
  /** `jc`: jump if CF = 1 (`72`/`0F 82`). */
  jc(target: string, size?: Asm16JumpSize): this { return this.j('c', target, size); }
  /** `jnae`: jump if not above or equal, CF = 1 (`72`/`0F 82`). */
  jnae(target: string, size?: Asm16JumpSize): this { return this.j('nae', target, size); }
  /** `jnb`: jump if not below, CF = 0 (`73`/`0F 83`). */
  jnb(target: string, size?: Asm16JumpSize): this { return this.j('nb', target, size); }
  /** `jnc`: jump if CF = 0 (`73`/`0F 83`). */
  jnc(target: string, size?: Asm16JumpSize): this { return this.j('nc', target, size); }
  /** `jae`: jump if above or equal, CF = 0 (`73`/`0F 83`). */
  jae(target: string, size?: Asm16JumpSize): this { return this.j('ae', target, size); }
  /** `jz`: jump if ZF = 1 (`74`/`0F 84`). */
  jz(target: string, size?: Asm16JumpSize): this { return this.j('z', target, size); }
  /** `je`: jump if equal, ZF = 1 (`74`/`0F 84`). */
  je(target: string, size?: Asm16JumpSize): this { return this.j('e', target, size); }
  /** `jnz`: jump if ZF = 0 (`75`/`0F 85`). */
  jnz(target: string, size?: Asm16JumpSize): this { return this.j('nz', target, size); }
  /** `jne`: jump if not equal, ZF = 0 (`75`/`0F 85`). */
  jne(target: string, size?: Asm16JumpSize): this { return this.j('ne', target, size); }
  /** `jbe`: jump if below or equal, CF = 1 or ZF = 1 (`76`/`0F 86`). */
  jbe(target: string, size?: Asm16JumpSize): this { return this.j('be', target, size); }
  /** `jna`: jump if not above, CF = 1 or ZF = 1 (`76`/`0F 86`). */
  jna(target: string, size?: Asm16JumpSize): this { return this.j('na', target, size); }
  /** `ja`: jump if above, CF = 0 and ZF = 0 (`77`/`0F 87`). */
  ja(target: string, size?: Asm16JumpSize): this { return this.j('a', target, size); }
  /** `jnbe`: jump if not below or equal, CF = 0 and ZF = 0 (`77`/`0F 87`). */
  jnbe(target: string, size?: Asm16JumpSize): this { return this.j('nbe', target, size); }
  /** `js`: jump if SF = 1 (`78`/`0F 88`). */
  js(target: string, size?: Asm16JumpSize): this { return this.j('s', target, size); }
  /** `jns`: jump if SF = 0 (`79`/`0F 89`). */
  jns(target: string, size?: Asm16JumpSize): this { return this.j('ns', target, size); }
  /** `jp`: jump if PF = 1 (`7A`/`0F 8A`). */
  jp(target: string, size?: Asm16JumpSize): this { return this.j('p', target, size); }
  /** `jpe`: jump if parity even, PF = 1 (`7A`/`0F 8A`). */
  jpe(target: string, size?: Asm16JumpSize): this { return this.j('pe', target, size); }
  /** `jnp`: jump if PF = 0 (`7B`/`0F 8B`). */
  jnp(target: string, size?: Asm16JumpSize): this { return this.j('np', target, size); }
  /** `jpo`: jump if parity odd, PF = 0 (`7B`/`0F 8B`). */
  jpo(target: string, size?: Asm16JumpSize): this { return this.j('po', target, size); }
  /** `jl`: jump if less, SF ≠ OF (`7C`/`0F 8C`). */
  jl(target: string, size?: Asm16JumpSize): this { return this.j('l', target, size); }
  /** `jnge`: jump if not greater or equal, SF ≠ OF (`7C`/`0F 8C`). */
  jnge(target: string, size?: Asm16JumpSize): this { return this.j('nge', target, size); }
  /** `jge`: jump if greater or equal, SF = OF (`7D`/`0F 8D`). */
  jge(target: string, size?: Asm16JumpSize): this { return this.j('ge', target, size); }
  /** `jnl`: jump if not less, SF = OF (`7D`/`0F 8D`). */
  jnl(target: string, size?: Asm16JumpSize): this { return this.j('nl', target, size); }
  /** `jle`: jump if less or equal, ZF = 1 or SF ≠ OF (`7E`/`0F 8E`). */
  jle(target: string, size?: Asm16JumpSize): this { return this.j('le', target, size); }
  /** `jng`: jump if not greater, ZF = 1 or SF ≠ OF (`7E`/`0F 8E`). */
  jng(target: string, size?: Asm16JumpSize): this { return this.j('ng', target, size); }
  /** `jg`: jump if greater, ZF = 0 and SF = OF (`7F`/`0F 8F`). */
  jg(target: string, size?: Asm16JumpSize): this { return this.j('g', target, size); }
  /** `jnle`: jump if not less or equal, ZF = 0 and SF = OF (`7F`/`0F 8F`). */
  jnle(target: string, size?: Asm16JumpSize): this { return this.j('nle', target, size); }

  /** `loop label` (SDM Vol. 2A, LOOP/LOOPcc): `E2 cb`; decrement CX, jump if CX ≠ 0. Short only. */
  loop(target: string): this { return this.#jump('loop', target, [0xe2], undefined, undefined); }

  /** `loopz label` / `loope`: `E1 cb`; decrement CX, jump if CX ≠ 0 and ZF = 1. Short only. */
  loopz(target: string): this { return this.#jump('loopz', target, [0xe1], undefined, undefined); }

  /** `loopnz label` / `loopne`: `E0 cb`; decrement CX, jump if CX ≠ 0 and ZF = 0. Short only. */
  loopnz(target: string): this { return this.#jump('loopnz', target, [0xe0], undefined, undefined); }

  /** `jcxz label` (SDM Vol. 2A, Jcc): `E3 cb`; jump if CX = 0. Short only. */
  jcxz(target: string): this { return this.#jump('jcxz', target, [0xe3], undefined, undefined); }

  /** `call label` (SDM Vol. 2A, CALL): `E8 cw`, near, relative: push IP, jump. */
  call(target: string): this { return this.#jump('call', target, undefined, [0xe8], undefined); }

  /** `ret` (`C3`), or `ret n` (`C2 iw`: also release `n` bytes of arguments) (SDM Vol. 2B, RET): near return. */
  ret(n?: number): this {
    if (n === undefined) return this.#emit(0xc3);
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new UsageError('ERR_OUT_OF_RANGE', `asm16: ret: ${describe(n)} is not in 0..65535`);
    return this.#emit(0xc2, n & 0xff, n >> 8);
  }

  /** `int n` (SDM Vol. 2A, INT n): `CD ib`; a software interrupt through the real-mode IVT at 0:0. */
  int(vector: number): this { return this.#emit(0xcd, u8(vector, 'int', 'vector')); }

  /** `int3` (`CC`): the one-byte breakpoint, vector 3. */
  int3(): this { return this.#emit(0xcc); }

  /** `iret` (`CF`): pop IP, CS and FLAGS. */
  iret(): this { return this.#emit(0xcf); }

  // ---- Port I/O ----------------------------------------------------------------------------------------

  /**
   * `in dst, port` (SDM Vol. 2A, IN): `E4 ib`/`E5 ib` (port 0..255), `EC`/`ED` (port in DX). Exits to user
   * space with `KVM_EXIT_IO`; the data user space leaves in `kvm_run` is merged on the next `KVM_RUN`.
   */
  in(dst: 'al' | 'ax', port: number | 'dx'): this {
    const w = dst === 'al' ? 0 : dst === 'ax' ? 1 : -1;
    if (w < 0) throw new UsageError('ERR_INVALID_ARG', `asm16: in: the destination must be 'al' or 'ax', got ${describe(dst)}`);
    if (port === 'dx') return this.#emit(0xec + w);
    return this.#emit(0xe4 + w, u8(port, 'in', 'port (a number or \'dx\')'));
  }

  /**
   * `out port, src` (SDM Vol. 2B, OUT): `E6 ib`/`E7 ib` (port 0..255), `EE`/`EF` (port in DX). Exits to user
   * space with `KVM_EXIT_IO`, the byte or word in `kvm_run`'s data page.
   */
  out(port: number | 'dx', src: 'al' | 'ax'): this {
    const w = src === 'al' ? 0 : src === 'ax' ? 1 : -1;
    if (w < 0) throw new UsageError('ERR_INVALID_ARG', `asm16: out: the source must be 'al' or 'ax', got ${describe(src)}`);
    if (port === 'dx') return this.#emit(0xee + w);
    return this.#emit(0xe6 + w, u8(port, 'out', 'port (a number or \'dx\')'));
  }

  // ---- String instructions (implicit DS:SI / ES:DI, no prefixes) -----------------------------------------

  /** `lodsb` (`AC`): AL ← [DS:SI], SI ± 1 (by DF). */
  lodsb(): this { return this.#emit(0xac); }

  /** `lodsw` (`AD`): AX ← [DS:SI], SI ± 2. */
  lodsw(): this { return this.#emit(0xad); }

  /** `stosb` (`AA`): [ES:DI] ← AL, DI ± 1. */
  stosb(): this { return this.#emit(0xaa); }

  /** `stosw` (`AB`): [ES:DI] ← AX, DI ± 2. */
  stosw(): this { return this.#emit(0xab); }

  /** `movsb` (`A4`): [ES:DI] ← [DS:SI], SI and DI ± 1. */
  movsb(): this { return this.#emit(0xa4); }

  /** `movsw` (`A5`): [ES:DI] ← [DS:SI], SI and DI ± 2. */
  movsw(): this { return this.#emit(0xa5); }

  // ---- No operands -------------------------------------------------------------------------------------

  /** `hlt` (`F4`): KVM advances IP past it and exits with `KVM_EXIT_HLT`. */
  hlt(): this { return this.#emit(0xf4); }

  /** `nop` (`90`). */
  nop(): this { return this.#emit(0x90); }

  /** `cli` (`FA`): IF ← 0. */
  cli(): this { return this.#emit(0xfa); }

  /** `sti` (`FB`): IF ← 1. */
  sti(): this { return this.#emit(0xfb); }

  /** `clc` (`F8`): CF ← 0. */
  clc(): this { return this.#emit(0xf8); }

  /** `stc` (`F9`): CF ← 1. */
  stc(): this { return this.#emit(0xf9); }

  /** `cmc` (`F5`): CF ← ¬CF. */
  cmc(): this { return this.#emit(0xf5); }

  /** `cld` (`FC`): DF ← 0 (string instructions count up). */
  cld(): this { return this.#emit(0xfc); }

  /** `std` (`FD`): DF ← 1 (string instructions count down). */
  std(): this { return this.#emit(0xfd); }

  // ---- Output --------------------------------------------------------------------------------------------

  /**
   * Lay the code out and return the machine code, a new array each call (it fits `createRealModeVm`'s
   * `code` and `Uint8Array.set`).
   *
   * @throws `UsageError` for an undefined label, a short-only jump out of range, or code past 0xFFFF
   */
  bytes(): number[] {
    return this.#layout().bytes;
  }

  /**
   * The address of a label: `org` + its offset in the code.
   *
   * @throws `UsageError` when the label is not defined, or as {@link Asm16.bytes}
   */
  addressOf(name: string): number {
    const at = this.#layout().labels.get(name);
    if (at === undefined) throw new UsageError('ERR_UNKNOWN_NAME', `asm16: undefined label '${name}'`);
    return at;
  }

  #layout(): Layout {
    const items = this.#items;
    for (const it of items) {
      if (it.kind !== 'jump' && it.kind !== 'fixup') continue;
      const refs = it.kind === 'jump' ? [it.target] : it.parts.filter((p) => typeof p === 'string');
      for (const ref of refs) if (!this.#labels.has(ref)) throw new UsageError('ERR_UNKNOWN_NAME', `asm16: ${it.insn}: undefined label '${ref}'`);
    }
    // Each jump starts at its smallest form; a pass that finds one out of range grows it and lays out again.
    // Sizes only grow, so this ends (at most one pass per jump).
    const near = items.map((it) => it.kind === 'jump' && (it.forced === 'near' || it.short === undefined));
    const offsets = new Array<number>(items.length).fill(0);
    const labels = new Map<string, number>();
    const sizeOf = (i: number): number => {
      const it = items[i]!;
      switch (it.kind) {
        case 'bytes': return it.bytes.length;
        case 'label': return 0;
        case 'fixup': return it.parts.reduce<number>((n, p) => n + (typeof p === 'string' ? 2 : 1), 0);
        default: return near[i] ? it.near!.length + 2 : it.short!.length + 1;
      }
    };
    for (;;) {
      let at = this.#org;
      labels.clear();
      for (let i = 0; i < items.length; i++) {
        offsets[i] = at;
        const it = items[i]!;
        if (it.kind === 'label') labels.set(it.name, at);
        at += sizeOf(i);
      }
      if (at > 0x10000) throw new UsageError('ERR_OUT_OF_RANGE', `asm16: the code ends at 0x${at.toString(16)}, past the 64 KiB segment (org 0x${this.#org.toString(16)})`);
      let grew = false;
      for (let i = 0; i < items.length; i++) {
        const it = items[i]!;
        if (it.kind !== 'jump' || near[i]) continue;
        const d = labels.get(it.target)! - (offsets[i]! + sizeOf(i));
        if (d >= -0x80 && d <= 0x7f) continue;
        if (it.forced === 'short' || it.near === undefined) {
          throw new UsageError('ERR_OUT_OF_RANGE', `asm16: ${it.insn} '${it.target}': displacement ${d} is out of range for rel8 (-128..127)${it.near === undefined ? '' : '; use a near jump'}`);
        }
        near[i] = true;
        grew = true;
      }
      if (!grew) break;
    }
    const out: number[] = [];
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      switch (it.kind) {
        case 'bytes': out.push(...it.bytes); break;
        case 'label': break;
        case 'fixup':
          for (const p of it.parts) {
            if (typeof p === 'number') out.push(p);
            else {
              const v = labels.get(p)!;
              out.push(v & 0xff, (v >> 8) & 0xff);
            }
          }
          break;
        default: {
          const d = labels.get(it.target)! - (offsets[i]! + sizeOf(i));
          if (near[i]) {
            const w = d & 0xffff;
            out.push(...it.near!, w & 0xff, w >> 8);
          } else out.push(...it.short!, d & 0xff);
        }
      }
    }
    return { bytes: out, labels };
  }
}

/** The memory-operand types of {@link Asm16} (types only; build operands with {@link Asm16.mem} and friends). */
export namespace Asm16 {
  /** A base register of 16-bit addressing (addresses through BP use SS by default). */
  export type Base = 'bx' | 'bp';

  /** An index register of 16-bit addressing. */
  export type Index = 'si' | 'di';

  /** The size of a memory operand in bits; `undefined`: taken from the register operand. */
  export type MemSize = 8 | 16 | undefined;

  /**
   * The address of a memory operand: `[disp16]` (a number 0..0xFFFF, or a label's address), `[reg+disp]`, or
   * `[base+index+disp]`; `disp` is −32768..65535, default 0.
   */
  export type Address =
    | [address: number | Asm16LabelRef]
    | [reg: Base | Index, disp?: number]
    | [base: Base, index: Index, disp?: number];

  /** The arguments of {@link Asm16.mem}: an {@link Asm16.Address}, optionally after a segment override. */
  export type MemArgs = Address | [seg: Asm16SegReg, ...rest: Address];

  /** A memory operand, as {@link Asm16.mem}, {@link Asm16.byte} and {@link Asm16.word} build it. */
  export interface Mem<S extends MemSize = MemSize> {
    /** Marks a memory operand. */
    readonly kind: 'mem';
    /** The base register, if any. */
    readonly base: Base | undefined;
    /** The index register, if any. */
    readonly index: Index | undefined;
    /** The displacement; with no base or index, the direct address (a number or a label's address). */
    readonly disp: number | Asm16LabelRef;
    /** The operand size in bits, or `undefined` for "from the other operand". */
    readonly size: S;
    /** The segment-override prefix, if any. */
    readonly seg: Asm16SegReg | undefined;
  }
}

/**
 * Start assembling a real-mode guest. See {@link Asm16} for the instructions and the module notes for the
 * encoding, jump-size and error rules.
 *
 * @example
 * ```ts
 * // HELLO: print AL + BL as a digit and a newline on COM1, then halt.
 * const code = asm16().mov('dx', 0x3f8).add('al', 'bl').add('al', 0x30).out('dx', 'al').mov('al', 10).out('dx', 'al').hlt().bytes();
 * // [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4]
 * ```
 */
export function asm16(options: Asm16Options = {}): Asm16 {
  return new Asm16(options);
}
