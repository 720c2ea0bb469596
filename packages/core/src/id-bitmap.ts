/**
 * A fixed-size ID bitmap with summary levels: the data structure behind the ID allocators (the fd table, and the
 * allocators the vendor halves of VAC bring).
 *
 * Linux keeps these IDs in a flat `DECLARE_BITMAP` and searches it with `find_first_zero_bit` /
 * `find_next_zero_bit` (`include/linux/find.h`, `lib/find_bit.c`), a linear scan over the words. That is
 * fine in C at 1024 words but costs ~1 µs in JavaScript at high occupancy, so {@link IdBitmap} adds a
 * hierarchy of "this word is full" summaries on top of the 32-bit words:
 *
 * - level 0: the bits themselves, in a `Uint32Array`;
 * - level k + 1: bit j is set iff word j of level k is full (all 32 bits set).
 *
 * Levels are added until one word holds the whole top level: 65,536 bits are 2,048 words, summarised by
 * 2,048 bits (64 words), summarised by 64 bits (2 words), summarised by 2 bits (1 word): three summary
 * levels. Finding the lowest zero bit from index 0 descends from the top word through one word per level;
 * from another index it first climbs from the starting word until a level has a zero bit after it, then
 * descends. Either way a search costs O(levels) word operations whatever the occupancy. The answer is the
 * same as Linux's: the **lowest** zero bit at or after the starting index.
 *
 * Bits past {@link IdBitmap.size} in the last word of each level ("padding") are kept **set**, so "word
 * full" is always `word === 0xffffffff` and a search never returns a padding bit; every public operation
 * hides them.
 *
 * @module
 */

import { UsageError } from './errors.js';

/** All 32 bits of a word set, as a `Uint32Array` element reads back. */
const FULL = 0xffffffff;

/** The largest supported bitmap (2^30 bits, 128 MiB of words): anything larger is a usage error. */
const MAX_BITS = 2 ** 30;

