/**
 * What one KVM module found out about its host at load (`kvm_x86_vendor_init` → `kvm_caps`, `kvm_set_cpu_caps`,
 * `kvm_init_msr_lists`, arch/x86/kvm/x86.c): the XSAVE features, the MCE capabilities, the TSC, the MSR lists and
 * the supported and emulated CPUID (`kvm_dev_ioctl_get_cpuid`, arch/x86/kvm/cpuid.c). Computed once per module,
 * on first use.
 *
 * @module
 */
import type { Cpu, CpuidWord } from '@vac/core';
import { KVM_CPUID_FLAG_SIGNIFCANT_INDEX } from '../abi/constants.js';
import { KVM_MAX_CPUID_ENTRIES } from '../abi/constants-x86.js';
import type { kvm_cpuid_entry2 } from '../abi/structs.js';
import { WORD_PLACE, computeCpuCaps, hostCpuid } from './cpu-caps.js';
import { filteredXcr0 } from './guest-fpu.js';
import { hostTscKhz } from './host-clock.js';
import type { KvmInstance } from './instance.js';
import { vendorArch } from './vendor-arch.js';
import { buildOf } from '../builds/build.js';

/* ---- MSR numbers (arch/x86/include/asm/msr-index.h) ----------------------------------------------------------- */

/** The MSRs the generic x86 code names. */
export const MSR = {
  IA32_TSC: 0x10,
  IA32_PLATFORM_ID: 0x17,
  IA32_APICBASE: 0x1b,
  IA32_FEAT_CTL: 0x3a,
  IA32_TSC_ADJUST: 0x3b,
  IA32_SPEC_CTRL: 0x48,
  IA32_UCODE_REV: 0x8b,
  IA32_SMBASE: 0x9e,
  SMI_COUNT: 0x34,
  PLATFORM_INFO: 0xce,
  MTRRcap: 0xfe,
  IA32_ARCH_CAPABILITIES: 0x10a,
  IA32_TSX_CTRL: 0x122,
  MISC_FEATURES_ENABLES: 0x140,
  IA32_SYSENTER_CS: 0x174,
  IA32_SYSENTER_ESP: 0x175,
  IA32_SYSENTER_EIP: 0x176,
  IA32_MCG_CAP: 0x179,
  IA32_MCG_STATUS: 0x17a,
  IA32_MCG_CTL: 0x17b,
  IA32_MISC_ENABLE: 0x1a0,
  IA32_XFD: 0x1c4,
  IA32_XFD_ERR: 0x1c5,
  IA32_POWER_CTL: 0x1fc,
  MTRRphysBase0: 0x200,
  MTRRfix64K_00000: 0x250,
  MTRRfix16K_80000: 0x258,
  MTRRfix16K_A0000: 0x259,
  MTRRfix4K_C0000: 0x268,
  MTRRfix4K_F8000: 0x26f,
  IA32_CR_PAT: 0x277,
  MTRRdefType: 0x2ff,
  IA32_MC0_CTL2: 0x280,
  IA32_PERF_CAPABILITIES: 0x345,
  IA32_MC0_CTL: 0x400,
  IA32_MCG_EXT_CTL: 0x4d0,
  IA32_BNDCFGS: 0xd90,
  IA32_UMWAIT_CONTROL: 0xe1,
  IA32_RTIT_OUTPUT_BASE: 0x560,
  IA32_RTIT_OUTPUT_MASK: 0x561,
  IA32_RTIT_CTL: 0x570,
  IA32_RTIT_STATUS: 0x571,
  IA32_RTIT_CR3_MATCH: 0x572,
  IA32_RTIT_ADDR0_A: 0x580,
  IA32_TSC_DEADLINE: 0x6e0,
  EFER: 0xc0000080,
  STAR: 0xc0000081,
  LSTAR: 0xc0000082,
  CSTAR: 0xc0000083,
  SYSCALL_MASK: 0xc0000084,
  FS_BASE: 0xc0000100,
  GS_BASE: 0xc0000101,
  KERNEL_GS_BASE: 0xc0000102,
  TSC_AUX: 0xc0000103,
  AMD64_TSC_RATIO: 0xc0000104,
  K7_HWCR: 0xc0010015,
  VM_HSAVE_PA: 0xc0010117,
  AMD64_VIRT_SPEC_CTRL: 0xc001011f,
  AMD64_DE_CFG: 0xc0011029,
  KVM_WALL_CLOCK: 0x11,
  KVM_SYSTEM_TIME: 0x12,
  KVM_WALL_CLOCK_NEW: 0x4b564d00,
  KVM_SYSTEM_TIME_NEW: 0x4b564d01,
  KVM_ASYNC_PF_EN: 0x4b564d02,
  KVM_STEAL_TIME: 0x4b564d03,
  KVM_PV_EOI_EN: 0x4b564d04,
  KVM_POLL_CONTROL: 0x4b564d05,
  KVM_ASYNC_PF_INT: 0x4b564d06,
  KVM_ASYNC_PF_ACK: 0x4b564d07,
} as const;

