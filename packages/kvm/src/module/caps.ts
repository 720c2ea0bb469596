/**
 * `KVM_CHECK_EXTENSION` (virt/kvm/kvm_main.c `kvm_vm_ioctl_check_extension_generic` → arch/x86/kvm/x86.c
 * `kvm_vm_ioctl_check_extension`), on the system fd (`vm` undefined) and on a VM fd.
 *
 * @module
 */
import {
  KVM_CAP_CHECK_EXTENSION_VM,
  KVM_CAP_EXT_CPUID,
  KVM_CAP_HLT,
  KVM_CAP_IMMEDIATE_EXIT,
  KVM_CAP_IRQCHIP,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_NOP_IO_DELAY,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_NR_VCPUS,
  KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_SYNC_MMU,
  KVM_CAP_USER_MEMORY,
  KVM_CAP_VM_TYPES,
  KVM_MAX_VCPUS,
  KVM_MAX_VCPU_IDS,
  KVM_USER_MEM_SLOTS,
  KVM_X86_DEFAULT_VM,
} from '../abi/constants.js';
import type { KvmInstance } from './instance.js';
import { irqCapability } from './irq-caps.js';
import type { Vm } from './vm.js';

/** `kvm_vm_ioctl_check_extension_generic` + the x86 part, for this module (and VM, when asked on a VM fd). */
export function checkExtension(inst: KvmInstance, cap: number, _vm?: Vm): number {
  switch (cap) {
    case KVM_CAP_IRQCHIP:
    case KVM_CAP_HLT:
    case KVM_CAP_USER_MEMORY:
    case KVM_CAP_SET_TSS_ADDR:
    case KVM_CAP_EXT_CPUID:
    case KVM_CAP_NOP_IO_DELAY:
    case KVM_CAP_SYNC_MMU:
    case KVM_CAP_IMMEDIATE_EXIT:
    case KVM_CAP_CHECK_EXTENSION_VM:
      return 1;
    case KVM_CAP_NR_VCPUS: {
      // x86: min(num_online_cpus(), KVM_MAX_VCPUS)
      let online = 0;
      for (const c of inst.host.cpus) if (c.online) online++;
      return Math.min(online, KVM_MAX_VCPUS);
    }
    case KVM_CAP_NR_MEMSLOTS:
      return KVM_USER_MEM_SLOTS;
    case KVM_CAP_MAX_VCPUS:
      return KVM_MAX_VCPUS;
    case KVM_CAP_MAX_VCPU_ID:
      return KVM_MAX_VCPU_IDS;
    case KVM_CAP_VM_TYPES:
      return 1 << KVM_X86_DEFAULT_VM;
    default:
      return irqCapability(cap) ?? inst.vendor.extensions.get(cap) ?? 0;
  }
}
