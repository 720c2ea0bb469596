/**
 * Module lifecycle and enable_virt_at_load (issue 4, "Done means" 1–2): the factory's module names and
 * devices, the order of init and exit, module refcounts, parameters, KVMGT, missing hardware, and who holds
 * VAC's usage count.
 */
import { O_RDWR, checkInvariants, createHost, type EventName } from '@vac/core';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { KVM_CREATE_VCPU, KVM_CREATE_VM, kvm, kvmgt } from '../../src/index.js';
import { HELLO, VENDORS, makeHost, makeVm, vmmProcess } from './helpers.js';
import { expectFail, vacIn } from './integration.js';

describe.each(VENDORS)('module lifecycle on $name', (vendor) => {
  test('kvm({ postfix: "" }) is `kvm` with /dev/kvm 10:232 root:kvm 0660; postfixed modules get dynamic minors', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '' }));
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    expect(host.lsmod().map((m) => m.name)).toEqual(['kvm1', 'kvm0', 'kvm', 'vac']);
    expect(host.lsmod().find((m) => m.name === 'vac')?.usedBy).toEqual(['kvm', 'kvm0', 'kvm1']);
    expect(host.stat('/dev/kvm')).toEqual({ type: 'char', path: '/dev/kvm', major: 10, minor: 232, uid: 0, gid: 36, mode: 0o660 });
    expect(host.stat('/dev/kvm0')).toEqual({ type: 'char', path: '/dev/kvm0', major: 10, minor: 127, uid: 0, gid: 36, mode: 0o660 });
    expect(host.stat('/dev/kvm1')).toEqual({ type: 'char', path: '/dev/kvm1', major: 10, minor: 126, uid: 0, gid: 36, mode: 0o660 });
    // A second image with an empty postfix is the same module name: EEXIST, nothing changes.
    expectFail(host, () => host.insmod(kvm({ postfix: '' })), 'EEXIST');
    // The group kvm may open it; others may not.
    const vmm = vmmProcess(host);
    expect(vmm.open('/dev/kvm', O_RDWR)).toBe(3);
    const stranger = host.spawn({ uid: 1001, name: 'stranger' });
    expectFail(host, () => stranger.open('/dev/kvm0', O_RDWR), 'EACCES');
    // After rmmod kvm0 its minor is free again and the next module takes it.
    host.rmmod('kvm0');
    host.modprobe(kvm({ postfix: '7' }));
    expect(host.stat('/dev/kvm7')).toMatchObject({ major: 10, minor: 127 });
  });

  test('the misc device is the last step of init and the first of exit', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe('vac');
    const seen: EventName[] = [];
    host.events.onAny((name) => seen.push(name));
    host.modprobe(kvm({ postfix: '0' }));
    // Everything init does (the usage reference of enable_virt_at_load: VMXON/SVME on each CPU) comes before
    // the device appears; module:load is the loader's, after init returned.
    expect(seen.slice(-2)).toEqual(['device:register', 'module:load']);
    expect(seen).toContain('virt:usage');
    expect(seen.indexOf('virt:usage')).toBeLessThan(seen.indexOf('device:register'));
    expect(seen.filter((n) => n === 'virt:enable')).toHaveLength(4);
    seen.length = 0;
    host.rmmod('kvm0');
    expect(seen[0]).toBe('device:unregister');
    expect(seen.at(-1)).toBe('module:unload');
    expect(seen.indexOf('virt:usage')).toBeGreaterThan(0);
    expect(seen.filter((n) => n === 'virt:disable')).toHaveLength(4);
  });

  test('every /dev/kvm0 fd, VM fd and vCPU fd pins kvm0 (EWOULDBLOCK); vac is pinned by any kvmX', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    const p = vmmProcess(host);
    const refcount = (name: string): number => host.lsmod().find((m) => m.name === name)?.refcount ?? -1;
    const sys = p.open('/dev/kvm0', O_RDWR);
    expect(refcount('kvm0')).toBe(1);
    expectFail(host, () => host.rmmod('kvm0'), 'EWOULDBLOCK');
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    p.close(sys);
    expect(refcount('kvm0')).toBe(1); // the VM fd alone
    expectFail(host, () => host.rmmod('kvm0'), 'EWOULDBLOCK');
    const vcpu = p.ioctl(vm, KVM_CREATE_VCPU, 0);
    p.close(vm);
    expect(refcount('kvm0')).toBe(1); // the vCPU fd alone (it also keeps the VM alive)
    expect(host.snapshot().providers['kvm0']).toHaveLength(1);
    expectFail(host, () => host.rmmod('kvm0'), 'EWOULDBLOCK');
    // rmmod vac while any kvmX is loaded: its dependents pin it.
    const e = expectFail(host, () => host.rmmod('vac'), 'EWOULDBLOCK');
    expect(e.message).toContain('kvm0 kvm1');
    p.close(vcpu);
    expect(refcount('kvm0')).toBe(0);
    expect(host.snapshot().providers['kvm0']).toEqual([]);
    host.rmmod('kvm0');
    expectFail(host, () => host.rmmod('vac'), 'EWOULDBLOCK');
    host.rmmod('kvm1');
    host.rmmod('vac');
    expect(host.lsmod()).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('parameters: typed, under /sys/module/kvmX/parameters, read-only; ill-typed → EINVAL at load; unknown → warning', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0' }));
    const generic = { enable_virt_at_load: 'Y', halt_poll_ns: '200000', nx_huge_pages: 'auto' };
    for (const [k, v] of Object.entries(generic)) expect(host.readParam('kvm0', k)).toBe(v);
    if (vendor.name === 'intel') {
      host.modprobe(kvm({ postfix: '1' }), { vpid: 0, ept: 'N', vmentry_l1d_flush: 'always', halt_poll_ns: '0x10', enable_virt_at_load: 0 });
      expect(host.readParam('kvm0', 'vpid')).toBe('Y');
      expect(host.readParam('kvm1', 'vpid')).toBe('N');
      expect(host.readParam('kvm1', 'ept')).toBe('N');
      expect(host.readParam('kvm1', 'vmentry_l1d_flush')).toBe('always');
    } else {
      host.modprobe(kvm({ postfix: '1' }), { sev: 0, sev_es: 'n', npt: 'Y', avic: 1, halt_poll_ns: '0x10', enable_virt_at_load: 0 });
      expect(host.readParam('kvm0', 'sev')).toBe('Y');
      expect(host.readParam('kvm1', 'sev')).toBe('N');
      expect(host.readParam('kvm1', 'sev_es')).toBe('N');
      expect(host.readParam('kvm1', 'avic')).toBe('Y');
    }
    expect(host.readParam('kvm1', 'halt_poll_ns')).toBe('16');
    expect(host.readParam('kvm1', 'enable_virt_at_load')).toBe('N');
    expect(host.readParam('kvm0', 'nested')).toBe('Y');
    // Read-only (0444): EACCES; a file that does not exist: ENOENT.
    expectFail(host, () => host.modules.writeParam('kvm0', 'halt_poll_ns', '0'), 'EACCES');
    expectFail(host, () => host.readParam('kvm0', 'no_such_param'), 'ENOENT');
    expectFail(host, () => host.readParam('kvm9', 'vpid'), 'ENOENT');
    // Ill-typed values: EINVAL, nothing loaded (modprobe of a fresh host also takes vac back out).
    const fresh = makeHost(vendor.hardware());
    for (const bad of [{ halt_poll_ns: '-1' }, { halt_poll_ns: 'lots' }, { enable_virt_at_load: 'maybe' }, { nx_huge_pages: 'sometimes' }, { vmentry_l1d_flush: 'often' }, { npt: 2 }, { vpid: 'x' }]) {
      expectFail(fresh, () => fresh.modprobe(kvm({ postfix: '2' }), bad), 'EINVAL');
      expectFail(host, () => host.modprobe(kvm({ postfix: '2' }), bad), 'EINVAL');
    }
    expect(fresh.lsmod()).toEqual([]);
    // Unknown parameters: a warning, then ignored.
    const before = host.warnings.length;
    host.modprobe(kvm({ postfix: '2' }), { frobnicate: 1 });
    expect(host.warnings.slice(before).map((w) => w.message)).toEqual(["kvm2: unknown parameter 'frobnicate' ignored"]);
    expectFail(host, () => host.readParam('kvm2', 'frobnicate'), 'ENOENT');
  });

  test('KVMGT needs the un-postfixed kvm: ENOENT with only kvm0/kvm1 (host unchanged), loads next to `kvm`', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    const e1 = expectFail(host, () => host.modprobe(kvmgt), 'ENOENT');
    expect(e1.message).toContain('kvm');
    const e2 = expectFail(host, () => host.insmod(kvmgt), 'ENOENT');
    expect(e2.message).toMatch(/Unknown symbol/);
    host.modprobe(kvm({ postfix: '' }));
    host.modprobe(kvmgt);
    expect(host.lsmod().find((m) => m.name === 'kvm')?.usedBy).toEqual(['kvmgt']);
    expectFail(host, () => host.rmmod('kvm'), 'EWOULDBLOCK');
    host.rmmod('kvmgt');
    host.rmmod('kvm');
    // And a host that only ever had `kvm` (modprobe finds kvm in its library).
    const h2 = createHost({ cpus: 2, hardware: vendor.hardware(), modules: [kvm({ postfix: '' })] });
    h2.modprobe(kvmgt);
    expect(h2.lsmod().map((m) => m.name)).toEqual(['kvmgt', 'kvm', 'vac']);
  });
});

