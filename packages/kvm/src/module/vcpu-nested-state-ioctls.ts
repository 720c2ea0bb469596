/**
 * KVM_GET_NESTED_STATE and KVM_SET_NESTED_STATE (arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl`), the generic half: the
 * buffer size and E2BIG, the flags no vendor takes, the format; the vendor's half (`nested_ops->get_state` /
 * `set_state`) is {@link VendorNestedState} in @vac/vmx and @vac/svm. A vendor without it answers EINVAL to both
 * and KVM_CAP_NESTED_STATE 0, as Linux does when `nested_ops->get_state` is NULL.
 *
 * The model's guests never execute VMXON or VMRUN, so a vCPU's nested state is always the header alone ("no nested
 * guest", `size` 128, no data): what KVM_GET_NESTED_STATE reports, and the only state KVM_SET_NESTED_STATE takes —
 * loading it leaves the vCPU as it is.
 *
 * @module
 */
import { KernelError, type VendorNestedState } from '@vac/core';
import { KVM_GET_NESTED_STATE, KVM_SET_NESTED_STATE } from '../abi/constants.js';
import { copyFromUser, copyToUser, isRealUint8Array } from '../abi/codec.js';
import {
  KVM_NESTED_STATE_CODEC,
  KVM_NESTED_STATE_HEADER_SIZE,
  KVM_STATE_NESTED_EVMCS,
  KVM_STATE_NESTED_GIF_SET,
  KVM_STATE_NESTED_GUEST_MODE,
  KVM_STATE_NESTED_MTF_PENDING,
  KVM_STATE_NESTED_RUN_PENDING,
  type kvm_nested_state,
} from '../abi/structs-nested.js';
import type { IoctlDef } from './ioctl-table.js';
import { vendorArch } from './vendor-arch.js';
import type { Vcpu } from './vcpu.js';

/** The flags KVM_SET_NESTED_STATE passes on to a vendor. */
const SET_FLAGS = KVM_STATE_NESTED_RUN_PENDING | KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_EVMCS | KVM_STATE_NESTED_MTF_PENDING | KVM_STATE_NESTED_GIF_SET;

/** The vendor's nested-state ops, or EINVAL (`!kvm_x86_ops.nested_ops->get_state`). */
function nestedOps(v: Vcpu, op: string): VendorNestedState {
  const ops = vendorArch(v.vm.instance).nestedState;
  if (ops === undefined) throw new KernelError('EINVAL', op, 'the vendor has no nested-state ops');
  return ops;
}

/** The vCPU as the vendor's ops see it: its EFER (what KVM_GET_SREGS reports, read without making the whole structure). */
function nestedVcpu(v: Vcpu): { readonly efer: bigint } {
  return { efer: v.sregs.efer };
}

/** Offset of `size` in `struct kvm_nested_state`. */
const SIZE_OFFSET = 4;

/**
 * `get_user(user_data_size, &state->size)`: C bytes need only hold the header's first 8 bytes (a buffer too small for
 * the state gets E2BIG, not EFAULT); an object must be a whole header.
 */
function userDataSize(arg: unknown, op: string): number {
  if (isRealUint8Array(arg) && arg.length >= SIZE_OFFSET + 4) return new DataView(arg.buffer, arg.byteOffset, arg.length).getUint32(SIZE_OFFSET, true);
  return copyFromUser(KVM_NESTED_STATE_CODEC, arg, op).size;
}

/** `put_user(size, &state->size)`: only `size` is written. */
function putUserSize(arg: unknown, size: number, op: string): void {
  if (isRealUint8Array(arg) && arg.length >= SIZE_OFFSET + 4) {
    new DataView(arg.buffer, arg.byteOffset, arg.length).setUint32(SIZE_OFFSET, size, true);
    return;
  }
  copyToUser(KVM_NESTED_STATE_CODEC, { ...copyFromUser(KVM_NESTED_STATE_CODEC, arg, op), size }, arg, op);
}

/** Offsets of `flags`, `format` and `hdr` in `struct kvm_nested_state`. */
const FLAGS_OFFSET = 0;
const FORMAT_OFFSET = 2;
const HDR_OFFSET = 8;

/** C bytes that hold the whole header (shorter ones take the codec's path, which faults as `copy_{from,to}_user` do). */
function headerBytes(arg: unknown): arg is Uint8Array {
  return isRealUint8Array(arg) && arg.length >= KVM_NESTED_STATE_HEADER_SIZE;
}

/**
 * The vCPU's nested state as KVM_GET_NESTED_STATE reports it (the header; no data, as no nested guest runs).
 * @throws KernelError EINVAL (a vendor without nested-state ops)
 */