/** `msrs_to_save_base` (x86.c, Linux 6.12, x86-64; the PMU MSRs are left out: the model has no PMU, `enable_pmu=0`). */
const MSRS_TO_SAVE_BASE: readonly number[] = [
  MSR.IA32_SYSENTER_CS, MSR.IA32_SYSENTER_ESP, MSR.IA32_SYSENTER_EIP, MSR.STAR,
  MSR.CSTAR, MSR.KERNEL_GS_BASE, MSR.SYSCALL_MASK, MSR.LSTAR,
  MSR.IA32_TSC, MSR.IA32_CR_PAT, MSR.VM_HSAVE_PA,
  MSR.IA32_FEAT_CTL, MSR.IA32_BNDCFGS, MSR.TSC_AUX,
  MSR.IA32_SPEC_CTRL, MSR.IA32_TSX_CTRL,
  MSR.IA32_RTIT_CTL, MSR.IA32_RTIT_STATUS, MSR.IA32_RTIT_CR3_MATCH,
  MSR.IA32_RTIT_OUTPUT_BASE, MSR.IA32_RTIT_OUTPUT_MASK,
  ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => MSR.IA32_RTIT_ADDR0_A + i),
  MSR.IA32_UMWAIT_CONTROL,
  MSR.IA32_XFD, MSR.IA32_XFD_ERR,
];

/**
 * `emulated_msrs_all` (x86.c, Linux 6.12; the Hyper-V MSRs are left out: the model is a kernel built without
 * `CONFIG_KVM_HYPERV`).
 */
const EMULATED_MSRS_ALL: readonly number[] = [
  MSR.KVM_SYSTEM_TIME, MSR.KVM_WALL_CLOCK, MSR.KVM_SYSTEM_TIME_NEW, MSR.KVM_WALL_CLOCK_NEW,
  MSR.KVM_ASYNC_PF_EN, MSR.KVM_STEAL_TIME, MSR.KVM_PV_EOI_EN, MSR.KVM_ASYNC_PF_INT, MSR.KVM_ASYNC_PF_ACK,
  MSR.IA32_TSC_ADJUST, MSR.IA32_TSC_DEADLINE, MSR.IA32_ARCH_CAPABILITIES, MSR.IA32_PERF_CAPABILITIES,
  MSR.IA32_MISC_ENABLE, MSR.IA32_MCG_STATUS, MSR.IA32_MCG_CTL, MSR.IA32_MCG_EXT_CTL, MSR.IA32_SMBASE,
  MSR.SMI_COUNT, MSR.PLATFORM_INFO, MSR.MISC_FEATURES_ENABLES, MSR.AMD64_VIRT_SPEC_CTRL, MSR.AMD64_TSC_RATIO,
  MSR.IA32_POWER_CTL, MSR.IA32_UCODE_REV,
  // KVM_FIRST_EMULATED_VMX_MSR … KVM_LAST_EMULATED_VMX_MSR, as Linux lists them
  0x480, 0x48d, 0x48e, 0x48f, 0x490, 0x485, 0x486, 0x488, 0x48a, 0x48b, 0x48c, 0x491,
  MSR.K7_HWCR, MSR.KVM_POLL_CONTROL,
];

/** `msr_based_features_all_except_vmx` (the list a 6.18 kernel reports, checked on a real /dev/kvm). */
const MSR_BASED_FEATURES_EXCEPT_VMX: readonly number[] = [
  MSR.AMD64_DE_CFG, MSR.IA32_UCODE_REV, MSR.IA32_ARCH_CAPABILITIES, MSR.IA32_PERF_CAPABILITIES, MSR.PLATFORM_INFO,
];

/** `MSR_PLATFORM_INFO_CPUID_FAULT` (bit 31). */
export const MSR_PLATFORM_INFO_CPUID_FAULT = 1n << 31n;

