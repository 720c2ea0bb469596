/**
 * `intel(options)`: the Intel hardware model, a plain `HardwareModel` for `createHost`.
 *
 * ```ts
 * const host = createHost({
 *   cpus: 8,
 *   hardware: intel({ cpus: { 3: { vmxDisabledByBios: true }, 5: { foreignOwner: true } } }),
 * });
 * ```
 *
 * Options apply to every CPU; `cpus: { n: {...} }` overrides them for CPU n. `create(env)` plays the part of
 * the firmware and of the kernel's early boot on each CPU: it fills in CPUID leaves 0, 1, 7, 0xD (XSAVE),
 * 0x80000000, 0x80000001 and 0x80000008, the VMX capability MSRs, IA32_FEATURE_CONTROL (locked by the kernel's `init_ia32_feat_ctl` if
 * the BIOS left it unlocked), the L1TF/MDS MSRs and the syscall MSRs Linux programs at boot, then builds the
 * host's {@link IntelHardware}.
 *
 * @module
 */
import { UsageError } from '@vac/core';
import { isFaultMode, resolvePerCpu } from '@vac/core/internal';
import { cpuidKey, type Cpu, type CpuidRegs, type FaultMode, type HardwareEnv, type HardwareModel, type MsrWriteHook } from '@vac/core';
import {
  ARCH_CAP,
  CPUID_BIT,
  CPU_BASED_ACTIVATE_SECONDARY_CONTROLS,
  FEAT_CTL,
  INTEL_MSR,
  SECONDARY_EXEC,
  VMX_EPT_CAP,
  VMX_VPID_CAP,
} from './arch.js';
import { IntelHardware } from './hardware.js';

/** Options of one CPU (all optional; see {@link IntelOptions} for the defaults). */
export interface IntelCpuOptions {
  /** CPUID.1:ECX.VMX (bit 5). Without it the CPU has no VMX MSRs at all. Default `true`. */
  readonly vmx?: boolean;
  /**
   * What the BIOS left in IA32_FEATURE_CONTROL (MSR 0x3a): bit 0 lock, bit 1 VMX inside SMX, bit 2 VMX outside
   * SMX ({@link FEAT_CTL}). Default `0x5` (locked, VMX outside SMX). An unlocked value is locked at boot with
   * VMX outside SMX enabled, as Linux's `init_ia32_feat_ctl` does, unless
   * {@link IntelOptions.kernelLocksFeatureControl} is `false`.
   */
  readonly featureControl?: number;
  /**
   * Shorthand: `true` = IA32_FEATURE_CONTROL locked with VMX disabled (`0x1`), as a BIOS with VT-x turned off
   * leaves it ("VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL"); `false` = `0x5`. Do not combine with
   * `featureControl` in the same options object.
   */
  readonly vmxDisabledByBios?: boolean;
  /** IA32_VMX_BASIC[30:0], the VMCS revision identifier. Default `0x12`. */
  readonly vmxRevisionId?: number;
  /** IA32_VMX_BASIC[44:32], the VMCS region size in bytes (1 … 8191; the SDM promises ≤ 4096). Default `4096`. */
  readonly vmcsSize?: number;
  /** The "enable EPT" secondary control may be 1, with INVEPT single-context and global. Default `true`. */
  readonly ept?: boolean;
  /** The "enable VPID" secondary control may be 1, with all four INVVPID types. Default `true`. */
  readonly vpid?: boolean;
  /** CPUID.7.EDX[28] (FLUSH_L1D) and IA32_FLUSH_CMD (MSR 0x10b). Default `true`. */
  readonly flushL1d?: boolean;
  /** CPUID.7.EDX[10] (MD_CLEAR: VERW clears CPU buffers, the MDS mitigation). Default `true`. */
  readonly mdClear?: boolean;
  /**
   * IA32_ARCH_CAPABILITIES (MSR 0x10a) value ({@link ARCH_CAP} bits), or `null` for a CPU without the MSR
   * (CPUID.7.EDX[29] clear). Default `0`: present, claiming no immunity (L1TF and MDS apply).
   */
  readonly archCapabilities?: number | null;
  /** A foreign hypervisor is already in VMX operation on the CPU at boot (CR4.VMXE set). Default `false`. */
  readonly foreignOwner?: boolean;
  /** An injected VMXON fault from boot on (`FaultMode`). Default `'off'`. */
  readonly enableFault?: FaultMode;
  /**
   * AMX, as a Sapphire Rapids server part has it: CPUID.7.EDX AMX-BF16 (22), AMX-TILE (24), AMX-INT8 (25); XSAVE
   * components 17 (XTILECFG, 64 bytes at 2752) and 18 (XTILEDATA, 8192 bytes at 2816) in leaf 0xD, with XFD
   * (CPUID.(0xD,1):EAX[4], IA32_XFD and IA32_XFD_ERR) that Linux needs to offer them; the tile leaves 0x1D and 0x1E.
   * Default `false` (the Cascade Lake part: x87, SSE and AVX only).
   */
  readonly amx?: boolean;
}

