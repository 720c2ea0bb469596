/**
 * A third vendor, "toy": the proof that VAC is a registry and not a renaming. Written without changing a line of
 * @vac/core — only its public contracts: a hardware model (`HardwareModel`, `HostHardware`, `VirtOps`), a resource
 * of its own for VAC to share between modules (a per-CPU TLB-tag allocator, `TOY_TAGS`), and KVM's vendor ops
 * (`KvmVendorOps`) with which `kvm({ vendors: [toyKvmOps] })` runs the minimal VMM.
 *
 * The toy CPU turns virtualization on and off with a per-CPU flag. Its TLB tags are per CPU and generational, a
 * small cousin of SVM's ASIDs: a vCPU entering on a CPU takes the CPU's next tag unless it holds a current one
 * there; when a CPU runs out of tags its generation moves on (every vCPU then takes a new one), and every kept
 * enable of the CPU starts a new generation too.
 *
 * @module
 */
import { KernelError, UsageError, VacResourceKey, vcpuLabel } from '@vac/core';
import type {
  AnyVacResource,
  ErrnoCode,
  FaultMode,
  HardwareEnv,
  HardwareModel,
  Host,
  HostHardware,
  KvmVendorOps,
  MemEncryptCommand,
  ScopedVacResource,
  UniqueId,
  VacPort,
  VacResource,
  VacResourceContext,
  VcpuTag,
  VendorModule,
  VendorVcpu,
  VendorVm,
  Violation,
  VirtOps,
} from '@vac/core';

/** Tags per CPU and generation. */
export const TOY_TAGS_PER_CPU = 4;

/** A grant of a toy tag on one CPU. */
export interface ToyTagGrant {
  readonly tag: number;
  readonly generation: number;
}

/** What a KVM instance may do with toy tags. */
export interface ToyTagView {
  /** The tag `vcpu` holds on `cpu` if it is of the CPU's current generation, else a new one. */
  take(cpu: number, vcpu: VcpuTag): ToyTagGrant;
  /** The vCPU is gone: forget its tags on every CPU. */
  release(vcpu: VcpuTag): void;
}

/** The toy tag space of a host, shared by every KVM module through VAC. */
export class ToyTagResource implements VacResource<ToyTagView> {
  readonly key = TOY_TAGS;
  readonly #ctx: VacResourceContext;
  /** Per CPU: the generation, the next tag, and who holds which tag in this generation. */
  readonly #cpus: Array<{ generation: number; next: number; holders: Map<VcpuTag, number> }>;
  /** Two vCPUs given one tag on one CPU in one generation: must never happen. */
  readonly conflicts: string[] = [];

  constructor(ctx: VacResourceContext) {
    this.#ctx = ctx;
    this.#cpus = Array.from({ length: ctx.nrCpus }, () => ({ generation: 0, next: 1, holders: new Map<VcpuTag, number>() }));
  }

  /** The state of one CPU, for tests: generation and holders by label. */
  cpuState(cpu: number): { readonly generation: number; readonly holders: Array<[number, string]> } {
    const c = this.#cpus[cpu];
    if (c === undefined) throw new UsageError('ERR_NO_SUCH_CPU', `toy: no CPU ${cpu}`);
    return { generation: c.generation, holders: [...c.holders].map(([t, tag]) => [tag, vcpuLabel(t)] as [number, string]).sort(([a], [b]) => a - b) };
  }

  scope(instance: string): ScopedVacResource<ToyTagView> {
    const mine = new Set<VcpuTag>();
    const cpus = this.#cpus;
    const conflicts = this.conflicts;
    const view: ToyTagView = {
      take(cpu, vcpu) {
        if (vcpu.instance !== instance) throw new KernelError('EPERM', 'toy_take_tag', `${instance} cannot act for ${vcpu.instance}`);
        const c = cpus[cpu];
        if (c === undefined) throw new UsageError('ERR_NO_SUCH_CPU', `toy: no CPU ${cpu}`);
        const held = c.holders.get(vcpu);
        if (held !== undefined) return { tag: held, generation: c.generation };
        if (c.next > TOY_TAGS_PER_CPU) {
          c.generation++;
          c.next = 1;
          c.holders.clear();
        }
        const tag = c.next++;
        for (const [other, t] of c.holders) if (t === tag) conflicts.push(`tag ${tag} on CPU ${cpu}: ${vcpuLabel(other)} and ${vcpuLabel(vcpu)}`);
        c.holders.set(vcpu, tag);
        mine.add(vcpu);
        return { tag, generation: c.generation };
      },
      release(vcpu) {
        if (!mine.delete(vcpu)) return;
        for (const c of cpus) c.holders.delete(vcpu);
      },
    };
    return { view, held: () => mine.size, holdings: () => [...mine].map(vcpuLabel).sort(), close: () => mine.clear() };
  }

  /** A kept enable starts the CPU's next generation. */
  cpuEnabled(cpu: number): void {
    const c = this.#cpus[cpu];
    if (c === undefined) return;
    c.generation++;
    c.next = 1;
    c.holders.clear();
  }

