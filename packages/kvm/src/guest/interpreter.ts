/**
 * The guest CPU: an interpreter for 16-bit real-mode x86 machine code, the part of `KVM_RUN` that in Linux
 * is the hardware (VMX non-root / SVM guest mode) plus KVM's exit handlers.
 *
 * {@link runGuest} executes instructions from guest memory until one of them needs user space (port I/O,
 * `hlt`, MMIO), cannot be executed (emulation failure), shuts the vCPU down, or the instruction budget runs
 * out. It never allocates on the hot path: decoder scratch lives in this module for the duration of one
 * synchronous call (runs cannot nest), the exit goes into a caller-owned {@link GuestExit}, and instruction
 * fetch and data accesses cache the memslot they last hit.
 *
 * Where KVM's behaviour is visible to user space, it is modelled on arch/x86/kvm/x86.c:
 *
 * - **Port I/O** (`kvm_fast_pio`): the exit leaves RIP *on* the `in`/`out`; the next run completes it —
 *   `complete_fast_pio_in` merges the data into AL/AX (or zero-extends into RAX for 4 bytes) and skips the
 *   instruction, `complete_fast_pio_out` just skips it — unless user space moved RIP in between
 *   (`cui_linear_rip` no longer matches), in which case the completion is dropped. `out` to port 0x7e is
 *   the exception: with `KVM_X86_QUIRK_OUT_7E_INC_RIP` (on by default) RIP is advanced before the exit.
 * - **`hlt`** (`kvm_emulate_halt`): RIP is advanced past `hlt`, then the vCPU exits with `KVM_EXIT_HLT`
 *   (no in-kernel irqchip in this model).
 * - **MMIO** (`x86_emulate_instruction`, `complete_emulated_mmio`): a write is committed with the rest of
 *   the instruction (RIP advanced) and reported; a read exits with RIP unchanged and nothing committed, and
 *   the next run re-executes the instruction with the data user space supplied (the emulator's read cache).
 * - **Emulation failure** (`handle_emulation_failure` → `prepare_emulation_failure_exit`): an opcode the
 *   interpreter does not implement, or an instruction fetch from memory that is not RAM, exits with
 *   `KVM_EXIT_INTERNAL_ERROR`, sub-error `KVM_INTERNAL_ERROR_EMULATION`, and the instruction bytes.
 *
 * Instruction semantics and flags follow the Intel SDM Vol. 2 (instruction reference) and Vol. 1 §3.4.3
 * (EFLAGS); real-mode interrupt delivery follows Vol. 3A §20.1.4. Not modelled: segment-limit checks,
 * the A20 gate, TF single-stepping, interrupt shadows, string I/O (`ins`/`outs`), x87, BCD adjust
 * instructions, protected mode.
 *
 * @module
 */

import {
  GuestCpuState,
  GuestPending,
  X86_EFLAGS_AC,
  X86_EFLAGS_AF,
  X86_EFLAGS_CF,
  X86_EFLAGS_DF,
  X86_EFLAGS_FIXED,
  X86_EFLAGS_IF,
  X86_EFLAGS_OF,
  X86_EFLAGS_PF,
  X86_EFLAGS_SF,
  X86_EFLAGS_TF,
  X86_EFLAGS_ZF,
} from './cpu-state.js';
import {
  GUEST_EMULATION_FLAG_INSTRUCTION_BYTES,
  GUEST_INTERNAL_ERROR_EMULATION,
  GUEST_MAX_INSN_BYTES,
  GuestExit,
  GuestExitReason,
  GuestIoDirection,
  type GuestExitReasonValue,
} from './exit.js';
import { UsageError } from '@vac/core';
import type { GuestMemory } from './memory.js';

/**
 * The `KVM_X86_QUIRK_OUT_7E_INC_RIP` quirk bit (`<asm/kvm.h>`, value 1 << 3): advance RIP before exiting for
 * `out` to port 0x7e, for old user space that relied on it. Enabled by default, as in KVM.
 */
export const GUEST_QUIRK_OUT_7E_INC_RIP = 1 << 3;

/** The quirks {@link runGuest} applies when the caller passes none (KVM's default: all enabled). */
export const GUEST_DEFAULT_QUIRKS = GUEST_QUIRK_OUT_7E_INC_RIP;

// ---------------------------------------------------------------------------------------------------------
// Flags (SDM Vol. 1 §3.4.3.1, "Status Flags").

const CF = X86_EFLAGS_CF;
const PF = X86_EFLAGS_PF;
const AF = X86_EFLAGS_AF;
const ZF = X86_EFLAGS_ZF;
const SF = X86_EFLAGS_SF;
const OF = X86_EFLAGS_OF;
const DF = X86_EFLAGS_DF;
/** The six status flags arithmetic instructions write. */
const STATUS = CF | PF | AF | ZF | SF | OF;

/** PF for each low result byte: set when the byte has an even number of 1 bits. */
const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let bits = 0;
  for (let b = i; b !== 0; b >>= 1) bits += b & 1;
  PARITY[i] = (bits & 1) === 0 ? PF : 0;
}

/** 1 for the prefix bytes legal in 16-bit code. */
const PREFIX = new Uint8Array(256);
for (const p of [0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]) PREFIX[p] = 1;

// ---------------------------------------------------------------------------------------------------------
// Per-run scratch. Only meaningful during one synchronous runGuest call: every field is (re)set at entry,
// so no state carries over from one run, vCPU or host to the next. (S, M and X keep pointing at the last
// run's objects afterwards, only to spare the write barriers of resetting them on every run.)

const EMPTY: Uint8Array = new Uint8Array(0);
const IDLE_MEMORY: GuestMemory = { read8: () => -1, write8: () => false };

/** Thrown (never as an Error: no stack capture) when the instruction cannot be emulated. */
const EMULATION_FAILED = { failed: true } as const;

let running = false;
let S: GuestCpuState = new GuestCpuState();
let M: GuestMemory = IDLE_MEMORY;
let X: GuestExit = new GuestExit();
/** Whether `M` provides the `lookup` fast path. */
let hasLookup = false;
let quirks = GUEST_DEFAULT_QUIRKS;

/** Offset within CS of the next byte to decode. */
let ip = 0;
/** CS base for the current instruction. */
let csBase = 0;
/** Instruction-fetch slot cache: linear [cBase, cEnd) is cBytes[lin - cBase]. */
let cBytes = EMPTY;
let cBase = 0;
let cEnd = 0;
/** Data-read slot cache. */
let dBytes = EMPTY;
let dBase = 0;
let dEnd = 0;
/** Data-write slot cache (writable slots only). */
let wBytes = EMPTY;
let wBase = 0;
let wEnd = 0;

/** Prefix state of the current instruction. */
let o32 = false;
let a32 = false;
/** Segment-override prefix: a segment register number (see {@link segBaseOf}), or -1 for none. */
let ovr = -1;
/** 0 = none, 2 = REPNE (F2), 3 = REP/REPE (F3). */
let rep = 0;
let prefixDirty = false;

/** Linear address of the last decoded memory operand. */
let eaLin = 0;
/** Offset (within its segment) of the last decoded memory operand, for `lea`. */
let eaOff = 0;
/** The last 32-bit memory operand used ESP as its base (`pop [esp…]` adjusts it). */
let eaUsesSp = false;

/** Exit the current instruction produced (0 = none; else a GuestExitReason). */
let exitKind = 0;
let failDetail = '';

// ---------------------------------------------------------------------------------------------------------
// Failure.

function fail(detail: string): never {
  failDetail = detail;
  throw EMULATION_FAILED;
}

// ---------------------------------------------------------------------------------------------------------
// Instruction fetch.

function fetch8(): number {
  const lin = csBase + ip;
  if (lin >= cBase && lin < cEnd) {
    ip++;
    return cBytes[lin - cBase]!;
  }
  return fetchSlow();
}

function fetchSlow(): number {
  const lin = csBase + ip;
  if (ip - S.rip >= GUEST_MAX_INSN_BYTES) fail('instruction longer than 15 bytes');
  if (hasLookup) {
    const slot = M.lookup!(lin);
    if (slot !== undefined) {
      if (cBytes !== slot.bytes) cBytes = slot.bytes;
      cBase = slot.base;
      cEnd = slot.end;
      ip++;
      return cBytes[lin - cBase]!;
    }
  } else {
    const b = M.read8(lin);
    if (b >= 0) {
      ip++;
      return b;
    }
  }
  return fail('instruction fetch from guest-physical memory that is not RAM');
}

function fetch16(): number {
  const lin = csBase + ip;
  if (lin >= cBase && lin + 2 <= cEnd) {
    ip += 2;
    const o = lin - cBase;
    return cBytes[o]! | (cBytes[o + 1]! << 8);
  }
  const lo = fetch8();
  return lo | (fetch8() << 8);
}

function fetch32(): number {
  const lo = fetch16();
  return lo + fetch16() * 0x10000;
}

/** Fetches an operand-size immediate (16 bits, or 32 with a 0x66 prefix). */
function fetchV(): number {
  return o32 ? fetch32() : fetch16();
}

function sext8(v: number): number {
  return (v << 24) >> 24;
}

function sext16(v: number): number {
  return (v << 16) >> 16;
}

// ---------------------------------------------------------------------------------------------------------
// Registers. Indexes follow the ModRM encoding: AX CX DX BX SP BP SI DI; for bytes AL CL DL BL AH CH DH BH.

function getR8(i: number): number {
  const s = S;
  switch (i) {
    case 0: return s.rax & 0xff;
    case 1: return s.rcx & 0xff;
    case 2: return s.rdx & 0xff;
    case 3: return s.rbx & 0xff;
    case 4: return (s.rax >> 8) & 0xff;
    case 5: return (s.rcx >> 8) & 0xff;
    case 6: return (s.rdx >> 8) & 0xff;
    default: return (s.rbx >> 8) & 0xff;
  }
}

function setR8(i: number, v: number): void {
  const s = S;
  switch (i) {
    case 0: s.rax = s.rax - (s.rax & 0xff) + v; return;
    case 1: s.rcx = s.rcx - (s.rcx & 0xff) + v; return;
    case 2: s.rdx = s.rdx - (s.rdx & 0xff) + v; return;
    case 3: s.rbx = s.rbx - (s.rbx & 0xff) + v; return;
    case 4: s.rax = s.rax - (s.rax & 0xff00) + (v << 8); return;
    case 5: s.rcx = s.rcx - (s.rcx & 0xff00) + (v << 8); return;
    case 6: s.rdx = s.rdx - (s.rdx & 0xff00) + (v << 8); return;
    default: s.rbx = s.rbx - (s.rbx & 0xff00) + (v << 8); return;
  }
}

function getR16(i: number): number {
  const s = S;
  switch (i) {
    case 0: return s.rax & 0xffff;
    case 1: return s.rcx & 0xffff;
    case 2: return s.rdx & 0xffff;
    case 3: return s.rbx & 0xffff;
    case 4: return s.rsp & 0xffff;
    case 5: return s.rbp & 0xffff;
    case 6: return s.rsi & 0xffff;
    default: return s.rdi & 0xffff;
  }
}

function setR16(i: number, v: number): void {
  const s = S;
  switch (i) {
    case 0: s.rax = s.rax - (s.rax & 0xffff) + v; return;
    case 1: s.rcx = s.rcx - (s.rcx & 0xffff) + v; return;
    case 2: s.rdx = s.rdx - (s.rdx & 0xffff) + v; return;
    case 3: s.rbx = s.rbx - (s.rbx & 0xffff) + v; return;
    case 4: s.rsp = s.rsp - (s.rsp & 0xffff) + v; return;
    case 5: s.rbp = s.rbp - (s.rbp & 0xffff) + v; return;
    case 6: s.rsi = s.rsi - (s.rsi & 0xffff) + v; return;
    default: s.rdi = s.rdi - (s.rdi & 0xffff) + v; return;
  }
}

