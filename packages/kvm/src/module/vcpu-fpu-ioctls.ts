/**
 * The FPU state of a vCPU (arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl_get_fpu` / `_set_fpu`,
 * `kvm_vcpu_ioctl_x86_get_xsave2` / `_set_xsave`, `kvm_vcpu_ioctl_x86_get_xcrs` / `_set_xcrs`; the user-ABI copies of
 * arch/x86/kernel/fpu/core.c `fpu_copy_guest_fpstate_to_uabi` / `fpu_copy_uabi_to_guest_fpstate`).
 *
 * The vCPU keeps its FPU as the XSAVE image of the user ABI (`VcpuArch.fpu`): the legacy area, the header and the
 * components at the offsets the host CPU's leaf 0xD gives. On a host whose kernel runs without XSAVE (a CPU
 * without leaf 0xD), KVM_GET_XSAVE gives the FXSAVE area with XSTATE_BV = x87 | SSE, KVM_SET_XSAVE takes only
 * x87/SSE state, and there are no XCRs to get or set.
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_GET_FPU, KVM_GET_XCRS, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_SET_FPU, KVM_SET_XCRS, KVM_SET_XSAVE } from '../abi/constants.js';
import { KVM_MAX_XCRS } from '../abi/constants-x86.js';
import { checkUserWritable, copyFromUser, copyToUser, isRealUint8Array } from '../abi/codec.js';
import { KVM_FPU_CODEC, KVM_XCRS_CODEC, KVM_XCR_CODEC, KVM_XSAVE_CODEC, type kvm_xcr, type kvm_xcrs } from '../abi/structs-x86.js';
import { userStructBytes } from './user-struct-bytes.js';
import type { IoctlDef } from './ioctl-table.js';
import { vcpuArch, type VcpuArch } from './vcpu-arch.js';
import { guestSupportedXcr0, xcr0Valid } from './vcpu-cpuid.js';
import type { Vcpu } from './vcpu.js';
import { XFEATURE_MASK_FPSSE, x86Caps } from './x86-caps.js';
import { vendorArch } from './vendor-arch.js';
import { KVM_XSAVE_SIZE } from './guest-fpu.js';
import { buildOf } from '../builds/build.js';

/** Offsets in the FXSAVE / XSAVE image. */
const FX = { fcw: 0, fsw: 2, ftw: 4, fop: 6, rip: 8, rdp: 16, mxcsr: 24, mxcsrMask: 28, st: 32, xmm: 160, padding: 416, swReserved: 464, xstateBv: 512, xcompBv: 520, reserved: 528, ext: 576 } as const;

/** `struct kvm_xcrs`: `nr_xcrs`, `flags`, the entries and `xcrs[0].value`; `struct kvm_xcr`'s size and `value`. */
const XCRS_NR = KVM_XCRS_CODEC.offsetOf('nr_xcrs');
const XCRS_FLAGS = KVM_XCRS_CODEC.offsetOf('flags');
const XCRS_ENTRIES = KVM_XCRS_CODEC.offsetOf('xcrs');
const XCR_SIZE = KVM_XCR_CODEC.size;
const XCR_VALUE = KVM_XCR_CODEC.offsetOf('value');
const XCRS_FIRST_VALUE = XCRS_ENTRIES + XCR_VALUE;

/** The XSAVE image's bytes as `__u32 region[1024]` (little-endian words). */
function asWords(b: Uint8Array<ArrayBuffer>): Uint32Array<ArrayBuffer> {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Uint32Array(b.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(4 * i, true);
  return out;
}

/** `__u32 region[1024]` as the XSAVE image's bytes. */
function asBytes(w: Uint32Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(4 * w.length);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < w.length; i++) dv.setUint32(4 * i, w[i] as number, true);
  return out;
}

/**
 * `fpu_copy_guest_fpstate_to_uabi`: the image user space sees, `guest_fpu.uabi_size` bytes, written into `out`.
 * @param out - `guest_fpu.uabi_size` bytes, all zero
 */
