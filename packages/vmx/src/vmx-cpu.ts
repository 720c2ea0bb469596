/**
 * The VMX state machine of every CPU of one host: the instructions of Intel SDM Vol. 3C ch. 31 ("VMX
 * instruction reference") with their architectural outcomes, and the VMCS states of ch. 25.
 *
 * Each instruction returns its outcome as a value ({@link VmxOutcome}): `'VMsucceed'`, `'VMfailInvalid'`,
 * `'VMfailValid'` (the error number is then in the current VMCS's {@link Vmcs.instructionError}), or the
 * fault it raises (`'#UD'`, `'#GP'`). Nothing is thrown for an architectural failure; a
 * `UsageError` is thrown only for misuse of the library (a CPU that does not exist, a VMCS of
 * another host, a freed VMCS).
 *
 * Per-CPU numbers live in typed arrays so a host of 8,192 CPUs stays cheap; nothing on the VMXON/INVEPT path
 * allocates.
 *
 * Not modelled: VMX non-root operation (a successful VMLAUNCH/VMRESUME stands for "entry, guest runs, exit"),
 * CR0/RFLAGS/CPL checks (the host kernel always runs at CPL 0 in 64-bit mode), physical-address checks of
 * VMCS pointers, VMCS shadowing, SMX and the dual-monitor treatment of SMM.
 *
 * @module
 */
import { UsageError } from '@vac/core';
import { CounterTable, FaultKnobs, cpuAt, noSuchCpu } from '@vac/core/internal';
import type { Cpu, FaultMode, HardwareEnv } from '@vac/core';
import {
  CPUID_BIT,
  CPU_BASED_ACTIVATE_SECONDARY_CONTROLS,
  CR4_VMXE,
  FEAT_CTL,
  INTEL_MSR,
  INVEPT_TYPE,
  INVVPID_TYPE,
  SECONDARY_EXEC,
  VMXERR,
  VMX_EPT_CAP,
  VMX_VPID_CAP,
} from './arch.js';
import type { InveptType, InvvpidType, VmInstructionError } from './arch.js';

/**
 * The architectural outcome of a VMX instruction (SDM Vol. 3C §31.2 "Conventions"):
 * - `'VMsucceed'`: it worked;
 * - `'VMfailInvalid'`: it failed and there is no current VMCS to hold an error number (CF = 1);
 * - `'VMfailValid'`: it failed and the error number was written to the current VMCS's VM-instruction error
 *   field ({@link Vmcs.instructionError}; ZF = 1);
 * - `'#UD'` / `'#GP'`: it raised that exception (#GP(0)).
 */
export type VmxOutcome = 'VMsucceed' | 'VMfailInvalid' | 'VMfailValid' | '#UD' | '#GP';

/** The launch state of a VMCS (SDM Vol. 3C §25.1): VMCLEAR makes it clear, VMLAUNCH makes it launched. */
export type VmcsLaunchState = 'clear' | 'launched';

/**
 * A 4-KiB region used by VMX: a VMXON region or a VMCS. Its first 32 bits hold the revision identifier, written
 * by software (`vmcs->hdr.revision_id` in Linux), which VMXON and VMPTRLD compare with IA32_VMX_BASIC[30:0]
 * (bit 31 set is also a mismatch: the model's CPUs do not support VMCS shadowing).
 */
export interface VmxRegion {
  /** A host-wide sequence number (0, 1, 2, …) standing for the region's physical address. */
  readonly id: number;
  /** What it was allocated as. Hardware does not care: any page with the right revision id will do. */
  readonly kind: 'vmcs' | 'vmxon';
  /** Who allocated it, e.g. `'vac/vmxarea/3'` or `'kvm0/vm1/vcpu0'`. */
  readonly owner: string;
  /** Bits 31:0 of the region, written by software. */
  revisionId: number;
}

/**
 * A VMCS (SDM Vol. 3C ch. 25) and the kernel's bookkeeping of it (Linux `struct loaded_vmcs`).
 *
 * Hardware state: {@link Vmcs.launchState}, {@link Vmcs.activeOn}, {@link Vmcs.instructionError}. Kernel state:
 * {@link Vmcs.loadedOn} (`loaded_vmcs->cpu`). Software writes {@link VmxRegion.revisionId} and {@link Vmcs.vpid}.
 */
export interface Vmcs extends VmxRegion {
  /** Clear or launched (SDM §25.1). */
  readonly launchState: VmcsLaunchState;
  /** The CPU on which it is active (made active by VMPTRLD, inactive by VMCLEAR on that CPU), or -1. */
  readonly activeOn: number;
  /**
   * The CPU on whose `loaded_vmcss_on_cpu` list the kernel keeps it (`loaded_vmcs->cpu`), or -1. Maintained
   * by {@link LoadedVmcsLists}; raw instructions do not change it.
   */
  readonly loadedOn: number;
  /**
   * The VPID VM-execution control field. 0 means the "enable VPID" control is 0: every VM entry and exit then
   * flushes the TLB mappings of VPID 0 (SDM §28.3.3.1), counted as `vpid0Flush`.
   */
  vpid: number;
  /** The VM-instruction error field: the {@link VMXERR} number of the last `VMfailValid` it recorded, else 0. */
  readonly instructionError: number;
  /** True once freed (`free_vmcs`); using it afterwards is a `UsageError`. */
  readonly freed: boolean;
}

