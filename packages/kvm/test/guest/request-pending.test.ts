/**
 * A WRMSR after which the platform has a request pending (GuestPlatform.requestPending) ends the run right after
 * it — `Budget`, with RIP past the WRMSR — so the host can act before the next instruction; without one the run
 * goes on.
 */
import { describe, expect, test } from 'vitest';
import { GuestExitReason, defaultGuestPlatform, runGuest, type GuestPlatform } from '../../src/guest/index.js';
import { FLAVORS, makeVm } from './helpers.js';

// mov ecx, 0x10; wrmsr; inc bx; hlt
const CODE = [0x66, 0xb9, 0x10, 0x00, 0x00, 0x00, 0x0f, 0x30, 0x43, 0xf4];

function platform(pending: boolean): GuestPlatform {
  return { ...defaultGuestPlatform(), wrmsr: () => true, requestPending: () => pending };
}

describe.each(FLAVORS)('requestPending after WRMSR (%s memory)', (flavor) => {
  test('a pending request ends the run after the WRMSR; the next run goes on from there', () => {
    const vm = makeVm(flavor, CODE);
    const p = platform(true);
    expect(runGuest(vm.state, vm.memory, 100, vm.exit, undefined, p)).toBe(GuestExitReason.Budget);
    expect([vm.exit.executed, vm.state.rip, vm.state.rbx]).toEqual([2, 0x1008, 0]);
    expect(runGuest(vm.state, vm.memory, 100, vm.exit, undefined, platform(false))).toBe(GuestExitReason.Hlt);
    expect(vm.state.rbx).toBe(1);
  });

  test('no pending request: the run goes on to the HLT', () => {
    const vm = makeVm(flavor, CODE);
    expect(runGuest(vm.state, vm.memory, 100, vm.exit, undefined, platform(false))).toBe(GuestExitReason.Hlt);
    expect([vm.exit.executed, vm.state.rbx]).toEqual([4, 1]);
  });
});
