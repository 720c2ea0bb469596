/**
 * The contract between the host and a vendor hardware model (a plug-in, such as `intel()` from `@vac/vmx`).
 *
 * A {@link HardwareModel} is a plain, stateless description (`intel({...})`, `amd({...})`); the host calls
 * {@link HardwareModel.create} once to build that host's own {@link HostHardware}, so two hosts never share
 * hardware state. The host hardware carries {@link VirtOps}: VAC's vendor half (RFC `arch/x86/kvm/<vendor>/vac.c`),
 * the per-CPU enable/disable that VAC calls and the resources only that vendor has.
 *
 * @module
 */
import type { Cpu } from './cpu.js';
import type { ErrnoCode } from './errors.js';
import type { EventBus, WarningRecord } from './events.js';
import type { AnyVacResource, VacResourceContext } from './vac/resource.js';

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
  /** Which invariant of docs/spec.md (1 … 7). */
  readonly invariant: number;
  /** What is wrong. */
  readonly message: string;
  /** The CPU concerned, if any. */
  readonly cpu?: number;
  /** The ID concerned (a tag a resource hands out), if any. */
  readonly id?: number;
}

/**
 * VAC's vendor half: turning hardware virtualization on and off on one CPU (called by VAC only, on that CPU),
 * and the shared resources that only this vendor has (RFC `arch/x86/kvm/<vendor>/vac.c`).
 */
export interface VirtOps {
  /** The vendor's short name, as KVM's vendor modules are named (`'vmx'`). */
  readonly name: string;
  /**
   * Whether `cpu` can run this vendor's virtualization: `undefined` when usable, otherwise the kernel's message
   * (e.g. "VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL on CPU 3").
   */
  unsupported(cpu: number): string | undefined;
  /** Per-CPU enable. Returns `undefined` on success, else the errno (EBUSY: foreign owner; EFAULT/EIO: the hardware refused). */
  enableCpu(cpu: number): ErrnoCode | undefined;
  /** Per-CPU disable. */
  disableCpu(cpu: number): void;
  /** The crash path (`cpu_emergency_disable_virtualization` callback) on `cpu`. */
  emergencyDisable(cpu: number): void;
  /** Whether the hardware is in virtualization mode on `cpu` (VAC's or a foreign hypervisor's). */
  isEnabled(cpu: number): boolean;
  /** Whether VAC's own enable on `cpu` succeeded and no disable followed (VAC's claim on the CPU). */
  enabledByVac(cpu: number): boolean;
  /**
   * The shared resources this vendor's half of VAC owns, built once per VAC (the `vac` module, or a legacy
   * module's private copy). None by default.
   */
  vacResources?(ctx: VacResourceContext): readonly AnyVacResource[];
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
  readonly vendor: string;
  /** Fill in the CPUs' CPUID leaves and MSRs and build this host's hardware state. */
  create(env: HardwareEnv): HostHardware;
}
