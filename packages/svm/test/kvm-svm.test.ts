/**
 * Tests of kvm_amd folded into KVM modules ({@link svmKvmOps}): parameters, setup, VAC-shared ASIDs, SEV
 * ASIDs, VMRUN and its failures, and that freeing everything leaves VAC empty. The vendor calls are driven
 * directly, with fake KVM instances attached to VAC (the generic run loop is `@vac/kvm`'s).
 *
 * @module
 */
import { describe, expect, it } from 'vitest';
import { idleVacInstance } from '@vac/test-support';
import { KernelError, checkInvariants, createHost, vacOf } from '@vac/core';
import type { Host, KvmVendorOps, ParamValues, Vac, VacHandle, VcpuTag } from '@vac/core';
import {
  MSR_TSC_AUX,
  MSR_VM_HSAVE_PA,
  SVM_EXIT,
  SVM_EXIT_ERR_U64,
  TLB_CONTROL_DO_NOTHING,
  amd,
  sevVmcbsOf,
  svmKvmOps,
  svmParams,
} from '../src/index.js';
import type { AmdHardware, AmdOptions, SvmKvmModule, SvmParams, SvmVcpu, SvmVm } from '../src/index.js';
import { ASIDS, SEV_ASIDS } from '../src/index.js';

// ---------------------------------------------------------------------------------------------------------
// A small world: a host, VAC, fake KVM instances with kvm_amd set up in each
// ---------------------------------------------------------------------------------------------------------

/** kvm_amd's parameter defaults, as the module loader would pass them. */
function defaultParams(): ParamValues<SvmParams> {
  const out: Record<string, unknown> = {};
  for (const [k, spec] of Object.entries(svmParams)) out[k] = spec.defaultValue;
  return out as ParamValues<SvmParams>;
}

interface Warning {
  readonly module: string;
  readonly message: string;
  readonly cpu: number | undefined;
}

interface Module {
  readonly name: string;
  readonly handle: VacHandle;
  readonly svm: SvmKvmModule;
}

interface World {
  readonly host: Host;
  readonly hw: AmdHardware;
  readonly vac: Vac;
  readonly warnings: Warning[];
  /** Attach `name` to VAC, take its usage reference, and set up kvm_amd in it. */
  load(name: string, params?: Partial<ParamValues<SvmParams>>): Module;
}

function world(cpus: number, options: AmdOptions = {}): World {
  const host = createHost({ cpus, hardware: amd(options) });
  host.modprobe('vac');
  const vac = vacOf(host);
  if (vac === undefined) throw new Error('vac did not load');
  const hw = host.hardware as AmdHardware;
  const warnings: Warning[] = [];
  return {
    host,
    hw,
    vac,
    warnings,
    load(name, params = {}) {
      const handle = vac.attach(idleVacInstance(name));
      handle.enableVirtualization();
      const svm = svmKvmOps.setup({
        host,
        module: name,
        params: { ...defaultParams(), ...params },
        vac: handle,
        warn: (message, cpu) => warnings.push({ module: name, message, cpu }),
      });
      return { name, handle, svm };
    },
  };
}

let nextVm = 1;

/** A VM of `m` (VM numbers are unique per test run, which is enough for tags). */
function createVm(m: Module): SvmVm {
  const id = nextVm++;
  return m.svm.createVm({ id, tag: { instance: m.name, vm: id, vcpu: -1 } });
}

function createVcpu(m: Module, vm: SvmVm, vcpu = 0): SvmVcpu {
  const tag: VcpuTag = { instance: m.name, vm: vm.id, vcpu };
  return m.svm.createVcpu(vm, tag);
}

/** One pass of the run loop on `cpu`: load, pre_svm_run, VMRUN, #VMEXIT, put. Returns the failure reason. */
function run(v: SvmVcpu, cpu: number, exitCode?: number): bigint | undefined {
  v.load(cpu);
  v.prepareEntry(cpu);
  const fail = v.enter(cpu);
  if (fail === undefined) {
    if (exitCode === undefined) v.exit(cpu);
    else v.exit(cpu, exitCode);
  }
  v.put(cpu);
  return fail;
}

/** The errno of a KernelError thrown by `fn`. */
function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  throw new Error('no error thrown');
}

/** A `struct kvm_sev_cmd`. */
function sevCmd(id: number): { id: number; data: number; error: number; fd: number } {
  return { id, data: 0, error: 0, fd: 3 };
}

