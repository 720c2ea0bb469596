/**
 * `amd()`: the AMD hardware model, a plain {@link HardwareModel} object the host is created with
 * (`createHost({ cpus, hardware: amd({...}) })`).
 *
 * Options are host-wide with per-CPU overrides (`amd({ cpus: { 2: { svmDisabledByBios: true } } })`). The
 * defaults describe a 3rd-generation EPYC ("Milan", family 19h):
 *
 * | what | where | default |
 * |---|---|---|
 * | SVM present | CPUID 0x80000001 ECX bit 2 | yes |
 * | SVM disabled by BIOS | `VM_CR` (0xC0010114) SVMDIS bit 4, LOCK bit 3 | no |
 * | number of ASIDs | CPUID 0x8000000A EBX | 32768 |
 * | SVM features | CPUID 0x8000000A EDX | NPT, LBRV, NRIPS, TscRateMsr, VmcbClean, FlushByAsid, DecodeAssists, PauseFilter, AVIC, VGIF |
 * | SEV, SEV-ES | CPUID 0x8000001F EAX bits 1, 3 | both |
 * | C-bit position | CPUID 0x8000001F EBX[5:0] | 51 |
 * | max SEV ASID (simultaneous encrypted guests) | CPUID 0x8000001F ECX | 509 (Milan's value) |
 * | min SEV ASID | CPUID 0x8000001F EDX | 100: SEV-ES ASIDs 1 … 99, SEV 100 … 509 (the BIOS "SEV-ES ASID Space Limit") |
 * | foreign hypervisor | EFER.SVME already set at boot | none |
 * | injected enable fault | the WRMSR setting EFER.SVME faults | off |
 *
 * `create(env)` fills in each CPU's CPUID leaves (0, 1, 0xD, 0x80000000, 0x80000001, 0x80000008, 0x8000000A,
 * 0x8000001F) and MSRs (EFER, STAR, LSTAR, CSTAR, SFMASK, FS/GS bases, TSC_AUX, PAT, SYSCFG, VM_CR,
 * VM_HSAVE_PA, TSC_RATIO, OSVW) and builds the host's {@link AmdHardware}.
 *
 * @module
 */
import { UsageError } from '@vac/core';
import { isFaultMode, resolvePerCpu } from '@vac/core/internal';
import { cpuidKey, type Cpu, type CpuidRegs, type FaultMode, type HardwareEnv, type HardwareModel } from '@vac/core';
import {
  CPUID_80000001_ECX_SVM,
  CPUID_EXT_ADDR_SIZES,
  CPUID_EXT_FEATURES,
  CPUID_EXT_MAX,
  EFER_HOST_DEFAULT,
  EFER_SVME,
  MSR_AMD64_OSVW_ID_LENGTH,
  MSR_AMD64_OSVW_STATUS,
  MSR_AMD64_SYSCFG,
  MSR_AMD64_TSC_RATIO,
  MSR_CSTAR,
  MSR_EFER,
  MSR_FS_BASE,
  MSR_GS_BASE,
  MSR_IA32_PAT,
  MSR_KERNEL_GS_BASE,
  MSR_LSTAR,
  MSR_STAR,
  MSR_SYSCALL_MASK,
  MSR_TSC_AUX,
  MSR_VM_CR,
  MSR_VM_HSAVE_PA,
  SEV_CPUID_FUNC,
  SEV_FEATURE,
  SVM_CPUID_FUNC,
  SVM_FEATURE,
  SVM_TSC_RATIO_DEFAULT,
  SVM_VM_CR_SVM_DIS_MASK,
  SVM_VM_CR_SVM_LOCK_MASK,
} from './arch.js';
import { AmdHardware } from './hardware.js';
import { FOREIGN_SAVE_AREA_BASE } from './svm-cpu.js';

