/**
 * {@link IntelHardware}: one host's Intel hardware — the VMX state machine of its CPUs ({@link VmxCpus}),
 * the kernel's shared `loaded_vmcss_on_cpu` lists ({@link LoadedVmcsLists}) and VAC's VMX half
 * ({@link VacVmx}) — with counters, an invariant checker and snapshots.
 *
 * @module
 */
import { cpuAt } from '@vac/core/internal';
import type { Cpu, FaultMode, HardwareEnv, HostHardware, MsrWriteHook, Violation } from '@vac/core';
import { CR4_VMXE, INTEL_MSR, L1D_FLUSH } from './arch.js';

const L1D_FLUSH_N = BigInt(L1D_FLUSH);
const FLUSH_CMD_RESERVED = ~L1D_FLUSH_N;
import { LoadedVmcsLists } from './loaded-vmcs.js';
import type { VmcsLoadResult } from './loaded-vmcs.js';
import type { IntelModel } from './model.js';
import { VacVmx } from './vac-vmx.js';
import { VmxCpus } from './vmx-cpu.js';
import type { Vmcs, VmcsLaunchState, VmxCapabilities, VmxCounters, VmxRegion } from './vmx-cpu.js';

/** One CPU in an {@link IntelSnapshot}. VMCSs and regions are named by their {@link VmxRegion.id}. */
export interface IntelCpuSnapshot {
  /** CPU number. */
  readonly cpu: number;
  /** CR4. */
  readonly cr4: number;
  /** Every implemented MSR, `'0x3a' → '0x5'` (hex strings so the snapshot is JSON-safe). */
  readonly msrs: Readonly<Record<string, string>>;
  /** In VMX operation (anyone's). */
  readonly inVmxOperation: boolean;
  /** The VMXON region in use, or `null`. */
  readonly vmxonRegion: number | null;
  /** The hardware current-VMCS pointer, or `null` when invalid. */
  readonly currentVmcs: number | null;
  /** The kernel's `per_cpu(current_vmcs, cpu)`, or `null`. */
  readonly kernelCurrentVmcs: number | null;
  /** VMCSs active on the CPU (hardware), oldest first. */
  readonly active: readonly number[];
  /** The kernel's `loaded_vmcss_on_cpu` list, newest first. */
  readonly loaded: readonly number[];
  /** A foreign hypervisor claims VMX here. */
  readonly foreignOwner: boolean;
  /** VAC's VMXON succeeded here and no VMXOFF followed. */
  readonly vacEnabled: boolean;
}

/** One VMCS in an {@link IntelSnapshot}. */
export interface IntelVmcsSnapshot {
  /** {@link VmxRegion.id}. */
  readonly id: number;
  /** Owner tag. */
  readonly owner: string;
  /** Revision id written in the region. */
  readonly revisionId: number;
  /** Launch state. */
  readonly launchState: VmcsLaunchState;
  /** CPU it is active on, or -1. */
  readonly activeOn: number;
  /** `loaded_vmcs->cpu`, or -1. */
  readonly loadedOn: number;
  /** VPID field. */
  readonly vpid: number;
  /** VM-instruction error field. */
  readonly instructionError: number;
}

/** A deep, plain-data copy of an Intel host's hardware state ({@link IntelHardware.snapshot}). */
export interface IntelSnapshot {
  /** Always `'intel'`. */
  readonly vendor: 'intel';
  /** Per CPU, by CPU number. */
  readonly cpus: readonly IntelCpuSnapshot[];
  /** Every live VMCS, by allocation order. */
  readonly vmcss: readonly IntelVmcsSnapshot[];
}

/**
 * One host's Intel hardware (a `HostHardware`). Built by `intel(...).create(env)`; reach it as
 * `host.hardware` and narrow it with {@link isIntelHardware}.
 *
 * - {@link IntelHardware.virt}: VAC's VMX half (what VAC calls to enable/disable a CPU);
 * - {@link IntelHardware.vmx}: the VMX instructions of every CPU, for the KVM module's vCPU ops (VMLAUNCH,
 *   VMRESUME, INVEPT, INVVPID, …);
 * - {@link IntelHardware.loadedVmcss}: the shared `loaded_vmcss_on_cpu` lists ({@link IntelHardware.vmcsLoad},
 *   {@link IntelHardware.vmcsFree} are shortcuts);
 * - counters, {@link IntelHardware.check} and {@link IntelHardware.snapshot} for tests.
 */
