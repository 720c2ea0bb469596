import { describe, expect, test } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import {
  KVM_LAYOUTS,
  KVM_MEM_READONLY,
  KVM_REGS_FIELDS,
  KVM_SEV_ES_INIT,
  copyKvmCpuidEntry2,
  copyKvmEnableCap,
  copyKvmMsrEntry,
  copyKvmRegs,
  copyKvmSegment,
  copyKvmSevCmd,
  copyKvmSregs,
  copyKvmUserspaceMemoryRegion,
  decodeKvmEnableCap,
  decodeKvmRegs,
  decodeKvmSegment,
  decodeKvmSevCmd,
  decodeKvmSregs,
  decodeKvmUserspaceMemoryRegion,
  encodeKvmEnableCap,
  encodeKvmRegs,
  encodeKvmSevCmd,
  encodeKvmSregs,
  encodeKvmUserspaceMemoryRegion,
  isKvmCpuidEntry2,
  isKvmDtable,
  isKvmEnableCap,
  isKvmMsrEntry,
  isKvmRegs,
  isKvmSegment,
  isKvmSevCmd,
  isKvmSregs,
  isKvmUserspaceMemoryRegion,
  kvmRegsToBytes,
  kvmSregsToBytes,
  kvmUserspaceMemoryRegionToBytes,
  makeKvmCpuidEntry2,
  makeKvmDtable,
  makeKvmEnableCap,
  makeKvmMsrEntry,
  makeKvmRegs,
  makeKvmSegment,
  makeKvmSevCmd,
  makeKvmSregs,
  makeKvmUserspaceMemoryRegion,
  validateKvmRegs,
  validateKvmSregs,
  validateKvmUserspaceMemoryRegion,
} from '../../src/abi/index.js';

const U64_MAX = (1n << 64n) - 1n;
const u64 = fc.bigInt({ min: 0n, max: U64_MAX });
const u8 = fc.integer({ min: 0, max: 0xff });
const segment = fc.record({
  base: u64, limit: fc.integer({ min: 0, max: 0xffffffff }), selector: fc.integer({ min: 0, max: 0xffff }),
  type: u8, present: u8, dpl: u8, db: u8, s: u8, l: u8, g: u8, avl: u8, unusable: u8,
});
const dtable = fc.record({ base: u64, limit: fc.integer({ min: 0, max: 0xffff }) });

/** A real-mode reset state, as a minimal VMM would set it. */
function realModeSregs() {
  const code = makeKvmSegment({ base: 0xf0000n, limit: 0xffff, selector: 0xf000, type: 11, present: 1, s: 1 });
  const data = makeKvmSegment({ limit: 0xffff, type: 3, present: 1, s: 1 });
  return makeKvmSregs({
    cs: code, ds: data, es: data, fs: data, gs: data, ss: data,
    tr: makeKvmSegment({ limit: 0xffff, type: 11, present: 1 }),
    ldt: makeKvmSegment({ limit: 0xffff, type: 2, present: 1 }),
    gdt: makeKvmDtable({ limit: 0xffff }), idt: makeKvmDtable({ limit: 0xffff }),
    cr0: 0x60000010n, apic_base: 0xfee00900n,
  });
}

