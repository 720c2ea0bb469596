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
 *   and a shadow copy is kept;
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
}

/** The guest-RAM mirror of one VMM process. */
export class GuestMemoryMirror {
  readonly #pid: number;
  readonly #proc: Process;
  #fd: number | undefined;
  readonly #mirrors: Mirror[] = [];
  /** Traffic counters. */
  readonly stats: MemoryStats = { bytesIn: 0, bytesOut: 0, syncs: 0 };

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
    if (vma[1] - vma[0] <= MAX_VMA_MIRROR) candidates.push(vma);
    candidates.push([addr, addr + size]);
    for (const [start, end] of candidates) {
      if (this.#overlaps(start, end)) continue;
      const bytes = new Uint8Array(end - start);
      this.#proc.mapExternal(start, bytes);
      this.#mirrors.push({ addr: start, bytes, shadow: undefined });
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
  #vma(addr: number, size: number): [number, number] | undefined {
    let text: string;
    try {
      text = readFileSync(`/proc/${this.#pid}/maps`, 'utf8');
    } catch {
      return undefined;
    }
    // Adjacent VMAs of the same backing (anonymous, or the same memfd) are one run: a mapping the kernel split
    // (different madvise flags on parts of it) is still one piece of guest RAM.
    const runs: Array<[number, number, string]> = [];
    for (const line of text.split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (m === null) continue;
      const s = parseInt(m[1] as string, 16);
      const e = parseInt(m[2] as string, 16);
      const name = m[3] ?? '';
      const last = runs[runs.length - 1];
      if (last !== undefined && last[1] === s && last[2] === name) last[1] = e;
      else runs.push([s, e, name]);
    }
    const run = runs.find(([s, e]) => addr >= s && addr + size <= e);
    return run === undefined ? undefined : [run[0], run[1]];
  }

  /** Read the VMM's bytes of `ranges` into the mirror (before a KVM_RUN). */
  pull(ranges: readonly SyncRange[]): void {
    this.stats.syncs++;
    for (const r of merge(ranges)) {
      const m = this.#find(r.addr, r.size);
      if (m === undefined) continue;
      const off = r.addr - m.addr;
      const dst = m.bytes.subarray(off, off + r.size);
      this.#read(dst, r.addr);
      m.shadow ??= new Uint8Array(m.bytes.length);
      m.shadow.set(dst, off);
      this.stats.bytesIn += r.size;
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
