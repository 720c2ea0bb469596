/**
 * Helpers of the VAC conformance suite: recording fake KVM instances, "failed and left the host exactly as
 * before" assertions, and the view of the single-owner hooks.
 *
 * @module
 */
import { expectKernelError, thrown, withoutCounters } from '@vac/test-support';
import { expect } from 'vitest';
import { KernelError, PERF_GUEST_ACTIVE, PERF_GUEST_USER, checkInvariants, errnoOf, vacOf } from '@vac/core';
import type { ErrnoCode, Host, HostSnapshot, Vac, VacHandle, VacInstanceOps, Violation } from '@vac/core';

export { thrown, withoutCounters };

/** The loaded VAC of `host` (fails the test when there is none). */
export function vacIn(host: Host): Vac {
  const vac = vacOf(host);
  if (vac === undefined) throw new Error('vac is not loaded');
  return vac;
}

/** Options of {@link expectFailure}. */
export interface FailureOptions {
  /**
   * The operation executed (and undid) virtualization instructions, so the hardware's counters may have
   * moved; everything else must be exactly as before.
   */
  readonly countersMayMove?: boolean;
}

/**
 * Run `fn`, expect a {@link KernelError} with `code` (name and errno), and expect `host.snapshot()` to equal
 * the snapshot taken just before (docs/spec.md §4 invariant 7).
 * @returns the error
 */
export function expectFailure(host: Host, fn: () => unknown, code: ErrnoCode, opts: FailureOptions = {}): KernelError {
  return expectKernelError(host, fn, code, opts.countersMayMove === true ? { countersMayMove: true } : {});
}

/** `checkInvariants(host)` must be empty. */
export function expectClean(host: Host): void {
  const v: Violation[] = checkInvariants(host);
  expect(v).toEqual([]);
}

/** The single-owner hooks and the hotplug states, as the host shows them. */
export function hooksOf(host: Host): { hooks: HostSnapshot['hooks']; cpuhp: HostSnapshot['cpuhp'] } {
  const s = host.snapshot();
  return { hooks: s.hooks, cpuhp: s.cpuhp };
}

/** Per-CPU hardware virtualization state (VMX operation / EFER.SVME) of every CPU. */
export function hardwareOn(host: Host): boolean[] {
  return host.cpus.map((c) => host.hardware.virt.isEnabled(c.id));
}

/** VAC's per-CPU enable state of every CPU. */
export function vacOn(host: Host): boolean[] {
  return vacIn(host)
    .cpus()
    .map((c) => c.enabled);
}

/** Online state of every CPU. */
export function online(host: Host): boolean[] {
  return host.cpus.map((c) => c.online);
}

/** Warnings logged since `from` (an index into `host.warnings`), as plain messages. */
export function warningsSince(host: Host, from: number): string[] {
  return host.warnings.slice(from).map((w) => w.message);
}

/** Record the events `names` of `host`, in order, as `name:cpu` (or `name:count` for `virt:usage`). */
export function recordEvents(host: Host, names: readonly string[]): string[] {
  const log: string[] = [];
  host.events.onAny((name, payload) => {
    if (!names.includes(name)) return;
    const p = payload as unknown as Record<string, unknown>;
    if (name === 'virt:usage') log.push(`${name}:${String(p['holder'])}:${String(p['count'])}`);
    else if ('cpu' in p) log.push(`${name}:${String(p['cpu'])}`);
    else log.push(`${name}:${String(p['what'])}`);
  });
  return log;
}

/**
 * A fake KVM instance: the {@link VacInstanceOps} VAC may call, each of which records what it was asked,
 * and a few actions through its handle (load/put a vCPU on a CPU). Its vCPU on CPU `n` is
 * `<name>/vm0/vcpu<n>`, with guest RIP `0x<index+1>000 + n`.
 */
export class FakeKvm {
  /** The instance name. */
  readonly name: string;
  /** Every call VAC made, in order: `pmi:state:<cpu>`, `pmi:ip:<cpu>`, `cpuOffline:<cpu>:<enabled|disabled>`, … */
  readonly calls: string[] = [];
  /** The CPUs this instance believes it runs a vCPU on (it loaded there and did not put). */
  readonly loaded = new Set<number>();
  /** Per CPU: labels of the vCPUs blocked there (woken by a posted-interrupt wakeup). */
  readonly blocked = new Map<number, string[]>();
  /** Whether its guests run in user mode (perf `PERF_GUEST_USER`). */
  guestUser = false;
  /** Its VAC handle. */
  readonly handle: VacHandle;
  /** The ops given to `vac.attach`. */
  readonly ops: VacInstanceOps;
  readonly #index: number;
  readonly #vac: Vac;

  constructor(vac: Vac, name: string, index: number) {
    this.name = name;
    this.#index = index;
    this.#vac = vac;
    const self = this;
    this.ops = {
      name,
      perfGuestState(cpu) {
        self.calls.push(`pmi:state:${cpu}`);
        if (!self.loaded.has(cpu)) return 0;
        return PERF_GUEST_ACTIVE | (self.guestUser ? PERF_GUEST_USER : 0);
      },
      perfGuestIp(cpu) {
        self.calls.push(`pmi:ip:${cpu}`);
        return self.ip(cpu);
      },
      runningLabel(cpu) {
        return self.loaded.has(cpu) ? self.label(cpu) : undefined;
      },
      postedIntrWakeup(cpu) {
        self.calls.push(`pi:${cpu}`);
        const woken = self.blocked.get(cpu) ?? [];
        self.blocked.delete(cpu);
        return woken;
      },
      nmiExit(cpu) {
        self.calls.push(`nmi:${cpu}`);
        return self.loaded.has(cpu) ? self.label(cpu) : undefined;
      },
      pmiExit(cpu) {
        self.calls.push(`pmi:exit:${cpu}`);
        return self.loaded.has(cpu) ? self.label(cpu) : undefined;
      },
      cpuOffline(cpu) {
        self.calls.push(`cpuOffline:${cpu}:${self.#vac.cpu(cpu).enabled ? 'enabled' : 'disabled'}`);
        // kvm_offline_cpu's consequence for a module: its vCPUs there are put (the thread migrates).
        if (self.loaded.has(cpu)) self.put(cpu);
      },
      kickAll(reason) {
        self.calls.push(`kickAll:${reason}`);
      },
    };
    this.handle = vac.attach(this.ops);
  }

  /** The label of its vCPU on `cpu`. */
  label(cpu: number): string {
    return `${this.name}/vm0/vcpu${cpu}`;
  }

  /** The guest RIP of its vCPU on `cpu`. */
  ip(cpu: number): bigint {
    return BigInt((this.#index + 1) * 0x1000 + cpu);
  }

  /** vcpu_load on `cpu`. */
  load(cpu: number): void {
    this.handle.vcpuLoad(cpu);
    this.loaded.add(cpu);
  }

  /** vcpu_put from `cpu`. */
  put(cpu: number): void {
    this.handle.vcpuPut(cpu);
    this.loaded.delete(cpu);
  }

  /** The calls recorded so far, then forget them. */
  take(): string[] {
    const out = [...this.calls];
    this.calls.length = 0;
    return out;
  }
}

/** Attach `names.length` fake instances (`kvm0`, `kvm1`, … by default). */
export function attachFakes(host: Host, names: readonly string[] = ['kvm0', 'kvm1']): FakeKvm[] {
  const vac = vacIn(host);
  return names.map((n, i) => new FakeKvm(vac, n, i));
}
