/**
 * Where the platform ends a run early (`Budget`, RIP past the instruction): a WRMSR after which it has a request
 * pending (GuestPlatform.requestPending), so the host can act before the next instruction, and a PAUSE when it
 * asks for pause-loop exits (GuestPlatform.pauseExits), so another vCPU can run. Without them the run goes on.
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

// pause; inc bx; nop; hlt
const PAUSE = [0xf3, 0x90, 0x43, 0x90, 0xf4];

describe.each(FLAVORS)('pauseExits (%s memory)', (flavor) => {
  test('PAUSE ends the run when the platform asks for pause-loop exits; NOP never does', () => {
    const vm = makeVm(flavor, PAUSE);
    const p: GuestPlatform = { ...defaultGuestPlatform(), pauseExits: () => true };
    expect(runGuest(vm.state, vm.memory, 100, vm.exit, undefined, p)).toBe(GuestExitReason.Budget);
    expect([vm.exit.executed, vm.state.rip, vm.state.rbx]).toEqual([1, 0x1002, 0]);
    expect(runGuest(vm.state, vm.memory, 100, vm.exit, undefined, p)).toBe(GuestExitReason.Hlt);
    expect([vm.exit.executed, vm.state.rbx]).toEqual([3, 1]);
  });

  test('without pause-loop exits PAUSE is a NOP', () => {
    const vm = makeVm(flavor, PAUSE);
    const p: GuestPlatform = { ...defaultGuestPlatform(), pauseExits: () => false };
    expect(runGuest(vm.state, vm.memory, 100, vm.exit, undefined, p)).toBe(GuestExitReason.Hlt);
    expect([vm.exit.executed, vm.state.rbx]).toEqual([4, 1]);
  });
});