/** `KVM_SUPPORTED_ARCH_CAP` (x86.c). */
const KVM_SUPPORTED_ARCH_CAP =
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 17, 19, 20, 24, 26, 27, 28].reduce((m, b) => m | (1n << BigInt(b)), 0n);

/** `KVM_MCE_CAP_SUPPORTED`: MCG_CTL_P | MCG_SER_P. */
const KVM_MCE_CAP_SUPPORTED = (1n << 8n) | (1n << 24n);

/** `XFEATURE_MASK_FP | XFEATURE_MASK_SSE`. */
export const XFEATURE_MASK_FPSSE = 3n;
/** `KVM_SUPPORTED_XCR0` (FP SSE YMM BNDREGS BNDCSR OPMASK ZMM_Hi256 Hi16_ZMM PKRU XTILE). */
const KVM_SUPPORTED_XCR0 = 0x602e7n;

/** Everything a module learned about its host at load. */
export interface X86Caps {
  /** `kvm_cpu_caps`. */
  readonly cpuCaps: Readonly<Record<CpuidWord, number>>;
  /** `boot_cpu_has(X86_FEATURE_XSAVE)` for the kernel (CPUID XSAVE and a leaf 0xD with FP and SSE). */
  readonly xsave: boolean;
  /** `kvm_caps.supported_xcr0` (0 without XSAVE). */
  readonly supportedXcr0: bigint;
  /** `fpu_user_cfg.max_features`: the host kernel's user XSAVE features (CPUID 0xD.0 EDX:EAX; 0 without XSAVE). */
  readonly hostUserXfeatures: bigint;
  /** `kvm_caps.supported_mce_cap`. */
  readonly supportedMceCap: bigint;
  /** `kvm_get_arch_capabilities()`. */
  readonly archCapabilities: bigint;
  /** `tsc_khz`. */
  readonly tscKhz: number;
  /** `kvm_caps.max_guest_tsc_khz` (0 without TSC scaling). */
  readonly maxGuestTscKhz: number;
  /** `efer_reserved_bits`. */
  readonly eferReservedBits: bigint;
  /** `msrs_to_save` then `emulated_msrs`: what KVM_GET_MSR_INDEX_LIST answers. */
  readonly msrIndexList: readonly number[];
  /** The set of {@link X86Caps.msrIndexList} (`kvm_is_advertised_msr`). */
  readonly advertisedMsrs: ReadonlySet<number>;
  /** `msr_based_features`: what KVM_GET_MSR_FEATURE_INDEX_LIST answers. */
  readonly featureMsrs: readonly number[];
  /** `xstate_required_size(supported_xcr0, false)`. */
  readonly xstateSize: number;
  /** `xstate_required_size(xcr0, false)` with the host's leaf-0xD component sizes. */
  xstateSizeFor(xcr0: bigint): number;
  /** `xstate_offsets[i]`, `xstate_sizes[i]`: where state component `i` (2 … 63) lies in the standard format. */
  xstateComponent(i: number): { readonly offset: number; readonly size: number };
  /** `kvm_get_feature_msr`: a feature MSR's value, or `undefined`. */
  featureMsr(msr: number): bigint | undefined;
  /**
   * `kvm_dev_ioctl_get_cpuid(KVM_GET_SUPPORTED_CPUID)` for a process whose guest XSAVE permissions are `guestPerm`
   * (leaf 0xD offers `kvm_get_filtered_xcr0()`): the entries, or `undefined` when they do not fit `max`.
   */
  supportedCpuid(max: number, guestPerm: bigint): kvm_cpuid_entry2[] | undefined;
  /** `kvm_dev_ioctl_get_cpuid(KVM_GET_EMULATED_CPUID)`. */
  emulatedCpuid(max: number): kvm_cpuid_entry2[] | undefined;
}

/** `cpuid_function_is_indexed` (cpuid.h). */
function isIndexed(fn: number): boolean {
  return [4, 7, 0xb, 0xd, 0xf, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1d, 0x1e, 0x1f, 0x24, 0x8000001d].includes(fn);
}

/**
 * Whether `rdmsr_safe(msr)` succeeds on the host's boot CPU: the MSR is in the hardware model's table, or it is an
 * architectural MSR whose CPUID feature the CPU reports (the hardware models list only the MSRs they give values
 * to; every CPU with SEP has the SYSENTER MSRs, every 64-bit one the SYSCALL MSRs, and so on).
 */