function getR32(i: number): number {
  const s = S;
  switch (i) {
    case 0: return s.rax >>> 0;
    case 1: return s.rcx >>> 0;
    case 2: return s.rdx >>> 0;
    case 3: return s.rbx >>> 0;
    case 4: return s.rsp >>> 0;
    case 5: return s.rbp >>> 0;
    case 6: return s.rsi >>> 0;
    default: return s.rdi >>> 0;
  }
}

/** A 32-bit register write zero-extends, as `kvm_register_write()` does outside 64-bit mode. */
function setR32(i: number, v: number): void {
  const s = S;
  const u = v >>> 0;
  switch (i) {
    case 0: s.rax = u; return;
    case 1: s.rcx = u; return;
    case 2: s.rdx = u; return;
    case 3: s.rbx = u; return;
    case 4: s.rsp = u; return;
    case 5: s.rbp = u; return;
    case 6: s.rsi = u; return;
    default: s.rdi = u; return;
  }
}

function getRv(i: number): number {
  return o32 ? getR32(i) : getR16(i);
}

function setRv(i: number, v: number): void {
  if (o32) setR32(i, v);
  else setR16(i, v);
}

// Segment registers by their `mov sreg` encoding: 0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS (6 and 7 do not exist).
const SEG_ES = 0;
const SEG_CS = 1;
const SEG_SS = 2;
const SEG_DS = 3;
const SEG_FS = 4;
const SEG_GS = 5;

/** Base of segment register `i` (0–5). */
function segBaseOf(i: number): number {
  const s = S;
  switch (i) {
    case SEG_ES: return s.esBase;
    case SEG_CS: return s.csBase;
    case SEG_SS: return s.ssBase;
    case SEG_DS: return s.dsBase;
    case SEG_FS: return s.fsBase;
    default: return s.gsBase;
  }
}

/** Selector of segment register `i` (0–5). */
function selectorOf(i: number): number {
  const s = S;
  switch (i) {
    case SEG_ES: return s.esSelector;
    case SEG_CS: return s.csSelector;
    case SEG_SS: return s.ssSelector;
    case SEG_DS: return s.dsSelector;
    case SEG_FS: return s.fsSelector;
    default: return s.gsSelector;
  }
}