export class IntelHardware implements HostHardware {
  /** The model this hardware was built from. */
  readonly model: IntelModel;
  /** VAC's VMX half. */
  readonly virt: VacVmx;
  /** The VMX state machine of every CPU. */
  readonly vmx: VmxCpus;
  /** The kernel's per-CPU loaded-VMCS lists, shared by all KVM modules. */
  readonly loadedVmcss: LoadedVmcsLists;
  readonly #env: HardwareEnv;

  /**
   * Build the hardware of a host whose CPUs' CPUID leaves and MSRs are already filled in (the model's `create`
   * does that first). Installs the IA32_FLUSH_CMD write hook that counts L1D flushes.
   * @param model - the model
   * @param env - the host
   */
  constructor(model: IntelModel, env: HardwareEnv) {
    this.model = model;
    this.#env = env;
    this.vmx = new VmxCpus(env);
    this.loadedVmcss = new LoadedVmcsLists(env, this.vmx);
    this.virt = new VacVmx(env, this.vmx, this.loadedVmcss);
    const vmx = this.vmx;
    // IA32_FLUSH_CMD (SDM Vol. 4): bit 0 = L1D_FLUSH; other bits reserved (#GP).
    const flushCmd: MsrWriteHook = (cpu, _msr, value) => {
      if (value === L1D_FLUSH_N) {
        vmx.countL1dFlush(cpu.id);
        return true;
      }
      if ((value & FLUSH_CMD_RESERVED) !== 0n) return false;
      if (value !== 0n) vmx.countL1dFlush(cpu.id);
      return true;
    };
    for (const cpu of env.cpus) {
      if (cpu.msrs.has(INTEL_MSR.MSR_IA32_FLUSH_CMD)) cpu.msrWriteHooks.set(INTEL_MSR.MSR_IA32_FLUSH_CMD, flushCmd);
    }
  }

  #cpu(cpu: number): Cpu {
    return cpuAt('intel', this.#env.cpus, cpu);
  }

  /** The counters of `cpu`: see {@link VmxCounters}. */
  counters(cpu: number): VmxCounters {
    return this.vmx.counters(cpu);
  }

  /** The counters summed over all CPUs. */
  totals(): VmxCounters {
    return this.vmx.totals();
  }

  /** The VMX capabilities of `cpu` (default: CPU 0, the boot CPU, whose values Linux's `vmcs_config` holds). */
  capabilities(cpu = 0): VmxCapabilities {
    return this.vmx.capabilities(cpu);
  }

  /** Allocate a VMCS with the boot CPU's revision id (`alloc_vmcs_cpu`); see {@link VmxCpus.allocVmcs}. */
  allocVmcs(owner: string): Vmcs {
    return this.vmx.allocVmcs(owner);
  }

  /** `vmx_vcpu_load_vmcs`' VMCS part; see {@link LoadedVmcsLists.vmcsLoad}. */
  vmcsLoad(vmcs: Vmcs, cpu: number): VmcsLoadResult {
    return this.loadedVmcss.vmcsLoad(vmcs, cpu);
  }

  /** `loaded_vmcs_clear`; see {@link LoadedVmcsLists.vmcsClear}. */
  vmcsClear(vmcs: Vmcs): void {
    this.loadedVmcss.vmcsClear(vmcs);
  }

  /** `free_loaded_vmcs`; see {@link LoadedVmcsLists.vmcsFree}. */
  vmcsFree(vmcs: Vmcs): void {
    this.loadedVmcss.vmcsFree(vmcs);
  }

  /** Whether `cpu` is in VMX operation (anyone's). */
  inVmxOperation(cpu: number): boolean {
    return this.vmx.inVmxOperation(cpu);
  }

  /** The hardware current VMCS of `cpu`, or `undefined`. */
  currentVmcs(cpu: number): Vmcs | undefined {
    return this.vmx.currentVmcs(cpu);
  }

  /** The owner tags of the VMCSs on `cpu`'s `loaded_vmcss_on_cpu` list, newest first. */
  loadedList(cpu: number): string[] {
    return this.loadedVmcss.loaded(cpu).map((v) => v.owner);
  }

