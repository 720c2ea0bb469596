/**
 * The general decoder: one instruction of the one-byte opcode map, with every prefix, through the fetch and
 * memory helpers (the fast path of `execute` handles the common prefix-free forms itself).
 *
 * @module
 */

import { operandAddr, readRm8, readRmV, rmAddr, writeRm8, writeRmV } from './addressing.js';
import { alu, asciiAdjust, cond, dec, decimalAdjust, group3, imul2, inc, logic, shift } from './alu.js';
import { far, loadFlags, near } from './control.js';
import { GUEST_SHADOW_MOV_SS, GUEST_SHADOW_STI, X86_EFLAGS_FIXED, X86_EFLAGS_IF } from './cpu-state.js';
import { rd16, rd32, rd8, rdV, wr16, wr8, wrV } from './data-memory.js';
import { PREFIX, fetch16, fetch32, fetch8, fetchV, lockable, readPrefixes, sext16, sext8 } from './decode.js';
import { checkFarTarget, cpl } from './descriptors.js';
import { GuestExitReason, GuestIoDirection } from './exit.js';
import { AF, CF, DF, OF, PF, SF, ZF } from './flags.js';
import { STEP_ABANDONED, STEP_DONE } from './interpreter.js';
import { DELIVERED, interrupt, invalidOpcode, softwareInterrupt } from './interrupts.js';
import { pio, stringIo } from './port-io.js';
import { getR16, getR32, getR8, getRv, setAx, setR16, setR32, setR8, setRv } from './registers.js';
import { R, fail, raise } from './run-context.js';
import { SEG_CS, SEG_DS, SEG_ES, SEG_GS, SEG_SS, loadSeg, selectorOf } from './segments.js';
import { addSp, enter, peek16, peekV, pushV, ssAddr, stackAddr } from './stack.js';
import { stringOp } from './string-ops.js';
import { x87 } from './system.js';
import { twoByte } from './two-byte.js';

/**
 * Decodes and executes the one instruction at `start` through the general decoder (all prefixes, all
 * implemented opcodes, fetches that may cross slots). Commits RIP and returns STEP_DONE — with `exitKind`
 * set if the instruction exits — or returns STEP_ABANDONED, committing nothing, when an MMIO read (or a
 * shutdown) must happen first.
 */
