/**
 * The scoped handle a KVM instance gets when it attaches to VAC.
 *
 * Everything the instance takes through its handle — usage-count references, user-return MSR slots, the per-CPU
 * running mark, and whatever it takes from the vendor's resources through their scoped views — is recorded on the
 * handle. An instance can only give back what it took (another instance's tag → EPERM, checked by each resource's
 * view), and `detach()` releases what is left in reverse order. Detaching while anything a vCPU or VM holds is
 * still taken (a resource's view not empty, a VM's usage reference, a CPU it runs on) is refused with EBUSY: a
 * module's VMs must be gone before it leaves.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import type { IrqRegistry, VacInstanceOps } from './irq.js';
import type { AnyVacResource, ScopedVacResource, VacResource, VacResourceKey } from './resource.js';
import type { UretGuestValue, UserReturnMsrs } from './uret.js';
import type { VirtualizationControl } from './virtualization.js';

/** Who holds a per-vCPU resource (a TLB tag, …): an instance's vCPU, as the instance names it. */
export interface VcpuTag {
  /** The KVM instance (module) name. */
  readonly instance: string;
  /** The VM number within the instance. */
  readonly vm: number;
  /** The vCPU id. */
  readonly vcpu: number;
}

/**
 * `kvm0/vm3/vcpu1`, as one flat string: modules keep a vCPU's label for its lifetime, and a template literal
 * would keep a tree of V8 cons strings instead (about three times the bytes).
 */
export function vcpuLabel(t: VcpuTag): string {
  return [t.instance, '/vm', t.vm, '/vcpu', t.vcpu].join('');
}

/** What a handle works on. */
export interface VacParts {
  readonly virt: VirtualizationControl;
  readonly irq: IrqRegistry;
  readonly uret: UserReturnMsrs;
  readonly resources: ReadonlyMap<VacResourceKey<unknown>, AnyVacResource>;
  readonly onDetach: (h: VacHandle) => void;
}

/**
 * What a KVM instance may ask of VAC: the methods of {@link VacHandle}. Legacy (pre-VAC) modules implement
 * the same port over private copies of some resources, so KVM and the vendor code need not know which.
 */
export interface VacPort {
  /** The instance name. */
  readonly name: string;
  /** `kvm_rebooting`. */
  readonly rebooting: boolean;
  /** Take a usage reference (`''` = the module's own, `vm<N>` = a VM's). */
  enableVirtualization(holder?: string): void;
  /** Drop a usage reference. */
  disableVirtualization(holder?: string): void;
  /** Whether virtualization is on on `cpu`. */
  isEnabled(cpu: number): boolean;
  /**
   * This instance's view of a resource the vendor's half of VAC brings (`port.resource(VPIDS)`).
   * @throws {@link UsageError} ERR_NOT_SUPPORTED when this VAC has no such resource (another vendor's key)
   */
  resource<V>(key: VacResourceKey<V, VacResource<V>>): V;
  /** Like {@link VacPort.resource}, but `undefined` when this VAC has no such resource (a feature these CPUs lack). */
  tryResource<V>(key: VacResourceKey<V, VacResource<V>>): V | undefined;
  /** `kvm_add_user_return_msr`. */
  addUserReturnMsr(msr: number): number;
  /** `kvm_find_user_return_msr`. */
  findUserReturnMsr(msr: number): number;
  /** `kvm_set_user_return_msr`. */
  setUserReturnMsr(cpu: number, slot: number, value: bigint, mask: bigint): 0 | 1;
  /** The guest values of a vCPU's user-return MSRs at vcpu_load: `kvm_set_user_return_msr` of each (all mask bits). */
  loadUserReturnMsrs(cpu: number, entries: ReadonlyArray<UretGuestValue>): void;
  /** Return to user space on `cpu` (`kvm_on_user_return`). */
  returnToUser(cpu: number): void;
  /** vcpu_load: this instance runs a vCPU on `cpu`. */
  vcpuLoad(cpu: number): void;
  /** vcpu_put. */
  vcpuPut(cpu: number): void;
  /** Leave VAC. */
  detach(): void;
}

