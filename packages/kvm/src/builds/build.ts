/**
 * Module builds: what one `kvm${postfix}` image is, besides its name — a Linux version and a list of named changes
 * relative to the model's baseline, Linux 6.12. Each change is one upstream commit (or a few that go together)
 * with its observable effects. The effects are not an answer table beside the ABI: the ioctl code consults the
 * resolved build where Linux consults the thing the commit changed (`KVM_X86_VALID_QUIRKS`, `emulated_msrs_all`,
 * `kvm_set_cpu_caps`, a `module_param`).
 *
 * What a build can change:
 * - `params`: a module parameter removed (the release before it was added) or with another default;
 * - `quirks`: quirk bits added to or removed from `KVM_X86_VALID_QUIRKS` (KVM_CAP_DISABLE_QUIRKS2's answer and
 *   the EINVAL of KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2) for bits it does not know), optionally only where the
 *   vendor supports the quirk;
 * - `msrs`: MSRs removed from `msrs_to_save` / `emulated_msrs` (KVM_GET_MSR_INDEX_LIST) — and, since a kernel
 *   without the commit has no handler for them, KVM_GET_MSRS / KVM_SET_MSRS and the guest's RDMSR / WRMSR fail on
 *   them — or from the feature-MSR list (KVM_GET_MSR_FEATURE_INDEX_LIST, KVM_GET_MSRS on /dev/kvm);
 * - `cpuid`: bits withheld from KVM_GET_SUPPORTED_CPUID;
 * - `caps`: capabilities a release does not have (KVM_CHECK_EXTENSION answers 0);
 * - `xsave`: XSAVE state components a release does not support (`KVM_SUPPORTED_XCR0`), and whether it has dynamic
 *   features at all (the expanded buffer: KVM_GET_XSAVE2, the guest FPU growing at KVM_SET_CPUID2);
 * - `errnos`: answers a release changed ({@link ERRNO_CHANGES}): a call 6.12 takes that a later release refuses,
 *   with the errno the ioctl code returns where Linux's commit added the check.
 *
 * Only additions the model can back are allowed: a quirk bit must be one the model knows (disabling it must be
 * accepted), a parameter default must be of the parameter's type. What is not listed stays as in 6.12: a build of
 * an older release is 6.12 less the listed changes, not that release in every detail (docs/builds.md).
 *
 * @module
 */
import { UsageError, type ParamSpec } from '@vac/core';
import { KVM_X86_VALID_QUIRKS } from '../abi/constants-x86.js';
import { hostCpuid } from '../module/cpu-caps.js';
import type { KvmInstance } from '../module/instance.js';

/** The registers of a CPUID entry a build can withhold bits from. */
export type CpuidReg = 'eax' | 'ebx' | 'ecx' | 'edx';

/** Bits KVM_GET_SUPPORTED_CPUID no longer offers in one leaf. */
export interface CpuidBits {
  /** The CPUID function (e.g. `0x40000001`, KVM_CPUID_FEATURES). */
  readonly function: number;
  /** The sub-leaf (0 for leaves without one). */
  readonly index: number;
  /** The register. */
  readonly reg: CpuidReg;
  /** The bits withheld. */
  readonly mask: number;
}

/**
 * The answers of the ABI that a release after 6.12 changed, by id: what 6.12 does and what the release does. The
 * ioctl code asks `buildHasErrnoChange` where Linux's commit added its check.
 */
export const ERRNO_CHANGES = Object.freeze({
  /** 04cd8f8628d8 (6.14): KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) once the VM has a vCPU. */
  'disable-exits-after-vcpus': Object.freeze({
    call: 'KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) after KVM_CREATE_VCPU',
    before: '0: the VM\'s flags change, vCPUs created before keep their intercepts',
    after: 'EINVAL',
  }),
  /** c829ccd4d9dc (6.14): KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) with a valid exit KVM_CHECK_EXTENSION does not offer. */
  'disable-exits-not-allowed': Object.freeze({
    call: 'KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) with MWAIT, HLT or CSTATE not in KVM_CHECK_EXTENSION\'s answer',
    before: '0: the exits not offered are ignored (they keep exiting)',
    after: 'EINVAL',
  }),
});

/** An id of {@link ERRNO_CHANGES}. */
export type ErrnoChangeId = keyof typeof ERRNO_CHANGES;

