/**
 * Port I/O: the `in`/`out` exits (arch/x86/kvm/x86.c: kvm_fast_pio) and string port I/O (INS, OUTS) as
 * Linux's emulator does it (arch/x86/kvm/emulate.c em_in/em_out, complete_emulated_pio).
 *
 * @module
 */

import { GuestPending } from './cpu-state.js';
import { rd16, rd32, rd8, wr16, wr32, wr8 } from './data-memory.js';
import { GuestExitReason, GuestIoDirection } from './exit.js';
import { DF } from './flags.js';
import { GUEST_QUIRK_OUT_7E_INC_RIP, R } from './run-context.js';
import { SEG_DS, SEG_ES, segAddr } from './segments.js';

export function pio(direction: number, size: number, port: number, start: number): void {
  const s = R.S;
  const x = R.X;
  x.ioDirection = direction;
  x.ioSize = size;
  x.ioPort = port;
  x.ioCount = 1;
  const d = x.data;
  if (direction === GuestIoDirection.Out) {
    const v = s.eax;
    d[0] = v;
    d[1] = size > 1 ? v >> 8 : 0;
    d[2] = size > 2 ? v >> 16 : 0;
    d[3] = size > 2 ? v >> 24 : 0;
  } else {
    d[0] = 0;
    d[1] = 0;
    d[2] = 0;
    d[3] = 0;
  }
  R.exitKind = GuestExitReason.Io;
  if (direction === GuestIoDirection.Out && port === 0x7e && (R.quirks & GUEST_QUIRK_OUT_7E_INC_RIP) !== 0) {
    // complete_fast_pio_out_port_0x7e: RIP already skipped, nothing left to complete.
    s.pending = GuestPending.None;
    return;
  }
  s.pending = direction === GuestIoDirection.Out ? GuestPending.PioOut : GuestPending.PioIn;
  s.pendingSize = size;
  s.pendingNextRip = R.ip;
  s.pendingLinearRip = (R.csBase + start) >>> 0;
  R.ip = start; // RIP is skipped by the completion on the next run, not before the exit.
}

/** `in_page` of `pio_in_emulated`: bytes left in DI's page in the direction of DF (an offset, not an address). */
export function inPage(di: number): number {
  return (R.S.eflags & DF) !== 0 ? di & 0xfff : 0x1000 - (di & 0xfff);
}

/**
 * One step of INS (6C/6D) or OUTS (6E/6F), with or without REP. OUTS exits with one element (`count` 1): SI
 * (and CX with REP) already advanced, and with REP RIP stays on the instruction with RFLAGS.RF set until
 * the run that finds CX = 0. INS exits with `count` = min(`in_page`, 1024 / size, CX) elements (Linux's
 * read-ahead; `in_page` counts bytes against a count of elements, as Linux does) and nothing changed; the
 * next run stores them at ES:DI and advances DI and CX. A REP with CX = 0 completes without an exit.
 * Returns false when nothing was done because of an exit.
 */
export function stringIo(op: number, start: number): boolean {
  const s = R.S;
  const size = (op & 1) === 0 ? 1 : R.o32 ? 4 : 2;
  const amask = R.a32 ? 0xffffffff : 0xffff;
  const count = R.rep !== 0 ? (R.a32 ? s.ecx >>> 0 : s.ecx & 0xffff) : 1;
  if (count === 0) {
    s.eflags &= ~0x10000;
    return true;
  }
  const port = s.edx & 0xffff;
  const x = R.X;
  const delta = (s.eflags & DF) !== 0 ? -size : size;
  if (op >= 0x6e) { // OUTS
    const si = R.a32 ? s.esi >>> 0 : s.esi & 0xffff;
    const lin = segAddr(R.ovr >= 0 ? R.ovr : SEG_DS, si, size);
    const v = size === 1 ? rd8(lin) : size === 2 ? rd16(lin) : rd32(lin);
    if (v < 0) return false;
    const nsi = (si + delta) & amask;
    s.esi = (s.esi - (s.esi & amask) + nsi) >>> 0;
    x.ioDirection = GuestIoDirection.Out;
    x.ioSize = size;
    x.ioPort = port;
    x.ioCount = 1;
    const d = x.data;
    d.fill(0);
    for (let i = 0; i < size; i++) d[i] = (v >>> (8 * i)) & 0xff;
    R.exitKind = GuestExitReason.Io;
    s.pending = GuestPending.None;
    if (R.rep !== 0) {
      const c = (count - 1) & amask;
      s.ecx = (s.ecx - (s.ecx & amask) + c) >>> 0;
      s.eflags |= 0x10000; // RF: the instruction is restarted
      R.ip = start;
    }
    return true;
  }
  // INS: read ahead up to a page (of DI offset) or 1 KiB, then exit; the completion stores the elements.
  const di = R.a32 ? s.edi >>> 0 : s.edi & 0xffff;
  let n = R.rep !== 0 ? Math.min(inPage(di), 1024 / size, count) : 1;
  if (n === 0) n = 1;
  // The destination range must be within ES's limit (checked now: the completion cannot fault).
  for (let i = 0; i < n; i++) segAddr(SEG_ES, (di + i * delta) & amask, size);
  x.ioDirection = GuestIoDirection.In;
  x.ioSize = size;
  x.ioPort = port;
  x.ioCount = n;
  x.data.fill(0);
  R.exitKind = GuestExitReason.Io;
  s.pending = GuestPending.PioInString;
  s.pendingSize = size;
  s.pendingPort = port;
  s.pendingCount = n;
  s.pendingNextRip = R.ip;
  s.pendingLinearRip = (R.csBase + start) >>> 0;
  s.pendingStringFlags = (R.a32 ? 1 : 0) | (R.rep !== 0 ? 2 : 0);
  R.ip = start;
  return false;
}

/**
 * Completes a string input (`GuestPending.PioInString`) at the start of a run: stores the `count` elements
 * user space left in {@link GuestExit.stringData} at ES:DI (the limits were checked at the exit), advances
 * DI and, with REP, CX; RIP then moves past the instruction, or with CX still non-zero stays on it with
 * RFLAGS.RF set (the next run exits for the next batch), as Linux's emulator restarts it.
 */
export function completeInString(): void {
  const s = R.S;
  s.pending = GuestPending.None;
  const size = s.pendingSize;
  const n = s.pendingCount;
  const wide = (s.pendingStringFlags & 1) !== 0;
  const amask = wide ? 0xffffffff : 0xffff;
  const delta = (s.eflags & DF) !== 0 ? -size : size;
  const src = R.X.stringData;
  let di = wide ? s.edi >>> 0 : s.edi & 0xffff;
  for (let i = 0; i < n; i++) {
    const o = i * size;
    const lin = s.esBase + di;
    if (size === 1) wr8(lin, src[o]!);
    else if (size === 2) wr16(lin, src[o]! | (src[o + 1]! << 8));
    else wr32(lin, (src[o]! | (src[o + 1]! << 8) | (src[o + 2]! << 16) | (src[o + 3]! << 24)) >>> 0);
    di = (di + delta) & amask;
  }
  s.edi = (s.edi - (s.edi & amask) + di) >>> 0;
  if ((s.pendingStringFlags & 2) !== 0) {
    const c = ((wide ? s.ecx >>> 0 : s.ecx & 0xffff) - n) & amask;
    s.ecx = (s.ecx - (s.ecx & amask) + c) >>> 0;
    if (c !== 0) {
      s.eflags |= 0x10000;
      return;
    }
  }
  s.eflags &= ~0x10000;
  s.eip = s.pendingNextRip;
}
