/**
 * A vCPU's MSRs as KVM_GET_MSRS / KVM_SET_MSRS (host-initiated) and the guest's RDMSR / WRMSR see them:
 * arch/x86/kvm/x86.c `kvm_get_msr_common` / `kvm_set_msr_common` / `__kvm_set_msr` / `kvm_do_msr_access`,
 * `set_msr_mce` / `get_msr_mce`, arch/x86/kvm/mtrr.c, and the vendor's own MSRs ({@link VendorArch.vcpuMsrs}).
 *
 * Each access answers like the kernel's handler: a value (or `true`), or a failure (`undefined` / `false`, which
 * ends a KVM_GET_MSRS / KVM_SET_MSRS batch and is #GP for the guest). As in Linux ≥ 6.10, a host-initiated access
 * to an MSR KVM advertises (KVM_GET_MSR_INDEX_LIST) but cannot back for this vCPU reads 0 and takes a write of 0.
 *
 * @module
 */
import { KVM_SREGS_CODEC } from '../abi/structs.js';
import { XFEATURE_MASK_USER_DYNAMIC } from '@vac/core';
import { findCpuid, guestHas, guestIsIntelCompatible, guestMaxPhyAddr, guestPvHas, guestSupportedXcr0 } from './vcpu-cpuid.js';
import { vcpuArch, type VcpuArch } from './vcpu-arch.js';
import type { Vcpu } from './vcpu.js';
import { vmArch } from './vm-arch.js';
import { MSR, MSR_PLATFORM_INFO_CPUID_FAULT, x86Caps, type X86Caps } from './x86-caps.js';
import { writeWallClock } from './pvclock.js';
import { guestTsc, synchronizeTsc } from './vcpu-tsc.js';
import { apicBaseOf } from './vcpu-sregs.js';
import { vendorArch } from './vendor-arch.js';
import { VcpuRequest, makeRequest } from './vcpu-requests.js';
import { buildOf } from '../builds/build.js';
import type { KvmInstance } from './instance.js';
import { MSR_ADVERTISED, MSR_PLAIN_READ, MSR_PV, MSR_REMOVED, MSR_VENDOR, msrDescriptors, type MsrDescriptors } from './msr-descriptors.js';
import { readEntriesOneByOne, writeEntriesOneByOne, type MsrEntries, type MsrEntryAccess } from './msr-entries.js';

const U64 = 0xffff_ffff_ffff_ffffn;

/** MCG_CAP bits (arch/x86/include/asm/mce.h). */
const MCG_CTL_P = 1n << 8n;
const MCG_CMCI_P = 1n << 10n;
const MCI_CTL2_CMCI_EN = 1 << 30;
const MCI_CTL2_CMCI_THRESHOLD_MASK = 0x7fff;
const MCG_EXT_CTL_LMCE_EN = 1n;

/** `kvm_pat_valid`: every byte one of the memory types 0, 1, 4, 5, 6, 7. */
function patValid(data: bigint): boolean {
  if ((data & 0xf8f8f8f8f8f8f8f8n) !== 0n) return false;
  return (data | ((data & 0x0202020202020202n) << 1n)) === data;
}

/** `valid_mtrr_type` (mtrr.c): UC, WC, WT, WP, WB. */
function mtrrTypeValid(t: number): boolean {
  return t === 0 || t === 1 || t === 4 || t === 5 || t === 6;
}

/** Whether `msr` is one of the fixed-range MTRRs. */
function isFixedMtrr(msr: number): boolean {
  return msr === MSR.MTRRfix64K_00000 || msr === MSR.MTRRfix16K_80000 || msr === MSR.MTRRfix16K_A0000 || (msr >= MSR.MTRRfix4K_C0000 && msr <= MSR.MTRRfix4K_F8000);
}

/** `KVM_NR_VAR_MTRR`. */
const NR_VAR_MTRR = 8;

/** `kvm_mtrr_valid`. */
function mtrrValid(arch: VcpuArch, msr: number, data: bigint): boolean {
  if (msr === MSR.MTRRdefType) return (data & ~0xcffn) === 0n && mtrrTypeValid(Number(data & 0xffn));
  if (isFixedMtrr(msr)) {
    for (let i = 0n; i < 64n; i += 8n) if (!mtrrTypeValid(Number((data >> i) & 0xffn))) return false;
    return true;
  }
  // variable range: base (even) or mask (odd); the reserved GPA bits above MAXPHYADDR are reserved
  let mask = (U64 << BigInt(guestMaxPhyAddr(arch))) & U64;
  if ((msr & 1) === 0) {
    if (!mtrrTypeValid(Number(data & 0xffn))) return false;
    mask |= 0xf00n;
  } else {
    mask |= 0x7ffn;
  }
  return (data & mask) === 0n;
}

/** `APIC_BASE_MSR` … `APIC_BASE_MSR + 0xff`: the x2APIC registers as MSRs. */
const X2APIC_MSR_FIRST = 0x800;
const X2APIC_MSR_LAST = 0x8ff;

/** Whether `msr` is an MTRR KVM emulates (`msr_mtrr_valid`). */
function isMtrr(msr: number): boolean {
  return msr === MSR.MTRRdefType || isFixedMtrr(msr) || (msr >= MSR.MTRRphysBase0 && msr < MSR.MTRRphysBase0 + 2 * NR_VAR_MTRR);
}

