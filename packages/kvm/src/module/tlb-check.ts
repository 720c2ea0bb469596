/**
 * The cross-module halves of invariants 2 and 3 (SPEC.md §4): no two live vCPUs of any modules share a
 * non-zero VPID, and no two live VMs of any modules share an SEV ASID. With VAC this holds by construction
 * (one allocator per host); in legacy mode, where each module keeps its own bitmap, this is the check that
 * catches it.
 *
 * @module
 */
import type { Host, Violation } from '@vac/core';
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

/**
 * VPIDs that a vCPU of `inst` shares with a vCPU of a module loaded before it (each clash is reported
 * once, by the later module).
 */
export function sharedVpids(inst: KvmInstance): Violation[] {
  const earlier = new Map<number, string>();
  for (const other of loaded.get(inst.host) ?? []) {
    if (other === inst) break;
    for (const v of other.allVcpus()) {
      const t = v.vendor.tlbTag();
      if (t.kind === 'vpid' && t.value !== 0) earlier.set(t.value, v.label);
    }
  }
  const out: Violation[] = [];
  if (earlier.size === 0) return out;
  for (const v of inst.allVcpus()) {
    const t = v.vendor.tlbTag();
    const clash = t.kind === 'vpid' && t.value !== 0 ? earlier.get(t.value) : undefined;
    if (clash !== undefined) out.push({ invariant: 2, id: t.value, message: `VPID ${t.value} is held by ${clash} and ${v.label}` });
  }
  return out;
}

/** The SEV ASID of a VM (0 when it is not an SEV guest, or on VMX). */
function sevAsidOf(vendor: unknown): number {
  const a = (vendor as Partial<Record<'sevAsid', unknown>>).sevAsid;
  return typeof a === 'number' ? a : 0;
}

/**
 * SEV ASIDs that a VM of `inst` shares with a VM of a module loaded before it (each clash reported once, by
 * the later module): invariant 3, "SEV ASIDs are unique per VM across modules".
 */
export function sharedSevAsids(inst: KvmInstance): Violation[] {
  const earlier = new Map<number, string>();
  for (const other of loaded.get(inst.host) ?? []) {
    if (other === inst) break;
    for (const vm of other.vms) {
      const asid = sevAsidOf(vm.vendor);
      if (asid !== 0) earlier.set(asid, vm.label);
    }
  }
  const out: Violation[] = [];
  if (earlier.size === 0) return out;
  for (const vm of inst.vms) {
    const asid = sevAsidOf(vm.vendor);
    const clash = asid !== 0 ? earlier.get(asid) : undefined;
    if (clash !== undefined) out.push({ invariant: 3, id: asid, message: `SEV ASID ${asid} is held by ${clash} and ${vm.label}` });
  }
  return out;
}