describe('constructors and copies', () => {
  test('zeroed defaults', () => {
    const r = makeKvmRegs();
    expect(KVM_REGS_FIELDS.every((k) => r[k] === 0n)).toBe(true);
    expect(Object.keys(r)).toEqual([...KVM_REGS_FIELDS]);
    const s = makeKvmSregs();
    expect(s.cs).toEqual(makeKvmSegment());
    expect(s.gdt).toEqual({ base: 0n, limit: 0 });
    expect(s.interrupt_bitmap).toEqual([0n, 0n, 0n, 0n]);
    expect(s.efer).toBe(0n);
    expect(makeKvmUserspaceMemoryRegion()).toEqual({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0, userspace_addr: 0 });
    expect(makeKvmSevCmd()).toEqual({ id: 0, data: 0, error: 0, sev_fd: 0 });
    expect(makeKvmEnableCap()).toEqual({ cap: 0, flags: 0, args: [0n, 0n, 0n, 0n] });
    expect(makeKvmMsrEntry()).toEqual({ index: 0, data: 0n });
    expect(makeKvmCpuidEntry2()).toEqual({ function: 0, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 });
  });

  test('init overrides defaults', () => {
    expect(makeKvmRegs({ rip: 0x1000n, rflags: 2n }).rip).toBe(0x1000n);
    const s = makeKvmSregs({ cr0: 1n });
    expect(s.cr0).toBe(1n);
    expect(s.cr4).toBe(0n);
  });

  test('makeKvmSregs does not alias the segments it was given', () => {
    const data = makeKvmSegment({ selector: 0x10 });
    const s = makeKvmSregs({ ds: data, es: data });
    s.ds.selector = 0x18;
    expect(s.es.selector).toBe(0x10);
    expect(data.selector).toBe(0x10);
  });

  test('copies are deep and independent', () => {
    const s = realModeSregs();
    const c = copyKvmSregs(s);
    expect(c).toEqual(s);
    c.cs.base = 0n;
    c.gdt.limit = 0;
    c.interrupt_bitmap[0] = 1n;
    expect(s.cs.base).toBe(0xf0000n);
    expect(s.gdt.limit).toBe(0xffff);
    expect(s.interrupt_bitmap[0]).toBe(0n);

    const r = makeKvmRegs({ rax: 5n });
    const rc = copyKvmRegs(r);
    rc.rax = 6n;
    expect(r.rax).toBe(5n);

    const cap = makeKvmEnableCap({ cap: 143, args: [2n, 0n, 0n, 0n] });
    const capc = copyKvmEnableCap(cap);
    capc.args[0] = 0n;
    expect(cap.args[0]).toBe(2n);

    const seg = makeKvmSegment({ dpl: 3 });
    expect(copyKvmSegment(seg)).toEqual(seg);
    expect(copyKvmSegment(seg)).not.toBe(seg);
    const umr = makeKvmUserspaceMemoryRegion({ slot: 1 });
    expect(copyKvmUserspaceMemoryRegion(umr)).toEqual(umr);
    expect(copyKvmUserspaceMemoryRegion(umr)).not.toBe(umr);
    expect(copyKvmSevCmd(makeKvmSevCmd({ id: 1 }))).toEqual({ id: 1, data: 0, error: 0, sev_fd: 0 });
    expect(copyKvmMsrEntry(makeKvmMsrEntry({ index: 0x10, data: 5n }))).toEqual({ index: 0x10, data: 5n });
    expect(copyKvmCpuidEntry2(makeKvmCpuidEntry2({ eax: 7 })).eax).toBe(7);
  });
});

