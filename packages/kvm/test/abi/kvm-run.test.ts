import { describe, expect, test } from 'vitest';
import {
  KVM_COALESCED_MMIO_ENTRY_SIZE,
  KVM_COALESCED_MMIO_MAX,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_OUT,
  KVM_INTERNAL_ERROR_EMULATION,
  KVM_PIO_DATA_OFFSET,
  KVM_RUN_EXIT_UNION_OFFSET,
  KVM_RUN_EXIT_UNION_SIZE,
  KVM_RUN_OFFSETS,
  KVM_RUN_SIZE,
  KVM_SYNC_X86_REGS,
  KVM_VCPU_MMAP_SIZE,
  KvmRunView,
  makeKvmRegs,
  makeKvmSegment,
  makeKvmSregs,
} from '../../src/abi/index.js';

/** x86-64 offsets in struct kvm_run, worked out by hand from include/uapi/linux/kvm.h. */
const OFFSETS: Record<keyof typeof KVM_RUN_OFFSETS, number> = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  ready_for_interrupt_injection: 12,
  if_flag: 13,
  flags: 14,
  cr8: 16,
  apic_base: 24,
  'hw.hardware_exit_reason': 32,
  'fail_entry.hardware_entry_failure_reason': 32,
  'fail_entry.cpu': 40,
  'ex.exception': 32,
  'ex.error_code': 36,
  'io.direction': 32,
  'io.size': 33,
  'io.port': 34,
  'io.count': 36,
  'io.data_offset': 40,
  'debug.arch.exception': 32,
  'debug.arch.pc': 40,
  'debug.arch.dr6': 48,
  'debug.arch.dr7': 56,
  'mmio.phys_addr': 32,
  'mmio.data': 40,
  'mmio.len': 48,
  'mmio.is_write': 52,
  'hypercall.nr': 32,
  'hypercall.args': 40,
  'hypercall.ret': 88,
  'hypercall.flags': 96,
  'tpr_access.rip': 32,
  'tpr_access.is_write': 40,
  'internal.suberror': 32,
  'internal.ndata': 36,
  'internal.data': 40,
  'emulation_failure.flags': 40,
  'emulation_failure.insn_size': 48,
  'emulation_failure.insn_bytes': 49,
  'system_event.type': 32,
  'system_event.ndata': 36,
  'system_event.data': 40,
  'eoi.vector': 32,
  'msr.error': 32,
  'msr.reason': 40,
  'msr.index': 44,
  'msr.data': 48,
  'notify.flags': 32,
  'memory_fault.flags': 32,
  'memory_fault.gpa': 40,
  'memory_fault.size': 48,
  kvm_valid_regs: 288,
  kvm_dirty_regs: 296,
  's.regs.regs': 304,
  's.regs.sregs': 304 + 144,
  's.regs.events': 304 + 144 + 312,
};

describe('struct kvm_run layout', () => {
  test('offsets match the C structure', () => {
    expect({ ...KVM_RUN_OFFSETS }).toEqual(OFFSETS);
    expect(KVM_RUN_EXIT_UNION_OFFSET).toBe(32);
    expect(KVM_RUN_EXIT_UNION_SIZE).toBe(256);
    expect(KVM_RUN_SIZE).toBe(2352);
    expect(KVM_RUN_SIZE).toBeLessThanOrEqual(4096);
    expect(KVM_COALESCED_MMIO_ENTRY_SIZE).toBe(24);
  });
});

