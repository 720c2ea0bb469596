/**
 * Guest RAM of a real VMM, as the model sees it.
 *
 * The VMM's own anonymous or memfd mappings hold guest RAM, and memslots name them by the VMM's addresses
 * (`userspace_addr`). The bridge gives the simulated process a mapping at the **same address**
 * (`Process.mapExternal`), backed by a mirror buffer, so the model's memslots point at the VMM's addresses.
 * The mirror is kept coherent with the real pages through `/proc/PID/mem` (root, or the same uid with the
 * process's consent, which the preload library gives with `PR_SET_PTRACER`):
 *
 * - the guest's first touch of a page (through `LazyGuestMemory` in lazy-memory.ts, the view the bridge puts over the
 *   VM's guest memory) reads that page from the VMM into the mirror and keeps a shadow of it; a guest write
 *   also marks the page;
 * - at each sync ({@link GuestMemoryMirror.sync}: the start and end of a KVM_RUN, a sleeping vCPU's wake-up,
 *   every 10 ms of a running guest) the pages the guest wrote are compared with their shadow and only the byte
 *   runs the guest changed are written back, so a VMM thread's writes to other bytes of the same pages
 *   survive; then every loaded page is forgotten, so the guest's next touch reads the VMM's current bytes.
 *
 * Costs (docs/bridge.md): one 4 KiB read per page the guest touches per KVM_RUN, a compare of each page it
 * wrote; nothing per page it does not touch.
 *
 * @module
 */
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import type { Process } from '@vac/core';
import { forEachChangedRun } from './byte-runs.js';

const PAGE = 4096;
/** The largest real VMA mirrored whole; a memslot in a bigger one gets a mirror of exactly its range. */
const MAX_VMA_MIRROR = 1024 * 1024 * 1024;
/** The largest buffer {@link GuestMemoryMirror.borrow} keeps for reuse (a 1 GiB memslot's dirty bitmap is 32 KiB). */
const SCRATCH_MAX = 64 * 1024;
/** How many buffers of one length it keeps (a call borrows a range and its shadow; a few ranges at most). */
const SCRATCH_KEEP = 4;

/** One mirrored range of the VMM's address space. */
interface Mirror {
  readonly addr: number;
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The VMM's bytes as last read or written back, page by page (valid where `loaded` is 1). */
  readonly shadow: Uint8Array<ArrayBuffer>;
  /** Per page: 1 when read from the VMM since the last sync. */
  readonly loaded: Uint8Array;
  /** Per page: 1 when the guest wrote it since the last sync. */
  readonly written: Uint8Array;
  /** Per written page: the lowest byte offset in the page the guest wrote since the last sync. */
  readonly writtenLo: Uint16Array;
  /** Per written page: the highest byte offset in the page the guest wrote since the last sync. */
  readonly writtenHi: Uint16Array;
}

/** A range of guest RAM to keep in sync. */
export interface SyncRange {
  /** VMM address. */
  readonly addr: number;
  /** Length in bytes. */
  readonly size: number;
}

/** Counters of the memory traffic, for `vac trace` and the docs' cost figures. */
export interface MemoryStats {
  /** Bytes read from the VMM. */
  bytesIn: number;
  /** Bytes written back to the VMM. */
  bytesOut: number;
  /** Syncs done (one before and one after each KVM_RUN, one per wake-up or periodic sync). */
  syncs: number;
}

/** The guest-RAM mirror of one VMM process. */
export class GuestMemoryMirror {
  readonly #pid: number;
  readonly #proc: Process;
  #fd: number | undefined;
  readonly #mirrors: Mirror[] = [];
  #last: Mirror | undefined;
  /** Pages read since the last sync: mirror, page, mirror, page, … */
  readonly #loaded: Array<Mirror | number> = [];
  /** Pages the guest wrote since the last sync, as `#loaded`. */
  readonly #written: Array<Mirror | number> = [];
  /** Traffic counters. */
  readonly stats: MemoryStats = { bytesIn: 0, bytesOut: 0, syncs: 0 };
  /**
   * {@link borrow}'s buffers for the pages it maps for one call, by length, kept for the next call: a migration's
   * stopped source makes about 70 dirty-log calls in a row, each borrowing one page of its bitmap, and a fresh 4 KiB
   * `Uint8Array` and its shadow cost more than the rest of the borrow (allocation outside V8's heap).
   */
  readonly #scratch = new Map<number, Array<Uint8Array<ArrayBuffer>>>();

