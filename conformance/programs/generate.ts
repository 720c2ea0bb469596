/**
 * The seeded guest programs: for every family (families.ts) a few programs, each a deterministic function
 * of its family and seed. `pnpm conformance:record` writes them to `programs.json` (read by the test, which
 * also checks that the generator still makes exactly these) and `programs.txt` (read by the C recorder).
 *
 * Memory: code at 0x1000, random data at 0x600–0x7ff, IVT entries for the handlers, the stack below 0xf000;
 * CS = DS = ES = SS = 0 (the `pm16` variants enter 16-bit protected mode first: `Builder.enterProtectedMode16`).
 * Each program ends with HLT.
 *
 * @module
 */
import { Builder, LAYOUT, PINNED, PM16 } from './builder.js';
import { ARITH } from './flags.js';
import { FAMILIES, type Family } from './families.js';
import { Random } from './random.js';

/** The initial registers of a program (real mode: CS = 0). */
export interface ProgramRegs {
  readonly rax: number;
  readonly rbx: number;
  readonly rcx: number;
  readonly rdx: number;
  readonly rsi: number;
  readonly rdi: number;
  readonly rbp: number;
  readonly rsp: number;
  readonly rflags: number;
  readonly rip: number;
  readonly ds: number;
  readonly es: number;
  readonly ss: number;
}

/** One guest program. */
export interface GuestProgram {
  /** The fact id: `guest.<family>.s<n>`. */
  readonly id: string;
  readonly family: string;
  /** The model's interpreter executes all its instructions today. */
  readonly modelled: boolean;
  readonly title: string;
  readonly seed: number;
  readonly regs: ProgramRegs;
  /** Initial memory besides zeros: `[address, hex]`. */
  readonly memory: ReadonlyArray<readonly [number, string]>;
  /** FLAGS bits the SDM leaves undefined at each exit site (`out:<port>`, `in:<port>`, `hlt`). */
  readonly undefinedFlags: Readonly<Record<string, number>>;
  /** The program as NASM-style text. */
  readonly listing: readonly string[];
}

/** `programs.json`. */
export interface ProgramsFile {
  readonly schema: 1;
  readonly programs: readonly GuestProgram[];
}

function hex(bytes: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] as number).toString(16).padStart(2, '0');
  return s;
}

/** The seed of program `n` of `family`. */
export function programSeed(family: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < family.length; i++) h = Math.imul(h ^ family.charCodeAt(i), 0x01000193) >>> 0;
  return (h ^ Math.imul(n + 1, 0x9e3779b9)) >>> 0;
}

/**
 * The families that also run in protected mode, with a 16-bit code segment (`guest.pm16-<family>.s<n>`, seeded as
 * family `pm16-<family>`) and with a 32-bit one (`guest.pm32-…`). Left out: those that load segment registers with their own values (`move`,
 * `stack`), go through the IVT (`interrupt`, `lock`, `into`, `seglimit`), or change the descriptor tables and CR0
 * (`descriptor`, `cr`).
 */
export const PM16_FAMILIES: readonly string[] = ['alu8', 'alu16', 'alu32', 'shift', 'muldiv', 'branch', 'string', 'io', 'bt', 'bitscan', 'shxd', 'bswap', 'cmpxchg', 'cmov', 'enter', 'bcd', 'stringio', 'misc', 'x87'];

/** Where a program runs: real mode, or protected mode with a 16-bit or a 32-bit code segment. */
export type ProgramMode = 'real' | 'pm16' | 'pm32';

/**
 * Program `n` of `family` in `mode` (`pm16`: {@link Builder.enterProtectedMode16}; `pm32`:
 * {@link Builder.enterProtectedMode32}, the same instructions encoded for a 32-bit code segment).
 */
export function makeProgram(family: Family, n: number, mode: ProgramMode = 'real'): GuestProgram {
  const prefix = mode === 'real' ? '' : `${mode}-`;
  const seed = programSeed(`${prefix}${family.name}`, n);
  const rng = new Random(seed);
  const b = new Builder(rng);
  if (mode === 'pm16') b.enterProtectedMode16();
  if (mode === 'pm32') b.enterProtectedMode32();
  family.prologue?.(b);
  for (let i = 0; i < family.blocks; i++) {
    family.block(b);
    b.checkpoint();
  }
  b.halt();
  const built = b.finish();
  const data = new Uint8Array(LAYOUT.dataEnd - LAYOUT.data);
  for (let i = 0; i < data.length; i++) data[i] = rng.u8();
  const memory: Array<readonly [number, string]> = [[LAYOUT.code, hex(built.code)], [LAYOUT.data, hex(data)]];
  for (const [vector, addr] of [...built.ivt].sort((a, c) => a[0] - c[0])) memory.push([vector * 4, hex([addr & 0xff, addr >> 8, 0, 0])]);
  if (mode !== 'real') memory.push([PM16.gdt, hex(PM16.gdtBytes)], [PM16.gdtr, hex(PM16.gdtrBytes)]);
  memory.sort((a, c) => a[0] - c[0]);
  const regs: ProgramRegs = {
    rax: rng.u16(),
    rbx: PINNED.bx,
    rcx: rng.u16(),
    rdx: rng.u16(),
    rsi: PINNED.si,
    rdi: PINNED.di,
    rbp: PINNED.bp,
    rsp: LAYOUT.stack,
    rflags: 0x2 | (rng.u32() & ARITH),
    rip: LAYOUT.code,
    ds: 0,
    es: 0,
    ss: 0,
  };
  return {
    id: `guest.${prefix}${family.name}.s${n + 1}`,
    family: family.name,
    modelled: family.modelled,
    title: `${mode === 'pm16' ? '16-bit protected mode: ' : mode === 'pm32' ? '32-bit protected mode: ' : ''}${family.title} (program ${n + 1}, seed 0x${seed.toString(16)})`,
    seed,
    regs,
    memory,
    undefinedFlags: built.undefinedFlags,
    listing: built.listing,
  };
}

/** Every program of every family. */
export function programsFile(): ProgramsFile {
  const real = FAMILIES.flatMap((f) => Array.from({ length: f.programs }, (_, n) => makeProgram(f, n)));
  const pm = (mode: ProgramMode): GuestProgram[] =>
    FAMILIES.filter((f) => PM16_FAMILIES.includes(f.name)).flatMap((f) => Array.from({ length: f.programs }, (_, n) => makeProgram(f, n, mode)));
  return { schema: 1, programs: [...real, ...pm('pm16'), ...pm('pm32')] };
}

/**
 * The recorder's form of the programs: per program `program <id> <title>`, `regs <13 hex values>`,
 * `mem <address> <hex>` lines, `end`.
 */
export function programsText(file: ProgramsFile): string {
  const lines: string[] = [];
  for (const p of file.programs) {
    const r = p.regs;
    lines.push(`program ${p.id} ${p.title}`);
    lines.push(`regs ${[r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.rflags, r.rip, r.ds, r.es, r.ss].map((v) => v.toString(16)).join(' ')}`);
    for (const [addr, h] of p.memory) lines.push(`mem ${addr.toString(16)} ${h}`);
    lines.push('end');
  }
  return `${lines.join('\n')}\n`;
}