const KVM_SEV_INIT = 0;
const KVM_SEV_ES_INIT = 1;
const KVM_SEV_LAUNCH_START = 2;

// ---------------------------------------------------------------------------------------------------------

describe('svmKvmOps: parameters', () => {
  it('has kvm_amd parameters with Linux names, types and defaults', () => {
    const shape = Object.fromEntries(Object.entries(svmParams).map(([k, s]) => [k, [s.type, s.show(s.defaultValue as never)]]));
    expect(shape).toEqual({
      npt: ['bool', 'Y'],
      nested: ['bool', 'Y'],
      avic: ['bool', 'N'],
      sev: ['bool', 'Y'],
      sev_es: ['bool', 'Y'],
      nrips: ['int', '1'],
      vls: ['int', '1'],
      vgif: ['int', '1'],
      lbrv: ['int', '1'],
      pause_filter_count: ['ushort', '3000'],
      dump_invalid_vmcb: ['bool', 'N'],
    });
    // What @vac/kvm's factory takes: a KvmVendorOps with any parameter specs.
    const generic: KvmVendorOps = svmKvmOps;
    expect(generic.name).toBe('svm');
    expect(generic.params).toBe(svmParams);
  });

  it('parses pause_filter_count as a ushort (kstrtou16, base 0)', () => {
    const p = svmParams.pause_filter_count;
    expect(p.parse('0x10')).toBe(16);
    expect(p.parse('010')).toBe(8);
    expect(p.parse('+65535')).toBe(65535);
    expect(p.parse('65536')).toBeUndefined();
    expect(p.parse('-1')).toBeUndefined();
    expect(p.parse('Y')).toBeUndefined();
  });

  it('parses the int features as numbers, as Linux does (nrips=0, not nrips=N)', () => {
    expect(svmParams.nrips.parse('0')).toBe(0);
    expect(svmParams.nrips.parse('N')).toBeUndefined();
    expect(svmParams.npt.parse('N')).toBe(false);
  });
});

describe('svmKvmOps.usable', () => {
  it('is true on AMD hardware whose boot CPU supports SVM', () => {
    expect(svmKvmOps.usable(createHost({ cpus: 2, hardware: amd() }))).toBe(true);
    expect(svmKvmOps.usable(createHost({ cpus: 2, hardware: amd({ vendor: 'HygonGenuine' }) }))).toBe(true);
  });

  it('is false without SVM on CPU 0', () => {
    expect(svmKvmOps.usable(createHost({ cpus: 2, hardware: amd({ svm: false }) }))).toBe(false);
    expect(svmKvmOps.usable(createHost({ cpus: 2, hardware: amd({ cpus: { 0: { svmDisabledByBios: true } } }) }))).toBe(false);
    // Only CPU 0 counts here (VAC checks the others when it loads).
    expect(svmKvmOps.usable(createHost({ cpus: 2, hardware: amd({ cpus: { 1: { svmDisabledByBios: true } } }) }))).toBe(true);
  });
});

