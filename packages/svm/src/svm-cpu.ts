/**
 * The per-CPU SVM state of an AMD host (AMD64 APM Vol. 2 ch. 15, "Secure Virtual Machine").
 *
 * What lives here is the *hardware*: EFER.SVME (kept in step with the `MSR_EFER` value in `Cpu.msrs` by a
 * write hook), `VM_CR` and `VM_HSAVE_PA` (write hooks enforce the architectural rules), the global interrupt
 * flag (STGI/CLGI), guest mode entered by VMRUN and left by `#VMEXIT`, the VMCBs, TLB flushes requested
 * through `TLB_CONTROL`, WBINVD, and the SEV firmware's `DF_FLUSH`. Who owns SVM on a CPU is tracked here
 * too (VAC through its enable path, or a foreign hypervisor declared with a fault knob), so that
 * {@link SvmCpus.violations} can report a CPU with two owners or an owner-less EFER.SVME.
 *
 * Per-CPU numbers are typed arrays indexed by CPU number; nothing allocates on the enable/VMRUN paths
 * except the `bigint` EFER value itself.
 *
 * Things that are KVM's software state, not hardware, are only carried, never interpreted: the VMCB's
 * `asidGeneration` and `lastCpu` (`kvm_vmcb_info.asid_generation`/`.cpu`). Two steps Linux's KVM performs
 * around every run are folded into {@link SvmCpus.vmexit} (and into a failed VMRUN) because every caller
 * would otherwise repeat them: `svm_vcpu_run()` writes `tlb_ctl = TLB_CONTROL_DO_NOTHING` and calls
 * `vmcb_mark_all_clean()` after the run (`arch/x86/kvm/svm/svm.c`).
 *
 * @module
 */
import { UsageError } from '@vac/core';
import { CounterTable, FaultKnobs, checkCpuIndex } from '@vac/core/internal';
import type { Cpu, FaultMode, HardwareEnv, MsrSlot, Violation } from '@vac/core';
import {
  CPUID_80000001_ECX_SVM,
  CPUID_EXT_ADDR_SIZES,
  CPUID_EXT_FEATURES,
  CPUID_EXT_MAX,
  EFER_SVME,
  MSR_EFER,
  MSR_VM_CR,
  MSR_VM_HSAVE_PA,
  SEV_CPUID_FUNC,
  SEV_FEATURE,
  SVM_CPUID_FUNC,
  SVM_EXIT,
  SVM_FEATURE,
  SVM_VM_CR_SVM_DIS_MASK,
  SVM_VM_CR_SVM_LOCK_MASK,
  TLB_CONTROL_DO_NOTHING,
  TLB_CONTROL_FLUSH_ALL_ASID,
  TLB_CONTROL_FLUSH_ASID,
  TLB_CONTROL_FLUSH_ASID_LOCAL,
  VMCB_CLEAN_AFTER_RUN,
} from './arch.js';
import type { TlbControl } from './arch.js';

// Hot-path constants as module locals: transpilers that keep ESM live bindings (tsx, vitest) turn every
// use of an imported constant into a property read through a getter.
const _EFER_SVME = EFER_SVME;
const _MSR_EFER = MSR_EFER;
const _MSR_VM_HSAVE_PA = MSR_VM_HSAVE_PA;
const _MSR_VM_CR = MSR_VM_CR;
const _SVM_VM_CR_SVM_DIS_MASK = SVM_VM_CR_SVM_DIS_MASK;
const _SVM_VM_CR_SVM_LOCK_MASK = SVM_VM_CR_SVM_LOCK_MASK;

/** Physical address of the first VMCB page; VMCB n is 4 KiB × n above it. */
export const VMCB_AREA_BASE = 0x2_0000_0000n;
/** Physical address of a foreign hypervisor's host save area on CPU 0 (CPU n: 4 KiB × n above). */
export const FOREIGN_SAVE_AREA_BASE = 0x3_0000_0000n;

/**
 * Names of the per-CPU counters, in {@link SvmCounters} order. Counters count what the host kernel executed
 * (a foreign hypervisor's EFER.SVME writes are not counted).
 */
export const SVM_COUNTER_NAMES = [
  'svmeOn',
  'svmeOff',
  'vmrun',
  'vmexit',
  'vmexitInvalid',
  'stgi',
  'clgi',
  'tlbFlushAll',
  'tlbFlushAsid',
  'tlbFlushAsidLocal',
  'wbinvd',
] as const;

/** The name of one per-CPU counter. */
export type SvmCounterName = (typeof SVM_COUNTER_NAMES)[number];

/**
 * The counters of one CPU (or of the whole host): EFER.SVME 0→1 (`svmeOn`) and 1→0 (`svmeOff`) writes,
 * VMRUNs that entered the guest (`vmrun`), `#VMEXIT`s (`vmexit`), VMRUNs failing their consistency checks
 * (`vmexitInvalid`), STGI, CLGI, TLB flushes by `TLB_CONTROL` kind (`tlbFlushAll`, `tlbFlushAsid`,
 * `tlbFlushAsidLocal`) and WBINVD.
 */
export type SvmCounters = Readonly<Record<SvmCounterName, number>>;

const NR_COUNTERS = SVM_COUNTER_NAMES.length;
const C_SVME_ON = 0;
const C_SVME_OFF = 1;
const C_VMRUN = 2;
const C_VMEXIT = 3;
const C_VMEXIT_INVALID = 4;
const C_STGI = 5;
const C_CLGI = 6;
const C_TLB_ALL = 7;
const C_TLB_ASID = 8;
const C_TLB_ASID_LOCAL = 9;
const C_WBINVD = 10;

