/**
 * `vmxKvmOps`, driven directly (no `@vac/kvm`): a real host with VAC, fake KVM instances attached to VAC,
 * the vendor set up inside each, and vCPUs driven through load / prepareEntry / enter / exit / put / free.
 *
 * @module
 */
import { createHost, checkInvariants, isKernelError, vacOf, KernelError, UsageError } from '@vac/core';
import type { Host, ParamValues, Vac, VacHandle, VcpuTag } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { idleVacInstance } from '@vac/test-support';
import { ARCH_CAP, INTEL_MSR, L1TF_MSG_L1D, isIntelHardware, intel, vmxKvmOps, vmxParams } from '../src/index.js';
import type { IntelHardware, IntelOptions, VmxKvmModule, VmxParams, VmxVcpu, VmxVm } from '../src/index.js';
import { VPIDS } from '../src/index.js';

// ---------------------------------------------------------------------------------------------- helpers

/** The parameter values a module loaded with `over` gets (defaults from the specs). */
function paramValues(over: Partial<ParamValues<VmxParams>> = {}): ParamValues<VmxParams> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(vmxParams)) out[name] = spec.defaultValue;
  return { ...out, ...over } as ParamValues<VmxParams>;
}

interface World {
  readonly host: Host;
  readonly vac: Vac;
  readonly hw: IntelHardware;
}

function world(cpus = 4, options: IntelOptions = {}): World {
  const host = createHost({ cpus, hardware: intel(options) });
  host.modprobe('vac');
  const vac = vacOf(host);
  if (vac === undefined) throw new Error('vac did not load');
  const hw = host.hardware;
  if (!isIntelHardware(hw)) throw new Error('not Intel');
  return { host, vac, hw };
}

function attach(vac: Vac, name: string): VacHandle {
  return vac.attach(idleVacInstance(name));
}

interface Loaded {
  readonly handle: VacHandle;
  readonly mod: VmxKvmModule;
  readonly warnings: Array<{ readonly message: string; readonly cpu: number | undefined }>;
  readonly vm: VmxVm;
  vcpu(id: number): VmxVcpu;
}

/** Attach `name` to VAC, take its usage reference (enable_virt_at_load), set the vendor up, create VM 1. */
function load(w: World, name: string, params: Partial<ParamValues<VmxParams>> = {}): Loaded {
  const handle = attach(w.vac, name);
  handle.enableVirtualization();
  const warnings: Array<{ readonly message: string; readonly cpu: number | undefined }> = [];
  const mod = vmxKvmOps.setup({
    host: w.host,
    module: name,
    params: paramValues(params),
    vac: handle,
    warn: (message, cpu) => warnings.push({ message, cpu }),
  });
  const vm = mod.createVm({ id: 1, tag: { instance: name, vm: 1, vcpu: -1 } });
  return { handle, mod, warnings, vm, vcpu: (id) => mod.createVcpu(vm, tag(name, id)) };
}

function tag(instance: string, vcpu: number, vm = 1): VcpuTag {
  return { instance, vm, vcpu };
}

/** One pass of the generic run loop: prepareEntry, enter (must succeed), exit. */
function pass(v: VmxVcpu, cpu: number): void {
  v.prepareEntry(cpu);
  expect(v.enter(cpu)).toBeUndefined();
  v.exit(cpu);
}

/** A KVM_RUN returning to user space after `passes` entries (time slices) on `cpu`. */
function run(v: VmxVcpu, cpu: number, passes: number): void {
  v.load(cpu);
  for (let i = 0; i < passes; i++) pass(v, cpu);
  v.put(cpu);
}

/** Free every vCPU of the module and detach its handle. */
function unload(l: Loaded): void {
  for (const v of l.mod.vcpus()) v.free();
  l.vm.destroy();
  l.mod.teardown();
  l.handle.detach();
}

function expectClean(w: World): void {
  expect(checkInvariants(w.host)).toEqual([]);
  expect(w.vac.usageCount).toBe(0);
  expect((w.vac.tryResource(VPIDS)?.holders() ?? [])).toEqual([]);
  expect(w.vac.userReturnSlots()).toEqual([]);
  expect(w.vac.instances()).toEqual([]);
  expect(w.hw.vmx.liveVmcss()).toEqual([]);
  for (const c of w.host.cpus) expect(w.hw.inVmxOperation(c.id)).toBe(false);
}

// ---------------------------------------------------------------------------------------------- params