/** Options of {@link intel}: host-wide values, plus per-CPU overrides. */
export interface IntelOptions extends IntelCpuOptions {
  /**
   * Whether the kernel locks an IA32_FEATURE_CONTROL the BIOS left unlocked (Linux `init_ia32_feat_ctl`,
   * `arch/x86/kernel/cpu/feat_ctl.c`: "msr = FEAT_CTL_LOCKED | FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX"). Default
   * `true`; `false` keeps the unlocked value, so VMXON faults (#GP) on such CPUs.
   */
  readonly kernelLocksFeatureControl?: boolean;
  /** Per-CPU overrides by CPU number, e.g. `{ 3: { vmxDisabledByBios: true } }`. */
  readonly cpus?: Readonly<Record<number, IntelCpuOptions>>;
}

/** An Intel hardware model: what {@link intel} returns. */
export interface IntelModel extends HardwareModel {
  /** `'intel'`. */
  readonly name: 'intel';
  /** `'intel'`. */
  readonly vendor: 'intel';
  /** The options it was made with (validated, frozen). */
  readonly options: Readonly<IntelOptions>;
  /** Fill in the host's CPUs and build its {@link IntelHardware}. */
  create(env: HardwareEnv): IntelHardware;
}

/** The values one CPU boots with. */
interface ResolvedCpu {
  readonly vmx: boolean;
  readonly featureControl: number;
  readonly vmxRevisionId: number;
  readonly vmcsSize: number;
  readonly ept: boolean;
  readonly vpid: boolean;
  readonly flushL1d: boolean;
  readonly mdClear: boolean;
  readonly archCapabilities: number | null;
  readonly foreignOwner: boolean;
  readonly enableFault: FaultMode;
  readonly amx: boolean;
}

const DEFAULTS: ResolvedCpu = {
  vmx: true,
  featureControl: FEAT_CTL.FEAT_CTL_LOCKED | FEAT_CTL.FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX,
  vmxRevisionId: 0x12,
  vmcsSize: 4096,
  ept: true,
  vpid: true,
  flushL1d: true,
  mdClear: true,
  archCapabilities: 0,
  foreignOwner: false,
  enableFault: 'off',
  amx: false,
};

const CPU_OPTION_KEYS = new Set<string>([
  'vmx',
  'featureControl',
  'vmxDisabledByBios',
  'vmxRevisionId',
  'vmcsSize',
  'ept',
  'vpid',
  'flushL1d',
  'mdClear',
  'archCapabilities',
  'foreignOwner',
  'enableFault',
  'amx',
]);

function fail(where: string, what: string): never {
  throw new UsageError('ERR_INVALID_ARG', `intel: ${where}${what}`);
}

function hex(v: unknown): string {
  return typeof v === 'number' && Number.isFinite(v) ? `0x${v.toString(16)}` : String(v);
}

