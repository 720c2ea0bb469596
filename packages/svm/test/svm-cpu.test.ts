import { describe, expect, test } from 'vitest';
import { UsageError } from '@vac/core';
import {
  EFER_SVME,
  MSR_EFER,
  MSR_VM_CR,
  MSR_VM_HSAVE_PA,
  SVM_EXIT,
  TLB_CONTROL_DO_NOTHING,
  TLB_CONTROL_FLUSH_ALL_ASID,
  TLB_CONTROL_FLUSH_ASID,
  TLB_CONTROL_FLUSH_ASID_LOCAL,
  VMCB_AREA_BASE,
  VMCB_CLEAN_AFTER_RUN,
  Vmcb,
} from '../src/index.js';
import type { AmdOptions } from '../src/index.js';
import { makeHost, record } from './helpers.js';

/** A host with SVM enabled by VAC on every CPU. */
function enabledHost(n: number, options?: AmdOptions) {
  const host = makeHost(n, options);
  for (let i = 0; i < n; i++) expect(host.hw.virt.enableCpu(i)).toBeUndefined();
  return host;
}

describe('STGI / CLGI', () => {
  test('#UD with EFER.SVME clear; nothing changes', () => {
    const { hw } = makeHost(1);
    const before = hw.snapshot();
    expect(hw.svm.stgi(0)).toBe('#UD');
    expect(hw.svm.clgi(0)).toBe('#UD');
    expect(hw.snapshot()).toEqual(before);
  });

  test('CLGI clears GIF, STGI sets it; counted', () => {
    const { hw } = enabledHost(2);
    expect(hw.cpu(1).gif).toBe(true);
    expect(hw.svm.clgi(1)).toBeUndefined();
    expect(hw.cpu(1).gif).toBe(false);
    expect(hw.cpu(0).gif).toBe(true);
    expect(hw.svm.stgi(1)).toBeUndefined();
    expect(hw.cpu(1).gif).toBe(true);
    expect(hw.counters(1)).toMatchObject({ clgi: 1, stgi: 1 });
    expect(hw.counters(0)).toMatchObject({ clgi: 0, stgi: 0 });
  });
});

describe('VMCBs', () => {
  test('allocVmcb: ids, page-aligned addresses, owner tag, zeroed fields', () => {
    const { hw } = makeHost(1);
    const a = hw.svm.allocVmcb('kvm0');
    const b = hw.svm.allocVmcb('kvm1');
    expect([a.id, b.id]).toEqual([0, 1]);
    expect(b.pa).toBe(VMCB_AREA_BASE + 0x1000n);
    expect(b.owner).toBe('kvm1');
    expect(a).toMatchObject({ asid: 0, tlbControl: 0, clean: 0, asidGeneration: 0, lastCpu: -1, runningOn: -1 });
    expect(a.sev).toBe('none');
    expect(hw.svm.vmcbs()).toEqual([a, b]);
  });

  test('freeVmcb forgets it as a current VMCB everywhere (svm_clear_current_vmcb)', () => {
    const { hw } = enabledHost(2);
    const v = hw.svm.allocVmcb('kvm0');
    v.asid = 1;
    hw.svm.vmrun(0, v);
    hw.svm.vmexit(0, SVM_EXIT.HLT);
    hw.svm.vmrun(1, v);
    hw.svm.vmexit(1, SVM_EXIT.HLT);
    expect(hw.cpu(0).currentVmcb).toBe(v);
    expect(hw.cpu(1).currentVmcb).toBe(v);
    hw.svm.freeVmcb(v);
    expect(v.freed).toBe(true);
    expect(hw.cpu(0).currentVmcb).toBeUndefined();
    expect(hw.cpu(1).currentVmcb).toBeUndefined();
    expect(() => hw.svm.vmrun(0, v)).toThrow('svm.vmrun: VMCB 0 was freed');
    expect(() => hw.svm.freeVmcb(v)).toThrow(UsageError);
  });

  test("another host's VMCB, or a hand-made one, is refused", () => {
    const { hw } = enabledHost(1);
    const other = enabledHost(1).hw.svm.allocVmcb('kvm0');
    other.asid = 1;
    expect(() => hw.svm.vmrun(0, other)).toThrow('svm.vmrun: VMCB 0 does not belong to this host');
    expect(() => hw.svm.vmrun(0, new Vmcb(0, 0n, 'x'))).toThrow(UsageError);
  });
});

