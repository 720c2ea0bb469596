/**
 * `struct kvm_ioapic_state` (arch/x86/include/uapi/asm/kvm.h, 216 bytes): the IOAPIC as KVM_GET_IRQCHIP and
 * KVM_SET_IRQCHIP carry it for chip 2. KVM copies the struct over the first bytes of its `struct kvm_ioapic`
 * (`kvm_set_ioapic`), so `base_address`, `ioregsel` and `id` round-trip raw (checked on a real /dev/kvm), and
 * `irr` is re-injected pin by pin.
 *
 * Each redirection entry is the `__u64 bits` of `union kvm_ioapic_redirtbl`, a bigint; `ioapicField` reads its
 * named fields (`vector`, `delivery_mode`, `dest_mode`, `delivery_status`, `polarity`, `remote_irr`,
 * `trig_mode`, `mask`, `dest_id`).
 *
 * @module
 */

import { KVM_IOAPIC_NUM_PINS } from '../../abi/constants.js';
import { KVM_LAYOUTS } from '../../abi/layout.js';
import { UsageError } from '@vac/core';

/** `struct kvm_ioapic_state`, field for field (`pad` is written as zero). */
export interface kvm_ioapic_state {
  /** MMIO base (a `__u64` guest-physical address). */ base_address: bigint;
  /** IOREGSEL. */ ioregsel: number;
  /** IOAPIC ID. */ id: number;
  /** Pending pins. */ irr: number;
  /** The 24 redirection entries (`redirtbl[].bits`). */ redirtbl: bigint[];
}

const L = KVM_LAYOUTS.kvm_ioapic_state;
const U64_MAX = (1n << 64n) - 1n;

/** `sizeof(struct kvm_ioapic_state)`. */
export const KVM_IOAPIC_STATE_SIZE = L.size;

/** The bit positions of the redirection entry fields (`union kvm_ioapic_redirect_entry`). */
export const IOAPIC_REDIR_FIELDS = {
  vector: { shift: 0n, bits: 8n },
  delivery_mode: { shift: 8n, bits: 3n },
  dest_mode: { shift: 11n, bits: 1n },
  delivery_status: { shift: 12n, bits: 1n },
  polarity: { shift: 13n, bits: 1n },
  remote_irr: { shift: 14n, bits: 1n },
  trig_mode: { shift: 15n, bits: 1n },
  mask: { shift: 16n, bits: 1n },
  dest_id: { shift: 56n, bits: 8n },
} as const;

/** A redirection entry field name. */
export type IoapicRedirField = keyof typeof IOAPIC_REDIR_FIELDS;

/** Read a field of a redirection entry. */
export function ioapicField(bits: bigint, field: IoapicRedirField): number {
  // The IOAPIC reads several fields of one entry per interrupt: its two 32-bit halves are split once (no bigint
  // per field), and kept for the next read of the same value.
  if (bits !== seenBits) {
    seenLo = Number(BigInt.asUintN(32, bits));
    seenHi = Number(BigInt.asUintN(32, bits >> 32n));
    seenBits = bits;
  }
  const f = FIELD_POSITIONS[field];
  return (f.shift >= 32 ? seenHi >>> (f.shift - 32) : seenLo >>> f.shift) & f.mask;
}

/** {@link IOAPIC_REDIR_FIELDS} as numbers: every field lies within one 32-bit half of the entry. */
const FIELD_POSITIONS: Readonly<Record<IoapicRedirField, { readonly shift: number; readonly mask: number }>> = Object.fromEntries(
  Object.entries(IOAPIC_REDIR_FIELDS).map(([k, f]) => [k, { shift: Number(f.shift), mask: Number((1n << f.bits) - 1n) }]),
) as Record<IoapicRedirField, { shift: number; mask: number }>;

// The entry {@link ioapicField} read last, and its halves.
let seenBits = 0n;
let seenLo = 0;
let seenHi = 0;