/** `lapic_in_kernel`: the VM has the in-kernel LAPIC (a full or split irqchip). */
function lapicInKernel(v: Vcpu): boolean {
  return v.vm.irqchip;
}

/** `is_noncanonical_msr_address` for 48-bit guests. */
function canonical(v: bigint): boolean {
  const top = v >> 47n;
  return top === 0n || top === (U64 >> 47n);
}

/**
 * `kvm_set_apic_base`'s checks: reserved bits (above the guest's MAXPHYADDR, bits 0–7 and 9, x2APIC without CPUID
 * x2APIC), the invalid mode, and for the guest the transitions x2APIC → xAPIC and disabled → x2APIC. The current
 * base is {@link apicBaseOf}'s (the in-kernel LAPIC's when there is one).
 */
function apicBaseValid(v: Vcpu, arch: VcpuArch, caps: X86Caps, data: bigint, host: boolean): boolean {
  const X2APIC_ENABLE = 1n << 10n;
  const ENABLE = 1n << 11n;
  const x2apic = guestHas(arch, caps, '1.ecx', 21);
  const reserved = ((U64 << BigInt(guestMaxPhyAddr(arch))) & U64) | 0x2ffn | (x2apic ? 0n : X2APIC_ENABLE);
  if ((data & reserved) !== 0n) return false;
  const mode = data & (ENABLE | X2APIC_ENABLE);
  if (mode === X2APIC_ENABLE) return false; // LAPIC_MODE_INVALID
  if (!host) {
    const old = apicBaseOf(v) & (ENABLE | X2APIC_ENABLE);
    if (mode === ENABLE && old === (ENABLE | X2APIC_ENABLE)) return false;
    if (mode === (ENABLE | X2APIC_ENABLE) && old === 0n) return false;
  }
  return true;
}

/** FS.base / GS.base through the vCPU's KVM_GET_SREGS view (`vmx_get_msr` / `svm_get_msr` read the segment). */
function segmentBase(v: Vcpu, seg: 'fs' | 'gs'): bigint {
  const s = KVM_SREGS_CODEC.zero();
  v.getSregs(s);
  return s[seg].base;
}

/** Write FS.base / GS.base through KVM_SET_SREGS's path (nothing else of the segment changes). */
function setSegmentBase(v: Vcpu, seg: 'fs' | 'gs', base: bigint): void {
  const s = KVM_SREGS_CODEC.zero();
  v.getSregs(s);
  s[seg].base = base;
  v.setSregs(s);
}

/**
 * The KVM_FEATURE_* bit (KVM_CPUID_FEATURES EAX) a paravirtual MSR needs (`kvm_get_msr_common` /
 * `kvm_set_msr_common`'s `guest_pv_has` checks), or `undefined` for other MSRs.
 */
const PV_FEATURE_OF = new Map<number, number>([
  [MSR.KVM_WALL_CLOCK, 0], // KVM_FEATURE_CLOCKSOURCE
  [MSR.KVM_SYSTEM_TIME, 0],
  [MSR.KVM_WALL_CLOCK_NEW, 3], // KVM_FEATURE_CLOCKSOURCE2
  [MSR.KVM_SYSTEM_TIME_NEW, 3],
  [MSR.KVM_ASYNC_PF_EN, 4], // KVM_FEATURE_ASYNC_PF
  [MSR.KVM_STEAL_TIME, 5], // KVM_FEATURE_STEAL_TIME
  [MSR.KVM_PV_EOI_EN, 6], // KVM_FEATURE_PV_EOI
  [MSR.KVM_POLL_CONTROL, 12], // KVM_FEATURE_POLL_CONTROL
  [MSR.KVM_ASYNC_PF_INT, 14], // KVM_FEATURE_ASYNC_PF_INT
  [MSR.KVM_ASYNC_PF_ACK, 14],
]);

/** Whether a paravirtual MSR's feature is withheld (KVM_CAP_ENFORCE_PV_FEATURE_CPUID without the CPUID bit). */
function pvWithheld(arch: VcpuArch, msr: number): boolean {
  if (!arch.pvCpuidEnforce) return false; // guest_pv_has: every feature unless enforced
  const feature = PV_FEATURE_OF.get(msr);
  return feature !== undefined && !guestPvHas(arch, feature);
}

/**
 * The MSRs `kvm_get_msr_common` reads as the value KVM keeps for them (0 until written), host or guest alike — the
 * `msr_info->data = vcpu->arch.<field>` cases; their writes each have their own checks in {@link writeMsr}.
 */
const PLAIN_READ_MSRS: ReadonlySet<number> = new Set([
  MSR.IA32_CR_PAT,
  MSR.IA32_MISC_ENABLE,
  MSR.IA32_UCODE_REV,
  MSR.IA32_POWER_CTL,
  MSR.K7_HWCR,
  MSR.SMI_COUNT,
  MSR.STAR,
  MSR.LSTAR,
  MSR.CSTAR,
  MSR.SYSCALL_MASK,
  MSR.KERNEL_GS_BASE,
  MSR.IA32_SYSENTER_CS,
  MSR.IA32_SYSENTER_ESP,
  MSR.IA32_SYSENTER_EIP,
  MSR.MISC_FEATURES_ENABLES,
  MSR.KVM_ASYNC_PF_EN,
  MSR.KVM_ASYNC_PF_INT,
  MSR.KVM_PV_EOI_EN,
  MSR.KVM_POLL_CONTROL,
  MSR.KVM_WALL_CLOCK,
  MSR.KVM_WALL_CLOCK_NEW,
]);

