/**
 * The SMM state-save area: the 512 bytes KVM writes at SMBASE + 0xFE00 when a vCPU enters System Management Mode
 * and reads back at RSM (arch/x86/kvm/smm.h `struct kvm_smram_state_32` / `kvm_smram_state_64`, arch/x86/kvm/smm.c
 * `enter_smm_save_state_32` / `_64`, `rsm_load_state_32` / `_64`). A guest whose CPUID has long mode gets the 64-bit
 * layout (AMD64's, revision 0x00020064), any other the 32-bit one (Intel P6's, revision 0x00020000); KVM keeps one
 * extension of its own in both, the interrupt shadow. The SMM handler may change any field before RSM — SMBASE
 * relocation is a write to `smbase`.
 *
 * This file knows the layouts only: {@link writeSmram} fills an image from the vCPU's registers, {@link readSmram}
 * reads one back; `smm.ts` decides when, and loads the registers in Linux's order.
 *
 * @module
 */
import { type kvm_regs, type kvm_segment, type kvm_sregs, KVM_REGS_CODEC, KVM_SREGS_CODEC } from '../abi/structs.js';

/** Where the save area starts, from SMBASE. */
export const SMRAM_SAVE_OFFSET = 0xfe00;
/** The save area's size (`union kvm_smram`). */
export const SMRAM_SAVE_SIZE = 512;
/** `smm_revision` of the 32-bit layout. */
export const SMM_REVISION_32 = 0x0002_0000;
/** `smm_revison` (sic) of the 64-bit layout. */
export const SMM_REVISION_64 = 0x0002_0064;
/** `smbase` in the 32-bit layout (0xFEF8 from SMBASE). */
export const SMRAM32_SMBASE = 0xfef8;
/** `smbase` in the 64-bit layout (0xFF00 from SMBASE). */
export const SMRAM64_SMBASE = 0xff00;

/** What the save area holds: the registers of the interrupted context. */
export interface SmramState {
  /** The general registers, RIP and RFLAGS (the 32-bit layout keeps the low halves). */
  readonly regs: kvm_regs;
  /** Segments, TR, LDTR, GDTR, IDTR, CR0, CR3, CR4 and EFER (the 32-bit layout has no EFER: 0 is read). */
  readonly sregs: kvm_sregs;
  /** DR6. */
  readonly dr6: bigint;
  /** DR7. */
  readonly dr7: bigint;
  /** SMBASE (32 bits in both layouts). */
  readonly smbase: number;
  /** The interrupt shadow (`KVM_X86_SHADOW_INT_*`: KVM's extension). */
  readonly intShadow: number;
}

/** The general registers in the processor's numbering (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8–R15). */
const GPRS = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
/** The segment registers in the processor's numbering (`VCPU_SREG_ES` … `VCPU_SREG_GS`). */
const SEGS = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;

/** `enter_smm_get_segment_flags`: a segment's attributes as the save area keeps them (bits 8–23 of a descriptor's high word). */
function segmentFlags(seg: kvm_segment): number {
  return ((seg.g << 23) | (seg.db << 22) | (seg.l << 21) | (seg.avl << 20) | (seg.present << 15) | (seg.dpl << 13) | (seg.s << 12) | (seg.type << 8)) >>> 0;
}

/** `rsm_set_desc_flags`: the attributes back into `seg` (unusable when not present). */
function setSegmentFlags(seg: kvm_segment, flags: number): void {
  seg.g = (flags >>> 23) & 1;
  seg.db = (flags >>> 22) & 1;
  seg.l = (flags >>> 21) & 1;
  seg.avl = (flags >>> 20) & 1;
  seg.present = (flags >>> 15) & 1;
  seg.dpl = (flags >>> 13) & 3;
  seg.s = (flags >>> 12) & 1;
  seg.type = (flags >>> 8) & 15;
  seg.unusable = seg.present === 0 ? 1 : 0;
}

