/**
 * VAC, the base module (`vac.ko`): it owns everything the KVM modules must share and registers every
 * single-owner kernel hook exactly once, however many KVM modules are loaded (docs/spec.md §2).
 *
 * The common part (RFC `virt/kvm/vac.c`) is here: the usage count and per-CPU enable state, the user-return MSRs,
 * the IRQ callback registry, and a registry of the shared resources the vendor's half brings
 * (RFC `arch/x86/kvm/<vendor>/vac.c`; see {@link VacResource}).
 *
 * Load it with `host.modprobe('vac')` (or let `modprobe` of a KVM module pull it in); a KVM module gets
 * the {@link Vac} object as its dependency's exports and calls {@link Vac.attach}.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import type { Violation, VirtOps } from '../hardware.js';
import type { Host } from '../host/host.js';
import { registerCoreImage } from '../host/host.js';
import { boolParam } from '../host/params.js';
import type { LoadedModule, ModuleContext, ModuleImage } from '../host/modules.js';
import { VacHandle, type VacParts } from './handle.js';
import { IrqRegistry, type VacInstanceOps } from './irq.js';
import type { AnyVacResource, VacResource, VacResourceContext, VacResourceKey } from './resource.js';
import { UserReturnMsrs, type UretCpuState, type UretSlot } from './uret.js';
import { VirtualizationControl, registerVirtualizationControl } from './virtualization.js';

/** The version of VAC's interface to KVM modules (the "unupgradable" ABI). KVM images record it. */
export const VAC_ABI_VERSION = 1;

/** The module name of VAC. */
export const VAC_MODULE = 'vac';

/** VAC's state of one CPU, for users and tests. */
export interface VacCpuState {
  /** The CPU number. */
  readonly cpu: number;
  /** Online. */
  readonly online: boolean;
  /** VAC has virtualization on here. */
  readonly enabled: boolean;
  /** How many times VAC turned it on. */
  readonly enableCount: number;
  /** The vCPU running here (`kvm0/vm1/vcpu0`), if any. */
  readonly running: string | undefined;
}

/** The loaded VAC: what KVM modules attach to, and read-only introspection for everyone. */
export class Vac {
  /** The ABI version. */
  readonly abiVersion = VAC_ABI_VERSION;
  /** The vendor VAC chose at load (its {@link VirtOps.name}). */
  readonly vendor: string;
  readonly #host: Host;
  readonly #virt: VirtualizationControl;
  readonly #irq: IrqRegistry;
  readonly #uret: UserReturnMsrs;
  /** The vendor's resources, by key, in the order the vendor listed them. */
  readonly #resources: ReadonlyMap<VacResourceKey<unknown>, AnyVacResource>;
  readonly #handles = new Map<string, VacHandle>();
  /** The module each instance belonged to when it attached (an instance that is not a module has none). */
  readonly #modules = new Map<string, LoadedModule>();

  /**
   * Built by the `vac` module's init (or, privately, by a legacy KVM module); a program using a host gets it with {@link vacOf}.
   * @param name - who owns this copy: `vac`, or `kvm1:legacy` (names its perf callbacks and checker)
   */
  constructor(host: Host, vendor: VirtOps, name: string = VAC_MODULE, options: { readonly crossModuleMoves?: boolean } = {}) {
    this.#host = host;
    this.vendor = vendor.name;
    this.#uret = new UserReturnMsrs(host.cpus);
    const ctx: VacResourceContext = {
      nrCpus: host.cpus.length,
      owner: name,
      crossModuleMoves: options.crossModuleMoves === true,
      shouldFail: (site) => host.faults.shouldFail(site),
      isEnabled: (cpu) => this.#virt.isEnabled(cpu),
    };
    const resources = vendor.vacResources?.(ctx) ?? [];
    const byKey = new Map<VacResourceKey<unknown>, AnyVacResource>();
    for (const r of resources) {
      if (byKey.has(r.key)) throw new UsageError('ERR_DUPLICATE', `${vendor.name}: two VAC resources named '${r.key.name}'`);
      byKey.set(r.key, r);
    }
    this.#resources = byKey;
    this.#virt = new VirtualizationControl(host, vendor, this.#uret, resources);
    this.#irq = new IrqRegistry(host, name);
  }