describe('VMRUN', () => {
  test('EFER.SVME clear → #UD, nothing changes', () => {
    const { hw } = makeHost(1);
    const v = hw.svm.allocVmcb('kvm0');
    v.asid = 1;
    v.tlbControl = TLB_CONTROL_FLUSH_ALL_ASID;
    const before = hw.snapshot();
    expect(hw.svm.vmrun(0, v)).toBe('#UD');
    expect(hw.snapshot()).toEqual(before);
    expect(v.tlbControl).toBe(TLB_CONTROL_FLUSH_ALL_ASID);
  });

  test('ASID 0 → VMEXIT_INVALID: exit code -1, no flush, tlb_ctl reset, not in guest mode', () => {
    const { hw } = enabledHost(1);
    const v = hw.svm.allocVmcb('kvm0');
    v.tlbControl = TLB_CONTROL_FLUSH_ALL_ASID;
    expect(hw.svm.vmrun(0, v)).toBe('VMEXIT_INVALID');
    expect(v.exitCode).toBe(-1);
    expect(v.exitCode).toBe(SVM_EXIT.ERR);
    expect(v.tlbControl).toBe(TLB_CONTROL_DO_NOTHING);
    expect(hw.cpu(0).inGuest).toBe(false);
    expect(hw.counters(0)).toMatchObject({ vmrun: 0, vmexitInvalid: 1, tlbFlushAll: 0 });
  });

  test('VM_HSAVE_PA 0 → VMEXIT_INVALID', () => {
    const { env, hw } = enabledHost(1);
    expect(env.cpus[0]!.wrmsrSafe(MSR_VM_HSAVE_PA, 0n)).toBe(true);
    const v = hw.svm.allocVmcb('kvm0');
    v.asid = 1;
    expect(hw.svm.vmrun(0, v)).toBe('VMEXIT_INVALID');
  });

  test('entry and #VMEXIT: GIF, guest mode, current VMCB; KVM resets tlb_ctl and marks the VMCB clean', () => {
    const { hw } = enabledHost(2);
    const v = hw.svm.allocVmcb('kvm0');
    v.asid = 5;
    hw.svm.clgi(1); // as svm_vcpu_run does before entering
    expect(hw.svm.vmrun(1, v)).toBe('entered');
    expect(hw.cpu(1)).toMatchObject({ gif: true, inGuest: true, currentVmcb: v });
    expect(v.runningOn).toBe(1);
    expect(v.lastCpu).toBe(-1); // KVM's bookkeeping, untouched
    expect(hw.svm.vmexit(1, SVM_EXIT.IOIO)).toBe(v);
    expect(hw.cpu(1)).toMatchObject({ gif: false, inGuest: false, currentVmcb: v });
    expect(v).toMatchObject({ exitCode: 0x7b, runningOn: -1, tlbControl: 0, clean: VMCB_CLEAN_AFTER_RUN });
    expect(VMCB_CLEAN_AFTER_RUN).toBe(0x80000df7);
    hw.svm.stgi(1);
    expect(hw.counters(1)).toMatchObject({ vmrun: 1, vmexit: 1, clgi: 1, stgi: 1 });
  });

  test('host instructions on a CPU in guest mode, a second VMRUN, and a VMCB running elsewhere are refused', () => {
    const { env, hw } = enabledHost(2);
    const v = hw.svm.allocVmcb('kvm0');
    const w = hw.svm.allocVmcb('kvm0');
    v.asid = 1;
    w.asid = 2;
    hw.svm.vmrun(0, v);
    expect(() => hw.svm.vmrun(0, w)).toThrow(
      'svm.vmrun: CPU 0 is in guest mode (VMCB 0); the host is not running there',
    );
    expect(() => hw.svm.stgi(0)).toThrow(UsageError);
    expect(() => hw.svm.vmrun(1, v)).toThrow('svm.vmrun: VMCB 0 is already in guest mode on CPU 0');
    expect(() => hw.svm.freeVmcb(v)).toThrow('svm.freeVmcb: VMCB 0 is in guest mode on CPU 0');
    expect(() => hw.svm.vmexit(1, SVM_EXIT.HLT)).toThrow('svm.vmexit: CPU 1 is not in guest mode');
    expect(() => env.cpus[0]!.wrmsrSafe(MSR_EFER, 0xd01n)).toThrow(UsageError);
    env.cpus[1]!.online = false;
    expect(() => hw.svm.vmrun(1, w)).toThrow('svm.vmrun: CPU 1 is offline');
    w.tlbControl = 2 as never;
    env.cpus[1]!.online = true;
    expect(() => hw.svm.vmrun(1, w)).toThrow('svm.vmrun: VMCB 1 has a reserved TLB_CONTROL encoding 2');
  });

  test('clgiVmrun / vmexitStgi: the same effects, counters and results as CLGI + VMRUN and #VMEXIT + STGI', () => {
    // Two hosts, one driven with the separate instructions and one with the fused calls, end in the same state.
    const a = enabledHost(2);
    const b = enabledHost(2);
    const va = a.hw.svm.allocVmcb('kvm0');
    const vb = b.hw.svm.allocVmcb('kvm0');
    for (const v of [va, vb]) {
      v.asid = 3;
      v.tlbControl = TLB_CONTROL_FLUSH_ALL_ASID;
    }
    expect(a.hw.svm.clgi(1)).toBeUndefined();
    expect(a.hw.svm.vmrun(1, va)).toBe('entered');
    expect(b.hw.svm.clgiVmrun(1, vb)).toBe('entered');
    expect(b.hw.cpu(1)).toEqual(a.hw.cpu(1));
    expect(b.hw.cpu(1)).toMatchObject({ gif: true, inGuest: true, currentVmcb: vb });
    a.hw.svm.vmexit(1, SVM_EXIT.IOIO);
    expect(a.hw.svm.stgi(1)).toBeUndefined();
    expect(b.hw.svm.vmexitStgi(1, SVM_EXIT.IOIO, vb)).toBeUndefined();
    expect(vb).toEqual(va);
    expect(vb).toMatchObject({ exitCode: 0x7b, runningOn: -1, tlbControl: 0, clean: VMCB_CLEAN_AFTER_RUN });
    expect(b.hw.snapshot()).toEqual(a.hw.snapshot());
    expect(b.hw.counters(1)).toMatchObject({ clgi: 1, vmrun: 1, tlbFlushAll: 1, vmexit: 1, stgi: 1 });
    // A CPU forced out of guest mode already: STGI alone.
    expect(b.hw.svm.clgiVmrun(0, vb)).toBe('entered');
    expect(b.hw.svm.forceVmexit(0, SVM_EXIT.INTR)).toBe(vb);
    expect(b.hw.svm.vmexitStgi(0, SVM_EXIT.IOIO, vb)).toBeUndefined();
    expect(vb.exitCode).toBe(SVM_EXIT.INTR);
    expect(b.hw.cpu(0)).toMatchObject({ gif: true, inGuest: false });
    expect(b.hw.counters(0)).toMatchObject({ clgi: 1, vmrun: 1, vmexit: 1, stgi: 1 });
  });

  test('clgiVmrun: #UD with EFER.SVME clear (GIF untouched); a usage error of VMRUN sets GIF again first', () => {
    const { hw } = makeHost(1);
    const v = hw.svm.allocVmcb('kvm0');
    v.asid = 1;
    const before = hw.snapshot();
    expect(hw.svm.clgiVmrun(0, v)).toBe('#UD');
    expect(hw.svm.vmexitStgi(0, SVM_EXIT.INTR, v)).toBe('#UD');
    expect(hw.snapshot()).toEqual(before);
    const on = enabledHost(2);
    const w = on.hw.svm.allocVmcb('kvm0');
    w.asid = 1;
    expect(on.hw.svm.clgiVmrun(0, w)).toBe('entered');
    expect(() => on.hw.svm.clgiVmrun(1, w)).toThrow('svm.vmrun: VMCB 0 is already in guest mode on CPU 0');
    expect(on.hw.cpu(1).gif).toBe(true);
    expect(on.hw.counters(1)).toMatchObject({ clgi: 1, stgi: 1, vmrun: 0 });
    expect(() => on.hw.svm.clgiVmrun(0, w)).toThrow('svm.clgi: CPU 0 is in guest mode (VMCB 0); the host is not running there');
    expect(on.hw.counters(0)).toMatchObject({ clgi: 1, stgi: 0, vmrun: 1 });
  });

  test('forceVmexit is a no-op outside guest mode', () => {
    const { hw } = enabledHost(1);
    expect(hw.svm.forceVmexit(0, SVM_EXIT.INTR)).toBeUndefined();
  });
});