function hostHasMsr(boot: Cpu, msr: number): boolean {
  if (boot.rdmsrSafe(msr) !== undefined) return true;
  const l1 = hostCpuid(boot, 1, 0);
  const ext = hostCpuid(boot, 0x80000001, 0);
  switch (msr) {
    case MSR.IA32_TSC:
      return (l1.edx & (1 << 4)) !== 0; // TSC
    case MSR.IA32_SYSENTER_CS:
    case MSR.IA32_SYSENTER_ESP:
    case MSR.IA32_SYSENTER_EIP:
      return (l1.edx & (1 << 11)) !== 0; // SEP
    case MSR.IA32_CR_PAT:
      return (l1.edx & (1 << 16)) !== 0; // PAT
    case MSR.STAR:
    case MSR.SYSCALL_MASK:
      return (ext.edx & (1 << 11)) !== 0; // SYSCALL
    case MSR.LSTAR:
    case MSR.CSTAR:
    case MSR.KERNEL_GS_BASE:
      return (ext.edx & (1 << 29)) !== 0; // LM
    case MSR.TSC_AUX:
      return (ext.edx & (1 << 27)) !== 0 || (hostCpuid(boot, 7, 0).ecx & (1 << 22)) !== 0; // RDTSCP or RDPID
    case MSR.VM_HSAVE_PA:
      return (ext.ecx & (1 << 2)) !== 0; // SVM
    case MSR.IA32_SPEC_CTRL:
      return (hostCpuid(boot, 7, 0).edx & (1 << 26)) !== 0 || (hostCpuid(boot, 0x80000008, 0).ebx & (1 << 14)) !== 0; // IBRS
    default:
      return false;
  }
}

/** An entry's four registers cleared (a module function: `__do_cpuid_func` runs for every leaf of every KVM_GET_SUPPORTED_CPUID). */
function zero(e: kvm_cpuid_entry2): void {
  e.eax = e.ebx = e.ecx = e.edx = 0;
}

/**
 * `xstate_required_size(xstate_bv, compacted)` over the host's leaf-0xD sizes: in the standard format a component
 * ends at its offset (EBX) + size (EAX); in the compacted one the components follow each other, a component with
 * ECX bit 1 starting 64-byte aligned.
 */
function xstateRequiredSize(boot: Cpu, xcr0: bigint, compacted = false): number {
  let ret = 512 + 64; // XSAVE_HDR_OFFSET + XSAVE_HDR_SIZE
  for (let i = 2; i < 64; i++) {
    if ((xcr0 & (1n << BigInt(i))) === 0n) continue;
    const l = hostCpuid(boot, 0xd, i);
    const offset = !compacted ? l.ebx : (l.ecx & 2) !== 0 ? Math.ceil(ret / 64) * 64 : ret;
    ret = Math.max(ret, offset + l.eax);
  }
  return ret;
}

class X86CapsImpl implements X86Caps {
  readonly cpuCaps: Readonly<Record<CpuidWord, number>>;
  readonly xsave: boolean;
  readonly supportedXcr0: bigint;
  readonly hostUserXfeatures: bigint;
  readonly supportedMceCap: bigint;
  readonly archCapabilities: bigint;
  readonly tscKhz: number;
  readonly maxGuestTscKhz: number;
  readonly eferReservedBits: bigint;
  readonly msrIndexList: readonly number[];
  readonly advertisedMsrs: ReadonlySet<number>;
  readonly featureMsrs: readonly number[];
  readonly xstateSize: number;
  readonly #inst: KvmInstance;
  /** {@link X86Caps.xstateSizeFor}'s answers, by XCR0. */
  readonly #xstateSizes = new Map<bigint, number>();
  /** {@link X86Caps.xstateComponent}'s answers, by component. */
  readonly #xstateComponents: Array<{ readonly offset: number; readonly size: number } | undefined> = [];
  readonly #boot: Cpu;
  readonly #build: ReturnType<typeof buildOf>;