/** Module `inst`'s {@link MsrDescriptors}. */
function descriptors(inst: KvmInstance): MsrDescriptors {
  return msrDescriptors(inst, PV_FEATURE_OF, PLAIN_READ_MSRS);
}

/** The machine-check MSR range of `msr`, or `undefined` (`MSR_IA32_MC0_CTL … MCx_MISC(KVM_MAX_MCE_BANKS - 1)`). */
function mceBank(msr: number): number | undefined {
  return msr >= MSR.IA32_MC0_CTL && msr < MSR.IA32_MC0_CTL + 32 * 4 ? msr - MSR.IA32_MC0_CTL : undefined;
}

let lastMcgCap = -1n;
let lastBankCount = 0;

/** `mcg_cap & 0xff`, the number of banks, as a number (the last answer kept: a save asks once per bank MSR). */
function mceBankCount(mcgCap: bigint): number {
  if (mcgCap !== lastMcgCap) {
    lastMcgCap = mcgCap;
    lastBankCount = Number(mcgCap & 0xffn);
  }
  return lastBankCount;
}

/**
 * `get_msr_mce`: IA32_MCi_CTL/STATUS/ADDR/MISC (`MSR_IA32_MC0_CTL` …) and IA32_MCi_CTL2 (`MSR_IA32_MC0_CTL2` …): the
 * value, `undefined` (#GP: a bank MCG_CAP does not give), or `null` for an MSR in neither range.
 */
function readMceMsr(arch: VcpuArch, msr: number, host: boolean): bigint | undefined | null {
  const bank = mceBank(msr);
  if (bank !== undefined) {
    if (bank >= mceBankCount(arch.mcgCap) * 4) return undefined;
    return arch.mceBanks.get(bank);
  }
  if (msr >= MSR.IA32_MC0_CTL2 && msr < MSR.IA32_MC0_CTL2 + 32) {
    const b = msr - MSR.IA32_MC0_CTL2;
    if (b >= mceBankCount(arch.mcgCap)) return undefined;
    if ((arch.mcgCap & MCG_CMCI_P) === 0n && !host) return undefined;
    return arch.mciCtl2.get(b);
  }
  return null;
}

/**
 * `set_msr_mce`'s checks of a write of `low`/`high` (the value's two 32-bit words) to a bank MSR: IA32_MCi_CTL takes
 * only 0 or all ones (bits 10 and 0 may be clear: AMD erratum 383 / old guests); the guest writes only 0 to
 * IA32_MCi_STATUS (hwcr McStatusWrEn not modelled); IA32_MCi_CTL2 takes only 0 without MCG_CMCI_P (and nothing from
 * the guest), CMCI_EN and the threshold otherwise.
 * @param slot - the MSR's place in `mce_banks` (`ctl2` false) or `mci_ctl2_banks` (`ctl2` true)
 */
function mceWriteValid(arch: VcpuArch, ctl2: boolean, slot: number, low: number, high: number, host: boolean): boolean {
  const zero = (low | high) === 0;
  if (!ctl2) {
    if (slot % 4 === 0 && !zero && (((low | 0x401) >>> 0) !== 0xffff_ffff || high !== 0xffff_ffff)) return false;
    return host || slot % 4 !== 1 || zero;
  }
  if ((arch.mcgCap & MCG_CMCI_P) === 0n && (!zero || !host)) return false;
  return high === 0 && (low & ~(MCI_CTL2_CMCI_EN | MCI_CTL2_CMCI_THRESHOLD_MASK)) === 0;
}

/** `set_msr_mce` for the bank MSRs: whether the write was taken, or `null` for an MSR in neither range. */
function writeMceMsr(arch: VcpuArch, msr: number, data: bigint, host: boolean): boolean | null {
  const low = Number(data & 0xffff_ffffn);
  const high = Number(data >> 32n);
  const bank = mceBank(msr);
  if (bank !== undefined) {
    if (bank >= mceBankCount(arch.mcgCap) * 4 || !mceWriteValid(arch, false, bank, low, high, host)) return false;
    arch.mceBanks.setWords(bank, low, high);
    return true;
  }
  if (msr >= MSR.IA32_MC0_CTL2 && msr < MSR.IA32_MC0_CTL2 + 32) {
    const b = msr - MSR.IA32_MC0_CTL2;
    if (b >= mceBankCount(arch.mcgCap) || !mceWriteValid(arch, true, b, low, high, host)) return false;
    arch.mciCtl2.setWords(b, low, high);
    return true;
  }
  return null;
}

/**
 * `kvm_get_msr_common` + the vendor's `get_msr` for the modelled MSRs: the value, `'unsupported'` or `undefined` (#GP).
 * @param d - the MSR's {@link MsrDescriptors} bits
 */