describe('svmKvmOps.setup', () => {
  it('enables every feature the CPU has, SEV and SEV-ES included', () => {
    const w = world(2);
    const m = w.load('kvm0');
    expect(m.svm.features).toEqual({
      npt: true,
      nested: true,
      avic: false,
      nrips: true,
      vls: false, // the default model has no V_VMSAVE_VMLOAD
      vgif: true,
      lbrv: true,
      pauseFilterCount: 3000,
      dumpInvalidVmcb: false,
      sev: true,
      sevEs: true,
      tscAuxSlot: 0,
    });
    expect(m.svm.extensions.size).toBe(0);
    expect(m.svm.userReturn).toEqual([{ slot: 0, value: 0n }]);
    expect(w.warnings).toEqual([]);
  });

  it('registers MSR_TSC_AUX once for every module: one shared user-return slot', () => {
    const w = world(2);
    const a = w.load('kvm0');
    const b = w.load('kvm1');
    expect(a.svm.userReturn).toEqual(b.svm.userReturn);
    expect(w.vac.userReturnSlots()).toEqual([{ slot: 0, msr: MSR_TSC_AUX, refs: 2 }]);
  });

  it('runs with NPT off and says so when the CPU has no NPT (npt_enabled = false); SEV needs NPT', () => {
    const w = world(1, { npt: false });
    const m = w.load('kvm0');
    expect(m.svm.features).toMatchObject({ npt: false, sev: false, sevEs: false, vls: false });
    expect(w.warnings).toEqual([{ module: 'kvm0', message: 'Nested Paging disabled', cpu: undefined }]);
    // npt=N on such a CPU: nothing to say.
    w.warnings.length = 0;
    w.load('kvm1', { npt: false });
    expect(w.warnings).toEqual([]);
  });

  it('follows the parameters: avic, nrips=0 (which also turns SEV off), pause filter without the CPU feature', () => {
    const w = world(1, { pauseFilter: false });
    expect(w.load('kvm0', { avic: true }).svm.features).toMatchObject({ avic: true, pauseFilterCount: 0 });
    expect(w.load('kvm1', { nrips: 0 }).svm.features).toMatchObject({ nrips: false, sev: false });
    expect(w.load('kvm2', { avic: true, npt: false }).svm.features).toMatchObject({ avic: false, npt: false });
  });

  it('enables SEV-ES only with sev_es, CPUID SEV-ES, LBRV and SEV-ES ASIDs (sev_hardware_setup)', () => {
    expect(world(1).load('kvm0', { sev_es: false }).svm.features).toMatchObject({ sev: true, sevEs: false });
    expect(world(1, { sevEs: false }).load('kvm0').svm.features).toMatchObject({ sev: true, sevEs: false });
    expect(world(1, { minSevAsid: 1 }).load('kvm0').svm.features).toMatchObject({ sev: true, sevEs: false });
    expect(world(1).load('kvm0', { lbrv: 0 }).svm.features).toMatchObject({ sev: true, sevEs: false });
    const w = world(1, { lbrv: false });
    expect(w.load('kvm0').svm.features).toMatchObject({ lbrv: false, sev: true, sevEs: false });
    expect(w.warnings.map((x) => x.message)).toEqual(['WARNING: LBRV must be present for SEV-ES support']);
  });

  it('disables SEV without CPUID SEV, or with a WARN without FlushByAsid / DecodeAssists', () => {
    expect(world(1, { sev: false }).load('kvm0').svm.features).toMatchObject({ sev: false, sevEs: false });
    const w = world(1, { flushByAsid: false });
    expect(w.load('kvm0').svm.features).toMatchObject({ sev: false });
    expect(w.warnings.map((x) => x.message)).toEqual([
      'WARNING: WARN_ON_ONCE(!boot_cpu_has(X86_FEATURE_FLUSHBYASID)) in sev_hardware_setup',
    ]);
    expect(world(1, { decodeAssists: false }).load('kvm0').svm.features.sev).toBe(false);
  });

  it('refuses VMs and vCPUs after teardown and vCPUs for another module’s VM', () => {
    const w = world(1);
    const a = w.load('kvm0');
    const b = w.load('kvm1');
    const vm = createVm(a);
    expect(() => b.svm.createVcpu(vm, { instance: 'kvm1', vm: vm.id, vcpu: 0 })).toThrow('does not belong to this module');
    a.svm.teardown();
    expect(() => createVm(a)).toThrow('after teardown');
  });
});

