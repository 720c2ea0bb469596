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
  GUEST_SHADOW_MOV_SS,
  GUEST_SHADOW_STI,
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
import { defaultGuestPlatform, type GuestPlatform } from './platform.js';

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
/** Thrown (never as an Error) when the instruction raises an exception; {@link faultVector} says which. */
const FAULT = { fault: true } as const;
/** The platform of runs that were given none (no CPUID table, no MSRs). */
const DEFAULT_PLATFORM: GuestPlatform = defaultGuestPlatform();

let running = false;
let S: GuestCpuState = new GuestCpuState();
let M: GuestMemory = IDLE_MEMORY;
let X: GuestExit = new GuestExit();
/** Whether `M` provides the `lookup` fast path. */
let hasLookup = false;
let quirks = GUEST_DEFAULT_QUIRKS;
/** The vCPU's CPUID table, MSRs and TSC. */
let P: GuestPlatform = DEFAULT_PLATFORM;
/** Scratch for `cpuid` answers. */
const CPUID_OUT = new Uint32Array(4);

/** Offset within CS of the next byte to decode. */
let ip = 0;
/** CS base for the current instruction. */
let csBase = 0;
/** CS limit for the current instruction: fetching past it raises #GP. */
let csLim = 0xffff;
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
/** A LOCK (F0) prefix: #UD unless the instruction is a locked read-modify-write of memory. */
let lock = false;
let prefixDirty = false;
/** The instruction raised this exception vector (with {@link FAULT}). */
let faultVector = 0;
/** The instruction just executed opened an interrupt shadow (`sti` setting IF, `mov ss`, `pop ss`). */
let shadowSet = 0;
/** The instruction set CR0.PE: the run ends after it (protected mode is not executed). */
let enteredProtectedMode = false;

/** Linear address of the last decoded memory operand. */
let eaLin = 0;
/** Offset (within its segment) of the last decoded memory operand, for `lea`. */
let eaOff = 0;
/** Segment register of the last decoded memory operand. */
let eaSeg = 3;
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

/** AX ← `v` (bits 31:16 of EAX kept). */
function setAx(v: number): void {
  const s = S;
  s.eax = s.eax - (s.eax & 0xffff) + (v & 0xffff);
}

/**
 * DAA / DAS (SDM Vol. 2A): AL adjusted after a packed-BCD add / subtract; CF and AF as the SDM's pseudo-code sets
 * them, SF/ZF/PF from AL. OF is undefined: cleared here, as KVM's emulator (`em_das`, an OR of AL) leaves it.
 */
function decimalAdjust(subtract: boolean): void {
  const s = S;
  const oldAl = s.eax & 0xff;
  const oldCf = (s.eflags & CF) !== 0;
  let al = oldAl;
  let cf = false;
  let af = false;
  if ((al & 0x0f) > 9 || (s.eflags & AF) !== 0) {
    const r = subtract ? al - 6 : al + 6;
    cf = oldCf || r < 0 || r > 0xff;
    al = r & 0xff;
    af = true;
  }
  if (oldAl > 0x99 || oldCf) {
    al = (subtract ? al - 0x60 : al + 0x60) & 0xff;
    cf = true;
  } else if (!subtract) {
    cf = false;
  }
  s.eax = s.eax - (s.eax & 0xff) + al;
  logic(al, 0xff, 0x80);
  s.eflags = (s.eflags & ~(CF | AF)) | (cf ? CF : 0) | (af ? AF : 0);
}

/**
 * AAA / AAS (SDM Vol. 2A): after an unpacked-BCD add / subtract, AX ± 0x106 (AAS: AL − 6, AH − 1) when AL's low
 * nibble is above 9 or AF is set, with AF = CF = 1; else AF = CF = 0; then AL's high nibble is cleared. OF, SF, ZF
 * and PF are undefined: SF/ZF/PF are set from AL here and OF cleared.
 */
function asciiAdjust(subtract: boolean): void {
  const s = S;
  let ax = s.eax & 0xffff;
  const adjust = (ax & 0x0f) > 9 || (s.eflags & AF) !== 0;
  if (adjust) ax = subtract ? (((ax & 0xff) - 6) & 0xff) | ((((ax >> 8) - 1) & 0xff) << 8) : (ax + 0x106) & 0xffff;
  ax &= 0xff0f;
  setAx(ax);
  logic(ax & 0xff, 0xff, 0x80);
  if (adjust) s.eflags |= CF | AF;
}

/** Raises exception `vector` (#UD 6, #GP 13, #SS 12, …): the instruction is abandoned and the exception delivered. */
function raise(vector: number): never {
  faultVector = vector;
  throw FAULT;
}

// ---------------------------------------------------------------------------------------------------------
// Instruction fetch.

function fetch8(): number {
  const lin = csBase + ip;
  if (lin >= cBase && lin < cEnd && ip <= csLim) {
    ip++;
    return cBytes[lin - cBase]!;
  }
  return fetchSlow();
}

function fetchSlow(): number {
  const lin = csBase + ip;
  if (ip > csLim) raise(13); // past the CS limit (SDM Vol. 3A §20.1.1: #GP in real-address mode)
  if (ip - S.eip >= GUEST_MAX_INSN_BYTES) fail('instruction longer than 15 bytes');
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
  if (lin >= cBase && lin + 2 <= cEnd && ip + 1 <= csLim) {
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
    case 0: return s.eax & 0xff;
    case 1: return s.ecx & 0xff;
    case 2: return s.edx & 0xff;
    case 3: return s.ebx & 0xff;
    case 4: return (s.eax >> 8) & 0xff;
    case 5: return (s.ecx >> 8) & 0xff;
    case 6: return (s.edx >> 8) & 0xff;
    default: return (s.ebx >> 8) & 0xff;
  }
}

function setR8(i: number, v: number): void {
  const s = S;
  switch (i) {
    case 0: s.eax = s.eax - (s.eax & 0xff) + v; return;
    case 1: s.ecx = s.ecx - (s.ecx & 0xff) + v; return;
    case 2: s.edx = s.edx - (s.edx & 0xff) + v; return;
    case 3: s.ebx = s.ebx - (s.ebx & 0xff) + v; return;
    case 4: s.eax = s.eax - (s.eax & 0xff00) + (v << 8); return;
    case 5: s.ecx = s.ecx - (s.ecx & 0xff00) + (v << 8); return;
    case 6: s.edx = s.edx - (s.edx & 0xff00) + (v << 8); return;
    default: s.ebx = s.ebx - (s.ebx & 0xff00) + (v << 8); return;
  }
}

function getR16(i: number): number {
  const s = S;
  switch (i) {
    case 0: return s.eax & 0xffff;
    case 1: return s.ecx & 0xffff;
    case 2: return s.edx & 0xffff;
    case 3: return s.ebx & 0xffff;
    case 4: return s.esp & 0xffff;
    case 5: return s.ebp & 0xffff;
    case 6: return s.esi & 0xffff;
    default: return s.edi & 0xffff;
  }
}

function setR16(i: number, v: number): void {
  const s = S;
  switch (i) {
    case 0: s.eax = s.eax - (s.eax & 0xffff) + v; return;
    case 1: s.ecx = s.ecx - (s.ecx & 0xffff) + v; return;
    case 2: s.edx = s.edx - (s.edx & 0xffff) + v; return;
    case 3: s.ebx = s.ebx - (s.ebx & 0xffff) + v; return;
    case 4: s.esp = s.esp - (s.esp & 0xffff) + v; return;
    case 5: s.ebp = s.ebp - (s.ebp & 0xffff) + v; return;
    case 6: s.esi = s.esi - (s.esi & 0xffff) + v; return;
    default: s.edi = s.edi - (s.edi & 0xffff) + v; return;
  }
}

function getR32(i: number): number {
  const s = S;
  switch (i) {
    case 0: return s.eax >>> 0;
    case 1: return s.ecx >>> 0;
    case 2: return s.edx >>> 0;
    case 3: return s.ebx >>> 0;
    case 4: return s.esp >>> 0;
    case 5: return s.ebp >>> 0;
    case 6: return s.esi >>> 0;
    default: return s.edi >>> 0;
  }
}