function readMsr(v: Vcpu, arch: VcpuArch, caps: X86Caps, msr: number, host: boolean, d: number): bigint | undefined | 'unsupported' {
  if ((d & MSR_PV) !== 0 && pvWithheld(arch, msr)) return undefined;
  if ((d & MSR_VENDOR) !== 0) {
    const vendorSpec = vendorArch(v.vm.instance).vcpuMsrs.get(msr);
    if (vendorSpec !== undefined) return arch.msrs.get(msr) ?? vendorSpec.reset;
  }
  if ((d & MSR_PLAIN_READ) !== 0) return arch.msrs.get(msr) ?? 0n;
  // The machine-check banks first (no case below is in their ranges): a save reads up to 160 of them, and the
  // switch compares its cases one by one.
  if (msr >= MSR.IA32_MC0_CTL2 && msr < MSR.IA32_MC0_CTL + 32 * 4) {
    const r = readMceMsr(arch, msr, host);
    if (r !== null) return r;
  }
  switch (msr) {
    case MSR.IA32_TSC:
      return guestTsc(v, arch);
    case MSR.IA32_APICBASE:
      return apicBaseOf(v); // kvm_get_apic_base
    case MSR.EFER:
      return v.sregs.efer;
    case MSR.KVM_ASYNC_PF_ACK:
      return 0n;
    case MSR.IA32_SMBASE:
      // CONFIG_KVM_SMM: user space only (SMM itself is not modelled).
      if (!host) return undefined;
      return arch.msrs.get(msr) ?? 0x30000n;
    case MSR.TSC_AUX:
      if (!host && !guestHas(arch, caps, '80000001.edx', 27) && !guestHas(arch, caps, '7.0.ecx', 22)) return undefined;
      return arch.msrs.get(msr) ?? 0n;
    case MSR.FS_BASE:
    case MSR.GS_BASE:
      return segmentBase(v, msr === MSR.FS_BASE ? 'fs' : 'gs');
    case MSR.IA32_ARCH_CAPABILITIES:
      if (!guestHas(arch, caps, '7.0.edx', 29)) return 'unsupported';
      return arch.msrs.get(msr) ?? 0n;
    case MSR.IA32_PERF_CAPABILITIES:
      return 'unsupported'; // needs guest PDCM; no PMU
    case MSR.PLATFORM_INFO:
      if (!host && !vmArch(v.vm).guestCanReadPlatformInfo) return undefined;
      return arch.msrs.get(msr) ?? 0n;
    case MSR.IA32_TSC_ADJUST:
      return arch.tscAdjust;
    case MSR.IA32_TSC_DEADLINE: {
      // kvm_get_lapic_tscdeadline_msr: 0 without an in-kernel LAPIC, or unless it is enabled in TSC-deadline mode.
      const lapic = v.intr?.chip?.lapic;
      return lapic === undefined ? 0n : lapic.getTscDeadlineMsr();
    }
    case MSR.IA32_MCG_CAP:
      return arch.mcgCap;
    case MSR.IA32_MCG_CTL:
      if ((arch.mcgCap & MCG_CTL_P) === 0n && !host) return undefined;
      return arch.mcgCtl;
    case MSR.IA32_MCG_STATUS:
      return arch.mcgStatus;
    case MSR.IA32_MCG_EXT_CTL:
      if (!vendorArch(v.vm.instance).hasEmulatedMsr(msr)) return 'unsupported';
      return arch.mcgExtCtl;
    case MSR.MTRRcap:
      return 0x500n | BigInt(NR_VAR_MTRR); // WC, FIX, 8 variable ranges
    case MSR.KVM_SYSTEM_TIME:
    case MSR.KVM_SYSTEM_TIME_NEW:
      return arch.pvclock.msr;
    case MSR.KVM_STEAL_TIME:
      return 'unsupported'; // steal time is not modelled (KVM_CAP_STEAL_TIME 0)
    case MSR.IA32_XFD:
    case MSR.IA32_XFD_ERR:
      // The guest needs XFD in its CPUID; user space may always read them.
      if (!host && !guestHas(arch, caps, 'd.1.eax', 4)) return undefined;
      return msr === MSR.IA32_XFD ? arch.xfd : arch.xfdErr;
    default: {
      if (msr >= X2APIC_MSR_FIRST && msr <= X2APIC_MSR_LAST) {
        // kvm_x2apic_msr_read: the in-kernel LAPIC's register in x2APIC mode, else #GP.
        const intr = v.intr;
        const lapic = intr?.chip?.lapic;
        if (lapic === undefined || intr?.irqchip === undefined) return undefined;
        return intr.irqchip.op((now) => lapic.readX2apicMsr(msr, now));
      }
      if (isMtrr(msr)) return arch.msrs.get(msr) ?? 0n;
      return 'unsupported';
    }
  }
}

/**
 * `kvm_set_msr_common` + the vendor's `set_msr` + `__kvm_set_msr`'s checks: whether the write was taken.
 * @param d - the MSR's {@link MsrDescriptors} bits
 */
