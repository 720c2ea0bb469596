/**
 * Arithmetic flags (SDM Vol. 1 §3.4.3.1 and the ADD/ADC/SUB/SBB/CMP/INC/DEC/AND/OR/XOR pages of Vol. 2):
 * hand-computed cases, and a property test against a reference written from the definitions (signed
 * range for OF, nibble carry for AF, bit count for PF) rather than from the interpreter's bit tricks.
 * Every case runs through every encoding the interpreter decodes differently (accumulator-immediate,
 * register-register, memory, group 1) and both memory flavours, so the fast path and the general decoder
 * are held to the same answers.
 */

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { GuestExitReason } from '../../src/guest/index.js';
import { FLAVORS, makeVm, type Flavor } from './helpers.js';

const CF = 0x1;
const PF = 0x4;
const AF = 0x10;
const ZF = 0x40;
const SF = 0x80;
const OF = 0x800;
const STATUS = CF | PF | AF | ZF | SF | OF;

type Op = 'add' | 'or' | 'adc' | 'sbb' | 'and' | 'sub' | 'xor' | 'cmp';
const OPS: readonly Op[] = ['add', 'or', 'adc', 'sbb', 'and', 'sub', 'xor', 'cmp'];

/** Reference semantics, straight from the definitions. Returns [result, status flags]. */
function reference(op: Op, a: number, b: number, carryIn: number, bits: number): [number, number] {
  const mod = 2 ** bits;
  const half = mod / 2;
  const signed = (x: number): number => (x >= half ? x - mod : x);
  const c = op === 'adc' || op === 'sbb' ? carryIn : 0;
  let res: number;
  let cf = false;
  let of = false;
  let af = false;
  if (op === 'add' || op === 'adc') {
    const full = a + b + c;
    res = full % mod;
    cf = full >= mod;
    const s = signed(a) + signed(b) + c;
    of = s < -half || s > half - 1;
    af = (a % 16) + (b % 16) + c > 15;
  } else if (op === 'sub' || op === 'sbb' || op === 'cmp') {
    res = (((a - b - c) % mod) + mod) % mod;
    cf = a < b + c;
    const s = signed(a) - signed(b) - c;
    of = s < -half || s > half - 1;
    af = a % 16 < (b % 16) + c;
  } else {
    // Bitwise ops on up to 32-bit values, via BigInt to stay exact.
    const A = BigInt(a);
    const B = BigInt(b);
    res = Number(op === 'and' ? A & B : op === 'or' ? A | B : A ^ B);
  }
  let ones = 0;
  for (let v = res % 256; v !== 0; v >>= 1) ones += v & 1;
  const flags =
    (cf ? CF : 0) |
    (ones % 2 === 0 ? PF : 0) |
    (af ? AF : 0) |
    (res === 0 ? ZF : 0) |
    (res >= half ? SF : 0) |
    (of ? OF : 0);
  return [op === 'cmp' ? a : res, flags];
}

/** The encodings of `op a, b` with a in AL/AX/EAX. */
type Form = 'acc-imm' | 'reg-reg' | 'reg-mem' | 'mem-reg' | 'grp1-imm';
const FORMS: readonly Form[] = ['acc-imm', 'reg-reg', 'reg-mem', 'mem-reg', 'grp1-imm'];

function encode(op: Op, form: Form, bits: number, b: number): number[] {
  const n = OPS.indexOf(op);
  const wide = bits === 8 ? 0 : 1;
  const pre = bits === 32 ? [0x66] : [];
  const bytesOf = (v: number, k: number): number[] => Array.from({ length: k }, (_, i) => Math.floor(v / 2 ** (8 * i)) & 0xff);
  switch (form) {
    case 'acc-imm': // 04/05 + 8n
      return [...pre, (n << 3) | 4 | wide, ...bytesOf(b, bits / 8)];
    case 'reg-reg': // op r/m, reg with r/m = AX, reg = BX  (00/01 + 8n, ModRM 11 011 000)
      return [...pre, (n << 3) | wide, 0xd8];
    case 'reg-mem': // op AX, [0x2000]  (02/03 + 8n, ModRM 00 000 110)
      return [...pre, (n << 3) | 2 | wide, 0x06, 0x00, 0x20];
    case 'mem-reg': // op [0x2000], BX  (00/01 + 8n, ModRM 00 011 110); result checked in memory
      return [...pre, (n << 3) | wide, 0x1e, 0x00, 0x20];
    case 'grp1-imm': // 80/81 /n, r/m = AX
      return [...pre, bits === 8 ? 0x80 : 0x81, 0xc0 | (n << 3), ...bytesOf(b, bits / 8)];
  }
}