/** Options of one CPU (host-wide in {@link AmdOptions}, or per CPU in `AmdOptions.cpus`). Every field is optional. */
export interface AmdCpuOptions {
  /** CPUID 0x80000001 ECX.SVM (bit 2). Default `true`. Without it: "SVM not supported by CPU n". */
  readonly svm?: boolean;
  /**
   * `VM_CR.SVMDIS` (bit 4): the BIOS disabled SVM (→ "SVM disabled (by BIOS) in MSR_VM_CR on CPU n").
   * Default `false`.
   */
  readonly svmDisabledByBios?: boolean;
  /** `VM_CR.LOCK` (bit 3): SVMDIS cannot be changed. Default: the value of `svmDisabledByBios`. */
  readonly vmCrLocked?: boolean;
  /** A foreign hypervisor already set EFER.SVME (and VM_HSAVE_PA) at boot: VAC's enable gets EBUSY. Default `false`. */
  readonly foreignOwner?: boolean;
  /** An injected EFER.SVME-enable fault from boot on ({@link @vac/core!FaultMode}). Default `'off'`. */
  readonly enableFault?: FaultMode;
  /** CPUID 0x8000000A EBX: the number of ASIDs (`max_asid` = this − 1). Default 32768. */
  readonly nrAsids?: number;
  /** CPUID 0x8000000A EDX.NP (bit 0): nested paging. Default `true`. */
  readonly npt?: boolean;
  /** CPUID 0x8000000A EDX.LbrVirt (bit 1). Default `true`. */
  readonly lbrv?: boolean;
  /** CPUID 0x8000000A EDX.NRIPS (bit 3). Default `true`. */
  readonly nrips?: boolean;
  /** CPUID 0x8000000A EDX.TscRateMsr (bit 4); also makes `MSR_AMD64_TSC_RATIO` exist. Default `true`. */
  readonly tscRateMsr?: boolean;
  /** CPUID 0x8000000A EDX.VmcbClean (bit 5). Default `true`. */
  readonly vmcbClean?: boolean;
  /** CPUID 0x8000000A EDX.FlushByAsid (bit 6): TLB_CONTROL 3/7 flush one ASID. Default `true`. */
  readonly flushByAsid?: boolean;
  /** CPUID 0x8000000A EDX.DecodeAssists (bit 7). Default `true`. */
  readonly decodeAssists?: boolean;
  /** CPUID 0x8000000A EDX.PauseFilter (bit 10) and PauseFilterThreshold (bit 12). Default `true`. */
  readonly pauseFilter?: boolean;
  /** CPUID 0x8000000A EDX.AVIC (bit 13). Default `true`. */
  readonly avic?: boolean;
  /** CPUID 0x8000000A EDX.VGIF (bit 16). Default `true`. */
  readonly vgif?: boolean;
  /** CPUID 0x8000001F EAX.SEV (bit 1). Default `true`. `false` reports no SEV ASIDs (ECX = EDX = 0). */
  readonly sev?: boolean;
  /** CPUID 0x8000001F EAX.SEV-ES (bit 3); needs `sev`. Default: the value of `sev`. */
  readonly sevEs?: boolean;
  /** CPUID 0x8000001F ECX: the highest SEV ASID = number of encrypted guests at once; 0 = no SEV. Default 509. */
  readonly maxSevAsid?: number;
  /** CPUID 0x8000001F EDX: the lowest plain-SEV ASID; SEV-ES uses 1 … minSevAsid − 1. Default 100. */
  readonly minSevAsid?: number;
  /** CPUID 0x8000001F EBX[5:0]: the C-bit (encryption bit) position in page-table entries. Default 51. */
  readonly cBit?: number;
}

/** Options of {@link amd}. */
export interface AmdOptions extends AmdCpuOptions {
  /** CPUID leaf 0 vendor string. Default `'AuthenticAMD'`; Linux also accepts Hygon for SVM. */
  readonly vendor?: 'AuthenticAMD' | 'HygonGenuine';
  /** Per-CPU overrides by CPU number, e.g. `{ 2: { svmDisabledByBios: true } }`. */
  readonly cpus?: Readonly<Record<number, AmdCpuOptions>>;
}

/** The resolved options of one CPU: every {@link AmdCpuOptions} field, with defaults applied. */
export type AmdCpuConfig = { readonly [K in keyof AmdCpuOptions]-?: NonNullable<AmdCpuOptions[K]> };

/** The object {@link amd} returns: a {@link HardwareModel} whose `create` builds an {@link AmdHardware}. */
export interface AmdModel extends HardwareModel {
  /** `'amd'`. */
  readonly name: 'amd';
  /** `'amd'`. */
  readonly vendor: 'amd';
  /** The options it was made with (validated, frozen). */
  readonly options: Readonly<AmdOptions>;
  /** The host-wide options with defaults applied. */
  readonly defaults: AmdCpuConfig;
  /** Fill in the CPUs' CPUID and MSRs and build this host's AMD hardware. */
  create(env: HardwareEnv): AmdHardware;
}

