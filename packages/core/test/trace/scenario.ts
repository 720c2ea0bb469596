/**
 * Synthetic event streams for the trace tests: the events a host with VAC and KVM modules would emit,
 * emitted directly on a host's bus (the core tests cannot load `@vac/kvm` or a vendor model).
 *
 * The KVM events are declared here the way `@vac/kvm` declares them (declaration merging into
 * `ExtensionEvents`, so the payloads are type-checked, and their timeline roles with `EventBus.describe`, as a
 * KVM module does at load), and the virtualization marks are named as Intel hardware names them.
 *
 * @module
 */
import { createHost, recordEvents } from '../../src/index.js';
import type { EventStamp, Host, RecordedEvent, TimelineAnnotation, TraceRecorder } from '../../src/index.js';
import { fakeHardware } from '../support/fake-hardware.js';

declare module '../../src/events.js' {
  interface ExtensionEvents {
    'vm:create': (e: EventStamp & { readonly module: string; readonly vm: number; readonly pid: number }) => void;
    'vm:destroy': (e: EventStamp & { readonly module: string; readonly vm: number }) => void;
    'vcpu:create': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly tlbTag: number }) => void;
    'vcpu:load': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly cpu: number }) => void;
    'vcpu:put': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly cpu: number }) => void;
    'vcpu:exit': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly cpu: number; readonly reason: number }) => void;
    'pmi:guest': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly cpu: number; readonly rip: number }) => void;
  }
}

/** Declare the synthetic events' meanings, as `@vac/kvm` and an Intel hardware model declare theirs. */
export function describeSyntheticEvents(host: Host): void {
  const ev = host.events;
  ev.describe('vcpu:load', { timeline: 'run:start' });
  ev.describe('vcpu:put', { timeline: 'run:end' });
  ev.describe('vcpu:exit', { timeline: 'run:exit' });
  ev.describe('vm:create', { timeline: 'guest:start' });
  ev.describe('vm:destroy', { timeline: 'guest:end' });
  ev.describe('vcpu:create', { timeline: 'guest:vcpu' });
  ev.describe('pmi:guest', { timeline: 'mark:pmi' });
  ev.describe('virt:enable', { label: 'VMXON' });
  ev.describe('virt:disable', { label: 'VMXOFF' });
}

/** A host with fake hardware, the synthetic events described, and a recorder started before anything happens. */
export function recordedFakeHost(cpus: number, limit?: number): { host: Host; rec: TraceRecorder } {
  const host = createHost({ cpus, hardware: fakeHardware() });
  describeSyntheticEvents(host);
  const rec = recordEvents(host, limit === undefined ? {} : { limit });
  return { host, rec };
}

/** Emits module, VM and vCPU events the way VAC and a KVM module do, with a usage count. */
export class Emitter {
  #usage = 0;
  #tlbTag = 1;
  readonly #enabled = new Set<number>();

  constructor(
    readonly host: Host,
    readonly cpus: number,
  ) {}

  /** The seq the next event will get. */
  get seq(): number {
    return this.host.events.seq;
  }

  load(name: string, params: Record<string, string> = {}): void {
    this.host.events.emit('module:load', { name, params });
  }

  unload(name: string): void {
    this.host.events.emit('module:unload', { name });
  }

