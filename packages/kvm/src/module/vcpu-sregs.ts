/**
 * KVM_GET/SET_SREGS and KVM_GET/SET_SREGS2 around the vCPU's register plumbing (`Vcpu.getSregs` / `setSregs`):
 * arch/x86/kvm/x86.c `__get_sregs_common`, `__get_sregs`, `__get_sregs2`, `kvm_is_valid_sregs`,
 * `__set_sregs_common`, `__set_sregs`, `__set_sregs2`.
 *
 * What KVM adds to the registers: validation of CR0/CR4/EFER/CS.L/CR3 (EINVAL), the APIC base checked as
 * KVM_SET_MSRS would (`kvm_apic_set_base`, host-initiated), CR8 ignored when it has reserved bits, the pending
 * interrupt of `interrupt_bitmap` (really the vCPU's queued interrupt, which KVM_GET_VCPU_EVENTS shows too), and
 * the PAE PDPTRs (loaded from guest memory by KVM_SET_SREGS, given by KVM_SET_SREGS2).
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_SREGS2_FLAGS_PDPTRS_VALID } from '../abi/constants-x86.js';
import { KVM_DTABLE_CODEC, KVM_SEGMENT_CODEC, KVM_SREGS_CODEC, type kvm_segment, type kvm_sregs } from '../abi/structs.js';
import { KVM_SREGS2_CODEC, type kvm_sregs2 } from '../abi/structs-x86.js';
import { StructWords, segmentsFromWords, segmentsToWords } from './regfile-copy.js';
import { guestHas, guestMaxPhyAddr } from './vcpu-cpuid.js';
import { vcpuArch, type VcpuArch } from './vcpu-arch.js';
import { VcpuRequest, makeRequest } from './vcpu-requests.js';
import type { Vcpu } from './vcpu.js';
import { x86Caps, type X86Caps } from './x86-caps.js';
import type { CpuidWord } from '@vac/core';
import { vendorArch } from './vendor-arch.js';
import { setPresentSegment } from './present-segment.js';

const U64 = 0xffff_ffff_ffff_ffffn;
const X86_CR0_PE = 1n;
const X86_CR0_NW = 1n << 29n;
const X86_CR0_CD = 1n << 30n;
const X86_CR0_PG = 1n << 31n;
const X86_CR4_PAE = 1n << 5n;
/** `KVM_SREGS2_FLAGS_PDPTRS_VALID` as a bigint. */
const SREGS2_FLAGS_PDPTRS_VALID = BigInt(KVM_SREGS2_FLAGS_PDPTRS_VALID);
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;

/**
 * `CR4_RESERVED_BITS` (bits no CPU defines) and the CR4 bits reserved unless a CPUID feature is there
 * (`__cr4_reserved_bits`): OSXSAVE, SMEP, SMAP, FSGSBASE, PKE, LA57, UMIP, VMXE, PCIDE, LAM_SUP, CET.
 */
const CR4_DEFINED = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 20, 21, 22, 23, 28].reduce((m, b) => m | (1n << BigInt(b)), 0n);
const CR4_FEATURE_BITS: ReadonlyArray<readonly [bigint, CpuidWord, number]> = [
  [1n << 18n, '1.ecx', 26], // OSXSAVE ← XSAVE
  [1n << 20n, '7.0.ebx', 7], // SMEP
  [1n << 21n, '7.0.ebx', 20], // SMAP
  [1n << 16n, '7.0.ebx', 0], // FSGSBASE
  [1n << 22n, '7.0.ecx', 3], // PKE ← PKU
  [1n << 12n, '7.0.ecx', 16], // LA57
  [1n << 11n, '7.0.ecx', 2], // UMIP
  [1n << 13n, '1.ecx', 5], // VMXE ← VMX
  [1n << 17n, '1.ecx', 17], // PCIDE ← PCID
  [1n << 28n, '7.1.eax', 26], // LAM_SUP ← LAM
];
const X86_CR4_CET = 1n << 23n;