describe('params: kvm_intel with Linux names, types and defaults', () => {
  test('names, types, defaults, descriptions', () => {
    const shown = Object.fromEntries(Object.entries(vmxParams).map(([k, s]) => [k, [s.type, s.show(s.defaultValue as never)]]));
    expect(shown).toEqual({
      vpid: ['bool', 'Y'],
      ept: ['bool', 'Y'],
      eptad: ['bool', 'Y'],
      unrestricted_guest: ['bool', 'Y'],
      flexpriority: ['bool', 'Y'],
      nested: ['bool', 'Y'],
      enable_apicv: ['bool', 'Y'],
      pml: ['bool', 'Y'],
      preemption_timer: ['bool', 'Y'],
      vmentry_l1d_flush: ['string', 'cond'],
      error_on_inconsistent_vmcs_config: ['bool', 'Y'],
      dump_invalid_vmcs: ['bool', 'N'],
    });
    for (const spec of Object.values(vmxParams)) expect(spec.description.length).toBeGreaterThan(10);
    expect(vmxKvmOps.name).toBe('vmx');
    expect(vmxKvmOps.params).toBe(vmxParams);
  });

  test('vmentry_l1d_flush takes always, cond, never and auto (vmentry_l1d_param[].for_parse), nothing else', () => {
    const p = vmxParams.vmentry_l1d_flush;
    for (const w of ['always', 'cond', 'never', 'auto'] as const) expect(p.parse(w)).toBe(w);
    expect(p.parse('always\n')).toBe('always'); // sysfs_streq
    expect(p.parse('EPT disabled')).toBeUndefined(); // for_parse = false
    expect(p.parse('not required')).toBeUndefined();
    expect(p.parse('sometimes')).toBeUndefined();
  });

  test('nested is a plain bool, as SVM’s (the factory requires equal types)', () => {
    expect(vmxParams.nested.type).toBe('bool');
    expect(vmxParams.nested.defaultValue).toBe(true);
    expect(vmxParams.nested.parse('0')).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------- usable / setup

describe('usable(host) = kvm_is_vmx_supported on CPU 0', () => {
  test('Intel with VMX → true', () => {
    expect(vmxKvmOps.usable(createHost({ cpus: 2, hardware: intel() }))).toBe(true);
  });
  test('no VMX in CPUID, or the BIOS locked it off on CPU 0 → false', () => {
    expect(vmxKvmOps.usable(createHost({ cpus: 2, hardware: intel({ vmx: false }) }))).toBe(false);
    expect(vmxKvmOps.usable(createHost({ cpus: 2, hardware: intel({ cpus: { 0: { vmxDisabledByBios: true } } }) }))).toBe(false);
  });
});

describe('setup(env) = vmx_hardware_setup within one module', () => {
  test('defaults on the default CPU: VPID, EPT, A/D, unrestricted guest, FlexPriority; cond L1D flush by MSR', () => {
    const w = world(2);
    const k = load(w, 'kvm0');
    expect(k.mod.config).toEqual({
      vpid: true,
      ept: true,
      eptad: true,
      unrestrictedGuest: true,
      flexpriority: true,
      // The model's capability MSRs offer no APICv, PML or preemption timer: off, as vmx_hardware_setup does.
      apicv: false,
      pml: false,
      preemptionTimer: false,
      nested: true,
      invvpidAllContext: true,
      l1tf: 'cond',
      l1dFlushMethod: 'msr',
      l1tfAffected: true,
      errorOnInconsistentVmcsConfig: true,
      dumpInvalidVmcs: false,
    });
    expect(k.mod.module).toBe('kvm0');
    expect(k.warnings).toEqual([]);
    // KVM_CAP_NESTED_STATE comes from the nested-state ops (vmx_get_nested_state(NULL, …)), not from extensions.
    expect(k.mod.extensions.get(157)).toBeUndefined();
    expect(k.mod.arch.nestedState?.maxSize).toBe(128 + 2 * 4096);
    expect(k.mod.arch.mceCapExtra).toBe((1n << 27n) | (1n << 10n)); // MCG_LMCE_P | MCG_CMCI_P (vmx_hardware_setup)
    expect(k.mod.arch.tscControl).toBe(false); // the model's CPU has no TSC scaling in IA32_VMX_PROCBASED_CTLS2
    unload(k);
    expectClean(w);
  });

  test('params turn features off; ept=N takes unrestricted guest and EPT A/D with it', () => {
    const w = world(1);
    const k = load(w, 'kvm0', { vpid: false, ept: false, flexpriority: false, nested: false });
    expect(k.mod.config).toMatchObject({ vpid: false, ept: false, eptad: false, unrestrictedGuest: false, flexpriority: false, nested: false });
    expect(k.warnings).toEqual([]);
    unload(k);
  });

  test('EPT or VPID asked for but missing on the CPU: turned off, with a warning', () => {
    const w = world(2, { ept: false, vpid: false });
    const k = load(w, 'kvm0');
    expect(k.mod.config).toMatchObject({ vpid: false, ept: false, unrestrictedGuest: false, l1tf: 'EPT disabled' });
    expect(k.warnings.map((x) => x.message)).toEqual([
      expect.stringContaining('vpid=Y but the CPU has no usable VPID support'),
      expect.stringContaining('ept=Y but the CPU has no usable EPT support'),
    ]);
    const v = k.vcpu(0);
    expect(v.vpid).toBe(0);
    expect(v.vmcs.vpid).toBe(0);
    unload(k);
    expectClean(w);
  });

  test('vmentry_l1d_flush: auto → cond; not affected (RDCL_NO) or SKIP_VMENTRY_L1DFLUSH → "not required"; no EPT → "EPT disabled"', () => {
    const w = world(1);
    expect(load(w, 'kvm0', { vmentry_l1d_flush: 'auto' }).mod.config.l1tf).toBe('cond');
    expect(load(w, 'kvm1', { vmentry_l1d_flush: 'always', ept: false }).mod.config).toMatchObject({ l1tf: 'EPT disabled', l1dFlushMethod: 'none' });
    const immune = world(1, { archCapabilities: ARCH_CAP.ARCH_CAP_RDCL_NO });
    expect(load(immune, 'kvm0', { vmentry_l1d_flush: 'always' }).mod.config).toMatchObject({ l1tf: 'not required', l1tfAffected: false });
    const skip = world(1, { archCapabilities: ARCH_CAP.ARCH_CAP_SKIP_VMENTRY_L1DFLUSH });
    expect(load(skip, 'kvm0', { vmentry_l1d_flush: 'always' }).mod.config).toMatchObject({ l1tf: 'not required', l1tfAffected: true });
    const noMsr = world(1, { archCapabilities: null });
    expect(load(noMsr, 'kvm0').mod.config).toMatchObject({ l1tf: 'cond', l1tfAffected: true });
  });

  test('vmx_check_processor_compat: an online CPU whose VMX capabilities differ fails the load with EIO, before any effect', () => {
    const w = world(4, { cpus: { 2: { ept: false } } });
    const handle = attach(w.vac, 'kvm0');
    const warnings: string[] = [];
    const env = { host: w.host, module: 'kvm0', params: paramValues(), vac: handle, warn: (m: string) => warnings.push(m) };
    let err: unknown;
    try {
      vmxKvmOps.setup(env);
    } catch (e) {
      err = e;
    }
    expect(isKernelError(err, 'EIO')).toBe(true);
    expect(warnings).toEqual(['Inconsistent VMCS config on CPU 2']);
    expect(w.vac.userReturnSlots()).toEqual([]);
    // Offline CPUs are not checked (for_each_online_cpu).
    w.host.cpuDown(2);
    warnings.length = 0;
    const mod = vmxKvmOps.setup(env);
    expect(mod.config.ept).toBe(true);
    handle.detach();
  });
});

// ---------------------------------------------------------------------------------------------- user-return MSRs

describe('user-return MSRs (vmx_setup_user_return_msrs through VAC)', () => {
  test('vmx_uret_msrs_list minus IA32_TSX_CTRL (the CPU model lacks it); two modules share the slots', () => {
    const w = world(2);
    const a = load(w, 'kvm0');
    const expected = [
      INTEL_MSR.MSR_SYSCALL_MASK,
      INTEL_MSR.MSR_LSTAR,
      INTEL_MSR.MSR_CSTAR,
      INTEL_MSR.MSR_EFER,
      INTEL_MSR.MSR_TSC_AUX,
      INTEL_MSR.MSR_STAR,
    ];
    expect(a.mod.userReturnMsrs.map((u) => u.msr)).toEqual(expected);
    expect(a.mod.userReturnMsrs.map((u) => u.slot)).toEqual([0, 1, 2, 3, 4, 5]);
    const b = load(w, 'kvm1', { vmentry_l1d_flush: 'always', vpid: false });
    expect(b.mod.userReturnMsrs).toEqual(a.mod.userReturnMsrs);
    expect(w.vac.userReturnSlots()).toEqual(expected.map((msr, slot) => ({ slot, msr, refs: 2 })));
    // What a vCPU loads at vcpu_load: the guest's TSC_AUX (0) only.
    expect(a.mod.userReturn).toEqual([{ slot: 4, value: 0n }]);
    expect(b.mod.userReturn).toEqual(a.mod.userReturn);
    // KVM writes it; returning to user space restores the host's value (the CPU number, setup_getcpu).
    for (const u of a.mod.userReturn) expect(a.handle.setUserReturnMsr(1, u.slot, u.value, ~0n)).toBe(0);
    expect(w.host.cpus[1]!.rdmsrSafe(INTEL_MSR.MSR_TSC_AUX)).toBe(0n);
    a.handle.returnToUser(1);
    expect(w.host.cpus[1]!.rdmsrSafe(INTEL_MSR.MSR_TSC_AUX)).toBe(1n);
    unload(a);
    expect(w.vac.userReturnSlots().map((s) => s.refs)).toEqual([1, 1, 1, 1, 1, 1]);
    unload(b);
    expectClean(w);
  });
});

// ---------------------------------------------------------------------------------------------- VMs

describe('createVm (vmx_vm_init)', () => {
  test('no memory encryption: KVM_MEMORY_ENCRYPT_OP → ENOTTY; destroy is a no-op', () => {
    const w = world(1);
    const k = load(w, 'kvm0');
    expect(k.vm.encryption).toBe('none');
    let err: unknown;
    try {
      k.vm.memEncryptOp({ id: 0, data: 0, error: 0, fd: -1 }, false);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KernelError);
    expect((err as KernelError).code).toBe('ENOTTY');
    k.vm.destroy();
    expect(() => k.mod.createVcpu(k.vm, tag('kvm0', 0))).toThrow(UsageError);
    unload(k);
    expectClean(w);
  });

  test('vmentry_l1d_flush=never on an affected CPU: the first VM prints L1TF_MSG_L1D, once', () => {
    const w = world(1);
    const k = load(w, 'kvm0', { vmentry_l1d_flush: 'never' });
    k.mod.createVm({ id: 2, tag: tag('kvm0', -1, 2) });
    expect(k.warnings.map((x) => x.message)).toEqual([L1TF_MSG_L1D]);
    const immune = world(1, { archCapabilities: ARCH_CAP.ARCH_CAP_RDCL_NO });
    expect(load(immune, 'kvm0', { vmentry_l1d_flush: 'never' }).warnings).toEqual([]);
  });

  test('a VM of another module is refused', () => {
    const w = world(1);
    const a = load(w, 'kvm0');
    const b = load(w, 'kvm1');
    expect(() => b.mod.createVcpu(a.vm, tag('kvm1', 0))).toThrow(UsageError);
    expect(() => a.mod.createVcpu(a.vm, tag('kvm1', 0))).toThrow(UsageError);
    unload(a);
    unload(b);
    expectClean(w);
  });
});

// ---------------------------------------------------------------------------------------------- VPIDs

describe('VPIDs (vmx_vcpu_create / vmx_vcpu_free, VAC allocator)', () => {
  test('1, 2, … unique across two modules; written into the VMCS; tlbTag; free gives them back', () => {
    const w = world(2);
    const a = load(w, 'kvm0');
    const b = load(w, 'kvm1');
    const a0 = a.vcpu(0);
    const b0 = b.vcpu(0);
    const a1 = a.vcpu(1);
    expect([a0.vpid, b0.vpid, a1.vpid]).toEqual([1, 2, 3]);
    expect(a1.vmcs.vpid).toBe(3);
    expect(a1.vmcs.owner).toBe('kvm0/vm1/vcpu1');
    expect(b0.tlbTag()).toEqual({ kind: 'vpid', value: 2 });
    expect((w.vac.tryResource(VPIDS)?.holders() ?? [])).toEqual([
      { vpid: 1, holder: 'kvm0/vm1/vcpu0' },
      { vpid: 2, holder: 'kvm1/vm1/vcpu0' },
      { vpid: 3, holder: 'kvm0/vm1/vcpu1' },
    ]);
    a0.free();
    expect(a0.tlbTag()).toEqual({ kind: 'vpid', value: 0 });
    expect(b.vcpu(1).vpid).toBe(1); // lowest free first
    expect(checkInvariants(w.host)).toEqual([]);
    unload(a);
    unload(b);
    expectClean(w);
  });

  test('a vpid=N module uses VPID 0 without touching VAC; the CPU flushes on every entry', () => {
    const w = world(2);
    const k = load(w, 'kvm0', { vpid: false });
    const v = k.vcpu(0);
    expect(v.vpid).toBe(0);
    expect((w.vac.tryResource(VPIDS)?.holders() ?? [])).toEqual([]);
    const flushes: Array<{ cpu: number; kind: string; module: string | undefined }> = [];
    w.host.events.on('tlb:flush', (e) => flushes.push({ cpu: e.cpu, kind: e.kind, module: e.module }));
    const before = w.hw.counters(1).vpid0Flush;
    run(v, 1, 3);
    expect(w.hw.counters(1).vpid0Flush - before).toBe(3);
    expect(v.stats.tlbFlushVpid0Entry).toBe(3);
    // First load: vmx_flush_tlb_all with EPT = global INVEPT, then three VPID-0 entries.
    expect(flushes).toEqual([
      { cpu: 1, kind: 'global', module: 'kvm0' },
      { cpu: 1, kind: 'entry', module: 'kvm0' },
      { cpu: 1, kind: 'entry', module: 'kvm0' },
      { cpu: 1, kind: 'entry', module: 'kvm0' },
    ]);
    expect(v.stats.tlbFlushes).toBe(4);
    unload(k);
    expectClean(w);
  });

  test('exhaustion: with all 65535 VPIDs taken the next vCPU gets 0 (no error) and flushes on every entry', () => {
    const w = world(1);
    const k = load(w, 'kvm0');
    const filler: number[] = [];
    for (let i = 0; i < 65535; i++) filler.push(k.handle.resource(VPIDS).allocate(tag('kvm0', i, 99)));
    expect(filler[0]).toBe(1);
    expect(filler[65534]).toBe(65535);
    const v = k.vcpu(0);
    expect(v.vpid).toBe(0);
    expect(w.vac.tryResource(VPIDS)?.exhaustions).toBe(1);
    run(v, 0, 2);
    expect(v.stats.tlbFlushVpid0Entry).toBe(2);
    for (const vpid of filler) k.handle.resource(VPIDS).free(vpid);
    expect(k.vcpu(1).vpid).toBe(1);
    unload(k);
    expectClean(w);
  });
});

// ---------------------------------------------------------------------------------------------- VMCS, entries

describe('load / put / enter (vmx_vcpu_load_vmcs, __vmx_vcpu_run)', () => {
  test('VMLAUNCH first, then VMRESUME; put keeps the VMCS loaded (no VMCLEAR at put)', () => {
    const w = world(2);
    const k = load(w, 'kvm0');
    const v = k.vcpu(0);
    const c0 = w.hw.counters(0);
    run(v, 0, 3);
    const c1 = w.hw.counters(0);
    expect(c1.vmlaunch - c0.vmlaunch).toBe(1);
    expect(c1.vmresume - c0.vmresume).toBe(2);
    expect(v.stats).toMatchObject({ entries: 3, exits: 3, vmlaunches: 1, vmresumes: 2, failedEntries: 0 });
    expect(c1.vmclear).toBe(c0.vmclear);
    expect(w.hw.loadedList(0)).toEqual(['kvm0/vm1/vcpu0']);
    expect(v.vmcs.loadedOn).toBe(0);
    expect(v.vmcs.launchState).toBe('launched');
    // Reloaded on the same CPU: already loaded and still current → no VMPTRLD, no TLB flush.
    v.load(0);
    expect(v.tlbFlushPending).toBe(false);
    pass(v, 0);
    v.put(0);
    const c2 = w.hw.counters(0);
    expect(c2.vmptrld - c1.vmptrld).toBe(0);
    expect(c2.vmresume - c1.vmresume).toBe(1);
    expect(v.stats.tlbFlushEptGlobal).toBe(1); // the first load only
    unload(k);
    expectClean(w);
  });

  test('load on CPU 0 then CPU 1: VMCLEAR on 0, VMPTRLD on 1, a flush on the next entry, VMLAUNCH again', () => {
    const w = world(2);
    const k = load(w, 'kvm0');
    const v = k.vcpu(0);
    run(v, 0, 2);
    const before0 = w.hw.counters(0);
    const before1 = w.hw.counters(1);
    v.load(1);
    expect(w.hw.counters(0).vmclear - before0.vmclear).toBe(1);
    expect(w.hw.counters(1).vmptrld - before1.vmptrld).toBe(1);
    expect(w.hw.loadedList(0)).toEqual([]);
    expect(w.hw.loadedList(1)).toEqual(['kvm0/vm1/vcpu0']);
    expect(v.vmcs.launchState).toBe('clear');
    expect(v.tlbFlushPending).toBe(true);
    expect(v.stats.vmcsMigrations).toBe(1);
    pass(v, 1);
    const after1 = w.hw.counters(1);
    expect(after1.inveptGlobal - before1.inveptGlobal).toBe(1); // vmx_flush_tlb_all → ept_sync_global
    expect(after1.vmlaunch - before1.vmlaunch).toBe(1);
    pass(v, 1);
    expect(w.hw.counters(1).inveptGlobal).toBe(after1.inveptGlobal); // once per migration
    expect(w.hw.counters(1).vmresume - after1.vmresume).toBe(1);
    v.put(1);
    expect(v.stats).toMatchObject({ tlbFlushEptGlobal: 2, vmlaunches: 2, vmresumes: 2 });
    expect(checkInvariants(w.host)).toEqual([]);
    unload(k);
    expectClean(w);
  });

  test('without EPT the migration flush is an all-context INVVPID; with neither EPT nor VPID there is none', () => {
    const w = world(2);
    const vpidOnly = load(w, 'kvm0', { ept: false });
    const neither = load(w, 'kvm1', { ept: false, vpid: false });
    const a = vpidOnly.vcpu(0);
    const b = neither.vcpu(0);
    const before = w.hw.counters(1);
    run(a, 1, 1);
    run(b, 1, 1);
    const after = w.hw.counters(1);
    expect(after.invvpidAllContext - before.invvpidAllContext).toBe(1);
    expect(after.inveptGlobal - before.inveptGlobal).toBe(0);
    expect(a.stats).toMatchObject({ tlbFlushVpidAll: 1, tlbFlushes: 1 });
    expect(b.stats).toMatchObject({ tlbFlushes: 1, tlbFlushVpid0Entry: 1, tlbFlushVpidAll: 0 });
    unload(vpidOnly);
    unload(neither);
    expectClean(w);
  });

  test('two modules’ vCPUs take turns on one CPU: VMPTRLD each time, no VMCLEAR, no extra flush', () => {
    const w = world(1);
    const a = load(w, 'kvm0').vcpu(0);
    const bMod = load(w, 'kvm1');
    const b = bMod.vcpu(0);
    run(a, 0, 1);
    run(b, 0, 1);
    const c = w.hw.counters(0);
    run(a, 0, 1);
    run(b, 0, 1);
    const d = w.hw.counters(0);
    expect(d.vmptrld - c.vmptrld).toBe(2);
    expect(d.vmclear - c.vmclear).toBe(0);
    expect(d.inveptGlobal - c.inveptGlobal).toBe(0);
    expect(d.vmresume - c.vmresume).toBe(2);
    expect(w.hw.loadedList(0)).toEqual(['kvm1/vm1/vcpu0', 'kvm0/vm1/vcpu0']);
    expect(checkInvariants(w.host)).toEqual([]);
  });

  test('misuse is a UsageError: enter without load, load while loaded, exit without enter, use after free', () => {
    const w = world(2);
    const k = load(w, 'kvm0');
    const v = k.vcpu(0);
    expect(() => v.enter(0)).toThrow(UsageError);
    v.load(0);
    expect(() => v.load(1)).toThrow(UsageError);
    expect(() => v.prepareEntry(1)).toThrow(UsageError);
    expect(() => v.exit(0)).toThrow(UsageError);
    v.prepareEntry(0);
    expect(v.enter(0)).toBeUndefined();
    expect(() => v.enter(0)).toThrow(UsageError);
    v.exit(0);
    v.put(0);
    v.free();
    expect(() => v.load(0)).toThrow(UsageError);
    expect(() => v.free()).toThrow(UsageError);
    unload(k);
    expectClean(w);
  });
});

describe('failed VM entries (KVM_EXIT_FAIL_ENTRY reasons)', () => {
  test('VMfailValid → the VM-instruction error of the current VMCS; the dump hint once per module', () => {
    const w = world(1);
    const k = load(w, 'kvm0');
    const v = k.vcpu(0);
    v.load(0);
    pass(v, 0);
    // Something outside KVM VMCLEARs the VMCS and loads it again: KVM still believes it launched.
    expect(w.hw.vmx.vmclear(0, v.vmcs)).toBe('VMsucceed');
    expect(w.hw.vmx.vmptrld(0, v.vmcs)).toBe('VMsucceed');
    v.prepareEntry(0);
    expect(v.enter(0)).toBe(5n); // VMRESUME with non-launched VMCS
    v.prepareEntry(0);
    expect(v.enter(0)).toBe(5n);
    expect(v.stats).toMatchObject({ failedEntries: 2, entries: 1 });
    expect(k.warnings.map((x) => x.message)).toEqual(['set kvm_intel.dump_invalid_vmcs=1 to dump internal KVM state.']);
    v.put(0);
    expect(checkInvariants(w.host)).toEqual([]);
  });

  test('dump_invalid_vmcs=Y: a dump line per failure', () => {
    const w = world(1);
    const k = load(w, 'kvm0', { dump_invalid_vmcs: true });
    const v = k.vcpu(0);
    v.load(0);
    pass(v, 0);
    w.hw.vmx.vmclear(0, v.vmcs);
    w.hw.vmx.vmptrld(0, v.vmcs);
    v.enter(0);
    v.enter(0);
    expect(k.warnings.map((x) => x.message)).toEqual([
      'VMCS #' + String(v.vmcs.id) + ' (kvm0/vm1/vcpu0), last attempted VM-entry on CPU 0: vmresume failed, VM-instruction error 5 (VMRESUME with non-launched VMCS)',
      'VMCS #' + String(v.vmcs.id) + ' (kvm0/vm1/vcpu0), last attempted VM-entry on CPU 0: vmresume failed, VM-instruction error 5 (VMRESUME with non-launched VMCS)',
    ]);
  });

  test('VMfailInvalid (no current VMCS) → reason 0 and the failed VMREAD warning', () => {
    const w = world(1);
    const k = load(w, 'kvm0');
    const v = k.vcpu(0);
    v.load(0);
    w.hw.vmx.vmclear(0, v.vmcs); // the current-VMCS pointer becomes invalid
    v.prepareEntry(0);
    expect(v.enter(0)).toBe(0n);
    expect(k.warnings.map((x) => x.message)).toEqual(['vmread failed: field=4400', 'set kvm_intel.dump_invalid_vmcs=1 to dump internal KVM state.']);
    w.hw.vmx.vmptrld(0, v.vmcs);
    v.put(0);
  });

  test('after a reboot VMX is off: entries fault, tolerated (reason 0, no warnings); free still works', () => {
    const w = world(2);
    const k = load(w, 'kvm0');
    const v = k.vcpu(0);
    v.load(0);
    pass(v, 0);
    const hostWarnings = w.host.warnings.length;
    w.host.reboot();
    expect(k.handle.rebooting).toBe(true);
    for (let i = 0; i < 5; i++) {
      v.prepareEntry(0);
      expect(v.enter(0)).toBe(0n);
    }
    v.put(0);
    v.load(1); // VMPTRLD faults too (tolerated), and a flush request is made
    v.prepareEntry(1); // INVEPT faults: kvm_spurious_fault, tolerated
    expect(v.enter(1)).toBe(0n);
    v.put(1);
    expect(v.stats.failedEntries).toBe(6);
    expect(k.warnings).toEqual([]);
    expect(w.host.warnings.length).toBe(hostWarnings);
    v.free();
    expect((w.vac.tryResource(VPIDS)?.holders() ?? [])).toEqual([]);
  });

  test('after a crash (emergency VMCLEAR, lists left stale) free still VMCLEARs quietly', () => {
    const w = world(2);
    const k = load(w, 'kvm0');
    const v = k.vcpu(0);
    run(v, 1, 1);
    const hostWarnings = w.host.warnings.length;
    w.host.crash();
    v.load(1);
    v.prepareEntry(1);
    expect(v.enter(1)).toBe(0n);
    v.put(1);
    v.free();
    expect(k.warnings).toEqual([]);
    expect(w.host.warnings.length).toBe(hostWarnings);
    expect(w.hw.vmx.liveVmcss()).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------- L1D flush

describe('L1D flush before VM entry (vmx_l1d_flush)', () => {
  test('always / cond / never side by side on one CPU: 1 per entry / 1 per load / none', () => {
    const w = world(1);
    const always = load(w, 'kvm0', { vmentry_l1d_flush: 'always' });
    const cond = load(w, 'kvm1', { vmentry_l1d_flush: 'cond' });
    const never = load(w, 'kvm2', { vmentry_l1d_flush: 'never' });
    const vs = [always.vcpu(0), cond.vcpu(0), never.vcpu(0)];
    const before = w.hw.counters(0).l1dFlush;
    // Two KVM_RUNs each (3 then 2 time slices), interleaved on CPU 0.
    for (const v of vs) run(v, 0, 3);
    for (const v of vs) run(v, 0, 2);
    expect(vs.map((v) => v.stats.entries)).toEqual([5, 5, 5]);
    expect(vs.map((v) => v.stats.l1dFlushes)).toEqual([5, 2, 0]);
    expect(w.hw.counters(0).l1dFlush - before).toBe(7);
    expect([always, cond, never].map((k) => k.mod.config.l1tf)).toEqual(['always', 'cond', 'never']);
    for (const k of [always, cond, never]) unload(k);
    expectClean(w);
  });

  test('cond: the flag is set by load (sched-in, or KVM_RUN after an exit to user space), cleared by the flush', () => {
    const w = world(2);
    const k = load(w, 'kvm0');
    const v = k.vcpu(0);
    expect(v.l1tfFlushL1d).toBe(false);
    v.load(0);
    expect(v.l1tfFlushL1d).toBe(true);
    pass(v, 0);
    expect(v.l1tfFlushL1d).toBe(false);
    pass(v, 0); // a plain re-entry after a time slice: no flush
    expect(v.stats.l1dFlushes).toBe(1);
    // The thread is scheduled out and back in (preempt notifiers): put + load → flush again.
    v.put(0);
    v.load(0);
    pass(v, 0);
    expect(v.stats.l1dFlushes).toBe(2);
    v.put(0);
    unload(k);
  });

  test('EPT off: "EPT disabled" never flushes, even with vmentry_l1d_flush=always', () => {
    const w = world(1);
    const k = load(w, 'kvm0', { ept: false, vmentry_l1d_flush: 'always' });
    const v = k.vcpu(0);
    run(v, 0, 3);
    expect(v.stats.l1dFlushes).toBe(0);
    expect(w.hw.counters(0).l1dFlush).toBe(0);
    unload(k);
  });

  test('a CPU not affected by L1TF never flushes; without FLUSH_L1D the software flush is counted per vCPU only', () => {
    const immune = world(1, { archCapabilities: ARCH_CAP.ARCH_CAP_RDCL_NO });
    const a = load(immune, 'kvm0', { vmentry_l1d_flush: 'always' }).vcpu(0);
    run(a, 0, 2);
    expect(a.stats.l1dFlushes).toBe(0);
    const noMsr = world(1, { flushL1d: false });
    const k = load(noMsr, 'kvm0', { vmentry_l1d_flush: 'always' });
    expect(k.mod.config.l1dFlushMethod).toBe('software');
    const b = k.vcpu(0);
    run(b, 0, 2);
    expect(b.stats.l1dFlushes).toBe(2);
    expect(noMsr.hw.counters(0).l1dFlush).toBe(0);
    expect(k.warnings).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------- end to end

describe('lifecycle', () => {
  test('two modules, vCPUs on several CPUs, then everything freed and detached: invariants hold, VAC holds nothing', () => {
    const w = world(4);
    const a = load(w, 'kvm0', { vmentry_l1d_flush: 'always' });
    const b = load(w, 'kvm1', { vpid: false });
    const vcpus = [a.vcpu(0), a.vcpu(1), b.vcpu(0), b.vcpu(1)];
    vcpus.forEach((v, i) => run(v, i, 2));
    vcpus.forEach((v, i) => run(v, (i + 1) % 4, 2)); // every vCPU migrates once
    // One stays loaded when its VM is destroyed: free VMCLEARs it where it is.
    vcpus[0]!.load(2);
    pass(vcpus[0]!, 2);
    expect(checkInvariants(w.host)).toEqual([]);
    expect((w.vac.tryResource(VPIDS)?.holders() ?? []).map((h) => h.vpid)).toEqual([1, 2]);
    const vmclears = w.hw.counters(2).vmclear;
    vcpus[0]!.free(); // the generic code puts first; free must cope either way
    expect(w.hw.counters(2).vmclear - vmclears).toBe(1);
    unload(a);
    unload(b);
    expectClean(w);
    expect(vcpus.every((v) => v.freed)).toBe(true);
  });

  test('teardown refuses new VMs and vCPUs', () => {
    const w = world(1);
    const k = load(w, 'kvm0');
    k.mod.teardown();
    expect(() => k.mod.createVm({ id: 2, tag: tag('kvm0', -1, 2) })).toThrow(UsageError);
    expect(() => k.mod.createVcpu(k.vm, tag('kvm0', 0))).toThrow(UsageError);
    k.handle.detach();
  });
});
