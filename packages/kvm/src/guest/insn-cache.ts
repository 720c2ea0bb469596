/**
 * The decoded-instruction cache: per guest page, the instructions found there — each one's length (`insn-length.ts`),
 * its bytes as they were decoded, and its decoded form (`decoded-form.ts`) — so an instruction executed again is not
 * fetched and decoded again:
 *
 * - **32-bit protected-mode code** runs from the decoded forms (`decoded-exec.ts`) on every memory: the handler and
 *   operands (ModRM, base, index, scale, displacement, immediate) are decoded once; instructions without a form take
 *   the general decoder.
 * - **real-mode code** runs the fast path of `execute` on the cached bytes, on memories without the slot fast path
 *   (`GuestMemory.lookup`, e.g. the bridge's view of a real VMM's RAM); on slot memories the fast path reads the slot,
 *   which costs less than the cache's checks (docs/performance.md).
 *
 * Addresses are linear, which without paging are guest-physical (so a CS base that moves the code simply reaches other
 * entries). An entry is used only in the mode it was decoded in (CR0.PE and CS.D: the default operand and address size
 * decide its length) and only when it lies within the CS limit (else the general decoder raises the #GP at the right
 * byte). For the general decoder its length is a hint, never a semantic: the fetch window holds exactly the entry's
 * bytes, and an instruction the decoder finds longer fetches the rest from memory; a decoded form exists only where
 * its own decoding has exactly that length. Correctness rests on the bytes alone: an entry is dropped, or
 * found stale, when the bytes it was decoded from change:
 *
 * - **by the guest**: every guest write goes through `data-memory.ts`, which calls {@link codeWritten} for a write to
 *   a page that holds cached instructions; that drops each entry whose bytes the write overlaps (including one that
 *   crosses into the page from the one before). So a write to the very next instruction, or a `rep stos` over code,
 *   is seen at once.
 * - **by anything else between runs** — the VMM writing the memslot's buffer, DMA, an in-kernel device, a memslot
 *   added, moved or deleted (`KVM_SET_USER_MEMORY_REGION`), another memory altogether: each run ({@link beginRun})
 *   starts a new epoch, and an entry is compared with guest memory at its first use in each epoch (its length in
 *   bytes, read through the memory, so a memory that needs to see the guest's reads sees them); a difference
 *   decodes it again.
 *
 * Memory must not change during a run except through the guest (the `GuestMemory` contract), so one check per
 * epoch suffices.
 *
 * @module
 */

import { byteAt } from './data-memory.js';
import { DecodedForms, decodeForm } from './decoded-form.js';
import { insnLength } from './insn-length.js';
import type { GuestMemory } from './memory.js';
import { CODE_BITS_WORDS, NO_CODE_BITS, R, type RunContext } from './run-context.js';

const PAGE_SHIFT = 12;
const PAGE_SIZE = 1 << PAGE_SHIFT;
const PAGE_MASK = PAGE_SIZE - 1;
/** An instruction starting in a page may run up to 14 bytes into the next. */
const SPILL = 15;

/** The cached instructions of one guest page. */
export class PageCode {
  /** The bytes each entry was decoded from, at its page offset (entries that cross the page end spill past 4096). */
  readonly bytes = new Uint8Array(PAGE_SIZE + SPILL);
  /** The length of the instruction at each offset; 0 where there is no entry. */
  readonly len = new Uint8Array(PAGE_SIZE);
  /** The mode each entry was decoded in ({@link modeKey}). */
  readonly mode = new Uint8Array(PAGE_SIZE);
  /** The epoch in which each entry was last found equal to guest memory. */
  readonly checked = new Float64Array(PAGE_SIZE);
  /** Each entry's decoded form (`decoded-form.ts`): what `decoded-exec.ts` runs in 32-bit protected mode. */
  readonly forms = new DecodedForms(PAGE_SIZE);
}

/** The decoded instructions of one guest memory (one VM's memslots, as one `GuestMemory` object). */
export class InsnCache {
  readonly pages = new Map<number, PageCode>();
  /**
   * One bit per 4 KiB page of the 4 GiB linear space: the page holds (part of) a cached instruction. The shared empty
   * map until the first instruction is cached ({@link markCode}): a memory whose code never goes through the cache
   * (real mode on slot memory, every VM a fleet host runs) does not pay for 128 KiB of zeroed bits per VM.
   */
  codeBits: Uint32Array<ArrayBuffer> = NO_CODE_BITS;
  lastNumber = -1;
  last: PageCode | undefined = undefined;
}

/**
 * @internal Which runs use the decoded-instruction cache: `'auto'` (the default) the decoded forms in 32-bit protected
 * mode, and the cached bytes in real mode on memories without the slot fast path; `'always'` both on every memory;
 * `'never'` none.
 */
