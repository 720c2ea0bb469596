/**
 * KVM_SET_USER_MEMORY_REGION(2) with addresses and sizes from 2^53 up (virt/kvm/kvm_main.c kvm_set_memory_region,
 * arch/x86/kvm/x86.c kvm_arch_prepare_memory_region): the kernel copies them exactly (a `bigint` from 2^53 up, or the
 * C structure's bytes) and checks them as Linux does — EINVAL, never EFAULT, with the slots as they were; a
 * deletion ignores its (aligned) guest address; an overlap is EEXIST before the address width is checked.
 */
import { O_RDWR, PAGE_SIZE, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION, KVM_SET_USER_MEMORY_REGION2, encodeKvmUserspaceMemoryRegion, kvm, vmOf } from '../../src/index.js';
import { errnoOf, makeHost, vmmProcess, VENDORS } from './helpers.js';

/** A VM with slot 1 at 0x100000 (4 pages) over anonymous memory. */
function setup(vendor: (typeof VENDORS)[number]): { p: Process; vm: number; uaddr: number; slots: () => unknown } {
  const host = makeHost(vendor.hardware(), 2);
  host.modprobe(kvm({ postfix: '0' }));
  const p = vmmProcess(host);
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const uaddr = p.mmapAnonymous(16 * PAGE_SIZE).addr;
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 1, flags: 0, guest_phys_addr: 0x100000, memory_size: 4 * PAGE_SIZE, userspace_addr: uaddr });
  const slots = (): unknown => vmOf(p, vm).memslots.list().map((s) => [s.asId, s.id, s.base, s.size, s.userspaceAddr, s.flags]);
  return { p, vm, uaddr, slots };
}

/** The C bytes of a `kvm_userspace_memory_region` with exact 64-bit fields. */
function regionBytes(slot: number, gpa: bigint, size: bigint, uaddr: bigint): Uint8Array {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  encodeKvmUserspaceMemoryRegion({ slot, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0 }, v);
  v.setBigUint64(8, gpa, true);
  v.setBigUint64(16, size, true);
  v.setBigUint64(24, uaddr, true);
  return b;
}

describe.each(VENDORS)('memory slots with 64-bit values beyond 2^53 ($name)', (vendor) => {
  test('an address or size from 2^53 up (bigint, number or bytes) is EINVAL, the slots unchanged', () => {
    const { p, vm, uaddr, slots } = setup(vendor);
    const before = slots();
    const cases: Array<[string, Record<string, unknown>]> = [
      ['gpa 2^53 + 4 KiB', { guest_phys_addr: 2n ** 53n + 4096n }],
      ['gpa 2^64 - 1 MiB', { guest_phys_addr: 2n ** 64n - 2n ** 20n }],
      ['gpa + size wraps', { guest_phys_addr: 2n ** 64n - 4096n, memory_size: 0x100000 }],
      ['gpa 2^60 as a number', { guest_phys_addr: 2 ** 60 }],
      ['size 2^53 + 4 KiB', { memory_size: 2n ** 53n + 4096n }],
      ['uaddr 2^53 + 4 KiB', { userspace_addr: 2n ** 53n + 4096n }],
      ['uaddr in the kernel half', { userspace_addr: 0xffff800000000000n }],
    ];
    for (const [what, change] of cases) {
      const arg = { slot: 2, flags: 0, guest_phys_addr: 0x200000, memory_size: PAGE_SIZE, userspace_addr: uaddr, ...change };
      expect([what, errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, arg))]).toEqual([what, 'EINVAL']);
      expect([what, errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, { ...arg, guest_memfd_offset: 0, guest_memfd: 0 }))]).toEqual([what, 'EINVAL']);
    }
    // The C structure's bytes carry the same values exactly.
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, regionBytes(2, 2n ** 53n + 4096n, 4096n, BigInt(uaddr))))).toBe('EINVAL');
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, regionBytes(2, 0x200000n, 2n ** 63n, BigInt(uaddr))))).toBe('EINVAL');
    // Moving slot 1 beyond 2^53: EINVAL (kvm_mmu_max_gfn), and it stays where it was.
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 1, flags: 0, guest_phys_addr: 2n ** 53n, memory_size: 4 * PAGE_SIZE, userspace_addr: uaddr }))).toBe('EINVAL');
    expect(slots()).toEqual(before);
  });

  test('a bigint below 2^53 is not the canonical form of the value (EFAULT), as a number is not for a register', () => {
    const { p, vm, uaddr, slots } = setup(vendor);
    const before = slots();
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 2, flags: 0, guest_phys_addr: 0x200000n, memory_size: PAGE_SIZE, userspace_addr: uaddr }))).toBe('EFAULT');
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 2, flags: 0, guest_phys_addr: 2n ** 64n, memory_size: PAGE_SIZE, userspace_addr: uaddr }))).toBe('EFAULT');
    expect(slots()).toEqual(before);
  });

  test('deleting a slot ignores its guest address once aligned: 2^60 deletes, 2^53 + 1 (exact, unaligned) is EINVAL', () => {
    const { p, vm, uaddr, slots } = setup(vendor);
    const before = slots();
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 1, flags: 0, guest_phys_addr: 2n ** 53n + 1n, memory_size: 0, userspace_addr: uaddr }))).toBe('EINVAL');
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 1, flags: 0, guest_phys_addr: 2 ** 53 + 2, memory_size: 0, userspace_addr: uaddr }))).toBe('EINVAL');
    expect(slots()).toEqual(before);
    expect(p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, regionBytes(1, 2n ** 60n, 0n, BigInt(uaddr)))).toBe(0);
    expect(slots()).toEqual([]);
    // A slot that does not exist cannot be deleted, wherever its address.
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 1, flags: 0, guest_phys_addr: 2n ** 60n, memory_size: 0, userspace_addr: uaddr }))).toBe('EINVAL');
  });

  test('below 2^53: an overlap is EEXIST before the end beyond 2^52 is EINVAL; a deletion at 2^52 succeeds', () => {
    const { p, vm, uaddr, slots } = setup(vendor);
    const top = 2 ** 52;
    p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 3, flags: 0, guest_phys_addr: top - 2 * PAGE_SIZE, memory_size: PAGE_SIZE, userspace_addr: uaddr + 8 * PAGE_SIZE });
    const before = slots();
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 4, flags: 0, guest_phys_addr: top - 2 * PAGE_SIZE, memory_size: 4 * PAGE_SIZE, userspace_addr: uaddr }))).toBe('EEXIST');
    expect(errnoOf(() => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 4, flags: 0, guest_phys_addr: top - PAGE_SIZE, memory_size: 2 * PAGE_SIZE, userspace_addr: uaddr }))).toBe('EINVAL');
    expect(slots()).toEqual(before);
    // The last page below 2^52 is a slot's to have.
    expect(p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 4, flags: 0, guest_phys_addr: top - PAGE_SIZE, memory_size: PAGE_SIZE, userspace_addr: uaddr + 12 * PAGE_SIZE })).toBe(0);
    expect(p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 4, flags: 0, guest_phys_addr: top, memory_size: 0, userspace_addr: 0 })).toBe(0);
    expect(slots()).toEqual(before);
  });
});