/** Check one options object and turn it into overrides of the level above. */
function resolveLevel(opts: IntelCpuOptions, where: string, allowed: ReadonlySet<string>): Partial<ResolvedCpu> {
  if (typeof opts !== 'object' || opts === null) fail(where, 'options must be an object');
  for (const key of Object.keys(opts)) if (!allowed.has(key)) fail(where, `unknown option '${key}'`);
  const out: { -readonly [K in keyof ResolvedCpu]?: ResolvedCpu[K] } = {};
  for (const key of ['vmx', 'ept', 'vpid', 'flushL1d', 'mdClear', 'foreignOwner', 'amx'] as const) {
    const v = opts[key];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') fail(where, `option '${key}' must be a boolean (got ${String(v)})`);
    out[key] = v;
  }
  if (opts.vmxDisabledByBios !== undefined && opts.featureControl !== undefined) {
    fail(where, `give 'featureControl' or 'vmxDisabledByBios', not both`);
  }
  if (opts.vmxDisabledByBios !== undefined) {
    if (typeof opts.vmxDisabledByBios !== 'boolean') fail(where, `option 'vmxDisabledByBios' must be a boolean`);
    out.featureControl = opts.vmxDisabledByBios
      ? FEAT_CTL.FEAT_CTL_LOCKED
      : FEAT_CTL.FEAT_CTL_LOCKED | FEAT_CTL.FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX;
  }
  if (opts.featureControl !== undefined) {
    const v = opts.featureControl;
    if (!Number.isSafeInteger(v) || v < 0) fail(where, `option 'featureControl' must be a non-negative integer (got ${hex(v)})`);
    out.featureControl = v;
  }
  if (opts.vmxRevisionId !== undefined) {
    const v = opts.vmxRevisionId;
    if (!Number.isInteger(v) || v < 0 || v > 0x7fff_ffff) {
      fail(where, `option 'vmxRevisionId' must be an integer in 0 … 0x7fffffff (31 bits; got ${hex(v)})`);
    }
    out.vmxRevisionId = v;
  }
  if (opts.vmcsSize !== undefined) {
    const v = opts.vmcsSize;
    if (!Number.isInteger(v) || v < 1 || v > 0x1fff) fail(where, `option 'vmcsSize' must be an integer in 1 … 8191 (got ${String(v)})`);
    out.vmcsSize = v;
  }
  if (opts.archCapabilities !== undefined) {
    const v = opts.archCapabilities;
    if (v !== null && (!Number.isSafeInteger(v) || v < 0)) {
      fail(where, `option 'archCapabilities' must be a non-negative integer or null (got ${hex(v)})`);
    }
    out.archCapabilities = v;
  }
  if (opts.enableFault !== undefined) {
    if (!isFaultMode(opts.enableFault)) fail(where, `option 'enableFault' must be 'once', 'always' or 'off' (got ${String(opts.enableFault)})`);
    out.enableFault = opts.enableFault;
  }
  return out;
}

/** A frozen CPUID leaf. */
function leaf(eax: number, ebx: number, ecx: number, edx: number): CpuidRegs {
  return Object.freeze({ eax: eax >>> 0, ebx: ebx >>> 0, ecx: ecx >>> 0, edx: edx >>> 0 });
}

/** CPUID.0: max basic leaf 0x1b, vendor "GenuineIntel" (EBX "Genu", EDX "ineI", ECX "ntel"). */
const LEAF_0 = leaf(0x1b, 0x756e_6547, 0x6c65_746e, 0x4965_6e69);
/** CPUID.1:EAX: family 6, model 0x55, stepping 7 (a Cascade Lake server part). */
const LEAF_1_EAX = 0x0005_0657;
/**
 * CPUID.1:ECX without VMX: SSE3, PCLMULQDQ, SSSE3, CX16, SSE4.1, SSE4.2, x2APIC, POPCNT, AES, XSAVE, OSXSAVE (the
 * kernel set CR4.OSXSAVE at boot, `fpu__init_cpu_xstate`), AVX.
 */