/** What VMX offers on one CPU, decoded from its CPUID and capability MSRs. */
export interface VmxCapabilities {
  /** CPUID.1:ECX.VMX (bit 5). */
  readonly vmx: boolean;
  /** IA32_VMX_BASIC[30:0]: the VMCS revision identifier (0 without VMX). */
  readonly revisionId: number;
  /** IA32_VMX_BASIC[44:32]: bytes to allocate for a VMXON region or VMCS (0 without VMX). */
  readonly vmcsSize: number;
  /** The "enable EPT" secondary control may be 1 (`cpu_has_vmx_ept`). */
  readonly ept: boolean;
  /** The "enable VPID" secondary control may be 1 (`cpu_has_vmx_vpid`). */
  readonly vpid: boolean;
  /** INVEPT with type 1 (single-context) is supported. */
  readonly inveptSingleContext: boolean;
  /** INVEPT with type 2 (global) is supported (`cpu_has_vmx_invept_global`). */
  readonly inveptGlobal: boolean;
  /** INVVPID types supported, by name. */
  readonly invvpid: Readonly<Record<InvvpidType, boolean>>;
  /** IA32_VMX_EPT_VPID_CAP[31:0] as Linux reads it into `vmx_capability.ept` (see {@link VMX_EPT_CAP}). */
  readonly eptCap: number;
  /** IA32_VMX_EPT_VPID_CAP[63:32] as Linux reads it into `vmx_capability.vpid` (see {@link VMX_VPID_CAP}). */
  readonly vpidCap: number;
}

/**
 * Names of the per-CPU counters, in {@link VmxCounters} order. Counters count what the host kernel executed
 * and what completed: an instruction is counted when it returns `'VMsucceed'` (a foreign hypervisor's
 * instructions are not counted).
 */
export const VMX_COUNTER_NAMES = [
  'vmxon',
  'vmxoff',
  'vmclear',
  'vmptrld',
  'vmlaunch',
  'vmresume',
  'inveptSingleContext',
  'inveptGlobal',
  'invvpidIndividualAddress',
  'invvpidSingleContext',
  'invvpidAllContext',
  'invvpidSingleContextRetainingGlobals',
  'vpid0Flush',
  'l1dFlush',
] as const;

/** The name of one per-CPU counter. */
export type VmxCounterName = (typeof VMX_COUNTER_NAMES)[number];

/**
 * The counters of one CPU (or of the whole host): successful VMX instructions by kind, TLB flushes by kind
 * (`invept*`, `invvpid*`; `vpid0Flush` = VM entries without a VPID, each of which flushes VPID 0's mappings on
 * entry and again on the exit that ends it) and L1D flushes (`l1dFlush` = writes of {@link L1D_FLUSH} to
 * IA32_FLUSH_CMD).
 */
export type VmxCounters = Readonly<Record<VmxCounterName, number>>;

/** Counters per CPU: the stride of the counter table. */
const NR_COUNTERS = VMX_COUNTER_NAMES.length;
const counterIndex = (name: VmxCounterName): number => VMX_COUNTER_NAMES.indexOf(name);
const C_VMXON = counterIndex('vmxon');
const C_VMXOFF = counterIndex('vmxoff');
const C_VMCLEAR = counterIndex('vmclear');
const C_VMPTRLD = counterIndex('vmptrld');
const C_VMLAUNCH = counterIndex('vmlaunch');
const C_VMRESUME = counterIndex('vmresume');
/** INVEPT type t (1 single-context, 2 global) counts at C_INVEPT_BASE + t. */
const C_INVEPT_BASE = counterIndex('inveptSingleContext') - 1;
/** INVVPID type t (0 … 3, in {@link INVVPID_TYPE} order) counts at C_INVVPID_BASE + t. */
const C_INVVPID_BASE = counterIndex('invvpidIndividualAddress');
const C_VPID0_FLUSH = counterIndex('vpid0Flush');
const C_L1D_FLUSH = counterIndex('l1dFlush');

// Hot-path constants, hoisted to module-local bindings (no property loads through other modules' exports).
const MSR_IA32_FEAT_CTL = INTEL_MSR.MSR_IA32_FEAT_CTL;
const SEC_ENABLE_EPT = SECONDARY_EXEC.SECONDARY_EXEC_ENABLE_EPT;
const SEC_ENABLE_VPID = SECONDARY_EXEC.SECONDARY_EXEC_ENABLE_VPID;
const EPT_INVEPT = VMX_EPT_CAP.VMX_EPT_INVEPT_BIT;
const EPT_EXTENT_GLOBAL = VMX_EPT_CAP.VMX_EPT_EXTENT_GLOBAL_BIT;
const VPID_INVVPID = VMX_VPID_CAP.VMX_VPID_INVVPID_BIT;
const INVEPT_TYPES: Readonly<Record<string, number>> = INVEPT_TYPE;
const INVVPID_TYPES: Readonly<Record<string, number>> = INVVPID_TYPE;
const INVEPT_SINGLE_CONTEXT = INVEPT_TYPE['single-context'];
const INVVPID_INDIVIDUAL_ADDRESS = INVVPID_TYPE['individual-address'];
const INVVPID_ALL_CONTEXT = INVVPID_TYPE['all-context'];

