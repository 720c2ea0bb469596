/**
 * SMT topology: threads per core, siblings, and the sysfs files that show them (drivers/base/topology.c,
 * kernel/cpu.c). CPUs are numbered first thread of every core, then second thread, as x86 servers enumerate them.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { cpuList, createHost } from '../../src/index.js';
import { expectKernelError, expectUsageError } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';

const topo = (cpu: number, file: string): string => `/sys/devices/system/cpu/cpu${cpu}/topology/${file}`;

describe('SMT topology', () => {
  test('16 CPUs, 2 threads per core: 8 cores, CPU n and n + 8 are siblings', () => {
    const host = createHost({ cpus: 16, threadsPerCore: 2, hardware: fakeHardware() });
    const t = host.topology;
    expect([t.threadsPerCore, t.cores]).toEqual([2, 8]);
    expect(t.siblingsOf(0)).toEqual([0, 8]);
    expect(t.siblingsOf(11)).toEqual([3, 11]);
    expect(t.otherThreadsOf(11)).toEqual([3]);
    expect([t.coreOf(11), t.threadOf(11), t.threadOf(3)]).toEqual([3, 1, 0]);
    expect(t.cpusOfCore(7)).toEqual([7, 15]);
    expect(host.readSysfs(topo(0, 'thread_siblings_list'))).toBe('0,8');
    expect(host.readSysfs(topo(9, 'core_cpus_list'))).toBe('1,9');
    expect(host.readSysfs(topo(9, 'core_id'))).toBe('1');
    expect(host.readSysfs(topo(9, 'physical_package_id'))).toBe('0');
    expect(host.readSysfs(topo(9, 'core_siblings_list'))).toBe('0-15');
    expect(host.readSysfs(topo(9, 'package_cpus_list'))).toBe('0-15');
    expect(host.readSysfs('/sys/devices/system/cpu/smt/active')).toBe('1');
    expect(host.readSysfs('/sys/devices/system/cpu/smt/control')).toBe('on');
  });

  test('the default is one thread per core: today\'s hosts, each CPU its own core', () => {
    const host = createHost({ cpus: 4, hardware: fakeHardware() });
    expect([host.topology.threadsPerCore, host.topology.cores]).toEqual([1, 4]);
    expect(host.readSysfs(topo(2, 'thread_siblings_list'))).toBe('2');
    expect(host.readSysfs(topo(2, 'core_id'))).toBe('2');
    expect(host.readSysfs('/sys/devices/system/cpu/smt/active')).toBe('0');
    expect(host.readSysfs('/sys/devices/system/cpu/smt/control')).toBe('notsupported');
  });

  test('two CPUs of one core are listed as a range; four threads per core', () => {
    expect(createHost({ cpus: 2, threadsPerCore: 2, hardware: fakeHardware() }).readSysfs(topo(1, 'thread_siblings_list'))).toBe('0-1');
    const host = createHost({ cpus: 16, threadsPerCore: 4, hardware: fakeHardware() });
    expect(host.readSysfs(topo(5, 'thread_siblings_list'))).toBe('1,5,9,13');
  });

  test('an offline thread leaves its sibling\'s list and has no topology directory (ENOENT); smt/active follows', () => {
    const host = createHost({ cpus: 4, threadsPerCore: 2, hardware: fakeHardware() });
    host.cpuDown(2);
    expect(host.readSysfs(topo(0, 'thread_siblings_list'))).toBe('0');
    expect(host.readSysfs(topo(0, 'package_cpus_list'))).toBe('0-1,3');
    expect(host.readSysfs('/sys/devices/system/cpu/smt/active')).toBe('1');
    expectKernelError(host, () => host.readSysfs(topo(2, 'core_id')), 'ENOENT');
    host.cpuDown(3);
    expect(host.readSysfs('/sys/devices/system/cpu/smt/active')).toBe('0');
  });

  test('files the model does not have, and CPUs the host does not have: ENOENT; module parameters are there too', () => {
    const host = createHost({ cpus: 2, hardware: fakeHardware() });
    expectKernelError(host, () => host.readSysfs(topo(2, 'core_id')), 'ENOENT');
    expectKernelError(host, () => host.readSysfs(topo(0, 'die_id')), 'ENOENT');
    expectKernelError(host, () => host.readSysfs('/sys/kernel/mm/x'), 'ENOENT');
    expectKernelError(host, () => host.readSysfs('/sys/module/kvm9/parameters/x'), 'ENOENT');
    expectUsageError(host, () => host.readSysfs(1 as unknown as string), 'ERR_INVALID_ARG');
  });

  test('threadsPerCore must be an integer in 1…8 that divides cpus', () => {
    for (const bad of [0, 3, 1.5, 16, -2]) {
      expect(() => createHost({ cpus: 8, threadsPerCore: bad, hardware: fakeHardware() }), String(bad)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    }
  });

  test('property: siblings are symmetric, share a core, and the cores partition the CPUs', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 8 }), (threads, cores) => {
        const host = createHost({ cpus: threads * cores, threadsPerCore: threads, hardware: fakeHardware() });
        const t = host.topology;
        const seen: number[] = [];
        for (let core = 0; core < cores; core++) seen.push(...t.cpusOfCore(core));
        expect(seen.sort((a, b) => a - b)).toEqual([...Array(threads * cores).keys()]);
        for (let cpu = 0; cpu < threads * cores; cpu++) {
          for (const s of t.siblingsOf(cpu)) {
            expect(t.siblingsOf(s)).toEqual(t.siblingsOf(cpu));
            expect(t.coreOf(s)).toBe(t.coreOf(cpu));
          }
          expect(host.readSysfs(topo(cpu, 'thread_siblings_list'))).toBe(cpuList(t.siblingsOf(cpu)));
        }
      }),
      { numRuns: 40 },
    );
  });
});

describe('cpuList', () => {
  test('ranges and single CPUs, as %*pbl prints them', () => {
    expect(cpuList([])).toBe('');
    expect(cpuList([3, 0, 1, 2, 8, 10, 11])).toBe('0-3,8,10-11');
  });
});
