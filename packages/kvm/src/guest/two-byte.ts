/**
 * The two-byte opcode map (0F xx).
 *
 * @module
 */

import { readRm8, readRmV, rmAddr, writeRm8 } from './addressing.js';
import { cond, imul2 } from './alu.js';
import { bitOp, bitScan, cmpxchg, doubleShift, xadd } from './bit-ops.js';
import { near } from './control.js';
import { rd16, rdV } from './data-memory.js';
import { fetch16, fetch32, fetch8, sext16, sext8 } from './decode.js';
import { GuestExitReason } from './exit.js';
import { ABANDONED, DELIVERED, interrupt } from './interrupts.js';
import { getR16, getR32, getRv, setR16, setR32, setRv } from './registers.js';
import { CPUID_OUT, R, fail, raise } from './run-context.js';
import { SEG_FS, SEG_GS, SEG_SS, loadSeg } from './segments.js';
import { peekV, pushV } from './stack.js';
import { popSeg } from './step.js';
import { group15 } from './fx-state.js';
import { group6, group7, movCr } from './system.js';

/** RDMSR/WRMSR whose access the platform hands to user space: stop before the instruction, nothing of it done. */
function msrToUserSpace(reason: number): number {
  R.exitKind = reason;
  return ABANDONED;
}

/** Two-byte opcodes (0F xx). Returns DELIVERED when the instruction completed, ABANDONED for an MMIO read exit. */
export function twoByte(start: number): number {
  const s = R.S;
  const op = fetch8();
  if (op >= 0x80 && op <= 0x8f) { // Jcc rel16/rel32
    const d = R.o32 ? fetch32() | 0 : sext16(fetch16());
    if (cond(op & 0xf)) R.ip = near(R.ip + d);
    return DELIVERED;
  }
  if (op >= 0x90 && op <= 0x9f) { // SETcc r/m8
    const m = fetch8();
    if (m < 0xc0) R.eaLin = rmAddr(m, 1);
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
    if (R.o32) setR32(r, sw);
    else setR16(r, 0); // undefined by the SDM; the hardware clears the 16-bit register (fixtures/real-kvm.json `bswap`)
    return DELIVERED;
  }
  switch (op) {
    case 0xae: group15(); return DELIVERED;
    case 0x00: return group6(start);
    case 0x01: return group7(start);
    case 0x06: R.S.cr0 &= ~0x8n; return DELIVERED; // CLTS: CR0.TS ← 0
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
      const written = R.P.wrmsr(s.ecx >>> 0, value, R.X.executed + R.loopExecuted);
      if (written === null) return msrToUserSpace(GuestExitReason.X86Wrmsr);
      if (!written) raise(13);
      // Linux handles the WRMSR exit and goes through vcpu_enter_guest's requests before the next instruction.
      if (R.P.requestPending?.() === true) R.endRun = true;
      return DELIVERED;
    }
    case 0x31: { // RDTSC (CR4.TSD only matters above CPL 0): the TSC as far into the run as this instruction is
      const t = BigInt.asUintN(64, R.P.tsc(R.X.executed + R.loopExecuted));
      setR32(0, Number(t & 0xffffffffn));
      setR32(2, Number(t >> 32n));
      return DELIVERED;
    }
    case 0x32: { // RDMSR
      const v = R.P.rdmsr(s.ecx >>> 0, R.X.executed + R.loopExecuted);
      if (v === null) return msrToUserSpace(GuestExitReason.X86Rdmsr);
      if (v === undefined) raise(13);
      const u = BigInt.asUintN(64, v);
      setR32(0, Number(u & 0xffffffffn));
      setR32(2, Number(u >> 32n));
      return DELIVERED;
    }
    case 0xaa: // RSM (em_rsm): #UD outside SMM; in SMM the run ends past it and the caller loads the saved state
      if (R.P.inSmm?.() !== true) return interrupt(6, start);
      R.exitKind = GuestExitReason.Rsm;
      return DELIVERED;
    case 0xa2: { // CPUID
      const out = CPUID_OUT;
      R.P.cpuid(s.eax >>> 0, s.ecx >>> 0, out);
      setR32(0, out[0]!);
      setR32(3, out[1]!);
      setR32(1, out[2]!);
      setR32(2, out[3]!);
      return DELIVERED;
    }
    case 0xa3: case 0xab: case 0xb3: case 0xbb: return bitOp(op === 0xa3 ? 0 : op === 0xab ? 1 : op === 0xb3 ? 2 : 3, false);
    case 0xba: return bitOp(-1, true);
    case 0xa4: case 0xa5: case 0xac: case 0xad: return doubleShift(op);
    case 0xb0: case 0xb1: return cmpxchg(op === 0xb0 ? 8 : R.o32 ? 32 : 16);
    case 0xc0: case 0xc1: return xadd(op === 0xc0 ? 8 : R.o32 ? 32 : 16);
    case 0xbc: case 0xbd: { // BSF / BSR
      if (R.rep !== 0) fail('tzcnt/lzcnt are not implemented by the guest interpreter');
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
      popSeg(op === 0xa1 ? SEG_FS : SEG_GS, v);
      return DELIVERED;
    }
    case 0xb2: case 0xb4: case 0xb5: { // LSS / LFS / LGS r, m16:16 or m16:32
      const m = fetch8();
      if (m >= 0xc0) return interrupt(6, start);
      const lin = rmAddr(m, R.o32 ? 6 : 4);
      const off = rdV(lin);
      if (off < 0) return ABANDONED;
      const sel = rd16(lin + (R.o32 ? 4 : 2));
      if (sel < 0) return ABANDONED;
      loadSeg(op === 0xb2 ? SEG_SS : op === 0xb4 ? SEG_FS : SEG_GS, sel); // first: a faulting load changes nothing
      setRv((m >> 3) & 7, off);
      return DELIVERED;
    }
    case 0xaf: { // IMUL r, r/m
      const m = fetch8();
      const b = readRmV(m);
      if (b < 0) return ABANDONED;
      const reg = (m >> 3) & 7;
      setRv(reg, imul2(getRv(reg), R.o32 ? b : sext16(b)));
      return DELIVERED;
    }
    case 0xb6: case 0xbe: { // MOVZX / MOVSX r, r/m8
      const m = fetch8();
      const v = readRm8(m);
      if (v < 0) return ABANDONED;
      const r = op === 0xb6 ? v : sext8(v);
      setRv((m >> 3) & 7, R.o32 ? r >>> 0 : r & 0xffff);
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
      setRv((m >> 3) & 7, R.o32 ? r >>> 0 : r & 0xffff);
      return DELIVERED;
    }
    default:
      return fail('two-byte opcode not implemented by the guest interpreter');
  }
}