  /**
   * Attach a KVM instance: it gets its scoped handle. One handle per instance name.
   * @throws {@link KernelError} EEXIST when an instance of that name is attached
   */
  attach(ops: VacInstanceOps): VacHandle {
    if (this.#handles.has(ops.name)) throw new KernelError('EEXIST', 'vac_attach', `${ops.name} is already attached`);
    const parts: VacParts = {
      virt: this.#virt,
      irq: this.#irq,
      uret: this.#uret,
      resources: this.#resources,
      onDetach: (h) => {
        this.#irq.detach(ops);
        this.#handles.delete(h.name);
        this.#modules.delete(h.name);
      },
    };
    const h = new VacHandle(ops, parts);
    this.#handles.set(ops.name, h);
    const module = this.#host.modules.get(ops.name);
    if (module !== undefined) this.#modules.set(ops.name, module);
    this.#irq.attach(ops);
    return h;
  }

  /** Names of the attached instances, in attach order. */
  instances(): string[] {
    return [...this.#handles.keys()];
  }

  /** The global usage count. */
  get usageCount(): number {
    return this.#virt.count;
  }

  /** Who holds usage references (`kvm0` = the module itself, `kvm0/vm3` = a VM), with counts. */
  usageHolders(): Array<[string, number]> {
    return [...this.#virt.holders()].sort(([a], [b]) => a.localeCompare(b));
  }

  /** `kvm_rebooting`: true after a reboot or crash, for good. */
  get rebooting(): boolean {
    return this.#virt.rebooting;
  }

  /** VAC's view of one CPU. */
  cpu(cpu: number): VacCpuState {
    this.#host.checkCpu(cpu);
    return {
      cpu,
      online: this.#host.cpus[cpu]?.online ?? false,
      enabled: this.#virt.isEnabled(cpu),
      enableCount: this.#virt.enableCount(cpu),
      running: this.#irq.runningOn(cpu)?.runningLabel(cpu),
    };
  }

  /** VAC's view of every CPU. */
  cpus(): VacCpuState[] {
    return this.#host.cpus.map((c) => this.cpu(c.id));
  }

  /**
   * A resource the vendor's half of VAC brings, for introspection (`vacOf(host).resource(VPIDS).holders()`).
   * @throws {@link UsageError} ERR_NOT_SUPPORTED when this VAC has no such resource
   */
  resource<V, R extends VacResource<V>>(key: VacResourceKey<V, R>): R {
    const r = this.tryResource(key);
    if (r === undefined) throw new UsageError('ERR_NOT_SUPPORTED', `this VAC (${this.vendor}) has no resource '${key.name}'`);
    return r;
  }

  /** Like {@link Vac.resource}, but `undefined` when this VAC has no such resource. */
  tryResource<V, R extends VacResource<V>>(key: VacResourceKey<V, R>): R | undefined {
    return this.#resources.get(key as VacResourceKey<unknown>) as R | undefined;
  }

  /** The keys of the resources this VAC holds, in the vendor's order. */
  resourceKeys(): Array<VacResourceKey<unknown>> {
    return [...this.#resources.keys()];
  }

  /** The user-return MSR slots. */
  userReturnSlots(): UretSlot[] {
    return this.#uret.slots();
  }

  /** One CPU's user-return MSR state (notifier registered, host and current value per slot). */
  userReturnState(cpu: number): UretCpuState {
    return this.#uret.cpuState(cpu);
  }

  /** The instance running a vCPU on `cpu`, by name. */
  runningInstance(cpu: number): string | undefined {
    return this.#irq.runningOn(cpu)?.name;
  }

  /** @internal The pieces, for the module's init and the invariant checker. */
  get internals(): { virt: VirtualizationControl; irq: IrqRegistry; uret: UserReturnMsrs } {
    return { virt: this.#virt, irq: this.#irq, uret: this.#uret };
  }

  /** A plain copy of VAC's state (part of `host.snapshot()`). */
  snapshot(): unknown {
    const resources: Record<string, unknown> = {};
    for (const [key, r] of this.#resources) resources[key.name] = r.snapshot();
    return {
      virt: this.#virt.snapshot(),
      instances: this.instances(),
      handles: [...this.#handles.values()].map((h) => [h.name, h.holdings()]),
      resources,
      uret: { slots: this.#uret.slots(), cpus: this.#host.cpus.map((c) => this.#uret.cpuState(c.id)) },
      running: this.#host.cpus.map((c) => this.runningInstance(c.id)),
    };
  }

  /** Invariants 1–4 and 6 of docs/spec.md §4 as far as VAC and its resources can see them. */
  check(scope: { readonly virt: boolean } = { virt: true }): Violation[] {
    const out: Violation[] = [];
    const host = this.#host;
    const virt = this.#virt;
    const vendor = host.hardware.virt;
    const steady = host.systemState === 'running' && !virt.rebooting;
    // The vendor half records VAC's own claim on a CPU; a claim the loaded VAC's per-CPU flag does not know about
    // means the CPU was enabled through the vendor ops behind its back. (A legacy module's private copy shares
    // the vendor ops with VAC, so only the loaded VAC asks.)
    const askClaims = vacOf(host) === this;
    for (const c of scope.virt ? host.cpus : []) {
      const on = virt.isEnabled(c.id);
      if (!on && askClaims && vendor.enabledByVac(c.id)) {
        out.push({ invariant: 1, cpu: c.id, message: `CPU ${c.id} is in virtualization mode but VAC did not enable it (usage count ${virt.count})` });
      }
      if (steady && c.online && on !== virt.count > 0) {
        out.push({ invariant: 1, cpu: c.id, message: `CPU ${c.id} is ${on ? 'enabled' : 'disabled'} with usage count ${virt.count}` });
      }
      if (!c.online && on) out.push({ invariant: 1, cpu: c.id, message: `offline CPU ${c.id} is still enabled` });
      if (on && !vendor.isEnabled(c.id)) out.push({ invariant: 1, cpu: c.id, message: `VAC thinks CPU ${c.id} is enabled but the hardware is not` });
      if (!on && this.#irq.runningOn(c.id) !== undefined && steady) {
        out.push({ invariant: 1, cpu: c.id, message: `a vCPU is loaded on CPU ${c.id}, which has virtualization off` });
      }
    }
    for (const r of this.#resources.values()) out.push(...r.check());
    // Invariant 6: an instance that attached as a module is still that loaded module (one whose unload failed
    // half-way, e.g. an undo action that threw, is still attached).
    for (const [name, module] of this.#modules) {
      if (host.modules.get(name) !== module) out.push({ invariant: 6, message: `${name} is attached to VAC, but module ${name} is no longer loaded (half unloaded)` });
    }
    if (this.#handles.size === 0) {
      // Invariant 6: with no KVM instance attached, nothing may be held.
      for (const [key, r] of this.#resources) {
        const held = r.held();
        if (held > 0) out.push({ invariant: 6, message: `${held} ${key.name} held with no instance attached` });
      }
      if (virt.count > 0) out.push({ invariant: 6, message: `usage count ${virt.count} with no instance attached` });
      for (const c of host.cpus) {
        if (this.#uret.isRegistered(c.id)) out.push({ invariant: 6, cpu: c.id, message: `user-return MSRs of CPU ${c.id} hold guest values` });
      }
    }
    return out;
  }
}

/** Which of VAC's kernel registrations {@link registerVacHooks} makes. */
export interface VacHooks {
  /** The hotplug slot for enabling CPUs: the fixed `CPUHP_AP_KVM_ONLINE`, a dynamic one, or none. */
  readonly cpuhp: 'CPUHP_AP_KVM_ONLINE' | 'CPUHP_AP_ONLINE_DYN' | false;
  /** Syscore ops, the task freezer, the reboot notifier and the emergency callback. */
  readonly power: boolean;
  /** perf guest callbacks, the posted-interrupt wakeup handler and an NMI handler. */
  readonly irq: boolean;
  /** Name for the snapshot provider and invariant checker. */
  readonly name: string;
}

/**
 * Make a VAC's kernel registrations, each with its undo handed to `defer`. The `vac` module makes all of
 * them once; a legacy (pre-VAC) KVM module makes them for its own private copy, which is how the
 * collisions of a multi-KVM host without VAC appear.
 * @throws {@link KernelError} EBUSY when the fixed hotplug slot is taken
 */
export function registerVacHooks(vac: Vac, host: Host, defer: (undo: () => void) => void, which: VacHooks): void {
  const { virt, irq } = vac.internals;
  if (which.cpuhp !== false) {
    // Hotplug (kvm_online_cpu / kvm_offline_cpu): registered without calls, as kvm_init did.
    defer(
      host.cpuhp.setup(
        `${which.name === VAC_MODULE ? 'kvm' : which.name}/cpu:online`,
        {
          startup: (cpu) => virt.onlineCpu(cpu),
          teardown: (cpu) => {
            for (const inst of irq.instances()) inst.cpuOffline(cpu);
            virt.offlineCpu(cpu);
          },
        },
        { slot: which.cpuhp, invoke: false },
      ),
    );
  }
  if (which.power) {
    defer(host.power.registerFreezer({ name: which.name, freeze: () => irq.instances().forEach((i) => i.kickAll('suspend')) }));
    defer(host.power.registerSyscore({ name: `${which.name}:kvm_syscore_ops`, suspend: () => virt.suspend(), resume: () => virt.resume() }));
    defer(
      host.power.registerRebootNotifier({
        name: `${which.name}:kvm_reboot`,
        notify: () => {
          for (const i of irq.instances()) i.kickAll('reboot');
          virt.reboot();
        },
      }),
    );
    let kicked = false;
    const emergency = (cpu: number): void => {
      // The crash path stops every guest: each instance is kicked once, before the first CPU's VMCLEARs.
      if (!kicked) {
        kicked = true;
        for (const i of irq.instances()) i.kickAll('crash');
      }
      virt.emergency(cpu);
    };
    defer(host.hooks.registerEmergencyVirtCallback(emergency));
  }
  if (which.irq) {
    defer(host.hooks.registerPerfGuestCallbacks(irq.perfCallbacks));
    const wakeup = (cpu: number): readonly string[] => irq.postedIntrWakeup(cpu);
    defer(host.hooks.setPostedIntrWakeupHandler(wakeup));
    defer(host.hooks.registerNmiHandler((cpu) => irq.nmi(cpu)));
  }
  defer(host.registerSnapshotProvider(which.name, () => vac.snapshot()));
  // A legacy module's private copy only answers for what it owns: without its own enabling machinery it
  // does not judge per-CPU enable state. One that enables CPUs is also a control the host-wide check asks (one
  // step with the checker: both are VAC's means of answering for the CPUs it enabled).
  const unregisterChecker = host.registerInvariantChecker(which.name, () => vac.check({ virt: which.power }));
  const unregisterControl = which.power ? registerVirtualizationControl(host, virt) : undefined;
  defer(() => {
    unregisterControl?.();
    unregisterChecker();
  });
}

/**
 * The vendor check at load (`kvm_is_<vendor>_supported` on the boot CPU, then
 * `kvm_x86_check_processor_compatibility` on every online CPU, as `kvm_x86_vendor_init` runs it).
 * @returns the hardware's VAC half
 * @throws {@link KernelError} EOPNOTSUPP (no VMX/SVM on CPU 0), EIO (another CPU is not compatible)
 */
export function checkVendorSupport(host: Host, op: string, warn: (message: string, cpu: number) => void): VirtOps {
  const vendor = host.hardware.virt;
  const why = vendor.unsupported(0);
  if (why !== undefined) throw new KernelError('EOPNOTSUPP', op, `no hardware support for SVM or VMX (${why})`);
  for (const c of host.cpus) {
    const w = c.online ? vendor.unsupported(c.id) : undefined;
    if (w !== undefined) {
      warn(w, c.id);
      throw new KernelError('EIO', op, `CPU ${c.id} is not compatible: ${w}`);
    }
  }
  return vendor;
}

/** The loaded VAC of a host, if `vac` is loaded. */
export function vacOf(host: Host): Vac | undefined {
  return host.modules.exportsOf<Vac>(VAC_MODULE);
}

/** The parameters of `vac`. */
export const vacParams = {
  /**
   * `cross_module_moves` (0444, default N) — beyond the RFC: VAC hands a VM's hardware context that it owns (a
   * vendor resource such as an encryption key's ID) from a VM of one KVM module to a VM of another, so that
   * KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM works across modules. With N, as in the RFC, such a move is EBADF.
   */
  cross_module_moves: boolParam(false, 'Beyond the RFC: let VAC hand a VM\'s hardware context between KVM modules'),
} as const;

/**
 * The `vac` module image. Its init chooses the vendor from the hardware (EOPNOTSUPP when neither VMX nor
 * SVM is usable on the boot CPU; EIO when another online CPU fails the compatibility check, as
 * `kvm_x86_vendor_init` does), then registers, once: the cpuhp state `CPUHP_AP_KVM_ONLINE`, syscore ops,
 * the task freezer, the reboot notifier, the emergency callback, perf guest callbacks, the posted-interrupt
 * wakeup handler and an NMI handler.
 */
export const vacImage: ModuleImage<typeof vacParams, Vac> = {
  name: VAC_MODULE,
  version: `abi${VAC_ABI_VERSION}`,
  depends: [],
  abiVersion: VAC_ABI_VERSION,
  params: vacParams,
  init(ctx: ModuleContext<typeof vacParams, Vac>): Vac {
    const host = ctx.host;
    const vendor = checkVendorSupport(host, 'vac_init', (m, cpu) => ctx.warn(m, cpu));
    const vac = new Vac(host, vendor, VAC_MODULE, { crossModuleMoves: ctx.params.cross_module_moves === true });
    registerVacHooks(vac, host, (u) => ctx.defer(u), { cpuhp: 'CPUHP_AP_KVM_ONLINE', power: true, irq: true, name: VAC_MODULE });
    return vac;
  },
};

registerCoreImage(vacImage);