  /** Whether a foreign hypervisor claims VMX on `cpu`. */
  foreignOwner(cpu: number): boolean {
    return this.vmx.foreignOwner(cpu);
  }

  /** Fault knob: see {@link VmxCpus.setForeignOwner}. */
  setForeignOwner(cpu: number, owned: boolean): void {
    this.vmx.setForeignOwner(cpu, owned);
  }

  /** Fault knob: see {@link VmxCpus.injectEnableFault}. */
  injectEnableFault(cpu: number, mode: FaultMode): void {
    this.vmx.injectEnableFault(cpu, mode);
  }

  /**
   * Hardware-side invariant violations (docs/spec.md §4):
   * - invariant 1 (one owner, enable state): a foreign hypervisor and VAC both claiming a CPU; a foreign
   *   hypervisor's CPU taken out of VMX operation; VAC's claim on a CPU not in VMX operation; CR4.VMXE set on
   *   a CPU not in VMX operation (with no foreign owner); a CPU in VMX operation with CR4.VMXE clear;
   * - invariant 4 (VMCSs): a VMCS on more than one CPU's loaded list; on the list of a CPU other than its
   *   `loaded_vmcs->cpu`; on the list of a CPU not in VMX operation; active on a CPU (hardware) but not on
   *   its list, or on a list but not active there; active on two CPUs; active on a CPU not in VMX operation;
   *   freed while active; the kernel's `current_vmcs` differing from the hardware current-VMCS pointer.
   *
   * Once the host is rebooting (after a crash's emergency disable), the loaded lists are stale by design
   * (Linux leaves them): only the ownership checks run then.
   */
  check(): Violation[] {
    const out: Violation[] = [];
    const n = this.vmx.size;
    const rebooting = this.#env.rebooting;
    const listedOn = new Map<Vmcs, number[]>();
    const activeOn = new Map<Vmcs, number[]>();
    for (let cpu = 0; cpu < n; cpu++) {
      const c = this.#cpu(cpu);
      const inVmx = this.vmx.inVmxOperation(cpu);
      const foreign = this.vmx.foreignOwner(cpu);
      const vac = this.virt.enabledByVac(cpu);
      const vmxe = (c.cr4 & CR4_VMXE) !== 0;
      if (foreign && vac) out.push({ invariant: 1, cpu, message: `CPU ${cpu}: VMX has two owners (a foreign hypervisor and VAC)` });
      // After a crash the emergency path turns VMX off whoever turned it on (cpu_emergency_disable_virtualization).
      if (foreign && !inVmx && !rebooting) {
        out.push({ invariant: 1, cpu, message: `CPU ${cpu}: the foreign hypervisor's VMX operation was turned off behind its back` });
      }
      if (vac && !inVmx) out.push({ invariant: 1, cpu, message: `CPU ${cpu}: VAC enabled VMX but the CPU is not in VMX operation` });
      if (vmxe && !inVmx && !foreign) {
        out.push({ invariant: 1, cpu, message: `CPU ${cpu}: CR4.VMXE is set but the CPU is not in VMX operation` });
      }
      if (inVmx && !vmxe) out.push({ invariant: 1, cpu, message: `CPU ${cpu}: in VMX operation with CR4.VMXE clear` });
      for (const v of this.vmx.activeVmcss(cpu)) push(activeOn, v, cpu);
      for (const v of this.loadedVmcss.loaded(cpu)) push(listedOn, v, cpu);
    }
    if (rebooting) return out;
    for (const [v, cpus] of listedOn) {
      const tag = `VMCS #${v.id} (${v.owner})`;
      if (cpus.length > 1) {
        out.push({ invariant: 4, id: v.id, message: `${tag} is on the loaded lists of CPUs ${cpus.join(', ')}` });
      }
      for (const cpu of cpus) {
        if (v.loadedOn !== cpu) {
          out.push({ invariant: 4, cpu, id: v.id, message: `${tag} is on CPU ${cpu}'s loaded list but loaded_vmcs->cpu is ${v.loadedOn}` });
        }
        if (!this.vmx.inVmxOperation(cpu)) {
          out.push({ invariant: 4, cpu, id: v.id, message: `${tag} is on the loaded list of CPU ${cpu}, which is not in VMX operation` });
        } else if (!(activeOn.get(v) ?? []).includes(cpu)) {
          out.push({ invariant: 4, cpu, id: v.id, message: `${tag} is on CPU ${cpu}'s loaded list but not active there` });
        }
      }
    }
    for (const [v, cpus] of activeOn) {
      const tag = `VMCS #${v.id} (${v.owner})`;
      if (cpus.length > 1) out.push({ invariant: 4, id: v.id, message: `${tag} is active on CPUs ${cpus.join(', ')}` });
      if (v.freed) out.push({ invariant: 4, id: v.id, message: `${tag} was freed while active on CPU ${cpus.join(', ')}` });
      for (const cpu of cpus) {
        if (!this.vmx.inVmxOperation(cpu)) {
          out.push({ invariant: 4, cpu, id: v.id, message: `${tag} is active on CPU ${cpu}, which left VMX operation without VMCLEAR` });
        } else if (!(listedOn.get(v) ?? []).includes(cpu)) {
          out.push({ invariant: 4, cpu, id: v.id, message: `${tag} is active on CPU ${cpu} but not on its loaded list` });
        }
      }
    }
    for (let cpu = 0; cpu < n; cpu++) {
      const hw = this.vmx.currentVmcs(cpu);
      const kernel = this.loadedVmcss.currentVmcs(cpu);
      if (hw !== kernel) {
        out.push({
          invariant: 4,
          cpu,
          message: `CPU ${cpu}: current_vmcs is ${describe(kernel)} but the current-VMCS pointer is ${describe(hw)}`,
        });
      }
    }
    return out;
  }

