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
  type VacPort,
  type VacInstanceOps,
  type Violation,
  type VendorModule,
} from '@vac/core';
import { VM_FAULT_SITE } from './faults.js';
import { sharedVcpuIds, sharedVmIds } from './unique-ids.js';
import type { Vcpu } from './vcpu.js';
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
    this.#events = host.events;
    this.vac = attach(this);
  }

  // ---- VMs -------------------------------------------------------------------------------------

  /**
   * `kvm_create_vm`: take a usage reference (the first one turns VMX/SVM on: EBUSY when that fails),
   * build the vendor part.
   */
  createVm(owner: import('@vac/core').Process): Vm {
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

  /** `kvm_destroy_vm`. */
  destroyVm(vm: Vm): void {
    this.own(vm, 'kvm_destroy_vm');
    if (vm.dead) return;
    vm.dead = true;
    for (const v of vm.vcpus.values()) {
      if (v.loadedOn >= 0) v.put(v.loadedOn);
      v.vendor.free();
      v.freed = true;
    }
    vm.vcpus.clear();
    vm.irq?.destroy();
    vm.vendor.destroy();
    this.vms.delete(vm);
    this.vac.disableVirtualization(`vm${vm.id}`);
    this.host.events.emit('vm:destroy', { module: this.name, vm: vm.id });
  }

  /** Write the guest values of the user-return MSRs on `cpu` (`vmx_prepare_switch_to_guest`). */
  loadGuestUserReturnMsrs(cpu: number): void {
    const g = this.vendor.userReturn;
    for (let i = 0; i < g.length; i++) {
      const e = g[i] as { slot: number; value: bigint };
      this.vac.setUserReturnMsr(cpu, e.slot, e.value, ALL_ONES);
    }
  }

  // ---- what VAC asks ---------------------------------------------------------------------------

  /** {@link VacInstanceOps.perfGuestState}. */
  perfGuestState(cpu: number): number {
    const v = this.running[cpu];
    return v === undefined ? 0 : v.perfState();
  }

  /** {@link VacInstanceOps.pmiExit}: the NMI exit a PMI is ({@link KvmInstance.nmiExit}), and the `pmi:guest` event. */
  pmiExit(cpu: number): string | undefined {
    const label = this.nmiExit(cpu);
    if (label === undefined) return undefined;
    const v = this.running[cpu] as Vcpu;
    const ev = this.#events;
    const seq = ev.stamp('pmi:guest');
    if (seq >= 0) ev.deliver('pmi:guest', { seq, tick: ev.tick, module: this.name, vm: v.vm.id, vcpu: v.id, cpu, rip: v.regs.rip });
    return label;
  }

  /** {@link VacInstanceOps.perfGuestIp}: `kvm_arch_vcpu_get_ip` → the guest RIP. */
  perfGuestIp(cpu: number): bigint {
    const v = this.running[cpu];
    return v === undefined ? 0n : BigInt(v.regs.rip);
  }

  /** {@link VacInstanceOps.runningLabel}. */
  runningLabel(cpu: number): string | undefined {
    return this.running[cpu]?.label;
  }

  /** {@link VacInstanceOps.postedIntrWakeup}: `pi_wakeup_handler` over this module's blocked vCPUs on `cpu`. */
  postedIntrWakeup(cpu: number): readonly string[] {
    const woken: string[] = [];
    for (const vm of this.vms) {
      for (const v of vm.vcpus.values()) {
        if (v.blockedOn === cpu) {
          v.wake();
          woken.push(v.label);
        }
      }
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
        ...(v.intr === undefined ? {} : { intr: { queuedIrq: v.intr.queuedIrq, nmiPending: v.intr.nmiPending, mpState: v.intr.mpState } }),
      })),
    }));
  }

  /** This module's invariants: its vCPUs' loaded CPUs agree with its running table. */
  check(): Violation[] {
    const out: Violation[] = [];
    for (const v of this.allVcpus()) {
      if (v.loadedOn >= 0 && this.running[v.loadedOn] !== v) {
        out.push({ invariant: 5, cpu: v.loadedOn, message: `${v.label} is loaded on CPU ${v.loadedOn} but not registered as running there` });
      }
      if (v.loadedOn >= 0 && this.host.cpus[v.loadedOn]?.online !== true) {
        out.push({ invariant: 1, cpu: v.loadedOn, message: `${v.label} is loaded on offline CPU ${v.loadedOn}` });
      }
    }
    out.push(...sharedVcpuIds(this));
    out.push(...sharedVmIds(this));
    this.running.forEach((v, cpu) => {
      if (v !== undefined && v.loadedOn !== cpu) out.push({ invariant: 5, cpu, message: `CPU ${cpu} says ${v.label} runs there, but it is loaded on ${v.loadedOn}` });
    });
    return out;
  }

  /** Fail unless the VM belongs to this module (a VM fd of kvm0 used with kvm1). */
  own(vm: Vm, op: string): void {
    if (vm.instance !== this) throw new KernelError('EBADF', op, `${vm.label} does not belong to ${this.name}`);
  }
}

const ALL_ONES = (1n << 64n) - 1n;
