/**
 * The decoded forms of 32-bit protected-mode code (`src/guest/decoded-form.ts`, `decoded-exec.ts`): an instruction run
 * from its decoded form must do exactly what the general decoder does with its bytes — registers, flags, memory, the
 * exit, the instruction count, faults delivered through the IDT — for arbitrary byte sequences biased towards the
 * forms (random ModRM, SIB, displacements and immediates, operands in RAM, in MMIO and past a segment limit). The
 * reference is the general decoder without any cache (policy `'never'`), checked against the decoded forms on the slot
 * memory and on a byte-wise memory; every form must have been exercised.
 */
import { turnEventLoopIfDue } from '@vac/test-support';
import fc from 'fast-check';
import { afterEach, expect, test } from 'vitest';
import * as F from '../../src/guest/decoded-form.js';
import { GUEST_DEFAULT_QUIRKS, defaultGuestPlatform, runGuest } from '../../src/guest/index.js';
import { cacheFor, setInsnCachePolicy, type InsnCachePolicy } from '../../src/guest/insn-cache.js';
import { enterFlat32, makeVm, runTrace, type Flavor, type Vm } from './helpers.js';

afterEach(() => {
  setInsnCachePolicy('auto');
});

/** First bytes of the instructions that have a decoded form (0F: the two-byte ones). */
const OPCODES = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x09, 0x0b, 0x0d, 0x11, 0x13, 0x19, 0x1b, 0x21, 0x23, 0x25, 0x29, 0x2b, 0x2c, 0x31, 0x33,
  0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x40, 0x43, 0x46, 0x48, 0x4b, 0x4f, 0x50, 0x53, 0x55, 0x58, 0x5b, 0x5d, 0x68, 0x6a,
  0x72, 0x74, 0x75, 0x7c, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x88, 0x89, 0x8a, 0x8b, 0x8d, 0x90, 0xb0, 0xb4, 0xb8,
  0xbb, 0xc0, 0xc1, 0xc2, 0xc3, 0xc6, 0xc7, 0xd0, 0xd1, 0xd2, 0xd3, 0xe8, 0xe9, 0xeb, 0xf6, 0xf7, 0xfe, 0xff, 0x0f,
  0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
];

/** Prefixes (decoded for string instructions only). */
const PREFIXES = [0xf3, 0xf2, 0x66, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0xf0];

/** Second bytes after 0F with a decoded form (and a few without). */
const TWO_BYTE = [0x84, 0x85, 0x8f, 0x94, 0x95, 0x9f, 0xb6, 0xb7, 0xbe, 0xbf, 0xa2, 0xaf];

/** Pieces of a program: one byte (an opcode, a ModRM, SIB, displacement or immediate byte, anything), or 0F and its second byte. */
const pieceArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...OPCODES).map((b) => [b]) },
  { weight: 1, arbitrary: fc.constantFrom(...TWO_BYTE).map((b) => [0x0f, b]) },
  { weight: 1, arbitrary: fc.constantFrom(...PREFIXES).map((b) => [b]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0xc6, 0xc7, 0xf6, 0xf7), fc.integer({ min: 0, max: 0xff })).map(([op, m]) => [op, m & 0xc7]) }, // their /0 forms
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 0xff }).map((b) => [b]) },
  { weight: 1, arbitrary: fc.constantFrom(0x00, 0x04, 0x05, 0x44, 0x84, 0x24, 0x0c, 0x10, 0xff).map((b) => [b]) }, // SIB/disp-heavy ModRM
);

const GDT = 0x11000;
const IDT = 0x12000;
const HANDLER = 0x13000;

/**
 * A vCPU in flat 32-bit protected mode (CS 0x08, data 0x10; DS's limit `dsLimit`), with an IDT whose gates all `hlt`,
 * and a platform of its own (its TSC counts its own `rdtsc`s).
 */
function pmVm(flavor: Flavor, code: readonly number[], dsLimit: number): Vm {
  const made = makeVm(flavor, code, { ramSize: 0x20000 });
  const platform = defaultGuestPlatform();
  const vm: Vm = { ...made, run: (budget = 10_000) => runGuest(made.state, made.memory, budget, made.exit, GUEST_DEFAULT_QUIRKS, platform) };
  const ram = vm.ram;
  // GDT: null, flat 32-bit code (0x08), flat data (0x10).
  ram.set([0xff, 0xff, 0, 0, 0, 0x9b, 0xcf, 0], GDT + 8);
  ram.set([0xff, 0xff, 0, 0, 0, 0x93, 0xcf, 0], GDT + 16);
  for (let v = 0; v < 32; v++) ram.set([HANDLER & 0xff, HANDLER >> 8, 0x08, 0, 0, 0x8e, 0, 0], IDT + 8 * v);
  ram[HANDLER] = 0xf4;
  const s = vm.state;
  enterFlat32(vm);
  for (const seg of [s.ds, s.es, s.ss]) seg.type = 3;
  s.cs.type = 11;
  s.ds.limit = dsLimit;
  s.gdtBase = GDT;
  s.gdtLimit = 0x17;
  s.idtBase = IDT;
  s.idtLimit = 32 * 8 - 1;
  s.rsp = 0x8000;
  return vm;
}

/** The forms found in the caches of the runs so far. */
const seen = new Set<number>();

