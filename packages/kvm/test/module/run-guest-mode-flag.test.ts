/**
 * KVM_CAP_X86_GUEST_MODE (arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension, post_kvm_run_save): 1; every exit writes
 * kvm_run.flags, with KVM_RUN_X86_GUEST_MODE set only for a vCPU in guest mode (running L2). The model's guests
 * cannot enter VMX or SVM operation and KVM_SET_NESTED_STATE takes no guest-mode state, so the bit is always clear —
 * and whatever user space left in `flags` is overwritten.
 */
import { O_RDWR } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_CAP_X86_GUEST_MODE, KVM_CHECK_EXTENSION, KVM_EXIT_HLT, KVM_EXIT_IO, KVM_RUN, KVM_RUN_X86_GUEST_MODE, kvm } from '../../src/index.js';
import { HELLO, makeHost, makeVm, vmmProcess, VENDORS } from './helpers.js';

describe.each(VENDORS)('KVM_CAP_X86_GUEST_MODE ($name)', (vendor) => {
  test('answered 1; each exit rewrites kvm_run.flags, KVM_RUN_X86_GUEST_MODE clear outside guest mode', () => {
    const host = makeHost(vendor.hardware(), 2);
    host.modprobe(kvm({ postfix: '0' }));
    const p = vmmProcess(host);
    expect(p.ioctl(p.open('/dev/kvm0', O_RDWR), KVM_CHECK_EXTENSION, KVM_CAP_X86_GUEST_MODE)).toBe(1);
    const { vcpus } = makeVm(p, '/dev/kvm0', HELLO);
    const { fd, run } = vcpus[0]!;
    const exits: Array<[number, number]> = [];
    do {
      run.flags = 0xffff;
      p.ioctl(fd, KVM_RUN, 0);
      exits.push([run.exit_reason, run.flags & KVM_RUN_X86_GUEST_MODE]);
      expect(run.flags).toBe(0);
    } while (run.exit_reason === KVM_EXIT_IO);
    expect(exits).toEqual([[KVM_EXIT_IO, 0], [KVM_EXIT_IO, 0], [KVM_EXIT_HLT, 0]]);
  });
});