/** Little-endian access to the image by the addresses of smm.h (0xFE00–0xFFFF, relative to SMBASE). */
class Image {
  readonly #dv: DataView;
  constructor(bytes: Uint8Array) {
    this.#dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u8(at: number): number {
    return this.#dv.getUint8(at - SMRAM_SAVE_OFFSET);
  }
  u16(at: number): number {
    return this.#dv.getUint16(at - SMRAM_SAVE_OFFSET, true);
  }
  u32(at: number): number {
    return this.#dv.getUint32(at - SMRAM_SAVE_OFFSET, true);
  }
  u64(at: number): bigint {
    return this.#dv.getBigUint64(at - SMRAM_SAVE_OFFSET, true);
  }
  put8(at: number, v: number): void {
    this.#dv.setUint8(at - SMRAM_SAVE_OFFSET, v);
  }
  put16(at: number, v: number): void {
    this.#dv.setUint16(at - SMRAM_SAVE_OFFSET, v & 0xffff, true);
  }
  put32(at: number, v: number | bigint): void {
    this.#dv.setUint32(at - SMRAM_SAVE_OFFSET, typeof v === 'bigint' ? Number(v & 0xffff_ffffn) : v >>> 0, true);
  }
  put64(at: number, v: bigint): void {
    this.#dv.setBigUint64(at - SMRAM_SAVE_OFFSET, BigInt.asUintN(64, v), true);
  }
}

/** 32-bit layout: where segment `n` (ES … GS) keeps its flags, limit and base (`enter_smm_save_seg_32`). */
function seg32(n: number): number {
  return n < 3 ? 0xff84 + n * 12 : 0xff2c + (n - 3) * 12;
}

/**
 * Fills `image` (512 bytes, zeroed by the caller) from `state`: `enter_smm_save_state_64` when `longMode`, else
 * `enter_smm_save_state_32`.
 */
export function writeSmram(image: Uint8Array, state: SmramState, longMode: boolean): void {
  const m = new Image(image);
  const { regs, sregs } = state;
  if (longMode) {
    for (let i = 0; i < 16; i++) m.put64(0xfff8 - i * 8, regs[GPRS[i] as (typeof GPRS)[number]]);
    m.put64(0xff78, regs.rip);
    m.put64(0xff70, regs.rflags);
    m.put64(0xff68, state.dr6);
    m.put64(0xff60, state.dr7);
    m.put64(0xff58, sregs.cr0);
    m.put64(0xff50, sregs.cr3);
    m.put64(0xff48, sregs.cr4);
    m.put32(SMRAM64_SMBASE, state.smbase);
    m.put32(0xfefc, SMM_REVISION_64);
    m.put64(0xfed0, sregs.efer);
    const seg64 = (at: number, seg: kvm_segment): void => {
      m.put16(at, seg.selector);
      m.put16(at + 2, segmentFlags(seg) >>> 8);
      m.put32(at + 4, seg.limit);
      m.put64(at + 8, seg.base);
    };
    seg64(0xfe90, sregs.tr);
    m.put32(0xfe84, sregs.idt.limit);
    m.put64(0xfe88, sregs.idt.base);
    seg64(0xfe70, sregs.ldt);
    m.put32(0xfe64, sregs.gdt.limit);
    m.put64(0xfe68, sregs.gdt.base);
    SEGS.forEach((name, n) => seg64(0xfe00 + n * 16, sregs[name]));
    m.put8(0xfecb, state.intShadow);
    return;
  }
  m.put32(0xfffc, sregs.cr0);
  m.put32(0xfff8, sregs.cr3);
  m.put32(0xfff4, regs.rflags);
  m.put32(0xfff0, regs.rip);
  for (let i = 0; i < 8; i++) m.put32(0xffd0 + i * 4, regs[GPRS[i] as (typeof GPRS)[number]]);
  m.put32(0xffcc, state.dr6);
  m.put32(0xffc8, state.dr7);
  m.put32(0xffc4, sregs.tr.selector);
  m.put32(0xff64, sregs.tr.base);
  m.put32(0xff60, sregs.tr.limit);
  m.put32(0xff5c, segmentFlags(sregs.tr));
  m.put32(0xffc0, sregs.ldt.selector);
  m.put32(0xff80, sregs.ldt.base);
  m.put32(0xff7c, sregs.ldt.limit);
  m.put32(0xff78, segmentFlags(sregs.ldt));
  m.put32(0xff74, sregs.gdt.base);
  m.put32(0xff70, sregs.gdt.limit);
  m.put32(0xff58, sregs.idt.base);
  m.put32(0xff54, sregs.idt.limit);
  SEGS.forEach((name, n) => {
    const seg = sregs[name];
    m.put32(0xffa8 + n * 4, seg.selector);
    m.put32(seg32(n) + 8, seg.base);
    m.put32(seg32(n) + 4, seg.limit);
    m.put32(seg32(n), segmentFlags(seg));
  });
  m.put32(0xff14, sregs.cr4);
  m.put32(0xfefc, SMM_REVISION_32);
  m.put32(SMRAM32_SMBASE, state.smbase);
  m.put8(0xff1a, state.intShadow);
}