/** `kvm_is_valid_cr4`: no reserved bit, for KVM (`cr4_reserved_bits`) and for this guest (`cr4_guest_rsvd_bits`). */
export function cr4Valid(arch: VcpuArch, caps: X86Caps, cr4: bigint): boolean {
  if ((cr4 & ~CR4_DEFINED & U64) !== 0n) return false;
  for (const [bit, word, feature] of CR4_FEATURE_BITS) {
    if ((cr4 & bit) === 0n) continue;
    if ((caps.cpuCaps[word] & (2 ** feature)) === 0 || !guestHas(arch, caps, word, feature)) return false;
  }
  // CET needs shadow stacks or IBT, which the model never offers.
  if ((cr4 & X86_CR4_CET) !== 0n) return false;
  return true;
}

/** `kvm_is_valid_cr0` (the vendors accept everything else outside nested operation). */
export function cr0Valid(cr0: bigint): boolean {
  if ((cr0 & 0xffff_ffff_0000_0000n) !== 0n) return false;
  if ((cr0 & X86_CR0_NW) !== 0n && (cr0 & X86_CR0_CD) === 0n) return false;
  if ((cr0 & X86_CR0_PG) !== 0n && (cr0 & X86_CR0_PE) === 0n) return false;
  return true;
}

/**
 * `kvm_is_valid_sregs`: in 64-bit mode (EFER.LME and CR0.PG) CR4.PAE and EFER.LMA must be set and CR3 a legal GPA;
 * otherwise EFER.LMA and CS.L must be clear; then CR4 and CR0 must be valid. @returns why not, or `undefined`
 */
export function sregsProblem(v: Vcpu, s: Pick<kvm_sregs, 'cr0' | 'cr3' | 'cr4' | 'efer'> & { readonly cs: Pick<kvm_segment, 'l'> }): string | undefined {
  const arch = vcpuArch(v);
  const caps = x86Caps(v.vm.instance);
  if ((s.efer & EFER_LME) !== 0n && (s.cr0 & X86_CR0_PG) !== 0n) {
    if ((s.cr4 & X86_CR4_PAE) === 0n || (s.efer & EFER_LMA) === 0n) return 'EFER.LME and CR0.PG need CR4.PAE and EFER.LMA';
    if (s.cr3 >> BigInt(guestMaxPhyAddr(arch)) !== 0n) return 'CR3 is above MAXPHYADDR';
  } else if ((s.efer & EFER_LMA) !== 0n || s.cs.l !== 0) {
    return 'EFER.LMA or CS.L outside 64-bit mode';
  }
  if (!cr4Valid(arch, caps, s.cr4)) return `reserved bits in CR4 0x${s.cr4.toString(16)}`;
  if (!cr0Valid(s.cr0)) return `invalid CR0 0x${s.cr0.toString(16)}`;
  return undefined;
}

/** `is_pae_paging`: CR0.PG, CR4.PAE, not long mode. */
function paePaging(s: Pick<kvm_sregs, 'cr0' | 'cr4' | 'efer'>): boolean {
  return (s.cr0 & X86_CR0_PG) !== 0n && (s.cr4 & X86_CR4_PAE) !== 0n && (s.efer & EFER_LMA) === 0n;
}

/** PDPTE bits 1–2 and 5–8, reserved in PAE paging (`pdptr_rsvd_bits`' `rsvd_bits(5, 8) | rsvd_bits(1, 2)`). */
const PDPTE_RESERVED_LOW = 0x1e6n;

/**
 * `load_pdptrs`: the four PDPTEs at CR3 (32-byte aligned) from guest memory; false, with the PDPTRs as they were, when
 * they are not RAM or a present one (bit 0) has a reserved bit set — bits 1–2, 5–8, or one at or above the guest's
 * MAXPHYADDR (`pdptr_rsvd_bits`).
 */
