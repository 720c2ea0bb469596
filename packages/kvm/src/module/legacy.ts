/**
 * Legacy mode: KVM modules laid out as before VAC, each owning some resources itself. It exists to show
 * what goes wrong on a multi-KVM host without VAC (docs/spec.md §3 "Legacy mode"); it is never the default.
 *
 * Each listed resource is kept privately by the module instead of being taken from VAC:
 *
 * | resource | what the module does itself | what collides with a second module |
 * |---|---|---|
 * | `minor` | registers `/dev/kvmX` with the fixed misc minor 232 (the RFC as posted) | `misc_register` → EBUSY |
 * | `cpuhp` | claims the fixed hotplug slot `CPUHP_AP_KVM_ONLINE` at init (as `kvm_init` did) | `cpuhp_setup_state` → EBUSY |
 * | `virt` | its own usage count, VMXON/EFER.SVME, syscore ops, reboot notifier, emergency callback | VMXON on a CPU already in VMX operation → EBUSY at enable; the emergency callback is ignored with a WARN |
 * | `irq` | its own perf guest callbacks, posted-interrupt wakeup handler and NMI handler | perf ignores the second callbacks (WARN): its guests' PMIs are lost; the last PI handler wins |
 * | `vpid` | its own VPID bitmap | two modules hand out the same VPIDs |
 * | `sev` | its own SEV ASID bitmap (the RFC left it in each module) | two SEV VMs get the same ASID |
 *
 * @module
 */
import { UsageError, Vac, type Host, type UretGuestValue, type VacHandle, type VacInstanceOps, type VacPort, type VacResource, type VacResourceKey } from '@vac/core';
import { checkVendorSupport, registerVacHooks } from '@vac/core/internal';
import { SEV_ASIDS } from '@vac/svm';
import { VPIDS } from '@vac/vmx';

/** A resource a legacy module keeps to itself. */
export type LegacyResource = 'minor' | 'cpuhp' | 'virt' | 'irq' | 'vpid' | 'sev';

/** Every legacy resource: the full pre-VAC layout. */
export const ALL_LEGACY_RESOURCES: readonly LegacyResource[] = ['minor', 'cpuhp', 'virt', 'irq', 'vpid', 'sev'];

/** Normalise the `legacy` option. */
export function legacySet(opt: boolean | readonly LegacyResource[] | undefined): ReadonlySet<LegacyResource> {
  if (opt === undefined || opt === false) return new Set();
  const list = opt === true ? ALL_LEGACY_RESOURCES : opt;
  for (const r of list) if (!ALL_LEGACY_RESOURCES.includes(r)) throw new UsageError('ERR_UNKNOWN_NAME', `kvm: unknown legacy resource ${JSON.stringify(r)}`);
  return new Set(list);
}

/**
 * The VAC resources a legacy module may keep privately, by legacy name. Every other resource (the ASID generations)
 * lives with the per-CPU enable state, so it goes where `virt` goes.
 */
const PRIVATE_RESOURCE_KEYS: ReadonlyMap<VacResourceKey<unknown>, LegacyResource> = new Map<VacResourceKey<unknown>, LegacyResource>([
  [VPIDS as VacResourceKey<unknown>, 'vpid'],
  [SEV_ASIDS as VacResourceKey<unknown>, 'sev'],
]);

/**
 * Build the private VAC of a legacy module and make its registrations.
 * @returns the private VAC, whose handle the module's {@link LegacyPort} routes the private resources to
 */
export function privateVac(host: Host, module: string, set: ReadonlySet<LegacyResource>, defer: (undo: () => void) => void, warn: (m: string, cpu: number) => void): Vac {
  const vendor = checkVendorSupport(host, `${module}_init`, warn);
  const vac = new Vac(host, vendor, `${module}:legacy`);
  const cpuhp = set.has('virt') ? (set.has('cpuhp') ? 'CPUHP_AP_KVM_ONLINE' : 'CPUHP_AP_ONLINE_DYN') : false;
  registerVacHooks(vac, host, defer, { cpuhp, power: set.has('virt'), irq: set.has('irq'), name: `${module}:legacy` });
  if (set.has('cpuhp') && !set.has('virt')) {
    // The module claims the slot even though VAC does the enabling: the RFC's kvm_init did exactly this.
    defer(host.cpuhp.setup(`${module}/cpu:online`, {}, { slot: 'CPUHP_AP_KVM_ONLINE', invoke: false }));
  }
  return vac;
}