/** The observable effects of one change. Every field is optional; an empty object changes nothing. */
export interface BuildEffects {
  /** Module parameters: `null` removes the parameter (it is not in sysfs and cannot be given); a value is a new default. */
  readonly params?: Readonly<Record<string, boolean | number | string | null>>;
  /** `KVM_X86_VALID_QUIRKS` bits added and removed. */
  readonly quirks?: {
    readonly add?: number;
    readonly remove?: number;
    /**
     * Quirks added that only VMX on a host with self-snoop supports (`vmx_hardware_setup` clears
     * `KVM_X86_QUIRK_IGNORE_GUEST_PAT` from `kvm_caps.supported_quirks` without X86_FEATURE_SELFSNOOP;
     * `svm_hardware_setup` always does).
     */
    readonly vmxSelfSnoopOnly?: number;
  };
  /** MSRs the build does not have. */
  readonly msrs?: {
    /** Removed from the save/restore lists (and without a handler: accesses fail). */
    readonly remove?: readonly number[];
    /** Removed from the feature-MSR list. */
    readonly removeFeature?: readonly number[];
  };
  /** Bits withheld from KVM_GET_SUPPORTED_CPUID. */
  readonly cpuid?: readonly CpuidBits[];
  /** Capabilities the build does not have (KVM_CHECK_EXTENSION answers 0). */
  readonly capsRemoved?: readonly number[];
  /** XSAVE size and features. */
  readonly xsave?: {
    /**
     * Bits removed from `KVM_SUPPORTED_XCR0`: KVM_GET_SUPPORTED_CPUID leaf 0xD, the XCR0 KVM_SET_XCRS takes, the
     * components KVM_SET_XSAVE loads, KVM_X86_XCOMP_GUEST_SUPP.
     */
    readonly removeFeatures?: number;
    /**
     * `false`: the release has no dynamically enabled XSAVE features (before 5.17's AMX series) — no KVM_GET_XSAVE2
     * (EINVAL, as any vCPU ioctl x86 does not know), the guest FPU is always `struct kvm_xsave`'s 4096 bytes, and
     * KVM_SET_CPUID2 neither asks for the process's permission nor grows the FPU.
     */
    readonly dynamic?: false;
  };
  /** Answers the build changed relative to 6.12 ({@link ERRNO_CHANGES}): it refuses where 6.12 takes the call. */
  readonly errnos?: readonly ErrnoChangeId[];
}

/** One named change: an upstream commit (or a small series) and what it does to the ABI. */
export interface BuildChange {
  /** A short id, e.g. `'enable-virt-at-load'`. */
  readonly id: string;
  /** `'+'`: the build has it and 6.12 does not; `'-'`: 6.12 has it and the build does not. */
  readonly direction: '+' | '-';
  /** The upstream commits (12+ hex digits, torvalds/linux unless `tree` says otherwise). */
  readonly commits: readonly string[];
  /** The commits' subject lines. */
  readonly subject: string;
  /** The release that first had it (e.g. `'6.12'`). */
  readonly since: string;
  /** What it changes, in a sentence. */
  readonly summary: string;
  /** The kernel files and functions it touches (the code the model follows). */
  readonly linux: readonly string[];
  /** Where the commits live when not torvalds/linux (e.g. `'stable linux-6.1.y'`). */
  readonly tree?: string;
  /** Its effects, relative to 6.12. */
  readonly effects: BuildEffects;
}

/** A KVM module build: a Linux version and the named changes that make it differ from 6.12. */
export interface KvmBuild {
  /** A unique name, e.g. `'linux-6.18'`. */
  readonly name: string;
  /** The Linux release it models (shown by `lsmod` as the module version). */
  readonly linux: string;
  /** The changes relative to 6.12, applied in order. */
  readonly changes: readonly BuildChange[];
}