describe('shape validators', () => {
  test('accept well-formed values', () => {
    expect(isKvmRegs(makeKvmRegs({ rax: U64_MAX }))).toBe(true);
    expect(isKvmSregs(realModeSregs())).toBe(true);
    expect(isKvmSegment(makeKvmSegment({ limit: 0xffffffff, selector: 0xffff }))).toBe(true);
    expect(isKvmDtable(makeKvmDtable({ base: U64_MAX, limit: 0xffff }))).toBe(true);
    expect(isKvmUserspaceMemoryRegion({ slot: 0, flags: KVM_MEM_READONLY, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: 0x7f0000000000 })).toBe(true);
    expect(isKvmSevCmd({ id: KVM_SEV_ES_INIT, data: 0, error: 0, sev_fd: 5 })).toBe(true);
    expect(isKvmEnableCap({ cap: 143, flags: 0, args: [2n, 0n, 0n, 0n] })).toBe(true);
    expect(isKvmMsrEntry({ index: 0xc0000080, data: 0x500n })).toBe(true);
    expect(isKvmCpuidEntry2(makeKvmCpuidEntry2({ function: 0x80000001, edx: 0xffffffff }))).toBe(true);
    // extra properties are ignored, as bytes beyond the structure are
    expect(isKvmRegs({ ...makeKvmRegs(), extra: 'x' })).toBe(true);
  });

  test('reject the wrong kind of argument', () => {
    for (const bad of [undefined, null, 0, 0xdeadbeef, 'regs', [], () => 0, Symbol('x')]) {
      expect(isKvmRegs(bad)).toBe(false);
      expect(isKvmSregs(bad)).toBe(false);
      expect(isKvmUserspaceMemoryRegion(bad)).toBe(false);
      expect(isKvmSevCmd(bad)).toBe(false);
      expect(isKvmEnableCap(bad)).toBe(false);
      expect(isKvmSegment(bad)).toBe(false);
      expect(isKvmDtable(bad)).toBe(false);
      expect(isKvmMsrEntry(bad)).toBe(false);
      expect(isKvmCpuidEntry2(bad)).toBe(false);
    }
  });

  test('kvm_regs: every register must be a u64 bigint', () => {
    const { rip: _rip, ...noRip } = makeKvmRegs();
    expect(validateKvmRegs(noRip)).toMatch(/kvm_regs\.rip/);
    expect(isKvmRegs({ ...makeKvmRegs(), rax: 1 })).toBe(false); // number, not bigint
    expect(isKvmRegs({ ...makeKvmRegs(), rbx: -1n })).toBe(false);
    expect(isKvmRegs({ ...makeKvmRegs(), r15: 1n << 64n })).toBe(false);
    expect(validateKvmRegs(makeKvmRegs())).toBeUndefined();
  });

  test('kvm_sregs: nested segments, tables and the bitmap are checked', () => {
    const s = realModeSregs();
    expect(validateKvmSregs({ ...s, cs: { ...s.cs, selector: 0x10000 } })).toMatch(/kvm_sregs\.cs\.selector/);
    expect(validateKvmSregs({ ...s, tr: { ...s.tr, dpl: 256 } })).toMatch(/kvm_sregs\.tr\.dpl/);
    expect(validateKvmSregs({ ...s, ldt: undefined })).toMatch(/kvm_sregs\.ldt must be an object/);
    expect(validateKvmSregs({ ...s, gdt: { base: 0n, limit: 0x10000 } })).toMatch(/kvm_sregs\.gdt\.limit/);
    expect(validateKvmSregs({ ...s, idt: { base: 0, limit: 0 } })).toMatch(/kvm_sregs\.idt\.base/);
    expect(validateKvmSregs({ ...s, cr0: 0x10 })).toMatch(/kvm_sregs\.cr0/);
    expect(validateKvmSregs({ ...s, interrupt_bitmap: [0n, 0n, 0n] })).toMatch(/interrupt_bitmap/);
    expect(validateKvmSregs({ ...s, interrupt_bitmap: [0n, 0n, 0n, 1] })).toMatch(/interrupt_bitmap\[3\]/);
    expect(validateKvmSregs({ ...s, cs: { ...s.cs, limit: 1.5 } })).toMatch(/limit/);
  });

  test('kvm_userspace_memory_region: u32 slot/flags, safe-integer addresses', () => {
    const good = makeKvmUserspaceMemoryRegion({ memory_size: 0x10000 });
    expect(validateKvmUserspaceMemoryRegion({ ...good, slot: -1 })).toMatch(/slot/);
    expect(validateKvmUserspaceMemoryRegion({ ...good, slot: 2 ** 32 })).toMatch(/slot/);
    expect(validateKvmUserspaceMemoryRegion({ ...good, flags: '1' })).toMatch(/flags/);
    expect(validateKvmUserspaceMemoryRegion({ ...good, guest_phys_addr: 0x1000n })).toMatch(/guest_phys_addr/);
    expect(validateKvmUserspaceMemoryRegion({ ...good, memory_size: 2 ** 53 })).toMatch(/memory_size/);
    expect(validateKvmUserspaceMemoryRegion({ ...good, userspace_addr: -4096 })).toMatch(/userspace_addr/);
    expect(validateKvmUserspaceMemoryRegion({ ...good, memory_size: Number.NaN })).toMatch(/memory_size/);
    expect(validateKvmUserspaceMemoryRegion(good)).toBeUndefined();
  });

  test('kvm_sev_cmd and kvm_enable_cap', () => {
    expect(isKvmSevCmd({ id: 0, data: 0, error: 0 })).toBe(false);
    expect(isKvmSevCmd({ id: 0, data: 1.5, error: 0, sev_fd: 3 })).toBe(false);
    expect(isKvmEnableCap({ cap: 1, flags: 0, args: [0n, 0n, 0n] })).toBe(false);
    expect(isKvmEnableCap({ cap: 1, flags: 0, args: [0, 0, 0, 0] })).toBe(false);
    expect(isKvmEnableCap({ cap: 1, flags: 0, args: { length: 4 } })).toBe(false);
  });
});

