/**
 * Device cgroups name devices by number, and KVM modules other than the un-postfixed /dev/kvm take dynamic misc
 * minors in load order: a rule written for /dev/kvm1 by number names kvm0 after the modules are reloaded in the
 * other order. The robust way resolves the node by name (stat) when the VMM starts and writes the rule then.
 */
import { O_RDWR, type Host, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_CREATE_VM, kvm } from '../../src/index.js';
import { makeHost, VENDORS } from './helpers.js';

/** Start a VMM for `module` in a deny-all cgroup allowing `rule`. */
function vmmIn(host: Host, name: string, rule: string): Process {
  const cg = host.createDeviceCgroup(name);
  cg.deny('a');
  cg.allow(rule);
  const vmm = host.spawn({ uid: 1000, groups: ['kvm'], name });
  host.moveToCgroup(vmm, cg);
  return vmm;
}

/** `c MAJ:MIN rw` for the node `path` names now (what a runtime writes when it starts the VMM). */
function ruleFor(host: Host, path: string): string {
  const st = host.stat(path);
  if (st.type !== 'char') throw new Error(`${path} is no device node`);
  return `c ${st.major}:${st.minor} rw`;
}

describe.each(VENDORS)('device cgroup rules across a module reload ($name)', (vendor) => {
  test('a rule written by number for kvm1 (10:126) allows kvm0 after a reload in the other order; resolving by name at VMM start keeps it right', () => {
    const host = makeHost(vendor.hardware(), 2);
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    expect([host.stat('/dev/kvm0'), host.stat('/dev/kvm1')].map((s) => s.type === 'char' && s.minor)).toEqual([127, 126]);
    const FIXED = 'c 10:126 rw'; // written once, by number, for kvm1
    const before = vmmIn(host, 'before', FIXED);
    expect(before.file(before.open('/dev/kvm1', O_RDWR)).owner?.name).toBe('kvm1');
    before.kill();

    // A reload in the other order: kvm1 first takes 127, kvm0 takes 126.
    host.rmmod('kvm1');
    host.rmmod('kvm0');
    host.modprobe(kvm({ postfix: '1' }));
    host.modprobe(kvm({ postfix: '0' }));
    expect([host.stat('/dev/kvm0'), host.stat('/dev/kvm1')].map((s) => s.type === 'char' && s.minor)).toEqual([126, 127]);

    const stale = vmmIn(host, 'stale', FIXED);
    expect(() => stale.open('/dev/kvm1', O_RDWR)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    const wrong = stale.open('/dev/kvm0', O_RDWR); // the rule now lets it reach the other module
    expect(stale.file(wrong).owner?.name).toBe('kvm0');
    expect(stale.ioctl(wrong, KVM_CREATE_VM, 0)).toBeGreaterThan(2);

    // The robust way: the rule is made from the name when the VMM starts.
    const robust = vmmIn(host, 'robust', ruleFor(host, '/dev/kvm1'));
    expect(robust.file(robust.open('/dev/kvm1', O_RDWR)).owner?.name).toBe('kvm1');
    expect(() => robust.open('/dev/kvm0', O_RDWR)).toThrow(expect.objectContaining({ code: 'EPERM' }));
  });
});