/** A real-mode load of segment register `i` (0–5): the selector, and base = selector × 16. */
function loadSeg(i: number, selector: number): void {
  const s = S;
  const sel = selector & 0xffff;
  const base = sel << 4;
  switch (i) {
    case SEG_ES: s.esSelector = sel; s.esBase = base; return;
    case SEG_CS: s.csSelector = sel; s.csBase = base; return;
    case SEG_SS: s.ssSelector = sel; s.ssBase = base; return;
    case SEG_DS: s.dsSelector = sel; s.dsBase = base; return;
    case SEG_FS: s.fsSelector = sel; s.fsBase = base; return;
    default: s.gsSelector = sel; s.gsBase = base; return;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Effective addresses (SDM Vol. 2A §2.1.5, Tables 2-1 and 2-2). Real mode: linear = segment base + offset.

/** Decodes the memory operand of ModRM byte `m` (mod ≠ 3), fetching SIB/displacement; returns the linear address. */
function rmAddr(m: number): number {
  if (a32) return rmAddr32(m);
  const s = S;
  const mod = m >> 6;
  let ea: number;
  let stack = false;
  switch (m & 7) {
    case 0: ea = (s.rbx & 0xffff) + (s.rsi & 0xffff); break;
    case 1: ea = (s.rbx & 0xffff) + (s.rdi & 0xffff); break;
    case 2: ea = (s.rbp & 0xffff) + (s.rsi & 0xffff); stack = true; break;
    case 3: ea = (s.rbp & 0xffff) + (s.rdi & 0xffff); stack = true; break;
    case 4: ea = s.rsi & 0xffff; break;
    case 5: ea = s.rdi & 0xffff; break;
    case 6:
      if (mod === 0) return segBase(false) + (eaOff = fetch16());
      ea = s.rbp & 0xffff;
      stack = true;
      break;
    default: ea = s.rbx & 0xffff; break;
  }
  if (mod === 1) ea += sext8(fetch8());
  else if (mod === 2) ea += fetch16();
  eaOff = ea & 0xffff;
  return segBase(stack) + eaOff;
}

function rmAddr32(m: number): number {
  const mod = m >> 6;
  const rm = m & 7;
  let ea: number;
  let stack = false;
  eaUsesSp = false;
  if (rm === 4) {
    const sib = fetch8();
    const base = sib & 7;
    const index = (sib >> 3) & 7;
    if (base === 5 && mod === 0) {
      ea = fetch32();
    } else {
      ea = getR32(base);
      if (base === 4 || base === 5) stack = true;
      if (base === 4) eaUsesSp = true;
    }
    if (index !== 4) ea += getR32(index) * (1 << (sib >> 6));
  } else if (rm === 5 && mod === 0) {
    ea = fetch32();
  } else {
    ea = getR32(rm);
    if (rm === 5) stack = true;
  }
  if (mod === 1) ea += sext8(fetch8());
  else if (mod === 2) ea += fetch32();
  eaOff = ea >>> 0;
  return segBase(stack) + eaOff;
}

function segBase(stack: boolean): number {
  if (ovr >= 0) return segBaseOf(ovr);
  return stack ? S.ssBase : S.dsBase;
}

// ---------------------------------------------------------------------------------------------------------
// Data memory. Reads return -1 when an MMIO read exit has been prepared (the caller abandons the
// instruction); writes to non-RAM become an MMIO write exit reported after the instruction commits.

function rd8(lin: number): number {
  if (lin >= dBase && lin < dEnd) return dBytes[lin - dBase]!;
  return rdSlow(lin, 1);
}

function rd16(lin: number): number {
  if (lin >= dBase && lin + 2 <= dEnd) {
    const o = lin - dBase;
    return dBytes[o]! | (dBytes[o + 1]! << 8);
  }
  return rdSlow(lin, 2);
}

function rd32(lin: number): number {
  if (lin >= dBase && lin + 4 <= dEnd) {
    const o = lin - dBase;
    return (dBytes[o]! | (dBytes[o + 1]! << 8) | (dBytes[o + 2]! << 16) | (dBytes[o + 3]! << 24)) >>> 0;
  }
  return rdSlow(lin, 4);
}

function rdV(lin: number): number {
  return o32 ? rd32(lin) : rd16(lin);
}

function byteAt(gpa: number): number {
  if (!hasLookup) return M.read8(gpa);
  const slot = M.lookup!(gpa);
  return slot === undefined ? -1 : slot.bytes[gpa - slot.base]!;
}

function rdSlow(lin: number, len: number): number {
  if (hasLookup) {
    const slot = M.lookup!(lin);
    if (slot !== undefined) {
      if (dBytes !== slot.bytes) dBytes = slot.bytes;
      dBase = slot.base;
      dEnd = slot.end;
      if (lin + len <= dEnd) {
        const o = lin - dBase;
        let v = 0;
        for (let i = len - 1; i >= 0; i--) v = v * 256 + dBytes[o + i]!;
        return v;
      }
    }
  }
  let v = 0;
  let mapped = 0;
  for (let i = 0; i < len; i++) {
    const b = byteAt(lin + i);
    if (b >= 0) {
      mapped++;
      v += b * 2 ** (8 * i);
    }
  }
  if (mapped === len) return v;
  if (mapped !== 0) fail('memory access straddles RAM and MMIO');
  return mmioRead(lin, len);
}

/** Returns the cached value of a completed MMIO read, or prepares an MMIO read exit and returns -1. */
function mmioRead(gpa: number, len: number): number {
  const s = S;
  if (s.mmioCacheCount > 0 && s.mmioCacheGpa0 === gpa && s.mmioCacheLen0 === len) return s.mmioCacheValue0;
  if (s.mmioCacheCount > 1 && s.mmioCacheGpa1 === gpa && s.mmioCacheLen1 === len) return s.mmioCacheValue1;
  if (s.mmioCacheCount >= 2) fail('instruction needs more than two MMIO reads');
  const x = X;
  x.mmioPhysAddr = gpa;
  x.mmioLen = len;
  x.mmioIsWrite = 0;
  x.data.fill(0);
  s.pending = GuestPending.MmioRead;
  s.pendingSize = len;
  s.pendingGpa = gpa;
  exitKind = GuestExitReason.Mmio;
  return -1;
}

function wr8(lin: number, v: number): void {
  if (lin >= wBase && lin < wEnd) {
    wBytes[lin - wBase] = v;
    return;
  }
  wrSlow(lin, v, 1);
}

function wr16(lin: number, v: number): void {
  if (lin >= wBase && lin + 2 <= wEnd) {
    const o = lin - wBase;
    wBytes[o] = v;
    wBytes[o + 1] = v >> 8;
    return;
  }
  wrSlow(lin, v, 2);
}

function wr32(lin: number, v: number): void {
  if (lin >= wBase && lin + 4 <= wEnd) {
    const o = lin - wBase;
    wBytes[o] = v;
    wBytes[o + 1] = v >> 8;
    wBytes[o + 2] = v >> 16;
    wBytes[o + 3] = v >> 24;
    return;
  }
  wrSlow(lin, v, 4);
}

function wrV(lin: number, v: number): void {
  if (o32) wr32(lin, v);
  else wr16(lin, v);
}

function wrSlow(lin: number, v: number, len: number): void {
  if (hasLookup) {
    const slot = M.lookup!(lin);
    if (slot !== undefined && !slot.readonly) {
      if (wBytes !== slot.bytes) wBytes = slot.bytes;
      wBase = slot.base;
      wEnd = slot.end;
      if (lin + len <= wEnd) {
        for (let i = 0; i < len; i++) wBytes[lin - wBase + i] = v >> (8 * i);
        return;
      }
    }
    let writable = 0;
    for (let i = 0; i < len; i++) {
      const s = M.lookup!(lin + i);
      if (s !== undefined && !s.readonly) writable++;
    }
    if (writable === len) {
      for (let i = 0; i < len; i++) {
        const s = M.lookup!(lin + i)!;
        s.bytes[lin + i - s.base] = v >> (8 * i);
      }
      return;
    }
    if (writable !== 0) fail('memory access straddles RAM and MMIO');
    mmioWrite(lin, v, len);
    return;
  }
  if (!M.write8(lin, v & 0xff)) {
    mmioWrite(lin, v, len);
    return;
  }
  for (let i = 1; i < len; i++) {
    if (!M.write8(lin + i, (v >> (8 * i)) & 0xff)) fail('memory access straddles RAM and MMIO');
  }
}

function mmioWrite(gpa: number, v: number, len: number): void {
  if (exitKind !== 0) fail('instruction makes more than one MMIO write');
  const x = X;
  x.mmioPhysAddr = gpa;
  x.mmioLen = len;
  x.mmioIsWrite = 1;
  const d = x.data;
  d.fill(0);
  for (let i = 0; i < len; i++) d[i] = v >> (8 * i);
  exitKind = GuestExitReason.Mmio;
}

// ---------------------------------------------------------------------------------------------------------
// ModRM operands.

function readRm8(m: number): number {
  if (m >= 0xc0) return getR8(m & 7);
  eaLin = rmAddr(m);
  return rd8(eaLin);
}

function writeRm8(m: number, v: number): void {
  if (m >= 0xc0) setR8(m & 7, v);
  else wr8(eaLin, v);
}

function readRmV(m: number): number {
  if (m >= 0xc0) return getRv(m & 7);
  eaLin = rmAddr(m);
  return o32 ? rd32(eaLin) : rd16(eaLin);
}

function writeRmV(m: number, v: number): void {
  if (m >= 0xc0) setRv(m & 7, v);
  else if (o32) wr32(eaLin, v);
  else wr16(eaLin, v);
}

// ---------------------------------------------------------------------------------------------------------
// Arithmetic and flags (SDM Vol. 2: ADD, ADC, SUB, SBB, CMP, AND, OR, XOR, INC, DEC, NEG; Vol. 1 §3.4.3.1).

/** ADD/ADC: result = a + b + carry; CF = unsigned carry out, OF = signed overflow, AF = carry out of bit 3. */
function add(a: number, b: number, carry: number, mask: number, sign: number): number {
  const r = a + b + carry;
  const res = (r & mask) >>> 0;
  S.rflags =
    (S.rflags & ~STATUS) |
    PARITY[res & 0xff]! |
    (res === 0 ? ZF : 0) |
    ((res & sign) !== 0 ? SF : 0) |
    ((a ^ b ^ res) & AF) |
    (r > mask ? CF : 0) |
    (((a ^ res) & (b ^ res) & sign) !== 0 ? OF : 0);
  return res;
}

/** SUB/SBB/CMP: result = a − b − borrow; CF = unsigned borrow, OF = signed overflow, AF = borrow from bit 4. */
function sub(a: number, b: number, borrow: number, mask: number, sign: number): number {
  const r = a - b - borrow;
  const res = (r & mask) >>> 0;
  S.rflags =
    (S.rflags & ~STATUS) |
    PARITY[res & 0xff]! |
    (res === 0 ? ZF : 0) |
    ((res & sign) !== 0 ? SF : 0) |
    ((a ^ b ^ res) & AF) |
    (r < 0 ? CF : 0) |
    (((a ^ b) & (a ^ res) & sign) !== 0 ? OF : 0);
  return res;
}

/**
 * AND/OR/XOR/TEST: OF and CF cleared, SF/ZF/PF from the result. AF is undefined per the SDM; this model
 * clears it.
 */
function logic(r: number, mask: number, sign: number): number {
  const res = (r & mask) >>> 0;
  S.rflags =
    (S.rflags & ~STATUS) | PARITY[res & 0xff]! | (res === 0 ? ZF : 0) | ((res & sign) !== 0 ? SF : 0);
  return res;
}

/** INC: like ADD 1, but CF is not affected. */
function inc(a: number, mask: number, sign: number): number {
  const res = ((a + 1) & mask) >>> 0;
  S.rflags =
    (S.rflags & ~(STATUS & ~CF)) |
    PARITY[res & 0xff]! |
    (res === 0 ? ZF : 0) |
    ((res & sign) !== 0 ? SF : 0) |
    ((res & 0xf) === 0 ? AF : 0) |
    (res === sign ? OF : 0);
  return res;
}

/** DEC: like SUB 1, but CF is not affected. */
function dec(a: number, mask: number, sign: number): number {
  const res = ((a - 1) & mask) >>> 0;
  S.rflags =
    (S.rflags & ~(STATUS & ~CF)) |
    PARITY[res & 0xff]! |
    (res === 0 ? ZF : 0) |
    ((res & sign) !== 0 ? SF : 0) |
    ((a & 0xf) === 0 ? AF : 0) |
    (a === sign ? OF : 0);
  return res;
}

/** The eight ALU operations of opcodes 00–3F and group 1 (80/81/83), by their /digit: ADD OR ADC SBB AND SUB XOR CMP. */
function alu(op: number, a: number, b: number, mask: number, sign: number): number {
  switch (op) {
    case 0: return add(a, b, 0, mask, sign);
    case 1: return logic(a | b, mask, sign);
    case 2: return add(a, b, S.rflags & CF, mask, sign);
    case 3: return sub(a, b, S.rflags & CF, mask, sign);
    case 4: return logic(a & b, mask, sign);
    case 6: return logic(a ^ b, mask, sign);
    default: return sub(a, b, 0, mask, sign); // 5 SUB, 7 CMP
  }
}

/** The condition of Jcc/SETcc with condition code `cc` (SDM Vol. 2 Appendix B.1.4.7, Table B-1). */
function cond(cc: number): boolean {
  const f = S.rflags;
  let r: boolean;
  switch (cc >> 1) {
    case 0: r = (f & OF) !== 0; break; // O
    case 1: r = (f & CF) !== 0; break; // B/C
    case 2: r = (f & ZF) !== 0; break; // Z/E
    case 3: r = (f & (CF | ZF)) !== 0; break; // BE
    case 4: r = (f & SF) !== 0; break; // S
    case 5: r = (f & PF) !== 0; break; // P
    case 6: r = ((f >> 7) & 1) !== ((f >> 11) & 1); break; // L: SF ≠ OF
    default: r = (f & ZF) !== 0 || ((f >> 7) & 1) !== ((f >> 11) & 1); break; // LE
  }
  return (cc & 1) === 0 ? r : !r;
}

/**
 * Group 2 shifts and rotates (SDM Vol. 2: RCL/RCR/ROL/ROR, SAL/SAR/SHL/SHR). The count is masked to 5
 * bits; a zero count changes no flags. OF is defined by the SDM only for 1-bit shifts: this model applies
 * the 1-bit formula for every count. AF is undefined after shifts: this model clears it.
 */
function shift(op: number, v: number, count: number, bits: number): number {
  count &= 0x1f;
  if (count === 0) return v;
  const mask = bits === 32 ? 0xffffffff : (1 << bits) - 1;
  const sign = bits === 32 ? 0x80000000 : 1 << (bits - 1);
  const s = S;
  let res: number;
  let cf: number;
  let of: boolean;
  switch (op) {
    case 0: { // ROL
      const c = count % bits;
      res = c === 0 ? v : (((v << c) | (v >>> (bits - c))) & mask) >>> 0;
      cf = res & 1;
      of = ((res & sign) !== 0) !== (cf !== 0);
      s.rflags = (s.rflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 1: { // ROR
      const c = count % bits;
      res = c === 0 ? v : (((v >>> c) | (v << (bits - c))) & mask) >>> 0;
      cf = (res & sign) !== 0 ? 1 : 0;
      of = ((res & sign) !== 0) !== ((res & (sign >>> 1)) !== 0);
      s.rflags = (s.rflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 2: { // RCL
      const c = bits === 32 ? count : count % (bits + 1);
      res = v;
      cf = s.rflags & CF;
      for (let i = 0; i < c; i++) {
        const out = (res & sign) !== 0 ? 1 : 0;
        res = (((res << 1) | cf) & mask) >>> 0;
        cf = out;
      }
      of = ((res & sign) !== 0) !== (cf !== 0);
      s.rflags = (s.rflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 3: { // RCR
      const c = bits === 32 ? count : count % (bits + 1);
      res = v;
      cf = s.rflags & CF;
      of = ((v & sign) !== 0) !== (cf !== 0);
      for (let i = 0; i < c; i++) {
        const out = res & 1;
        res = ((res >>> 1) | (cf !== 0 ? sign : 0)) >>> 0;
        cf = out;
      }
      s.rflags = (s.rflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 5: // SHR
      res = v >>> count;
      cf = (v >>> (count - 1)) & 1;
      of = (v & sign) !== 0;
      break;
    case 7: { // SAR
      const signed = bits === 32 ? v | 0 : bits === 16 ? sext16(v) : sext8(v);
      res = ((signed >> count) & mask) >>> 0;
      cf = (signed >> (count - 1)) & 1;
      of = false;
      break;
    }
    default: // 4 SHL, 6 SAL
      res = ((v << count) & mask) >>> 0;
      cf = count <= bits ? (v >>> (bits - count)) & 1 : 0;
      of = ((res & sign) !== 0) !== (cf !== 0);
      break;
  }
  s.rflags =
    (s.rflags & ~STATUS) |
    PARITY[res & 0xff]! |
    (res === 0 ? ZF : 0) |
    ((res & sign) !== 0 ? SF : 0) |
    cf |
    (of ? OF : 0);
  return res;
}

// ---------------------------------------------------------------------------------------------------------
// Stack (16-bit SP: SS.B is not modelled) and control transfer.

function push16(v: number): void {
  const s = S;
  const sp = ((s.rsp & 0xffff) - 2) & 0xffff;
  s.rsp = s.rsp - (s.rsp & 0xffff) + sp;
  wr16(s.ssBase + sp, v & 0xffff);
}

function push32(v: number): void {
  const s = S;
  const sp = ((s.rsp & 0xffff) - 4) & 0xffff;
  s.rsp = s.rsp - (s.rsp & 0xffff) + sp;
  wr32(s.ssBase + sp, v);
}

function pushV(v: number): void {
  if (o32) push32(v);
  else push16(v);
}

/** Reads the stack `offset` bytes above SP without popping; -1 when an MMIO read must exit first. */
function peek16(offset: number): number {
  const s = S;
  return rd16(s.ssBase + (((s.rsp & 0xffff) + offset) & 0xffff));
}

function peek32(offset: number): number {
  const s = S;
  return rd32(s.ssBase + (((s.rsp & 0xffff) + offset) & 0xffff));
}

function peekV(offset: number): number {
  return o32 ? peek32(offset) : peek16(offset);
}

function addSp(n: number): void {
  const s = S;
  s.rsp = s.rsp - (s.rsp & 0xffff) + (((s.rsp & 0xffff) + n) & 0xffff);
}

/** A near branch target: truncated to 16 bits with a 16-bit operand size (SDM Vol. 2A, JMP/Jcc/CALL). */
function near(target: number): number {
  return o32 ? target >>> 0 : target & 0xffff;
}

/** Real-mode far transfer: CS ← selector (base = selector × 16), IP ← offset. */
function far(selector: number, offset: number): void {
  loadSeg(SEG_CS, selector);
  csBase = S.csBase;
  ip = near(offset);
}

/** POPF/IRET in real mode (SDM Vol. 2B, POPF: CPL 0, all flags writable; VM/VIF/VIP/RF kept for 32-bit). */
function loadFlags(v: number, size32: boolean): void {
  const s = S;
  if (size32) s.rflags = (v & 0x257fd5) | (s.rflags & 0x1a0000) | X86_EFLAGS_FIXED;
  else s.rflags = (s.rflags & ~0xffff) | (v & 0x7fd5) | X86_EFLAGS_FIXED;
}

const DELIVERED = 0;
const ABANDONED = 1;

/**
 * Real-mode interrupt or exception delivery (SDM Vol. 3A §20.1.4): read CS:IP from the IVT entry at
 * IDTR.base + 4·vector, push FLAGS, CS, IP, clear IF, TF and AC. An entry beyond IDTR.limit would raise
 * #GP, then #DF, then triple-fault: the model exits with shutdown straight away.
 */
function interrupt(vector: number, returnIp: number): number {
  const s = S;
  if (vector * 4 + 3 > s.idtLimit) {
    exitKind = GuestExitReason.Shutdown;
    return ABANDONED;
  }
  const entry = s.idtBase + vector * 4;
  const offset = rd16(entry);
  if (offset < 0) return ABANDONED;
  const selector = rd16(entry + 2);
  if (selector < 0) return ABANDONED;
  push16(s.rflags);
  s.rflags &= ~(X86_EFLAGS_IF | X86_EFLAGS_TF | X86_EFLAGS_AC);
  push16(s.csSelector);
  push16(returnIp);
  loadSeg(SEG_CS, selector);
  csBase = s.csBase;
  ip = offset;
  return DELIVERED;
}

// ---------------------------------------------------------------------------------------------------------
// Port I/O exits (arch/x86/kvm/x86.c: kvm_fast_pio, kvm_fast_pio_out, kvm_fast_pio_in).

function pio(direction: number, size: number, port: number, start: number): void {
  const s = S;
  const x = X;
  x.ioDirection = direction;
  x.ioSize = size;
  x.ioPort = port;
  x.ioCount = 1;
  const d = x.data;
  if (direction === GuestIoDirection.Out) {
    const v = s.rax;
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
  exitKind = GuestExitReason.Io;
  if (direction === GuestIoDirection.Out && port === 0x7e && (quirks & GUEST_QUIRK_OUT_7E_INC_RIP) !== 0) {
    // complete_fast_pio_out_port_0x7e: RIP already skipped, nothing left to complete.
    s.pending = GuestPending.None;
    return;
  }
  s.pending = direction === GuestIoDirection.Out ? GuestPending.PioOut : GuestPending.PioIn;
  s.pendingSize = size;
  s.pendingNextRip = ip;
  s.pendingLinearRip = (csBase + start) >>> 0;
  ip = start; // RIP is skipped by the completion on the next run, not before the exit.
}

// ---------------------------------------------------------------------------------------------------------
// Completions (the `complete_userspace_io` callbacks run at the start of the next KVM_RUN).

function linearRip(state: GuestCpuState): number {
  return (state.csBase + state.rip) >>> 0;
}

function littleEndian(bytes: Uint8Array, len: number): number {
  let v = 0;
  for (let i = len - 1; i >= 0; i--) v = v * 256 + (bytes[i] ?? 0);
  return v;
}

/**
 * Completes a port read: like KVM's `complete_fast_pio_in`, loads the first `size` bytes of `data` into
 * AL/AX (merging) or EAX (zero-extending the whole register) and skips the `in` — unless RIP no longer
 * points at it (user space changed RIP), in which case the data is dropped. Returns whether the data was
 * loaded. Does nothing (returns false) when no port read is pending.
 */
export function completeIn(state: GuestCpuState, data: Uint8Array): boolean {
  if (state.pending !== GuestPending.PioIn) return false;
  state.pending = GuestPending.None;
  if (linearRip(state) !== state.pendingLinearRip) return false;
  const size = state.pendingSize;
  const v = littleEndian(data, size);
  if (size === 1) state.rax = state.rax - (state.rax & 0xff) + v;
  else if (size === 2) state.rax = state.rax - (state.rax & 0xffff) + v;
  else state.rax = v;
  state.rip = state.pendingNextRip;
  return true;
}

/**
 * Completes a port write: like KVM's `complete_fast_pio_out`, skips the `out` if RIP still points at it.
 * Returns whether RIP was advanced.
 */
export function completeOut(state: GuestCpuState): boolean {
  if (state.pending !== GuestPending.PioOut) return false;
  state.pending = GuestPending.None;
  if (linearRip(state) !== state.pendingLinearRip) return false;
  state.rip = state.pendingNextRip;
  return true;
}

/**
 * Completes an MMIO read: stores the first `len` bytes of `data` as the value of the pending read, for the
 * re-execution of the instruction on the next run (KVM: `complete_emulated_mmio` then re-emulation with
 * the read cache). Returns false when no MMIO read is pending.
 */
export function completeMmioRead(state: GuestCpuState, data: Uint8Array): boolean {
  if (state.pending !== GuestPending.MmioRead) return false;
  state.pending = GuestPending.None;
  const v = littleEndian(data, state.pendingSize);
  if (state.mmioCacheCount === 0) {
    state.mmioCacheGpa0 = state.pendingGpa;
    state.mmioCacheLen0 = state.pendingSize;
    state.mmioCacheValue0 = v;
    state.mmioCacheCount = 1;
  } else {
    state.mmioCacheGpa1 = state.pendingGpa;
    state.mmioCacheLen1 = state.pendingSize;
    state.mmioCacheValue1 = v;
    state.mmioCacheCount = 2;
  }
  return true;
}

/**
 * Runs whichever completion is pending ({@link completeIn}, {@link completeOut} or
 * {@link completeMmioRead}) with `data` as user space's answer. {@link runGuest} calls this itself, with
 * the exit record's `data`, when a completion is still pending at entry.
 */
export function completePending(state: GuestCpuState, data: Uint8Array): void {
  switch (state.pending) {
    case GuestPending.PioIn: completeIn(state, data); return;
    case GuestPending.PioOut: completeOut(state); return;
    case GuestPending.MmioRead: completeMmioRead(state, data); return;
    default: return;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The run loop.

/**
 * Executes guest code from `state` until an exit or until `budget` instructions have completed.
 *
 * At entry, a completion still owed to the previous exit is run first ({@link completePending} with
 * `exit.data`), so a caller can answer an `in` or MMIO read simply by writing the bytes into `exit.data`.
 * The result is written into `exit` (and returned): `Io`, `Hlt`, `Mmio`, `Shutdown`, `InternalError`, or
 * `Budget` when the budget ran out without an exit — calling again continues exactly where it stopped.
 * A `rep`-prefixed string instruction counts one budget unit per iteration.
 *
 * @param state The vCPU's registers; updated in place.
 * @param memory Guest-physical memory (the VM's memslots). Must not change during the call.
 * @param budget Maximum number of instructions to complete (≥ 0).
 * @param exit Caller-owned exit record, reused across runs.
 * @param quirkMask KVM quirks in effect (`KVM_X86_QUIRK_*` bits); default {@link GUEST_DEFAULT_QUIRKS}.
 */
export function runGuest(
  state: GuestCpuState,
  memory: GuestMemory,
  budget: number,
  exit: GuestExit,
  quirkMask: number = GUEST_DEFAULT_QUIRKS,
): GuestExitReasonValue {
  if (running) throw new UsageError('ERR_INVALID_STATE', 'runGuest: runs cannot nest (called from a GuestMemory callback?)');
  running = true;
  // Pointer stores into module scope cost a write barrier each; skip them when the same vCPU runs again.
  // (The scratch keeps referring to the last run's objects until another run replaces them.)
  if (S !== state) S = state;
  if (M !== memory) M = memory;
  if (X !== exit) X = exit;
  hasLookup = memory.lookup !== undefined;
  quirks = quirkMask;
  // Invalidate the slot caches (memslots may have changed since the last run) without touching pointers.
  cBase = cEnd = dBase = dEnd = wBase = wEnd = 0;
  o32 = a32 = false;
  ovr = -1;
  rep = 0;
  prefixDirty = false;
  exitKind = 0;
  exit.executed = 0;
  let reason: number;
  try {
    if (state.pending !== GuestPending.None) completePending(state, exit.data);
    if (hasLookup) {
      // Prime the code-slot cache so the first instruction can already take the fast path.
      const slot = memory.lookup!(state.csBase + state.rip);
      if (slot !== undefined) {
        if (cBytes !== slot.bytes) cBytes = slot.bytes;
        cBase = slot.base;
        cEnd = slot.end;
      }
    }
    reason = 0;
    let left = budget;
    if (state.mmioCacheCount !== 0 && left > 0) {
      // Re-execute the instruction whose MMIO reads user space has now answered, then drop the cache —
      // unless it needs yet another MMIO read, in which case the cache must survive until that completes.
      reason = execute(1);
      left--;
      if (!(reason === GuestExitReason.Mmio && exit.mmioIsWrite === 0)) state.mmioCacheCount = 0;
    }
    if (reason === 0) reason = execute(left);
    if (reason === 0) reason = GuestExitReason.Budget;
  } catch (e) {
    if (e !== EMULATION_FAILED) throw e;
    emulationFailure(state, exit);
    reason = GuestExitReason.InternalError;
  } finally {
    running = false;
  }
  exit.reason = reason as GuestExitReasonValue;
  return exit.reason;
}

/**
 * Fills an emulation-failure exit the way `prepare_emulation_failure_exit` does: sub-error
 * `KVM_INTERNAL_ERROR_EMULATION`, the bytes of the instruction fetched so far (RIP still points at it),
 * padded to 15 with 0x90.
 */
function emulationFailure(state: GuestCpuState, exit: GuestExit): void {
  const start = state.rip;
  let n = Math.min(Math.max(ip - start, 0), GUEST_MAX_INSN_BYTES);
  exit.insnBytes.fill(0x90);
  const base = state.csBase;
  for (let i = 0; i < n; i++) {
    const b = byteAt(base + start + i);
    if (b < 0) {
      n = i;
      break;
    }
    exit.insnBytes[i] = b;
  }
  exit.suberror = GUEST_INTERNAL_ERROR_EMULATION;
  exit.insnSize = n;
  exit.flags = n > 0 ? GUEST_EMULATION_FLAG_INSTRUCTION_BYTES : 0;
  exit.detail = failDetail;
  state.pending = GuestPending.None;
  state.mmioCacheCount = 0;
}

function readPrefixes(op: number): number {
  const s = S;
  o32 = a32 = false;
  ovr = -1;
  rep = 0;
  prefixDirty = true;
  for (;;) {
    switch (op) {
      case 0x26: ovr = SEG_ES; break;
      case 0x2e: ovr = SEG_CS; break;
      case 0x36: ovr = SEG_SS; break;
      case 0x3e: ovr = SEG_DS; break;
      case 0x64: ovr = SEG_FS; break;
      case 0x65: ovr = SEG_GS; break;
      case 0x66: o32 = true; break;
      case 0x67: a32 = true; break;
      case 0xf0: break; // LOCK: a single interpreter thread is atomic anyway.
      case 0xf2: rep = 2; break;
      case 0xf3: rep = 3; break;
      default: return op;
    }
    if (ip - s.rip >= GUEST_MAX_INSN_BYTES) fail('instruction longer than 15 bytes');
    op = fetch8();
  }
}

/** Raises #UD (vector 6) for an encoding the processor itself rejects; returns false if the IVT read must exit. */
function invalidOpcode(start: number): boolean {
  return interrupt(6, start) === DELIVERED;
}

/**
 * First CS offset of the fast-path window (see {@link execute}), as a small integer so the hot loop does
 * integer rather than floating-point arithmetic; when the window is not representable, an empty window.
 */
function fastLo(s: GuestCpuState): number {
  const lo = cBase - s.csBase;
  const hi = cEnd - s.csBase - 16;
  return lo >= -0x3fffffff && hi <= 0x3fffffff && lo <= hi ? lo | 0 : 1;
}

/** Last CS offset of the fast-path window (see {@link fastLo}). */
function fastHi(s: GuestCpuState): number {
  const lo = cBase - s.csBase;
  const hi = cEnd - s.csBase - 16;
  return lo >= -0x3fffffff && hi <= 0x3fffffff && lo <= hi ? hi | 0 : 0;
}

const STEP_DONE = 0;
const STEP_ABANDONED = 1;

/**
 * Executes up to `limit` instructions; returns the exit reason, or 0 when the limit was reached.
 *
 * The loop first tries a fast path for the most common prefix-free instructions whose bytes lie entirely
 * inside the cached code slot (no per-byte fetch checks, no helper calls that would not be inlined);
 * everything else, and everything near a slot edge, goes through {@link step}.
 */
function execute(limit: number): number {
  const s = S;
  let n = 0;
  // The code slot as seen from CS: offsets [lo, hi] start an instruction that fits entirely (≤ 15 bytes)
  // in the slot. Recomputed after every general-path instruction (which may refill the cache or load CS).
  let b = cBytes;
  let lo = fastLo(s);
  let hi = fastHi(s);
  let rip = s.rip;
  loop: while (n < limit) {
    const start = rip;
    if (start >= lo && start <= hi) {
      const o = start - lo;
      const op = b[o]!;
      switch (op) {
        // The flag arithmetic below is `inc`/`dec`/`add`/`sub` written out by hand: calls from this loop
        // are often not inlined (the compiler's inlining budget is spent), and a call per ALU instruction
        // doubles its cost. The tests run every flag case through both this path and `step`.
        case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: case 0x46: case 0x47: {
          const v = getR16(op & 7);
          const res = (v + 1) & 0xffff;
          setR16(op & 7, res);
          s.rflags =
            (s.rflags & ~(STATUS & ~CF)) |
            PARITY[res & 0xff]! |
            (res === 0 ? ZF : 0) |
            ((res >> 8) & SF) |
            ((res & 0xf) === 0 ? AF : 0) |
            (res === 0x8000 ? OF : 0);
          rip = start + 1;
          n++;
          continue loop;
        }
        case 0x48: case 0x49: case 0x4a: case 0x4b: case 0x4c: case 0x4d: case 0x4e: case 0x4f: {
          const v = getR16(op & 7);
          const res = (v - 1) & 0xffff;
          setR16(op & 7, res);
          s.rflags =
            (s.rflags & ~(STATUS & ~CF)) |
            PARITY[res & 0xff]! |
            (res === 0 ? ZF : 0) |
            ((res >> 8) & SF) |
            ((v & 0xf) === 0 ? AF : 0) |
            (v === 0x8000 ? OF : 0);
          rip = start + 1;
          n++;
          continue loop;
        }
        case 0x70: case 0x71: case 0x72: case 0x73: case 0x74: case 0x75: case 0x76: case 0x77:
        case 0x78: case 0x79: case 0x7a: case 0x7b: case 0x7c: case 0x7d: case 0x7e: case 0x7f:
          rip = cond(op & 0xf) ? (start + 2 + ((b[o + 1]! << 24) >> 24)) & 0xffff : start + 2;
          n++;
          continue loop;
        case 0xeb:
          rip = (start + 2 + ((b[o + 1]! << 24) >> 24)) & 0xffff;
          n++;
          continue loop;
        case 0xe9:
          rip = (start + 3 + (b[o + 1]! | (b[o + 2]! << 8))) & 0xffff;
          n++;
          continue loop;
        case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
          setR8(op & 7, b[o + 1]!);
          rip = start + 2;
          n++;
          continue loop;
        case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf:
          setR16(op & 7, b[o + 1]! | (b[o + 2]! << 8));
          rip = start + 3;
          n++;
          continue loop;
        case 0x04: { // ADD AL, imm8
          const a = s.rax & 0xff;
          const c = b[o + 1]!;
          const r = a + c;
          const res = r & 0xff;
          s.rax = s.rax - a + res;
          s.rflags =
            (s.rflags & ~STATUS) |
            PARITY[res]! |
            (res === 0 ? ZF : 0) |
            (res & SF) |
            ((a ^ c ^ res) & AF) |
            (r >> 8) |
            ((((a ^ res) & (c ^ res)) << 4) & OF);
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x2c: case 0x3c: { // SUB / CMP AL, imm8
          const a = s.rax & 0xff;
          const c = b[o + 1]!;
          const r = a - c;
          const res = r & 0xff;
          if (op === 0x2c) s.rax = s.rax - a + res;
          s.rflags =
            (s.rflags & ~STATUS) |
            PARITY[res]! |
            (res === 0 ? ZF : 0) |
            (res & SF) |
            ((a ^ c ^ res) & AF) |
            (r < 0 ? CF : 0) |
            ((((a ^ c) & (a ^ res)) << 4) & OF);
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x0c: case 0x14: case 0x1c: case 0x24: case 0x34: {
          const r = alu(op >> 3, s.rax & 0xff, b[o + 1]!, 0xff, 0x80);
          s.rax = s.rax - (s.rax & 0xff) + r;
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x05: { // ADD AX, imm16
          const a = s.rax & 0xffff;
          const c = b[o + 1]! | (b[o + 2]! << 8);
          const r = a + c;
          const res = r & 0xffff;
          s.rax = s.rax - a + res;
          s.rflags =
            (s.rflags & ~STATUS) |
            PARITY[res & 0xff]! |
            (res === 0 ? ZF : 0) |
            ((res >> 8) & SF) |
            ((a ^ c ^ res) & AF) |
            (r >> 16) |
            ((((a ^ res) & (c ^ res)) >> 4) & OF);
          rip = start + 3;
          n++;
          continue loop;
        }
        case 0x2d: case 0x3d: { // SUB / CMP AX, imm16
          const a = s.rax & 0xffff;
          const c = b[o + 1]! | (b[o + 2]! << 8);
          const r = a - c;
          const res = r & 0xffff;
          if (op === 0x2d) s.rax = s.rax - a + res;
          s.rflags =
            (s.rflags & ~STATUS) |
            PARITY[res & 0xff]! |
            (res === 0 ? ZF : 0) |
            ((res >> 8) & SF) |
            ((a ^ c ^ res) & AF) |
            (r < 0 ? CF : 0) |
            ((((a ^ c) & (a ^ res)) >> 4) & OF);
          rip = start + 3;
          n++;
          continue loop;
        }
        case 0x0d: case 0x15: case 0x1d: case 0x25: case 0x35: {
          const r = alu(op >> 3, s.rax & 0xffff, b[o + 1]! | (b[o + 2]! << 8), 0xffff, 0x8000);
          s.rax = s.rax - (s.rax & 0xffff) + r;
          rip = start + 3;
          n++;
          continue loop;
        }
        case 0x00: case 0x08: case 0x10: case 0x18: case 0x20: case 0x28: case 0x30: case 0x38:
        case 0x02: case 0x0a: case 0x12: case 0x1a: case 0x22: case 0x2a: case 0x32: case 0x3a: {
          const m = b[o + 1]!;
          if (m < 0xc0) break; // memory operand: general path
          const rm = m & 7;
          const reg = (m >> 3) & 7;
          if ((op & 2) === 0) {
            const r = alu(op >> 3, getR8(rm), getR8(reg), 0xff, 0x80);
            if (op !== 0x38) setR8(rm, r);
          } else {
            const r = alu(op >> 3, getR8(reg), getR8(rm), 0xff, 0x80);
            if (op !== 0x3a) setR8(reg, r);
          }
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x01: case 0x09: case 0x11: case 0x19: case 0x21: case 0x29: case 0x31: case 0x39:
        case 0x03: case 0x0b: case 0x13: case 0x1b: case 0x23: case 0x2b: case 0x33: case 0x3b: {
          const m = b[o + 1]!;
          if (m < 0xc0) break;
          const rm = m & 7;
          const reg = (m >> 3) & 7;
          if ((op & 2) === 0) {
            const r = alu(op >> 3, getR16(rm), getR16(reg), 0xffff, 0x8000);
            if (op !== 0x39) setR16(rm, r);
          } else {
            const r = alu(op >> 3, getR16(reg), getR16(rm), 0xffff, 0x8000);
            if (op !== 0x3b) setR16(reg, r);
          }
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x88: case 0x8a: {
          const m = b[o + 1]!;
          if (m < 0xc0) break;
          if (op === 0x88) setR8(m & 7, getR8((m >> 3) & 7));
          else setR8((m >> 3) & 7, getR8(m & 7));
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x89: case 0x8b: {
          const m = b[o + 1]!;
          if (m < 0xc0) break;
          if (op === 0x89) setR16(m & 7, getR16((m >> 3) & 7));
          else setR16((m >> 3) & 7, getR16(m & 7));
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x90:
          rip = start + 1;
          n++;
          continue loop;
        case 0xee: case 0xec: // OUT DX, AL / IN AL, DX
          csBase = s.csBase;
          ip = start + 1;
          pio(op === 0xee ? GuestIoDirection.Out : GuestIoDirection.In, 1, s.rdx & 0xffff, start);
          rip = ip;
          n++;
          break loop;
        case 0xf4: // HLT
          exitKind = GuestExitReason.Hlt;
          rip = start + 1;
          n++;
          break loop;
        default:
          break;
      }
    }
    s.rip = start;
    let done: boolean;
    try {
      done = step(start) === STEP_DONE;
    } catch (e) {
      X.executed += n; // the instructions before the failing one did complete
      throw e;
    }
    rip = s.rip;
    if (!done) break;
    n++;
    if (exitKind !== 0) break;
    b = cBytes;
    lo = fastLo(s);
    hi = fastHi(s);
  }
  s.rip = rip;
  X.executed += n;
  return exitKind;
}

/**
 * Decodes and executes the one instruction at `start` through the general decoder (all prefixes, all
 * implemented opcodes, fetches that may cross slots). Commits RIP and returns STEP_DONE — with `exitKind`
 * set if the instruction exits — or returns STEP_ABANDONED, committing nothing, when an MMIO read (or a
 * shutdown) must happen first.
 */
function step(start: number): number {
  const s = S;
  csBase = s.csBase;
  ip = start;
  let op = fetch8();
  if (PREFIX[op] !== 0) op = readPrefixes(op);
  else if (prefixDirty) {
    o32 = a32 = false;
    ovr = -1;
    rep = 0;
    prefixDirty = false;
  }

  switch (op) {
    // ---- ALU: 00–3D (r/m,r; r,r/m; AL/AX,imm) ---------------------------------------------------------
    case 0x00: case 0x08: case 0x10: case 0x18: case 0x20: case 0x28: case 0x30: case 0x38: {
      const m = fetch8();
      const a = readRm8(m);
      if (a < 0) return STEP_ABANDONED;
      const r = alu(op >> 3, a, getR8((m >> 3) & 7), 0xff, 0x80);
      if (op !== 0x38) writeRm8(m, r);
      break;
    }
    case 0x01: case 0x09: case 0x11: case 0x19: case 0x21: case 0x29: case 0x31: case 0x39: {
      const m = fetch8();
      const a = readRmV(m);
      if (a < 0) return STEP_ABANDONED;
      const r = alu(op >> 3, a, getRv((m >> 3) & 7), o32 ? 0xffffffff : 0xffff, o32 ? 0x80000000 : 0x8000);
      if (op !== 0x39) writeRmV(m, r);
      break;
    }
    case 0x02: case 0x0a: case 0x12: case 0x1a: case 0x22: case 0x2a: case 0x32: case 0x3a: {
      const m = fetch8();
      const b = readRm8(m);
      if (b < 0) return STEP_ABANDONED;
      const reg = (m >> 3) & 7;
      const r = alu(op >> 3, getR8(reg), b, 0xff, 0x80);
      if (op !== 0x3a) setR8(reg, r);
      break;
    }
    case 0x03: case 0x0b: case 0x13: case 0x1b: case 0x23: case 0x2b: case 0x33: case 0x3b: {
      const m = fetch8();
      const b = readRmV(m);
      if (b < 0) return STEP_ABANDONED;
      const reg = (m >> 3) & 7;
      const r = alu(op >> 3, getRv(reg), b, o32 ? 0xffffffff : 0xffff, o32 ? 0x80000000 : 0x8000);
      if (op !== 0x3b) setRv(reg, r);
      break;
    }
    case 0x04: case 0x0c: case 0x14: case 0x1c: case 0x24: case 0x2c: case 0x34: case 0x3c: {
      const r = alu(op >> 3, s.rax & 0xff, fetch8(), 0xff, 0x80);
      if (op !== 0x3c) s.rax = s.rax - (s.rax & 0xff) + r;
      break;
    }
    case 0x05: case 0x0d: case 0x15: case 0x1d: case 0x25: case 0x2d: case 0x35: case 0x3d: {
      if (o32) {
        const r = alu(op >> 3, s.rax >>> 0, fetch32(), 0xffffffff, 0x80000000);
        if (op !== 0x3d) s.rax = r;
      } else {
        const r = alu(op >> 3, s.rax & 0xffff, fetch16(), 0xffff, 0x8000);
        if (op !== 0x3d) s.rax = s.rax - (s.rax & 0xffff) + r;
      }
      break;
    }

    // ---- Segment register push/pop -------------------------------------------------------------------
    case 0x06: pushV(s.esSelector); break;
    case 0x0e: pushV(s.csSelector); break;
    case 0x16: pushV(s.ssSelector); break;
    case 0x1e: pushV(s.dsSelector); break;
    case 0x07: case 0x17: case 0x1f: {
      const v = peekV(0);
      if (v < 0) return STEP_ABANDONED;
      addSp(o32 ? 4 : 2);
      loadSeg(op === 0x07 ? SEG_ES : op === 0x17 ? SEG_SS : SEG_DS, v);
      break;
    }

    // ---- INC/DEC r16 (40–4F) -------------------------------------------------------------------------
    case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: case 0x46: case 0x47:
      if (o32) setR32(op & 7, inc(getR32(op & 7), 0xffffffff, 0x80000000));
      else setR16(op & 7, inc(getR16(op & 7), 0xffff, 0x8000));
      break;
    case 0x48: case 0x49: case 0x4a: case 0x4b: case 0x4c: case 0x4d: case 0x4e: case 0x4f:
      if (o32) setR32(op & 7, dec(getR32(op & 7), 0xffffffff, 0x80000000));
      else setR16(op & 7, dec(getR16(op & 7), 0xffff, 0x8000));
      break;

    // ---- PUSH/POP r16 (50–5F) ------------------------------------------------------------------------
    case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: case 0x57:
      pushV(getRv(op & 7)); // PUSH SP pushes the value before the decrement (286 and later).
      break;
    case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e: case 0x5f: {
      const v = peekV(0);
      if (v < 0) return STEP_ABANDONED;
      addSp(o32 ? 4 : 2);
      setRv(op & 7, v); // POP SP: SP gets the popped value.
      break;
    }
    case 0x60: { // PUSHA/PUSHAD
      const sp = getRv(4);
      const ax = getRv(0), cx = getRv(1), dx = getRv(2), bx = getRv(3), bp = getRv(5), si = getRv(6), di = getRv(7);
      pushV(ax); pushV(cx); pushV(dx); pushV(bx); pushV(sp); pushV(bp); pushV(si); pushV(di);
      break;
    }
    case 0x61: { // POPA/POPAD (the saved SP is discarded)
      const w = o32 ? 4 : 2;
      const di = peekV(0); if (di < 0) return STEP_ABANDONED;
      const si = peekV(w); if (si < 0) return STEP_ABANDONED;
      const bp = peekV(2 * w); if (bp < 0) return STEP_ABANDONED;
      const bx = peekV(4 * w); if (bx < 0) return STEP_ABANDONED;
      const dx = peekV(5 * w); if (dx < 0) return STEP_ABANDONED;
      const cx = peekV(6 * w); if (cx < 0) return STEP_ABANDONED;
      const ax = peekV(7 * w); if (ax < 0) return STEP_ABANDONED;
      setRv(7, di); setRv(6, si); setRv(5, bp); setRv(3, bx); setRv(2, dx); setRv(1, cx); setRv(0, ax);
      addSp(8 * w);
      break;
    }
    case 0x68: pushV(fetchV()); break;
    case 0x6a: pushV(o32 ? sext8(fetch8()) >>> 0 : sext8(fetch8()) & 0xffff); break;

    // ---- IMUL r, r/m, imm (69, 6B) -------------------------------------------------------------------
    case 0x69: case 0x6b: {
      const m = fetch8();
      const a = readRmV(m);
      if (a < 0) return STEP_ABANDONED;
      const b = op === 0x6b ? sext8(fetch8()) : o32 ? fetch32() | 0 : sext16(fetch16());
      setRv((m >> 3) & 7, imul2(a, b));
      break;
    }

    // ---- Jcc rel8 (70–7F) ----------------------------------------------------------------------------
    case 0x70: case 0x71: case 0x72: case 0x73: case 0x74: case 0x75: case 0x76: case 0x77:
    case 0x78: case 0x79: case 0x7a: case 0x7b: case 0x7c: case 0x7d: case 0x7e: case 0x7f: {
      const d = sext8(fetch8());
      if (cond(op & 0xf)) ip = near(ip + d);
      break;
    }

    // ---- Group 1: ALU r/m, imm (80, 81, 82, 83) ------------------------------------------------------
    case 0x80: case 0x82: {
      const m = fetch8();
      const a = readRm8(m);
      if (a < 0) return STEP_ABANDONED;
      const sub3 = (m >> 3) & 7;
      const r = alu(sub3, a, fetch8(), 0xff, 0x80);
      if (sub3 !== 7) writeRm8(m, r);
      break;
    }
    case 0x81: case 0x83: {
      const m = fetch8();
      const a = readRmV(m);
      if (a < 0) return STEP_ABANDONED;
      const sub3 = (m >> 3) & 7;
      const mask = o32 ? 0xffffffff : 0xffff;
      const b = op === 0x83 ? (sext8(fetch8()) & mask) >>> 0 : fetchV();
      const r = alu(sub3, a, b, mask, o32 ? 0x80000000 : 0x8000);
      if (sub3 !== 7) writeRmV(m, r);
      break;
    }

    // ---- TEST, XCHG ----------------------------------------------------------------------------------
    case 0x84: {
      const m = fetch8();
      const a = readRm8(m);
      if (a < 0) return STEP_ABANDONED;
      logic(a & getR8((m >> 3) & 7), 0xff, 0x80);
      break;
    }
    case 0x85: {
      const m = fetch8();
      const a = readRmV(m);
      if (a < 0) return STEP_ABANDONED;
      logic(a & getRv((m >> 3) & 7), o32 ? 0xffffffff : 0xffff, o32 ? 0x80000000 : 0x8000);
      break;
    }
    case 0x86: {
      const m = fetch8();
      const a = readRm8(m);
      if (a < 0) return STEP_ABANDONED;
      const reg = (m >> 3) & 7;
      const b = getR8(reg);
      writeRm8(m, b);
      setR8(reg, a);
      break;
    }
    case 0x87: {
      const m = fetch8();
      const a = readRmV(m);
      if (a < 0) return STEP_ABANDONED;
      const reg = (m >> 3) & 7;
      const b = getRv(reg);
      writeRmV(m, b);
      setRv(reg, a);
      break;
    }

    // ---- MOV (88–8E) ---------------------------------------------------------------------------------
    case 0x88: {
      const m = fetch8();
      if (m < 0xc0) eaLin = rmAddr(m);
      writeRm8(m, getR8((m >> 3) & 7));
      break;
    }
    case 0x89: {
      const m = fetch8();
      if (m < 0xc0) eaLin = rmAddr(m);
      writeRmV(m, getRv((m >> 3) & 7));
      break;
    }
    case 0x8a: {
      const m = fetch8();
      const v = readRm8(m);
      if (v < 0) return STEP_ABANDONED;
      setR8((m >> 3) & 7, v);
      break;
    }
    case 0x8b: {
      const m = fetch8();
      const v = readRmV(m);
      if (v < 0) return STEP_ABANDONED;
      setRv((m >> 3) & 7, v);
      break;
    }
    case 0x8c: { // MOV r/m16, Sreg
      const m = fetch8();
      const seg = (m >> 3) & 7;
      if (seg > SEG_GS) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      if (m >= 0xc0) setRv(m & 7, selectorOf(seg)); // 32-bit register destination: zero-extended.
      else wr16(rmAddr(m), selectorOf(seg));
      break;
    }
    case 0x8d: { // LEA
      const m = fetch8();
      if (m >= 0xc0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      rmAddr(m);
      setRv((m >> 3) & 7, o32 ? eaOff : eaOff & 0xffff);
      break;
    }
    case 0x8e: { // MOV Sreg, r/m16 (real mode: base = selector << 4)
      const m = fetch8();
      const seg = (m >> 3) & 7;
      if (seg === SEG_CS || seg > SEG_GS) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      let v: number;
      if (m >= 0xc0) v = getR16(m & 7);
      else {
        v = rd16(rmAddr(m));
        if (v < 0) return STEP_ABANDONED;
      }
      loadSeg(seg, v);
      break;
    }
    case 0x8f: { // POP r/m
      const m = fetch8();
      if ((m & 0x38) !== 0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      const v = peekV(0);
      if (v < 0) return STEP_ABANDONED;
      if (m < 0xc0) eaLin = rmAddr(m);
      addSp(o32 ? 4 : 2);
      if (m < 0xc0 && eaUsesSp && a32) eaLin += o32 ? 4 : 2; // address computed after the pop
      writeRmV(m, v);
      break;
    }

    // ---- NOP / XCHG AX, r ----------------------------------------------------------------------------
    case 0x90: break; // also PAUSE (F3 90)
    case 0x91: case 0x92: case 0x93: case 0x94: case 0x95: case 0x96: case 0x97: {
      const a = getRv(0);
      setRv(0, getRv(op & 7));
      setRv(op & 7, a);
      break;
    }
    case 0x98: // CBW / CWDE
      if (o32) s.rax = sext16(s.rax & 0xffff) >>> 0;
      else s.rax = s.rax - (s.rax & 0xffff) + (sext8(s.rax & 0xff) & 0xffff);
      break;
    case 0x99: // CWD / CDQ
      if (o32) s.rdx = (s.rax & 0x80000000) !== 0 ? 0xffffffff : 0;
      else s.rdx = s.rdx - (s.rdx & 0xffff) + ((s.rax & 0x8000) !== 0 ? 0xffff : 0);
      break;
    case 0x9a: { // CALL ptr16:16
      const offset = fetchV();
      const selector = fetch16();
      pushV(s.csSelector);
      pushV(ip);
      far(selector, offset);
      break;
    }
    case 0x9b: break; // WAIT/FWAIT: no x87 exceptions pending.
    case 0x9c: pushV(o32 ? s.rflags & 0x00fcffff : s.rflags & 0xffff); break; // PUSHF
    case 0x9d: { // POPF
      const v = peekV(0);
      if (v < 0) return STEP_ABANDONED;
      addSp(o32 ? 4 : 2);
      loadFlags(v, o32);
      break;
    }
    case 0x9e: // SAHF
      s.rflags = (s.rflags & ~(SF | ZF | AF | PF | CF)) | ((s.rax >> 8) & (SF | ZF | AF | PF | CF));
      break;
    case 0x9f: // LAHF
      s.rax = s.rax - (s.rax & 0xff00) + (((s.rflags & (SF | ZF | AF | PF | CF)) | X86_EFLAGS_FIXED) << 8);
      break;

    // ---- MOV AL/AX, moffs (A0–A3) --------------------------------------------------------------------
    case 0xa0: case 0xa1: case 0xa2: case 0xa3: {
      const off = a32 ? fetch32() : fetch16();
      const lin = segBase(false) + off;
      if (op === 0xa0) {
        const v = rd8(lin);
        if (v < 0) return STEP_ABANDONED;
        s.rax = s.rax - (s.rax & 0xff) + v;
      } else if (op === 0xa1) {
        const v = rdV(lin);
        if (v < 0) return STEP_ABANDONED;
        setRv(0, v);
      } else if (op === 0xa2) wr8(lin, s.rax & 0xff);
      else wrV(lin, getRv(0));
      break;
    }

    // ---- String instructions (A4–A7, AA–AF) ----------------------------------------------------------
    case 0xa4: case 0xa5: case 0xa6: case 0xa7: case 0xaa: case 0xab: case 0xac: case 0xad: case 0xae: case 0xaf: {
      if (!stringOp(op, start)) return STEP_ABANDONED;
      break;
    }
    case 0xa8: logic((s.rax & 0xff) & fetch8(), 0xff, 0x80); break; // TEST AL, imm8
    case 0xa9: // TEST AX, imm16
      if (o32) logic((s.rax >>> 0) & fetch32(), 0xffffffff, 0x80000000);
      else logic(s.rax & 0xffff & fetch16(), 0xffff, 0x8000);
      break;

    // ---- MOV r, imm (B0–BF) --------------------------------------------------------------------------
    case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
      setR8(op & 7, fetch8());
      break;
    case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf:
      if (o32) setR32(op & 7, fetch32());
      else setR16(op & 7, fetch16());
      break;

    // ---- Group 2: shifts/rotates (C0, C1, D0–D3) -----------------------------------------------------
    case 0xc0: case 0xd0: case 0xd2: {
      const m = fetch8();
      const v = readRm8(m);
      if (v < 0) return STEP_ABANDONED;
      const count = op === 0xc0 ? fetch8() : op === 0xd0 ? 1 : s.rcx & 0xff;
      writeRm8(m, shift((m >> 3) & 7, v, count, 8));
      break;
    }
    case 0xc1: case 0xd1: case 0xd3: {
      const m = fetch8();
      const v = readRmV(m);
      if (v < 0) return STEP_ABANDONED;
      const count = op === 0xc1 ? fetch8() : op === 0xd1 ? 1 : s.rcx & 0xff;
      writeRmV(m, shift((m >> 3) & 7, v, count, o32 ? 32 : 16));
      break;
    }

    // ---- RET / RETF / LES / LDS / MOV r/m, imm / LEAVE -----------------------------------------------
    case 0xc2: case 0xc3: { // RET [imm16]
      const extra = op === 0xc2 ? fetch16() : 0;
      const v = peekV(0);
      if (v < 0) return STEP_ABANDONED;
      addSp((o32 ? 4 : 2) + extra);
      ip = near(v);
      break;
    }
    case 0xc4: case 0xc5: { // LES / LDS
      const m = fetch8();
      if (m >= 0xc0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      const lin = rmAddr(m);
      const off = rdV(lin);
      if (off < 0) return STEP_ABANDONED;
      const sel = rd16(lin + (o32 ? 4 : 2));
      if (sel < 0) return STEP_ABANDONED;
      setRv((m >> 3) & 7, off);
      loadSeg(op === 0xc4 ? SEG_ES : SEG_DS, sel);
      break;
    }
    case 0xc6: {
      const m = fetch8();
      if ((m & 0x38) !== 0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      if (m < 0xc0) eaLin = rmAddr(m);
      writeRm8(m, fetch8());
      break;
    }
    case 0xc7: {
      const m = fetch8();
      if ((m & 0x38) !== 0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      if (m < 0xc0) eaLin = rmAddr(m);
      writeRmV(m, fetchV());
      break;
    }
    case 0xc9: { // LEAVE
      const bp = getR16(5);
      const v = o32 ? rd32(s.ssBase + bp) : rd16(s.ssBase + bp);
      if (v < 0) return STEP_ABANDONED;
      setR16(4, (bp + (o32 ? 4 : 2)) & 0xffff);
      setRv(5, v);
      break;
    }
    case 0xca: case 0xcb: { // RETF [imm16]
      const extra = op === 0xca ? fetch16() : 0;
      const w = o32 ? 4 : 2;
      const off = peekV(0);
      if (off < 0) return STEP_ABANDONED;
      const sel = peek16(w);
      if (sel < 0) return STEP_ABANDONED;
      addSp(2 * w + extra);
      far(sel, off);
      break;
    }

    // ---- INT / IRET ----------------------------------------------------------------------------------
    case 0xcc: if (interrupt(3, ip) !== DELIVERED) return STEP_ABANDONED; break;
    case 0xcd: {
      const vector = fetch8();
      if (interrupt(vector, ip) !== DELIVERED) return STEP_ABANDONED;
      break;
    }
    case 0xcf: {
      const w = o32 ? 4 : 2;
      const off = peekV(0);
      if (off < 0) return STEP_ABANDONED;
      const sel = peekV(w);
      if (sel < 0) return STEP_ABANDONED;
      const fl = peekV(2 * w);
      if (fl < 0) return STEP_ABANDONED;
      addSp(3 * w);
      far(sel & 0xffff, off);
      loadFlags(fl, o32);
      break;
    }

    case 0xd7: { // XLAT
      const lin = segBase(false) + (a32 ? ((s.rbx >>> 0) + (s.rax & 0xff)) >>> 0 : ((s.rbx & 0xffff) + (s.rax & 0xff)) & 0xffff);
      const v = rd8(lin);
      if (v < 0) return STEP_ABANDONED;
      s.rax = s.rax - (s.rax & 0xff) + v;
      break;
    }

    // ---- LOOP / JCXZ (E0–E3) -------------------------------------------------------------------------
    case 0xe0: case 0xe1: case 0xe2: case 0xe3: {
      const d = sext8(fetch8());
      let count: number;
      if (op === 0xe3) count = a32 ? s.rcx >>> 0 : s.rcx & 0xffff;
      else if (a32) s.rcx = count = ((s.rcx >>> 0) - 1) >>> 0;
      else {
        count = ((s.rcx & 0xffff) - 1) & 0xffff;
        s.rcx = s.rcx - (s.rcx & 0xffff) + count;
      }
      const zf = (s.rflags & ZF) !== 0;
      const taken =
        op === 0xe3 ? count === 0 : op === 0xe2 ? count !== 0 : op === 0xe1 ? count !== 0 && zf : count !== 0 && !zf;
      if (taken) ip = near(ip + d);
      break;
    }

    // ---- IN / OUT ------------------------------------------------------------------------------------
    case 0xe4: { const port = fetch8(); pio(GuestIoDirection.In, 1, port, start); break; }
    case 0xe5: { const port = fetch8(); pio(GuestIoDirection.In, o32 ? 4 : 2, port, start); break; }
    case 0xe6: { const port = fetch8(); pio(GuestIoDirection.Out, 1, port, start); break; }
    case 0xe7: { const port = fetch8(); pio(GuestIoDirection.Out, o32 ? 4 : 2, port, start); break; }
    case 0xec: pio(GuestIoDirection.In, 1, s.rdx & 0xffff, start); break;
    case 0xed: pio(GuestIoDirection.In, o32 ? 4 : 2, s.rdx & 0xffff, start); break;
    case 0xee: pio(GuestIoDirection.Out, 1, s.rdx & 0xffff, start); break;
    case 0xef: pio(GuestIoDirection.Out, o32 ? 4 : 2, s.rdx & 0xffff, start); break;

    // ---- CALL / JMP ----------------------------------------------------------------------------------
    case 0xe8: {
      const d = o32 ? fetch32() : fetch16();
      pushV(ip);
      ip = near(ip + d);
      break;
    }
    case 0xe9: {
      const d = o32 ? fetch32() : fetch16();
      ip = near(ip + d);
      break;
    }
    case 0xea: {
      const offset = fetchV();
      far(fetch16(), offset);
      break;
    }
    case 0xeb: {
      const d = sext8(fetch8());
      ip = near(ip + d);
      break;
    }

    // ---- HLT, flag instructions ----------------------------------------------------------------------
    case 0xf4: // kvm_emulate_halt: skip the instruction, then exit with KVM_EXIT_HLT.
      exitKind = GuestExitReason.Hlt;
      break;
    case 0xf5: s.rflags ^= CF; break; // CMC
    case 0xf8: s.rflags &= ~CF; break; // CLC
    case 0xf9: s.rflags |= CF; break; // STC
    case 0xfa: s.rflags &= ~X86_EFLAGS_IF; break; // CLI (CPL 0)
    case 0xfb: s.rflags |= X86_EFLAGS_IF; break; // STI
    case 0xfc: s.rflags &= ~DF; break; // CLD
    case 0xfd: s.rflags |= DF; break; // STD

    // ---- Group 3 (F6, F7) ----------------------------------------------------------------------------
    case 0xf6: case 0xf7: {
      const r = group3(op === 0xf6 ? 8 : o32 ? 32 : 16, start);
      if (r !== DELIVERED) return STEP_ABANDONED;
      break;
    }

    // ---- Group 4 (FE) and 5 (FF) ---------------------------------------------------------------------
    case 0xfe: {
      const m = fetch8();
      const sub3 = (m >> 3) & 7;
      if (sub3 > 1) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      const v = readRm8(m);
      if (v < 0) return STEP_ABANDONED;
      writeRm8(m, sub3 === 0 ? inc(v, 0xff, 0x80) : dec(v, 0xff, 0x80));
      break;
    }
    case 0xff: {
      const m = fetch8();
      const sub3 = (m >> 3) & 7;
      if (sub3 === 7 || ((sub3 === 3 || sub3 === 5) && m >= 0xc0)) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      const v = readRmV(m);
      if (v < 0) return STEP_ABANDONED;
      switch (sub3) {
        case 0: writeRmV(m, o32 ? inc(v, 0xffffffff, 0x80000000) : inc(v, 0xffff, 0x8000)); break;
        case 1: writeRmV(m, o32 ? dec(v, 0xffffffff, 0x80000000) : dec(v, 0xffff, 0x8000)); break;
        case 2: pushV(ip); ip = near(v); break; // CALL r/m
        case 4: ip = near(v); break; // JMP r/m
        case 6: pushV(v); break; // PUSH r/m
        default: { // 3 CALL m16:16, 5 JMP m16:16
          const sel = rd16(eaLin + (o32 ? 4 : 2));
          if (sel < 0) return STEP_ABANDONED;
          if (sub3 === 3) {
            pushV(s.csSelector);
            pushV(ip);
          }
          far(sel, v);
          break;
        }
      }
      break;
    }

    // ---- Two-byte opcodes ----------------------------------------------------------------------------
    case 0x0f: {
      const r = twoByte(start);
      if (r !== DELIVERED) return STEP_ABANDONED;
      break;
    }

    default:
      fail('opcode not implemented by the guest interpreter');
  }

  s.rip = ip;
  return STEP_DONE;
}

/** IMUL with two operands: truncated product, CF = OF = the product did not fit (SDM Vol. 2A, IMUL). */
function imul2(a: number, b: number): number {
  const s = S;
  let res: number;
  let overflow: boolean;
  if (o32) {
    const sa = a | 0;
    const sb = b | 0;
    res = Math.imul(sa, sb);
    overflow = sa * sb !== res; // exact below 2^53; larger products differ from any int32 anyway
    res >>>= 0;
  } else {
    const p = sext16(a) * sext16(b);
    res = p & 0xffff;
    overflow = p !== sext16(res);
  }
  s.rflags = (s.rflags & ~(CF | OF)) | (overflow ? CF | OF : 0);
  return res;
}

/**
 * Group 3: TEST/NOT/NEG/MUL/IMUL/DIV/IDIV r/m (SDM Vol. 2). For MUL/IMUL only CF and OF are defined, and
 * for DIV/IDIV no flag is: the model leaves the undefined flags unchanged. A divide error raises #DE
 * (vector 0) with the faulting instruction's IP.
 */
function group3(bits: number, start: number): number {
  const s = S;
  const m = fetch8();
  const sub3 = (m >> 3) & 7;
  if (sub3 === 1) return invalidOpcode(start) ? DELIVERED : ABANDONED;
  const mask = bits === 8 ? 0xff : bits === 16 ? 0xffff : 0xffffffff;
  const sign = bits === 8 ? 0x80 : bits === 16 ? 0x8000 : 0x80000000;
  const v = bits === 8 ? readRm8(m) : readRmV(m);
  if (v < 0) return ABANDONED;
  switch (sub3) {
    case 0: { // TEST r/m, imm
      const imm = bits === 8 ? fetch8() : fetchV();
      logic(v & imm, mask, sign);
      return DELIVERED;
    }
    case 2: // NOT: no flags
    case 3: { // NEG: CF = (operand ≠ 0), other flags as 0 − operand
      const r = sub3 === 2 ? (~v & mask) >>> 0 : sub(0, v, 0, mask, sign);
      if (bits === 8) writeRm8(m, r);
      else writeRmV(m, r);
      return DELIVERED;
    }
    case 4: { // MUL
      let hi: number;
      if (bits === 8) {
        const p = (s.rax & 0xff) * v;
        s.rax = s.rax - (s.rax & 0xffff) + p;
        hi = p >> 8;
      } else if (bits === 16) {
        const p = (s.rax & 0xffff) * v;
        hi = p >>> 16;
        s.rax = s.rax - (s.rax & 0xffff) + (p & 0xffff);
        s.rdx = s.rdx - (s.rdx & 0xffff) + hi;
      } else {
        const p = BigInt(s.rax >>> 0) * BigInt(v);
        hi = Number(p >> 32n);
        s.rax = Number(p & 0xffffffffn);
        s.rdx = hi;
      }
      s.rflags = (s.rflags & ~(CF | OF)) | (hi !== 0 ? CF | OF : 0);
      return DELIVERED;
    }
    case 5: { // IMUL (one operand)
      let overflow: boolean;
      if (bits === 8) {
        const p = sext8(s.rax & 0xff) * sext8(v);
        s.rax = s.rax - (s.rax & 0xffff) + (p & 0xffff);
        overflow = p !== sext8(p & 0xff);
      } else if (bits === 16) {
        const p = sext16(s.rax & 0xffff) * sext16(v);
        s.rax = s.rax - (s.rax & 0xffff) + (p & 0xffff);
        s.rdx = s.rdx - (s.rdx & 0xffff) + ((p >> 16) & 0xffff);
        overflow = p !== sext16(p & 0xffff);
      } else {
        const p = BigInt(s.rax | 0) * BigInt(v | 0);
        const u = BigInt.asUintN(64, p);
        s.rax = Number(u & 0xffffffffn);
        s.rdx = Number(u >> 32n);
        overflow = p !== BigInt(s.rax | 0);
      }
      s.rflags = (s.rflags & ~(CF | OF)) | (overflow ? CF | OF : 0);
      return DELIVERED;
    }
    case 6: { // DIV
      if (v === 0) return interrupt(0, start);
      if (bits === 8) {
        const d = s.rax & 0xffff;
        const q = Math.floor(d / v);
        if (q > 0xff) return interrupt(0, start);
        s.rax = s.rax - (s.rax & 0xffff) + (((d % v) << 8) | q);
      } else if (bits === 16) {
        const d = (s.rdx & 0xffff) * 0x10000 + (s.rax & 0xffff);
        const q = Math.floor(d / v);
        if (q > 0xffff) return interrupt(0, start);
        s.rax = s.rax - (s.rax & 0xffff) + q;
        s.rdx = s.rdx - (s.rdx & 0xffff) + (d % v);
      } else {
        const d = (BigInt(s.rdx >>> 0) << 32n) | BigInt(s.rax >>> 0);
        const q = d / BigInt(v);
        if (q > 0xffffffffn) return interrupt(0, start);
        s.rax = Number(q);
        s.rdx = Number(d % BigInt(v));
      }
      return DELIVERED;
    }
    default: { // 7 IDIV: quotient truncated toward zero, remainder has the dividend's sign
      if (v === 0) return interrupt(0, start);
      if (bits === 8) {
        const d = sext16(s.rax & 0xffff);
        const dv = sext8(v);
        const q = Math.trunc(d / dv);
        if (q > 0x7f || q < -0x80) return interrupt(0, start);
        const r = d - q * dv;
        s.rax = s.rax - (s.rax & 0xffff) + (((r & 0xff) << 8) | (q & 0xff));
      } else if (bits === 16) {
        const d = ((s.rdx & 0xffff) << 16) | (s.rax & 0xffff);
        const dv = sext16(v);
        const q = Math.trunc(d / dv);
        if (q > 0x7fff || q < -0x8000) return interrupt(0, start);
        const r = d - q * dv;
        s.rax = s.rax - (s.rax & 0xffff) + (q & 0xffff);
        s.rdx = s.rdx - (s.rdx & 0xffff) + (r & 0xffff);
      } else {
        const d = BigInt.asIntN(64, (BigInt(s.rdx >>> 0) << 32n) | BigInt(s.rax >>> 0));
        const dv = BigInt(v | 0);
        const q = d / dv; // BigInt division truncates toward zero
        if (q > 0x7fffffffn || q < -0x80000000n) return interrupt(0, start);
        s.rax = Number(BigInt.asUintN(32, q));
        s.rdx = Number(BigInt.asUintN(32, d % dv));
      }
      return DELIVERED;
    }
  }
}

/**
 * One iteration of a string instruction (MOVS, CMPS, STOS, LODS, SCAS; SDM Vol. 2). With a REP prefix the
 * instruction re-executes itself (RIP stays on it) until the count runs out or, for CMPS/SCAS, the ZF
 * condition ends it — so each iteration is one budget unit and an MMIO exit can interrupt it. Returns
 * false when an MMIO read must exit first.
 */
function stringOp(op: number, start: number): boolean {
  const s = S;
  const size = (op & 1) === 0 ? 1 : o32 ? 4 : 2;
  const amask = a32 ? 0xffffffff : 0xffff;
  if (rep !== 0) {
    const count = a32 ? s.rcx >>> 0 : s.rcx & 0xffff;
    if (count === 0) return true;
  }
  const delta = (s.rflags & DF) !== 0 ? -size : size;
  const si = a32 ? s.rsi >>> 0 : s.rsi & 0xffff;
  const di = a32 ? s.rdi >>> 0 : s.rdi & 0xffff;
  const src = segBase(false) + si;
  const dst = s.esBase + di;
  const mask = size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff;
  const sign = size === 1 ? 0x80 : size === 2 ? 0x8000 : 0x80000000;
  let usesSi = false;
  let usesDi = false;
  let zfEnds = false;
  switch (op) {
    case 0xa4: case 0xa5: { // MOVS
      const v = size === 1 ? rd8(src) : size === 2 ? rd16(src) : rd32(src);
      if (v < 0) return false;
      if (size === 1) wr8(dst, v);
      else if (size === 2) wr16(dst, v);
      else wr32(dst, v);
      usesSi = usesDi = true;
      break;
    }
    case 0xa6: case 0xa7: { // CMPS: [DS:SI] − [ES:DI]
      const a = size === 1 ? rd8(src) : size === 2 ? rd16(src) : rd32(src);
      if (a < 0) return false;
      const b = size === 1 ? rd8(dst) : size === 2 ? rd16(dst) : rd32(dst);
      if (b < 0) return false;
      sub(a, b, 0, mask, sign);
      usesSi = usesDi = zfEnds = true;
      break;
    }
    case 0xaa: case 0xab: { // STOS
      const v = size === 1 ? s.rax & 0xff : size === 2 ? s.rax & 0xffff : s.rax >>> 0;
      if (size === 1) wr8(dst, v);
      else if (size === 2) wr16(dst, v);
      else wr32(dst, v);
      usesDi = true;
      break;
    }
    case 0xac: case 0xad: { // LODS
      const v = size === 1 ? rd8(src) : size === 2 ? rd16(src) : rd32(src);
      if (v < 0) return false;
      if (size === 1) s.rax = s.rax - (s.rax & 0xff) + v;
      else if (size === 2) s.rax = s.rax - (s.rax & 0xffff) + v;
      else s.rax = v;
      usesSi = true;
      break;
    }
    default: { // SCAS: AL/AX/EAX − [ES:DI]
      const b = size === 1 ? rd8(dst) : size === 2 ? rd16(dst) : rd32(dst);
      if (b < 0) return false;
      const a = size === 1 ? s.rax & 0xff : size === 2 ? s.rax & 0xffff : s.rax >>> 0;
      sub(a, b, 0, mask, sign);
      usesDi = zfEnds = true;
      break;
    }
  }
  if (usesSi) {
    const v = (si + delta) & amask;
    s.rsi = a32 ? v >>> 0 : s.rsi - (s.rsi & 0xffff) + v;
  }
  if (usesDi) {
    const v = (di + delta) & amask;
    s.rdi = a32 ? v >>> 0 : s.rdi - (s.rdi & 0xffff) + v;
  }
  if (rep !== 0) {
    const count = ((a32 ? s.rcx >>> 0 : s.rcx & 0xffff) - 1) & amask;
    s.rcx = a32 ? count >>> 0 : s.rcx - (s.rcx & 0xffff) + count;
    let again = count !== 0;
    if (again && zfEnds) {
      const zf = (s.rflags & ZF) !== 0;
      again = rep === 3 ? zf : !zf; // REPE continues while equal, REPNE while not equal
    }
    if (again) ip = start;
  }
  return true;
}

/** Two-byte opcodes (0F xx). Returns DELIVERED when the instruction completed, ABANDONED for an MMIO read exit. */
function twoByte(start: number): number {
  const s = S;
  const op = fetch8();
  if (op >= 0x80 && op <= 0x8f) { // Jcc rel16/rel32
    const d = o32 ? fetch32() | 0 : sext16(fetch16());
    if (cond(op & 0xf)) ip = near(ip + d);
    return DELIVERED;
  }
  if (op >= 0x90 && op <= 0x9f) { // SETcc r/m8
    const m = fetch8();
    if (m < 0xc0) eaLin = rmAddr(m);
    writeRm8(m, cond(op & 0xf) ? 1 : 0);
    return DELIVERED;
  }
  switch (op) {
    case 0x0b: // UD2: raise #UD
      return interrupt(6, start);
    case 0xa0: case 0xa8: // PUSH FS / PUSH GS
      pushV(op === 0xa0 ? s.fsSelector : s.gsSelector);
      return DELIVERED;
    case 0xa1: case 0xa9: { // POP FS / POP GS
      const v = peekV(0);
      if (v < 0) return ABANDONED;
      addSp(o32 ? 4 : 2);
      loadSeg(op === 0xa1 ? SEG_FS : SEG_GS, v);
      return DELIVERED;
    }
    case 0xaf: { // IMUL r, r/m
      const m = fetch8();
      const b = readRmV(m);
      if (b < 0) return ABANDONED;
      const reg = (m >> 3) & 7;
      setRv(reg, imul2(getRv(reg), o32 ? b : sext16(b)));
      return DELIVERED;
    }
    case 0xb6: case 0xbe: { // MOVZX / MOVSX r, r/m8
      const m = fetch8();
      const v = readRm8(m);
      if (v < 0) return ABANDONED;
      const r = op === 0xb6 ? v : sext8(v);
      setRv((m >> 3) & 7, o32 ? r >>> 0 : r & 0xffff);
      return DELIVERED;
    }
    case 0xb7: case 0xbf: { // MOVZX / MOVSX r, r/m16
      const m = fetch8();
      let v: number;
      if (m >= 0xc0) v = getR16(m & 7);
      else {
        v = rd16(rmAddr(m));
        if (v < 0) return ABANDONED;
      }
      const r = op === 0xb7 ? v : sext16(v);
      setRv((m >> 3) & 7, o32 ? r >>> 0 : r & 0xffff);
      return DELIVERED;
    }
    default:
      return fail('two-byte opcode not implemented by the guest interpreter');
  }
}