describe('ASIDs: pre_svm_run with VAC’s shared per-CPU allocator', () => {
  it('takes a new ASID with a full flush on the first entry on a CPU (generation rollover), then keeps it', () => {
    const w = world(2);
    const m = w.load('kvm0');
    const v = createVcpu(m, createVm(m));
    expect(v.tlbTag()).toEqual({ kind: 'asid', value: 0 });
    expect(run(v, 0)).toBeUndefined();
    // min_asid = max_sev_asid + 1 = 510 with the default geometry.
    expect(v.tlbTag()).toEqual({ kind: 'asid', value: 510 });
    expect(v.vmcb.asid).toBe(510);
    expect(v.stats).toEqual({ entries: 1, failedEntries: 0, newAsids: 1, fullFlushes: 1, asidFlushes: 0, sevFlushes: 0 });
    expect(w.hw.counters(0)).toMatchObject({ vmrun: 1, vmexit: 1, tlbFlushAll: 1, clgi: 1, stgi: 1 });
    expect(w.vac.tryResource(ASIDS)?.rollovers).toBe(1);
    expect(v.vmcb.tlbControl).toBe(TLB_CONTROL_DO_NOTHING);
    expect(w.hw.cpu(0)).toMatchObject({ gif: true, inGuest: false });

    expect(run(v, 0)).toBeUndefined();
    expect(v.asid).toBe(510);
    expect(v.stats).toMatchObject({ entries: 2, newAsids: 1, fullFlushes: 1 });
    expect(w.hw.counters(0)).toMatchObject({ vmrun: 2, tlbFlushAll: 1 });
  });

  it('gives a second vCPU on the same CPU the next ASID, without a flush', () => {
    const w = world(2);
    const m = w.load('kvm0');
    const vm = createVm(m);
    const v0 = createVcpu(m, vm, 0);
    const v1 = createVcpu(m, vm, 1);
    run(v0, 0);
    run(v1, 0);
    expect([v0.asid, v1.asid]).toEqual([510, 511]);
    expect(v1.stats).toMatchObject({ newAsids: 1, fullFlushes: 0 });
    expect(w.vac.tryResource(ASIDS)?.cpuState(0)?.holders).toEqual([
      { asid: 510, holder: 'kvm0/vm' + vm.id + '/vcpu0' },
      { asid: 511, holder: 'kvm0/vm' + vm.id + '/vcpu1' },
    ]);
  });

  it('takes a new ASID after moving to another CPU, and again when it comes back', () => {
    const w = world(2);
    const m = w.load('kvm0');
    const vm = createVm(m);
    const v = createVcpu(m, vm, 0);
    const other = createVcpu(m, vm, 1);
    run(v, 0);
    run(other, 0); // 511 on CPU 0
    run(v, 1);
    expect(v.asid).toBe(510); // CPU 1's first ASID, with CPU 1's own rollover
    expect(v.vmcb.lastCpu).toBe(1);
    expect(v.stats).toMatchObject({ newAsids: 2, fullFlushes: 2 });
    run(v, 0);
    // CPU 0's generation did not change, but a VMCB that ran elsewhere always takes a fresh ASID.
    expect(v.asid).toBe(512);
    expect(v.stats).toMatchObject({ newAsids: 3, fullFlushes: 2 });
    expect(checkInvariants(w.host)).toEqual([]);
  });

  it('never gives two modules the same ASID on one CPU in one generation', () => {
    const w = world(2);
    const a = w.load('kvm0');
    const b = w.load('kvm1');
    const va = createVcpu(a, createVm(a));
    const vb = createVcpu(b, createVm(b));
    for (let i = 0; i < 3; i++) {
      run(va, 0);
      run(vb, 0);
      run(va, 1);
      run(vb, 1);
    }
    // Both last ran on CPU 1 (a holder's grant moves with it), where they hold different ASIDs.
    const holders = w.vac.tryResource(ASIDS)?.cpuState(1)?.holders ?? [];
    expect(new Set(holders.map((h) => h.asid)).size).toBe(holders.length);
    expect(holders.map((h) => h.holder.split('/')[0]).sort()).toEqual(['kvm0', 'kvm1']);
    expect(checkInvariants(w.host)).toEqual([]);
  });

  it('rolls the generation over with a full flush when the ASID space is used up', () => {
    // 8 ASIDs, SEV ASIDs 1 … 3: ordinary guests use 4 … 7.
    const w = world(1, { nrAsids: 8, maxSevAsid: 3, minSevAsid: 2 });
    const a = w.load('kvm0');
    const b = w.load('kvm1');
    const vcpus = [0, 1, 2, 3].map((i) => createVcpu(i % 2 === 0 ? a : b, createVm(i % 2 === 0 ? a : b)));
    for (const v of vcpus) run(v, 0);
    expect(vcpus.map((v) => v.asid)).toEqual([4, 5, 6, 7]);
    expect(w.hw.counters(0).tlbFlushAll).toBe(1);
    const fifth = createVcpu(a, createVm(a));
    run(fifth, 0);
    expect(fifth.asid).toBe(4);
    expect(fifth.stats.fullFlushes).toBe(1);
    expect(w.hw.counters(0).tlbFlushAll).toBe(2);
    expect(w.vac.tryResource(ASIDS)?.rollovers).toBe(2);
    // The others are stale now: each takes a new ASID in the new generation, without another flush.
    for (const v of vcpus) run(v, 0);
    expect(vcpus.slice(0, 3).map((v) => v.asid)).toEqual([5, 6, 7]);
    expect(vcpus[3]?.asid).toBe(4); // the space ran out again: a new generation
    expect(w.hw.counters(0).tlbFlushAll).toBe(3);
    expect(checkInvariants(w.host)).toEqual([]);
  });
});

