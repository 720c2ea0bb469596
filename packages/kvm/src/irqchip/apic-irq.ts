/**
 * `struct kvm_lapic_irq`: one interrupt message on the APIC bus, whoever sends it (IOAPIC redirection entry,
 * MSI, IPI from an ICR write, LVT delivery), and the conversions KVM makes into it.
 *
 * @module
 */

import {
  APIC_DEST_LOGICAL,
  APIC_DEST_NOSHORT,
  APIC_DEST_PHYSICAL,
  APIC_DM_LOWEST,
  APIC_DEST_MASK,
  APIC_INT_ASSERT,
  APIC_LVT_LEVEL_TRIGGER,
  APIC_MODE_MASK,
  APIC_SHORT_MASK,
  APIC_VECTOR_MASK,
} from './constants.js';

/** `struct kvm_lapic_irq`. */
export interface LapicIrq {
  /** Vector 0-255. */
  vector: number;
  /** `APIC_DM_*` (bits 8-10 already in place). */
  deliveryMode: number;
  /** `APIC_DEST_PHYSICAL` or `APIC_DEST_LOGICAL`. */
  destMode: number;
  /** Assert (1) or de-assert (0); only INIT and level-triggered fixed messages look at it. */
  level: boolean;
  /** 0 edge, 1 level (KVM keeps the raw `APIC_INT_LEVELTRIG` bit; only its truth matters). */
  trigMode: 0 | 1;
  /** `APIC_DEST_*` shorthand. */
  shorthand: number;
  /** Destination (8 bits in xAPIC, 32 in x2APIC). */
  destId: number;
  /** MSI redirection hint: treat as lowest priority. */
  msiRedirHint: boolean;
}

/** `kvm_lapic_irq_dest_mode(logical)`. */
export function destModeOf(logical: boolean): number {
  return logical ? APIC_DEST_LOGICAL : APIC_DEST_PHYSICAL;
}

/** `kvm_lowest_prio_delivery`. */
export function isLowestPriority(irq: LapicIrq): boolean {
  return irq.deliveryMode === APIC_DM_LOWEST || irq.msiRedirHint;
}

/** `kvm_icr_to_lapic_irq`: an ICR value as a message (`x2apic`: ICR high is the 32-bit destination). */
export function icrToLapicIrq(icrLow: number, icrHigh: number, x2apic: boolean): LapicIrq {
  return {
    vector: icrLow & APIC_VECTOR_MASK,
    deliveryMode: icrLow & APIC_MODE_MASK,
    destMode: icrLow & APIC_DEST_MASK,
    level: (icrLow & APIC_INT_ASSERT) !== 0,
    trigMode: icrLow & APIC_LVT_LEVEL_TRIGGER ? 1 : 0,
    shorthand: icrLow & APIC_SHORT_MASK,
    msiRedirHint: false,
    destId: x2apic ? icrHigh >>> 0 : (icrHigh >>> 24) & 0xff,
  };
}

/** A message with no shorthand, for the IOAPIC and MSIs. */
export function busIrq(fields: Omit<LapicIrq, 'shorthand'>): LapicIrq {
  // Field by field, not an object spread: the messages come from several makers whose objects differ in shape, and
  // V8's spread of such objects took its slow path (~0.7 us a message).
  return {
    vector: fields.vector,
    deliveryMode: fields.deliveryMode,
    destMode: fields.destMode,
    level: fields.level,
    trigMode: fields.trigMode,
    shorthand: APIC_DEST_NOSHORT,
    destId: fields.destId,
    msiRedirHint: fields.msiRedirHint,
  };
}

/** A copy of `irq` (what the bus changes for one delivery stays out of the sender's message). */
export function copyLapicIrq(irq: LapicIrq): LapicIrq {
  return {
    vector: irq.vector,
    deliveryMode: irq.deliveryMode,
    destMode: irq.destMode,
    level: irq.level,
    trigMode: irq.trigMode,
    shorthand: irq.shorthand,
    destId: irq.destId,
    msiRedirHint: irq.msiRedirHint,
  };
}
