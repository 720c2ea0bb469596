import { UsageError } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { FEAT_CTL, INTEL_MSR, VMXERR } from '../src/index.js';
import { makeHost, VMXE } from './helpers.js';

/** A host whose CPU 0 has CR4.VMXE set and a VMXON region ready (raw instruction level, no VAC). */
function raw(n = 2, options = {}) {
  const h = makeHost(n, options);
  const vmx = h.hw.vmx;
  const region = vmx.allocVmxonRegion('test/vmxon');
  return { ...h, vmx, region };
}

describe('VMXON (SDM Vol. 3C §31.3)', () => {
  test('CR4.VMXE clear → #UD (SDM: "#UD if executed outside VMX operation with CR4.VMXE = 0")', () => {
    const { vmx, region, cpus } = raw();
    expect(cpus[0]!.cr4 & VMXE).toBe(0);
    expect(vmx.vmxon(0, region)).toBe('#UD');
    expect(vmx.inVmxOperation(0)).toBe(false);
  });

  test('no VMX in CPUID → #UD even with CR4.VMXE set', () => {
    const { vmx, region, cpus } = raw(2, { cpus: { 0: { vmx: false } } });
    cpus[0]!.cr4 |= VMXE;
    expect(vmx.vmxon(0, region)).toBe('#UD');
  });

  test('IA32_FEATURE_CONTROL unlocked → #GP', () => {
    const { vmx, region, cpus } = raw(2, { featureControl: FEAT_CTL.FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX, kernelLocksFeatureControl: false });
    expect(cpus[0]!.rdmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL)).toBe(0x4n);
    cpus[0]!.cr4 |= VMXE;
    expect(vmx.vmxon(0, region)).toBe('#GP');
    expect(vmx.inVmxOperation(0)).toBe(false);
  });

  test('IA32_FEATURE_CONTROL locked without VMX outside SMX → #GP (inside-SMX alone is not enough)', () => {
    const { vmx, region, cpus } = raw(2, {
      featureControl: FEAT_CTL.FEAT_CTL_LOCKED | FEAT_CTL.FEAT_CTL_VMX_ENABLED_INSIDE_SMX,
    });
    cpus[0]!.cr4 |= VMXE;
    expect(vmx.vmxon(0, region)).toBe('#GP');
  });

  test('wrong revision id → VMfailInvalid; bit 31 set → VMfailInvalid', () => {
    const { vmx, cpus } = raw();
    cpus[0]!.cr4 |= VMXE;
    expect(vmx.vmxon(0, vmx.allocVmxonRegion('bad', 0x13))).toBe('VMfailInvalid');
    expect(vmx.vmxon(0, vmx.allocVmxonRegion('shadow', 0x8000_0012))).toBe('VMfailInvalid');
    expect(vmx.inVmxOperation(0)).toBe(false);
  });

  test('software may rewrite the revision id of a region', () => {
    const { vmx, cpus } = raw();
    cpus[0]!.cr4 |= VMXE;
    const r = vmx.allocVmxonRegion('fixed', 0x99);
    expect(vmx.vmxon(0, r)).toBe('VMfailInvalid');
    r.revisionId = 0x12;
    expect(vmx.vmxon(0, r)).toBe('VMsucceed');
  });

  test('success enters VMX operation with no current VMCS', () => {
    const { vmx, region, cpus } = raw();
    cpus[0]!.cr4 |= VMXE;
    expect(vmx.vmxon(0, region)).toBe('VMsucceed');
    expect(vmx.inVmxOperation(0)).toBe(true);
    expect(vmx.vmxonRegion(0)).toBe(region);
    expect(vmx.currentVmcs(0)).toBeUndefined();
    expect(vmx.inVmxOperation(1)).toBe(false);
    expect(vmx.counters(0).vmxon).toBe(1);
  });

  test('VMXON twice: VMfailInvalid without a current VMCS, VMfailValid(15) with one', () => {
    const { vmx, region, cpus } = raw();
    cpus[0]!.cr4 |= VMXE;
    expect(vmx.vmxon(0, region)).toBe('VMsucceed');
    expect(vmx.vmxon(0, region)).toBe('VMfailInvalid');
    const vmcs = vmx.allocVmcs('vcpu0');
    expect(vmx.vmptrld(0, vmcs)).toBe('VMsucceed');
    expect(vmx.vmxon(0, region)).toBe('VMfailValid');
    expect(vmcs.instructionError).toBe(VMXERR.VMXERR_VMXON_IN_VMX_ROOT_OPERATION);
    expect(vmcs.instructionError).toBe(15);
    expect(vmx.counters(0).vmxon).toBe(1);
  });

  test("injected fault 'once' faults the next VMXON only; 'always' every one", () => {
    const { vmx, region, cpus } = raw();
    cpus[0]!.cr4 |= VMXE;
    vmx.injectEnableFault(0, 'once');
    expect(vmx.enableFault(0)).toBe('once');
    expect(vmx.vmxon(0, region)).toBe('#GP');
    expect(vmx.enableFault(0)).toBe('off');
    expect(vmx.vmxon(0, region)).toBe('VMsucceed');
    expect(vmx.vmxoff(0)).toBe('VMsucceed');
    vmx.injectEnableFault(0, 'always');
    expect(vmx.vmxon(0, region)).toBe('#GP');
    expect(vmx.vmxon(0, region)).toBe('#GP');
    vmx.injectEnableFault(0, 'off');
    expect(vmx.vmxon(0, region)).toBe('VMsucceed');
  });
});