describe('TLB flushes requested by TLB_CONTROL', () => {
  /** Run `v` once on `cpu` with `tlb` and exit. */
  function runWith(hw: ReturnType<typeof enabledHost>['hw'], cpu: number, v: Vmcb, tlb: Vmcb['tlbControl']) {
    v.tlbControl = tlb;
    expect(hw.svm.vmrun(cpu, v)).toBe('entered');
    hw.svm.vmexit(cpu, SVM_EXIT.HLT);
    expect(v.tlbControl).toBe(TLB_CONTROL_DO_NOTHING);
  }

  test('counted by kind and CPU, with a tlb:flush event naming the owner', () => {
    const { env, hw } = enabledHost(2);
    const events = record(env);
    const v = hw.svm.allocVmcb('kvm3');
    v.asid = 9;
    runWith(hw, 0, v, TLB_CONTROL_DO_NOTHING);
    runWith(hw, 0, v, TLB_CONTROL_FLUSH_ALL_ASID);
    runWith(hw, 0, v, TLB_CONTROL_FLUSH_ASID);
    runWith(hw, 0, v, TLB_CONTROL_FLUSH_ASID);
    runWith(hw, 1, v, TLB_CONTROL_FLUSH_ASID_LOCAL);
    expect(hw.counters(0)).toMatchObject({ vmrun: 4, tlbFlushAll: 1, tlbFlushAsid: 2, tlbFlushAsidLocal: 0 });
    expect(hw.counters(1)).toMatchObject({ vmrun: 1, tlbFlushAll: 0, tlbFlushAsid: 0, tlbFlushAsidLocal: 1 });
    expect(events.map(([, e]) => e)).toEqual([
      // seq 0 and 1 were the two virt:enable events
      { seq: 2, tick: 0, cpu: 0, kind: 'all-asid', module: 'kvm3' },
      { seq: 3, tick: 0, cpu: 0, kind: 'asid', module: 'kvm3' },
      { seq: 4, tick: 0, cpu: 0, kind: 'asid', module: 'kvm3' },
      { seq: 5, tick: 0, cpu: 1, kind: 'asid-local', module: 'kvm3' },
    ]);
  });

  test('without FlushByAsid, encodings 3 and 7 flush everything', () => {
    const { hw } = enabledHost(1, { flushByAsid: false });
    const v = hw.svm.allocVmcb('kvm0');
    v.asid = 1;
    runWith(hw, 0, v, TLB_CONTROL_FLUSH_ASID);
    runWith(hw, 0, v, TLB_CONTROL_FLUSH_ASID_LOCAL);
    expect(hw.counters(0)).toMatchObject({ tlbFlushAll: 2, tlbFlushAsid: 0, tlbFlushAsidLocal: 0 });
  });

  test('the event clock advances even with nobody listening', () => {
    const { env, hw } = enabledHost(1);
    const seq = env.events.seq;
    const v = hw.svm.allocVmcb('kvm0');
    v.asid = 1;
    runWith(hw, 0, v, TLB_CONTROL_FLUSH_ALL_ASID);
    expect(env.events.seq).toBe(seq + 1);
  });
});

