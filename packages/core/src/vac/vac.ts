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

  /**
   * @internal Built by the `vac` module's init (or, privately, by a legacy KVM module).
   * @param name - who owns this copy: `vac`, or `kvm1:legacy` (names its perf callbacks and checker)
   */
  constructor(host: Host, vendor: VirtOps, name: string = VAC_MODULE) {
    this.#host = host;
    this.vendor = vendor.name;
    this.#uret = new UserReturnMsrs(host.cpus);
    if (vendor.name === 'vmx') {
      this.#vpids = new VpidAllocator<VcpuTag>({ shouldFail: () => host.faults.shouldFail('vpid') });
    } else {
      const space = vendor.asidSpace?.();
      if (space === undefined) throw new UsageError('ERR_NOT_SUPPORTED', 'an SVM VirtOps must implement asidSpace()');
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
    const sev = this.sevState();
    return {
      virt: this.#virt.snapshot(),
      instances: this.instances(),
      handles: [...this.#handles.values()].map((h) => [h.name, h.holdings()]),
      vpids: this.vpidHolders(),
      // A disabled CPU's ASID state is meaningless until its next enable resets it: left out.
      asids: this.#asids === undefined ? undefined : this.#host.cpus.map((c) => (this.#virt.isEnabled(c.id) ? this.asidState(c.id) : null)),
      sev: sev === undefined ? undefined : { inUse: sev.inUse, awaitingReclaim: sev.awaitingReclaim },
      uret: { slots: this.#uret.slots(), cpus: this.#host.cpus.map((c) => this.#uret.cpuState(c.id)) },
      running: this.#host.cpus.map((c) => this.runningInstance(c.id)),
    };
  }

  /** Invariants 1–4 and 6 of SPEC.md §4 as far as VAC can see them. */
  check(scope: { readonly virt: boolean } = { virt: true }): Violation[] {
    const out: Violation[] = [];
    const host = this.#host;
    const virt = this.#virt;
    const vendor = host.hardware.virt;
    const steady = host.systemState === 'running' && !virt.rebooting;
    // Both vendor halves record VAC's own claim on a CPU (`enabledByVac`); a claim the loaded VAC's per-CPU
    // flag does not know about means the CPU was enabled through the vendor ops behind its back. (A legacy
    // module's private copy shares the vendor ops with VAC, so only the loaded VAC asks.)
    const claimed = vacOf(host) === this ? (vendor as Partial<{ enabledByVac(cpu: number): boolean }>).enabledByVac?.bind(vendor) : undefined;
    for (const c of scope.virt ? host.cpus : []) {
      const on = virt.isEnabled(c.id);
      if (!on && claimed?.(c.id) === true) {
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
    const a = this.#asids;
    if (a !== undefined) {
      for (const k of a.conflicts) {
        out.push({ invariant: 3, cpu: k.cpu, id: k.asid, message: `ASID ${k.asid} given to ${vcpuLabel(k.previous)} and ${vcpuLabel(k.next)} in generation ${k.generation}` });
      }
    }
    const vpids = this.#vpids;
    if (vpids !== undefined) {
      // Invariant 2: a VPID a handle holds is allocated to that instance and to no other handle (VPID 0 is
      // the host's: `alloc` returns it only to mean "none", and handles do not record it).
      const holderOf = new Map<number, string>();
      for (const h of this.#handles.values()) {
        for (const vpid of h.holdings().vpids) {
          const prev = holderOf.get(vpid);
          if (prev !== undefined) out.push({ invariant: 2, id: vpid, message: `VPID ${vpid} is held by ${prev} and ${h.name}` });
          holderOf.set(vpid, h.name);
          if (vpid === 0 || vpids.ownerOf(vpid)?.instance !== h.name) {
            out.push({ invariant: 2, id: vpid, message: `${h.name} holds VPID ${vpid}, which is not allocated to it` });
          }
        }
      }
    }
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
    host.hooks.registerEmergencyVirtCallback(emergency);
    defer(() => host.hooks.unregisterEmergencyVirtCallback(emergency));
  }
  if (which.irq) {
    host.hooks.registerPerfGuestCallbacks(irq.perfCallbacks);
    defer(() => host.hooks.unregisterPerfGuestCallbacks(irq.perfCallbacks));
    const wakeup = (cpu: number): readonly string[] => irq.postedIntrWakeup(cpu);
    host.hooks.setPostedIntrWakeupHandler(wakeup);
    defer(() => host.hooks.setPostedIntrWakeupHandler(undefined));
    defer(host.hooks.registerNmiHandler((cpu) => irq.nmi(cpu)));
  }
  defer(host.registerSnapshotProvider(which.name, () => vac.snapshot()));
  // A legacy module's private copy only answers for what it owns: without its own enabling machinery it
  // does not judge per-CPU enable state.
  defer(host.registerInvariantChecker(which.name, () => vac.check({ virt: which.power })));
}

/**
 * The vendor check at load (`kvm_is_vmx_supported` / `kvm_is_svm_supported` on the boot CPU, then
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
    const vendor = checkVendorSupport(host, 'vac_init', (m, cpu) => ctx.warn(m, cpu));
    const vac = new Vac(host, vendor);
    registerVacHooks(vac, host, (u) => ctx.defer(u), { cpuhp: 'CPUHP_AP_KVM_ONLINE', power: true, irq: true, name: VAC_MODULE });
    return vac;
  },
};

registerCoreImage(vacImage);
