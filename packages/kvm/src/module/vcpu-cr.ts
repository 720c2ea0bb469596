/**
 * KVM's control-register setters for writes it makes on the guest's behalf (arch/x86/kvm/x86.c `kvm_set_cr0`,
 * `kvm_set_cr3`, `kvm_set_cr4`): each checks the one value against the vCPU's current state — unlike KVM_SET_SREGS,
 * which validates a whole set at once (`kvm_is_valid_sregs`, `vcpu-sregs.ts`) — and returns false ("1" in Linux)
 * with nothing changed when the write would fault. RSM loads CR3, CR4 and CR0 through them (`rsm_enter_protected_mode`
 * in `smm.ts`).
 *
 * @module
 */
import { KVM_SREGS_CODEC, type kvm_sregs } from '../abi/structs.js';
import { cr0Valid, cr4Valid, loadPdptrs } from './vcpu-sregs.js';
import { guestHas, guestMaxPhyAddr } from './vcpu-cpuid.js';
import { vcpuArch } from './vcpu-arch.js';
import type { Vcpu } from './vcpu.js';
import { x86Caps } from './x86-caps.js';

const X86_CR0_ET = 1n << 4n;
const X86_CR0_WP = 1n << 16n;
const X86_CR0_NW = 1n << 29n;
const X86_CR0_CD = 1n << 30n;
/** `X86_CR0_PG`. */
export const X86_CR0_PG = 1n << 31n;
/** The CR0 bits KVM keeps (`CR0_RESERVED_BITS` is the complement): PE MP EM TS ET NE WP AM NW CD PG. */
const CR0_DEFINED = 1n | 0x2n | 0x4n | 0x8n | 0x10n | 0x20n | (1n << 16n) | (1n << 18n) | X86_CR0_NW | X86_CR0_CD | X86_CR0_PG;
/** `X86_CR0_PDPTR_BITS`: a change of these with PAE paging reloads the PDPTRs. */
const X86_CR0_PDPTR_BITS = X86_CR0_CD | X86_CR0_NW | X86_CR0_PG;
const X86_CR4_PSE = 1n << 4n;
/** `X86_CR4_PAE`. */
export const X86_CR4_PAE = 1n << 5n;
const X86_CR4_PGE = 1n << 7n;
const X86_CR4_LA57 = 1n << 12n;
/** `X86_CR4_PCIDE`. */
export const X86_CR4_PCIDE = 1n << 17n;
const X86_CR4_SMEP = 1n << 20n;
const X86_CR4_CET = 1n << 23n;
/** `X86_CR4_PDPTR_BITS`. */
const X86_CR4_PDPTR_BITS = X86_CR4_PGE | X86_CR4_PSE | X86_CR4_PAE | X86_CR4_SMEP;
/** `X86_CR3_PCID_NOFLUSH` and `X86_CR3_PCID_MASK`. */
const X86_CR3_PCID_NOFLUSH = 1n << 63n;
const X86_CR3_PCID_MASK = 0xfffn;
/** `X86_CR3_LAM_U48` | `X86_CR3_LAM_U57`. */
const X86_CR3_LAM_BITS = (1n << 61n) | (1n << 62n);
const EFER_LME = 1n << 8n;
/** `EFER_LMA`. */
export const EFER_LMA = 1n << 10n;

/** The vCPU's system registers now. */
function current(v: Vcpu): kvm_sregs {
  const s = KVM_SREGS_CODEC.zero();
  v.getSregs(s);
  return s;
}

/** `is_pae_paging`: CR0.PG and CR4.PAE outside long mode. */
function paePaging(s: kvm_sregs): boolean {
  return (s.cr0 & X86_CR0_PG) !== 0n && (s.cr4 & X86_CR4_PAE) !== 0n && (s.efer & EFER_LMA) === 0n;
}

/** `kvm_set_cr3`. @returns false (nothing changed) when CR3 is not a legal GPA or its PAE PDPTRs cannot be loaded */
export function setCr3(v: Vcpu, value: bigint): boolean {
  const s = current(v);
  let cr3 = value;
  // With CR4.PCIDE bit 63 asks not to flush the TLB; it is not part of CR3.
  if ((s.cr4 & X86_CR4_PCIDE) !== 0n) cr3 &= ~X86_CR3_PCID_NOFLUSH;
  const pae = paePaging(s);
  if (cr3 === s.cr3 && !pae) return true;
  const arch = vcpuArch(v);
  // kvm_vcpu_is_legal_cr3: a legal GPA once the LAM bits are taken out (whatever the mode: RSM stuffs CR3 before it).
  const gpa = guestHas(arch, x86Caps(v.vm.instance), '7.1.eax', 26) ? cr3 & ~X86_CR3_LAM_BITS : cr3;
  if (gpa >> BigInt(guestMaxPhyAddr(arch)) !== 0n) return false;
  if (pae && !loadPdptrs(v, arch, cr3)) return false;
  s.cr3 = cr3;
  v.setSregs(s);
  return true;
}

