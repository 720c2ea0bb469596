/**
 * The VAC conformance suite ("VAC, the base module"; docs/spec.md §2 and §4, reference §1): one vendor-neutral
 * suite run against both setups of `vendors.ts`, with fake KVM instances attached straight to VAC.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { KVM_MAX_NR_USER_RETURN_MSRS, PERF_GUEST_ACTIVE, PERF_GUEST_USER, UsageError, checkInvariants, vacOf } from '@vac/core';
import type { Host, VcpuTag } from '@vac/core';
import { isIntelHardware } from '@vac/vmx';
import {
  FakeKvm,
  attachFakes,
  expectClean,
  expectFailure,
  hardwareOn,
  hooksOf,
  online,
  recordEvents,
  thrown,
  vacIn,
  vacOn,
  warningsSince,
} from './support.js';
import { MSR, VENDORS, testMsr } from './vendors.js';
import type { SetupOptions, VendorSetup } from './vendors.js';
import { VMX_NR_VPIDS, VPIDS } from '@vac/vmx';
import { ASIDS, SEV_ASIDS } from '@vac/svm';

const all = (n: number, v: boolean): boolean[] => Array.from({ length: n }, () => v);
const tag = (instance: string, vm: number, vcpu: number): VcpuTag => ({ instance, vm, vcpu });

describe.each(VENDORS)('VAC on $name', (v: VendorSetup) => {
  // Every host a test creates is checked once more after the test: no invariant may be left broken, except
  // on the hosts a test broke on purpose.
  let hosts: Host[] = [];
  const broken = new Set<Host>();
  const newHost = (opts?: SetupOptions): Host => {
    const h = v.host(opts);
    hosts.push(h);
    return h;
  };
  afterEach(() => {
    for (const h of hosts) if (!broken.has(h)) expectClean(h);
    hosts = [];
    broken.clear();
  });

  // ------------------------------------------------------------------------------------------------
  describe('loading VAC', () => {
    test(`modprobe vac picks ${v.virt}; nothing is enabled yet`, () => {
      const host = newHost({ loadVac: false });
      expect(vacOf(host)).toBeUndefined();
      host.modprobe('vac');
      const vac = vacIn(host);
      expect(vac.vendor).toBe(v.virt);
      expect(host.lsmod().map((m) => [m.name, m.refcount, m.state])).toEqual([['vac', 0, 'live']]);
      expect(vac.usageCount).toBe(0);
      expect(vac.usageHolders()).toEqual([]);
      expect(vacOn(host)).toEqual(all(4, false));
      expect(hardwareOn(host)).toEqual(all(4, false));
      expect(vac.rebooting).toBe(false);
      expectClean(host);
    });

    test('EOPNOTSUPP when CPU 0 has no VMX/SVM in CPUID; nothing is left behind', () => {
      const host = newHost({ loadVac: false, perCpu: { 0: { noVirt: true } } });
      const e = expectFailure(host, () => host.modprobe('vac'), 'EOPNOTSUPP');
      expect(e.message).toContain(v.noVirtMessage(0));
      expect(vacOf(host)).toBeUndefined();
      expect(host.lsmod()).toEqual([]);
    });

    test('EOPNOTSUPP when the BIOS disabled virtualization on CPU 0', () => {
      const host = newHost({ loadVac: false, perCpu: { 0: { biosDisabled: true } } });
      expectFailure(host, () => host.modprobe('vac'), 'EOPNOTSUPP');
      expect(host.lsmod()).toEqual([]);
    });

    test('EIO when another online CPU is BIOS-disabled; the warning names the CPU', () => {
      const host = newHost({ loadVac: false, perCpu: { 2: { biosDisabled: true } } });
      const w = host.warnings.length;
      expectFailure(host, () => host.modprobe('vac'), 'EIO');
      expect(warningsSince(host, w)).toEqual([v.biosMessage(2)]);
      expect(host.warnings.at(-1)?.cpu).toBe(2);
      expect(vacOf(host)).toBeUndefined();
    });

    test('EIO when another online CPU has no VMX/SVM at all', () => {
      const host = newHost({ loadVac: false, perCpu: { 3: { noVirt: true } } });
      const w = host.warnings.length;
      expectFailure(host, () => host.modprobe('vac'), 'EIO');
      expect(warningsSince(host, w)).toEqual([v.noVirtMessage(3)]);
    });

    test('an offline BIOS-disabled CPU does not stop the load (only online CPUs are checked)', () => {
      const host = newHost({ perCpu: { 3: { biosDisabled: true } }, offline: [3] });
      expect(vacIn(host).vendor).toBe(v.virt);
      expectClean(host);
    });

    test('VAC takes every single-owner hook exactly once, however many instances attach; rmmod gives them back', () => {
      const host = newHost({ loadVac: false });
      const base = hooksOf(host);
      host.modprobe('vac');
      const loaded = hooksOf(host);
      // One cpuhp state, in the fixed slot.
      expect(loaded.cpuhp.filter((s) => s.slot === 'CPUHP_AP_KVM_ONLINE')).toHaveLength(1);
      expect(loaded.cpuhp).toHaveLength(base.cpuhp.length + 1);
      expect(host.cpuhp.states()).toEqual(loaded.cpuhp);
      // One of each power registration.
      expect(loaded.hooks.syscore).toHaveLength(base.hooks.syscore.length + 1);
      expect(loaded.hooks.rebootNotifiers).toHaveLength(base.hooks.rebootNotifiers.length + 1);
      expect(loaded.hooks.freezers).toHaveLength(base.hooks.freezers.length + 1);
      expect(loaded.hooks.emergencyVirtCallback).toBe(true);
      // IRQ side: perf callbacks are VAC's, the PI wakeup handler is set, one NMI handler.
      expect(base.hooks.perfGuestCallbacks).toBeUndefined();
      expect(loaded.hooks.perfGuestCallbacks).toBe('vac');
      expect(base.hooks.postedIntrWakeupHandler).toBe(false);
      expect(loaded.hooks.postedIntrWakeupHandler).toBe(true);
      expect(loaded.hooks.nmiHandlers).toBe(base.hooks.nmiHandlers + 1);

      // Three instances attach, take references, run vCPUs: not one more registration.
      const fakes = attachFakes(host, ['kvm0', 'kvm1', 'kvm2']);
      for (const f of fakes) f.handle.enableVirtualization();
      fakes[1]?.load(2);
      expect(hooksOf(host)).toEqual(loaded);
      expect(host.warnings.filter((w) => /already registered/.test(w.message))).toEqual([]);
      expectClean(host);

      fakes[1]?.put(2);
      for (const f of fakes) f.handle.detach();
      host.rmmod('vac');
      expect(hooksOf(host)).toEqual(base);
      expect(host.warnings.filter((w) => /not the registered/.test(w.message))).toEqual([]);
      expect(vacOf(host)).toBeUndefined();
      expect(hardwareOn(host)).toEqual(all(4, false));
    });

    test('with VAC holding CPUHP_AP_KVM_ONLINE, a second owner of the slot gets EBUSY (why VAC must exist)', () => {
      const host = newHost();
      expectFailure(host, () => host.cpuhp.setup('kvm1/cpu:online', {}, { slot: 'CPUHP_AP_KVM_ONLINE', invoke: false }), 'EBUSY');
    });

    test('a second attach under the same instance name → EEXIST, nothing changes', () => {
      const host = newHost();
      const [a] = attachFakes(host, ['kvm0']);
      expect(a).toBeDefined();
      expectFailure(host, () => new FakeKvm(vacIn(host), 'kvm0', 5), 'EEXIST');
      expect(vacIn(host).instances()).toEqual(['kvm0']);
    });
  });

  // ------------------------------------------------------------------------------------------------
  describe('usage count', () => {
    test('0→1 enables every online CPU; other transitions only count; 1→0 disables them all', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      const ev = recordEvents(host, ['virt:enable', 'virt:disable', 'virt:usage']);

      a.handle.enableVirtualization();
      expect(vac.usageCount).toBe(1);
      expect(hardwareOn(host)).toEqual(all(4, true));
      expect(vacOn(host)).toEqual(all(4, true));
      expect(vac.cpus().map((c) => c.enableCount)).toEqual([1, 1, 1, 1]);
      expect(ev.splice(0)).toEqual(['virt:enable:0', 'virt:enable:1', 'virt:enable:2', 'virt:enable:3', 'virt:usage:kvm0:1']);
      expectClean(host);

      b.handle.enableVirtualization('vm1');
      a.handle.enableVirtualization('vm3');
      b.handle.enableVirtualization('vm1');
      expect(vac.usageCount).toBe(4);
      expect(vac.usageHolders()).toEqual([
        ['kvm0', 1],
        ['kvm0/vm3', 1],
        ['kvm1/vm1', 2],
      ]);
      expect(ev.splice(0)).toEqual(['virt:usage:kvm1/vm1:2', 'virt:usage:kvm0/vm3:3', 'virt:usage:kvm1/vm1:4']);
      expectClean(host);

      a.handle.disableVirtualization();
      b.handle.disableVirtualization('vm1');
      a.handle.disableVirtualization('vm3');
      expect(vac.usageCount).toBe(1);
      expect(hardwareOn(host)).toEqual(all(4, true));
      expect(ev.splice(0)).toEqual(['virt:usage:kvm0:3', 'virt:usage:kvm1/vm1:2', 'virt:usage:kvm0/vm3:1']);
      expectClean(host);

      b.handle.disableVirtualization('vm1');
      expect(vac.usageCount).toBe(0);
      expect(vac.usageHolders()).toEqual([]);
      expect(hardwareOn(host)).toEqual(all(4, false));
      expect(vacOn(host)).toEqual(all(4, false));
      expect(ev.splice(0)).toEqual(['virt:usage:kvm1/vm1:0', 'virt:disable:0', 'virt:disable:1', 'virt:disable:2', 'virt:disable:3']);
      expectClean(host);

      // The next 0→1 enables again.
      b.handle.enableVirtualization();
      expect(vac.cpus().map((c) => c.enableCount)).toEqual([2, 2, 2, 2]);
      expectClean(host);
    });

    test('0→1 enables only the online CPUs', () => {
      const host = newHost({ offline: [2] });
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      a.handle.enableVirtualization();
      expect(hardwareOn(host)).toEqual([true, true, false, true]);
      expect(vacOn(host)).toEqual([true, true, false, true]);
      expectClean(host);
    });

    test('dropping a reference that is not held → EINVAL, nothing changes', () => {
      const host = newHost();
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      expectFailure(host, () => a.handle.disableVirtualization(), 'EINVAL');
      a.handle.enableVirtualization('vm1');
      expectFailure(host, () => b.handle.disableVirtualization('vm1'), 'EINVAL');
      expectFailure(host, () => a.handle.disableVirtualization(), 'EINVAL');
      expectClean(host);
    });

    test('VMXON/SVME failing on CPU 3 during 0→1 → EBUSY, every other CPU rolled back, count back to 0', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      host.hardware.injectEnableFault(3, 'once');
      const w = host.warnings.length;
      const ev = recordEvents(host, ['virt:enable', 'virt:disable', 'virt:usage']);
      const e = expectFailure(host, () => a.handle.enableVirtualization(), 'EBUSY', { countersMayMove: true });
      expect(e.errno).toBe(16);
      expect(vac.usageCount).toBe(0);
      expect(vac.usageHolders()).toEqual([]);
      expect(hardwareOn(host)).toEqual(all(4, false));
      expect(vacOn(host)).toEqual(all(4, false));
      expect(a.handle.holdings().virtRefs).toEqual([]);
      // CPUs 0–2 went on and were turned off again; CPU 3 never went on; no usage change was published.
      expect(ev).toEqual(['virt:enable:0', 'virt:enable:1', 'virt:enable:2', 'virt:disable:0', 'virt:disable:1', 'virt:disable:2']);
      const warnings = warningsSince(host, w);
      expect(warnings).toContain('kvm: enabling virtualization on CPU3 failed');
      expect(host.warnings.slice(w).every((x) => x.cpu === 3)).toBe(true);
      expectClean(host);

      // The fault was a one-shot: the next get works everywhere.
      a.handle.enableVirtualization();
      expect(hardwareOn(host)).toEqual(all(4, true));
      expect(vac.usageCount).toBe(1);
      expectClean(host);
    });

    test('a permanent fault keeps failing until it is cleared', () => {
      const host = newHost();
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      host.hardware.injectEnableFault(1, 'always');
      expectFailure(host, () => a.handle.enableVirtualization(), 'EBUSY', { countersMayMove: true });
      expectFailure(host, () => a.handle.enableVirtualization('vm0'), 'EBUSY', { countersMayMove: true });
      host.hardware.injectEnableFault(1, 'off');
      a.handle.enableVirtualization();
      expect(hardwareOn(host)).toEqual(all(4, true));
      expectClean(host);
    });

    test("a foreign owner on CPU 2 → EBUSY the same way, and the foreign owner's state is untouched", () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      host.hardware.setForeignOwner(2, true);
      expectClean(host); // a foreign hypervisor alone is not a violation
      const w = host.warnings.length;
      // The snapshot covers the foreign owner's CR4.VMXE / EFER.SVME, VMXON region, VM_HSAVE_PA.
      expectFailure(host, () => a.handle.enableVirtualization(), 'EBUSY', { countersMayMove: true });
      expect(warningsSince(host, w)).toEqual(['kvm: enabling virtualization on CPU2 failed']);
      expect(hardwareOn(host)).toEqual([false, false, true, false]);
      expect(vacOn(host)).toEqual(all(4, false));
      expect(vac.usageCount).toBe(0);
      expectClean(host);

      host.hardware.setForeignOwner(2, false);
      a.handle.enableVirtualization();
      expect(hardwareOn(host)).toEqual(all(4, true));
      expectClean(host);
    });

    test('a foreign owner from boot (model option) is seen the same way', () => {
      const host = newHost({ perCpu: { 1: { foreignOwner: true } } });
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      expectFailure(host, () => a.handle.enableVirtualization(), 'EBUSY', { countersMayMove: true });
      expect(hardwareOn(host)).toEqual([false, true, false, false]);
    });

    test('while the count is > 0, a new reference does not re-check the CPUs (only the first user sees a failure)', () => {
      const host = newHost();
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      a.handle.enableVirtualization();
      host.hardware.injectEnableFault(3, 'always');
      b.handle.enableVirtualization('vm0');
      expect(vacIn(host).usageCount).toBe(2);
      host.hardware.injectEnableFault(3, 'off');
      expectClean(host);
    });
  });

  // ------------------------------------------------------------------------------------------------
  describe('hotplug', () => {
    test("CPU offline while count > 0: every instance's cpuOffline first, then the CPU is disabled", () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      a.handle.enableVirtualization();
      b.handle.enableVirtualization('vm0');
      b.load(2);
      expect(vac.runningInstance(2)).toBe('kvm1');
      const ev = recordEvents(host, ['virt:disable', 'cpu:offline']);
      host.cpuDown(2);
      // Both instances were asked while CPU 2 still had virtualization on; kvm1 put its vCPU.
      expect(a.take()).toEqual(['cpuOffline:2:enabled']);
      expect(b.take()).toEqual(['cpuOffline:2:enabled']);
      expect(ev).toEqual(['virt:disable:2', 'cpu:offline:2']);
      expect(vac.runningInstance(2)).toBeUndefined();
      expect(b.handle.holdings().runningOn).toEqual([]);
      expect(hardwareOn(host)).toEqual([true, true, false, true]);
      expect(vac.cpu(2)).toMatchObject({ online: false, enabled: false });
      expectClean(host);
    });

    test('CPU online while count > 0 enables it', () => {
      const host = newHost({ offline: [3] });
      const vac = vacIn(host);
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      a.handle.enableVirtualization();
      expect(hardwareOn(host)).toEqual([true, true, true, false]);
      host.cpuUp(3);
      expect(hardwareOn(host)).toEqual(all(4, true));
      expect(vac.cpu(3)).toMatchObject({ online: true, enabled: true, enableCount: 1 });
      expectClean(host);
    });

    test('a CPU whose enable faults is refused with EIO and stays offline', () => {
      const host = newHost({ offline: [2] });
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      a.handle.enableVirtualization();
      host.hardware.injectEnableFault(2, 'always');
      const w = host.warnings.length;
      expectFailure(host, () => host.cpuUp(2), 'EIO');
      expect(warningsSince(host, w)).toContain('kvm: enabling virtualization on CPU2 failed');
      expect(online(host)).toEqual([true, true, false, true]);
      expectClean(host);
      host.hardware.injectEnableFault(2, 'off');
      host.cpuUp(2);
      expect(hardwareOn(host)).toEqual(all(4, true));
      expectClean(host);
    });

    test('a BIOS-disabled CPU is refused with EIO while count > 0; the warning names it', () => {
      const host = newHost({ perCpu: { 3: { biosDisabled: true } }, offline: [3] });
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      a.handle.enableVirtualization();
      const w = host.warnings.length;
      expectFailure(host, () => host.cpuUp(3), 'EIO');
      expect(warningsSince(host, w)).toEqual([v.biosMessage(3), 'kvm: enabling virtualization on CPU3 failed']);
      expect(host.warnings.slice(w).map((x) => x.cpu)).toEqual([3, 3]);
      expect(host.cpus[3]?.online).toBe(false);
      expectClean(host);
    });

    if (v.virt === 'vmx') {
      test('disabling a CPU VMCLEARs every VMCS on its loaded list, whichever module loaded it (invariant 4)', () => {
        const host = newHost();
        const hw = host.hardware;
        if (!isIntelHardware(hw)) throw new Error('not Intel');
        const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
        a.handle.enableVirtualization();
        b.handle.enableVirtualization();
        const v0 = hw.allocVmcs('kvm0/vm0/vcpu0');
        const v1 = hw.allocVmcs('kvm1/vm0/vcpu0');
        const v2 = hw.allocVmcs('kvm1/vm0/vcpu1');
        hw.vmcsLoad(v0, 2);
        hw.vmcsLoad(v1, 2);
        hw.vmcsLoad(v2, 1);
        expect(hw.loadedList(2)).toEqual(['kvm1/vm0/vcpu0', 'kvm0/vm0/vcpu0']);
        expectClean(host);
        host.cpuDown(2); // hotplug disable
        expect(hw.loadedList(2)).toEqual([]);
        expect([v0.loadedOn, v0.activeOn, v1.loadedOn, v1.activeOn]).toEqual([-1, -1, -1, -1]);
        expect(v2.loadedOn).toBe(1);
        expectClean(host);
        a.handle.disableVirtualization();
        b.handle.disableVirtualization(); // 1→0 disable of CPU 1
        expect(hw.loadedList(1)).toEqual([]);
        expect([v2.loadedOn, v2.activeOn]).toEqual([-1, -1]);
        expectClean(host);
      });
    }

    test('while count = 0, hotplug does nothing to virtualization (even on a CPU that could not enable)', () => {
      const host = newHost({ perCpu: { 3: { biosDisabled: true } }, offline: [3] });
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      host.hardware.injectEnableFault(2, 'always');
      const ev = recordEvents(host, ['virt:enable', 'virt:disable', 'cpu:online', 'cpu:offline']);
      host.cpuDown(2);
      host.cpuUp(2);
      host.cpuUp(3);
      expect(ev).toEqual(['cpu:offline:2', 'cpu:online:2', 'cpu:online:3']);
      expect(a.take()).toEqual(['cpuOffline:2:disabled']);
      expect(hardwareOn(host)).toEqual(all(4, false));
      expectClean(host);
      // Now a 0→1 fails on CPU 2 (fault) and CPU 3 (BIOS): EBUSY, rolled back.
      expectFailure(host, () => a.handle.enableVirtualization(), 'EBUSY', { countersMayMove: true });
      host.hardware.injectEnableFault(2, 'off');
    });
  });

  // ------------------------------------------------------------------------------------------------
  describe('power', () => {
    test('suspend: instances kicked, CPUs 1…3 disabled through hotplug, CPU 0 through syscore; resume re-enables all', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      a.handle.enableVirtualization();
      b.handle.enableVirtualization('vm0');
      b.load(1);
      const ev = recordEvents(host, ['virt:enable', 'virt:disable', 'cpu:offline', 'cpu:online', 'power']);
      host.suspend();
      expect(ev.splice(0)).toEqual([
        'power:suspend',
        'virt:disable:1',
        'cpu:offline:1',
        'virt:disable:2',
        'cpu:offline:2',
        'virt:disable:3',
        'cpu:offline:3',
        'virt:disable:0',
      ]);
      expect(a.take()).toEqual(['kickAll:suspend', 'cpuOffline:1:enabled', 'cpuOffline:2:enabled', 'cpuOffline:3:enabled']);
      expect(b.take()).toEqual(['kickAll:suspend', 'cpuOffline:1:enabled', 'cpuOffline:2:enabled', 'cpuOffline:3:enabled']);
      expect(hardwareOn(host)).toEqual(all(4, false));
      expect(vac.usageCount).toBe(2);
      expect(vac.runningInstance(1)).toBeUndefined();
      expectClean(host);

      host.resume();
      expect(ev.splice(0)).toEqual([
        'power:resume',
        'virt:enable:0',
        'virt:enable:1',
        'cpu:online:1',
        'virt:enable:2',
        'cpu:online:2',
        'virt:enable:3',
        'cpu:online:3',
      ]);
      expect(hardwareOn(host)).toEqual(all(4, true));
      expect(vacOn(host)).toEqual(all(4, true));
      expect(host.systemState).toBe('running');
      expectClean(host);
    });

    test('suspend and resume with count = 0 leave virtualization off', () => {
      const host = newHost();
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      const ev = recordEvents(host, ['virt:enable', 'virt:disable']);
      host.suspend();
      host.resume();
      expect(ev).toEqual([]);
      expect(online(host)).toEqual(all(4, true));
      expect(a.take()[0]).toBe('kickAll:suspend');
      expectClean(host);
    });

    test('a resume failure on CPU 0 is a warning; resume goes on and the other CPUs come back enabled', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      a.handle.enableVirtualization();
      host.suspend();
      host.hardware.injectEnableFault(0, 'once');
      const w = host.warnings.length;
      host.resume();
      expect(warningsSince(host, w)).toEqual(expect.arrayContaining(['kvm: enabling virtualization on CPU0 failed', 'kvm_resume: re-enabling virtualization on CPU0 failed']));
      expect(host.systemState).toBe('running');
      expect(online(host)).toEqual(all(4, true));
      expect(hardwareOn(host)).toEqual([false, true, true, true]);
      // The host is now inconsistent, as Linux is after its WARN: the checker says where.
      const violations = checkInvariants(host);
      expect(violations.length).toBeGreaterThan(0);
      expect(violations.every((x) => x.invariant === 1 && x.cpu === 0)).toBe(true);
      // Recovery: the next 1→0→1 cycle brings CPU 0 back.
      a.handle.disableVirtualization();
      a.handle.enableVirtualization();
      expect(hardwareOn(host)).toEqual(all(4, true));
      expect(vac.cpu(0).enabled).toBe(true);
      expectClean(host);
    });

    test('a non-boot CPU that fails at resume is a warning and stays offline', () => {
      const host = newHost();
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      a.handle.enableVirtualization();
      host.suspend();
      host.hardware.injectEnableFault(2, 'once');
      const w = host.warnings.length;
      host.resume();
      expect(warningsSince(host, w)).toContain('Error taking CPU2 up: -5');
      expect(warningsSince(host, w)).toContain('kvm: enabling virtualization on CPU2 failed');
      expect(online(host)).toEqual([true, true, false, true]);
      expect(hardwareOn(host)).toEqual([true, true, false, true]);
      expectClean(host);
      host.cpuUp(2); // the fault was one-shot
      expect(hardwareOn(host)).toEqual(all(4, true));
      expectClean(host);
    });

    test('reboot: instances kicked, rebooting (sticky), every CPU disabled; a later get → EBUSY', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      a.handle.enableVirtualization();
      const w = host.warnings.length;
      host.reboot();
      expect(a.take()).toEqual(['kickAll:reboot']);
      expect(b.take()).toEqual(['kickAll:reboot']);
      expect(vac.rebooting).toBe(true);
      expect(a.handle.rebooting).toBe(true);
      expect(hardwareOn(host)).toEqual(all(4, false));
      expect(vacOn(host)).toEqual(all(4, false));
      expect(warningsSince(host, w).filter((m) => /BUG|spurious/.test(m))).toEqual([]);
      expectClean(host);
      // A new 0→1 and a new reference while the count is > 0 both fail.
      expectFailure(host, () => b.handle.enableVirtualization(), 'EBUSY');
      a.handle.disableVirtualization();
      expect(vac.usageCount).toBe(0);
      expectFailure(host, () => a.handle.enableVirtualization(), 'EBUSY');
      expect(vac.rebooting).toBe(true);
      expectClean(host);
    });

    test('crash: every loaded VMCS is VMCLEARed, VMX/SVM off everywhere, rebooting set, instances kicked', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      a.handle.enableVirtualization();
      b.handle.enableVirtualization('vm0');
      b.load(1);
      const hw = host.hardware;
      const vmcss = isIntelHardware(hw)
        ? [
            [hw.allocVmcs('kvm0/vm0/vcpu0'), 1],
            [hw.allocVmcs('kvm1/vm0/vcpu0'), 1],
            [hw.allocVmcs('kvm1/vm0/vcpu1'), 3],
          ] as const
        : [];
      const vmclears = host.cpus.map((c) => (isIntelHardware(hw) ? hw.counters(c.id).vmclear : 0));
      for (const [vmcs, cpu] of vmcss) if (isIntelHardware(hw)) hw.vmcsLoad(vmcs, cpu);
      for (const [vmcs, cpu] of vmcss) expect(vmcs.activeOn).toBe(cpu);
      expectClean(host);

      host.crash();
      expect(vac.rebooting).toBe(true);
      expect(hardwareOn(host)).toEqual(all(4, false));
      expect(vacOn(host)).toEqual(all(4, false));
      expect(a.take()).toEqual(['kickAll:crash']);
      expect(b.take()).toEqual(['kickAll:crash']);
      for (const [vmcs] of vmcss) {
        expect(vmcs.activeOn).toBe(-1);
        expect(vmcs.launchState).toBe('clear');
      }
      if (isIntelHardware(hw)) {
        expect(host.cpus.map((c) => hw.counters(c.id).vmclear - (vmclears[c.id] ?? 0))).toEqual([0, 2, 0, 1]);
        expect(host.cpus.map((c) => hw.inVmxOperation(c.id))).toEqual(all(4, false));
      }
      expectClean(host);
      expectFailure(host, () => b.handle.enableVirtualization('vm9'), 'EBUSY');
    });

    test('crash with count = 0 still sets rebooting; a later get → EBUSY', () => {
      const host = newHost();
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      host.crash();
      expect(vacIn(host).rebooting).toBe(true);
      expectFailure(host, () => a.handle.enableVirtualization(), 'EBUSY');
      expectClean(host);
    });
  });

  // ------------------------------------------------------------------------------------------------
  describe('allocators through handles', () => {
    if (v.virt === 'vmx') {
      test('VPIDs: lowest free first, unique across instances; exhaustion returns 0 (counted), no error', () => {
        const host = newHost();
        const vac = vacIn(host);
        const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
        expect(a.handle.resource(VPIDS).allocate(tag('kvm0', 0, 0))).toBe(1);
        expect(b.handle.resource(VPIDS).allocate(tag('kvm1', 0, 0))).toBe(2);
        expect(a.handle.resource(VPIDS).allocate(tag('kvm0', 0, 1))).toBe(3);
        a.handle.resource(VPIDS).free(1);
        expect(b.handle.resource(VPIDS).allocate(tag('kvm1', 0, 1))).toBe(1);
        expect((vac.tryResource(VPIDS)?.holders() ?? [])).toEqual([
          { vpid: 1, holder: 'kvm1/vm0/vcpu1' },
          { vpid: 2, holder: 'kvm1/vm0/vcpu0' },
          { vpid: 3, holder: 'kvm0/vm0/vcpu1' },
        ]);
        expectClean(host);
        // Fill the space: 65,535 VPIDs in all (0 is the host's).
        const got: number[] = [];
        for (let i = 4; i < VMX_NR_VPIDS; i++) got.push(a.handle.resource(VPIDS).allocate(tag('kvm0', 1, i)));
        expect(got.every((vpid, k) => vpid === k + 4)).toBe(true);
        expect((vac.tryResource(VPIDS)?.holders() ?? [])).toHaveLength(VMX_NR_VPIDS - 1);
        expect(vac.tryResource(VPIDS)?.exhaustions).toBe(0);
        const before = host.snapshot();
        expect(b.handle.resource(VPIDS).allocate(tag('kvm1', 2, 0))).toBe(0);
        expect(a.handle.resource(VPIDS).allocate(tag('kvm0', 2, 0))).toBe(0);
        expect(vac.tryResource(VPIDS)?.exhaustions).toBe(2);
        expect(host.snapshot()).toEqual(before);
        b.handle.resource(VPIDS).free(0); // no-op
        expect(host.snapshot()).toEqual(before);
        expectClean(host);
        a.handle.resource(VPIDS).free(40000);
        expect(b.handle.resource(VPIDS).allocate(tag('kvm1', 3, 0))).toBe(40000);
        expect(b.handle.holdings().resources.vpids).toEqual([1, 2, 40000]);
      });

      test('a handle cannot free another instance’s VPID, nor allocate for another instance’s tag (EPERM)', () => {
        const host = newHost();
        const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
        const vpid = a.handle.resource(VPIDS).allocate(tag('kvm0', 0, 0));
        expectFailure(host, () => b.handle.resource(VPIDS).free(vpid), 'EPERM');
        expectFailure(host, () => b.handle.resource(VPIDS).free(77), 'EPERM');
        expectFailure(host, () => b.handle.resource(VPIDS).allocate(tag('kvm0', 0, 1)), 'EPERM');
        a.handle.resource(VPIDS).free(vpid);
        expectFailure(host, () => a.handle.resource(VPIDS).free(vpid), 'EPERM'); // double free
        expectClean(host);
      });
    }

    if (v.virt === 'svm') {
      // nrAsids 8, max SEV ASID 3 → ordinary ASIDs 4 … 7, four per generation.
      const small = { nrAsids: 8, maxSevAsid: 3, minSevAsid: 2 } as const;

      test('ASIDs roll over to a new generation with a flush of every ASID', () => {
        const host = newHost(small);
        const vac = vacIn(host);
        const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
        a.handle.enableVirtualization('vm0');
        a.load(1);
        expect(vac.tryResource(ASIDS)?.cpuState(1)).toMatchObject({ generation: 1, nextAsid: 8 });
        const t = [0, 1, 2, 3, 4].map((i) => tag('kvm0', 0, i));
        const grants = t.map((x) => a.handle.resource(ASIDS).newAsid(1, x));
        expect(grants).toEqual([
          { asid: 4, generation: 2, flushAll: true }, // first use after enable rolls over
          { asid: 5, generation: 2, flushAll: false },
          { asid: 6, generation: 2, flushAll: false },
          { asid: 7, generation: 2, flushAll: false },
          { asid: 4, generation: 3, flushAll: true },
        ]);
        expect(vac.tryResource(ASIDS)?.rollovers).toBe(2);
        expect(a.handle.resource(ASIDS).isCurrent(1, 2)).toBe(false);
        expect(a.handle.resource(ASIDS).isCurrent(1, 3)).toBe(true);
        expect(vac.tryResource(ASIDS)?.cpuState(1)?.holders).toEqual([{ asid: 4, holder: 'kvm0/vm0/vcpu4' }]);
        expectClean(host);
      });

      test('two instances on one CPU never hold the same ASID in one generation', () => {
        const host = newHost(small);
        const vac = vacIn(host);
        const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
        a.handle.enableVirtualization('vm0');
        b.handle.enableVirtualization('vm0');
        const ta = [0, 1, 2].map((i) => tag('kvm0', 0, i));
        const tb = [0, 1, 2].map((i) => tag('kvm1', 0, i));
        for (let round = 0; round < 40; round++) {
          const [f, t] = round % 2 === 0 ? [a, ta] : [b, tb];
          f.load(2);
          f.handle.resource(ASIDS).newAsid(2, t[round % 3] as VcpuTag);
          f.put(2);
          const held = vac.tryResource(ASIDS)?.cpuState(2)?.holders.map((h) => h.asid) ?? [];
          expect(new Set(held).size).toBe(held.length);
          expectClean(host);
        }
        expect(vac.tryResource(ASIDS)?.rollovers).toBeGreaterThan(5);
        expectFailure(host, () => a.handle.resource(ASIDS).newAsid(2, tb[0] as VcpuTag), 'EPERM');
      });

      test('the ASID generation keeps counting across a disable/enable cycle (VAC never reuses a generation)', () => {
        const host = newHost(small);
        const vac = vacIn(host);
        const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
        const t = tag('kvm0', 0, 0);
        a.handle.enableVirtualization('vm0');
        const g = a.handle.resource(ASIDS).newAsid(0, t);
        expect(g.generation).toBe(2);
        a.handle.disableVirtualization('vm0');
        a.handle.enableVirtualization('vm0');
        // Linux would restart at 1 and reach 2 again at the next rollover; VAC continues from 3.
        expect(vac.tryResource(ASIDS)?.cpuState(0)?.generation).toBe(3);
        expect(a.handle.resource(ASIDS).isCurrent(0, g.generation)).toBe(false);
        expect(a.handle.resource(ASIDS).newAsid(0, tag('kvm0', 0, 1))).toEqual({ asid: 4, generation: 4, flushAll: true });
        a.handle.resource(ASIDS).release(t);
        expectClean(host);
      });

      test('a failed 0→1 does not touch the ASID state of the CPUs it rolled back', () => {
        const host = newHost(small);
        const vac = vacIn(host);
        const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
        host.hardware.injectEnableFault(3, 'once');
        expectFailure(host, () => a.handle.enableVirtualization(), 'EBUSY', { countersMayMove: true });
        expect(host.cpus.map((c) => vac.tryResource(ASIDS)?.cpuState(c.id)?.generation)).toEqual([0, 0, 0, 0]);
      });

      test('SEV ASIDs: one per VM across instances, exhaustion → EBUSY, recycled only after a flush', () => {
        // SEV ASIDs 3 … 4, SEV-ES ASIDs 1 … 2.
        const host = newHost({ nrAsids: 16, maxSevAsid: 4, minSevAsid: 3 });
        const vac = vacIn(host);
        const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
        expect(vac.tryResource(SEV_ASIDS)?.state()?.range).toEqual({ sev: [3, 4], sevEs: [1, 2] });
        expect(a.handle.resource(SEV_ASIDS).alloc(false, tag('kvm0', 1, 0))).toBe(3);
        expect(b.handle.resource(SEV_ASIDS).alloc(false, tag('kvm1', 1, 0))).toBe(4);
        expect(b.handle.resource(SEV_ASIDS).alloc(true, tag('kvm1', 2, 0))).toBe(1);
        expect(vac.tryResource(SEV_ASIDS)?.state()?.inUse).toEqual([
          { asid: 1, holder: 'kvm1/vm2' },
          { asid: 3, holder: 'kvm0/vm1' },
          { asid: 4, holder: 'kvm1/vm1' },
        ]);
        // Nothing free and nothing to reclaim: EBUSY without a flush.
        expectFailure(host, () => a.handle.resource(SEV_ASIDS).alloc(false, tag('kvm0', 3, 0)), 'EBUSY');
        expect(vac.tryResource(SEV_ASIDS)?.state()).toMatchObject({ flushes: 0, recycles: 0 });
        // Another instance's ASID: EPERM.
        expectFailure(host, () => a.handle.resource(SEV_ASIDS).free(4), 'EPERM');
        expectFailure(host, () => a.handle.resource(SEV_ASIDS).alloc(false, tag('kvm1', 3, 0)), 'EPERM');
        // Freed → awaiting reclaim; the next allocation flushes and recycles it.
        b.handle.resource(SEV_ASIDS).free(4);
        expect(vac.tryResource(SEV_ASIDS)?.state()?.awaitingReclaim).toEqual([4]);
        expectClean(host);
        expect(a.handle.resource(SEV_ASIDS).alloc(false, tag('kvm0', 3, 0))).toBe(4);
        expect(vac.tryResource(SEV_ASIDS)?.state()).toMatchObject({ flushes: 1, recycles: 1, awaitingReclaim: [] });
        // A freed ASID is not reused while another one is free: no flush needed.
        expect(a.handle.resource(SEV_ASIDS).alloc(true, tag('kvm0', 4, 0))).toBe(2);
        b.handle.resource(SEV_ASIDS).free(1);
        a.handle.resource(SEV_ASIDS).free(2);
        expect(b.handle.resource(SEV_ASIDS).alloc(true, tag('kvm1', 5, 0))).toBe(1);
        expect(vac.tryResource(SEV_ASIDS)?.state()).toMatchObject({ flushes: 2, recycles: 2 });
        expectClean(host);
      });
    }

    test('user-return MSRs: the same MSR registered by two instances shares one slot', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      const s1 = a.handle.addUserReturnMsr(MSR.STAR);
      const s2 = a.handle.addUserReturnMsr(MSR.LSTAR);
      expect(b.handle.addUserReturnMsr(MSR.LSTAR)).toBe(s2);
      expect(b.handle.addUserReturnMsr(MSR.STAR)).toBe(s1);
      expect(vac.userReturnSlots()).toEqual([
        { slot: 0, msr: MSR.STAR, refs: 2 },
        { slot: 1, msr: MSR.LSTAR, refs: 2 },
      ]);
      expect(b.handle.findUserReturnMsr(MSR.LSTAR)).toBe(1);
      expect(b.handle.findUserReturnMsr(MSR.CSTAR)).toBe(-1);
      a.handle.detach();
      expect(vac.userReturnSlots()).toEqual([
        { slot: 0, msr: MSR.STAR, refs: 1 },
        { slot: 1, msr: MSR.LSTAR, refs: 1 },
      ]);
      expectClean(host);
    });

    test('user-return MSRs: 16 distinct slots, a 17th distinct MSR → ENOSPC; a faulting MSR → EIO', () => {
      const msrs = Array.from({ length: KVM_MAX_NR_USER_RETURN_MSRS + 1 }, (_, i) => testMsr(i));
      const host = newHost({ extraMsrs: msrs.map((m) => [m, 0n] as const) });
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      for (let i = 0; i < KVM_MAX_NR_USER_RETURN_MSRS; i++) {
        expect((i % 2 === 0 ? a : b).handle.addUserReturnMsr(msrs[i] as number)).toBe(i);
      }
      expectFailure(host, () => a.handle.addUserReturnMsr(msrs[16] as number), 'ENOSPC');
      expectFailure(host, () => b.handle.addUserReturnMsr(msrs[16] as number), 'ENOSPC');
      // Sharing a listed MSR still works when all slots are in use.
      expect(b.handle.addUserReturnMsr(msrs[0] as number)).toBe(0);
      expect(vac.userReturnSlots()).toHaveLength(16);
      // Once a slot is free again (its last user left), the 17th fits.
      a.handle.detach();
      expect(vac.userReturnSlots().map((s) => s.slot)).toEqual([0, 1, 3, 5, 7, 9, 11, 13, 15]);
      expect(b.handle.addUserReturnMsr(msrs[16] as number)).toBe(2);
      expectClean(host);

      const host2 = newHost();
      const [c] = attachFakes(host2, ['kvm0']) as [FakeKvm];
      expectFailure(host2, () => c.handle.addUserReturnMsr(testMsr(99)), 'EIO');
    });

    test('user-return MSRs: a guest value is restored by returnToUser, and dropped (restored) on CPU disable', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      const star = (cpu: number): bigint | undefined => host.cpus[cpu]?.rdmsrSafe(MSR.STAR);
      const hostStar = star(1);
      a.handle.enableVirtualization('vm0');
      const slot = a.handle.addUserReturnMsr(MSR.STAR);
      const all1 = (1n << 64n) - 1n;
      a.load(1);
      expect(a.handle.setUserReturnMsr(1, slot, 0x1234n, all1)).toBe(0);
      expect(star(1)).toBe(0x1234n);
      expect(vac.userReturnState(1)).toEqual({ registered: true, values: [{ slot, msr: MSR.STAR, host: hostStar, curr: 0x1234n }] });
      expect(vac.userReturnState(2).registered).toBe(false);
      a.handle.returnToUser(1);
      expect(star(1)).toBe(hostStar);
      expect(vac.userReturnState(1).registered).toBe(false);
      // A mask keeps the host's bits outside it.
      expect(a.handle.setUserReturnMsr(1, slot, 0n, 0xffffn)).toBe(0);
      expect(star(1)).toBe((hostStar ?? 0n) & ~0xffffn);
      a.put(1);
      // Hotplug disable drops the notifier (restoring first).
      a.load(2);
      a.handle.setUserReturnMsr(2, slot, 0x42n, all1);
      expect(star(2)).toBe(0x42n);
      host.cpuDown(2);
      expect(star(2)).toBe(hostStar);
      expect(vac.userReturnState(2).registered).toBe(false);
      expectClean(host);
      // The 1→0 disable does the same on every CPU.
      a.load(3);
      b.handle.returnToUser(1); // another instance's return to user restores the shared slot on CPU 1 too
      expect(star(1)).toBe(hostStar);
      a.handle.setUserReturnMsr(3, slot, 0x77n, all1);
      a.handle.setUserReturnMsr(0, slot, 0x78n, all1);
      a.put(3);
      a.handle.disableVirtualization('vm0');
      expect([0, 1, 3].map(star)).toEqual([hostStar, hostStar, hostStar]);
      expect(host.cpus.map((c) => vac.userReturnState(c.id).registered)).toEqual(all(4, false));
      expectClean(host);
    });

    test('detach with live vCPU resources → EBUSY, nothing released', () => {
      const host = newHost({ nrAsids: 16, maxSevAsid: 4, minSevAsid: 3 });
      const vac = vacIn(host);
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      a.handle.enableVirtualization();
      a.handle.addUserReturnMsr(MSR.STAR);
      const detach = (): void => a.handle.detach();
      // A VM's usage reference.
      a.handle.enableVirtualization('vm1');
      expectFailure(host, detach, 'EBUSY');
      a.handle.disableVirtualization('vm1');
      // A CPU it runs on.
      a.load(2);
      expectFailure(host, detach, 'EBUSY');
      expect(a.handle.attached).toBe(true);
      a.put(2);
      if (v.virt === 'vmx') {
        const vpid = a.handle.resource(VPIDS).allocate(tag('kvm0', 1, 0));
        expectFailure(host, detach, 'EBUSY');
        a.handle.resource(VPIDS).free(vpid);
      } else {
        const t = tag('kvm0', 1, 0);
        a.handle.resource(ASIDS).newAsid(0, t);
        expectFailure(host, detach, 'EBUSY');
        a.handle.resource(ASIDS).release(t);
        const sev = a.handle.resource(SEV_ASIDS).alloc(false, tag('kvm0', 1, 0));
        expectFailure(host, detach, 'EBUSY');
        a.handle.resource(SEV_ASIDS).free(sev);
      }
      expect(vac.instances()).toEqual(['kvm0']);
      expectClean(host);
      a.handle.detach();
      expect(vac.instances()).toEqual([]);
      expectClean(host);
    });

    test('detach after releasing: user-return slots (last registered first), then usage references', () => {
      const [x, y, w] = [testMsr(0), testMsr(1), testMsr(2)];
      const host = newHost({
        extraMsrs: [
          [x, 0x10n],
          [y, 0x20n],
          [w, 0x30n],
        ],
      });
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      const log = recordEvents(host, ['virt:usage', 'virt:disable']);
      const cpu1 = host.cpus[1];
      if (cpu1 === undefined) throw new Error('no CPU 1');
      const names = new Map([
        [x, 'x'],
        [y, 'y'],
        [w, 'w'],
      ]);
      for (const m of names.keys()) {
        cpu1.msrWriteHooks.set(m, (_c, msr, value) => {
          log.push(`wrmsr:${names.get(msr) ?? '?'}=0x${value.toString(16)}`);
          return true;
        });
      }
      a.handle.enableVirtualization();
      a.handle.enableVirtualization();
      const sx = a.handle.addUserReturnMsr(x);
      const sy = a.handle.addUserReturnMsr(y);
      const sw = a.handle.addUserReturnMsr(w);
      b.handle.addUserReturnMsr(y);
      a.load(1);
      a.handle.setUserReturnMsr(1, sx, 0x11n, 0xffn);
      a.handle.setUserReturnMsr(1, sy, 0x21n, 0xffn);
      a.handle.setUserReturnMsr(1, sw, 0x31n, 0xffn);
      a.put(1);
      log.length = 0;
      a.handle.detach();
      expect(log).toEqual([
        // Slots in reverse order of registration: w (last user: restored), y (still kvm1's: kept), x (restored).
        'wrmsr:w=0x30',
        'wrmsr:x=0x10',
        // Then the module's own usage references; the last one disables every CPU.
        'virt:usage:kvm0:1',
        'virt:usage:kvm0:0',
        'virt:disable:0',
        'virt:disable:1',
        'wrmsr:y=0x20', // CPU 1's disable drops its return-to-user notifier: y gets the host value back
        'virt:disable:2',
        'virt:disable:3',
      ]);
      expect(a.handle.attached).toBe(false);
      expect(a.handle.holdings()).toEqual({ virtRefs: [], resources: v.emptyResources, userReturnMsrs: [], runningOn: [] });
      expect(vac.instances()).toEqual(['kvm1']);
      expect(vac.userReturnSlots()).toEqual([{ slot: sy, msr: y, refs: 1 }]);
      expect(vac.usageCount).toBe(0);
      expect(hardwareOn(host)).toEqual(all(4, false));
      expect([x, y, w].map((m) => cpu1.rdmsrSafe(m))).toEqual([0x10n, 0x20n, 0x30n]);
      // A detached instance is out of every fan-out, and its handle is dead.
      a.blocked.set(1, ['kvm0/vm0/vcpu9']);
      expect(host.raisePostedIntrWakeup(1)).toEqual([]);
      expect(a.take()).toEqual([]);
      expect(thrown(() => a.handle.enableVirtualization())).toBeInstanceOf(UsageError);
      expect(thrown(() => a.handle.vcpuLoad(1))).toBeInstanceOf(UsageError);
      expect(vac.runningInstance(1)).toBeUndefined();
      a.handle.detach(); // a second detach is a no-op
      expectClean(host);
      b.handle.detach();
      expect(vac.userReturnSlots()).toEqual([]);
      expectClean(host);
    });
  });

  // ------------------------------------------------------------------------------------------------
  describe('IRQ registry', () => {
    test('a PMI with no vCPU running is a host PMI (state 0); no instance is asked', () => {
      const host = newHost();
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      for (const c of host.cpus) {
        expect(host.raisePmi(c.id)).toEqual({ cpu: c.id, state: 0, ip: undefined, callbacks: 'vac', attributedTo: undefined });
      }
      expect(a.take()).toEqual([]);
      expect(b.take()).toEqual([]);
    });

    test('after vcpuLoad the PMI reaches that instance (state, RIP, attribution); after vcpuPut it does not', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      a.handle.enableVirtualization('vm0');
      b.handle.enableVirtualization('vm0');
      b.load(3);
      expect(vac.runningInstance(3)).toBe('kvm1');
      expect(vac.cpu(3).running).toBe('kvm1/vm0/vcpu3');
      expect(host.raisePmi(3)).toEqual({ cpu: 3, state: PERF_GUEST_ACTIVE, ip: b.ip(3), callbacks: 'vac', attributedTo: 'kvm1/vm0/vcpu3' });
      b.guestUser = true;
      expect(host.raisePmi(3).state).toBe(PERF_GUEST_ACTIVE | PERF_GUEST_USER);
      expect(b.take()).toEqual(['pmi:state:3', 'pmi:ip:3', 'pmi:exit:3', 'pmi:state:3', 'pmi:ip:3', 'pmi:exit:3']);
      expect(a.take()).toEqual([]);
      expect(host.raisePmi(2).state).toBe(0);
      b.put(3);
      expect(host.raisePmi(3).state).toBe(0);
      expect(b.take()).toEqual([]);
      expectClean(host);
    });

    test('two instances interleaved on the same CPUs: every PMI reaches exactly the owner (invariant 5)', () => {
      const host = newHost();
      const vac = vacIn(host);
      const fakes = attachFakes(host) as [FakeKvm, FakeKvm];
      for (const f of fakes) f.handle.enableVirtualization('vm0');
      const owner: Array<FakeKvm | undefined> = [undefined, undefined, undefined, undefined];
      for (let step = 0; step < 24; step++) {
        const cpu = 1 + (step % 3);
        const f = fakes[(step >> 1) % 2] as FakeKvm;
        const cur = owner[cpu];
        if (cur !== undefined) {
          cur.put(cpu); // vcpu_put of the one running there (preempt notifier), then the other's vcpu_load
          owner[cpu] = undefined;
        }
        if (cur !== f) {
          f.load(cpu);
          owner[cpu] = f;
        }
        for (const c of host.cpus) {
          for (const x of fakes) x.take();
          const r = host.raisePmi(c.id);
          const o = owner[c.id];
          expect(vac.runningInstance(c.id)).toBe(o?.name);
          expect(r.state).toBe(o === undefined ? 0 : PERF_GUEST_ACTIVE);
          expect(r.attributedTo).toBe(o?.label(c.id));
          expect(r.ip).toBe(o?.ip(c.id));
          for (const x of fakes) expect(x.take()).toEqual(x === o ? [`pmi:state:${c.id}`, `pmi:ip:${c.id}`, `pmi:exit:${c.id}`] : []);
        }
        expectClean(host);
      }
    });

    test('a load by another instance while one runs on the CPU is refused (EBUSY); a stale put changes nothing', () => {
      const host = newHost();
      const vac = vacIn(host);
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      a.handle.enableVirtualization('vm0');
      b.handle.enableVirtualization('vm0');
      a.load(1);
      expectFailure(host, () => b.load(1), 'EBUSY');
      expect(vac.runningInstance(1)).toBe('kvm0');
      b.put(1); // not b's CPU: nothing changes
      expect(vac.runningInstance(1)).toBe('kvm0');
      a.put(1);
      b.load(1);
      expect(vac.runningInstance(1)).toBe('kvm1');
      expect(host.raisePmi(1).attributedTo).toBe('kvm1/vm0/vcpu1');
      b.put(1);
      expect(vac.runningInstance(1)).toBeUndefined();
      expectClean(host);
    });

    test('posted-interrupt wakeup fans out to every instance, in attach order', () => {
      const host = newHost();
      const fakes = attachFakes(host, ['kvm0', 'kvm1', 'kvm2']) as [FakeKvm, FakeKvm, FakeKvm];
      fakes[0].blocked.set(2, ['kvm0/vm1/vcpu0']);
      fakes[2].blocked.set(2, ['kvm2/vm0/vcpu3', 'kvm2/vm0/vcpu4']);
      fakes[1].blocked.set(1, ['kvm1/vm0/vcpu0']);
      expect(host.raisePostedIntrWakeup(2)).toEqual(['kvm0/vm1/vcpu0', 'kvm2/vm0/vcpu3', 'kvm2/vm0/vcpu4']);
      for (const f of fakes) expect(f.take()).toEqual(['pi:2']);
      expect(host.raisePostedIntrWakeup(2)).toEqual([]);
      expect(host.raisePostedIntrWakeup(1)).toEqual(['kvm1/vm0/vcpu0']);
    });

    test('an NMI is attributed to the instance running on that CPU', () => {
      const host = newHost();
      const [a, b] = attachFakes(host) as [FakeKvm, FakeKvm];
      a.handle.enableVirtualization('vm0');
      b.handle.enableVirtualization('vm0');
      expect(host.raiseNmi(1)).toEqual([]);
      a.load(1);
      b.load(2);
      expect(host.raiseNmi(1)).toEqual(['kvm0/vm0/vcpu1']);
      expect(host.raiseNmi(2)).toEqual(['kvm1/vm0/vcpu2']);
      expect(host.raiseNmi(3)).toEqual([]);
      expect(a.take()).toEqual(['nmi:1']);
      expect(b.take()).toEqual(['nmi:2']);
      expectClean(host);
    });

    test('without VAC, perf has no guest callbacks and PI wakeups reach nobody', () => {
      const host = newHost({ loadVac: false });
      expect(host.raisePmi(0)).toEqual({ cpu: 0, state: 0, ip: undefined, callbacks: undefined, attributedTo: undefined });
      expect(host.raisePostedIntrWakeup(0)).toEqual([]);
      expect(host.raiseNmi(0)).toEqual([]);
    });
  });

  // ------------------------------------------------------------------------------------------------
  describe('invariant checker', () => {
    const enabledHost = (): { host: Host; a: FakeKvm } => {
      const host = newHost();
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      a.handle.enableVirtualization();
      expectClean(host);
      return { host, a };
    };

    test('virtualization turned off behind VAC’s back is reported, with the CPU', () => {
      const { host } = enabledHost();
      broken.add(host);
      v.turnOffBehindVacsBack(host, 2);
      const found = checkInvariants(host);
      expect(found.length).toBeGreaterThan(0);
      expect(found.every((x) => x.invariant === 1 && x.cpu === 2)).toBe(true);
      expect(found.map((x) => x.message)).toContain('VAC thinks CPU 2 is enabled but the hardware is not');
    });

    test('a foreign owner claiming a CPU VAC enabled is two owners, reported with the CPU', () => {
      const { host } = enabledHost();
      broken.add(host);
      host.hardware.setForeignOwner(1, true);
      const found = checkInvariants(host);
      expect(found.length).toBeGreaterThan(0);
      expect(found.every((x) => x.invariant === 1 && x.cpu === 1)).toBe(true);
      expect(found.some((x) => /two owners/.test(x.message))).toBe(true);
    });

    test('a CPU enabled with the hardware directly (count 0) is reported, with the CPU', () => {
      const host = newHost();
      attachFakes(host, ['kvm0']);
      broken.add(host);
      v.enableBehindVacsBack(host, 3);
      const found = checkInvariants(host);
      expect(found.length).toBeGreaterThan(0);
      expect(found.every((x) => x.invariant === 1 && x.cpu === 3)).toBe(true);
    });

    test('a vCPU loaded on a CPU with virtualization off is reported, with the CPU', () => {
      const host = newHost();
      const [a] = attachFakes(host, ['kvm0']) as [FakeKvm];
      a.load(2);
      const found = checkInvariants(host);
      expect(found).toEqual([expect.objectContaining({ invariant: 1, cpu: 2 })]);
      a.put(2);
      expectClean(host);
    });
  });
});