describe('VMXOFF', () => {
  test('#UD outside VMX operation; leaves VMX operation and drops the current VMCS', () => {
    const { vmx, region, cpus } = raw();
    expect(vmx.vmxoff(0)).toBe('#UD');
    cpus[0]!.cr4 |= VMXE;
    vmx.vmxon(0, region);
    const vmcs = vmx.allocVmcs('v');
    vmx.vmptrld(0, vmcs);
    expect(vmx.vmxoff(0)).toBe('VMsucceed');
    expect(vmx.inVmxOperation(0)).toBe(false);
    expect(vmx.currentVmcs(0)).toBeUndefined();
    expect(cpus[0]!.cr4 & VMXE).toBe(VMXE); // software clears CR4.VMXE, not VMXOFF
    expect(vmx.vmxoff(0)).toBe('#UD');
    expect(vmx.counters(0).vmxoff).toBe(1);
  });
});

/** CPU 0 in VMX operation. */
function inVmx() {
  const h = raw();
  h.cpus[0]!.cr4 |= VMXE;
  expect(h.vmx.vmxon(0, h.region)).toBe('VMsucceed');
  return h;
}

describe('VMCLEAR / VMPTRLD', () => {
  test('#UD outside VMX operation', () => {
    const { vmx } = raw();
    const v = vmx.allocVmcs('v');
    expect(vmx.vmclear(0, v)).toBe('#UD');
    expect(vmx.vmptrld(0, v)).toBe('#UD');
  });

  test('a new VMCS is clear, inactive, VPID 0', () => {
    const { vmx } = raw();
    const v = vmx.allocVmcs('kvm0/vm0/vcpu0');
    expect(v).toMatchObject({ kind: 'vmcs', owner: 'kvm0/vm0/vcpu0', revisionId: 0x12, launchState: 'clear', activeOn: -1, loadedOn: -1, vpid: 0, instructionError: 0, freed: false });
  });

  test('VMPTRLD makes it active and current; VMCLEAR makes it clear, inactive and not current', () => {
    const { vmx } = inVmx();
    const v = vmx.allocVmcs('v');
    expect(vmx.vmptrld(0, v)).toBe('VMsucceed');
    expect(v.activeOn).toBe(0);
    expect(vmx.currentVmcs(0)).toBe(v);
    expect(vmx.activeVmcss(0)).toEqual([v]);
    expect(vmx.vmlaunch(0)).toBe('VMsucceed');
    expect(v.launchState).toBe('launched');
    expect(vmx.vmclear(0, v)).toBe('VMsucceed');
    expect(v.launchState).toBe('clear');
    expect(v.activeOn).toBe(-1);
    expect(vmx.currentVmcs(0)).toBeUndefined();
    expect(vmx.activeVmcss(0)).toEqual([]);
  });

  test('VMCLEAR of a non-current VMCS keeps the current one', () => {
    const { vmx } = inVmx();
    const a = vmx.allocVmcs('a');
    const b = vmx.allocVmcs('b');
    vmx.vmptrld(0, a);
    vmx.vmptrld(0, b);
    expect(vmx.vmclear(0, a)).toBe('VMsucceed');
    expect(vmx.currentVmcs(0)).toBe(b);
    expect(vmx.activeVmcss(0)).toEqual([b]);
  });

  test('VMPTRLD with a wrong revision id: VMfailInvalid without a current VMCS, VMfailValid(11) into the current one', () => {
    const { vmx } = inVmx();
    const bad = vmx.allocVmcs('bad', 0x13);
    expect(vmx.vmptrld(0, bad)).toBe('VMfailInvalid');
    const good = vmx.allocVmcs('good');
    vmx.vmptrld(0, good);
    expect(vmx.vmptrld(0, bad)).toBe('VMfailValid');
    expect(good.instructionError).toBe(VMXERR.VMXERR_VMPTRLD_INCORRECT_VMCS_REVISION_ID);
    expect(bad.instructionError).toBe(0);
    expect(vmx.currentVmcs(0)).toBe(good);
    expect(bad.activeOn).toBe(-1);
  });

  test('VMCLEAR / VMPTRLD with the VMXON pointer → VMfail(3) / VMfail(10)', () => {
    const { vmx, cpus } = raw();
    const page = vmx.allocVmcs('used-as-vmxon-region');
    cpus[0]!.cr4 |= VMXE;
    expect(vmx.vmxon(0, page)).toBe('VMsucceed');
    expect(vmx.vmclear(0, page)).toBe('VMfailInvalid');
    expect(vmx.vmptrld(0, page)).toBe('VMfailInvalid');
    const cur = vmx.allocVmcs('cur');
    vmx.vmptrld(0, cur);
    expect(vmx.vmclear(0, page)).toBe('VMfailValid');
    expect(cur.instructionError).toBe(VMXERR.VMXERR_VMCLEAR_VMXON_POINTER);
    expect(vmx.vmptrld(0, page)).toBe('VMfailValid');
    expect(cur.instructionError).toBe(VMXERR.VMXERR_VMPTRLD_VMXON_POINTER);
  });

  test('counters count successes only', () => {
    const { vmx } = inVmx();
    const v = vmx.allocVmcs('v');
    vmx.vmptrld(0, vmx.allocVmcs('bad', 1));
    vmx.vmptrld(0, v);
    vmx.vmclear(0, v);
    vmx.vmclear(0, v);
    expect(vmx.counters(0)).toMatchObject({ vmptrld: 1, vmclear: 2 });
  });
});

