/**
 * SMT siblings and trust domains. Two threads of one core share its L1 data cache and fill buffers while both run,
 * so a per-module mitigation (`vmentry_l1d_flush=always` on the module of the untrusted guests) protects nothing
 * while the sibling thread runs another trust domain's guest (L1TF, MDS): the flush happens on one thread's VM entry,
 * the other thread keeps filling the cache. Hosts close that gap by keeping each core in one trust domain — pinning
 * vCPU threads by whole cores — or with core scheduling (`prctl(PR_SCHED_CORE)`, which lets only tasks of one
 * cookie share a core at a time; not modelled here).
 *
 * - {@link CoreAllocator}: a CPU placement that never gives two trust domains threads of one core.
 * - {@link checkSmtIsolation}: the static check — the vCPU threads' CPUs against the topology; a core whose threads
 *   are given to guests of different domains is a violation.
 * - {@link SmtMonitor}: the dynamic check — every `vcpu:load` on a CPU while a sibling thread has another domain's
 *   vCPU loaded.
 *
 * A VM's trust domain is {@link trustDomainOf} its needs: its `trustDomain` (a tenant, say), or `trusted` /
 * `untrusted` from {@link VmNeeds.trusted}. The topology is the host's (`host.topology`, as
 * `/sys/devices/system/cpu/cpuN/topology/thread_siblings_list` shows it).
 *
 * @module
 */
import { UsageError, type Host, type Process } from '@vac/core';
import type { VmNeeds } from './placement.js';

/** A VM's trust domain: `vm.trustDomain`, else `untrusted` for an untrusted VM and `trusted` for the others. */
export function trustDomainOf(vm: VmNeeds): string {
  return vm.trustDomain ?? (vm.trusted === false ? 'untrusted' : 'trusted');
}

/**
 * Gives vCPUs CPUs so that every core holds one trust domain: a domain's vCPUs go first to the free threads of cores
 * it already holds, then to whole free cores (lowest first). One vCPU thread per CPU. Only online CPUs are given.
 */
export class CoreAllocator {
  readonly #host: Host;
  /** CPU → the domain it is given to. */
  readonly #given = new Map<number, string>();

  /** An allocator over `host`'s CPUs and topology, with nothing given yet. */
  constructor(host: Host) {
    this.#host = host;
  }

