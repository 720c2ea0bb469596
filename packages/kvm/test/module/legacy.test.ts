/**
 * Legacy mode (issue 4, "Done means" 5; docs/spec.md §3 "Legacy mode"): KVM modules that keep some system-wide
 * resource to themselves, as before VAC. Each collision shows; the VAC-mode twin of each test shows none.
 */
import { O_RDWR, checkInvariants, type Host } from '@vac/core';
import { amd } from '@vac/svm';
import { describe, expect, test } from 'vitest';
import { KVM_CREATE_VM, KVM_MEMORY_ENCRYPT_OP, kvm, type LegacyResource } from '../../src/index.js';
import { SPIN, VENDORS, makeHost, makeVm, vmmProcess } from './helpers.js';
import { expectCode, expectFail, spawnVcpuThread, vacIn, vcpuOf } from './integration.js';

/** perf's WARN for a second registrant. */
const PERF_IGNORED = /^perf_register_guest_info_callbacks: \S+: callbacks of \S+ already registered, ignored$/;

const warningsSince = (host: Host, n: number): string[] => host.warnings.slice(n).map((w) => w.message);

describe.each(VENDORS)('legacy collisions on $name', (vendor) => {
  test('two full-legacy modules: the second load fails with EBUSY (the fixed hotplug slot, then misc minor 232)', () => {
    const host = makeHost(vendor.hardware());
    host.insmod(kvm({ postfix: '0', legacy: true }));
    expect(host.lsmod().map((m) => m.name)).toEqual(['kvm0']); // no vac at all
    expect(host.stat('/dev/kvm0')).toMatchObject({ major: 10, minor: 232 });
    // kvm0's private copy holds the perf callbacks.
    expect(host.snapshot().hooks.perfGuestCallbacks).toBe('kvm0:legacy');
    // kvm_init's order: the hotplug slot is claimed before misc_register, so that is what collides first.
    const e = expectFail(host, () => host.insmod(kvm({ postfix: '1', legacy: true })), 'EBUSY');
    expect(e.message).toContain('CPUHP_AP_KVM_ONLINE is already taken');
    expect(checkInvariants(host)).toEqual([]);
    host.rmmod('kvm0');
    expect(host.snapshot().hooks).toMatchObject({ perfGuestCallbacks: undefined, emergencyVirtCallback: false, syscore: [] });
  });

  test("legacy: ['minor'] twice: misc_register of the second gets EBUSY (minor 232 is taken); VAC mode: dynamic minors", () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0', legacy: ['minor'] }));
    expect(host.stat('/dev/kvm0')).toMatchObject({ minor: 232 });
    const seen: string[] = [];
    host.events.onAny((n) => seen.push(n));
    const e = expectFail(host, () => host.modprobe(kvm({ postfix: '1', legacy: ['minor'] })), 'EBUSY');
    expect(e.message).toBe('misc_register: EBUSY: misc minor 232 is taken');
    // misc_register is the last step: everything init did before it (VMXON on every CPU for the module's
    // usage reference) was undone.
    expect(seen).toContain('virt:usage');
    expect(seen).not.toContain('device:register');
    // The un-postfixed /dev/kvm cannot coexist with such a module either.
    expectFail(host, () => host.modprobe(kvm({ postfix: '' })), 'EBUSY');
    // VAC mode: 127 and 126.
    const twin = makeHost(vendor.hardware());
    twin.modprobe(kvm({ postfix: '0' }));
    twin.modprobe(kvm({ postfix: '1' }));
    twin.modprobe(kvm({ postfix: '' }));
    expect(['/dev/kvm0', '/dev/kvm1', '/dev/kvm'].map((d) => (twin.stat(d) as { minor: number }).minor)).toEqual([127, 126, 232]);
    expect(checkInvariants(twin)).toEqual([]);
  });

  test("legacy: ['cpuhp', 'virt', 'irq', 'vpid', 'sev'] (dynamic minor): the second fails with EBUSY from CPUHP_AP_KVM_ONLINE", () => {
    const host = makeHost(vendor.hardware());
    const set: LegacyResource[] = ['cpuhp', 'virt', 'irq', 'vpid', 'sev'];
    host.insmod(kvm({ postfix: '0', legacy: set }));
    expect(host.stat('/dev/kvm0')).toMatchObject({ minor: 127 });
    expect(host.snapshot().cpuhp).toContainEqual({ name: 'kvm0:legacy/cpu:online', slot: 'CPUHP_AP_KVM_ONLINE' });
    const e = expectFail(host, () => host.insmod(kvm({ postfix: '1', legacy: set })), 'EBUSY');
    expect(e.op).toBe('cpuhp_setup_state');
    // And vac cannot come in after it either: the slot is the module's.
    expectFail(host, () => host.modprobe('vac'), 'EBUSY');
    host.rmmod('kvm0');
    // VAC mode: one hotplug state for everyone.
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    expect(host.snapshot().cpuhp.filter((s) => s.slot === 'CPUHP_AP_KVM_ONLINE')).toEqual([{ name: 'kvm/cpu:online', slot: 'CPUHP_AP_KVM_ONLINE' }]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test("legacy: ['virt', 'irq', 'vpid'] next to a VAC module: its perf callbacks are ignored (WARN), its first VM gets EBUSY (VMX/SVM already on)", () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0' })); // VAC mode, enable_virt_at_load=1: VMX/SVM on everywhere
    const n = host.warnings.length;
    host.modprobe(kvm({ postfix: '1', legacy: ['virt', 'irq', 'vpid'] }), { enable_virt_at_load: 0 });
    const w = warningsSince(host, n);
    expect(w).toHaveLength(2);
    expect(w[0]).toBe('cpu_emergency_register_virt_callback: a callback is already registered, ignored');
    expect(w[1]).toMatch(PERF_IGNORED);
    expect(host.snapshot().hooks.perfGuestCallbacks).toBe('vac');
    const p = vmmProcess(host);
    const sys = p.open('/dev/kvm1', O_RDWR);
    const m = host.warnings.length;
    expectFail(host, () => p.ioctl(sys, KVM_CREATE_VM, 0), 'EBUSY');
    expect(warningsSince(host, m)).toContain('kvm: enabling virtualization on CPU0 failed');
    expect(checkInvariants(host)).toEqual([]);
    // The same module with enable_virt_at_load=1 cannot even load — and its failed init still clobbers the
    // posted-interrupt wakeup handler (last writer wins; its undo restores the dummy, not VAC's).
    const before = host.snapshot();
    expectCode(() => host.modprobe(kvm({ postfix: '2', legacy: ['virt', 'irq', 'vpid'] })), 'EBUSY');
    expect(host.snapshot()).toEqual({ ...before, hooks: { ...before.hooks, postedIntrWakeupHandler: false } });
    // VAC mode: no warning, the VM is created.
    const twin = makeHost(vendor.hardware());
    twin.modprobe(kvm({ postfix: '0' }));
    twin.modprobe(kvm({ postfix: '1' }), { enable_virt_at_load: 0 });
    expect(twin.warnings).toEqual([]);
    const q = vmmProcess(twin);
    expect(q.ioctl(q.open('/dev/kvm1', O_RDWR), KVM_CREATE_VM, 0)).toBeGreaterThan(0);
    expect(vacIn(twin).usageHolders()).toEqual([
      ['kvm0', 1],
      ['kvm1/vm1', 1],
    ]);
    expect(checkInvariants(twin)).toEqual([]);
  });

  test("legacy: ['irq'] on a second module: the PMIs of its guests are not attributed to it (lost)", () => {
    for (const legacy of [true, false]) {
      const host = makeHost(vendor.hardware());
      host.modprobe(kvm({ postfix: '0' }));
      const n = host.warnings.length;
      host.modprobe(kvm({ postfix: '1', ...(legacy ? { legacy: ['irq'] as LegacyResource[] } : {}) }));
      const p = vmmProcess(host);
      const a = makeVm(p, '/dev/kvm0', SPIN);
      const b = makeVm(p, '/dev/kvm1', SPIN);
      spawnVcpuThread(host, p, a.vcpus[0]!.fd, a.vcpus[0]!.run, { cpu: 0 });
      const tb = spawnVcpuThread(host, p, b.vcpus[0]!.fd, b.vcpus[0]!.run, { cpu: 1 });
      host.scheduler.run(3);
      expect(tb.vcpu.inGuest).toBe(true);
      expect(host.raisePmi(0).attributedTo).toBe('kvm0/vm1/vcpu0');
      const pmi = host.raisePmi(1);
      if (legacy) {
        const w = warningsSince(host, n);
        expect(w).toHaveLength(1);
        expect(w[0]).toMatch(PERF_IGNORED);
        // perf asks VAC, which never heard of kvm1's vCPU on CPU 1: a host PMI, the guest's sample is lost.
        expect(pmi).toEqual({ cpu: 1, state: 0, ip: undefined, callbacks: 'vac', attributedTo: undefined });
        expect(tb.vcpu.stats.nmi_exits).toBe(0);
      } else {
        expect(warningsSince(host, n)).toEqual([]);
        expect(pmi).toMatchObject({ state: 1, callbacks: 'vac', attributedTo: 'kvm1/vm1/vcpu0' });
        expect(tb.vcpu.stats.nmi_exits).toBe(1);
      }
      if (legacy) {
        // kvm1's private registry also took the posted-interrupt wakeup vector: kvm0's blocked vCPUs are not
        // asked any more (VAC's fan-out handler was replaced).
        expect(host.raisePostedIntrWakeup(0)).toEqual([]);
        expect(checkInvariants(host)).toEqual([]);
      } else {
        expect(checkInvariants(host)).toEqual([]);
      }
    }
  });
});

describe('legacy VPID and SEV bitmaps', () => {
  test("legacy: ['vpid'] on two modules: both hand out VPID 1 and the checker reports invariant 2; VAC mode: 1 and 2", () => {
    for (const legacy of [true, false]) {
      const host = makeHost(VENDORS[0].hardware());
      const opt = legacy ? { legacy: ['vpid'] as LegacyResource[] } : {};
      host.modprobe(kvm({ postfix: '0', ...opt }));
      host.modprobe(kvm({ postfix: '1', ...opt }));
      const p = vmmProcess(host);
      const a = makeVm(p, '/dev/kvm0', SPIN);
      const b = makeVm(p, '/dev/kvm1', SPIN);
      const va = vcpuOf(p, a.vcpus[0]!.fd).vendor.tlbTag();
      const vb = vcpuOf(p, b.vcpus[0]!.fd).vendor.tlbTag();
      if (legacy) {
        expect([va.value, vb.value]).toEqual([1, 1]);
        expect(checkInvariants(host)).toEqual([{ invariant: 2, id: 1, message: 'VPID 1 is held by kvm0/vm1/vcpu0 and kvm1/vm1/vcpu0' }]);
        p.kill();
        expect(checkInvariants(host)).toEqual([]);
      } else {
        expect([va.value, vb.value]).toEqual([1, 2]);
        expect(checkInvariants(host)).toEqual([]);
      }
    }
  });

  test("legacy: ['sev'] on two modules (AMD): both SEV VMs get the same ASID and the checker reports invariant 3; VAC mode: distinct", () => {
    for (const legacy of [true, false]) {
      const host = makeHost(amd({ maxSevAsid: 4, minSevAsid: 3 }));
      const opt = legacy ? { legacy: ['sev'] as LegacyResource[] } : {};
      host.modprobe(kvm({ postfix: '0', ...opt }));
      host.modprobe(kvm({ postfix: '1', ...opt }));
      const p = vmmProcess(host);
      const asids: number[] = [];
      for (const dev of ['/dev/kvm0', '/dev/kvm1']) {
        const vm = p.ioctl(p.open(dev, O_RDWR), KVM_CREATE_VM, 0);
        p.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, { id: 0, data: 0, error: 0, sev_fd: 0 });
        const inst = host.modules.get(dev.slice(5))!.exports as { vms: Set<{ vendor: { sevAsid?: number } }> };
        asids.push([...inst.vms][0]!.vendor.sevAsid ?? -1);
      }
      if (legacy) {
        expect(asids).toEqual([3, 3]);
        expect(checkInvariants(host)).toEqual([{ invariant: 3, id: 3, message: 'SEV ASID 3 is held by kvm0/vm1 and kvm1/vm1' }]);
      } else {
        expect(asids).toEqual([3, 4]);
        expect(checkInvariants(host)).toEqual([]);
      }
    }
  });
});

describe('private VACs of legacy modules answer for themselves', () => {
  // A private VAC that does not own the enabling machinery does not judge per-CPU enable state.
  test("legacy: ['irq'] alone: checkInvariants is clean while its vCPU runs", () => {
    const host = makeHost(VENDORS[0].hardware());
    host.modprobe(kvm({ postfix: '0', legacy: ['irq'] }));
    const p = vmmProcess(host);
    const a = makeVm(p, '/dev/kvm0', SPIN);
    spawnVcpuThread(host, p, a.vcpus[0]!.fd, a.vcpus[0]!.run, { cpu: 1 });
    host.scheduler.run(2);
    expect(checkInvariants(host)).toEqual([]);
  });

  // perf's callbacks carry the registrant's name.
  test('a full-legacy module registers perf callbacks under its own name', () => {
    const host = makeHost(VENDORS[0].hardware());
    host.insmod(kvm({ postfix: '0', legacy: true }));
    expect(host.snapshot().hooks.perfGuestCallbacks).toBe('kvm0:legacy');
  });
});