describe('VMLAUNCH / VMRESUME', () => {
  test('#UD outside VMX operation; VMfailInvalid without a current VMCS', () => {
    const { vmx } = raw();
    expect(vmx.vmlaunch(0)).toBe('#UD');
    expect(vmx.vmresume(0)).toBe('#UD');
    const { vmx: vmx2 } = inVmx();
    expect(vmx2.vmlaunch(0)).toBe('VMfailInvalid');
    expect(vmx2.vmresume(0)).toBe('VMfailInvalid');
  });

  test('VMRESUME of a clear VMCS → VMfailValid(5); VMLAUNCH → launched; VMLAUNCH again → VMfailValid(4); VMRESUME ok', () => {
    const { vmx } = inVmx();
    const v = vmx.allocVmcs('v');
    vmx.vmptrld(0, v);
    expect(vmx.vmresume(0)).toBe('VMfailValid');
    expect(v.instructionError).toBe(VMXERR.VMXERR_VMRESUME_NONLAUNCHED_VMCS);
    expect(vmx.vmlaunch(0)).toBe('VMsucceed');
    expect(v.launchState).toBe('launched');
    expect(vmx.vmlaunch(0)).toBe('VMfailValid');
    expect(v.instructionError).toBe(VMXERR.VMXERR_VMLAUNCH_NONCLEAR_VMCS);
    expect(vmx.vmresume(0)).toBe('VMsucceed');
    expect(vmx.vmresume(0)).toBe('VMsucceed');
    expect(vmx.counters(0)).toMatchObject({ vmlaunch: 1, vmresume: 2 });
  });

  test('VMCLEAR then VMPTRLD makes VMLAUNCH valid again (what a migration does)', () => {
    const { vmx } = inVmx();
    const v = vmx.allocVmcs('v');
    vmx.vmptrld(0, v);
    vmx.vmlaunch(0);
    vmx.vmclear(0, v);
    vmx.vmptrld(0, v);
    expect(vmx.vmresume(0)).toBe('VMfailValid');
    expect(vmx.vmlaunch(0)).toBe('VMsucceed');
  });

  test('VPID 0 → each VM entry flushes (vpid0Flush); a VPID entry does not', () => {
    const { vmx } = inVmx();
    const v = vmx.allocVmcs('v');
    vmx.vmptrld(0, v);
    vmx.vmlaunch(0);
    vmx.vmresume(0);
    expect(vmx.counters(0).vpid0Flush).toBe(2);
    v.vpid = 7;
    vmx.vmresume(0);
    expect(vmx.counters(0).vpid0Flush).toBe(2);
  });

  test('a VPID on a CPU without VPID support → VMfailValid(7)', () => {
    const h = raw(1, { vpid: false });
    h.cpus[0]!.cr4 |= VMXE;
    h.vmx.vmxon(0, h.region);
    const v = h.vmx.allocVmcs('v');
    v.vpid = 1;
    h.vmx.vmptrld(0, v);
    expect(h.vmx.vmlaunch(0)).toBe('VMfailValid');
    expect(v.instructionError).toBe(VMXERR.VMXERR_ENTRY_INVALID_CONTROL_FIELD);
    expect(v.launchState).toBe('clear');
  });
});

