import { describe, expect, test } from 'vitest';
import { UsageError } from '@vac/core';
import {
  EFER_HOST_DEFAULT,
  EFER_SVME,
  FOREIGN_SAVE_AREA_BASE,
  MSR_EFER,
  MSR_VM_HSAVE_PA,
  SAVE_AREA_BASE,
  SVM_EXIT,
} from '../src/index.js';
import { makeHost, record } from './helpers.js';

describe('unsupported() = __kvm_is_svm_supported', () => {
  test('usable CPU → undefined; Linux messages otherwise', () => {
    const { hw } = makeHost(4, { cpus: { 1: { svm: false }, 2: { svmDisabledByBios: true } } });
    expect(hw.virt.name).toBe('svm');
    expect(hw.virt.unsupported(0)).toBeUndefined();
    expect(hw.virt.unsupported(1)).toBe('SVM not supported by CPU 1');
    expect(hw.virt.unsupported(2)).toBe('SVM disabled (by BIOS) in MSR_VM_CR on CPU 2');
    expect(hw.virt.unsupported(3)).toBeUndefined();
  });

  test('a non-AMD vendor string', () => {
    const { env, hw } = makeHost(1);
    env.cpus[0]!.cpuid.set(0, { eax: 0x10, ebx: 0x756e6547, edx: 0x49656e69, ecx: 0x6c65746e }); // GenuineIntel
    expect(hw.virt.unsupported(0)).toBe("CPU 0 isn't AMD or Hygon");
  });

  test('a bad CPU number is a UsageError', () => {
    const { hw } = makeHost(2);
    expect(() => hw.virt.unsupported(2)).toThrow(UsageError);
    expect(() => hw.virt.enableCpu(-1)).toThrow('svm.enableCpu: no CPU -1 (the host has CPUs 0 … 1)');
  });
});

