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
 * Deliberately not offered: memory operands other than the string instructions' implicit `[si]`/`[di]`,
 * 32-bit operands (the `0x66`/`0x67` prefixes), segment-override and `rep` prefixes, far jumps and calls,
 * multiply/divide, `xchg`, `lea`, and the other instructions the interpreter runs but a first guest does not
 * need; {@link Asm16.db} can always emit raw bytes.
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

/** The source of {@link Asm16.mov} for a destination `D`: same-size register, immediate, or segment register. */
export type Asm16MovSource<D extends Asm16Reg | Asm16SegReg> = D extends Asm16Reg8
  ? Asm16Reg8 | number
  : D extends Asm16Reg16
    ? Asm16Reg16 | Asm16SegReg | Asm16Imm16
    : Asm16Reg16;

/** The source of a two-operand ALU instruction for a destination `D`: same-size register or immediate. */
export type Asm16AluSource<D extends Asm16Reg> = D extends Asm16Reg8 ? Asm16Reg8 | number : Asm16Reg16 | number;

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

type Operand =
  | { readonly kind: 'r8' | 'r16' | 'sreg'; readonly n: number }
  | { readonly kind: 'imm'; readonly v: number }
  | { readonly kind: 'label'; readonly name: string };

function describe(x: unknown): string {
  return typeof x === 'string' ? `'${x}'` : typeof x === 'object' && x !== null ? JSON.stringify(x) : String(x);
}

function classify(x: unknown, insn: string): Operand {
  if (typeof x === 'string') {
    const r8 = REG8.get(x);
    if (r8 !== undefined) return { kind: 'r8', n: r8 };
    const r16 = REG16.get(x);
    if (r16 !== undefined) return { kind: 'r16', n: r16 };
    const s = SREG.get(x);
    if (s !== undefined) return { kind: 'sreg', n: s };
    throw new UsageError(`asm16: ${insn}: unknown register ${describe(x)}`);
  }
  if (typeof x === 'number') {
    if (!Number.isInteger(x)) throw new UsageError(`asm16: ${insn}: immediate ${x} is not an integer`);
    return { kind: 'imm', v: x };
  }
  if (typeof x === 'object' && x !== null && typeof (x as { label?: unknown }).label === 'string') {
    const name = (x as Asm16LabelRef).label;
    if (name === '') throw new UsageError(`asm16: ${insn}: empty label name`);
    return { kind: 'label', name };
  }
  throw new UsageError(`asm16: ${insn}: invalid operand ${describe(x)}`);
}

function reg8(x: unknown, insn: string): number {
  const o = classify(x, insn);
  if (o.kind !== 'r8') throw new UsageError(`asm16: ${insn}: expected an 8-bit register (al … bh), got ${describe(x)}`);
  return o.n;
}

function reg16(x: unknown, insn: string): number {
  const o = classify(x, insn);
  if (o.kind !== 'r16') throw new UsageError(`asm16: ${insn}: expected a 16-bit register (ax … di), got ${describe(x)}`);
  return o.n;
}

function imm8(v: number, insn: string): number {
  if (!Number.isInteger(v) || v < -0x80 || v > 0xff) throw new UsageError(`asm16: ${insn}: immediate ${v} does not fit 8 bits (-128..255)`);
  return v & 0xff;
}

function imm16(v: number, insn: string): number {
  if (!Number.isInteger(v) || v < -0x8000 || v > 0xffff) throw new UsageError(`asm16: ${insn}: immediate ${v} does not fit 16 bits (-32768..65535)`);
  return v & 0xffff;
}