  /**
   * A deep, plain-data copy of the hardware state: per CPU (CR4, MSRs, VMX operation, VMXON region, current
   * VMCS both ways, active VMCSs, loaded list, owners) and every live VMCS. Counters (history, read them with `counters()`), fault
   * knobs and `WARN_ONCE` state are left out, so a failed, rolled-back enable leaves the snapshot equal.
   */
  snapshot(): IntelSnapshot {
    const cpus: IntelCpuSnapshot[] = [];
    const idOf = (v: VmxRegion | undefined): number | null => (v === undefined ? null : v.id);
    for (let cpu = 0; cpu < this.vmx.size; cpu++) {
      const c = this.#cpu(cpu);
      const msrs: Record<string, string> = {};
      for (const msr of [...c.msrs.keys()].sort((a, b) => a - b)) {
        msrs[`0x${msr.toString(16)}`] = `0x${(c.msrs.get(msr) ?? 0n).toString(16)}`;
      }
      cpus.push({
        cpu,
        cr4: c.cr4,
        msrs,
        inVmxOperation: this.vmx.inVmxOperation(cpu),
        vmxonRegion: idOf(this.vmx.vmxonRegion(cpu)),
        currentVmcs: idOf(this.vmx.currentVmcs(cpu)),
        kernelCurrentVmcs: idOf(this.loadedVmcss.currentVmcs(cpu)),
        active: this.vmx.activeVmcss(cpu).map((v) => v.id),
        loaded: this.loadedVmcss.loaded(cpu).map((v) => v.id),
        foreignOwner: this.vmx.foreignOwner(cpu),
        vacEnabled: this.virt.enabledByVac(cpu),
      });
    }
    const vmcss = this.vmx.liveVmcss().map(
      (v): IntelVmcsSnapshot => ({
        id: v.id,
        owner: v.owner,
        revisionId: v.revisionId,
        launchState: v.launchState,
        activeOn: v.activeOn,
        loadedOn: v.loadedOn,
        vpid: v.vpid,
        instructionError: v.instructionError,
      }),
    );
    return { vendor: 'intel', cpus, vmcss };
  }
}

function push(map: Map<Vmcs, number[]>, v: Vmcs, cpu: number): void {
  const list = map.get(v);
  if (list === undefined) map.set(v, [cpu]);
  else list.push(cpu);
}

function describe(v: Vmcs | undefined): string {
  return v === undefined ? 'none' : `VMCS #${v.id} (${v.owner})`;
}

/** Whether a host's hardware is Intel's (narrows `host.hardware` to {@link IntelHardware}). */
export function isIntelHardware(hw: HostHardware): hw is IntelHardware {
  return hw instanceof IntelHardware;
}
