import { describe, expect, test } from 'vitest';
import { FEAT_CTL, INTEL_MSR } from '../src/index.js';
import { makeHost, VMXE } from './helpers.js';

describe('unsupported() = __kvm_is_vmx_supported', () => {
  test('supported by default', () => {
    const { hw } = makeHost(2);
    expect(hw.virt.name).toBe('vmx');
    expect(hw.virt.unsupported(0)).toBeUndefined();
    expect(hw.virt.unsupported(1)).toBeUndefined();
  });

  test('no VMX in CPUID → "VMX not supported by CPU %d"', () => {
    const { hw } = makeHost(4, { cpus: { 2: { vmx: false } } });
    expect(hw.virt.unsupported(2)).toBe('VMX not supported by CPU 2');
    expect(hw.virt.unsupported(1)).toBeUndefined();
  });

  test('BIOS locked IA32_FEATURE_CONTROL without VMX → "VMX not enabled (by BIOS) …"', () => {
    const { hw, cpus } = makeHost(4, { cpus: { 3: { vmxDisabledByBios: true } } });
    expect(cpus[3]!.rdmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL)).toBe(0x1n);
    expect(hw.virt.unsupported(3)).toBe('VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL on CPU 3');
    expect(hw.virt.unsupported(0)).toBeUndefined();
  });

  test('unlocked IA32_FEATURE_CONTROL (kernel does not lock it) → "VMX not enabled (by BIOS) …"', () => {
    const { hw } = makeHost(2, { featureControl: 0, kernelLocksFeatureControl: false });
    expect(hw.virt.unsupported(1)).toBe('VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL on CPU 1');
  });

  test('unlocked IA32_FEATURE_CONTROL is locked with VMX by the kernel at boot (init_ia32_feat_ctl)', () => {
    const { hw, cpus } = makeHost(1, { featureControl: 0 });
    expect(cpus[0]!.rdmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL)).toBe(0x5n);
    expect(hw.virt.unsupported(0)).toBeUndefined();
  });
});