/** The defaults of every CPU option (EPYC 7003 "Milan"). */
export const AMD_DEFAULTS: AmdCpuConfig = Object.freeze({
  svm: true,
  svmDisabledByBios: false,
  vmCrLocked: false,
  foreignOwner: false,
  enableFault: 'off',
  nrAsids: 32768,
  npt: true,
  lbrv: true,
  nrips: true,
  tscRateMsr: true,
  vmcbClean: true,
  flushByAsid: true,
  decodeAssists: true,
  pauseFilter: true,
  avic: true,
  vgif: true,
  sev: true,
  sevEs: true,
  maxSevAsid: 509,
  minSevAsid: 100,
  cBit: 51,
});

const BOOL_KEYS = [
  'svm',
  'svmDisabledByBios',
  'vmCrLocked',
  'foreignOwner',
  'npt',
  'lbrv',
  'nrips',
  'tscRateMsr',
  'vmcbClean',
  'flushByAsid',
  'decodeAssists',
  'pauseFilter',
  'avic',
  'vgif',
  'sev',
  'sevEs',
] as const satisfies readonly (keyof AmdCpuOptions)[];
const NUMBER_KEYS = ['nrAsids', 'maxSevAsid', 'minSevAsid', 'cBit'] as const satisfies readonly (keyof AmdCpuOptions)[];
const KNOWN_KEYS: ReadonlySet<string> = new Set<string>([...BOOL_KEYS, ...NUMBER_KEYS, 'enableFault']);

/** Check the field types of one options object (host-wide or per-CPU). */
function checkOptionTypes(where: string, o: AmdCpuOptions): void {
  for (const k of Object.keys(o)) {
    if (!KNOWN_KEYS.has(k)) throw new UsageError('ERR_UNKNOWN_NAME', `amd(): ${where}unknown option '${k}'`);
  }
  for (const k of BOOL_KEYS) {
    const v = o[k];
    if (v !== undefined && typeof v !== 'boolean') throw new UsageError('ERR_INVALID_ARG', `amd(): ${where}${k} must be a boolean`);
  }
  if (o.enableFault !== undefined && !isFaultMode(o.enableFault)) {
    throw new UsageError('ERR_INVALID_ARG', `amd(): ${where}enableFault must be 'once', 'always' or 'off', got ${String(o.enableFault)}`);
  }
  for (const k of NUMBER_KEYS) {
    const v = o[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isInteger(v) && v >= 0)) {
      throw new UsageError('ERR_OUT_OF_RANGE', `amd(): ${where}${k} must be a non-negative integer, got ${String(v)}`);
    }
  }
}

/** Check the consistency of one resolved CPU configuration. */
function checkConfig(where: string, c: AmdCpuConfig): void {
  if (c.nrAsids < 2 || c.nrAsids > 0xffffffff) {
    throw new UsageError('ERR_OUT_OF_RANGE', `amd(): ${where}nrAsids must be in [2, 2^32 - 1], got ${c.nrAsids}`);
  }
  if (c.cBit > 63) throw new UsageError('ERR_OUT_OF_RANGE', `amd(): ${where}cBit must be in [0, 63], got ${c.cBit}`);
  if (c.sevEs && !c.sev) throw new UsageError('ERR_INVALID_ARG', `amd(): ${where}sevEs needs sev`);
  if (c.sev) {
    if (c.maxSevAsid > 2 ** 20) {
      throw new UsageError('ERR_OUT_OF_RANGE', `amd(): ${where}maxSevAsid must be at most 2^20, got ${c.maxSevAsid}`);
    }
    if (c.maxSevAsid >= c.nrAsids - 1) {
      throw new UsageError('ERR_INVALID_ARG', 
        `amd(): ${where}maxSevAsid ${c.maxSevAsid} leaves no ASID for ordinary guests (nrAsids ${c.nrAsids})`,
      );
    }
    if (c.maxSevAsid > 0 && (c.minSevAsid < 1 || c.minSevAsid > c.maxSevAsid + 1)) {
      throw new UsageError('ERR_OUT_OF_RANGE', `amd(): ${where}minSevAsid must be in [1, maxSevAsid + 1], got ${c.minSevAsid}`);
    }
  }
  if (c.foreignOwner && (!c.svm || c.svmDisabledByBios)) {
    throw new UsageError('ERR_INVALID_STATE', `amd(): ${where}a foreign hypervisor cannot own a CPU without usable SVM`);
  }
}

