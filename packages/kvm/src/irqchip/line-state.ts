/**
 * The level of an interrupt line driven by several sources, as KVM keeps it: one bit per IRQ source id, the
 * line is high while any bit is set (`__kvm_irq_line_state`, arch/x86/kvm/irq.h). KVM_IRQ_LINE uses source 0,
 * resampling irqfds source 1 and the PIT the first free id; the PIC and the IOAPIC each keep one such word per
 * pin (`irq_states[]`).
 *
 * @module
 */

/** Per-pin, per-source line levels of one irqchip. */
export class LineStates {
  readonly #bits: bigint[];

  /** @param pins - number of pins */
  constructor(pins: number) {
    this.#bits = new Array<bigint>(pins).fill(0n);
  }

  /** Set or clear `source`'s bit on `pin` and return the resulting line level, 0 or 1 (`__kvm_irq_line_state`). */
  set(pin: number, source: number, level: boolean): 0 | 1 {
    const bit = 1n << BigInt(source);
    const v = level ? (this.#bits[pin] ?? 0n) | bit : (this.#bits[pin] ?? 0n) & ~bit;
    this.#bits[pin] = v;
    return v !== 0n ? 1 : 0;
  }

  /** The line level of `pin` (OR over the sources). */
  level(pin: number): 0 | 1 {
    return (this.#bits[pin] ?? 0n) !== 0n ? 1 : 0;
  }

  /** Drop `source` from every pin (`kvm_pic_clear_all` / `kvm_ioapic_clear_all`); levels are not re-evaluated. */
  clearSource(source: number): void {
    const bit = 1n << BigInt(source);
    for (let i = 0; i < this.#bits.length; i++) this.#bits[i] = (this.#bits[i] ?? 0n) & ~bit;
  }
}
