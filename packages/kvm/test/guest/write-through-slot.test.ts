/**
 * A slot that `lookup` marks read-only: the guest reads it through the fast path, and each write goes to the memory's
 * `write8`, which decides — refusing it (an MMIO exit, a `KVM_MEM_READONLY` slot) or taking it (a memory that must see
 * every write, such as the bridge's view of a real VMM's RAM while the slot logs dirty pages).
 */
import { describe, expect, test } from 'vitest';
import { GuestCpuState, GuestExit, GuestExitReason, SlotListMemory, X86_EFLAGS_FIXED, runGuest, type GuestMemory } from '../../src/guest/index.js';

/** Guest RAM at 0x1000 whose lookup says read-only; `write8` takes the writes when `accept`, and records them. */
function writeThrough(ram: Uint8Array, accept: boolean): { memory: GuestMemory; writes: Array<[number, number]> } {
  const inner = new SlotListMemory([{ guestPhysAddr: 0x1000, bytes: ram }]);
  const writes: Array<[number, number]> = [];
  const memory: GuestMemory = {
    read8: (gpa) => inner.read8(gpa),
    write8: (gpa, v) => {
      if (!accept) return false;
      writes.push([gpa, v]);
      return inner.write8(gpa, v);
    },
    lookup: (gpa) => {
      const s = inner.lookup(gpa);
      return s === undefined ? undefined : { bytes: s.bytes, base: s.base, end: s.end, readonly: true };
    },
  };
  return { memory, writes };
}

describe('a slot whose writes go through write8', () => {
  // mov word [0x1100], 0x5aa5; mov al, [0x1101]; hlt
  const code = [0xc7, 0x06, 0x00, 0x11, 0xa5, 0x5a, 0xa0, 0x01, 0x11, 0xf4];
  const run = (memory: GuestMemory): { reason: number; exit: GuestExit; state: GuestCpuState } => {
    const state = new GuestCpuState();
    state.cs.loadRealMode(0);
    state.rip = 0x1000;
    state.rflags = X86_EFLAGS_FIXED;
    const exit = new GuestExit();
    return { reason: runGuest(state, memory, 100, exit), exit, state };
  };

  test('taken by write8: the bytes land, one write8 per byte, and the guest reads them back', () => {
    const ram = new Uint8Array(0x1000);
    ram.set(code);
    const { memory, writes } = writeThrough(ram, true);
    const { reason, state } = run(memory);
    expect(reason).toBe(GuestExitReason.Hlt);
    expect(writes).toEqual([
      [0x1100, 0xa5],
      [0x1101, 0x5a],
    ]);
    expect([ram[0x100], ram[0x101]]).toEqual([0xa5, 0x5a]);
    expect(state.rax & 0xff).toBe(0x5a);
  });

  test('refused by write8 (a KVM_MEM_READONLY slot): the write is an MMIO exit, RAM unchanged', () => {
    const ram = new Uint8Array(0x1000);
    ram.set(code);
    const { memory } = writeThrough(ram, false);
    const { reason, exit } = run(memory);
    expect(reason).toBe(GuestExitReason.Mmio);
    expect(exit).toMatchObject({ mmioPhysAddr: 0x1100, mmioLen: 2, mmioIsWrite: 1 });
    expect([exit.data[0], exit.data[1]]).toEqual([0xa5, 0x5a]);
    expect([ram[0x100], ram[0x101]]).toEqual([0, 0]);
  });
});