function xsaveImage(v: Vcpu, arch: VcpuArch, out: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  if (arch.confidentialFpu) return out; // an SEV-ES guest's FPU is not readable: zeros, and success
  const caps = x86Caps(v.vm.instance);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  if (!caps.xsave) {
    // "Make it restorable on a XSAVE enabled host": the header says x87 and SSE.
    out.set(arch.fpu.subarray(0, FX.padding));
    dv.setBigUint64(FX.xstateBv, XFEATURE_MASK_FPSSE, true);
    return out;
  }
  // XSAVE (__copy_xstate_to_uabi_buf): the components in XSTATE_BV that the guest may use (its supported XCR0, and
  // always FP/SSE), each at its offset, zeros elsewhere; the legacy area's padding zero, its software-reserved bytes
  // the kernel's `xstate_fx_sw_bytes` (word 0: fpu_user_cfg.max_features, as in a signal frame). In the legacy area
  // x87 (FCW … FDP, ST0–7) and the XMM registers come from the init state when XSTATE_BV lacks them, MXCSR and its
  // mask when it lacks both SSE and AVX (copy_feature): the bytes the image keeps for them are stale (the guest's
  // FNINIT, a KVM_SET_FPU the header does not cover).
  out.set(arch.fpu.subarray(0, FX.ext));
  out.fill(0, FX.padding, FX.xstateBv);
  dv.setBigUint64(FX.swReserved, caps.hostUserXfeatures, true);
  const bv = dv.getBigUint64(FX.xstateBv, true) & (guestSupportedXcr0(arch, caps) | XFEATURE_MASK_FPSSE);
  dv.setBigUint64(FX.xstateBv, bv, true);
  if ((bv & 1n) === 0n) {
    out.fill(0, 0, FX.mxcsr);
    out.fill(0, FX.st, FX.xmm);
    dv.setUint16(FX.fcw, 0x37f, true);
  }
  if ((bv & 6n) === 0n) {
    dv.setUint32(FX.mxcsr, 0x1f80, true);
    dv.setUint32(FX.mxcsrMask, vendorArch(v.vm.instance).fxsaveMxcsrMask, true);
  }
  if ((bv & 2n) === 0n) out.fill(0, FX.xmm, FX.padding);
  // The bits as two numbers: a bigint shift and mask per component would allocate 62 bigints per call.
  const bvLow = Number(bv & 0xffff_ffffn);
  const bvHigh = Number(bv >> 32n);
  for (let i = 2; i < 64; i++) {
    if (((i < 32 ? bvLow >>> i : bvHigh >>> (i - 32)) & 1) === 0) continue;
    const { offset, size } = caps.xstateComponent(i);
    out.set(arch.fpu.subarray(offset, offset + size), offset);
  }
  return out;
}

