/**
 * Building one guest program: instructions laid out by `asm16` from 0x1000, an exit (an OUT or IN to a
 * port of its own, or the final HLT) at each checkpoint, and — at each exit — the set of FLAGS bits the SDM
 * leaves undefined there, tracked through every instruction, branch, loop, call and interrupt handler.
 *
 * The programs keep undefined values out of registers and memory: an instruction that reads a flag (ADC,
 * Jcc, PUSHF, LAHF, INT n, …) while it may be undefined gets a `cmp` before it that defines all six.
 * Loop bodies, subroutines and handlers start with such a `cmp`, so the flags they leave do not depend on
 * how often or from where they run.
 *
 * @module
 */
import { asm16, type Asm16, type Asm16Condition } from '@vac/kvm';
import { ALL_DEFINED, ARITH, NONE, ZF, conditionReads, type FlagEffect } from './flags.js';
import { CC, REG8, aluImm, raw, reg, type Insn } from './encode.js';
import type { Random } from './random.js';

/** Where the program's pieces live in guest memory. */
export const LAYOUT = {
  /** The code (CS = 0). */
  code: 0x1000,
  /** Random data the programs read and write. */
  data: 0x0600,
  dataEnd: 0x0800,
  /** The byte a fault handler adds to the faulting IP (set before each fault). */
  faultLength: 0x05fe,
  /** The stack top (SS = 0). */
  stack: 0xf000,
} as const;

/** The pinned address registers: BX, SI, DI, BP keep these values except where a program changes them. */
export const PINNED = { bx: 0x0600, si: 0x0040, di: 0x0080, bp: 0x0700 } as const;

/**
 * The protected-mode variants' descriptors: a GDT at 0x500 (null; 0x08 16-bit code, 0x10 16-bit data, 0x18 32-bit
 * code; all base 0, limit 0xffff, byte-granular, DPL 0) and its GDTR image at 0x540.
 */
export const PM16 = {
  gdt: 0x500,
  gdtr: 0x540,
  code: 0x08,
  data: 0x10,
  /** A 32-bit code segment (D = 1), base 0, limit 0xffff. */
  code32: 0x18,
  /** The GDT's bytes. */
  gdtBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0x9a, 0, 0, 0xff, 0xff, 0, 0, 0, 0x92, 0, 0, 0xff, 0xff, 0, 0, 0, 0x9a, 0x40, 0],
  /** The GDTR image: limit 0x1f, base 0x500. */
  gdtrBytes: [0x1f, 0, 0x00, 0x05, 0, 0],
} as const;

/** A finished program. */
export interface BuiltProgram {
  /** Machine code at `LAYOUT.code`. */
  readonly code: readonly number[];
  /** IVT entries: vector → handler address (CS 0). */
  readonly ivt: ReadonlyMap<number, number>;
  /** Undefined FLAGS bits at each exit site: `out:<port>`, `in:<port>`, `hlt`. */
  readonly undefinedFlags: Readonly<Record<string, number>>;
  /** NASM-style text, one line per instruction. */
  readonly listing: readonly string[];
}

const ASM_CC: readonly Asm16Condition[] = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'];

/** Builds one program; see the module notes. */
export class Builder {
  readonly rng: Random;
  /** FLAGS bits that may be undefined now. */
  undef = 0;
  readonly #asm: Asm16 = asm16({ org: LAYOUT.code });
  readonly #sites: Record<string, number> = {};
  readonly #listing: string[] = [];
  #port = 1;
  #label = 0;
  /** The code runs in a 32-bit code segment: every instruction's 0x66/0x67 are toggled (see {@link enterProtectedMode32}). */
  #code32 = false;
  /** Straight-line code being collected for a subroutine or handler. */
  #buffer: Insn[] | undefined;
  readonly #deferred: Array<{ readonly label: string; readonly insns: readonly Insn[]; readonly vector?: number }> = [];

  constructor(rng: Random) {
    this.rng = rng;
  }

  /** A fresh label name. */
  label(prefix: string): string {
    return `${prefix}${this.#label++}`;
  }

