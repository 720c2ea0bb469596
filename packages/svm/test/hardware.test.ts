import { describe, expect, test } from 'vitest';
import { UsageError } from '@vac/core';
import { EFER_SVME, MSR_EFER, MSR_VM_HSAVE_PA, SVM_COUNTER_NAMES, SVM_EXIT, isAmdHardware } from '../src/index.js';
import { makeHost } from './helpers.js';

describe('isAmdHardware', () => {
  test('narrows host hardware', () => {
    const { hw } = makeHost(1);
    expect(isAmdHardware(hw)).toBe(true);
    expect(hw.foreignOwner(0)).toBe(false);
    expect(hw.svme(0)).toBe(false);
    expect(hw.currentVmcb(0)).toBeUndefined();
    expect(hw.allocVmcb('kvm0').owner).toBe('kvm0');
  });
});

describe('check(): no CPU ever has two owners', () => {
  test('a clean host has no violations', () => {
    const { hw } = makeHost(4, { cpus: { 3: { foreignOwner: true } } });
    hw.virt.enableCpu(0);
    hw.virt.enableCpu(1);
    expect(hw.check()).toEqual([]);
  });

  test('a forced double owner (foreign hypervisor declared on a CPU VAC enabled)', () => {
    const { hw } = makeHost(2);
    hw.virt.enableCpu(1);
    hw.setForeignOwner(1, true);
    expect(hw.cpu(1).owner).toBe('both');
    expect(hw.check()).toEqual([
      { invariant: 1, cpu: 1, message: 'CPU 1 has two owners of SVM: VAC and a foreign hypervisor' },
    ]);
    hw.setForeignOwner(1, false);
    expect(hw.cpu(1)).toMatchObject({ owner: 'vac', svme: true });
    expect(hw.check()).toEqual([]);
  });

  test('EFER.SVME set behind everyone’s back', () => {
    const { env, hw } = makeHost(2);
    const c = env.cpus[0]!;
    expect(c.wrmsrSafe(MSR_EFER, c.rdmsrSafe(MSR_EFER)! | EFER_SVME)).toBe(true);
    expect(hw.virt.isEnabled(0)).toBe(true);
    expect(hw.check()).toEqual([
      {
        invariant: 1,
        cpu: 0,
        message: 'EFER.SVME is set on CPU 0 but neither VAC nor a declared foreign hypervisor enabled it',
      },
    ]);
  });

  test('VAC-enabled CPU whose SVME or VM_HSAVE_PA was cleared behind its back', () => {
    const { env, hw } = makeHost(2);
    hw.virt.enableCpu(0);
    hw.virt.enableCpu(1);
    env.cpus[0]!.wrmsrSafe(MSR_EFER, 0xd01n);
    env.cpus[1]!.wrmsrSafe(MSR_VM_HSAVE_PA, 0n);
    expect(hw.check()).toEqual([
      { invariant: 1, cpu: 0, message: 'VAC enabled SVM on CPU 0 but EFER.SVME is clear' },
      { invariant: 1, cpu: 1, message: 'VAC enabled SVM on CPU 1 but VM_HSAVE_PA is 0' },
    ]);
  });
});

describe('snapshot()', () => {
  test('a deep, plain, structured-cloneable copy', () => {
    const { hw } = makeHost(2);
    hw.virt.enableCpu(0);
    const v = hw.svm.allocVmcb('kvm0');
    v.asid = 3;
    hw.svm.vmrun(0, v);
    hw.svm.vmexit(0, SVM_EXIT.HLT);
    const snap = hw.snapshot();
    expect(structuredClone(snap)).toEqual(snap);
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
    expect(snap.vendor).toBe('amd');
    expect(snap.cpus[0]).toMatchObject({
      cpu: 0,
      svme: true,
      gif: false,
      inGuest: false,
      currentVmcb: 0,
      foreignOwner: false,
      vacEnabled: true,
    });
    expect(snap.cpus[0]).not.toHaveProperty('counters');
    expect(hw.counters(0)).toEqual({ ...Object.fromEntries(SVM_COUNTER_NAMES.map((k) => [k, 0])), svmeOn: 1, vmrun: 1, vmexit: 1 });
    expect(snap.cpus[0]!.msrs).toMatchObject({
      '0xc0000080': '0x1d01',
      '0xc0010114': '0x0',
      '0xc0010117': '0x100000000',
    });
    expect(snap.cpus[1]!.msrs['0xc0000103']).toBe('0x1');
    expect(snap.vmcbs).toEqual([
      {
        id: 0,
        owner: 'kvm0',
        asid: 3,
        tlbControl: 0,
        clean: 0x80000df7,
        exitCode: 0x78,
        sev: 'none',
        asidGeneration: 0,
        lastCpu: -1,
        runningOn: -1,
      },
    ]);
    v.asid = 4;
    hw.virt.disableCpu(0);
    expect(snap.vmcbs[0]!.asid).toBe(3);
    expect(snap.cpus[0]!.vacEnabled).toBe(true);
    expect(hw.snapshot()).not.toEqual(snap);
  });

  test('fault knobs are not hardware state', () => {
    const { hw } = makeHost(1);
    const before = hw.snapshot();
    hw.injectEnableFault(0, 'always');
    expect(hw.snapshot()).toEqual(before);
  });
});

describe('counters() and introspection', () => {
  test('every counter is reported, starting at 0', () => {
    const { hw } = makeHost(1);
    expect(hw.totals()).toEqual(hw.counters(0));
    expect(Object.keys(hw.counters(0))).toEqual([...SVM_COUNTER_NAMES]);
    expect(Object.values(hw.counters(0)).every((v) => v === 0)).toBe(true);
    expect(Object.isFrozen(hw.counters(0))).toBe(true);
    expect(() => hw.counters(1)).toThrow(UsageError);
    expect(hw.nrCpus).toBe(1);
  });

  test('8,192 CPUs enable and disable', () => {
    const { hw } = makeHost(8192);
    for (let i = 0; i < 8192; i++) expect(hw.virt.enableCpu(i)).toBeUndefined();
    expect(hw.totals().svmeOn).toBe(8192);
    expect(hw.check()).toEqual([]);
    for (let i = 0; i < 8192; i++) hw.virt.disableCpu(i);
    expect(hw.totals().svmeOff).toBe(8192);
    expect(hw.cpu(8191)).toMatchObject({ svme: false, hsavePa: 0n, owner: 'none' });
  });
});
