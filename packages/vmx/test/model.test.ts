import { UsageError } from '@vac/core';
import type { HardwareModel } from '@vac/core';
import { describe, expect, expectTypeOf, test } from 'vitest';
import { ARCH_CAP, CPUID_BIT, INTEL_MSR, intel, L1D_FLUSH } from '../src/index.js';
import type { IntelHardware } from '../src/index.js';
import { makeHost } from './helpers.js';

describe('intel()', () => {
  test('is a plain HardwareModel', () => {
    const model = intel();
    expect(model.name).toBe('intel');
    expect(model.vendor).toBe('intel');
    expectTypeOf(model).toMatchTypeOf<HardwareModel>();
    expectTypeOf(model.create).returns.toEqualTypeOf<IntelHardware>();
  });

  test('CPUID: "GenuineIntel", leaf 1 ECX.VMX, APIC id, leaf 7 mitigations, address sizes', () => {
    const { cpus } = makeHost(3, { cpus: { 2: { vmx: false, flushL1d: false, archCapabilities: null } } });
    const l0 = cpus[0]!.readCpuid(0);
    const vendor = [l0.ebx, l0.edx, l0.ecx].map((r) => String.fromCharCode(r & 0xff, (r >> 8) & 0xff, (r >> 16) & 0xff, r >>> 24)).join('');
    expect(vendor).toBe('GenuineIntel');
    expect(cpus[0]!.readCpuid(1).ecx & CPUID_BIT.VMX).toBe(CPUID_BIT.VMX);
    expect(cpus[1]!.readCpuid(1).ebx >>> 24).toBe(1);
    expect(cpus[2]!.readCpuid(1).ecx & CPUID_BIT.VMX).toBe(0);
    expect(cpus[0]!.readCpuid(7).edx & (CPUID_BIT.FLUSH_L1D | CPUID_BIT.ARCH_CAPABILITIES | CPUID_BIT.MD_CLEAR)).toBe(
      CPUID_BIT.FLUSH_L1D | CPUID_BIT.ARCH_CAPABILITIES | CPUID_BIT.MD_CLEAR,
    );
    expect(cpus[2]!.readCpuid(7).edx & (CPUID_BIT.FLUSH_L1D | CPUID_BIT.ARCH_CAPABILITIES)).toBe(0);
    // The extended leaves up to 0x80000008, which gives the address sizes: 46 physical bits, 48 linear.
    expect(cpus[0]!.readCpuid(0x8000_0000).eax >>> 0).toBe(0x8000_0008);
    expect(cpus[1]!.readCpuid(0x8000_0008).eax).toBe(0x302e);
  });

  test('MSRs: feature control, VMX capabilities, syscall MSRs, TSC_AUX = CPU number', () => {
    const { cpus, hw } = makeHost(2);
    const c = cpus[1]!;
    expect(c.rdmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL)).toBe(0x5n);
    const basic = c.rdmsrSafe(INTEL_MSR.MSR_IA32_VMX_BASIC)!;
    expect(basic & 0x7fff_ffffn).toBe(0x12n);
    expect((basic >> 32n) & 0x1fffn).toBe(4096n);
    expect(c.rdmsrSafe(INTEL_MSR.MSR_IA32_VMX_EPT_VPID_CAP)).toBeDefined();
    expect(c.rdmsrSafe(INTEL_MSR.MSR_EFER)).toBe(0xd01n);
    expect(c.rdmsrSafe(INTEL_MSR.MSR_STAR)).toBe(0x0023_0010_0000_0000n);
    expect(c.rdmsrSafe(INTEL_MSR.MSR_LSTAR)).toBeDefined();
    expect(c.rdmsrSafe(INTEL_MSR.MSR_CSTAR)).toBeDefined();
    expect(c.rdmsrSafe(INTEL_MSR.MSR_SYSCALL_MASK)).toBe(0x25_7fd5n);
    expect(c.rdmsrSafe(INTEL_MSR.MSR_TSC_AUX)).toBe(1n);
    expect(c.rdmsrSafe(INTEL_MSR.MSR_IA32_ARCH_CAPABILITIES)).toBe(0n);
    expect(hw.capabilities()).toEqual({
      vmx: true,
      revisionId: 0x12,
      vmcsSize: 4096,
      ept: true,
      vpid: true,
      inveptSingleContext: true,
      inveptGlobal: true,
      invvpid: {
        'individual-address': true,
        'single-context': true,
        'all-context': true,
        'single-context-retaining-globals': true,
      },
      eptCap: 0x0633_4141, // bits 0, 6, 8, 14, 16, 17, 20, 21, 25, 26
      vpidCap: 0xf01,
    });
  });

  test('read-only and locked MSRs refuse writes (#GP); other MSRs are writable', () => {
    const { cpus } = makeHost(1);
    const c = cpus[0]!;
    expect(c.wrmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL, 0n)).toBe(false);
    expect(c.wrmsrSafe(INTEL_MSR.MSR_IA32_VMX_BASIC, 0n)).toBe(false);
    expect(c.wrmsrSafe(INTEL_MSR.MSR_IA32_ARCH_CAPABILITIES, 0n)).toBe(false);
    expect(c.wrmsrSafe(INTEL_MSR.MSR_LSTAR, 0x1234n)).toBe(true);
    expect(c.rdmsrSafe(INTEL_MSR.MSR_LSTAR)).toBe(0x1234n);
    expect(c.wrmsrSafe(0x1234_5678, 0n)).toBe(false);
  });

  test('an unlocked IA32_FEATURE_CONTROL stays writable until locked', () => {
    const { cpus } = makeHost(1, { featureControl: 0, kernelLocksFeatureControl: false });
    const c = cpus[0]!;
    expect(c.wrmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL, 0x5n)).toBe(true);
    expect(c.wrmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL, 0x0n)).toBe(false);
  });

  test('no VMX: no VMX MSRs, no IA32_FEATURE_CONTROL', () => {
    const { cpus, hw } = makeHost(1, { vmx: false });
    expect(cpus[0]!.rdmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL)).toBeUndefined();
    expect(cpus[0]!.rdmsrSafe(INTEL_MSR.MSR_IA32_VMX_BASIC)).toBeUndefined();
    expect(hw.capabilities(0).vmx).toBe(false);
  });

  test('no EPT and no VPID: no IA32_VMX_EPT_VPID_CAP (SDM A.10)', () => {
    const { cpus, hw } = makeHost(1, { ept: false, vpid: false });
    expect(cpus[0]!.rdmsrSafe(INTEL_MSR.MSR_IA32_VMX_EPT_VPID_CAP)).toBeUndefined();
    expect(hw.capabilities()).toMatchObject({ ept: false, vpid: false, inveptGlobal: false });
  });

  test('IA32_FLUSH_CMD: L1D_FLUSH counts an L1D flush; reserved bits fault', () => {
    const { cpus, hw } = makeHost(2, { archCapabilities: ARCH_CAP.ARCH_CAP_SKIP_VMENTRY_L1DFLUSH });
    expect(cpus[1]!.rdmsrSafe(INTEL_MSR.MSR_IA32_ARCH_CAPABILITIES)).toBe(8n);
    expect(cpus[1]!.wrmsrSafe(INTEL_MSR.MSR_IA32_FLUSH_CMD, BigInt(L1D_FLUSH))).toBe(true);
    expect(cpus[1]!.wrmsrSafe(INTEL_MSR.MSR_IA32_FLUSH_CMD, BigInt(L1D_FLUSH))).toBe(true);
    expect(cpus[1]!.wrmsrSafe(INTEL_MSR.MSR_IA32_FLUSH_CMD, 2n)).toBe(false);
    expect(hw.counters(1).l1dFlush).toBe(2);
    expect(hw.counters(0).l1dFlush).toBe(0);
  });

  test('without FLUSH_L1D, IA32_FLUSH_CMD faults', () => {
    const { cpus, hw } = makeHost(1, { flushL1d: false });
    expect(cpus[0]!.wrmsrSafe(INTEL_MSR.MSR_IA32_FLUSH_CMD, 1n)).toBe(false);
    expect(hw.counters(0).l1dFlush).toBe(0);
  });

  test('per-CPU overrides beat host options', () => {
    const { hw } = makeHost(3, { vmxRevisionId: 0x20, ept: false, cpus: { 1: { ept: true, vmxRevisionId: 0x21 } } });
    expect(hw.capabilities(0)).toMatchObject({ revisionId: 0x20, ept: false });
    expect(hw.capabilities(1)).toMatchObject({ revisionId: 0x21, ept: true });
    expect(hw.vmx.bootRevisionId).toBe(0x20);
  });

  test('bad options are UsageErrors naming the plug-in', () => {
    expect(() => intel({ vmxRevisionId: 0x8000_0000 })).toThrow(UsageError);
    expect(() => intel({ vmxRevisionId: 0x8000_0000 })).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => intel({ vmcsSize: 0 })).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => intel({ enableFault: 'never' as 'off' })).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => intel({ featureControl: 5, vmxDisabledByBios: true })).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => intel({ cpus: { 1: { kernelLocksFeatureControl: true } as never } })).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => intel({ cpus: { [-1]: {} } })).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => intel({ bogus: 1 } as never)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
    expect(() => makeHost(2, { cpus: { 5: { vmx: false } } })).toThrow('intel: options.cpus: there is no CPU 5 on a host with 2 CPUs');
  });

  test('two hosts from one model share no state', () => {
    const model = intel();
    const a = makeHost(1);
    const b = makeHost(1);
    expect(model.options).toEqual({});
    a.hw.virt.enableCpu(0);
    expect(b.hw.virt.isEnabled(0)).toBe(false);
  });
});