/** Options whose default is another option's value: a BIOS that disables SVM locks VM_CR; no SEV, no SEV-ES. */
const FOLLOWS = [
  ['vmCrLocked', 'svmDisabledByBios'],
  ['sevEs', 'sev'],
] as const satisfies ReadonlyArray<readonly [keyof AmdCpuOptions, keyof AmdCpuOptions]>;

/**
 * Apply `o` over `base`. A `FOLLOWS` option not given in `o` (nor host-wide: `given`) takes the value
 * of the option it follows.
 */
function withDefaults(base: AmdCpuConfig, o: AmdCpuOptions, given: ReadonlySet<string>): AmdCpuConfig {
  const merged: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(o)) if (v !== undefined) merged[k] = v;
  for (const [follower, leader] of FOLLOWS) {
    if (o[follower] === undefined && !given.has(follower)) merged[follower] = merged[leader];
  }
  return Object.freeze(merged) as AmdCpuConfig;
}

/**
 * The AMD hardware model.
 *
 * @param options - host-wide options with per-CPU overrides; see the module documentation for defaults
 * @returns a plain {@link HardwareModel} object (`name: 'amd'`) for `createHost({ hardware })`
 * @throws UsageError for an unknown option, an ill-typed value or an inconsistent ASID/SEV geometry
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { kvm } from '@vac/kvm';
 * import { amd } from '@vac/svm';
 *
 * // The BIOS disabled SVM on CPU 1: loading a KVM module fails with EIO, as on Linux.
 * const host = createHost({ cpus: 2, hardware: amd({ cpus: { 1: { svmDisabledByBios: true } } }) });
 * try {
 *   host.modprobe(kvm({ postfix: '0' }));
 * } catch (e) {
 *   console.log((e as Error).message);
 * }
 * ```
 */
export function amd(options: AmdOptions = {}): AmdModel {
  const { vendor = 'AuthenticAMD', cpus: overrides = {}, ...hostOptions } = options;
  if (vendor !== 'AuthenticAMD' && vendor !== 'HygonGenuine') {
    throw new UsageError('ERR_INVALID_ARG', `amd(): vendor must be 'AuthenticAMD' or 'HygonGenuine', got ${String(vendor)}`);
  }
  checkOptionTypes('', hostOptions);
  const given: ReadonlySet<string> = new Set(Object.keys(hostOptions));
  const defaults = withDefaults(AMD_DEFAULTS, hostOptions, new Set());
  checkConfig('', defaults);
  const frozenOverrides: Record<number, AmdCpuOptions> = {};
  const frozenOptions: Readonly<AmdOptions> = Object.freeze({ ...options, cpus: frozenOverrides });
  for (const [key, o] of Object.entries(overrides)) {
    if (!/^(0|[1-9]\d*)$/.test(key)) throw new UsageError('ERR_INVALID_ARG', `amd(): cpus: '${key}' is not a CPU number`);
    checkOptionTypes(`cpus[${key}].`, o);
    frozenOverrides[Number(key)] = Object.freeze({ ...o });
  }
  Object.freeze(frozenOverrides);

  const model = {
    name: 'amd',
    vendor: 'amd',
    options: frozenOptions,
    defaults,
    create(env: HardwareEnv): AmdHardware {
      const n = env.cpus.length;
      if (n < 1) throw new UsageError('ERR_NO_SUCH_CPU', 'amd(): the host has no CPUs');
      const resolved = resolvePerCpu<AmdCpuOptions>('amd(): cpus', {}, frozenOverrides, n);
      const configs = new Array<AmdCpuConfig>(n);
      const leavesOf = new Map<AmdCpuOptions, CpuidLeaves>();
      const configOf = new Map<AmdCpuOptions, AmdCpuConfig>();
      for (let i = 0; i < n; i++) {
        const o = resolved[i] as AmdCpuOptions;
        let config = configOf.get(o);
        if (config === undefined) {
          config = Object.keys(o).length === 0 ? defaults : withDefaults(defaults, o, given);
          checkConfig(`cpus[${i}].`, config);
          configOf.set(o, config);
        }
        configs[i] = config;
        let leaves = leavesOf.get(o);
        if (leaves === undefined) leavesOf.set(o, (leaves = cpuidLeaves(vendor, config)));
        fillCpu(env.cpus[i] as Cpu, config, leaves);
      }
      const hw = new AmdHardware(model, env, configs);
      for (let i = 0; i < n; i++) {
        const mode = (configs[i] as AmdCpuConfig).enableFault;
        if (mode !== 'off') hw.injectEnableFault(i, mode);
      }
      return hw;
    },
  } as const satisfies AmdModel; // AmdModel extends HardwareModel
  return model;
}

