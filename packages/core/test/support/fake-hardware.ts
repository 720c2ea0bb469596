/**
 * A minimal test double of a vendor hardware model (`HardwareModel` from src/hardware.ts), belonging to no real
 * vendor: the core is tested without knowing VMX or SVM.
 *
 * Per CPU it models whether VAC turned virtualization on, whether a foreign hypervisor owns it, and an injectable
 * enable fault. Its VAC half brings one resource of its own — a host-wide tag space (`TAGS`, tags 1 … `tags`), a
 * small stand-in for the ID spaces real vendors bring — so the core's resource registry is exercised here too. No
 * CPUID or MSR semantics, no VMCS/VMCB. Use it wherever a test needs a host but not a particular vendor:
 *
 * ```ts
 * const host = createHost({ cpus: 4, hardware: fakeHardware() });
 * ```
 *
 * @module
 */
import { KernelError, UsageError, VacResourceKey } from '../../src/index.js';
import type {
  AnyVacResource,
  ErrnoCode,
  FaultMode,
  HardwareEnv,
  HardwareModel,
  HostHardware,
  ScopedVacResource,
  VacResource,
  VacResourceContext,
  Violation,
  VirtOps,
} from '../../src/index.js';

/** Options of {@link fakeHardware}. */
export interface FakeHardwareOptions {
  /** The model name (default `'fake'`). */
  readonly name?: string;
  /** CPUs on which virtualization is unusable, with the kernel's message (as a BIOS lock would give). */
  readonly unsupported?: Readonly<Record<number, string>>;
  /** How many tags the `TAGS` resource has (default 8). */
  readonly tags?: number;
}

/** The per-CPU counters of the fake. */
export interface FakeCounters {
  /** Successful enables. */
  readonly enable: number;
  /** Disables of an enabled CPU. */
  readonly disable: number;
  /** Emergency disables (any state). */
  readonly emergency: number;
  /** Enables that failed (foreign owner, injected fault, already on). */
  readonly enableFailed: number;
}

/** The fake's {@link HostHardware}, with a few extra read-outs for tests. */
export interface FakeHostHardware extends HostHardware {
  /** The CPUs VAC currently has virtualization enabled on, ascending. */
  enabledCpus(): number[];
  /** Whether a foreign hypervisor owns `cpu`. */
  foreignOwned(cpu: number): boolean;
  /** Every call VAC made on the virt ops, in order (`'enable:3'`, `'disable:3'`, `'emergency:0'`). */
  readonly calls: string[];
}

/** What an instance may do with the fake's tags. */
export interface TagView {
  /** Take the lowest free tag for `owner`; ENOSPC when none is left. */
  take(owner: string): number;
  /** Give a tag back (EPERM if this instance does not hold it). */
  give(tag: number): void;
}

/** The fake's resource: a host-wide tag space. */
export interface TagResource extends VacResource<TagView> {
  /** Tag → owner, ascending. */
  holders(): Array<[number, string]>;
  /** CPUs whose per-CPU state was reset by `cpuEnabled`, in order. */
  readonly cpuResets: readonly number[];
}

/** The key of the fake's tag resource. */
export const TAGS: VacResourceKey<TagView, TagResource> = new VacResourceKey<TagView, TagResource>('tags');

function tagResource(ctx: VacResourceContext, size: number): TagResource {
  const owners = new Map<number, string>();
  const cpuResets: number[] = [];
  return {
    key: TAGS,
    cpuResets,
    scope(instance: string): ScopedVacResource<TagView> {
      const mine = new Set<number>();
      let closed = false;
      const view: TagView = {
        take(owner) {
          if (closed) throw new UsageError('ERR_DESTROYED', `${instance}: take after it left VAC`);
          for (let t = 1; t <= size; t++) {
            if (!owners.has(t)) {
              owners.set(t, owner);
              mine.add(t);
              return t;
            }
          }
          throw new KernelError('ENOSPC', 'fake_take_tag', `no tag left (${ctx.owner})`);
        },
        give(tag) {
          if (!mine.has(tag)) throw new KernelError('EPERM', 'fake_give_tag', `${instance} does not hold tag ${tag}`);
          mine.delete(tag);
          owners.delete(tag);
        },
      };
      return { view, held: () => mine.size, holdings: () => [...mine].sort((a, b) => a - b), close: () => (closed = true) };
    },
    cpuEnabled(cpu) {
      cpuResets.push(cpu);
    },
    held: () => owners.size,
    holders: () => [...owners].sort(([a], [b]) => a - b),
    snapshot: () => [...owners].sort(([a], [b]) => a - b),
    check: () => [],
  };
}

