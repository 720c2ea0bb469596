/**
 * VAC's SEV / SEV-ES ASID allocator: one ASID per encrypted VM, unique across every KVM module.
 *
 * Models `arch/x86/kvm/svm/sev.c` (v6.12): `sev_hardware_setup` (geometry), `sev_asid_new`,
 * `sev_asid_free`, `__sev_recycle_asids` and `sev_flush_asids`. In the RFC each `kvmX.ko` kept its own
 * `sev_asid_bitmap`, so two modules could hand out the same ASID; owning it in VAC is "beyond the RFC"
 * (docs/spec.md §2.3, invariant 3).
 *
 * - Geometry from `CPUID 0x8000001F`: ECX = `max_sev_asid`, EDX = `min_sev_asid`; `nr_asids =
 *   max_sev_asid + 1` bits per bitmap; ASID 0 is never used.
 * - Ranges: SEV guests take ASIDs in `[min_sev_asid, max_sev_asid]`, SEV-ES (and SNP) guests in
 *   `[1, min_sev_asid - 1]`. An empty range → `-ENOTTY`.
 * - A freed ASID stays set in `sev_asid_bitmap` and is also set in `sev_reclaim_asid_bitmap`: it cannot be
 *   reused until a recycle, which needs a flush (WBINVD on all CPUs + the firmware's `DF_FLUSH`), because the
 *   caches may still hold lines encrypted with that guest's key.
 * - When the range has no free ASID, the first try recycles — only if the reclaim bitmap has an ASID **in
 *   the requested range** (`sev_flush_asids`: `find_next_bit(reclaim, nr_asids, min) > max` → `-EBUSY`, no
 *   flush); a recycle frees every reclaimable ASID of both ranges (`bitmap_xor` over `nr_asids`) — and retries
 *   once; still nothing → `-EBUSY`.
 *
 * The misc cgroup charge (`sev_misc_cg_try_charge`) is not modelled.
 *
 * The two bitmaps are flat 32-bit words as in Linux, so a recycle is one pass of `bitmap_xor` +
 * `bitmap_zero` over the words. `sev_asid_bitmap` has one summary bit per word ("this word is full"), so the
 * search skips full words 32 at a time instead of reading them (`find_next_zero_bit` is a linear scan).
 *
 * @module
 */

import { KernelError, UsageError, type CpuidRegs } from '@vac/core';

/** SEV ASID geometry, as read from `CPUID 0x8000001F` by `sev_hardware_setup`. */
export interface SevAsidConfig {
  /** `max_sev_asid` (ECX): the highest SEV ASID, also the number of encrypted guests that can run at once. */
  readonly maxSevAsid: number;
  /** `min_sev_asid` (EDX): the lowest ASID of plain SEV guests; SEV-ES uses the ones below it. */
  readonly minSevAsid: number;
}

/** Options of a {@link SevAsidAllocator}. */
export interface SevAsidAllocatorOptions {
  /**
   * Called for every flush `sev_flush_asids` performs (WBINVD on all CPUs, then `DF_FLUSH`), so VAC can count
   * them. Return `false` to model a failing `DF_FLUSH` command (firmware error): the WBINVD has run, Linux
   * logs "SEV: DF_FLUSH failed" and no ASID is recycled. Any other return value means success.
   */
  readonly onFlush?: () => boolean | void;
}

/** Snapshot of the allocator for tests and the invariant checker. */
export interface SevAsidState<Owner> {
  /** ASIDs held by a VM, with their owners, by increasing ASID. */
  readonly inUse: readonly (readonly [asid: number, owner: Owner])[];
  /** ASIDs freed but not yet recycled (not reusable before a flush), increasing. */
  readonly awaitingReclaim: readonly number[];
  /** Flushes performed (WBINVD + DF_FLUSH), successful or not. */
  readonly flushes: number;
  /** Recycles performed (successful flushes followed by `bitmap ^= reclaim`). */
  readonly recycles: number;
}