  #put(insn: Insn): void {
    if (this.#code32) insn = { ...insn, bytes: toggleSizePrefixes(insn.bytes) };
    if (this.#buffer !== undefined) this.#buffer.push(insn);
    else this.#asm.db(...insn.bytes);
    this.#listing.push(`${this.#buffer !== undefined ? '    ' : ''}${insn.text}`);
  }

  /** Emit `insn` with its flag effect (defining the flags it reads first, if they may be undefined). */
  emit(insn: Insn, effect: FlagEffect = NONE): void {
    if ((effect.reads & this.undef) !== 0) this.defineFlags();
    this.#put(insn);
    this.undef = (this.undef & ~effect.defines) | effect.undefines;
  }

  /** `cmp r8, imm8`: all six flags defined, no register changed. */
  defineFlags(): void {
    this.#put(aluImm('cmp', reg(this.rng.pick([0, 1, 2, 4, 5, 6])), this.rng.byte(), 8));
    this.undef = 0;
  }

  /**
   * Enters 16-bit protected mode before anything else (see {@link PM16}): LGDT from the GDTR image, CR0.PE set, a
   * far jump to the 16-bit code segment, DS/ES/SS/FS/GS loaded with the 16-bit data segment. EAX and FLAGS are
   * saved on the stack around it, so the program starts from its own registers (only the segment registers and
   * the stack bytes just below SP differ from a real-mode start).
   */
  enterProtectedMode16(): void {
    this.#enterProtectedMode(PM16.code);
  }

  /**
   * Enters protected mode with a **32-bit** code segment (selector {@link PM16.code32}, D = 1) and 16-bit data and
   * stack segments. From here on every instruction is emitted with its operand- and address-size prefixes toggled
   * (0x66 and 0x67 added where absent, dropped where present; jumps, loops and calls get the prefix that keeps their
   * 16-bit meaning), so the program means exactly what it means in real mode while the processor decodes it as
   * 32-bit code: its 16-bit operations are the prefixed forms, its 32-bit ones the unprefixed.
   */
  enterProtectedMode32(): void {
    this.#enterProtectedMode(PM16.code32);
  }

  #enterProtectedMode(code: number): void {
    const lines: Array<readonly [readonly number[], string]> = [
      [[0x66, 0x9c], 'pushfd'],
      [[0x66, 0x50], 'push eax'],
      [[0x0f, 0x01, 0x16, PM16.gdtr & 0xff, PM16.gdtr >> 8], `lgdt [0x${PM16.gdtr.toString(16)}]`],
      [[0x0f, 0x20, 0xc0], 'mov eax, cr0'],
      [[0x0c, 0x01], 'or al, 1'],
      [[0x0f, 0x22, 0xc0], 'mov cr0, eax'],
    ];
    for (const [bytes, text] of lines) this.#put(raw(bytes, text));
    const pm = this.label('pm');
    this.#asm.db(0xea).dw({ label: pm }, code);
    this.#listing.push(`jmp 0x${code.toString(16)}:${pm}`);
    this.#asm.label(pm);
    this.#code32 = code === PM16.code32;
    const after: Array<readonly [readonly number[], string]> = [
      [[0xb8, PM16.data, 0x00], `mov ax, 0x${PM16.data.toString(16)}`],
      [[0x8e, 0xd8], 'mov ds, ax'],
      [[0x8e, 0xc0], 'mov es, ax'],
      [[0x8e, 0xd0], 'mov ss, ax'],
      [[0x8e, 0xe0], 'mov fs, ax'],
      [[0x8e, 0xe8], 'mov gs, ax'],
      [[0x66, 0x58], 'pop eax'],
      [[0x66, 0x9d], 'popfd'],
    ];
    for (const [bytes, text] of after) this.#put(raw(bytes, text));
  }

  /** An exit: `out port, al` (a new port). */
  checkpoint(): void {
    const port = this.#port++;
    if (port > 0xdf) throw new Error('too many checkpoints in one program');
    this.#sites[`out:${port}`] = this.undef;
    this.#put(raw([0xe6, port], `out 0x${port.toString(16)}, al`));
  }

