/**
 * VAC's IRQ/NMI callback registry (docs/spec.md §2.4; beyond the RFC, where both were TODOs).
 *
 * VAC registers **one** set of perf guest-info callbacks and dispatches each PMI to the KVM instance
 * whose vCPU runs on that CPU — instances set the per-CPU running instance at vcpu_load and clear it at
 * vcpu_put (Linux keeps `kvm_running_vcpu` per module; VAC only learns *which instance*, never the vCPU).
 * VAC owns the posted-interrupt wakeup handler and fans out to every instance; NMIs that hit a running
 * guest are attributed to its instance the same way.
 *
 * @module
 */
import type { Host } from '../host/host.js';
import type { PerfGuestCallbacks } from '../host/hooks.js';

/**
 * What VAC may ask an attached KVM instance. VAC never reads a VM or vCPU; it only asks these questions,
 * about the vCPU the instance itself says is running on `cpu`.
 */
export interface VacInstanceOps {
  /** The instance (module) name, e.g. `kvm0`. */
  readonly name: string;
  /**
   * perf `state()` for this instance's vCPU on `cpu`: 0, or `PERF_GUEST_ACTIVE` (| `PERF_GUEST_USER`). A pure
   * question, as `kvm_guest_state` is: perf asks it several times per sample (`perf_misc_flags`,
   * `perf_instruction_pointer`, the callchain hooks), so it must not count anything.
   */
  perfGuestState(cpu: number): number;
  /** perf `get_ip()`: the guest RIP of this instance's vCPU on `cpu`. */
  perfGuestIp(cpu: number): bigint;
  /** A label for the vCPU running on `cpu` (`kvm0/vm3/vcpu1`), for reports. */
  runningLabel(cpu: number): string | undefined;
  /** Posted-interrupt wakeup IPI on `cpu`: wake this instance's blocked vCPUs there; returns their labels. */
  postedIntrWakeup(cpu: number): readonly string[];
  /** An NMI hit `cpu` while this instance's vCPU ran there (NMI-induced VM exit); returns the vCPU label. */
  nmiExit(cpu: number): string | undefined;
  /**
   * A PMI (delivered as an NMI) that perf took for this instance's guest on `cpu`: the NMI-induced VM exit,
   * once per PMI (count it, tell listeners); returns the vCPU label.
   */
  pmiExit(cpu: number): string | undefined;
  /** `cpu` is going offline: put every vCPU of this instance that is loaded there, and move its threads. */
  cpuOffline(cpu: number): void;
  /** Tasks are frozen (suspend), or the host reboots or crashes: every vCPU leaves guest mode. */
  kickAll(reason: 'suspend' | 'reboot' | 'crash'): void;
}

/** The per-CPU running instance, and dispatch of PMIs, posted-interrupt wakeups and NMIs. */
export class IrqRegistry {
  /** Per CPU: the instance whose vCPU is loaded there (`undefined` = none). */
  readonly #running: Array<VacInstanceOps | undefined>;
  #instances: VacInstanceOps[] = [];
  /** The single perf registration, owned by VAC. */
  readonly perfCallbacks: PerfGuestCallbacks;

  /**
   * @param host - the host
   * @param name - who owns this registry, for its perf callbacks' name
   */
  constructor(host: Host, name = 'vac') {
    // Packed (no holes), so a lookup on the PMI path needs no hole check.
    const running: Array<VacInstanceOps | undefined> = [];
    for (let i = 0; i < host.cpus.length; i++) running.push(undefined);
    this.#running = running;
    this.perfCallbacks = {
      name,
      // kvm_guest_state(): dispatched to the instance running on this CPU; none → host PMI (0). (Written out:
      // `running[cpu]?.perfGuestState(cpu) ?? 0` compiles to slower code on this hot path.)
      state: (cpu) => {
        const inst = running[cpu];
        return inst === undefined ? 0 : inst.perfGuestState(cpu);
      },
      getIp: (cpu) => {
        const inst = running[cpu];
        return inst === undefined ? 0n : inst.perfGuestIp(cpu);
      },
      attribute: (cpu) => {
        const inst = running[cpu];
        return inst === undefined ? undefined : inst.pmiExit(cpu);
      },
    };
  }

  /** Add an instance to the fan-out lists. */
  attach(inst: VacInstanceOps): void {
    this.#instances = [...this.#instances, inst];
  }

  /** Remove an instance (it must not be running anywhere). */
  detach(inst: VacInstanceOps): void {
    this.#instances = this.#instances.filter((i) => i !== inst);
  }

  /** The attached instances, in attach order. */
  instances(): readonly VacInstanceOps[] {
    return this.#instances;
  }

  /** vcpu_load: `inst` now runs a vCPU on `cpu`. */
  setRunning(cpu: number, inst: VacInstanceOps): void {
    this.#running[cpu] = inst;
  }

  /** vcpu_put: nothing of `inst` runs on `cpu` any more (only the instance that set it may clear it). */
  clearRunning(cpu: number, inst: VacInstanceOps): void {
    if (this.#running[cpu] === inst) this.#running[cpu] = undefined;
  }

  /** The CPUs where `inst` runs a vCPU (a scan: for introspection and detach, not hot paths). */
  cpusRunning(inst: VacInstanceOps): number[] {
    const out: number[] = [];
    this.#running.forEach((r, cpu) => {
      if (r === inst) out.push(cpu);
    });
    return out;
  }

  /** The instance running a vCPU on `cpu`, if any. */
  runningOn(cpu: number): VacInstanceOps | undefined {
    return this.#running[cpu];
  }

  /** The posted-interrupt wakeup handler VAC installs: every instance checks its blocked vCPUs on `cpu`. */
  postedIntrWakeup(cpu: number): readonly string[] {
    const woken: string[] = [];
    for (const inst of this.#instances) woken.push(...inst.postedIntrWakeup(cpu));
    return woken;
  }

  /** VAC's NMI handler: an NMI on a CPU running a guest is an NMI-induced VM exit of that instance. */
  nmi(cpu: number): string | undefined {
    return this.#running[cpu]?.nmiExit(cpu);
  }
}