describe('INVEPT / INVVPID', () => {
  test('#UD outside VMX operation or without EPT/VPID', () => {
    const { vmx } = raw();
    expect(vmx.invept(0, 'global')).toBe('#UD');
    expect(vmx.invvpid(0, 'all-context', 0)).toBe('#UD');
    const h = raw(1, { ept: false, vpid: false });
    h.cpus[0]!.cr4 |= VMXE;
    h.vmx.vmxon(0, h.region);
    expect(h.vmx.invept(0, 'global')).toBe('#UD');
    expect(h.vmx.invvpid(0, 'single-context', 1)).toBe('#UD');
  });

  test('INVEPT global and single-context (EPTP checked)', () => {
    const { vmx } = inVmx();
    expect(vmx.invept(0, 'global')).toBe('VMsucceed');
    const eptp = 0x1234_5000 | (3 << 3) | 6; // 4-level walk, WB
    expect(vmx.invept(0, 'single-context', eptp)).toBe('VMsucceed');
    expect(vmx.invept(0, 'single-context', eptp | 0x40)).toBe('VMsucceed'); // A/D supported
    expect(vmx.invept(0, 'single-context', 0x1234_5000 | (3 << 3) | 1)).toBe('VMfailInvalid'); // memory type 1
    expect(vmx.invept(0, 'single-context', 0x1234_5000 | (2 << 3) | 6)).toBe('VMfailInvalid'); // 3-level walk
    const cur = vmx.allocVmcs('cur');
    vmx.vmptrld(0, cur);
    expect(vmx.invept(0, 'single-context', eptp | 0x80)).toBe('VMfailValid'); // reserved bit 7
    expect(cur.instructionError).toBe(VMXERR.VMXERR_INVALID_OPERAND_TO_INVEPT_INVVPID);
    expect(vmx.counters(0)).toMatchObject({ inveptGlobal: 1, inveptSingleContext: 2 });
  });

  test('INVVPID: VPID 0 is an invalid operand except for all-context', () => {
    const { vmx } = inVmx();
    expect(vmx.invvpid(0, 'single-context', 0)).toBe('VMfailInvalid');
    expect(vmx.invvpid(0, 'single-context-retaining-globals', 0)).toBe('VMfailInvalid');
    expect(vmx.invvpid(0, 'individual-address', 0, 0x1000n)).toBe('VMfailInvalid');
    const cur = vmx.allocVmcs('cur');
    vmx.vmptrld(0, cur);
    expect(vmx.invvpid(0, 'single-context', 0)).toBe('VMfailValid');
    expect(cur.instructionError).toBe(28);
    expect(vmx.invvpid(0, 'all-context', 0)).toBe('VMsucceed');
    expect(vmx.invvpid(0, 'single-context', 5)).toBe('VMsucceed');
    expect(vmx.invvpid(0, 'single-context-retaining-globals', 5)).toBe('VMsucceed');
    expect(vmx.invvpid(0, 'individual-address', 5, 0xffff_8000_0000_1000n)).toBe('VMsucceed');
    expect(vmx.invvpid(0, 'individual-address', 5, 0x0000_8000_0000_0000n)).toBe('VMfailValid'); // non-canonical
    expect(vmx.invvpid(0, 'single-context', 0x1_0000)).toBe('VMfailValid'); // descriptor bits 63:16
    expect(vmx.counters(0)).toMatchObject({
      invvpidAllContext: 1,
      invvpidSingleContext: 1,
      invvpidSingleContextRetainingGlobals: 1,
      invvpidIndividualAddress: 1,
    });
  });
});