const LEAF_1_ECX_BASE =
  0x1 | 0x2 | 0x200 | 0x2000 | 0x8_0000 | 0x10_0000 | 0x20_0000 | 0x80_0000 | 0x200_0000 | 0x400_0000 | 0x800_0000 | 0x1000_0000;
/** CPUID.1:EDX: the usual 0xbfebfbff of Intel server parts (FPU … PBE, with MSR and TSC). */
const LEAF_1_EDX = 0xbfeb_fbff;
/** CPUID.80000000: max extended leaf. */
const LEAF_80000000 = leaf(0x8000_0008, 0, 0, 0);
/** CPUID.80000001: ECX LAHF/ABM/PREFETCHW; EDX SYSCALL (11), NX (20), 1 GiB pages (26), RDTSCP (27), LM (29). */
const LEAF_80000001 = leaf(0, 0, 0x121, (1 << 11) | (1 << 20) | (1 << 26) | CPUID_BIT.RDTSCP | (1 << 29));
/**
 * CPUID.80000008: EAX[7:0] physical address bits (46), EAX[15:8] linear address bits (48), as a Cascade Lake server
 * reports them. LEAF_80000000 promises this leaf; without it MAXPHYADDR read 0, and KVM's supported CPUID (which
 * passes PhysAddrSize through, `__do_cpuid_func` case 0x80000008) made every guest physical address reserved.
 */
const LEAF_80000008 = leaf(0x0000_302e, 0, 0, 0);

/**
 * CPUID leaf 0xD, the XSAVE state components, by sub-leaf. The model's CPUs have x87, SSE and AVX state (their
 * leaf 7 reports no MPX, AVX-512, PKU or Intel PT, whose components a Cascade Lake part also has), in the standard
 * layout every Intel CPU reports (SDM Vol. 1 13.4.3):
 * - 0: EDX:EAX the XCR0 bits supported (x87 | SSE | AVX = 7); EBX the area for the XCR0 the kernel enabled (all
 *   of them, `fpu__init_cpu_xstate`), ECX for every supported component: 576 + 256 = 832 bytes;
 * - 1: EAX XSAVEOPT, XSAVEC, XGETBV1, XSAVES; EBX the compacted size of XCR0 | IA32_XSS (832); ECX:EDX no
 *   supervisor components;
 * - 2 (AVX, the upper halves of YMM0–15): 256 bytes at offset 576.
 */
const LEAF_D: ReadonlyArray<readonly [number, CpuidRegs]> = [
  [0, leaf(0x7, 0x340, 0x340, 0)],
  [1, leaf(0xf, 0x340, 0, 0)],
  [2, leaf(0x100, 0x240, 0, 0)],
];

/** CPUID.7.EDX AMX-BF16 (22), AMX-TILE (24), AMX-INT8 (25). */
const AMX_LEAF_7_EDX = (1 << 22) | (1 << 24) | (1 << 25);
/** CPUID.0 of an AMX part: max basic leaf 0x1e (the TMUL leaf), "GenuineIntel". */
const AMX_LEAF_0 = leaf(0x1e, 0x756e_6547, 0x6c65_746e, 0x4965_6e69);
/** CPUID.1:EAX of an AMX part: family 6, model 0x8f, stepping 8 (Sapphire Rapids). */
const AMX_LEAF_1_EAX = 0x0008_06f8;

/**
 * Leaf 0xD of an AMX part (SDM Vol. 1 13.2 and 13.4; the sizes and offsets every AMX CPU reports):
 * - 0: XCR0 bits x87 | SSE | AVX | XTILECFG | XTILEDATA (0x60007); EBX and ECX the standard-format size with all of
 *   them enabled (Linux sets every supported bit in XCR0 and keeps tile data off with XFD): 2816 + 8192 = 11008;
 * - 1: XSAVEOPT, XSAVEC, XGETBV1, XSAVES, XFD (0x1f); EBX the compacted size (576 + 256, then 64 and 8192, each
 *   64-byte aligned: 9088);
 * - 2: AVX, 256 bytes at 576; 17: XTILECFG, 64 bytes at 2752 (ECX: 64-byte aligned when compacted); 18: XTILEDATA,
 *   8192 bytes at 2816 (ECX: aligned, and XFD can arm it off).
 */