function writeMsr(v: Vcpu, arch: VcpuArch, caps: X86Caps, msr: number, data: bigint, host: boolean, d: number): boolean | 'unsupported' {
  if ((d & MSR_PV) !== 0 && pvWithheld(arch, msr)) return false;
  if ((d & MSR_VENDOR) !== 0) {
    const vendorSpec = vendorArch(v.vm.instance).vcpuMsrs.get(msr);
    if (vendorSpec !== undefined) {
      if (!vendorSpec.accepts(data, host)) return false;
      arch.msrs.set(msr, vendorSpec.normalize?.(data) ?? data);
      return true;
    }
  }
  // The machine-check banks first, as in readMsr.
  if (msr >= MSR.IA32_MC0_CTL2 && msr < MSR.IA32_MC0_CTL + 32 * 4) {
    const r = writeMceMsr(arch, msr, data, host);
    if (r !== null) return r;
  }
  switch (msr) {
    case MSR.IA32_XFD:
    case MSR.IA32_XFD_ERR:
      // Only bits of the dynamic features the guest's CPUID gives it (kvm_guest_supported_xfd).
      if (!host && !guestHas(arch, caps, 'd.1.eax', 4)) return false;
      if ((data & ~(guestSupportedXcr0(arch, caps) & XFEATURE_MASK_USER_DYNAMIC)) !== 0n) return false;
      if (msr === MSR.IA32_XFD) arch.xfd = data; // fpu_update_guest_xfd
      else arch.xfdErr = data;
      return true;
    case MSR.IA32_TSC: {
      if (host) {
        synchronizeTsc(v, data);
        return true;
      }
      // The guest's write moves its offset (adjust_tsc_offset_guest) and IA32_TSC_ADJUST by the same amount.
      const adj = BigInt.asUintN(64, data - guestTsc(v, arch));
      arch.tscOffset = BigInt.asUintN(64, arch.tscOffset + adj);
      arch.tscAdjust = BigInt.asUintN(64, arch.tscAdjust + adj);
      arch.clockUpdate ||= arch.pvclock.active;
      return true;
    }
    case MSR.IA32_APICBASE: {
      if (!apicBaseValid(v, arch, caps, data, host)) return false;
      // kvm_lapic_set_base: the in-kernel LAPIC keeps it (its ID, mode and MMIO page follow), else KVM's copy.
      const lapic = v.intr?.chip?.lapic;
      if (lapic === undefined) v.sregs.apic_base = data;
      else if (!lapic.setApicBase(data, host)) return false;
      return true;
    }
    case MSR.EFER: {
      // set_efer: reserved bits always fault; the guest may not toggle LME with paging on; LMA is KVM's.
      if ((data & caps.eferReservedBits) !== 0n) return false;
      const s = v.sregs;
      if (!host && (s.cr0 & 0x80000000n) !== 0n && ((s.efer ^ data) & (1n << 8n)) !== 0n) return false;
      s.efer = (data & ~(1n << 10n)) | (s.efer & (1n << 10n));
      return true;
    }
    case MSR.IA32_CR_PAT:
      if (!patValid(data)) return false;
      arch.msrs.set(msr, data);
      return true;
    case MSR.STAR:
    case MSR.SYSCALL_MASK:
    case MSR.IA32_SYSENTER_CS:
      arch.msrs.set(msr, data);
      return true;
    case MSR.LSTAR:
    case MSR.CSTAR:
    case MSR.KERNEL_GS_BASE:
      if (!canonical(data)) return false;
      arch.msrs.set(msr, data);
      return true;
    case MSR.IA32_SYSENTER_ESP:
    case MSR.IA32_SYSENTER_EIP:
      // __kvm_set_msr: made canonical (48 bits) rather than refused
      arch.msrs.set(msr, BigInt.asUintN(64, BigInt.asIntN(48, data)));
      return true;
    case MSR.FS_BASE:
    case MSR.GS_BASE: {
      if (!canonical(data)) return false;
      setSegmentBase(v, msr === MSR.FS_BASE ? 'fs' : 'gs', data);
      return true;
    }
    case MSR.TSC_AUX:
      if (!host && !guestHas(arch, caps, '80000001.edx', 27) && !guestHas(arch, caps, '7.0.ecx', 22)) return false;
      // Intel reserves bits 63:32; AMD ignores them: enforce for Intel-compatible guests, else drop them.
      if (guestIsIntelCompatible(arch) && data >> 32n !== 0n) return false;
      arch.msrs.set(msr, data & 0xffff_ffffn);
      return true;
    case MSR.IA32_MISC_ENABLE:
      arch.msrs.set(msr, data);
      return true;
    case MSR.IA32_UCODE_REV:
      if (host) arch.msrs.set(msr, data); // guest writes are ignored
      return true;
    case MSR.IA32_POWER_CTL:
      arch.msrs.set(msr, data);
      return true;
    case MSR.K7_HWCR: {
      // ignore the flush-filter, IGNNE and TLB-cache-disable bits; allow McStatusWrEn and TscFreqSel only
      const d = data & ~(0x40n | 0x100n | 0x8n);
      if ((d & ~((1n << 18n) | (1n << 24n))) !== 0n) return false;
      arch.msrs.set(msr, d);
      return true;
    }
    case MSR.SMI_COUNT:
      if (!host) return false;
      arch.msrs.set(msr, data);
      return true;
    case MSR.PLATFORM_INFO:
      if (!host) return false;
      arch.msrs.set(msr, data);
      return true;
    case MSR.MISC_FEATURES_ENABLES: {
      const CPUID_FAULT = 1n;
      const supportsFault = ((arch.msrs.get(MSR.PLATFORM_INFO) ?? 0n) & MSR_PLATFORM_INFO_CPUID_FAULT) !== 0n;
      if ((data & ~CPUID_FAULT) !== 0n || ((data & CPUID_FAULT) !== 0n && !supportsFault)) return false;
      arch.msrs.set(msr, data);
      return true;
    }
    case MSR.IA32_ARCH_CAPABILITIES:
      if (!host || !guestHas(arch, caps, '7.0.edx', 29)) return 'unsupported';
      if ((data & ~caps.archCapabilities) !== 0n) return false;
      arch.msrs.set(msr, data);
      return true;
    case MSR.IA32_PERF_CAPABILITIES:
      return 'unsupported';
    case MSR.IA32_TSC_ADJUST:
      // Without CPUID.7.0:EBX.TSC_ADJUST the write is taken and ignored.
      if (!guestHas(arch, caps, '7.0.ebx', 1)) return true;
      if (!host) {
        arch.tscOffset = BigInt.asUintN(64, arch.tscOffset + (data - arch.tscAdjust));
        arch.clockUpdate ||= arch.pvclock.active;
      }
      arch.tscAdjust = data;
      return true;
    case MSR.IA32_TSC_DEADLINE: {
      // kvm_set_lapic_tscdeadline_msr: arms (0 disarms) the LAPIC timer in TSC-deadline mode; ignored without an
      // in-kernel LAPIC, or while the LAPIC is disabled or its timer in another mode.
      const intr = v.intr;
      const lapic = intr?.chip?.lapic;
      if (lapic !== undefined) intr?.irqchip?.op((now) => lapic.setTscDeadlineMsr(data, now));
      return true;
    }
    case MSR.IA32_MCG_STATUS:
      arch.mcgStatus = data;
      return true;
    case MSR.IA32_MCG_CTL:
      if ((arch.mcgCap & MCG_CTL_P) === 0n && (data !== 0n || !host)) return false;
      if (data !== 0n && data !== U64) return false;
      arch.mcgCtl = data;
      return true;
    case MSR.IA32_MCG_EXT_CTL:
      if (!vendorArch(v.vm.instance).hasEmulatedMsr(msr)) return 'unsupported';
      if (!host || (data & ~MCG_EXT_CTL_LMCE_EN) !== 0n) return false;
      arch.mcgExtCtl = data;
      return true;
    case MSR.KVM_WALL_CLOCK:
    case MSR.KVM_WALL_CLOCK_NEW:
      // kvm_write_wall_clock: the VM's boot time goes to guest memory at `data` now.
      arch.msrs.set(msr, data);
      writeWallClock(v, data);
      return true;
    case MSR.KVM_SYSTEM_TIME:
    case MSR.KVM_SYSTEM_TIME_NEW:
      // kvm_write_system_time: enable bit 0 → kvmclock at the GPA, written at the next entry
      // (KVM_REQ_GLOBAL_CLOCK_UPDATE: a request, so the entry after the guest's own WRMSR writes it too).
      arch.pvclock.msr = data;
      arch.pvclock.msrIndex = msr;
      arch.pvclock.active = (data & 1n) !== 0n;
      arch.clockUpdate = arch.pvclock.active;
      if (arch.pvclock.active) makeRequest(v, VcpuRequest.ClockUpdate);
      return true;
    case MSR.KVM_ASYNC_PF_EN:
      // kvm_pv_enable_async_pf: bits 4 and 5 reserved; the delivery bits need their PV features; without an
      // in-kernel LAPIC only 0 is taken.
      if ((data & 0x30n) !== 0n) return false;
      if ((data & 4n) !== 0n && !guestPvHas(arch, 10)) return false; // KVM_ASYNC_PF_DELIVERY_AS_PF_VMEXIT
      if ((data & 8n) !== 0n && !guestPvHas(arch, 14)) return false; // KVM_ASYNC_PF_DELIVERY_AS_INT
      if (!lapicInKernel(v) && data !== 0n) return false;
      arch.msrs.set(msr, data);
      return true;
    case MSR.KVM_ASYNC_PF_INT:
      // kvm_pv_enable_async_pf_int: a vector (bits 7:0), and an in-kernel LAPIC to deliver it.
      if ((data & ~0xffn) !== 0n || !lapicInKernel(v)) return false;
      arch.msrs.set(msr, data);
      return true;
    case MSR.KVM_ASYNC_PF_ACK:
      return true;
    case MSR.IA32_SMBASE:
      if (!host) return false;
      arch.msrs.set(msr, data);
      return true;
    case MSR.KVM_PV_EOI_EN: {
      // kvm_lapic_set_pv_eoi: a 4-byte aligned address, in guest memory when enabled (its gfn_to_hva cache).
      const gpa = Number(data & ~1n);
      if (gpa % 4 !== 0) return false;
      if ((data & 1n) !== 0n && v.vm.memslots.slotAt(gpa) === undefined) return false;
      arch.msrs.set(msr, data);
      return true;
    }
    case MSR.KVM_POLL_CONTROL:
      if ((data & ~1n) !== 0n) return false; // only the enable bit
      arch.msrs.set(msr, data);
      return true;
    case MSR.KVM_STEAL_TIME:
      return 'unsupported'; // steal time is not modelled (KVM_CAP_STEAL_TIME 0): only the 0 user space may write to an advertised MSR
    default: {
      if (msr >= X2APIC_MSR_FIRST && msr <= X2APIC_MSR_LAST) {
        // kvm_x2apic_msr_write: the in-kernel LAPIC's register in x2APIC mode (an ICR write sends the IPI), else #GP.
        const intr = v.intr;
        const lapic = intr?.chip?.lapic;
        if (lapic === undefined || intr?.irqchip === undefined) return false;
        return intr.irqchip.op((now) => lapic.writeX2apicMsr(msr, data, now));
      }
      if (isMtrr(msr)) {
        if (!mtrrValid(arch, msr, data)) return false;
        arch.msrs.set(msr, data);
        return true;
      }
      return 'unsupported';
    }
  }
}