  #get(holder: string): void {
    if (this.#usage === 0) {
      for (let c = 0; c < this.cpus; c++) this.enable(c);
    }
    this.#usage++;
    this.host.events.emit('virt:usage', { count: this.#usage, holder, delta: 1 });
  }

  #put(holder: string): void {
    this.#usage--;
    this.host.events.emit('virt:usage', { count: this.#usage, holder, delta: -1 });
    if (this.#usage === 0) {
      for (let c = 0; c < this.cpus; c++) this.disable(c);
    }
  }

  enable(cpu: number): void {
    if (this.#enabled.has(cpu)) return;
    this.#enabled.add(cpu);
    this.host.events.emit('virt:enable', { cpu });
  }

  disable(cpu: number): void {
    if (!this.#enabled.delete(cpu)) return;
    this.host.events.emit('virt:disable', { cpu });
  }

  createVm(module: string, vm: number, vcpus = 1, pid = 10): void {
    this.#get(`vm${vm}`);
    this.host.events.emit('vm:create', { module, vm, pid });
    for (let v = 0; v < vcpus; v++) this.host.events.emit('vcpu:create', { module, vm, vcpu: v, tlbTag: this.#tlbTag++ });
  }

  destroyVm(module: string, vm: number): void {
    this.host.events.emit('vm:destroy', { module, vm });
    this.#put(`vm${vm}`);
  }

  /** One KVM_RUN round trip: load, (flushes), exit, put. */
  run(module: string, vm: number, vcpu: number, cpu: number, opts: { tlb?: boolean; l1d?: boolean; pmi?: boolean } = {}): void {
    const ev = this.host.events;
    ev.emit('vcpu:load', { module, vm, vcpu, cpu });
    if (opts.tlb === true) ev.emit('tlb:flush', { cpu, kind: 'vpid', module });
    if (opts.l1d === true) ev.emit('l1d:flush', { module, cpu });
    if (opts.pmi === true) ev.emit('pmi:guest', { module, vm, vcpu, cpu, rip: 0x1000 });
    ev.emit('vcpu:exit', { module, vm, vcpu, cpu, reason: 2 });
    ev.emit('vcpu:put', { module, vm, vcpu, cpu });
  }

  offline(cpu: number): void {
    this.disable(cpu);
    this.host.events.emit('cpu:offline', { cpu });
  }

  online(cpu: number): void {
    this.host.events.emit('cpu:online', { cpu });
    if (this.#usage > 0) this.enable(cpu);
  }
}

/** Options of {@link rollingUpgrade}. */
export interface RollingUpgradeOptions {
  readonly cpus?: number;
  readonly vms?: number;
  /** Run rounds between steps. */
  readonly rounds?: number;
  /** Take a CPU offline and back during the upgrade. */
  readonly hotplug?: boolean;
}

/** The result of {@link rollingUpgrade}: the stream and the moments a guide would annotate. */
export interface RollingUpgrade {
  readonly host: Host;
  readonly events: RecordedEvent[];
  readonly annotations: TimelineAnnotation[];
  readonly cpus: number;
}

/**
 * A rolling upgrade: VMs run on kvm0; kvm1 (a newer image, L1D flush always) is loaded; every VM moves to
 * kvm1 one at a time (a new VM on kvm1, then the old one destroyed), with rounds of guest runs on all CPUs
 * between moves; `rmmod kvm0` is refused halfway (no event: an annotation) and succeeds at the end.
 */
export function rollingUpgrade(o: RollingUpgradeOptions = {}): RollingUpgrade {
  const cpus = o.cpus ?? 8;
  const nVms = o.vms ?? 6;
  const rounds = o.rounds ?? 3;
  const { host, rec } = recordedFakeHost(cpus);
  const e = new Emitter(host, cpus);
  const notes: TimelineAnnotation[] = [];
  const note = (label: string): void => {
    notes.push({ at: e.seq, label });
  };

  e.load('vac');
  note('kvm0 loaded');
  e.load('kvm0', { vmentry_l1d_flush: 'never' });
  /** Where each guest lives now: [module, vm id]. */
  const home: Array<[string, number]> = [];
  for (let i = 0; i < nVms; i++) {
    e.createVm('kvm0', i + 1);
    home.push(['kvm0', i + 1]);
  }
  const offlineCpu = cpus - 1;
  let offline = false;
  let turn = 0;
  const runRounds = (): void => {
    for (let r = 0; r < rounds; r++) {
      for (let g = 0; g < home.length; g++) {
        const [module, vm] = home[g] as [string, number];
        let cpu = (g + turn) % cpus;
        if (offline && cpu === offlineCpu) cpu = (cpu + 1) % cpus;
        e.run(module, vm, 0, cpu, { tlb: turn % 5 === 0, l1d: module === 'kvm1', pmi: turn % 17 === 3 });
      }
      turn++;
      host.events.tick++;
    }
  };
  runRounds();
  note('kvm1 loaded');
  e.load('kvm1', { vmentry_l1d_flush: 'always' });
  runRounds();
  let nextVm = 1;
  for (let g = 0; g < home.length; g++) {
    const [, oldVm] = home[g] as [string, number];
    const newVm = nextVm++;
    note(`VM ${oldVm} moves`);
    e.createVm('kvm1', newVm);
    e.destroyVm('kvm0', oldVm);
    home[g] = ['kvm1', newVm];
    if (g === Math.floor(home.length / 2)) {
      note('rmmod kvm0 refused (EBUSY)');
      if (o.hotplug === true) {
        e.offline(offlineCpu);
        offline = true;
      }
    }
    runRounds();
    if (o.hotplug === true && offline && g === home.length - 2) {
      e.online(offlineCpu);
      offline = false;
    }
  }
  note('rmmod kvm0');
  e.unload('kvm0');
  runRounds();
  rec.stop();
  return { host, events: rec.events(), annotations: notes, cpus };
}
