/**
 * VAC, the base module (`vac.ko`): it owns everything the KVM modules must share and registers every
 * single-owner kernel hook exactly once, however many KVM modules are loaded (SPEC.md §2).
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
import type { ModuleContext, ModuleImage } from '../host/modules.js';
import { AsidAllocator } from './asid.js';
import { VacHandle, vcpuLabel, type VacParts, type VcpuTag } from './handle.js';
import { IrqRegistry, type VacInstanceOps } from './irq.js';
import { SevAsidAllocator } from './sev.js';
import { UserReturnMsrs, type UretCpuState, type UretSlot } from './uret.js';
import { VirtualizationControl } from './virtualization.js';
import { VpidAllocator } from './vpid.js';

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
  /** The vendor VAC chose at load: `'vmx'` or `'svm'`. */
  readonly vendor: 'vmx' | 'svm';
  readonly #host: Host;
  readonly #virt: VirtualizationControl;
  readonly #irq: IrqRegistry;
  readonly #uret: UserReturnMsrs;
  readonly #vpids: VpidAllocator<VcpuTag> | undefined;
  readonly #asids: AsidAllocator<VcpuTag> | undefined;
  readonly #sev: SevAsidAllocator<VcpuTag> | undefined;
  readonly #handles = new Map<string, VacHandle>();

  /** @internal Built by the `vac` module's init. */
  constructor(host: Host, vendor: VirtOps) {
    this.#host = host;
    this.vendor = vendor.name;
    this.#uret = new UserReturnMsrs(host.cpus);
    if (vendor.name === 'vmx') {
      this.#vpids = new VpidAllocator<VcpuTag>();
    } else {
      const space = vendor.asidSpace?.();
      if (space === undefined) throw new UsageError('an SVM VirtOps must implement asidSpace()');
      this.#asids = new AsidAllocator<VcpuTag>({ nrCpus: host.cpus.length, nrAsids: space.nrAsids, maxSevAsid: space.maxSevAsid });
      if (space.maxSevAsid > 0) {
        const flush = vendor.sevFlush?.bind(vendor);
        this.#sev = new SevAsidAllocator<VcpuTag>(
          { maxSevAsid: space.maxSevAsid, minSevAsid: space.minSevAsid },
          flush === undefined ? {} : { onFlush: flush },
        );
      }
    }
    this.#virt = new VirtualizationControl(host, vendor, this.#uret, this.#asids);
    this.#irq = new IrqRegistry(host);
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
      vpids: this.#vpids,
      asids: this.#asids,
      sev: this.#sev,
      onDetach: (h) => {
        this.#irq.detach(ops);
        this.#handles.delete(h.name);
      },
    };
    const h = new VacHandle(ops, parts);
    this.#handles.set(ops.name, h);
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

  /** Which vCPU holds which VPID (VMX hosts; empty on SVM). */
  vpidHolders(): Array<{ readonly vpid: number; readonly holder: string }> {
    const v = this.#vpids;
    if (v === undefined) return [];
    return [...v.holders()].map(([vpid, tag]) => ({ vpid, holder: vcpuLabel(tag) }));
  }

  /** How many VPID allocations returned 0 because the space was exhausted. */
  get vpidExhaustions(): number {
    return this.#vpids?.exhaustions ?? 0;
  }

  /** On `cpu` (SVM hosts): the ASID generation, the next ASID, and who holds which ASID in that generation. */
  asidState(cpu: number): { readonly generation: number; readonly nextAsid: number; readonly holders: Array<{ readonly asid: number; readonly holder: string }> } | undefined {
    const a = this.#asids;
    if (a === undefined) return undefined;
    this.#host.checkCpu(cpu);
    return {
      generation: a.generation(cpu),
      nextAsid: a.nextAsid(cpu),
      holders: a.holders(cpu).map(([asid, tag]) => ({ asid, holder: vcpuLabel(tag) })),
    };
  }

  /** Total ASID generation rollovers over all CPUs (each one flushed every ASID on its CPU). */
  get asidRollovers(): number {
    return this.#asids?.rollovers ?? 0;
  }

  /** SEV ASIDs (SVM hosts with SEV): in use with their VM, awaiting reclaim, flushes and recycles. */
  sevState(): { readonly inUse: Array<{ readonly asid: number; readonly holder: string }>; readonly awaitingReclaim: readonly number[]; readonly flushes: number; readonly recycles: number; readonly range: { readonly sev: readonly [number, number]; readonly sevEs: readonly [number, number] } } | undefined {
    const s = this.#sev;
    if (s === undefined) return undefined;
    const st = s.state();
    return {
      inUse: st.inUse.map(([asid, tag]) => ({ asid, holder: `${tag.instance}/vm${tag.vm}` })),
      awaitingReclaim: st.awaitingReclaim,
      flushes: st.flushes,
      recycles: st.recycles,
      range: { sev: s.range(false), sevEs: s.range(true) },
    };
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
  get internals(): { virt: VirtualizationControl; irq: IrqRegistry; uret: UserReturnMsrs; vpids: VpidAllocator<VcpuTag> | undefined; asids: AsidAllocator<VcpuTag> | undefined; sev: SevAsidAllocator<VcpuTag> | undefined } {
    return { virt: this.#virt, irq: this.#irq, uret: this.#uret, vpids: this.#vpids, asids: this.#asids, sev: this.#sev };
  }

  /** A plain copy of VAC's state (part of `host.snapshot()`). */
  snapshot(): unknown {
    return {
      virt: this.#virt.snapshot(),
      instances: this.instances(),
      handles: [...this.#handles.values()].map((h) => [h.name, h.holdings()]),
      vpids: this.vpidHolders(),
      asids: this.#asids === undefined ? undefined : this.#host.cpus.map((c) => this.asidState(c.id)),
      sev: this.sevState() === undefined ? undefined : { inUse: this.sevState()?.inUse, awaitingReclaim: this.sevState()?.awaitingReclaim },
      uret: { slots: this.#uret.slots(), cpus: this.#host.cpus.map((c) => this.#uret.cpuState(c.id)) },
      running: this.#host.cpus.map((c) => this.runningInstance(c.id)),
    };
  }

  /** Invariants 1–4 and 6 of SPEC.md §4 as far as VAC can see them. */
  check(): Violation[] {
    const out: Violation[] = [];
    const host = this.#host;
    const virt = this.#virt;
    const vendor = host.hardware.virt;
    const steady = host.systemState === 'running' && !virt.rebooting;
    for (const c of host.cpus) {
      const on = virt.isEnabled(c.id);
      if (steady && c.online && on !== virt.count > 0) {
        out.push({ invariant: 1, cpu: c.id, message: `CPU ${c.id} is ${on ? 'enabled' : 'disabled'} with usage count ${virt.count}` });
      }
      if (!c.online && on) out.push({ invariant: 1, cpu: c.id, message: `offline CPU ${c.id} is still enabled` });
      if (on && !vendor.isEnabled(c.id)) out.push({ invariant: 1, cpu: c.id, message: `VAC thinks CPU ${c.id} is enabled but the hardware is not` });
      if (!on && this.#irq.runningOn(c.id) !== undefined && steady) {
        out.push({ invariant: 1, cpu: c.id, message: `a vCPU is loaded on CPU ${c.id}, which has virtualization off` });
      }
    }
    const a = this.#asids;
    if (a !== undefined) {
      for (const k of a.conflicts) {
        out.push({ invariant: 3, cpu: k.cpu, id: k.asid, message: `ASID ${k.asid} given to ${vcpuLabel(k.previous)} and ${vcpuLabel(k.next)} in generation ${k.generation}` });
      }
    }
    if (this.#vpids?.isAllocated(0) === false) out.push({ invariant: 2, id: 0, message: 'VPID 0 is not reserved' });
    if (this.#handles.size === 0) {
      // Invariant 6: with no KVM instance attached, nothing may be held.
      if ((this.#vpids?.inUse ?? 0) > 0) out.push({ invariant: 6, message: `${this.#vpids?.inUse} VPIDs held with no instance attached` });
      if ((this.#sev?.inUse ?? 0) > 0) out.push({ invariant: 6, message: 'SEV ASIDs held with no instance attached' });
      if (virt.count > 0) out.push({ invariant: 6, message: `usage count ${virt.count} with no instance attached` });
      for (const c of host.cpus) {
        if (this.#uret.isRegistered(c.id)) out.push({ invariant: 6, cpu: c.id, message: `user-return MSRs of CPU ${c.id} hold guest values` });
      }
    }
    return out;
  }
}

/** The loaded VAC of a host, if `vac` is loaded. */
export function vacOf(host: Host): Vac | undefined {
  return host.modules.exportsOf<Vac>(VAC_MODULE);
}

/**
 * The `vac` module image. Its init chooses the vendor from the hardware (EOPNOTSUPP when neither VMX nor
 * SVM is usable on the boot CPU; EIO when another online CPU fails the compatibility check, as
 * `kvm_x86_vendor_init` does), then registers, once: the cpuhp state `CPUHP_AP_KVM_ONLINE`, syscore ops,
 * the task freezer, the reboot notifier, the emergency callback, perf guest callbacks, the posted-interrupt
 * wakeup handler and an NMI handler.
 */
export const vacImage: ModuleImage<Record<string, never>, Vac> = {
  name: VAC_MODULE,
  version: `abi${VAC_ABI_VERSION}`,
  depends: [],
  abiVersion: VAC_ABI_VERSION,
  params: {},
  init(ctx: ModuleContext<Record<string, never>, Vac>): Vac {
    const host = ctx.host;
    const vendor = host.hardware.virt;
    const why = vendor.unsupported(0);
    if (why !== undefined) throw new KernelError('EOPNOTSUPP', 'vac_init', `no hardware support for VMX or SVM (${why})`);
    for (const c of host.cpus) {
      const w = c.online ? vendor.unsupported(c.id) : undefined;
      if (w !== undefined) {
        ctx.warn(w, c.id);
        throw new KernelError('EIO', 'vac_init', `CPU ${c.id} is not compatible: ${w}`);
      }
    }
    const vac = new Vac(host, vendor);
    const { virt, irq } = vac.internals;

    // Hotplug (kvm_online_cpu / kvm_offline_cpu): registered without calls, as kvm_init did.
    ctx.defer(
      host.cpuhp.setup(
        'kvm/cpu:online',
        {
          startup: (cpu) => virt.onlineCpu(cpu),
          teardown: (cpu) => {
            for (const inst of irq.instances()) inst.cpuOffline(cpu);
            virt.offlineCpu(cpu);
          },
        },
        { slot: 'CPUHP_AP_KVM_ONLINE', invoke: false },
      ),
    );
    ctx.defer(host.power.registerFreezer({ name: 'vac', freeze: () => irq.instances().forEach((i) => i.kickAll('suspend')) }));
    ctx.defer(host.power.registerSyscore({ name: 'kvm_syscore_ops', suspend: () => virt.suspend(), resume: () => virt.resume() }));
    ctx.defer(
      host.power.registerRebootNotifier({
        name: 'kvm_reboot',
        notify: () => {
          for (const i of irq.instances()) i.kickAll('reboot');
          virt.reboot();
        },
      }),
    );
    const emergency = (cpu: number): void => virt.emergency(cpu);
    host.hooks.registerEmergencyVirtCallback(emergency);
    ctx.defer(() => host.hooks.unregisterEmergencyVirtCallback(emergency));
    host.hooks.registerPerfGuestCallbacks(irq.perfCallbacks);
    ctx.defer(() => host.hooks.unregisterPerfGuestCallbacks(irq.perfCallbacks));
    host.hooks.setPostedIntrWakeupHandler((cpu) => irq.postedIntrWakeup(cpu));
    ctx.defer(() => host.hooks.setPostedIntrWakeupHandler(undefined));
    ctx.defer(host.hooks.registerNmiHandler((cpu) => irq.nmi(cpu)));
    ctx.defer(host.registerSnapshotProvider(VAC_MODULE, () => vac.snapshot()));
    ctx.defer(host.registerInvariantChecker(VAC_MODULE, () => vac.check()));
    return vac;
  },
};

registerCoreImage(vacImage);