const FEAT_CTL_VMXON_BITS = FEAT_CTL.FEAT_CTL_LOCKED | FEAT_CTL.FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX;
const FEAT_CTL_VMXON_BITS_N = BigInt(FEAT_CTL_VMXON_BITS);

/**
 * The model's VMXON region / VMCS object. Exported for the package's own modules only (not from the package
 * index): users see it as {@link Vmcs} or {@link VmxRegion}.
 */
export class VmxPage implements Vmcs {
  readonly id: number;
  readonly kind: 'vmcs' | 'vmxon';
  readonly owner: string;
  revisionId: number;
  launchState: VmcsLaunchState = 'clear';
  activeOn = -1;
  loadedOn = -1;
  vpid = 0;
  instructionError = 0;
  freed = false;
  /** The machine that allocated it (pages of another host are refused). */
  readonly machine: VmxCpus;

  /**
   * @param machine - the allocating machine
   * @param id - host-wide sequence number
   * @param kind - VMCS or VMXON region
   * @param owner - owner tag
   * @param revisionId - revision identifier written into the region
   */
  constructor(machine: VmxCpus, id: number, kind: 'vmcs' | 'vmxon', owner: string, revisionId: number) {
    this.machine = machine;
    this.id = id;
    this.kind = kind;
    this.owner = owner;
    this.revisionId = revisionId;
  }
}

/**
 * Check that `region` is a live page of `machine` and return the model's object for it.
 * @throws UsageError when it is not (another host's, a look-alike object, or freed)
 */
export function pageOf(machine: VmxCpus, region: VmxRegion): VmxPage {
  if (!(region instanceof VmxPage) || region.machine !== machine) {
    throw new UsageError('ERR_INVALID_ARG', `vmx: not a VMX region of this host (allocate it with allocVmcs/allocVmxonRegion)`);
  }
  if (region.freed) throw new UsageError('ERR_DESTROYED', `vmx: VMCS #${region.id} (${region.owner}) was freed`);
  return region;
}

/** True when bits 31:0 of a region match IA32_VMX_BASIC[30:0] with bit 31 clear (SDM VMXON/VMPTRLD). */
function revisionMatches(regionRevision: number, basicRevision: number): boolean {
  return basicRevision >= 0 && regionRevision === basicRevision;
}

/** A 64-bit value is canonical for 48-bit linear addresses (bits 63:47 all equal). */
function isCanonical48(address: bigint): boolean {
  return BigInt.asIntN(48, address) === BigInt.asIntN(64, address);
}

/**
 * The VMX part of every CPU of one host (Intel SDM Vol. 3C ch. 24–31): whether the CPU is in VMX operation,
 * its VMXON region, its current-VMCS pointer, the VMCSs active on it, the fault knobs and the counters.
 *
 * The CPU's capabilities are read once, at construction, from its CPUID leaf 1 and its IA32_VMX_BASIC,
 * IA32_VMX_PROCBASED_CTLS2 and IA32_VMX_EPT_VPID_CAP MSRs (read-only MSRs: writing them faults).
 * IA32_FEATURE_CONTROL and CR4 are read live from the `Cpu` at each VMXON.
 */
export class VmxCpus {
  readonly #cpus: readonly Cpu[];
  /** Number of CPUs. */
  readonly size: number;
  // Capabilities (fixed at construction).
  readonly #vmxSupported: Uint8Array;
  readonly #basicRevision: Int32Array;
  readonly #vmcsSize: Uint16Array;
  readonly #secondaryAllowed: Int32Array;
  readonly #eptCap: Int32Array;
  readonly #vpidCap: Int32Array;
  // State.
  readonly #inVmx: Uint8Array;
  readonly #foreign: Uint8Array;
  readonly #enableFaults: FaultKnobs;
  readonly #vmxonRegion: Array<VmxPage | null>;
  readonly #current: Array<VmxPage | null>;
  readonly #active: Array<Set<VmxPage> | undefined>;
  readonly #counters: CounterTable<VmxCounterName>;
  /** `#counters.values`, kept here so that counting is one typed-array increment. */
  readonly #counts: Float64Array;
  /** Every VMCS allocated by {@link VmxCpus.allocVmcs} and not yet freed, by allocation order. */
  readonly #live = new Set<VmxPage>();
  #nextId = 0;
  /** The revision id a VMCS gets by default: the boot CPU's (Linux `vmcs_config.revision_id`). */
  readonly bootRevisionId: number;