describe('foreign owner knob', () => {
  test('a foreign hypervisor sets CR4.VMXE and enters VMX operation; leaving undoes both; not counted', () => {
    const { vmx, cpus } = raw();
    vmx.setForeignOwner(1, true);
    expect(cpus[1]!.cr4 & VMXE).toBe(VMXE);
    expect(vmx.inVmxOperation(1)).toBe(true);
    expect(vmx.foreignOwner(1)).toBe(true);
    expect(vmx.vmxonRegion(1)?.owner).toBe('foreign');
    vmx.setForeignOwner(1, false);
    expect(cpus[1]!.cr4 & VMXE).toBe(0);
    expect(vmx.inVmxOperation(1)).toBe(false);
    expect(vmx.counters(1)).toMatchObject({ vmxon: 0, vmxoff: 0 });
  });

  test('a CPU without VMX cannot have a foreign VMX owner', () => {
    const { vmx } = raw(2, { cpus: { 1: { vmx: false } } });
    expect(() => vmx.setForeignOwner(1, true)).toThrow(UsageError);
    expect(() => raw(1, { vmx: false, foreignOwner: true })).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_NOT_SUPPORTED' }));
  });
});

describe('misuse', () => {
  test('unknown CPU, foreign VMCS, freed VMCS → UsageError', () => {
    const { vmx } = inVmx();
    const other = raw().vmx.allocVmcs('other host');
    expect(() => vmx.vmptrld(0, other)).toThrow(UsageError);
    expect(() => vmx.vmxoff(9)).toThrow(UsageError);
    expect(() => vmx.vmxoff(-1)).toThrow(UsageError);
    const v = vmx.allocVmcs('v');
    vmx.freeVmcs(v);
    expect(v.freed).toBe(true);
    expect(() => vmx.vmptrld(0, v)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_DESTROYED' }));
    expect(() => vmx.injectEnableFault(0, 'sometimes' as 'once')).toThrow(UsageError);
    expect(() => vmx.invept(0, 'local' as 'global')).toThrow(UsageError);
  });
});