/**
 * `kvm_set_cr4`. @returns false (nothing changed) for a reserved bit, long mode without PAE or with LA57 changed, PAE
 * PDPTRs that cannot be loaded, or PCIDE turned on with CR3[11:0] non-zero or outside long mode
 */
export function setCr4(v: Vcpu, cr4: bigint): boolean {
  const arch = vcpuArch(v);
  if (!cr4Valid(arch, x86Caps(v.vm.instance), cr4)) return false;
  const s = current(v);
  const old = s.cr4;
  if ((s.efer & EFER_LMA) !== 0n) {
    if ((cr4 & X86_CR4_PAE) === 0n) return false;
    if (((cr4 ^ old) & X86_CR4_LA57) !== 0n) return false;
  } else if ((s.cr0 & X86_CR0_PG) !== 0n && (cr4 & X86_CR4_PAE) !== 0n && ((cr4 ^ old) & X86_CR4_PDPTR_BITS) !== 0n && !loadPdptrs(v, arch, s.cr3)) {
    return false;
  }
  if ((cr4 & X86_CR4_PCIDE) !== 0n && (old & X86_CR4_PCIDE) === 0n) {
    if ((s.cr3 & X86_CR3_PCID_MASK) !== 0n || (s.efer & EFER_LMA) === 0n) return false;
  }
  s.cr4 = cr4;
  v.setSregs(s);
  return true;
}

/**
 * The PAE PDPTE load of `kvm_set_cr0`: a CR0 with paging, outside long mode (EFER.LME clear) and with CR4.PAE, that
 * changes CD, NW or PG loads the PDPTEs at CR3 (`load_pdptrs`). @returns false when that load fails (the write faults)
 */
export function cr0PdptrsLoad(v: Vcpu, s: kvm_sregs, cr0: bigint): boolean {
  if ((s.efer & EFER_LME) !== 0n || (cr0 & X86_CR0_PG) === 0n || (s.cr4 & X86_CR4_PAE) === 0n) return true;
  return ((cr0 ^ s.cr0) & X86_CR0_PDPTR_BITS) === 0n || loadPdptrs(v, vcpuArch(v), s.cr3);
}

/**
 * The checks `kvm_set_cr0` makes beyond the architectural ones the guest interpreter applies to a `mov cr0` that
 * starts paging: its PAE PDPTEs ({@link cr0PdptrsLoad}). @returns false when the write faults (#GP)
 */
export function guestCr0Allowed(v: Vcpu, cr0: bigint): boolean {
  return cr0PdptrsLoad(v, current(v), cr0);
}

/**
 * `kvm_set_cr0` (ET forced, reserved bits dropped; the vendor's `set_cr0` turns EFER.LMA on or off when paging starts
 * or stops with EFER.LME). @returns false (nothing changed) for an invalid value, paging into long mode without PAE or
 * from a 64-bit code segment, PAE PDPTRs that cannot be loaded, paging off in 64-bit mode or with PCIDE, WP off with CET
 */
export function setCr0(v: Vcpu, value: bigint): boolean {
  if (!cr0Valid(value)) return false;
  const cr0 = (value | X86_CR0_ET) & CR0_DEFINED;
  const s = current(v);
  const old = s.cr0;
  const wasPaging = (old & X86_CR0_PG) !== 0n;
  const paging = (cr0 & X86_CR0_PG) !== 0n;
  const lme = (s.efer & EFER_LME) !== 0n;
  if (lme && !wasPaging && paging) {
    if ((s.cr4 & X86_CR4_PAE) === 0n) return false;
    if (s.cs.l !== 0) return false;
  }
  if (!cr0PdptrsLoad(v, s, cr0)) return false;
  const longMode64 = (s.efer & EFER_LMA) !== 0n && s.cs.l !== 0;
  if (!paging && (longMode64 || (s.cr4 & X86_CR4_PCIDE) !== 0n)) return false;
  if ((cr0 & X86_CR0_WP) === 0n && (s.cr4 & X86_CR4_CET) !== 0n) return false;
  s.cr0 = cr0;
  if (lme && !wasPaging && paging) s.efer |= EFER_LMA; // enter_lmode
  else if (lme && wasPaging && !paging) s.efer &= ~EFER_LMA; // exit_lmode
  v.setSregs(s);
  return true;
}
