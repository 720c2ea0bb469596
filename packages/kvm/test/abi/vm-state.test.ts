/**
 * The VM ioctls a VMM sets a VM up with and the guest I/O the kernel takes itself: the errno of each call recorded on
 * a real /dev/kvm (replayed as record.c made them), then what each does for a running guest — kvmclock, the MSR
 * filter, ioeventfds signalling an eventfd, the coalesced-MMIO ring in the kvm_run mapping, dirty logging of guest
 * writes, the binary stats file, KVM_ENABLE_CAP.
 */
import { eventfd, eventFdOf, type Mapping } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CLEAR_DIRTY_LOG,
  KVM_CREATE_VCPU,
  KVM_ENABLE_CAP,
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_EXIT_MMIO,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_GET_CLOCK,
  KVM_GET_DIRTY_LOG,
  KVM_GET_NR_MMU_PAGES,
  KVM_GET_REGS,
  KVM_GET_STATS_FD,
  KVM_IOEVENTFD,
  KVM_REGISTER_COALESCED_MMIO,
  KVM_RUN,
  KVM_SET_BOOT_CPU_ID,
  KVM_SET_CLOCK,
  KVM_SET_IDENTITY_MAP_ADDR,
  KVM_SET_NR_MMU_PAGES,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_TSS_ADDR,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_USER_MEMORY_REGION2,
  KVM_UNREGISTER_COALESCED_MMIO,
  KVM_X86_SET_MSR_FILTER,
  KVM_GET_SREGS,
  KVM_CAPS,
  makeKvmClearDirtyLog,
  makeKvmClockData,
  makeKvmCoalescedMmioZone,
  makeKvmDirtyLog,
  makeKvmEnableCap,
  makeKvmIoeventfd,
  makeKvmMsrFilter,
  makeKvmRegs,
  makeKvmSregs,
  makeKvmUserspaceMemoryRegion2,
  mapKvmRun,
  vmOf,
  type KvmRunView,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { REAL, errnoOf, openVm, type VmSetup } from './support.js';

/** What `fn` answers, as the recorder wrote it. */
function result(fn: () => number): { ret: number; errno: string | null } {
  try {
    return { ret: fn(), errno: null };
  } catch (e) {
    return { ret: -1, errno: (e as { code?: string }).code ?? String(e) };
  }
}

