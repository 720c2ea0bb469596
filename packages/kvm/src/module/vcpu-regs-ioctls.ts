/**
 * `KVM_GET_REGS` / `KVM_SET_REGS` / `KVM_GET_SREGS` / `KVM_SET_SREGS` (virt/kvm/kvm_main.c `kvm_vcpu_ioctl`,
 * arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl_get_regs` … `kvm_arch_vcpu_ioctl_set_sregs`).
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_GET_REGS, KVM_GET_SREGS, KVM_SET_REGS, KVM_SET_SREGS } from '../abi/constants.js';
import { copyFromUser, copyToUser } from '../abi/codec.js';
import { KVM_REGS_CODEC, KVM_SREGS_CODEC } from '../abi/structs.js';
import type { IoctlDef } from './ioctl-table.js';
import type { Vcpu } from './vcpu.js';

/** The register ioctls of a vCPU. */
export const VCPU_REGS_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_GET_REGS',
    request: KVM_GET_REGS,
    arg: { dir: 'out', codec: KVM_REGS_CODEC },
    run(v, arg) {
      const r = KVM_REGS_CODEC.zero();
      v.getRegs(r);
      copyToUser(KVM_REGS_CODEC, r, arg, 'KVM_GET_REGS');
      return 0;
    },
  },
  {
    name: 'KVM_SET_REGS',
    request: KVM_SET_REGS,
    arg: { dir: 'in', codec: KVM_REGS_CODEC },
    run(v, arg) {
      v.setRegs(copyFromUser(KVM_REGS_CODEC, arg, 'KVM_SET_REGS'));
      return 0;
    },
  },
  {
    name: 'KVM_GET_SREGS',
    request: KVM_GET_SREGS,
    arg: { dir: 'out', codec: KVM_SREGS_CODEC },
    run(v, arg) {
      const s = KVM_SREGS_CODEC.zero();
      v.getSregs(s);
      copyToUser(KVM_SREGS_CODEC, s, arg, 'KVM_GET_SREGS');
      return 0;
    },
  },
  {
    name: 'KVM_SET_SREGS',
    request: KVM_SET_SREGS,
    arg: { dir: 'in', codec: KVM_SREGS_CODEC },
    run(v, arg) {
      const s = copyFromUser(KVM_SREGS_CODEC, arg, 'KVM_SET_SREGS');
      // kvm_is_valid_sregs: CR0.PG without CR0.PE is invalid.
      if ((s.cr0 & 0x80000000n) !== 0n && (s.cr0 & 1n) === 0n) throw new KernelError('EINVAL', 'KVM_SET_SREGS', 'CR0.PG set without CR0.PE');
      v.setSregs(s);
      return 0;
    },
  },
];
