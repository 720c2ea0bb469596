/**
 * General-purpose registers by their ModRM number: AX CX DX BX SP BP SI DI; for bytes AL CL DL BL AH CH DH BH.
 *
 * @module
 */

import { R } from './run-context.js';

/** AX ← `v` (bits 31:16 of EAX kept). */
export function setAx(v: number): void {
  const s = R.S;
  s.eax = s.eax - (s.eax & 0xffff) + (v & 0xffff);
}

export function getR8(i: number): number {
  const s = R.S;
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

export function setR8(i: number, v: number): void {
  const s = R.S;
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

export function getR16(i: number): number {
  const s = R.S;
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

export function setR16(i: number, v: number): void {
  const s = R.S;
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

export function getR32(i: number): number {
  const s = R.S;
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
export function setR32(i: number, v: number): void {
  const s = R.S;
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

export function getRv(i: number): number {
  return R.o32 ? getR32(i) : getR16(i);
}

export function setRv(i: number, v: number): void {
  if (R.o32) setR32(i, v);
  else setR16(i, v);
}