  held(): number {
    const vcpus = new Set<VcpuTag>();
    for (const c of this.#cpus) for (const v of c.holders.keys()) vcpus.add(v);
    return vcpus.size;
  }

  snapshot(): unknown {
    return this.#cpus.map((_, cpu) => (this.#ctx.isEnabled(cpu) ? this.cpuState(cpu) : null));
  }

  check(): Violation[] {
    return this.conflicts.map((message) => ({ invariant: 3, message }));
  }
}

/** The key of the toy tag resource. */
export const TOY_TAGS: VacResourceKey<ToyTagView, ToyTagResource> = new VacResourceKey<ToyTagView, ToyTagResource>('toy-tags');

/** The toy hardware of one host. */
export interface ToyHardware extends HostHardware {
  /** Per CPU: enables and disables. */
  counters(cpu: number): Readonly<{ on: number; off: number }>;
}

/** The toy hardware model. */
export function toy(): HardwareModel {
  const model: HardwareModel = {
    name: 'toy',
    vendor: 'toy',
    create(env: HardwareEnv): ToyHardware {
      const n = env.cpus.length;
      const on = new Uint8Array(n);
      const vac = new Uint8Array(n);
      const foreign = new Uint8Array(n);
      const faults: FaultMode[] = new Array<FaultMode>(n).fill('off');
      const counts = Array.from({ length: n }, () => ({ on: 0, off: 0 }));
      const at = (cpu: number): number => {
        if (!Number.isInteger(cpu) || cpu < 0 || cpu >= n) throw new UsageError('ERR_NO_SUCH_CPU', `toy: no CPU ${String(cpu)}`);
        return cpu;
      };
      env.events.describe('virt:enable', { label: 'TOYON' });
      env.events.describe('virt:disable', { label: 'TOYOFF' });
      const turnOff = (cpu: number): void => {
        if (on[cpu] === 0) return;
        on[cpu] = 0;
        vac[cpu] = 0;
        (counts[cpu] as { off: number }).off++;
        env.events.emit('virt:disable', { cpu });
      };
      const virt: VirtOps = {
        name: 'toy',
        unsupported: (cpu) => (at(cpu), undefined),
        enableCpu(cpu): ErrnoCode | undefined {
          at(cpu);
          if (on[cpu] === 1 || foreign[cpu] === 1) return 'EBUSY';
          if (faults[cpu] !== 'off') {
            if (faults[cpu] === 'once') faults[cpu] = 'off';
            return 'EIO';
          }
          on[cpu] = 1;
          vac[cpu] = 1;
          (counts[cpu] as { on: number }).on++;
          env.events.emit('virt:enable', { cpu });
          return undefined;
        },
        disableCpu: (cpu) => turnOff(at(cpu)),
        emergencyDisable: (cpu) => turnOff(at(cpu)),
        isEnabled: (cpu) => on[at(cpu)] === 1 || foreign[cpu] === 1,
        enabledByVac: (cpu) => vac[at(cpu)] === 1,
        vacResources: (ctx): readonly AnyVacResource[] => [new ToyTagResource(ctx)],
      };
      return {
        model,
        virt,
        counters: (cpu) => ({ ...(counts[at(cpu)] as { on: number; off: number }) }),
        check: () => [],
        snapshot: () => ({ on: [...on], foreign: [...foreign] }),
        setForeignOwner: (cpu, owned) => void (foreign[at(cpu)] = owned ? 1 : 0),
        injectEnableFault: (cpu, mode) => void (faults[at(cpu)] = mode),
      };
    },
  };
  return model;
}

/** The toy vendor's half of KVM. */
export const toyKvmOps: KvmVendorOps = {
  name: 'toy',
  params: {},
  usable: (host: Host) => host.hardware.virt.name === 'toy',
  setup(env): VendorModule {
    const tags = env.vac.resource(TOY_TAGS);
    return {
      extensions: new Map(),
      userReturn: [],
      createVm: (): VendorVm => ({
        memEncrypt: false,
        memEncryptOp(_cmd: MemEncryptCommand): number {
          throw new KernelError('ENOTTY', 'KVM_MEMORY_ENCRYPT_OP', 'the toy has no memory encryption');
        },
        encryption: 'none',
        uniqueIds: (): readonly UniqueId[] => [],
        destroy: () => undefined,
      }),
      createVcpu: (_vm, vcpu): VendorVcpu => new ToyVcpu(vcpu, tags, env.vac),
      teardown: () => undefined,
    };
  },
};

/** A toy vCPU: it takes a tag on the CPU it enters on. */
class ToyVcpu implements VendorVcpu {
  readonly stats = { entries: 0, newTags: 0 };
  readonly #vcpu: VcpuTag;
  readonly #tags: ToyTagView;
  readonly #vac: VacPort;
  #tag = 0;
  #generation = -1;
  #cpu = -1;

  constructor(vcpu: VcpuTag, tags: ToyTagView, vac: VacPort) {
    this.#vcpu = vcpu;
    this.#tags = tags;
    this.#vac = vac;
  }

  load(cpu: number): void {
    this.#cpu = cpu;
  }

  put(_cpu: number): void {
    this.#cpu = -1;
  }

  prepareEntry(cpu: number): void {
    if (!this.#vac.isEnabled(cpu)) throw new UsageError('ERR_INVALID_STATE', 'toy: entry on a CPU with virtualization off');
    const g = this.#tags.take(cpu, this.#vcpu);
    if (g.tag !== this.#tag || g.generation !== this.#generation) this.stats.newTags++;
    this.#tag = g.tag;
    this.#generation = g.generation;
  }

  enter(cpu: number): bigint | undefined {
    if (cpu !== this.#cpu) throw new UsageError('ERR_INVALID_STATE', `toy: enter on CPU ${cpu}, loaded on ${this.#cpu}`);
    this.stats.entries++;
    return undefined;
  }

  exit(_cpu: number): void {}

  tlbTag(): { readonly kind: string; readonly value: number } {
    return { kind: 'toy-tag', value: this.#tag };
  }

  uniqueIds(): readonly UniqueId[] {
    return [];
  }

  free(): void {
    this.#tags.release(this.#vcpu);
  }
}