/** `fpu_copy_uabi_to_guest_fpstate`. @throws KernelError EINVAL for features, MXCSR bits or header bytes KVM refuses */
function loadXsaveImage(v: Vcpu, arch: VcpuArch, region: Uint8Array, op: string): void {
  if (arch.confidentialFpu) return;
  const caps = x86Caps(v.vm.instance);
  const dv = new DataView(region.buffer, region.byteOffset, region.byteLength);
  const xfeatures = dv.getBigUint64(FX.xstateBv, true);
  const mxcsr = dv.getUint32(FX.mxcsr, true);
  const mxcsrMask = vendorArch(v.vm.instance).fxsaveMxcsrMask;
  if (!caps.xsave) {
    if ((xfeatures & ~XFEATURE_MASK_FPSSE) !== 0n) throw new KernelError('EINVAL', op, `XSTATE_BV 0x${xfeatures.toString(16)} has state other than x87/SSE`);
    if ((mxcsr & ~mxcsrMask) !== 0) throw new KernelError('EINVAL', op, `MXCSR 0x${mxcsr.toString(16)} has reserved bits`);
    arch.fpu.set(region.subarray(0, 512));
    return;
  }
  // fpu_copy_uabi_to_guest_fpstate (kvm_caps.supported_xcr0), then validate_user_xstate_header (the guest FPU's
  // user_xfeatures: AMX tile data only once KVM_SET_CPUID2 gave it to the guest) and the MXCSR check of
  // copy_uabi_to_xstate (with x87, SSE or AVX state).
  if ((xfeatures & ~caps.supportedXcr0) !== 0n) throw new KernelError('EINVAL', op, `XSTATE_BV 0x${xfeatures.toString(16)} has unsupported features`);
  if ((xfeatures & ~arch.fpuUserXfeatures) !== 0n) throw new KernelError('EINVAL', op, `XSTATE_BV 0x${xfeatures.toString(16)} has features this vCPU's FPU has no room for (user_xfeatures 0x${arch.fpuUserXfeatures.toString(16)})`);
  if (dv.getBigUint64(FX.xcompBv, true) !== 0n) throw new KernelError('EINVAL', op, 'the compacted format is not taken (XCOMP_BV must be 0)');
  for (let i = FX.reserved; i < FX.ext; i++) if (region[i] !== 0) throw new KernelError('EINVAL', op, 'reserved XSAVE header bytes are not zero');
  if ((xfeatures & 7n) !== 0n && (mxcsr & ~mxcsrMask) !== 0) throw new KernelError('EINVAL', op, `MXCSR 0x${mxcsr.toString(16)} has reserved bits`);
  // copy_uabi_to_xstate: only the components XSTATE_BV names are loaded — x87 is bytes 0–159 (MXCSR among them),
  // SSE the XMM registers (160–415), MXCSR alone when SSE or AVX comes without x87 — and the header becomes the
  // user's. The others keep their bytes, which the header now marks as in their init configuration.
  const img = arch.fpu;
  if ((xfeatures & 1n) !== 0n) img.set(region.subarray(0, FX.xmm));
  else if ((xfeatures & 6n) !== 0n) img.set(region.subarray(FX.mxcsr, FX.st), FX.mxcsr);
  if ((xfeatures & 2n) !== 0n) img.set(region.subarray(FX.xmm, FX.padding), FX.xmm);
  // The bits as two numbers, as in xsaveImage.
  const xfLow = Number(xfeatures & 0xffff_ffffn);
  const xfHigh = Number(xfeatures >> 32n);
  for (let i = 2; i < 64; i++) {
    if (((i < 32 ? xfLow >>> i : xfHigh >>> (i - 32)) & 1) === 0) continue;
    const { offset, size } = caps.xstateComponent(i);
    img.set(region.subarray(offset, offset + size), offset);
  }
  img.set(region.subarray(FX.xstateBv, FX.ext), FX.xstateBv);
}

/**
 * KVM_GET_XSAVE / KVM_GET_XSAVE2: the image, as C bytes straight into a `Uint8Array`, or as `region` words (a
 * `region` of `size / 4` words for an image larger than `struct kvm_xsave`).
 */
function getXsave(v: Vcpu, arg: unknown, op: string): number {
  const arch = vcpuArch(v);
  const size = arch.fpuUabiSize;
  if (isRealUint8Array(arg)) {
    if (arg.length < size) throw new KernelError('EFAULT', op, `the XSAVE area is ${size} bytes, the buffer ${arg.length}`);
    // Built in the reused buffer (zeroed first, as a fresh one would be), then copied to the caller's bytes.
    arg.set(xsaveImage(v, arch, size <= KVM_XSAVE_SIZE ? xsaveCopy.fill(0, 0, size).subarray(0, size) : new Uint8Array(size)));
    return 0;
  }
  const image = xsaveImage(v, arch, new Uint8Array(size));
  if (size > KVM_XSAVE_SIZE) {
    const region = regionOf(arg);
    if (region === undefined || region.length < size / 4) throw new KernelError('EFAULT', op, `the XSAVE area is ${size} bytes: region must be a Uint32Array of ${size / 4} words`);
    region.set(asWords(image));
    return 0;
  }
  copyToUser(KVM_XSAVE_CODEC, { region: asWords(image) }, arg, op);
  return 0;
}

/**
 * The kernel's copy of a `struct kvm_xsave` (KVM_SET_XSAVE's `memdup_user`, the image KVM_GET_XSAVE builds), reused
 * between calls for the 4096-byte structure: a `Uint8Array` of its own that size costs 1–3 µs to make. Nothing keeps
 * a view of it past the call.
 */
const xsaveCopy = new Uint8Array(KVM_XSAVE_SIZE);

/** The `region` words of an object argument, if it has them. */
function regionOf(arg: unknown): Uint32Array | undefined {
  if (typeof arg !== 'object' || arg === null) return undefined;
  const r = (arg as { region?: unknown }).region;
  return r instanceof Uint32Array ? r : undefined;
}