export function loadPdptrs(v: Vcpu, arch: VcpuArch, cr3: bigint): boolean {
  const base = Number(cr3 & 0xffff_ffe0n);
  const reserved = ((U64 << BigInt(guestMaxPhyAddr(arch))) & U64) | PDPTE_RESERVED_LOW;
  const out: bigint[] = [];
  for (let i = 0; i < 4; i++) {
    let x = 0n;
    for (let b = 7; b >= 0; b--) {
      const byte = v.vm.memslots.read8(base + 8 * i + b);
      if (byte < 0) return false;
      x = (x << 8n) | BigInt(byte);
    }
    if ((x & 1n) !== 0n && (x & reserved) !== 0n) return false;
    out.push(x);
  }
  out.forEach((x, i) => (arch.pdptrs[i] = x));
  return true;
}

/** `__get_sregs_common` + `__get_sregs`: the registers, with the queued interrupt as `interrupt_bitmap`. */
export function getSregs(v: Vcpu, out: kvm_sregs): void {
  v.getSregs(out);
  const arch = vcpuArch(v);
  out.interrupt_bitmap = [0n, 0n, 0n, 0n];
  if (arch.interrupt.injected && !arch.interrupt.soft) {
    const nr = arch.interrupt.nr;
    out.interrupt_bitmap[nr >> 6] = 1n << BigInt(nr & 63);
  }
}

/** What `__set_sregs_common` applies, after validation. */
function applySregsCommon(v: Vcpu, s: Omit<kvm_sregs, 'interrupt_bitmap'>, updatePdptrs: boolean): void {
  const arch = vcpuArch(v);
  // kvm_set_cr8: a value with reserved bits is ignored (the rest still applies): CR8 stays what KVM_GET_SREGS reads.
  v.setSregs(sregsWith(s, (s.cr8 & ~0xfn) === 0n ? s.cr8 : currentCr8(v)));
  if (updatePdptrs && paePaging(s)) loadPdptrs(v, arch, s.cr3);
}

/**
 * KVM_SET_SREGS (`__set_sregs`). @throws KernelError EINVAL (`kvm_is_valid_sregs`, or an APIC base the host may
 * not set), with nothing changed
 */
export function setSregs(v: Vcpu, s: kvm_sregs, op: string): void {
  validateCommon(v, s, op);
  applySregsCommon(v, s, true);
  // The lowest set bit of interrupt_bitmap becomes the queued interrupt (kvm_queue_interrupt).
  for (let w = 0; w < 4; w++) {
    const word = s.interrupt_bitmap[w] as bigint;
    if (word === 0n) continue;
    let bit = 0;
    while (((word >> BigInt(bit)) & 1n) === 0n) bit++;
    const arch = vcpuArch(v);
    arch.interrupt.injected = true;
    arch.interrupt.soft = false;
    arch.interrupt.nr = w * 64 + bit;
    makeRequest(v, VcpuRequest.Event);
    break;
  }
}

/** `kvm_get_cr8`: CR8 as KVM_GET_SREGS reads it (the in-kernel LAPIC's TPR when there is one). */
function currentCr8(v: Vcpu): bigint {
  const lapic = v.intr?.chip?.lapic;
  return lapic !== undefined ? lapic.getCr8() : v.sregs.cr8;
}

/**
 * `kvm_get_apic_base`: the APIC base MSR — the in-kernel LAPIC's when the vCPU has one (`kvm_lapic_set_base` keeps
 * it there), else the value KVM keeps for a user-space APIC.
 */
export function apicBaseOf(v: Vcpu): bigint {
  const lapic = v.intr?.chip?.lapic;
  return lapic !== undefined ? lapic.apicBase : v.sregs.apic_base;
}

/** The checks of `__set_sregs_common` before anything is applied. */
function validateCommon(v: Vcpu, s: Pick<kvm_sregs, 'cr0' | 'cr3' | 'cr4' | 'efer' | 'apic_base'> & { readonly cs: Pick<kvm_segment, 'l'> }, op: string): void {
  const why = sregsProblem(v, s);
  if (why !== undefined) throw new KernelError('EINVAL', op, why);
  // kvm_apic_set_base(host_initiated): reserved bits above MAXPHYADDR, the low bits, x2APIC without CPUID x2APIC.
  const arch = vcpuArch(v);
  const caps = x86Caps(v.vm.instance);
  const x2apic = guestHas(arch, caps, '1.ecx', 21);
  const reserved = ((U64 << BigInt(guestMaxPhyAddr(arch))) & U64) | 0x2ffn | (x2apic ? 0n : 1n << 10n);
  const mode = s.apic_base & ((1n << 11n) | (1n << 10n));
  if ((s.apic_base & reserved) !== 0n || mode === 1n << 10n) throw new KernelError('EINVAL', op, `invalid APIC base 0x${s.apic_base.toString(16)}`);
}