/**
 * `kvm_get_msr_with_filter` / `do_get_msr`: the value of `msr`, or `undefined` when the access fails.
 * @param host - KVM_GET_MSRS (host-initiated), not the guest's RDMSR
 */
export function getMsr(v: Vcpu, msr: number, host: boolean): bigint | undefined {
  const caps = x86Caps(v.vm.instance);
  const d = descriptors(v.vm.instance).of(msr);
  // An MSR the module's build has no handler for (builds/build.ts) goes where kvm_get_msr_common's default goes.
  const r = (d & MSR_REMOVED) === 0 ? readMsr(v, vcpuArch(v), caps, msr, host, d) : 'unsupported';
  if (r !== 'unsupported') return r;
  // kvm_do_msr_access: user space reads an advertised MSR the vCPU cannot back as 0.
  return host && (d & MSR_ADVERTISED) !== 0 ? 0n : undefined;
}

/** {@link inMceRanges}' answers, by table (a vendor's MSRs, a build's removed MSRs: fixed once made). */
const IN_MCE_RANGES = new WeakMap<object, boolean>();

/** Whether any MSR of `table` (its keys) is a machine-check bank MSR; asked once per batch, answered once per table. */
function inMceRanges(table: ReadonlyMap<number, unknown> | ReadonlySet<number>): boolean {
  let r = IN_MCE_RANGES.get(table);
  if (r === undefined) {
    r = [...table.keys()].some((msr) => msr >= MSR.IA32_MC0_CTL2 && msr < MSR.IA32_MC0_CTL + 32 * 4);
    IN_MCE_RANGES.set(table, r);
  }
  return r;
}