/**
 * The outcome of VMRUN: the CPU is now in guest mode (`'entered'`, leave it with {@link SvmCpus.vmexit}),
 * the consistency checks failed (`'VMEXIT_INVALID'`, exit code `SVM_EXIT_ERR` = -1 in the VMCB), or the
 * instruction faulted (`'#UD'`: EFER.SVME is clear).
 */
export type VmrunResult = 'entered' | 'VMEXIT_INVALID' | '#UD';

/** An exception raised by an SVM instruction (STGI/CLGI: `'#UD'` when EFER.SVME is clear). */
export type SvmFault = '#UD';

/** Who holds SVM on a CPU: nobody, VAC (through its enable path), a foreign hypervisor, or — a bug — both. */
export type CpuOwner = 'none' | 'vac' | 'foreign' | 'both';

/** The encryption mode a VMCB asks for (VMCB `SEV_ENABLE` / `SEV_ES_ENABLE` control bits). */
export type VmcbSev = 'none' | 'sev' | 'sev-es';

/**
 * A VMCB (APM §15.5, Appendix B): the fields of the control area that matter to the model, plus KVM's
 * per-VMCB bookkeeping. Create with {@link SvmCpus.allocVmcb}; give back with {@link SvmCpus.freeVmcb}.
 */
export class Vmcb {
  /** A host-unique number (allocation order, from 0). */
  readonly id: number;
  /** The VMCB's physical address (what VMRUN takes in rAX); page aligned. */
  readonly pa: bigint;
  /** Who allocated it (a module name such as `'kvm0'`); carried into `tlb:flush` events. */
  readonly owner: string;
  /** `control.asid`: the guest's ASID. 0 is the host's: VMRUN fails with `VMEXIT_INVALID`. */
  asid = 0;
  /** `control.tlb_ctl`: the flush VMRUN performs. Reset to `TLB_CONTROL_DO_NOTHING` after every run. */
  tlbControl: TlbControl = TLB_CONTROL_DO_NOTHING;
  /** `control.clean`: VMCB clean bits (`vmcb_mark_all_clean()` after every run; KVM clears bits it dirties). */
  clean = 0;
  /** `control.exit_code` of the last `#VMEXIT` (`SVM_EXIT_*`; -1 = `VMEXIT_INVALID`). */
  exitCode = 0;
  /** Encryption mode (`SEV_ENABLE`/`SEV_ES_ENABLE` in the nested-paging control field). */
  sev: VmcbSev = 'none';
  /** KVM's `kvm_vmcb_info.asid_generation` (0 = must take a new ASID). Not touched by the hardware model. */
  asidGeneration = 0;
  /** KVM's `kvm_vmcb_info.cpu`: the CPU it last ran on, -1 if never. Not touched by the hardware model. */
  lastCpu = -1;
  /** The CPU on which this VMCB is in guest mode right now, or -1. Maintained by the hardware model. */
  runningOn = -1;
  /** True once given back with {@link SvmCpus.freeVmcb}. */
  freed = false;

  /**
   * Use {@link SvmCpus.allocVmcb}; a VMCB built directly is not known to any host.
   *
   * @param id - the host-unique number
   * @param pa - the physical address
   * @param owner - who allocated it
   */
  constructor(id: number, pa: bigint, owner: string) {
    this.id = id;
    this.pa = pa;
    this.owner = owner;
  }
}

/** Read-only view of one CPU's SVM state. */
export interface SvmCpuState {
  /** EFER.SVME. */
  readonly svme: boolean;
  /** `MSR_VM_HSAVE_PA`. */
  readonly hsavePa: bigint;
  /** The global interrupt flag. */
  readonly gif: boolean;
  /** Whether the CPU is in guest mode (between VMRUN and `#VMEXIT`). */
  readonly inGuest: boolean;
  /** The VMCB of the last VMRUN on this CPU (`svm_data.current_vmcb`), if it is still allocated. */
  readonly currentVmcb: Vmcb | undefined;
  /** Who holds SVM on this CPU. */
  readonly owner: CpuOwner;
  /** The armed enable fault, if any. */
  readonly enableFault: FaultMode;
}

/** One CPU in an {@link AmdSnapshot}. */
export interface AmdCpuSnapshot {
  /** CPU number. */
  readonly cpu: number;
  /** Every implemented MSR, `'0xc0000080' → '0x1d01'` (hex strings so the snapshot is JSON-safe). */
  readonly msrs: Readonly<Record<string, string>>;
  /** EFER.SVME (anyone's). */
  readonly svme: boolean;
  /** The global interrupt flag. */
  readonly gif: boolean;
  /** In guest mode. */
  readonly inGuest: boolean;
  /** Id of the current VMCB (`svm_data.current_vmcb`), or `null`. */
  readonly currentVmcb: number | null;
  /** A foreign hypervisor claims SVM here. */
  readonly foreignOwner: boolean;
  /** VAC turned EFER.SVME on here and has not turned it off since. */
  readonly vacEnabled: boolean;
}

/** One VMCB in an {@link AmdSnapshot}. */
export interface AmdVmcbSnapshot {
  /** {@link Vmcb.id} */
  readonly id: number;
  /** {@link Vmcb.owner} */
  readonly owner: string;
  /** {@link Vmcb.asid} */
  readonly asid: number;
  /** {@link Vmcb.tlbControl} */
  readonly tlbControl: TlbControl;
  /** {@link Vmcb.clean} */
  readonly clean: number;
  /** {@link Vmcb.exitCode} */
  readonly exitCode: number;
  /** {@link Vmcb.sev} */
  readonly sev: VmcbSev;
  /** {@link Vmcb.asidGeneration} */
  readonly asidGeneration: number;
  /** {@link Vmcb.lastCpu} */
  readonly lastCpu: number;
  /** {@link Vmcb.runningOn} */
  readonly runningOn: number;
}