/** A KVM instance's window onto VAC. */
export class VacHandle implements VacPort, Disposable {
  /** The instance name. */
  readonly name: string;
  readonly #ops: VacInstanceOps;
  readonly #p: VacParts;
  /** Usage references by holder (the module itself is `''`, a VM is `vm<N>`). */
  readonly #virtRefs = new Map<string, number>();
  /** This instance's view of each of the vendor's resources, in the order VAC lists them. */
  readonly #scoped = new Map<VacResourceKey<unknown>, ScopedVacResource<unknown>>();
  /** MSRs registered, in order, with counts. */
  readonly #uretMsrs: number[] = [];
  #attached = true;

  /** @internal Use `vac.attach()`. */
  constructor(ops: VacInstanceOps, parts: VacParts) {
    this.name = ops.name;
    this.#ops = ops;
    this.#p = parts;
    for (const [key, r] of parts.resources) this.#scoped.set(key, r.scope(ops.name));
  }

  #live(op: string): void {
    if (!this.#attached) throw this.#detached(op);
  }

  #detached(op: string): UsageError {
    return new UsageError('ERR_DESTROYED', `${this.name}: ${op} on a detached VAC handle`);
  }

  // ---- usage count ------------------------------------------------------------------------------

  /**
   * Take a usage reference (`kvm_enable_virtualization` / `hardware_enable_all`). `holder` names it
   * within the instance: `''` for the module's own (enable_virt_at_load), `vm<N>` for a VM.
   * @throws {@link KernelError} EBUSY when enabling fails (everything rolled back)
   */
  enableVirtualization(holder = ''): void {
    this.#live('enableVirtualization');
    this.#p.virt.get(this.#holderLabel(holder));
    this.#virtRefs.set(holder, (this.#virtRefs.get(holder) ?? 0) + 1);
  }

  /** Drop a usage reference taken with the same `holder`. EINVAL if it holds none. */
  disableVirtualization(holder = ''): void {
    this.#live('disableVirtualization');
    const n = this.#virtRefs.get(holder) ?? 0;
    if (n === 0) throw new KernelError('EINVAL', 'kvm_disable_virtualization', `${this.#holderLabel(holder)} holds no reference`);
    if (n === 1) this.#virtRefs.delete(holder);
    else this.#virtRefs.set(holder, n - 1);
    this.#p.virt.put(this.#holderLabel(holder));
  }

  #holderLabel(holder: string): string {
    return holder === '' ? this.name : `${this.name}/${holder}`;
  }

  /** Whether VAC has virtualization on on `cpu`. */
  isEnabled(cpu: number): boolean {
    return this.#p.virt.isEnabled(cpu);
  }

  /** `kvm_rebooting`. */
  get rebooting(): boolean {
    return this.#p.virt.rebooting;
  }

  // ---- the vendor's resources ------------------------------------------------------------------

  /** {@link VacPort.resource}. */
  resource<V>(key: VacResourceKey<V, VacResource<V>>): V {
    const v = this.tryResource(key);
    if (v === undefined) throw new UsageError('ERR_NOT_SUPPORTED', `${this.name}: this VAC has no resource '${key.name}' (${[...this.#scoped.keys()].map((k) => k.name).join(', ') || 'none'} here)`);
    return v;
  }

  /** {@link VacPort.tryResource}. */
  tryResource<V>(key: VacResourceKey<V, VacResource<V>>): V | undefined {
    this.#live('resource');
    return this.#scoped.get(key as VacResourceKey<unknown>)?.view as V | undefined;
  }

  // ---- user-return MSRs --------------------------------------------------------------------------

  /**
   * `kvm_add_user_return_msr`: the slot of `msr` (shared when another instance registered it).
   * @throws {@link KernelError} ENOSPC for a 17th distinct MSR; EIO when the MSR cannot be accessed
   */
  addUserReturnMsr(msr: number): number {
    this.#live('addUserReturnMsr');
    const slot = this.#p.uret.add(msr);
    this.#uretMsrs.push(msr);
    return slot;
  }

  /** `kvm_find_user_return_msr`: the slot of `msr`, or -1. */
  findUserReturnMsr(msr: number): number {
    return this.#p.uret.find(msr);
  }

  /** `kvm_set_user_return_msr` on `cpu`: returns 0, or 1 when the write faulted. */
  setUserReturnMsr(cpu: number, slot: number, value: bigint, mask: bigint): 0 | 1 {
    this.#live('setUserReturnMsr');
    return this.#p.uret.set(cpu, slot, value, mask);
  }

  /**
   * {@link VacPort.loadUserReturnMsrs}: `kvm_set_user_return_msr(slot, value, all ones)` of each entry on `cpu`, in
   * order (skipped as a whole when it would change nothing: `UserReturnMsrs.loadGuest`).
   */
  loadUserReturnMsrs(cpu: number, entries: ReadonlyArray<UretGuestValue>): void {
    if (entries.length !== 0) this.#live('setUserReturnMsr');
    this.#p.uret.loadGuest(cpu, entries);
  }

  /** The return-to-user notifier on `cpu` (`kvm_on_user_return`): host values back. */
  returnToUser(cpu: number): void {
    this.#p.uret.returnToUser(cpu);
  }

  // ---- running instance --------------------------------------------------------------------------

  /** vcpu_load: this instance now runs a vCPU on `cpu` (PMIs, NMIs there come to it). */
  vcpuLoad(cpu: number): void {
    this.#live('vcpuLoad');
    const other = this.#p.irq.runningOn(cpu);
    // One CPU runs one vCPU: the other instance's must be put first (its thread scheduled out).
    if (other !== undefined && other !== this.#ops) throw busyCpu(other, cpu);
    this.#p.irq.setRunning(cpu, this.#ops);
  }

  /** vcpu_put: this instance no longer runs a vCPU on `cpu`. */
  vcpuPut(cpu: number): void {
    this.#p.irq.clearRunning(cpu, this.#ops);
  }

  // ---- introspection and teardown -----------------------------------------------------------------

  /** What this handle holds right now (for tests and reports). */
  holdings(): {
    virtRefs: Array<[string, number]>;
    resources: Record<string, unknown>;
    userReturnMsrs: number[];
    runningOn: number[];
  } {
    const resources: Record<string, unknown> = {};
    for (const [key, scoped] of this.#scoped) resources[key.name] = scoped.holdings();
    return {
      virtRefs: [...this.#virtRefs],
      resources,
      userReturnMsrs: [...this.#uretMsrs],
      runningOn: this.#p.irq.cpusRunning(this.#ops),
    };
  }

  /** Whether the handle is still attached. */
  get attached(): boolean {
    return this.#attached;
  }

  /**
   * Leave VAC: release the MSR slots and the module's own usage references in reverse order.
   * @throws {@link KernelError} EBUSY while anything of its vCPUs or VMs is still held (a resource's view not
   * empty, a VM's usage reference, a CPU it runs on); nothing is released then
   */
  detach(): void {
    if (!this.#attached) return;
    // One kernel operation: the references it drops are delivered to listeners once the handle is gone.
    this.#p.virt.operation(() => this.#detach());
  }

  #detach(): void {
    const vmRefs = [...this.#virtRefs.keys()].filter((h) => h !== '');
    let live = vmRefs.length + this.#p.irq.cpusRunning(this.#ops).length;
    for (const scoped of this.#scoped.values()) live += scoped.held();
    if (live > 0) {
      throw new KernelError('EBUSY', 'vac_detach', `${this.name} still has live vCPUs or VMs (${live} resource(s) held)`);
    }
    for (const scoped of [...this.#scoped.values()].reverse()) scoped.close();
    for (let i = this.#uretMsrs.length - 1; i >= 0; i--) this.#p.uret.release(this.#uretMsrs[i] as number);
    this.#uretMsrs.length = 0;
    for (let n = this.#virtRefs.get('') ?? 0; n > 0; n--) this.#p.virt.put(this.name);
    this.#virtRefs.clear();
    this.#attached = false;
    this.#p.onDetach(this);
  }

  /** Same as {@link VacHandle.detach}. */
  [Symbol.dispose](): void {
    this.detach();
  }
}

function busyCpu(other: VacInstanceOps, cpu: number): KernelError {
  return new KernelError('EBUSY', 'vcpu_load', `${other.name} runs a vCPU on CPU ${cpu}`);
}
