/**
 * `struct kvm_lapic_state` (arch/x86/include/uapi/asm/kvm.h, 1024 bytes): `char regs[KVM_APIC_REG_SIZE]`, the
 * first KiB of the APIC register page in the APIC's own layout (32-bit registers 16 bytes apart).
 *
 * @module
 */

import { KVM_APIC_REG_SIZE } from '../apic-regs.js';
import { UsageError } from '@vac/core';

/** `struct kvm_lapic_state`. */
export interface kvm_lapic_state {
  /** The register page, 1024 bytes. */
  regs: Uint8Array;
}

/** A zeroed `kvm_lapic_state` (or a copy of `regs`). */
export function makeKvmLapicState(regs?: Uint8Array): kvm_lapic_state {
  const r = new Uint8Array(KVM_APIC_REG_SIZE);
  if (regs !== undefined) r.set(regs.subarray(0, KVM_APIC_REG_SIZE));
  return { regs: r };
}

/** The first shape problem of `x` as a `kvm_lapic_state`, or `undefined`. */
export function validateKvmLapicState(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null) return 'kvm_lapic_state must be an object';
  const r = (x as Record<string, unknown>)['regs'];
  if (!(r instanceof Uint8Array) || r.length !== KVM_APIC_REG_SIZE) return `kvm_lapic_state.regs must be a Uint8Array of ${String(KVM_APIC_REG_SIZE)} bytes`;
  return undefined;
}

/** Throws a `UsageError` naming the shape problem. */
export function assertKvmLapicState(x: unknown): asserts x is kvm_lapic_state {
  const p = validateKvmLapicState(x);
  if (p !== undefined) throw new UsageError('ERR_INVALID_ARG', p);
}

/** Write `s` at `offset` of `view`. */
export function encodeKvmLapicState(s: kvm_lapic_state, view: DataView, offset = 0): void {
  new Uint8Array(view.buffer, view.byteOffset + offset, KVM_APIC_REG_SIZE).set(s.regs);
}

/** Read a `struct kvm_lapic_state` at `offset` of `view`. */
export function decodeKvmLapicState(view: DataView, offset = 0): kvm_lapic_state {
  return makeKvmLapicState(new Uint8Array(view.buffer, view.byteOffset + offset, KVM_APIC_REG_SIZE));
}

/** The 32-bit register at `reg` of a state page. */
export function lapicStateReg(s: kvm_lapic_state, reg: number): number {
  return new DataView(s.regs.buffer, s.regs.byteOffset).getUint32(reg, true);
}