  /** An IN exit: `in al|ax|eax, port` (a new port). */
  input(size: 8 | 16 | 32): void {
    const port = this.#port++;
    this.#sites[`in:${port}`] = this.undef;
    const bytes = size === 8 ? [0xe4, port] : size === 16 ? [0xe5, port] : [0x66, 0xe5, port];
    this.#put(raw(bytes, `in ${size === 8 ? 'al' : size === 16 ? 'ax' : 'eax'}, 0x${port.toString(16)}`));
  }

  /** An exit to a port in DX (`out dx, al|ax|eax` or `in`), with DX set first to a new port above 0xff. */
  ioDx(dir: 'in' | 'out', size: 8 | 16 | 32): void {
    const port = 0x100 + this.#port++;
    this.emit(raw([0xba, port & 0xff, port >> 8], `mov dx, 0x${port.toString(16)}`));
    this.#sites[`${dir}:${port}`] = this.undef;
    const base = dir === 'in' ? 0xec : 0xee;
    const bytes = size === 8 ? [base] : size === 16 ? [base + 1] : [0x66, base + 1];
    const r = size === 8 ? 'al' : size === 16 ? 'ax' : 'eax';
    this.#put(raw(bytes, dir === 'in' ? `in ${r}, dx` : `out dx, ${r}`));
  }

  /** The final HLT. */
  halt(): void {
    this.#sites.hlt = this.undef;
    this.#put(raw([0xf4], 'hlt'));
  }

  #main(what: string): void {
    if (this.#buffer !== undefined) throw new Error(`${what} cannot be used in a subroutine or handler`);
  }