/** A build with its effects summed: what the module code consults. */
export interface ResolvedBuild {
  /** The build. */
  readonly build: KvmBuild;
  /** Parameters removed. */
  readonly paramsRemoved: ReadonlySet<string>;
  /** Parameters with another default. */
  readonly paramDefaults: ReadonlyMap<string, boolean | number | string>;
  /** Quirk bits added (over 6.12's `KVM_X86_VALID_QUIRKS`). */
  readonly quirksAdded: number;
  /** Quirk bits removed. */
  readonly quirksRemoved: number;
  /** Added quirk bits only VMX with self-snoop supports. */
  readonly quirksVmxSelfSnoop: number;
  /** MSRs without a handler and off the save lists. */
  readonly msrsRemoved: ReadonlySet<number>;
  /** MSRs off the feature list. */
  readonly featureMsrsRemoved: ReadonlySet<number>;
  /** Supported-CPUID bits withheld. */
  readonly cpuidWithheld: readonly CpuidBits[];
  /** Capabilities answered 0. */
  readonly capsRemoved: ReadonlySet<number>;
  /** Bits removed from `KVM_SUPPORTED_XCR0`. */
  readonly xfeaturesRemoved: bigint;
  /** Whether the build has dynamic XSAVE features (KVM_GET_XSAVE2, a guest FPU larger than 4096 bytes). */
  readonly dynamicXsave: boolean;
  /** The changed answers the build has ({@link ERRNO_CHANGES}). */
  readonly errnoChanges: ReadonlySet<ErrnoChangeId>;
}

/** The baseline: Linux 6.12 as the model implements it. */
export const BASELINE_BUILD: KvmBuild = Object.freeze({ name: 'linux-6.12', linux: '6.12', changes: Object.freeze([]) });

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const COMMIT_RE = /^[0-9a-f]{12,40}$/;
const REGS: ReadonlySet<string> = new Set(['eax', 'ebx', 'ecx', 'edx']);

function u32(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new UsageError('ERR_INVALID_ARG', `kvm build: ${what} must be an integer in [0, 2^32), got ${String(v)}`);
  return v;
}

/** An optional list field: `[]` when absent, else it must be an array. */
function list(v: unknown, what: string): readonly unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new UsageError('ERR_INVALID_ARG', `kvm build: ${what} must be an array`);
  return v;
}

/**
 * Check a build description and sum its effects. `params` are the image's parameter specs (kvm's and the
 * vendors'): a removed or re-defaulted parameter must be one of them, and a default must be of its type.
 * `knownQuirks` is the set of quirk bits the model implements.
 *
 * @throws UsageError `ERR_INVALID_ARG` for a malformed build, naming the field
 */