/** `MSR_IA32_MC0_CTL` and `MSR_IA32_MC0_CTL2` as plain numbers for the batch loops below, and `KVM_MAX_MCE_BANKS`. */
const MC0_CTL = 0x400;
const MC0_CTL2 = 0x280;
const KVM_MAX_MCE_BANKS = 32;

/**
 * {@link getMsr} and {@link setMsr} for the entries of one KVM_GET_MSRS / KVM_SET_MSRS (`msr_io`), host-initiated: the
 * same answers, with the vCPU's lookups (its arch state, the module's capabilities and build) made once for the batch
 * rather than once per MSR. On the C entries the machine-check bank MSRs — 128 of a save's 165 — are copied as words
 * between the bank tables and the entries inside the batch's loop (`get_msr_mce` / `set_msr_mce`, host-initiated: the
 * same answers as {@link readMceMsr} / {@link writeMceMsr}, no bigint, no call per entry).
 */
export class HostMsrBatch implements MsrEntryAccess {
  private readonly v: Vcpu;
  private readonly arch: VcpuArch;
  private readonly caps: X86Caps;
  private readonly descriptors: MsrDescriptors;
  /**
   * Whether the bank MSRs take the words path: they are never paravirtual; a vendor MSR in their ranges would come
   * first in readMsr, and a build may remove them (neither happens today; then they take the generic path).
   */
  private readonly bankBytes: boolean;

  /** @param v - the vCPU */
  constructor(v: Vcpu) {
    const inst = v.vm.instance;
    this.v = v;
    this.caps = x86Caps(inst);
    this.arch = vcpuArch(v);
    this.descriptors = descriptors(inst);
    this.bankBytes = !inMceRanges(vendorArch(inst).vcpuMsrs) && !inMceRanges(buildOf(inst).msrsRemoved);
  }

  /** `getMsr(v, msr, true)`. */
  read(msr: number): bigint | undefined {
    const d = this.descriptors.of(msr);
    const r = (d & MSR_REMOVED) === 0 ? readMsr(this.v, this.arch, this.caps, msr, true, d) : 'unsupported';
    if (r !== 'unsupported') return r;
    return (d & MSR_ADVERTISED) !== 0 ? 0n : undefined;
  }

  /** `setMsr(v, msr, data, true)`. */
  write(msr: number, data: bigint): boolean {
    const d = this.descriptors.of(msr);
    const r = (d & MSR_REMOVED) === 0 ? writeMsr(this.v, this.arch, this.caps, msr, data, true, d) : 'unsupported';
    if (r !== 'unsupported') return r;
    return data === 0n && (d & MSR_ADVERTISED) !== 0;
  }

