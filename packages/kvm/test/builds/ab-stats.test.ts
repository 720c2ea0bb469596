/**
 * A/B across modules (builds/ab-stats.ts): a vCPU's statistics read back through KVM_GET_STATS_FD by name, and the
 * per-module sums a canary compares.
 */
import { describe, expect, test } from 'vitest';
import { createHost } from '@vac/core';
import { intel } from '@vac/vmx';
import { KVM_RUN, LINUX_6_18, canaryArms, createRealModeVm, kvm, readKvmStats } from '../../src/index.js';

/** `mov dx, 0x3f8; out dx, al` twice; `hlt`. */
const GUEST = [0xba, 0xf8, 0x03, 0xee, 0xee, 0xf4];

function run(dev: string, host: ReturnType<typeof createHost>): { stats: ReturnType<typeof readKvmStats>; fds: number } {
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  const vm = createRealModeVm(p, dev, { code: GUEST });
  for (let i = 0; i < 3; i++) p.ioctl(vm.vcpus[0]!.fd, KVM_RUN, 0);
  const before = p.fds().length;
  const stats = readKvmStats(p, vm.vcpus[0]!.fd);
  return { stats, fds: p.fds().length - before };
}

describe('A/B statistics across modules', () => {
  test('readKvmStats: the exits by reason, halts and L1D flushes of one vCPU, by name; the stats file is closed after', () => {
    const host = createHost({ cpus: 2, hardware: intel() });
    host.modprobe(kvm({ postfix: '0' }), { vmentry_l1d_flush: 'never' });
    host.modprobe(kvm({ postfix: '1', build: LINUX_6_18 }), { vmentry_l1d_flush: 'always' });
    const a = run('/dev/kvm0', host);
    const b = run('/dev/kvm1', host);
    expect([a.stats['exits'], a.stats['io_exits'], a.stats['halt_exits'], a.stats['l1d_flush']]).toEqual([3, 2, 1, 0]);
    expect([b.stats['exits'], b.stats['io_exits'], b.stats['halt_exits'], b.stats['l1d_flush']]).toEqual([3, 2, 1, 3]);
    expect(Object.keys(a.stats)).toContain('halt_wait_hist');
    expect([a.fds, b.fds]).toEqual([0, 0]);
  });

  test('canaryArms: sums and means per module, in first-seen order, with the failed entries the VMMs saw', () => {
    const arms = canaryArms([
      { module: 'kvm0', stats: { exits: 4, l1d_flush: 0 }, failedEntries: 0 },
      { module: 'kvm1', stats: { exits: 6, l1d_flush: 6 }, failedEntries: 1 },
      { module: 'kvm0', stats: { exits: 2, l1d_flush: 0 }, failedEntries: 0 },
    ]);
    expect(arms.map((a) => [a.module, a.vcpus, a.total['exits'], a.mean['exits'], a.mean['l1d_flush'], a.total['failed_entries']])).toEqual([
      ['kvm0', 2, 6, 3, 0, 0],
      ['kvm1', 1, 6, 6, 6, 1],
    ]);
    expect(canaryArms([])).toEqual([]);
  });
});
