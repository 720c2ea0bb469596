/**
 * Fault injection (issue 6): every operation that meets a fault fails with Linux's errno and leaves the host
 * exactly as it was — or, where Linux goes on with a warning (resume), goes on and records the warning.
 *
 * Faults: VMXON / EFER.SVME failing on CPU n (once, always) at module load (enable_virt_at_load=1), at
 * KVM_CREATE_VM (enable_virt_at_load=0), at cpuUp and at resume; `failNth` of every allocation site;
 * `failModuleInit` at every init step of vac and of a KVM module; a foreign hypervisor taking VMX/SVM on a
 * CPU between operations.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { O_RDWR, checkInvariants, vacImage, type FaultMode, type Host } from '@vac/core';
import { kvmInstance, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_RUN, kvm, type KvmInstance } from '../../src/index.js';
import { GUESTS, VENDORS, expectFails, makeHost, readyVm, setupVcpu, tally, vacIn } from './support.js';
import { VPIDS } from '@vac/vmx';

const kvm0 = kvm({ postfix: '0' });
const kvm1 = kvm({ postfix: '1' });
const CPUS = 4;
const MODES: FaultMode[] = ['once', 'always'];

afterAll(() => {
  console.log(`[faults] ${tally.faults} injected faults checked`);
});

function vmmOf(host: Host) {
  return host.spawn({ uid: 1000, groups: ['kvm'] });
}

describe.each(VENDORS)('faults on $name', (vendor) => {
  describe.each(MODES)('VMXON / SVME failing (%s)', (mode) => {
    test.each([0, 1, 2, 3])('on CPU %i at module load (enable_virt_at_load=1): EBUSY, host unchanged', (cpu) => {
      const host = makeHost(vendor, CPUS);
      host.modprobe('vac');
      host.insmod(kvm1, { enable_virt_at_load: 0 });
      host.hardware.injectEnableFault(cpu, mode);
      const w = host.warnings.length;
      expectFails(host, () => host.insmod(kvm0), 'EBUSY', `insmod with a ${mode} fault on CPU ${cpu}`);
      tally.faults++;
      expect(host.warnings.slice(w).map((x) => x.message)).toContain(`kvm: enabling virtualization on CPU${cpu} failed`);
      if (mode === 'always') {
        expectFails(host, () => host.insmod(kvm0), 'EBUSY', 'again');
        host.hardware.injectEnableFault(cpu, 'off');
      }
      host.insmod(kvm0);
      expect(vacIn(host).usageCount).toBe(1);
      expect(vacIn(host).cpus().every((c) => c.enabled)).toBe(true);
      expect(checkInvariants(host)).toEqual([]);
    });

    test.each([0, 1, 2, 3])('on CPU %i at KVM_CREATE_VM (enable_virt_at_load=0): EBUSY, host unchanged', (cpu) => {
      const host = makeHost(vendor, CPUS);
      host.modprobe(kvm0, { enable_virt_at_load: 0 });
      const p = vmmOf(host);
      const sys = p.open('/dev/kvm0', O_RDWR);
      host.hardware.injectEnableFault(cpu, mode);
      expectFails(host, () => p.ioctl(sys, KVM_CREATE_VM, 0), 'EBUSY', `KVM_CREATE_VM with a ${mode} fault on CPU ${cpu}`);
      tally.faults++;
      if (mode === 'always') host.hardware.injectEnableFault(cpu, 'off');
      const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
      expect(vm).toBeGreaterThan(0);
      expect(vacIn(host).usageCount).toBe(1);
      expect(checkInvariants(host)).toEqual([]);
    });

    test.each([1, 2, 3])('on CPU %i at cpuUp: EIO, the CPU stays offline, host unchanged', (cpu) => {
      const host = makeHost(vendor, CPUS);
      host.modprobe(kvm0);
      host.cpuDown(cpu);
      host.hardware.injectEnableFault(cpu, mode);
      expectFails(host, () => host.cpuUp(cpu), 'EIO', `cpuUp with a ${mode} fault`);
      tally.faults++;
      expect(host.cpus[cpu]?.online).toBe(false);
      if (mode === 'always') host.hardware.injectEnableFault(cpu, 'off');
      host.cpuUp(cpu);
      expect(vacIn(host).cpu(cpu).enabled).toBe(true);
      expect(checkInvariants(host)).toEqual([]);
    });

    test.each([1, 2, 3])('on CPU %i at resume: a warning, the CPU stays offline, resume goes on', (cpu) => {
      const host = makeHost(vendor, CPUS);
      host.modprobe(kvm0);
      host.suspend();
      host.hardware.injectEnableFault(cpu, mode);
      const w = host.warnings.length;
      host.resume();
      tally.faults++;
      expect(host.systemState).toBe('running');
      expect(host.warnings.slice(w).map((x) => x.message)).toContain(`Error taking CPU${cpu} up: -5`);
      expect(host.cpus.map((c) => c.online)).toEqual([0, 1, 2, 3].map((c) => c !== cpu));
      expect(checkInvariants(host)).toEqual([]);
      host.hardware.injectEnableFault(cpu, 'off');
      host.cpuUp(cpu);
      expect(checkInvariants(host)).toEqual([]);
    });

    test('on CPU 0 at resume: "kvm_resume" warning, resume goes on (CPU 0 stays disabled until the count drops to 0)', () => {
      const host = makeHost(vendor, CPUS);
      host.modprobe(kvm0, { enable_virt_at_load: 0 });
      const p = vmmOf(host);
      readyVm(p, '/dev/kvm0', GUESTS.hlt, 1);
      host.suspend();
      host.hardware.injectEnableFault(0, mode);
      const w = host.warnings.length;
      host.resume();
      tally.faults++;
      expect(host.systemState).toBe('running');
      expect(host.warnings.slice(w).map((x) => x.message)).toContain('kvm_resume: re-enabling virtualization on CPU0 failed');
      expect(host.cpus.every((c) => c.online)).toBe(true);
      // Linux's kvm_resume only WARNs: CPU 0 stays disabled while the usage count is 1. The checker reports
      // exactly that (invariant 1 on CPU 0), nothing else.
      const v = checkInvariants(host);
      expect(v.every((x) => x.invariant === 1 && x.cpu === 0)).toBe(true);
      expect(vacIn(host).cpu(0).enabled).toBe(false);
      host.hardware.injectEnableFault(0, 'off');
      // The VM goes away: count 1→0, every CPU disabled, then a new VM enables every CPU again.
      p.kill();
      expect(vacIn(host).usageCount).toBe(0);
      expect(checkInvariants(host)).toEqual([]);
      const q = vmmOf(host);
      const t2 = readyVm(q, '/dev/kvm0', GUESTS.hlt, 1);
      expect(vacIn(host).cpus().every((c) => c.enabled)).toBe(true);
      expect(q.ioctl(t2.vcpus[0] as number, KVM_RUN, 0)).toBe(0);
      expect(checkInvariants(host)).toEqual([]);
    });
  });

  test('a once-fault is spent by a failed 0→1 enable; the next one succeeds', () => {
    const host = makeHost(vendor, CPUS);
    host.modprobe('vac');
    for (let c = 0; c < CPUS; c++) host.hardware.injectEnableFault(c, 'once');
    expectFails(host, () => host.insmod(kvm0), 'EBUSY', 'all CPUs fault once');
    tally.faults += CPUS;
    host.insmod(kvm0);
    expect(checkInvariants(host)).toEqual([]);
  });

  describe('failNth of every allocation site', () => {
    test.each([1, 2, 3])("'vm' #%i: KVM_CREATE_VM is ENOMEM and leaves nothing", (n) => {
      for (const evalAtLoad of [0, 1]) {
        const host = makeHost(vendor, CPUS);
        host.modprobe(kvm0, { enable_virt_at_load: evalAtLoad });
        const p = vmmOf(host);
        const sys = p.open('/dev/kvm0', O_RDWR);
        host.faults.failNth('vm', n);
        for (let i = 1; i < n; i++) p.ioctl(sys, KVM_CREATE_VM, 0);
        expectFails(host, () => p.ioctl(sys, KVM_CREATE_VM, 0), 'ENOMEM', `vm #${n}`);
        tally.faults++;
        expect(p.ioctl(sys, KVM_CREATE_VM, 0)).toBeGreaterThan(0);
        expect(host.faults.fired.at(-1)).toEqual({ site: 'vm', call: n });
      }
    });

    test.each([1, 2, 3])("'vcpu' #%i: KVM_CREATE_VCPU is ENOMEM and leaves nothing", (n) => {
      const host = makeHost(vendor, CPUS);
      host.modprobe(kvm0);
      const p = vmmOf(host);
      const sys = p.open('/dev/kvm0', O_RDWR);
      const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
      host.faults.failNth('vcpu', n);
      for (let i = 1; i < n; i++) p.ioctl(vm, KVM_CREATE_VCPU, i);
      expectFails(host, () => p.ioctl(vm, KVM_CREATE_VCPU, 0), 'ENOMEM', `vcpu #${n}`);
      tally.faults++;
      expect(p.ioctl(vm, KVM_CREATE_VCPU, 0)).toBeGreaterThan(0);
    });

    test.each([1, 2, 3])("'fd' #%i: the VM or vCPU whose fd could not be installed is gone again", (n) => {
      for (const evalAtLoad of [0, 1]) {
        const host = makeHost(vendor, CPUS);
        host.modprobe(kvm0, { enable_virt_at_load: evalAtLoad });
        const p = vmmOf(host);
        const sys = p.open('/dev/kvm0', O_RDWR);
        // VM fd
        host.faults.failNth('fd', n);
        for (let i = 1; i < n; i++) p.ioctl(sys, KVM_CREATE_VM, 0);
        expectFails(host, () => p.ioctl(sys, KVM_CREATE_VM, 0), 'ENOMEM', `vm fd #${n}`);
        tally.faults++;
        // vCPU fd (VPID / ASID state given back)
        const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
        host.faults.failNth('fd', n);
        for (let i = 1; i < n; i++) p.ioctl(vm, KVM_CREATE_VCPU, 10 + i);
        expectFails(host, () => p.ioctl(vm, KVM_CREATE_VCPU, 0), 'ENOMEM', `vcpu fd #${n}`);
        tally.faults++;
        expect(p.ioctl(vm, KVM_CREATE_VCPU, 0)).toBeGreaterThan(0);
        expect(checkInvariants(host)).toEqual([]);
      }
    });

    test.each([1, 2])("'mmap' #%i: mmap of a vCPU fd and anonymous mmap are ENOMEM, nothing mapped", (n) => {
      const host = makeHost(vendor, CPUS);
      host.modprobe(kvm0);
      const p = vmmOf(host);
      const t = readyVm(p, '/dev/kvm0', GUESTS.hlt, 1);
      const fd = t.vcpus[0] as number;
      host.faults.failNth('mmap', n);
      for (let i = 1; i < n; i++) p.mmap(fd, 12288);
      expectFails(host, () => p.mmap(fd, 12288), 'ENOMEM', 'vcpu mmap');
      host.faults.failNth('mmap', 1);
      expectFails(host, () => p.mmapAnonymous(0x1000), 'ENOMEM', 'anonymous mmap');
      tally.faults += 2;
      expect(p.mmap(fd, 12288).length).toBe(12288);
    });

    if (vendor.name === 'intel') {
      test.each([1, 2, 3])("'vpid' #%i: no error — the vCPU runs without a VPID (flushes its TLB on every entry)", (n) => {
        const host = makeHost(vendor, CPUS);
        host.modprobe(kvm0);
        const p = vmmOf(host);
        const t = readyVm(p, '/dev/kvm0', GUESTS.hlt, 0);
        host.faults.failNth('vpid', n);
        const fds: number[] = [];
        for (let i = 0; i < 4; i++) {
          const fd = p.ioctl(t.vm, KVM_CREATE_VCPU, i);
          setupVcpu(p, fd);
          fds.push(fd);
        }
        tally.faults++;
        const vac = vacIn(host);
        expect(vac.tryResource(VPIDS)?.exhaustions).toBe(1);
        expect((vac.tryResource(VPIDS)?.holders() ?? []).map((h) => h.holder)).not.toContain(`kvm0/vm1/vcpu${n - 1}`);
        expect((vac.tryResource(VPIDS)?.holders() ?? [])).toHaveLength(3);
        for (const fd of fds) {
          expect(p.ioctl(fd, KVM_RUN, 0)).toBe(0);
        }
        const inst = kvmInstance(host, 'kvm0');
        const flushes = [...inst.allVcpus()].map((v) => (v.vendor.stats as Record<string, number>)['tlbFlushVpid0Entry'] ?? 0);
        expect(flushes).toEqual([0, 1, 2, 3].map((i) => (i === n - 1 ? 1 : 0)));
        expect(checkInvariants(host)).toEqual([]);
      });
    }
  });

  describe('failModuleInit at every step', () => {
    test('vac: every one of its 10 init steps fails with ENOMEM and leaves the host as before', () => {
      const host = makeHost(vendor, CPUS);
      let step = 1;
      for (;; step++) {
        host.faults.failModuleInit('vac', step);
        const fired = host.faults.fired.length;
        try {
          host.insmod(vacImage);
        } catch {
          /* checked below */
        }
        if (host.faults.fired.length === fired) break;
      }
      host.faults.clear();
      host.rmmod('vac');
      expect(step - 1).toBe(10);
      for (let k = 1; k <= 10; k++) {
        host.faults.failModuleInit('vac', k);
        expectFails(host, () => host.insmod(vacImage), 'ENOMEM', `vac step ${k}`);
        tally.faults++;
      }
      host.insmod(vacImage);
      expect(checkInvariants(host)).toEqual([]);
    });

    test.each([
      { evalAtLoad: 1, steps: 7, others: 'none' },
      { evalAtLoad: 0, steps: 6, others: 'none' },
      { evalAtLoad: 1, steps: 7, others: 'kvm1 with a VM' },
      { evalAtLoad: 0, steps: 6, others: 'kvm1 with a VM' },
    ])('kvm0 (enable_virt_at_load=$evalAtLoad, other modules: $others): each of its $steps steps', ({ evalAtLoad, steps, others }) => {
      const host = makeHost(vendor, CPUS);
      host.modprobe('vac');
      if (others !== 'none') {
        host.insmod(kvm1, { enable_virt_at_load: 0 });
        readyVm(vmmOf(host), '/dev/kvm1', GUESTS.hlt, 2);
      }
      // Count the steps: the first k whose fault never fires is one past the last step.
      let n = 0;
      for (let k = 1; k < 20; k++) {
        host.faults.failModuleInit('kvm0', k);
        const fired = host.faults.fired.length;
        try {
          host.insmod(kvm0, { enable_virt_at_load: evalAtLoad });
        } catch {
          /* counted */
        }
        if (host.faults.fired.length === fired) {
          host.faults.clear();
          host.rmmod('kvm0');
          break;
        }
        n = k;
      }
      expect(n).toBe(steps);
      for (let k = 1; k <= steps; k++) {
        host.faults.failModuleInit('kvm0', k);
        expectFails(host, () => host.insmod(kvm0, { enable_virt_at_load: evalAtLoad }), 'ENOMEM', `kvm0 step ${k}`);
        tally.faults++;
      }
      // modprobe pulling vac in: vac is unloaded again when kvm0's init fails.
      if (others === 'none') {
        host.rmmod('vac');
        for (let k = 1; k <= steps; k++) {
          host.faults.failModuleInit('kvm0', k);
          expectFails(host, () => host.modprobe(kvm0, { enable_virt_at_load: evalAtLoad }), 'ENOMEM', `modprobe kvm0 step ${k}`);
          tally.faults++;
        }
      }
      host.modprobe(kvm0, { enable_virt_at_load: evalAtLoad });
      expect(checkInvariants(host)).toEqual([]);
    });
  });

  describe('a foreign hypervisor takes VMX/SVM on a CPU between operations', () => {
    test.each([0, 1, 2, 3])('CPU %i: module load, KVM_CREATE_VM, cpuUp and resume refuse; release → all work', (cpu) => {
      const host = makeHost(vendor, CPUS);
      host.modprobe('vac');
      host.hardware.setForeignOwner(cpu, true);
      expectFails(host, () => host.insmod(kvm0), 'EBUSY', 'insmod with a foreign owner');
      host.insmod(kvm0, { enable_virt_at_load: 0 });
      const p = vmmOf(host);
      const sys = p.open('/dev/kvm0', O_RDWR);
      expectFails(host, () => p.ioctl(sys, KVM_CREATE_VM, 0), 'EBUSY', 'KVM_CREATE_VM with a foreign owner');
      tally.faults += 2;
      host.hardware.setForeignOwner(cpu, false);
      const t = readyVm(p, '/dev/kvm0', GUESTS.hlt, 1);
      expect(p.ioctl(t.vcpus[0] as number, KVM_RUN, 0)).toBe(0);
      if (cpu !== 0) {
        host.cpuDown(cpu);
        host.hardware.setForeignOwner(cpu, true);
        expectFails(host, () => host.cpuUp(cpu), 'EIO', 'cpuUp onto a foreign-owned CPU');
        tally.faults++;
        host.suspend();
        const w = host.warnings.length;
        host.resume();
        expect(host.warnings.slice(w).map((x) => x.message)).toEqual([]);
        expect(host.cpus[cpu]?.online).toBe(false);
        host.hardware.setForeignOwner(cpu, false);
        host.cpuUp(cpu);
        // a CPU that was online at suspend and is foreign-owned at resume stays offline with a warning
        host.suspend();
        host.hardware.setForeignOwner(cpu, true);
        const w2 = host.warnings.length;
        host.resume();
        tally.faults++;
        expect(host.warnings.slice(w2).map((x) => x.message)).toContain(`Error taking CPU${cpu} up: -5`);
        expect(host.cpus[cpu]?.online).toBe(false);
      }
      expect(checkInvariants(host)).toEqual([]);
      const run = p.ioctl(t.vcpus[0] as number, KVM_RUN, 0);
      expect(run).toBe(0);
      expect(checkInvariants(host)).toEqual([]);
    });
  });
});