/** record.c's VM calls (after two vCPUs exist), in its order. */
function vmCases(s: VmSetup): Array<[string, () => number]> {
  const { p, vm } = s;
  const v0 = s.vcpus[0]!;
  const cap = (c: number, arg0: bigint, flags = 0) => () => p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: c, flags, args: [arg0, 0n, 0n, 0n] }));
  const filter = makeKvmMsrFilter();
  const efd = eventfd(p);
  const io = makeKvmIoeventfd({ addr: 0x3f8, len: 1, fd: efd, flags: 2 /* PIO */ });
  const mem = p.mmapAnonymous(0x10000);
  const r2 = makeKvmUserspaceMemoryRegion2({ slot: 3, guest_phys_addr: 0x100000, memory_size: 0x10000, userspace_addr: mem.addr });
  const bitmap = new Uint8Array(32);
  const zone = makeKvmCoalescedMmioZone({ addr: 0x100000, size: 0x1000 });
  const cases: Array<[string, () => number]> = [
    ['set_identity_map_addr', () => p.ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, [0xfeffc000n])],
    ['set_identity_map_addr_after_vcpus', () => p.ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, [0xfeffc000n])],
    ['set_nr_mmu_pages_0', () => p.ioctl(vm, KVM_SET_NR_MMU_PAGES, 0)],
    ['set_nr_mmu_pages_63', () => p.ioctl(vm, KVM_SET_NR_MMU_PAGES, 63)],
    ['set_nr_mmu_pages_64', () => p.ioctl(vm, KVM_SET_NR_MMU_PAGES, 64)],
    ['get_nr_mmu_pages', () => p.ioctl(vm, KVM_GET_NR_MMU_PAGES, 0)],
    ['set_tss_addr_high', () => p.ioctl(vm, KVM_SET_TSS_ADDR, 0xfffff000)],
    ['enable_cap_unknown', cap(0xffff, 0n)],
    ['enable_cap_exception_payload', cap(KVM_CAPS.KVM_CAP_EXCEPTION_PAYLOAD, 1n)],
    ['enable_cap_triple_fault_event', cap(KVM_CAPS.KVM_CAP_X86_TRIPLE_FAULT_EVENT, 1n)],
    ['enable_cap_manual_dirty_log_bad', cap(KVM_CAPS.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 4n)],
    ['enable_cap_manual_dirty_log', cap(KVM_CAPS.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 3n)],
    ['enable_cap_max_vcpu_id_after_vcpus', cap(KVM_CAPS.KVM_CAP_MAX_VCPU_ID, 8n)],
    ['enable_cap_disable_exits_bad', cap(KVM_CAPS.KVM_CAP_X86_DISABLE_EXITS, 0xffn)],
    ['enable_cap_disable_exits_pause_after_vcpus', cap(KVM_CAPS.KVM_CAP_X86_DISABLE_EXITS, 4n)],
    ['enable_cap_exception_payload_flags', cap(KVM_CAPS.KVM_CAP_EXCEPTION_PAYLOAD, 1n, 1)],
    ['msr_filter_bad_flags', () => p.ioctl(vm, KVM_X86_SET_MSR_FILTER, { ...filter, flags: 2 })],
    ['msr_filter_empty_allow', () => p.ioctl(vm, KVM_X86_SET_MSR_FILTER, filter)],
    ['msr_filter_one_range', () => p.ioctl(vm, KVM_X86_SET_MSR_FILTER, { flags: 0, ranges: filter.ranges.map((r, i) => (i === 0 ? { flags: 1, nmsrs: 64, base: 0x10, bitmap: new Uint8Array(8) } : r)) })],
    ['msr_filter_range_bad_flags', () => p.ioctl(vm, KVM_X86_SET_MSR_FILTER, { flags: 0, ranges: filter.ranges.map((r, i) => (i === 0 ? { flags: 4, nmsrs: 64, base: 0x10, bitmap: new Uint8Array(8) } : r)) })],
    ['msr_filter_range_zero_msrs', () => p.ioctl(vm, KVM_X86_SET_MSR_FILTER, { flags: 0, ranges: filter.ranges.map((r, i) => (i === 0 ? { flags: 1, nmsrs: 0, base: 0x10, bitmap: new Uint8Array(8) } : r)) })],
    [
      'msr_filter_range_after_flagless',
      () => p.ioctl(vm, KVM_X86_SET_MSR_FILTER, { flags: 0, ranges: filter.ranges.map((r, i) => (i === 0 ? { flags: 1, nmsrs: 64, base: 0x10, bitmap: new Uint8Array(8) } : i === 1 ? { flags: 0, nmsrs: 1, base: 0, bitmap: new Uint8Array(8) } : r)) }),
    ],
    ['register_coalesced_mmio', () => p.ioctl(vm, KVM_REGISTER_COALESCED_MMIO, zone)],
    ['register_coalesced_mmio_again', () => p.ioctl(vm, KVM_REGISTER_COALESCED_MMIO, zone)],
    ['register_coalesced_mmio_bad_pio', () => p.ioctl(vm, KVM_REGISTER_COALESCED_MMIO, { ...zone, pio: 2 })],
    ['unregister_coalesced_mmio_inside', () => p.ioctl(vm, KVM_UNREGISTER_COALESCED_MMIO, { ...zone, size: 0x800 })],
    ['unregister_coalesced_mmio_none', () => p.ioctl(vm, KVM_UNREGISTER_COALESCED_MMIO, { ...zone, size: 0x800 })],
    ['ioeventfd_pio', () => p.ioctl(vm, KVM_IOEVENTFD, io)],
    ['ioeventfd_pio_again', () => p.ioctl(vm, KVM_IOEVENTFD, io)],
    ['ioeventfd_len3', () => p.ioctl(vm, KVM_IOEVENTFD, { ...io, len: 3 })],
    ['ioeventfd_bad_flags', () => p.ioctl(vm, KVM_IOEVENTFD, { ...io, flags: 1 << 10 })],
    ['ioeventfd_bad_fd', () => p.ioctl(vm, KVM_IOEVENTFD, { ...io, fd: 99 })],
    ['ioeventfd_deassign', () => p.ioctl(vm, KVM_IOEVENTFD, { ...io, flags: 2 | 4 })],
    ['ioeventfd_deassign_again', () => p.ioctl(vm, KVM_IOEVENTFD, { ...io, flags: 2 | 4 })],
    ['ioeventfd_mmio_crossing', () => p.ioctl(vm, KVM_IOEVENTFD, { ...io, flags: 0, addr: 0x1000ffff, len: 4 })],
    ['ioeventfd_len0_datamatch', () => p.ioctl(vm, KVM_IOEVENTFD, { ...io, flags: 1, addr: 0x10001000, len: 0 })],
    ['set_clock_bad_flags', () => p.ioctl(vm, KVM_SET_CLOCK, makeKvmClockData({ flags: 1 << 30 }))],
    ['set_clock_ok', () => p.ioctl(vm, KVM_SET_CLOCK, makeKvmClockData({ clock: 1_000_000_000n }))],
    ['set_clock_pad', () => p.ioctl(vm, KVM_SET_CLOCK, (() => { const b = makeKvmClockDataBytes(1_000_000_000n); b[0x28] = 1; return b; })())],
    ['memory_region2_pad1', () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, (() => { const b = region2Bytes(r2); b[44] = 1; return b; })())],
    ['memory_region2_pad2', () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, (() => { const b = region2Bytes(r2); b[48 + 24] = 1; return b; })())],
    ['memory_region2_guest_memfd', () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, { ...r2, flags: 4 })],
    ['memory_region2_ok', () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, { ...r2, flags: 1 })],
    ['memory_region_gpa_2_53', () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION2, { ...r2, flags: 1, slot: 4, guest_phys_addr: 2 ** 53 })],
    ['get_dirty_log', () => p.ioctl(vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 3, dirty_bitmap: bitmap }))],
    ['get_dirty_log_no_logging', () => p.ioctl(vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 0, dirty_bitmap: bitmap }))],
    ['get_dirty_log_missing_slot', () => p.ioctl(vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 9, dirty_bitmap: bitmap }))],
    ['clear_dirty_log', () => p.ioctl(vm, KVM_CLEAR_DIRTY_LOG, makeKvmClearDirtyLog({ slot: 3, num_pages: 16, first_page: 0, dirty_bitmap: bitmap }))],
    ['clear_dirty_log_unaligned_first', () => p.ioctl(vm, KVM_CLEAR_DIRTY_LOG, makeKvmClearDirtyLog({ slot: 3, num_pages: 16, first_page: 1, dirty_bitmap: bitmap }))],
    ['clear_dirty_log_past_end', () => p.ioctl(vm, KVM_CLEAR_DIRTY_LOG, makeKvmClearDirtyLog({ slot: 3, num_pages: 17, first_page: 0, dirty_bitmap: bitmap }))],
    ['clear_dirty_log_odd_pages', () => p.ioctl(vm, KVM_CLEAR_DIRTY_LOG, makeKvmClearDirtyLog({ slot: 3, num_pages: 3, first_page: 0, dirty_bitmap: bitmap }))],
    ['enable_cap_vcpu_unknown', () => p.ioctl(v0, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: 0 }))],
  ];
  return cases;
}

