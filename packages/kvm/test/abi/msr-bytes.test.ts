/**
 * KVM_GET_MSRS / KVM_SET_MSRS on the C bytes of `struct kvm_msrs` answer exactly as on the object form (`msr_io`):
 * the same count processed, the same values, the same state after a batch that stops at a refused MSR — in particular
 * for the machine-check bank MSRs, which the bytes path copies as 32-bit words (module/msr-words.ts) instead of going
 * through a bigint.
 */
import { fc, test as fcTest } from '@fast-check/vitest';
import { createHost } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_GET_MSRS, KVM_RUN, KVM_SET_MSRS, KVM_X86_GET_MCE_CAP_SUPPORTED, KVM_X86_SETUP_MCE, createRealModeVm, kvm, makeKvmMsrs, type kvm_msrs } from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';

const U64 = 0xffff_ffff_ffff_ffffn;

/** A vCPU that has run, with `banks` machine-check banks (and CMCI when `cmci`), or the default 32 when `banks` is 0. */
function vcpu(vendor: (typeof VENDORS)[number], banks: number, cmci: boolean) {
  const host = createHost({ cpus: 1, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  const vm = createRealModeVm(p, '/dev/kvm0', { code: [0xf4] });
  const fd = vm.vcpus[0]!.fd;
  if (banks > 0) {
    const cap: bigint[] = [0n];
    p.ioctl(vm.sys, KVM_X86_GET_MCE_CAP_SUPPORTED, cap);
    p.ioctl(fd, KVM_X86_SETUP_MCE, [BigInt(banks) | (cmci ? (cap[0] as bigint) & (1n << 10n) : 0n)]);
  }
  p.ioctl(fd, KVM_RUN, 0);
  return { p, fd };
}

/** `struct kvm_msrs` of `entries` as C bytes. */
function bytesOf(entries: ReadonlyArray<{ index: number; data: bigint }>): Uint8Array {
  const b = new Uint8Array(8 + 16 * entries.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    dv.setUint32(8 + 16 * i, e.index, true);
    dv.setUint32(8 + 16 * i + 4, 0xa5a5_a5a5, true); // reserved: ignored
    dv.setBigUint64(8 + 16 * i + 8, e.data, true);
  });
  return b;
}

/** The entries of C bytes. */
function entriesOf(b: Uint8Array): Array<{ index: number; data: bigint }> {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: dv.getUint32(0, true) }, (_, i) => ({ index: dv.getUint32(8 + 16 * i, true), data: dv.getBigUint64(8 + 16 * i + 8, true) }));
}

/** Every machine-check bank MSR (32 banks' CTL/STATUS/ADDR/MISC and CTL2), whether the vCPU has the bank or not. */
const BANK_MSRS = [...Array.from({ length: 32 * 4 }, (_, i) => 0x400 + i), ...Array.from({ length: 32 }, (_, i) => 0x280 + i)];

const index = fc.oneof({ arbitrary: fc.constantFrom(...BANK_MSRS), weight: 4 }, fc.constantFrom(0x400, 0x401, 0x404, 0x280, 0x281), fc.constantFrom(0x10, 0x277, 0x17a, 0x17b, 0x4b564d06, 0x1fc, 0x47f, 0x480, 0x27f, 0x2a0));
const EDGES = [0n, U64, U64 & ~1n, U64 & ~0x400n, U64 & ~0x401n, U64 & ~0x402n, 0x4000_7fffn, 0x4000_0000n, 0x8000n, 1n << 32n, (1n << 32n) | 0x4000_0000n, (1n << 63n) | 0x7fffn, 0x0007040600070406n];
const data = fc.oneof(
  fc.constantFrom(...EDGES),
  fc.bigInt({ min: 0n, max: U64 }),
);

describe.each(VENDORS)('KVM_GET_MSRS / KVM_SET_MSRS on the C bytes match the object form on $name', (vendor) => {
  fcTest.prop([fc.constantFrom(0, 1, 5, 32), fc.boolean(), fc.array(fc.record({ index, data }), { maxLength: 24 })], { numRuns: 60 })(
    'a SET batch processes the same entries and leaves the same state; a GET reads the same values',
    (banks, cmci, entries) => {
      const a = vcpu(vendor, banks, cmci);
      const b = vcpu(vendor, banks, cmci);
      const asBytes = bytesOf(entries);
      const before = asBytes.slice();
      const na = a.p.ioctl(a.fd, KVM_SET_MSRS, asBytes);
      const nb = b.p.ioctl(b.fd, KVM_SET_MSRS, makeKvmMsrs(entries));
      expect(na).toBe(nb);
      expect(asBytes).toEqual(before); // KVM_SET_MSRS writes nothing back
      // Read every bank MSR and the batch's own MSRs back, both ways, on both vCPUs.
      const all = [...BANK_MSRS, ...entries.map((e) => e.index)].map((i) => ({ index: i, data: 0x1234n }));
      const ga = bytesOf(all);
      const ra = a.p.ioctl(a.fd, KVM_GET_MSRS, ga);
      const gb: kvm_msrs = makeKvmMsrs(all);
      const rb = b.p.ioctl(b.fd, KVM_GET_MSRS, gb);
      expect(ra).toBe(rb);
      // processed entries hold the value; the one that failed and those after it are left as they were
      expect(entriesOf(ga)).toEqual(gb.entries.map((e) => ({ index: e.index, data: e.data })));
      expect(entriesOf(ga).slice(ra).every((e) => e.data === 0x1234n)).toBe(true);
    },
  );
  test('each edge value written alone to IA32_MCi_CTL / STATUS / CTL2, with and without CMCI: the same answer and value', () => {
    for (const cmci of [false, true]) {
      const a = vcpu(vendor, 4, cmci);
      const b = vcpu(vendor, 4, cmci);
      for (const msr of [0x400, 0x401, 0x40c, 0x410, 0x280, 0x283, 0x284]) {
        for (const d of EDGES) {
          const na = a.p.ioctl(a.fd, KVM_SET_MSRS, bytesOf([{ index: msr, data: d }]));
          const nb = b.p.ioctl(b.fd, KVM_SET_MSRS, makeKvmMsrs([{ index: msr, data: d }]));
          expect([msr, d, na]).toEqual([msr, d, nb]);
          // set_msr_mce's rules, written independently of the module: CTL 0 or all ones but bits 10 and 0; STATUS,
          // ADDR, MISC anything from the host; CTL2 CMCI_EN and the threshold with MCG_CMCI_P, else only 0.
          const bank = msr >= 0x400 ? msr - 0x400 : -1;
          const cmciOn = cmci && vendor.name === 'intel';
          const taken =
            bank >= 16 || (bank < 0 && msr - 0x280 >= 4) ? false : bank % 4 === 0 ? d === 0n || (d | 0x401n) === U64 : bank > 0 ? true : cmciOn ? (d & ~0x4000_7fffn) === 0n : d === 0n;
          expect([msr, d, na]).toEqual([msr, d, taken ? 1 : 0]);
          const ga = bytesOf([{ index: msr, data: 7n }]);
          const gb = makeKvmMsrs([{ index: msr, data: 7n }]);
          expect(a.p.ioctl(a.fd, KVM_GET_MSRS, ga)).toBe(b.p.ioctl(b.fd, KVM_GET_MSRS, gb));
          expect(entriesOf(ga)[0]?.data).toBe(gb.entries[0]?.data);
        }
      }
    }
  });
});
