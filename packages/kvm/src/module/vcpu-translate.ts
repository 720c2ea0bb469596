/**
 * KVM_TRANSLATE (virt/kvm/kvm_main.c `kvm_vcpu_ioctl`, arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl_translate`): the
 * guest-physical address of a guest linear address, through the walk `kvm_mmu_gva_to_gpa_system` makes (a supervisor
 * read). Without paging (CR0.PG = 0: real mode and protected mode, the modes the guest interpreter runs) the walk is
 * `nonpaging_gva_to_gpa`: the linear address itself, all 64 bits of it; only the all-ones address, which is
 * `INVALID_GPA`, comes out not valid. x86 reports every translation writeable and not user mode.
 *
 * With paging on, Linux walks the guest's page tables (`paging_tmpl.h` `walk_addr_generic`, which also sets their
 * accessed bits); the model does not execute paging, so it refuses the call (EINVAL) rather than make an answer up.
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_TRANSLATE } from '../abi/constants.js';
import { copyFromUser, copyToUser } from '../abi/codec.js';
import { KVM_TRANSLATION_CODEC } from '../abi/structs-x86.js';
import type { IoctlDef } from './ioctl-table.js';
import { X86_CR0_PG } from './vcpu-cr.js';
import type { Vcpu } from './vcpu.js';

/** `INVALID_GPA`: `~(gpa_t)0`. */
const INVALID_GPA = 2n ** 64n - 1n;

/** KVM_TRANSLATE. */
export const VCPU_TRANSLATE_IOCTL: IoctlDef<Vcpu> = {
  name: 'KVM_TRANSLATE',
  request: KVM_TRANSLATE,
  arg: { dir: 'inout', codec: KVM_TRANSLATION_CODEC },
  run(v, arg) {
    const op = 'KVM_TRANSLATE';
    const tr = copyFromUser(KVM_TRANSLATION_CODEC, arg, op);
    if ((v.sregs.cr0 & X86_CR0_PG) !== 0n) throw new KernelError('EINVAL', op, 'the guest has paging on: its page-table walk is not modelled');
    const gpa = tr.linear_address; // nonpaging_gva_to_gpa → kvm_translate_gpa: the address as it is
    tr.physical_address = gpa;
    tr.valid = gpa !== INVALID_GPA ? 1 : 0;
    tr.writeable = 1;
    tr.usermode = 0;
    copyToUser(KVM_TRANSLATION_CODEC, tr, arg, op);
    return 0;
  },
};