/** A {@link VacPort} that sends each resource to the shared VAC or to the module's private copy. */
export class LegacyPort implements VacPort {
  /** The instance name. */
  readonly name: string;
  readonly #shared: VacHandle | undefined;
  readonly #priv: VacHandle;
  readonly #virt: VacHandle;
  readonly #irq: VacHandle;
  readonly #route: (r: LegacyResource) => VacHandle;

  /**
   * @param ops - the instance
   * @param shared - attach to the shared VAC (undefined when every resource is private)
   * @param priv - the private VAC
   * @param set - the private resources
   */
  constructor(ops: VacInstanceOps, shared: Vac | undefined, priv: Vac, set: ReadonlySet<LegacyResource>) {
    this.name = ops.name;
    this.#priv = priv.attach(ops);
    this.#shared = shared?.attach(ops);
    this.#route = (r: LegacyResource): VacHandle => {
      if (set.has(r)) return this.#priv;
      if (this.#shared === undefined) throw new UsageError('ERR_INVALID_STATE', `legacy ${ops.name}: ${r} is shared but no VAC is loaded`);
      return this.#shared;
    };
    this.#virt = this.#route('virt');
    this.#irq = this.#route('irq');
    for (const r of PRIVATE_RESOURCE_KEYS.values()) this.#route(r);
  }

  #handleFor(key: VacResourceKey<unknown>): VacHandle {
    const r = PRIVATE_RESOURCE_KEYS.get(key);
    return r === undefined ? this.#virt : this.#route(r);
  }

  /** {@link VacPort.rebooting}. */
  get rebooting(): boolean {
    return this.#virt.rebooting;
  }
  /** {@link VacPort.enableVirtualization}. */
  enableVirtualization(holder?: string): void {
    this.#virt.enableVirtualization(holder);
  }
  /** {@link VacPort.disableVirtualization}. */
  disableVirtualization(holder?: string): void {
    this.#virt.disableVirtualization(holder);
  }
  /** {@link VacPort.isEnabled}. */
  isEnabled(cpu: number): boolean {
    return this.#virt.isEnabled(cpu);
  }
  /** {@link VacPort.resource}: the private copy for a resource kept privately, else the shared one. */
  resource<V>(key: VacResourceKey<V, VacResource<V>>): V {
    return this.#handleFor(key as VacResourceKey<unknown>).resource(key);
  }
  /** {@link VacPort.tryResource}. */
  tryResource<V>(key: VacResourceKey<V, VacResource<V>>): V | undefined {
    return this.#handleFor(key as VacResourceKey<unknown>).tryResource(key);
  }
  /** {@link VacPort.addUserReturnMsr} (user-return MSRs live with the per-CPU enable state). */
  addUserReturnMsr(msr: number): number {
    return this.#virt.addUserReturnMsr(msr);
  }
  /** {@link VacPort.findUserReturnMsr}. */
  findUserReturnMsr(msr: number): number {
    return this.#virt.findUserReturnMsr(msr);
  }
  /** {@link VacPort.setUserReturnMsr}. */
  setUserReturnMsr(cpu: number, slot: number, value: bigint, mask: bigint): 0 | 1 {
    return this.#virt.setUserReturnMsr(cpu, slot, value, mask);
  }
  /** {@link VacPort.loadUserReturnMsrs}. */
  loadUserReturnMsrs(cpu: number, entries: ReadonlyArray<UretGuestValue>): void {
    this.#virt.loadUserReturnMsrs(cpu, entries);
  }
  /** {@link VacPort.returnToUser}. */
  returnToUser(cpu: number): void {
    this.#virt.returnToUser(cpu);
  }
  /** {@link VacPort.vcpuLoad}. */
  vcpuLoad(cpu: number): void {
    this.#irq.vcpuLoad(cpu);
  }
  /** {@link VacPort.vcpuPut}. */
  vcpuPut(cpu: number): void {
    this.#irq.vcpuPut(cpu);
  }
  /** {@link VacPort.detach}: both handles. */
  detach(): void {
    this.#priv.detach();
    this.#shared?.detach();
  }
}