/** A redirection entry with `field` set to `value`. */
export function withIoapicField(bits: bigint, field: IoapicRedirField, value: number): bigint {
  const f = IOAPIC_REDIR_FIELDS[field];
  const mask = ((1n << f.bits) - 1n) << f.shift;
  return (bits & ~mask) | ((BigInt(value) << f.shift) & mask);
}

/** A `kvm_ioapic_state` with everything zero, overridden by `init` (`redirtbl` is copied). */
export function makeKvmIoapicState(init: Partial<kvm_ioapic_state> = {}): kvm_ioapic_state {
  const redirtbl = new Array<bigint>(KVM_IOAPIC_NUM_PINS).fill(0n);
  init.redirtbl?.forEach((v, i) => {
    if (i < KVM_IOAPIC_NUM_PINS) redirtbl[i] = v;
  });
  return {
    base_address: init.base_address ?? 0n,
    ioregsel: init.ioregsel ?? 0,
    id: init.id ?? 0,
    irr: init.irr ?? 0,
    redirtbl,
  };
}

/** An independent copy. */
export function copyKvmIoapicState(s: kvm_ioapic_state): kvm_ioapic_state {
  return makeKvmIoapicState(s);
}

/** The first shape problem of `x` as a `kvm_ioapic_state`, or `undefined`. */
export function validateKvmIoapicState(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null) return 'kvm_ioapic_state must be an object';
  const o = x as Record<string, unknown>;
  const b = o['base_address'];
  if (typeof b !== 'bigint' || b < 0n || b > U64_MAX) return 'kvm_ioapic_state.base_address must be a bigint in 0..2^64-1 (__u64)';
  for (const k of ['ioregsel', 'id', 'irr'] as const) {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      return `kvm_ioapic_state.${k} must be an integer in 0..4294967295 (__u32)`;
    }
  }
  const t = o['redirtbl'];
  if (!Array.isArray(t) || t.length !== KVM_IOAPIC_NUM_PINS) return `kvm_ioapic_state.redirtbl must be an array of ${String(KVM_IOAPIC_NUM_PINS)} bigints`;
  for (let i = 0; i < t.length; i++) {
    const v: unknown = t[i];
    if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) return `kvm_ioapic_state.redirtbl[${String(i)}] must be a bigint in 0..2^64-1 (__u64)`;
  }
  return undefined;
}

/** Throws a `UsageError` naming the first shape problem. */
export function assertKvmIoapicState(x: unknown): asserts x is kvm_ioapic_state {
  const p = validateKvmIoapicState(x);
  if (p !== undefined) throw new UsageError('ERR_INVALID_ARG', p);
}

/** Write `s` as a C `struct kvm_ioapic_state` at `offset` of `view` (`pad` zero). */
export function encodeKvmIoapicState(s: kvm_ioapic_state, view: DataView, offset = 0): void {
  view.setBigUint64(offset + L.offsetOf('base_address'), s.base_address, true);
  view.setUint32(offset + L.offsetOf('ioregsel'), s.ioregsel, true);
  view.setUint32(offset + L.offsetOf('id'), s.id, true);
  view.setUint32(offset + L.offsetOf('irr'), s.irr, true);
  view.setUint32(offset + L.offsetOf('pad'), 0, true);
  const base = offset + L.offsetOf('redirtbl');
  s.redirtbl.forEach((v, i) => view.setBigUint64(base + 8 * i, v, true));
}

/** Read a C `struct kvm_ioapic_state` at `offset` of `view`. */
export function decodeKvmIoapicState(view: DataView, offset = 0): kvm_ioapic_state {
  const base = offset + L.offsetOf('redirtbl');
  return {
    base_address: view.getBigUint64(offset + L.offsetOf('base_address'), true),
    ioregsel: view.getUint32(offset + L.offsetOf('ioregsel'), true),
    id: view.getUint32(offset + L.offsetOf('id'), true),
    irr: view.getUint32(offset + L.offsetOf('irr'), true),
    redirtbl: Array.from({ length: KVM_IOAPIC_NUM_PINS }, (_, i) => view.getBigUint64(base + 8 * i, true)),
  };
}