/** `struct kvm_clock_data` bytes (for the padding case: objects have no pad fields). */
function makeKvmClockDataBytes(clock: bigint): Uint8Array {
  const b = new Uint8Array(48);
  new DataView(b.buffer).setBigUint64(0, clock, true);
  return b;
}

/** `struct kvm_userspace_memory_region2` bytes. */
function region2Bytes(r: ReturnType<typeof makeKvmUserspaceMemoryRegion2>): Uint8Array {
  const b = new Uint8Array(160);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, r.slot, true);
  dv.setUint32(4, r.flags, true);
  dv.setBigUint64(8, BigInt(r.guest_phys_addr), true);
  dv.setBigUint64(16, BigInt(r.memory_size), true);
  dv.setBigUint64(24, BigInt(r.userspace_addr), true);
  return b;
}

/**
 * Where the recording (6.18) and the model's baseline (6.12) differ by release: what 6.12 answers. The 6.18 build's
 * answer to these is checked against the recording in test/builds/builds.test.ts.
 */
const LINUX_VERSION: Readonly<Record<string, { ret: number; errno: string | null }>> = {
  // 04cd8f8628d8 (6.14) refuses KVM_CAP_X86_DISABLE_EXITS once vCPUs exist; 6.12 takes it.
  enable_cap_disable_exits_pause_after_vcpus: { ret: 0, errno: null },
};