describe('VMRUN and #VMEXIT', () => {
  it('records the exit code the caller gives (default SVM_EXIT_INTR) and balances CLGI/STGI', () => {
    const w = world(1);
    const m = w.load('kvm0');
    const v = createVcpu(m, createVm(m));
    run(v, 0);
    expect(v.vmcb.exitCode).toBe(SVM_EXIT.INTR);
    run(v, 0, SVM_EXIT.HLT);
    expect(v.vmcb.exitCode).toBe(SVM_EXIT.HLT);
    expect(w.hw.counters(0)).toMatchObject({ clgi: 2, stgi: 2, vmrun: 2, vmexit: 2 });
    expect(w.hw.cpu(0).gif).toBe(true);
  });

  it('finishes a run whose #VMEXIT the hardware already forced (IPI/NMI)', () => {
    const w = world(1);
    const m = w.load('kvm0');
    const v = createVcpu(m, createVm(m));
    v.load(0);
    v.prepareEntry(0);
    expect(v.enter(0)).toBeUndefined();
    w.hw.svm.forceVmexit(0, SVM_EXIT.NMI);
    v.exit(0);
    expect(v.vmcb.exitCode).toBe(SVM_EXIT.NMI);
    expect(w.hw.cpu(0)).toMatchObject({ inGuest: false, gif: true });
  });

  it('fails the entry with SVM_EXIT_ERR when VMRUN fails its consistency checks, with a ratelimited hint', () => {
    const w = world(1);
    const m = w.load('kvm0');
    const v = createVcpu(m, createVm(m));
    run(v, 0);
    const hsave = w.host.cpus[0]?.msrs.get(MSR_VM_HSAVE_PA) ?? 0n;
    w.host.cpus[0]?.msrs.set(MSR_VM_HSAVE_PA, 0n); // the model reports VMEXIT_INVALID for a zero VM_HSAVE_PA
    for (let i = 0; i < 12; i++) expect(run(v, 0)).toBe(SVM_EXIT_ERR_U64);
    expect(SVM_EXIT_ERR_U64).toBe(0xffffffffffffffffn);
    expect(v.stats).toMatchObject({ entries: 1, failedEntries: 12 });
    expect(v.lastVmentryCpu).toBe(0);
    expect(w.hw.counters(0)).toMatchObject({ vmexitInvalid: 12, clgi: 13, stgi: 13 });
    expect(w.hw.cpu(0).gif).toBe(true);
    expect(w.warnings).toHaveLength(10); // DEFAULT_RATELIMIT_BURST
    expect(w.warnings[0]).toEqual({ module: 'kvm0', message: 'set kvm0.dump_invalid_vmcb=1 to dump internal KVM state.', cpu: 0 });
    w.host.cpus[0]?.msrs.set(MSR_VM_HSAVE_PA, hsave);
    expect(run(v, 0)).toBeUndefined();
  });

  it('dumps the VMCB with dump_invalid_vmcb', () => {
    const w = world(1);
    const m = w.load('kvm0', { dump_invalid_vmcb: true });
    const v = createVcpu(m, createVm(m));
    w.host.cpus[0]?.msrs.set(MSR_VM_HSAVE_PA, 0n);
    expect(run(v, 0)).toBe(SVM_EXIT_ERR_U64);
    expect(w.warnings.map((x) => x.message)).toEqual([
      `VMCB ${v.vmcb.id} (pa 0x${v.vmcb.pa.toString(16)}), last attempted VMRUN on CPU 0: asid 510, exit_code 0xffffffffffffffff, sev none`,
    ]);
  });

  it('logs a kernel BUG when VMRUN faults (#UD) outside a reboot', () => {
    const w = world(1);
    const m = w.load('kvm0');
    const v = createVcpu(m, createVm(m));
    m.handle.disableVirtualization(); // the last reference: SVM off on every CPU
    expect(run(v, 0)).toBe(SVM_EXIT_ERR_U64);
    expect(w.warnings.map((x) => x.message)).toEqual([
      `kernel BUG: VMRUN faulted (#UD) on CPU 0 for kvm0/vm${v.vm.id}/vcpu0: EFER.SVME is clear`,
    ]);
    expect(v.vmcb.tlbControl).toBe(TLB_CONTROL_DO_NOTHING);
  });

  it('tolerates failed VMRUNs silently after a reboot: every entry fails with FAIL_ENTRY', () => {
    const w = world(2);
    const a = w.load('kvm0');
    const b = w.load('kvm1');
    const va = createVcpu(a, createVm(a));
    const vb = createVcpu(b, createVm(b));
    run(va, 0);
    w.host.reboot();
    expect(a.handle.rebooting).toBe(true);
    for (let i = 0; i < 20; i++) {
      expect(run(va, 0)).toBe(SVM_EXIT_ERR_U64);
      expect(run(vb, 1)).toBe(SVM_EXIT_ERR_U64);
    }
    expect(va.stats).toMatchObject({ entries: 1, failedEntries: 20 });
    expect(w.warnings).toEqual([]);
  });

  it('checks the call order of the run loop', () => {
    const w = world(2);
    const m = w.load('kvm0');
    const v = createVcpu(m, createVm(m));
    expect(() => v.prepareEntry(0)).toThrow('loaded on no CPU');
    v.load(0);
    expect(() => v.enter(1)).toThrow('loaded on CPU 0');
    expect(() => v.exit(0)).toThrow('without a VM entry');
    v.prepareEntry(0);
    expect(v.enter(0)).toBeUndefined();
    expect(() => v.free()).toThrow('in guest mode');
    v.exit(0);
    v.put(0);
    v.free();
    v.free(); // a second free does nothing
    expect(() => v.load(0)).toThrow('after free');
    expect(v.vmcb.freed).toBe(true);
  });
});

