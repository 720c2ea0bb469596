/**
 * The x86 ioctls of /dev/kvmX (arch/x86/kvm/x86.c `kvm_arch_dev_ioctl`, cpuid.c `kvm_dev_ioctl_get_cpuid`): the MSR
 * lists and their E2BIG protocol, feature MSRs, the supported and emulated CPUID, the MCE capabilities — with the
 * generic answers checked against a real /dev/kvm (test/fixtures/real-kvm) and the vendor ones against the sources.
 */
import { describe, expect, test } from 'vitest';
import {
  KVM_GET_EMULATED_CPUID,
  KVM_GET_MSRS,
  KVM_GET_MSR_FEATURE_INDEX_LIST,
  KVM_GET_MSR_INDEX_LIST,
  KVM_GET_SUPPORTED_CPUID,
  KVM_X86_GET_MCE_CAP_SUPPORTED,
  makeKvmCpuid2,
  makeKvmMsrList,
  makeKvmMsrs,
  makeU64,
  type kvm_cpuid_entry2,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { REAL, errnoOf, num, openSys } from './support.js';

/** msrs_to_save_base / emulated_msrs_all members every x86 host lists (SYSENTER, syscall MSRs, TSC, PAT, kvmclock, …). */
const COMMON_MSRS = [0x174, 0x175, 0x176, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102, 0x10, 0x277, 0x11, 0x12, 0x4b564d00, 0x4b564d01, 0x3b, 0x1a0, 0x8b, 0x10a, 0xce];

describe.each(VENDORS)('/dev/kvm0 x86 ioctls on $name', (vendor) => {
  test('KVM_GET_MSR_INDEX_LIST: too small → E2BIG with the count written to nmsrs; that count succeeds', () => {
    const s = openSys(vendor);
    const small = makeKvmMsrList(1);
    expect(errnoOf(s.host, () => s.p.ioctl(s.sys, KVM_GET_MSR_INDEX_LIST, { nmsrs: 0 }))).toBe('E2BIG');
    // E2BIG, but nmsrs now holds the count (as the real kernel: nmsrs_after_small)
    const before = s.host.snapshot();
    expect(() => s.p.ioctl(s.sys, KVM_GET_MSR_INDEX_LIST, small)).toThrow(expect.objectContaining({ code: 'E2BIG' }));
    expect(s.host.snapshot()).toEqual(before);
    expect(REAL.msr_index_list['small_errno']).toBe('E2BIG');
    const n = small.nmsrs;
    expect(n).toBeGreaterThan(COMMON_MSRS.length);
    const list = makeKvmMsrList(n);
    expect(s.p.ioctl(s.sys, KVM_GET_MSR_INDEX_LIST, list)).toBe(0);
    expect(list.nmsrs).toBe(n);
    expect(list.indices.length).toBe(n);
    expect(new Set(list.indices).size).toBe(n);
    for (const m of COMMON_MSRS) expect(list.indices, `0x${m.toString(16)}`).toContain(m);
    // the vendor's MSRs
    if (vendor.name === 'amd') expect(list.indices).toContain(0xc0010117); // MSR_VM_HSAVE_PA (msrs_to_save_base, present on AMD)
    else expect(list.indices).not.toContain(0xc0010117);
    expect(list.indices).toContain(0x9e); // MSR_IA32_SMBASE: emulated with CONFIG_KVM_SMM
    expect(list.indices.filter((m) => m >= 0x480 && m <= 0x491)).toEqual([]); // no nested VMX MSRs
  });

  test('KVM_GET_MSR_FEATURE_INDEX_LIST and KVM_GET_MSRS on /dev/kvm (feature MSRs)', () => {
    const s = openSys(vendor);
    const h = { nmsrs: 0 };
    expect(errnoOf(s.host, () => s.p.ioctl(s.sys, KVM_GET_MSR_FEATURE_INDEX_LIST, { nmsrs: 0, indices: [] }))).toBe('E2BIG');
    try {
      s.p.ioctl(s.sys, KVM_GET_MSR_FEATURE_INDEX_LIST, h);
    } catch {
      /* E2BIG with the count */
    }
    const list = makeKvmMsrList(h.nmsrs);
    expect(s.p.ioctl(s.sys, KVM_GET_MSR_FEATURE_INDEX_LIST, list)).toBe(0);
    // The generic feature MSRs the real kernel lists (UCODE_REV, ARCH_CAPABILITIES, PERF_CAPABILITIES, PLATFORM_INFO)
    for (const m of REAL.msr_feature_index_list.indices.map((x) => Number(x))) expect(list.indices).toContain(m);
    if (vendor.name === 'amd') expect(list.indices).toContain(0xc0011029); // MSR_AMD64_DE_CFG (svm_get_feature_msr)
    // KVM_GET_MSRS: all the features, then a non-feature MSR KVM advertises (TSC) reads 0, an unknown one stops the batch
    const msrs = makeKvmMsrs([...list.indices.map((index) => ({ index })), { index: 0x10 }, { index: 0x12345 }, { index: 0x10a }]);
    expect(s.p.ioctl(s.sys, KVM_GET_MSRS, msrs)).toBe(list.indices.length + 1);
    expect(msrs.entries[list.indices.length]?.data).toBe(0n);
    // the recorded batch: ARCH_CAPABILITIES, TSC, ARCH_CAPABILITIES → 3
    expect(REAL.msr_feature_index_list['get_msrs_with_non_feature_second_ret']).toBe(3);
    expect(s.p.ioctl(s.sys, KVM_GET_MSRS, makeKvmMsrs([{ index: 0x10a }, { index: 0x10 }, { index: 0x10a }]))).toBe(3);
    // 255 entries at most per call (MAX_IO_MSRS = 256): 256 → E2BIG; 255 → processed until the first unknown
    expect(errnoOf(s.host, () => s.p.ioctl(s.sys, KVM_GET_MSRS, makeKvmMsrs(Array.from({ length: 256 }, () => ({ index: 0x10a })))))).toBe('E2BIG');
    expect(REAL.msr_feature_index_list['get_msrs_256_errno']).toBe('E2BIG');
    expect(s.p.ioctl(s.sys, KVM_GET_MSRS, makeKvmMsrs([{ index: 0x10a }, ...Array.from({ length: 254 }, () => ({ index: 0 }))]))).toBe(1);
    expect(REAL.msr_feature_index_list['get_msrs_255_ret']).toBe(1);
  });

  test('KVM_GET_MSRS on /dev/kvm with the C bytes inside a larger buffer (a Node Buffer from a pool, as the bridge passes)', () => {
    const s = openSys(vendor);
    const expected = makeKvmMsrs([{ index: 0x10a }]);
    expect(s.p.ioctl(s.sys, KVM_GET_MSRS, expected)).toBe(1);
    // struct kvm_msrs { nmsrs = 2; pad; { 0x10a, 0, data }, { 0x12345, 0, data } } at offset 24 of a pooled buffer.
    const pool = Buffer.alloc(256, 0xee);
    const bytes = pool.subarray(24, 24 + 8 + 32);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    dv.setUint32(0, 2, true);
    dv.setUint32(4, 0, true);
    dv.setUint32(8, 0x10a, true);
    dv.setUint32(24, 0x12345, true);
    expect(s.p.ioctl(s.sys, KVM_GET_MSRS, bytes)).toBe(1);
    expect(dv.getBigUint64(16, true)).toBe(expected.entries[0]?.data);
    expect(dv.getBigUint64(32, true)).toBe(0xeeeeeeeeeeeeeeeen); // not processed: left as it was
    expect(pool[23]).toBe(0xee); // nothing outside the struct written
  });

  test('KVM_GET_SUPPORTED_CPUID: 0 or too few entries → E2BIG with nent left as it was; the count, or more, succeeds', () => {
    const s = openSys(vendor);
    for (const n of [0, 1]) {
      const c = makeKvmCpuid2(n);
      expect(errnoOf(s.host, () => s.p.ioctl(s.sys, KVM_GET_SUPPORTED_CPUID, c))).toBe('E2BIG');
      expect(c.nent).toBe(n);
      expect(REAL.supported_cpuid[n === 0 ? 'nent_after_zero' : 'nent_after_one']).toBe(n);
    }
    const big = makeKvmCpuid2(256);
    expect(s.p.ioctl(s.sys, KVM_GET_SUPPORTED_CPUID, big)).toBe(0);
    const n = big.nent;
    expect(big.entries.length).toBe(256); // the rest of the caller's buffer is left alone
    const exact = makeKvmCpuid2(n);
    expect(s.p.ioctl(s.sys, KVM_GET_SUPPORTED_CPUID, exact)).toBe(0);
    expect(exact.entries).toEqual(big.entries.slice(0, n));
    const fewer = makeKvmCpuid2(n - 1);
    expect(errnoOf(s.host, () => s.p.ioctl(s.sys, KVM_GET_SUPPORTED_CPUID, fewer))).toBe('E2BIG');
    expect(fewer.nent).toBe(n - 1);
    // above KVM_MAX_CPUID_ENTRIES is capped, not refused
    expect(s.p.ioctl(s.sys, KVM_GET_SUPPORTED_CPUID, makeKvmCpuid2(300))).toBe(0);
    expect(REAL.supported_cpuid['huge_ret']).toBe(0);

    const e = (fn: number, index = 0): kvm_cpuid_entry2 | undefined => exact.entries.slice(0, n).find((x) => x.function === fn && x.index === index);
    const boot = s.host.cpus[0]!;
    const leaf0 = boot.readCpuid(0);
    expect([e(0)?.ebx, e(0)?.ecx, e(0)?.edx]).toEqual([leaf0.ebx >>> 0, leaf0.ecx >>> 0, leaf0.edx >>> 0]); // the host's vendor
    expect((e(1)?.ecx ?? 0) & (1 << 5)).toBe(0); // no VMX: nested VMX is not modelled
    expect((e(1)?.ecx ?? 0) >>> 31).toBe(1); // X86_FEATURE_HYPERVISOR: KVM sets it for its guests
    expect((e(0x80000001)?.ecx ?? 0) & (1 << 2)).toBe(0); // no SVM: nested SVM is not modelled
    // KVM's own leaves: "KVMKVMKVM" and its features (no STEAL_TIME, no hypercall-based features)
    expect([e(0x40000000)?.ebx, e(0x40000000)?.ecx, e(0x40000000)?.edx]).toEqual([0x4b4d564b, 0x564b4d56, 0x4d]);
    const pv = e(0x40000001)?.eax ?? 0;
    expect(pv & 1).toBe(1); // KVM_FEATURE_CLOCKSOURCE
    expect(pv & (1 << 3)).toBe(1 << 3); // CLOCKSOURCE2
    expect(pv & (1 << 5)).toBe(0); // STEAL_TIME: not modelled
    expect(pv & (1 << 7)).toBe(0); // PV_UNHALT: hypercalls not modelled
    // Leaf 0xD (__do_cpuid_func): XCR0 x87 | SSE | AVX, the standard-format size of all three (576 + 256) in EBX and
    // ECX; sub-leaf 1 the XSAVE instructions KVM offers (VMX without the "enable XSAVES" control drops XSAVES) and the
    // compacted size, no supervisor components; sub-leaf 2 the AVX component as the host CPU reports it, EDX 0.
    const row = (x: kvm_cpuid_entry2 | undefined): number[] => [x?.eax ?? -1, x?.ebx ?? -1, x?.ecx ?? -1, x?.edx ?? -1];
    expect(row(e(0xd))).toEqual([7, 832, 832, 0]);
    expect(row(e(0xd, 1))).toEqual([vendor.name === 'intel' ? 0x7 : 0xf, 832, 0, 0]);
    expect(row(e(0xd, 2))).toEqual([256, 576, 0, 0]);
    expect(exact.entries.slice(0, n).filter((x) => x.function === 0xd).map((x) => [x.index, x.flags])).toEqual([[0, 1], [1, 1], [2, 1]]);
    expect((e(1)?.ecx ?? 0) & ((1 << 26) | (1 << 28))).toBe((1 << 26) | (1 << 28)); // XSAVE, AVX (OSXSAVE is the guest's CR4)
    expect((e(1)?.ecx ?? 0) & (1 << 27)).toBe(0);
  });

  test('KVM_GET_EMULATED_CPUID: 3 entries (0, 1 MOVBE, 7 RDPID); exactly 3 is still E2BIG (the last functions probe for room)', () => {
    const s = openSys(vendor);
    const big = makeKvmCpuid2(256);
    expect(s.p.ioctl(s.sys, KVM_GET_EMULATED_CPUID, big)).toBe(0);
    expect(big.nent).toBe(3);
    expect(REAL.emulated_cpuid['nent']).toBe(3);
    expect(big.entries.slice(0, 3).map((x) => [x.function, x.index, x.flags, x.eax, x.ecx])).toEqual([
      [0, 0, 0, 7, 0],
      [1, 0, 0, 0, 1 << 22], // MOVBE
      [7, 0, 1, 0, 1 << 22], // RDPID (the hosts have RDTSCP)
    ]);
    for (const n of [0, 1, 2, 3]) {
      const c = makeKvmCpuid2(n);
      expect(errnoOf(s.host, () => s.p.ioctl(s.sys, KVM_GET_EMULATED_CPUID, c)), `nent ${n}`).toBe('E2BIG');
      expect(c.nent).toBe(n);
    }
    expect(s.p.ioctl(s.sys, KVM_GET_EMULATED_CPUID, makeKvmCpuid2(4))).toBe(0);
  });

  test('KVM_X86_GET_MCE_CAP_SUPPORTED: MCG_CTL_P | MCG_SER_P, plus LMCE and CMCI on VMX', () => {
    const s = openSys(vendor);
    const cap = makeU64();
    expect(s.p.ioctl(s.sys, KVM_X86_GET_MCE_CAP_SUPPORTED, cap)).toBe(0);
    const generic = num(REAL.mce_cap_supported.value); // 0x1000100 on the recording machine
    expect(generic).toBe(0x1000100n);
    // vmx_setup_mce: MCG_LMCE_P (27) and MCG_CMCI_P (10); SVM adds nothing
    expect(cap[0]).toBe(vendor.name === 'intel' ? generic | (1n << 27n) | (1n << 10n) : generic);
    expect(errnoOf(s.host, () => s.p.ioctl(s.sys, KVM_X86_GET_MCE_CAP_SUPPORTED, Object.freeze([0n])))).toBe('EFAULT');
  });
});