describe('enableCpu() = svm_hardware_enable', () => {
  test('sets EFER.SVME and VM_HSAVE_PA = the per-CPU save area, emits virt:enable', () => {
    const { env, hw } = makeHost(4);
    const events = record(env);
    expect(hw.virt.enableCpu(2)).toBeUndefined();
    const c = env.cpus[2]!;
    expect(c.rdmsrSafe(MSR_EFER)).toBe(EFER_HOST_DEFAULT | EFER_SVME);
    expect(c.rdmsrSafe(MSR_VM_HSAVE_PA)).toBe(SAVE_AREA_BASE + 2n * 0x1000n);
    expect(hw.virt.saveAreaPa(2)).toBe(0x100002000n);
    expect(hw.virt.enabledByVac(2)).toBe(true);
    expect(hw.virt.isEnabled(2)).toBe(true);
    expect(hw.virt.isEnabled(1)).toBe(false);
    expect(hw.cpu(2)).toMatchObject({ svme: true, hsavePa: 0x100002000n, gif: true, owner: 'vac', inGuest: false });
    expect(hw.counters(2).svmeOn).toBe(1);
    expect(events).toEqual([['virt:enable', { seq: 0, tick: 0, cpu: 2 }]]);
    expect(hw.check()).toEqual([]);
  });

  test('EFER.SVME already set by an earlier enable → EBUSY', () => {
    const { hw } = makeHost(1);
    expect(hw.virt.enableCpu(0)).toBeUndefined();
    const before = hw.snapshot();
    expect(hw.virt.enableCpu(0)).toBe('EBUSY');
    expect(hw.snapshot()).toEqual(before);
  });

  test('foreign owner at boot → EBUSY, state unchanged, no event', () => {
    const { env, hw } = makeHost(2, { cpus: { 1: { foreignOwner: true } } });
    const events = record(env);
    const before = hw.snapshot();
    expect(hw.virt.isEnabled(1)).toBe(true);
    expect(hw.virt.enableCpu(1)).toBe('EBUSY');
    expect(hw.snapshot()).toEqual(before);
    expect(env.cpus[1]!.rdmsrSafe(MSR_VM_HSAVE_PA)).toBe(FOREIGN_SAVE_AREA_BASE + 0x1000n);
    expect(hw.cpu(1).owner).toBe('foreign');
    expect(events).toEqual([]);
    expect(hw.check()).toEqual([]);
  });

  test('setForeignOwner knob → EBUSY until withdrawn', () => {
    const { env, hw } = makeHost(2);
    hw.setForeignOwner(0, true);
    expect(hw.cpu(0)).toMatchObject({ svme: true, owner: 'foreign', hsavePa: FOREIGN_SAVE_AREA_BASE });
    const before = hw.snapshot();
    expect(hw.virt.enableCpu(0)).toBe('EBUSY');
    expect(hw.snapshot()).toEqual(before);
    hw.setForeignOwner(0, false);
    expect(hw.cpu(0)).toMatchObject({ svme: false, owner: 'none', hsavePa: 0n });
    expect(env.cpus[0]!.rdmsrSafe(MSR_EFER)).toBe(EFER_HOST_DEFAULT);
    expect(hw.virt.enableCpu(0)).toBeUndefined();
    expect(hw.cpu(0).owner).toBe('vac');
    expect(hw.counters(0)).toMatchObject({ svmeOn: 1, svmeOff: 0 }); // the foreign hypervisor's writes are not counted
  });

  test("injected fault 'once' fires once: EIO with state unchanged and Linux's unchecked-WRMSR warning", () => {
    const { env, hw } = makeHost(2);
    const events = record(env);
    hw.injectEnableFault(1, 'once');
    expect(hw.cpu(1).enableFault).toBe('once');
    const before = hw.snapshot();
    expect(hw.virt.enableCpu(1)).toBe('EIO');
    expect(hw.snapshot()).toEqual(before);
    expect(hw.virt.isEnabled(1)).toBe(false);
    expect(env.warnings).toEqual([
      {
        source: 'kernel',
        cpu: 1,
        message: 'unchecked MSR access error: WRMSR to 0xc0000080 (tried to write 0x0000000000001d01)',
      },
    ]);
    expect(events).toEqual([]);
    expect(hw.cpu(1).enableFault).toBe('off');
    expect(hw.virt.enableCpu(1)).toBeUndefined();
    expect(hw.virt.isEnabled(1)).toBe(true);
  });

  test('enableFault option: armed from boot', () => {
    const { hw } = makeHost(2, { cpus: { 1: { enableFault: 'once' } } });
    expect(hw.cpu(1).enableFault).toBe('once');
    expect(hw.cpu(0).enableFault).toBe('off');
    expect(hw.virt.enableCpu(1)).toBe('EIO');
    expect(hw.virt.enableCpu(1)).toBeUndefined();
  });

  test("injected fault 'always' fires every time (the warning is logged once), 'off' disarms", () => {
    const { env, hw } = makeHost(1);
    hw.injectEnableFault(0, 'always');
    expect(hw.virt.enableCpu(0)).toBe('EIO');
    expect(hw.virt.enableCpu(0)).toBe('EIO');
    expect(hw.virt.enableCpu(0)).toBe('EIO');
    expect(env.warnings).toHaveLength(1);
    hw.injectEnableFault(0, 'off');
    expect(hw.virt.enableCpu(0)).toBeUndefined();
    expect(hw.counters(0).svmeOn).toBe(1);
    expect(() => hw.injectEnableFault(0, 'sometimes' as never)).toThrow(UsageError);
  });

  test('a CPU whose BIOS disabled SVM: the EFER write faults → EIO', () => {
    const { hw } = makeHost(3, { cpus: { 2: { svmDisabledByBios: true } } });
    const before = hw.snapshot();
    expect(hw.virt.enableCpu(2)).toBe('EIO');
    expect(hw.snapshot()).toEqual(before);
  });
});

describe('disableCpu() = svm_hardware_disable → kvm_cpu_svm_disable', () => {
  test('VM_HSAVE_PA = 0, STGI, clear EFER.SVME, emit virt:disable', () => {
    const { env, hw } = makeHost(2);
    hw.virt.enableCpu(1);
    expect(hw.svm.clgi(1)).toBeUndefined();
    expect(hw.cpu(1).gif).toBe(false);
    const events = record(env);
    hw.virt.disableCpu(1);
    expect(env.cpus[1]!.rdmsrSafe(MSR_EFER)).toBe(EFER_HOST_DEFAULT);
    expect(env.cpus[1]!.rdmsrSafe(MSR_VM_HSAVE_PA)).toBe(0n);
    expect(hw.cpu(1)).toMatchObject({ svme: false, gif: true, owner: 'none', hsavePa: 0n });
    expect(hw.counters(1)).toMatchObject({ svmeOn: 1, svmeOff: 1, stgi: 1, clgi: 1 });
    expect(hw.virt.isEnabled(1)).toBe(false);
    expect(events).toEqual([['virt:disable', { seq: 1, tick: 0, cpu: 1 }]]);
    expect(hw.check()).toEqual([]);
  });

  test('on a CPU without SVME: only VM_HSAVE_PA = 0, no STGI, no event', () => {
    const { env, hw } = makeHost(1);
    const events = record(env);
    hw.virt.disableCpu(0);
    expect(hw.counters(0)).toMatchObject({ stgi: 0, svmeOff: 0 });
    expect(events).toEqual([]);
    expect(env.cpus[0]!.rdmsrSafe(MSR_VM_HSAVE_PA)).toBe(0n);
  });

  test('a CPU in guest mode takes #VMEXIT(INTR) first', () => {
    const { hw } = makeHost(1);
    hw.virt.enableCpu(0);
    const vmcb = hw.svm.allocVmcb('kvm0');
    vmcb.asid = 1;
    expect(hw.svm.vmrun(0, vmcb)).toBe('entered');
    hw.virt.disableCpu(0);
    expect(vmcb.exitCode).toBe(SVM_EXIT.INTR);
    expect(vmcb.runningOn).toBe(-1);
    expect(hw.cpu(0)).toMatchObject({ svme: false, inGuest: false, gif: true });
    expect(hw.counters(0)).toMatchObject({ vmrun: 1, vmexit: 1, stgi: 1, svmeOff: 1 });
  });

  test('enable → disable → enable again', () => {
    const { hw } = makeHost(1);
    for (let i = 0; i < 3; i++) {
      expect(hw.virt.enableCpu(0)).toBeUndefined();
      hw.virt.disableCpu(0);
    }
    expect(hw.counters(0)).toMatchObject({ svmeOn: 3, svmeOff: 3, stgi: 3 });
  });
});

