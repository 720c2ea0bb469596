/**
 * The simulated host: CPUs, the vendor hardware, the module loader, /dev, processes, hotplug, power, and
 * the single-owner kernel hooks. Created explicitly with {@link createHost}; nothing is shared between
 * hosts.
 *
 * @module
 */
import { Cpu, CpuTables } from '../cpu.js';
import { KernelError, UsageError } from '../errors.js';
import { EventBus, makeUndo, type Unsubscribe, type WarningRecord } from '../events.js';
import type { HardwareEnv, HardwareModel, HostHardware, Violation } from '../hardware.js';
import { Cpuhp } from './cpuhp.js';
import { FaultInjector } from './faults.js';
import { Devfs, type DevStat } from './devfs.js';
import { KernelHooks, type PmiResult } from './hooks.js';
import { ModuleLoader, type AnyModuleImage, type LoadedModule, type LoadOptions, type LsmodEntry, type ModuleImage } from './modules.js';
import type { ParamInputs, ParamSpecs } from './params.js';
import { PowerHooks } from './power.js';
import { describeArg } from '../describe-arg.js';
import { processSettings } from './credentials.js';
import { Process, type SpawnOptions } from './process.js';
import { SimClock } from './clock.js';
import { Scheduler } from './sched.js';

/** The most CPUs a host may have (`NR_CPUS` with MAXSMP). */
export const MAX_CPUS = 8192;

/** Options of {@link createHost}. */
export interface HostOptions {
  /** Number of logical CPUs, 1 … 8192. */
  readonly cpus: number;
  /** The vendor hardware model: `intel()` from `@vac/vmx` or `amd()` from `@vac/svm`. */
  readonly hardware: HardwareModel;
  /** Extra groups by name → gid (`root` = 0 and `kvm` = 36 always exist). */
  readonly groups?: Readonly<Record<string, number>>;
  /** Module images `modprobe` can find (besides those registered by core, such as `vac`). */
  readonly modules?: readonly AnyModuleImage[];
}

/**
 * `system_state` as far as the model needs it: running, suspended (between `suspend()` and `resume()`),
 * restart (after `reboot()`), crashed (after `crash()`).
 */
export type SystemState = 'running' | 'suspended' | 'restart' | 'crashed';

/** A deep, comparable copy of everything observable on a host (see {@link Host.snapshot}). */
export interface HostSnapshot {
  /** The system state. */
  readonly systemState: SystemState;
  /** Per CPU: online, CR4 and MSRs. */
  readonly cpus: ReadonlyArray<{ readonly online: boolean; readonly cr4: number; readonly msrs: ReadonlyArray<readonly [number, bigint]> }>;
  /** The hardware model's own snapshot. */
  readonly hardware: unknown;
  /** `lsmod` plus parameters. */
  readonly modules: ReadonlyArray<LsmodEntry & { readonly params: Readonly<Record<string, string>> }>;
  /** /dev. */
  readonly devices: readonly DevStat[];
  /** Live processes with their fds and mappings. */
  readonly processes: ReadonlyArray<{ readonly pid: number; readonly fds: ReadonlyArray<{ readonly fd: number; readonly path: string }>; readonly mappings: ReadonlyArray<{ readonly addr: number; readonly length: number; readonly file: string | undefined }> }>;
  /** Installed hotplug states. */
  readonly cpuhp: ReadonlyArray<{ readonly name: string; readonly slot: string }>;
  /** What modules contributed (VAC's allocators, KVM instances' VMs), by provider name. */
  readonly providers: Readonly<Record<string, unknown>>;
  /** Syscore ops, reboot notifiers and freezers (names, in call order), and the single-owner kernel hooks. */
  readonly hooks: {
    readonly syscore: readonly string[];
    readonly rebootNotifiers: readonly string[];
    readonly freezers: readonly string[];
    readonly perfGuestCallbacks: string | undefined;
    readonly postedIntrWakeupHandler: boolean;
    readonly emergencyVirtCallback: boolean;
    readonly nmiHandlers: number;
  };
}

