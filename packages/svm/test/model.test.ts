import { describe, expect, test } from 'vitest';
import { UsageError } from '@vac/core';
import type { HardwareModel } from '@vac/core';
import {
  AMD_DEFAULTS,
  AmdHardware,
  CPUID_80000001_ECX_SVM,
  EFER_HOST_DEFAULT,
  EFER_SVME,
  FOREIGN_SAVE_AREA_BASE,
  MSR_AMD64_TSC_RATIO,
  MSR_CSTAR,
  MSR_EFER,
  MSR_LSTAR,
  MSR_STAR,
  MSR_SYSCALL_MASK,
  MSR_TSC_AUX,
  MSR_VM_CR,
  MSR_VM_HSAVE_PA,
  SEV_CPUID_FUNC,
  SEV_FEATURE,
  SVM_CPUID_FUNC,
  SVM_FEATURE,
  amd,
} from '../src/index.js';
import { makeEnv, makeHost } from './helpers.js';

/** Decode the CPUID vendor string (EBX, EDX, ECX). */
function vendorOf(r: { ebx: number; ecx: number; edx: number }): string {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(r.ebx, 0);
  b.writeUInt32LE(r.edx, 4);
  b.writeUInt32LE(r.ecx, 8);
  return b.toString('latin1');
}

describe('amd() model object', () => {
  test('is a plain HardwareModel named amd', () => {
    const m = amd();
    const asModel: HardwareModel = m;
    expect(asModel.name).toBe('amd');
    expect(m.vendor).toBe('amd');
    expect(m.options).toEqual({ cpus: {} });
    expect(Object.isFrozen(m.options)).toBe(true);
    expect(m.defaults).toEqual(AMD_DEFAULTS);
    expect(Object.getPrototypeOf(m)).toBe(Object.prototype);
  });

  test('create() builds a separate AmdHardware per host', () => {
    const m = amd();
    const a = m.create(makeEnv(2));
    const b = m.create(makeEnv(2));
    expect(a).toBeInstanceOf(AmdHardware);
    expect(a.model).toBe(m);
    expect(a.virt.enableCpu(0)).toBeUndefined();
    expect(a.virt.isEnabled(0)).toBe(true);
    expect(b.virt.isEnabled(0)).toBe(false);
  });
});

describe('CPUID', () => {
  test('defaults: AuthenticAMD, SVM, 32768 ASIDs, features, SEV 100…509, C-bit 51', () => {
    const { env } = makeHost(2);
    const c = env.cpus[1]!;
    expect(vendorOf(c.readCpuid(0))).toBe('AuthenticAMD');
    expect(vendorOf(c.readCpuid(0x80000000))).toBe('AuthenticAMD');
    expect(c.readCpuid(0x80000000).eax).toBeGreaterThanOrEqual(0x8000001f);
    expect(c.readCpuid(0x80000001).ecx & CPUID_80000001_ECX_SVM).toBe(4);
    expect(c.readCpuid(1).ecx & (1 << 5)).toBe(0); // no VMX
    const svm = c.readCpuid(SVM_CPUID_FUNC);
    expect(svm.eax).toBe(1);
    expect(svm.ebx).toBe(32768);
    expect(svm.edx & SVM_FEATURE.NPT).toBe(1);
    expect(svm.edx & SVM_FEATURE.FLUSHBYASID).toBe(1 << 6);
    expect(svm.edx & SVM_FEATURE.AVIC).toBe(1 << 13);
    expect(svm.edx & SVM_FEATURE.NRIPS).toBe(1 << 3);
    const sev = c.readCpuid(SEV_CPUID_FUNC);
    expect(sev.eax & SEV_FEATURE.SEV).toBe(2);
    expect(sev.eax & SEV_FEATURE.SEV_ES).toBe(8);
    expect(sev.ebx & 0x3f).toBe(51);
    expect(sev.ecx).toBe(509);
    expect(sev.edx).toBe(100);
  });

  test('options change the leaves; CPUs with the same options share frozen leaf objects', () => {
    const { env } = makeHost(3, {
      nrAsids: 4096,
      avic: false,
      flushByAsid: false,
      cBit: 47,
      maxSevAsid: 15,
      minSevAsid: 5,
      cpus: { 2: { svm: false } },
    });
    const [c0, c1, c2] = [env.cpus[0]!, env.cpus[1]!, env.cpus[2]!];
    expect(c0.readCpuid(SVM_CPUID_FUNC)).toEqual({ eax: 1, ebx: 4096, ecx: 0, edx: c0.readCpuid(SVM_CPUID_FUNC).edx });
    expect(c0.readCpuid(SVM_CPUID_FUNC).edx & (SVM_FEATURE.AVIC | SVM_FEATURE.FLUSHBYASID)).toBe(0);
    expect(c0.readCpuid(SEV_CPUID_FUNC)).toMatchObject({ ecx: 15, edx: 5 });
    expect(c0.readCpuid(SEV_CPUID_FUNC).ebx & 0x3f).toBe(47);
    expect(c0.readCpuid(SVM_CPUID_FUNC)).toBe(c1.readCpuid(SVM_CPUID_FUNC));
    expect(Object.isFrozen(c0.readCpuid(SVM_CPUID_FUNC))).toBe(true);
    expect(c2.readCpuid(0x80000001).ecx & CPUID_80000001_ECX_SVM).toBe(0);
    expect(c2.readCpuid(SVM_CPUID_FUNC)).toEqual({ eax: 0, ebx: 0, ecx: 0, edx: 0 });
  });

  test('sev: false clears the SEV bits and reports no SEV ASIDs', () => {
    const { env } = makeHost(1, { sev: false });
    const sev = env.cpus[0]!.readCpuid(SEV_CPUID_FUNC);
    expect(sev.eax & (SEV_FEATURE.SEV | SEV_FEATURE.SEV_ES)).toBe(0);
    expect(sev.ecx).toBe(0);
    expect(sev.edx).toBe(0);
  });

  test('vendor HygonGenuine', () => {
    const { env, hw } = makeHost(1, { vendor: 'HygonGenuine' });
    expect(vendorOf(env.cpus[0]!.readCpuid(0))).toBe('HygonGenuine');
    expect(hw.virt.unsupported(0)).toBeUndefined();
  });
});

