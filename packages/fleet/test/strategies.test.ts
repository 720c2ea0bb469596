import { createHost } from '@vac/core';
import { LINUX_6_18, kvm } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { GuestVmm, STRATEGIES, compareStrategies, countingGuest, formatStrategies, runUpgrade } from '../src/index.js';

describe('compareStrategies', () => {
  const spec = { vms: 4, vcpus: 2, cpus: 4 };
  const assumptions = { vmmRestartNs: 50_000_000, kexecHandoverNs: 700_000_000, migrationDowntimeNs: 200_000_000, migrationBytesPerSec: 2 ** 30, vmMemoryBytes: 2 * 2 ** 30, rebootNs: 30_000_000_000 };
  const r = compareStrategies(spec, assumptions);
  const by = (s: string) => r.find((x) => x.strategy === s)!;

  test('reports the four strategies in order, each VM once', () => {
    expect(r.map((x) => x.strategy)).toEqual([...STRATEGIES]);
    for (const x of r) expect(x.blackoutsNs).toHaveLength(4);
    expect(formatStrategies(r).split('\n').filter((l) => /^\S/.test(l)).map((l) => l.split(' ')[0])).toEqual([...STRATEGIES]);
  });

  test('module swap: exactly what an upgrade plan on the same host measures', () => {
    const host = createHost({ cpus: 4, hardware: intel() });
    host.modprobe(kvm({ postfix: '0' }));
    const vmms = Array.from({ length: 4 }, (_, i) => GuestVmm.create(host, { name: `vm${i + 1}`, devPath: '/dev/kvm0', code: countingGuest({ busy: 50 + i }), vcpus: 2, cpu: i % 4, irqchip: 'kernel' }));
    for (const v of vmms) v.start();
    host.scheduler.run(2);
    const plan = runUpgrade(host, { from: 'kvm0', load: { image: kvm({ postfix: '1', build: LINUX_6_18 }) }, vmms });
    expect(by('module-swap').blackoutsNs).toEqual(plan.vms.map((v) => v.blackoutNs));
    expect(by('module-swap').totalNs).toBe(plan.durationNs);
  });

  test('CPR and kexec: the measured restores plus the assumptions; kexec pauses every VM for the handover', () => {
    const cpr = by('cpr-restart').blackoutsNs;
    const kexec = by('kexec-live-update');
    const restores = cpr.map((ns) => ns - 50_000_000);
    expect(restores.every((ns) => ns > 0)).toBe(true);
    let t = 700_000_000;
    expect(kexec.blackoutsNs).toEqual(restores.map((ns) => (t += ns)));
    expect(kexec.totalNs).toBe(kexec.maxBlackoutNs);
  });

  test('drain: the assumptions alone', () => {
    expect(by('drain').blackoutsNs).toEqual([200_000_000, 200_000_000, 200_000_000, 200_000_000]);
    expect(by('drain').totalNs).toBe(4 * 2_000_000_000 + 30_000_000_000);
  });

  test('an assumption that is not a count is a usage error', () => {
    expect(() => compareStrategies(spec, { migrationBytesPerSec: 0 })).toThrow(/migrationBytesPerSec must be a positive safe integer/);
    expect(() => compareStrategies(spec, { rebootNs: -1 })).toThrow(/rebootNs must be a non-negative safe integer/);
  });
});
