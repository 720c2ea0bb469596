/**
 * Handing each VMM its module as real hosts do: placement's choice becomes the VMM's `/dev/kvm` (a private /dev in a
 * mount namespace) and its device cgroup's only allowed device. Both name the device by number; a module reload in
 * another order changes the dynamic minors, so a rule written by number breaks — the sandbox resolves by name.
 */
import { O_RDWR, createHost, type Host } from '@vac/core';
import { kvm } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { GuestVmm, VmmSandbox, countingGuest, loadedModules, moveInPlace, newestBuild, place, spread, words } from '../src/index.js';

function twoModules(vendor: 'intel' | 'amd'): Host {
  const host = createHost({ cpus: 2, hardware: vendor === 'intel' ? intel() : amd() });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  return host;
}

const minors = (host: Host): Array<number | false> => ['/dev/kvm0', '/dev/kvm1'].map((p) => { const s = host.stat(p); return s.type === 'char' && s.minor; });
/** The module a VMM started under `parent` gets when it opens /dev/kvm (the VMM exits afterwards). */
function opensKvm(host: Host, parent: ReturnType<Host['spawn']>): string | undefined {
  const p = host.spawn({ uid: 1000, groups: ['kvm'], parent });
  try {
    return p.file(p.open('/dev/kvm', O_RDWR)).owner?.name;
  } finally {
    p.kill();
  }
}

describe.each(['intel', 'amd'] as const)('VmmSandbox on %s', (vendor) => {
  test('placement\'s choice is the VMM\'s /dev/kvm; the cgroup allows that device only; placement sees the VM on its module', () => {
    const host = twoModules(vendor);
    GuestVmm.create(host, { devPath: '/dev/kvm1', code: countingGuest() }); // kvm1 has a VM: spread picks kvm0
    const chosen = place({}, loadedModules(host), spread);
    expect(chosen?.name).toBe('kvm0');
    const box = VmmSandbox.create(host, { name: 'vm-a', module: chosen!.name });
    expect(box.rules()).toEqual(['c 10:127 rw']); // kvm0's number now (kvm0 was loaded first: minor 127)
    expect(box.launcher.deviceCgroup).toBe(box.cgroup);
    expect(box.launcher.stat('/dev/kvm')).toEqual({ type: 'char', path: '/dev/kvm', major: 10, minor: 127, uid: 0, gid: 36, mode: 0o660 });
    expect(box.launcher.mountNamespace.list().map((e) => e.path)).toEqual(['/dev/kvm']); // nothing else in its /dev
    const vmm = GuestVmm.create(host, { name: 'vm-a', devPath: '/dev/kvm', code: countingGuest({ upTo: 5, busy: 5 }), parent: box.launcher });
    expect(vmm.proc.file(vmm.current.handle.sys).owner?.name).toBe('kvm0');
    expect(() => vmm.proc.open('/dev/kvm1', O_RDWR)).toThrow(expect.objectContaining({ code: 'ENOENT' })); // not in its /dev
    expect(loadedModules(host).map((m) => `${m.name}:${m.vms}`)).toEqual(['kvm0:1', 'kvm1:1']); // matched by number
    // The host's own processes see the host's /dev as it was.
    expect(host.stat('/dev/kvm0')).toMatchObject({ minor: 127 });
    expect(() => host.stat('/dev/kvm')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  test('a move out of a sandbox: grant the target (node and rule by name), move, revoke the source', () => {
    const host = twoModules(vendor);
    const box = VmmSandbox.create(host, { name: 'vm-a', module: place({}, loadedModules(host), newestBuild)!.name });
    expect(box.module).toBe('kvm0'); // same build: the first
    const vmm = GuestVmm.create(host, { name: 'vm-a', devPath: '/dev/kvm', code: countingGuest({ upTo: 30, busy: 20 }), parent: box.launcher, irqchip: 'kernel' });
    vmm.start();
    host.scheduler.run(3);
    expect(moveInPlace(vmm, '/dev/kvm1')).toMatchObject({ outcome: 'rolled-back', failedPhase: 'check' }); // no /dev/kvm1 in the sandbox
    box.grant('kvm1');
    expect(box.rules()).toEqual(['c 10:127 rw', 'c 10:126 rw']);
    expect(moveInPlace(vmm, '/dev/kvm1').outcome).toBe('moved');
    expect(vmm.proc.file(vmm.current.handle.sys).owner?.name).toBe('kvm1');
    box.revoke('kvm0');
    expect(box.rules()).toEqual(['c 10:126 rw']);
    expect(() => vmm.proc.open('/dev/kvm', O_RDWR)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    host.rmmod('kvm0');
    host.scheduler.runUntilIdle(10_000);
    expect(words(vmm.output)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  });
});

describe('a rule written by number breaks after a reload; by name it holds', () => {
  test('kvm1 is 10:126 until the modules are reloaded kvm1-first: then a rule (and a node) by number name kvm0, and check() says so; refresh() makes it right by name', () => {
    const host = twoModules('intel');
    expect(minors(host)).toEqual([127, 126]);
    const FIXED = 'c 10:126 rw'; // kvm1's number, written down once
    const byName = VmmSandbox.create(host, { name: 'by-name', module: 'kvm1' });
    expect(byName.rules()).toEqual([FIXED]); // the same today
    expect(opensKvm(host, byName.launcher)).toBe('kvm1');

    // The modules are reloaded in the other order: kvm1 takes 127, kvm0 126.
    host.rmmod('kvm1');
    host.rmmod('kvm0');
    host.modprobe(kvm({ postfix: '1' }));
    host.modprobe(kvm({ postfix: '0' }));
    expect(minors(host)).toEqual([126, 127]);

    // The old sandbox: its node and its rule still say 10:126, which is kvm0 now.
    expect(byName.check()).toEqual([{ path: '/dev/kvm', module: 'kvm1', number: '10:126', moduleNumberNow: '10:127', ok: false }]);
    expect(opensKvm(host, byName.launcher)).toBe('kvm0'); // the VMM placed on kvm1 gets kvm0

    // A sandbox with the rule written by number: kvm1 (by name on the host's /dev) is refused, kvm0's number allowed.
    const fixed = VmmSandbox.create(host, { name: 'fixed', module: 'kvm1', rules: [FIXED] });
    const vmm = host.spawn({ uid: 1000, groups: ['kvm'], parent: fixed.launcher });
    expect(() => vmm.open('/dev/kvm', O_RDWR)).toThrow(expect.objectContaining({ code: 'EPERM' }));

    // By name: a sandbox made now, or the old one refreshed, gives kvm1 and only kvm1.
    const now = VmmSandbox.create(host, { name: 'now', module: 'kvm1' });
    expect(now.rules()).toEqual(['c 10:127 rw']);
    expect(opensKvm(host, now.launcher)).toBe('kvm1');
    byName.refresh();
    expect(byName.check().every((c) => c.ok)).toBe(true);
    expect(byName.rules()).toEqual(['c 10:127 rw']);
    expect(opensKvm(host, byName.launcher)).toBe('kvm1');
  });

  test('a module that is not loaded: ENOENT, no processes left behind', () => {
    const host = twoModules('intel');
    const before = host.processes().length;
    expect(() => VmmSandbox.create(host, { name: 'x', module: 'kvm7' })).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => VmmSandbox.create(host, { name: 'y', module: '../kvm0' })).toThrow(/not a module name/);
    expect(host.processes().length).toBe(before);
  });
});