const AMX_LEAF_D: ReadonlyArray<readonly [number, CpuidRegs]> = [
  [0, leaf(0x60007, 11008, 11008, 0)],
  [1, leaf(0x1f, 9088, 0, 0)],
  [2, leaf(0x100, 0x240, 0, 0)],
  [17, leaf(64, 2752, 0x2, 0)],
  [18, leaf(8192, 2816, 0x6, 0)],
];

/**
 * The tile leaves (SDM Vol. 1 3.2.1 / Vol. 2A CPUID): 0x1D.0 EAX the highest palette (1); 0x1D.1 palette 1 —
 * EAX total tile bytes 8192 and bytes per tile 1024, EBX bytes per row 64 and 8 tile names, ECX 16 rows; 0x1E.0
 * EBX TMUL maxk 16 and maxn 64.
 */
const AMX_TILE_LEAVES: ReadonlyArray<readonly [number, CpuidRegs]> = [
  [0x1d, leaf(1, 0, 0, 0)],
  [cpuidKey(0x1d, 1), leaf(0x0400_2000, 0x0008_0040, 0x10, 0)],
  [0x1e, leaf(0, 0x4010, 0, 0)],
];

/** `MSR_IA32_XFD` and `MSR_IA32_XFD_ERR` (XFD; 0 at reset). */
const MSR_IA32_XFD = 0x1c4;
const MSR_IA32_XFD_ERR = 0x1c5;

/** IA32_VMX_PROCBASED_CTLS of a Skylake/Cascade Lake server (allowed-1 bit 63: secondary controls). */
const PROCBASED_CTLS = 0xfff9_fffe_0401_e172n;
/** Secondary controls every model CPU allows besides EPT/VPID. */
const SECONDARY_BASE =
  SECONDARY_EXEC.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES |
  SECONDARY_EXEC.SECONDARY_EXEC_DESC |
  SECONDARY_EXEC.SECONDARY_EXEC_ENABLE_RDTSCP |
  SECONDARY_EXEC.SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE |
  SECONDARY_EXEC.SECONDARY_EXEC_WBINVD_EXITING;
/** EPT capabilities: execute-only, 4-level walk, UC/WB, 2M/1G pages, INVEPT (single + global), A/D. */
const EPT_CAPS =
  VMX_EPT_CAP.VMX_EPT_EXECUTE_ONLY_BIT |
  VMX_EPT_CAP.VMX_EPT_PAGE_WALK_4_BIT |
  VMX_EPT_CAP.VMX_EPTP_UC_BIT |
  VMX_EPT_CAP.VMX_EPTP_WB_BIT |
  VMX_EPT_CAP.VMX_EPT_2MB_PAGE_BIT |
  VMX_EPT_CAP.VMX_EPT_1GB_PAGE_BIT |
  VMX_EPT_CAP.VMX_EPT_INVEPT_BIT |
  VMX_EPT_CAP.VMX_EPT_AD_BIT |
  VMX_EPT_CAP.VMX_EPT_EXTENT_CONTEXT_BIT |
  VMX_EPT_CAP.VMX_EPT_EXTENT_GLOBAL_BIT;
/** VPID capabilities: INVVPID with all four types. */
const VPID_CAPS =
  VMX_VPID_CAP.VMX_VPID_INVVPID_BIT |
  VMX_VPID_CAP.VMX_VPID_EXTENT_INDIVIDUAL_ADDR_BIT |
  VMX_VPID_CAP.VMX_VPID_EXTENT_SINGLE_CONTEXT_BIT |
  VMX_VPID_CAP.VMX_VPID_EXTENT_GLOBAL_CONTEXT_BIT |
  VMX_VPID_CAP.VMX_VPID_EXTENT_SINGLE_NON_GLOBAL_BIT;

