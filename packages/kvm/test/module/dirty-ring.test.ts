/**
 * The dirty ring (dirty-ring.ts): KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING / _ACQ_REL) and its errnos (the VM left as it
 * was), the per-vCPU ring mapped from the vCPU fd at KVM_DIRTY_LOG_PAGE_OFFSET, the guest's first write to a page of
 * a logging slot pushed once, KVM_EXIT_DIRTY_RING_FULL at the soft limit, KVM_RESET_DIRTY_RINGS re-arming the pages,
 * and KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG refused (ENXIO) on a VM with a ring.
 */
import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAPS,
  KVM_CHECK_EXTENSION,
  KVM_CLEAR_DIRTY_LOG,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_DIRTY_LOG_PAGE_OFFSET,
  KVM_ENABLE_CAP,
  KVM_EXIT_DIRTY_RING_FULL,
  KVM_EXIT_HLT,
  KVM_GET_DIRTY_LOG,
  KVM_GET_REGS,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_RESET_DIRTY_RINGS,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_USER_MEMORY_REGION,
  PAGE_SIZE,
  makeKvmClearDirtyLog,
  makeKvmDirtyLog,
  makeKvmEnableCap,
  makeKvmRegs,
  mapKvmRun,
  type KvmRunView,
} from '../../src/index.js';
import { startAt1000 } from '../abi/guest-vm.js';
import { errnoOf, openSys, type Sys } from '../abi/support.js';
import { VENDORS } from './helpers.js';

const { KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL } = KVM_CAPS;
const RING = 4096; // 256 entries: soft limit 256 − 64 = 192
const SLOT_BYTES = 0x100000; // 1 MiB: 256 pages

/** A VM of `vendor`, a 1 MiB memory slot at 0 with `flags`, and the process's mapping of it. */
function vmWithMemory(vendor: (typeof VENDORS)[number], ringBytes: number | undefined, flags = KVM_MEM_LOG_DIRTY_PAGES) {
  const s = openSys(vendor);
  const vm = s.p.ioctl(s.sys, KVM_CREATE_VM, 0);
  if (ringBytes !== undefined) s.p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [BigInt(ringBytes), 0n, 0n, 0n] }));
  const mem = s.p.mmapAnonymous(SLOT_BYTES);
  s.p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags, guest_phys_addr: 0, memory_size: SLOT_BYTES, userspace_addr: mem.addr });
  return { ...s, vm, mem };
}

/** A real-mode vCPU running `code` at 0x1000 (CS base 0), with its kvm_run and its ring mapped. */
function vcpuWith(s: Sys & { vm: number; mem: { bytes: Uint8Array } }, code: readonly number[], ringBytes = RING): { fd: number; run: KvmRunView; ring: DataView } {
  s.mem.bytes.set(code, 0x1000);
  const fd = s.p.ioctl(s.vm, KVM_CREATE_VCPU, 0);
  startAt1000(s.p, fd, 0x800n);
  const m = s.p.mmap(fd, ringBytes, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE);
  return { fd, run: mapKvmRun(s.p, s.sys, fd), ring: new DataView(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength) };
}

/** Guest code: one byte written at offset 0 of each of pages `first` … `last` (DS stepping a page at a time), then hlt. */
function writePages(first: number, last: number): number[] {
  const ds = first * 0x100;
  const end = (last + 1) * 0x100;
  return [
    0xb8, ds & 0xff, ds >> 8, // mov ax, first page's segment
    0x8e, 0xd8, // mov ds, ax
    0xc6, 0x06, 0x00, 0x00, 0x01, // loop: mov byte [0], 1
    0x8c, 0xd8, // mov ax, ds
    0x05, 0x00, 0x01, // add ax, 0x100
    0x8e, 0xd8, // mov ds, ax
    0x3d, end & 0xff, end >> 8, // cmp ax, end
    0x75, 0xef, // jne loop
    0xf4, // hlt
  ];
}

