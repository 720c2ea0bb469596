/**
 * Differential test: the interpreter's fast path (taken when guest memory offers `lookup`) and its general
 * decoder (the only path with byte-wise memory) must agree on everything — registers, flags, memory, the
 * exit and the instruction count — for arbitrary byte sequences, including garbage that faults, exits or
 * jumps through the IVT.
 */

import fc from 'fast-check';
import { expect, test } from 'vitest';
import { makeVm, runTrace } from './helpers.js';

/** Opcodes the fast path handles, to make sure random programs exercise it heavily. */
const FAST = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x10, 0x11, 0x12, 0x13, 0x14,
  0x15, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x28, 0x29, 0x2a, 0x2b,
  0x2c, 0x2d, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x40, 0x43, 0x45,
  0x48, 0x4a, 0x4f, 0x70, 0x72, 0x74, 0x75, 0x7c, 0x7f, 0x88, 0x89, 0x8a, 0x8b, 0x90, 0xb0, 0xb4, 0xb8,
  0xbb, 0xe9, 0xeb, 0xec, 0xee, 0xf4,
];

const byteArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...FAST) },
  { weight: 2, arbitrary: fc.integer({ min: 0xc0, max: 0xff }) }, // register-form ModRM bytes
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 0xff }) },
);

test('fast path and general decoder agree on random programs', () => {
  fc.assert(
    fc.property(
      fc.array(byteArb, { minLength: 1, maxLength: 96 }),
      fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }),
      fc.integer({ min: 0, max: 0xfff }),
      fc.integer({ min: 1, max: 300 }),
      (code, regs, flags, budget) => {
        const vms = (['lookup', 'bytewise'] as const).map((flavor) => {
          const vm = makeVm(flavor, code, { ramSize: 0x20000 });
          const s = vm.state;
          const r = (i: number): number => regs[i] ?? 0;
          s.rax = r(0); s.rcx = r(1); s.rdx = r(2); s.rbx = r(3); s.rbp = r(5); s.rsi = r(6); s.rdi = r(7);
          s.rflags = (flags & 0xcd5) | 0x2;
          const trace = runTrace(vm, budget);
          return { vm, trace };
        });
        const [a, b] = vms;
        expect(a!.trace).toEqual(b!.trace);
        expect(a!.vm.state).toEqual(b!.vm.state);
        expect(Buffer.from(a!.vm.ram).equals(Buffer.from(b!.vm.ram))).toBe(true);
      },
    ),
    { numRuns: 1500 },
  );
});
