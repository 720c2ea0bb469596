/**
 * The bridge's lazy guest memory on its own: the fast path's page-sized slots and what they touch in the mirror,
 * and the address-space translation. (With a real VMM, through the mirror's /proc/PID/mem: vmm.test.ts, the memory
 * coherence and SMM tests.)
 */
import { SlotListMemory, type Memslot } from '@vac/kvm';
import { describe, expect, test } from 'vitest';
import type { GuestMemoryMirror } from '../src/guest-memory.js';
import { LazyGuestMemory, setLazyLookup, type SlotFinder } from '../src/lazy-memory.js';

/** A mirror that only records what the view touches: [VMM address, length, write]. */
function recordingMirror(): { mirror: GuestMemoryMirror; touched: Array<[number, number, boolean]> } {
  const touched: Array<[number, number, boolean]> = [];
  const fake = {
    touch: (addr: number, write: boolean) => touched.push([addr, 1, write]),
    touchRange: (addr: number, len: number, write: boolean) => touched.push([addr, len, write]),
  };
  return { mirror: fake as unknown as GuestMemoryMirror, touched };
}

const slot = (base: number, bytes: Uint8Array, userspaceAddr: number, flags = 0): Memslot =>
  ({ id: 0, asId: 0, flags, userspaceAddr, size: bytes.length, backed: true, base, end: base + bytes.length, readonly: (flags & 2) !== 0, bytes }) as Memslot;

describe('LazyGuestMemory', () => {
  const ram = new Uint8Array(0x3000).map((_, i) => i & 0xff);
  const rom = new Uint8Array(0x1000).fill(0xee);
  const inner = new SlotListMemory([
    { guestPhysAddr: 0x10000, bytes: ram },
    { guestPhysAddr: 0xf0000, bytes: rom, readonly: true },
  ]);
  const ramSlot = slot(0x10000, ram, 0x7f0000000000);
  const romSlot = slot(0xf0000, rom, 0x7f1000000000, 2); // KVM_MEM_READONLY
  const find: SlotFinder = (gpa) => (gpa >= 0x10000 && gpa < 0x13000 ? ramSlot : gpa >= 0xf0000 && gpa < 0xf1000 ? romSlot : undefined);

  test('lookup: the guest page holding the address, as a slot over the same bytes, touched whole (and marked written when writable)', () => {
    const { mirror, touched } = recordingMirror();
    const m = new LazyGuestMemory(inner, find, mirror);
    const s = m.lookup?.(0x11234);
    expect(s).toMatchObject({ base: 0x11000, end: 0x12000, readonly: false });
    expect(s?.bytes.length).toBe(0x1000);
    expect(s?.bytes[0x234]).toBe(0x34);
    // The same bytes: a write through the page slot is a write to the slot's memory.
    (s as NonNullable<typeof s>).bytes[0x235] = 0xab;
    expect(ram[0x1235]).toBe(0xab);
    expect(touched).toEqual([[0x7f0000001000, 0x1000, true]]);
    // A read-only slot's page: touched for reading only, and the slot says read-only (the guest's writes exit).
    expect(m.lookup?.(0xf0010)).toMatchObject({ base: 0xf0000, end: 0xf1000, readonly: true });
    expect(touched.at(-1)).toEqual([0x7f1000000000, 0x1000, false]);
    // No slot: no page (an MMIO access), nothing touched.
    expect(m.lookup?.(0x20000)).toBeUndefined();
    expect(touched.length).toBe(2);
    // Every lookup touches again (a sync between runs forgets the loaded pages), with the same slot object.
    expect(m.lookup?.(0x11fff)).toBe(s);
    expect(touched.length).toBe(3);
  });

  test('a slot that logs dirty pages: its pages are read-only to the fast path (each write goes through write8, where the dirty-logging view under it marks the page), touched for reading', () => {
    const { mirror, touched } = recordingMirror();
    const logged = slot(0x10000, ram, 0x7f0000000000, 1); // KVM_MEM_LOG_DIRTY_PAGES
    const writes: number[] = [];
    const dirtyView = { read8: (gpa: number) => inner.read8(gpa), write8: (gpa: number, v: number) => (writes.push(gpa), inner.write8(gpa, v)) };
    const m = new LazyGuestMemory(dirtyView, (gpa) => (gpa >= 0x10000 && gpa < 0x13000 ? logged : undefined), mirror);
    expect(m.lookup?.(0x12010)).toMatchObject({ base: 0x12000, end: 0x13000, readonly: true });
    expect(touched).toEqual([[0x7f0000002000, 0x1000, false]]);
    expect(m.write8(0x12010, 7)).toBe(true);
    expect(writes).toEqual([0x12010]);
    expect(touched.at(-1)).toEqual([0x7f0000002010, 1, true]);
  });

  test('setLazyLookup(false): views made then have no fast path (every byte through read8/write8)', () => {
    setLazyLookup(false);
    try {
      expect(new LazyGuestMemory(inner, find, recordingMirror().mirror).lookup).toBeUndefined();
    } finally {
      setLazyLookup(true);
    }
    expect(new LazyGuestMemory(inner, find, recordingMirror().mirror).lookup).toBeDefined();
  });

  test('addresses go through the finder of the view’s own address space (SMRAM that address space 0 does not map)', () => {
    const { mirror, touched } = recordingMirror();
    const as0: SlotFinder = () => undefined;
    const as1 = find;
    new LazyGuestMemory(inner, as0, mirror).lookup?.(0x10000);
    expect(touched).toEqual([]);
    new LazyGuestMemory(inner, as1, mirror).lookup?.(0x10000);
    expect(touched).toEqual([[0x7f0000000000, 0x1000, true]]);
  });
});
