/**
 * The guest's x87 and SSE state where KVM keeps it: the vCPU's FPU image (`GuestPlatform.fxState`), the legacy
 * FXSAVE area and — in an image of at least 576 bytes — the XSAVE header, whose XSTATE_BV says which components
 * hold live state. A component whose bit is clear is in its initial configuration whatever its bytes say: the host
 * saved it with XSAVES/XSAVEOPT, which skip a component in its init state (SDM Vol. 1 13.6, "init optimization"),
 * and `KVM_SET_FPU` writes the bytes without touching the header (arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl_set_fpu`).
 * So, as on the real kernel (conformance facts `xsave.x87.*`): after `KVM_SET_FPU` on a new vCPU the guest still
 * sees FCW 0x37f; after the guest's `FNINIT` the x87 bit is clear and `KVM_GET_FPU` shows the old bytes while
 * `KVM_GET_XSAVE` shows the init values.
 *
 * The guest reads through {@link x87Read}; a write first makes the component live ({@link liveComponent}: its init
 * values written, its bit set), `FNINIT` returns x87 to its init configuration ({@link x87Init}). MXCSR is saved
 * and restored whenever SSE or AVX is (SDM 13.7/13.8): its bytes are always live. An image of only 512 bytes (no
 * header: a platform without XSAVE) is always live.
 *
 * @module
 */

/** Offsets in the FXSAVE area (SDM Vol. 2A, Table 3-43). */
export const FX = { fcw: 0, fsw: 2, ftw: 4, fop: 6, fip: 8, fdp: 16, mxcsr: 24, mxcsrMask: 28, st: 32, xmm: 160, xstateBv: 512 } as const;

/** XSAVE state component 0: x87. */
export const X87 = 0;
/** XSAVE state component 1: SSE (the XMM registers). */
export const SSE = 1;

/** The x87 control state: FCW, FSW, the abridged FTW, FOP, FIP and FDP (their low 32 bits). */
export interface X87Words {
  fcw: number;
  fsw: number;
  ftw: number;
  fop: number;
  fip: number;
  fdp: number;
}

function view(image: Uint8Array): DataView {
  return new DataView(image.buffer, image.byteOffset, image.byteLength);
}

/** Whether component `c` holds live state (its XSTATE_BV bit, or always without a header). */
export function isLive(image: Uint8Array, c: number): boolean {
  return image.length < FX.xstateBv + 64 || ((image[FX.xstateBv] ?? 0) & (1 << c)) !== 0;
}

/** The x87 control state the guest sees: FNINIT's values while x87 is in its init configuration. */
export function x87Read(image: Uint8Array): X87Words {
  if (!isLive(image, X87)) return { fcw: 0x37f, fsw: 0, ftw: 0, fop: 0, fip: 0, fdp: 0 };
  const dv = view(image);
  return {
    fcw: dv.getUint16(FX.fcw, true),
    fsw: dv.getUint16(FX.fsw, true),
    ftw: dv.getUint8(FX.ftw),
    fop: dv.getUint16(FX.fop, true),
    fip: dv.getUint32(FX.fip, true),
    fdp: dv.getUint32(FX.fdp, true),
  };
}

/**
 * Make component `c` live before the guest changes it: a component in its init configuration gets its init values
 * (x87: FCW 0x37f, the rest and ST0–7 zero; SSE: XMM0–15 zero) and its XSTATE_BV bit.
 */
export function liveComponent(image: Uint8Array, c: number): void {
  if (isLive(image, c)) return;
  if (c === X87) {
    image.fill(0, 0, FX.mxcsr);
    image.fill(0, FX.st, FX.xmm);
    view(image).setUint16(FX.fcw, 0x37f, true);
  } else {
    image.fill(0, FX.xmm, FX.xmm + 256);
  }
  image[FX.xstateBv] = (image[FX.xstateBv] ?? 0) | (1 << c);
}

/** Write the x87 control state (FLDCW, FXRSTOR): x87 becomes live. FIP and FDP are stored zero-extended. */
export function x87Write(image: Uint8Array, w: X87Words): void {
  liveComponent(image, X87);
  const dv = view(image);
  dv.setUint16(FX.fcw, w.fcw, true);
  dv.setUint16(FX.fsw, w.fsw, true);
  dv.setUint8(FX.ftw, w.ftw);
  dv.setUint8(FX.ftw + 1, 0);
  dv.setUint16(FX.fop, w.fop, true);
  dv.setBigUint64(FX.fip, BigInt(w.fip >>> 0), true);
  dv.setBigUint64(FX.fdp, BigInt(w.fdp >>> 0), true);
}

/**
 * FNINIT: x87 in its init configuration. With a header its bit is cleared and its bytes left as they are (the host's
 * XSAVES does not write a component in its init state); without one the init values are written.
 */
export function x87Init(image: Uint8Array): void {
  if (image.length >= FX.xstateBv + 64) {
    image[FX.xstateBv] = (image[FX.xstateBv] ?? 0) & ~(1 << X87);
    return;
  }
  x87Write(image, { fcw: 0x37f, fsw: 0, ftw: 0, fop: 0, fip: 0, fdp: 0 });
  image.fill(0, FX.st, FX.xmm);
}
