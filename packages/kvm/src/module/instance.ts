/**
 * One loaded KVM module (`kvm0`): its VMs, its vendor half, its VAC handle, and what VAC may ask it
 * (which vCPU runs on a CPU, its guest RIP, blocked vCPUs to wake, vCPUs to put when a CPU goes away).
 *
 * @module
 */
import {
  KernelError,
  type EventBus,
  type Host,
  type LoadedModule,
  type PmiResult,
  type VacPort,
  type VacInstanceOps,
  type Violation,
  type VendorModule,
} from '@vac/core';
import { VM_FAULT_SITE } from './faults.js';
import type { Vcpu } from './vcpu.js';
import { registersCanonical, vcpuStateViolations, vmViolations } from './vm-check.js';
import { freeVcpuAreas } from './vcpu-arch.js';
import { WakeupLists } from './wakeup-lists.js';
import { Vm } from './vm.js';

/** The generic knobs of an instance (from its parameters and options). */
export interface InstanceConfig {
  /** `enable_virt_at_load`. */
  readonly enableVirtAtLoad: boolean;
  /** Guest instructions per time slice (one VM entry each). */
  readonly quantum: number;
  /** Instructions a direct (non-threaded) KVM_RUN may execute before it returns EINTR. */
  readonly syncRunLimit: number;
}

/** A loaded KVM module. */
export class KvmInstance implements VacInstanceOps {
  /** The module name (`kvm0`). */
  readonly name: string;
  /** The host. */
  readonly host: Host;
  /** The loaded module (for refcounts). */
  readonly module: LoadedModule;
  /** Its VAC handle (or, in legacy mode, a port to its private copies). */
  readonly vac: VacPort;
  /** Its vendor half. */
  vendor!: VendorModule;
  /** Knobs. */
  readonly config: InstanceConfig;
  /** Live VMs, in creation order. */
  readonly vms = new Set<Vm>();
  /** Per CPU: this module's vCPU loaded there (`kvm_running_vcpu`, per module as Sean asked). */
  readonly running: Array<Vcpu | undefined>;
  /** @internal Per CPU: this module's vCPUs blocked there, waiting for a posted-interrupt wakeup. */
  readonly wakeupLists: WakeupLists<Vcpu>;
  readonly #events: EventBus;
  #nextVm = 1;

  /** @internal */
  constructor(host: Host, module: LoadedModule, attach: (ops: VacInstanceOps) => VacPort, config: InstanceConfig) {
    this.name = module.name;
    this.host = host;
    this.module = module;
    this.config = config;
    // Packed (no holes), so a lookup on the PMI path needs no hole check.
    const running: Array<Vcpu | undefined> = [];
    for (let i = 0; i < host.cpus.length; i++) running.push(undefined);
    this.running = running;
    this.wakeupLists = new WakeupLists<Vcpu>(host.cpus.length);
    this.#events = host.events;
    this.vac = attach(this);
  }

  // ---- VMs -------------------------------------------------------------------------------------

  /**
   * `kvm_create_vm`: take a usage reference (the first one turns VMX/SVM on: EBUSY when that fails),
   * build the vendor part.
   */
  createVm(owner: import('@vac/core').Process): Vm {
    return this.#events.op(() => this.#createVm(owner));
  }