describe('C encoding', () => {
  test('sizes of the encoded structures', () => {
    expect(kvmRegsToBytes(makeKvmRegs()).length).toBe(144);
    expect(kvmSregsToBytes(makeKvmSregs()).length).toBe(312);
    expect(kvmUserspaceMemoryRegionToBytes(makeKvmUserspaceMemoryRegion()).length).toBe(32);
  });

  test('kvm_regs bytes are at the C offsets', () => {
    const bytes = kvmRegsToBytes(makeKvmRegs({ rax: 0x1122334455667788n, rip: 0x7c00n, rflags: 2n }));
    const dv = new DataView(bytes.buffer);
    expect(dv.getBigUint64(0, true)).toBe(0x1122334455667788n);
    expect(bytes[0]).toBe(0x88); // little-endian
    expect(dv.getBigUint64(128, true)).toBe(0x7c00n);
    expect(dv.getBigUint64(136, true)).toBe(2n);
  });

  test('kvm_sregs bytes are at the C offsets', () => {
    const bytes = kvmSregsToBytes(realModeSregs());
    const dv = new DataView(bytes.buffer);
    expect(dv.getBigUint64(0, true)).toBe(0xf0000n); // cs.base
    expect(dv.getUint32(8, true)).toBe(0xffff); // cs.limit
    expect(dv.getUint16(12, true)).toBe(0xf000); // cs.selector
    expect(dv.getUint8(14)).toBe(11); // cs.type
    expect(dv.getUint8(15)).toBe(1); // cs.present
    expect(dv.getUint8(18)).toBe(1); // cs.s
    expect(dv.getUint16(192 + 8, true)).toBe(0xffff); // gdt.limit
    expect(dv.getBigUint64(224, true)).toBe(0x60000010n); // cr0
    expect(dv.getBigUint64(272, true)).toBe(0xfee00900n); // apic_base
    expect(decodeKvmSegment(dv, 24)).toEqual(realModeSregs().ds);
  });

  test('kvm_userspace_memory_region, kvm_sev_cmd and kvm_enable_cap bytes', () => {
    const dv = new DataView(new ArrayBuffer(128));
    encodeKvmUserspaceMemoryRegion(
      { slot: 0x10001, flags: 2, guest_phys_addr: 0x1_0000_0000, memory_size: 0x20_0000, userspace_addr: 0x7f12_3456_7000 },
      dv,
    );
    expect(dv.getUint32(0, true)).toBe(0x10001);
    expect(dv.getUint32(4, true)).toBe(2);
    expect(dv.getBigUint64(8, true)).toBe(0x1_0000_0000n);
    expect(dv.getBigUint64(16, true)).toBe(0x20_0000n);
    expect(dv.getBigUint64(24, true)).toBe(0x7f12_3456_7000n);
    expect(decodeKvmUserspaceMemoryRegion(dv).userspace_addr).toBe(0x7f12_3456_7000);

    new Uint8Array(dv.buffer).fill(0xff);
    encodeKvmSevCmd({ id: 1, data: 0xdead_beef_00, error: 7, sev_fd: 9 }, dv);
    expect(dv.getUint32(4, true)).toBe(0); // pad0
    expect(dv.getBigUint64(8, true)).toBe(0xdead_beef_00n);
    expect(decodeKvmSevCmd(dv)).toEqual({ id: 1, data: 0xdead_beef_00, error: 7, sev_fd: 9 });

    new Uint8Array(dv.buffer).fill(0xff);
    encodeKvmEnableCap({ cap: 219, flags: 0, args: [(5000n << 32n) | 1n, 0n, 0n, U64_MAX] }, dv);
    expect(dv.getUint32(0, true)).toBe(219);
    expect(dv.getBigUint64(8, true)).toBe((5000n << 32n) | 1n);
    expect(dv.getBigUint64(32, true)).toBe(U64_MAX);
    expect(new Uint8Array(dv.buffer, 40, 64).every((b) => b === 0)).toBe(true); // pad
    expect(decodeKvmEnableCap(dv).args[3]).toBe(U64_MAX);
  });

  fcTest.prop([fc.array(u64, { minLength: 18, maxLength: 18 })])('kvm_regs round-trip', (vals) => {
    const r = makeKvmRegs();
    KVM_REGS_FIELDS.forEach((k, i) => { r[k] = vals[i] ?? 0n; });
    const dv = new DataView(new ArrayBuffer(KVM_LAYOUTS.kvm_regs.size + 8));
    encodeKvmRegs(r, dv, 8);
    expect(decodeKvmRegs(dv, 8)).toEqual(r);
  });

  fcTest.prop([fc.array(segment, { minLength: 8, maxLength: 8 }), dtable, dtable, fc.array(u64, { minLength: 11, maxLength: 11 })])(
    'kvm_sregs round-trip',
    (segs, gdt, idt, u) => {
      const at = (i: number): bigint => u[i] ?? 0n;
      const [cs, ds, es, fs, gs, ss, tr, ldt] = segs;
      const s = makeKvmSregs({
        ...(cs && { cs }), ...(ds && { ds }), ...(es && { es }), ...(fs && { fs }),
        ...(gs && { gs }), ...(ss && { ss }), ...(tr && { tr }), ...(ldt && { ldt }),
        gdt, idt, cr0: at(0), cr2: at(1), cr3: at(2), cr4: at(3), cr8: at(4), efer: at(5), apic_base: at(6),
        interrupt_bitmap: [at(7), at(8), at(9), at(10)],
      });
      expect(isKvmSregs(s)).toBe(true);
      const dv = new DataView(new ArrayBuffer(KVM_LAYOUTS.kvm_sregs.size));
      encodeKvmSregs(s, dv);
      expect(decodeKvmSregs(dv)).toEqual(s);
    },
  );

  fcTest.prop([fc.nat(), fc.nat(), fc.maxSafeNat(), fc.maxSafeNat(), fc.maxSafeNat()])(
    'kvm_userspace_memory_region round-trip',
    (slot, flags, gpa, size, uaddr) => {
      const r = { slot: slot % 2 ** 32, flags: flags % 2 ** 32, guest_phys_addr: gpa, memory_size: size, userspace_addr: uaddr };
      expect(isKvmUserspaceMemoryRegion(r)).toBe(true);
      const dv = new DataView(new ArrayBuffer(32));
      encodeKvmUserspaceMemoryRegion(r, dv);
      expect(decodeKvmUserspaceMemoryRegion(dv)).toEqual(r);
    },
  );
});

describe('copies keep only the structure fields', () => {
  test('extra properties of the source are dropped', () => {
    const withExtra = { ...makeKvmRegs({ rax: 1n }), junk: 'x' };
    expect(Object.keys(copyKvmRegs(withExtra))).toEqual([...KVM_REGS_FIELDS]);
    const seg = { ...makeKvmSegment(), extra: 1 };
    expect('extra' in copyKvmSegment(seg)).toBe(false);
    const umr = { ...makeKvmUserspaceMemoryRegion(), extra: 1 };
    expect('extra' in copyKvmUserspaceMemoryRegion(umr)).toBe(false);
    const sregs = makeKvmSregs();
    (sregs.cs as unknown as Record<string, unknown>).extra = 1;
    expect('extra' in copyKvmSregs(sregs).cs).toBe(false);
  });
});