/** Guest code: one byte written at each of `gpas` (below 1 MiB), then hlt. */
function writeAt(gpas: readonly number[]): number[] {
  const code: number[] = [];
  for (const gpa of gpas) {
    const seg = (gpa >> 4) & 0xff00;
    const off = gpa - seg * 16;
    code.push(0xb8, seg & 0xff, seg >> 8, 0x8e, 0xd8, 0xc6, 0x06, off & 0xff, off >> 8, 0x5a);
  }
  code.push(0xf4);
  return code;
}

/** The entries from `from` to `to` (indexes, not wrapped): [flags, slot, offset]. */
function entries(ring: DataView, from: number, to: number): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  const n = ring.byteLength / 16;
  for (let i = from; i < to; i++) {
    const at = (i & (n - 1)) * 16;
    out.push([ring.getUint32(at, true), ring.getUint32(at + 4, true), Number(ring.getBigUint64(at + 8, true))]);
  }
  return out;
}

/** User space's harvest: every published entry from `from` on is collected and marked RESET. @returns pages and the next index */
function harvest(ring: DataView, from: number): { pages: number[]; next: number } {
  const n = ring.byteLength / 16;
  const pages: number[] = [];
  let i = from;
  for (;;) {
    const at = (i & (n - 1)) * 16;
    if ((ring.getUint32(at, true) & 1) === 0) break;
    pages.push(Number(ring.getBigUint64(at + 8, true)));
    ring.setUint32(at, 2, true);
    i++;
  }
  return { pages, next: i };
}

function ripOf(s: Sys, fd: number): number {
  const r = makeKvmRegs();
  s.p.ioctl(fd, KVM_GET_REGS, r);
  return Number(r.rip);
}