describe('emergencyDisable() = svm_emergency_disable', () => {
  test('same effects as disable', () => {
    const { env, hw } = makeHost(2);
    hw.virt.enableCpu(0);
    hw.virt.enableCpu(1);
    const events = record(env);
    hw.virt.emergencyDisable(0);
    hw.virt.emergencyDisable(1);
    for (const i of [0, 1]) {
      expect(hw.cpu(i)).toMatchObject({ svme: false, gif: true, hsavePa: 0n, owner: 'none' });
    }
    expect(events.map(([n, e]) => [n, (e as unknown as { cpu: number }).cpu])).toEqual([
      ['virt:disable', 0],
      ['virt:disable', 1],
    ]);
  });

  test('a CPU in guest mode takes #VMEXIT(NMI) first', () => {
    const { hw } = makeHost(1);
    hw.virt.enableCpu(0);
    const vmcb = hw.svm.allocVmcb('kvm1');
    vmcb.asid = 7;
    hw.svm.vmrun(0, vmcb);
    hw.virt.emergencyDisable(0);
    expect(vmcb.exitCode).toBe(SVM_EXIT.NMI);
    expect(hw.cpu(0).svme).toBe(false);
  });

  test('also clears a foreign owner (Linux does not ask who set SVME)', () => {
    const { hw } = makeHost(1, { foreignOwner: true });
    hw.virt.emergencyDisable(0);
    expect(hw.cpu(0)).toMatchObject({ svme: false, owner: 'none' });
  });
});

describe('asidSpace() from CPUID', () => {
  test('defaults', () => {
    const { hw } = makeHost(2);
    expect(hw.virt.asidSpace()).toEqual({ nrAsids: 32768, maxSevAsid: 509, minSevAsid: 100 });
  });

  test('overrides, and per CPU', () => {
    const { hw } = makeHost(2, { nrAsids: 4096, maxSevAsid: 99, minSevAsid: 10, cpus: { 1: { nrAsids: 256 } } });
    expect(hw.virt.asidSpace()).toEqual({ nrAsids: 4096, maxSevAsid: 99, minSevAsid: 10 });
    expect(hw.virt.asidSpace(1)).toEqual({ nrAsids: 256, maxSevAsid: 99, minSevAsid: 10 });
  });

  test('SEV off → 0 and 0', () => {
    const { hw } = makeHost(1, { sev: false });
    expect(hw.virt.asidSpace()).toEqual({ nrAsids: 32768, maxSevAsid: 0, minSevAsid: 0 });
  });

  test('maxSevAsid 0 with SEV on', () => {
    const { hw } = makeHost(1, { maxSevAsid: 0, minSevAsid: 0 });
    expect(hw.virt.asidSpace()).toEqual({ nrAsids: 32768, maxSevAsid: 0, minSevAsid: 0 });
  });
});

describe('sevFlush() = sev_flush_asids', () => {
  test('WBINVD on every online CPU, then DF_FLUSH; an injected DF_FLUSH fault returns false', () => {
    const { env, hw } = makeHost(3);
    env.cpus[2]!.online = false;
    expect(hw.virt.sevFlush()).toBe(true);
    expect([0, 1, 2].map((i) => hw.counters(i).wbinvd)).toEqual([1, 1, 0]);
    expect(hw.svm.dfFlushes).toBe(1);
    hw.svm.injectDfFlushFault('once');
    expect(hw.virt.sevFlush()).toBe(false);
    expect(hw.virt.sevFlush()).toBe(true);
    expect(hw.svm.dfFlushes).toBe(3);
    expect(hw.totals().wbinvd).toBe(6);
  });
});