// ---------------------------------------------------------------------------------------------------------
// CPUID and MSR contents
// ---------------------------------------------------------------------------------------------------------

type CpuidLeaves = ReadonlyArray<readonly [number, CpuidRegs]>;

/** CPUID vendor string registers (EBX, EDX, ECX spell it in that order). */
const VENDOR_REGS = {
  AuthenticAMD: { ebx: 0x68747541, edx: 0x69746e65, ecx: 0x444d4163 },
  HygonGenuine: { ebx: 0x6f677948, edx: 0x6e65476e, ecx: 0x656e6975 },
} as const;

/** Family 19h model 01h stepping 1 (EPYC 7003). */
const FMS_MILAN = 0x00a00f11;

function regs(eax: number, ebx: number, ecx: number, edx: number): CpuidRegs {
  return Object.freeze({ eax: eax >>> 0, ebx: ebx >>> 0, ecx: ecx >>> 0, edx: edx >>> 0 });
}

/** The CPUID leaves of one CPU configuration (shared, frozen, by every CPU with that configuration). */
function cpuidLeaves(vendor: 'AuthenticAMD' | 'HygonGenuine', c: AmdCpuConfig): CpuidLeaves {
  const v = VENDOR_REGS[vendor];
  const svmFeatures =
    (c.npt ? SVM_FEATURE.NPT : 0) |
    (c.lbrv ? SVM_FEATURE.LBRV : 0) |
    (c.nrips ? SVM_FEATURE.NRIPS : 0) |
    (c.tscRateMsr ? SVM_FEATURE.TSCRATEMSR : 0) |
    (c.vmcbClean ? SVM_FEATURE.VMCBCLEAN : 0) |
    (c.flushByAsid ? SVM_FEATURE.FLUSHBYASID : 0) |
    (c.decodeAssists ? SVM_FEATURE.DECODEASSISTS : 0) |
    (c.pauseFilter ? SVM_FEATURE.PAUSEFILTER | SVM_FEATURE.PFTHRESHOLD : 0) |
    (c.avic ? SVM_FEATURE.AVIC : 0) |
    (c.vgif ? SVM_FEATURE.VGIF : 0);
  const sevEax = SEV_FEATURE.SME | (c.sev ? SEV_FEATURE.SEV : 0) | (c.sevEs ? SEV_FEATURE.SEV_ES : 0);
  // EBX[5:0] C-bit, EBX[11:6] physical address bits lost with encryption on (1 on Milan).
  const sevEbx = c.cBit | (1 << 6);
  // 0x80000001 ECX of a Milan part (LAHF, CmpLegacy, SVM, ExtApicSpace, AltMovCr8, ABM, SSE4A, …), SVM per config.
  const extEcx = (0x75c237ff & ~CPUID_80000001_ECX_SVM) | (c.svm ? CPUID_80000001_ECX_SVM : 0);
  return [
    [0, regs(0x10, v.ebx, v.ecx, v.edx)],
    // Leaf 1: ECX bit 5 (VMX) clear, bit 31 (hypervisor) clear; XSAVE (26), OSXSAVE (27), AVX (28).
    [1, regs(FMS_MILAN, 0x00000800, 0x7ed8320b, 0x178bfbff)],
    // Leaf 0xD, the XSAVE state components: x87, SSE and AVX (the model has no leaf 7, so no PKU and no PKRU
    // component, which Milan also has at offset 2432). Sub-leaf 0: XCR0 bits 7, the enabled area and the
    // largest one 576 + 256 = 832 bytes; 1: XSAVEOPT, XSAVEC, XGETBV1, XSAVES, the compacted size of
    // XCR0 | IA32_XSS (832), no supervisor components; 2 (AVX): 256 bytes at offset 576.
    [0xd, regs(0x7, 0x340, 0x340, 0)],
    [cpuidKey(0xd, 1), regs(0xf, 0x340, 0, 0)],
    [cpuidKey(0xd, 2), regs(0x100, 0x240, 0, 0)],
    [CPUID_EXT_MAX, regs(0x80000021, v.ebx, v.ecx, v.edx)],
    [CPUID_EXT_FEATURES, regs(FMS_MILAN, 0, extEcx, 0x2fd3fbff)],
    // 48 physical and 48 linear address bits.
    [CPUID_EXT_ADDR_SIZES, regs(0x00003030, 0, 0, 0)],
    // SVM revision 1; reserved (zeros) on a CPU without SVM.
    [SVM_CPUID_FUNC, c.svm ? regs(1, c.nrAsids, 0, svmFeatures) : regs(0, 0, 0, 0)],
    [SEV_CPUID_FUNC, c.sev ? regs(sevEax, sevEbx, c.maxSevAsid, c.minSevAsid) : regs(sevEax, sevEbx, 0, 0)],
  ];
}