describe.each(VENDORS)('the dirty ring on $name', (vendor) => {
  test('KVM_CHECK_EXTENSION: both ring capabilities answer the largest ring, 65536 entries of 16 bytes', () => {
    const s = openSys(vendor);
    expect(s.p.ioctl(s.sys, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING)).toBe(65536 * 16);
    expect(s.p.ioctl(s.sys, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL)).toBe(65536 * 16);
  });

  test('KVM_ENABLE_CAP: each errno, the VM unchanged; args[0] a u32; flags ignored; once per VM (either cap); before any vCPU', () => {
    const s = openSys(vendor);
    const vm = () => s.p.ioctl(s.sys, KVM_CREATE_VM, 0);
    const enable = (fd: number, size: bigint, cap = KVM_CAP_DIRTY_LOG_RING, flags = 0) => () => s.p.ioctl(fd, KVM_ENABLE_CAP, makeKvmEnableCap({ cap, flags, args: [size, 0n, 0n, 0n] }));
    const a = vm();
    expect(errnoOf(s.host, enable(a, 0n))).toBe('EINVAL');
    expect(errnoOf(s.host, enable(a, 12288n))).toBe('EINVAL'); // not a power of two
    expect(errnoOf(s.host, enable(a, 2048n))).toBe('EINVAL'); // below a page
    expect(errnoOf(s.host, enable(a, 2n << 20n))).toBe('E2BIG');
    expect(errnoOf(s.host, enable(a, 1n << 32n))).toBe('EINVAL'); // the u32 is 0
    expect(enable(a, (1n << 32n) + 65536n)()).toBe(0); // taken as 65536
    expect(errnoOf(s.host, enable(a, 65536n))).toBe('EINVAL'); // once
    expect(errnoOf(s.host, enable(a, 8192n, KVM_CAP_DIRTY_LOG_RING_ACQ_REL))).toBe('EINVAL'); // either cap
    expect(enable(vm(), 1n << 20n, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 1)()).toBe(0); // the largest; flags not looked at
    const b = vm();
    s.p.ioctl(b, KVM_CREATE_VCPU, 0);
    expect(errnoOf(s.host, enable(b, 65536n))).toBe('EINVAL'); // after a vCPU
  });

  test('KVM_RESET_DIRTY_RINGS: EINVAL without a ring; 0 with an empty one. KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG: ENXIO with a ring', () => {
    const none = vmWithMemory(vendor, undefined);
    expect(errnoOf(none.host, () => none.p.ioctl(none.vm, KVM_RESET_DIRTY_RINGS, 0))).toBe('EINVAL');
    const s = vmWithMemory(vendor, RING);
    s.p.ioctl(s.vm, KVM_CREATE_VCPU, 0);
    expect(s.p.ioctl(s.vm, KVM_RESET_DIRTY_RINGS, 0)).toBe(0);
    const bitmap = new Uint8Array(32);
    expect(errnoOf(s.host, () => s.p.ioctl(s.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 0, dirty_bitmap: bitmap })))).toBe('ENXIO');
    // ENXIO before the slot's checks (an invalid slot, a misaligned first page)
    expect(errnoOf(s.host, () => s.p.ioctl(s.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 40000, dirty_bitmap: bitmap })))).toBe('ENXIO');
    expect(errnoOf(s.host, () => s.p.ioctl(s.vm, KVM_CLEAR_DIRTY_LOG, makeKvmClearDirtyLog({ slot: 0, first_page: 1, num_pages: 64, dirty_bitmap: bitmap })))).toBe('ENXIO');
  });

  test('the ring is mapped from the vCPU fd at KVM_DIRTY_LOG_PAGE_OFFSET, its size; not on a VM without one', () => {
    const s = vmWithMemory(vendor, 2 * RING);
    const fd = s.p.ioctl(s.vm, KVM_CREATE_VCPU, 0);
    expect(s.p.mmap(fd, 2 * RING, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE).bytes.length).toBe(2 * RING);
    expect(s.p.mmap(fd, RING, (KVM_DIRTY_LOG_PAGE_OFFSET + 1) * PAGE_SIZE).bytes.length).toBe(RING);
    expect(() => s.p.mmap(fd, 3 * RING, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE)).toThrow(/dirty ring/);
    const none = vmWithMemory(vendor, undefined);
    const fd2 = none.p.ioctl(none.vm, KVM_CREATE_VCPU, 0);
    expect(() => none.p.mmap(fd2, RING, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE)).toThrow();
  });

  test('push, collect, reset: a page pushed once until reset; the reset re-protects it so the next write pushes again', () => {
    const s = vmWithMemory(vendor, RING);
    // pages 3, 5 and 3 again; hlt — then (second run from 0x1000) the same writes
    const v = vcpuWith(s, writeAt([0x3000, 0x5004, 0x3010]));
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(entries(v.ring, 0, 3)).toEqual([[1, 0, 3], [1, 0, 5], [0, 0, 0]]);
    // the writes went to memory
    expect([s.mem.bytes[0x3000], s.mem.bytes[0x5004], s.mem.bytes[0x3010]]).toEqual([0x5a, 0x5a, 0x5a]);
    // not harvested: a reset resets nothing, and the same writes push nothing (the pages are writable)
    expect(s.p.ioctl(s.vm, KVM_RESET_DIRTY_RINGS, 0)).toBe(0);
    s.p.ioctl(v.fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp: 0x800n, rflags: 2n }));
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(entries(v.ring, 2, 3)).toEqual([[0, 0, 0]]);
    // harvest only the first: the reset stops at the first entry not marked RESET
    v.ring.setUint32(0, 2, true);
    expect(s.p.ioctl(s.vm, KVM_RESET_DIRTY_RINGS, 0)).toBe(1);
    expect(entries(v.ring, 0, 2)).toEqual([[0, 0, 3], [1, 0, 5]]);
    // page 3 is protected again: the next run pushes it (only it) at index 2
    s.p.ioctl(v.fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp: 0x800n, rflags: 2n }));
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(entries(v.ring, 2, 4)).toEqual([[1, 0, 3], [0, 0, 0]]);
    // harvesting both: 2 reset
    v.ring.setUint32(16, 2, true);
    v.ring.setUint32(32, 2, true);
    expect(s.p.ioctl(s.vm, KVM_RESET_DIRTY_RINGS, 0)).toBe(2);
    // the VMM's own writes are not pushed
    s.mem.bytes[0x7000] = 1;
    expect(entries(v.ring, 3, 4)).toEqual([[0, 0, 0]]);
  });

  test('a ring enabled after a logging slot was made: that slot\'s writes are pushed (mark_page_dirty_in_slot looks at the ring)', () => {
    const s = openSys(vendor);
    const vm = s.p.ioctl(s.sys, KVM_CREATE_VM, 0);
    const mem = s.p.mmapAnonymous(SLOT_BYTES);
    s.p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: SLOT_BYTES, userspace_addr: mem.addr });
    s.p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [BigInt(RING), 0n, 0n, 0n] }));
    const v = vcpuWith({ ...s, vm, mem }, writeAt([0x3000, 0x5004]));
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(entries(v.ring, 0, 3)).toEqual([[1, 0, 3], [1, 0, 5], [0, 0, 0]]);
  });

  test('a slot without KVM_MEM_LOG_DIRTY_PAGES pushes nothing', () => {
    const s = vmWithMemory(vendor, RING, 0);
    const v = vcpuWith(s, writeAt([0x3000]));
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(entries(v.ring, 0, 1)).toEqual([[0, 0, 0]]);
  });

  test('soft limit: KVM_EXIT_DIRTY_RING_FULL right after the write that fills it; again until user space resets; then the guest goes on', () => {
    const s = vmWithMemory(vendor, RING);
    const v = vcpuWith(s, writePages(2, 250));
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_DIRTY_RING_FULL);
    // 192 entries (the soft limit: 256 less 64 reserved), pages 2 … 193; the 193rd slot unused
    const pushed = entries(v.ring, 0, 193);
    expect(pushed.slice(0, 192)).toEqual(Array.from({ length: 192 }, (_, i) => [1, 0, 2 + i]));
    expect(pushed[192]).toEqual([0, 0, 0]);
    // the exit came after the write of page 193 (RIP at the next instruction, `mov ax, ds`)
    expect(ripOf(s, v.fd)).toBe(0x100a);
    // KVM_RUN again without a reset: the same exit, nothing run
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_DIRTY_RING_FULL);
    expect(ripOf(s, v.fd)).toBe(0x100a);
    // harvested but not reset: still full
    const h = harvest(v.ring, 0);
    expect(h.pages.length).toBe(192);
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_DIRTY_RING_FULL);
    // reset: the guest writes the remaining pages 194 … 250 (57 entries, below the limit) and halts
    expect(s.p.ioctl(s.vm, KVM_RESET_DIRTY_RINGS, 0)).toBe(192);
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(harvest(v.ring, 192).pages).toEqual(Array.from({ length: 57 }, (_, i) => 194 + i));
  });

  test('re-armed pages after a reset push again, across the ring’s wrap', () => {
    const s = vmWithMemory(vendor, RING);
    const v = vcpuWith(s, writePages(2, 151)); // 150 pages, below the soft limit
    let index = 0;
    for (let round = 0; round < 3; round++) {
      s.p.ioctl(v.fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp: 0x800n, rflags: 2n }));
      s.p.ioctl(v.fd, KVM_RUN, 0);
      expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
      const h = harvest(v.ring, index);
      expect(h.pages).toEqual(Array.from({ length: 150 }, (_, i) => 2 + i));
      index = h.next;
      expect(s.p.ioctl(s.vm, KVM_RESET_DIRTY_RINGS, 0)).toBe(150);
    }
    expect(index).toBe(450); // wrapped the 256 entries
  });

  fcTest.prop([fc.array(fc.array(fc.integer({ min: 2, max: 255 }), { maxLength: 40 }), { minLength: 1, maxLength: 4 })], { numRuns: 20 })(
    'property: after each run, the pages in the ring are the set of pages the guest wrote since the last reset',
    (rounds) => {
      const s = vmWithMemory(vendor, RING);
      let v: ReturnType<typeof vcpuWith> | undefined;
      let index = 0;
      for (const pages of rounds) {
        const code = writeAt(pages.map((p) => p * PAGE_SIZE + 7));
        if (v === undefined) v = vcpuWith(s, code);
        else {
          s.mem.bytes.fill(0, 0x1000, 0x2000);
          s.mem.bytes.set(code, 0x1000);
          s.p.ioctl(v.fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp: 0x800n, rflags: 2n }));
        }
        s.p.ioctl(v.fd, KVM_RUN, 0);
        expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
        const h = harvest(v.ring, index);
        // each page once, in the order first written
        expect(h.pages).toEqual([...new Set(pages)]);
        expect(s.p.ioctl(s.vm, KVM_RESET_DIRTY_RINGS, 0)).toBe(h.pages.length);
        index = h.next;
      }
    },
  );
});

