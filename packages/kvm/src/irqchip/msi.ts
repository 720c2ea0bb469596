/**
 * MSI messages as KVM decodes them (`kvm_set_msi_irq`, `x86_msi_msg_get_destid`, arch/x86/kvm/irq_comm.c and
 * arch/x86/include/asm/msi.h): address bits 12-19 the destination (plus address_hi bits 8-31 with 32-bit
 * x2APIC IDs), bit 2 logical mode, bit 3 the redirection hint; data bits 0-7 the vector, 8-10 the delivery
 * mode, bit 15 level trigger.
 *
 * @module
 */

import { busIrq, destModeOf, type LapicIrq } from './apic-irq.js';

/** The message fields of an MSI route or of `struct kvm_msi`. */
export interface MsiMessage {
  readonly address_lo: number;
  readonly address_hi: number;
  readonly data: number;
}

/** `kvm_set_msi_irq`: the APIC-bus message an MSI carries. */
export function msiToLapicIrq(msg: MsiMessage, x2apicFormat: boolean): LapicIrq {
  let destId = (msg.address_lo >>> 12) & 0xff;
  if (x2apicFormat) destId = (destId | (msg.address_hi & 0xffffff00)) >>> 0;
  return busIrq({
    destId,
    vector: msg.data & 0xff,
    destMode: destModeOf((msg.address_lo & (1 << 2)) !== 0),
    trigMode: msg.data & (1 << 15) ? 1 : 0,
    deliveryMode: ((msg.data >>> 8) & 7) << 8,
    msiRedirHint: (msg.address_lo & (1 << 3)) !== 0,
    level: true,
  });
}

/** `kvm_msi_route_invalid`: with 32-bit x2APIC IDs, address_hi bits 0-7 must be zero. */
export function msiRouteInvalid(msg: MsiMessage, x2apicFormat: boolean): boolean {
  return x2apicFormat && (msg.address_hi & 0xff) !== 0;
}
