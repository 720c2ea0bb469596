/**
 * `struct kvm_nested_state` (KVM_GET_NESTED_STATE / KVM_SET_NESTED_STATE, arch/x86/include/uapi/asm/kvm.h) and the
 * two vendor headers of its union, with the `KVM_STATE_*` constants.
 *
 * The 128-byte header is the ioctl's structure: `flags`, `format`, `size` and the 120-byte `hdr` union, kept as
 * its bytes (`hdr`) because which member it holds depends on `format`; {@link KVM_VMX_NESTED_STATE_HDR_CODEC} and
 * {@link KVM_SVM_NESTED_STATE_HDR_CODEC} read and write the two members in those bytes. The vendor data after the
 * header (VMX's vmcs12 and shadow vmcs12, SVM's VMCB) exists only while the guest runs a nested hypervisor, which a
 * model guest never does (docs/abi.md), so the model neither writes nor reads it.
 *
 * @module
 */
import { bytes, defineStruct, nested, u16, u32, u64, type StructCodec } from './codec.js';
import { KVM_LAYOUTS, type CLayout } from './layout.js';

/** `KVM_STATE_NESTED_FORMAT_VMX`: `hdr` holds `struct kvm_vmx_nested_state_hdr`. */
export const KVM_STATE_NESTED_FORMAT_VMX = 0;
/** `KVM_STATE_NESTED_FORMAT_SVM`: `hdr` holds `struct kvm_svm_nested_state_hdr`. */
export const KVM_STATE_NESTED_FORMAT_SVM = 1;
/** `flags`: the vCPU is in guest mode (running L2). */
export const KVM_STATE_NESTED_GUEST_MODE = 0x1;
/** `flags`: a VMLAUNCH/VMRESUME/VMRUN is pending (implies guest mode). */
export const KVM_STATE_NESTED_RUN_PENDING = 0x2;
/** `flags`: an enlightened VMCS is in use (Hyper-V). */
export const KVM_STATE_NESTED_EVMCS = 0x4;
/** `flags`: a monitor-trap-flag VM exit is pending. */
export const KVM_STATE_NESTED_MTF_PENDING = 0x8;
/** `flags`: SVM's global interrupt flag is set. */
export const KVM_STATE_NESTED_GIF_SET = 0x100;
/** `hdr.vmx.smm.flags`: L2 was running when SMM was entered. */
export const KVM_STATE_NESTED_SMM_GUEST_MODE = 0x1;
/** `hdr.vmx.smm.flags`: VMX operation was on when SMM was entered. */
export const KVM_STATE_NESTED_SMM_VMXON = 0x2;
/** `hdr.vmx.flags`: `preemption_timer_deadline` is valid. */
export const KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE = 0x1;
/** `KVM_STATE_NESTED_VMX_VMCS_SIZE`: one vmcs12 page in the VMX data. */
export const KVM_STATE_NESTED_VMX_VMCS_SIZE = 0x1000;
/** `KVM_STATE_NESTED_SVM_VMCB_SIZE`: the VMCB page of the SVM data. */
export const KVM_STATE_NESTED_SVM_VMCB_SIZE = 0x1000;

const NS = KVM_LAYOUTS.kvm_nested_state;

/** The layout of structure member `name` of `layout`. */
function structMember(layout: CLayout, name: string): CLayout {
  const t = layout.member(name).type;
  if (typeof t === 'string') throw new Error(`${layout.name}.${name} is not a structure`);
  return t;
}

/** The layout of member `name` of the `hdr` union. */
function hdrMember(name: 'vmx' | 'svm'): CLayout {
  return structMember(structMember(NS, 'hdr'), name);
}

/** `sizeof(struct kvm_nested_state)`: the header, 128 bytes. */
export const KVM_NESTED_STATE_HEADER_SIZE = NS.size;

/** The size of the `hdr` union (its `pad[120]`). */
export const KVM_NESTED_STATE_HDR_SIZE = NS.member('hdr').size;

/** `struct kvm_nested_state` without its data: the 128 bytes the ioctls copy. */
export interface kvm_nested_state {
  /** `KVM_STATE_NESTED_*` flags. */ flags: number;
  /** `KVM_STATE_NESTED_FORMAT_VMX` or `_SVM`. */ format: number;
  /** The size of the whole state, header and data; in KVM_GET_NESTED_STATE the size of the buffer. */ size: number;
  /** The bytes of the `hdr` union (120): read them with the VMX or SVM header codec. */ hdr: Uint8Array<ArrayBuffer>;
}
/** The description of the header of `struct kvm_nested_state`. */
export const KVM_NESTED_STATE_CODEC: StructCodec<kvm_nested_state> = defineStruct<kvm_nested_state>(NS, {
  flags: u16,
  format: u16,
  size: u32,
  hdr: bytes(KVM_NESTED_STATE_HDR_SIZE),
});

/** A zeroed `struct kvm_nested_state` header with `init`'s fields. */
export function makeKvmNestedState(init: Partial<kvm_nested_state> = {}): kvm_nested_state {
  return KVM_NESTED_STATE_CODEC.make(init);
}

/** `hdr.vmx.smm`. */
export interface kvm_vmx_nested_state_hdr_smm {
  /** `KVM_STATE_NESTED_SMM_*`. */ flags: number;
}
/** `struct kvm_vmx_nested_state_hdr`. */
export interface kvm_vmx_nested_state_hdr {
  /** The guest's VMXON region, or −1 (all ones) outside VMX operation. */ vmxon_pa: bigint;
  /** The current vmcs12, or −1 (all ones). */ vmcs12_pa: bigint;
  /** SMM state. */ smm: kvm_vmx_nested_state_hdr_smm;
  /** `KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE`. */ flags: number;
  /** The deadline of L2's preemption timer. */ preemption_timer_deadline: bigint;
}
const VMX = hdrMember('vmx');
/** The description of `struct kvm_vmx_nested_state_hdr` (`pad` written as zero), for the bytes of `hdr`. */
export const KVM_VMX_NESTED_STATE_HDR_CODEC: StructCodec<kvm_vmx_nested_state_hdr> = defineStruct<kvm_vmx_nested_state_hdr>(VMX, {
  vmxon_pa: u64,
  vmcs12_pa: u64,
  smm: nested(defineStruct<kvm_vmx_nested_state_hdr_smm>(structMember(VMX, 'smm'), { flags: u16 })),
  flags: u32,
  preemption_timer_deadline: u64,
});

/** `struct kvm_svm_nested_state_hdr`. */
export interface kvm_svm_nested_state_hdr {
  /** The guest's VMCB12 while it runs L2. */ vmcb_pa: bigint;
}
/** The description of `struct kvm_svm_nested_state_hdr`, for the bytes of `hdr`. */
export const KVM_SVM_NESTED_STATE_HDR_CODEC: StructCodec<kvm_svm_nested_state_hdr> = defineStruct<kvm_svm_nested_state_hdr>(hdrMember('svm'), { vmcb_pa: u64 });
