/**
 * Runs given no platform (`runGuest` without a `GuestPlatform`): the TSC and the FPU image are the guest state's own,
 * as KVM keeps them per vCPU (arch/x86/kvm/x86.c `kvm_read_l1_tsc`: the host TSC plus the vCPU's own offset), so a
 * program reads the same TSC values and starts from the same FPU state whatever ran before it in the process.
 */
import { describe, expect, test } from 'vitest';
import { FLAVORS, makeVm, word } from './helpers.js';

/** `rdtsc; mov [0x500], eax; rdtsc; mov [0x504], eax; hlt`: the low halves of two TSC reads. */
const TWO_RDTSC = [0x0f, 0x31, 0x66, 0xa3, 0x00, 0x05, 0x0f, 0x31, 0x66, 0xa3, 0x04, 0x05, 0xf4];

/** `fnstcw [0x600]; hlt`. */
const STORE_FCW = [0xd9, 0x3e, 0x00, 0x06, 0xf4];

/** `fxsave [0x2000]; mov word [0x2000], 0x027f; fxrstor [0x2000]; hlt`: FCW changed (precision control 53 bits). */
const LOAD_FCW = [0x0f, 0xae, 0x06, 0x00, 0x20, 0xc7, 0x06, 0x00, 0x20, 0x7f, 0x02, 0x0f, 0xae, 0x0e, 0x00, 0x20, 0xf4];

const dword = (ram: Uint8Array, at: number): number => new DataView(ram.buffer).getUint32(at, true);

describe.each(FLAVORS)('runs without a platform (%s memory)', (flavor) => {
  test('the same program reads the same TSC values whatever ran before it', () => {
    const first = makeVm(flavor, TWO_RDTSC);
    first.run();
    const before = [dword(first.ram, 0x500), dword(first.ram, 0x504)];
    // Other guests read the TSC in between.
    for (let i = 0; i < 3; i++) makeVm(flavor, TWO_RDTSC).run();
    const again = makeVm(flavor, TWO_RDTSC);
    again.run();
    expect([dword(again.ram, 0x500), dword(again.ram, 0x504)]).toEqual(before);
    expect(before).toEqual([0, 1]);
  });

  test("one state's TSC goes on counting across its runs", () => {
    const vm = makeVm(flavor, [...TWO_RDTSC.slice(0, -1), ...TWO_RDTSC]);
    vm.run(2); // the first rdtsc and its store
    makeVm(flavor, TWO_RDTSC).run();
    vm.run();
    expect([dword(vm.ram, 0x500), dword(vm.ram, 0x504)]).toEqual([2, 3]);
  });

  test("another state's FXRSTOR does not reach this state's FPU image", () => {
    const other = makeVm(flavor, [...LOAD_FCW.slice(0, -1), ...STORE_FCW]);
    other.run();
    expect(word(other.ram, 0x600)).toBe(0x27f);
    const vm = makeVm(flavor, STORE_FCW);
    vm.run();
    expect(word(vm.ram, 0x600)).toBe(0x37f);
  });
});
