/**
 * SMT siblings and trust domains: a CPU placement that keeps each core in one trust domain (CoreAllocator), the
 * static check of the vCPU threads' CPUs (checkSmtIsolation) and the dynamic one over vcpu:load (SmtMonitor).
 */
import { createHost, type Host, type Process } from '@vac/core';
import { kvm } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { CoreAllocator, GuestVmm, SmtMonitor, checkSmtIsolation, countingGuest, loadedModules, place, requireMitigations, trustDomainOf } from '../src/index.js';

/** 8 CPUs, 2 threads per core: CPU n and n + 4 are siblings. kvm0 does not flush L1D, kvm1 always does. */
function smtHost(): Host {
  const host = createHost({ cpus: 8, threadsPerCore: 2, hardware: intel() });
  host.modprobe(kvm({ postfix: '0' }), { vmentry_l1d_flush: 'never' });
  host.modprobe(kvm({ postfix: '1' }), { vmentry_l1d_flush: 'always' });
  return host;
}

describe('CoreAllocator', () => {
  test('a domain gets the free threads of its own cores first, then whole free cores; never a thread of another domain\'s core', () => {
    const host = smtHost();
    const a = new CoreAllocator(host);
    expect(a.allocate('trusted', 2)).toEqual([0, 4]); // core 0, both threads
    expect(a.allocate('untrusted', 1)).toEqual([1]); // core 1
    expect(a.allocate('trusted', 1)).toEqual([2]); // core 0 is full, core 1 is untrusted's: core 2
    expect(a.allocate('untrusted', 1)).toEqual([5]); // core 1's other thread
    expect(a.cores()).toEqual(['trusted', 'untrusted', 'trusted', undefined]);
    expect(a.allocate('tenant-b', 3)).toBeUndefined(); // only core 3 (2 threads) is free: nothing given
    expect(a.cores()).toEqual(['trusted', 'untrusted', 'trusted', undefined]);
    expect(a.allocate('trusted', 1)).toEqual([6]); // core 2's other thread
    a.release([1, 5]);
    expect(a.allocate('tenant-b', 3)).toEqual([1, 5, 3]);
    expect(() => a.allocate('x', 0)).toThrow(/positive integer/);
    expect(() => a.allocate('', 1)).toThrow(/non-empty/);
  });

  test('offline CPUs are not given', () => {
    const host = smtHost();
    host.cpuDown(4);
    expect(new CoreAllocator(host).allocate('trusted', 3)).toEqual([0, 1, 5]);
  });

  test('trustDomainOf: the VM\'s own domain, else trusted / untrusted', () => {
    expect([trustDomainOf({}), trustDomainOf({ trusted: false }), trustDomainOf({ trusted: false, trustDomain: 'tenant-a' })]).toEqual(['trusted', 'untrusted', 'tenant-a']);
  });
});

describe('checks: a placement in CPU order mixes trust domains on every core; one by CoreAllocator mixes none', () => {
  function run(byCores: boolean): { violations: ReturnType<typeof checkSmtIsolation>; loadsOnMixedCores: number; loads: number; mixedCoreTicks: number } {
    const host = smtHost();
    const modules = loadedModules(host);
    const alloc = new CoreAllocator(host);
    const domains = new Map<Process, string>();
    const domainOf = (p: Process): string | undefined => domains.get(p);
    const monitor = new SmtMonitor(host, domainOf);
    const vms = [false, false, false, false, true, true, true, true].map((untrusted, i) => ({ trusted: !untrusted, i }));
    for (const vm of vms) {
      const mod = place(vm, modules, requireMitigations, (v, cs) => (v.trusted === false ? cs : cs.filter((c) => c.name === 'kvm0')))!;
      const cpus = byCores ? alloc.allocate(trustDomainOf(vm), 1)! : [vm.i];
      const vmm = GuestVmm.create(host, { name: `vm${vm.i}`, devPath: mod.devPath, code: countingGuest({ busy: 10 }), vcpuCpus: cpus });
      domains.set(vmm.proc, trustDomainOf(vm));
      vmm.start();
    }
    host.scheduler.run(20);
    monitor.stop();
    return { violations: checkSmtIsolation(host, domainOf), loadsOnMixedCores: monitor.violations.length, loads: monitor.loads, mixedCoreTicks: monitor.mixedCoreTicks };
  }

  test('in CPU order (trusted 0-3, untrusted 4-7): all four cores are violations, and loads happen beside the other domain', () => {
    const r = run(false);
    expect(r.violations.map((v) => `${v.core}:${v.cpus.join('+')}:${v.domains.join('/')}`)).toEqual(['0:0+4:trusted/untrusted', '1:1+5:trusted/untrusted', '2:2+6:trusted/untrusted', '3:3+7:trusted/untrusted']);
    expect(r.violations[0]!.processes.map((p) => p.split(':')[0])).toEqual(['vm0', 'vm4']);
    expect(r.loads).toBeGreaterThan(0);
    expect(r.loadsOnMixedCores).toBeGreaterThan(0);
    expect(r.mixedCoreTicks).toBe(4 * 20); // every core, every tick: both threads run their guest in each
  });

  test('by CoreAllocator: no core mixes domains, statically or while running', () => {
    const r = run(true);
    expect(r.violations).toEqual([]);
    expect(r.loads).toBeGreaterThan(0);
    expect(r.loadsOnMixedCores).toBe(0);
    expect(r.mixedCoreTicks).toBe(0);
  });
});
