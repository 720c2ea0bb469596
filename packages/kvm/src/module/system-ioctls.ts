/**
 * The generic ioctls of /dev/kvmX (virt/kvm/kvm_main.c `kvm_dev_ioctl`): the API version, `KVM_CREATE_VM`,
 * `KVM_CHECK_EXTENSION` and the size of a vCPU's mapping. The x86 ones (`kvm_arch_dev_ioctl`) are in
 * `system-arch-ioctls.ts`.
 *
 * @module
 */
import { KernelError, O_CLOEXEC, O_RDWR } from '@vac/core';
import {
  KVM_API_VERSION,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VM,
  KVM_GET_API_VERSION,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_VCPU_MMAP_SIZE,
  KVM_X86_DEFAULT_VM,
} from '../abi/constants.js';
import { checkExtension } from './caps.js';
import type { SystemFile } from './files.js';
import { vmArch } from './vm-arch.js';
import { valueArg, type IoctlDef } from './ioctl-table.js';

/** The generic system ioctls. */
export const SYSTEM_GENERIC_IOCTLS: readonly IoctlDef<SystemFile>[] = [
  {
    name: 'KVM_GET_API_VERSION',
    request: KVM_GET_API_VERSION,
    arg: { dir: 'value' },
    run(_f, arg) {
      if (valueArg(arg, 'KVM_GET_API_VERSION') !== 0) throw new KernelError('EINVAL', 'KVM_GET_API_VERSION', 'the argument must be 0');
      return KVM_API_VERSION;
    },
  },
  {
    name: 'KVM_CREATE_VM',
    request: KVM_CREATE_VM,
    arg: { dir: 'value' },
    run({ inst, files }, arg, proc) {
      const type = valueArg(arg, 'KVM_CREATE_VM');
      // kvm_arch_init_vm → kvm_is_vm_type_supported: the model offers KVM_X86_DEFAULT_VM only.
      if (type !== KVM_X86_DEFAULT_VM) throw new KernelError('EINVAL', 'KVM_CREATE_VM', `VM type ${type} is not supported`);
      const v = inst.createVm(proc);
      vmArch(v); // kvm_arch_init_vm: kvmclock starts now
      try {
        return proc.installAnonFile('kvm-vm', files.vm, v, O_RDWR | O_CLOEXEC); // get_unused_fd_flags(O_CLOEXEC)
      } catch (e) {
        inst.destroyVm(v);
        throw e;
      }
    },
  },
  {
    name: 'KVM_CHECK_EXTENSION',
    request: KVM_CHECK_EXTENSION,
    arg: { dir: 'value' },
    run: ({ inst }, arg, proc) => checkExtension(inst, valueArg(arg, 'KVM_CHECK_EXTENSION'), undefined, proc),
  },
  {
    name: 'KVM_GET_VCPU_MMAP_SIZE',
    request: KVM_GET_VCPU_MMAP_SIZE,
    arg: { dir: 'value' },
    run(_f, arg) {
      if (valueArg(arg, 'KVM_GET_VCPU_MMAP_SIZE') !== 0) throw new KernelError('EINVAL', 'KVM_GET_VCPU_MMAP_SIZE', 'the argument must be 0');
      return KVM_VCPU_MMAP_SIZE;
    },
  },
];
