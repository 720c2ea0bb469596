/**
 * The scoped handle a KVM instance gets when it attaches to VAC.
 *
 * Everything the instance takes through its handle — usage-count references, VPIDs, ASIDs, SEV ASIDs,
 * user-return MSR slots, the per-CPU running mark — is recorded on the handle. An instance can only give
 * back what it took (another instance's VPID → EPERM), and `detach()` releases what is left in reverse
 * order. Detaching while vCPU resources are still held (a VPID, an ASID, an SEV ASID, a VM's usage
 * reference, a CPU it runs on) is refused with EBUSY: a module's VMs must be gone before it leaves.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import type { AsidAllocator, AsidGrant } from './asid.js';
import type { IrqRegistry, VacInstanceOps } from './irq.js';
import type { SevAsidAllocator } from './sev.js';
import type { UserReturnMsrs } from './uret.js';
import type { VirtualizationControl } from './virtualization.js';
import { VMX_NR_VPIDS, type VpidAllocator } from './vpid.js';
import { IdBitmap } from './bitmap.js';

/** Who holds a VPID or an ASID: an instance's vCPU, as the instance names it. */
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

/** @internal What a handle works on. */
export interface VacParts {
  readonly virt: VirtualizationControl;
  readonly irq: IrqRegistry;
  readonly uret: UserReturnMsrs;
  readonly vpids: VpidAllocator<VcpuTag> | undefined;
  readonly asids: AsidAllocator<VcpuTag> | undefined;
  readonly sev: SevAsidAllocator<VcpuTag> | undefined;
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
  /** `allocate_vpid`. */
  allocateVpid(tag: VcpuTag): number;
  /** `free_vpid`. */
  freeVpid(vpid: number): void;
  /** `new_asid`. */
  newAsid(cpu: number, tag: VcpuTag): AsidGrant;
  /** Whether an ASID generation is current on `cpu`. */
  asidIsCurrent(cpu: number, generation: number): boolean;
  /** Forget a destroyed vCPU's ASIDs. */
  releaseAsids(tag: VcpuTag): void;
  /** `sev_asid_new`. */
  sevAsidNew(es: boolean, tag: VcpuTag): number;
  /** `sev_asid_free`. */
  sevAsidFree(asid: number): void;
  /** `kvm_add_user_return_msr`. */
  addUserReturnMsr(msr: number): number;
  /** `kvm_find_user_return_msr`. */
  findUserReturnMsr(msr: number): number;
  /** `kvm_set_user_return_msr`. */
  setUserReturnMsr(cpu: number, slot: number, value: bigint, mask: bigint): 0 | 1;
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
  /**
   * The VPIDs this instance holds. A bitmap, not a `Set`: VPIDs are reused lowest-first, and V8's hash tables
   * degrade when the same key is added and deleted over and over (each delete leaves a hole in the key's
   * bucket chain until the next rehash), which made KVM_CREATE_VCPU O(VPIDs held).
   */
  readonly #vpids = new IdBitmap(VMX_NR_VPIDS);
  readonly #asidHolders = new Set<VcpuTag>();
  readonly #sevAsids = new Set<number>();
  /** MSRs registered, in order, with counts. */
  readonly #uretMsrs: number[] = [];
  #attached = true;

  /** @internal Use `vac.attach()`. */
  constructor(ops: VacInstanceOps, parts: VacParts) {
    this.name = ops.name;
    this.#ops = ops;
    this.#p = parts;
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

  // ---- VPIDs ------------------------------------------------------------------------------------

  /** `allocate_vpid`: the lowest free VPID, or 0 when none is left (the vCPU then flushes on every entry). */
  allocateVpid(tag: VcpuTag): number {
    this.#live('allocateVpid');
    const v = this.#vmx('allocate_vpid').alloc(this.#own(tag));
    if (v !== 0) this.#vpids.set(v);
    return v;
  }

  /** `free_vpid`: 0 is a no-op; a VPID this instance does not hold → EPERM. */
  freeVpid(vpid: number): void {
    this.#live('freeVpid');
    if (vpid === 0) return;
    if (vpid < 0 || vpid >= VMX_NR_VPIDS || (vpid | 0) !== vpid || !this.#vpids.test(vpid)) throw new KernelError('EPERM', 'free_vpid', `${this.name} does not hold VPID ${vpid}`);
    this.#vmx('free_vpid').free(vpid);
    this.#vpids.clear(vpid);
  }

  #vmx(op: string): VpidAllocator<VcpuTag> {
    const v = this.#p.vpids;
    if (v === undefined) throw new UsageError('ERR_NOT_SUPPORTED', `${op}: VPIDs exist on VMX hosts only`);
    return v;
  }

  #own(tag: VcpuTag): VcpuTag {
    if (tag.instance !== this.name) throw new KernelError('EPERM', 'vac', `${this.name} cannot act for ${tag.instance}`);
    return tag;
  }