/**
 * Reads `image` (512 bytes) as `rsm_load_state_64` (`longMode`) or `rsm_load_state_32` reads it: every field as
 * the handler left it. The 32-bit layout's values are zero-extended (a 32-bit load clears the upper halves), and
 * RFLAGS has bit 1 set (`X86_EFLAGS_FIXED`).
 */
export function readSmram(image: Uint8Array, longMode: boolean): SmramState {
  const m = new Image(image);
  const regs = KVM_REGS_CODEC.zero();
  const sregs = KVM_SREGS_CODEC.zero();
  if (longMode) {
    for (let i = 0; i < 16; i++) regs[GPRS[i] as (typeof GPRS)[number]] = m.u64(0xfff8 - i * 8);
    regs.rip = m.u64(0xff78);
    regs.rflags = m.u64(0xff70) | 2n;
    const seg64 = (at: number, seg: kvm_segment): void => {
      seg.selector = m.u16(at);
      setSegmentFlags(seg, m.u16(at + 2) << 8);
      seg.limit = m.u32(at + 4);
      seg.base = m.u64(at + 8);
    };
    seg64(0xfe90, sregs.tr);
    sregs.idt.limit = m.u32(0xfe84) & 0xffff;
    sregs.idt.base = m.u64(0xfe88);
    seg64(0xfe70, sregs.ldt);
    sregs.gdt.limit = m.u32(0xfe64) & 0xffff;
    sregs.gdt.base = m.u64(0xfe68);
    SEGS.forEach((name, n) => seg64(0xfe00 + n * 16, sregs[name]));
    sregs.cr0 = m.u64(0xff58);
    sregs.cr3 = m.u64(0xff50);
    sregs.cr4 = m.u64(0xff48);
    sregs.efer = m.u64(0xfed0);
    return { regs, sregs, dr6: m.u64(0xff68), dr7: m.u64(0xff60), smbase: m.u32(SMRAM64_SMBASE), intShadow: m.u8(0xfecb) };
  }
  regs.rflags = BigInt(m.u32(0xfff4)) | 2n;
  regs.rip = BigInt(m.u32(0xfff0));
  for (let i = 0; i < 8; i++) regs[GPRS[i] as (typeof GPRS)[number]] = BigInt(m.u32(0xffd0 + i * 4));
  const seg32At = (seg: kvm_segment, sel: number, flagsAt: number, limitAt: number, baseAt: number): void => {
    seg.selector = m.u32(sel) & 0xffff;
    seg.base = BigInt(m.u32(baseAt));
    seg.limit = m.u32(limitAt);
    setSegmentFlags(seg, m.u32(flagsAt));
  };
  seg32At(sregs.tr, 0xffc4, 0xff5c, 0xff60, 0xff64);
  seg32At(sregs.ldt, 0xffc0, 0xff78, 0xff7c, 0xff80);
  sregs.gdt.base = BigInt(m.u32(0xff74));
  sregs.gdt.limit = m.u32(0xff70) & 0xffff;
  sregs.idt.base = BigInt(m.u32(0xff58));
  sregs.idt.limit = m.u32(0xff54) & 0xffff;
  SEGS.forEach((name, n) => seg32At(sregs[name], 0xffa8 + n * 4, seg32(n), seg32(n) + 4, seg32(n) + 8));
  sregs.cr0 = BigInt(m.u32(0xfffc));
  sregs.cr3 = BigInt(m.u32(0xfff8));
  sregs.cr4 = BigInt(m.u32(0xff14));
  return { regs, sregs, dr6: BigInt(m.u32(0xffcc)), dr7: BigInt(m.u32(0xffc8)), smbase: m.u32(SMRAM32_SMBASE), intShadow: m.u8(0xff1a) };
}
