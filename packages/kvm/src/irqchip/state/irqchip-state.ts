/**
 * `struct kvm_irqchip` (include/uapi/linux/kvm.h, 520 bytes): the argument of KVM_GET_IRQCHIP and
 * KVM_SET_IRQCHIP — a `chip_id` and a 512-byte union holding a `kvm_pic_state` (chips 0 and 1) or a
 * `kvm_ioapic_state` (chip 2).
 *
 * @module
 */

import { KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from '../../abi/constants.js';
import { KVM_LAYOUTS } from '../../abi/layout.js';
import { decodeKvmIoapicState, encodeKvmIoapicState, type kvm_ioapic_state } from './ioapic-state.js';
import { decodeKvmPicState, encodeKvmPicState, type kvm_pic_state } from './pic-state.js';

const L = KVM_LAYOUTS.kvm_irqchip;

/** `sizeof(struct kvm_irqchip)`. */
export const KVM_IRQCHIP_SIZE = L.size;

/** `struct kvm_irqchip` with its union resolved by `chip_id` (`dummy`: the raw 512 bytes of any other id). */
export type kvm_irqchip =
  | { chip_id: typeof KVM_IRQCHIP_PIC_MASTER | typeof KVM_IRQCHIP_PIC_SLAVE; chip: { pic: kvm_pic_state } }
  | { chip_id: typeof KVM_IRQCHIP_IOAPIC; chip: { ioapic: kvm_ioapic_state } }
  | { chip_id: number; chip: { dummy: Uint8Array } };

/** Write `s` as a C `struct kvm_irqchip` at `offset` (`pad` and the unused union bytes zero). */
export function encodeKvmIrqchip(s: kvm_irqchip, view: DataView, offset = 0): void {
  new Uint8Array(view.buffer, view.byteOffset + offset, L.size).fill(0);
  view.setUint32(offset + L.offsetOf('chip_id'), s.chip_id, true);
  const at = offset + L.offsetOf('chip');
  if ('pic' in s.chip) encodeKvmPicState(s.chip.pic, view, at);
  else if ('ioapic' in s.chip) encodeKvmIoapicState(s.chip.ioapic, view, at);
  else new Uint8Array(view.buffer, view.byteOffset + at, L.sizeOf('chip')).set(s.chip.dummy.subarray(0, L.sizeOf('chip')));
}

/** Read a C `struct kvm_irqchip` at `offset`, decoding the union by `chip_id`. */
export function decodeKvmIrqchip(view: DataView, offset = 0): kvm_irqchip {
  const chipId = view.getUint32(offset + L.offsetOf('chip_id'), true);
  const at = offset + L.offsetOf('chip');
  if (chipId === KVM_IRQCHIP_PIC_MASTER || chipId === KVM_IRQCHIP_PIC_SLAVE) return { chip_id: chipId, chip: { pic: decodeKvmPicState(view, at) } };
  if (chipId === KVM_IRQCHIP_IOAPIC) return { chip_id: chipId, chip: { ioapic: decodeKvmIoapicState(view, at) } };
  return { chip_id: chipId, chip: { dummy: new Uint8Array(view.buffer.slice(view.byteOffset + at, view.byteOffset + at + L.sizeOf('chip'))) } };
}