describe('SEV: KVM_MEMORY_ENCRYPT_OP and pre_sev_run', () => {
  it('takes an SEV ASID at KVM_SEV_INIT and an SEV-ES ASID at KVM_SEV_ES_INIT', () => {
    const w = world(2);
    const m = w.load('kvm0');
    const sev = createVm(m);
    const es = createVm(m);
    const cmd = { ...sevCmd(KVM_SEV_INIT), error: 7 };
    expect(sev.memEncryptOp(cmd, false)).toBe(0);
    expect(cmd.error).toBe(0);
    expect(es.memEncryptOp(sevCmd(KVM_SEV_ES_INIT), false)).toBe(0);
    expect([sev.encryption, sev.sevAsid, es.encryption, es.sevAsid]).toEqual(['sev', 100, 'sev-es', 1]);
    expect(w.vac.tryResource(SEV_ASIDS)?.state()?.inUse).toEqual([
      { asid: 1, holder: `kvm0/vm${es.id}` },
      { asid: 100, holder: `kvm0/vm${sev.id}` },
    ]);
    // Their vCPUs run with those ASIDs: VMRUN's SEV range checks pass.
    const vs = createVcpu(m, sev);
    const ve = createVcpu(m, es);
    expect([vs.vmcb.sev, ve.vmcb.sev]).toEqual(['sev', 'sev-es']);
    expect(run(vs, 0)).toBeUndefined();
    expect(run(ve, 0)).toBeUndefined();
    expect([vs.asid, ve.asid]).toEqual([100, 1]);
    expect(vs.stats).toMatchObject({ newAsids: 0, fullFlushes: 0, asidFlushes: 1, sevFlushes: 1 });
    expect(w.vac.tryResource(ASIDS)?.cpuState(0)?.holders).toEqual([]); // SEV guests do not use the per-CPU allocator
  });

  it('flushes the SEV ASID unless the same VMCB ran last with it on the same CPU', () => {
    const w = world(2);
    const m = w.load('kvm0');
    const vm = createVm(m);
    vm.memEncryptOp(sevCmd(KVM_SEV_INIT), false);
    const v0 = createVcpu(m, vm, 0);
    const v1 = createVcpu(m, vm, 1);
    run(v0, 0); // first time on CPU 0: flush
    run(v0, 0); // same VMCB, same CPU: no flush
    expect(v0.stats.sevFlushes).toBe(1);
    run(v0, 1); // another CPU: flush
    run(v0, 0); // back, but the last VMRUN was on CPU 1: flush
    expect(v0.stats.sevFlushes).toBe(3);
    run(v1, 0); // another VMCB with this ASID on CPU 0: flush
    run(v0, 0); // and v0 again after it: flush
    expect([v0.stats.sevFlushes, v1.stats.sevFlushes]).toEqual([4, 1]);
    expect(sevVmcbsOf(w.hw).get(0, vm.sevAsid)).toBe(v0.vmcb);
    expect(sevVmcbsOf(w.hw).get(1, vm.sevAsid)).toBe(v0.vmcb);
    // sev_asid_free() forgets the ASID on every CPU.
    v0.free();
    v1.free();
    vm.destroy();
    expect(sevVmcbsOf(w.hw).get(0, vm.sevAsid)).toBeUndefined();
    expect(sevVmcbsOf(w.hw).get(1, vm.sevAsid)).toBeUndefined();
    expect(w.hw.counters(0).tlbFlushAsid + w.hw.counters(1).tlbFlushAsid).toBe(5);
  });

  it('shares sev_vmcbs[] between modules: a recycled ASID in another module flushes', () => {
    const w = world(1, { maxSevAsid: 100, minSevAsid: 100 }); // one SEV ASID: 100
    const a = w.load('kvm0');
    const b = w.load('kvm1');
    const vmA = createVm(a);
    vmA.memEncryptOp(sevCmd(KVM_SEV_INIT), false);
    const va = createVcpu(a, vmA);
    run(va, 0);
    va.free();
    vmA.destroy();
    const vmB = createVm(b);
    vmB.memEncryptOp(sevCmd(KVM_SEV_INIT), false); // recycles 100
    expect(vmB.sevAsid).toBe(100);
    const vb = createVcpu(b, vmB);
    run(vb, 0);
    expect(vb.stats.sevFlushes).toBe(1);
  });

  it('never gives two modules’ SEV VMs the same SEV ASID', () => {
    const w = world(1);
    const a = w.load('kvm0');
    const b = w.load('kvm1');
    const asids: number[] = [];
    for (let i = 0; i < 4; i++) {
      const vm = createVm(i % 2 === 0 ? a : b);
      vm.memEncryptOp(sevCmd(i < 2 ? KVM_SEV_INIT : KVM_SEV_ES_INIT), false);
      asids.push(vm.sevAsid);
    }
    expect(asids).toEqual([100, 101, 1, 2]);
    expect(checkInvariants(w.host)).toEqual([]);
  });

  it('answers EBUSY when the range is used up, and recycles freed ASIDs only after a flush', () => {
    // SEV ASIDs 3 … 4, SEV-ES 1 … 2.
    const w = world(2, { nrAsids: 16, maxSevAsid: 4, minSevAsid: 3 });
    const m = w.load('kvm0');
    const a = createVm(m);
    const b = createVm(m);
    a.memEncryptOp(sevCmd(KVM_SEV_INIT), false);
    b.memEncryptOp(sevCmd(KVM_SEV_INIT), false);
    expect([a.sevAsid, b.sevAsid]).toEqual([3, 4]);
    const c = createVm(m);
    // Nothing to reclaim: no flush, EBUSY, and the VM stays a plain one.
    expect(errno(() => c.memEncryptOp(sevCmd(KVM_SEV_INIT), false))).toBe('EBUSY');
    expect(c.encryption).toBe('none');
    expect(w.hw.snapshot().dfFlushes).toBe(0);
    // Destroying an SEV VM writes back the caches (wbinvd_on_all_cpus) and parks its ASID for reclaim.
    a.destroy();
    expect(w.hw.totals().wbinvd).toBe(2);
    expect(w.vac.tryResource(SEV_ASIDS)?.state()?.awaitingReclaim).toEqual([3]);
    // The next INIT finds no free ASID, flushes (WBINVD everywhere + DF_FLUSH) and reuses 3.
    expect(c.memEncryptOp(sevCmd(KVM_SEV_INIT), false)).toBe(0);
    expect(c.sevAsid).toBe(3);
    expect(w.hw.snapshot().dfFlushes).toBe(1);
    expect(w.hw.totals().wbinvd).toBe(4);
    // The SEV-ES range is separate.
    const d = createVm(m);
    d.memEncryptOp(sevCmd(KVM_SEV_ES_INIT), false);
    expect(d.sevAsid).toBe(1);
  });

  it('does not reuse a freed ASID while another one is still free', () => {
    const w = world(1, { nrAsids: 16, maxSevAsid: 4, minSevAsid: 3 });
    const m = w.load('kvm0');
    const a = createVm(m);
    a.memEncryptOp(sevCmd(KVM_SEV_INIT), false);
    a.destroy();
    const b = createVm(m);
    b.memEncryptOp(sevCmd(KVM_SEV_INIT), false);
    expect(b.sevAsid).toBe(4);
    expect(w.hw.snapshot().dfFlushes).toBe(0);
  });

  it('answers ENOTTY when SEV is off in the module or missing in the hardware', () => {
    expect(errno(() => createVm(world(1).load('kvm0', { sev: false })).memEncryptOp(sevCmd(KVM_SEV_INIT), false))).toBe('ENOTTY');
    expect(errno(() => createVm(world(1, { sev: false }).load('kvm0')).memEncryptOp(sevCmd(KVM_SEV_INIT), false))).toBe('ENOTTY');
    // SEV on, SEV-ES off: only KVM_SEV_ES_INIT is ENOTTY.
    const m = world(1).load('kvm0', { sev_es: false });
    expect(errno(() => createVm(m).memEncryptOp(sevCmd(KVM_SEV_ES_INIT), false))).toBe('ENOTTY');
    expect(createVm(m).memEncryptOp(sevCmd(KVM_SEV_INIT), false)).toBe(0);
    // With SEV off, even an unknown command is ENOTTY (the sev_enabled test comes first).
    expect(errno(() => createVm(world(1).load('kvm0', { sev: false })).memEncryptOp(sevCmd(99), false))).toBe('ENOTTY');
  });

  it('answers EINVAL with vCPUs, for an SEV guest, and for commands that are not modelled', () => {
    const w = world(1);
    const m = w.load('kvm0');
    const vm = createVm(m);
    expect(errno(() => vm.memEncryptOp(sevCmd(KVM_SEV_INIT), true))).toBe('EINVAL');
    expect(errno(() => vm.memEncryptOp(sevCmd(KVM_SEV_LAUNCH_START), false))).toBe('EINVAL');
    expect(vm.encryption).toBe('none');
    vm.memEncryptOp(sevCmd(KVM_SEV_INIT), false);
    expect(errno(() => vm.memEncryptOp(sevCmd(KVM_SEV_INIT), false))).toBe('EINVAL');
    expect(errno(() => vm.memEncryptOp(sevCmd(KVM_SEV_ES_INIT), false))).toBe('EINVAL');
    expect(w.vac.tryResource(SEV_ASIDS)?.state()?.inUse).toHaveLength(1);
  });
});