export type InsnCachePolicy = 'auto' | 'always' | 'never';

const POLICY: { now: InsnCachePolicy } = { now: 'auto' };

/**
 * @internal Sets which runs use the decoded-instruction cache (tests run the interpreter's suites under each policy,
 * the guest-instruction benchmark measures them); returns the previous policy.
 */
export function setInsnCachePolicy(p: InsnCachePolicy): InsnCachePolicy {
  const was = POLICY.now;
  POLICY.now = p;
  return was;
}

const CACHES = new WeakMap<GuestMemory, InsnCache>();

/**
 * @internal Counters of the cache's work since the process started (for tests and measurements): instructions decoded
 * into the cache, entries compared with memory (their first use in a run), of those found changed, and entries
 * dropped by guest writes. (Hits are not counted: that would cost the hot path a store.)
 */
export const insnCacheStats = { fills: 0, checks: 0, stale: 0, dropped: 0 };

/**
 * @internal The epoch of the run in progress (see the module notes), in an object: a module `let` costs a hole check
 * per read. (`decoded-exec.ts` checks entries itself on its hot path, as {@link entryAt} does.)
 */
export const EPOCH = { now: 0 };

/**
 * The memory of the last {@link cacheFor} and its cache: a vCPU that runs again (the usual KVM_RUN) finds its cache
 * without the WeakMap's lookup. (It keeps the last memory alive until another is looked up, as {@link RunContext}'s
 * pointers to the last run's objects do.)
 */
const LAST: { memory: GuestMemory | undefined; cache: InsnCache | undefined } = { memory: undefined, cache: undefined };

/** The cache of `memory` (made at its first run). */
export function cacheFor(memory: GuestMemory): InsnCache {
  if (memory === LAST.memory) return LAST.cache as InsnCache;
  let c = CACHES.get(memory);
  if (c === undefined) {
    c = new InsnCache();
    CACHES.set(memory, c);
  }
  LAST.memory = memory;
  LAST.cache = c;
  return c;
}

/**
 * A run (or an event delivery) on `memory` begins: its cache becomes the run's ({@link RunContext.code}), and a new
 * epoch starts, so entries are compared with memory again before their first use. Protected-mode code runs from the
 * decoded forms on every memory; real-mode code fetches through the cache only on memories without the slot fast path
 * (`GuestMemory.lookup`) — fetching from the slot costs less than the cache's checks (docs/performance.md, "Guest
 * instructions") — or with the policy `'always'`.
 */
export function attachCache(memory: GuestMemory): void {
  const r = R;
  const policy = POLICY.now;
  if (policy === 'never') {
    r.code = undefined;
    r.codeBits = NO_CODE_BITS;
    r.fetchCached = false;
    r.decoded = false;
    return;
  }
  const c = cacheFor(memory);
  r.code = c;
  r.codeBits = c.codeBits;
  r.fetchCached = policy === 'always' || !r.hasLookup;
  r.decoded = FORMS.on;
  EPOCH.now++;
}

const FORMS = { on: true };

/**
 * @internal Whether 32-bit protected-mode code runs from the decoded forms (`decoded-exec.ts`; on by default, except
 * under the policy `'never'`) — off, it takes the general decoder as before them (tests compare the two, the
 * guest-instruction benchmark measures them); returns the previous setting.
 */
export function setDecodedForms(on: boolean): boolean {
  const was = FORMS.on;
  FORMS.on = on;
  return was;
}

/** The mode an entry is valid in: CR0.PE and CS.D (the default operand and address size). */
function modeKey(): number {
  return (R.pe ? 2 : 0) | (R.def32 ? 1 : 0);
}

/** Offset `i` of the instruction being measured ({@link insnLength}'s reader). */
let measureAt = 0;
function readForLength(i: number): number {
  return byteAt(measureAt + i);
}

/**
 * Points the instruction-fetch window (`R.cBytes`, `cBase`, `cEnd`) at the cached bytes of the instruction at linear
 * address `lin` — decoding it first if it is not cached, or no longer matches memory — and returns its offset in the
 * window's bytes; -1 when it cannot be cached (its length cannot be told, its bytes are not all RAM, it crosses the
 * CS limit at `limitLeft` bytes from its start), in which case the window is emptied and the caller fetches from
 * memory.
 */
export function fetchWindow(lin: number, limitLeft: number): number {
  const off = entryAt(lin, limitLeft);
  if (off < 0) return noWindow();
  const page = R.code!.last!;
  return window(page, lin, off, page.len[off]!);
}

