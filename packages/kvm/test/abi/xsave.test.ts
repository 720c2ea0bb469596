/**
 * XSAVE on the model's CPUs (CPUID leaf 0xD: x87, SSE, AVX): KVM_GET/SET_XSAVE's layout and validation
 * (arch/x86/kernel/fpu/xstate.c `copy_uabi_to_xstate`, `validate_user_xstate_header`, `__copy_xstate_to_uabi_buf`;
 * arch/x86/kernel/fpu/core.c `fpu_copy_uabi_to_guest_fpstate`), XCR0 (arch/x86/kvm/x86.c `__kvm_set_xcr`), and
 * both in the save and restore of a whole VM. The errno of each refusal was checked on the real 6.18 /dev/kvm
 * (conformance facts `vcpu.xcrs.*`, `vcpu.xsave.*`); here: the state is left as it was, and the guest's CPUID decides.
 */
import { describe, expect, test } from 'vitest';
import {
  KVM_CHECK_EXTENSION,
  KVM_CAP_XSAVE2,
  KVM_GET_SUPPORTED_CPUID,
  KVM_GET_XCRS,
  KVM_GET_XSAVE,
  KVM_GET_XSAVE2,
  KVM_SET_CPUID2,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
  makeKvmCpuid2,
  makeKvmXcrs,
  makeKvmXsave,
  restoreVm,
  saveVm,
  type kvm_cpuid_entry2,
  type kvm_xsave,
  parseSavedVcpu,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { errnoOf, openVm, type VmSetup } from './support.js';

/** XSTATE_BV's word in `region` (byte 512), the AVX component's first word (byte 576), the software bytes (464). */
const BV = 128;
const YMM = 144;
const SW = 116;

function supported(s: VmSetup): kvm_cpuid_entry2[] {
  const c = makeKvmCpuid2(256);
  s.p.ioctl(s.sys, KVM_GET_SUPPORTED_CPUID, c);
  return c.entries.slice(0, c.nent);
}

function setCpuid(s: VmSetup, entries: kvm_cpuid_entry2[]): void {
  expect(s.p.ioctl(s.vcpus[0]!, KVM_SET_CPUID2, makeKvmCpuid2(entries))).toBe(0);
}

function xcr0(s: VmSetup): bigint {
  const x = makeKvmXcrs();
  s.p.ioctl(s.vcpus[0]!, KVM_GET_XCRS, x);
  return x.xcrs[0]!.value;
}

function setXcr0(s: VmSetup, value: bigint): number {
  const x = makeKvmXcrs({ nr_xcrs: 1 });
  x.xcrs[0]!.value = value;
  return s.p.ioctl(s.vcpus[0]!, KVM_SET_XCRS, x);
}

function getXsave(s: VmSetup): kvm_xsave {
  const x = makeKvmXsave();
  expect(s.p.ioctl(s.vcpus[0]!, KVM_GET_XSAVE, x)).toBe(0);
  return x;
}

/** An XSAVE image with XSTATE_BV = `bv` and a mark in YMM0's upper half. */
function withAvx(s: VmSetup, bv: number): kvm_xsave {
  const x = getXsave(s);
  x.region[BV] = bv;
  x.region[YMM] = 0x12345678;
  x.region[YMM + 7] = 0x9abcdef0;
  return x;
}

describe.each(VENDORS)('XSAVE and XCR0 on $name', (vendor) => {
  test('KVM_CAP_XSAVE2 is the uABI size (4096: the AVX area ends at 832); KVM_GET_XSAVE2 gives the same image', () => {
    const s = openVm(vendor);
    expect(s.p.ioctl(s.sys, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2)).toBe(4096);
    const x2 = makeKvmXsave();
    expect(s.p.ioctl(s.vcpus[0]!, KVM_GET_XSAVE2, x2)).toBe(0);
    expect(x2.region).toEqual(getXsave(s).region);
  });

  test('a new vCPU: XSTATE_BV 0, FCW 0x37f, MXCSR 0x1f80, and the host\'s user features (7) in the software bytes', () => {
    const s = openVm(vendor);
    const x = getXsave(s);
    expect([x.region[0], x.region[6], x.region[SW], x.region[SW + 1], x.region[BV], x.region[BV + 1]]).toEqual([0x37f, 0x1f80, 7, 0, 0, 0]);
    expect(xcr0(s)).toBe(1n);
  });

  test('XCR0 = x87|SSE|AVX once the guest\'s CPUID offers AVX; refused (EINVAL, XCR0 unchanged) without it or without SSE', () => {
    const s = openVm(vendor);
    // No CPUID yet: guest_supported_xcr0 is 0, so only x87.
    expect(errnoOf(s.host, () => setXcr0(s, 7n))).toBe('EINVAL');
    const all = supported(s);
    // A guest CPUID whose leaf 0xD offers x87 | SSE only.
    setCpuid(s, all.map((e) => (e.function === 0xd && e.index === 0 ? { ...e, eax: 3 } : e)));
    expect(errnoOf(s.host, () => setXcr0(s, 7n))).toBe('EINVAL');
    expect(setXcr0(s, 3n)).toBe(0);
    const t = openVm(vendor);
    setCpuid(t, supported(t));
    expect(errnoOf(t.host, () => setXcr0(t, 5n))).toBe('EINVAL'); // AVX without SSE
    expect(errnoOf(t.host, () => setXcr0(t, 6n))).toBe('EINVAL'); // x87 clear
    expect(errnoOf(t.host, () => setXcr0(t, 0xfn))).toBe('EINVAL'); // BNDREGS: not the guest's
    expect(xcr0(t)).toBe(1n);
    expect(setXcr0(t, 7n)).toBe(0);
    expect(xcr0(t)).toBe(7n);
  });

  test('AVX state: taken when the host supports it, shown only to a guest whose CPUID has AVX', () => {
    const s = openVm(vendor);
    // Before KVM_SET_CPUID2 the state is taken (kvm_caps.supported_xcr0), but GET masks XSTATE_BV with FP|SSE and
    // gives the AVX component's init state (zeros).
    expect(s.p.ioctl(s.vcpus[0]!, KVM_SET_XSAVE, withAvx(s, 7))).toBe(0);
    const hidden = getXsave(s);
    expect([hidden.region[BV], hidden.region[YMM], hidden.region[YMM + 7]]).toEqual([3, 0, 0]);
    setCpuid(s, supported(s));
    const got = getXsave(s);
    expect([got.region[BV], got.region[YMM], got.region[YMM + 7]]).toEqual([7, 0x12345678, 0x9abcdef0]);
  });

  test('refusals leave the state as it was: an unsupported component, XCOMP_BV, a reserved header byte, a reserved MXCSR bit with x87 only', () => {
    const s = openVm(vendor);
    setCpuid(s, supported(s));
    const before = getXsave(s);
    const bad = (f: (x: kvm_xsave) => void): string => {
      const x = withAvx(s, 7);
      f(x);
      return errnoOf(s.host, () => s.p.ioctl(s.vcpus[0]!, KVM_SET_XSAVE, x));
    };
    expect(bad((x) => (x.region[BV] = 0xf))).toBe('EINVAL'); // BNDREGS: not in kvm_caps.supported_xcr0
    expect(bad((x) => (x.region[BV + 1] = 1))).toBe('EINVAL'); // bit 32
    expect(bad((x) => (x.region[130] = 3))).toBe('EINVAL'); // XCOMP_BV
    expect(bad((x) => (x.region[140] = 1))).toBe('EINVAL'); // reserved header bytes
    expect(bad((x) => ((x.region[BV] = 1), (x.region[6] = 0xffffffff)))).toBe('EINVAL'); // MXCSR, x87 only
    expect(getXsave(s).region).toEqual(before.region);
  });

  test('on C bytes: the same image as the object form, nothing of one vCPU\'s image left in the next GET, SET from a view at an offset', () => {
    const s = openVm(vendor);
    setCpuid(s, supported(s));
    expect(s.p.ioctl(s.vcpus[0]!, KVM_SET_XSAVE, withAvx(s, 7))).toBe(0);
    const t = openVm(vendor); // a fresh vCPU: XSTATE_BV 0, the AVX area zero
    const bytesOf = (v: VmSetup): Uint8Array => {
      const b = new Uint8Array(4096).fill(0xee);
      expect(v.p.ioctl(v.vcpus[0]!, KVM_GET_XSAVE, b)).toBe(0);
      return b;
    };
    const wordsOf = (b: Uint8Array): number[] => Array.from({ length: 1024 }, (_, i) => new DataView(b.buffer, b.byteOffset).getUint32(4 * i, true));
    expect(wordsOf(bytesOf(s))).toEqual(Array.from(getXsave(s).region));
    expect(wordsOf(bytesOf(t))).toEqual(Array.from(getXsave(t).region));
    expect(wordsOf(bytesOf(t))[YMM]).toBe(0);
    // SET from bytes 7 into a larger buffer (only its 4096 bytes from there are read), a refused one changes nothing
    const image = bytesOf(s);
    const at = new Uint8Array(7 + 4096 + 9).fill(0x55);
    at.set(image, 7);
    expect(t.p.ioctl(t.vcpus[0]!, KVM_SET_CPUID2, makeKvmCpuid2(supported(t)))).toBe(0);
    expect(t.p.ioctl(t.vcpus[0]!, KVM_SET_XSAVE, at.subarray(7))).toBe(0);
    expect(wordsOf(bytesOf(t))).toEqual(wordsOf(image));
    const bad = image.slice();
    new DataView(bad.buffer).setUint32(4 * 130, 3, true); // XCOMP_BV
    const before = t.host.snapshot();
    expect(errnoOf(t.host, () => t.p.ioctl(t.vcpus[0]!, KVM_SET_XSAVE, bad))).toBe('EINVAL');
    expect(t.host.snapshot()).toEqual(before);
    expect(errnoOf(t.host, () => t.p.ioctl(t.vcpus[0]!, KVM_SET_XSAVE, image.subarray(0, 4095)))).toBe('EFAULT');
  });

  test('saveVm / restoreVm carry XCR0 and the AVX state to a new VM', () => {
    const s = openVm(vendor);
    setCpuid(s, supported(s));
    expect(s.p.ioctl(s.vcpus[0]!, KVM_SET_XSAVE, withAvx(s, 7))).toBe(0);
    expect(setXcr0(s, 7n)).toBe(0);
    const saved = saveVm(s.p, { sys: s.sys, vm: s.vm, vcpus: [{ id: 0, fd: s.vcpus[0]!, run: s.runs[0]! }] });
    expect(parseSavedVcpu(saved.vcpus[0]!).xcrs?.xcrs[0]?.value).toBe(7n);
    const copy = restoreVm(s.p, '/dev/kvm0', saved, { slots: [] });
    const t: VmSetup = { ...s, sys: copy.sys, vm: copy.vm, vcpus: [copy.vcpus[0]!.fd], runs: [copy.vcpus[0]!.run] };
    expect(xcr0(t)).toBe(7n);
    expect(getXsave(t).region).toEqual(getXsave(s).region);
  });
});
