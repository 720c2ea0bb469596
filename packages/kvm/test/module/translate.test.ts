/**
 * KVM_TRANSLATE (arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl_translate, mmu.c nonpaging_gva_to_gpa): without paging the
 * linear address is the guest-physical one, all 64 bits of it; the all-ones address is INVALID_GPA (not valid); x86
 * answers writeable 1 and usermode 0 whatever the struct held. With CR0.PG the model refuses (EINVAL), the
 * struct and the vCPU untouched.
 */
import { KernelError, O_RDWR, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_SREGS,
  KVM_SET_SREGS,
  KVM_TRANSLATE,
  kvm,
  makeKvmSregs,
  makeKvmTranslation,
  type kvm_translation,
} from '../../src/index.js';
import { makeHost, vmmProcess, VENDORS } from './helpers.js';

/** A VM with vCPU 0. */
function setup(vendor: (typeof VENDORS)[number]): { p: Process; vcpu: number } {
  const host = makeHost(vendor.hardware(), 2);
  host.modprobe(kvm({ postfix: '0' }));
  const p = vmmProcess(host);
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  return { p, vcpu: p.ioctl(vm, KVM_CREATE_VCPU, 0) };
}

/** KVM_TRANSLATE of `linear` with the out fields set to `stale` first. */
function translate(p: Process, vcpu: number, linear: bigint, stale: Partial<kvm_translation> = {}): kvm_translation {
  const t = makeKvmTranslation({ linear_address: linear, ...stale });
  expect(p.ioctl(vcpu, KVM_TRANSLATE, t)).toBe(0);
  return t;
}

describe.each(VENDORS)('KVM_TRANSLATE ($name)', (vendor) => {
  test('real mode: the linear address itself, up to 2^64 - 2; 2^64 - 1 is INVALID_GPA, not valid', () => {
    const { p, vcpu } = setup(vendor);
    const stale = { physical_address: 0x1234n, valid: 7, writeable: 0, usermode: 1 };
    expect(translate(p, vcpu, 0x12345n, stale)).toEqual({ linear_address: 0x12345n, physical_address: 0x12345n, valid: 1, writeable: 1, usermode: 0 });
    expect(translate(p, vcpu, 0x1234_5678_9000n, stale)).toEqual({ linear_address: 0x1234_5678_9000n, physical_address: 0x1234_5678_9000n, valid: 1, writeable: 1, usermode: 0 });
    expect(translate(p, vcpu, 2n ** 64n - 2n, stale)).toMatchObject({ physical_address: 2n ** 64n - 2n, valid: 1 });
    expect(translate(p, vcpu, 2n ** 64n - 1n, stale)).toEqual({ linear_address: 2n ** 64n - 1n, physical_address: 2n ** 64n - 1n, valid: 0, writeable: 1, usermode: 0 });
  });

  test('protected mode without paging: the same; the C structure\'s bytes are filled in place', () => {
    const { p, vcpu } = setup(vendor);
    const s = makeKvmSregs();
    p.ioctl(vcpu, KVM_GET_SREGS, s);
    s.cr0 |= 1n;
    p.ioctl(vcpu, KVM_SET_SREGS, s);
    expect(translate(p, vcpu, 0xfffff000n)).toEqual({ linear_address: 0xfffff000n, physical_address: 0xfffff000n, valid: 1, writeable: 1, usermode: 0 });
    const bytes = new Uint8Array(24);
    const view = new DataView(bytes.buffer);
    view.setBigUint64(0, 0xabcd_e000n, true);
    bytes.fill(0xff, 16);
    expect(p.ioctl(vcpu, KVM_TRANSLATE, bytes)).toBe(0);
    expect([view.getBigUint64(8, true), ...bytes.slice(16)]).toEqual([0xabcd_e000n, 1, 1, 0, 0, 0, 0, 0, 0]);
  });

  test('with paging on: EINVAL (the walk is not modelled), the argument and the vCPU unchanged; a bad argument is EFAULT', () => {
    const { p, vcpu } = setup(vendor);
    const s = makeKvmSregs();
    p.ioctl(vcpu, KVM_GET_SREGS, s);
    s.cr0 |= 0x8000_0001n;
    p.ioctl(vcpu, KVM_SET_SREGS, s);
    const before = makeKvmSregs();
    p.ioctl(vcpu, KVM_GET_SREGS, before);
    const t = makeKvmTranslation({ linear_address: 0x1000n, physical_address: 5n });
    let code = '';
    try {
      p.ioctl(vcpu, KVM_TRANSLATE, t);
    } catch (e) {
      code = e instanceof KernelError ? e.code : String(e);
    }
    expect(code).toBe('EINVAL');
    expect(t).toEqual(makeKvmTranslation({ linear_address: 0x1000n, physical_address: 5n }));
    const after = makeKvmSregs();
    p.ioctl(vcpu, KVM_GET_SREGS, after);
    expect(after).toEqual(before);
    expect(() => p.ioctl(vcpu, KVM_TRANSLATE, { linear_address: 0x1000 })).toThrow(expect.objectContaining({ code: 'EFAULT' }) as Error);
  });
});