describe.each(VENDORS)('VM ioctl errno on $name, against the real kernel', (vendor) => {
  test('each call answers as the real kernel did', () => {
    const s = openVm(vendor, 2);
    const mism: string[] = [];
    for (const [name, fn] of vmCases(s)) {
      const got = result(fn);
      const want = LINUX_VERSION[name] ?? (REAL.errno[name] as unknown);
      if (JSON.stringify(got) !== JSON.stringify(want)) mism.push(`${name}: ${JSON.stringify(got)} (real ${JSON.stringify(want)})`);
    }
    expect(mism).toEqual([]);
  });
});

/** A VM with 64 KiB of memory at 0 (code at 0x1000, stack below 0x8000, `flags` on the slot) and `n` vCPUs in real mode. */
function guest(vendor: (typeof VENDORS)[number], code: readonly number[], opts: { n?: number; flags?: number } = {}): VmSetup & { mem: Mapping; run: KvmRunView } {
  const s = openVm(vendor, 0);
  const m = s.p.mmapAnonymous(0x10000);
  m.bytes.set(code, 0x1000);
  s.p.ioctl(s.vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: opts.flags ?? 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: m.addr });
  const vcpus: number[] = [];
  const runs: KvmRunView[] = [];
  for (let i = 0; i < (opts.n ?? 1); i++) {
    const fd = s.p.ioctl(s.vm, KVM_CREATE_VCPU, i);
    const sr = makeKvmSregs();
    s.p.ioctl(fd, KVM_GET_SREGS, sr);
    sr.cs.base = 0n;
    sr.cs.selector = 0;
    s.p.ioctl(fd, KVM_SET_SREGS, sr);
    s.p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp: 0x8000n, rflags: 2n }));
    vcpus.push(fd);
    runs.push(mapKvmRun(s.p, s.sys, fd));
  }
  return { ...s, vcpus, runs, mem: m, run: runs[0]! };
}

