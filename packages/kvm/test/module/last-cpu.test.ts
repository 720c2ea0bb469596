/**
 * KVM_CAP_LAST_CPU (arch/x86/kvm/vmx/vmx.c / svm.c: `fail_entry.cpu` of KVM_EXIT_FAIL_ENTRY): 1; a failed VM entry
 * reports the CPU it was attempted on. After `host.reboot()` virtualization is off everywhere, so every KVM_RUN
 * fails its entry — on whichever CPU the VMM runs.
 */
import { O_RDWR } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_CAP_LAST_CPU, KVM_CHECK_EXTENSION, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_IO, KVM_RUN, kvm } from '../../src/index.js';
import { HELLO, makeHost, makeVm, vmmProcess, VENDORS } from './helpers.js';

describe.each(VENDORS)('KVM_CAP_LAST_CPU ($name)', (vendor) => {
  test('answered 1; KVM_EXIT_FAIL_ENTRY carries the CPU of the failed entry', () => {
    const host = makeHost(vendor.hardware(), 4);
    host.modprobe(kvm({ postfix: '0' }));
    const p = vmmProcess(host);
    expect(p.ioctl(p.open('/dev/kvm0', O_RDWR), KVM_CHECK_EXTENSION, KVM_CAP_LAST_CPU)).toBe(1);
    const { vcpus } = makeVm(p, '/dev/kvm0', HELLO);
    const { fd, run } = vcpus[0]!;
    p.ioctl(fd, KVM_RUN, 0);
    expect(run.exit_reason).toBe(KVM_EXIT_IO);
    host.reboot();
    const seen: Array<[number, number]> = [];
    for (const cpu of [2, 3, 1]) {
      p.setAffinity(cpu);
      run.fail_entry.cpu = 99;
      p.ioctl(fd, KVM_RUN, 0);
      seen.push([run.exit_reason, run.fail_entry.cpu]);
    }
    expect(seen).toEqual([[KVM_EXIT_FAIL_ENTRY, 2], [KVM_EXIT_FAIL_ENTRY, 3], [KVM_EXIT_FAIL_ENTRY, 1]]);
  });
});
