/**
 * KVM_CAP_VCPU_ATTRIBUTES: KVM_HAS/GET/SET_DEVICE_ATTR on a vCPU fd (arch/x86/kvm/x86.c kvm_vcpu_ioctl_device_attr,
 * kvm_arch_tsc_has_attr / _get_attr / _set_attr): group KVM_VCPU_TSC_CTRL, attribute KVM_VCPU_TSC_OFFSET, the vCPU's
 * L1 TSC offset through the __u64 at `addr`; another group or attribute ENXIO; a bad `addr` EFAULT with nothing changed.
 */
import { O_RDWR, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_VCPU_ATTRIBUTES,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_DEVICE_ATTR,
  KVM_GET_MSRS,
  KVM_HAS_DEVICE_ATTR,
  KVM_SET_DEVICE_ATTR,
  KVM_SET_MSRS,
  KVM_VCPU_TSC_CTRL,
  KVM_VCPU_TSC_OFFSET,
  kvm,
  makeKvmDeviceAttr,
  makeKvmMsrEntry,
} from '../../src/index.js';
import { errnoOf, makeHost, vmmProcess, VENDORS } from './helpers.js';

const MSR_IA32_TSC = 0x10;

/** A VM with two vCPUs. */
function setup(vendor: (typeof VENDORS)[number]): { p: Process; sys: number; vcpus: [number, number] } {
  const host = makeHost(vendor.hardware(), 2);
  host.modprobe(kvm({ postfix: '0' }));
  const p = vmmProcess(host);
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  return { p, sys, vcpus: [p.ioctl(vm, KVM_CREATE_VCPU, 0), p.ioctl(vm, KVM_CREATE_VCPU, 1)] };
}

/** The vCPU's TSC offset (KVM_GET_DEVICE_ATTR into an 8-byte buffer). */
function getOffset(p: Process, vcpu: number): bigint {
  const buf = new Uint8Array(8);
  expect(p.ioctl(vcpu, KVM_GET_DEVICE_ATTR, makeKvmDeviceAttr({ group: KVM_VCPU_TSC_CTRL, attr: BigInt(KVM_VCPU_TSC_OFFSET), addr: buf }))).toBe(0);
  return new DataView(buf.buffer).getBigUint64(0, true);
}

/** KVM_SET_DEVICE_ATTR of the TSC offset. */
function setOffset(p: Process, vcpu: number, offset: bigint, flags = 0): number {
  const buf = new Uint8Array(8);
  new DataView(buf.buffer).setBigUint64(0, offset, true);
  return p.ioctl(vcpu, KVM_SET_DEVICE_ATTR, makeKvmDeviceAttr({ flags, group: KVM_VCPU_TSC_CTRL, attr: BigInt(KVM_VCPU_TSC_OFFSET), addr: buf }));
}

/** The guest TSC (KVM_GET_MSRS of IA32_TSC). */
function guestTsc(p: Process, vcpu: number): bigint {
  const msrs = { nmsrs: 1, entries: [makeKvmMsrEntry({ index: MSR_IA32_TSC })] };
  p.ioctl(vcpu, KVM_GET_MSRS, msrs);
  return msrs.entries[0]!.data;
}

describe.each(VENDORS)('vCPU TSC attributes ($name)', (vendor) => {
  test('KVM_CAP_VCPU_ATTRIBUTES 1; KVM_HAS_DEVICE_ATTR: the TSC offset only', () => {
    const { p, sys, vcpus } = setup(vendor);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_VCPU_ATTRIBUTES)).toBe(1);
    const has = (group: number, attr: bigint): string => errnoOf(() => p.ioctl(vcpus[0], KVM_HAS_DEVICE_ATTR, makeKvmDeviceAttr({ group, attr })));
    expect([has(0, 0n), has(0, 1n), has(1, 0n), has(0, 2n ** 32n)]).toEqual(['ok', 'ENXIO', 'ENXIO', 'ENXIO']);
  });

  test('both vCPUs start synchronized (one offset); a set offset moves the guest TSC by the difference and reads back', () => {
    const { p, vcpus } = setup(vendor);
    const [a, b] = vcpus;
    const offset = getOffset(p, a);
    expect(getOffset(p, b)).toBe(offset);
    const tsc = guestTsc(p, b);
    expect(setOffset(p, b, offset + 10n ** 12n, 7)).toBe(0); // flags are not looked at
    expect(getOffset(p, b)).toBe(offset + 10n ** 12n);
    expect(guestTsc(p, b) - tsc).toBe(10n ** 12n);
    expect(getOffset(p, a)).toBe(offset);
    // An offset below the host TSC's scaled value wraps as the u64 it is.
    expect(setOffset(p, b, 2n ** 64n - 1n)).toBe(0);
    expect(getOffset(p, b)).toBe(2n ** 64n - 1n);
  });

  test('a bad addr is EFAULT (nothing changed); another group or attribute ENXIO before addr is looked at', () => {
    const { p, vcpus } = setup(vendor);
    const offset = getOffset(p, vcpus[0]);
    const at = (op: number, group: number, attr: bigint): string => errnoOf(() => p.ioctl(vcpus[0], op, makeKvmDeviceAttr({ group, attr, addr: 8 })));
    expect([at(KVM_SET_DEVICE_ATTR, 0, 0n), at(KVM_GET_DEVICE_ATTR, 0, 0n), at(KVM_SET_DEVICE_ATTR, 1, 0n), at(KVM_GET_DEVICE_ATTR, 0, 1n)]).toEqual(['EFAULT', 'EFAULT', 'ENXIO', 'ENXIO']);
    expect(getOffset(p, vcpus[0])).toBe(offset);
  });
});

describe.each(VENDORS)('vCPU TSC attributes and IA32_TSC writes ($name)', (vendor) => {
  test('after a set offset the TSC counts as user-set: a host write of IA32_TSC within a second of the VM\'s TSC synchronizes', () => {
    const { p, vcpus } = setup(vendor);
    const [a, b] = vcpus;
    // Without a user-set TSC, a host write of a non-zero IA32_TSC never synchronizes (kvm_synchronize_tsc).
    expect(setOffset(p, a, getOffset(p, a))).toBe(0);
    const offset = getOffset(p, a);
    const msrs = { nmsrs: 1, entries: [makeKvmMsrEntry({ index: MSR_IA32_TSC, data: guestTsc(p, a) + 1000n })] };
    expect(p.ioctl(b, KVM_SET_MSRS, msrs)).toBe(1);
    // Matched: vCPU b takes the VM's current offset (a's), not the one that would read exactly the written value.
    expect(getOffset(p, b)).toBe(offset);
  });
});