/**
 * Build a host: `cpus` CPUs of one hardware model (`intel()` from `@vac/vmx`, `amd()` from `@vac/svm`), no modules
 * loaded, `/dev`, and an `init` process.
 *
 * @throws {@link UsageError} on a bad CPU count or hardware model.
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { kvm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 4, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' })); // loads vac, then kvm0 with its /dev/kvm0
 * console.log(host.lsmod().map((m) => m.name)); // [ 'kvm0', 'vac' ]
 * ```
 */
export function createHost(opts: HostOptions): Host {
  return new Host(opts);
}

let coreImages: readonly AnyModuleImage[] = [];

/** Images every host's module library starts with (core registers `vac`). */
export function registerCoreImage(image: AnyModuleImage): void {
  coreImages = [...coreImages, image];
}

/** A simulated x86 Linux host. */
export class Host {
  /** The CPUs, index = CPU number. */
  readonly cpus: readonly Cpu[];
  /**
   * The event stream. Listeners run after the kernel operation that emitted the event (see {@link EventBus});
   * an exception a listener throws is recorded as a warning from source `events`.
   */
  readonly events: EventBus;
  readonly #warnings: WarningRecord[] = [];
  /** The vendor hardware of this host. */
  readonly hardware: HostHardware;
  /** The module loader. */
  readonly modules: ModuleLoader;
  /** /dev. */
  readonly devfs: Devfs;
  /** CPU hotplug states. */
  readonly cpuhp: Cpuhp;
  /** Syscore ops and reboot notifiers. */
  readonly power = new PowerHooks();
  /** The single-owner kernel hooks and hardware-event injection. */
  readonly hooks: KernelHooks;
  /** Fault injection (allocation failures, module init failures); hardware faults are on `hardware`. */
  readonly faults = new FaultInjector();
  /** The thread scheduler. */
  readonly scheduler: Scheduler;
  /** Simulated time: the nanosecond clock guest execution and the scheduler move forward (see {@link SimClock}). */
  readonly clock = new SimClock();
  /** pid 1: root with every capability; the default actor of `insmod`/`rmmod`. */
  readonly init: Process;
  #systemState: SystemState = 'running';
  readonly #groups = new Map<string, number>([
    ['root', 0],
    ['kvm', 36],
  ]);
  readonly #processes = new Map<number, Process>();
  #nextPid = 1;
  #nextInode = 10_000;
  readonly #providers = new Map<string, () => unknown>();
  readonly #checkers = new Map<string, () => Violation[]>();
  /** CPUs taken offline by `suspend()`, brought back by `resume()`. */
  #suspendedCpus: number[] = [];

  /** @internal Use {@link createHost}. */
  constructor(opts: HostOptions) {
    this.events = new EventBus((name, e) => this.#listenerThrew(name, e));
    if (typeof opts !== 'object' || opts === null) throw new UsageError('ERR_INVALID_ARG', 'createHost: options are required');
    const n = opts.cpus;
    if (!Number.isInteger(n) || n < 1 || n > MAX_CPUS) throw new UsageError('ERR_OUT_OF_RANGE', `createHost: cpus must be an integer in 1…${MAX_CPUS}, got ${String(n)}`);
    const hw = opts.hardware;
    if (typeof hw !== 'object' || hw === null || typeof hw.create !== 'function' || typeof hw.name !== 'string') {
      throw new UsageError('ERR_INVALID_ARG', 'createHost: hardware must be a hardware model such as intel() from @vac/vmx or amd() from @vac/svm');
    }
    for (const [g, id] of Object.entries(opts.groups ?? {})) {
      if (!Number.isInteger(id) || id < 0) throw new UsageError('ERR_OUT_OF_RANGE', `createHost: gid of group ${g} must be a non-negative integer`);
      this.#groups.set(g, id);
    }
    const tables = new CpuTables(n);
    this.cpus = Array.from({ length: n }, (_, i) => new Cpu(i, tables));
    const host = this;
    const env: HardwareEnv = {
      cpus: this.cpus,
      events: this.events,
      warn: (w) => host.warn(w),
      get rebooting() {
        return host.systemState === 'restart' || host.systemState === 'crashed';
      },
    };
    this.hardware = hw.create(env);
    if (typeof this.hardware !== 'object' || this.hardware === null || typeof this.hardware.virt !== 'object') {
      throw new UsageError('ERR_INVALID_ARG', `createHost: hardware model ${hw.name} did not build a valid HostHardware`);
    }
    this.modules = new ModuleLoader(this);
    this.devfs = new Devfs(this);
    this.cpuhp = new Cpuhp(this);
    this.hooks = new KernelHooks(this);
    this.scheduler = new Scheduler(this);
    this.modules.depmod(...coreImages, ...(opts.modules ?? []));
    this.init = this.spawn({ name: 'init' });
  }

  /** Every warning recorded so far, in order (a copy; each record is frozen). */
  get warnings(): readonly WarningRecord[] {
    return this.#warnings.slice();
  }

  /** The system state (changed by `suspend`, `resume`, `reboot` and `crash` only). */
  get systemState(): SystemState {
    return this.#systemState;
  }

  // ---- identities -------------------------------------------------------------------------------

  /** The gid of a group name. @throws {@link UsageError} for an unknown group */
  gid(name: string): number {
    const g = this.#groups.get(name);
    if (typeof name !== 'string') throw new UsageError('ERR_INVALID_ARG', `a group name must be a string, got ${describeArg(name)}`);
    if (g === undefined) throw new UsageError('ERR_UNKNOWN_NAME', `unknown group ${JSON.stringify(name)} (known: ${[...this.#groups.keys()].join(', ')})`);
    return g;
  }

  /** Check a CPU number. @returns it @throws {@link UsageError} when there is no such CPU */
  checkCpu(cpu: number): number {
    // One unsigned compare covers non-numbers, NaN, fractions, negatives and the upper bound (the PMI path asks).
    if (typeof cpu !== 'number' || cpu >>> 0 !== cpu || cpu >= this.cpus.length) throw this.#noSuchCpu(cpu);
    return cpu;
  }

  #noSuchCpu(cpu: unknown): UsageError {
    return new UsageError('ERR_NO_SUCH_CPU', `no CPU ${describeArg(cpu)} (the host has CPUs 0…${this.cpus.length - 1})`);
  }

  /** Record a warning (`WARN`): kept in {@link Host.warnings} and emitted as a `warning` event. */
  warn(w: WarningRecord): void {
    const rec: WarningRecord = Object.freeze(w.cpu === undefined ? { source: w.source, message: w.message } : { source: w.source, message: w.message, cpu: w.cpu });
    this.#warnings.push(rec);
    this.events.emit('warning', rec);
  }

  /**
   * A listener threw: a warning from source `events`. One thrown by a `warning` listener is only recorded (not
   * emitted again), so a listener that always throws cannot loop.
   */
  #listenerThrew(name: string, e: unknown): void {
    const w: WarningRecord = { source: 'events', message: `a listener of '${name}' threw: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}` };
    if (name === 'warning') this.#warnings.push(Object.freeze(w));
    else this.warn(w);
  }

  /** Run `op` as one kernel operation: the events it emits reach listeners once it has returned or thrown. */
  #op<T>(op: () => T): T {
    return this.events.op(op);
  }

  // ---- modules ----------------------------------------------------------------------------------

  /** `insmod` (see {@link ModuleLoader.insmod}). */
  insmod<P extends ParamSpecs, E>(image: ModuleImage<P, E>, params?: ParamInputs, opts?: LoadOptions): LoadedModule<E> {
    return this.modules.insmod(image, params, opts);
  }

  /**
   * `modprobe` (see {@link ModuleLoader.modprobe}): load a module image (or a registered one by name) and the
   * modules it depends on, with these parameters.
   *
   * @example
   * ```ts
   * import { createHost } from '@vac/core';
   * import { kvm } from '@vac/kvm';
   * import { intel } from '@vac/vmx';
   *
   * const host = createHost({ cpus: 4, hardware: intel() });
   * host.modprobe(kvm({ postfix: '0' }));
   * host.modprobe(kvm({ postfix: '1' }), { vmentry_l1d_flush: 'always' }); // its own parameters
   * console.log(host.readParam('kvm1', 'vmentry_l1d_flush')); // 'always'
   * ```
   */
  modprobe<P extends ParamSpecs, E>(image: ModuleImage<P, E> | string, params?: ParamInputs, opts?: LoadOptions): LoadedModule<E> {
    return this.modules.modprobe(image, params, opts);
  }

  /** `rmmod` (see {@link ModuleLoader.rmmod}). */
  rmmod(name: string, opts?: LoadOptions): void {
    this.modules.rmmod(name, opts);
  }

  /** `lsmod`. */
  lsmod(): LsmodEntry[] {
    return this.modules.lsmod();
  }

  /** `cat /sys/module/<name>/parameters/<param>`. */
  readParam(name: string, param: string): string {
    return this.modules.readParam(name, param);
  }

  // ---- /dev -------------------------------------------------------------------------------------

  /** `ln -s target path` under /dev. */
  symlink(target: string, path: string): void {
    this.devfs.symlink(target, path);
  }

  /** `rm path` of a /dev symlink. */
  unlink(path: string): void {
    this.devfs.unlink(path);
  }

  /** `readlink path`. */
  readlink(path: string): string {
    return this.devfs.readlink(path);
  }

  /** `stat path` (follows symlinks). */
  stat(path: string): DevStat {
    return this.devfs.stat(path);
  }

  // ---- processes --------------------------------------------------------------------------------

  /**
   * Create a process with the given credentials; with `parent`, as that process's child (`fork` + `execve`: it
   * inherits the fds that are not close-on-exec, see {@link SpawnOptions.parent}).
   *
   * @example
   * ```ts
   * import { createHost } from '@vac/core';
   * import { intel } from '@vac/vmx';
   *
   * const host = createHost({ cpus: 2, hardware: intel() });
   * const vmm = host.spawn({ name: 'qemu', uid: 1000, groups: ['kvm'] });
   * console.log(vmm.pid, vmm.name); // its pid, 'qemu': a VMM that may open /dev/kvm* (group kvm)
   * ```
   */
  spawn(opts: SpawnOptions = {}): Process {
    const settings = processSettings({ cpus: this.cpus, gid: (g) => this.gid(g), isProcess: (p): p is Process => p instanceof Process && this.#processes.get(p.pid) === p }, opts, this.#nextPid);
    return this.#op(() => {
      const parent = settings.parent;
      const inherited = parent?.inheritableFds(settings.nofile) ?? [];
      const p = new Process(this, this.#nextPid, settings);
      this.#nextPid++;
      this.#processes.set(p.pid, p);
      this.events.emit('process:spawn', { pid: p.pid });
      if (parent !== undefined) p.inheritFds(parent, inherited);
      return p;
    });
  }

  /** @internal `get_next_ino`: a number for a new in-memory inode (a socket's `socket:[N]`). */
  nextInode(): number {
    return ++this.#nextInode;
  }

  /** Live processes. */
  processes(): Process[] {
    return [...this.#processes.values()];
  }

  /** @internal Called by `Process.kill()`. */
  reap(p: Process): void {
    this.#processes.delete(p.pid);
    this.events.emit('process:exit', { pid: p.pid });
  }

  // ---- CPU hotplug ------------------------------------------------------------------------------

  /**
   * Bring CPU `cpu` online (`echo 1 > /sys/devices/system/cpu/cpuN/online`): the hotplug startup callbacks
   * run in order; if one fails the CPU stays offline and its error is thrown (VAC refuses a CPU that cannot
   * enable virtualization with EIO). A CPU already online is left alone.
   */
  cpuUp(cpu: number): void {
    const c = this.cpus[this.checkCpu(cpu)] as Cpu;
    this.#requireRunning('cpu_up');
    if (c.online) return;
    this.#op(() => this.#up(c));
  }

  #up(c: Cpu): void {
    this.cpuhp.runStartup(c.id);
    c.online = true;
    this.events.emit('cpu:online', { cpu: c.id });
  }

  /**
   * Take CPU `cpu` offline: the hotplug teardown callbacks run in reverse order (threads leave the CPU
   * first, then VAC disables virtualization on it). CPU 0, the boot CPU, cannot be taken offline (EBUSY).
   */
  cpuDown(cpu: number): void {
    const c = this.cpus[this.checkCpu(cpu)] as Cpu;
    this.#requireRunning('cpu_down');
    if (!c.online) return;
    if (cpu === 0) throw new KernelError('EBUSY', 'cpu_down', 'CPU 0 is the boot CPU and cannot be taken offline');
    this.#op(() => this.#down(c));
  }

  #down(c: Cpu): void {
    this.cpuhp.runTeardown(c.id);
    c.online = false;
    this.events.emit('cpu:offline', { cpu: c.id });
  }

  #requireRunning(op: string): void {
    if (this.systemState !== 'running') throw new KernelError('EBUSY', op, `system is ${this.systemState}`);
  }

  // ---- power ------------------------------------------------------------------------------------

  /**
   * Suspend to RAM (kernel/power/suspend.c): tasks freeze (the registered freezers run, then every thread stops
   * where it is: `scheduler.freeze()`), the non-boot CPUs go offline through hotplug in ascending order
   * (`freeze_secondary_cpus`), then the syscore suspend callbacks run on CPU 0 in reverse order. Frozen threads
   * are not migrated by those offlines and keep their affinity. If a syscore suspend fails, the ones already done
   * are resumed, the CPUs come back, the tasks thaw and the error is thrown.
   */
  suspend(): void {
    this.#op(() => this.#suspend());
  }

  #suspend(): void {
    this.#requireRunning('suspend');
    this.events.emit('power', { what: 'suspend' });
    for (const f of this.power.freezers()) f.freeze();
    // Frozen tasks run nowhere: every CPU's current thread is scheduled out (KVM puts its vCPU), and the
    // CPU offlines below leave the threads where they are.
    this.scheduler.freeze();
    const offlined: number[] = [];
    // freeze_secondary_cpus: for_each_online_cpu, skipping the boot CPU (ascending).
    for (let i = 1; i < this.cpus.length; i++) {
      const c = this.cpus[i] as Cpu;
      if (c.online) {
        this.#down(c);
        offlined.push(i);
      }
    }
    const ops = this.power.syscore();
    const done: number[] = [];
    for (let i = ops.length - 1; i >= 0; i--) {
      try {
        ops[i]?.suspend?.();
        done.push(i);
      } catch (e) {
        for (const j of done.reverse()) ops[j]?.resume?.();
        this.#thawSecondaryCpus(offlined);
        this.scheduler.thaw();
        for (const f of this.power.freezers()) f.thaw?.();
        throw e;
      }
    }
    this.#suspendedCpus = offlined;
    this.#systemState = 'suspended';
  }

  /**
   * Resume: syscore resume callbacks in registration order on CPU 0 (VAC re-enables; a failure there is
   * only a warning), then the CPUs taken offline come back (`thaw_secondary_cpus`: a CPU that fails to
   * come up is a warning "Error taking CPU%d up: %d" and stays offline), then the tasks thaw
   * (`scheduler.thaw()`, `thaw_processes`): each thread runs on its own CPU again, still pinned; one pinned
   * to a CPU that did not come back is unpinned and moved (`select_fallback_rq`).
   */
  resume(): void {
    this.#op(() => this.#resume());
  }

  #resume(): void {
    if (this.systemState !== 'suspended') throw new KernelError('EINVAL', 'resume', `system is ${this.systemState}, not suspended`);
    this.#systemState = 'running';
    this.events.emit('power', { what: 'resume' });
    for (const ops of this.power.syscore()) ops.resume?.();
    const cpus = this.#suspendedCpus;
    this.#suspendedCpus = [];
    this.#thawSecondaryCpus(cpus);
    this.scheduler.thaw();
    for (const f of this.power.freezers()) f.thaw?.();
  }

  #thawSecondaryCpus(cpus: readonly number[]): void {
    for (const i of [...cpus].sort((a, b) => a - b)) {
      try {
        this.#up(this.cpus[i] as Cpu);
      } catch (e) {
        const errno = e instanceof KernelError ? -e.errno : -5;
        this.warn({ source: 'kernel', message: `Error taking CPU${i} up: ${errno}`, cpu: i });
      }
    }
  }

  /**
   * Reboot (kernel/reboot.c `kernel_restart`): the reboot notifier chain runs, `system_state` becomes
   * restart, then the syscore shutdown callbacks run in reverse order. The host stays inspectable.
   */
  reboot(): void {
    this.#op(() => this.#reboot());
  }

  #reboot(): void {
    if (this.systemState === 'restart' || this.systemState === 'crashed') {
      throw new KernelError('EBUSY', 'reboot', `system is already ${this.systemState}`);
    }
    if (this.systemState === 'suspended') throw new KernelError('EBUSY', 'reboot', 'system is suspended');
    this.events.emit('power', { what: 'reboot' });
    for (const n of this.power.rebootNotifiers()) n.notify('restart');
    this.#systemState = 'restart';
    const ops = this.power.syscore();
    for (let i = ops.length - 1; i >= 0; i--) ops[i]?.shutdown?.();
  }

  /**
   * Crash (kdump's `native_machine_crash_shutdown`): the emergency virtualization callback runs on this CPU
   * (0) and then, through the NMI shootdown, on every other online CPU. The host stays inspectable.
   */
  crash(): void {
    this.#op(() => this.#crash());
  }

  #crash(): void {
    if (this.systemState === 'crashed') throw new KernelError('EBUSY', 'crash', 'system has already crashed');
    this.#systemState = 'crashed';
    this.events.emit('power', { what: 'crash' });
    for (const c of this.cpus) if (c.online || c.id === 0) this.hooks.runEmergency(c.id);
  }

  // ---- hardware events --------------------------------------------------------------------------

  /** Inject a PMI on `cpu` (see {@link KernelHooks.raisePmi}). */
  raisePmi(cpu: number): PmiResult {
    return this.hooks.raisePmi(cpu);
  }

  /** Inject a posted-interrupt wakeup IPI on `cpu`. */
  raisePostedIntrWakeup(cpu: number): readonly string[] {
    return this.hooks.raisePostedIntrWakeup(cpu);
  }

  /** Inject an NMI on `cpu`. */
  raiseNmi(cpu: number): readonly string[] {
    return this.hooks.raiseNmi(cpu);
  }

  // ---- introspection ----------------------------------------------------------------------------

  /** Let a module contribute to {@link Host.snapshot} under `name`. */
  registerSnapshotProvider(name: string, provide: () => unknown): Unsubscribe {
    if (this.#providers.has(name)) throw new UsageError('ERR_DUPLICATE', `snapshot provider ${name} already registered`);
    this.#providers.set(name, provide);
    return makeUndo(() => this.#providers.delete(name));
  }

  /** Let a module contribute invariant checks to `checkInvariants(host)`. */
  registerInvariantChecker(name: string, check: () => Violation[]): Unsubscribe {
    if (this.#checkers.has(name)) throw new UsageError('ERR_DUPLICATE', `invariant checker ${name} already registered`);
    this.#checkers.set(name, check);
    return makeUndo(() => this.#checkers.delete(name));
  }

  /** @internal The registered checkers (a copy). */
  invariantCheckers(): ReadonlyMap<string, () => Violation[]> {
    return new Map(this.#checkers);
  }

  /**
   * A deep copy of everything observable, for "the host is exactly as before" assertions: compare two
   * snapshots with a deep-equality check. Warnings and the event clock are not part of it (a failed
   * operation may log).
   */
  snapshot(): HostSnapshot {
    const providers: Record<string, unknown> = {};
    for (const [name, p] of [...this.#providers].sort(([a], [b]) => a.localeCompare(b))) providers[name] = p();
    return {
      systemState: this.systemState,
      cpus: this.cpus.map((c) => ({ online: c.online, cr4: c.cr4, msrs: [...c.msrs].sort(([a], [b]) => a - b) })),
      hardware: this.hardware.snapshot(),
      modules: this.lsmod().map((m) => ({ ...m, params: { ...(this.modules.get(m.name)?.paramText ?? {}) } })),
      devices: this.devfs.list(),
      processes: this.processes().map((p) => ({
        pid: p.pid,
        fds: p.fds(),
        mappings: p.mappings().map((m) => ({ addr: m.addr, length: m.length, file: m.file?.path })),
      })),
      cpuhp: this.cpuhp.states(),
      providers,
      hooks: {
        syscore: this.power.syscore().map((o) => o.name),
        rebootNotifiers: this.power.rebootNotifiers().map((n) => n.name),
        freezers: this.power.freezers().map((f) => f.name),
        perfGuestCallbacks: this.hooks.perfGuestCallbacks,
        postedIntrWakeupHandler: this.hooks.hasPostedIntrWakeupHandler,
        emergencyVirtCallback: this.hooks.hasEmergencyVirtCallback,
        nmiHandlers: this.hooks.nmiHandlerCount,
      },
    };
  }
}
