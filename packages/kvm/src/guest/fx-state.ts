/**
 * Group 15 (0F AE) as firmware uses it: FXSAVE and FXRSTOR (the x87/MMX/SSE state to and from a 512-byte area,
 * SDM Vol. 2A "FXSAVE", Table 3-43 for the non-64-bit layout), LDMXCSR/STMXCSR, and the fences LFENCE, MFENCE
 * and SFENCE (no effect on a model that executes one instruction at a time). SeaBIOS's 16-bit entry points save
 * the caller's FPU state with FXSAVE around their 32-bit C code.
 *
 * Under KVM these run natively on the host CPU, which has FXSR and SSE whatever CPUID the guest was given, so
 * the guest's CPUID table is not consulted. The whole state — the x87 control, status and abridged tag words, FOP,
 * FIP, FDP, MXCSR, the ST/MM and XMM registers — is the vCPU's FPU image ({@link GuestPlatform.fxState}), read and
 * written as x87-state.ts says (a component XSTATE_BV marks as in its init configuration reads as its init values;
 * FXRSTOR makes x87 and SSE live). FCS and FDS are stored as 0 (the CPUs KVM models deprecate them, CPUID.7.0:
 * EBX[13]). FXSAVE writes bytes 0–287 (through XMM7); the reserved bytes 288–463 and the software bytes 464–511
 * are left as they were.
 *
 * @module
 */

import { rmAddr } from './addressing.js';
import { byteAt, rd32, wr32, writeByte } from './data-memory.js';
import { fetch8 } from './decode.js';
import type { GuestPlatform } from './platform.js';
import { R, fail, raise } from './run-context.js';
import { SSE, X87, isLive, liveComponent, x87Read, x87Write } from './x87-state.js';

/** Bytes of the FXSAVE layout this model stores (FCW through XMM7). */
const STORED = 288;

/** Offsets in the FXSAVE area (SDM Vol. 2A, Table 3-43). */
const FX_FCW = 0;
const FX_FSW = 2;
const FX_FTW = 4;
const FX_FOP = 6;
const FX_FIP = 8;
const FX_FDP = 16;
const FX_MXCSR = 24;
const FX_MXCSR_MASK = 28;
const FX_REGS = 32; // ST0–7 (16 bytes each)
const FX_XMM = 160; // XMM0–7 (16 bytes each)

/** Group 15 (0F AE /r). */
export function group15(): void {
  const m = fetch8();
  const r = (m >> 3) & 7;
  if (m >= 0xc0) {
    if (r >= 5) return; // LFENCE, MFENCE, SFENCE: ordering only
    raise(6);
  }
  const cr0 = Number(R.S.cr0 & 0xcn);
  if (r === 0 || r === 1) {
    if ((cr0 & 4) !== 0) raise(6); // CR0.EM: #UD
    if ((cr0 & 8) !== 0) raise(7); // CR0.TS: #NM
    const lin = rmAddr(m, 512);
    if ((R.eaOff & 0xf) !== 0) raise(13); // not 16-byte aligned: #GP(0) in every mode
    const image = fxImage(R.P);
    if (r === 0) fxsave(lin, image);
    else fxrstor(lin, image);
    return;
  }
  if (r === 2 || r === 3) {
    // LDMXCSR / STMXCSR: #UD without CR4.OSFXSR or with CR0.EM; #NM with CR0.TS.
    if ((Number(R.S.cr4 & 0x200n) & 0x200) === 0 || (cr0 & 4) !== 0) raise(6);
    if ((cr0 & 8) !== 0) raise(7);
    const lin = rmAddr(m, 4);
    const image = fxImage(R.P);
    const dv = new DataView(image.buffer, image.byteOffset, 512);
    if (r === 3) {
      wr32(lin, dv.getUint32(FX_MXCSR, true));
      return;
    }
    const v = rd32(lin);
    if (v < 0) fail('LDMXCSR from memory that is not RAM');
    if ((v & ~dv.getUint32(FX_MXCSR_MASK, true)) !== 0) raise(13);
    liveComponent(image, SSE);
    dv.setUint32(FX_MXCSR, v, true);
    return;
  }
  fail(`0F AE /${r} (XSAVE family, CLFLUSH) is not implemented by the guest interpreter`);
}

function fxImage(p: GuestPlatform): Uint8Array {
  const image = p.fxState;
  if (image === undefined || image.length < 512) return fail('FXSAVE/FXRSTOR: the platform has no FPU state');
  return image;
}

/** FXSAVE: the state as the guest has it (init values for a component in its init configuration), into guest memory at `lin`. */
function fxsave(lin: number, image: Uint8Array): void {
  const w = x87Read(image);
  const area = new Uint8Array(STORED);
  const dv = new DataView(area.buffer);
  dv.setUint16(FX_FCW, w.fcw, true);
  dv.setUint16(FX_FSW, w.fsw, true);
  area[FX_FTW] = w.ftw;
  dv.setUint16(FX_FOP, w.fop, true);
  dv.setUint32(FX_FIP, w.fip >>> 0, true);
  dv.setUint32(FX_FDP, w.fdp >>> 0, true);
  area.set(image.subarray(FX_MXCSR, FX_REGS), FX_MXCSR);
  if (isLive(image, X87)) area.set(image.subarray(FX_REGS, FX_XMM), FX_REGS);
  if (isLive(image, SSE)) area.set(image.subarray(FX_XMM, STORED), FX_XMM);
  for (let i = 0; i < STORED; i++) {
    if (!writeByte((lin + i) >>> 0, area[i]!)) fail('FXSAVE to guest memory that is not writable RAM');
  }
}

/** FXRSTOR: #GP(0) when MXCSR sets a bit outside MXCSR_MASK; else the whole state from guest memory at `lin` (x87 and SSE live). */
function fxrstor(lin: number, image: Uint8Array): void {
  const area = new Uint8Array(STORED);
  for (let i = 0; i < STORED; i++) {
    const b = byteAt((lin + i) >>> 0);
    if (b < 0) fail('FXRSTOR from guest memory that is not RAM');
    area[i] = b;
  }
  const dv = new DataView(area.buffer);
  const mask = new DataView(image.buffer, image.byteOffset, 512).getUint32(FX_MXCSR_MASK, true);
  if ((dv.getUint32(FX_MXCSR, true) & ~mask) !== 0) raise(13);
  x87Write(image, {
    fcw: dv.getUint16(FX_FCW, true),
    fsw: dv.getUint16(FX_FSW, true),
    ftw: area[FX_FTW]!,
    fop: dv.getUint16(FX_FOP, true) & 0x7ff,
    fip: dv.getUint32(FX_FIP, true),
    fdp: dv.getUint32(FX_FDP, true),
  });
  liveComponent(image, SSE);
  image.set(area.subarray(FX_MXCSR, FX_MXCSR_MASK), FX_MXCSR);
  image.set(area.subarray(FX_REGS, STORED), FX_REGS);
}