describe('SEV ASID checks on VMRUN', () => {
  test('SEV in [min, max], SEV-ES in [1, min - 1]', () => {
    const { hw } = enabledHost(1); // SEV 100 … 509, SEV-ES 1 … 99
    const v = hw.svm.allocVmcb('kvm0');
    const attempt = (sev: Vmcb['sev'], asid: number) => {
      v.sev = sev;
      v.asid = asid;
      const r = hw.svm.vmrun(0, v);
      if (r === 'entered') hw.svm.vmexit(0, SVM_EXIT.HLT);
      return r;
    };
    expect(attempt('sev', 100)).toBe('entered');
    expect(attempt('sev', 509)).toBe('entered');
    expect(attempt('sev', 99)).toBe('VMEXIT_INVALID');
    expect(attempt('sev', 510)).toBe('VMEXIT_INVALID');
    expect(attempt('sev-es', 1)).toBe('entered');
    expect(attempt('sev-es', 99)).toBe('entered');
    expect(attempt('sev-es', 100)).toBe('VMEXIT_INVALID');
    expect(attempt('none', 600)).toBe('entered');
  });

  test('a SEV VMCB on a host without SEV', () => {
    const { hw } = enabledHost(1, { sev: false });
    const v = hw.svm.allocVmcb('kvm0');
    v.sev = 'sev';
    v.asid = 1;
    expect(hw.svm.vmrun(0, v)).toBe('VMEXIT_INVALID');
  });
});