export function step(start: number): number {
  const s = R.S;
  R.csBase = s.csBase;
  R.ip = start;
  R.csLim = s.csLimit;
  let op = fetch8();
  if (PREFIX[op] !== 0) {
    op = readPrefixes(op);
    if (R.lock && !lockable(op)) raise(6);
  } else {
    R.o32 = R.a32 = R.def32;
    if (R.prefixDirty) {
      R.lock = false;
      R.ovr = -1;
      R.rep = 0;
      R.prefixDirty = false;
    }
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
      const r = alu(op >> 3, a, getRv((m >> 3) & 7), R.o32 ? 0xffffffff : 0xffff, R.o32 ? 0x80000000 : 0x8000);
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
      const r = alu(op >> 3, getRv(reg), b, R.o32 ? 0xffffffff : 0xffff, R.o32 ? 0x80000000 : 0x8000);
      if (op !== 0x3b) setRv(reg, r);
      break;
    }
    case 0x04: case 0x0c: case 0x14: case 0x1c: case 0x24: case 0x2c: case 0x34: case 0x3c: {
      const r = alu(op >> 3, s.eax & 0xff, fetch8(), 0xff, 0x80);
      if (op !== 0x3c) s.eax = s.eax - (s.eax & 0xff) + r;
      break;
    }
    case 0x05: case 0x0d: case 0x15: case 0x1d: case 0x25: case 0x2d: case 0x35: case 0x3d: {
      if (R.o32) {
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
      popSeg(op === 0x07 ? SEG_ES : op === 0x17 ? SEG_SS : SEG_DS, v);
      if (op === 0x17) R.shadowSet = GUEST_SHADOW_MOV_SS;
      break;
    }

    // ---- INC/DEC r16 (40–4F) -------------------------------------------------------------------------
    case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: case 0x46: case 0x47:
      if (R.o32) setR32(op & 7, inc(getR32(op & 7), 0xffffffff, 0x80000000));
      else setR16(op & 7, inc(getR16(op & 7), 0xffff, 0x8000));
      break;
    case 0x48: case 0x49: case 0x4a: case 0x4b: case 0x4c: case 0x4d: case 0x4e: case 0x4f:
      if (R.o32) setR32(op & 7, dec(getR32(op & 7), 0xffffffff, 0x80000000));
      else setR16(op & 7, dec(getR16(op & 7), 0xffff, 0x8000));
      break;

    // ---- PUSH/POP r16 (50–5F) ------------------------------------------------------------------------
    case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: case 0x57:
      pushV(getRv(op & 7)); // PUSH SP pushes the value before the decrement (286 and later).
      break;
    case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e: case 0x5f: {
      const v = peekV(0);
      if (v < 0) return STEP_ABANDONED;
      addSp(R.o32 ? 4 : 2);
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
      const w = R.o32 ? 4 : 2;
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
    case 0x6a: pushV(R.o32 ? sext8(fetch8()) >>> 0 : sext8(fetch8()) & 0xffff); break;

    // ---- IMUL r, r/m, imm (69, 6B) -------------------------------------------------------------------
    case 0x69: case 0x6b: {
      const m = fetch8();
      const a = readRmV(m);
      if (a < 0) return STEP_ABANDONED;
      const b = op === 0x6b ? sext8(fetch8()) : R.o32 ? fetch32() | 0 : sext16(fetch16());
      setRv((m >> 3) & 7, imul2(a, b));
      break;
    }

    // ---- Jcc rel8 (70–7F) ----------------------------------------------------------------------------
    case 0x70: case 0x71: case 0x72: case 0x73: case 0x74: case 0x75: case 0x76: case 0x77:
    case 0x78: case 0x79: case 0x7a: case 0x7b: case 0x7c: case 0x7d: case 0x7e: case 0x7f: {
      const d = sext8(fetch8());
      if (cond(op & 0xf)) R.ip = near(R.ip + d);
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
      const mask = R.o32 ? 0xffffffff : 0xffff;
      const b = op === 0x83 ? (sext8(fetch8()) & mask) >>> 0 : fetchV();
      const r = alu(sub3, a, b, mask, R.o32 ? 0x80000000 : 0x8000);
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
      logic(a & getRv((m >> 3) & 7), R.o32 ? 0xffffffff : 0xffff, R.o32 ? 0x80000000 : 0x8000);
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
      if (m < 0xc0) R.eaLin = rmAddr(m, 1);
      writeRm8(m, getR8((m >> 3) & 7));
      break;
    }
    case 0x89: {
      const m = fetch8();
      if (m < 0xc0) R.eaLin = rmAddr(m, R.o32 ? 4 : 2);
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
      setRv((m >> 3) & 7, R.o32 ? R.eaOff : R.eaOff & 0xffff);
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
      if (seg === SEG_SS) R.shadowSet = GUEST_SHADOW_MOV_SS;
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
      if (m < 0xc0) R.eaLin = rmAddr(m, R.o32 ? 4 : 2);
      addSp(R.o32 ? 4 : 2);
      if (m < 0xc0 && R.eaUsesSp && R.a32) R.eaLin += R.o32 ? 4 : 2; // address computed after the pop
      writeRmV(m, v);
      break;
    }

    // ---- NOP / XCHG AX, r ----------------------------------------------------------------------------
    case 0x90: // NOP; with F3, PAUSE: a spin-wait hint the platform may turn into a yield (pause-loop exiting)
      if (R.rep === 3 && R.P.pauseExits?.() === true) R.endRun = true;
      break;
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
      if ((s.eflags & OF) !== 0 && softwareInterrupt(4, R.ip) !== DELIVERED) return STEP_ABANDONED;
      break;
    case 0x98: // CBW / CWDE
      if (R.o32) setR32(0, sext16(s.eax & 0xffff));
      else s.eax = s.eax - (s.eax & 0xffff) + (sext8(s.eax & 0xff) & 0xffff);
      break;
    case 0x99: // CWD / CDQ
      if (R.o32) setR32(2, (s.eax & 0x80000000) !== 0 ? 0xffffffff : 0);
      else s.edx = s.edx - (s.edx & 0xffff) + ((s.eax & 0x8000) !== 0 ? 0xffff : 0);
      break;
    case 0x9a: { // CALL ptr16:16 / ptr16:32
      const offset = fetchV();
      const selector = fetch16();
      farCall(selector, offset);
      break;
    }
    case 0x9b: // WAIT/FWAIT: #NM when CR0.MP and CR0.TS; no x87 exception is ever pending
      if ((Number(s.cr0 & 0xan) & 0xa) === 0xa) raise(7);
      break;
    case 0xd9: case 0xdb: case 0xdd: case 0xdf: x87(op); break;
    case 0x9c: pushV(R.o32 ? s.eflags & 0x00fcffff : s.eflags & 0xffff); break; // PUSHF
    case 0x9d: { // POPF
      const v = peekV(0);
      if (v < 0) return STEP_ABANDONED;
      addSp(R.o32 ? 4 : 2);
      loadFlags(v, R.o32);
      break;
    }
    case 0x9e: // SAHF
      s.eflags = (s.eflags & ~(SF | ZF | AF | PF | CF)) | ((s.eax >> 8) & (SF | ZF | AF | PF | CF));
      break;
    case 0x9f: // LAHF
      s.eax = s.eax - (s.eax & 0xff00) + (((s.eflags & (SF | ZF | AF | PF | CF)) | X86_EFLAGS_FIXED) << 8);
      break;

    // ---- MOV AL/AX, moffs (A0–A3) --------------------------------------------------------------------
    case 0xa0: case 0xa1: case 0xa2: case 0xa3:
      if (!movMoffs(op, R.a32 ? fetch32() : fetch16())) return STEP_ABANDONED;
      break;

    // ---- String instructions (A4–A7, AA–AF) ----------------------------------------------------------
    case 0xa4: case 0xa5: case 0xa6: case 0xa7: case 0xaa: case 0xab: case 0xac: case 0xad: case 0xae: case 0xaf: {
      if (!stringOp(op, start)) return STEP_ABANDONED;
      break;
    }
    case 0xa8: logic((s.eax & 0xff) & fetch8(), 0xff, 0x80); break; // TEST AL, imm8
    case 0xa9: // TEST AX, imm16
      if (R.o32) logic((s.eax >>> 0) & fetch32(), 0xffffffff, 0x80000000);
      else logic(s.eax & 0xffff & fetch16(), 0xffff, 0x8000);
      break;

    // ---- MOV r, imm (B0–BF) --------------------------------------------------------------------------
    case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
      setR8(op & 7, fetch8());
      break;
    case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf:
      if (R.o32) setR32(op & 7, fetch32());
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
      writeRmV(m, shift((m >> 3) & 7, v, count, R.o32 ? 32 : 16));
      break;
    }

    // ---- RET / RETF / LES / LDS / MOV r/m, imm / LEAVE -----------------------------------------------
    case 0xc2: case 0xc3: { // RET [imm16]
      const extra = op === 0xc2 ? fetch16() : 0;
      const v = peekV(0);
      if (v < 0) return STEP_ABANDONED;
      addSp((R.o32 ? 4 : 2) + extra);
      R.ip = near(v);
      break;
    }
    case 0xc4: case 0xc5: { // LES / LDS
      const m = fetch8();
      if (m >= 0xc0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      const lin = rmAddr(m, R.o32 ? 6 : 4);
      const off = rdV(lin);
      if (off < 0) return STEP_ABANDONED;
      const sel = rd16(lin + (R.o32 ? 4 : 2));
      if (sel < 0) return STEP_ABANDONED;
      loadSeg(op === 0xc4 ? SEG_ES : SEG_DS, sel); // first: a faulting load changes nothing
      setRv((m >> 3) & 7, off);
      break;
    }
    case 0xc6: {
      const m = fetch8();
      if ((m & 0x38) !== 0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      if (m < 0xc0) R.eaLin = rmAddr(m, 1);
      writeRm8(m, fetch8());
      break;
    }
    case 0xc7: {
      const m = fetch8();
      if ((m & 0x38) !== 0) {
        if (!invalidOpcode(start)) return STEP_ABANDONED;
        break;
      }
      if (m < 0xc0) R.eaLin = rmAddr(m, R.o32 ? 4 : 2);
      writeRmV(m, fetchV());
      break;
    }
    case 0xc8: enter(); break;
    case 0xc9: { // LEAVE: SP ← BP (ESP ← EBP with a 32-bit stack), then pop BP
      const w = R.o32 ? 4 : 2;
      const bp = R.stack32 ? s.ebp >>> 0 : s.ebp & 0xffff;
      const v = R.o32 ? rd32(ssAddr(bp, w)) : rd16(ssAddr(bp, w));
      if (v < 0) return STEP_ABANDONED;
      if (R.stack32) s.esp = (bp + w) >>> 0;
      else setR16(4, (bp + w) & 0xffff);
      setRv(5, v);
      break;
    }
    case 0xca: case 0xcb: { // RETF [imm16]
      const extra = op === 0xca ? fetch16() : 0;
      const w = R.o32 ? 4 : 2;
      const off = peekV(0);
      if (off < 0) return STEP_ABANDONED;
      const sel = peek16(w);
      if (sel < 0) return STEP_ABANDONED;
      far(sel, off, true);
      addSp(2 * w + extra);
      break;
    }

    // ---- INT / IRET ----------------------------------------------------------------------------------
    case 0xcc: if (softwareInterrupt(3, R.ip) !== DELIVERED) return STEP_ABANDONED; break;
    case 0xcd: {
      const vector = fetch8();
      if (softwareInterrupt(vector, R.ip) !== DELIVERED) return STEP_ABANDONED;
      break;
    }
    case 0xcf: {
      const w = R.o32 ? 4 : 2;
      const off = peekV(0);
      if (off < 0) return STEP_ABANDONED;
      const sel = peekV(w);
      if (sel < 0) return STEP_ABANDONED;
      const fl = peekV(2 * w);
      if (fl < 0) return STEP_ABANDONED;
      if (R.pe) {
        if ((s.eflags & 0x4000) !== 0) fail('IRET with NT = 1 (a task return) is not implemented by the guest interpreter');
        if (R.o32 && (fl & 0x20000) !== 0 && cpl() === 0) fail('IRET to virtual-8086 mode is not implemented by the guest interpreter');
      }
      far(sel & 0xffff, off, true);
      addSp(3 * w);
      loadFlags(fl, R.o32);
      if (R.P.iret?.() === true) R.endRun = true;
      break;
    }

    case 0xd7: { // XLAT
      const lin = operandAddr(false, R.a32 ? ((s.ebx >>> 0) + (s.eax & 0xff)) >>> 0 : ((s.ebx & 0xffff) + (s.eax & 0xff)) & 0xffff, 1);
      const v = rd8(lin);
      if (v < 0) return STEP_ABANDONED;
      s.eax = s.eax - (s.eax & 0xff) + v;
      break;
    }

    // ---- LOOP / JCXZ (E0–E3) -------------------------------------------------------------------------
    case 0xe0: case 0xe1: case 0xe2: case 0xe3: {
      const d = sext8(fetch8());
      let count: number;
      if (op === 0xe3) count = R.a32 ? s.ecx >>> 0 : s.ecx & 0xffff;
      else if (R.a32) s.ecx = count = ((s.ecx >>> 0) - 1) >>> 0;
      else {
        count = ((s.ecx & 0xffff) - 1) & 0xffff;
        s.ecx = s.ecx - (s.ecx & 0xffff) + count;
      }
      const zf = (s.eflags & ZF) !== 0;
      const taken =
        op === 0xe3 ? count === 0 : op === 0xe2 ? count !== 0 : op === 0xe1 ? count !== 0 && zf : count !== 0 && !zf;
      if (taken) R.ip = near(R.ip + d);
      break;
    }

    // ---- IN / OUT ------------------------------------------------------------------------------------
    case 0xe4: { const port = fetch8(); pio(GuestIoDirection.In, 1, port, start); break; }
    case 0xe5: { const port = fetch8(); pio(GuestIoDirection.In, R.o32 ? 4 : 2, port, start); break; }
    case 0xe6: { const port = fetch8(); pio(GuestIoDirection.Out, 1, port, start); break; }
    case 0xe7: { const port = fetch8(); pio(GuestIoDirection.Out, R.o32 ? 4 : 2, port, start); break; }
    case 0xec: pio(GuestIoDirection.In, 1, s.edx & 0xffff, start); break;
    case 0xed: pio(GuestIoDirection.In, R.o32 ? 4 : 2, s.edx & 0xffff, start); break;
    case 0xee: pio(GuestIoDirection.Out, 1, s.edx & 0xffff, start); break;
    case 0xef: pio(GuestIoDirection.Out, R.o32 ? 4 : 2, s.edx & 0xffff, start); break;

    // ---- CALL / JMP ----------------------------------------------------------------------------------
    case 0xe8: {
      const d = R.o32 ? fetch32() : fetch16();
      pushV(R.ip);
      R.ip = near(R.ip + d);
      break;
    }
    case 0xe9: {
      const d = R.o32 ? fetch32() : fetch16();
      R.ip = near(R.ip + d);
      break;
    }
    case 0xea: {
      const offset = fetchV();
      far(fetch16(), offset);
      break;
    }
    case 0xeb: {
      const d = sext8(fetch8());
      R.ip = near(R.ip + d);
      break;
    }

    // ---- HLT, flag instructions ----------------------------------------------------------------------
    case 0xf4: // kvm_emulate_halt: skip the instruction, then exit with KVM_EXIT_HLT.
      R.exitKind = GuestExitReason.Hlt;
      s.halted = true;
      break;
    case 0xf5: s.eflags ^= CF; break; // CMC
    case 0xf8: s.eflags &= ~CF; break; // CLC
    case 0xf9: s.eflags |= CF; break; // STC
    case 0xfa: s.eflags &= ~X86_EFLAGS_IF; break; // CLI (CPL 0)
    case 0xfb: // STI: setting IF opens a one-instruction interrupt shadow
      if ((s.eflags & X86_EFLAGS_IF) === 0) R.shadowSet = GUEST_SHADOW_STI;
      s.eflags |= X86_EFLAGS_IF;
      break;
    case 0xfc: s.eflags &= ~DF; break; // CLD
    case 0xfd: s.eflags |= DF; break; // STD

    // ---- Group 3 (F6, F7) ----------------------------------------------------------------------------
    case 0xf6: case 0xf7: {
      const r = group3(op === 0xf6 ? 8 : R.o32 ? 32 : 16, start);
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
        case 0: writeRmV(m, R.o32 ? inc(v, 0xffffffff, 0x80000000) : inc(v, 0xffff, 0x8000)); break;
        case 1: writeRmV(m, R.o32 ? dec(v, 0xffffffff, 0x80000000) : dec(v, 0xffff, 0x8000)); break;
        case 2: pushV(R.ip); R.ip = near(v); break; // CALL r/m
        case 4: R.ip = near(v); break; // JMP r/m
        case 6: pushV(v); break; // PUSH r/m
        default: { // 3 CALL m16:16, 5 JMP m16:16
          const sel = rd16(R.eaLin + (R.o32 ? 4 : 2));
          if (sel < 0) return STEP_ABANDONED;
          if (sub3 === 3) farCall(sel, v);
          else far(sel, v);
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

  s.eip = R.ip;
  return STEP_DONE;
}

/**
 * MOV AL/AX/EAX, moffs and back (A0–A3, `op`) at offset `off` of DS (or the override); false when an MMIO read must
 * exit first.
 */
export function movMoffs(op: number, off: number): boolean {
  const s = R.S;
  const lin = operandAddr(false, off, op === 0xa0 || op === 0xa2 ? 1 : R.o32 ? 4 : 2);
  if (op === 0xa0) {
    const v = rd8(lin);
    if (v < 0) return false;
    s.eax = s.eax - (s.eax & 0xff) + v;
  } else if (op === 0xa1) {
    const v = rdV(lin);
    if (v < 0) return false;
    setRv(0, v);
  } else if (op === 0xa2) wr8(lin, s.eax & 0xff);
  else wrV(lin, getRv(0));
  return true;
}

/**
 * CALL far: pushes CS and (E)IP, then transfers. In protected mode the target and the room for the pushes
 * are checked first, so a #GP/#NP/#SS changes nothing.
 */
function farCall(selector: number, offset: number): void {
  const s = R.S;
  const w = R.o32 ? 4 : 2;
  if (R.pe) {
    checkFarTarget(selector, near(offset), false);
    stackAddr(-2 * w, 2 * w);
  }
  pushV(s.csSelector);
  pushV(R.ip);
  far(selector, offset);
}

/**
 * POP ES/SS/DS (and, from the two-byte map, FS/GS) after the value was read: the load comes first, so a
 * faulting load changes nothing; SP moves by the stack width in effect before the load.
 */
export function popSeg(seg: number, v: number): void {
  const wasStack32 = R.stack32;
  loadSeg(seg, v);
  const now = R.stack32;
  R.stack32 = wasStack32;
  addSp(R.o32 ? 4 : 2);
  R.stack32 = now;
}
