/**
 * KVM_GET/SET_REGS, KVM_GET/SET_SREGS and KVM_GET/SET_SREGS2 (virt/kvm/kvm_main.c `kvm_vcpu_ioctl`, arch/x86/kvm/x86.c
 * `kvm_arch_vcpu_ioctl_get_regs` … `__set_sregs2`; the checks and side effects are in `vcpu-sregs.ts`).
 *
 * @module
 */
import { KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_SREGS2, KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_SREGS2 } from '../abi/constants.js';
import { copyFromUser, copyToUser } from '../abi/codec.js';
import { KVM_REGS_CODEC, KVM_SREGS_CODEC } from '../abi/structs.js';
import { KVM_SREGS2_CODEC } from '../abi/structs-x86.js';
import type { IoctlDef } from './ioctl-table.js';
import { vcpuArch } from './vcpu-arch.js';
import { getSregs, getSregs2, getSregs2Bytes, setSregs, setSregs2, setSregs2Bytes } from './vcpu-sregs.js';
import { LITTLE_ENDIAN, StructWords, regsFromWords, regsToWords } from './regfile-copy.js';
import { userStructBytes } from './user-struct-bytes.js';
import type { Vcpu } from './vcpu.js';

/** KVM_GET/SET_REGS's staging words on the C bytes (neither calls out while it uses them). */
const REGS_WORDS = new StructWords(KVM_REGS_CODEC.size);

/** The register ioctls of a vCPU. */
export const VCPU_REGS_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_GET_REGS',
    request: KVM_GET_REGS,
    arg: { dir: 'out', codec: KVM_REGS_CODEC },
    run(v, arg) {
      const op = 'KVM_GET_REGS';
      const bytes = LITTLE_ENDIAN ? userStructBytes(KVM_REGS_CODEC, arg, op) : undefined;
      if (bytes !== undefined) {
        // the C bytes straight from the register file's words (what v.getRegs's structure encodes to)
        regsToWords(v.regs, REGS_WORDS);
        bytes.set(REGS_WORDS.u8.subarray(0, KVM_REGS_CODEC.size));
        return 0;
      }
      const r = KVM_REGS_CODEC.zero();
      v.getRegs(r);
      copyToUser(KVM_REGS_CODEC, r, arg, op);
      return 0;
    },
  },
  {
    name: 'KVM_SET_REGS',
    request: KVM_SET_REGS,
    arg: { dir: 'in', codec: KVM_REGS_CODEC },
    run(v, arg) {
      const op = 'KVM_SET_REGS';
      const bytes = LITTLE_ENDIAN ? userStructBytes(KVM_REGS_CODEC, arg, op) : undefined;
      if (bytes !== undefined) {
        // what v.setRegs does with the decoded structure, from its words: every register, RFLAGS | X86_EFLAGS_FIXED
        REGS_WORDS.u8.set(new Uint8Array(bytes.buffer, bytes.byteOffset, KVM_REGS_CODEC.size));
        const r = v.regs;
        regsFromWords(r, REGS_WORDS);
        r.eflags = (r.eflags | 2) >>> 0;
      } else {
        v.setRegs(copyFromUser(KVM_REGS_CODEC, arg, op));
      }
      // __set_regs: a pending (not yet injected) exception is dropped.
      vcpuArch(v).exception.pending = false;
      return 0;
    },
  },
  {
    name: 'KVM_GET_SREGS',
    request: KVM_GET_SREGS,
    arg: { dir: 'out', codec: KVM_SREGS_CODEC },
    run(v, arg) {
      const s = KVM_SREGS_CODEC.zero();
      getSregs(v, s);
      copyToUser(KVM_SREGS_CODEC, s, arg, 'KVM_GET_SREGS');
      return 0;
    },
  },
  {
    name: 'KVM_SET_SREGS',
    request: KVM_SET_SREGS,
    arg: { dir: 'in', codec: KVM_SREGS_CODEC },
    run(v, arg) {
      setSregs(v, copyFromUser(KVM_SREGS_CODEC, arg, 'KVM_SET_SREGS'), 'KVM_SET_SREGS');
      return 0;
    },
  },
  {
    name: 'KVM_GET_SREGS2',
    request: KVM_GET_SREGS2,
    arg: { dir: 'out', codec: KVM_SREGS2_CODEC },
    run(v, arg) {
      const op = 'KVM_GET_SREGS2';
      const bytes = LITTLE_ENDIAN ? userStructBytes(KVM_SREGS2_CODEC, arg, op) : undefined;
      if (bytes !== undefined) getSregs2Bytes(v, bytes);
      else copyToUser(KVM_SREGS2_CODEC, getSregs2(v), arg, op);
      return 0;
    },
  },
  {
    name: 'KVM_SET_SREGS2',
    request: KVM_SET_SREGS2,
    arg: { dir: 'in', codec: KVM_SREGS2_CODEC },
    run(v, arg) {
      const op = 'KVM_SET_SREGS2';
      const bytes = LITTLE_ENDIAN ? userStructBytes(KVM_SREGS2_CODEC, arg, op) : undefined;
      if (bytes !== undefined) setSregs2Bytes(v, bytes, op);
      else setSregs2(v, copyFromUser(KVM_SREGS2_CODEC, arg, op), op);
      return 0;
    },
  },
];