describe.each(VENDORS)('guest I/O the kernel takes, and VM state, on $name', (vendor) => {
  test('KVM_IOEVENTFD: a matching OUT signals the eventfd and does not exit; datamatch; the next OUT exits', () => {
    // mov al,0x42; out 0x10,al; mov al,0x43; out 0x10,al; out 0x11,al; hlt
    const g = guest(vendor, [0xb0, 0x42, 0xe6, 0x10, 0xb0, 0x43, 0xe6, 0x10, 0xe6, 0x11, 0xf4]);
    const any = eventfd(g.p);
    const only42 = eventfd(g.p);
    g.p.ioctl(g.vm, KVM_IOEVENTFD, makeKvmIoeventfd({ addr: 0x10, len: 1, fd: only42, flags: 2 | 1, datamatch: 0x42n }));
    g.p.ioctl(g.vm, KVM_IOEVENTFD, makeKvmIoeventfd({ addr: 0x11, len: 0, fd: any, flags: 2 }));
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    // 0x42 to port 0x10 matched; 0x43 did not (exit), then port 0x11 (any length) matches
    expect(g.run.exit_reason).toBe(KVM_EXIT_IO);
    expect([g.run.io.port, g.run.bytes[g.run.io.data_offset]]).toEqual([0x10, 0x43]);
    expect(eventFdOf(g.p.file(only42))?.count).toBe(1n);
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(eventFdOf(g.p.file(any))?.count).toBe(1n);
    // the process reads it
    expect(new DataView(g.p.read(any, 8).buffer).getBigUint64(0, true)).toBe(1n);
    // deassigned, the OUT exits again
    g.p.ioctl(g.vm, KVM_IOEVENTFD, makeKvmIoeventfd({ addr: 0x10, len: 1, fd: only42, flags: 2 | 1 | 4, datamatch: 0x42n }));
    g.p.ioctl(g.vcpus[0]!, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp: 0x8000n, rflags: 2n }));
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    expect([g.run.exit_reason, g.run.io.port, g.run.bytes[g.run.io.data_offset]]).toEqual([KVM_EXIT_IO, 0x10, 0x42]);
  });

  test('KVM_REGISTER_COALESCED_MMIO: writes into the zone go to the ring in page 2 of the kvm_run mapping, without exits', () => {
    // mov ax,0xd000; mov ds,ax; mov byte [0],0x55; mov word [2],0x6677; hlt
    const g = guest(vendor, [0xb8, 0x00, 0xd0, 0x8e, 0xd8, 0xc6, 0x06, 0x00, 0x00, 0x55, 0xc7, 0x06, 0x02, 0x00, 0x77, 0x66, 0xf4]);
    g.p.ioctl(g.vm, KVM_REGISTER_COALESCED_MMIO, makeKvmCoalescedMmioZone({ addr: 0xd0000, size: 0x1000 }));
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    const ring = g.run.coalesced_mmio;
    expect([ring.first, ring.last]).toEqual([0, 2]);
    expect([ring.physAddr(0), ring.len(0), ring.data(0)[0]]).toEqual([0xd0000, 1, 0x55]);
    expect([ring.physAddr(1), ring.len(1), [...ring.data(1).subarray(0, 2)]]).toEqual([0xd0002, 2, [0x77, 0x66]]);
    // unregistered, the write is an MMIO exit again
    g.p.ioctl(g.vm, KVM_UNREGISTER_COALESCED_MMIO, makeKvmCoalescedMmioZone({ addr: 0xd0000, size: 0x1000 }));
    g.p.ioctl(g.vcpus[0]!, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp: 0x8000n, rflags: 2n }));
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    expect([g.run.exit_reason, g.run.mmio.phys_addr]).toEqual([KVM_EXIT_MMIO, 0xd0000]);
  });

  test('dirty logging: the pages the guest writes, taken by KVM_GET_DIRTY_LOG; with manual protect, kept until KVM_CLEAR_DIRTY_LOG', () => {
    // mov byte [0x3000],1; mov byte [0x5004],2; hlt
    const code = [0xc6, 0x06, 0x00, 0x30, 0x01, 0xc6, 0x06, 0x04, 0x50, 0x02, 0xf4];
    const g = guest(vendor, code, { flags: KVM_MEM_LOG_DIRTY_PAGES });
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect([g.mem.bytes[0x3000], g.mem.bytes[0x5004]]).toEqual([1, 2]);
    const bitmap = new Uint8Array(8);
    expect(g.p.ioctl(g.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 0, dirty_bitmap: bitmap }))).toBe(0);
    expect([...bitmap]).toEqual([(1 << 3) | (1 << 5), 0, 0, 0, 0, 0, 0, 0]);
    expect(g.p.ioctl(g.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 0, dirty_bitmap: bitmap }))).toBe(0);
    expect(bitmap[0]).toBe(0); // taken: nothing written since
    // the VMM's own writes are not the guest's: not logged
    g.mem.bytes[0x7000] = 9;
    // manual protection: GET keeps the bits; CLEAR takes the ones handed back
    const m = guest(vendor, code, { flags: KVM_MEM_LOG_DIRTY_PAGES });
    m.p.ioctl(m.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAPS.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [1n, 0n, 0n, 0n] }));
    m.p.ioctl(m.vcpus[0]!, KVM_RUN, 0);
    const b2 = new Uint8Array(8);
    m.p.ioctl(m.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 0, dirty_bitmap: b2 }));
    m.p.ioctl(m.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 0, dirty_bitmap: b2 }));
    expect(b2[0]).toBe(0x28);
    expect(m.p.ioctl(m.vm, KVM_CLEAR_DIRTY_LOG, makeKvmClearDirtyLog({ slot: 0, first_page: 0, num_pages: 16, dirty_bitmap: new Uint8Array([1 << 3, 0, 0, 0, 0, 0, 0, 0]) }))).toBe(0);
    m.p.ioctl(m.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 0, dirty_bitmap: b2 }));
    expect(b2[0]).toBe(1 << 5);
  });

  test('Vm.guestMemoryView (how @vac/bridge fetches a real VMM’s pages): it sees every guest write, stays on top when dirty logging starts and stops, and the log still sees the writes', () => {
    // mov byte [0x3000],1; mov byte [0x5004],2; hlt
    const code = [0xc6, 0x06, 0x00, 0x30, 0x01, 0xc6, 0x06, 0x04, 0x50, 0x02, 0xf4];
    const g = guest(vendor, code);
    const vm = vmOf(g.p, g.vm);
    const writes: number[] = [];
    vm.guestMemoryView = (inner) => ({
      read8: (gpa) => inner.read8(gpa),
      write8: (gpa, value) => {
        writes.push(gpa);
        return inner.write8(gpa, value);
      },
    });
    vm.guestMemory = vm.guestMemoryView(vm.guestMemory);
    // dirty logging turned on by a flags-only change: the memory is picked again, under the view
    g.p.ioctl(g.vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: g.mem.addr });
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(writes).toEqual([0x3000, 0x5004]);
    expect([g.mem.bytes[0x3000], g.mem.bytes[0x5004]]).toEqual([1, 2]);
    const bitmap = new Uint8Array(8);
    expect(g.p.ioctl(g.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 0, dirty_bitmap: bitmap }))).toBe(0);
    expect(bitmap[0]).toBe((1 << 3) | (1 << 5));
    // and off again: still under the view
    g.p.ioctl(g.vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: g.mem.addr });
    g.p.ioctl(g.vcpus[0]!, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp: 0x8000n, rflags: 2n }));
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    expect(writes).toEqual([0x3000, 0x5004, 0x3000, 0x5004]);
  });

  test('KVM_GET_CLOCK / KVM_SET_CLOCK: kvmclock counts host time from VM creation; a set value is where it continues', () => {
    const s = openVm(vendor, 0);
    const c = makeKvmClockData();
    s.p.ioctl(s.vm, KVM_GET_CLOCK, c);
    expect(c.flags).toBe(2 | 4 | 8); // TSC_STABLE | REALTIME | HOST_TSC: a stable TSC host
    const t0 = c.clock;
    s.host.scheduler.tick();
    s.host.scheduler.tick();
    s.p.ioctl(s.vm, KVM_GET_CLOCK, c);
    expect(c.clock - t0).toBe(2_000_000n); // two 1 ms ticks
    s.p.ioctl(s.vm, KVM_SET_CLOCK, makeKvmClockData({ clock: 5_000_000_000n }));
    s.p.ioctl(s.vm, KVM_GET_CLOCK, c);
    expect(c.clock).toBe(5_000_000_000n);
    s.host.scheduler.tick();
    s.p.ioctl(s.vm, KVM_GET_CLOCK, c);
    expect(c.clock).toBe(5_001_000_000n);
    expect(errnoOf(s.host, () => s.p.ioctl(s.vm, KVM_SET_CLOCK, makeKvmClockData({ flags: 1 })))).toBe('EINVAL');
  });

  test('KVM_X86_SET_MSR_FILTER: a guest RDMSR the filter denies is #GP (delivered through the IVT); allowed ones read', () => {
    // IVT[13] → 0x2000 (an `out 0x99,al; hlt` handler); code: mov ecx,0x10 (TSC); rdmsr; out 0x98,al; mov ecx,0x1b; rdmsr; hlt
    const g = guest(vendor, [0x66, 0xb9, 0x10, 0x00, 0x00, 0x00, 0x0f, 0x32, 0xe6, 0x98, 0x66, 0xb9, 0x1b, 0x00, 0x00, 0x00, 0x0f, 0x32, 0xf4]);
    g.mem.bytes.set([0x00, 0x20, 0x00, 0x00], 13 * 4);
    g.mem.bytes.set([0xe6, 0x99, 0xf4], 0x2000);
    const ranges = makeKvmMsrFilter().ranges.map((r, i) => (i === 0 ? { flags: 1 /* READ */, nmsrs: 64, base: 0, bitmap: new Uint8Array(8).fill(0xff).map((b, j) => (j === 3 ? b & ~(1 << 3) : b)) } : r));
    // MSR 0x1b (bit 27 → byte 3, bit 3) denied for reads, 0x10 allowed
    expect(g.p.ioctl(g.vm, KVM_X86_SET_MSR_FILTER, { flags: 0, ranges })).toBe(0);
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    expect([g.run.exit_reason, g.run.io.port]).toEqual([KVM_EXIT_IO, 0x98]);
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    expect([g.run.exit_reason, g.run.io.port]).toEqual([KVM_EXIT_IO, 0x99]); // the #GP handler
    // KVM_GET_MSRS is not filtered (host-initiated)
  });

  test('KVM_GET_STATS_FD: a read-only file with the binary header, the descriptors and the values', () => {
    const g = guest(vendor, [0xe6, 0x10, 0xe6, 0x10, 0xf4]);
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    g.p.ioctl(g.vcpus[0]!, KVM_RUN, 0);
    for (const [fd, real] of [
      [g.p.ioctl(g.vm, KVM_GET_STATS_FD, 0), REAL.vm_stats],
      [g.p.ioctl(g.vcpus[0]!, KVM_GET_STATS_FD, 0), REAL.vcpu_stats],
    ] as const) {
      const head = new DataView(g.p.read(fd, 24, 0).buffer);
      const h = { flags: head.getUint32(0, true), name_size: head.getUint32(4, true), num_desc: head.getUint32(8, true), id_offset: head.getUint32(12, true), desc_offset: head.getUint32(16, true), data_offset: head.getUint32(20, true) };
      expect([h.flags, h.name_size, h.id_offset, h.desc_offset]).toEqual([real['flags'], real['name_size'], real['id_offset'], real['desc_offset']]);
      expect(h.data_offset).toBe(h.desc_offset + h.num_desc * (16 + h.name_size));
      const id = new TextDecoder().decode(g.p.read(fd, h.name_size, h.id_offset)).replace(/\0.*$/s, '');
      expect(id).toMatch(real === REAL.vm_stats ? /^kvm-\d+$/ : /^kvm-\d+\/vcpu-0$/);
      const descs = g.p.read(fd, h.num_desc * (16 + h.name_size), h.desc_offset);
      const names: string[] = [];
      const full: unknown[] = [];
      for (let i = 0; i < h.num_desc; i++) {
        const at = i * (16 + h.name_size);
        const dv = new DataView(descs.buffer, descs.byteOffset + at, 16);
        const name = new TextDecoder().decode(descs.subarray(at + 16, at + 16 + h.name_size)).replace(/\0.*$/s, '');
        names.push(name);
        full.push({ name, flags: dv.getUint32(0, true), exponent: dv.getInt16(4, true), size: dv.getUint16(6, true), offset: dv.getUint32(8, true), bucket_size: dv.getUint32(12, true) });
      }
      // each descriptor exactly as the real kernel's (type, unit, base, exponent, size, offset in the data block)
      const realByName = new Map((real['descs'] as Array<{ name: string }>).map((d) => [d.name, d]));
      for (const d of full) expect(d).toEqual(realByName.get((d as { name: string }).name));
      // Linux 6.12's statistics: the recording kernel's, in its order, without the ones it added since
      // (mmu_kicks_spared, pf_parked, pf_park_timeouts)
      const realNames = (real['descs'] as Array<{ name: string }>).map((d) => d.name);
      expect(names).toEqual(realNames.filter((n) => !['mmu_kicks_spared', 'pf_parked', 'pf_park_timeouts'].includes(n)));
      expect(errnoOf(g.host, () => g.p.write(fd, new Uint8Array(1)))).toBe(real['write_errno']);
      if (real === REAL.vcpu_stats) {
        const at = names.indexOf('io_exits');
        expect(at).toBeGreaterThanOrEqual(0);
        const off = new DataView(descs.buffer, at * (16 + h.name_size)).getUint32(8, true);
        expect(new DataView(g.p.read(fd, 8, h.data_offset + off).buffer).getBigUint64(0, true)).toBe(2n);
      }
    }
  });

  test('KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID) bounds KVM_CREATE_VCPU; KVM_SET_BOOT_CPU_ID makes another vCPU the BSP', () => {
    const s = openVm(vendor, 0);
    s.p.ioctl(s.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAPS.KVM_CAP_MAX_VCPU_ID, args: [4n, 0n, 0n, 0n] }));
    expect(s.p.ioctl(s.vm, KVM_SET_BOOT_CPU_ID, 2)).toBe(0);
    expect(errnoOf(s.host, () => s.p.ioctl(s.vm, KVM_CREATE_VCPU, 4))).toBe('EINVAL');
    const v2 = s.p.ioctl(s.vm, KVM_CREATE_VCPU, 2);
    const v0 = s.p.ioctl(s.vm, KVM_CREATE_VCPU, 0);
    const sr = makeKvmSregs();
    s.p.ioctl(v2, KVM_GET_SREGS, sr);
    expect(sr.apic_base).toBe(0xfee00900n);
    s.p.ioctl(v0, KVM_GET_SREGS, sr);
    expect(sr.apic_base).toBe(0xfee00800n);
    expect(errnoOf(s.host, () => s.p.ioctl(s.vm, KVM_SET_BOOT_CPU_ID, 0))).toBe('EBUSY');
  });

  test('KVM_X86_DISABLE_EXITS_HLT: HLT stays in the guest (KVM_RUN ends only with a signal: EINTR)', () => {
    const s = openVm(vendor, 0);
    s.p.ioctl(s.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAPS.KVM_CAP_X86_DISABLE_EXITS, args: [2n, 0n, 0n, 0n] }));
    const m = s.p.mmapAnonymous(0x1000);
    m.bytes.set([0xf4]);
    s.p.ioctl(s.vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: m.addr });
    const fd = s.p.ioctl(s.vm, KVM_CREATE_VCPU, 0);
    const run = mapKvmRun(s.p, s.sys, fd);
    const sr = makeKvmSregs();
    s.p.ioctl(fd, KVM_GET_SREGS, sr);
    sr.cs.base = 0n;
    sr.cs.selector = 0;
    s.p.ioctl(fd, KVM_SET_SREGS, sr);
    s.p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rflags: 2n }));
    expect(() => s.p.ioctl(fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }));
    expect(run.exit_reason).not.toBe(KVM_EXIT_HLT);
    const r = makeKvmRegs();
    s.p.ioctl(fd, KVM_GET_REGS, r);
    expect(r.rip).toBe(0x1001n);
  });
});
