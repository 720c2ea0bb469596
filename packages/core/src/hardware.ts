/**
 * The contract between the host and a vendor hardware model (a plug-in from `@vac/vmx` or `@vac/svm`).
 *
 * A {@link HardwareModel} is a plain, stateless description (`intel({...})`, `amd({...})`); the host calls
 * {@link HardwareModel.create} once to build that host's own {@link HostHardware}, so two hosts never share
 * hardware state. The host hardware carries {@link VirtOps}: VAC's vendor half (RFC `arch/x86/kvm/vmx/vac.c`
 * and `svm/vac.c`), the per-CPU enable/disable that VAC calls.
 *
 * @module
 */
import type { Cpu } from './cpu.js';
import type { ErrnoCode } from './errors.js';
import type { EventBus, WarningRecord } from './events.js';

/** What a hardware model may use of its host. */
export interface HardwareEnv {
  /** The host's CPUs, index = CPU number. */
  readonly cpus: readonly Cpu[];
  /** The host's event stream. */
  readonly events: EventBus;
  /** Record a warning (`WARN`), as the kernel logs it. */
  warn(w: WarningRecord): void;
  /** True once the host rebooted or crashed (`kvm_rebooting`): virtualization instruction faults are tolerated. */
  readonly rebooting: boolean;
}

/** How often an injected fault fires. */
export type FaultMode = 'once' | 'always' | 'off';

/** A problem found by an invariant check, with where it is. */
export interface Violation {
  /** Which SPEC.md §4 invariant (1 … 7) or a short name. */
  readonly invariant: number;
  /** What is wrong. */
  readonly message: string;
  /** The CPU concerned, if any. */
  readonly cpu?: number;
  /** The ID concerned (VPID, ASID, …), if any. */
  readonly id?: number;
}

/**
 * VAC's vendor half: turning VMX/SVM on and off on one CPU. Called by VAC only, on that CPU.
 * Linux: `vmx_hardware_enable`/`vmx_hardware_disable`/`vmx_emergency_disable` (RFC `vmx/vac.c`),
 * `svm_hardware_enable`/`svm_hardware_disable`/`svm_emergency_disable` (RFC `svm/vac.c`).
 */
export interface VirtOps {
  /** `'vmx'` or `'svm'`. */
  readonly name: 'vmx' | 'svm';
  /**
   * `kvm_is_vmx_supported` / `kvm_is_svm_supported` on one CPU: `undefined` when usable, otherwise the
   * kernel's message (e.g. "VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL on CPU 3").
   */
  unsupported(cpu: number): string | undefined;
  /** Per-CPU enable. Returns `undefined` on success, else the errno (EBUSY: foreign owner; EFAULT: VMXON failed). */
  enableCpu(cpu: number): ErrnoCode | undefined;
  /** Per-CPU disable (VMCLEAR the CPU's loaded VMCSs, VMXOFF / STGI + clear EFER.SVME). */
  disableCpu(cpu: number): void;
  /** The crash path (`cpu_emergency_disable_virtualization` callback): VMCLEAR all, VMXOFF / clear SVME. */
  emergencyDisable(cpu: number): void;
  /** Whether the hardware is in virtualization mode on `cpu` (VMX operation / EFER.SVME set). */
  isEnabled(cpu: number): boolean;
  /**
   * SVM only: the ASID space read from CPUID (0x8000000A.EBX = number of ASIDs; 0x8000001F ECX = max SEV ASID,
   * EDX = min SEV ASID). `undefined` on VMX.
   */
  asidSpace?(): AsidSpace;
  /**
   * SVM with SEV only: the flush before SEV ASIDs are recycled (`sev_flush_asids`: WBINVD on every CPU, then
   * the firmware's DF_FLUSH). Returns false when DF_FLUSH failed.
   */
  sevFlush?(): boolean;
}

/** The ASID space of an AMD host (CPUID 0x8000000A and 0x8000001F). */
export interface AsidSpace {
  /** CPUID 0x8000000A.EBX: the number of ASIDs (max_asid = this - 1). */
  readonly nrAsids: number;
  /** CPUID 0x8000001F.EDX: the lowest ASID for plain SEV guests (SEV-ES uses 1 … min-1). */
  readonly minSevAsid: number;
  /** CPUID 0x8000001F.ECX: the highest SEV ASID; 0 = no SEV. */
  readonly maxSevAsid: number;
}

/** One host's instance of a hardware model. */
export interface HostHardware {
  /** The model it was built from. */
  readonly model: HardwareModel;
  /** VAC's vendor half for this hardware. */
  readonly virt: VirtOps;
  /** Read-only counters of one CPU (VMXON/VMXOFF or SVME toggles, TLB flushes by kind, VMCLEARs, …). */
  counters(cpu: number): Readonly<Record<string, number>>;
  /** Hardware-side invariant violations (two owners of VMX on a CPU, a VMCS on two CPUs' lists, …). */
  check(): Violation[];
  /** A deep, comparable copy of every piece of hardware state (for "state unchanged" checks). */
  snapshot(): unknown;
  /** Fault knob: a foreign hypervisor owns (or stops owning) VMX/SVM on `cpu` (CR4.VMXE / EFER.SVME set behind VAC's back). */
  setForeignOwner(cpu: number, owned: boolean): void;
  /** Fault knob: make the next (or every) VMXON / EFER.SVME enable on `cpu` fail. */
  injectEnableFault(cpu: number, mode: FaultMode): void;
}

/** A vendor hardware model: a plain object, validated by the host before use. */
export interface HardwareModel {
  /** A short name for messages, e.g. `'intel'`. */
  readonly name: string;
  /** The CPU vendor. */
  readonly vendor: 'intel' | 'amd';
  /** Fill in the CPUs' CPUID leaves and MSRs and build this host's hardware state. */
  create(env: HardwareEnv): HostHardware;
}