export function resolveBuild(build: unknown, params: Readonly<Record<string, ParamSpec>>, knownQuirks: number): ResolvedBuild {
  if (typeof build !== 'object' || build === null) throw new UsageError('ERR_INVALID_ARG', `kvm: build must be a KvmBuild object, got ${build === null ? 'null' : typeof build}`);
  const b = build as Partial<KvmBuild>;
  if (typeof b.name !== 'string' || !NAME_RE.test(b.name)) throw new UsageError('ERR_INVALID_ARG', `kvm build: name ${JSON.stringify(b.name)} must match ${NAME_RE.source}`);
  if (typeof b.linux !== 'string' || !/^\d+\.\d+(\.\d+)?$/.test(b.linux)) throw new UsageError('ERR_INVALID_ARG', `kvm build ${b.name}: linux ${JSON.stringify(b.linux)} must be a release such as '6.18' or '6.1.12'`);
  if (!Array.isArray(b.changes)) throw new UsageError('ERR_INVALID_ARG', `kvm build ${b.name}: changes must be an array`);
  const paramsRemoved = new Set<string>();
  const paramDefaults = new Map<string, boolean | number | string>();
  let quirksAdded = 0;
  let quirksRemoved = 0;
  let quirksVmxSelfSnoop = 0;
  const msrsRemoved = new Set<number>();
  const featureMsrsRemoved = new Set<number>();
  const cpuidWithheld: CpuidBits[] = [];
  const capsRemoved = new Set<number>();
  let xfeaturesRemoved = 0n;
  let dynamicXsave = true;
  const errnoChanges = new Set<ErrnoChangeId>();
  const ids = new Set<string>();
  (b.changes as unknown[]).forEach((raw, i) => {
    const where = `kvm build ${b.name}: changes[${i}]`;
    if (typeof raw !== 'object' || raw === null) throw new UsageError('ERR_INVALID_ARG', `${where} must be a BuildChange`);
    const c = raw as Partial<BuildChange>;
    if (typeof c.id !== 'string' || !NAME_RE.test(c.id) || ids.has(c.id)) throw new UsageError('ERR_INVALID_ARG', `${where}: id ${JSON.stringify(c.id)} must be a unique name`);
    ids.add(c.id);
    if (c.direction !== '+' && c.direction !== '-') throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): direction must be '+' or '-'`);
    if (!Array.isArray(c.commits) || c.commits.length === 0 || !c.commits.every((h) => typeof h === 'string' && COMMIT_RE.test(h))) {
      throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): commits must be upstream commit hashes (12 to 40 lowercase hex digits)`);
    }
    for (const f of ['subject', 'since', 'summary'] as const) if (typeof c[f] !== 'string' || c[f] === '') throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): ${f} must be a non-empty string`);
    if (!Array.isArray(c.linux) || !c.linux.every((s) => typeof s === 'string')) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): linux must list the kernel files/functions`);
    const e = c.effects;
    if (typeof e !== 'object' || e === null) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): effects must be an object`);
    for (const [name, v] of Object.entries(e.params ?? {})) {
      const spec = params[name];
      if (spec === undefined) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): no module parameter ${name}`);
      if (v === null) {
        paramsRemoved.add(name);
        paramDefaults.delete(name);
        continue;
      }
      if (typeof v !== typeof spec.defaultValue) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): parameter ${name} takes a ${typeof spec.defaultValue}, got ${typeof v}`);
      const typed = spec as ParamSpec<boolean | number | string>;
      if (typed.parse(typed.show(v)) !== v) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): ${JSON.stringify(v)} is not a value of parameter ${name}`);
      paramsRemoved.delete(name);
      paramDefaults.set(name, v);
    }
    if (e.quirks !== undefined) {
      const add = u32(e.quirks.add ?? 0, `${where} quirks.add`);
      const remove = u32(e.quirks.remove ?? 0, `${where} quirks.remove`);
      const vmx = u32(e.quirks.vmxSelfSnoopOnly ?? 0, `${where} quirks.vmxSelfSnoopOnly`);
      const unknown = (add | vmx) & ~knownQuirks;
      if (unknown !== 0) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): quirk bits 0x${unknown.toString(16)} are not modelled, so a build cannot offer them`);
      if ((vmx & ~add) !== 0) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): quirks.vmxSelfSnoopOnly must be a subset of quirks.add`);
      quirksAdded = (quirksAdded | add) & ~remove;
      quirksRemoved = (quirksRemoved | remove) & ~add;
      quirksVmxSelfSnoop = (quirksVmxSelfSnoop | vmx) & ~remove;
    }
    if (e.params !== undefined && (typeof e.params !== 'object' || e.params === null)) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): params must be an object`);
    if (e.quirks !== undefined && (typeof e.quirks !== 'object' || e.quirks === null)) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): quirks must be an object`);
    for (const m of list(e.msrs?.remove, `${where} msrs.remove`)) msrsRemoved.add(u32(m, `${where} msrs.remove`));
    for (const m of list(e.msrs?.removeFeature, `${where} msrs.removeFeature`)) featureMsrsRemoved.add(u32(m, `${where} msrs.removeFeature`));
    for (const bits of list(e.cpuid, `${where} cpuid`) as readonly CpuidBits[]) {
      if (typeof bits !== 'object' || bits === null || !REGS.has(bits.reg)) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): cpuid reg must be eax, ebx, ecx or edx`);
      cpuidWithheld.push({ function: u32(bits.function, `${where} cpuid.function`), index: u32(bits.index, `${where} cpuid.index`), reg: bits.reg, mask: u32(bits.mask, `${where} cpuid.mask`) });
    }
    for (const cap of list(e.capsRemoved, `${where} capsRemoved`)) capsRemoved.add(u32(cap, `${where} capsRemoved`));
    if (e.xsave !== undefined) {
      if (typeof e.xsave !== 'object' || e.xsave === null) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): xsave must be an object`);
      const remove = u32(e.xsave.removeFeatures ?? 0, `${where} xsave.removeFeatures`);
      if ((remove & 3) !== 0) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): xsave.removeFeatures cannot remove x87 or SSE (every KVM supports them)`);
      xfeaturesRemoved |= BigInt(remove);
      if (e.xsave.dynamic !== undefined && e.xsave.dynamic !== false) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): xsave.dynamic can only be false`);
      if (e.xsave.dynamic === false) dynamicXsave = false;
    }
    for (const id of list(e.errnos, `${where} errnos`)) {
      if (c.direction !== '+') throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): errnos are answers a release after 6.12 changed, so the change's direction must be '+'`);
      if (typeof id !== 'string' || !Object.hasOwn(ERRNO_CHANGES, id)) throw new UsageError('ERR_INVALID_ARG', `${where} (${c.id}): errnos: ${JSON.stringify(id)} is not a modelled change (${Object.keys(ERRNO_CHANGES).join(', ')})`);
      errnoChanges.add(id as ErrnoChangeId);
    }
  });
  return { build: b as KvmBuild, paramsRemoved, paramDefaults, quirksAdded, quirksRemoved, quirksVmxSelfSnoop, msrsRemoved, featureMsrsRemoved, cpuidWithheld, capsRemoved, xfeaturesRemoved, dynamicXsave, errnoChanges };
}