/** A deep, plain-data (JSON-safe) copy of an AMD host's hardware state; fault knobs are not part of it. */
export interface AmdSnapshot {
  /** Always `'amd'`. */
  readonly vendor: 'amd';
  /** Per CPU, by CPU number. */
  readonly cpus: readonly AmdCpuSnapshot[];
  /** Every live VMCB, by allocation order. */
  readonly vmcbs: readonly AmdVmcbSnapshot[];
  /** SEV firmware `DF_FLUSH` commands run. */
  readonly dfFlushes: number;
}

/** Who is writing an MSR, so the EFER hook can record who turned SVM on. */
const W_OTHER = 0;
const W_VAC = 1;
const W_FOREIGN = 2;

const OWNERS: readonly CpuOwner[] = ['none', 'vac', 'foreign', 'both'];

/** `SVM_VM_CR_VALID_MASK` (0x1f): VM_CR bits 0 … 4 exist; writing others faults. */
const VM_CR_VALID_MASK = 0x1fn;

/**
 * The SVM hardware of every CPU of one host.
 *
 * Built by `amd().create(env)` after the CPUs' CPUID leaves and MSRs are filled in; it installs the write
 * hooks of `MSR_EFER`, `MSR_VM_CR` and `MSR_VM_HSAVE_PA`. A CPU whose EFER.SVME is already set at that point
 * belongs to a foreign hypervisor.
 */
export class SvmCpus {
  /** The number of CPUs. */
  readonly nrCpus: number;
  readonly #env: HardwareEnv;
  readonly #cpus: readonly Cpu[];
  /** EFER.SVME mirror, kept by the EFER write hook. */
  readonly #svme: Uint8Array;
  /** SVM turned on through VAC's enable path. */
  readonly #vac: Uint8Array;
  /** SVM held by a foreign hypervisor. */
  readonly #foreign: Uint8Array;
  /** Global interrupt flag (1 after reset). */
  readonly #gif: Uint8Array;
  /** In guest mode. */
  readonly #inGuest: Uint8Array;
  /** CPUID 0x80000001 ECX.SVM, read at creation. */
  readonly #svmCapable: Uint8Array;
  /** `VM_CR.SVMDIS` mirror, kept by the VM_CR write hook. */
  readonly #svmDis: Uint8Array;
  /** CPUID 0x8000000A EDX.FlushByAsid, read at creation. */
  readonly #flushByAsid: Uint8Array;
  /** `1 << MAXPHYADDR` per CPU (CPUID 0x80000008 EAX[7:0]), read at creation. */
  readonly #paLimit: bigint[];
  /** `svm_data.current_vmcb`: the VMCB of the last VMRUN per CPU. */
  readonly #current: (Vmcb | undefined)[];
  /** The VMCB in guest mode per CPU. */
  readonly #running: (Vmcb | undefined)[];
  readonly #counters: CounterTable<SvmCounterName>;
  /** The counters' storage, for one index increment on the VMRUN path (`values[cpu * NR_COUNTERS + slot]`). */
  readonly #counts: Float64Array;
  /** VM_HSAVE_PA, looked up once (VMRUN reads it on every entry). */
  readonly #hsave: MsrSlot;
  readonly #enableFaults: FaultKnobs;
  readonly #dfFlushFault = new FaultKnobs(1);
  readonly #vmcbs = new Map<number, Vmcb>();
  #nextVmcbId = 0;
  #dfFlushes = 0;
  #writer = W_OTHER;

