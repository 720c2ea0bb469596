/**
 * KVM_CAP_VM_DISABLE_NX_HUGE_PAGES (arch/x86/kvm/x86.c kvm_vm_ioctl_enable_cap): 1 on KVM_CHECK_EXTENSION; enabling
 * it needs CAP_SYS_BOOT (EPERM, checked first), args[0] 0 (EINVAL) and no vCPU yet (EINVAL); only success sets the
 * VM's `disable_nx_huge_pages`.
 */
import { O_RDWR, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, KVM_CHECK_EXTENSION, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_ENABLE_CAP, kvm, makeKvmEnableCap, vmOf } from '../../src/index.js';
import { vmArch } from '../../src/module/vm-arch.js';
import { errnoOf, makeHost, vmmProcess, VENDORS } from './helpers.js';

/** KVM_ENABLE_CAP(KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, arg0) on a new VM of `p` (after vCPU 0 when `vcpu`): errno, flag. */
function disable(p: Process, arg0: bigint, vcpu = false): [string, boolean] {
  const vm = p.ioctl(p.open('/dev/kvm0', O_RDWR), KVM_CREATE_VM, 0);
  if (vcpu) p.ioctl(vm, KVM_CREATE_VCPU, 0);
  const r = errnoOf(() => p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, args: [arg0, 0n, 0n, 0n] })));
  return [r, vmArch(vmOf(p, vm)).disableNxHugePages];
}

describe.each(VENDORS)('KVM_CAP_VM_DISABLE_NX_HUGE_PAGES ($name)', (vendor) => {
  test('root (CAP_SYS_BOOT): done with args[0] 0 before vCPUs, EINVAL otherwise; without CAP_SYS_BOOT EPERM first', () => {
    const host = makeHost(vendor.hardware(), 2);
    host.modprobe(kvm({ postfix: '0' }));
    const root = host.spawn({ uid: 0, name: 'qemu' });
    expect(root.ioctl(root.open('/dev/kvm0', O_RDWR), KVM_CHECK_EXTENSION, KVM_CAP_VM_DISABLE_NX_HUGE_PAGES)).toBe(1);
    expect(disable(root, 0n)).toEqual(['ok', true]);
    expect(disable(root, 1n)).toEqual(['EINVAL', false]);
    expect(disable(root, 0n, true)).toEqual(['EINVAL', false]);
    const user = vmmProcess(host);
    expect(disable(user, 0n)).toEqual(['EPERM', false]);
    expect(disable(user, 1n, true)).toEqual(['EPERM', false]);
    const rootWithoutBoot = host.spawn({ uid: 0, name: 'qemu', caps: ['CAP_SYS_ADMIN', 'CAP_DAC_OVERRIDE'] });
    expect(disable(rootWithoutBoot, 0n)).toEqual(['EPERM', false]);
  });
});