  /**
   * @param env - the host's CPUs, events and warning sink
   */
  constructor(env: HardwareEnv) {
    this.#cpus = env.cpus;
    const n = env.cpus.length;
    this.size = n;
    this.#vmxSupported = new Uint8Array(n);
    this.#basicRevision = new Int32Array(n).fill(-1);
    this.#vmcsSize = new Uint16Array(n);
    this.#secondaryAllowed = new Int32Array(n);
    this.#eptCap = new Int32Array(n);
    this.#vpidCap = new Int32Array(n);
    this.#inVmx = new Uint8Array(n);
    this.#foreign = new Uint8Array(n);
    this.#enableFaults = new FaultKnobs(n, 'vmx');
    this.#vmxonRegion = new Array<VmxPage | null>(n).fill(null);
    this.#current = new Array<VmxPage | null>(n).fill(null);
    this.#active = new Array<Set<VmxPage> | undefined>(n).fill(undefined);
    this.#counters = new CounterTable(VMX_COUNTER_NAMES, n);
    this.#counts = this.#counters.values;
    let boot = -1;
    for (let i = 0; i < n; i++) {
      const cpu = env.cpus[i];
      if (cpu === undefined) throw new UsageError('ERR_NO_SUCH_CPU', `vmx: env.cpus[${i}] is missing`);
      this.#readCapabilities(i, cpu);
      if (boot < 0 && this.#vmxSupported[i] === 1) boot = this.#basicRevision[i] ?? -1;
    }
    this.bootRevisionId = boot < 0 ? 0 : boot;
  }

  /** Decode CPUID.1:ECX.VMX and the VMX capability MSRs of one CPU (SDM Vol. 3C appendix A). */
  #readCapabilities(i: number, cpu: Cpu): void {
    if ((cpu.readCpuid(1).ecx & CPUID_BIT.VMX) === 0) return;
    const basic = cpu.rdmsrSafe(INTEL_MSR.MSR_IA32_VMX_BASIC);
    if (basic === undefined) return;
    this.#vmxSupported[i] = 1;
    // A.1: bits 30:0 revision identifier (bit 31 is always 0), bits 44:32 region size.
    this.#basicRevision[i] = Number(basic & 0x7fff_ffffn);
    this.#vmcsSize[i] = Number((basic >> 32n) & 0x1fffn);
    // A.3.2/A.3.3: secondary controls exist only if the primary "activate secondary controls" may be 1.
    const procbased = cpu.rdmsrSafe(INTEL_MSR.MSR_IA32_VMX_PROCBASED_CTLS) ?? 0n;
    if ((Number(procbased >> 32n) & CPU_BASED_ACTIVATE_SECONDARY_CONTROLS) === 0) return;
    const secondary = cpu.rdmsrSafe(INTEL_MSR.MSR_IA32_VMX_PROCBASED_CTLS2) ?? 0n;
    this.#secondaryAllowed[i] = Number(secondary >> 32n) | 0;
    // A.10: IA32_VMX_EPT_VPID_CAP exists only if EPT or VPID may be enabled.
    const cap = cpu.rdmsrSafe(INTEL_MSR.MSR_IA32_VMX_EPT_VPID_CAP) ?? 0n;
    this.#eptCap[i] = Number(cap & 0xffff_ffffn) | 0;
    this.#vpidCap[i] = Number(cap >> 32n) | 0;
  }

  /** The `Cpu` of `cpu`: one array read and a compare; a `UsageError` for a CPU the host does not have. */
  #cpu(cpu: number): Cpu {
    return cpuAt('vmx', this.#cpus, cpu);
  }