  constructor(inst: KvmInstance) {
    this.#inst = inst;
    const boot = inst.host.cpus[0] as Cpu;
    this.#boot = boot;
    const arch = vendorArch(inst);
    const build = buildOf(inst);
    this.#build = build;
    // fpu__init_system_xstate: no XSAVE unless CPUID has it and leaf 0xD offers FP and SSE (else it is cleared).
    const leafD = hostCpuid(boot, 0xd, 0);
    const hostXcr0 = BigInt(leafD.eax) | (BigInt(leafD.edx) << 32n);
    this.xsave = (hostCpuid(boot, 1, 0).ecx & (1 << 26)) !== 0 && (hostXcr0 & XFEATURE_MASK_FPSSE) === XFEATURE_MASK_FPSSE;
    // kvm_x86_vendor_init: host XCR0 & KVM_SUPPORTED_XCR0 (the build's: a release before AMX lacks XTILE).
    this.supportedXcr0 = this.xsave ? hostXcr0 & KVM_SUPPORTED_XCR0 & ~build.xfeaturesRemoved : 0n;
    this.hostUserXfeatures = this.xsave ? hostXcr0 : 0n;
    const caps = computeCpuCaps(boot, arch) as Record<CpuidWord, number>;
    // The build's kvm_set_cpu_caps lacks the features it withholds.
    for (const w of build.cpuidWithheld) {
      for (const word of Object.keys(WORD_PLACE) as CpuidWord[]) {
        const p = WORD_PLACE[word];
        if (p.leaf === w.function && p.index === w.index && p.reg === w.reg) caps[word] = (caps[word] & ~w.mask) >>> 0;
      }
    }
    if (!this.xsave) {
      // setup_clear_cpu_cap(X86_FEATURE_XSAVE) takes the features that depend on it (cpuid-deps.c).
      caps['1.ecx'] = (caps['1.ecx'] & ~((1 << 26) | (1 << 28) | (1 << 29) | (1 << 12))) >>> 0; // XSAVE AVX F16C FMA
      caps['7.0.ebx'] = (caps['7.0.ebx'] & ~((1 << 5) | 0xffff0000)) >>> 0; // AVX2, AVX-512
      caps['d.1.eax'] = 0;
    }
    this.cpuCaps = caps;
    this.supportedMceCap = KVM_MCE_CAP_SUPPORTED | arch.mceCapExtra;
    this.archCapabilities = ((boot.rdmsrSafe(MSR.IA32_ARCH_CAPABILITIES) ?? 0n) & KVM_SUPPORTED_ARCH_CAP) | arch.archCapabilitiesExtra;
    this.tscKhz = hostTscKhz(inst.host);
    // kvm_caps.max_guest_tsc_khz = min(0xffffffff, max ratio × tsc_khz) with scaling; VMX 48-bit, SVM 8.32 ratios.
    this.maxGuestTscKhz = arch.tscControl ? 0xffff_ffff : 0;
    // efer_reserved_bits = ~(SCE | LME | LMA), then kvm_enable_efer_bits(NX) when the host has NX.
    let efer = 1n | (1n << 8n) | (1n << 10n);
    if ((hostCpuid(boot, 0x80000001, 0).edx & (1 << 20)) !== 0) efer |= 1n << 11n;
    this.eferReservedBits = ~efer & 0xffff_ffff_ffff_ffffn;
    this.xstateSize = xstateRequiredSize(boot, this.supportedXcr0);
    // The build's msrs_to_save_base / emulated_msrs_all / msr_based_features_all_except_vmx lack what it removed.
    const kept = (m: number): boolean => !build.msrsRemoved.has(m);
    this.msrIndexList = [...this.#probeMsrsToSave().filter(kept), ...EMULATED_MSRS_ALL.filter((m) => kept(m) && arch.hasEmulatedMsr(m))];
    this.advertisedMsrs = new Set(this.msrIndexList);
    const features: number[] = [];
    for (let m = 0x480; m <= 0x491; m++) if (this.featureMsr(m) !== undefined) features.push(m);
    for (const m of MSR_BASED_FEATURES_EXCEPT_VMX) if (this.featureMsr(m) !== undefined) features.push(m);
    this.featureMsrs = features;
  }

  /** `kvm_probe_msr_to_save` over `msrs_to_save_base`. */
  #probeMsrsToSave(): number[] {
    const boot = this.#boot;
    const has = (w: CpuidWord, b: number): boolean => (this.cpuCaps[w] & (2 ** b)) !== 0;
    const out: number[] = [];
    for (const m of MSRS_TO_SAVE_BASE) {
      if (!hostHasMsr(boot, m)) continue; // rdmsr_safe faults on the host
      if (m === MSR.IA32_BNDCFGS) continue; // kvm_mpx_supported(): no MPX in the model
      if (m === MSR.TSC_AUX && !has('80000001.edx', 27) && !has('7.0.ecx', 22)) continue;
      if (m === MSR.IA32_UMWAIT_CONTROL && !has('7.0.ecx', 5)) continue;
      if (m >= MSR.IA32_RTIT_OUTPUT_BASE && m <= MSR.IA32_RTIT_ADDR0_A + 7) continue; // no Intel PT
      if ((m === MSR.IA32_XFD || m === MSR.IA32_XFD_ERR) && !has('d.1.eax', 4)) continue;
      if (m === MSR.IA32_TSX_CTRL && (this.archCapabilities & (1n << 7n)) === 0n) continue;
      out.push(m);
    }
    return out;
  }