describe('free and destroy leave VAC empty', () => {
  it('releases ASIDs, SEV ASIDs, VMCBs and the user-return slot of two modules', () => {
    const w = world(2);
    const mods = [w.load('kvm0'), w.load('kvm1')];
    const vms: SvmVm[] = [];
    const vcpus: SvmVcpu[] = [];
    for (const m of mods) {
      const plain = createVm(m);
      const sev = createVm(m);
      sev.memEncryptOp(sevCmd(KVM_SEV_INIT), false);
      vms.push(plain, sev);
      for (const vm of [plain, sev]) {
        for (let i = 0; i < 2; i++) {
          const v = createVcpu(m, vm, i);
          run(v, i);
          vcpus.push(v);
        }
      }
    }
    expect(w.hw.svm.vmcbs()).toHaveLength(8);
    expect(checkInvariants(w.host)).toEqual([]);
    // A module cannot leave VAC while its vCPUs hold ASIDs.
    expect(errno(() => mods[0]?.handle.detach())).toBe('EBUSY');

    for (const v of vcpus) v.free();
    for (const vm of vms) vm.destroy();
    expect(w.hw.svm.vmcbs()).toEqual([]);
    expect(w.vac.tryResource(ASIDS)?.cpuState(0)?.holders).toEqual([]);
    expect(w.vac.tryResource(ASIDS)?.cpuState(1)?.holders).toEqual([]);
    expect(w.vac.tryResource(SEV_ASIDS)?.state()?.inUse).toEqual([]);
    for (const m of mods) {
      m.svm.teardown();
      m.handle.disableVirtualization();
      m.handle.detach();
    }
    expect(w.vac.instances()).toEqual([]);
    expect(w.vac.usageCount).toBe(0);
    expect(w.vac.userReturnSlots()).toEqual([]);
    expect(checkInvariants(w.host)).toEqual([]);
  });
});