/** Index (0…31) of the lowest set bit of a non-zero 32-bit value. */
function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/**
 * The error `IdBitmap` gave for a range that does not fit the bitmaps (an SEV-ES range `[1, min_sev_asid - 1]`
 * reaching above `max_sev_asid`), kept word for word.
 */
function outOfBitmap(i: number, nrAsids: number): UsageError {
  return new UsageError('ERR_OUT_OF_RANGE', `IdBitmap: index ${String(i)} is not in [0, ${nrAsids - 1}]`);
}

/**
 * The host-wide SEV ASID bitmaps.
 *
 * @typeParam Owner - what the caller records per ASID (e.g. `{ module, vm }`); opaque to the allocator
 */
export class SevAsidAllocator<Owner = unknown> {
  /** `max_sev_asid`. */
  readonly maxSevAsid: number;
  /** `min_sev_asid`. */
  readonly minSevAsid: number;
  /** `nr_asids = max_sev_asid + 1`, the size of both bitmaps. */
  readonly nrAsids: number;
  /**
   * `sev_asid_bitmap`: set = taken (in use, or freed and awaiting reclaim). Bit 0 is never set; the bits
   * above `nrAsids - 1` in the last word are set (never free).
   */
  readonly #bitmap: Int32Array;
  /** Bit `w` set iff word `w` of `#bitmap` is full (all 32 bits set). */
  readonly #fullWords: Int32Array;
  /** `sev_reclaim_asid_bitmap`: set = freed, awaiting a flush. A subset of the taken bits. */
  readonly #reclaim: Int32Array;
  /** Number of taken ASIDs (set bits of the bitmap below `nrAsids`). */
  #nrTaken = 0;
  /** Number of ASIDs awaiting reclaim. */
  #nrReclaim = 0;
  /** The SEV range, `[sevMin, sevMax]` (empty when `sevMin > sevMax`). */
  readonly #sevMin: number;
  /** See `#sevMin`. */
  readonly #sevMax: number;
  /** The SEV-ES range, `[1, esMax]` (empty when `esMax < 1`). */
  readonly #esMax: number;
  /** Owner per ASID while in use. */
  readonly #owners: (Owner | undefined)[];
  /** The flush hook, if any. */
  readonly #onFlush: (() => boolean | void) | undefined;
  /** Flush count. */
  #nrFlushes = 0;
  /** Recycle count. */
  #nrRecycles = 0;

