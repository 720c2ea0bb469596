/**
 * The allocation sites a KVM module adds to the host's fault injector (declaration merging into `FaultSites`).
 *
 * @module
 */
import { defineFaultSite } from '@vac/core';

declare module '@vac/core' {
  interface FaultSites {
    /** `kvm_create_vm` (`kvm_arch_alloc_vm`): ENOMEM. */
    vm: true;
    /** `kvm_vm_ioctl_create_vcpu` (`kmem_cache_zalloc(kvm_vcpu_cache)`): ENOMEM. */
    vcpu: true;
  }
}

/** The fault site of `kvm_create_vm`. */
export const VM_FAULT_SITE = 'vm';
defineFaultSite(VM_FAULT_SITE, '`kvm_create_vm` (`kvm_arch_alloc_vm`): ENOMEM');

/** The fault site of `KVM_CREATE_VCPU`. */
export const VCPU_FAULT_SITE = 'vcpu';
defineFaultSite(VCPU_FAULT_SITE, '`kvm_vm_ioctl_create_vcpu` (`kmem_cache_zalloc(kvm_vcpu_cache)`): ENOMEM');