  /** {@link HostMsrBatch.read} of entries 0, 1, … into their data until one fails: how many were read. */
  readEntries(entries: MsrEntries, n: number): number {
    if (!this.bankBytes) return readEntriesOneByOne(this, entries, n);
    const arch = this.arch;
    const bankWords = arch.mceBanks.words;
    const ctl2Words = arch.mciCtl2.words;
    // MCG_CAP's bank count, read again after any other MSR (none of which changes MCG_CAP: KVM_X86_SETUP_MCE does)
    let banks = mceBankCount(arch.mcgCap);
    let i = 0;
    for (; i < n; i++) {
      const msr = entries.index(i);
      const bank = msr - MC0_CTL;
      if (bank >= 0 && bank < 4 * KVM_MAX_MCE_BANKS) {
        if (bank >= 4 * banks) break; // a bank MCG_CAP does not give
        entries.setWords(i, bankWords[2 * bank] as number, bankWords[2 * bank + 1] as number);
        continue;
      }
      const ctl2 = msr - MC0_CTL2;
      if (ctl2 >= 0 && ctl2 < KVM_MAX_MCE_BANKS) {
        if (ctl2 >= banks) break;
        entries.setWords(i, ctl2Words[2 * ctl2] as number, ctl2Words[2 * ctl2 + 1] as number);
        continue;
      }
      const d = this.read(msr);
      if (d === undefined) break;
      entries.setData(i, d);
      banks = mceBankCount(arch.mcgCap);
    }
    return i;
  }

  /** {@link HostMsrBatch.write} of entries 0, 1, … until one is refused: how many were written. */
  writeEntries(entries: MsrEntries, n: number): number {
    if (!this.bankBytes) return writeEntriesOneByOne(this, entries, n);
    const arch = this.arch;
    const bankWords = arch.mceBanks.words;
    const ctl2Words = arch.mciCtl2.words;
    let banks = mceBankCount(arch.mcgCap); // as in readEntries
    let i = 0;
    for (; i < n; i++) {
      const msr = entries.index(i);
      const bank = msr - MC0_CTL;
      if (bank >= 0 && bank < 4 * KVM_MAX_MCE_BANKS) {
        const low = entries.low(i);
        const high = entries.high(i);
        if (bank >= 4 * banks || !mceWriteValid(arch, false, bank, low, high, true)) break;
        bankWords[2 * bank] = low;
        bankWords[2 * bank + 1] = high;
        continue;
      }
      const ctl2 = msr - MC0_CTL2;
      if (ctl2 >= 0 && ctl2 < KVM_MAX_MCE_BANKS) {
        const low = entries.low(i);
        const high = entries.high(i);
        if (ctl2 >= banks || !mceWriteValid(arch, true, ctl2, low, high, true)) break;
        ctl2Words[2 * ctl2] = low;
        ctl2Words[2 * ctl2 + 1] = high;
        continue;
      }
      if (!this.write(msr, entries.data(i))) break;
      banks = mceBankCount(arch.mcgCap);
    }
    return i;
  }
}

/**
 * Why a guest RDMSR/WRMSR failed, as `kvm_msr_reason` tells them apart: `'unsupported'` for an MSR KVM has no handler
 * for (`KVM_MSR_RET_UNSUPPORTED` → `KVM_MSR_EXIT_REASON_UNKNOWN`), `'invalid'` for one that refused the access (any
 * other error → `KVM_MSR_EXIT_REASON_INVAL`).
 */
export type GuestMsrFailure = 'unsupported' | 'invalid';

/** The guest's RDMSR past the filter (`kvm_get_msr_ignored_check`, guest-initiated): the value, or why it failed. */
export function guestReadMsr(v: Vcpu, msr: number): bigint | GuestMsrFailure {
  const d = descriptors(v.vm.instance).of(msr);
  const r = (d & MSR_REMOVED) === 0 ? readMsr(v, vcpuArch(v), x86Caps(v.vm.instance), msr, false, d) : 'unsupported';
  return r === undefined ? 'invalid' : r;
}

/** The guest's WRMSR past the filter (`kvm_set_msr_ignored_check`, guest-initiated): true when written, or why not. */
export function guestWriteMsr(v: Vcpu, msr: number, data: bigint): true | GuestMsrFailure {
  const d = descriptors(v.vm.instance).of(msr);
  const r = (d & MSR_REMOVED) === 0 ? writeMsr(v, vcpuArch(v), x86Caps(v.vm.instance), msr, data, false, d) : 'unsupported';
  return r === false ? 'invalid' : r;
}

/**
 * `kvm_set_msr_with_filter` / `do_set_msr`: whether the write was taken.
 * @param host - KVM_SET_MSRS (host-initiated), not the guest's WRMSR
 */
export function setMsr(v: Vcpu, msr: number, data: bigint, host: boolean): boolean {
  const caps = x86Caps(v.vm.instance);
  const d = descriptors(v.vm.instance).of(msr);
  const r = (d & MSR_REMOVED) === 0 ? writeMsr(v, vcpuArch(v), caps, msr, data, host, d) : 'unsupported';
  if (r !== 'unsupported') return r;
  // kvm_do_msr_access: user space may write 0 to an advertised MSR the vCPU cannot back.
  return host && data === 0n && (d & MSR_ADVERTISED) !== 0;
}

export { findCpuid };