/** The syscall MSRs as Linux's `syscall_init` (arch/x86/kernel/cpu/common.c) programs them on x86-64. */
const HOST_EFER = 0xd01n; // SCE | LME | LMA | NXE
const HOST_STAR = 0x0023_0010_0000_0000n; // (__USER32_CS << 48) | (__KERNEL_CS << 32)
const HOST_LSTAR = 0xffff_ffff_81c0_0080n; // entry_SYSCALL_64
const HOST_CSTAR = 0xffff_ffff_81c0_1a40n; // entry_SYSCALL_compat
/** CF|PF|AF|ZF|SF|TF|IF|DF|OF|IOPL|NT|RF|AC|ID. */
const HOST_SYSCALL_MASK = 0x25_7fd5n;

/** A read-only MSR: every write faults (#GP). */
const readOnly: MsrWriteHook = () => false;
/** IA32_FEATURE_CONTROL: writable until locked; then every write faults (#GP) until reset. */
const featureControlHook: MsrWriteHook = (cpu, msr) =>
  ((cpu.msrs.get(msr) ?? 0n) & BigInt(FEAT_CTL.FEAT_CTL_LOCKED)) === 0n;

/** What every CPU booted with the same {@link ResolvedCpu} has in common: computed once per configuration. */
interface CpuImage {
  readonly leaf0: CpuidRegs;
  readonly leaf1Eax: number;
  readonly leaf1Ecx: number;
  readonly leaf7: CpuidRegs;
  /** Leaf 0xD by sub-leaf. */
  readonly leafD: ReadonlyArray<readonly [number, CpuidRegs]>;
  /** Other leaves by {@link cpuidKey}. */
  readonly extra: ReadonlyArray<readonly [number, CpuidRegs]>;
  /** `[msr, value, write hook]`, in the order they are created. */
  readonly msrs: ReadonlyArray<readonly [number, bigint, MsrWriteHook | undefined]>;
}

