import { describe, expect, test } from 'vitest';
import { isIntelHardware, VMX_COUNTER_NAMES } from '../src/index.js';
import type { Vmcs } from '../src/index.js';
import { makeHost, VMXE } from './helpers.js';

describe('check()', () => {
  test('a clean host has no violations', () => {
    const { hw } = makeHost(4);
    expect(hw.check()).toEqual([]);
  });

  test('finds a VMCS put on two CPUs\' loaded lists by force', () => {
    const { hw } = makeHost(2);
    hw.virt.enableCpu(0);
    hw.virt.enableCpu(1);
    const v = hw.allocVmcs('kvm0/vm0/vcpu0');
    hw.vmcsLoad(v, 0);
    (hw.loadedVmcss.listOf(1) as Set<Vmcs>).add(v);
    const found = hw.check();
    expect(found).toContainEqual({
      invariant: 4,
      id: v.id,
      message: `VMCS #${v.id} (kvm0/vm0/vcpu0) is on the loaded lists of CPUs 0, 1`,
    });
    expect(found).toContainEqual({
      invariant: 4,
      cpu: 1,
      id: v.id,
      message: `VMCS #${v.id} (kvm0/vm0/vcpu0) is on CPU 1's loaded list but loaded_vmcs->cpu is 0`,
    });
    expect(found.every((f) => f.invariant === 4)).toBe(true);
  });

  test('a VMCS left on the list of a CPU that left VMX operation', () => {
    const { hw } = makeHost(1);
    hw.virt.enableCpu(0);
    const v = hw.allocVmcs('v');
    hw.vmcsLoad(v, 0);
    hw.vmx.vmclear(0, v); // behind the kernel's back
    hw.vmx.vmxoff(0);
    const messages = hw.check().map((f) => f.message);
    expect(messages).toContain(`VMCS #${v.id} (v) is on the loaded list of CPU 0, which is not in VMX operation`);
    expect(messages).toContain('CPU 0: VAC enabled VMX but the CPU is not in VMX operation');
    expect(messages).toContain('CPU 0: CR4.VMXE is set but the CPU is not in VMX operation');
    expect(messages).toContain(`CPU 0: current_vmcs is VMCS #${v.id} (v) but the current-VMCS pointer is none`);
  });

  test('a VMCS active on a CPU after VMXOFF without VMCLEAR, and a raw VMPTRLD outside the lists', () => {
    const { hw } = makeHost(2);
    hw.virt.enableCpu(0);
    hw.virt.enableCpu(1);
    const v = hw.allocVmcs('raw');
    hw.vmx.vmptrld(1, v);
    expect(hw.check().map((f) => f.message)).toContain(`VMCS #${v.id} (raw) is active on CPU 1 but not on its loaded list`);
    hw.vmx.vmptrld(0, v);
    expect(hw.check().map((f) => f.message)).toContain(`VMCS #${v.id} (raw) is active on CPUs 0, 1`);
    hw.vmx.vmxoff(1);
    expect(hw.check().map((f) => f.message)).toContain(
      `VMCS #${v.id} (raw) is active on CPU 1, which left VMX operation without VMCLEAR`,
    );
  });

  test('two owners: a foreign hypervisor claims a CPU VAC enabled', () => {
    const { hw } = makeHost(2);
    hw.virt.enableCpu(1);
    hw.setForeignOwner(1, true);
    expect(hw.check()).toEqual([{ invariant: 1, cpu: 1, message: 'CPU 1: VMX has two owners (a foreign hypervisor and VAC)' }]);
    hw.virt.disableCpu(1);
    expect(hw.check()).toEqual([
      { invariant: 1, cpu: 1, message: "CPU 1: the foreign hypervisor's VMX operation was turned off behind its back" },
    ]);
    hw.setForeignOwner(1, false);
    expect(hw.check()).toEqual([]);
  });

  test('CR4.VMXE cleared under VMX operation', () => {
    const { hw, cpus } = makeHost(1);
    hw.virt.enableCpu(0);
    cpus[0]!.cr4 &= ~VMXE;
    expect(hw.check()).toEqual([{ invariant: 1, cpu: 0, message: 'CPU 0: in VMX operation with CR4.VMXE clear' }]);
  });

  test('a foreign owner alone is not a violation', () => {
    const { hw } = makeHost(2, { cpus: { 1: { foreignOwner: true } } });
    expect(hw.check()).toEqual([]);
  });
});