function runOne(flavor: Flavor, op: Op, form: Form, bits: number, a: number, b: number, carryIn: number): [number, number] {
  const code = encode(op, form, bits, b);
  const vm = makeVm(flavor, [...code, 0xf4]);
  const s = vm.state;
  s.rflags = 0x2 | carryIn;
  const mod = 2 ** bits;
  const bytes = bits / 8;
  // Upper bits of RAX that must survive an 8/16-bit operation.
  const upper = bits === 32 ? 0 : 0x5a5a0000 + (bits === 8 ? 0xa500 : 0);
  if (form === 'mem-reg') {
    for (let i = 0; i < bytes; i++) vm.ram[0x2000 + i] = Math.floor(a / 2 ** (8 * i)) & 0xff;
    s.rbx = b;
  } else {
    s.rax = upper + a;
    s.rbx = b;
    for (let i = 0; i < bytes; i++) vm.ram[0x2000 + i] = Math.floor(b / 2 ** (8 * i)) & 0xff;
  }
  expect(vm.run()).toBe(GuestExitReason.Hlt);
  let result: number;
  if (form === 'mem-reg') {
    result = 0;
    for (let i = bytes - 1; i >= 0; i--) result = result * 256 + vm.ram[0x2000 + i]!;
  } else {
    result = s.rax % mod;
    expect(s.rax - result).toBe(upper); // untouched upper bits
  }
  expect(s.rflags & ~STATUS).toBe(0x2);
  return [result, s.rflags & STATUS];
}

const hex = (v: number): string => `0x${v.toString(16)}`;

describe.each(FLAVORS)('flags by hand (%s memory)', (flavor) => {
  // [op, bits, a, b, carry-in, expected result, expected flags]
  const cases: [Op, number, number, number, number, number, number][] = [
    ['add', 8, 0xff, 0x01, 0, 0x00, CF | PF | AF | ZF],
    ['add', 8, 0x7f, 0x01, 0, 0x80, AF | SF | OF],
    ['add', 16, 0x8000, 0x8000, 0, 0x0000, CF | PF | ZF | OF],
    ['add', 16, 0x1234, 0x1111, 1, 0x2345, 0], // carry-in ignored by ADD; 0x45 has odd parity
    ['add', 32, 0xffffffff, 1, 0, 0, CF | PF | AF | ZF],
    ['adc', 8, 0xff, 0x00, 1, 0x00, CF | PF | AF | ZF],
    ['adc', 16, 0x7ffe, 0x0001, 1, 0x8000, PF | AF | SF | OF],
    ['sub', 8, 0x00, 0x01, 0, 0xff, CF | PF | AF | SF],
    ['sub', 16, 0x1234, 0x1234, 0, 0x0000, PF | ZF],
    ['sub', 16, 0x8000, 0x0001, 0, 0x7fff, PF | AF | OF],
    ['sbb', 8, 0x00, 0x00, 1, 0xff, CF | PF | AF | SF],
    ['sbb', 16, 0x0005, 0x0003, 1, 0x0001, 0],
    ['cmp', 16, 0x7fff, 0x8000, 0, 0x7fff, CF | PF | SF | OF],
    ['cmp', 8, 0x7f, 0x80, 0, 0x7f, CF | PF | SF | OF],
    ['cmp', 32, 0x80000000, 1, 0, 0x80000000, PF | AF | OF],
    ['and', 8, 0xff, 0x80, 1, 0x80, SF],
    ['or', 16, 0x0f00, 0x00f0, 1, 0x0ff0, PF],
    ['xor', 16, 0xbeef, 0xbeef, 1, 0x0000, PF | ZF],
    ['xor', 32, 0x80000000, 0x00000003, 0, 0x80000003, PF | SF],
  ];
  for (const [op, bits, a, b, cin, res, flags] of cases) {
    for (const form of FORMS) {
      test(`${op}${bits} ${hex(a)}, ${hex(b)} (CF=${cin}) via ${form}`, () => {
        expect(runOne(flavor, op, form, bits, a, b, cin)).toEqual([res, flags]);
        expect(reference(op, a, b, cin, bits)).toEqual([res, flags]);
      });
    }
  }

  // INC/DEC leave CF alone (SDM Vol. 2A, INC: "The CF flag is not affected").
  test.each([
    // [code, reg value, CF in, expected value, expected flags]
    ['inc ax', [0x40], 0xffff, 0, 0x0000, PF | AF | ZF],
    ['inc ax', [0x40], 0xffff, 1, 0x0000, CF | PF | AF | ZF],
    ['inc ax', [0x40], 0x7fff, 0, 0x8000, PF | AF | SF | OF],
    ['inc ax', [0x40], 0x0001, 1, 0x0002, CF],
    ['dec ax', [0x48], 0x8000, 0, 0x7fff, PF | AF | OF],
    ['dec ax', [0x48], 0x0001, 1, 0x0000, CF | PF | ZF],
    ['dec ax', [0x48], 0x0000, 0, 0xffff, PF | AF | SF],
    ['inc al (FE /0)', [0xfe, 0xc0], 0x7f, 1, 0x80, CF | AF | SF | OF],
    ['dec al (FE /1)', [0xfe, 0xc8], 0x01, 0, 0x00, PF | ZF],
    ['inc ax (FF /0)', [0xff, 0xc0], 0xffff, 1, 0x0000, CF | PF | AF | ZF],
    ['dec ax (FF /1)', [0xff, 0xc8], 0x8000, 1, 0x7fff, CF | PF | AF | OF],
    ['inc eax (66 40)', [0x66, 0x40], 0x7fffffff, 0, 0x80000000, PF | AF | SF | OF],
    ['dec eax (66 48)', [0x66, 0x48], 0, 1, 0xffffffff, CF | PF | AF | SF],
  ] as const)('%s from %i (CF=%i)', (_name, code, v, cin, want, flags) => {
    const vm = makeVm(flavor, [...code, 0xf4]);
    vm.state.rax = v;
    vm.state.rflags = 0x2 | cin;
    expect(vm.run()).toBe(GuestExitReason.Hlt);
    const mask = code[0] === 0xfe ? 0xff : code[0] === 0x66 ? 0xffffffff : 0xffff;
    expect(vm.state.rax % (mask + 1)).toBe(want);
    expect(vm.state.rflags).toBe(0x2 | flags);
  });

  test('inc/dec on every 16-bit register touch only that register', () => {
    const code = [0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x48, 0x4b, 0x4f, 0xf4];
    const vm = makeVm(flavor, code);
    const s = vm.state;
    s.rax = 0x10000; s.rcx = 1; s.rdx = 2; s.rbx = 3; s.rsp = 4; s.rbp = 5; s.rsi = 6; s.rdi = 0xffff;
    expect(vm.run()).toBe(GuestExitReason.Hlt);
    expect([s.rax, s.rcx, s.rdx, s.rbx, s.rsp, s.rbp, s.rsi, s.rdi]).toEqual([0x1ffff, 2, 3, 3, 5, 6, 7, 0xffff]) // AX: 0x10000 +1 −1 −1 wraps in the low 16 bits only;
  });
});