/** The CPUID leaves and MSRs of a CPU configured as `r` (firmware + early kernel boot), minus per-CPU values. */
function cpuImage(r: ResolvedCpu, kernelLocksFeatureControl: boolean): CpuImage {
  const leaf7Edx =
    (r.mdClear ? CPUID_BIT.MD_CLEAR : 0) |
    (r.flushL1d ? CPUID_BIT.FLUSH_L1D : 0) |
    (r.archCapabilities !== null ? CPUID_BIT.ARCH_CAPABILITIES : 0) |
    (r.amx ? AMX_LEAF_7_EDX : 0);
  const msrs: Array<readonly [number, bigint, MsrWriteHook | undefined]> = [];
  if (r.vmx) {
    // IA32_FEATURE_CONTROL exists with VMX (or SMX). init_ia32_feat_ctl locks it if the BIOS did not.
    let featCtl = r.featureControl;
    if ((featCtl & FEAT_CTL.FEAT_CTL_LOCKED) === 0 && kernelLocksFeatureControl) {
      featCtl = FEAT_CTL.FEAT_CTL_LOCKED | FEAT_CTL.FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX;
    }
    msrs.push([INTEL_MSR.MSR_IA32_FEAT_CTL, BigInt(featCtl), featureControlHook]);
    // IA32_VMX_BASIC: revision (30:0), region size (44:32), WB memory type (53:50 = 6), INS/OUTS info (54),
    // true controls (55).
    const basic = BigInt(r.vmxRevisionId) | (BigInt(r.vmcsSize) << 32n) | (6n << 50n) | (1n << 54n) | (1n << 55n);
    msrs.push([INTEL_MSR.MSR_IA32_VMX_BASIC, basic, readOnly]);
    msrs.push([INTEL_MSR.MSR_IA32_VMX_PROCBASED_CTLS, PROCBASED_CTLS, readOnly]);
    const secondary =
      SECONDARY_BASE |
      (r.ept ? SECONDARY_EXEC.SECONDARY_EXEC_ENABLE_EPT | SECONDARY_EXEC.SECONDARY_EXEC_UNRESTRICTED_GUEST : 0) |
      (r.vpid ? SECONDARY_EXEC.SECONDARY_EXEC_ENABLE_VPID : 0);
    msrs.push([INTEL_MSR.MSR_IA32_VMX_PROCBASED_CTLS2, BigInt(secondary) << 32n, readOnly]);
    // SDM A.10: IA32_VMX_EPT_VPID_CAP exists only if EPT or VPID may be enabled.
    if (r.ept || r.vpid) {
      const cap = (BigInt(r.vpid ? VPID_CAPS : 0) << 32n) | BigInt(r.ept ? EPT_CAPS : 0);
      msrs.push([INTEL_MSR.MSR_IA32_VMX_EPT_VPID_CAP, cap, readOnly]);
    }
  }
  if (r.archCapabilities !== null) {
    msrs.push([INTEL_MSR.MSR_IA32_ARCH_CAPABILITIES, BigInt(r.archCapabilities), readOnly]);
  }
  // IA32_FLUSH_CMD is write-only on hardware; the core's Cpu has no read hook, so a read returns the last write.
  // Its write hook (counting L1D flushes) is installed by IntelHardware.
  if (r.flushL1d) msrs.push([INTEL_MSR.MSR_IA32_FLUSH_CMD, 0n, undefined]);
  msrs.push([INTEL_MSR.MSR_EFER, HOST_EFER, undefined]);
  msrs.push([INTEL_MSR.MSR_STAR, HOST_STAR, undefined]);
  msrs.push([INTEL_MSR.MSR_LSTAR, HOST_LSTAR, undefined]);
  msrs.push([INTEL_MSR.MSR_CSTAR, HOST_CSTAR, undefined]);
  msrs.push([INTEL_MSR.MSR_SYSCALL_MASK, HOST_SYSCALL_MASK, undefined]);
  if (r.amx) {
    msrs.push([MSR_IA32_XFD, 0n, undefined]);
    msrs.push([MSR_IA32_XFD_ERR, 0n, undefined]);
  }
  return {
    leaf0: r.amx ? AMX_LEAF_0 : LEAF_0,
    leaf1Eax: r.amx ? AMX_LEAF_1_EAX : LEAF_1_EAX,
    leaf1Ecx: LEAF_1_ECX_BASE | (r.vmx ? CPUID_BIT.VMX : 0),
    leaf7: leaf(0, 0, 0, leaf7Edx),
    leafD: r.amx ? AMX_LEAF_D : LEAF_D,
    extra: r.amx ? AMX_TILE_LEAVES : [],
    msrs,
  };
}

/** Fill one CPU's CPUID leaves and MSRs from its configuration's image plus its per-CPU values. */
function bootCpu(cpu: Cpu, image: CpuImage): void {
  const id = cpu.id;
  cpu.cpuid.set(0, image.leaf0);
  // CPUID.1:EBX: initial APIC id (bits 31:24, low 8 bits of the CPU number), CLFLUSH line size 8 qwords.
  cpu.cpuid.set(1, leaf(image.leaf1Eax, ((id & 0xff) << 24) | (8 << 8), image.leaf1Ecx, LEAF_1_EDX));
  cpu.cpuid.set(7, image.leaf7);
  for (const [index, regs] of image.leafD) cpu.cpuid.set(cpuidKey(0xd, index), regs);
  for (const [key, regs] of image.extra) cpu.cpuid.set(key, regs);
  cpu.cpuid.set(0x8000_0000, LEAF_80000000);
  cpu.cpuid.set(0x8000_0001, LEAF_80000001);
  cpu.cpuid.set(0x8000_0008, LEAF_80000008);
  const msrs = cpu.msrs;
  const hooks = cpu.msrWriteHooks;
  for (const [msr, value, hook] of image.msrs) {
    msrs.set(msr, value);
    if (hook !== undefined) hooks.set(msr, hook);
  }
  // setup_getcpu(): TSC_AUX = (node << 12) | cpu; one NUMA node.
  msrs.set(INTEL_MSR.MSR_TSC_AUX, BigInt(id));
}