/** A 32-bit register write zero-extends, as `kvm_register_write()` does outside 64-bit mode. */
function setR32(i: number, v: number): void {
  const s = S;
  const u = v >>> 0;
  switch (i) {
    case 0: s.eax = u; s.raxHigh = 0; return;
    case 1: s.ecx = u; s.rcxHigh = 0; return;
    case 2: s.edx = u; s.rdxHigh = 0; return;
    case 3: s.ebx = u; s.rbxHigh = 0; return;
    case 4: s.esp = u; s.rspHigh = 0; return;
    case 5: s.ebp = u; s.rbpHigh = 0; return;
    case 6: s.esi = u; s.rsiHigh = 0; return;
    default: s.edi = u; s.rdiHigh = 0; return;
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

/** Limit of segment register `i` (0–5): real mode checks offsets against it too (SDM Vol. 3A §20.1.1). */
function segLimitOf(i: number): number {
  const s = S;
  switch (i) {
    case SEG_ES: return s.esLimit;
    case SEG_CS: return s.csLimit;
    case SEG_SS: return s.ssLimit;
    case SEG_DS: return s.dsLimit;
    case SEG_FS: return s.fsLimit;
    default: return s.gsLimit;
  }
}

/**
 * The linear address of a `size`-byte access at `offset` in segment `seg`; an access reaching past the
 * segment's limit raises #SS for SS and #GP for the others (SDM Vol. 3A §20.1.1, Vol. 2 "Real-Address Mode
 * Exceptions").
 */
function segAddr(seg: number, offset: number, size: number): number {
  if (offset + size - 1 > segLimitOf(seg)) raise(seg === SEG_SS ? 12 : 13);
  return segBaseOf(seg) + offset;
}

/** A real-mode load of segment register `i` (0–5): the selector, and base = selector × 16. */
function loadSeg(i: number, selector: number): void {
  const s = S;
  const sel = selector & 0xffff;
  const base = sel << 4;
  switch (i) {
    case SEG_ES: s.esSelector = sel; s.esBase = base; s.esBaseHigh = 0; return;
    case SEG_CS: s.csSelector = sel; s.csBase = base; s.csBaseHigh = 0; return;
    case SEG_SS: s.ssSelector = sel; s.ssBase = base; s.ssBaseHigh = 0; return;
    case SEG_DS: s.dsSelector = sel; s.dsBase = base; s.dsBaseHigh = 0; return;
    case SEG_FS: s.fsSelector = sel; s.fsBase = base; s.fsBaseHigh = 0; return;
    default: s.gsSelector = sel; s.gsBase = base; s.gsBaseHigh = 0; return;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Effective addresses (SDM Vol. 2A §2.1.5, Tables 2-1 and 2-2). Real mode: linear = segment base + offset.

/**
 * Decodes the memory operand of ModRM byte `m` (mod ≠ 3), fetching SIB/displacement; returns the linear
 * address of a `size`-byte access there (0: no access, as `lea`), after the segment-limit check.
 */
function rmAddr(m: number, size: number): number {
  if (a32) return rmAddr32(m, size);
  const s = S;
  const mod = m >> 6;
  let ea: number;
  let stack = false;
  switch (m & 7) {
    case 0: ea = (s.ebx & 0xffff) + (s.esi & 0xffff); break;
    case 1: ea = (s.ebx & 0xffff) + (s.edi & 0xffff); break;
    case 2: ea = (s.ebp & 0xffff) + (s.esi & 0xffff); stack = true; break;
    case 3: ea = (s.ebp & 0xffff) + (s.edi & 0xffff); stack = true; break;
    case 4: ea = s.esi & 0xffff; break;
    case 5: ea = s.edi & 0xffff; break;
    case 6:
      if (mod === 0) return operandAddr(false, (eaOff = fetch16()), size);
      ea = s.ebp & 0xffff;
      stack = true;
      break;
    default: ea = s.ebx & 0xffff; break;
  }
  if (mod === 1) ea += sext8(fetch8());
  else if (mod === 2) ea += fetch16();
  eaOff = ea & 0xffff;
  return operandAddr(stack, eaOff, size);
}

function rmAddr32(m: number, size: number): number {
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
  return operandAddr(stack, eaOff, size);
}

/** The segment of a memory operand: the override, else SS for BP/SP-based addresses, else DS. */
function operandSeg(stack: boolean): number {
  if (ovr >= 0) return ovr;
  return stack ? SEG_SS : SEG_DS;
}

function operandAddr(stack: boolean, offset: number, size: number): number {
  const seg = operandSeg(stack);
  eaSeg = seg;
  if (size === 0) return segBaseOf(seg) + offset;
  return segAddr(seg, offset, size);
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
  if (mapped === 0) return mmioRead(lin, len);
  return straddleRead(lin, len);
}

/**
 * A read that is part RAM, part not (it crosses the page boundary between a memslot and a hole): the RAM
 * bytes are read, and only the other page's part is an MMIO read exit — Linux's emulator splits an access
 * at the page boundary and exits for the fragment that is not RAM (`emulator_read_write`), which a real
 * /dev/kvm shows (fixtures/real-kvm.json, `mmio-straddle-*`).
 */
function straddleRead(lin: number, len: number): number {
  const headRam = byteAt(lin) >= 0;
  let k = 1;
  while (k < len && (byteAt(lin + k) >= 0) === headRam) k++;
  const mmioAt = headRam ? lin + k : lin;
  const mmioLen = headRam ? len - k : k;
  const mv = mmioRead(mmioAt, mmioLen);
  if (mv < 0) return -1;
  let v = 0;
  for (let i = len - 1; i >= 0; i--) {
    const a = lin + i;
    const b = a >= mmioAt && a < mmioAt + mmioLen ? Math.floor(mv / 2 ** (8 * (a - mmioAt))) & 0xff : byteAt(a);
    v = v * 256 + b;
  }
  return v;
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
  }
  // Byte by byte: the RAM part is written; the part that is not RAM (one page's fragment) becomes the MMIO
  // write exit, as Linux's emulator splits the access at the page boundary.
  let mmioAt = -1;
  let mmioLen = 0;
  for (let i = 0; i < len; i++) {
    if (writeByte(lin + i, (v >>> (8 * i)) & 0xff)) continue;
    if (mmioAt < 0) mmioAt = lin + i;
    mmioLen++;
  }
  if (mmioLen === 0) return;
  const shift = mmioAt - lin;
  mmioWrite(mmioAt, Math.floor(v / 2 ** (8 * shift)), mmioLen);
}

function writeByte(gpa: number, b: number): boolean {
  if (!hasLookup) return M.write8(gpa, b);
  const slot = M.lookup!(gpa);
  if (slot === undefined || slot.readonly) return false;
  slot.bytes[gpa - slot.base] = b;
  return true;
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
  eaLin = rmAddr(m, 1);
  return rd8(eaLin);
}

function writeRm8(m: number, v: number): void {
  if (m >= 0xc0) setR8(m & 7, v);
  else wr8(eaLin, v);
}

function readRmV(m: number): number {
  if (m >= 0xc0) return getRv(m & 7);
  eaLin = rmAddr(m, o32 ? 4 : 2);
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
  S.eflags =
    (S.eflags & ~STATUS) |
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
  S.eflags =
    (S.eflags & ~STATUS) |
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
  S.eflags =
    (S.eflags & ~STATUS) | PARITY[res & 0xff]! | (res === 0 ? ZF : 0) | ((res & sign) !== 0 ? SF : 0);
  return res;
}

/** INC: like ADD 1, but CF is not affected. */
function inc(a: number, mask: number, sign: number): number {
  const res = ((a + 1) & mask) >>> 0;
  S.eflags =
    (S.eflags & ~(STATUS & ~CF)) |
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
  S.eflags =
    (S.eflags & ~(STATUS & ~CF)) |
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
    case 2: return add(a, b, S.eflags & CF, mask, sign);
    case 3: return sub(a, b, S.eflags & CF, mask, sign);
    case 4: return logic(a & b, mask, sign);
    case 6: return logic(a ^ b, mask, sign);
    default: return sub(a, b, 0, mask, sign); // 5 SUB, 7 CMP
  }
}

/** The condition of Jcc/SETcc with condition code `cc` (SDM Vol. 2 Appendix B.1.4.7, Table B-1). */
function cond(cc: number): boolean {
  const f = S.eflags;
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
      s.eflags = (s.eflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 1: { // ROR
      const c = count % bits;
      res = c === 0 ? v : (((v >>> c) | (v << (bits - c))) & mask) >>> 0;
      cf = (res & sign) !== 0 ? 1 : 0;
      of = ((res & sign) !== 0) !== ((res & (sign >>> 1)) !== 0);
      s.eflags = (s.eflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 2: { // RCL
      const c = bits === 32 ? count : count % (bits + 1);
      res = v;
      cf = s.eflags & CF;
      for (let i = 0; i < c; i++) {
        const out = (res & sign) !== 0 ? 1 : 0;
        res = (((res << 1) | cf) & mask) >>> 0;
        cf = out;
      }
      of = ((res & sign) !== 0) !== (cf !== 0);
      s.eflags = (s.eflags & ~(CF | OF)) | cf | (of ? OF : 0);
      return res;
    }
    case 3: { // RCR
      const c = bits === 32 ? count : count % (bits + 1);
      res = v;
      cf = s.eflags & CF;
      of = ((v & sign) !== 0) !== (cf !== 0);
      for (let i = 0; i < c; i++) {
        const out = res & 1;
        res = ((res >>> 1) | (cf !== 0 ? sign : 0)) >>> 0;
        cf = out;
      }
      s.eflags = (s.eflags & ~(CF | OF)) | cf | (of ? OF : 0);
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
  s.eflags =
    (s.eflags & ~STATUS) |
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
  const sp = ((s.esp & 0xffff) - 2) & 0xffff;
  if (sp + 1 > s.ssLimit) raise(12);
  s.esp = s.esp - (s.esp & 0xffff) + sp;
  wr16(s.ssBase + sp, v & 0xffff);
}

function push32(v: number): void {
  const s = S;
  const sp = ((s.esp & 0xffff) - 4) & 0xffff;
  if (sp + 3 > s.ssLimit) raise(12);
  s.esp = s.esp - (s.esp & 0xffff) + sp;
  wr32(s.ssBase + sp, v);
}

function pushV(v: number): void {
  if (o32) push32(v);
  else push16(v);
}

/** Reads the stack `offset` bytes above SP without popping; -1 when an MMIO read must exit first. */
function peek16(offset: number): number {
  const s = S;
  const o = ((s.esp & 0xffff) + offset) & 0xffff;
  if (o + 1 > s.ssLimit) raise(12);
  return rd16(s.ssBase + o);
}

function peek32(offset: number): number {
  const s = S;
  const o = ((s.esp & 0xffff) + offset) & 0xffff;
  if (o + 3 > s.ssLimit) raise(12);
  return rd32(s.ssBase + o);
}

function peekV(offset: number): number {
  return o32 ? peek32(offset) : peek16(offset);
}

function addSp(n: number): void {
  const s = S;
  s.esp = s.esp - (s.esp & 0xffff) + (((s.esp & 0xffff) + n) & 0xffff);
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
  if (size32) s.eflags = (v & 0x257fd5) | (s.eflags & 0x1a0000) | X86_EFLAGS_FIXED;
  else s.eflags = (s.eflags & ~0xffff) | (v & 0x7fd5) | X86_EFLAGS_FIXED;
}

const DELIVERED = 0;
const ABANDONED = 1;
/** {@link ivtDeliver} result: delivering raised exception `FAULTED + vector`. */
const FAULTED = 0x100;

/** #DE, #TS, #NP, #SS, #GP: the "contributory" exceptions of SDM Vol. 3A Table 6-4 (real mode has no #PF). */
function contributory(vector: number): boolean {
  return vector === 0 || vector === 10 || vector === 11 || vector === 12 || vector === 13;
}

/**
 * One real-mode delivery through the IVT (SDM Vol. 2A "INT n" pseudo-code, real-address mode; Vol. 3A
 * §20.1.4): the entry `vector·4 … vector·4 + 3` must lie within IDTR.limit (else #GP) and the three pushes
 * within SS's limit (else #SS); then FLAGS, CS, IP are pushed, IF, TF and AC cleared, CS:IP loaded from
 * the entry. Returns DELIVERED, ABANDONED (an MMIO read of the IVT must exit first), or FAULTED + the vector
 * that delivery raised (nothing changed).
 */
function ivtDeliver(vector: number, returnIp: number): number {
  const s = S;
  if (vector * 4 + 3 > s.idtLimit) return FAULTED + 13;
  const sp = s.esp & 0xffff;
  for (let k = 2; k <= 6; k += 2) if (((sp - k) & 0xffff) + 1 > s.ssLimit) return FAULTED + 12;
  const entry = s.idtBase + vector * 4;
  const offset = rd16(entry);
  if (offset < 0) return ABANDONED;
  const selector = rd16(entry + 2);
  if (selector < 0) return ABANDONED;
  push16(s.eflags);
  s.eflags &= ~(X86_EFLAGS_IF | X86_EFLAGS_TF | X86_EFLAGS_AC);
  push16(s.csSelector);
  push16(returnIp);
  loadSeg(SEG_CS, selector);
  csBase = s.csBase;
  csLim = s.csLimit;
  ip = offset;
  s.ripHigh = 0;
  s.halted = false;
  return DELIVERED;
}

/**
 * Delivers `vector` (an exception, `int n`, or an external interrupt) through the IVT, with `returnIp`
 * pushed. An exception raised by the delivery is delivered next with `faultIp` (the instruction that was
 * being started), serially or — for two contributory exceptions — as a double fault (#DF, vector 8); a
 * fault while delivering #DF is a triple fault, which KVM reports as `KVM_EXIT_SHUTDOWN` (SDM Vol. 3A
 * §6.15 "Interrupt 8", Table 6-5). Returns DELIVERED, or ABANDONED with `exitKind` set when the run must
 * stop (shutdown, or an MMIO read of the IVT).
 */
function deliver(vector: number, returnIp: number, faultIp: number): number {
  let v = vector;
  let back = returnIp;
  for (;;) {
    const r = ivtDeliver(v, back);
    if (r < FAULTED) return r;
    const nested = r - FAULTED;
    if (v === 8) {
      exitKind = GuestExitReason.Shutdown;
      return ABANDONED;
    }
    v = contributory(v) && contributory(nested) ? 8 : nested;
    back = faultIp;
  }
}

/** `int n`/`int3`/`into` and divide errors reached from inside an instruction. */
function interrupt(vector: number, returnIp: number): number {
  return deliver(vector, returnIp, S.eip);
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
  return (state.csBase + state.eip) >>> 0;
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
  if (size === 1) state.eax = state.eax - (state.eax & 0xff) + v;
  else if (size === 2) state.eax = state.eax - (state.eax & 0xffff) + v;
  else {
    state.eax = v;
    state.raxHigh = 0;
  }
  state.eip = state.pendingNextRip;
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
  state.eip = state.pendingNextRip;
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
 * @param platform The vCPU's CPUID table, MSRs and TSC (for `cpuid`, `rdmsr`/`wrmsr`, `rdtsc`); default: a
 *   platform with none ({@link defaultGuestPlatform}, shared by every run that passes none).
 */
export function runGuest(
  state: GuestCpuState,
  memory: GuestMemory,
  budget: number,
  exit: GuestExit,
  quirkMask: number = GUEST_DEFAULT_QUIRKS,
  platform: GuestPlatform = DEFAULT_PLATFORM,
): GuestExitReasonValue {
  if (running) throw new UsageError('ERR_INVALID_STATE', 'runGuest: runs cannot nest (called from a GuestMemory callback?)');
  running = true;
  // Pointer stores into module scope cost a write barrier each; skip them when the same vCPU runs again.
  // (The scratch keeps referring to the last run's objects until another run replaces them.)
  if (S !== state) S = state;
  if (M !== memory) M = memory;
  if (X !== exit) X = exit;
  if (P !== platform) P = platform;
  hasLookup = memory.lookup !== undefined;
  quirks = quirkMask;
  // Invalidate the slot caches (memslots may have changed since the last run) without touching pointers.
  cBase = cEnd = dBase = dEnd = wBase = wEnd = 0;
  o32 = a32 = lock = false;
  ovr = -1;
  rep = 0;
  prefixDirty = false;
  exitKind = 0;
  shadowSet = 0;
  enteredProtectedMode = false;
  exit.executed = 0;
  state.halted = false; // a vCPU that runs is not halted (KVM_RUN after a KVM_EXIT_HLT continues past the hlt)
  let reason: number;
  try {
    if (state.pending === GuestPending.PioInString) completeInString();
    else if (state.pending !== GuestPending.None) completePending(state, exit.data);
    if (hasLookup) {
      // Prime the code-slot cache so the first instruction can already take the fast path.
      const slot = memory.lookup!(state.csBase + state.eip);
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
    if (reason === 0 && left > 0 && state.ripHigh !== 0) {
      // RIP above 4 GiB is past any real-mode CS limit: the first fetch raises #GP (IP pushed: its low 16 bits).
      csBase = state.csBase;
      csLim = state.csLimit;
      ip = state.eip;
      if (deliver(13, state.eip, state.eip) === DELIVERED) state.eip = ip;
      else reason = exitKind;
    }
    // The interrupt shadow covers exactly one instruction: that one runs alone, then the shadow ends.
    while (reason === 0 && left > 0) {
      const before = exit.executed;
      const inShadow = state.interruptShadow !== 0;
      reason = execute(inShadow ? 1 : left);
      const ran = exit.executed - before;
      left -= ran;
      if (inShadow && ran > 0) state.interruptShadow = 0;
      if (shadowSet !== 0) {
        state.interruptShadow = shadowSet;
        shadowSet = 0;
      } else if (!inShadow) break;
    }
    if (enteredProtectedMode) {
      enteredProtectedMode = false;
      reason = GuestExitReason.InternalError;
      exit.suberror = GUEST_INTERNAL_ERROR_EMULATION;
      exit.flags = 0;
      exit.insnSize = 0;
      exit.detail = 'protected mode is not modelled (CR0.PE=1)';
    }
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
  const start = state.eip;
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
  o32 = a32 = lock = false;
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
      case 0xf0: lock = true; break; // checked once the opcode is known (lockable)
      case 0xf2: rep = 2; break;
      case 0xf3: rep = 3; break;
      default: return op;
    }
    if (ip - s.eip >= GUEST_MAX_INSN_BYTES) fail('instruction longer than 15 bytes');
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
  const hi = Math.min(cEnd - s.csBase - 16, s.csLimit - 15); // the whole instruction within the CS limit too
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
  let rip = s.eip;
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
          s.eflags =
            (s.eflags & ~(STATUS & ~CF)) |
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
          s.eflags =
            (s.eflags & ~(STATUS & ~CF)) |
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
          const a = s.eax & 0xff;
          const c = b[o + 1]!;
          const r = a + c;
          const res = r & 0xff;
          s.eax = s.eax - a + res;
          s.eflags =
            (s.eflags & ~STATUS) |
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
          const a = s.eax & 0xff;
          const c = b[o + 1]!;
          const r = a - c;
          const res = r & 0xff;
          if (op === 0x2c) s.eax = s.eax - a + res;
          s.eflags =
            (s.eflags & ~STATUS) |
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
          const r = alu(op >> 3, s.eax & 0xff, b[o + 1]!, 0xff, 0x80);
          s.eax = s.eax - (s.eax & 0xff) + r;
          rip = start + 2;
          n++;
          continue loop;
        }
        case 0x05: { // ADD AX, imm16
          const a = s.eax & 0xffff;
          const c = b[o + 1]! | (b[o + 2]! << 8);
          const r = a + c;
          const res = r & 0xffff;
          s.eax = s.eax - a + res;
          s.eflags =
            (s.eflags & ~STATUS) |
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
          const a = s.eax & 0xffff;
          const c = b[o + 1]! | (b[o + 2]! << 8);
          const r = a - c;
          const res = r & 0xffff;
          if (op === 0x2d) s.eax = s.eax - a + res;
          s.eflags =
            (s.eflags & ~STATUS) |
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
          const r = alu(op >> 3, s.eax & 0xffff, b[o + 1]! | (b[o + 2]! << 8), 0xffff, 0x8000);
          s.eax = s.eax - (s.eax & 0xffff) + r;
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
          pio(op === 0xee ? GuestIoDirection.Out : GuestIoDirection.In, 1, s.edx & 0xffff, start);
          rip = ip;
          n++;
          break loop;
        case 0xf4: // HLT
          exitKind = GuestExitReason.Hlt;
          s.halted = true;
          rip = start + 1;
          n++;
          break loop;
        default:
          break;
      }
    }
    s.eip = start;
    let done: boolean;
    try {
      done = step(start) === STEP_DONE;
    } catch (e) {
      if (e !== FAULT) {
        X.executed += n; // the instructions before the failing one did complete
        throw e;
      }
      done = faulted(start);
    }
    rip = s.eip;
    if (!done) break;
    n++;
    if (exitKind !== 0 || shadowSet !== 0 || enteredProtectedMode) break;
    b = cBytes;
    lo = fastLo(s);
    hi = fastHi(s);
  }
  s.eip = rip;
  X.executed += n;
  return exitKind;
}

/**
 * Whether a LOCK prefix is allowed on opcode `op` (whose ModRM, and for 0F its second byte, follow at `ip`):
 * only the read-modify-write forms with a memory destination — ADD ADC AND BTC BTR BTS CMPXCHG CMPXCHG8B DEC
 * INC NEG NOT OR SBB SUB XADD XCHG XOR (SDM Vol. 2A, LOCK). Anything else with LOCK raises #UD.
 */
function lockable(op: number): boolean {
  const save = ip;
  let ok = false;
  if (op === 0x0f) {
    const op2 = fetch8();
    const m = fetch8();
    const r = (m >> 3) & 7;
    ok =
      m < 0xc0 &&
      (op2 === 0xab || op2 === 0xb3 || op2 === 0xbb || op2 === 0xb0 || op2 === 0xb1 || op2 === 0xc0 || op2 === 0xc1 ||
        (op2 === 0xba && r >= 5) || (op2 === 0xc7 && r === 1));
  } else if (op < 0x40 ? (op & 6) === 0 && op < 0x38 : (op >= 0x80 && op <= 0x87) || op === 0xf6 || op === 0xf7 || op === 0xfe || op === 0xff) {
    const m = fetch8();
    const r = (m >> 3) & 7;
    if (m < 0xc0) {
      if (op < 0x40) ok = true;
      else if (op <= 0x83) ok = r !== 7;
      else if (op === 0x86 || op === 0x87) ok = true;
      else if (op === 0xf6 || op === 0xf7) ok = r === 2 || r === 3;
      else if (op >= 0xfe) ok = r <= 1;
    }
  }
  ip = save;
  return ok;
}

/**
 * The instruction at `start` raised exception {@link faultVector}: nothing it did is kept (an MMIO write it
 * prepared is not made), and the exception is delivered through the IVT with IP = `start` (a fault).
 * Returns false when the delivery stops the run (shutdown, or an MMIO read of the IVT).
 */
function faulted(start: number): boolean {
  exitKind = 0;
  shadowSet = 0;
  enteredProtectedMode = false;
  S.pending = GuestPending.None;
  if (deliver(faultVector, start, start) !== DELIVERED) return false;
  S.eip = ip;
  return true;
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
  csLim = s.csLimit;
  let op = fetch8();
  if (PREFIX[op] !== 0) {
    op = readPrefixes(op);
    if (lock && !lockable(op)) raise(6);
  } else if (prefixDirty) {
    o32 = a32 = lock = false;
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
      const r = alu(op >> 3, s.eax & 0xff, fetch8(), 0xff, 0x80);
      if (op !== 0x3c) s.eax = s.eax - (s.eax & 0xff) + r;
      break;
    }
    case 0x05: case 0x0d: case 0x15: case 0x1d: case 0x25: case 0x2d: case 0x35: case 0x3d: {
      if (o32) {
        const r = alu(op >> 3, s.eax >>> 0, fetch32(), 0xffffffff, 0x80000000);
        if (op !== 0x3d) setR32(0, r);
      } else {
        const r = alu(op >> 3, s.eax & 0xffff, fetch16(), 0xffff, 0x8000);
        if (op !== 0x3d) s.eax = s.eax - (s.eax & 0xffff) + r;
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
      if (op === 0x17) shadowSet = GUEST_SHADOW_MOV_SS;
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
    case 0x6c: case 0x6d: case 0x6e: case 0x6f: // INS / OUTS
      if (!stringIo(op, start)) return STEP_ABANDONED;
      break;
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
      if (m < 0xc0) eaLin = rmAddr(m, 1);
      writeRm8(m, getR8((m >> 3) & 7));
      break;
    }
    case 0x89: {
      const m = fetch8();
      if (m < 0xc0) eaLin = rmAddr(m, o32 ? 4 : 2);
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
      else wr16(rmAddr(m, 2), selectorOf(seg));
      break;
    }
    case 0x8d: { // LEA
      const m = fetch8();
      if (m >= 0xc0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      rmAddr(m, 0);
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
        v = rd16(rmAddr(m, 2));
        if (v < 0) return STEP_ABANDONED;
      }
      loadSeg(seg, v);
      if (seg === SEG_SS) shadowSet = GUEST_SHADOW_MOV_SS;
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
      if (m < 0xc0) eaLin = rmAddr(m, o32 ? 4 : 2);
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
    // ---- decimal adjust (27 2F 37 3F D4 D5) and INTO (CE) ------------------------------------------------
    case 0x27: case 0x2f: decimalAdjust(op === 0x2f); break; // DAA, DAS
    case 0x37: case 0x3f: asciiAdjust(op === 0x3f); break; // AAA, AAS
    case 0xd4: { // AAM imm8: #DE for a base of 0
      const base = fetch8();
      if (base === 0) raise(0);
      const al = s.eax & 0xff;
      setAx(((Math.floor(al / base) & 0xff) << 8) | al % base);
      logic(al % base, 0xff, 0x80);
      break;
    }
    case 0xd5: { // AAD imm8
      const base = fetch8();
      const al = ((s.eax & 0xff) + ((s.eax >> 8) & 0xff) * base) & 0xff;
      setAx(al);
      logic(al, 0xff, 0x80);
      break;
    }
    case 0xce: // INTO: a trap through vector 4 when OF = 1 (the pushed IP is the next instruction's)
      if ((s.eflags & OF) !== 0 && interrupt(4, ip) !== DELIVERED) return STEP_ABANDONED;
      break;
    case 0x98: // CBW / CWDE
      if (o32) setR32(0, sext16(s.eax & 0xffff));
      else s.eax = s.eax - (s.eax & 0xffff) + (sext8(s.eax & 0xff) & 0xffff);
      break;
    case 0x99: // CWD / CDQ
      if (o32) setR32(2, (s.eax & 0x80000000) !== 0 ? 0xffffffff : 0);
      else s.edx = s.edx - (s.edx & 0xffff) + ((s.eax & 0x8000) !== 0 ? 0xffff : 0);
      break;
    case 0x9a: { // CALL ptr16:16
      const offset = fetchV();
      const selector = fetch16();
      pushV(s.csSelector);
      pushV(ip);
      far(selector, offset);
      break;
    }
    case 0x9b: // WAIT/FWAIT: #NM when CR0.MP and CR0.TS; no x87 exception is ever pending
      if ((Number(s.cr0 & 0xan) & 0xa) === 0xa) raise(7);
      break;
    case 0xd9: case 0xdb: case 0xdd: case 0xdf: x87(op); break;
    case 0x9c: pushV(o32 ? s.eflags & 0x00fcffff : s.eflags & 0xffff); break; // PUSHF
    case 0x9d: { // POPF
      const v = peekV(0);
      if (v < 0) return STEP_ABANDONED;
      addSp(o32 ? 4 : 2);
      loadFlags(v, o32);
      break;
    }
    case 0x9e: // SAHF
      s.eflags = (s.eflags & ~(SF | ZF | AF | PF | CF)) | ((s.eax >> 8) & (SF | ZF | AF | PF | CF));
      break;
    case 0x9f: // LAHF
      s.eax = s.eax - (s.eax & 0xff00) + (((s.eflags & (SF | ZF | AF | PF | CF)) | X86_EFLAGS_FIXED) << 8);
      break;

    // ---- MOV AL/AX, moffs (A0–A3) --------------------------------------------------------------------
    case 0xa0: case 0xa1: case 0xa2: case 0xa3: {
      const off = a32 ? fetch32() : fetch16();
      const lin = operandAddr(false, off, op === 0xa0 || op === 0xa2 ? 1 : o32 ? 4 : 2);
      if (op === 0xa0) {
        const v = rd8(lin);
        if (v < 0) return STEP_ABANDONED;
        s.eax = s.eax - (s.eax & 0xff) + v;
      } else if (op === 0xa1) {
        const v = rdV(lin);
        if (v < 0) return STEP_ABANDONED;
        setRv(0, v);
      } else if (op === 0xa2) wr8(lin, s.eax & 0xff);
      else wrV(lin, getRv(0));
      break;
    }

    // ---- String instructions (A4–A7, AA–AF) ----------------------------------------------------------
    case 0xa4: case 0xa5: case 0xa6: case 0xa7: case 0xaa: case 0xab: case 0xac: case 0xad: case 0xae: case 0xaf: {
      if (!stringOp(op, start)) return STEP_ABANDONED;
      break;
    }
    case 0xa8: logic((s.eax & 0xff) & fetch8(), 0xff, 0x80); break; // TEST AL, imm8
    case 0xa9: // TEST AX, imm16
      if (o32) logic((s.eax >>> 0) & fetch32(), 0xffffffff, 0x80000000);
      else logic(s.eax & 0xffff & fetch16(), 0xffff, 0x8000);
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
      const count = op === 0xc0 ? fetch8() : op === 0xd0 ? 1 : s.ecx & 0xff;
      writeRm8(m, shift((m >> 3) & 7, v, count, 8));
      break;
    }
    case 0xc1: case 0xd1: case 0xd3: {
      const m = fetch8();
      const v = readRmV(m);
      if (v < 0) return STEP_ABANDONED;
      const count = op === 0xc1 ? fetch8() : op === 0xd1 ? 1 : s.ecx & 0xff;
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
      const lin = rmAddr(m, o32 ? 6 : 4);
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
      if (m < 0xc0) eaLin = rmAddr(m, 1);
      writeRm8(m, fetch8());
      break;
    }
    case 0xc7: {
      const m = fetch8();
      if ((m & 0x38) !== 0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      if (m < 0xc0) eaLin = rmAddr(m, o32 ? 4 : 2);
      writeRmV(m, fetchV());
      break;
    }
    case 0xc8: enter(); break;
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
      const lin = operandAddr(false, a32 ? ((s.ebx >>> 0) + (s.eax & 0xff)) >>> 0 : ((s.ebx & 0xffff) + (s.eax & 0xff)) & 0xffff, 1);
      const v = rd8(lin);
      if (v < 0) return STEP_ABANDONED;
      s.eax = s.eax - (s.eax & 0xff) + v;
      break;
    }

    // ---- LOOP / JCXZ (E0–E3) -------------------------------------------------------------------------
    case 0xe0: case 0xe1: case 0xe2: case 0xe3: {
      const d = sext8(fetch8());
      let count: number;
      if (op === 0xe3) count = a32 ? s.ecx >>> 0 : s.ecx & 0xffff;
      else if (a32) s.ecx = count = ((s.ecx >>> 0) - 1) >>> 0;
      else {
        count = ((s.ecx & 0xffff) - 1) & 0xffff;
        s.ecx = s.ecx - (s.ecx & 0xffff) + count;
      }
      const zf = (s.eflags & ZF) !== 0;
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
    case 0xec: pio(GuestIoDirection.In, 1, s.edx & 0xffff, start); break;
    case 0xed: pio(GuestIoDirection.In, o32 ? 4 : 2, s.edx & 0xffff, start); break;
    case 0xee: pio(GuestIoDirection.Out, 1, s.edx & 0xffff, start); break;
    case 0xef: pio(GuestIoDirection.Out, o32 ? 4 : 2, s.edx & 0xffff, start); break;

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
      s.halted = true;
      break;
    case 0xf5: s.eflags ^= CF; break; // CMC
    case 0xf8: s.eflags &= ~CF; break; // CLC
    case 0xf9: s.eflags |= CF; break; // STC
    case 0xfa: s.eflags &= ~X86_EFLAGS_IF; break; // CLI (CPL 0)
    case 0xfb: // STI: setting IF opens a one-instruction interrupt shadow
      if ((s.eflags & X86_EFLAGS_IF) === 0) shadowSet = GUEST_SHADOW_STI;
      s.eflags |= X86_EFLAGS_IF;
      break;
    case 0xfc: s.eflags &= ~DF; break; // CLD
    case 0xfd: s.eflags |= DF; break; // STD

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

  s.eip = ip;
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
  s.eflags = (s.eflags & ~(CF | OF)) | (overflow ? CF | OF : 0);
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
        const p = (s.eax & 0xff) * v;
        s.eax = s.eax - (s.eax & 0xffff) + p;
        hi = p >> 8;
      } else if (bits === 16) {
        const p = (s.eax & 0xffff) * v;
        hi = p >>> 16;
        s.eax = s.eax - (s.eax & 0xffff) + (p & 0xffff);
        s.edx = s.edx - (s.edx & 0xffff) + hi;
      } else {
        const p = BigInt(s.eax >>> 0) * BigInt(v);
        hi = Number(p >> 32n);
        setR32(0, Number(p & 0xffffffffn));
        setR32(2, hi);
      }
      s.eflags = (s.eflags & ~(CF | OF)) | (hi !== 0 ? CF | OF : 0);
      return DELIVERED;
    }
    case 5: { // IMUL (one operand)
      let overflow: boolean;
      if (bits === 8) {
        const p = sext8(s.eax & 0xff) * sext8(v);
        s.eax = s.eax - (s.eax & 0xffff) + (p & 0xffff);
        overflow = p !== sext8(p & 0xff);
      } else if (bits === 16) {
        const p = sext16(s.eax & 0xffff) * sext16(v);
        s.eax = s.eax - (s.eax & 0xffff) + (p & 0xffff);
        s.edx = s.edx - (s.edx & 0xffff) + ((p >> 16) & 0xffff);
        overflow = p !== sext16(p & 0xffff);
      } else {
        const p = BigInt(s.eax | 0) * BigInt(v | 0);
        const u = BigInt.asUintN(64, p);
        setR32(0, Number(u & 0xffffffffn));
        setR32(2, Number(u >> 32n));
        overflow = p !== BigInt(s.eax | 0);
      }
      s.eflags = (s.eflags & ~(CF | OF)) | (overflow ? CF | OF : 0);
      return DELIVERED;
    }
    case 6: { // DIV
      if (v === 0) return interrupt(0, start);
      if (bits === 8) {
        const d = s.eax & 0xffff;
        const q = Math.floor(d / v);
        if (q > 0xff) return interrupt(0, start);
        s.eax = s.eax - (s.eax & 0xffff) + (((d % v) << 8) | q);
      } else if (bits === 16) {
        const d = (s.edx & 0xffff) * 0x10000 + (s.eax & 0xffff);
        const q = Math.floor(d / v);
        if (q > 0xffff) return interrupt(0, start);
        s.eax = s.eax - (s.eax & 0xffff) + q;
        s.edx = s.edx - (s.edx & 0xffff) + (d % v);
      } else {
        const d = (BigInt(s.edx >>> 0) << 32n) | BigInt(s.eax >>> 0);
        const q = d / BigInt(v);
        if (q > 0xffffffffn) return interrupt(0, start);
        setR32(0, Number(q));
        setR32(2, Number(d % BigInt(v)));
      }
      return DELIVERED;
    }
    default: { // 7 IDIV: quotient truncated toward zero, remainder has the dividend's sign
      if (v === 0) return interrupt(0, start);
      if (bits === 8) {
        const d = sext16(s.eax & 0xffff);
        const dv = sext8(v);
        const q = Math.trunc(d / dv);
        if (q > 0x7f || q < -0x80) return interrupt(0, start);
        const r = d - q * dv;
        s.eax = s.eax - (s.eax & 0xffff) + (((r & 0xff) << 8) | (q & 0xff));
      } else if (bits === 16) {
        const d = ((s.edx & 0xffff) << 16) | (s.eax & 0xffff);
        const dv = sext16(v);
        const q = Math.trunc(d / dv);
        if (q > 0x7fff || q < -0x8000) return interrupt(0, start);
        const r = d - q * dv;
        s.eax = s.eax - (s.eax & 0xffff) + (q & 0xffff);
        s.edx = s.edx - (s.edx & 0xffff) + (r & 0xffff);
      } else {
        const d = BigInt.asIntN(64, (BigInt(s.edx >>> 0) << 32n) | BigInt(s.eax >>> 0));
        const dv = BigInt(v | 0);
        const q = d / dv; // BigInt division truncates toward zero
        if (q > 0x7fffffffn || q < -0x80000000n) return interrupt(0, start);
        setR32(0, Number(BigInt.asUintN(32, q)));
        setR32(2, Number(BigInt.asUintN(32, d % dv)));
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
    const count = a32 ? s.ecx >>> 0 : s.ecx & 0xffff;
    if (count === 0) return true;
  }
  const delta = (s.eflags & DF) !== 0 ? -size : size;
  const si = a32 ? s.esi >>> 0 : s.esi & 0xffff;
  const di = a32 ? s.edi >>> 0 : s.edi & 0xffff;
  // Limits first (SDM: #GP/#SS before any effect); LODS has no destination, STOS/SCAS no source.
  const src = op === 0xaa || op === 0xab || op === 0xae || op === 0xaf ? 0 : segAddr(ovr >= 0 ? ovr : SEG_DS, si, size);
  const dst = op === 0xac || op === 0xad ? 0 : segAddr(SEG_ES, di, size);
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
      const v = size === 1 ? s.eax & 0xff : size === 2 ? s.eax & 0xffff : s.eax >>> 0;
      if (size === 1) wr8(dst, v);
      else if (size === 2) wr16(dst, v);
      else wr32(dst, v);
      usesDi = true;
      break;
    }
    case 0xac: case 0xad: { // LODS
      const v = size === 1 ? rd8(src) : size === 2 ? rd16(src) : rd32(src);
      if (v < 0) return false;
      if (size === 1) s.eax = s.eax - (s.eax & 0xff) + v;
      else if (size === 2) s.eax = s.eax - (s.eax & 0xffff) + v;
      else setR32(0, v);
      usesSi = true;
      break;
    }
    default: { // SCAS: AL/AX/EAX − [ES:DI]
      const b = size === 1 ? rd8(dst) : size === 2 ? rd16(dst) : rd32(dst);
      if (b < 0) return false;
      const a = size === 1 ? s.eax & 0xff : size === 2 ? s.eax & 0xffff : s.eax >>> 0;
      sub(a, b, 0, mask, sign);
      usesDi = zfEnds = true;
      break;
    }
  }
  if (usesSi) {
    const v = (si + delta) & amask;
    s.esi = a32 ? v >>> 0 : s.esi - (s.esi & 0xffff) + v;
  }
  if (usesDi) {
    const v = (di + delta) & amask;
    s.edi = a32 ? v >>> 0 : s.edi - (s.edi & 0xffff) + v;
  }
  if (rep !== 0) {
    const count = ((a32 ? s.ecx >>> 0 : s.ecx & 0xffff) - 1) & amask;
    s.ecx = a32 ? count >>> 0 : s.ecx - (s.ecx & 0xffff) + count;
    let again = count !== 0;
    if (again && zfEnds) {
      const zf = (s.eflags & ZF) !== 0;
      again = rep === 3 ? zf : !zf; // REPE continues while equal, REPNE while not equal
    }
    if (again) ip = start;
  }
  return true;
}

/** RDMSR/WRMSR whose access the platform hands to user space: stop before the instruction, nothing of it done. */
function msrToUserSpace(reason: number): number {
  exitKind = reason;
  return ABANDONED;
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
    if (m < 0xc0) eaLin = rmAddr(m, 1);
    writeRm8(m, cond(op & 0xf) ? 1 : 0);
    return DELIVERED;
  }
  if (op >= 0x40 && op <= 0x4f) { // CMOVcc: the source is read (and may fault) whatever the condition
    const m = fetch8();
    const v = readRmV(m);
    if (v < 0) return ABANDONED;
    if (cond(op & 0xf)) setRv((m >> 3) & 7, v);
    return DELIVERED;
  }
  if (op >= 0xc8) { // BSWAP r32; with a 16-bit operand size the result is undefined
    const r = op & 7;
    const v = getR32(r);
    const sw = (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
    if (o32) setR32(r, sw);
    else setR16(r, 0); // undefined by the SDM; the hardware clears the 16-bit register (fixtures/real-kvm.json `bswap`)
    return DELIVERED;
  }
  switch (op) {
    case 0x01: return group7(start);
    case 0x06: S.cr0 &= ~0x8n; return DELIVERED; // CLTS: CR0.TS ← 0
    case 0x08: case 0x09: return DELIVERED; // INVD, WBINVD: no caches are modelled
    case 0x0b: // UD2: raise #UD
      return interrupt(6, start);
    case 0x18: case 0x19: case 0x1a: case 0x1b: case 0x1c: case 0x1d: case 0x1e: case 0x1f: { // NOP Ev, prefetch hints
      const m = fetch8();
      if (m < 0xc0) rmAddr(m, 0); // decoded, never accessed
      return DELIVERED;
    }
    case 0x20: case 0x22: return movCr(op === 0x22);
    case 0x30: { // WRMSR
      const value = (BigInt(s.edx >>> 0) << 32n) | BigInt(s.eax >>> 0);
      const written = P.wrmsr(s.ecx >>> 0, value);
      if (written === null) return msrToUserSpace(GuestExitReason.X86Wrmsr);
      if (!written) raise(13);
      return DELIVERED;
    }
    case 0x31: { // RDTSC (CR4.TSD only matters above CPL 0)
      const t = BigInt.asUintN(64, P.tsc());
      setR32(0, Number(t & 0xffffffffn));
      setR32(2, Number(t >> 32n));
      return DELIVERED;
    }
    case 0x32: { // RDMSR
      const v = P.rdmsr(s.ecx >>> 0);
      if (v === null) return msrToUserSpace(GuestExitReason.X86Rdmsr);
      if (v === undefined) raise(13);
      const u = BigInt.asUintN(64, v);
      setR32(0, Number(u & 0xffffffffn));
      setR32(2, Number(u >> 32n));
      return DELIVERED;
    }
    case 0xa2: { // CPUID
      const out = CPUID_OUT;
      P.cpuid(s.eax >>> 0, s.ecx >>> 0, out);
      setR32(0, out[0]!);
      setR32(3, out[1]!);
      setR32(1, out[2]!);
      setR32(2, out[3]!);
      return DELIVERED;
    }
    case 0xa3: case 0xab: case 0xb3: case 0xbb: return bitOp(op === 0xa3 ? 0 : op === 0xab ? 1 : op === 0xb3 ? 2 : 3, false);
    case 0xba: return bitOp(-1, true);
    case 0xa4: case 0xa5: case 0xac: case 0xad: return doubleShift(op);
    case 0xb0: case 0xb1: return cmpxchg(op === 0xb0 ? 8 : o32 ? 32 : 16);
    case 0xc0: case 0xc1: return xadd(op === 0xc0 ? 8 : o32 ? 32 : 16);
    case 0xbc: case 0xbd: { // BSF / BSR
      if (rep !== 0) fail('tzcnt/lzcnt are not implemented by the guest interpreter');
      const m = fetch8();
      const v = readRmV(m);
      if (v < 0) return ABANDONED;
      bitScan((m >> 3) & 7, v, op === 0xbd);
      return DELIVERED;
    }
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
        v = rd16(rmAddr(m, 2));
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

// ---------------------------------------------------------------------------------------------------------
// System instructions: group 7 (0F 01), control registers.

/**
 * CR0's reserved bits (6–15, 17, 19–28): a write drops them, without a fault (KVM `kvm_set_cr0`:
 * `cr0 &= ~CR0_RESERVED_BITS`; a real /dev/kvm: fixtures/real-kvm.json `mov-cr0-reserved-bits-dropped`).
 */
const CR0_RESERVED = 0x1ffaffc0;
/** CR4 bits this model accepts (SDM Vol. 3A §2.5: VME … PKE, CET, PKS); others raise #GP. */
const CR4_KNOWN = 0x01ff7fff;

/** The value a `mov crN` or `lmsw` writes to CR0, or -1 when it raises #GP (SDM MOV—Move to/from CR). */
function cr0Check(value: number): number {
  const v = value & ~CR0_RESERVED;
  if ((v & 0x80000000) !== 0 && (v & 1) === 0) return -1; // PG without PE
  if ((v & 0x20000000) !== 0 && (v & 0x40000000) === 0) return -1; // NW without CD
  return (v | 0x10) >>> 0; // ET is hard-wired to 1 (KVM: `cr0 |= X86_CR0_ET`)
}

function setCr0(v: number): void {
  const s = S;
  const old = Number(s.cr0 & 0xffffffffn);
  s.cr0 = BigInt(v);
  if ((v & 1) !== 0 && (old & 1) === 0) enteredProtectedMode = true;
}

/**
 * `mov r32, crN` (0F 20) / `mov crN, r32` (0F 22): the ModRM mod bits are ignored, the operand is always a
 * 32-bit register (zero-extended on a read). CR0, CR2, CR3, CR4 exist outside 64-bit mode; any other CR is
 * #UD. CR0's reserved bits are dropped; PG without PE or NW without CD raises #GP, as do CR4's reserved bits.
 */
function movCr(write: boolean): number {
  const s = S;
  const m = fetch8();
  const cr = (m >> 3) & 7;
  const r = m & 7;
  if (cr === 1 || cr > 4) raise(6);
  if (!write) {
    const v = cr === 0 ? s.cr0 : cr === 2 ? s.cr2 : cr === 3 ? s.cr3 : s.cr4;
    setR32(r, Number(v & 0xffffffffn));
    return DELIVERED;
  }
  const v = getR32(r);
  switch (cr) {
    case 0: {
      const c = cr0Check(v);
      if (c < 0) raise(13);
      setCr0(c);
      break;
    }
    case 2: s.cr2 = BigInt(v); break;
    case 3: s.cr3 = BigInt(v); break;
    default:
      if ((v & ~CR4_KNOWN) !== 0 || (v & 0x20000) !== 0) raise(13); // reserved bits; PCIDE needs long mode
      s.cr4 = BigInt(v);
      break;
  }
  return DELIVERED;
}

/**
 * Group 7 (0F 01): SGDT, SIDT, LGDT, LIDT, SMSW, LMSW, INVLPG (SDM Vol. 2). LGDT/LIDT with a 16-bit
 * operand size load a 24-bit base; SGDT/SIDT store the limit and the full 32-bit base. SMSW to a register
 * stores all of CR0's low 16 (or, with 0x66, 32) bits, to memory 16 bits. LMSW writes CR0.PE/MP/EM/TS and
 * cannot clear PE. The mod = 11 encodings (VMCALL, MONITOR, XGETBV, …) are not implemented.
 */
function group7(start: number): number {
  const s = S;
  const m = fetch8();
  const sub3 = (m >> 3) & 7;
  if (m >= 0xc0) {
    if (sub3 === 4) { // SMSW r16/r32
      const v = Number(s.cr0 & 0xffffffffn);
      if (o32) setR32(m & 7, v);
      else setR16(m & 7, v & 0xffff);
      return DELIVERED;
    }
    if (sub3 === 6) return lmsw(getR16(m & 7));
    if (sub3 <= 3 || sub3 === 7) return interrupt(6, start) === DELIVERED ? DELIVERED : ABANDONED;
    return fail('0F 01 with mod = 11 (VMX, MONITOR, XGETBV, …) is not implemented by the guest interpreter');
  }
  switch (sub3) {
    case 0: case 1: { // SGDT / SIDT
      const lin = rmAddr(m, 6);
      const limit = sub3 === 0 ? s.gdtLimit : s.idtLimit;
      const base = sub3 === 0 ? s.gdtBase : s.idtBase;
      wr16(lin, limit);
      wr32(lin + 2, base);
      return DELIVERED;
    }
    case 2: case 3: { // LGDT / LIDT
      const lin = rmAddr(m, 6);
      const limit = rd16(lin);
      if (limit < 0) return ABANDONED;
      let base = rd32(lin + 2);
      if (base < 0) return ABANDONED;
      if (!o32) base &= 0xffffff;
      if (sub3 === 2) {
        s.gdtLimit = limit;
        s.gdtBase = base;
        s.gdtBaseHigh = 0;
      } else {
        s.idtLimit = limit;
        s.idtBase = base;
        s.idtBaseHigh = 0;
      }
      return DELIVERED;
    }
    case 4: // SMSW m16
      wr16(rmAddr(m, 2), Number(s.cr0 & 0xffffn));
      return DELIVERED;
    case 6: { // LMSW m16
      const v = rd16(rmAddr(m, 2));
      if (v < 0) return ABANDONED;
      return lmsw(v);
    }
    case 7: // INVLPG: no TLB is modelled (real mode does not page)
      rmAddr(m, 0);
      return DELIVERED;
    default:
      return interrupt(6, start) === DELIVERED ? DELIVERED : ABANDONED;
  }
}

function lmsw(v: number): number {
  const s = S;
  const old = Number(s.cr0 & 0xffffffffn);
  setCr0(((old & ~0xf) | (v & 0xf) | (old & 1)) >>> 0);
  return DELIVERED;
}

// ---------------------------------------------------------------------------------------------------------
// Bit instructions, double shifts, CMPXCHG, XADD.

/**
 * BT/BTS/BTR/BTC (SDM Vol. 2A). `kind` 0 BT, 1 BTS, 2 BTR, 3 BTC; -1: the 0F BA group, whose ModRM.reg
 * (4–7) says which and whose offset is an imm8. A register offset into memory is signed and selects a
 * word/dword at `offset >> 4` (`>> 5`) operands from the address, wrapping within the address size; an
 * immediate offset and any register destination take the offset modulo the operand size. CF ← the bit;
 * ZF, OF, SF, AF, PF are left as they were (what this machine's hardware does: fixtures/real-kvm.json).
 */
function bitOp(kind: number, imm: boolean): number {
  const s = S;
  const m = fetch8();
  let k = kind;
  if (imm) {
    k = ((m >> 3) & 7) - 4;
    if (k < 0) return interrupt(6, S.eip) === DELIVERED ? DELIVERED : ABANDONED;
  }
  const bits = o32 ? 32 : 16;
  const size = bits >> 3;
  let v: number;
  let bit: number;
  if (m >= 0xc0) {
    bit = (imm ? fetch8() : getRv((m >> 3) & 7)) & (bits - 1);
    v = getRv(m & 7);
  } else {
    let lin: number;
    if (imm) {
      lin = rmAddr(m, size);
      bit = fetch8() & (bits - 1);
    } else {
      lin = rmAddr(m, 0);
      const off = getRv((m >> 3) & 7);
      const signed = o32 ? off | 0 : sext16(off);
      const disp = Math.floor(signed / bits) * size;
      bit = signed - Math.floor(signed / bits) * bits;
      const amask = a32 ? 0xffffffff : 0xffff;
      const offset = ((eaOff + disp) & amask) >>> 0;
      lin = segAddr(eaSeg, offset, size);
    }
    eaLin = lin;
    v = o32 ? rd32(lin) : rd16(lin);
    if (v < 0) return ABANDONED;
  }
  const cf = (v >>> bit) & 1;
  s.eflags = (s.eflags & ~CF) | cf;
  if (k === 0) return DELIVERED;
  const mask = (1 << bit) >>> 0;
  const r = (k === 1 ? v | mask : k === 2 ? v & ~mask : v ^ mask) >>> 0;
  writeRmV(m, o32 ? r : r & 0xffff);
  return DELIVERED;
}

/**
 * BSF/BSR (SDM Vol. 2A): source 0 → ZF ← 1 and the destination is unchanged; else ZF ← 0 and the index of
 * the lowest/highest set bit. CF, OF, SF, AF, PF are undefined: the model sets them as `test src, src`
 * would (CF = OF = AF = 0, SF and PF from the source), as this machine's processor does
 * (fixtures/real-kvm.json `bsf-bsr`, `bsf-zero-keeps-dest`).
 */
function bitScan(reg: number, v: number, reverse: boolean): void {
  const s = S;
  logic(v, o32 ? 0xffffffff : 0xffff, o32 ? 0x80000000 : 0x8000);
  if (v === 0) return;
  const idx = reverse ? 31 - Math.clz32(v) : 31 - Math.clz32(v & -v);
  setRv(reg, idx);
}

/**
 * SHLD (0F A4 ib, 0F A5 CL) / SHRD (0F AC, 0F AD) (SDM Vol. 2B): the count is masked to 5 bits; 0 changes
 * nothing. CF ← the last bit shifted out, SF/ZF/PF from the result, OF ← the sign changed (defined for a
 * count of 1; the model uses that formula for every count), AF ← 1 (undefined by the SDM; what this
 * machine's processor does: fixtures/real-kvm.json `shld-shrd`). A 16-bit count above 16 is
 * undefined: the model shifts the 48-bit concatenation `dst:src:dst`, as Intel processors do.
 */
function doubleShift(op: number): number {
  const s = S;
  const m = fetch8();
  const a = readRmV(m);
  if (a < 0) return ABANDONED;
  const b = getRv((m >> 3) & 7);
  const count = ((op & 1) === 0 ? fetch8() : s.ecx) & 0x1f;
  if (count === 0) return DELIVERED;
  const bits = o32 ? 32 : 16;
  const left = op < 0xa8;
  let res: number;
  let cf: number;
  if (bits === 32) {
    const wide = left ? (BigInt(a) << 32n) | BigInt(b) : (BigInt(b) << 32n) | BigInt(a);
    if (left) {
      const sh = wide << BigInt(count);
      res = Number((sh >> 32n) & 0xffffffffn);
      cf = Number((wide >> BigInt(64 - count)) & 1n);
    } else {
      res = Number((wide >> BigInt(count)) & 0xffffffffn);
      cf = Number((wide >> BigInt(count - 1)) & 1n);
    }
  } else {
    // dst:src:dst as 48 bits (left) or dst:src:dst read from the right (right)
    const wide = left ? a * 2 ** 32 + b * 2 ** 16 + a : a * 2 ** 32 + b * 2 ** 16 + a;
    if (left) {
      const sh = wide * 2 ** count;
      res = Math.floor(sh / 2 ** 32) % 0x10000;
      cf = Math.floor(wide / 2 ** (48 - count)) % 2;
    } else {
      const lowFirst = a + b * 2 ** 16 + a * 2 ** 32;
      res = Math.floor(lowFirst / 2 ** count) % 0x10000;
      cf = Math.floor(lowFirst / 2 ** (count - 1)) % 2;
    }
  }
  const sign = bits === 32 ? 0x80000000 : 0x8000;
  const of = ((res & sign) !== 0) !== ((a & sign) !== 0);
  s.eflags =
    (s.eflags & ~STATUS) |
    PARITY[res & 0xff]! |
    (res === 0 ? ZF : 0) |
    ((res & sign) !== 0 ? SF : 0) |
    AF |
    cf |
    (of ? OF : 0);
  writeRmV(m, res >>> 0);
  return DELIVERED;
}

/**
 * CMPXCHG r/m, r (SDM Vol. 2A): flags as `cmp acc, r/m`; equal → r/m ← r, else the accumulator ← r/m (a
 * 32-bit accumulator write zero-extends). A memory destination is written either way (the old value when
 * unequal), as the processor's locked write cycle does.
 */
function cmpxchg(bits: number): number {
  const s = S;
  const m = fetch8();
  const d = bits === 8 ? readRm8(m) : readRmV(m);
  if (d < 0) return ABANDONED;
  const mask = bits === 8 ? 0xff : bits === 16 ? 0xffff : 0xffffffff;
  const sign = bits === 8 ? 0x80 : bits === 16 ? 0x8000 : 0x80000000;
  const acc = bits === 8 ? s.eax & 0xff : bits === 16 ? s.eax & 0xffff : s.eax >>> 0;
  sub(acc, d, 0, mask, sign);
  const reg = (m >> 3) & 7;
  if (acc === d) {
    if (bits === 8) writeRm8(m, getR8(reg));
    else writeRmV(m, getRv(reg));
  } else {
    if (m < 0xc0) {
      if (bits === 8) writeRm8(m, d);
      else writeRmV(m, d);
    }
    if (bits === 8) setR8(0, d);
    else setRv(0, d);
  }
  return DELIVERED;
}

/** XADD r/m, r (SDM Vol. 2B): temp ← r/m + r; r ← r/m; r/m ← temp; flags as ADD. */
function xadd(bits: number): number {
  const m = fetch8();
  const d = bits === 8 ? readRm8(m) : readRmV(m);
  if (d < 0) return ABANDONED;
  const mask = bits === 8 ? 0xff : bits === 16 ? 0xffff : 0xffffffff;
  const sign = bits === 8 ? 0x80 : bits === 16 ? 0x8000 : 0x80000000;
  const reg = (m >> 3) & 7;
  const r = bits === 8 ? getR8(reg) : getRv(reg);
  const sum = add(d, r, 0, mask, sign);
  if (bits === 8) {
    setR8(reg, d);
    writeRm8(m, sum);
  } else {
    setRv(reg, d);
    writeRmV(m, sum);
  }
  return DELIVERED;
}

// ---------------------------------------------------------------------------------------------------------
// ENTER, x87 control.

/**
 * ENTER imm16, imm8 (SDM Vol. 2A) with a 16-bit stack: push BP, copy `level − 1` frame pointers from the
 * old frame, push the new frame pointer, BP ← it, SP −= imm16. The whole frame is checked against SS's limit
 * before anything is written (#SS). Linux's emulator only handles level 0 (`em_enter`); the hardware, which
 * this models, handles every level (mod 32).
 */
function enter(): void {
  const s = S;
  const alloc = fetch16();
  const level = fetch8() & 0x1f;
  const w = o32 ? 4 : 2;
  const sp0 = s.esp & 0xffff;
  const pushes = level === 0 ? 1 : level + 1;
  for (let k = 1; k <= pushes; k++) if (((sp0 - k * w) & 0xffff) + w - 1 > s.ssLimit) raise(12);
  let bp = s.ebp & 0xffff;
  const copies: number[] = [];
  for (let i = 1; i < level; i++) {
    bp = (bp - w) & 0xffff;
    if (bp + w - 1 > s.ssLimit) raise(12);
    const v = o32 ? rd32(s.ssBase + bp) : rd16(s.ssBase + bp);
    if (v < 0) fail('ENTER reading its frame from MMIO is not implemented by the guest interpreter');
    copies.push(v);
  }
  pushV(getRv(5));
  const frame = s.esp & 0xffff;
  for (const v of copies) pushV(v);
  if (level > 0) pushV(frame);
  setRv(5, frame);
  addSp(-alloc);
}

/**
 * The x87 instructions firmware uses to probe for an FPU: FNINIT (DB E3), FNSTCW m16 (D9 /7), FNSTSW m16
 * (DD /7), FNSTSW AX (DF E0). CR0.EM or CR0.TS raises #NM (vector 7). FNINIT sets FCW 0x37F, FSW 0, all
 * tags empty, FOP/FIP/FDP 0 (SDM Vol. 2A FINIT/FNINIT). Other x87 instructions are not implemented.
 */
function x87(op: number): void {
  const s = S;
  const m = fetch8();
  const known =
    (op === 0xdb && m === 0xe3) || (op === 0xdf && m === 0xe0) || ((op === 0xd9 || op === 0xdd) && m < 0xc0 && ((m >> 3) & 7) === 7);
  if (!known) fail('x87 instruction not implemented by the guest interpreter');
  if ((Number(s.cr0 & 0xcn) & 0xc) !== 0) raise(7); // EM or TS
  if (op === 0xdb) {
    s.fpuControl = 0x37f;
    s.fpuStatus = 0;
    s.fpuTag = 0;
    s.fpuOpcode = 0;
    s.fpuIp = 0;
    s.fpuDp = 0;
  } else if (op === 0xdf) setR16(0, s.fpuStatus);
  else wr16(rmAddr(m, 2), op === 0xd9 ? s.fpuControl : s.fpuStatus);
}

// ---------------------------------------------------------------------------------------------------------
// String port I/O (INS, OUTS), as Linux's emulator does it (arch/x86/kvm/emulate.c em_in/em_out,
// pio_in_emulated; x86.c emulator_pio_in_out) — KVM sends string I/O through the emulator on VMX and SVM too.

/** `in_page` of `pio_in_emulated`: bytes left in DI's page in the direction of DF (an offset, not an address). */
function inPage(di: number): number {
  return (S.eflags & DF) !== 0 ? di & 0xfff : 0x1000 - (di & 0xfff);
}

/**
 * One step of INS (6C/6D) or OUTS (6E/6F), with or without REP. OUTS exits with one element (`count` 1): SI
 * (and CX with REP) already advanced, and with REP RIP stays on the instruction with RFLAGS.RF set until
 * the run that finds CX = 0. INS exits with `count` = min(`in_page`, 1024 / size, CX) elements (Linux's
 * read-ahead; `in_page` counts bytes against a count of elements, as Linux does) and nothing changed; the
 * next run stores them at ES:DI and advances DI and CX. A REP with CX = 0 completes without an exit.
 * Returns false when nothing was done because of an exit.
 */
function stringIo(op: number, start: number): boolean {
  const s = S;
  const size = (op & 1) === 0 ? 1 : o32 ? 4 : 2;
  const amask = a32 ? 0xffffffff : 0xffff;
  const count = rep !== 0 ? (a32 ? s.ecx >>> 0 : s.ecx & 0xffff) : 1;
  if (count === 0) {
    s.eflags &= ~0x10000;
    return true;
  }
  const port = s.edx & 0xffff;
  const x = X;
  const delta = (s.eflags & DF) !== 0 ? -size : size;
  if (op >= 0x6e) { // OUTS
    const si = a32 ? s.esi >>> 0 : s.esi & 0xffff;
    const lin = segAddr(ovr >= 0 ? ovr : SEG_DS, si, size);
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
    exitKind = GuestExitReason.Io;
    s.pending = GuestPending.None;
    if (rep !== 0) {
      const c = (count - 1) & amask;
      s.ecx = (s.ecx - (s.ecx & amask) + c) >>> 0;
      s.eflags |= 0x10000; // RF: the instruction is restarted
      ip = start;
    }
    return true;
  }
  // INS: read ahead up to a page (of DI offset) or 1 KiB, then exit; the completion stores the elements.
  const di = a32 ? s.edi >>> 0 : s.edi & 0xffff;
  let n = rep !== 0 ? Math.min(inPage(di), 1024 / size, count) : 1;
  if (n === 0) n = 1;
  // The destination range must be within ES's limit (checked now: the completion cannot fault).
  for (let i = 0; i < n; i++) segAddr(SEG_ES, (di + i * delta) & amask, size);
  x.ioDirection = GuestIoDirection.In;
  x.ioSize = size;
  x.ioPort = port;
  x.ioCount = n;
  x.data.fill(0);
  exitKind = GuestExitReason.Io;
  s.pending = GuestPending.PioInString;
  s.pendingSize = size;
  s.pendingPort = port;
  s.pendingCount = n;
  s.pendingNextRip = ip;
  s.pendingLinearRip = (csBase + start) >>> 0;
  s.pendingStringFlags = (a32 ? 1 : 0) | (rep !== 0 ? 2 : 0);
  ip = start;
  return false;
}

/**
 * Completes a string input (`GuestPending.PioInString`) at the start of a run: stores the `count` elements
 * user space left in {@link GuestExit.stringData} at ES:DI (the limits were checked at the exit), advances
 * DI and, with REP, CX; RIP then moves past the instruction, or with CX still non-zero stays on it with
 * RFLAGS.RF set (the next run exits for the next batch), as Linux's emulator restarts it.
 */
function completeInString(): void {
  const s = S;
  s.pending = GuestPending.None;
  const size = s.pendingSize;
  const n = s.pendingCount;
  const wide = (s.pendingStringFlags & 1) !== 0;
  const amask = wide ? 0xffffffff : 0xffff;
  const delta = (s.eflags & DF) !== 0 ? -size : size;
  const src = X.stringData;
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

// ---------------------------------------------------------------------------------------------------------
// External interrupts: the entry point for the interrupt controllers (PIC, LAPIC).

/** {@link deliverInterrupt}: the vector was delivered through the IVT. */
export const GUEST_INTERRUPT_DELIVERED = 0;
/** {@link deliverInterrupt}: IF = 0 or an interrupt shadow holds it; the controller keeps it pending. */
export const GUEST_INTERRUPT_BLOCKED = 1;

/**
 * Whether the vCPU can take a maskable interrupt now: RFLAGS.IF = 1 and no STI / MOV SS shadow
 * (`kvm_run.ready_for_interrupt_injection` with an empty injection queue; `kvm_run.if_flag` is IF alone).
 */
export function interruptWindowOpen(state: GuestCpuState): boolean {
  return (state.eflags & X86_EFLAGS_IF) !== 0 && state.interruptShadow === 0;
}

/**
 * Delivers external interrupt `vector` (0–255) to a vCPU that is not running, as the processor does between
 * two instructions: when {@link interruptWindowOpen}, FLAGS, CS and IP are pushed, IF/TF/AC cleared and CS:IP
 * loaded from the IVT (SDM Vol. 3A §20.1.4), and a halted vCPU wakes (`halted` cleared; IP already points
 * past its `hlt`). Returns {@link GUEST_INTERRUPT_DELIVERED}, {@link GUEST_INTERRUPT_BLOCKED} (nothing changed:
 * keep it pending and ask for the window), or a {@link GuestExitReason}: `Shutdown` when the delivery
 * triple-faults (IVT entry beyond IDTR.limit and no room for #GP/#DF either, or a stack that faults), `Mmio`
 * when the IVT lies in MMIO (the exit is in `exit`; deliver again after completing it), `InternalError`.
 */
export function deliverInterrupt(state: GuestCpuState, memory: GuestMemory, vector: number, exit: GuestExit): number {
  if (!interruptWindowOpen(state)) return GUEST_INTERRUPT_BLOCKED;
  return injectEvent(state, memory, vector, exit);
}

/**
 * Delivers `vector` through the IVT whatever RFLAGS.IF and the interrupt shadow say: what VM entry does with an
 * event the hypervisor injects (an NMI, or an interrupt user space queued with KVM_INTERRUPT, which KVM injects
 * at the next entry as it is). An interrupt shadow the vCPU was in ends. Returns what {@link deliverInterrupt}
 * returns, never {@link GUEST_INTERRUPT_BLOCKED}.
 */
export function injectEvent(state: GuestCpuState, memory: GuestMemory, vector: number, exit: GuestExit): number {
  if (running) throw new UsageError('ERR_INVALID_STATE', 'deliverInterrupt: not while runGuest is running');
  if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw new UsageError('ERR_OUT_OF_RANGE', `deliverInterrupt: vector ${String(vector)} is not in 0..255`);
  running = true;
  if (S !== state) S = state;
  if (M !== memory) M = memory;
  if (X !== exit) X = exit;
  hasLookup = memory.lookup !== undefined;
  cBase = cEnd = dBase = dEnd = wBase = wEnd = 0;
  exitKind = 0;
  csBase = state.csBase;
  csLim = state.csLimit;
  ip = state.eip;
  try {
    const r = deliver(vector, state.eip, state.eip);
    if (r === DELIVERED) {
      state.eip = ip;
      state.interruptShadow = 0;
      if (exitKind === 0) return GUEST_INTERRUPT_DELIVERED;
    }
    exit.reason = exitKind as GuestExitReasonValue;
    return exitKind;
  } catch (e) {
    if (e !== EMULATION_FAILED) throw e;
    emulationFailure(state, exit);
    exit.reason = GuestExitReason.InternalError;
    return GuestExitReason.InternalError;
  } finally {
    running = false;
  }
}