/**
 * The cache entry of the instruction at linear address `lin` in the current mode — decoded (length, bytes and
 * decoded form) first if it is not cached, or no longer matches memory: its page offset, the page being the cache's
 * `last`; -1 when it cannot be cached (see {@link fetchWindow}).
 */
export function entryAt(lin: number, limitLeft: number): number {
  const r = R;
  const c = r.code!;
  if (lin > 0xffff_ffff - SPILL) return -1;
  const number = lin >>> PAGE_SHIFT;
  const off = lin & PAGE_MASK;
  let page = c.last;
  if (number !== c.lastNumber) {
    page = c.pages.get(number);
    c.lastNumber = number;
    c.last = page;
  }
  const mode = modeKey();
  if (page !== undefined) {
    const n = page.len[off]!;
    if (n !== 0 && page.mode[off] === mode && n <= limitLeft && (page.checked[off] === EPOCH.now || matches(page, lin, off, n))) {
      return off;
    }
  }
  measureAt = lin;
  const n = insnLength(readForLength, r.def32);
  if (n === 0 || n > limitLeft) return -1;
  if (page === undefined) {
    page = new PageCode();
    c.pages.set(number, page);
    c.last = page;
  }
  for (let k = 0; k < n; k++) page.bytes[off + k] = byteAt(lin + k);
  page.len[off] = n;
  page.mode[off] = mode;
  page.checked[off] = EPOCH.now;
  decodeForm(page.forms, off, page.bytes, n, r.pe, r.def32);
  markCode(c, number);
  if (off + n > PAGE_SIZE) markCode(c, number + 1);
  insnCacheStats.fills++;
  return off;
}

/** Points the instruction-fetch window at entry `off` of `page` (the instruction at `lin`, `n` bytes); returns `off`. */
export function window(page: PageCode, lin: number, off: number, n: number): number {
  const r = R;
  if (r.cBytes !== page.bytes) r.cBytes = page.bytes;
  r.cBase = lin - off;
  r.cEnd = lin + n;
  return off;
}

function noWindow(): number {
  R.cBase = R.cEnd = 0;
  return -1;
}

/** Compares an entry with guest memory (its first use in this epoch); true and marked checked when equal. */
function matches(page: PageCode, lin: number, off: number, n: number): boolean {
  insnCacheStats.checks++;
  const r = R;
  const slot = r.hasLookup ? r.M.lookup!(lin) : undefined;
  if (slot !== undefined && lin + n <= slot.end) {
    // The whole entry in one slot: compare with its bytes (one lookup instead of one per byte).
    const bytes = slot.bytes;
    const at = lin - slot.base;
    for (let k = 0; k < n; k++) {
      if (bytes[at + k] !== page.bytes[off + k]) {
        insnCacheStats.stale++;
        return false;
      }
    }
  } else {
    for (let k = 0; k < n; k++) {
      if (byteAt(lin + k) !== page.bytes[off + k]) {
        insnCacheStats.stale++;
        return false;
      }
    }
  }
  page.checked[off] = EPOCH.now;
  return true;
}

function markCode(c: InsnCache, number: number): void {
  if (c.codeBits === NO_CODE_BITS) {
    // The first cached instruction of this memory: its own map, which the run in progress (this cache's) uses too.
    c.codeBits = new Uint32Array(CODE_BITS_WORDS);
    if (R.code === c) R.codeBits = c.codeBits;
  }
  c.codeBits[number >>> 5]! |= 1 << (number & 31);
}

/**
 * The guest wrote `len` bytes at linear address `lin`, in a page marked as holding cached instructions: drops every
 * entry whose bytes the write overlaps — in that page, and those of the page before that cross into it.
 */
export function codeWritten(lin: number, len: number): void {
  const c = R.code;
  if (c === undefined) return;
  const number = lin >>> PAGE_SHIFT;
  const off = lin & PAGE_MASK;
  dropOverlapping(c.pages.get(number), off, off + len);
  if (off < SPILL && number > 0) dropOverlapping(c.pages.get(number - 1), off + PAGE_SIZE, off + PAGE_SIZE + len);
  if (off + len > PAGE_SIZE) dropOverlapping(c.pages.get(number + 1), 0, off + len - PAGE_SIZE);
}

/** Drops the entries of `page` whose bytes meet the page offsets [from, to). */
function dropOverlapping(page: PageCode | undefined, from: number, to: number): void {
  if (page === undefined) return;
  const lo = Math.max(0, from - SPILL + 1);
  const hi = Math.min(PAGE_SIZE, to);
  const len = page.len;
  for (let k = lo; k < hi; k++) {
    const n = len[k]!;
    if (n !== 0 && k + n > from) {
      len[k] = 0;
      insnCacheStats.dropped++;
    }
  }
}