/**
 * The Intel hardware model. Validates `options` now (a `UsageError` naming `intel` for a bad
 * one); per-CPU overrides are checked against the host's CPU count in `create`.
 *
 * Defaults: VMX present, IA32_FEATURE_CONTROL locked with VMX outside SMX, revision id 0x12, 4 KiB VMCS, EPT
 * and VPID with every INVEPT/INVVPID type, FLUSH_L1D and MD_CLEAR present, IA32_ARCH_CAPABILITIES = 0 (L1TF
 * and MDS apply), no foreign hypervisor, no injected faults.
 * @param options - host-wide options and per-CPU overrides
 * @example
 * ```ts
 * import { createHost, vacOf } from '@vac/core';
 * import { kvm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * // No EPT on any CPU (a per-CPU difference would be refused: "Inconsistent VMCS config").
 * const host = createHost({ cpus: 2, hardware: intel({ ept: false }) });
 * host.modprobe(kvm({ postfix: '0' }));
 * console.log(vacOf(host)!.cpus().map((c) => c.enabled)); // [ true, true ]: VMXON on every CPU
 * ```
 */
export function intel(options: IntelOptions = {}): IntelModel {
  const hostKeys = new Set([...CPU_OPTION_KEYS, 'kernelLocksFeatureControl', 'cpus']);
  const host = { ...DEFAULTS, ...resolveLevel(options, 'options: ', hostKeys) };
  const kernelLocks = options.kernelLocksFeatureControl ?? true;
  if (typeof kernelLocks !== 'boolean') fail('options: ', `option 'kernelLocksFeatureControl' must be a boolean`);
  const overrides: Record<number, Partial<ResolvedCpu>> = {};
  const perCpu = options.cpus ?? {};
  if (typeof perCpu !== 'object' || perCpu === null) fail('options: ', `'cpus' must be an object keyed by CPU number`);
  for (const [key, opts] of Object.entries(perCpu)) {
    const n = Number(key);
    if (!Number.isInteger(n) || n < 0 || String(n) !== key) fail('options.cpus: ', `'${key}' is not a CPU number`);
    overrides[n] = resolveLevel(opts, `options.cpus[${n}]: `, CPU_OPTION_KEYS);
  }
  const frozen = Object.freeze({ ...options, ...(options.cpus === undefined ? {} : { cpus: Object.freeze({ ...options.cpus }) }) });

  const model = {
    name: 'intel',
    vendor: 'intel',
    options: frozen,
    create(env: HardwareEnv): IntelHardware {
      const n = env.cpus.length;
      const resolved = resolvePerCpu<ResolvedCpu>('intel: options.cpus', host, overrides, n);
      const images = new Map<ResolvedCpu, CpuImage>();
      for (let i = 0; i < n; i++) {
        const cpu = env.cpus[i];
        if (cpu === undefined) fail('create: ', `env.cpus[${i}] is missing`);
        const r = resolved[i]!;
        let image = images.get(r);
        if (image === undefined) {
          image = cpuImage(r, kernelLocks);
          images.set(r, image);
        }
        bootCpu(cpu, image);
      }
      const hw = new IntelHardware(model, env);
      for (let i = 0; i < n; i++) {
        const r = resolved[i]!;
        if (r.foreignOwner) hw.setForeignOwner(i, true);
        if (r.enableFault !== 'off') hw.injectEnableFault(i, r.enableFault);
      }
      return hw;
    },
  } as const satisfies IntelModel;
  return model;
}

