/**
 * A vCPU's CPUID (arch/x86/kvm/cpuid.c): KVM_SET_CPUID2 (`kvm_vcpu_ioctl_set_cpuid2` → `kvm_set_cpuid`: at most
 * KVM_MAX_CPUID_ENTRIES, `kvm_check_cpuid`, and after the first KVM_RUN only the same CPUID again), KVM_GET_CPUID2,
 * and what KVM derives from the guest's CPUID (`kvm_vcpu_after_set_cpuid`): features the guest has, MAXPHYADDR,
 * the XCR0 it may use, and whether it is an Intel-compatible guest.
 *
 * @module
 */
import type { CpuidWord } from '@vac/core';
import { KVM_CPUID_FLAG_SIGNIFCANT_INDEX } from '../abi/constants.js';
import type { kvm_cpuid_entry2 } from '../abi/structs.js';
import { WORD_PLACE } from './cpu-caps.js';
import type { VcpuArch } from './vcpu-arch.js';
import { XFEATURE_MASK_FPSSE, type X86Caps } from './x86-caps.js';

/** `kvm_find_cpuid_entry_index`: the entry for `fn`/`index` (the first one for a leaf without sub-leaves). */
export function findCpuid(entries: readonly kvm_cpuid_entry2[], fn: number, index = 0): kvm_cpuid_entry2 | undefined {
  for (const e of entries) {
    if (e.function !== fn) continue;
    if ((e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) === 0 || e.index === index) return e;
  }
  return undefined;
}

/** `guest_cpu_cap_has`: the feature is in the guest's CPUID and KVM supports (or emulates) it. */
export function guestHas(arch: VcpuArch, caps: X86Caps, word: CpuidWord, bit: number): boolean {
  const p = WORD_PLACE[word];
  const e = findCpuid(arch.cpuid, p.leaf, p.index);
  if (e === undefined) return false;
  return (e[p.reg] & (caps.cpuCaps[word] >>> 0) & (2 ** bit)) !== 0;
}

/**
 * `guest_pv_has` (arch/x86/kvm/cpuid.h): without KVM_CAP_ENFORCE_PV_FEATURE_CPUID every paravirtual feature is
 * allowed; with it, only those in EAX of the guest's KVM_CPUID_FEATURES leaf — found as `kvm_find_kvm_cpuid_features`
 * finds it: the first hypervisor leaf base (0x4000_0000 + n × 0x100) whose signature is "KVMKVMKVM\0\0\0" and whose
 * EAX reaches base + 1.
 */
export function guestPvHas(arch: VcpuArch, feature: number): boolean {
  if (!arch.pvCpuidEnforce) return true;
  for (let base = 0x4000_0000; base < 0x4001_0000; base += 0x100) {
    const sig = findCpuid(arch.cpuid, base);
    if (sig === undefined || sig.ebx !== 0x4b4d564b || sig.ecx !== 0x564b4d56 || sig.edx !== 0x4d) continue;
    if (sig.eax >>> 0 < base + 1) return false;
    const features = findCpuid(arch.cpuid, base + 1);
    return features !== undefined && (features.eax & (2 ** feature)) !== 0;
  }
  return false;
}

/** `cpuid_query_maxphyaddr`: CPUID 0x80000008 EAX[7:0], or 36. */
export function guestMaxPhyAddr(arch: VcpuArch): number {
  const ext = findCpuid(arch.cpuid, 0x80000000);
  if (ext === undefined || ext.eax >>> 0 < 0x80000008) return 36;
  const e = findCpuid(arch.cpuid, 0x80000008);
  return e === undefined ? 36 : e.eax & 0xff;
}

/** `vcpu->arch.guest_supported_xcr0`: CPUID 0xD.0 EDX:EAX & `kvm_caps.supported_xcr0`. */
export function guestSupportedXcr0(arch: VcpuArch, caps: X86Caps): bigint {
  const e = findCpuid(arch.cpuid, 0xd, 0);
  if (e === undefined) return 0n;
  return ((BigInt(e.eax >>> 0) | (BigInt(e.edx >>> 0) << 32n)) & caps.supportedXcr0);
}

/** `guest_cpuid_is_intel_compatible`: the guest's vendor is not AMD or Hygon. */
export function guestIsIntelCompatible(arch: VcpuArch): boolean {
  const e = findCpuid(arch.cpuid, 0);
  if (e === undefined) return true;
  const amd = e.ebx === 0x68747541 && e.ecx === 0x444d4163 && e.edx === 0x69746e65; // "AuthenticAMD"
  const hygon = e.ebx === 0x6f677948 && e.ecx === 0x656e6975 && e.edx === 0x6e65476e; // "HygonGenuine"
  return !(amd || hygon);
}

/** Bits of XCR0 that must go together (`__kvm_set_xcr`). */
const XFEATURE_MASK_YMM = 4n;
const XFEATURE_MASK_BNDREGS = 8n;
const XFEATURE_MASK_BNDCSR = 16n;
const XFEATURE_MASK_AVX512 = 0xe0n;
const XFEATURE_MASK_XTILE = 0x60000n;

/** `__kvm_set_xcr(vcpu, 0, xcr0)`: whether XCR0 may take `xcr0`. */
export function xcr0Valid(arch: VcpuArch, caps: X86Caps, xcr0: bigint): boolean {
  if ((xcr0 & 1n) === 0n) return false; // x87 must be on
  if ((xcr0 & XFEATURE_MASK_YMM) !== 0n && (xcr0 & 2n) === 0n) return false;
  const valid = guestSupportedXcr0(arch, caps) | 1n;
  if ((xcr0 & ~valid) !== 0n) return false;
  if (((xcr0 & XFEATURE_MASK_BNDREGS) === 0n) !== ((xcr0 & XFEATURE_MASK_BNDCSR) === 0n)) return false;
  if ((xcr0 & XFEATURE_MASK_AVX512) !== 0n) {
    if ((xcr0 & XFEATURE_MASK_YMM) === 0n) return false;
    if ((xcr0 & XFEATURE_MASK_AVX512) !== XFEATURE_MASK_AVX512) return false;
  }
  if ((xcr0 & XFEATURE_MASK_XTILE) !== 0n && (xcr0 & XFEATURE_MASK_XTILE) !== XFEATURE_MASK_XTILE) return false;
  return true;
}

/**
 * `kvm_check_cpuid`, its first half: the guest's virtual-address width must be 48 or 57 bits (or unstated). The
 * second half, dynamic XSAVE features (AMX) and the process's permission for them, is `enableGuestXfdFeatures`
 * (guest-fpu.ts). @returns a reason to refuse, or `undefined`
 */
export function checkCpuid(entries: readonly kvm_cpuid_entry2[]): string | undefined {
  const e = findCpuid(entries, 0x80000008);
  if (e !== undefined) {
    const vaddr = (e.eax >>> 8) & 0xff;
    if (vaddr !== 48 && vaddr !== 57 && vaddr !== 0) return `CPUID 0x80000008 gives a ${vaddr}-bit virtual address space (48 or 57 only)`;
  }
  return undefined;
}

/** `kvm_cpuid_check_equal`: after KVM_RUN, KVM_SET_CPUID2 may only give the same entries again. */
export function cpuidEqual(a: readonly kvm_cpuid_entry2[], b: readonly kvm_cpuid_entry2[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i] as kvm_cpuid_entry2;
    return x.function === y.function && x.index === y.index && x.flags === y.flags && x.eax === y.eax && x.ebx === y.ebx && x.ecx === y.ecx && x.edx === y.edx;
  });
}

export { XFEATURE_MASK_FPSSE };
