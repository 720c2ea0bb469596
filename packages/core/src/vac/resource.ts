/**
 * The contract between VAC's common part and the resources its vendor halves bring.
 *
 * VAC (RFC `virt/kvm/vac.c`) owns what every KVM module must share, but *what* there is to share depends on the
 * vendor: VMX brings one host-wide VPID space (RFC `arch/x86/kvm/vmx/vac.c`), SVM per-CPU ASID generations and the
 * SEV ASID space (RFC `arch/x86/kvm/svm/vac.c`). The vendor's half of VAC (its {@link VirtOps}) builds them when VAC
 * loads ({@link VirtOps.vacResources}); VAC keeps them in a registry and gives each attached KVM instance a
 * **scoped view** of each one: what the instance takes through the view is recorded there, another instance's
 * holdings are out of reach (EPERM), and the instance cannot leave VAC while its view still holds anything (EBUSY).
 * VAC itself knows no resource by name: it sums what views hold, snapshots and checks them.
 *
 * A resource is reached through its {@link VacResourceKey}, a typed token the vendor package exports
 * (`VPIDS` from `@vac/vmx`, `ASIDS` and `SEV_ASIDS` from `@vac/svm`): `port.resource(VPIDS)` is the instance's view,
 * `vacOf(host).resource(VPIDS)` the whole resource, for introspection.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import type { Violation } from '../hardware.js';
import type { FaultSite } from '../host/faults.js';
import type { VcpuTag } from './handle.js';

/**
 * The typed name of a VAC resource: `View` is what a KVM instance gets ({@link VacPort.resource}), `Resource` the
 * whole resource ({@link Vac.resource}). Keys are compared by identity.
 */
export class VacResourceKey<View, Resource extends VacResource<View> = VacResource<View>> {
  /** A short name for messages, snapshots and checks (`'vpids'`). */
  readonly name: string;
  /** Type-level only: the view and the resource this key stands for. */
  declare readonly types?: { readonly view: View; readonly resource: Resource };

  /** @param name - a short name for messages, snapshots and checks */
  constructor(name: string) {
    this.name = name;
  }
}

/** What a resource may use of VAC and the host when it is built. */
export interface VacResourceContext {
  /** Number of CPUs of the host. */
  readonly nrCpus: number;
  /** Who builds it: `vac`, or `kvm1:legacy` for a legacy module's private copy (for messages). */
  readonly owner: string;
  /** Beyond the RFC: VAC's `cross_module_moves` parameter (a resource may pass from one instance to another). */
  readonly crossModuleMoves: boolean;
  /** Fault injection at one of the host's allocation sites (see `FaultInjector`). */
  shouldFail(site: FaultSite): boolean;
  /** Whether VAC has virtualization enabled on `cpu` (a disabled CPU's per-CPU state is left out of snapshots). */
  isEnabled(cpu: number): boolean;
}

/** One instance's view of a resource, made by {@link VacResource.scope}. */
export interface ScopedVacResource<View> {
  /** What the instance calls. */
  readonly view: View;
  /** How many things the instance still holds through this view: VAC refuses its detach while this is not 0. */
  held(): number;
  /** A plain copy of what it holds, for snapshots. */
  holdings(): unknown;
  /** The instance left VAC (called once, when {@link ScopedVacResource.held} is 0). */
  close(): void;
}

/**
 * What every scoped view shares, whatever it hands out: it belongs to one instance, it acts only for that instance's
 * vCPUs (another's tag is EPERM, as VAC refuses to let one module touch another's IDs), and once closed — the
 * instance left VAC — any use is a caller's bug (`ERR_DESTROYED`). A vendor's view extends it and calls
 * {@link ScopedView.live} and {@link ScopedView.own} at the top of each operation.
 */
export abstract class ScopedView<View> implements ScopedVacResource<View> {
  /** What the instance calls (usually the view itself). */
  abstract readonly view: View;
  /** The instance the view belongs to (`kvm0`). */
  readonly instance: string;
  #closed = false;

  /** @param instance - the instance the view is for */
  protected constructor(instance: string) {
    this.instance = instance;
  }

  /** {@inheritDoc ScopedVacResource.held} */
  abstract held(): number;

  /** {@inheritDoc ScopedVacResource.holdings} */
  abstract holdings(): unknown;

  /** {@inheritDoc ScopedVacResource.close} */
  close(): void {
    this.#closed = true;
  }

  /** Whether the instance left VAC. */
  get closed(): boolean {
    return this.#closed;
  }

  /** @throws UsageError `ERR_DESTROYED` when the instance already left VAC (`op` names the operation) */
  protected live(op: string): void {
    if (this.#closed) throw new UsageError('ERR_DESTROYED', `${this.instance}: ${op} after it left VAC`);
  }

  /** @throws KernelError EPERM when `tag` is another instance's vCPU */
  protected own(tag: VcpuTag): void {
    if (tag.instance !== this.instance) throw new KernelError('EPERM', 'vac', `${this.instance} cannot act for ${tag.instance}`);
  }
}

/** A shared resource a vendor half of VAC brings. */
export interface VacResource<View> {
  /** Its key. */
  readonly key: VacResourceKey<View, VacResource<View>>;
  /** A view for the KVM instance named `instance`: what it takes is recorded there. */
  scope(instance: string): ScopedVacResource<View>;
  /**
   * VAC turned virtualization on on `cpu` and keeps it on (after a 0→1 enable of every CPU succeeded, a CPU coming
   * online, resume): per-CPU state that starts afresh with each enable is reset here (SVM's ASID generation).
   */
  cpuEnabled?(cpu: number): void;
  /** How many things are held over all instances (none may be held once no instance is attached). */
  held(): number;
  /** A plain, comparable copy of the resource's state (part of VAC's snapshot). */
  snapshot(): unknown;
  /** The resource's own invariant violations. */
  check(): Violation[];
}

/** Any resource, whatever its view (how VAC holds them). */
export type AnyVacResource = VacResource<unknown>;