describe('flags: property tests against the reference', () => {
  const bitsArb = fc.constantFrom(8, 16, 32);
  const valueArb = (bits: number): fc.Arbitrary<number> =>
    fc.oneof(
      fc.integer({ min: 0, max: 2 ** bits - 1 }),
      fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff).map((v) => v % 2 ** bits),
    );
  const caseArb = bitsArb.chain((bits) =>
    fc.record({
      bits: fc.constant(bits),
      a: valueArb(bits),
      b: valueArb(bits),
      cin: fc.integer({ min: 0, max: 1 }),
      op: fc.constantFrom(...OPS),
      form: fc.constantFrom(...FORMS),
      flavor: fc.constantFrom(...FLAVORS),
    }),
  );

  test('add/adc/sub/sbb/cmp/and/or/xor match the SDM definitions for all forms and widths', () => {
    fc.assert(
      fc.property(caseArb, ({ bits, a, b, cin, op, form, flavor }) => {
        const got = runOne(flavor, op, form, bits, a, b, cin);
        expect(got).toEqual(reference(op, a, b, cin, bits));
      }),
      { numRuns: 3000 },
    );
  });

  test('inc/dec match ADD/SUB 1 with CF preserved', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 1 }),
        fc.boolean(),
        fc.constantFrom(...FLAVORS),
        fc.integer({ min: 0, max: 7 }).filter((r) => r !== 4),
        (v, cin, isDec, flavor, reg) => {
          const vm = makeVm(flavor, [(isDec ? 0x48 : 0x40) | reg, 0xf4]);
          const regs = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi'] as const;
          vm.state[regs[reg]!] = v;
          vm.state.rflags = 0x2 | cin;
          expect(vm.run()).toBe(GuestExitReason.Hlt);
          const [res, flags] = reference(isDec ? 'sub' : 'add', v, 1, 0, 16);
          expect(vm.state[regs[reg]!]).toBe(res);
          expect(vm.state.rflags).toBe(0x2 | (flags & ~CF) | cin);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
