/**
 * The dirty ring in the VMM helpers' save and restore of a whole VM (vmm-dirty-ring.ts) and in `host.snapshot()`:
 * `saveVm` harvests every vCPU's ring and resets it (QEMU's `kvm_dirty_ring_reap`), `restoreVm` enables a ring of the
 * same size before anything else; a guest moved mid-run pushes exactly the entries one that was not moved pushes.
 */
import { fc, test as fcTest } from '@fast-check/vitest';
import { O_RDWR, createHost, isUsageError, type Host, type Mapping, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAPS,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_DIRTY_LOG_PAGE_OFFSET,
  KVM_ENABLE_CAP,
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_RUN,
  KVM_SET_USER_MEMORY_REGION,
  PAGE_SIZE,
  kvm,
  makeKvmEnableCap,
  mapKvmRun,
  restoreVm,
  saveVm,
  type VmHandle,
  type kvm_userspace_memory_region,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { startAt1000 } from './guest-vm.js';

const { KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL } = KVM_CAPS;
const RING = 4096; // 256 entries
const SLOT_BYTES = 0x100000;

function twoModules(vendor: (typeof VENDORS)[number]): { host: Host; p: Process } {
  const host = createHost({ cpus: 2, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  return { host, p: host.spawn({ uid: 1000, groups: ['kvm'] }) };
}

/** Guest code: per page in `pages`, one byte written at its offset 0x10, then `out 0x80, al` (an exit); then hlt. */
function writeEach(pages: readonly number[]): number[] {
  const code: number[] = [];
  for (const page of pages) {
    const seg = page * 0x100;
    code.push(0xb8, seg & 0xff, seg >> 8, 0x8e, 0xd8, 0xc6, 0x06, 0x10, 0x00, 0x5a, 0xe6, 0x80);
  }
  code.push(0xf4);
  return code;
}

interface RingVm {
  readonly handle: VmHandle;
  readonly mem: Mapping;
  readonly slots: kvm_userspace_memory_region[];
}

/** A VM on `dev` with a ring of `bytes` (ACQ_REL when `acqRel`), a logging slot over `mem`, vCPU 0 at 0x1000. */
function ringVm(p: Process, dev: string, mem: Mapping, bytes: number | undefined, acqRel = false): RingVm {
  const sys = p.open(dev, O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  if (bytes !== undefined) p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: acqRel ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING, args: [BigInt(bytes), 0n, 0n, 0n] }));
  const slots = [{ slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: SLOT_BYTES, userspace_addr: mem.addr }];
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, slots[0]!);
  const fd = p.ioctl(vm, KVM_CREATE_VCPU, 0);
  startAt1000(p, fd, 0x800n);
  const handle: VmHandle = { sys, vm, vcpus: [{ id: 0, fd, run: mapKvmRun(p, sys, fd) }], ...(bytes === undefined ? {} : { dirtyRing: { bytes, acqRel } }) };
  return { handle, mem, slots };
}

/** KVM_RUN until `exits` I/O exits have happened or the guest halts. @returns whether it halted */
function runExits(p: Process, h: VmHandle, exits: number): boolean {
  const v = h.vcpus[0]!;
  for (let i = 0; i < exits; i++) {
    p.ioctl(v.fd, KVM_RUN, 0);
    if (v.run.exit_reason === KVM_EXIT_HLT) return true;
    expect(v.run.exit_reason).toBe(KVM_EXIT_IO);
  }
  return false;
}

