import { createHost, type Host } from '@vac/core';
import { LINUX_6_1, LINUX_6_14, LINUX_6_18, kvm } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { GuestVmm, compareReleases, countingGuest, loadedModules, newestBuild, place, requireMitigations, spread, type PlacementPolicy } from '../src/index.js';

/** kvm0 6.1 (cond), kvm1 6.18 (never), kvm2 6.14 (always); two VMs on kvm2, one on kvm1. */
function threeModules(hardware: 'intel' | 'amd'): Host {
  const host = createHost({ cpus: 2, hardware: hardware === 'intel' ? intel() : amd() });
  host.modprobe(kvm({ postfix: '0', build: LINUX_6_1 }));
  host.modprobe(kvm({ postfix: '1', build: LINUX_6_18 }), hardware === 'intel' ? { vmentry_l1d_flush: 'never' } : {});
  host.modprobe(kvm({ postfix: '2', build: LINUX_6_14 }), hardware === 'intel' ? { vmentry_l1d_flush: 'always' } : {});
  for (const dev of ['/dev/kvm2', '/dev/kvm2', '/dev/kvm1']) GuestVmm.create(host, { devPath: dev, code: countingGuest() });
  return host;
}

describe('placement', () => {
  test('loadedModules reads what user space sees: lsmod, vmentry_l1d_flush in sysfs, open fds of each node', () => {
    expect(loadedModules(threeModules('intel'))).toEqual([
      { name: 'kvm0', devPath: '/dev/kvm0', version: '6.1', l1dFlush: 'cond', l1tfAffected: true, vms: 0 },
      { name: 'kvm1', devPath: '/dev/kvm1', version: '6.18', l1dFlush: 'never', l1tfAffected: true, vms: 1 },
      { name: 'kvm2', devPath: '/dev/kvm2', version: '6.14', l1dFlush: 'always', l1tfAffected: true, vms: 2 },
    ]);
    expect(loadedModules(threeModules('amd')).map((m) => m.l1tfAffected)).toEqual([false, false, false]);
  });

  test('each built-in chooses as documented, alone and combined', () => {
    const c = loadedModules(threeModules('intel'));
    const chosen = (vm: { trusted?: boolean }, ...p: PlacementPolicy[]): string | undefined => place(vm, c, ...p)?.name;
    expect(chosen({}, newestBuild)).toBe('kvm1');
    expect(chosen({}, spread)).toBe('kvm0');
    expect(chosen({ trusted: false }, requireMitigations)).toBe('kvm2');
    expect(chosen({ trusted: false }, requireMitigations, newestBuild)).toBe('kvm2'); // the only one that flushes
    expect(chosen({ trusted: true }, requireMitigations, newestBuild)).toBe('kvm1');
    expect(chosen({}, newestBuild, spread)).toBe('kvm0'); // spread decides; newest only breaks ties
    expect(chosen({}, spread, newestBuild)).toBe('kvm1');
    expect(place({}, [], newestBuild)).toBeUndefined();
    expect(place({ trusted: false }, c.filter((m) => m.name !== 'kvm2'), requireMitigations)).toBeUndefined();
  });

  test('on a host L1TF does not affect (AMD), untrusted VMs may go anywhere', () => {
    expect(place({ trusted: false }, loadedModules(threeModules('amd')), requireMitigations, newestBuild)?.name).toBe('kvm1');
  });

  test('a policy that invents candidates is a usage error', () => {
    const c = loadedModules(threeModules('intel'));
    const bad: PlacementPolicy = (_vm, cs) => cs.map((x) => ({ ...x }));
    expect(() => place({}, c, bad)).toThrow(/returned candidates it was not given/);
  });

  test('releases compare numerically', () => {
    expect(['6.1', '6.12', '6.1.12', '5.7', '6.18', 'custom'].sort((a, b) => compareReleases(a, b))).toEqual(['custom', '5.7', '6.1', '6.1.12', '6.12', '6.18']);
    expect(compareReleases(undefined, '5.7')).toBeLessThan(0);
    expect(compareReleases('6.12', '6.12.0')).toBe(0);
  });
});