  #createVm(owner: import('@vac/core').Process): Vm {
    if (this.host.faults.shouldFail(VM_FAULT_SITE)) throw new KernelError('ENOMEM', 'kvm_create_vm', 'injected allocation failure');
    const id = this.#nextVm;
    const holder = `vm${id}`;
    this.vac.enableVirtualization(holder);
    let vendorVm;
    try {
      vendorVm = this.vendor.createVm({ id, tag: { instance: this.name, vm: id, vcpu: -1 } });
    } catch (e) {
      this.vac.disableVirtualization(holder);
      throw e;
    }
    this.#nextVm++;
    const vm = new Vm(this, id, owner, vendorVm);
    this.vms.add(vm);
    this.host.events.emit('vm:create', { module: this.name, vm: id, pid: owner.pid });
    return vm;
  }

  /** `kvm_destroy_vm` (one kernel operation: listeners see the VM gone, not half destroyed). */
  destroyVm(vm: Vm): void {
    this.own(vm, 'kvm_destroy_vm');
    if (vm.dead) return;
    this.#events.op(() => this.#destroyVm(vm));
  }

  #destroyVm(vm: Vm): void {
    vm.dead = true;
    for (const v of vm.vcpus.values()) {
      if (v.loadedOn >= 0) v.put(v.loadedOn);
      v.vendor.free();
      v.freed = true;
      freeVcpuAreas(v);
    }
    vm.vcpus.clear();
    vm.irq?.destroy();
    vm.vendor.destroy();
    for (const f of vm.onDestroy.splice(0)) f();
    this.vms.delete(vm);
    this.vac.disableVirtualization(`vm${vm.id}`);
    this.host.events.emit('vm:destroy', { module: this.name, vm: vm.id });
  }

  /** Write the guest values of the user-return MSRs on `cpu` (`vmx_prepare_switch_to_guest`). */
  loadGuestUserReturnMsrs(cpu: number): void {
    this.vac.loadUserReturnMsrs(cpu, this.vendor.userReturn);
  }

  // ---- what VAC asks ---------------------------------------------------------------------------

  /** {@link VacInstanceOps.perfGuestState}. */
  perfGuestState(cpu: number): number {
    const v = this.running[cpu];
    return v === undefined ? 0 : v.perfState();
  }

  /** {@link VacInstanceOps.pmiExit}: the NMI exit a PMI is ({@link KvmInstance.nmiExit}), and the `pmi:guest` event. */
  pmiExit(cpu: number): string | undefined {
    const v = this.running[cpu];
    return v === undefined || !v.inGuest ? undefined : this.#pmiExitOf(v, cpu);
  }

  /** {@link VacInstanceOps.pmiSample}: state, RIP and the NMI exit of the vCPU running on `cpu`, looked up once. */
  pmiSample(cpu: number, callbacks: string): PmiResult {
    const v = this.running[cpu];
    if (v === undefined || !v.inGuest) return { cpu, state: 0, ip: undefined, callbacks, attributedTo: undefined };
    return { cpu, state: v.perfState(), ip: guestIp(v), callbacks, attributedTo: this.#pmiExitOf(v, cpu) };
  }

  /** The NMI-induced VM exit of a PMI taken for `v` (in guest mode on `cpu`): counted, offered as `pmi:guest`. */
  #pmiExitOf(v: Vcpu, cpu: number): string {
    v.stats.nmi_exits++;
    const ev = this.#events;
    const seq = ev.stamp('pmi:guest');
    if (seq >= 0) this.#emitPmi(seq, v, cpu);
    return v.label;
  }

  #emitPmi(seq: number, v: Vcpu, cpu: number): void {
    const ev = this.#events;
    // The event's rip is a number: exact below 2^53, the nearest double above (the event type predates 64-bit RIPs).
    const r = v.regs;
    ev.deliver('pmi:guest', { seq, tick: ev.tick, module: this.name, vm: v.vm.id, vcpu: v.id, cpu, rip: r.ripHigh * 2 ** 32 + r.eip });
  }

  /** {@link VacInstanceOps.perfGuestIp}: `kvm_arch_vcpu_get_ip` → the guest RIP, all 64 bits. */
  perfGuestIp(cpu: number): bigint {
    const v = this.running[cpu];
    return v === undefined ? 0n : guestIp(v);
  }

  /** {@link VacInstanceOps.runningLabel}. */
  runningLabel(cpu: number): string | undefined {
    return this.running[cpu]?.label;
  }

  /**
   * {@link VacInstanceOps.postedIntrWakeup}: `pi_wakeup_handler`, which walks the list of this module's vCPUs blocked
   * on `cpu` only (in the order they blocked): its cost is what is blocked there, not how many vCPUs exist.
   */
  postedIntrWakeup(cpu: number): readonly string[] {
    let v = this.wakeupLists.first(cpu);
    if (v === undefined) return NOTHING_WOKEN;
    const woken: string[] = [];
    while (v !== undefined) {
      const next: Vcpu | undefined = v.wakeupNext;
      v.wake();
      woken.push(v.label);
      v = next;
    }
    return woken;
  }

  /** {@link VacInstanceOps.nmiExit}. */
  nmiExit(cpu: number): string | undefined {
    const v = this.running[cpu];
    if (v === undefined || !v.inGuest) return undefined;
    v.stats.nmi_exits++;
    return v.label;
  }

  /** {@link VacInstanceOps.cpuOffline}: put any vCPU still loaded on `cpu`. */
  cpuOffline(cpu: number): void {
    const v = this.running[cpu];
    if (v !== undefined) v.put(cpu);
  }

  /** {@link VacInstanceOps.kickAll}: every vCPU in KVM_RUN leaves guest mode (`kvm_make_all_cpus_request`). */
  kickAll(_reason: 'suspend' | 'reboot' | 'crash'): void {
    for (const vm of this.vms) {
      for (const v of vm.vcpus.values()) {
        if (v.thread !== undefined) v.kicked = true;
      }
    }
  }

  // ---- introspection ---------------------------------------------------------------------------

  /** Every vCPU of every VM. */
  *allVcpus(): IterableIterator<Vcpu> {
    for (const vm of this.vms) yield* vm.vcpus.values();
  }

  /** A plain copy of the instance's state (part of `host.snapshot()`). */
  snapshot(): unknown {
    return [...this.vms].map((vm) => ({
      vm: vm.id,
      pid: vm.owner.pid,
      users: vm.users,
      irqchip: vm.irqchip,
      irq: vm.irq?.snapshot(),
      encryption: vm.vendor.encryption,
      memslots: vm.memslots.list().map((s) => ({ slot: s.id, as: s.asId, base: s.base, size: s.size, flags: s.flags, uaddr: s.userspaceAddr })),
      vcpus: [...vm.vcpus.values()].map((v) => ({
        id: v.id,
        loadedOn: v.loadedOn,
        tlb: v.vendor.tlbTag(),
        rip: v.regs.rip,
        smm: v.smm,
        ...(v.intr === undefined ? {} : { intr: { queuedIrq: v.intr.queuedIrq, nmiPending: v.intr.nmiPending, mpState: v.intr.mpState } }),
      })),
    }));
  }

  /**
   * This module's invariants: its vCPUs' loaded CPUs agree with its running table; its VMs are owned by live
   * processes, their memslots behave as their flags say and their vCPUs' registers hold canonical values (see
   * `vm-check.ts`). Linear in its VMs, vCPUs and memslots (IDs shared across modules are checked once per host, by
   * `unique-ids.ts`).
   */
  check(): Violation[] {
    const out: Violation[] = [];
    let blocked = 0;
    for (const vm of this.vms) {
      out.push(...vmViolations(vm));
      for (const v of vm.vcpus.values()) {
        if (v.blockedOn >= 0) blocked++;
        if (v.loadedOn >= 0 && this.running[v.loadedOn] !== v) {
          out.push({ invariant: 5, cpu: v.loadedOn, message: `${v.label} is loaded on CPU ${v.loadedOn} but not registered as running there` });
        }
        if (v.loadedOn >= 0 && this.host.cpus[v.loadedOn]?.online !== true) {
          out.push({ invariant: 1, cpu: v.loadedOn, message: `${v.label} is loaded on offline CPU ${v.loadedOn}` });
        }
        if (!registersCanonical(v.regs)) out.push(...vcpuStateViolations(v));
      }
    }
    if (blocked !== this.wakeupLists.size) out.push({ invariant: 5, message: `${this.name}: ${blocked} vCPU(s) blocked but ${this.wakeupLists.size} on the wakeup lists` });
    const running = this.running;
    for (let cpu = 0; cpu < running.length; cpu++) {
      const v = running[cpu];
      if (v !== undefined && v.loadedOn !== cpu) out.push({ invariant: 5, cpu, message: `CPU ${cpu} says ${v.label} runs there, but it is loaded on ${v.loadedOn}` });
    }
    return out;
  }

  /** Fail unless the VM belongs to this module (a VM fd of kvm0 used with kvm1). */
  own(vm: Vm, op: string): void {
    if (vm.instance !== this) throw new KernelError('EBADF', op, `${vm.label} does not belong to ${this.name}`);
  }
}

/**
 * A vCPU's RIP, all 64 bits, from its two halves: through the number accessor a RIP of 2^53 or more threw (a PMI on
 * such a guest escaped `raisePmi` as a UsageError), and a RIP held as a double made a slow BigInt.
 */
function guestIp(v: Vcpu): bigint {
  const r = v.regs;
  const hi = r.ripHigh;
  return hi === 0 ? BigInt(r.eip) : (BigInt(hi) << 32n) | BigInt(r.eip);
}

/** What a wakeup on a CPU where nothing is blocked answers (shared: it is never changed). */
const NOTHING_WOKEN: readonly string[] = Object.freeze([]);