export function getNestedState(v: Vcpu, op = 'KVM_GET_NESTED_STATE'): kvm_nested_state {
  const ops = nestedOps(v, op);
  const cur = ops.current(nestedVcpu(v));
  const hdr = new Uint8Array(KVM_NESTED_STATE_CODEC.zero().hdr.length);
  hdr.set(cur.hdr);
  return { flags: cur.flags, format: ops.format, size: KVM_NESTED_STATE_HEADER_SIZE, hdr };
}

/**
 * KVM_SET_NESTED_STATE's checks and load: EINVAL for a size below the header, flags no vendor takes, RUN_PENDING
 * without GUEST_MODE, another vendor's format, or what the vendor refuses — the vCPU unchanged.
 */
export function setNestedState(v: Vcpu, s: kvm_nested_state, op = 'KVM_SET_NESTED_STATE'): void {
  const ops = nestedOps(v, op);
  if (s.size < KVM_NESTED_STATE_HEADER_SIZE) throw new KernelError('EINVAL', op, `size ${s.size} is below sizeof(struct kvm_nested_state)`);
  if ((s.flags & ~SET_FLAGS) !== 0) throw new KernelError('EINVAL', op, `flags 0x${s.flags.toString(16)} has unknown bits`);
  if ((s.flags & KVM_STATE_NESTED_RUN_PENDING) !== 0 && (s.flags & KVM_STATE_NESTED_GUEST_MODE) === 0) throw new KernelError('EINVAL', op, 'KVM_STATE_NESTED_RUN_PENDING without KVM_STATE_NESTED_GUEST_MODE');
  // vmx_set_nested_state / svm_set_nested_state: the format first.
  if (s.format !== ops.format) throw new KernelError('EINVAL', op, `format ${s.format} is not this vendor's (${ops.format})`);
  const why = ops.refuse(nestedVcpu(v), { flags: s.flags, size: s.size, hdr: s.hdr });
  if (why !== undefined) throw new KernelError('EINVAL', op, why);
}

/** KVM_GET_NESTED_STATE and KVM_SET_NESTED_STATE. */
export const VCPU_NESTED_STATE_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_GET_NESTED_STATE',
    request: KVM_GET_NESTED_STATE,
    arg: { dir: 'inout', codec: KVM_NESTED_STATE_CODEC },
    run(v, arg) {
      const op = 'KVM_GET_NESTED_STATE';
      nestedOps(v, op);
      const have = userDataSize(arg, op);
      if (headerBytes(arg) && KVM_NESTED_STATE_HEADER_SIZE <= have) {
        // The header written straight into the caller's bytes (what copyToUser of getNestedState's object writes).
        const ops = nestedOps(v, op);
        const cur = ops.current(nestedVcpu(v));
        const dv = new DataView(arg.buffer, arg.byteOffset, KVM_NESTED_STATE_HEADER_SIZE);
        dv.setUint16(FLAGS_OFFSET, cur.flags, true);
        dv.setUint16(FORMAT_OFFSET, ops.format, true);
        dv.setUint32(SIZE_OFFSET, KVM_NESTED_STATE_HEADER_SIZE, true);
        arg.fill(0, HDR_OFFSET, KVM_NESTED_STATE_HEADER_SIZE);
        arg.set(cur.hdr.subarray(0, KVM_NESTED_STATE_HEADER_SIZE - HDR_OFFSET), HDR_OFFSET);
        return 0;
      }
      const state = getNestedState(v, op);
      if (state.size > have) {
        putUserSize(arg, state.size, op);
        throw new KernelError('E2BIG', op, `the state is ${state.size} bytes, the buffer ${have}`);
      }
      copyToUser(KVM_NESTED_STATE_CODEC, state, arg, op);
      return 0;
    },
  },
  {
    name: 'KVM_SET_NESTED_STATE',
    request: KVM_SET_NESTED_STATE,
    arg: { dir: 'in', codec: KVM_NESTED_STATE_CODEC },
    run(v, arg) {
      const op = 'KVM_SET_NESTED_STATE';
      nestedOps(v, op);
      if (headerBytes(arg)) {
        // The header read from the caller's bytes (the fields copyFromUser would decode; `hdr` a view, read at once).
        const dv = new DataView(arg.buffer, arg.byteOffset, KVM_NESTED_STATE_HEADER_SIZE);
        const hdr = arg.subarray(HDR_OFFSET, KVM_NESTED_STATE_HEADER_SIZE) as Uint8Array<ArrayBuffer>;
        setNestedState(v, { flags: dv.getUint16(FLAGS_OFFSET, true), format: dv.getUint16(FORMAT_OFFSET, true), size: dv.getUint32(SIZE_OFFSET, true), hdr }, op);
        return 0;
      }
      setNestedState(v, copyFromUser(KVM_NESTED_STATE_CODEC, arg, op), op);
      return 0;
    },
  },
];