  /** The domain holding each core (the domain of any of its given threads), by core; `undefined` for a free core. */
  cores(): Array<string | undefined> {
    const topo = this.#host.topology;
    return Array.from({ length: topo.cores }, (_, core) => topo.cpusOfCore(core).map((c) => this.#given.get(c)).find((d) => d !== undefined));
  }

  /**
   * CPUs for `vcpus` vCPUs of `domain` (see the class comment), ascending by core then thread; `undefined` when they
   * do not fit (nothing is given then).
   *
   * @throws UsageError for a `vcpus` that is not a positive integer or an empty domain
   */
  allocate(domain: string, vcpus: number): number[] | undefined {
    if (!Number.isSafeInteger(vcpus) || vcpus < 1) throw new UsageError('ERR_OUT_OF_RANGE', `CoreAllocator: vcpus must be a positive integer, got ${String(vcpus)}`);
    if (typeof domain !== 'string' || domain === '') throw new UsageError('ERR_INVALID_ARG', 'CoreAllocator: the trust domain must be a non-empty string');
    const topo = this.#host.topology;
    const online = (c: number): boolean => this.#host.cpus[c]?.online === true;
    const owners = this.cores();
    const free = (core: number): number[] => topo.cpusOfCore(core).filter((c) => online(c) && !this.#given.has(c));
    const mine = owners.flatMap((d, core) => (d === domain ? free(core) : []));
    const whole = owners.flatMap((d, core) => (d === undefined ? free(core) : []));
    const cpus = [...mine, ...whole].slice(0, vcpus);
    if (cpus.length < vcpus) return undefined;
    for (const c of cpus) this.#given.set(c, domain);
    return cpus;
  }

  /** Give `cpus` back (a VM that went away). */
  release(cpus: readonly number[]): void {
    for (const c of cpus) this.#given.delete(c);
  }
}

/** A core given to more than one trust domain. */
export interface SmtViolation {
  /** The core. */
  readonly core: number;
  /** Its CPUs (threads). */
  readonly cpus: readonly number[];
  /** The domains on it, sorted. */
  readonly domains: readonly string[];
  /** The processes on it (`name:pid`), in CPU order. */
  readonly processes: readonly string[];
}

/**
 * The static check: every live thread of a process `domainOf` gives a domain (the VMMs; `undefined` for the others),
 * on the CPU it is pinned to (or runs on), grouped by core; the cores with more than one domain are violations.
 */
export function checkSmtIsolation(host: Host, domainOf: (proc: Process) => string | undefined): SmtViolation[] {
  const topo = host.topology;
  const byCore = new Map<number, Array<{ cpu: number; domain: string; proc: Process }>>();
  for (const t of host.scheduler.threads()) {
    const domain = domainOf(t.proc);
    if (domain === undefined) continue;
    const cpu = t.affinity ?? t.cpu;
    const core = topo.coreOf(cpu);
    const list = byCore.get(core) ?? [];
    list.push({ cpu, domain, proc: t.proc });
    byCore.set(core, list);
  }
  const out: SmtViolation[] = [];
  for (const [core, list] of [...byCore].sort((a, b) => a[0] - b[0])) {
    const domains = [...new Set(list.map((x) => x.domain))].sort();
    if (domains.length < 2) continue;
    const procs = [...list].sort((a, b) => a.cpu - b.cpu || a.proc.pid - b.proc.pid).map((x) => `${x.proc.name}:${x.proc.pid}`);
    out.push({ core, cpus: topo.cpusOfCore(core), domains, processes: [...new Set(procs)] });
  }
  return out;
}

/** One `vcpu:load` on a core whose other thread ran another trust domain's vCPU in the same tick. */
export interface SmtLoadViolation {
  /** The event's sequence number. */
  readonly seq: number;
  /** The tick. */
  readonly tick: number;
  /** The CPU the vCPU was loaded on. */
  readonly cpu: number;
  /** The sibling CPU with the other domain's vCPU. */
  readonly sibling: number;
  /** The loaded vCPU's domain. */
  readonly domain: string;
  /** The sibling's domain. */
  readonly siblingDomain: string;
}

/**
 * The dynamic check: listens to `vcpu:load` / `vcpu:put` and records every load of a vCPU on a CPU whose sibling
 * thread ran a vCPU of another trust domain in the same tick (or still has one loaded) — the times two trust
 * domains shared a core's caches. The model runs every CPU's slice of a tick in the same simulated time, so two
 * sibling threads that load vCPUs in one tick share the core during it. A vCPU's domain is `domainOf` the process of
 * the thread current on the CPU (the vCPU thread); a process it gives `undefined` is not counted.
 */
export class SmtMonitor {
  /** The loads beside another domain, in order. */
  readonly violations: SmtLoadViolation[] = [];
  /** Every `vcpu:load` seen. */
  loads = 0;
  /** `tick:core` of every core-tick that ran more than one domain. */
  readonly #mixed = new Set<string>();
  /** Per CPU: the vCPU's domain loaded now, the tick of its last load, the domains loaded in that tick. */
  readonly #loaded: Array<string | undefined>;
  readonly #tick: number[];
  readonly #inTick: Array<Set<string>>;
  readonly #off: Array<() => void>;

  /** Start listening on `host`. */
  constructor(host: Host, domainOf: (proc: Process) => string | undefined) {
    const topo = host.topology;
    const n = host.cpus.length;
    this.#loaded = new Array<string | undefined>(n).fill(undefined);
    this.#tick = new Array<number>(n).fill(-1);
    this.#inTick = Array.from({ length: n }, () => new Set<string>());
    this.#off = [
      host.events.on('vcpu:load', (e) => {
        this.loads++;
        const t = host.scheduler.currentOn(e.cpu);
        const domain = t === undefined ? undefined : domainOf(t.proc);
        this.#loaded[e.cpu] = domain;
        if (domain === undefined) return;
        this.#ranIn(e.cpu, e.tick).add(domain);
        for (const s of topo.otherThreadsOf(e.cpu)) {
          const theirs = new Set(this.#tick[s] === e.tick ? this.#inTick[s] : []);
          const now = this.#loaded[s];
          if (now !== undefined) theirs.add(now);
          const other = [...theirs].sort().find((d) => d !== domain);
          if (other === undefined) continue;
          this.violations.push({ seq: e.seq, tick: e.tick, cpu: e.cpu, sibling: s, domain, siblingDomain: other });
          this.#mixed.add(`${e.tick}:${topo.coreOf(e.cpu)}`);
        }
      }),
      host.events.on('vcpu:put', (e) => {
        this.#loaded[e.cpu] = undefined;
      }),
    ];
  }

  /** The domains `cpu` ran in `tick` (a fresh set when the tick is new). */
  #ranIn(cpu: number, tick: number): Set<string> {
    if (this.#tick[cpu] !== tick) {
      this.#tick[cpu] = tick;
      this.#inTick[cpu] = new Set();
    }
    return this.#inTick[cpu] as Set<string>;
  }

  /**
   * Core-ticks in which a vCPU was loaded beside another trust domain's (a load is what the monitor sees: a core
   * whose two vCPUs stay loaded through a whole tick without a new load is not counted again — a lower bound of the
   * time the domains shared the core, and 0 only when they never did).
   */
  get mixedCoreTicks(): number {
    return this.#mixed.size;
  }

  /** Stop listening. */
  stop(): void {
    for (const off of this.#off) off();
  }
}