/** Index (0…31) of the lowest set bit of a non-zero 32-bit value: the count of trailing zeros. */
function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Number of set bits of a 32-bit value (SWAR popcount, as `hweight32` in `include/asm-generic/bitops/const_hweight.h`). */
function popcount32(x: number): number {
  let v = x - ((x >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  v = (v + (v >>> 4)) & 0x0f0f0f0f;
  return Math.imul(v, 0x01010101) >>> 24;
}

/** The padding mask of a level's last word: the bits at and above `nbits % 32` (0 when the word is exact). */
function paddingMask(nbits: number): number {
  const r = nbits & 31;
  return r === 0 ? 0 : ~((1 << r) - 1);
}

/** The error of an index out of range (built out of line, so the range check stays small enough to inline). */
function badIndex(i: number, size: number): UsageError {
  return new UsageError('ERR_OUT_OF_RANGE', `IdBitmap: index ${String(i)} is not in [0, ${size - 1}]`);
}

/**
 * A fixed-size bitmap of IDs `0 … size-1`, with O(levels) "lowest zero bit" search.
 *
 * Single-threaded like everything in the model; the Linux locks (`vmx_vpid_lock`, `sev_bitmap_lock`) have
 * no counterpart. `set`, `clear`, `test` and `findFirstZero` allocate nothing.
 */
export class IdBitmap {
  /** Number of usable bits (IDs `0 … size-1`). */
  readonly size: number;
  /** Level 0: the bits. Alias of `levels[0]`, kept separately for the hot path. */
  readonly #words: Uint32Array;
  /** `levels[0]` = bits; `levels[k+1]` bit j set iff word j of `levels[k]` is full. */
  readonly #levels: Uint32Array[];
  /** Number of meaningful bits per level (`levelBits[k+1]` = word count of level k). */
  readonly #levelBits: number[];
  /** Index of the top level (a single word). */
  readonly #top: number;
  /** Number of set bits below `size` (padding not counted). */
  #nset = 0;
  /** Out-parameter of `#climb` (the index found), so the hot path allocates nothing. */
  #climbIdx = 0;

  /**
   * @param size - number of bits, 1 … 2^30
   * @throws UsageError when `size` is not an integer in range
   */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1 || size > MAX_BITS) {
      throw new UsageError('ERR_OUT_OF_RANGE', `IdBitmap: size must be an integer in [1, ${MAX_BITS}], got ${String(size)}`);
    }
    this.size = size;
    const levels: Uint32Array[] = [];
    const levelBits: number[] = [];
    let nbits = size;
    for (;;) {
      const nwords = Math.ceil(nbits / 32);
      levels.push(new Uint32Array(nwords));
      levelBits.push(nbits);
      if (nwords === 1) break;
      nbits = nwords;
    }
    this.#levels = levels;
    this.#levelBits = levelBits;
    this.#top = levels.length - 1;
    this.#words = levels[0] as Uint32Array;
    this.#rebuild();
  }

  /** Number of set bits (IDs in use). */
  get count(): number {
    return this.#nset;
  }

  /** Number of summary levels above the bits (0 for ≤ 32 bits, 3 for 65,536). */
  get summaryLevels(): number {
    return this.#top;
  }

  /**
   * Set bit `i` (`__set_bit`).
   *
   * @returns `true` when the bit was clear before (the set changed something)
   * @throws UsageError when `i` is not an index of this bitmap
   */
  set(i: number): boolean {
    this.#checkIndex(i);
    const wi = i >>> 5;
    const bit = 1 << (i & 31);
    const old = this.#words[wi] as number;
    if ((old & bit) !== 0) return false;
    const now = old | bit;
    this.#words[wi] = now;
    this.#nset++;
    if (now === -1) this.#markFull(wi);
    return true;
  }

  /**
   * Clear bit `i` (`__clear_bit`).
   *
   * @returns `true` when the bit was set before
   * @throws UsageError when `i` is not an index of this bitmap
   */
  clear(i: number): boolean {
    this.#checkIndex(i);
    // The body of clearChecked, repeated: a call here would cost the bare bitmap its inlining.
    const wi = i >>> 5;
    const bit = 1 << (i & 31);
    const old = this.#words[wi] as number;
    if ((old & bit) === 0) return false;
    this.#words[wi] = old & ~bit;
    this.#nset--;
    if (old === FULL) this.#markNotFull(wi);
    return true;
  }

  /** {@link IdBitmap.clear} of an index the caller has already checked (an allocator's `free`). */
  clearChecked(i: number): boolean {
    const wi = i >>> 5;
    const bit = 1 << (i & 31);
    const old = this.#words[wi] as number;
    if ((old & bit) === 0) return false;
    this.#words[wi] = old & ~bit;
    this.#nset--;
    if (old === FULL) this.#markNotFull(wi);
    return true;
  }

  /**
   * Whether bit `i` is set (`test_bit`).
   *
   * @throws UsageError when `i` is not an index of this bitmap
   */
  test(i: number): boolean {
    this.#checkIndex(i);
    return ((this.#words[i >>> 5] as number) & (1 << (i & 31))) !== 0;
  }

  /**
   * The lowest clear bit in `[from, to]` (inclusive), or -1 when every bit there is set.
   *
   * Linux's `find_next_zero_bit(addr, to + 1, from)` returns the same index when there is one, and `to + 1`
   * (the size it was given) when there is none; here "none" is -1. With no arguments this is
   * `find_first_zero_bit(addr, size)`. An empty range (`from > to`) finds nothing.
   *
   * @param from - lowest index to consider (default 0)
   * @param to - highest index to consider (default `size - 1`)
   * @throws UsageError when `from` or `to` is not an index of this bitmap
   */
  findFirstZero(from = 0, to: number = this.size - 1): number {
    this.#checkIndex(from);
    this.#checkIndex(to);
    if (from > to) return -1;
    return this.#search(from, to);
  }

  /**
   * Find the lowest clear bit in `[from, to]` and set it: the allocation step of `allocate_vpid` and
   * `sev_asid_new` in one call.
   *
   * @returns the index taken, or -1 when the range is full (nothing changes)
   * @throws UsageError when `from` or `to` is not an index of this bitmap
   */
  takeFirstZero(from = 0, to: number = this.size - 1): number {
    this.#checkIndex(from);
    this.#checkIndex(to);
    if (from > to) return -1;
    const i = this.#search(from, to);
    if (i < 0) return -1;
    const wi = i >>> 5;
    const now = (this.#words[wi] as number) | (1 << (i & 31));
    this.#words[wi] = now;
    this.#nset++;
    if (now === -1) this.#markFull(wi);
    return i;
  }

  /** {@link IdBitmap.takeFirstZero} over the whole bitmap: no bounds to check (the allocators' hot path). */
  takeLowestZero(): number {
    const words = this.#words;
    const w0 = words[0] as number;
    if (w0 !== FULL) {
      // A zero bit in word 0: the common case at low occupancy.
      const i = ctz32(~w0);
      const now = w0 | (1 << i);
      words[0] = now;
      this.#nset++;
      if (now === -1) this.#markFull(0);
      return i;
    }
    const i = this.#lowestZeroFromTop();
    if (i < 0) return -1;
    const wi = i >>> 5;
    const now = (words[wi] as number) | (1 << (i & 31));
    words[wi] = now;
    this.#nset++;
    if (now === -1) this.#markFull(wi);
    return i;
  }

  /** The search of {@link IdBitmap.findFirstZero} on validated, non-empty bounds. */
  #search(from: number, to: number): number {
    // Fast path: a zero bit in the word holding `from` (the common case at low occupancy).
    const w0 = (this.#words[from >>> 5] as number) | ((1 << (from & 31)) - 1);
    if (w0 !== -1) {
      const i = (from & ~31) | ctz32(~w0);
      return i <= to ? i : -1;
    }
    let idx: number;
    if (from === 0) {
      // Whole-bitmap search (`find_first_zero_bit`): start at the top word, no climb needed.
      idx = this.#lowestZeroFromTop();
    } else {
      const level = this.#climb(from);
      idx = level < 0 ? -1 : this.#descend(level, this.#climbIdx);
    }
    return idx <= to ? idx : -1;
  }

  /** The lowest zero bit of the whole bitmap, from the top word down; -1 when every bit is set. */
  #lowestZeroFromTop(): number {
    const w = (this.#levels[this.#top] as Uint32Array)[0]!;
    return w === FULL ? -1 : this.#descend(this.#top, ctz32(~w));
  }

  /** From bit `idx` of `level`, clear (its word below is not full), down to level 0: one word per level. */
  #descend(level: number, idx: number): number {
    const levels = this.#levels;
    while (level > 0) {
      level--;
      idx = (idx << 5) | ctz32(~(levels[level] as Uint32Array)[idx]!);
    }
    return idx;
  }

  /**
   * Climb from bit `from` (whose word is full): look in the word holding `idx`, ignoring the bits below it;
   * if it is full too, continue from the next word at the level above, whose bits say which words of this
   * level are full.
   *
   * @returns the level where a zero bit was found (its index left in `climbIdx`), or -1 when none is
   */
  #climb(from: number): number {
    const levels = this.#levels;
    const levelBits = this.#levelBits;
    let idx = (from >>> 5) + 1;
    for (let level = 1; level <= this.#top; level++) {
      if (idx >= (levelBits[level] as number)) return -1;
      const wi = idx >>> 5;
      const w = (levels[level] as Uint32Array)[wi]! | ((1 << (idx & 31)) - 1);
      if (w !== -1) {
        this.#climbIdx = (wi << 5) | ctz32(~w);
        return level;
      }
      idx = wi + 1;
    }
    return -1;
  }

  /**
   * The lowest set bit in `[from, to]` (inclusive), or -1 (as `find_next_bit(addr, to + 1, from)`, with -1
   * for "none"). A linear word scan: meant for cold paths such as "is anything awaiting reclaim in this
   * range".
   *
   * @param from - lowest index to consider (default 0)
   * @param to - highest index to consider (default `size - 1`)
   * @throws UsageError when `from` or `to` is not an index of this bitmap
   */
  findFirstSet(from = 0, to: number = this.size - 1): number {
    this.#checkIndex(from);
    this.#checkIndex(to);
    if (from > to) return -1;
    const words = this.#words;
    const last = to >>> 5;
    let wi = from >>> 5;
    // Mask off the bits below `from` in the first word.
    let w = (words[wi] as number) & ~((1 << (from & 31)) - 1);
    for (;;) {
      if (w !== 0) {
        const i = (wi << 5) | ctz32(w);
        return i <= to ? i : -1;
      }
      wi++;
      if (wi > last) return -1;
      w = words[wi] as number;
    }
  }

  /** Clear every bit (`bitmap_zero`). */
  clearAll(): void {
    for (const level of this.#levels) level.fill(0);
    this.#rebuild();
  }

  /**
   * `this ^= other` over all bits (`bitmap_xor`), as `__sev_recycle_asids` applies the reclaim bitmap.
   *
   * @throws UsageError when the sizes differ
   */
  xorWith(other: IdBitmap): void {
    this.#checkSameSize(other, 'xorWith');
    const a = this.#words;
    const b = other.#words;
    for (let i = 0; i < a.length; i++) a[i] = (a[i] as number) ^ (b[i] as number);
    this.#rebuild();
  }

  /**
   * `this &= ~other` over all bits (`bitmap_andnot`): clear every bit that is set in `other`.
   *
   * @throws UsageError when the sizes differ
   */
  andNot(other: IdBitmap): void {
    this.#checkSameSize(other, 'andNot');
    const a = this.#words;
    const b = other.#words;
    for (let i = 0; i < a.length; i++) a[i] = (a[i] as number) & ~(b[i] as number);
    this.#rebuild();
  }

  /** Whether `other` has the same size and the same bits set (`bitmap_equal`). */
  equals(other: IdBitmap): boolean {
    if (other.size !== this.size) return false;
    const a = this.#words;
    const b = other.#words;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /** An independent copy (`bitmap_copy` into a new bitmap). */
  snapshot(): IdBitmap {
    const copy = new IdBitmap(this.size);
    for (let k = 0; k <= this.#top; k++) (copy.#levels[k] as Uint32Array).set(this.#levels[k] as Uint32Array);
    copy.#nset = this.#nset;
    return copy;
  }

  /** The set bits in increasing order (`for_each_set_bit`). Do not modify the bitmap while iterating. */
  *setBits(): IterableIterator<number> {
    const words = this.#words;
    const lastWord = words.length - 1;
    const pad = paddingMask(this.size);
    for (let wi = 0; wi <= lastWord; wi++) {
      let w = words[wi] as number;
      if (wi === lastWord) w &= ~pad;
      while (w !== 0) {
        const low = w & -w;
        yield (wi << 5) | (31 - Math.clz32(low));
        w ^= low;
      }
    }
  }

  /** Same as {@link IdBitmap.setBits}. */
  [Symbol.iterator](): IterableIterator<number> {
    return this.setBits();
  }

  /** Set summary bit `idx` at level 1 (word `idx` of level 0 became full) and propagate upwards. */
  #markFull(idx: number): void {
    for (let level = 1; level <= this.#top; level++) {
      const l = this.#levels[level] as Uint32Array;
      const wi = idx >>> 5;
      const now = (l[wi] as number) | (1 << (idx & 31));
      l[wi] = now;
      if (now !== -1) return;
      idx = wi;
    }
  }

  /** Clear summary bit `idx` at level 1 (word `idx` of level 0 is no longer full) and propagate upwards. */
  #markNotFull(idx: number): void {
    for (let level = 1; level <= this.#top; level++) {
      const l = this.#levels[level] as Uint32Array;
      const wi = idx >>> 5;
      const old = l[wi] as number;
      l[wi] = old & ~(1 << (idx & 31));
      if (old !== FULL) return;
      idx = wi;
    }
  }

  /** Re-apply padding to level 0, recompute every summary level and the count (after bulk operations). */
  #rebuild(): void {
    const words = this.#words;
    const last = words.length - 1;
    words[last] = (words[last] as number) | paddingMask(this.size);
    let n = 0;
    for (let i = 0; i < words.length; i++) n += popcount32(words[i] as number);
    this.#nset = n - popcount32(paddingMask(this.size));
    for (let k = 1; k <= this.#top; k++) {
      const below = this.#levels[k - 1] as Uint32Array;
      const level = this.#levels[k] as Uint32Array;
      level.fill(0);
      for (let j = 0; j < below.length; j++) {
        if (below[j] === FULL) level[j >>> 5] = (level[j >>> 5] as number) | (1 << (j & 31));
      }
      const lastWord = level.length - 1;
      level[lastWord] = (level[lastWord] as number) | paddingMask(this.#levelBits[k] as number);
    }
  }

  /** Throw a {@link UsageError} unless `i` is an integer index of this bitmap. */
  #checkIndex(i: number): void {
    // `(i | 0) === i` is true exactly for int32 integers, which covers every valid index (size ≤ 2^30).
    if ((i | 0) !== i || i < 0 || i >= this.size) throw badIndex(i, this.size);
  }

  /** Throw a {@link UsageError} unless `other` has this bitmap's size. */
  #checkSameSize(other: IdBitmap, op: string): void {
    if (other.size !== this.size) {
      throw new UsageError('ERR_INVALID_ARG', `IdBitmap.${op}: sizes differ (${this.size} vs ${other.size})`);
    }
  }
}
