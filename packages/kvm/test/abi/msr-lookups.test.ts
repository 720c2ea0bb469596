/**
 * What KVM_GET_MSRS / KVM_SET_MSRS decide about an MSR before they look at its value (module/msr-descriptors.ts: the
 * build, the vendor's MSRs, the paravirtual feature bits, the advertised list, the MSRs read as kept values), and the
 * kernel's copy of the entries (module/msr-entries.ts) taken from and written back to the right bytes. The answers
 * are written out here from Linux's rules (`guest_pv_has`, `kvm_do_msr_access`), not from the module's tables.
 */
import { createHost } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_CAPS, KVM_ENABLE_CAP, KVM_GET_MSRS, KVM_SET_MSRS, createRealModeVm, kvm, makeKvmEnableCap } from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';

/** A vCPU of a fresh real-mode VM. */
function vcpu(vendor: (typeof VENDORS)[number]) {
  const host = createHost({ cpus: 1, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  const vm = createRealModeVm(p, '/dev/kvm0', { code: [0xf4] });
  return { host, p, fd: vm.vcpus[0]!.fd };
}

/** `struct kvm_msrs` of `entries` as C bytes, at `offset` of a larger buffer (0xee around it). */
function bytesAt(entries: ReadonlyArray<readonly [number, bigint]>, offset = 0): Uint8Array {
  const all = new Uint8Array(offset + 8 + 16 * entries.length + 8).fill(0xee);
  const b = all.subarray(offset, offset + 8 + 16 * entries.length);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  dv.setUint32(0, entries.length, true);
  dv.setUint32(4, 0, true);
  entries.forEach(([index, data], i) => {
    dv.setUint32(8 + 16 * i, index, true);
    dv.setUint32(8 + 16 * i + 4, 0, true);
    dv.setBigUint64(8 + 16 * i + 8, data, true);
  });
  return b;
}

/** Entry `i`'s data. */
function dataOf(b: Uint8Array, i: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(8 + 16 * i + 8, true);
}

const MSR_STAR = 0xc000_0081;
const MSR_LSTAR = 0xc000_0082;
const MSR_KVM_POLL_CONTROL = 0x4b56_4d05;
const MSR_KVM_ASYNC_PF_EN = 0x4b56_4d02;
const MSR_IA32_FEAT_CTL = 0x3a;
const MSR_IA32_CR_PAT = 0x277;

describe.each(VENDORS)('MSR lookups on $name', (vendor) => {
  test('a paravirtual MSR is refused once KVM_CAP_ENFORCE_PV_FEATURE_CPUID is on and the CPUID has no KVM leaves; other MSRs are not', () => {
    const s = vcpu(vendor);
    // Without enforcement every PV feature is the guest's (guest_pv_has).
    expect(s.p.ioctl(s.fd, KVM_SET_MSRS, bytesAt([[MSR_KVM_POLL_CONTROL, 1n], [MSR_STAR, 0x23_0010_0000_0000n]]))).toBe(2);
    const g = bytesAt([[MSR_KVM_POLL_CONTROL, 0n], [MSR_STAR, 0n]]);
    expect(s.p.ioctl(s.fd, KVM_GET_MSRS, g)).toBe(2);
    expect([dataOf(g, 0), dataOf(g, 1)]).toEqual([1n, 0x23_0010_0000_0000n]);
    s.p.ioctl(s.fd, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAPS.KVM_CAP_ENFORCE_PV_FEATURE_CPUID, args: [1n, 0n, 0n, 0n] }));
    // createRealModeVm sets no KVM_CPUID_SIGNATURE leaf: no PV feature is the guest's.
    const before = s.host.snapshot();
    expect(s.p.ioctl(s.fd, KVM_SET_MSRS, bytesAt([[MSR_KVM_POLL_CONTROL, 0n]]))).toBe(0);
    expect(s.p.ioctl(s.fd, KVM_SET_MSRS, bytesAt([[MSR_KVM_ASYNC_PF_EN, 0n]]))).toBe(0);
    expect(s.p.ioctl(s.fd, KVM_GET_MSRS, bytesAt([[MSR_KVM_POLL_CONTROL, 0n]]))).toBe(0);
    expect(s.host.snapshot()).toEqual(before);
    expect(s.p.ioctl(s.fd, KVM_GET_MSRS, bytesAt([[MSR_STAR, 0n], [MSR_LSTAR, 0n], [MSR_KVM_POLL_CONTROL, 0n]]))).toBe(2);
  });

  test('MSRs outside every range KVM knows, and x2APIC MSRs without an in-kernel LAPIC, stop the batch; the vendor\'s own MSR is read', () => {
    const s = vcpu(vendor);
    for (const msr of [0x4000_0000, 0x1_0000, 0xc000_1000, 0x802, 0xffff_ffff]) {
      expect([msr, s.p.ioctl(s.fd, KVM_GET_MSRS, bytesAt([[MSR_IA32_CR_PAT, 0n], [msr, 0n]]))]).toEqual([msr, 1]);
      expect([msr, s.p.ioctl(s.fd, KVM_SET_MSRS, bytesAt([[MSR_IA32_CR_PAT, 0x0007040600070406n], [msr, 1n]]))]).toEqual([msr, 1]);
    }
    // IA32_FEAT_CTL is VMX's (vmx_get_msr); on SVM KVM does not list it and has no handler: the batch stops.
    expect(s.p.ioctl(s.fd, KVM_GET_MSRS, bytesAt([[MSR_IA32_FEAT_CTL, 0n]]))).toBe(vendor.name === 'intel' ? 1 : 0);
  });

  test('the entries are read from and written back to the caller\'s bytes where they are (a view at an offset), nothing around them', () => {
    const s = vcpu(vendor);
    const set = bytesAt([[MSR_STAR, 0x1234_5678_9abc_def0n], [MSR_IA32_CR_PAT, 0x0606060606060606n]], 13);
    expect(s.p.ioctl(s.fd, KVM_SET_MSRS, set)).toBe(2);
    const g = bytesAt([[MSR_STAR, 7n], [MSR_IA32_CR_PAT, 7n], [0x4000_0000, 7n]], 5);
    const whole = new Uint8Array(g.buffer);
    expect(s.p.ioctl(s.fd, KVM_GET_MSRS, g)).toBe(2);
    expect([dataOf(g, 0), dataOf(g, 1), dataOf(g, 2)]).toEqual([0x1234_5678_9abc_def0n, 0x0606060606060606n, 7n]);
    expect([...whole.subarray(0, 5), ...whole.subarray(5 + g.length)].every((x) => x === 0xee)).toBe(true);
    // A Node Buffer (a view of a shared pool) works the same.
    const buf = Buffer.from(bytesAt([[MSR_STAR, 0n]]));
    expect(s.p.ioctl(s.fd, KVM_GET_MSRS, buf)).toBe(1);
    expect(buf.readBigUInt64LE(16)).toBe(0x1234_5678_9abc_def0n);
  });
});