function u8(v: unknown, insn: string, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff) throw new UsageError(`asm16: ${insn}: ${what} ${describe(v)} is not in 0..255`);
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
  | { readonly kind: 'abs16'; readonly insn: string; readonly prefix: readonly number[]; readonly name: string }
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
    if (!Number.isInteger(org) || org < 0 || org > 0xffff) throw new UsageError(`asm16: org ${describe(org)} is not in 0..0xffff`);
    this.#org = org;
  }

  #emit(...bytes: number[]): this {
    this.#items.push({ kind: 'bytes', bytes });
    return this;
  }

  #jump(insn: string, target: string, short: readonly number[] | undefined, near: readonly number[] | undefined, size: Asm16JumpSize | undefined): this {
    if (typeof target !== 'string' || target === '') throw new UsageError(`asm16: ${insn}: the target must be a label name, got ${describe(target)}`);
    if (size !== undefined && size !== 'short' && size !== 'near') throw new UsageError(`asm16: ${insn}: size ${describe(size)} is not 'short' or 'near'`);
    if (size === 'near' && near === undefined) throw new UsageError(`asm16: ${insn} has no near (rel16) form`);
    if (size === 'short' && short === undefined) throw new UsageError(`asm16: ${insn} has no short (rel8) form`);
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
    if (typeof name !== 'string' || name === '') throw new UsageError(`asm16: label: the name must be a non-empty string, got ${describe(name)}`);
    if (this.#labels.has(name)) throw new UsageError(`asm16: label '${name}' is defined twice`);
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
          if (c > 0xff) throw new UsageError(`asm16: db: character ${JSON.stringify(v[i])} of ${JSON.stringify(v)} is not a byte`);
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
      if (o.kind === 'label') this.#items.push({ kind: 'abs16', insn: 'dw', prefix: [], name: o.name });
      else if (o.kind === 'imm') {
        const w = imm16(o.v, 'dw');
        this.#emit(w & 0xff, w >> 8);
      } else throw new UsageError(`asm16: dw: expected a number or { label }, got ${describe(v)}`);
    }
    return this;
  }

  // ---- Data movement ---------------------------------------------------------------------------------------

  /**
   * `mov dst, src` (SDM Vol. 2B, MOV): `B0+r ib` (r8, imm8), `B8+r iw` (r16, imm16 or a label's address),
   * `88 /r` (r8, r8), `89 /r` (r16, r16), `8E /r` (Sreg, r16; not CS), `8C /r` (r16, Sreg).
   *
   * @throws `UsageError` for mixed sizes, an immediate that does not fit, `mov cs, …`, or a segment
   *   register loaded from anything but a 16-bit register
   */
  mov<D extends Asm16Reg | Exclude<Asm16SegReg, 'cs'>>(dst: D, src: Asm16MovSource<D>): this {
    const d = classify(dst, 'mov');
    const s = classify(src, 'mov');
    if (d.kind === 'r8') {
      if (s.kind === 'r8') return this.#emit(0x88, modrm(s.n, d.n));
      if (s.kind === 'imm') return this.#emit(0xb0 + d.n, imm8(s.v, 'mov'));
      throw new UsageError(`asm16: mov: ${describe(dst)} is 8-bit, the source must be an 8-bit register or an immediate, got ${describe(src)}`);
    }
    if (d.kind === 'r16') {
      if (s.kind === 'r16') return this.#emit(0x89, modrm(s.n, d.n));
      if (s.kind === 'sreg') return this.#emit(0x8c, modrm(s.n, d.n));
      if (s.kind === 'imm') {
        const v = imm16(s.v, 'mov');
        return this.#emit(0xb8 + d.n, v & 0xff, v >> 8);
      }
      if (s.kind === 'label') {
        this.#items.push({ kind: 'abs16', insn: 'mov', prefix: [0xb8 + d.n], name: s.name });
        return this;
      }
      throw new UsageError(`asm16: mov: ${describe(dst)} is 16-bit, the source must not be the 8-bit ${describe(src)}`);
    }
    if (d.kind === 'sreg') {
      if (d.n === CS) throw new UsageError(`asm16: mov cs, … is not executable (#UD since the 80186): load CS with a far jump`);
      if (s.kind === 'r16') return this.#emit(0x8e, modrm(d.n, s.n));
      throw new UsageError(`asm16: mov: a segment register can only be loaded from a 16-bit register, got ${describe(src)}`);
    }
    throw new UsageError(`asm16: mov: invalid destination ${describe(dst)}`);
  }

  /** `push src` (SDM Vol. 2B, PUSH): `50+r` (r16), `06`/`0E`/`16`/`1E`/`0F A0`/`0F A8` (ES/CS/SS/DS/FS/GS), `6A ib` or `68 iw` (immediate; `68 iw` for a label's address). */
  push(src: Asm16Reg16 | Asm16SegReg | Asm16Imm16): this {
    const s = classify(src, 'push');
    switch (s.kind) {
      case 'r16': return this.#emit(0x50 + s.n);
      case 'sreg': return s.n < 4 ? this.#emit(0x06 + 8 * s.n) : this.#emit(0x0f, s.n === 4 ? 0xa0 : 0xa8);
      case 'imm': {
        const v = imm16(s.v, 'push');
        return fitsSimm8(v) ? this.#emit(0x6a, v & 0xff) : this.#emit(0x68, v & 0xff, v >> 8);
      }
      case 'label':
        this.#items.push({ kind: 'abs16', insn: 'push', prefix: [0x68], name: s.name });
        return this;
      default:
        throw new UsageError(`asm16: push: only 16-bit values can be pushed, got ${describe(src)}`);
    }
  }

  /** `pop dst` (SDM Vol. 2B, POP): `58+r` (r16), `07`/`17`/`1F`/`0F A1`/`0F A9` (ES/SS/DS/FS/GS). `pop cs` does not exist. */
  pop(dst: Asm16Reg16 | Exclude<Asm16SegReg, 'cs'>): this {
    const d = classify(dst, 'pop');
    if (d.kind === 'r16') return this.#emit(0x58 + d.n);
    if (d.kind === 'sreg') {
      if (d.n === CS) throw new UsageError(`asm16: pop cs does not exist (0F is the two-byte opcode escape)`);
      return d.n < 4 ? this.#emit(0x07 + 8 * d.n) : this.#emit(0x0f, d.n === 4 ? 0xa1 : 0xa9);
    }
    throw new UsageError(`asm16: pop: expected a 16-bit or segment register, got ${describe(dst)}`);
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
    } else if (d.kind === 'r16') {
      if (s.kind === 'r16') return this.#emit(digit * 8 + 1, modrm(s.n, d.n));
      if (s.kind === 'imm') {
        const v = imm16(s.v, op);
        if (fitsSimm8(v)) return this.#emit(0x83, modrm(digit, d.n), v & 0xff);
        return d.n === 0 ? this.#emit(digit * 8 + 5, v & 0xff, v >> 8) : this.#emit(0x81, modrm(digit, d.n), v & 0xff, v >> 8);
      }
    } else throw new UsageError(`asm16: ${op}: the destination must be a general register, got ${describe(dst)}`);
    throw new UsageError(`asm16: ${op}: the source must be a register of the destination's size or an immediate, got ${describe(dst)}, ${describe(src)}`);
  }

  /** `add dst, src` (SDM Vol. 2A, ADD): `00 /r`, `01 /r`, `04 ib`, `05 iw`, `80 /0 ib`, `81 /0 iw`, `83 /0 ib`. */
  add<D extends Asm16Reg>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('add', dst, src); }

  /** `or dst, src` (SDM Vol. 2B, OR): `08 /r`, `09 /r`, `0C ib`, `0D iw`, `80 /1 ib`, `81 /1 iw`, `83 /1 ib`. */
  or<D extends Asm16Reg>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('or', dst, src); }

  /** `adc dst, src` (SDM Vol. 2A, ADC): `10 /r`, `11 /r`, `14 ib`, `15 iw`, `80 /2 ib`, `81 /2 iw`, `83 /2 ib`. */
  adc<D extends Asm16Reg>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('adc', dst, src); }

  /** `sbb dst, src` (SDM Vol. 2B, SBB): `18 /r`, `19 /r`, `1C ib`, `1D iw`, `80 /3 ib`, `81 /3 iw`, `83 /3 ib`. */
  sbb<D extends Asm16Reg>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('sbb', dst, src); }

  /** `and dst, src` (SDM Vol. 2A, AND): `20 /r`, `21 /r`, `24 ib`, `25 iw`, `80 /4 ib`, `81 /4 iw`, `83 /4 ib`. */
  and<D extends Asm16Reg>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('and', dst, src); }

  /** `sub dst, src` (SDM Vol. 2B, SUB): `28 /r`, `29 /r`, `2C ib`, `2D iw`, `80 /5 ib`, `81 /5 iw`, `83 /5 ib`. */
  sub<D extends Asm16Reg>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('sub', dst, src); }

  /** `xor dst, src` (SDM Vol. 2B, XOR): `30 /r`, `31 /r`, `34 ib`, `35 iw`, `80 /6 ib`, `81 /6 iw`, `83 /6 ib`. */
  xor<D extends Asm16Reg>(dst: D, src: Asm16AluSource<D>): this { return this.#alu('xor', dst, src); }

  /** `cmp a, b` (SDM Vol. 2A, CMP): `38 /r`, `39 /r`, `3C ib`, `3D iw`, `80 /7 ib`, `81 /7 iw`, `83 /7 ib`. */
  cmp<D extends Asm16Reg>(a: D, b: Asm16AluSource<D>): this { return this.#alu('cmp', a, b); }

  /** `test a, b` (SDM Vol. 2B, TEST): `84 /r`, `85 /r`, `A8 ib`, `A9 iw`, `F6 /0 ib`, `F7 /0 iw`. */
  test<D extends Asm16Reg>(a: D, b: Asm16AluSource<D>): this {
    const d = classify(a, 'test');
    const s = classify(b, 'test');
    if (d.kind === 'r8') {
      if (s.kind === 'r8') return this.#emit(0x84, modrm(s.n, d.n));
      if (s.kind === 'imm') return d.n === 0 ? this.#emit(0xa8, imm8(s.v, 'test')) : this.#emit(0xf6, modrm(0, d.n), imm8(s.v, 'test'));
    } else if (d.kind === 'r16') {
      if (s.kind === 'r16') return this.#emit(0x85, modrm(s.n, d.n));
      if (s.kind === 'imm') {
        const v = imm16(s.v, 'test');
        return d.n === 0 ? this.#emit(0xa9, v & 0xff, v >> 8) : this.#emit(0xf7, modrm(0, d.n), v & 0xff, v >> 8);
      }
    } else throw new UsageError(`asm16: test: the first operand must be a general register, got ${describe(a)}`);
    throw new UsageError(`asm16: test: the second operand must be a register of the first's size or an immediate, got ${describe(a)}, ${describe(b)}`);
  }

  /** Group 3 (`F6`/`F7 /digit`) on a register. */
  #group3(insn: string, digit: number, r: unknown): this {
    const o = classify(r, insn);
    if (o.kind === 'r8') return this.#emit(0xf6, modrm(digit, o.n));
    if (o.kind === 'r16') return this.#emit(0xf7, modrm(digit, o.n));
    throw new UsageError(`asm16: ${insn}: expected a general register, got ${describe(r)}`);
  }

  /** `inc r` (SDM Vol. 2A, INC): `40+r` (r16), `FE /0` (r8). */
  inc(r: Asm16Reg): this {
    const o = classify(r, 'inc');
    if (o.kind === 'r8') return this.#emit(0xfe, modrm(0, o.n));
    return this.#emit(0x40 + reg16(r, 'inc'));
  }

  /** `dec r` (SDM Vol. 2A, DEC): `48+r` (r16), `FE /1` (r8). */
  dec(r: Asm16Reg): this {
    const o = classify(r, 'dec');
    if (o.kind === 'r8') return this.#emit(0xfe, modrm(1, o.n));
    return this.#emit(0x48 + reg16(r, 'dec'));
  }

  /** `not r` (SDM Vol. 2B, NOT): `F6 /2` (r8), `F7 /2` (r16). */
  not(r: Asm16Reg): this { return this.#group3('not', 2, r); }

  /** `neg r` (SDM Vol. 2B, NEG): `F6 /3` (r8), `F7 /3` (r16). */
  neg(r: Asm16Reg): this { return this.#group3('neg', 3, r); }

  #shift(op: ShiftOp, r: unknown, count: unknown): this {
    const digit = SHIFT[op];
    const o = classify(r, op);
    if (o.kind !== 'r8' && o.kind !== 'r16') throw new UsageError(`asm16: ${op}: expected a general register, got ${describe(r)}`);
    const w = o.kind === 'r16' ? 1 : 0;
    const m = modrm(digit, o.n);
    if (count === 'cl') return this.#emit(0xd2 + w, m);
    const c = u8(count, op, 'count (a number or \'cl\')');
    return c === 1 ? this.#emit(0xd0 + w, m) : this.#emit(0xc0 + w, m, c);
  }

  /** `shl r, count` (SDM Vol. 2B, SAL/SAR/SHL/SHR): `D0`/`D1 /4` (by 1), `D2`/`D3 /4` (by CL), `C0`/`C1 /4 ib`. */
  shl(r: Asm16Reg, count: number | 'cl'): this { return this.#shift('shl', r, count); }

  /** `shr r, count`: `D0`/`D1 /5` (by 1), `D2`/`D3 /5` (by CL), `C0`/`C1 /5 ib`. */
  shr(r: Asm16Reg, count: number | 'cl'): this { return this.#shift('shr', r, count); }

  /** `sar r, count`: `D0`/`D1 /7` (by 1), `D2`/`D3 /7` (by CL), `C0`/`C1 /7 ib`. */
  sar(r: Asm16Reg, count: number | 'cl'): this { return this.#shift('sar', r, count); }

  /** `rol r, count` (SDM Vol. 2B, RCL/RCR/ROL/ROR): `D0`/`D1 /0`, `D2`/`D3 /0`, `C0`/`C1 /0 ib`. */
  rol(r: Asm16Reg, count: number | 'cl'): this { return this.#shift('rol', r, count); }

  /** `ror r, count`: `D0`/`D1 /1`, `D2`/`D3 /1`, `C0`/`C1 /1 ib`. */
  ror(r: Asm16Reg, count: number | 'cl'): this { return this.#shift('ror', r, count); }

  /** `rcl r, count`: `D0`/`D1 /2`, `D2`/`D3 /2`, `C0`/`C1 /2 ib`. */
  rcl(r: Asm16Reg, count: number | 'cl'): this { return this.#shift('rcl', r, count); }

  /** `rcr r, count`: `D0`/`D1 /3`, `D2`/`D3 /3`, `C0`/`C1 /3 ib`. */
  rcr(r: Asm16Reg, count: number | 'cl'): this { return this.#shift('rcr', r, count); }

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
    if (cc === undefined) throw new UsageError(`asm16: unknown condition ${describe(cond)} (j${String(cond)})`);
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
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new UsageError(`asm16: ret: ${describe(n)} is not in 0..65535`);
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
    if (w < 0) throw new UsageError(`asm16: in: the destination must be 'al' or 'ax', got ${describe(dst)}`);
    if (port === 'dx') return this.#emit(0xec + w);
    return this.#emit(0xe4 + w, u8(port, 'in', 'port (a number or \'dx\')'));
  }

  /**
   * `out port, src` (SDM Vol. 2B, OUT): `E6 ib`/`E7 ib` (port 0..255), `EE`/`EF` (port in DX). Exits to user
   * space with `KVM_EXIT_IO`, the byte or word in `kvm_run`'s data page.
   */
  out(port: number | 'dx', src: 'al' | 'ax'): this {
    const w = src === 'al' ? 0 : src === 'ax' ? 1 : -1;
    if (w < 0) throw new UsageError(`asm16: out: the source must be 'al' or 'ax', got ${describe(src)}`);
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
    if (at === undefined) throw new UsageError(`asm16: undefined label '${name}'`);
    return at;
  }

  #layout(): Layout {
    const items = this.#items;
    for (const it of items) {
      if (it.kind !== 'jump' && it.kind !== 'abs16') continue;
      const ref = it.kind === 'jump' ? it.target : it.name;
      if (!this.#labels.has(ref)) throw new UsageError(`asm16: ${it.insn}: undefined label '${ref}'`);
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
        case 'abs16': return it.prefix.length + 2;
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
      if (at > 0x10000) throw new UsageError(`asm16: the code ends at 0x${at.toString(16)}, past the 64 KiB segment (org 0x${this.#org.toString(16)})`);
      let grew = false;
      for (let i = 0; i < items.length; i++) {
        const it = items[i]!;
        if (it.kind !== 'jump' || near[i]) continue;
        const d = labels.get(it.target)! - (offsets[i]! + sizeOf(i));
        if (d >= -0x80 && d <= 0x7f) continue;
        if (it.forced === 'short' || it.near === undefined) {
          throw new UsageError(`asm16: ${it.insn} '${it.target}': displacement ${d} is out of range for rel8 (-128..127)${it.near === undefined ? '' : '; use a near jump'}`);
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
        case 'abs16': {
          const v = labels.get(it.name)!;
          out.push(...it.prefix, v & 0xff, (v >> 8) & 0xff);
          break;
        }
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