  /** Count one event: one typed-array increment (the hot path: every VM entry counts). */
  #count(cpu: number, counter: number): void {
    this.#counts[cpu * NR_COUNTERS + counter]! += 1;
  }

  /**
   * `VMfail(ErrorNumber)` (SDM §31.2): `VMfailValid` with the error in the current VMCS when there is one,
   * else `VMfailInvalid`.
   */
  #vmfail(cpu: number, error: VmInstructionError): 'VMfailValid' | 'VMfailInvalid' {
    const current = this.#current[cpu];
    if (current === null || current === undefined) return 'VMfailInvalid';
    current.instructionError = error;
    return 'VMfailValid';
  }

  #activeSet(cpu: number): Set<VmxPage> {
    let set = this.#active[cpu];
    if (set === undefined) {
      set = new Set<VmxPage>();
      this.#active[cpu] = set;
    }
    return set;
  }

  // ---------------------------------------------------------------- allocation

  /**
   * Allocate a VMCS and write the revision identifier into it (Linux `alloc_vmcs_cpu`: `vmcs->hdr.revision_id
   * = vmcs_config.revision_id`). Launch state clear, active nowhere, VPID 0.
   * @param owner - an owner tag for messages and introspection, e.g. `'kvm0/vm1/vcpu0'`
   * @param revisionId - the revision id to write; default {@link VmxCpus.bootRevisionId}
   */
  allocVmcs(owner: string, revisionId: number = this.bootRevisionId): Vmcs {
    const page = new VmxPage(this, this.#nextId++, 'vmcs', owner, revisionId);
    this.#live.add(page);
    return page;
  }

  /**
   * Allocate a VMXON region (one zeroed page with the revision identifier written into it; Linux
   * `alloc_kvm_area` / E3 `x86_vmx_init`'s `root_vmcs`).
   * @param owner - an owner tag, e.g. `'vac/vmxarea/3'`
   * @param revisionId - the revision id to write; default {@link VmxCpus.bootRevisionId}
   */
  allocVmxonRegion(owner: string, revisionId: number = this.bootRevisionId): VmxRegion {
    return new VmxPage(this, this.#nextId++, 'vmxon', owner, revisionId);
  }

  /**
   * Free a VMCS (Linux `free_vmcs`). The caller must have VMCLEARed it first (`free_loaded_vmcs` does): one
   * still active on a CPU stays in that CPU's active set and {@link IntelHardware.check} reports it.
   */
  freeVmcs(vmcs: VmxRegion): void {
    const page = pageOf(this, vmcs);
    page.freed = true;
    this.#live.delete(page);
  }

  // ---------------------------------------------------------------- instructions

  /**
   * VMXON (SDM Vol. 3C §31.3 "VMXON—Enter VMX Operation"), executed on `cpu` with `region` as operand:
   * - an injected enable fault ({@link VmxCpus.injectEnableFault}) → `'#GP'` (a `'once'` fault is then spent);
   * - no VMX on the CPU, or CR4.VMXE = 0 → `'#UD'`;
   * - already in VMX root operation → `VMfail(VMXON executed in VMX root operation)`: `'VMfailValid'` (error 15)
   *   when there is a current VMCS, else `'VMfailInvalid'`;
   * - IA32_FEATURE_CONTROL not locked, or locked with VMX-outside-SMX clear → `'#GP'`;
   * - region revision id ≠ IA32_VMX_BASIC[30:0] (or bit 31 set) → `'VMfailInvalid'`;
   * - else the CPU enters VMX operation with no current VMCS → `'VMsucceed'`.
   */
  vmxon(cpu: number, region: VmxRegion): VmxOutcome {
    const c = this.#cpu(cpu);
    const page = pageOf(this, region);
    if (this.#enableFaults.fire(cpu)) return '#GP';
    if (this.#vmxSupported[cpu] === 0 || (c.cr4 & CR4_VMXE) === 0) return '#UD';
    if (this.#inVmx[cpu] === 1) return this.#vmfail(cpu, VMXERR.VMXERR_VMXON_IN_VMX_ROOT_OPERATION);
    const featCtl = c.rdmsrSafe(MSR_IA32_FEAT_CTL);
    if (featCtl === undefined || (featCtl & FEAT_CTL_VMXON_BITS_N) !== FEAT_CTL_VMXON_BITS_N) return '#GP';
    if (!revisionMatches(page.revisionId, this.#basicRevision[cpu] ?? -1)) return 'VMfailInvalid';
    this.#inVmx[cpu] = 1;
    this.#vmxonRegion[cpu] = page;
    this.#current[cpu] = null; // current-VMCS pointer := FFFFFFFF_FFFFFFFFH
    this.#count(cpu, C_VMXON);
    return 'VMsucceed';
  }

  /**
   * VMXOFF (SDM §31.3 "VMXOFF—Leave VMX Operation"): `'#UD'` outside VMX operation; else the CPU leaves VMX
   * operation (its current-VMCS pointer is gone) → `'VMsucceed'`. VMCSs still active on the CPU stay active
   * in the model (software should have VMCLEARed them, SDM §25.11.1) and {@link IntelHardware.check} reports
   * them. CR4.VMXE is left as it is (software clears it afterwards).
   */
  vmxoff(cpu: number): VmxOutcome {
    this.#cpu(cpu);
    if (this.#inVmx[cpu] === 0) return '#UD';
    this.#inVmx[cpu] = 0;
    this.#vmxonRegion[cpu] = null;
    this.#current[cpu] = null;
    this.#count(cpu, C_VMXOFF);
    return 'VMsucceed';
  }

  /**
   * VMCLEAR (SDM §31.3 "VMCLEAR—Clear Virtual-Machine Control Structure"): `'#UD'` outside VMX operation;
   * the VMXON region as operand → `VMfail(VMCLEAR with VMXON pointer)` (error 3); else the VMCS's launch state
   * becomes clear, it is no longer active on this CPU, and if it was the current VMCS the current-VMCS pointer
   * becomes invalid → `'VMsucceed'`. (VMCLEAR does not check the revision id.)
   */
  vmclear(cpu: number, vmcs: VmxRegion): VmxOutcome {
    this.#cpu(cpu);
    const page = pageOf(this, vmcs);
    if (this.#inVmx[cpu] === 0) return '#UD';
    if (page === this.#vmxonRegion[cpu]) return this.#vmfail(cpu, VMXERR.VMXERR_VMCLEAR_VMXON_POINTER);
    page.launchState = 'clear';
    if (page.activeOn === cpu) page.activeOn = -1;
    this.#active[cpu]?.delete(page);
    if (this.#current[cpu] === page) this.#current[cpu] = null;
    this.#count(cpu, C_VMCLEAR);
    return 'VMsucceed';
  }

  /**
   * VMPTRLD (SDM §31.3 "VMPTRLD—Load Pointer to Virtual-Machine Control Structure"): `'#UD'` outside VMX
   * operation; the VMXON region → `VMfail(VMPTRLD with VMXON pointer)` (10); revision id ≠ IA32_VMX_BASIC's →
   * `VMfail(VMPTRLD with incorrect VMCS revision identifier)` (11) — `'VMfailValid'` when a current VMCS exists
   * (the error goes into that one), else `'VMfailInvalid'`; else the VMCS becomes active and current on this
   * CPU → `'VMsucceed'`. Loading a VMCS that is still active on another CPU is a software error the SDM leaves
   * undefined; the model makes it active here too and {@link IntelHardware.check} reports it.
   */
  vmptrld(cpu: number, vmcs: VmxRegion): VmxOutcome {
    this.#cpu(cpu);
    const page = pageOf(this, vmcs);
    if (this.#inVmx[cpu] === 0) return '#UD';
    if (page === this.#vmxonRegion[cpu]) return this.#vmfail(cpu, VMXERR.VMXERR_VMPTRLD_VMXON_POINTER);
    if (!revisionMatches(page.revisionId, this.#basicRevision[cpu] ?? -1)) {
      return this.#vmfail(cpu, VMXERR.VMXERR_VMPTRLD_INCORRECT_VMCS_REVISION_ID);
    }
    page.activeOn = cpu;
    this.#activeSet(cpu).add(page);
    this.#current[cpu] = page;
    this.#count(cpu, C_VMPTRLD);
    return 'VMsucceed';
  }

  /**
   * VMLAUNCH (SDM §31.3 "VMLAUNCH/VMRESUME—Launch/Resume Virtual Machine"): `'#UD'` outside VMX operation;
   * no current VMCS → `'VMfailInvalid'`; launch state not clear → `'VMfailValid'` (error 4, VMLAUNCH with
   * non-clear VMCS); a non-zero VPID on a CPU without the "enable VPID" control → `'VMfailValid'` (error 7,
   * SDM §27.2.1.1); else the VMCS becomes launched → `'VMsucceed'` (the guest ran and exited).
   */
  vmlaunch(cpu: number): VmxOutcome {
    return this.#vmentry(cpu, true);
  }

  /**
   * VMRESUME (SDM §31.3): as {@link VmxCpus.vmlaunch} but requires the launch state "launched", else
   * `'VMfailValid'` (error 5, VMRESUME with non-launched VMCS).
   */
  vmresume(cpu: number): VmxOutcome {
    return this.#vmentry(cpu, false);
  }

  #vmentry(cpu: number, launch: boolean): VmxOutcome {
    this.#cpu(cpu);
    if (this.#inVmx[cpu] === 0) return '#UD';
    const current = this.#current[cpu];
    if (current === null || current === undefined) return 'VMfailInvalid';
    if (launch && current.launchState !== 'clear') return this.#vmfail(cpu, VMXERR.VMXERR_VMLAUNCH_NONCLEAR_VMCS);
    if (!launch && current.launchState !== 'launched') {
      return this.#vmfail(cpu, VMXERR.VMXERR_VMRESUME_NONLAUNCHED_VMCS);
    }
    // SDM §27.2.1.1: "enable VPID" must be allowed to be 1, and with it 1 the VPID must not be 0000H.
    const vpid = current.vpid;
    if (vpid !== 0) {
      const vpidAllowed = ((this.#secondaryAllowed[cpu] ?? 0) & SEC_ENABLE_VPID) !== 0;
      if (!vpidAllowed || !Number.isInteger(vpid) || vpid < 0 || vpid > 0xffff) {
        return this.#vmfail(cpu, VMXERR.VMXERR_ENTRY_INVALID_CONTROL_FIELD);
      }
    } else {
      // SDM §28.3.3.1: with "enable VPID" = 0, VM entry (and the VM exit) flush VPID 0's mappings.
      this.#count(cpu, C_VPID0_FLUSH);
    }
    if (launch) current.launchState = 'launched';
    this.#count(cpu, launch ? C_VMLAUNCH : C_VMRESUME);
    return 'VMsucceed';
  }

  /**
   * INVEPT (SDM §31.3 "INVEPT—Invalidate Translations Derived from EPT"): `'#UD'` outside VMX operation or
   * when the CPU has no EPT or no INVEPT; a type the CPU does not support → `'VMfailValid'`/`'VMfailInvalid'`
   * (error 28); single-context with an EPTP the CPU would not accept (memory type, page-walk length, A/D bit,
   * reserved bits 11:7) → the same; else the EPT-derived mappings are flushed → `'VMsucceed'`.
   * @param type - `'single-context'` (1) or `'global'` (2)
   * @param eptp - the EPT pointer in the descriptor (single-context only)
   */
  invept(cpu: number, type: InveptType, eptp = 0): VmxOutcome {
    this.#cpu(cpu);
    const t = INVEPT_TYPES[type];
    if (t === undefined) throw new UsageError('ERR_UNKNOWN_NAME', `vmx: unknown INVEPT type '${String(type)}'`);
    if (!Number.isSafeInteger(eptp) || eptp < 0) throw new UsageError('ERR_OUT_OF_RANGE', `vmx: EPTP must be a non-negative integer`);
    const ept = this.#eptCap[cpu] ?? 0;
    if (
      this.#inVmx[cpu] === 0 ||
      ((this.#secondaryAllowed[cpu] ?? 0) & SEC_ENABLE_EPT) === 0 ||
      (ept & EPT_INVEPT) === 0
    ) {
      return '#UD';
    }
    // IA32_VMX_EPT_VPID_CAP bit 24 + type says whether the type is supported.
    if ((ept & (1 << (24 + t))) === 0) return this.#vmfail(cpu, VMXERR.VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID);
    if (t === INVEPT_SINGLE_CONTEXT && !eptpIsValid(ept, eptp)) {
      return this.#vmfail(cpu, VMXERR.VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID);
    }
    this.#count(cpu, C_INVEPT_BASE + t);
    return 'VMsucceed';
  }

  /**
   * INVVPID (SDM §31.3 "INVVPID—Invalidate Translations Based on VPID"): `'#UD'` outside VMX operation or
   * when the CPU has no VPID or no INVVPID; an unsupported type, a VPID above 0xFFFF (descriptor bits 63:16
   * set), VPID 0 for any type but all-context, or a non-canonical address for individual-address →
   * `VMfail(Invalid operand to INVEPT/INVVPID)` (28); else → `'VMsucceed'`.
   * @param type - the INVVPID type
   * @param vpid - the VPID in the descriptor (ignored by all-context)
   * @param address - the linear address (individual-address only)
   */
  invvpid(cpu: number, type: InvvpidType, vpid: number, address = 0n): VmxOutcome {
    this.#cpu(cpu);
    const t = INVVPID_TYPES[type];
    if (t === undefined) throw new UsageError('ERR_UNKNOWN_NAME', `vmx: unknown INVVPID type '${String(type)}'`);
    if (!Number.isInteger(vpid) || vpid < 0) throw new UsageError('ERR_OUT_OF_RANGE', `vmx: VPID must be a non-negative integer`);
    const cap = this.#vpidCap[cpu] ?? 0;
    if (
      this.#inVmx[cpu] === 0 ||
      ((this.#secondaryAllowed[cpu] ?? 0) & SEC_ENABLE_VPID) === 0 ||
      (cap & VPID_INVVPID) === 0
    ) {
      return '#UD';
    }
    const invalid =
      (cap & (1 << (8 + t))) === 0 ||
      vpid > 0xffff ||
      (t !== INVVPID_ALL_CONTEXT && vpid === 0) ||
      (t === INVVPID_INDIVIDUAL_ADDRESS && !isCanonical48(address));
    if (invalid) return this.#vmfail(cpu, VMXERR.VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID);
    this.#count(cpu, C_INVVPID_BASE + t);
    return 'VMsucceed';
  }

  /** Count one L1D flush on `cpu` (the IA32_FLUSH_CMD write hook calls this). */
  countL1dFlush(cpu: number): void {
    // On every VM entry in `always` mode and after each return to user space in `cond` mode: a bounds check
    // on the counters instead of the CPU lookup.
    const i = cpu * NR_COUNTERS + C_L1D_FLUSH;
    const counts = this.#counts;
    if (!(i >= 0 && i < counts.length)) throw noSuchCpu('vmx', cpu, this.size);
    counts[i]! += 1;
  }

  // ---------------------------------------------------------------- knobs

  /**
   * Fault knob: another hypervisor takes (`true`) or gives up (`false`) VMX on `cpu` behind the host's back.
   * Taking: it sets CR4.VMXE and, unless the CPU is already in VMX operation, executes VMXON on its own region
   * (so VAC's enable then sees CR4.VMXE set → EBUSY). If the CPU is already in VMX operation (VAC's), the
   * foreign hypervisor only claims it: two owners, which {@link IntelHardware.check} reports. Giving up: if it
   * is the one in VMX operation, it executes VMXOFF and clears CR4.VMXE. Not counted.
   * @throws UsageError when taking a CPU without VMX
   */
  setForeignOwner(cpu: number, owned: boolean): void {
    const c = this.#cpu(cpu);
    if (owned) {
      if (this.#vmxSupported[cpu] === 0) {
        throw new UsageError('ERR_NOT_SUPPORTED', `vmx: CPU ${cpu} has no VMX, so no foreign hypervisor can be in VMX operation there`);
      }
      if (this.#foreign[cpu] === 1) return;
      this.#foreign[cpu] = 1;
      c.cr4 |= CR4_VMXE;
      if (this.#inVmx[cpu] === 0) {
        this.#inVmx[cpu] = 1;
        this.#vmxonRegion[cpu] = this.allocVmxonRegion('foreign', this.#basicRevision[cpu] ?? 0) as VmxPage;
        this.#current[cpu] = null;
      }
      return;
    }
    if (this.#foreign[cpu] === 0) return;
    this.#foreign[cpu] = 0;
    if (this.#inVmx[cpu] === 1 && this.#vmxonRegion[cpu]?.owner === 'foreign') {
      this.#inVmx[cpu] = 0;
      this.#vmxonRegion[cpu] = null;
      this.#current[cpu] = null;
      c.cr4 &= ~CR4_VMXE;
    }
  }

  /**
   * Fault knob: make the next (`'once'`) or every (`'always'`) VMXON on `cpu` fault with #GP — what a BIOS or
   * SMM quirk does; `'off'` removes it.
   */
  injectEnableFault(cpu: number, mode: FaultMode): void {
    this.#cpu(cpu);
    this.#enableFaults.set(cpu, mode);
  }

  // ---------------------------------------------------------------- introspection

  /** Whether `cpu` is in VMX operation (by anyone: VAC or a foreign hypervisor). */
  inVmxOperation(cpu: number): boolean {
    this.#cpu(cpu);
    return this.#inVmx[cpu] === 1;
  }

  /** Whether a foreign hypervisor claims VMX on `cpu` ({@link VmxCpus.setForeignOwner}). */
  foreignOwner(cpu: number): boolean {
    this.#cpu(cpu);
    return this.#foreign[cpu] === 1;
  }

  /** The injected enable fault on `cpu`. */
  enableFault(cpu: number): FaultMode {
    this.#cpu(cpu);
    return this.#enableFaults.mode(cpu);
  }

  /** The current VMCS of `cpu` (what VMPTRST would store), or `undefined` when the pointer is invalid. */
  currentVmcs(cpu: number): Vmcs | undefined {
    this.#cpu(cpu);
    return this.#current[cpu] ?? undefined;
  }

  /** The VMXON region `cpu` entered VMX operation with, or `undefined` outside VMX operation. */
  vmxonRegion(cpu: number): VmxRegion | undefined {
    this.#cpu(cpu);
    return this.#vmxonRegion[cpu] ?? undefined;
  }

  /** The VMCSs active on `cpu` (VMPTRLDed there and not VMCLEARed since), oldest first. */
  activeVmcss(cpu: number): readonly Vmcs[] {
    this.#cpu(cpu);
    const set = this.#active[cpu];
    return set === undefined ? [] : [...set];
  }

  /** Every VMCS of the host allocated and not yet freed, by allocation order (VMXON regions are not listed). */
  liveVmcss(): readonly Vmcs[] {
    return [...this.#live];
  }

  /** The VMX capabilities of `cpu`. */
  capabilities(cpu: number): VmxCapabilities {
    this.#cpu(cpu);
    const secondary = this.#secondaryAllowed[cpu] ?? 0;
    const ept = (secondary & SEC_ENABLE_EPT) !== 0;
    const vpid = (secondary & SEC_ENABLE_VPID) !== 0;
    const eptCap = this.#eptCap[cpu] ?? 0;
    const vpidCap = this.#vpidCap[cpu] ?? 0;
    const invept = ept && (eptCap & EPT_INVEPT) !== 0;
    const invvpid = vpid && (vpidCap & VPID_INVVPID) !== 0;
    const has = (bit: number): boolean => invvpid && (vpidCap & bit) !== 0;
    const supported = this.#vmxSupported[cpu] === 1;
    return {
      vmx: supported,
      revisionId: supported ? (this.#basicRevision[cpu] ?? 0) : 0,
      vmcsSize: this.#vmcsSize[cpu] ?? 0,
      ept,
      vpid,
      inveptSingleContext: invept && (eptCap & VMX_EPT_CAP.VMX_EPT_EXTENT_CONTEXT_BIT) !== 0,
      inveptGlobal: invept && (eptCap & EPT_EXTENT_GLOBAL) !== 0,
      invvpid: {
        'individual-address': has(VMX_VPID_CAP.VMX_VPID_EXTENT_INDIVIDUAL_ADDR_BIT),
        'single-context': has(VMX_VPID_CAP.VMX_VPID_EXTENT_SINGLE_CONTEXT_BIT),
        'all-context': has(VMX_VPID_CAP.VMX_VPID_EXTENT_GLOBAL_CONTEXT_BIT),
        'single-context-retaining-globals': has(VMX_VPID_CAP.VMX_VPID_EXTENT_SINGLE_NON_GLOBAL_BIT),
      },
      eptCap,
      vpidCap,
    };
  }

  /**
   * Whether a global INVEPT can run on `cpu` (EPT, INVEPT and its global type supported; Linux
   * `cpu_has_vmx_invept_global`). Allocation-free, for the enable path.
   */
  supportsInveptGlobal(cpu: number): boolean {
    const ept = this.#eptCap[cpu] ?? 0;
    return (
      ((this.#secondaryAllowed[cpu] ?? 0) & SEC_ENABLE_EPT) !== 0 &&
      (ept & EPT_INVEPT) !== 0 &&
      (ept & EPT_EXTENT_GLOBAL) !== 0
    );
  }

  /** The counters of `cpu` (a fresh, frozen object). */
  counters(cpu: number): VmxCounters {
    this.#cpu(cpu);
    return this.#counters.get(cpu);
  }

  /** The counters summed over every CPU of the host. */
  totals(): VmxCounters {
    return this.#counters.totals();
  }
}

/**
 * Whether INVEPT would accept `eptp` on a CPU with these EPT capabilities (SDM §28.2.6 / §25.6.11 "Extended-
 * Page-Table Pointer"): memory type UC (0) or WB (6) if supported, page-walk length 4 or 5 if supported,
 * the A/D enable bit only if supported, bits 11:7 reserved.
 */
function eptpIsValid(eptCap: number, eptp: number): boolean {
  const low = eptp % 4096;
  const memType = low & 7;
  if (memType === 0 ? (eptCap & VMX_EPT_CAP.VMX_EPTP_UC_BIT) === 0 : memType !== 6 || (eptCap & VMX_EPT_CAP.VMX_EPTP_WB_BIT) === 0) {
    return false;
  }
  const walk = ((low >> 3) & 7) + 1;
  if (walk === 4 ? (eptCap & VMX_EPT_CAP.VMX_EPT_PAGE_WALK_4_BIT) === 0 : walk !== 5 || (eptCap & VMX_EPT_CAP.VMX_EPT_PAGE_WALK_5_BIT) === 0) {
    return false;
  }
  if ((low & 0x40) !== 0 && (eptCap & VMX_EPT_CAP.VMX_EPT_AD_BIT) === 0) return false;
  return (low & 0xf80) === 0;
}