describe('enableCpu() = vmx_hardware_enable', () => {
  test('success: CR4.VMXE set, VMX operation on vmxarea, one global INVEPT, virt:enable', () => {
    const { hw, cpus, events, warnings } = makeHost(2);
    expect(hw.virt.enableCpu(1)).toBeUndefined();
    expect(cpus[1]!.cr4 & VMXE).toBe(VMXE);
    expect(hw.virt.isEnabled(1)).toBe(true);
    expect(hw.virt.enabledByVac(1)).toBe(true);
    expect(hw.vmx.vmxonRegion(1)).toBe(hw.virt.vmxarea(1));
    expect(hw.virt.vmxarea(1).revisionId).toBe(0x12);
    expect(hw.counters(1)).toMatchObject({ vmxon: 1, inveptGlobal: 1 });
    expect(hw.virt.isEnabled(0)).toBe(false);
    expect(events).toEqual([{ name: 'virt:enable', cpu: 1 }]);
    expect(warnings).toEqual([]);
    expect(hw.check()).toEqual([]);
  });

  test('global INVEPT even when no module uses EPT; skipped on a CPU without INVEPT (beyond the RFC)', () => {
    const { hw } = makeHost(2, { cpus: { 1: { ept: false } } });
    expect(hw.virt.enableCpu(0)).toBeUndefined();
    expect(hw.virt.enableCpu(1)).toBeUndefined();
    expect(hw.counters(0).inveptGlobal).toBe(1);
    expect(hw.counters(1).inveptGlobal).toBe(0);
  });

  test('foreign owner → EBUSY, CR4 and state unchanged, no VMXON attempted', () => {
    const { hw, cpus, events, warnings } = makeHost(2, { cpus: { 0: { foreignOwner: true } } });
    const cr4 = cpus[0]!.cr4;
    expect(cr4 & VMXE).toBe(VMXE);
    const before = hw.snapshot();
    expect(hw.virt.enableCpu(0)).toBe('EBUSY');
    expect(cpus[0]!.cr4).toBe(cr4);
    expect(hw.snapshot()).toEqual(before);
    expect(hw.virt.enabledByVac(0)).toBe(false);
    expect(hw.vmx.vmxonRegion(0)?.owner).toBe('foreign');
    expect(events).toEqual([]);
    expect(warnings).toEqual([]);
  });

  test('EBUSY when already enabled (CR4.VMXE set by an earlier enable)', () => {
    const { hw } = makeHost(1);
    expect(hw.virt.enableCpu(0)).toBeUndefined();
    expect(hw.virt.enableCpu(0)).toBe('EBUSY');
    expect(hw.counters(0).vmxon).toBe(1);
  });

  test('injected fault → EFAULT, CR4.VMXE cleared again, WARN "VMXON faulted, MSR_IA32_FEAT_CTL (0x3a) = 0x5"', () => {
    const { hw, cpus, events, warnings } = makeHost(4);
    hw.injectEnableFault(2, 'always');
    const before = hw.snapshot();
    expect(hw.virt.enableCpu(2)).toBe('EFAULT');
    expect(cpus[2]!.cr4 & VMXE).toBe(0);
    expect(hw.virt.isEnabled(2)).toBe(false);
    expect(warnings).toEqual([{ source: 'vac', cpu: 2, message: 'VMXON faulted, MSR_IA32_FEAT_CTL (0x3a) = 0x5' }]);
    expect(events).toEqual([]);
    expect(hw.snapshot()).toEqual(before);
    expect(hw.check()).toEqual([]);
  });

  test("'once' fault fires once: EFAULT, then success", () => {
    const { hw } = makeHost(1, { enableFault: 'once' });
    expect(hw.virt.enableCpu(0)).toBe('EFAULT');
    expect(hw.virt.enableCpu(0)).toBeUndefined();
    expect(hw.counters(0).vmxon).toBe(1);
  });

  test("'always' keeps failing; the warning is WARN_ONCE (one per host)", () => {
    const { hw, warnings } = makeHost(2, { enableFault: 'always' });
    expect(hw.virt.enableCpu(0)).toBe('EFAULT');
    expect(hw.virt.enableCpu(0)).toBe('EFAULT');
    expect(hw.virt.enableCpu(1)).toBe('EFAULT');
    expect(warnings.map((w) => w.message)).toEqual(['VMXON faulted, MSR_IA32_FEAT_CTL (0x3a) = 0x5']);
  });

  test('BIOS disabled VMX: VMXON #GP → EFAULT, warning shows the MSR (0x1)', () => {
    const { hw, cpus, warnings } = makeHost(4, { cpus: { 3: { vmxDisabledByBios: true } } });
    expect(hw.virt.enableCpu(3)).toBe('EFAULT');
    expect(cpus[3]!.cr4 & VMXE).toBe(0);
    expect(warnings).toEqual([{ source: 'vac', cpu: 3, message: 'VMXON faulted, MSR_IA32_FEAT_CTL (0x3a) = 0x1' }]);
  });

  test('a CPU without VMX: VMXON #UD → EFAULT; the warning reads the missing MSR as 0xdeadbeef', () => {
    const { hw, cpus, warnings } = makeHost(2, { cpus: { 1: { vmx: false } } });
    expect(hw.virt.enableCpu(1)).toBe('EFAULT');
    expect(cpus[1]!.cr4 & VMXE).toBe(0);
    expect(warnings).toEqual([{ source: 'vac', cpu: 1, message: 'VMXON faulted, MSR_IA32_FEAT_CTL (0x3a) = 0xdeadbeef' }]);
  });

  test('VMXON region revision ≠ this CPU\'s IA32_VMX_BASIC → VMfailInvalid → EFAULT (docs/spec.md §2.2)', () => {
    const { hw, cpus, warnings } = makeHost(2, { cpus: { 1: { vmxRevisionId: 0x13 } } });
    expect(hw.vmx.bootRevisionId).toBe(0x12);
    expect(hw.virt.enableCpu(1)).toBe('EFAULT');
    expect(cpus[1]!.cr4 & VMXE).toBe(0);
    expect(warnings).toEqual([
      {
        source: 'vac',
        cpu: 1,
        message: 'VMXON failed (VMfailInvalid) on CPU 1: VMXON region revision id 0x12, IA32_VMX_BASIC revision id 0x13',
      },
    ]);
    expect(hw.virt.enableCpu(0)).toBeUndefined();
  });
});