/** The published entries of vCPU `fd`'s ring from index `from` (read from the mapping): [flags, slot, offset]. */
function published(p: Process, fd: number, bytes: number, from: number): Array<[number, number, number]> {
  const m = p.mmap(fd, bytes, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE);
  const dv = new DataView(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
  const n = bytes / 16;
  const out: Array<[number, number, number]> = [];
  for (let i = from; i < from + n; i++) {
    const at = (i & (n - 1)) * 16;
    const flags = dv.getUint32(at, true);
    if ((flags & 1) === 0) break;
    out.push([flags, dv.getUint32(at + 4, true), Number(dv.getBigUint64(at + 8, true))]);
  }
  p.munmap(m.addr, m.length);
  return out;
}

/** The x86 snapshot of `kvmX`'s VMs (`host.snapshot()`'s `kvmX:x86`). */
function x86Snapshot(host: Host, module: string): Array<{ vcpus: Array<{ dirtyRing?: { dirtyIndex: number; resetIndex: number; softFull: boolean; bytes: string } }> }> {
  return host.snapshot().providers[`${module}:x86`] as Array<{ vcpus: Array<{ dirtyRing?: { dirtyIndex: number; resetIndex: number; softFull: boolean; bytes: string } }> }>;
}

describe.each(VENDORS)('the dirty ring in saveVm / restoreVm on $name', (vendor) => {
  test('saveVm harvests every published entry (oldest first) and resets the ring; restoreVm enables a ring of the same size before the vCPUs', () => {
    const { host, p } = twoModules(vendor);
    const mem = p.mmapAnonymous(SLOT_BYTES);
    mem.bytes.set(writeEach([9, 12, 9, 40]), 0x1000);
    const src = ringVm(p, '/dev/kvm0', mem, 2 * RING, true);
    expect(runExits(p, src.handle, 4)).toBe(false);
    const saved = saveVm(p, src.handle);
    // page 9 twice: pushed once (the page stays writable until the reset)
    expect(saved.dirtyRing).toEqual({ config: { bytes: 2 * RING, acqRel: true }, harvested: [{ vcpu: 0, slot: 0, offset: 9 }, { vcpu: 0, slot: 0, offset: 12 }, { vcpu: 0, slot: 0, offset: 40 }] });
    // harvested and reset: every entry recycled (flags 0), the pages protected again
    expect(x86Snapshot(host, 'kvm0')[0]!.vcpus[0]!.dirtyRing).toMatchObject({ dirtyIndex: 3, resetIndex: 3, softFull: false });
    expect(published(p, src.handle.vcpus[0]!.fd, 2 * RING, 0)).toEqual([]);
    // saved again at once: nothing new
    expect(saveVm(p, src.handle).dirtyRing?.harvested).toEqual([]);
    const copy = restoreVm(p, '/dev/kvm1', saved, { slots: src.slots });
    const fd = copy.vcpus[0]!.fd;
    // the ring is there, of the saved size, and was enabled before the vCPU (a second enable is refused)
    expect(p.mmap(fd, 2 * RING, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE).bytes.length).toBe(2 * RING);
    expect(() => p.mmap(fd, 4 * RING, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE)).toThrow(/dirty ring/);
    expect(() => p.ioctl(copy.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [BigInt(RING), 0n, 0n, 0n] }))).toThrow(expect.objectContaining({ code: 'EINVAL' }) as unknown as Error);
    expect(x86Snapshot(host, 'kvm1')[0]!.vcpus[0]!.dirtyRing).toMatchObject({ dirtyIndex: 0, resetIndex: 0, softFull: false });
  });

  test('a VM with a ring saved without its size: refused (ERR_INVALID_STATE), its ring as it was; a VM without one: no dirtyRing', () => {
    const { host, p } = twoModules(vendor);
    const mem = p.mmapAnonymous(SLOT_BYTES);
    mem.bytes.set(writeEach([9]), 0x1000);
    const src = ringVm(p, '/dev/kvm0', mem, RING);
    runExits(p, src.handle, 1);
    const before = x86Snapshot(host, 'kvm0')[0]!.vcpus[0]!.dirtyRing;
    const { dirtyRing: _ring, ...bare } = src.handle;
    let error: unknown;
    try {
      saveVm(p, bare);
    } catch (e) {
      error = e;
    }
    expect(isUsageError(error, 'ERR_INVALID_STATE')).toBe(true);
    expect(x86Snapshot(host, 'kvm0')[0]!.vcpus[0]!.dirtyRing).toEqual(before); // nothing harvested: the entry still published
    expect(published(p, src.handle.vcpus[0]!.fd, RING, 0)).toEqual([[1, 0, 9]]);
    const plain = ringVm(p, '/dev/kvm1', p.mmapAnonymous(SLOT_BYTES), undefined);
    expect(saveVm(p, plain.handle).dirtyRing).toBeUndefined();
  });

  test('host.snapshot() holds each ring (its pages, indices, soft-full): a push changes it, a refused call does not', () => {
    const { host, p } = twoModules(vendor);
    const mem = p.mmapAnonymous(SLOT_BYTES);
    mem.bytes.set(writeEach([20, 21]), 0x1000);
    const src = ringVm(p, '/dev/kvm0', mem, RING);
    const fd = src.handle.vcpus[0]!.fd;
    const empty = x86Snapshot(host, 'kvm0');
    expect(empty[0]!.vcpus[0]!.dirtyRing).toMatchObject({ dirtyIndex: 0, resetIndex: 0, softFull: false });
    runExits(p, src.handle, 1);
    const one = host.snapshot();
    expect(x86Snapshot(host, 'kvm0')[0]!.vcpus[0]!.dirtyRing).toMatchObject({ dirtyIndex: 1, resetIndex: 0 });
    expect(x86Snapshot(host, 'kvm0')[0]!.vcpus[0]!.dirtyRing?.bytes).not.toBe(empty[0]!.vcpus[0]!.dirtyRing?.bytes);
    // refused: a second ring, a mapping past the ring — the host as it was
    expect(() => p.ioctl(src.handle.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_DIRTY_LOG_RING, args: [BigInt(RING), 0n, 0n, 0n] }))).toThrow();
    expect(() => p.mmap(fd, 2 * RING, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE)).toThrow();
    expect(host.snapshot()).toEqual(one);
    // user space marking an entry RESET writes the ring's pages: the snapshot sees it
    const m = p.mmap(fd, RING, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE);
    m.bytes[0] = 2;
    expect(x86Snapshot(host, 'kvm0')[0]!.vcpus[0]!.dirtyRing?.bytes).not.toBe((one.providers['kvm0:x86'] as typeof empty)[0]!.vcpus[0]!.dirtyRing?.bytes);
  });

  fcTest.prop(
    [fc.array(fc.integer({ min: 8, max: 255 }), { minLength: 1, maxLength: 24 }), fc.nat(), fc.boolean()],
    { numRuns: 12 },
  )('a guest moved mid-run pushes exactly what one that was not moved pushes (the same harvest at the move), and writes the same memory', (pages, at, acqRel) => {
    const { p } = twoModules(vendor);
    const code = writeEach(pages);
    const moveAt = at % (pages.length + 1);
    // the reference: harvested and reset at the same point (saveVm's first step), never moved
    const refMem = p.mmapAnonymous(SLOT_BYTES);
    refMem.bytes.set(code, 0x1000);
    const ref = ringVm(p, '/dev/kvm0', refMem, RING, acqRel);
    runExits(p, ref.handle, moveAt);
    const refHarvest = saveVm(p, ref.handle).dirtyRing?.harvested;
    const refFrom = x86Snapshot(p.host, 'kvm0')[0]!.vcpus[0]!.dirtyRing!.dirtyIndex;
    expect(runExits(p, ref.handle, pages.length + 1)).toBe(true);
    // the moved one: saved on kvm0, restored on kvm1 over the same memory, run to the end there
    const mem = p.mmapAnonymous(SLOT_BYTES);
    mem.bytes.set(code, 0x1000);
    const src = ringVm(p, '/dev/kvm0', mem, RING, acqRel);
    runExits(p, src.handle, moveAt);
    const saved = saveVm(p, src.handle);
    expect(saved.dirtyRing?.harvested).toEqual(refHarvest);
    const copy = restoreVm(p, '/dev/kvm1', saved, { slots: src.slots });
    const moved: VmHandle = { sys: copy.sys, vm: copy.vm, vcpus: copy.vcpus, dirtyRing: saved.dirtyRing!.config };
    expect(runExits(p, moved, pages.length + 1)).toBe(true);
    expect(published(p, copy.vcpus[0]!.fd, RING, 0)).toEqual(published(p, ref.handle.vcpus[0]!.fd, RING, refFrom));
    expect(Buffer.compare(mem.bytes, refMem.bytes)).toBe(0);
  });
});