  /**
   * @param config - the geometry (see {@link SevAsidAllocator.fromCpuid})
   * @param options - optional flush hook
   * @throws UsageError when a number is not a non-negative integer, or `minSevAsid` is 0 with SEV present
   */
  constructor(config: SevAsidConfig, options: SevAsidAllocatorOptions = {}) {
    const { maxSevAsid, minSevAsid } = config;
    for (const [name, v] of [
      ['maxSevAsid', maxSevAsid],
      ['minSevAsid', minSevAsid],
    ] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 2 ** 20) {
        throw new UsageError('ERR_OUT_OF_RANGE', `SevAsidAllocator: ${name} must be an integer in [0, 2^20], got ${String(v)}`);
      }
    }
    if (minSevAsid === 0 && maxSevAsid > 0) {
      // ASID 0 is the host's and never used by a guest: hardware with SEV reports min_sev_asid >= 1.
      throw new UsageError('ERR_OUT_OF_RANGE', 'SevAsidAllocator: minSevAsid must be >= 1 when maxSevAsid > 0');
    }
    this.maxSevAsid = maxSevAsid;
    this.minSevAsid = minSevAsid;
    this.nrAsids = maxSevAsid + 1;
    const words = Math.ceil(this.nrAsids / 32);
    this.#bitmap = new Int32Array(words);
    this.#fullWords = new Int32Array(Math.ceil(words / 32));
    this.#reclaim = new Int32Array(words);
    // The bits past the end are taken for good, so a search never returns them.
    const r = this.nrAsids & 31;
    if (r !== 0) this.#bitmap[words - 1] = ~((1 << r) - 1);
    this.#sevMin = Math.max(1, minSevAsid);
    this.#sevMax = maxSevAsid;
    this.#esMax = minSevAsid - 1;
    this.#owners = new Array<Owner | undefined>(this.nrAsids).fill(undefined);
    this.#onFlush = options.onFlush;
  }

  /**
   * Build the allocator from `CPUID 0x8000001F` (`sev_hardware_setup`: `max_sev_asid = ecx`,
   * `min_sev_asid = edx`).
   */
  static fromCpuid<Owner = unknown>(
    leaf8000001f: CpuidRegs,
    options: SevAsidAllocatorOptions = {},
  ): SevAsidAllocator<Owner> {
    return new SevAsidAllocator<Owner>(
      { maxSevAsid: leaf8000001f.ecx >>> 0, minSevAsid: leaf8000001f.edx >>> 0 },
      options,
    );
  }

  /** Number of ASIDs held by VMs (awaiting-reclaim ones not counted). */
  get inUse(): number {
    return this.#nrTaken - this.#nrReclaim;
  }

  /** Number of flushes performed (each: WBINVD on all CPUs + `DF_FLUSH`). */
  get flushes(): number {
    return this.#nrFlushes;
  }

  /** Number of recycles (successful flushes that made reclaimed ASIDs usable again). */
  get recycles(): number {
    return this.#nrRecycles;
  }

  /**
   * The ASID range of a guest type, `[min, max]` as in `sev_asid_new`; empty when `min > max` (e.g. SEV-ES
   * with `min_sev_asid <= 1`, or SEV with `min_sev_asid > max_sev_asid`).
   */
  range(es: boolean): readonly [min: number, max: number] {
    // unsigned int min_asid = sev->es_active ? 1 : min_sev_asid;
    // unsigned int max_asid = sev->es_active ? min_sev_asid - 1 : max_sev_asid;
    // Without SEV (CPUID reports max_sev_asid = 0, so min_sev_asid = 0 too) sev_hardware_setup never enables
    // SEV or SEV-ES and KVM_SEV_INIT fails with ENOTTY before reaching here; the model gets the same answer by
    // never letting a range include ASID 0, which makes both ranges empty.
    return es ? [1, this.#esMax] : [this.#sevMin, this.#sevMax];
  }

  /**
   * `sev_asid_new()`: take the lowest free ASID of the SEV (`es = false`) or SEV-ES (`es = true`) range.
   *
   * Failure leaves the allocator as it was, with one exception that Linux shares: a flush that ran during
   * the attempt (counted in {@link SevAsidAllocator.flushes}) is a real effect — WBINVD has executed on every
   * CPU — and is not undone. With a successful `DF_FLUSH` the retry always succeeds (the flush only happens
   * when the range has a reclaimable ASID), so a failed allocation that flushed is one whose `DF_FLUSH`
   * failed ({@link SevAsidAllocatorOptions.onFlush} returned `false`).
   *
   * @param es - an SEV-ES (or SNP) guest
   * @param owner - the tag to record for the ASID
   * @returns the ASID
   * @throws KernelError `ENOTTY` when the range is empty; `EBUSY` when no ASID is free even after recycling
   */
  alloc(es: boolean, owner: Owner): number {
    const min = es ? 1 : this.#sevMin;
    const max = es ? this.#esMax : this.#sevMax;
    if (min > max) {
      throw new KernelError('ENOTTY', 'sev_asid_new', `no ${es ? 'SEV-ES' : 'SEV'} ASIDs (range [${min}, ${max}])`);
    }
    if (max > this.maxSevAsid) throw outOfBitmap(min > this.maxSevAsid ? min : max, this.nrAsids);
    let retry = true;
    for (;;) {
      // asid = find_next_zero_bit(sev_asid_bitmap, max_asid + 1, min_asid);
      const asid = this.#findZero(min, max);
      if (asid >= 0) {
        // __set_bit(asid, sev_asid_bitmap);
        const wi = asid >>> 5;
        const now = (this.#bitmap[wi] as number) | (1 << (asid & 31));
        this.#bitmap[wi] = now;
        if (now === -1) this.#fullWords[wi >>> 5] = (this.#fullWords[wi >>> 5] as number) | (1 << (wi & 31));
        this.#nrTaken++;
        this.#owners[asid] = owner;
        return asid;
      }
      // if (retry && __sev_recycle_asids(min_asid, max_asid)) { retry = false; goto again; }
      if (retry && this.#recycle(min, max)) {
        retry = false;
        continue;
      }
      throw new KernelError('EBUSY', 'sev_asid_new', `no free ${es ? 'SEV-ES' : 'SEV'} ASID in [${min}, ${max}]`);
    }
  }

  /**
   * `sev_asid_free()`: the VM is gone; its ASID goes to the reclaim bitmap and is not reusable before the
   * next recycle.
   *
   * @throws UsageError when `asid` is not held by a VM (never allocated, or already freed)
   */
  free(asid: number): void {
    if (!Number.isInteger(asid) || asid < 1 || asid > this.maxSevAsid) {
      throw new UsageError('ERR_OUT_OF_RANGE', `sev_asid_free: ASID ${String(asid)} is not in [1, ${this.maxSevAsid}]`);
    }
    const wi = asid >>> 5;
    const bit = 1 << (asid & 31);
    const r = this.#reclaim[wi] as number;
    if (((this.#bitmap[wi] as number) & bit) === 0 || (r & bit) !== 0) {
      throw new UsageError('ERR_INVALID_STATE', `sev_asid_free: ASID ${asid} is not in use`);
    }
    // __set_bit(sev->asid, sev_reclaim_asid_bitmap);
    this.#reclaim[wi] = r | bit;
    this.#nrReclaim++;
    this.#owners[asid] = undefined;
  }

  /**
   * `sev_migrate_from()`: the ASID stays in use and passes to another VM (`dst->asid = src->asid`).
   *
   * @throws UsageError when `asid` is not held by a VM
   */
  reassign(asid: number, owner: Owner): void {
    if (!this.isInUse(asid)) throw new UsageError('ERR_INVALID_STATE', `sev_migrate_from: ASID ${asid} is not in use`);
    this.#owners[asid] = owner;
  }

  /** Whether `asid` is held by a VM. */
  isInUse(asid: number): boolean {
    if (!Number.isInteger(asid) || asid < 1 || asid > this.maxSevAsid) return false;
    return this.#testTaken(asid) && !this.#testReclaim(asid);
  }

  /** Whether `asid` was freed and waits for a recycle. */
  isAwaitingReclaim(asid: number): boolean {
    if (!Number.isInteger(asid) || asid < 1 || asid > this.maxSevAsid) return false;
    return this.#testReclaim(asid);
  }

  /** The owner of `asid` while it is in use, else `undefined`. */
  ownerOf(asid: number): Owner | undefined {
    if (!Number.isInteger(asid) || asid < 1 || asid > this.maxSevAsid) return undefined;
    return this.#owners[asid];
  }

  /** A snapshot of the allocator (in use with owners, awaiting reclaim, counters). */
  state(): SevAsidState<Owner> {
    const inUse: (readonly [number, Owner])[] = [];
    const awaitingReclaim: number[] = [];
    for (let wi = 0; wi < this.#bitmap.length; wi++) {
      const r = this.#reclaim[wi] as number;
      // Taken and not awaiting reclaim; the padding bits past nrAsids are not ASIDs.
      let held = (this.#bitmap[wi] as number) & ~r;
      while (held !== 0) {
        const low = held & -held;
        const asid = (wi << 5) | ctz32(low);
        if (asid >= this.nrAsids) break;
        inUse.push([asid, this.#owners[asid] as Owner]);
        held ^= low;
      }
      for (let w = r; w !== 0; w &= w - 1) awaitingReclaim.push((wi << 5) | ctz32(w));
    }
    return { inUse, awaitingReclaim, flushes: this.#nrFlushes, recycles: this.#nrRecycles };
  }

  /** Bit `asid` of `sev_asid_bitmap` (`asid` already checked). */
  #testTaken(asid: number): boolean {
    return ((this.#bitmap[asid >>> 5] as number) & (1 << (asid & 31))) !== 0;
  }

  /** Bit `asid` of `sev_reclaim_asid_bitmap` (`asid` already checked). */
  #testReclaim(asid: number): boolean {
    return ((this.#reclaim[asid >>> 5] as number) & (1 << (asid & 31))) !== 0;
  }

  /**
   * `find_next_zero_bit(sev_asid_bitmap, max + 1, min)` with -1 for "none": the word holding `min` first,
   * then the first word after it that is not full, found in the summary.
   */
  #findZero(min: number, max: number): number {
    const bitmap = this.#bitmap;
    let wi = min >>> 5;
    let w = (bitmap[wi] as number) | ((1 << (min & 31)) - 1);
    if (w === -1) {
      const last = max >>> 5;
      const fullWords = this.#fullWords;
      let j = wi + 1;
      for (;;) {
        if (j > last) return -1;
        const s = (fullWords[j >>> 5] as number) | ((1 << (j & 31)) - 1);
        if (s !== -1) {
          j = (j & ~31) | ctz32(~s);
          break;
        }
        j = (j | 31) + 1;
      }
      if (j > last) return -1;
      wi = j;
      w = bitmap[j] as number;
    }
    const i = (wi << 5) | ctz32(~w);
    return i <= max ? i : -1;
  }

  /**
   * `__sev_recycle_asids(min, max)`: flush, then make every reclaimable ASID (both ranges) usable again.
   *
   * @returns `true` when ASIDs were recycled
   */
  #recycle(min: number, max: number): boolean {
    // sev_flush_asids(): "Check if there are any ASIDs to reclaim before performing a flush":
    // asid = find_next_bit(sev_reclaim_asid_bitmap, nr_asids, min_asid); if (asid > max_asid) return -EBUSY;
    if (!this.#anyReclaim(min, max)) return false;
    // down_write(&sev_deactivate_lock); wbinvd_on_all_cpus(); sev_guest_df_flush(&error); — a real effect
    // from here on, even if DF_FLUSH fails.
    this.#nrFlushes++;
    const ok = this.#onFlush?.() !== false;
    if (!ok) return false; // pr_err("SEV: DF_FLUSH failed ..."); __sev_recycle_asids returns false
    // bitmap_xor(sev_asid_bitmap, sev_asid_bitmap, sev_reclaim_asid_bitmap, nr_asids);
    // bitmap_zero(sev_reclaim_asid_bitmap, nr_asids);
    // In one pass; a word that had reclaimable bits is no longer full.
    const bitmap = this.#bitmap;
    const reclaim = this.#reclaim;
    const fullWords = this.#fullWords;
    for (let wi = 0; wi < reclaim.length; wi++) {
      const r = reclaim[wi] as number;
      if (r === 0) continue;
      bitmap[wi] = (bitmap[wi] as number) ^ r;
      reclaim[wi] = 0;
      fullWords[wi >>> 5] = (fullWords[wi >>> 5] as number) & ~(1 << (wi & 31));
    }
    this.#nrTaken -= this.#nrReclaim;
    this.#nrReclaim = 0;
    this.#nrRecycles++;
    return true;
  }

  /** Whether `sev_reclaim_asid_bitmap` has a bit in `[min, max]` (`find_next_bit` over the words). */
  #anyReclaim(min: number, max: number): boolean {
    if (this.#nrReclaim === 0) return false;
    const reclaim = this.#reclaim;
    const last = max >>> 5;
    let wi = min >>> 5;
    let w = (reclaim[wi] as number) & ~((1 << (min & 31)) - 1);
    for (;;) {
      if (w !== 0) return ((wi << 5) | ctz32(w)) <= max;
      wi++;
      if (wi > last) return false;
      w = reclaim[wi] as number;
    }
  }
}