  xstateSizeFor(xcr0: bigint): number {
    // The boot CPU's leaf 0xD is fixed for the module's life, as the rest of its capabilities: one sum per XCR0.
    let size = this.#xstateSizes.get(xcr0);
    if (size === undefined) {
      size = xstateRequiredSize(this.#boot, xcr0);
      this.#xstateSizes.set(xcr0, size);
    }
    return size;
  }

  xstateComponent(i: number): { readonly offset: number; readonly size: number } {
    let c = this.#xstateComponents[i];
    if (c === undefined) {
      const l = hostCpuid(this.#boot, 0xd, i);
      c = Object.freeze({ offset: l.ebx, size: l.eax });
      this.#xstateComponents[i] = c;
    }
    return c;
  }

  featureMsr(msr: number): bigint | undefined {
    // kvm_get_feature_msr
    if (this.#build.featureMsrsRemoved.has(msr)) return undefined;
    switch (msr) {
      case MSR.IA32_ARCH_CAPABILITIES:
        return this.archCapabilities;
      case MSR.IA32_PERF_CAPABILITIES:
        return 0n; // kvm_caps.supported_perf_cap: no PMU
      case MSR.PLATFORM_INFO:
        return MSR_PLATFORM_INFO_CPUID_FAULT;
      case MSR.IA32_UCODE_REV:
        return this.#boot.rdmsrSafe(msr) ?? 0n; // rdmsrl_safe(), whose failure is ignored
      default:
        return vendorArch(this.#inst).featureMsr(msr);
    }
  }

  supportedCpuid(max: number, guestPerm: bigint): kvm_cpuid_entry2[] | undefined {
    const out: kvm_cpuid_entry2[] = [];
    const permittedXcr0 = filteredXcr0(this, guestPerm);
    const limit = Math.min(max, KVM_MAX_CPUID_ENTRIES);
    const boot = this.#boot;
    const add = (fn: number, index: number): kvm_cpuid_entry2 | undefined => {
      // do_host_cpuid
      if (out.length >= limit) return undefined;
      let r = { eax: 0, ebx: 0, ecx: 0, edx: 0 };
      if ((fn & 0xc0000000) !== 0x40000000) r = hostCpuid(boot, fn, index);
      const e: kvm_cpuid_entry2 = { function: fn, index, flags: isIndexed(fn) ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0, ...r };
      out.push(e);
      return e;
    };
    const ok = this.#range(0, add, permittedXcr0) && this.#range(0x80000000, add, permittedXcr0) && this.#range(0x40000000, add, permittedXcr0);
    if (!ok) return undefined;
    // What the build's kvm_set_cpu_caps / __do_cpuid_func does not offer.
    for (const w of this.#build.cpuidWithheld) {
      for (const e of out) if (e.function === w.function && e.index === w.index) e[w.reg] = (e[w.reg] & ~w.mask) >>> 0;
    }
    return out;
  }

  /** `get_cpuid_func`: `first`, then every function up to the limit its entry gives. */
  #range(first: number, add: (fn: number, index: number) => kvm_cpuid_entry2 | undefined, permittedXcr0: bigint): boolean {
    if (!this.#doCpuidFunc(first, add, permittedXcr0)) return false;
    return true;
  }

  /** `__do_cpuid_func` for `fn` and, through `get_cpuid_func`, the functions after it. */
  #doCpuidFunc(first: number, add: (fn: number, index: number) => kvm_cpuid_entry2 | undefined, permittedXcr0: bigint): boolean {
    const head = this.#doOne(first, add, permittedXcr0);
    if (head === undefined) return false;
    const limit = head.eax >>> 0;
    for (let fn = first + 1; fn <= limit; fn++) if (this.#doOne(fn, add, permittedXcr0) === undefined) return false;
    return true;
  }

  /** `__do_cpuid_func(array, fn)`: the entry of `fn` (and its sub-leaves). @returns the first entry, or undefined on E2BIG */
  #doOne(fn: number, add: (fn: number, index: number) => kvm_cpuid_entry2 | undefined, permittedXcr0: bigint): kvm_cpuid_entry2 | undefined {
    const caps = this.cpuCaps;
    const entry = add(fn, 0);
    if (entry === undefined) return undefined;
    switch (fn) {
      case 0:
        entry.eax = Math.min(entry.eax, 0x1f); // limited to the highest leaf KVM implements (6.12)
        break;
      case 1:
        entry.edx = caps['1.edx'];
        entry.ecx = caps['1.ecx'];
        break;
      case 2:
      case 0x80000005:
        break;
      case 4:
      case 0x8000001d:
        for (let i = 1, e = entry; (e.eax & 0x1f) !== 0; i++) {
          const next = add(fn, i);
          if (next === undefined) return undefined;
          e = next;
        }
        break;
      case 6:
        entry.eax = 0x4; // allow ARAT
        entry.ebx = entry.ecx = entry.edx = 0;
        break;
      case 7: {
        const maxIdx = (entry.eax = Math.min(entry.eax, 2));
        entry.ebx = caps['7.0.ebx'];
        entry.ecx = caps['7.0.ecx'];
        entry.edx = caps['7.0.edx'];
        if (maxIdx >= 1) {
          const e1 = add(fn, 1);
          if (e1 === undefined) return undefined;
          e1.eax = caps['7.1.eax'];
          e1.ebx = e1.ecx = e1.edx = 0;
        }
        if (maxIdx >= 2) {
          const e2 = add(fn, 2);
          if (e2 === undefined) return undefined;
          e2.eax = e2.ebx = e2.ecx = e2.edx = 0;
        }
        break;
      }
      case 0xa: // no PMU (enable_pmu=0)
      case 0x12: // no SGX
      case 0x14: // no Intel PT
        zero(entry);
        break;
      case 0x1d: // the tile palettes, with AMX-TILE
        if ((caps['7.0.edx'] & (1 << 24)) === 0) {
          zero(entry);
          break;
        }
        for (let i = 1, maxIdx = entry.eax >>> 0; i <= maxIdx; i++) if (add(fn, i) === undefined) return undefined;
        break;
      case 0x1e: // TMUL, with AMX-TILE
        if ((caps['7.0.edx'] & (1 << 24)) === 0) zero(entry);
        break;
      case 0xb:
      case 0x1f:
        entry.eax = entry.ebx = entry.ecx = 0; // no topology
        break;
      case 0xd: {
        const xcr0 = permittedXcr0; // kvm_get_filtered_xcr0()
        entry.eax &= Number(xcr0 & 0xffff_ffffn);
        entry.ebx = xstateRequiredSize(this.#boot, xcr0);
        entry.ecx = entry.ebx;
        entry.edx &= Number(xcr0 >> 32n);
        if (xcr0 === 0n) break;
        const e1 = add(fn, 1);
        if (e1 === undefined) return undefined;
        e1.eax = caps['d.1.eax'];
        // The compacted size of what a guest may have (kvm_caps.supported_xss is 0: no supervisor components).
        e1.ebx = (e1.eax & 0xa) !== 0 ? xstateRequiredSize(this.#boot, xcr0, true) : 0; // XSAVES | XSAVEC
        e1.ecx = e1.edx = 0;
        for (let i = 2; i < 64; i++) {
          if ((xcr0 & (1n << BigInt(i))) === 0n) continue;
          const s = add(fn, i);
          if (s === undefined) return undefined;
          if ((caps['d.1.eax'] & (1 << 4)) === 0) s.ecx = (s.ecx & ~(1 << 2)) >>> 0; // no XFD: not XFD-capable
          s.edx = 0;
        }
        break;
      }
      case 0x40000000:
        // KVM_CPUID_SIGNATURE: "KVMKVMKVM\0\0\0", limit KVM_CPUID_FEATURES
        entry.eax = 0x40000001;
        entry.ebx = 0x4b4d564b;
        entry.ecx = 0x564b4d56;
        entry.edx = 0x4d;
        break;
      case 0x40000001:
        // KVM_CPUID_FEATURES: CLOCKSOURCE NOP_IO_DELAY CLOCKSOURCE2 ASYNC_PF PV_EOI ASYNC_PF_VMEXIT POLL_CONTROL
        // ASYNC_PF_INT, CLOCKSOURCE_STABLE_BIT. Linux also offers STEAL_TIME and the features that work through
        // hypercalls or steal time — PV_UNHALT, PV_TLB_FLUSH, PV_SEND_IPI, PV_SCHED_YIELD — which the model does
        // not have (no VMCALL/VMMCALL, no steal time): not offered.
        entry.eax = [0, 1, 3, 4, 6, 10, 12, 14, 24].reduce((m, b) => (m | (1 << b)) >>> 0, 0);
        entry.ebx = entry.ecx = entry.edx = 0;
        break;
      case 0x80000000:
        entry.eax = Math.min(entry.eax, 0x80000021);
        break;
      case 0x80000001:
        entry.ebx = (entry.ebx & ~0x0fff0000) >>> 0;
        entry.edx = caps['80000001.edx'];
        entry.ecx = caps['80000001.ecx'];
        break;
      case 0x80000006:
        entry.edx = (entry.edx & ~0x30000) >>> 0;
        break;
      case 0x80000007:
        entry.edx = caps['80000007.edx'] & entry.edx;
        entry.eax = entry.ebx = entry.ecx = 0;
        break;
      case 0x80000008: {
        const virtAs = Math.max((entry.eax >>> 8) & 0xff, 48);
        const tdp = vendorArch(this.#inst).tdp;
        const physAs = tdp ? entry.eax & 0xff : entry.eax & 0xff;
        const gPhysAs = tdp ? Math.min(physAs, 48) : 0;
        entry.eax = (physAs | (virtAs << 8) | (gPhysAs << 16)) >>> 0;
        entry.ecx = (entry.ecx & ~(0xffff0000 | 0xf00)) >>> 0;
        entry.edx = 0;
        entry.ebx = caps['80000008.ebx'];
        break;
      }
      case 0x8000000a:
        if ((caps['80000001.ecx'] & (1 << 2)) === 0) {
          zero(entry);
          break;
        }
        entry.eax = 1;
        entry.ebx = 8;
        entry.ecx = 0;
        entry.edx = caps['8000000a.edx'];
        break;
      case 0x80000019:
        entry.ecx = entry.edx = 0;
        break;
      case 0x8000001a:
        entry.eax &= 7;
        entry.ebx = entry.ecx = entry.edx = 0;
        break;
      case 0x8000001e:
        zero(entry);
        break;
      case 0x8000001f:
        if ((caps['8000001f.eax'] & (1 << 1)) === 0) {
          zero(entry);
        } else {
          entry.eax = caps['8000001f.eax'];
          entry.ebx = (entry.ebx & ~0xfffff000 & ~0xfc0) >>> 0; // no NumVMPL, no PA-bit reduction
        }
        break;
      case 0x80000020:
        zero(entry);
        break;
      case 0x80000021:
        entry.ebx = entry.ecx = entry.edx = 0;
        entry.eax = caps['80000021.eax'];
        break;
      default:
        // 3 (serial number), 5 (MONITOR/MWAIT), and every leaf KVM does not know
        zero(entry);
        break;
    }
    return entry;
  }

  emulatedCpuid(max: number): kvm_cpuid_entry2[] | undefined {
    // __do_cpuid_func_emulated for 0 (limit 7), then 1 … 7; 0x80000000 and 0x40000000 emulate nothing.
    const limit = Math.min(max, KVM_MAX_CPUID_ENTRIES);
    const out: kvm_cpuid_entry2[] = [];
    const rdtscp = (this.cpuCaps['80000001.edx'] & (1 << 27)) !== 0;
    for (let fn = 0; fn <= 7; fn++) {
      if (out.length >= limit) return undefined;
      if (fn === 0) out.push({ function: 0, index: 0, flags: 0, eax: 7, ebx: 0, ecx: 0, edx: 0 });
      else if (fn === 1) out.push({ function: 1, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 1 << 22, edx: 0 }); // MOVBE
      else if (fn === 7) out.push({ function: 7, index: 0, flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX, eax: 0, ebx: 0, ecx: rdtscp ? 1 << 22 : 0, edx: 0 }); // RDPID
    }
    // get_cpuid_func(0x80000000) and get_cpuid_func(KVM_CPUID_SIGNATURE) call __do_cpuid_func_emulated too, which
    // checks for room before it looks at the function: a buffer of exactly the entries' count is E2BIG.
    for (let i = 0; i < 2; i++) if (out.length >= limit) return undefined;
    return out;
  }
}

const CACHE = new WeakMap<KvmInstance, X86Caps>();

/** The {@link X86Caps} of a module (computed at first use). */
export function x86Caps(inst: KvmInstance): X86Caps {
  let c = CACHE.get(inst);
  if (c === undefined) {
    c = new X86CapsImpl(inst);
    CACHE.set(inst, c);
  }
  return c;
}