describe('KvmRunView', () => {
  test('allocates a zeroed 3-page area by default', () => {
    const run = new KvmRunView();
    expect(run.bytes.length).toBe(KVM_VCPU_MMAP_SIZE);
    expect(run.buffer.byteLength).toBe(12288);
    expect(run.bytes.every((b) => b === 0)).toBe(true);
    expect(run.pioPage.byteOffset).toBe(4096);
    expect(run.pioPage.length).toBe(4096);
  });

  test('rejects areas that are too small', () => {
    expect(() => new KvmRunView(new ArrayBuffer(8192))).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => new KvmRunView(new ArrayBuffer(12288), 1)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => new KvmRunView(new ArrayBuffer(20000), -1)).toThrow();
  });

  test('header fields round-trip at their C offsets', () => {
    const run = new KvmRunView();
    const dv = new DataView(run.buffer);
    run.request_interrupt_window = 1;
    run.immediate_exit = 1;
    run.exit_reason = KVM_EXIT_INTERNAL_ERROR;
    run.ready_for_interrupt_injection = 1;
    run.if_flag = 1;
    run.flags = 0x8001;
    run.cr8 = 0xfn;
    run.apic_base = 0xfee00900n;
    run.kvm_valid_regs = 7;
    run.kvm_dirty_regs = 1;
    expect(dv.getUint8(0)).toBe(1);
    expect(dv.getUint8(1)).toBe(1);
    expect(dv.getUint32(8, true)).toBe(17);
    expect(dv.getUint8(12)).toBe(1);
    expect(dv.getUint8(13)).toBe(1);
    expect(dv.getUint16(14, true)).toBe(0x8001);
    expect(dv.getBigUint64(16, true)).toBe(0xfn);
    expect(dv.getBigUint64(24, true)).toBe(0xfee00900n);
    expect(dv.getBigUint64(288, true)).toBe(7n);
    expect(dv.getBigUint64(296, true)).toBe(1n);

    dv.setUint32(8, 0xdeadbeef, true);
    expect(run.exit_reason).toBe(0xdeadbeef);
    dv.setBigUint64(24, 0xffff_ffff_ffff_fff0n, true);
    expect(run.apic_base).toBe(0xffff_ffff_ffff_fff0n);
  });

  test('8/16/32-bit setters store the low bits, like a C assignment', () => {
    const run = new KvmRunView();
    run.request_interrupt_window = 0x101;
    expect(run.request_interrupt_window).toBe(1);
    run.io.port = 0x1_03f8;
    expect(run.io.port).toBe(0x3f8);
  });

  test('64-bit number fields take safe integers only', () => {
    const run = new KvmRunView();
    run.io.data_offset = 2 ** 40 + 8;
    expect(new DataView(run.buffer).getBigUint64(40, true)).toBe(2n ** 40n + 8n);
    expect(run.io.data_offset).toBe(2 ** 40 + 8);
    expect(() => { run.io.data_offset = -1; }).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => { run.mmio.phys_addr = 2 ** 53; }).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => { run.kvm_dirty_regs = 0.5; }).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
  });

  test('a KVM_EXIT_IO OUT reads like a C VMM reads it', () => {
    const run = new KvmRunView();
    // what the kernel does for `out dx, al` with dx = 0x3f8, al = 'A'
    run.exit_reason = KVM_EXIT_IO;
    run.io.direction = KVM_EXIT_IO_OUT;
    run.io.size = 1;
    run.io.port = 0x3f8;
    run.io.count = 1;
    run.io.data_offset = KVM_PIO_DATA_OFFSET;
    run.pioPage[0] = 0x41;

    const raw = new Uint8Array(run.buffer);
    expect(raw.slice(32, 48)).toEqual(new Uint8Array([1, 1, 0xf8, 0x03, 1, 0, 0, 0, 0x00, 0x10, 0, 0, 0, 0, 0, 0]));
    expect(raw[4096]).toBe(0x41);
    expect(run.bytes[run.io.data_offset]).toBe(0x41);
    expect([...run.ioData()]).toEqual([0x41]);

    run.io.size = 2;
    run.io.count = 3;
    expect(run.ioData().length).toBe(6);
    run.io.data_offset = KVM_VCPU_MMAP_SIZE - 2;
    expect(() => run.ioData()).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
  });

  test('mmio, fail_entry, hw, ex and debug exits', () => {
    const run = new KvmRunView();
    const dv = new DataView(run.buffer);
    run.mmio.phys_addr = 0xfee0_0030;
    run.mmio.data.set([1, 2, 3, 4]);
    run.mmio.len = 4;
    run.mmio.is_write = 1;
    expect(dv.getBigUint64(32, true)).toBe(0xfee0_0030n);
    expect([...new Uint8Array(run.buffer, 40, 8)]).toEqual([1, 2, 3, 4, 0, 0, 0, 0]);
    expect(dv.getUint32(48, true)).toBe(4);
    expect(dv.getUint8(52)).toBe(1);

    run.clearExit();
    run.fail_entry.hardware_entry_failure_reason = (1n << 64n) - 1n; // SVM_EXIT_ERR
    run.fail_entry.cpu = 3;
    expect(dv.getBigInt64(32, true)).toBe(-1n);
    expect(dv.getUint32(40, true)).toBe(3);
    expect(run.hw.hardware_exit_reason).toBe((1n << 64n) - 1n); // same union slot

    run.clearExit();
    run.ex.exception = 13;
    run.ex.error_code = 0x18;
    expect([dv.getUint32(32, true), dv.getUint32(36, true)]).toEqual([13, 0x18]);

    run.debug.exception = 1;
    run.debug.pc = 0xffff_ffff_8100_0000n;
    run.debug.dr6 = 0xffff0ff0n;
    run.debug.dr7 = 0x400n;
    expect(dv.getBigUint64(40, true)).toBe(0xffff_ffff_8100_0000n);
    expect(dv.getBigUint64(48, true)).toBe(0xffff0ff0n);
    expect(dv.getBigUint64(56, true)).toBe(0x400n);
  });

  test('internal error and emulation failure overlay', () => {
    const run = new KvmRunView();
    const dv = new DataView(run.buffer);
    run.internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
    run.internal.ndata = 2;
    run.internal.setData(0, 1n);
    run.internal.setData(15, 0x1234n);
    expect(dv.getUint32(32, true)).toBe(1);
    expect(dv.getUint32(36, true)).toBe(2);
    expect(dv.getBigUint64(40, true)).toBe(1n);
    expect(dv.getBigUint64(40 + 15 * 8, true)).toBe(0x1234n);
    expect(run.internal.data(15)).toBe(0x1234n);
    expect(() => run.internal.data(16)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => run.internal.setData(-1, 0n)).toThrow();

    expect(run.emulation_failure.suberror).toBe(1);
    expect(run.emulation_failure.flags).toBe(1); // same bytes as internal.data[0]
    run.emulation_failure.insn_size = 2;
    run.emulation_failure.insn_bytes.set([0x0f, 0x0b]);
    expect(dv.getUint8(48)).toBe(2);
    expect([dv.getUint8(49), dv.getUint8(50)]).toEqual([0x0f, 0x0b]);
    expect(run.emulation_failure.insn_bytes.length).toBe(15);
  });

  test('hypercall, tpr_access, system_event, eoi, msr, notify, memory_fault', () => {
    const run = new KvmRunView();
    const dv = new DataView(run.buffer);
    run.hypercall.nr = 12n;
    run.hypercall.setArg(5, 0xabcn);
    run.hypercall.ret = 0n;
    run.hypercall.flags = 1;
    expect(dv.getBigUint64(32, true)).toBe(12n);
    expect(dv.getBigUint64(80, true)).toBe(0xabcn);
    expect(run.hypercall.arg(5)).toBe(0xabcn);
    expect(dv.getBigUint64(96, true)).toBe(1n);
    expect(() => run.hypercall.arg(6)).toThrow();

    run.clearExit();
    run.tpr_access.rip = 0x1000n;
    run.tpr_access.is_write = 1;
    expect([dv.getBigUint64(32, true), dv.getUint32(40, true)]).toEqual([0x1000n, 1]);

    run.clearExit();
    run.system_event.type = 2;
    run.system_event.ndata = 1;
    run.system_event.setData(0, 5n);
    expect([dv.getUint32(32, true), dv.getUint32(36, true), dv.getBigUint64(40, true)]).toEqual([2, 1, 5n]);
    expect(run.system_event.data(0)).toBe(5n);

    run.clearExit();
    run.eoi.vector = 0x31;
    expect(dv.getUint8(32)).toBe(0x31);

    run.clearExit();
    run.msr.error = 1;
    run.msr.reason = 4;
    run.msr.index = 0xc0000080;
    run.msr.data = 0xd01n;
    expect([dv.getUint8(32), dv.getUint32(40, true), dv.getUint32(44, true), dv.getBigUint64(48, true)])
      .toEqual([1, 4, 0xc0000080, 0xd01n]);

    run.clearExit();
    run.notify.flags = 1;
    expect(dv.getUint32(32, true)).toBe(1);

    run.clearExit();
    run.memory_fault.flags = 8;
    run.memory_fault.gpa = 0x1_0000_0000;
    run.memory_fault.size = 4096;
    expect([dv.getBigUint64(32, true), dv.getBigUint64(40, true), dv.getBigUint64(48, true)]).toEqual([8n, 0x1_0000_0000n, 4096n]);
    expect([run.memory_fault.flags, run.memory_fault.gpa, run.memory_fault.size]).toEqual([8, 0x1_0000_0000, 4096]);
  });

  test('clearExit zeroes only the union; reset zeroes everything', () => {
    const run = new KvmRunView();
    run.bytes.fill(0xaa);
    run.clearExit();
    expect(run.bytes[31]).toBe(0xaa);
    expect(run.bytes.subarray(32, 288).every((b) => b === 0)).toBe(true);
    expect(run.bytes[288]).toBe(0xaa);
    run.reset();
    expect(run.bytes.every((b) => b === 0)).toBe(true);
  });

  test('two views over one buffer see the same bytes (kernel writes, VMM reads)', () => {
    const buffer = new ArrayBuffer(KVM_VCPU_MMAP_SIZE + 64);
    const kernel = new KvmRunView(buffer, 64);
    const vmm = new KvmRunView(buffer, 64);
    kernel.exit_reason = KVM_EXIT_IO;
    kernel.io.port = 0x80;
    expect(vmm.exit_reason).toBe(KVM_EXIT_IO);
    expect(vmm.io.port).toBe(0x80);
    expect(new DataView(buffer).getUint32(64 + 8, true)).toBe(KVM_EXIT_IO);
  });

  test('sync registers live in s.regs', () => {
    const run = new KvmRunView();
    const dv = new DataView(run.buffer);
    const regs = makeKvmRegs({ rax: 0x2an, rip: 0x100n, rflags: 2n });
    run.setSyncRegs(regs);
    run.kvm_dirty_regs = KVM_SYNC_X86_REGS;
    expect(dv.getBigUint64(304, true)).toBe(0x2an);
    expect(dv.getBigUint64(304 + 128, true)).toBe(0x100n);
    expect(run.getSyncRegs()).toEqual(regs);
    const sregs = makeKvmSregs({ cs: makeKvmSegment({ selector: 0x8 }), cr0: 0x11n });
    run.setSyncSregs(sregs);
    expect(dv.getUint16(448 + 12, true)).toBe(0x8);
    expect(run.getSyncSregs()).toEqual(sregs);
  });

  test('coalesced MMIO ring in page 2', () => {
    const run = new KvmRunView();
    const ring = run.coalesced_mmio;
    const dv = new DataView(run.buffer);
    expect(ring.offset).toBe(8192);
    ring.setEntry(0, 0xb8000, new Uint8Array([0x41, 0x07]));
    ring.last = 1;
    expect(dv.getUint32(8196, true)).toBe(1);
    expect(dv.getBigUint64(8200, true)).toBe(0xb8000n);
    expect(dv.getUint32(8208, true)).toBe(2);
    expect(ring.physAddr(0)).toBe(0xb8000);
    expect(ring.len(0)).toBe(2);
    expect(ring.pio(0)).toBe(0);
    expect([...ring.data(0)]).toEqual([0x41, 0x07, 0, 0, 0, 0, 0, 0]);
    expect(ring.entryOffset(KVM_COALESCED_MMIO_MAX - 1) + 24).toBeLessThanOrEqual(12288);
    expect(() => ring.entryOffset(KVM_COALESCED_MMIO_MAX)).toThrow();
    expect(() => ring.setEntry(1, 0, new Uint8Array(9))).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    ring.first = 1;
    expect(ring.first).toBe(1);
  });
});