/** KVM_GET_SREGS2 (`__get_sregs2`): `kvm_sregs` without the bitmap, with the PDPTRs when paging is PAE. */
export function getSregs2(v: Vcpu): kvm_sregs2 {
  const s = KVM_SREGS_CODEC.zero();
  v.getSregs(s);
  const arch = vcpuArch(v);
  const pae = paePaging(s);
  // Named fields rather than `{ interrupt_bitmap, ...common }`: an object rest and spread of 18 fields is a generic
  // runtime copy (about 1 µs), this a literal.
  return {
    cs: s.cs, ds: s.ds, es: s.es, fs: s.fs, gs: s.gs, ss: s.ss, tr: s.tr, ldt: s.ldt, gdt: s.gdt, idt: s.idt,
    cr0: s.cr0, cr2: s.cr2, cr3: s.cr3, cr4: s.cr4, cr8: s.cr8, efer: s.efer, apic_base: s.apic_base,
    flags: pae ? SREGS2_FLAGS_PDPTRS_VALID : 0n,
    pdptrs: pae ? [arch.pdptrs[0], arch.pdptrs[1], arch.pdptrs[2], arch.pdptrs[3]] : [0n, 0n, 0n, 0n],
  };
}


/** The `kvm_sregs` of `s` (a `kvm_sregs2` or a `kvm_sregs`) with `cr8` and an empty `interrupt_bitmap`, as a literal. */
function sregsWith(s: Omit<kvm_sregs, 'interrupt_bitmap'>, cr8: bigint): kvm_sregs {
  return {
    cs: s.cs, ds: s.ds, es: s.es, fs: s.fs, gs: s.gs, ss: s.ss, tr: s.tr, ldt: s.ldt, gdt: s.gdt, idt: s.idt,
    cr0: s.cr0, cr2: s.cr2, cr3: s.cr3, cr4: s.cr4, cr8, efer: s.efer, apic_base: s.apic_base,
    interrupt_bitmap: [0n, 0n, 0n, 0n],
  };
}

/**
 * KVM_SET_SREGS2 (`__set_sregs2`): flags other than PDPTRS_VALID, or PDPTRs outside PAE paging, are EINVAL; the
 * PDPTRs given are used instead of guest memory's. @throws KernelError EINVAL with nothing changed
 */
export function setSregs2(v: Vcpu, s: kvm_sregs2, op: string): void {
  const valid = (s.flags & SREGS2_FLAGS_PDPTRS_VALID) !== 0n;
  if ((s.flags & ~SREGS2_FLAGS_PDPTRS_VALID) !== 0n) throw new KernelError('EINVAL', op, `unknown flags 0x${s.flags.toString(16)}`);
  if (valid && !paePaging(s)) throw new KernelError('EINVAL', op, 'PDPTRs given without PAE paging');
  validateCommon(v, s, op);
  applySregsCommon(v, s, !valid);
  if (valid) {
    const arch = vcpuArch(v);
    for (let i = 0; i < 4; i++) arch.pdptrs[i] = s.pdptrs[i] as bigint;
  }
}

// ---- KVM_GET/SET_SREGS2 on the C bytes ------------------------------------------------------------------

