/**
 * The classic ioctls of a VM fd: `KVM_CREATE_VCPU`, `KVM_CHECK_EXTENSION` on the VM, `KVM_CREATE_IRQCHIP`, `KVM_SET_TSS_ADDR` and `KVM_MEMORY_ENCRYPT_OP` (virt/kvm/kvm_main.c `kvm_vm_ioctl`,
 * arch/x86/kvm/x86.c `kvm_arch_vm_ioctl`).
 *
 * @module
 */
import { KernelError, O_CLOEXEC, O_RDWR, type MemEncryptCommand } from '@vac/core';
import {
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VCPU,
  KVM_MAX_VCPUS,
  KVM_MAX_VCPU_IDS,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_SET_TSS_ADDR,
  PAGE_SIZE,
} from '../abi/constants.js';
import { checkUserWritable, copyFromUser, copyToUser } from '../abi/codec.js';
import { KVM_SEV_CMD_CODEC } from '../abi/structs.js';
import { checkExtension } from './caps.js';
import type { VmFile } from './files.js';
import { valueArg, type IoctlDef } from './ioctl-table.js';
import { VCPU_FAULT_SITE } from './faults.js';
import { Vcpu } from './vcpu.js';
import { VcpuIntr } from './vcpu-intr.js';
import { vcpuCreated, vcpuPrecreate } from './vcpu-create.js';

/** The classic VM ioctls. */
export const VM_BASE_IOCTLS: readonly IoctlDef<VmFile>[] = [
  {
    name: 'KVM_CREATE_VCPU',
    request: KVM_CREATE_VCPU,
    arg: { dir: 'value' },
    run({ vm, files }, arg, proc) {
      // kvm_vm_ioctl_create_vcpu
      const inst = vm.instance;
      const id = valueArg(arg, 'KVM_CREATE_VCPU');
      if (id < 0 || id >= KVM_MAX_VCPU_IDS) throw new KernelError('EINVAL', 'KVM_CREATE_VCPU', `vCPU id ${id} is not below KVM_MAX_VCPU_IDS (${KVM_MAX_VCPU_IDS})`);
      if (vm.createdVcpus >= KVM_MAX_VCPUS) throw new KernelError('EINVAL', 'KVM_CREATE_VCPU', `the VM has KVM_MAX_VCPUS (${KVM_MAX_VCPUS}) vCPUs`);
      vcpuPrecreate(vm, id, 'KVM_CREATE_VCPU');
      if (vm.vcpus.has(id)) throw new KernelError('EEXIST', 'KVM_CREATE_VCPU', `vCPU ${id} exists`);
      if (inst.host.faults.shouldFail(VCPU_FAULT_SITE)) throw new KernelError('ENOMEM', 'KVM_CREATE_VCPU', 'injected allocation failure');
      const tag = { instance: inst.name, vm: vm.id, vcpu: id };
      const vendor = inst.vendor.createVcpu(vm.vendor, tag);
      const v = new Vcpu(inst, vm, id, tag, vendor);
      let fd: number;
      try {
        fd = proc.installAnonFile(`kvm-vcpu:${id}`, files.vcpu, v, O_RDWR | O_CLOEXEC); // create_vcpu_fd
      } catch (e) {
        vendor.free();
        throw e;
      }
      vm.vcpus.set(id, v);
      vm.createdVcpus++;
      // kvm_arch_vcpu_create: with an in-kernel irqchip, the vCPU's LAPIC (kvm_create_lapic).
      if (vm.irq !== undefined) v.intr = new VcpuIntr(v, vm.irq);
      vm.users++; // kvm_get_kvm: the vCPU fd pins the VM
      vcpuCreated(v);
      inst.host.events.emit('vcpu:create', { module: inst.name, vm: vm.id, vcpu: id, tlbTag: vendor.tlbTag().value });
      return fd;
    },
  },
  {
    name: 'KVM_CHECK_EXTENSION',
    request: KVM_CHECK_EXTENSION,
    arg: { dir: 'value' },
    run: ({ vm }, arg, proc) => checkExtension(vm.instance, valueArg(arg, 'KVM_CHECK_EXTENSION'), vm, proc),
  },
  {
    name: 'KVM_SET_TSS_ADDR',
    request: KVM_SET_TSS_ADDR,
    arg: { dir: 'value' },
    run(_f, arg) {
      const addr = valueArg(arg, 'KVM_SET_TSS_ADDR');
      // vmx_set_tss_addr: the three pages must lie below 4 GiB; SVM accepts anything.
      if (addr + 3 * PAGE_SIZE > 2 ** 32) throw new KernelError('EINVAL', 'KVM_SET_TSS_ADDR', 'the TSS must lie below 4 GiB');
      return 0;
    },
  },
  {
    name: 'KVM_MEMORY_ENCRYPT_OP',
    request: KVM_MEMORY_ENCRYPT_OP,
    arg: { dir: 'inout', codec: KVM_SEV_CMD_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_MEMORY_ENCRYPT_OP';
      if (!vm.vendor.memEncrypt) throw new KernelError('ENOTTY', op, `${vm.instance.name} has no memory encryption`);
      const cmd = copyFromUser(KVM_SEV_CMD_CODEC, arg, op);
      // sev_mem_enc_ioctl copies the command back (its `error`) whatever the result; the ASID it may take cannot
      // be given back after a failed copy, so a destination that cannot be written fails first, with nothing done.
      checkUserWritable(KVM_SEV_CMD_CODEC, arg, op);
      const c: MemEncryptCommand = { id: cmd.id, data: cmd.data, error: cmd.error, fd: cmd.sev_fd };
      try {
        return vm.vendor.memEncryptOp(c, vm.createdVcpus > 0);
      } finally {
        cmd.error = c.error;
        copyToUser(KVM_SEV_CMD_CODEC, cmd, arg, op);
      }
    },
  },
];