describe('WBINVD', () => {
  test('counted per CPU', () => {
    const { hw } = makeHost(2);
    hw.svm.wbinvd(1);
    hw.svm.wbinvd(1);
    expect(hw.counters(1).wbinvd).toBe(2);
    expect(hw.counters(0).wbinvd).toBe(0);
  });
});

describe('architectural MSR rules (write hooks)', () => {
  test('EFER.SVME is must-be-zero with VM_CR.SVMDIS or without SVM in CPUID (#GP)', () => {
    const { env, hw } = makeHost(2, { cpus: { 0: { svmDisabledByBios: true }, 1: { svm: false } } });
    for (const i of [0, 1]) {
      expect(env.cpus[i]!.wrmsrSafe(MSR_EFER, 0xd01n | EFER_SVME)).toBe(false);
      expect(hw.cpu(i).svme).toBe(false);
    }
  });

  test('VM_CR: LOCK protects SVMDIS; reserved bits fault; unlocked SVMDIS can be set while SVME is clear only', () => {
    const { env, hw } = makeHost(2, { cpus: { 0: { svmDisabledByBios: true } } });
    const c0 = env.cpus[0]!;
    expect(c0.wrmsrSafe(MSR_VM_CR, 0x08n)).toBe(false); // clear SVMDIS under LOCK
    expect(c0.wrmsrSafe(MSR_VM_CR, 0x19n)).toBe(true); // other bits are writable
    expect(c0.wrmsrSafe(MSR_VM_CR, 0x118n)).toBe(false); // reserved
    const c1 = env.cpus[1]!;
    expect(hw.virt.enableCpu(1)).toBeUndefined();
    expect(c1.wrmsrSafe(MSR_VM_CR, 0x10n)).toBe(false);
    hw.virt.disableCpu(1);
    expect(c1.wrmsrSafe(MSR_VM_CR, 0x10n)).toBe(true);
    expect(hw.virt.unsupported(1)).toBe('SVM disabled (by BIOS) in MSR_VM_CR on CPU 1');
    expect(hw.virt.enableCpu(1)).toBe('EIO');
  });

  test('VM_HSAVE_PA must be page aligned and below MAXPHYADDR (48 bits)', () => {
    const { env } = makeHost(1);
    const c = env.cpus[0]!;
    expect(c.wrmsrSafe(MSR_VM_HSAVE_PA, 0x1001n)).toBe(false);
    expect(c.wrmsrSafe(MSR_VM_HSAVE_PA, 1n << 48n)).toBe(false);
    expect(c.wrmsrSafe(MSR_VM_HSAVE_PA, (1n << 48n) - 0x1000n)).toBe(true);
  });
});