  // ---- ASIDs ------------------------------------------------------------------------------------

  /** `new_asid` on `cpu` for the vCPU `tag` (the same object each time); may roll the CPU's generation over. */
  newAsid(cpu: number, tag: VcpuTag): AsidGrant {
    this.#live('newAsid');
    const grant = this.#svm('new_asid').newAsid(cpu, this.#own(tag));
    this.#asidHolders.add(tag);
    return grant;
  }

  /** Whether `generation` is still `cpu`'s current ASID generation (else the vCPU needs `newAsid`). */
  asidIsCurrent(cpu: number, generation: number): boolean {
    return this.#svm('pre_svm_run').isCurrent(cpu, generation);
  }

  /** The vCPU `tag` is destroyed: forget its ASIDs. */
  releaseAsids(tag: VcpuTag): void {
    this.#live('releaseAsids');
    if (!this.#asidHolders.has(tag)) return;
    this.#svm('svm_vcpu_free').releaseHolder(tag);
    this.#asidHolders.delete(tag);
  }

  #svm(op: string): AsidAllocator<VcpuTag> {
    const a = this.#p.asids;
    if (a === undefined) throw new UsageError('ERR_NOT_SUPPORTED', `${op}: ASIDs exist on SVM hosts only`);
    return a;
  }

  /**
   * `sev_asid_new`: one SEV (or SEV-ES when `es`) ASID for a VM.
   * @throws {@link KernelError} ENOTTY (no SEV on this host, or an empty range), EBUSY (none left after a recycle)
   */
  sevAsidNew(es: boolean, tag: VcpuTag): number {
    this.#live('sevAsidNew');
    const sev = this.#p.sev;
    if (sev === undefined) throw new KernelError('ENOTTY', 'sev_asid_new', 'SEV is not supported on this host');
    const asid = sev.alloc(es, this.#own(tag));
    this.#sevAsids.add(asid);
    return asid;
  }

  /** `sev_asid_free`: the ASID goes to the reclaim bitmap. EPERM if this instance does not hold it. */
  sevAsidFree(asid: number): void {
    this.#live('sevAsidFree');
    if (!this.#sevAsids.has(asid)) throw new KernelError('EPERM', 'sev_asid_free', `${this.name} does not hold SEV ASID ${asid}`);
    this.#p.sev?.free(asid);
    this.#sevAsids.delete(asid);
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

  /** The return-to-user notifier on `cpu` (`kvm_on_user_return`): host values back. */
  returnToUser(cpu: number): void {
    if (this.#p.uret.isRegistered(cpu)) this.#p.uret.onUserReturn(cpu);
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
    vpids: number[];
    asidHolders: number;
    sevAsids: number[];
    userReturnMsrs: number[];
    runningOn: number[];
  } {
    return {
      virtRefs: [...this.#virtRefs],
      vpids: [...this.#vpids.setBits()],
      asidHolders: this.#asidHolders.size,
      sevAsids: [...this.#sevAsids].sort((a, b) => a - b),
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
   * @throws {@link KernelError} EBUSY while vCPU resources (VPIDs, ASIDs, SEV ASIDs, VM references, a CPU
   * it runs on) are still held; nothing is released then
   */
  detach(): void {
    if (!this.#attached) return;
    const vmRefs = [...this.#virtRefs.keys()].filter((h) => h !== '');
    const live = this.#vpids.count + this.#asidHolders.size + this.#sevAsids.size + vmRefs.length + this.#p.irq.cpusRunning(this.#ops).length;
    if (live > 0) {
      throw new KernelError('EBUSY', 'vac_detach', `${this.name} still has live vCPUs or VMs (${live} resource(s) held)`);
    }
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