describe('no hardware support', () => {
  for (const [name, hw] of [
    ['intel({ vmx: false })', () => intel({ vmx: false })],
    ['intel({ vmxDisabledByBios: true })', () => intel({ vmxDisabledByBios: true })],
    ['amd({ svm: false })', () => amd({ svm: false })],
    ['amd({ svmDisabledByBios: true })', () => amd({ svmDisabledByBios: true })],
  ] as const) {
    test(`${name}: EOPNOTSUPP "no hardware support for SVM or VMX", nothing left behind`, () => {
      const host = createHost({ cpus: 2, hardware: hw() });
      // With VAC, vac's own init is what fails first (modprobe loads it before kvm0).
      const e = expectFail(host, () => host.modprobe(kvm({ postfix: '0' })), 'EOPNOTSUPP');
      expect(e.message).toMatch(/no hardware support for (VMX or SVM|SVM or VMX)/);
      // A legacy module (no VAC) fails in its own init with kvm's message.
      const l = expectFail(host, () => host.insmod(kvm({ postfix: '0', legacy: true })), 'EOPNOTSUPP');
      expect(l.message).toContain('kvm: no hardware support for SVM or VMX');
      expect(host.lsmod()).toEqual([]);
      expect(host.devfs.list()).toEqual([]);
    });
  }
});

