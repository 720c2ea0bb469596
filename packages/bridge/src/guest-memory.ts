/**
 * Guest RAM of a real VMM, as the model sees it.
 *
 * The VMM's own anonymous or memfd mappings hold guest RAM, and memslots name them by the VMM's addresses
 * (`userspace_addr`). The bridge gives the simulated process a mapping at the **same address**
 * (`Process.mapExternal`), backed by a mirror buffer, so the model's memslots point at the VMM's addresses.
 * The mirror is kept coherent with the real pages through `/proc/PID/mem` (root, or the same uid with the
 * process's consent, which the preload library gives with `PR_SET_PTRACER`):
 *
 * - before a KVM_RUN, the bytes of every memslot of the vCPU's VM are read from the VMM into the mirror,
 *   and a shadow copy is kept; pages of private anonymous memory that the VMM's kernel has never populated
 *   (neither present nor swapped in /proc/PID/pagemap) are zeros and are not read;
 * - after the KVM_RUN, the mirror is compared with the shadow page by page, and only the byte runs the
 *   guest changed are written back, so a VMM thread's writes to other bytes of the same pages during the run
 *   survive.
 *
 * Costs (docs/bridge.md): a read of every memslot's bytes per KVM_RUN (O(guest RAM)), a compare of the
 * same, and memory for a mirror and a shadow of each range. Lazy paging (fetching a page on the guest's
 * first access) needs a page-fault hook in the model's guest memory, which does not exist yet.
 *
 * @module
 */
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import type { Process } from '@vac/core';

const PAGE = 4096;
/** The largest real VMA mirrored whole; a memslot in a bigger one gets a mirror of exactly its range. */
const MAX_VMA_MIRROR = 1024 * 1024 * 1024;

/** One mirrored range of the VMM's address space. */
interface Mirror {
  readonly addr: number;
  readonly bytes: Uint8Array<ArrayBuffer>;
  shadow: Uint8Array<ArrayBuffer> | undefined;
  /**
   * Private anonymous memory (QEMU's guest RAM): a page the kernel has never populated (not present, not
   * swapped in /proc/PID/pagemap) reads as zeros, so it need not be read.
   */
  readonly privateAnon: boolean;
  /** Per page: 1 when the mirror (and shadow) page may hold non-zero bytes. */
  readonly populated: Uint8Array;
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
  /** Syncs done (one before and one after each KVM_RUN). */
  syncs: number;
  /** Pages not read because the VMM's kernel has never populated them (private anonymous memory). */
  pagesSkipped: number;
}