function collectForms(vm: Vm): void {
  for (const page of cacheFor(vm.memory).pages.values()) {
    for (let k = 0; k < 4096; k++) if (page.len[k] !== 0 && page.mode[k] === 3) seen.add(page.forms.form[k]!);
  }
}

const WAYS: readonly { readonly flavor: Flavor; readonly policy: InsnCachePolicy }[] = [
  { flavor: 'lookup', policy: 'never' }, // the reference: the general decoder alone
  { flavor: 'lookup', policy: 'auto' },
  { flavor: 'bytewise', policy: 'auto' },
];

test('decoded forms and the general decoder agree on random 32-bit programs', async () => {
  // Asynchronous only to turn the worker's event loop about once a second (turnEventLoopIfDue).
  await fc.assert(
    fc.asyncProperty(
      fc.array(pieceArb, { minLength: 1, maxLength: 80 }).map((pieces) => pieces.flat()),
      fc.array(fc.oneof(fc.integer({ min: 0, max: 0x1ffff }), fc.integer({ min: 0, max: 0xffffffff })), { minLength: 8, maxLength: 8 }),
      fc.integer({ min: 0, max: 0xfff }),
      fc.integer({ min: 1, max: 300 }),
      fc.constantFrom(0xffffffff, 0xffff, 0x17fff),
      async (code, regs, flags, budget, dsLimit) => {
        const runs = WAYS.map(({ flavor, policy }) => {
          setInsnCachePolicy(policy);
          try {
            const vm = pmVm(flavor, code, dsLimit);
            const s = vm.state;
            const r = (i: number): number => regs[i] ?? 0;
            s.rax = r(0); s.rcx = r(1); s.rdx = r(2); s.rbx = r(3); s.rbp = r(5); s.rsi = r(6); s.rdi = r(7);
            s.rflags = (flags & 0xcd5) | 0x2;
            const trace = runTrace(vm, budget);
            if (policy !== 'never') collectForms(vm);
            return { vm, trace };
          } finally {
            setInsnCachePolicy('auto');
          }
        });
        const ref = runs[0]!;
        for (const other of runs.slice(1)) {
          expect(other.trace).toEqual(ref.trace);
          expect(other.vm.state).toEqual(ref.vm.state);
          expect(Buffer.from(other.vm.ram).equals(Buffer.from(ref.vm.ram))).toBe(true);
        }
        await turnEventLoopIfDue();
      },
    ),
    { numRuns: 800 },
  );
  const all = Object.entries(F).filter(([name]) => name.startsWith('FORM_')).map(([, v]) => v as number);
  expect(all.filter((f) => !seen.has(f))).toEqual([]);
}, 240_000); // 800 random programs, each run three ways: about 15 s on an idle machine

/** Runs `code` (flat 32-bit protected mode, `setup` applied) in every way; the results must agree. */
function everyWay(code: readonly number[], setup: (vm: Vm) => void): Vm {
  const vms = WAYS.map(({ flavor, policy }) => {
    setInsnCachePolicy(policy);
    try {
      const vm = pmVm(flavor, code, 0xffffffff);
      setup(vm);
      vm.run();
      return vm;
    } finally {
      setInsnCachePolicy('auto');
    }
  });
  for (const vm of vms.slice(1)) {
    expect(vm.state).toEqual(vms[0]!.state);
    expect(Buffer.from(vm.ram).equals(Buffer.from(vms[0]!.ram))).toBe(true);
  }
  return vms[0]!;
}

test('string instructions keep their prefixes: REPNE and REPE, a segment override, 16-bit sizes', () => {
  const buf = [1, 1, 1, 0, 1];
  const scan = (rep: number): Vm =>
    everyWay([0xbf, 0x00, 0x40, 0x00, 0x00, 0xb9, 0x05, 0x00, 0x00, 0x00, rep, 0xae, 0xf4], (vm) => vm.ram.set(buf, 0x4000)); // mov edi,0x4000; mov ecx,5; rep… scasb; hlt
  expect(Number(scan(0xf2).state.rcx)).toBe(1); // REPNE SCASB (AL = 0): stops after the zero at 0x4003
  const repe = scan(0xf3).state; // REPE SCASB: stops at the first byte that is not 0
  expect([Number(repe.rcx), Number(repe.rdi)]).toEqual([4, 0x4001]);
  // FS: MOVSD (FS base 0x5000) and, with 66, MOVSW; with 67, SI/DI (16-bit addresses).
  const moved = everyWay([0x64, 0xa5, 0x66, 0x64, 0xa5, 0xbe, 0x06, 0x01, 0x01, 0x00, 0x67, 0xa4, 0xf4], (vm) => { // …; mov esi, 0x10106; a16 movsb
    vm.ram.set([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77], 0x5100);
    vm.ram.set([0x99], 0x106);
    const s = vm.state;
    s.fs.base = 0x5000;
    s.fs.limit = 0xffff;
    s.fs.selector = 0x10;
    s.rsi = 0x100;
    s.rdi = 0x6000;
    s.rflags = 0x2;
  });
  expect([...moved.ram.subarray(0x6000, 0x6006)]).toEqual([0x11, 0x22, 0x33, 0x44, 0x55, 0x66]);
  expect(moved.ram[0x6006]).toBe(0x99); // the 67-prefixed MOVSB read DS:SI = 0x106 (not ESI = 0x10106) into ES:DI
});