/** A module's build and its parameter values, as its init recorded them. */
interface BuildState {
  readonly resolved: ResolvedBuild;
  readonly params: Readonly<Record<string, unknown>>;
  readonly vendor: string;
}

const STATES = new WeakMap<KvmInstance, BuildState>();
let BASELINE: ResolvedBuild | undefined;

/** Record the build of a module instance (its init calls this once, before anything asks). */
export function attachBuild(inst: KvmInstance, resolved: ResolvedBuild, params: Readonly<Record<string, unknown>>, vendor: string): void {
  STATES.set(inst, { resolved, params, vendor });
}

/** The resolved build of a module instance (the baseline for an instance built without one). */
export function buildOf(inst: KvmInstance): ResolvedBuild {
  const s = STATES.get(inst);
  if (s !== undefined) return s.resolved;
  BASELINE ??= resolveBuild(BASELINE_BUILD, {}, 0);
  return BASELINE;
}

/** A module parameter's value as loaded (`undefined` when the build has no such parameter). */
export function moduleParam(inst: KvmInstance, name: string): unknown {
  return STATES.get(inst)?.params[name];
}

/** Whether the build has a handler for `msr` (an MSR a change removed has none). */
export function buildHasMsr(inst: KvmInstance, msr: number): boolean {
  return !buildOf(inst).msrsRemoved.has(msr);
}

/** Whether the module's build has the changed answer `id` ({@link ERRNO_CHANGES}); 6.12 has none. */
export function buildHasErrnoChange(inst: KvmInstance, id: ErrnoChangeId): boolean {
  return buildOf(inst).errnoChanges.has(id);
}

/** `KVM_X86_QUIRK_IGNORE_GUEST_PAT` (6.14). */
export const KVM_X86_QUIRK_IGNORE_GUEST_PAT = 1 << 9;
/** `KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM` (6.18). */
export const KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM = 1 << 10;

/**
 * The quirk bits a build may offer: 6.12's nine and the two later ones. IGNORE_GUEST_PAT governs guest memory types
 * and VMCS12_ALLOW_FREEZE_IN_SMM a nested-VMX consistency check, neither of which the model has: disabling them is
 * taken and changes nothing the model can show, as on a host whose guests never reach those paths.
 */
export const MODELLED_QUIRKS = KVM_X86_VALID_QUIRKS | KVM_X86_QUIRK_IGNORE_GUEST_PAT | KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM;

/**
 * `kvm_caps.supported_quirks` of this module: `KVM_X86_VALID_QUIRKS` of its build, less what the vendor clears
 * (`vmx_hardware_setup` without X86_FEATURE_SELFSNOOP, `svm_hardware_setup` always: IGNORE_GUEST_PAT). It is
 * KVM_CAP_DISABLE_QUIRKS2's answer and what KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2) accepts.
 */
export function supportedQuirks(inst: KvmInstance): number {
  const b = buildOf(inst);
  let q = (KVM_X86_VALID_QUIRKS | b.quirksAdded) & ~b.quirksRemoved;
  if (b.quirksVmxSelfSnoop !== 0) {
    const boot = inst.host.cpus[0];
    const selfSnoop = boot !== undefined && (hostCpuid(boot, 1, 0).edx & (1 << 27)) !== 0;
    if (STATES.get(inst)?.vendor !== 'vmx' || !selfSnoop) q &= ~b.quirksVmxSelfSnoop;
  }
  return q >>> 0;
}
