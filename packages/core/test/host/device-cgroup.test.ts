/**
 * The device controller (security/device_cgroup.c): allow lists by type and major:minor, checked when a device node
 * is opened (after the mode bits: EACCES first, then EPERM) or made (`m`); children inherit their parent's cgroup.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { CLONE_NEWNS, O_RDONLY, O_RDWR, S_IFCHR, createHost, mknod, mount, unshare, type DeviceCgroup, type Host } from '../../src/index.js';
import { expectKernelError, expectUsageError } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { miscImage } from '../support/images.js';

function host2(): Host {
  const host = createHost({ cpus: 1, hardware: fakeHardware() });
  host.insmod(miscImage({ name: 'kvm0' })); // 10:127
  host.insmod(miscImage({ name: 'kvm1' })); // 10:126
  return host;
}

/** A deny-all cgroup that allows `rules`. */
function only(host: Host, name: string, ...rules: string[]): DeviceCgroup {
  const cg = host.createDeviceCgroup(name);
  cg.deny('a');
  for (const r of rules) cg.allow(r);
  return cg;
}

describe('device cgroups', () => {
  test('the root allows everything: a *:* rwm', () => {
    const host = host2();
    expect(host.rootDeviceCgroup.list()).toEqual(['a *:* rwm']);
    expect(host.spawn().deviceCgroup).toBe(host.rootDeviceCgroup);
  });

  test('a VMM in a cgroup that allows c 10:126 rw opens kvm1 and gets EPERM (1) for kvm0; its children inherit the cgroup', () => {
    const host = host2();
    const cg = only(host, 'vmm-b', 'c 10:126 rw');
    expect(cg.list()).toEqual(['c 10:126 rw']);
    const vmm = host.spawn({ uid: 1000, groups: ['kvm'] });
    host.moveToCgroup(vmm, cg);
    expect(vmm.file(vmm.open('/dev/kvm1')).owner?.name).toBe('kvm1');
    expectKernelError(host, () => vmm.open('/dev/kvm0'), 'EPERM');
    const child = host.spawn({ uid: 1000, groups: ['kvm'], parent: vmm });
    expect(child.deviceCgroup).toBe(cg);
    expectKernelError(host, () => child.open('/dev/kvm0'), 'EPERM');
  });

  test('the mode bits come first: a stranger gets EACCES, not EPERM', () => {
    const host = host2();
    const p = host.spawn({ uid: 1000 });
    host.moveToCgroup(p, only(host, 'x'));
    expectKernelError(host, () => p.open('/dev/kvm0'), 'EACCES');
  });

  test('access bits: r allows O_RDONLY only; an allow-all cgroup with a deny exception refuses any overlap', () => {
    const host = host2();
    const p = host.spawn();
    host.moveToCgroup(p, only(host, 'ro', 'c 10:* r'));
    expect(p.open('/dev/kvm0', O_RDONLY)).toBe(3);
    expectKernelError(host, () => p.open('/dev/kvm0', O_RDWR), 'EPERM');
    const q = host.spawn();
    const cg = host.createDeviceCgroup('all-but');
    cg.deny('c 10:127 w');
    expect(cg.list()).toEqual(['c 10:127 w']);
    host.moveToCgroup(q, cg);
    expect(q.open('/dev/kvm1', O_RDWR)).toBe(3);
    expect(q.open('/dev/kvm0', O_RDONLY)).toBe(4);
    expectKernelError(host, () => q.open('/dev/kvm0', O_RDWR), 'EPERM');
    cg.allow('c 10:127 w'); // on an allow-all cgroup, allow removes the exception
    expect(cg.list()).toEqual(['a *:* rwm']);
    expect(q.open('/dev/kvm0', O_RDWR)).toBe(5);
  });

  test('mknod is checked too (m)', () => {
    const host = host2();
    const rt = host.spawn();
    host.moveToCgroup(rt, only(host, 'rt', 'c 10:126 rw'));
    unshare(rt, CLONE_NEWNS);
    mount(rt, 'tmpfs', '/dev', 'tmpfs', 0);
    expectKernelError(host, () => mknod(rt, '/dev/kvm', S_IFCHR | 0o600, 10, 126), 'EPERM');
    rt.deviceCgroup.allow('c 10:126 m');
    expect(rt.deviceCgroup.list()).toEqual(['c 10:126 rwm']);
    mknod(rt, '/dev/kvm', S_IFCHR | 0o600, 10, 126);
  });

  test('rules: malformed lines are EINVAL; a line starting with a is every device; "a" on a cgroup with children is EINVAL; a child cannot allow what its parent denies (EPERM)', () => {
    const host = host2();
    const cg = only(host, 'p', 'c 10:126 rw');
    for (const bad of ['', 'x 1:2 r', 'c 1:2', 'c 1 r', 'c 1:2 rx', 'c a:2 r', 'c 99999999999:1 r']) {
      expect(() => cg.allow(bad), bad).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
    cg.allow('c 10:126 rwrx'); // the fourth character is not read
    expect(cg.list()).toEqual(['c 10:126 rw']);
    const child = host.createDeviceCgroup('c', cg);
    expect(child.list()).toEqual(['c 10:126 rw']);
    expect(() => cg.deny('a')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => child.allow('c 10:127 rw')).toThrow(expect.objectContaining({ code: 'EPERM' }));
    expect(() => child.allow('a')).toThrow(expect.objectContaining({ code: 'EPERM' }));
    child.allow('c 10:126 r');
    const all = host.createDeviceCgroup('all');
    all.deny('a *:* rwm'); // read as "a"
    expect(all.list()).toEqual([]);
    expect(all.allowsByDefault).toBe(false);
    expectKernelError(host, () => host.createDeviceCgroup('p'), 'EEXIST');
    expectUsageError(host, () => host.createDeviceCgroup('a/b'), 'ERR_INVALID_ARG');
  });

  test('property: a deny-all cgroup allows exactly the devices and access its rules cover', () => {
    const host = host2();
    let n = 0;
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom<'c' | 'b' | 'a'>('c', 'b'), fc.option(fc.integer({ min: 0, max: 3 })), fc.option(fc.integer({ min: 0, max: 3 })), fc.subarray(['r', 'w', 'm'], { minLength: 1 })), { maxLength: 6 }), fc.constantFrom<'c' | 'b'>('c', 'b'), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.subarray(['r', 'w', 'm'], { minLength: 1 }), (rules, type, major, minor, want) => {
        const cg = host.createDeviceCgroup(`g${n++}`);
        cg.deny('a');
        const granted = new Set<string>();
        for (const [t, ma, mi, acc] of rules) {
          cg.allow(`${t} ${ma ?? '*'}:${mi ?? '*'} ${acc.join('')}`);
        }
        // the model's answer, against a direct reading of the rules: merged per device, one must cover all of `want`
        const perDevice = new Map<string, Set<string>>();
        for (const [t, ma, mi, acc] of rules) {
          const k = `${t} ${ma ?? '*'}:${mi ?? '*'}`;
          perDevice.set(k, new Set([...(perDevice.get(k) ?? []), ...acc]));
        }
        for (const [k, acc] of perDevice) {
          const [t, mm] = k.split(' ') as [string, string];
          const [ma, mi] = mm.split(':') as [string, string];
          const hit = t === type && (ma === '*' || Number(ma) === major) && (mi === '*' || Number(mi) === minor);
          if (hit && want.every((w) => acc.has(w))) granted.add(k);
        }
        const access = { read: want.includes('r'), write: want.includes('w'), mknod: want.includes('m') };
        expect(cg.permits(type, major, minor, access)).toBe(granted.size > 0);
      }),
      { numRuns: 200 },
    );
  });
});
