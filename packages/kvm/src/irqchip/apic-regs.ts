/**
 * The local APIC register page as KVM keeps it (`apic->regs`, of which `struct kvm_lapic_state` carries the
 * first 1 KiB): 32-bit registers 16 bytes apart, and the ISR/TMR/IRR vector bitmaps as eight such registers
 * each. The helpers are Linux's `kvm_lapic_get_reg`, `apic_set_vector`, `apic_find_highest_vector`, ….
 *
 * @module
 */

/** Bytes of `struct kvm_lapic_state.regs` (`KVM_APIC_REG_SIZE`). */
export const KVM_APIC_REG_SIZE = 0x400;

/** A little-endian view of an APIC register page. */
export class ApicRegs {
  readonly bytes = new Uint8Array(KVM_APIC_REG_SIZE);
  readonly #view = new DataView(this.bytes.buffer);

  /** `kvm_lapic_get_reg`. */
  get(reg: number): number {
    return this.#view.getUint32(reg, true);
  }

  /** `kvm_lapic_set_reg`. */
  set(reg: number, value: number): void {
    this.#view.setUint32(reg, value >>> 0, true);
  }

  /** `apic_get_reg64`: the 64-bit value at `reg` (x2APIC ICR when it is not split). */
  get64(reg: number): bigint {
    return this.#view.getBigUint64(reg, true);
  }

  /** `apic_set_reg64`. */
  set64(reg: number, value: bigint): void {
    this.#view.setBigUint64(reg, BigInt.asUintN(64, value), true);
  }

  /** `apic_test_vector` in the bitmap at `base` (APIC_ISR, APIC_TMR or APIC_IRR). */
  testVector(base: number, vector: number): boolean {
    return ((this.get(base + ((vector >> 5) << 4)) >>> (vector & 31)) & 1) === 1;
  }

  /** `apic_set_vector`. */
  setVector(base: number, vector: number): void {
    const reg = base + ((vector >> 5) << 4);
    this.set(reg, this.get(reg) | (1 << (vector & 31)));
  }

  /** `apic_clear_vector`. */
  clearVector(base: number, vector: number): void {
    const reg = base + ((vector >> 5) << 4);
    this.set(reg, this.get(reg) & ~(1 << (vector & 31)));
  }

  /** `apic_find_highest_vector`: the highest set vector of the bitmap at `base`, or -1. */
  highestVector(base: number): number {
    for (let i = 7; i >= 0; i--) {
      const v = this.get(base + (i << 4));
      if (v !== 0) return i * 32 + 31 - Math.clz32(v);
    }
    return -1;
  }

  /** `count_vectors`: how many vectors the bitmap at `base` holds. */
  countVectors(base: number): number {
    let n = 0;
    for (let i = 0; i < 8; i++) {
      let v = this.get(base + (i << 4));
      while (v !== 0) {
        v &= v - 1;
        n++;
      }
    }
    return n;
  }

  /** Copy the whole page from `src`. */
  load(src: Uint8Array): void {
    this.bytes.set(src.subarray(0, KVM_APIC_REG_SIZE));
  }
}