  /** `j<cc> skip; body; skip:` — the body may run or not, so its undefined flags join the others. */
  skipIf(cc: number, body: () => void): void {
    this.#main('skipIf');
    if ((conditionReads(cc) & this.undef) !== 0) this.defineFlags();
    const skip = this.label('skip');
    if (this.#code32) this.#asm.db(0x66); // rel16 (and IP) as in 16-bit code
    this.#asm.j(ASM_CC[cc] as Asm16Condition, skip);
    this.#listing.push(`j${CC[cc]} ${skip}`);
    const before = this.undef;
    body();
    this.#asm.label(skip);
    this.#listing.push(`${skip}:`);
    this.undef |= before;
  }

  /** `mov cx, n; top: cmp …; body; loop[z|nz] top` (n ≥ 1). The body must not change CX. */
  loop(n: number, kind: 'loop' | 'loopz' | 'loopnz', body: () => void): void {
    this.#main('loop');
    this.emit(raw([0xb9, n & 0xff, n >> 8], `mov cx, ${n}`));
    const top = this.label('top');
    this.#asm.label(top);
    this.#listing.push(`${top}:`);
    this.defineFlags();
    body();
    if (kind !== 'loop' && (this.undef & ZF) !== 0) this.defineFlags();
    if (this.#code32) this.#asm.db(0x67); // counts CX, as in 16-bit code
    this.#asm[kind](top);
    this.#listing.push(`${kind} ${top}`);
  }

  /** `jcxz over; body; over:` with CX set to `cx` first. */
  jcxz(cx: number, body: () => void): void {
    this.#main('jcxz');
    this.emit(raw([0xb9, cx & 0xff, cx >> 8], `mov cx, ${cx}`));
    const over = this.label('over');
    if (this.#code32) this.#asm.db(0x67); // tests CX, as in 16-bit code
    this.#asm.jcxz(over);
    this.#listing.push(`jcxz ${over}`);
    const before = this.undef;
    body();
    this.#asm.label(over);
    this.#listing.push(`${over}:`);
    this.undef |= before;
  }

  /** A subroutine (straight-line `body`, then RET) called here. */
  call(body: () => void): void {
    this.#main('call');
    const name = this.label('sub');
    this.#buffer = [];
    this.#listing.push(`; ${name}:`);
    this.defineFlags();
    body();
    this.#put(raw([0xc3], 'ret'));
    this.#deferred.push({ label: name, insns: this.#buffer });
    this.#buffer = undefined;
    if (this.#code32) this.#asm.db(0x66); // pushes IP and takes a rel16, as in 16-bit code
    this.#asm.call(name);
    this.#listing.push(`call ${name}`);
  }

  /**
   * A handler for `vector` (straight-line `body`, then IRET), installed in the IVT. With `skipFault`, it
   * first adds the byte at `LAYOUT.faultLength` to the return IP (a fault returns to the faulting
   * instruction). Entered with every flag defined, since the CPU pushes FLAGS.
   */
  handler(vector: number, skipFault: boolean, body: () => void): void {
    const saved = this.undef;
    const outer = this.#buffer;
    this.#buffer = [];
    this.#listing.push(`; handler for vector ${vector}:`);
    this.undef = 0;
    if (skipFault) {
      // push bp; mov bp, sp; push ax; mov al, [faultLength]; mov ah, 0; add [bp+2], ax; pop ax; pop bp
      const at = LAYOUT.faultLength;
      this.emit(raw([0x55], 'push bp'));
      this.emit(raw([0x89, 0xe5], 'mov bp, sp'));
      this.emit(raw([0x50], 'push ax'));
      this.emit(raw([0xa0, at & 0xff, at >> 8], `mov al, [0x${at.toString(16)}]`));
      this.emit(raw([0xb4, 0x00], 'mov ah, 0'));
      this.emit(raw([0x01, 0x46, 0x02], 'add [bp+2], ax'), ALL_DEFINED);
      this.emit(raw([0x58], 'pop ax'));
      this.emit(raw([0x5d], 'pop bp'));
    }
    body();
    this.checkpoint();
    this.#put(raw([0xcf], 'iret'));
    this.#deferred.push({ label: this.label('handler'), insns: this.#buffer, vector });
    this.#buffer = outer;
    this.undef = saved;
  }

  /** Emit a faulting instruction: its length goes to `LAYOUT.faultLength` first, and FLAGS must be defined (pushed). */
  fault(insn: Insn, effect: FlagEffect = NONE): void {
    const at = LAYOUT.faultLength;
    this.emit(raw([0xc6, 0x06, at & 0xff, at >> 8, insn.bytes.length], `mov byte [0x${at.toString(16)}], ${insn.bytes.length}`));
    if ((this.undef & ARITH) !== 0) this.defineFlags();
    this.emit(insn, effect);
  }

  /** `mov bx/si/di/bp` back to their pinned values. */
  pin(): void {
    for (const [name, v] of Object.entries(PINNED)) {
      const n = ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di'].indexOf(name);
      this.emit(raw([0xb8 + n, v & 0xff, v >> 8], `mov ${name}, 0x${v.toString(16)}`));
    }
  }

  /** A random 8-bit data register (AL CL DL AH CH DH), or one of `only`. */
  reg8(only: readonly number[] = [0, 1, 2, 4, 5, 6]): number {
    return this.rng.pick(only);
  }

  /** The name of 8-bit register `n` (for listings). */
  static reg8Name(n: number): string {
    return REG8[n] as string;
  }

  /** Lay the program out. */
  finish(): BuiltProgram {
    this.#main('finish');
    const handlers: Array<{ label: string; vector: number }> = [];
    for (const d of this.#deferred) {
      this.#asm.label(d.label);
      for (const i of d.insns) this.#asm.db(...i.bytes);
      if (d.vector !== undefined) handlers.push({ label: d.label, vector: d.vector });
    }
    const code = this.#asm.bytes();
    const ivt = new Map<number, number>();
    for (const h of handlers) ivt.set(h.vector, this.#asm.addressOf(h.label));
    return { code, ivt, undefinedFlags: { ...this.#sites }, listing: [...this.#listing] };
  }
}

const PREFIXES = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]);

/**
 * The same instruction for a 32-bit code segment: the leading prefixes with 0x66 and 0x67 toggled (present ↔
 * absent; an instruction without operand or address size ignores the added one).
 */
export function toggleSizePrefixes(bytes: readonly number[]): number[] {
  let n = 0;
  while (n < bytes.length && PREFIXES.has(bytes[n] as number)) n++;
  const prefixes = bytes.slice(0, n);
  const out = prefixes.filter((p) => p !== 0x66 && p !== 0x67);
  if (!prefixes.includes(0x66)) out.push(0x66);
  if (!prefixes.includes(0x67)) out.push(0x67);
  return [...out, ...bytes.slice(n)];
}
