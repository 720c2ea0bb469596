/**
 * The cross-module halves of invariants 2 and 3 (docs/spec.md §4): no two live vCPUs of any modules share an ID
 * their vendor says must be unique host-wide (a VPID), and no two live VMs of any modules share such an ID (an SEV
 * ASID). With VAC this holds by construction (one allocator per host); in legacy mode, where each module keeps its
 * own allocator, this is the check that catches it.
 *
 * One checker per host (registered with the first KVM module, removed with the last) makes one pass over every
 * module's vCPUs and VMs in load order: linear in the host, however many modules there are.
 *
 * @module
 */
import type { Host, UniqueId, Violation } from '@vac/core';
import type { KvmInstance } from './instance.js';

/** The checker's name in `host.registerInvariantChecker`. */
const CHECKER = 'kvm:unique-ids';

interface Tracked {
  readonly instances: Set<KvmInstance>;
  /** The instances that hand out IDs from allocators of their own (legacy `vpid` / `sev`). */
  readonly privateIds: Set<KvmInstance>;
  readonly unregister: () => void;
}

const loaded = new WeakMap<Host, Tracked>();

/**
 * Track a loaded instance on its host (in load order). `privateIds`: it allocates unique IDs itself (a legacy module
 * keeping its own VPID or SEV ASID bitmap). With VAC every ID comes from one allocator per host, unique by
 * construction (VAC's own resource checks verify that allocator); only a host where some module allocates on its own
 * needs the cross-module pass. Returns the undo.
 */
export function trackInstance(inst: KvmInstance, privateIds: boolean): () => void {
  const host = inst.host;
  let t = loaded.get(host);
  if (t === undefined) {
    const instances = new Set<KvmInstance>();
    const own = new Set<KvmInstance>();
    t = { instances, privateIds: own, unregister: host.registerInvariantChecker(CHECKER, () => (own.size === 0 ? [] : sharedIds(instances))) };
    loaded.set(host, t);
  }
  const tracked = t;
  tracked.instances.add(inst);
  if (privateIds) tracked.privateIds.add(inst);
  return () => {
    tracked.instances.delete(inst);
    tracked.privateIds.delete(inst);
    if (tracked.instances.size === 0 && loaded.get(host) === tracked) {
      loaded.delete(host);
      tracked.unregister();
    }
  };
}

/**
 * Every ID held in two modules, reported once, by the later holder (`kind value is held by <earlier> and <later>`):
 * VPIDs of vCPUs as invariant 2, SEV ASIDs of VMs as invariant 3.
 */
function sharedIds(instances: ReadonlySet<KvmInstance>): Violation[] {
  const out: Violation[] = [];
  // A clash needs two modules.
  if (instances.size < 2) return out;
  const vcpuIds = new Map<string, Map<number, { readonly label: string; readonly inst: KvmInstance }>>();
  const vmIds = new Map<string, Map<number, { readonly label: string; readonly inst: KvmInstance }>>();
  const see = (seen: typeof vcpuIds, inst: KvmInstance, label: string, ids: readonly UniqueId[], invariant: number): void => {
    for (const id of ids) {
      let byValue = seen.get(id.kind);
      if (byValue === undefined) {
        byValue = new Map();
        seen.set(id.kind, byValue);
      }
      const first = byValue.get(id.value);
      if (first === undefined) byValue.set(id.value, { label, inst });
      else if (first.inst !== inst) out.push({ invariant, id: id.value, message: `${id.kind} ${id.value} is held by ${first.label} and ${label}` });
    }
  };
  for (const inst of instances) {
    for (const vm of inst.vms) {
      see(vmIds, inst, vm.label, vm.vendor.uniqueIds(), 3);
      for (const v of vm.vcpus.values()) see(vcpuIds, inst, v.label, v.vendor.uniqueIds(), 2);
    }
  }
  return out;
}
