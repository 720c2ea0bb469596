/**
 * KVM_SET_PMU_EVENT_FILTER (arch/x86/kvm/pmu.c `kvm_vm_ioctl_set_pmu_event_filter`, `prepare_filter_lists`): the VM's
 * filter of the events its guests' PMU counters may count — checked and kept as Linux keeps it (a plain filter's
 * events converted to masked entries, the impossible ones dropped; a masked filter's entries checked against the
 * vendor's event-select bits), replacing the previous one whole or leaving it as it was.
 *
 * The model's guests have no PMU (CPUID leaf 0xA is zero, as with `enable_pmu=0`), so no counter ever consults the
 * filter — as in Linux without a guest PMU, where the ioctl and KVM_CAP_PMU_EVENT_FILTER work the same.
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_SET_PMU_EVENT_FILTER } from '../abi/constants.js';
import {
  KVM_PMU_EVENT_ALLOW,
  KVM_PMU_EVENT_DENY,
  KVM_PMU_EVENT_FILTER_MAX_EVENTS,
  KVM_PMU_EVENT_FLAGS_VALID_MASK,
  KVM_PMU_EVENT_FLAG_MASKED_EVENTS,
  KVM_PMU_MASKED_ENTRY_EXCLUDE,
  KVM_PMU_MASKED_ENTRY_UMASK_MASK,
  KVM_PMU_MASKED_ENTRY_UMASK_MATCH,
} from '../abi/constants-x86.js';
import { userAccess } from '../abi/codec.js';
import { KVM_PMU_EVENT_FILTER_CODEC } from '../abi/structs-x86.js';
import type { VmFile } from './files.js';
import type { IoctlDef } from './ioctl-table.js';
import { vendorArch } from './vendor-arch.js';
import { vmArch, type PmuEventFilter } from './vm-arch.js';

/** `ARCH_PERFMON_EVENTSEL_UMASK`. */
const EVENTSEL_UMASK = 0xffn << 8n;
/** `KVM_PMU_MASKED_ENTRY_EVENT_SELECT`: what `filter_sort_cmp` orders by, with the EXCLUDE bit above it. */
const MASKED_ENTRY_EVENT_SELECT = 0xffn | (0xfn << 32n);

/** `prepare_filter_lists`: the filter's entries as Linux keeps them, or undefined for an invalid masked entry. */
function filterLists(events: readonly bigint[], masked: boolean, eventSelect: bigint): { includes: bigint[]; excludes: bigint[] } | undefined {
  let entries: bigint[];
  if (!masked) {
    // convert_to_masked_filter: impossible events dropped (not refused), the rest with an all-ones umask mask.
    entries = events.filter((e) => (e & ~(eventSelect | EVENTSEL_UMASK)) === 0n).map((e) => e | KVM_PMU_MASKED_ENTRY_UMASK_MASK);
  } else {
    // is_masked_filter_valid
    const valid = eventSelect | KVM_PMU_MASKED_ENTRY_UMASK_MASK | KVM_PMU_MASKED_ENTRY_UMASK_MATCH | KVM_PMU_MASKED_ENTRY_EXCLUDE;
    if (events.some((e) => (e & ~valid) !== 0n)) return undefined;
    entries = [...events];
  }
  const key = (e: bigint): bigint => e & (MASKED_ENTRY_EVENT_SELECT | KVM_PMU_MASKED_ENTRY_EXCLUDE);
  entries.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  const firstExclude = masked ? entries.findIndex((e) => (e & KVM_PMU_MASKED_ENTRY_EXCLUDE) !== 0n) : -1;
  const split = firstExclude < 0 ? entries.length : firstExclude;
  return { includes: entries.slice(0, split), excludes: entries.slice(split) };
}

/** KVM_SET_PMU_EVENT_FILTER on a VM fd. */
export const PMU_EVENT_FILTER_IOCTL: IoctlDef<VmFile> = {
  name: 'KVM_SET_PMU_EVENT_FILTER',
  request: KVM_SET_PMU_EVENT_FILTER,
  arg: { dir: 'in', codec: KVM_PMU_EVENT_FILTER_CODEC, flex: { header: 'in', entries: 'in' } },
  run({ vm }, arg) {
    const op = 'KVM_SET_PMU_EVENT_FILTER';
    const h = userAccess(op, () => KVM_PMU_EVENT_FILTER_CODEC.copyInHeader(arg));
    if (h.action !== KVM_PMU_EVENT_ALLOW && h.action !== KVM_PMU_EVENT_DENY) throw new KernelError('EINVAL', op, `action ${h.action} (ALLOW 0 or DENY 1)`);
    if ((h.flags & ~KVM_PMU_EVENT_FLAGS_VALID_MASK) !== 0) throw new KernelError('EINVAL', op, `unknown flags 0x${h.flags.toString(16)}`);
    if (h.nevents > KVM_PMU_EVENT_FILTER_MAX_EVENTS) throw new KernelError('E2BIG', op, `${h.nevents} events (at most ${KVM_PMU_EVENT_FILTER_MAX_EVENTS})`);
    const events = userAccess(op, () => KVM_PMU_EVENT_FILTER_CODEC.copyInEntries(arg, h.nevents));
    const lists = filterLists(events, (h.flags & KVM_PMU_EVENT_FLAG_MASKED_EVENTS) !== 0, vendorArch(vm.instance).pmuEventselEvent);
    if (lists === undefined) throw new KernelError('EINVAL', op, 'a masked entry has bits outside the event select, unit mask/match and EXCLUDE');
    const filter: PmuEventFilter = { action: h.action, fixedCounterBitmap: h.fixed_counter_bitmap, flags: h.flags, ...lists };
    vmArch(vm).pmuEventFilter = filter;
    return 0;
  },
};
