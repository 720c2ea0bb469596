/**
 * A table of 64-bit MSR values kept as pairs of 32-bit words (low, high) in one `Uint32Array`: what KVM keeps as
 * `u64` arrays (`vcpu->arch.mce_banks`, `mci_ctl2_banks`). KVM_GET_MSRS / KVM_SET_MSRS copy the words to and from
 * the caller's `struct kvm_msr_entry` without making a bigint; the guest's RDMSR and the rest of the module read
 * bigints through {@link MsrWords.get}, and every write goes through {@link MsrWords.setWords}.
 *
 * @module
 */

/** `n` 64-bit values, all 0 at first. */
export class MsrWords {
  /** Value `i`'s low word at `2i`, its high word at `2i + 1`. */
  readonly words: Uint32Array;

  /**
   * @param n - how many values
   * @param words - where to keep them (`2n` words, all 0); default a new array
   */
  constructor(n: number, words?: Uint32Array) {
    this.words = words ?? new Uint32Array(2 * n);
  }

  /** How many values. */
  get length(): number {
    return this.words.length / 2;
  }

  /** Value `i`. */
  get(i: number): bigint {
    return (BigInt(this.words[2 * i + 1] as number) << 32n) | BigInt(this.words[2 * i] as number);
  }

  /** Set value `i` from its two words. */
  setWords(i: number, low: number, high: number): void {
    this.words[2 * i] = low;
    this.words[2 * i + 1] = high;
  }

  /** Every value, in order (for snapshots). */
  toArray(): bigint[] {
    const out: bigint[] = [];
    for (let i = 0; i < this.length; i++) out.push(this.get(i));
    return out;
  }
}