  /**
   * @param pid - the real VMM's pid
   * @param proc - its simulated process
   */
  constructor(pid: number, proc: Process) {
    this.#pid = pid;
    this.#proc = proc;
  }

  #mem(): number {
    this.#fd ??= openSync(`/proc/${this.#pid}/mem`, 'r+');
    return this.#fd;
  }

  /**
   * Make `[addr, addr + size)` visible in the simulated process at the same address (before the model sees
   * a memslot there). A range the VMM has not mapped is left alone: the model then finds no memory there
   * (a guest access faults), as Linux would.
   * @returns a warning when the range could not be mirrored, else `undefined`
   */
  ensure(addr: number, size: number): string | undefined {
    if (size === 0 || this.#find(addr, size) !== undefined) return undefined;
    const vma = this.#vma(addr, size);
    if (vma === undefined) return undefined;
    const candidates: Array<[number, number]> = [];
    if (vma.end - vma.start <= MAX_VMA_MIRROR) candidates.push([vma.start, vma.end]);
    candidates.push([addr, addr + size]);
    for (const [start, end] of candidates) {
      if (this.#overlaps(start, end)) continue;
      const bytes = new Uint8Array(end - start);
      this.#proc.mapExternal(start, bytes);
      const pages = bytes.length / PAGE;
      this.#mirrors.push({
        addr: start,
        bytes,
        shadow: new Uint8Array(bytes.length),
        loaded: new Uint8Array(pages),
        written: new Uint8Array(pages),
        writtenLo: new Uint16Array(pages),
        writtenHi: new Uint16Array(pages),
      });
      return undefined;
    }
    return `guest RAM at 0x${addr.toString(16)} (+0x${size.toString(16)}) overlaps an earlier mirror only in part; the model sees no memory there`;
  }

  #find(addr: number, size: number): Mirror | undefined {
    return this.#mirrors.find((m) => addr >= m.addr && addr + size <= m.addr + m.bytes.length);
  }

  #overlaps(start: number, end: number): boolean {
    return this.#mirrors.some((m) => start < m.addr + m.bytes.length && m.addr < end);
  }

  /** The merged run of VMAs (from /proc/PID/maps) that covers `[addr, addr + size)`, if one does. */
  #vma(addr: number, size: number): { start: number; end: number } | undefined {
    let text: string;
    try {
      text = readFileSync(`/proc/${this.#pid}/maps`, 'utf8');
    } catch {
      return undefined;
    }
    // Adjacent VMAs of the same backing (anonymous, or the same memfd) are one run: a mapping the kernel split
    // (different madvise flags on parts of it) is still one piece of guest RAM.
    const runs: Array<{ start: number; end: number; name: string }> = [];
    for (const line of text.split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (m === null) continue;
      const start = parseInt(m[1] as string, 16);
      const end = parseInt(m[2] as string, 16);
      const name = m[4] ?? '';
      const last = runs[runs.length - 1];
      if (last !== undefined && last.end === start && last.name === name) last.end = end;
      else runs.push({ start, end, name });
    }
    const run = runs.find((r) => addr >= r.start && addr + size <= r.end);
    return run === undefined ? undefined : { start: run.start, end: run.end };
  }

  /**
   * The guest touches the byte at VMM address `addr` (through `LazyGuestMemory`): the first touch of its
   * page since the last {@link sync} reads the page from the VMM (and keeps a shadow of it); a write also marks
   * the page for write-back. Addresses outside every mirror are left alone (the model finds no memory there).
   */
  touch(addr: number, write: boolean): void {
    let m = this.#last;
    if (m === undefined || addr < m.addr || addr >= m.addr + m.bytes.length) {
      m = this.#find(addr, 1);
      if (m === undefined) return;
      this.#last = m;
    }
    const off = addr - m.addr;
    const page = Math.floor(off / PAGE);
    if (m.loaded[page] === 0) this.#load(m, page);
    if (write) this.#markWritten(m, page, off - page * PAGE, off - page * PAGE);
  }

  /**
   * The guest reaches `len` bytes from VMM address `addr`, all in one page, through the fast path (`LazyGuestMemory`'s
   * `lookup`): the page is read from the VMM on its first touch since the last {@link sync}, and with `write` those
   * bytes are marked written — any of them may be, unseen — so they are compared with the shadow and the changed
   * runs written back at the next sync.
   */
  touchRange(addr: number, len: number, write: boolean): void {
    let m = this.#last;
    if (m === undefined || addr < m.addr || addr + len > m.addr + m.bytes.length) {
      m = this.#find(addr, len);
      if (m === undefined) return;
      this.#last = m;
    }
    const off = addr - m.addr;
    const page = Math.floor(off / PAGE);
    if (m.loaded[page] === 0) this.#load(m, page);
    if (write) this.#markWritten(m, page, off - page * PAGE, off - page * PAGE + len - 1);
  }

  /** Bytes `lo..hi` (offsets in the page, inclusive) of `page` were written: compared and written back at the next sync. */
  #markWritten(m: Mirror, page: number, lo: number, hi: number): void {
    if (m.written[page] === 0) {
      m.written[page] = 1;
      m.writtenLo[page] = lo;
      m.writtenHi[page] = hi;
      this.#written.push(m, page);
      return;
    }
    if (lo < (m.writtenLo[page] as number)) m.writtenLo[page] = lo;
    if (hi > (m.writtenHi[page] as number)) m.writtenHi[page] = hi;
  }

  #load(m: Mirror, page: number): void {
    const off = page * PAGE;
    const dst = m.bytes.subarray(off, off + PAGE);
    this.#read(dst, m.addr + off);
    m.shadow.set(dst, off);
    m.loaded[page] = 1;
    this.#loaded.push(m, page);
    this.stats.bytesIn += PAGE;
  }

  /**
   * Write back the byte runs the guest changed in the pages it wrote (only those pages are compared with their
   * shadow, so a VMM thread's writes to other bytes of them survive), then forget every loaded page, so the
   * guest's next touch of a page reads the VMM's current bytes. At the start and end of each KVM_RUN, when a
   * sleeping vCPU wakes, and periodically while a guest runs: O(pages the guest touched), not O(guest RAM).
   */
  sync(): void {
    this.stats.syncs++;
    this.#flush();
    const loaded = this.#loaded;
    for (let i = 0; i < loaded.length; i += 2) (loaded[i] as Mirror).loaded[loaded[i + 1] as number] = 0;
    loaded.length = 0;
  }

  #flush(): void {
    const written = this.#written;
    for (let k = 0; k < written.length; k += 2) {
      const m = written[k] as Mirror;
      const page = written[k + 1] as number;
      m.written[page] = 0;
      const cur = m.bytes;
      const old = m.shadow;
      // Only the bytes between the lowest and highest the guest wrote can differ from the shadow.
      const base = page * PAGE;
      forEachChangedRun(cur, old, base + (m.writtenLo[page] as number), base + (m.writtenHi[page] as number) + 1, (i, j) => {
        this.#write(cur.subarray(i, j), m.addr + i);
        old.set(cur.subarray(i, j), i);
        this.stats.bytesOut += j - i;
      });
    }
    written.length = 0;
  }

  #read(dst: Uint8Array, addr: number): void {
    const fd = this.#mem();
    try {
      readFully(fd, dst, addr);
    } catch {
      // A page the VMM has unmapped since: read what can be read, page by page.
      for (let o = 0; o < dst.length; o += PAGE) {
        const page = dst.subarray(o, Math.min(o + PAGE, dst.length));
        try {
          readFully(fd, page, addr + o);
        } catch {
          page.fill(0);
        }
      }
    }
  }

  #write(src: Uint8Array, addr: number): void {
    const fd = this.#mem();
    let done = 0;
    while (done < src.length) {
      const n = writeSync(fd, src, done, src.length - done, addr + done);
      if (n <= 0) break;
      done += n;
    }
  }

  /**
   * Run `fn` (one ioctl) with the VMM's bytes of `ranges` visible to the model at their own addresses: the
   * memory an ioctl argument points to beyond the argument itself (`kvm_device_attr.addr`, the bitmaps of
   * `kvm_msr_filter`), which the kernel reaches with `get_user`/`put_user`/`copy_from_user`. A range inside
   * guest RAM already mirrored is synced as a KVM_RUN syncs it; any other is mapped for the call only, from
   * a fresh read of the VMM's pages, and the bytes the model changed are written back before it is unmapped.
   * A range the VMM has not mapped stays unmapped, so the model answers EFAULT as Linux does. Only the bytes of the
   * ranges themselves are compared and written back (the kernel reads and writes no others, `copy_to_user` of the
   * range); the pages mapped for the call are reused by later calls, so the model must keep no view of them past
   * `fn` (it copies what it keeps, as Linux's `copy_from_user` does).
   */
  borrow<T>(ranges: readonly SyncRange[], fn: () => T): T {
    const synced: SyncRange[] = [];
    const temps: Array<{ addr: number; bytes: Uint8Array<ArrayBuffer>; shadow: Uint8Array<ArrayBuffer>; from: number; to: number }> = [];
    for (const r of ranges) {
      if (r.size <= 0) continue;
      const start = Math.floor(r.addr / PAGE) * PAGE;
      const end = Math.ceil((r.addr + r.size) / PAGE) * PAGE;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) continue;
      const m = this.#find(start, end - start);
      if (m !== undefined) {
        synced.push({ addr: start, size: end - start });
        continue;
      }
      if (this.#overlaps(start, end) || temps.some((t) => start < t.addr + t.bytes.length && t.addr < end)) continue;
      if (this.#proc.userMemory(start, end - start) !== undefined) continue;
      const bytes = this.#takeScratch(end - start);
      try {
        readFully(this.#mem(), bytes, start);
        this.#proc.mapExternal(start, bytes);
      } catch {
        // Not mapped in the VMM (the model finds nothing there either), or over one of the model's own mappings
        // (its answer then is the model's).
        this.#giveScratch(bytes);
        continue;
      }
      const from = r.addr - start;
      const to = from + r.size;
      const shadow = this.#takeScratch(end - start);
      shadow.set(bytes.subarray(from, to), from);
      temps.push({ addr: start, bytes, shadow, from, to });
    }
    if (synced.length > 0) {
      // The VMM has just written these bytes: read them afresh (after writing back what the guest wrote there).
      this.#flush();
      for (const r of synced) {
        const m = this.#find(r.addr, r.size) as Mirror;
        for (let a = r.addr; a < r.addr + r.size; a += PAGE) {
          const page = (a - m.addr) / PAGE;
          m.loaded[page] = 0;
          this.touch(a, false);
          this.#markWritten(m, page, 0, PAGE - 1); // the model may write any byte of it
        }
      }
    }
    try {
      return fn();
    } finally {
      if (synced.length > 0) this.#flush();
      for (const t of temps) {
        this.#proc.munmap(t.addr, t.bytes.length);
        forEachChangedRun(t.bytes, t.shadow, t.from, t.to, (i, j) => {
          this.#write(t.bytes.subarray(i, j), t.addr + i);
          this.stats.bytesOut += j - i;
        });
        this.#giveScratch(t.bytes);
        this.#giveScratch(t.shadow);
      }
    }
  }

  /** A buffer of `length` bytes for {@link borrow} (its content is whatever it held: the caller overwrites it). */
  #takeScratch(length: number): Uint8Array<ArrayBuffer> {
    return this.#scratch.get(length)?.pop() ?? new Uint8Array(length);
  }

  /** Keep `b` for a later {@link borrow} (a few per length, of up to {@link SCRATCH_MAX} bytes). */
  #giveScratch(b: Uint8Array<ArrayBuffer>): void {
    if (b.length > SCRATCH_MAX) return;
    let free = this.#scratch.get(b.length);
    if (free === undefined) {
      free = [];
      this.#scratch.set(b.length, free);
    }
    if (free.length < SCRATCH_KEEP) free.push(b);
  }

  /** Close `/proc/PID/mem`. */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

function readFully(fd: number, dst: Uint8Array, addr: number): void {
  let done = 0;
  while (done < dst.length) {
    const n = readSync(fd, dst, done, dst.length - done, addr + done);
    if (n <= 0) throw new Error('short read');
    done += n;
  }
}
