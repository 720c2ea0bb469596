/**
 * What the VMX half of one KVM module shares with its VMs and vCPUs (the module's configuration, its VAC port and
 * VPID view, the host's CPUs and events): the context `VmxKvmModule` builds once at load.
 *
 * @module
 */
import type { Cpu, EventBus, MsrSlot, VacPort } from '@vac/core';
import type { IntelHardware } from './hardware.js';
import type { VmxKvmConfig } from './kvm-vmx.js';
import type { VmxVcpu } from './kvm-vmx-vcpu.js';
import type { VpidView } from './vac-vpids.js';

/** @internal What the module's VMs and vCPUs need from the module that created them. */
export interface VmxModuleContext {
  /** The host's Intel hardware. */
  readonly hw: IntelHardware;
  /** The module's VAC port (its handle; a private stand-in in legacy mode). */
  readonly vac: VacPort;
  /** The module's view of VAC's VPID space. */
  readonly vpids: VpidView;
  /** The module name (`kvm0`). */
  readonly module: string;
  /** The host's event stream. */
  readonly events: EventBus;
  /** The module's configuration in effect. */
  readonly config: VmxKvmConfig;
  /** The host's CPUs (for MSR writes), index = CPU number. */
  readonly hostCpus: readonly Cpu[];
  /** IA32_FLUSH_CMD, looked up once (the `cond` and `always` L1D flushes write it before VM entries). */
  readonly flushCmd: MsrSlot;
  /** `pr_warn` / `WARN`. */
  warn(message: string, cpu?: number): void;
  /** `WARN_ONCE` / `pr_warn_once` (and, in the model, rate-limited messages): once per module and key. */
  warnOnce(key: string, message: string, cpu?: number): void;
  /** A vCPU of the module was freed. */
  vcpuFreed(vcpu: VmxVcpu): void;
}
