/**
 * KVM_SET_PMU_EVENT_FILTER (arch/x86/kvm/pmu.c kvm_vm_ioctl_set_pmu_event_filter, prepare_filter_lists): EINVAL for
 * an unknown action or flag, E2BIG above 300 events, EFAULT for events that cannot be read, EINVAL for a masked entry
 * outside the vendor's event-select bits (Intel 0xff, AMD also bits 32-35) — each leaving the previous filter; a
 * plain filter's impossible events dropped, the rest kept as masked entries with an all-ones unit-mask mask, sorted.
 */
import { O_RDWR, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_PMU_EVENT_FILTER,
  KVM_CAP_PMU_EVENT_MASKED_EVENTS,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VM,
  KVM_PMU_EVENT_ALLOW,
  KVM_PMU_EVENT_DENY,
  KVM_PMU_EVENT_FLAG_MASKED_EVENTS,
  KVM_SET_PMU_EVENT_FILTER,
  kvm,
  makeKvmPmuEventFilter,
  vmOf,
  type kvm_pmu_event_filter,
} from '../../src/index.js';
import { vmArch } from '../../src/module/vm-arch.js';
import { errnoOf, makeHost, vmmProcess, VENDORS } from './helpers.js';

const UMASK_MASK_ALL = 0xffn << 56n;
const EXCLUDE = 1n << 55n;

describe.each(VENDORS)('KVM_SET_PMU_EVENT_FILTER ($name)', (vendor) => {
  function setup(): { p: Process; sys: number; vm: number; set: (f: Partial<kvm_pmu_event_filter> | Uint8Array) => string; kept: () => unknown } {
    const host = makeHost(vendor.hardware(), 2);
    host.modprobe(kvm({ postfix: '0' }));
    const p = vmmProcess(host);
    const sys = p.open('/dev/kvm0', O_RDWR);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    const set = (f: Partial<kvm_pmu_event_filter> | Uint8Array): string =>
      errnoOf(() => p.ioctl(vm, KVM_SET_PMU_EVENT_FILTER, f instanceof Uint8Array ? f : { ...makeKvmPmuEventFilter(f), nevents: f.nevents ?? f.events?.length ?? 0 }));
    return { p, sys, vm, set, kept: () => vmArch(vmOf(p, vm)).pmuEventFilter };
  }

  test('both capabilities are 1', () => {
    const { p, sys, vm } = setup();
    expect([KVM_CAP_PMU_EVENT_FILTER, KVM_CAP_PMU_EVENT_MASKED_EVENTS].map((c) => [p.ioctl(sys, KVM_CHECK_EXTENSION, c), p.ioctl(vm, KVM_CHECK_EXTENSION, c)])).toEqual([[1, 1], [1, 1]]);
  });

  test('a plain filter: impossible events dropped, the rest sorted as masked entries; a new filter replaces it', () => {
    const { set, kept } = setup();
    // 0x10000c4 has bit 24 (CMASK): impossible, dropped; 0x1c0 and 0x3c (umask 1, event 0xc0; event 0x3c).
    expect(set({ action: KVM_PMU_EVENT_ALLOW, fixed_counter_bitmap: 5, events: [0x1c0n, 0x100_00c4n, 0x3cn] })).toBe('ok');
    expect(kept()).toEqual({ action: KVM_PMU_EVENT_ALLOW, fixedCounterBitmap: 5, flags: 0, includes: [0x3cn | UMASK_MASK_ALL, 0x1c0n | UMASK_MASK_ALL], excludes: [] });
    expect(set({ action: KVM_PMU_EVENT_DENY, events: [] })).toBe('ok');
    expect(kept()).toEqual({ action: KVM_PMU_EVENT_DENY, fixedCounterBitmap: 0, flags: 0, includes: [], excludes: [] });
  });

  test('a masked filter: includes and excludes apart; bits 32-35 of the event select are AMD\'s only', () => {
    const { set, kept } = setup();
    const amd = vendor.name === 'amd';
    expect(set({ action: KVM_PMU_EVENT_ALLOW, flags: KVM_PMU_EVENT_FLAG_MASKED_EVENTS, events: [EXCLUDE | 0xc0n, 0x3cn, (0xfen << 56n) | 0x100n | 0xc0n] })).toBe('ok');
    expect(kept()).toEqual({ action: KVM_PMU_EVENT_ALLOW, fixedCounterBitmap: 0, flags: 1, includes: [0x3cn, (0xfen << 56n) | 0x1c0n], excludes: [EXCLUDE | 0xc0n] });
    const before = kept();
    expect(set({ action: KVM_PMU_EVENT_DENY, flags: KVM_PMU_EVENT_FLAG_MASKED_EVENTS, events: [(1n << 32n) | 0xc0n] })).toBe(amd ? 'ok' : 'EINVAL');
    if (!amd) expect(kept()).toEqual(before);
    expect(set({ action: KVM_PMU_EVENT_DENY, flags: KVM_PMU_EVENT_FLAG_MASKED_EVENTS, events: [1n << 36n] })).toBe('EINVAL');
    // A plain filter drops what a masked one refuses.
    expect(set({ action: KVM_PMU_EVENT_DENY, events: [1n << 36n] })).toBe('ok');
    expect(kept()).toMatchObject({ includes: [] });
  });

  test('bad input: EINVAL, E2BIG, EFAULT in Linux\'s order, the filter left as it was', () => {
    const { set, kept } = setup();
    expect(set({ action: KVM_PMU_EVENT_ALLOW, events: [0xc0n] })).toBe('ok');
    const before = kept();
    expect(set({ action: 2, flags: 2, nevents: 301 })).toBe('EINVAL');
    expect(set({ action: KVM_PMU_EVENT_DENY, flags: 2, nevents: 301 })).toBe('EINVAL');
    expect(set({ action: KVM_PMU_EVENT_DENY, nevents: 301 })).toBe('E2BIG');
    expect(set({ action: KVM_PMU_EVENT_DENY, nevents: 2, events: [0xc0n] })).toBe('EFAULT');
    expect(set({ action: KVM_PMU_EVENT_DENY, events: [0xc0n, 5] as unknown as bigint[] })).toBe('EFAULT');
    expect(kept()).toEqual(before);
    expect(set({ action: KVM_PMU_EVENT_DENY, events: Array.from({ length: 300 }, (_, i) => BigInt(i & 0xff)) })).toBe('ok');
    expect(kept()).toMatchObject({ action: KVM_PMU_EVENT_DENY });
  });

  test('the C structure: a 32-byte header and its events', () => {
    const { set, kept } = setup();
    const b = new Uint8Array(32 + 16);
    const v = new DataView(b.buffer);
    v.setUint32(0, KVM_PMU_EVENT_DENY, true);
    v.setUint32(4, 2, true);
    v.setUint32(8, 3, true);
    v.setBigUint64(32, 0x2c0n, true);
    v.setBigUint64(40, 0x3cn, true);
    expect(set(b)).toBe('ok');
    expect(kept()).toEqual({ action: KVM_PMU_EVENT_DENY, fixedCounterBitmap: 3, flags: 0, includes: [0x3cn | UMASK_MASK_ALL, 0x2c0n | UMASK_MASK_ALL], excludes: [] });
    expect(set(b.slice(0, 40))).toBe('EFAULT');
  });
});