/** Where the fields of `struct kvm_sregs2` after the segments lie (the 64-bit ones as `u64` elements). */
const S2 = {
  gdtBase: (KVM_SREGS2_CODEC.offsetOf('gdt') + KVM_DTABLE_CODEC.offsetOf('base')) / 8,
  gdtLimit: (KVM_SREGS2_CODEC.offsetOf('gdt') + KVM_DTABLE_CODEC.offsetOf('limit')) / 2,
  idtBase: (KVM_SREGS2_CODEC.offsetOf('idt') + KVM_DTABLE_CODEC.offsetOf('base')) / 8,
  idtLimit: (KVM_SREGS2_CODEC.offsetOf('idt') + KVM_DTABLE_CODEC.offsetOf('limit')) / 2,
  cr0: KVM_SREGS2_CODEC.offsetOf('cr0') / 8,
  cr2: KVM_SREGS2_CODEC.offsetOf('cr2') / 8,
  cr3: KVM_SREGS2_CODEC.offsetOf('cr3') / 8,
  cr4: KVM_SREGS2_CODEC.offsetOf('cr4') / 8,
  cr8: KVM_SREGS2_CODEC.offsetOf('cr8') / 8,
  efer: KVM_SREGS2_CODEC.offsetOf('efer') / 8,
  apicBase: KVM_SREGS2_CODEC.offsetOf('apic_base') / 8,
  flags: KVM_SREGS2_CODEC.offsetOf('flags') / 8,
  pdptrs: KVM_SREGS2_CODEC.offsetOf('pdptrs') / 8,
  csL: KVM_SREGS2_CODEC.offsetOf('cs') + KVM_SEGMENT_CODEC.offsetOf('l'),
  size: KVM_SREGS2_CODEC.size,
} as const;

/** The staging words of {@link getSregs2Bytes} and {@link setSregs2Bytes} (each is done with them before it calls out). */
const SREGS2_WORDS = new StructWords((S2.size + 7) & ~7);

/** {@link getSregs2Bytes}'s staging system registers (filled by `Vcpu.getSystemRegs`, which calls nothing out). */
const GET_SYSTEM: Pick<kvm_sregs, 'gdt' | 'idt' | 'cr0' | 'cr2' | 'cr3' | 'cr4' | 'cr8' | 'efer' | 'apic_base'> = {
  gdt: KVM_DTABLE_CODEC.zero(),
  idt: KVM_DTABLE_CODEC.zero(),
  cr0: 0n, cr2: 0n, cr3: 0n, cr4: 0n, cr8: 0n, efer: 0n, apic_base: 0n,
};

/**
 * KVM_GET_SREGS2 into the C bytes `dst` (at least `sizeof(struct kvm_sregs2)`, little-endian host): exactly the bytes
 * {@link getSregs2}'s structure encodes to, written from the register file's words with no object per segment.
 */
export function getSregs2Bytes(v: Vcpu, dst: Uint8Array): void {
  const w = SREGS2_WORDS;
  w.u8.fill(0);
  segmentsToWords(v.regs, w);
  const sys = GET_SYSTEM;
  v.getSystemRegs(sys);
  const u64 = w.u64;
  u64[S2.gdtBase] = sys.gdt.base;
  w.u16[S2.gdtLimit] = sys.gdt.limit;
  u64[S2.idtBase] = sys.idt.base;
  w.u16[S2.idtLimit] = sys.idt.limit;
  u64[S2.cr0] = sys.cr0;
  u64[S2.cr2] = sys.cr2;
  u64[S2.cr3] = sys.cr3;
  u64[S2.cr4] = sys.cr4;
  u64[S2.cr8] = sys.cr8;
  u64[S2.efer] = sys.efer;
  u64[S2.apicBase] = sys.apic_base;
  if (paePaging(sys)) {
    const pdptrs = vcpuArch(v).pdptrs;
    u64[S2.flags] = SREGS2_FLAGS_PDPTRS_VALID;
    for (let i = 0; i < 4; i++) u64[S2.pdptrs + i] = pdptrs[i] as bigint;
  }
  dst.set(w.u8.subarray(0, S2.size));
}

/** KVM_SET_SREGS2's interrupt bitmap (`__set_sregs2` queues no interrupt). */
const NO_INTERRUPT: Readonly<kvm_sregs['interrupt_bitmap']> = Object.freeze([0n, 0n, 0n, 0n] as const);

