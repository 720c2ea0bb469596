/**
 * The level of an interrupt line driven by several sources, as KVM keeps it: one bit per IRQ source id, the
 * line is high while any bit is set (`__kvm_irq_line_state`, arch/x86/kvm/irq.h). KVM_IRQ_LINE uses source 0,
 * resampling irqfds source 1 and the PIT the first free id; the PIC and the IOAPIC each keep one such word per
 * pin (`irq_states[]`).
 *
 * @module
 */

/**
 * Per-pin, per-source line levels of one irqchip. The 64 source ids KVM has (`KVM_MAX_IRQ_SOURCE_IDS`) are kept as
 * two 32-bit words per pin, so that a line change (every KVM_IRQ_LINE and irqfd signal) makes no bigint; any other
 * source number (the class takes what it is given) goes to a bigint word, with the bigint semantics it always had.
 */
export class LineStates {
  /** Sources 0–31 of each pin. */
  readonly #lo: Uint32Array;
  /** Sources 32–63 of each pin. */
  readonly #hi: Uint32Array;
  /** Any other source's bit (`1n << BigInt(source)`), per pin; made at the first such source. */
  #wide: bigint[] | undefined;

  /** @param pins - number of pins */
  constructor(pins: number) {
    this.#lo = new Uint32Array(pins);
    this.#hi = new Uint32Array(pins);
  }

  /** Set or clear `source`'s bit on `pin` and return the resulting line level, 0 or 1 (`__kvm_irq_line_state`). */
  set(pin: number, source: number, level: boolean): 0 | 1 {
    if (!(source >= 0 && source < 64 && (source | 0) === source) || !(pin >= 0 && pin < this.#lo.length && (pin | 0) === pin)) {
      return this.#setWide(pin, source, level);
    }
    const words = source < 32 ? this.#lo : this.#hi;
    const bit = 1 << (source & 31);
    words[pin] = level ? (words[pin] as number) | bit : (words[pin] as number) & ~bit;
    return this.level(pin);
  }

  /** {@link LineStates.set} for a source outside 0–63 (or a pin outside the table), in bigints. */
  #setWide(pin: number, source: number, level: boolean): 0 | 1 {
    const wide = (this.#wide ??= new Array<bigint>(this.#lo.length).fill(0n));
    const bit = 1n << BigInt(source);
    const v = level ? (wide[pin] ?? 0n) | bit : (wide[pin] ?? 0n) & ~bit;
    wide[pin] = v;
    return this.level(pin);
  }

  /** The line level of `pin` (OR over the sources). */
  level(pin: number): 0 | 1 {
    if (((this.#lo[pin] ?? 0) | (this.#hi[pin] ?? 0)) !== 0) return 1;
    const wide = this.#wide;
    return wide !== undefined && (wide[pin] ?? 0n) !== 0n ? 1 : 0;
  }

  /** Drop `source` from every pin (`kvm_pic_clear_all` / `kvm_ioapic_clear_all`); levels are not re-evaluated. */
  clearSource(source: number): void {
    if (source >= 0 && source < 64 && (source | 0) === source) {
      const words = source < 32 ? this.#lo : this.#hi;
      const keep = ~(1 << (source & 31));
      for (let i = 0; i < words.length; i++) words[i] = (words[i] as number) & keep;
    }
    if (this.#wide === undefined) return;
    const bit = 1n << BigInt(source);
    const wide = this.#wide;
    if (wide !== undefined) for (let i = 0; i < wide.length; i++) wide[i] = (wide[i] ?? 0n) & ~bit;
  }
}