describe('the dirty ring with a coalesced reset', () => {
  test('entries of one slot within 64 pages are re-protected as one mask; a mask running past the slot re-protects nothing (kvm_reset_dirty_gfn)', () => {
    const vendor = VENDORS[0];
    const s = vmWithMemory(vendor, RING);
    const v = vcpuWith(s, writeAt([0xfe000, 0xff000]));
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(entries(v.ring, 0, 2)).toEqual([[1, 0, 0xfe], [1, 0, 0xff]]);
    // user space rewrites the second entry's offset to a page past the slot (256): the coalesced mask 0xfe + bit 2
    // runs past the slot, so neither page is re-protected
    v.ring.setBigUint64(16 + 8, 0x100n, true);
    v.ring.setUint32(0, 2, true);
    v.ring.setUint32(16, 2, true);
    expect(s.p.ioctl(s.vm, KVM_RESET_DIRTY_RINGS, 0)).toBe(2);
    s.p.ioctl(v.fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp: 0x800n, rflags: 2n }));
    s.p.ioctl(v.fd, KVM_RUN, 0);
    expect(entries(v.ring, 2, 3)).toEqual([[0, 0, 0]]);
  });
});

describe('the dirty ring with two vCPUs', () => {
  test('each vCPU pushes its own writes onto its own ring; KVM_RESET_DIRTY_RINGS counts over both', () => {
    const vendor = VENDORS[1];
    const s = vmWithMemory(vendor, RING);
    // vCPU 0 runs the code at 0x1000 (page 3), vCPU 1 the code at 0x1800 (pages 5 and 3)
    const v0 = vcpuWith(s, writeAt([0x3000]));
    s.mem.bytes.set(writeAt([0x5000, 0x3008]), 0x1800);
    const fd1 = s.p.ioctl(s.vm, KVM_CREATE_VCPU, 1);
    startAt1000(s.p, fd1, 0x800n);
    s.p.ioctl(fd1, KVM_SET_REGS, makeKvmRegs({ rip: 0x1800n, rsp: 0x800n, rflags: 2n }));
    const m1 = s.p.mmap(fd1, RING, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE);
    const ring1 = new DataView(m1.bytes.buffer, m1.bytes.byteOffset, m1.bytes.byteLength);
    s.p.ioctl(v0.fd, KVM_RUN, 0);
    s.p.ioctl(fd1, KVM_RUN, 0);
    // page 3 was made writable by vCPU 0's push: vCPU 1's write to it pushes nothing
    expect(entries(v0.ring, 0, 2)).toEqual([[1, 0, 3], [0, 0, 0]]);
    expect(entries(ring1, 0, 2)).toEqual([[1, 0, 5], [0, 0, 0]]);
    harvest(v0.ring, 0);
    harvest(ring1, 0);
    expect(s.p.ioctl(s.vm, KVM_RESET_DIRTY_RINGS, 0)).toBe(2);
  });
});