describe('MSRs', () => {
  test('defaults', () => {
    const { env } = makeHost(4);
    const c = env.cpus[3]!;
    expect(c.rdmsrSafe(MSR_EFER)).toBe(0xd01n);
    expect(c.rdmsrSafe(MSR_EFER)).toBe(EFER_HOST_DEFAULT);
    expect(c.rdmsrSafe(MSR_VM_CR)).toBe(0n);
    expect(c.rdmsrSafe(MSR_VM_HSAVE_PA)).toBe(0n);
    expect(c.rdmsrSafe(MSR_TSC_AUX)).toBe(3n);
    expect(c.rdmsrSafe(MSR_STAR)).toBe(0x0023001000000000n);
    expect(c.rdmsrSafe(MSR_SYSCALL_MASK)).toBe(0x257fd5n);
    expect(c.rdmsrSafe(MSR_LSTAR)).toBeTypeOf('bigint');
    expect(c.rdmsrSafe(MSR_CSTAR)).toBeTypeOf('bigint');
    expect(c.rdmsrSafe(MSR_AMD64_TSC_RATIO)).toBe(0x0100000000n);
    expect(c.rdmsrSafe(0x12345)).toBeUndefined();
  });

  test('per-CPU overrides: SVMDIS (+LOCK by default) on CPU 2 only, foreign owner on CPU 1', () => {
    const { env, hw } = makeHost(4, { cpus: { 2: { svmDisabledByBios: true }, 1: { foreignOwner: true } } });
    expect(env.cpus[2]!.rdmsrSafe(MSR_VM_CR)).toBe(0x18n);
    expect(env.cpus[0]!.rdmsrSafe(MSR_VM_CR)).toBe(0n);
    expect(env.cpus[3]!.rdmsrSafe(MSR_VM_CR)).toBe(0n);
    expect(env.cpus[1]!.rdmsrSafe(MSR_EFER)).toBe(EFER_HOST_DEFAULT | EFER_SVME);
    expect(env.cpus[1]!.rdmsrSafe(MSR_VM_HSAVE_PA)).toBe(FOREIGN_SAVE_AREA_BASE + 0x1000n);
    expect(hw.config(2).svmDisabledByBios).toBe(true);
    expect(hw.config(2).vmCrLocked).toBe(true);
    expect(hw.config(0).svmDisabledByBios).toBe(false);
    expect(hw.config(0)).toBe(hw.config(3));
    expect(hw.cpu(1).owner).toBe('foreign');
    expect(hw.cpu(0).owner).toBe('none');
  });

  test('SVMDIS without LOCK when vmCrLocked: false', () => {
    const { env } = makeHost(1, { svmDisabledByBios: true, vmCrLocked: false });
    expect(env.cpus[0]!.rdmsrSafe(MSR_VM_CR)).toBe(0x10n);
  });
});

describe('option validation', () => {
  test('bad options throw UsageError naming amd()', () => {
    expect(() => amd({ bogus: 1 } as never)).toThrow(UsageError);
    expect(() => amd({ bogus: 1 } as never)).toThrow("amd(): unknown option 'bogus'");
    expect(() => amd({ nrAsids: 1.5 })).toThrow('amd(): nrAsids must be a non-negative integer, got 1.5');
    expect(() => amd({ svm: 'yes' as never })).toThrow('amd(): svm must be a boolean');
    expect(() => amd({ sev: false, sevEs: true })).toThrow('amd(): sevEs needs sev');
    expect(amd({ sev: false }).defaults.sevEs).toBe(false);
    expect(() => amd({ nrAsids: 16, maxSevAsid: 15 })).toThrow(
      'amd(): maxSevAsid 15 leaves no ASID for ordinary guests (nrAsids 16)',
    );
    expect(() => amd({ minSevAsid: 0 })).toThrow('amd(): minSevAsid must be in [1, maxSevAsid + 1], got 0');
    expect(() => amd({ cpus: { 1: { svm: false, foreignOwner: true } } }).create(makeEnv(2))).toThrow(
      'amd(): cpus[1].a foreign hypervisor cannot own a CPU without usable SVM',
    );
    expect(() => amd({ cpus: { x: {} } as never })).toThrow("amd(): cpus: 'x' is not a CPU number");
    expect(() => amd({ enableFault: 'never' as never })).toThrow(
      "amd(): enableFault must be 'once', 'always' or 'off', got never",
    );
  });

  test('an override for a CPU the host does not have fails at create', () => {
    const m = amd({ cpus: { 7: { svm: false } } });
    expect(() => m.create(makeEnv(4))).toThrow('amd(): cpus: there is no CPU 7 on a host with 4 CPUs');
    expect(m.create(makeEnv(8))).toBeInstanceOf(AmdHardware);
  });
});
