import { describe, expect, test } from 'vitest';
import { makeHost } from './helpers.js';

/** A host with every CPU enabled by VAC. */
function enabled(n = 3) {
  const h = makeHost(n);
  for (let i = 0; i < n; i++) expect(h.hw.virt.enableCpu(i)).toBeUndefined();
  return h;
}

describe('vmcsLoad = vmx_vcpu_load_vmcs (VMCS part)', () => {
  test('first load: on the list, VMPTRLD, current, loaded_vmcs->cpu set', () => {
    const { hw } = enabled();
    const v = hw.allocVmcs('kvm0/vm0/vcpu0');
    expect(hw.vmcsLoad(v, 1)).toBe('first-load');
    expect(hw.loadedList(1)).toEqual(['kvm0/vm0/vcpu0']);
    expect(v.loadedOn).toBe(1);
    expect(v.activeOn).toBe(1);
    expect(hw.currentVmcs(1)).toBe(v);
    expect(hw.loadedVmcss.currentVmcs(1)).toBe(v);
    expect(hw.counters(1)).toMatchObject({ vmptrld: 1, vmclear: 0 });
    expect(hw.check()).toEqual([]);
  });

  test('already loaded and current: no VMCLEAR, no VMPTRLD', () => {
    const { hw } = enabled();
    const v = hw.allocVmcs('v');
    hw.vmcsLoad(v, 0);
    expect(hw.vmcsLoad(v, 0)).toBe('already-loaded');
    expect(hw.counters(0)).toMatchObject({ vmptrld: 1, vmclear: 0 });
  });

  test('the already-loaded shortcut still refuses a VMCS freed behind the lists, and CPUs the host lacks', () => {
    const { hw } = enabled();
    const v = hw.allocVmcs('v');
    hw.vmcsLoad(v, 0);
    expect(() => hw.vmcsLoad(v, 3)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_NO_SUCH_CPU' }));
    expect(() => hw.vmcsLoad(v, 0.5)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_NO_SUCH_CPU' }));
    hw.vmx.freeVmcs(v); // freed while still current and on CPU 0's list (a bug the model must not hide)
    expect(() => hw.vmcsLoad(v, 0)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_DESTROYED' }));
    expect(hw.counters(0)).toMatchObject({ vmptrld: 1, vmclear: 0 });
  });

  test('already loaded but another VMCS became current: VMPTRLD only', () => {
    const { hw } = enabled();
    const a = hw.allocVmcs('a');
    const b = hw.allocVmcs('b');
    hw.vmcsLoad(a, 0);
    hw.vmcsLoad(b, 0);
    expect(hw.vmcsLoad(a, 0)).toBe('already-loaded');
    expect(hw.currentVmcs(0)).toBe(a);
    expect(hw.counters(0)).toMatchObject({ vmptrld: 3, vmclear: 0 });
    expect(hw.loadedList(0)).toEqual(['b', 'a']);
  });

  test('migration: VMCLEAR on the old CPU (off its list), VMPTRLD on the new; VMLAUNCH needed again', () => {
    const { hw } = enabled();
    const v = hw.allocVmcs('kvm1/vm0/vcpu0');
    hw.vmcsLoad(v, 0);
    expect(hw.vmx.vmlaunch(0)).toBe('VMsucceed');
    expect(hw.vmcsLoad(v, 2)).toBe('migrated');
    expect(hw.counters(0)).toMatchObject({ vmclear: 1, vmptrld: 1 });
    expect(hw.counters(2)).toMatchObject({ vmclear: 0, vmptrld: 1 });
    expect(hw.loadedList(0)).toEqual([]);
    expect(hw.loadedList(2)).toEqual(['kvm1/vm0/vcpu0']);
    expect(hw.currentVmcs(0)).toBeUndefined();
    expect(hw.loadedVmcss.currentVmcs(0)).toBeUndefined();
    expect(v).toMatchObject({ loadedOn: 2, activeOn: 2, launchState: 'clear' });
    expect(hw.vmx.vmresume(2)).toBe('VMfailValid');
    expect(hw.vmx.vmlaunch(2)).toBe('VMsucceed');
    expect(hw.check()).toEqual([]);
  });

  test('after a CPU disable the VMCS loads fresh ("first-load")', () => {
    const { hw } = enabled();
    const v = hw.allocVmcs('v');
    hw.vmcsLoad(v, 0);
    hw.virt.disableCpu(0);
    expect(v.loadedOn).toBe(-1);
    expect(hw.vmcsLoad(v, 1)).toBe('first-load');
    expect(hw.check()).toEqual([]);
  });

  test('VMPTRLD failure (wrong revision) is a warning, as vmx_insn_failed; the load still records it', () => {
    const { hw, warnings } = enabled();
    const v = hw.vmx.allocVmcs('bad', 0x77);
    expect(hw.vmcsLoad(v, 0)).toBe('first-load');
    expect(warnings).toEqual([{ source: 'vac', cpu: 0, message: `vmptrld failed: VMCS #${v.id} (bad): VMfailInvalid` }]);
    expect(hw.loadedList(0)).toEqual(['bad']);
  });

  test('loading on a CPU not in VMX operation: VMPTRLD #UD → kvm_spurious_fault warning', () => {
    const { hw, warnings } = makeHost(1);
    const v = hw.allocVmcs('v');
    hw.vmcsLoad(v, 0);
    expect(warnings.map((w) => w.message)).toEqual([
      'kernel BUG: kvm_spurious_fault: vmptrld faulted (#UD) on CPU 0 while not rebooting',
    ]);
  });
});

describe('vmcsClear / vmcsFree = loaded_vmcs_clear / free_loaded_vmcs', () => {
  test('vmcsFree VMCLEARs where loaded, drops it from the list and the host', () => {
    const { hw } = enabled();
    const a = hw.allocVmcs('a');
    const b = hw.allocVmcs('b');
    hw.vmcsLoad(a, 1);
    hw.vmcsLoad(b, 1);
    hw.vmcsFree(a);
    expect(a.freed).toBe(true);
    expect(hw.loadedList(1)).toEqual(['b']);
    expect(hw.vmx.liveVmcss()).toEqual([b]);
    expect(hw.counters(1).vmclear).toBe(1);
    expect(hw.currentVmcs(1)).toBe(b);
    expect(hw.check()).toEqual([]);
  });

  test('vmcsFree of a never-loaded VMCS needs no VMCLEAR', () => {
    const { hw } = enabled();
    const v = hw.allocVmcs('v');
    hw.vmcsFree(v);
    expect(hw.totals().vmclear).toBe(0);
    expect(hw.vmx.liveVmcss()).toEqual([]);
  });

  test('vmcsClear of the current VMCS forgets it as current', () => {
    const { hw } = enabled();
    const v = hw.allocVmcs('v');
    hw.vmcsLoad(v, 2);
    hw.vmcsClear(v);
    expect(hw.currentVmcs(2)).toBeUndefined();
    expect(hw.loadedVmcss.currentVmcs(2)).toBeUndefined();
    expect(v.loadedOn).toBe(-1);
    hw.vmcsClear(v); // no-op
    expect(hw.counters(2).vmclear).toBe(1);
  });
});
