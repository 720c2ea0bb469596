/**
 * The cross-module halves of invariants 2 and 3 (docs/spec.md §4): no two live vCPUs of any modules share an ID
 * their vendor says must be unique host-wide (a VPID), and no two live VMs of any modules share such an ID (an SEV
 * ASID). With VAC this holds by construction (one allocator per host); in legacy mode, where each module keeps its
 * own allocator, this is the check that catches it.
 *
 * @module
 */
import type { Host, UniqueId, Violation } from '@vac/core';
import type { KvmInstance } from './instance.js';

const loaded = new WeakMap<Host, Set<KvmInstance>>();

/** Track a loaded instance on its host (in load order). Returns the undo. */
export function trackInstance(inst: KvmInstance): () => void {
  let set = loaded.get(inst.host);
  if (set === undefined) {
    set = new Set();
    loaded.set(inst.host, set);
  }
  const s = set;
  s.add(inst);
  return () => s.delete(inst);
}

/** Something that holds unique IDs, with its label. */
interface Holder {
  readonly label: string;
  uniqueIds(): readonly UniqueId[];
}

/**
 * The IDs that a holder of `inst` shares with a holder of a module loaded before it (each clash is reported once, by
 * the later module), as violations of `invariant`.
 */
function clashes(inst: KvmInstance, holders: (i: KvmInstance) => Iterable<Holder>, invariant: number): Violation[] {
  const key = (id: UniqueId): string => `${id.kind} ${id.value}`;
  const earlier = new Map<string, string>();
  for (const other of loaded.get(inst.host) ?? []) {
    if (other === inst) break;
    for (const h of holders(other)) for (const id of h.uniqueIds()) earlier.set(key(id), h.label);
  }
  const out: Violation[] = [];
  if (earlier.size === 0) return out;
  for (const h of holders(inst)) {
    for (const id of h.uniqueIds()) {
      const clash = earlier.get(key(id));
      if (clash !== undefined) out.push({ invariant, id: id.value, message: `${id.kind} ${id.value} is held by ${clash} and ${h.label}` });
    }
  }
  return out;
}

/** Invariant 2 across modules: vCPU IDs (VPIDs) shared with an earlier module's vCPU. */
export function sharedVcpuIds(inst: KvmInstance): Violation[] {
  return clashes(inst, (i) => [...i.allVcpus()].map((v) => ({ label: v.label, uniqueIds: () => v.vendor.uniqueIds() })), 2);
}

/** Invariant 3 across modules: VM IDs (SEV ASIDs) shared with an earlier module's VM. */
export function sharedVmIds(inst: KvmInstance): Violation[] {
  return clashes(inst, (i) => [...i.vms].map((vm) => ({ label: vm.label, uniqueIds: () => vm.vendor.uniqueIds() })), 3);
}
