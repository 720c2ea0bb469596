/**
 * The VMX vendor half of a VM inside one KVM module (`vmx_vm_init`, `vmx_vm_destroy`, arch/x86/kvm/vmx/vmx.c).
 *
 * @module
 */
import { KernelError } from '@vac/core';
import type { UniqueId, VendorVm } from '@vac/core';

/**
 * A VM's VMX part (`struct kvm_vmx`). Intel has no memory encryption: `kvm_x86_ops.mem_enc_ioctl` is NULL, so
 * `KVM_MEMORY_ENCRYPT_OP` fails with ENOTTY (`kvm_arch_vm_ioctl`, `arch/x86/kvm/x86.c`).
 */
export class VmxVm implements VendorVm {
  /** Always `'none'`. */
  readonly encryption = 'none' as const;
  /** Intel has no `mem_enc_ioctl`: `KVM_MEMORY_ENCRYPT_OP` is ENOTTY. */
  readonly memEncrypt = false;
  /** The VM number within its module. */
  readonly id: number;
  /** The module that created it. */
  readonly module: string;
  #destroyed = false;

  /** @internal Built by the module's `createVm`. */
  constructor(module: string, id: number) {
    this.module = module;
    this.id = id;
  }

  /** Whether {@link VmxVm.destroy} ran. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * `KVM_MEMORY_ENCRYPT_OP`: always ENOTTY on Intel (no `mem_enc_ioctl`), whatever the command.
   * @param _cmd - the `struct kvm_sev_cmd` (not looked at)
   * @param _hasVcpus - whether vCPUs exist (not looked at)
   * @throws KernelError ENOTTY
   */
  memEncryptOp(_cmd: Parameters<VendorVm['memEncryptOp']>[0], _hasVcpus: boolean): number {
    throw new KernelError('ENOTTY', 'KVM_MEMORY_ENCRYPT_OP', 'kvm_x86_ops.mem_enc_ioctl is NULL on VMX (no SEV on Intel)');
  }

  /** No VM-wide ID on VMX. */
  uniqueIds(): readonly UniqueId[] {
    return [];
  }

  /** `vmx_vm_destroy`: nothing to give back (no SEV ASID, no shared EPT pages in the model). */
  destroy(): void {
    this.#destroyed = true;
  }
}