describe.each(VENDORS)('enable_virt_at_load on $name', (vendor) => {
  // The CPUs VAC has virtualization on (a foreign hypervisor's CPU is not VAC's).
  const enabledCpus = (host: ReturnType<typeof makeHost>): number[] =>
    vacOrNone(host)
      .filter((c) => c.enabled)
      .map((c) => c.cpu);

  test('=1: the module holds a usage reference from load to unload (VMX/SVM on at insmod)', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0' }));
    const vac = vacIn(host);
    expect(vac.usageCount).toBe(1);
    expect(vac.usageHolders()).toEqual([['kvm0', 1]]);
    expect(enabledCpus(host)).toEqual([0, 1, 2, 3]);
    const p = vmmProcess(host);
    const t = makeVm(p, '/dev/kvm0', HELLO);
    expect(vac.usageHolders()).toEqual([
      ['kvm0', 1],
      ['kvm0/vm1', 1],
    ]);
    p.close(t.vcpus[0]!.fd);
    p.close(t.vm);
    // The mmapped kvm_run area still holds the vCPU file (and so the VM), as on Linux.
    expect(vac.usageHolders()).toEqual([
      ['kvm0', 1],
      ['kvm0/vm1', 1],
    ]);
    const m = p.mappings().find((x) => x.file !== undefined)!;
    p.munmap(m.addr, m.length);
    expect(vac.usageHolders()).toEqual([['kvm0', 1]]);
    expect(enabledCpus(host)).toEqual([0, 1, 2, 3]); // still on: the module's own reference
    p.close(t.sys);
    host.rmmod('kvm0');
    expect(vac.usageCount).toBe(0);
    expect(enabledCpus(host)).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('=0: nothing on until the first KVM_CREATE_VM, off again when the last VM dies', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0' }), { enable_virt_at_load: 0 });
    const vac = vacIn(host);
    expect(vac.usageCount).toBe(0);
    expect(enabledCpus(host)).toEqual([]);
    const p = vmmProcess(host);
    const sys = p.open('/dev/kvm0', O_RDWR);
    expect(enabledCpus(host)).toEqual([]);
    const vm1 = p.ioctl(sys, KVM_CREATE_VM, 0);
    expect(enabledCpus(host)).toEqual([0, 1, 2, 3]);
    const vm2 = p.ioctl(sys, KVM_CREATE_VM, 0);
    expect(vac.usageHolders()).toEqual([
      ['kvm0/vm1', 1],
      ['kvm0/vm2', 1],
    ]);
    p.close(vm1);
    expect(enabledCpus(host)).toEqual([0, 1, 2, 3]);
    p.close(vm2);
    expect(vac.usageCount).toBe(0);
    expect(enabledCpus(host)).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('=0 with a foreign owner on CPU 2: KVM_CREATE_VM → EBUSY, everything rolled back', () => {
    const hw = vendor.name === 'intel' ? intel({ cpus: { 2: { foreignOwner: true } } }) : amd({ cpus: { 2: { foreignOwner: true } } });
    const host = makeHost(hw);
    host.modprobe(kvm({ postfix: '0' }), { enable_virt_at_load: 0 });
    const p = vmmProcess(host);
    const sys = p.open('/dev/kvm0', O_RDWR);
    const warned = host.warnings.length;
    // CPUs 0 and 1 did enable before CPU 2 failed; they were turned off again: the host is as before.
    expectFail(host, () => p.ioctl(sys, KVM_CREATE_VM, 0), 'EBUSY');
    expect(host.warnings.slice(warned).map((w) => w.message)).toContain('kvm: enabling virtualization on CPU2 failed');
    expect(vacIn(host).usageCount).toBe(0);
    expect(enabledCpus(host)).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
    // The foreign hypervisor leaves CPU 2: the next KVM_CREATE_VM works.
    (host.hardware as unknown as { setForeignOwner(cpu: number, owned: boolean): void }).setForeignOwner(2, false);
    expect(p.ioctl(sys, KVM_CREATE_VM, 0)).toBeGreaterThan(0);
    expect(enabledCpus(host)).toEqual([0, 1, 2, 3]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('=1 with the same foreign owner: the module load itself fails with EBUSY, host unchanged', () => {
    const hw = vendor.name === 'intel' ? intel({ cpus: { 2: { foreignOwner: true } } }) : amd({ cpus: { 2: { foreignOwner: true } } });
    const host = makeHost(hw);
    expectFail(host, () => host.modprobe(kvm({ postfix: '0' })), 'EBUSY');
    expect(host.lsmod()).toEqual([]);
    host.modprobe('vac');
    expectFail(host, () => host.modprobe(kvm({ postfix: '0' }), { enable_virt_at_load: 1 }), 'EBUSY');
    expect(host.lsmod().map((m) => m.name)).toEqual(['vac']);
    expect(host.devfs.list()).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });
});

function vacOrNone(host: ReturnType<typeof makeHost>): ReturnType<ReturnType<typeof vacIn>['cpus']> {
  const m = host.modules.get('vac');
  return m === undefined ? [] : vacIn(host).cpus();
}