interface CpuState {
  enabled: boolean;
  foreign: boolean;
  fault: FaultMode;
  enable: number;
  disable: number;
  emergency: number;
  enableFailed: number;
}

/**
 * Build a fake hardware model. Each host that uses it gets its own state (`create` is called per host).
 */
export function fakeHardware(opts: FakeHardwareOptions = {}): HardwareModel {
  const model: HardwareModel = {
    name: opts.name ?? 'fake',
    vendor: 'fake',
    create(env: HardwareEnv): FakeHostHardware {
      return createFakeHostHardware(model, env, opts);
    },
  };
  return model;
}

function createFakeHostHardware(model: HardwareModel, env: HardwareEnv, opts: FakeHardwareOptions): FakeHostHardware {
  const n = env.cpus.length;
  const state: CpuState[] = Array.from({ length: n }, () => ({
    enabled: false,
    foreign: false,
    fault: 'off' as FaultMode,
    enable: 0,
    disable: 0,
    emergency: 0,
    enableFailed: 0,
  }));
  const calls: string[] = [];

  const at = (op: string, cpu: number): CpuState => {
    const s = Number.isInteger(cpu) ? state[cpu] : undefined;
    if (s === undefined) throw new UsageError('ERR_NO_SUCH_CPU', `fake hardware: ${op}: no CPU ${String(cpu)}`);
    return s;
  };

  const virt: VirtOps = {
    name: 'fake',
    unsupported(cpu) {
      at('unsupported', cpu);
      return opts.unsupported?.[cpu];
    },
    enableCpu(cpu): ErrnoCode | undefined {
      const s = at('enableCpu', cpu);
      calls.push(`enable:${cpu}`);
      let err: ErrnoCode | undefined;
      // Someone (a foreign hypervisor, or an earlier enable) owns the CPU's virtualization → -EBUSY.
      if (s.foreign || s.enabled) err = 'EBUSY';
      else if (s.fault === 'always') err = 'EFAULT';
      else if (s.fault === 'once') {
        s.fault = 'off';
        err = 'EFAULT';
      }
      if (err !== undefined) {
        s.enableFailed++;
        return err;
      }
      s.enabled = true;
      s.enable++;
      return undefined;
    },
    disableCpu(cpu) {
      const s = at('disableCpu', cpu);
      calls.push(`disable:${cpu}`);
      if (!s.enabled) return;
      s.enabled = false;
      s.disable++;
    },
    emergencyDisable(cpu) {
      const s = at('emergencyDisable', cpu);
      calls.push(`emergency:${cpu}`);
      s.emergency++;
      s.enabled = false;
    },
    isEnabled(cpu) {
      const s = at('isEnabled', cpu);
      return s.enabled || s.foreign;
    },
    enabledByVac(cpu) {
      return at('enabledByVac', cpu).enabled;
    },
    vacResources(ctx): readonly AnyVacResource[] {
      return [tagResource(ctx, opts.tags ?? 8)];
    },
  };

  return {
    model,
    virt,
    calls,
    counters(cpu): Readonly<FakeCounters & Record<string, number>> {
      const s = at('counters', cpu);
      return Object.freeze({ enable: s.enable, disable: s.disable, emergency: s.emergency, enableFailed: s.enableFailed });
    },
    check(): Violation[] {
      const out: Violation[] = [];
      state.forEach((s, cpu) => {
        if (s.enabled && s.foreign) out.push({ invariant: 1, message: `CPU ${cpu} has two owners of its virtualization`, cpu });
      });
      return out;
    },
    /** Hardware state only: the fault knobs and the statistics counters are not part of it. */
    snapshot(): unknown {
      return state.map((s) => ({ enabled: s.enabled, foreign: s.foreign }));
    },
    setForeignOwner(cpu, owned) {
      at('setForeignOwner', cpu).foreign = owned;
    },
    injectEnableFault(cpu, mode) {
      at('injectEnableFault', cpu).fault = mode;
    },
    enabledCpus() {
      return state.flatMap((s, cpu) => (s.enabled ? [cpu] : []));
    },
    foreignOwned(cpu) {
      return at('foreignOwned', cpu).foreign;
    },
  };
}