/**
 * KVM_SET_SREGS2 from the C bytes `src` (at least `sizeof(struct kvm_sregs2)`, little-endian host): exactly what
 * {@link setSregs2} does with their decoded form — the same checks in the same order, the same errors, the same
 * state — with the segments copied into the register file as words. @throws KernelError EINVAL with nothing changed
 */
export function setSregs2Bytes(v: Vcpu, src: Uint8Array, op: string): void {
  const w = SREGS2_WORDS;
  w.u8.set(src.subarray(0, S2.size));
  const u64 = w.u64;
  const flags = u64[S2.flags] as bigint;
  const valid = (flags & SREGS2_FLAGS_PDPTRS_VALID) !== 0n;
  if ((flags & ~SREGS2_FLAGS_PDPTRS_VALID) !== 0n) throw new KernelError('EINVAL', op, `unknown flags 0x${flags.toString(16)}`);
  const s = {
    gdt: { base: u64[S2.gdtBase] as bigint, limit: w.u16[S2.gdtLimit] as number },
    idt: { base: u64[S2.idtBase] as bigint, limit: w.u16[S2.idtLimit] as number },
    cr0: u64[S2.cr0] as bigint,
    cr2: u64[S2.cr2] as bigint,
    cr3: u64[S2.cr3] as bigint,
    cr4: u64[S2.cr4] as bigint,
    cr8: u64[S2.cr8] as bigint,
    efer: u64[S2.efer] as bigint,
    apic_base: u64[S2.apicBase] as bigint,
    cs: { l: w.u8[S2.csL] as number },
  };
  if (valid && !paePaging(s)) throw new KernelError('EINVAL', op, 'PDPTRs given without PAE paging');
  validateCommon(v, s, op);
  const pdptrs = valid ? [u64[S2.pdptrs] as bigint, u64[S2.pdptrs + 1] as bigint, u64[S2.pdptrs + 2] as bigint, u64[S2.pdptrs + 3] as bigint] : undefined;
  // applySregsCommon: the segments, then the rest (kvm_set_cr8: a CR8 with reserved bits leaves it as it was)
  if ((s.cr8 & ~0xfn) !== 0n) s.cr8 = currentCr8(v);
  segmentsFromWords(v.regs, w);
  v.setSystemRegs(s, NO_INTERRUPT);
  const arch = vcpuArch(v);
  if (pdptrs === undefined) {
    if (paePaging(s)) loadPdptrs(v, arch, s.cr3);
  } else {
    for (let i = 0; i < 4; i++) arch.pdptrs[i] = pdptrs[i] as bigint;
  }
}

/**
 * The reset values KVM gives a new vCPU's system registers beyond the interpreter's (`kvm_vcpu_reset` →
 * `vmx_vcpu_reset` / `init_vmcb`; SDM Vol. 3A Table 10-1): TR a present busy TSS (type per vendor) and LDTR a present
 * LDT, both with limit 0xffff; IDTR limit 0xffff; the APIC base with BSP set only on the boot vCPU.
 */
export function resetSregs(v: Vcpu, bsp: boolean): void {
  // One staging structure for every vCPU created (setSregs copies what it takes from it): KVM_CREATE_VCPU made a
  // fresh one and four objects more each time.
  const s = (resetStaging ??= KVM_SREGS_CODEC.zero());
  v.getSregs(s);
  resetSegment(s.tr, vendorArch(v.vm.instance).resetTrType);
  resetSegment(s.ldt, 2);
  s.idt.base = 0n;
  s.idt.limit = 0xffff;
  s.gdt.base = 0n;
  s.gdt.limit = 0xffff;
  s.apic_base = 0xfee00000n | (1n << 11n) | (bsp ? 1n << 8n : 0n);
  v.setSregs(s);
}

/** {@link resetSregs}'s `struct kvm_sregs`, made at the first KVM_CREATE_VCPU. */
let resetStaging: kvm_sregs | undefined;

/** TR or LDTR as reset leaves it: present, of `type`, base 0, limit 0xffff, selector 0, every other attribute 0. */
function resetSegment(seg: kvm_segment, type: number): void {
  setPresentSegment(seg, { selector: 0, base: 0n, limit: 0xffff, type, s: 0, g: 0 });
}