describe('disableCpu() = vmx_hardware_disable', () => {
  test('VMCLEARs every loaded VMCS (all modules), VMXOFF, clears CR4.VMXE, virt:disable', () => {
    const { hw, cpus, events, warnings } = makeHost(2);
    hw.virt.enableCpu(0);
    const a = hw.allocVmcs('kvm0/vm0/vcpu0');
    const b = hw.allocVmcs('kvm1/vm0/vcpu0');
    hw.vmcsLoad(a, 0);
    expect(hw.vmx.vmlaunch(0)).toBe('VMsucceed');
    hw.vmcsLoad(b, 0);
    expect(hw.vmx.vmlaunch(0)).toBe('VMsucceed');
    expect(hw.loadedList(0)).toEqual(['kvm1/vm0/vcpu0', 'kvm0/vm0/vcpu0']);
    hw.virt.disableCpu(0);
    expect(hw.loadedList(0)).toEqual([]);
    for (const v of [a, b]) expect(v).toMatchObject({ launchState: 'clear', activeOn: -1, loadedOn: -1 });
    expect(hw.inVmxOperation(0)).toBe(false);
    expect(cpus[0]!.cr4 & VMXE).toBe(0);
    expect(hw.counters(0)).toMatchObject({ vmclear: 2, vmxoff: 1 });
    expect(events).toEqual([
      { name: 'virt:enable', cpu: 0 },
      { name: 'virt:disable', cpu: 0 },
    ]);
    expect(warnings).toEqual([]);
    expect(hw.check()).toEqual([]);
  });

  test('enable → disable → enable works again and VMCSs relaunch', () => {
    const { hw } = makeHost(1);
    const v = hw.allocVmcs('v');
    hw.virt.enableCpu(0);
    hw.vmcsLoad(v, 0);
    hw.vmx.vmlaunch(0);
    hw.virt.disableCpu(0);
    expect(hw.virt.enableCpu(0)).toBeUndefined();
    expect(hw.vmcsLoad(v, 0)).toBe('first-load');
    expect(hw.vmx.vmlaunch(0)).toBe('VMsucceed');
    expect(hw.counters(0)).toMatchObject({ vmxon: 2, vmxoff: 1, inveptGlobal: 2, vmlaunch: 2 });
  });

  test('VMXOFF fault outside reboot: CR4.VMXE still cleared, kvm_spurious_fault recorded, no crash', () => {
    const { hw, cpus, warnings } = makeHost(1);
    cpus[0]!.cr4 |= VMXE; // CR4.VMXE set but no VMXON: VMXOFF will #UD
    hw.virt.disableCpu(0);
    expect(cpus[0]!.cr4 & VMXE).toBe(0);
    expect(warnings).toEqual([
      { source: 'vac', cpu: 0, message: 'kernel BUG: kvm_spurious_fault: vmxoff faulted (#UD) on CPU 0 while not rebooting' },
    ]);
  });

  test('VMXOFF fault while rebooting is tolerated silently', () => {
    const { hw, env, warnings } = makeHost(1);
    env.rebooting = true;
    hw.virt.disableCpu(0);
    expect(warnings).toEqual([]);
  });
});

describe('emergencyDisable() = vmx_emergency_disable', () => {
  test('nothing when CR4.VMXE is clear', () => {
    const { hw, events } = makeHost(1);
    hw.virt.emergencyDisable(0);
    expect(events).toEqual([]);
    expect(hw.counters(0).vmxoff).toBe(0);
  });

  test('VMCLEARs loaded VMCSs (list left as is), VMXOFF, CR4.VMXE cleared', () => {
    const { hw, cpus, env, events } = makeHost(2);
    hw.virt.enableCpu(1);
    const v = hw.allocVmcs('kvm0/vm0/vcpu0');
    hw.vmcsLoad(v, 1);
    hw.vmx.vmlaunch(1);
    env.rebooting = true; // VAC sets kvm_rebooting before calling the callback
    hw.virt.emergencyDisable(1);
    expect(v.launchState).toBe('clear');
    expect(v.activeOn).toBe(-1);
    expect(hw.loadedList(1)).toEqual(['kvm0/vm0/vcpu0']);
    expect(v.loadedOn).toBe(1);
    expect(hw.inVmxOperation(1)).toBe(false);
    expect(cpus[1]!.cr4 & VMXE).toBe(0);
    expect(events.at(-1)).toEqual({ name: 'virt:disable', cpu: 1 });
    expect(hw.check()).toEqual([]);
  });
});