/** The FPU, XSAVE and XCR ioctls of a vCPU. */
export const VCPU_FPU_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_GET_FPU',
    request: KVM_GET_FPU,
    arg: { dir: 'out', codec: KVM_FPU_CODEC },
    run(v, arg) {
      const arch = vcpuArch(v);
      const f = KVM_FPU_CODEC.zero();
      if (!arch.confidentialFpu) {
        // MXCSR is neither reported nor loaded by KVM_GET_FPU / KVM_SET_FPU.
        const img = arch.fpu;
        const dv = new DataView(img.buffer);
        for (let i = 0; i < 8; i++) f.fpr[i] = img.slice(FX.st + 16 * i, FX.st + 16 * (i + 1));
        f.fcw = dv.getUint16(FX.fcw, true);
        f.fsw = dv.getUint16(FX.fsw, true);
        f.ftwx = dv.getUint8(FX.ftw);
        f.last_opcode = dv.getUint16(FX.fop, true);
        f.last_ip = dv.getBigUint64(FX.rip, true);
        f.last_dp = dv.getBigUint64(FX.rdp, true);
        for (let i = 0; i < 16; i++) f.xmm[i] = img.slice(FX.xmm + 16 * i, FX.xmm + 16 * (i + 1));
      }
      copyToUser(KVM_FPU_CODEC, f, arg, 'KVM_GET_FPU');
      return 0;
    },
  },
  {
    name: 'KVM_SET_FPU',
    request: KVM_SET_FPU,
    arg: { dir: 'in', codec: KVM_FPU_CODEC },
    run(v, arg) {
      const f = copyFromUser(KVM_FPU_CODEC, arg, 'KVM_SET_FPU');
      const arch = vcpuArch(v);
      if (arch.confidentialFpu) return 0;
      const img = arch.fpu;
      const dv = new DataView(img.buffer);
      f.fpr.forEach((r, i) => img.set(r, FX.st + 16 * i));
      dv.setUint16(FX.fcw, f.fcw, true);
      dv.setUint16(FX.fsw, f.fsw, true);
      dv.setUint8(FX.ftw, f.ftwx);
      dv.setUint16(FX.fop, f.last_opcode, true);
      dv.setBigUint64(FX.rip, f.last_ip, true);
      dv.setBigUint64(FX.rdp, f.last_dp, true);
      f.xmm.forEach((r, i) => img.set(r, FX.xmm + 16 * i));
      return 0;
    },
  },
  {
    name: 'KVM_GET_XSAVE',
    request: KVM_GET_XSAVE,
    arg: { dir: 'out', codec: KVM_XSAVE_CODEC },
    run(v, arg) {
      // An FPU with dynamic state (AMX) does not fit struct kvm_xsave: KVM_GET_XSAVE2 only.
      const size = vcpuArch(v).fpuUabiSize;
      if (size > KVM_XSAVE_SIZE) throw new KernelError('EINVAL', 'KVM_GET_XSAVE', `the vCPU's XSAVE area is ${size} bytes, more than struct kvm_xsave: use KVM_GET_XSAVE2`);
      return getXsave(v, arg, 'KVM_GET_XSAVE');
    },
  },
  {
    name: 'KVM_GET_XSAVE2',
    request: KVM_GET_XSAVE2,
    arg: { dir: 'out', codec: KVM_XSAVE_CODEC },
    // guest_fpu.uabi_size bytes: 4096, or 11008 once the vCPU's CPUID gave it AMX tile data.
    run(v, arg) {
      // A release before 5.17 has no such ioctl (kvm_arch_vcpu_ioctl: EINVAL).
      if (!buildOf(v.vm.instance).dynamicXsave) throw new KernelError('EINVAL', 'ioctl', `unknown vCPU ioctl 0x${KVM_GET_XSAVE2.toString(16)} (KVM_GET_XSAVE2 is not in ${buildOf(v.vm.instance).build.name})`);
      return getXsave(v, arg, 'KVM_GET_XSAVE2');
    },
  },
  {
    name: 'KVM_SET_XSAVE',
    request: KVM_SET_XSAVE,
    arg: { dir: 'in', codec: KVM_XSAVE_CODEC },
    run(v, arg) {
      // memdup_user(argp, guest_fpu.uabi_size): the C bytes are the image itself; an object's `region` words are
      // turned into it.
      const op = 'KVM_SET_XSAVE';
      const size = vcpuArch(v).fpuUabiSize;
      let image: Uint8Array;
      if (isRealUint8Array(arg)) {
        if (arg.length < size) throw new KernelError('EFAULT', op, `the XSAVE area is ${size} bytes, the buffer ${arg.length}`);
        const from = new Uint8Array(arg.buffer, arg.byteOffset, size);
        if (size <= KVM_XSAVE_SIZE) {
          image = xsaveCopy.subarray(0, size);
          image.set(from);
        } else {
          image = from.slice();
        }
      } else if (size > KVM_XSAVE_SIZE) {
        const region = regionOf(arg);
        if (region === undefined || region.length < size / 4) throw new KernelError('EFAULT', op, `the XSAVE area is ${size} bytes: region must be a Uint32Array of ${size / 4} words`);
        image = asBytes(region.subarray(0, size / 4));
      } else {
        image = asBytes(copyFromUser(KVM_XSAVE_CODEC, arg, op).region);
      }
      loadXsaveImage(v, vcpuArch(v), image, 'KVM_SET_XSAVE');
      return 0;
    },
  },
  {
    name: 'KVM_GET_XCRS',
    request: KVM_GET_XCRS,
    arg: { dir: 'out', codec: KVM_XCRS_CODEC },
    run(v, arg) {
      if (isRealUint8Array(arg)) {
        // The C bytes written in place (the same bytes the object's encode gives; EFAULT as copyToUser).
        checkUserWritable(KVM_XCRS_CODEC, arg, 'KVM_GET_XCRS');
        const out = arg.subarray(0, KVM_XCRS_CODEC.size);
        out.fill(0);
        if (x86Caps(v.vm.instance).xsave) {
          const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
          dv.setUint32(XCRS_NR, 1, true);
          dv.setBigUint64(XCRS_FIRST_VALUE, vcpuArch(v).xcr0, true); // xcrs[0] = { xcr: 0, value: XCR0 }
        }
        return 0;
      }
      const x: kvm_xcrs = KVM_XCRS_CODEC.zero();
      if (x86Caps(v.vm.instance).xsave) {
        x.nr_xcrs = 1;
        x.xcrs[0] = { xcr: 0, value: vcpuArch(v).xcr0 };
      }
      copyToUser(KVM_XCRS_CODEC, x, arg, 'KVM_GET_XCRS');
      return 0;
    },
  },
  {
    name: 'KVM_SET_XCRS',
    request: KVM_SET_XCRS,
    arg: { dir: 'in', codec: KVM_XCRS_CODEC },
    run(v, arg) {
      const op = 'KVM_SET_XCRS';
      // The C bytes are read in place (nr_xcrs, flags, each entry's xcr; a value only for XCR0), the object form copied.
      const bytes = userStructBytes(KVM_XCRS_CODEC, arg, op);
      const x = bytes === undefined ? copyFromUser(KVM_XCRS_CODEC, arg, op) : undefined;
      const dv = bytes === undefined ? undefined : new DataView(bytes.buffer, bytes.byteOffset, KVM_XCRS_CODEC.size);
      const caps = x86Caps(v.vm.instance);
      if (!caps.xsave) throw new KernelError('EINVAL', op, 'the host kernel runs without XSAVE');
      const nr = x?.nr_xcrs ?? (dv as DataView).getUint32(XCRS_NR, true);
      const flags = x?.flags ?? (dv as DataView).getUint32(XCRS_FLAGS, true);
      if (nr > KVM_MAX_XCRS || flags !== 0) throw new KernelError('EINVAL', op, `nr_xcrs ${nr}, flags ${flags}`);
      const arch = vcpuArch(v);
      for (let i = 0; i < nr; i++) {
        const xcr = x === undefined ? (dv as DataView).getUint32(XCRS_ENTRIES + XCR_SIZE * i, true) : x.xcrs[i]?.xcr;
        if (xcr !== 0) continue;
        const value = x === undefined ? (dv as DataView).getBigUint64(XCRS_ENTRIES + XCR_SIZE * i + XCR_VALUE, true) : (x.xcrs[i] as kvm_xcr).value;
        if (!xcr0Valid(arch, caps, value)) throw new KernelError('EINVAL', op, `XCR0 0x${value.toString(16)} is not valid for this guest`);
        arch.xcr0 = value;
        break; // only XCR0 exists
      }
      return 0;
    },
  },
];