describe('snapshot()', () => {
  test('equal before and after a failed enable (EFAULT, EBUSY); different after a successful one', () => {
    const { hw } = makeHost(3, { cpus: { 1: { foreignOwner: true }, 2: { enableFault: 'once' } } });
    hw.virt.enableCpu(0);
    const v = hw.allocVmcs('kvm0/vm0/vcpu0');
    hw.vmcsLoad(v, 0);
    const before = hw.snapshot();
    expect(hw.virt.enableCpu(1)).toBe('EBUSY');
    expect(hw.virt.enableCpu(2)).toBe('EFAULT');
    expect(hw.snapshot()).toEqual(before);
    expect(hw.virt.enableCpu(2)).toBeUndefined();
    expect(hw.snapshot()).not.toEqual(before);
  });

  test('plain, JSON-safe data with per-CPU state and lists (no counters: history, not state)', () => {
    const { hw } = makeHost(2);
    hw.virt.enableCpu(0);
    const v = hw.allocVmcs('kvm0/vm0/vcpu0');
    v.vpid = 3;
    hw.vmcsLoad(v, 0);
    hw.vmx.vmlaunch(0);
    const snap = hw.snapshot();
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
    expect(snap.vendor).toBe('intel');
    expect(snap.cpus[0]).toMatchObject({
      cpu: 0,
      cr4: VMXE,
      inVmxOperation: true,
      vmxonRegion: hw.virt.vmxarea(0).id,
      currentVmcs: v.id,
      kernelCurrentVmcs: v.id,
      active: [v.id],
      loaded: [v.id],
      foreignOwner: false,
      vacEnabled: true,
    });
    expect(snap.cpus[0]).not.toHaveProperty('counters');
    expect(hw.counters(0)).toMatchObject({ vmxon: 1, inveptGlobal: 1, vmptrld: 1, vmlaunch: 1 });
    expect(snap.cpus[0]!.msrs['0x3a']).toBe('0x5');
    expect(snap.cpus[1]).toMatchObject({ inVmxOperation: false, vmxonRegion: null, currentVmcs: null, loaded: [] });
    expect(snap.vmcss).toEqual([
      { id: v.id, owner: 'kvm0/vm0/vcpu0', revisionId: 0x12, launchState: 'launched', activeOn: 0, loadedOn: 0, vpid: 3, instructionError: 0 },
    ]);
    // A deep copy: later changes do not show through.
    hw.virt.disableCpu(0);
    expect(snap.cpus[0]!.loaded).toEqual([v.id]);
  });
});

describe('counters', () => {
  test('every counter name, per CPU and in total', () => {
    const { hw } = makeHost(2);
    expect(Object.keys(hw.counters(0))).toEqual([...VMX_COUNTER_NAMES]);
    hw.virt.enableCpu(0);
    hw.virt.enableCpu(1);
    hw.vmx.invvpid(1, 'single-context', 4);
    expect(hw.counters(1)).toMatchObject({ vmxon: 1, inveptGlobal: 1, invvpidSingleContext: 1 });
    expect(hw.totals()).toMatchObject({ vmxon: 2, inveptGlobal: 2, invvpidSingleContext: 1 });
    expect(Object.isFrozen(hw.counters(0))).toBe(true);
  });

  test('isIntelHardware narrows', () => {
    const { hw } = makeHost(1);
    expect(isIntelHardware(hw)).toBe(true);
  });
});