/** Linux's `MSR_STAR` value: `(__USER32_CS << 16 | __KERNEL_CS) << 32` (`syscall_init()`). */
const STAR_LINUX = 0x0023001000000000n;
/** A plausible `entry_SYSCALL_64` address. */
const LSTAR_LINUX = 0xffffffff81a00080n;
/** A plausible `entry_SYSCALL_compat` address. */
const CSTAR_LINUX = 0xffffffff81a01640n;
/** Linux's `MSR_SYSCALL_MASK`: CF|PF|AF|ZF|SF|TF|IF|DF|OF|IOPL|NT|RF|AC|ID (`syscall_init()`). */
const SFMASK_LINUX = 0x257fd5n;
/** PAT power-on value (WB, WT, UC-, UC repeated). */
const PAT_DEFAULT = 0x0007040600070406n;
/** SYSCFG: MtrrFixDramEn, MtrrVarDramEn, Tom2ForceMemTypeWB; bit 23 MemEncryptionModEn added with SEV. */
const SYSCFG_BASE = 0x740000n;
const SYSCFG_MEM_ENCRYPT = 1n << 23n;
/** Base of the per-CPU areas (`GS_BASE` of CPU n = base + n × 256 KiB). */
const PERCPU_BASE = 0xffff88807fc00000n;

/** Fill in one CPU's CPUID leaves and MSRs (the write hooks are installed by `SvmCpus`). */
function fillCpu(cpu: Cpu, c: AmdCpuConfig, leaves: CpuidLeaves): void {
  for (const [leaf, r] of leaves) cpu.cpuid.set(leaf, r);
  const id = BigInt(cpu.id);
  const m = cpu.msrs;
  m.set(MSR_EFER, c.foreignOwner ? EFER_HOST_DEFAULT | EFER_SVME : EFER_HOST_DEFAULT);
  m.set(MSR_STAR, STAR_LINUX);
  m.set(MSR_LSTAR, LSTAR_LINUX);
  m.set(MSR_CSTAR, CSTAR_LINUX);
  m.set(MSR_SYSCALL_MASK, SFMASK_LINUX);
  m.set(MSR_FS_BASE, 0n);
  m.set(MSR_GS_BASE, PERCPU_BASE + id * 0x40000n);
  m.set(MSR_KERNEL_GS_BASE, 0n);
  m.set(MSR_TSC_AUX, id); // Linux: (node << 12) | cpu, one node here
  m.set(MSR_IA32_PAT, PAT_DEFAULT);
  m.set(MSR_AMD64_SYSCFG, c.sev ? SYSCFG_BASE | SYSCFG_MEM_ENCRYPT : SYSCFG_BASE);
  m.set(
    MSR_VM_CR,
    (c.svmDisabledByBios ? SVM_VM_CR_SVM_DIS_MASK : 0n) | (c.vmCrLocked ? SVM_VM_CR_SVM_LOCK_MASK : 0n),
  );
  m.set(MSR_VM_HSAVE_PA, c.foreignOwner ? FOREIGN_SAVE_AREA_BASE + id * 0x1000n : 0n);
  if (c.svm && c.tscRateMsr) m.set(MSR_AMD64_TSC_RATIO, SVM_TSC_RATIO_DEFAULT);
  m.set(MSR_AMD64_OSVW_ID_LENGTH, 0n);
  m.set(MSR_AMD64_OSVW_STATUS, 0n);
}