/** The guest-RAM mirror of one VMM process. */
export class GuestMemoryMirror {
  readonly #pid: number;
  readonly #proc: Process;
  #fd: number | undefined;
  #pagemap: number | undefined;
  readonly #mirrors: Mirror[] = [];
  /** Traffic counters. */
  readonly stats: MemoryStats = { bytesIn: 0, bytesOut: 0, syncs: 0, pagesSkipped: 0 };

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
      this.#mirrors.push({ addr: start, bytes, shadow: undefined, privateAnon: vma.privateAnon, populated: new Uint8Array(bytes.length / PAGE) });
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
  #vma(addr: number, size: number): { start: number; end: number; privateAnon: boolean } | undefined {
    let text: string;
    try {
      text = readFileSync(`/proc/${this.#pid}/maps`, 'utf8');
    } catch {
      return undefined;
    }
    // Adjacent VMAs of the same backing (anonymous, or the same memfd) are one run: a mapping the kernel split
    // (different madvise flags on parts of it) is still one piece of guest RAM.
    const runs: Array<{ start: number; end: number; name: string; privateAnon: boolean }> = [];
    for (const line of text.split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (m === null) continue;
      const start = parseInt(m[1] as string, 16);
      const end = parseInt(m[2] as string, 16);
      const name = m[4] ?? '';
      const privateAnon = (m[3] as string)[3] === 'p' && name === '';
      const last = runs[runs.length - 1];
      if (last !== undefined && last.end === start && last.name === name) {
        last.end = end;
        last.privateAnon &&= privateAnon;
      } else runs.push({ start, end, name, privateAnon });
    }
    const run = runs.find((r) => addr >= r.start && addr + size <= r.end);
    return run === undefined ? undefined : { start: run.start, end: run.end, privateAnon: run.privateAnon };
  }

  /** Read the VMM's bytes of `ranges` into the mirror (before a KVM_RUN). */
  pull(ranges: readonly SyncRange[]): void {
    this.stats.syncs++;
    for (const r of merge(ranges)) {
      const m = this.#find(r.addr, r.size);
      if (m === undefined) continue;
      m.shadow ??= new Uint8Array(m.bytes.length);
      const first = (r.addr - m.addr) / PAGE;
      const pages = Math.ceil(r.size / PAGE);
      const need = m.privateAnon ? this.#populatedPages(r.addr, pages) : undefined;
      // Runs of pages to read; a page never populated is zeros (cleared here if the mirror had data there).
      let p = 0;
      while (p < pages) {
        if (need !== undefined && need[p] === 0) {
          const i = first + p;
          if (m.populated[i] === 1) {
            m.bytes.fill(0, i * PAGE, (i + 1) * PAGE);
            m.shadow.fill(0, i * PAGE, (i + 1) * PAGE);
            m.populated[i] = 0;
          }
          this.stats.pagesSkipped++;
          p++;
          continue;
        }
        let q = p + 1;
        while (q < pages && (need === undefined || need[q] === 1)) q++;
        const off = (first + p) * PAGE;
        const len = Math.min(q * PAGE, r.size) - p * PAGE;
        const dst = m.bytes.subarray(off, off + len);
        this.#read(dst, m.addr + off);
        m.shadow.set(dst, off);
        m.populated.fill(1, first + p, first + q);
        this.stats.bytesIn += len;
        p = q;
      }
    }
  }

  /** Per page of `[addr, addr + pages * 4096)`: 1 when /proc/PID/pagemap says present or swapped, else 0. */
  #populatedPages(addr: number, pages: number): Uint8Array | undefined {
    try {
      this.#pagemap ??= openSync(`/proc/${this.#pid}/pagemap`, 'r');
      const buf = Buffer.alloc(pages * 8);
      readFully(this.#pagemap, buf, (addr / PAGE) * 8);
      const out = new Uint8Array(pages);
      for (let i = 0; i < pages; i++) out[i] = (buf.readUInt32LE(i * 8 + 4) & 0xc0000000) !== 0 ? 1 : 0;
      return out;
    } catch {
      return undefined; // no pagemap: read every page
    }
  }

  /** Write back the byte runs of `ranges` that changed in the mirror since {@link pull} (after a KVM_RUN). */
  push(ranges: readonly SyncRange[]): void {
    this.stats.syncs++;
    for (const r of merge(ranges)) {
      const m = this.#find(r.addr, r.size);
      if (m === undefined || m.shadow === undefined) continue;
      const base = r.addr - m.addr;
      const cur = Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.length);
      const old = Buffer.from(m.shadow.buffer, m.shadow.byteOffset, m.shadow.length);
      for (let p = base; p < base + r.size; p += PAGE) {
        const end = Math.min(p + PAGE, base + r.size);
        if (cur.compare(old, p, end, p, end) === 0) continue;
        let i = p;
        while (i < end) {
          if (cur[i] === old[i]) {
            i++;
            continue;
          }
          let j = i + 1;
          while (j < end && cur[j] !== old[j]) j++;
          this.#write(cur.subarray(i, j), m.addr + i);
          old.set(cur.subarray(i, j), i);
          m.populated.fill(1, Math.floor(i / PAGE), Math.floor((j - 1) / PAGE) + 1);
          this.stats.bytesOut += j - i;
          i = j;
        }
      }
    }
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
   * A range the VMM has not mapped stays unmapped, so the model answers EFAULT as Linux does.
   */
  borrow<T>(ranges: readonly SyncRange[], fn: () => T): T {
    const synced: SyncRange[] = [];
    const temps: Array<{ addr: number; bytes: Uint8Array<ArrayBuffer>; shadow: Uint8Array }> = [];
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
      const bytes = new Uint8Array(end - start);
      try {
        readFully(this.#mem(), bytes, start);
      } catch {
        continue; // not mapped in the VMM: the model finds nothing there either
      }
      try {
        this.#proc.mapExternal(start, bytes);
      } catch {
        continue; // overlaps one of the model's own mappings: leave the model's answer to it
      }
      temps.push({ addr: start, bytes, shadow: bytes.slice() });
    }
    if (synced.length > 0) this.pull(synced);
    try {
      return fn();
    } finally {
      if (synced.length > 0) this.push(synced);
      for (const t of temps) {
        this.#proc.munmap(t.addr, t.bytes.length);
        let i = 0;
        while (i < t.bytes.length) {
          if (t.bytes[i] === t.shadow[i]) {
            i++;
            continue;
          }
          let j = i + 1;
          while (j < t.bytes.length && t.bytes[j] !== t.shadow[j]) j++;
          this.#write(t.bytes.subarray(i, j), t.addr + i);
          this.stats.bytesOut += j - i;
          i = j;
        }
      }
    }
  }

  /** Close `/proc/PID/mem` and `/proc/PID/pagemap`. */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    if (this.#pagemap !== undefined) closeSync(this.#pagemap);
    this.#fd = undefined;
    this.#pagemap = undefined;
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

/** Sort and merge overlapping or adjacent ranges. */
export function merge(ranges: readonly SyncRange[]): SyncRange[] {
  const sorted = [...ranges].filter((r) => r.size > 0).sort((a, b) => a.addr - b.addr);
  const out: Array<{ addr: number; size: number }> = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r.addr <= last.addr + last.size) {
      last.size = Math.max(last.size, r.addr + r.size - last.addr);
    } else out.push({ addr: r.addr, size: r.size });
  }
  return out;
}