  /**
   * @param env - the host: its CPUs (CPUID and MSRs already filled in) and event stream
   */
  constructor(env: HardwareEnv) {
    const n = env.cpus.length;
    this.nrCpus = n;
    this.#env = env;
    this.#cpus = env.cpus;
    this.#svme = new Uint8Array(n);
    this.#vac = new Uint8Array(n);
    this.#foreign = new Uint8Array(n);
    this.#gif = new Uint8Array(n).fill(1);
    this.#inGuest = new Uint8Array(n);
    this.#flushByAsid = new Uint8Array(n);
    this.#svmCapable = new Uint8Array(n);
    this.#svmDis = new Uint8Array(n);
    this.#paLimit = new Array<bigint>(n);
    this.#current = new Array<Vmcb | undefined>(n).fill(undefined);
    this.#running = new Array<Vmcb | undefined>(n).fill(undefined);
    this.#counters = new CounterTable(SVM_COUNTER_NAMES, n);
    this.#counts = this.#counters.values;
    this.#hsave = (env.cpus[0] as Cpu).msrSlot(_MSR_VM_HSAVE_PA);
    this.#enableFaults = new FaultKnobs(n);
    const limits = new Map<number, bigint>();
    for (let i = 0; i < n; i++) {
      const c = env.cpus[i] as Cpu;
      if (c.id !== i) throw new UsageError('ERR_NO_SUCH_CPU', `amd(): env.cpus[${i}] has id ${c.id}`);
      const bits = c.readCpuid(CPUID_EXT_ADDR_SIZES).eax & 0xff || 48;
      let limit = limits.get(bits);
      if (limit === undefined) limits.set(bits, (limit = 1n << BigInt(bits)));
      this.#paLimit[i] = limit;
      this.#flushByAsid[i] = (c.readCpuid(SVM_CPUID_FUNC).edx & SVM_FEATURE.FLUSHBYASID) !== 0 ? 1 : 0;
      this.#svmCapable[i] = (c.readCpuid(CPUID_EXT_FEATURES).ecx & CPUID_80000001_ECX_SVM) !== 0 ? 1 : 0;
      this.#svmDis[i] = ((c.msrs.get(_MSR_VM_CR) ?? 0n) & _SVM_VM_CR_SVM_DIS_MASK) !== 0n ? 1 : 0;
      if (((c.msrs.get(_MSR_EFER) ?? 0n) & _EFER_SVME) !== 0n) {
        // EFER.SVME set before VAC ever ran: some other hypervisor turned it on.
        this.#svme[i] = 1;
        this.#foreign[i] = 1;
      }
      c.msrWriteHooks.set(_MSR_EFER, this.#onEferWrite);
      c.msrWriteHooks.set(_MSR_VM_CR, this.#onVmCrWrite);
      c.msrWriteHooks.set(_MSR_VM_HSAVE_PA, this.#onHsaveWrite);
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // MSR write hooks (the architectural rules of EFER, VM_CR and VM_HSAVE_PA)
  // -------------------------------------------------------------------------------------------------------

  /** The EFER write hook: the EFER rules (`#eferRules`) for whoever is writing. */
  readonly #onEferWrite = (c: Cpu, _msr: number, value: bigint): boolean => this.#eferRules(c.id, value, this.#writer);

  /**
   * The rules of a WRMSR to EFER: APM Vol. 2 §15.4 "Enabling SVM" — EFER.SVME may be set only when the CPU
   * supports SVM (CPUID 0x80000001 ECX.SVM, as read when the host was created) and `VM_CR.SVMDIS` is clear;
   * otherwise SVME is must-be-zero and the WRMSR takes #GP. An armed enable fault also makes the
   * SVME-setting write fault. Returns whether the write is accepted; on acceptance, records the SVME
   * transition and who made it (the caller stores the value).
   */
  #eferRules(id: number, value: bigint, writer: number): boolean {
    const want = (value & _EFER_SVME) !== 0n ? 1 : 0;
    if (want === this.#svme[id]) return true;
    if (want === 1) {
      if (this.#svmCapable[id] === 0 || this.#svmDis[id] === 1) return false;
      if (writer !== W_FOREIGN && this.#enableFaults.fire(id)) return false;
      this.#svme[id] = 1;
      if (writer === W_FOREIGN) {
        this.#foreign[id] = 1;
        return true;
      }
      if (writer === W_VAC) this.#vac[id] = 1;
      this.#counters.add(id, C_SVME_ON);
    } else {
      if (this.#inGuest[id] === 1) {
        throw new UsageError('ERR_INVALID_STATE', `wrmsr(EFER) on CPU ${id}: the CPU is in guest mode; the host is not running there`);
      }
      this.#svme[id] = 0;
      // VAC's disable clears SVME whoever set it (kvm_cpu_svm_disable does not ask); a write by anyone
      // else leaves the owner flags, so check() reports the owner whose SVME vanished.
      if (writer === W_VAC) {
        this.#vac[id] = 0;
        this.#foreign[id] = 0;
      } else if (writer === W_FOREIGN) {
        this.#foreign[id] = 0;
        return true;
      }
      this.#counters.add(id, C_SVME_OFF);
    }
    return true;
  }

  /**
   * VM_CR: APM Vol. 2 §15.30.1. Bits above 4 are reserved (#GP). With LOCK set, writes to LOCK and SVMDIS
   * are ignored by the hardware; `Cpu.wrmsrSafe` cannot store a value other than the one written, so the
   * model makes such a write fault instead (a write that leaves bits 3 and 4 alone is accepted). Setting
   * SVMDIS while EFER.SVME is set faults [M: APM text from memory].
   */
  readonly #onVmCrWrite = (c: Cpu, _msr: number, value: bigint): boolean => {
    if ((value & ~VM_CR_VALID_MASK) !== 0n) return false;
    const old = c.msrs.get(_MSR_VM_CR) ?? 0n;
    const guarded = _SVM_VM_CR_SVM_LOCK_MASK | _SVM_VM_CR_SVM_DIS_MASK;
    if ((old & _SVM_VM_CR_SVM_LOCK_MASK) !== 0n && ((old ^ value) & guarded) !== 0n) return false;
    const dis = (value & _SVM_VM_CR_SVM_DIS_MASK) !== 0n ? 1 : 0;
    if (dis === 1 && this.#svme[c.id] === 1) return false;
    this.#svmDis[c.id] = dis; // the write commits once the hook accepts it
    return true;
  };

  /** VM_HSAVE_PA: APM Vol. 2 §15.30.4 — 4 KiB aligned and below `2^MAXPHYADDR`, else #GP. */
  readonly #onHsaveWrite = (c: Cpu, _msr: number, value: bigint): boolean => this.#hsaveOk(c.id, value);

  #hsaveOk(id: number, value: bigint): boolean {
    return (value & 0xfffn) === 0n && value >= 0n && value < (this.#paLimit[id] as bigint);
  }

  /**
   * VAC's `wrmsrl(MSR_EFER, value)` on `cpu`: the rules of the EFER write hook, with SVME recorded as VAC's.
   * VAC's writes skip `Cpu.wrmsrSafe`'s generic hook dispatch (this is the per-CPU enable hot path); the
   * outcome is the same. Returns `false` when the write faults (#GP).
   */
  vacWriteEfer(cpu: number, value: bigint): boolean {
    if (!this.#eferRules(cpu, value, W_VAC)) return false;
    (this.#cpus[cpu] as Cpu).msrs.set(_MSR_EFER, value);
    return true;
  }

  /** VAC's `wrmsrl(MSR_VM_HSAVE_PA, value)` on `cpu` (see {@link SvmCpus.vacWriteEfer}). `false` on #GP. */
  vacWriteHsave(cpu: number, value: bigint): boolean {
    if (!this.#hsaveOk(cpu, value)) return false;
    (this.#cpus[cpu] as Cpu).msrs.set(_MSR_VM_HSAVE_PA, value);
    return true;
  }

  #wrmsrAs(writer: number, cpu: number, msr: number, value: bigint): boolean {
    this.#writer = writer;
    try {
      return (this.#cpus[cpu] as Cpu).wrmsrSafe(msr, value);
    } finally {
      this.#writer = W_OTHER;
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Introspection
  // -------------------------------------------------------------------------------------------------------

  /** EFER.SVME of `cpu` (fast: a typed-array read). */
  svme(cpu: number): boolean {
    return this.#svme[cpu] === 1;
  }

  /** Who holds SVM on `cpu`. */
  owner(cpu: number): CpuOwner {
    checkCpuIndex('svm.owner', cpu, this.nrCpus);
    return OWNERS[(this.#vac[cpu] ?? 0) | ((this.#foreign[cpu] ?? 0) << 1)] ?? 'none';
  }

  /** A read-only view of `cpu`'s SVM state. */
  state(cpu: number): SvmCpuState {
    checkCpuIndex('svm.state', cpu, this.nrCpus);
    const c = this.#cpus[cpu] as Cpu;
    return {
      svme: this.#svme[cpu] === 1,
      hsavePa: c.msrs.get(_MSR_VM_HSAVE_PA) ?? 0n,
      gif: this.#gif[cpu] === 1,
      inGuest: this.#inGuest[cpu] === 1,
      currentVmcb: this.#current[cpu],
      owner: this.owner(cpu),
      enableFault: this.#enableFaults.mode(cpu),
    };
  }

  /** The counters of `cpu`. */
  counters(cpu: number): SvmCounters {
    checkCpuIndex('svm.counters', cpu, this.nrCpus);
    return this.#counters.get(cpu);
  }

  /** The counters summed over all CPUs. */
  totals(): SvmCounters {
    return this.#counters.totals();
  }

  /** Whether a foreign hypervisor claims SVM on `cpu`. */
  foreignOwner(cpu: number): boolean {
    checkCpuIndex('svm.foreignOwner', cpu, this.nrCpus);
    return this.#foreign[cpu] === 1;
  }

  /** Whether VAC turned EFER.SVME on on `cpu` and has not turned it off since (VAC's claim on the CPU). */
  vacEnabled(cpu: number): boolean {
    checkCpuIndex('svm.vacEnabled', cpu, this.nrCpus);
    return this.#vac[cpu] === 1;
  }

  /** The VMCB of the last VMRUN on `cpu` (`svm_data.current_vmcb`), if still allocated. */
  currentVmcb(cpu: number): Vmcb | undefined {
    checkCpuIndex('svm.currentVmcb', cpu, this.nrCpus);
    return this.#current[cpu];
  }

  /** SEV firmware `DF_FLUSH` commands run so far (host-wide). */
  get dfFlushes(): number {
    return this.#dfFlushes;
  }

  // -------------------------------------------------------------------------------------------------------
  // Fault knobs
  // -------------------------------------------------------------------------------------------------------

  /**
   * Declare (or withdraw) a foreign hypervisor on `cpu`. Declaring sets EFER.SVME (and a foreign
   * `VM_HSAVE_PA`) if it is clear, so VAC's enable sees EBUSY; on a CPU where VAC already enabled SVM it
   * only records the second owner (which {@link SvmCpus.violations} reports). Withdrawing clears EFER.SVME
   * and `VM_HSAVE_PA` unless VAC holds the CPU.
   *
   * @throws UsageError when the CPU cannot have SVM on (no SVM in CPUID, or `VM_CR.SVMDIS` set), or is in guest mode
   */
  setForeignOwner(cpu: number, owned: boolean): void {
    checkCpuIndex('setForeignOwner', cpu, this.nrCpus);
    if (this.#inGuest[cpu] === 1) throw new UsageError('ERR_INVALID_STATE', `setForeignOwner: CPU ${cpu} is in guest mode`);
    const efer = (this.#cpus[cpu] as Cpu).msrs.get(_MSR_EFER) ?? 0n;
    if (owned) {
      if (this.#foreign[cpu] === 1) return;
      if (this.#svme[cpu] === 1) {
        this.#foreign[cpu] = 1;
        return;
      }
      if (!this.#wrmsrAs(W_FOREIGN, cpu, _MSR_EFER, efer | _EFER_SVME)) {
        throw new UsageError('ERR_NOT_SUPPORTED', `setForeignOwner: CPU ${cpu} cannot enable SVM (no SVM in CPUID, or VM_CR.SVMDIS set)`);
      }
      this.#wrmsrAs(W_FOREIGN, cpu, _MSR_VM_HSAVE_PA, FOREIGN_SAVE_AREA_BASE + BigInt(cpu) * 0x1000n);
    } else {
      if (this.#foreign[cpu] === 0) return;
      if (this.#vac[cpu] === 1) {
        this.#foreign[cpu] = 0;
        return;
      }
      this.#wrmsrAs(W_FOREIGN, cpu, _MSR_VM_HSAVE_PA, 0n);
      this.#wrmsrAs(W_FOREIGN, cpu, _MSR_EFER, efer & ~_EFER_SVME);
      this.#foreign[cpu] = 0;
    }
  }

  /** Make the next (`'once'`) or every (`'always'`) WRMSR that sets EFER.SVME on `cpu` fault (#GP); `'off'` disarms. */
  injectEnableFault(cpu: number, mode: FaultMode): void {
    checkCpuIndex('injectEnableFault', cpu, this.nrCpus);
    this.#enableFaults.set(cpu, mode);
  }

  /** Make the next (`'once'`) or every (`'always'`) SEV firmware `DF_FLUSH` fail; `'off'` disarms. */
  injectDfFlushFault(mode: FaultMode): void {
    this.#dfFlushFault.set(0, mode);
  }

  // -------------------------------------------------------------------------------------------------------
  // Instructions
  // -------------------------------------------------------------------------------------------------------

  /**
   * STGI: set the global interrupt flag. APM Vol. 3 "STGI": #UD when EFER.SVME is clear (the SVM-Lock/DEV
   * exceptions to that rule are not modelled).
   *
   * @returns `undefined`, or `'#UD'`
   */
  stgi(cpu: number): SvmFault | undefined {
    this.#hostInsn('svm.stgi', cpu);
    if (this.#svme[cpu] === 0) return '#UD';
    this.#gif[cpu] = 1;
    this.#counts[cpu * NR_COUNTERS + C_STGI]! += 1;
    return undefined;
  }

  /**
   * CLGI: clear the global interrupt flag (interrupts, NMIs, SMIs held pending). APM Vol. 3 "CLGI": #UD when
   * EFER.SVME is clear.
   *
   * @returns `undefined`, or `'#UD'`
   */
  clgi(cpu: number): SvmFault | undefined {
    this.#hostInsn('svm.clgi', cpu);
    if (this.#svme[cpu] === 0) return '#UD';
    this.#gif[cpu] = 0;
    this.#counts[cpu * NR_COUNTERS + C_CLGI]! += 1;
    return undefined;
  }

  /**
   * VMRUN `vmcb` on `cpu` (APM Vol. 2 §15.5).
   *
   * - EFER.SVME clear → `'#UD'` (APM Vol. 3 "VMRUN"); nothing changes.
   * - Consistency checks (APM §15.5.1) → `'VMEXIT_INVALID'`: `control.asid` = 0; a SEV VMCB on a CPU
   *   without SEV, or with an ASID outside its range (SEV: [min_sev_asid, max_sev_asid]; SEV-ES:
   *   [1, min_sev_asid - 1]) [M: from the APM's SEV chapter, from memory]. A zero `VM_HSAVE_PA` is also
   *   reported as `VMEXIT_INVALID` — a modelling choice: real hardware would save host state at physical
   *   address 0. The VMCB gets `exit_code = SVM_EXIT_ERR` and, as after any run, KVM's reset of
   *   `tlb_ctl` and clean bits; no flush happens.
   * - Otherwise the CPU enters guest mode: GIF = 1, this VMCB becomes the CPU's current one, and the flush
   *   `control.tlb_ctl` asks for is performed and counted per kind (`tlbFlushAll`, `tlbFlushAsid`,
   *   `tlbFlushAsidLocal`; a `tlb:flush` event each). Without FlushByAsid, encodings 3 and 7 flush
   *   everything [M]. Leave guest mode with {@link SvmCpus.vmexit}.
   *
   * @throws UsageError when `vmcb` is not a live VMCB of this host, is already running, the CPU is offline
   *   or already in guest mode, or `tlbControl` holds a reserved encoding
   */
  vmrun(cpu: number, vmcb: Vmcb): VmrunResult {
    this.#hostInsn('svm.vmrun', cpu);
    // The CPU's current VMCB passed this check when it became current (and freeVmcb clears it everywhere).
    if (this.#current[cpu] !== vmcb) this.#checkVmcb('svm.vmrun', vmcb);
    const c = this.#cpus[cpu] as Cpu;
    if (!c.online || vmcb.runningOn >= 0) throw vmrunMisuse(c, vmcb);
    if (this.#svme[cpu] === 0) return '#UD';
    if ((c.rdmsrSlot(this.#hsave) ?? 0n) === 0n || vmcb.asid === 0 || !sevAsidOk(c, vmcb)) {
      vmcb.exitCode = SVM_EXIT.ERR;
      afterRun(vmcb);
      this.#counters.add(cpu, C_VMEXIT_INVALID);
      return 'VMEXIT_INVALID';
    }
    const tlb = vmcb.tlbControl;
    let slot: number;
    let kind: string;
    switch (tlb) {
      case TLB_CONTROL_DO_NOTHING:
        slot = -1;
        kind = '';
        break;
      case TLB_CONTROL_FLUSH_ALL_ASID:
        slot = C_TLB_ALL;
        kind = 'all-asid';
        break;
      case TLB_CONTROL_FLUSH_ASID:
      case TLB_CONTROL_FLUSH_ASID_LOCAL:
        if (this.#flushByAsid[cpu] !== 1) {
          slot = C_TLB_ALL;
          kind = 'all-asid';
        } else if (tlb === TLB_CONTROL_FLUSH_ASID) {
          slot = C_TLB_ASID;
          kind = 'asid';
        } else {
          slot = C_TLB_ASID_LOCAL;
          kind = 'asid-local';
        }
        break;
      default:
        throw new UsageError('ERR_INVALID_ARG', `svm.vmrun: VMCB ${vmcb.id} has a reserved TLB_CONTROL encoding ${String(tlb)}`);
    }
    this.#gif[cpu] = 1;
    this.#inGuest[cpu] = 1;
    this.#running[cpu] = vmcb;
    this.#current[cpu] = vmcb;
    vmcb.runningOn = cpu;
    this.#counts[cpu * NR_COUNTERS + C_VMRUN]! += 1;
    if (slot >= 0) {
      this.#counters.add(cpu, slot);
      const events = this.#env.events;
      const seq = events.stamp('tlb:flush');
      if (seq >= 0) events.deliver('tlb:flush', { seq, tick: events.tick, cpu, kind, module: vmcb.owner });
    }
    return 'entered';
  }

  /**
   * CLGI then VMRUN `vmcb` on `cpu`, as `svm_vcpu_run()` issues them back to back, in one call: the effects,
   * counters, results and usage errors of {@link SvmCpus.clgi} followed by {@link SvmCpus.vmrun}. When CLGI cleared
   * GIF and VMRUN then throws (a usage error of the model), STGI sets GIF again (counted) before the error goes on.
   * CLGI faults (#UD) exactly when VMRUN does (EFER.SVME clear), so GIF was cleared exactly when the result is not
   * `'#UD'`.
   *
   * @throws UsageError as {@link SvmCpus.clgi} and {@link SvmCpus.vmrun} do
   */
  clgiVmrun(cpu: number, vmcb: Vmcb): VmrunResult {
    if (this.clgi(cpu) !== undefined) return this.vmrun(cpu, vmcb);
    try {
      return this.vmrun(cpu, vmcb);
    } catch (e) {
      this.stgi(cpu);
      throw e;
    }
  }

  /**
   * `#VMEXIT` on `cpu` with `exitCode` when `vmcb` is running there (not when the CPU was already forced out of guest
   * mode), then STGI, in one call: the effects, counters and usage errors of {@link SvmCpus.vmexit} and
   * {@link SvmCpus.stgi}, in that order.
   *
   * @returns STGI's result: `undefined`, or `'#UD'` (EFER.SVME clear)
   */
  vmexitStgi(cpu: number, exitCode: number, vmcb: Vmcb): SvmFault | undefined {
    if (vmcb.runningOn === cpu) this.vmexit(cpu, exitCode);
    return this.stgi(cpu);
  }

  /**
   * `#VMEXIT` on `cpu` with `exitCode` (an `SVM_EXIT_*` code): leave guest mode, clear GIF (APM §15.6),
   * record the exit code in the VMCB; then, as KVM's `svm_vcpu_run()` does right after every run,
   * `tlb_ctl = TLB_CONTROL_DO_NOTHING` and `vmcb_mark_all_clean()`.
   *
   * @returns the VMCB that was running
   * @throws UsageError when `cpu` is not in guest mode
   */
  vmexit(cpu: number, exitCode: number): Vmcb {
    checkCpuIndex('svm.vmexit', cpu, this.nrCpus);
    const vmcb = this.#running[cpu];
    if (vmcb === undefined) throw notInGuest(cpu);
    this.#inGuest[cpu] = 0;
    this.#running[cpu] = undefined;
    this.#gif[cpu] = 0;
    vmcb.runningOn = -1;
    vmcb.exitCode = exitCode;
    afterRun(vmcb);
    this.#counts[cpu * NR_COUNTERS + C_VMEXIT]! += 1;
    return vmcb;
  }

  /**
   * An interrupt (`SVM_EXIT.INTR`) or NMI (`SVM_EXIT.NMI`) arriving while `cpu` is in guest mode forces a
   * `#VMEXIT` first: used by the disable paths, which run from an IPI (disable) or an NMI (crash).
   *
   * @returns the VMCB that was running, or `undefined` when the CPU was not in guest mode
   */
  forceVmexit(cpu: number, exitCode: number): Vmcb | undefined {
    checkCpuIndex('svm.forceVmexit', cpu, this.nrCpus);
    return this.#inGuest[cpu] === 1 ? this.vmexit(cpu, exitCode) : undefined;
  }

  /** WBINVD on `cpu` (counted; used by SEV ASID recycling). */
  wbinvd(cpu: number): void {
    this.#hostInsn('wbinvd', cpu);
    this.#counters.add(cpu, C_WBINVD);
  }

  /** `wbinvd_on_all_cpus()`: WBINVD on every online CPU. */
  wbinvdOnAllCpus(): void {
    for (let i = 0; i < this.nrCpus; i++) if ((this.#cpus[i] as Cpu).online) this.#counters.add(i, C_WBINVD);
  }

  /**
   * `sev_flush_asids()` minus its locking (`arch/x86/kvm/svm/sev.c`): `wbinvd_on_all_cpus()`, then the SEV
   * firmware's `DF_FLUSH` command. Returns `false` when `DF_FLUSH` fails (an injected fault): the WBINVDs
   * have run regardless, as in Linux.
   */
  sevFlush(): boolean {
    this.wbinvdOnAllCpus();
    this.#dfFlushes++;
    return !this.#dfFlushFault.fire(0);
  }

  // -------------------------------------------------------------------------------------------------------
  // VMCBs
  // -------------------------------------------------------------------------------------------------------

  /** Allocate a zeroed VMCB page for `owner` (e.g. `'kvm0'`). */
  allocVmcb(owner: string): Vmcb {
    const id = this.#nextVmcbId++;
    const vmcb = new Vmcb(id, VMCB_AREA_BASE + BigInt(id) * 0x1000n, owner);
    this.#vmcbs.set(id, vmcb);
    return vmcb;
  }

  /**
   * Free a VMCB. Like `svm_clear_current_vmcb()` (`arch/x86/kvm/svm/svm.c`), every CPU whose
   * `current_vmcb` is this one forgets it.
   *
   * @throws UsageError when it is not a live VMCB of this host or is in guest mode
   */
  freeVmcb(vmcb: Vmcb): void {
    this.#checkVmcb('svm.freeVmcb', vmcb);
    if (vmcb.runningOn >= 0) {
      throw new UsageError('ERR_INVALID_STATE', `svm.freeVmcb: VMCB ${vmcb.id} is in guest mode on CPU ${vmcb.runningOn}`);
    }
    for (let i = 0; i < this.nrCpus; i++) if (this.#current[i] === vmcb) this.#current[i] = undefined;
    this.#vmcbs.delete(vmcb.id);
    vmcb.freed = true;
  }

  /** The live VMCBs, by id. */
  vmcbs(): Vmcb[] {
    return [...this.#vmcbs.values()];
  }

  // -------------------------------------------------------------------------------------------------------
  // Checks and snapshots
  // -------------------------------------------------------------------------------------------------------

  /**
   * Hardware-side violations of docs/spec.md §4 invariant 1 ("no CPU ever has two owners of VMX/SVM"): EFER.SVME
   * set on a CPU neither VAC nor a declared foreign hypervisor turned it on; VAC and a foreign hypervisor
   * both holding a CPU; VAC holding a CPU whose EFER.SVME was cleared behind its back, or whose
   * `VM_HSAVE_PA` is 0.
   */
  violations(): Violation[] {
    const out: Violation[] = [];
    for (let i = 0; i < this.nrCpus; i++) {
      const svme = this.#svme[i] === 1;
      const vac = this.#vac[i] === 1;
      const foreign = this.#foreign[i] === 1;
      if (vac && foreign) {
        out.push({ invariant: 1, cpu: i, message: `CPU ${i} has two owners of SVM: VAC and a foreign hypervisor` });
      }
      if (svme && !vac && !foreign) {
        out.push({
          invariant: 1,
          cpu: i,
          message: `EFER.SVME is set on CPU ${i} but neither VAC nor a declared foreign hypervisor enabled it`,
        });
      }
      if (vac && !svme) {
        out.push({ invariant: 1, cpu: i, message: `VAC enabled SVM on CPU ${i} but EFER.SVME is clear` });
      }
      if (vac && svme && ((this.#cpus[i] as Cpu).msrs.get(_MSR_VM_HSAVE_PA) ?? 0n) === 0n) {
        out.push({ invariant: 1, cpu: i, message: `VAC enabled SVM on CPU ${i} but VM_HSAVE_PA is 0` });
      }
    }
    return out;
  }

  /** A deep, plain-data (JSON-safe) copy of the SVM state (fault knobs excluded). */
  snapshot(): AmdSnapshot {
    const cpus: AmdCpuSnapshot[] = [];
    for (let i = 0; i < this.nrCpus; i++) {
      const c = this.#cpus[i] as Cpu;
      const msrs: Record<string, string> = {};
      for (const [msr, v] of [...c.msrs].sort((a, b) => a[0] - b[0])) {
        msrs[`0x${msr.toString(16)}`] = `0x${v.toString(16)}`;
      }
      cpus.push({
        cpu: i,
        msrs,
        svme: this.#svme[i] === 1,
        gif: this.#gif[i] === 1,
        inGuest: this.#inGuest[i] === 1,
        currentVmcb: this.#current[i]?.id ?? null,
        foreignOwner: this.#foreign[i] === 1,
        vacEnabled: this.#vac[i] === 1,
      });
    }
    const vmcbs: AmdVmcbSnapshot[] = [...this.#vmcbs.values()].map((v) => ({
      id: v.id,
      owner: v.owner,
      asid: v.asid,
      tlbControl: v.tlbControl,
      clean: v.clean,
      exitCode: v.exitCode,
      sev: v.sev,
      asidGeneration: v.asidGeneration,
      lastCpu: v.lastCpu,
      runningOn: v.runningOn,
    }));
    return { vendor: 'amd', cpus, vmcbs, dfFlushes: this.#dfFlushes };
  }

  // -------------------------------------------------------------------------------------------------------

  /** A host instruction needs the CPU to exist and to be running the host, not a guest. */
  #hostInsn(who: string, cpu: number): void {
    checkCpuIndex(who, cpu, this.nrCpus);
    if (this.#inGuest[cpu] === 1) throw this.#inGuestError(who, cpu);
  }

  #inGuestError(who: string, cpu: number): UsageError {
    const id = this.#running[cpu]?.id ?? '?';
    return new UsageError('ERR_INVALID_STATE', `${who}: CPU ${cpu} is in guest mode (VMCB ${id}); the host is not running there`);
  }

  #checkVmcb(who: string, vmcb: Vmcb): void {
    if (this.#vmcbs.get(vmcb.id) !== vmcb) {
      throw new UsageError('ERR_DESTROYED', `${who}: VMCB ${vmcb.id} ${vmcb.freed ? 'was freed' : 'does not belong to this host'}`);
    }
  }
}

/** The model-usage errors of VMRUN (built apart so the VMRUN path stays small). */
function vmrunMisuse(c: Cpu, vmcb: Vmcb): UsageError {
  if (!c.online) return new UsageError('ERR_INVALID_STATE', `svm.vmrun: CPU ${c.id} is offline`);
  return new UsageError('ERR_INVALID_STATE', `svm.vmrun: VMCB ${vmcb.id} is already in guest mode on CPU ${vmcb.runningOn}`);
}

function notInGuest(cpu: number): UsageError {
  return new UsageError('ERR_INVALID_STATE', `svm.vmexit: CPU ${cpu} is not in guest mode`);
}

/** What `svm_vcpu_run()` does to the VMCB after every return from VMRUN (`arch/x86/kvm/svm/svm.c`). */
function afterRun(vmcb: Vmcb): void {
  vmcb.tlbControl = TLB_CONTROL_DO_NOTHING;
  vmcb.clean = VMCB_CLEAN_AFTER_RUN;
}

/** The SEV part of VMRUN's consistency checks (CPUID 0x8000001F: ECX = max SEV ASID, EDX = min SEV ASID). */
function sevAsidOk(c: Cpu, vmcb: Vmcb): boolean {
  if (vmcb.sev === 'none') return true;
  if (c.readCpuid(CPUID_EXT_MAX).eax >>> 0 < SEV_CPUID_FUNC) return false;
  const leaf = c.readCpuid(SEV_CPUID_FUNC);
  const max = leaf.ecx >>> 0;
  const min = leaf.edx >>> 0;
  if (vmcb.sev === 'sev') return (leaf.eax & SEV_FEATURE.SEV) !== 0 && vmcb.asid >= min && vmcb.asid <= max;
  return (leaf.eax & SEV_FEATURE.SEV_ES) !== 0 && vmcb.asid >= 1 && vmcb.asid < min && vmcb.asid <= max;
}
