import fc from 'fast-check';
import { describe, expect, test } from 'vitest';

import { UsageError } from '../../src/errors.js';
import { AsidAllocator } from '../../src/vac/asid.js';

/** nrAsids 16, max_sev_asid 4 → ordinary ASIDs 5 … 15 (11 per generation). */
function small(nrCpus = 2): AsidAllocator<string> {
  return new AsidAllocator<string>({ nrCpus, nrAsids: 16, maxSevAsid: 4 });
}

describe('AsidAllocator (svm_cpu_data, new_asid, pre_svm_run)', () => {
  test('geometry: max = nrAsids - 1, min = max_sev_asid + 1, next starts at max + 1', () => {
    const a = small();
    expect(a.maxAsid).toBe(15);
    expect(a.minAsid).toBe(5);
    expect(a.generation(0)).toBe(0);
    a.resetCpu(0);
    expect(a.generation(0)).toBe(1);
    expect(a.nextAsid(0)).toBe(16);
  });

  test('the first new_asid after enable rolls over (generation 2, flush all)', () => {
    const a = small();
    a.resetCpu(0);
    expect(a.newAsid(0, 'v0')).toEqual({ asid: 5, generation: 2, flushAll: true });
    expect(a.newAsid(0, 'v1')).toEqual({ asid: 6, generation: 2, flushAll: false });
    expect(a.rollovers).toBe(1);
    expect(a.holders(0)).toEqual([
      [5, 'v0'],
      [6, 'v1'],
    ]);
  });

  test('rollover when next > max: generation + 1, next = min, flushAll', () => {
    const a = small();
    a.resetCpu(0);
    const asids: number[] = [];
    for (let i = 0; i < 11; i++) asids.push(a.newAsid(0, `v${i}`).asid);
    expect(asids).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(a.nextAsid(0)).toBe(16);
    expect(a.isCurrent(0, 2)).toBe(true);
    const g = a.newAsid(0, 'v11');
    expect(g).toEqual({ asid: 5, generation: 3, flushAll: true });
    expect(a.rollovers).toBe(2);
    expect(a.isCurrent(0, 2)).toBe(false);
    // Older-generation holders are stale: only v11 is current.
    expect(a.holders(0)).toEqual([[5, 'v11']]);
    expect(a.holderOf(0, 6)).toBeUndefined();
    expect(a.grantOf('v0')).toBeUndefined();
    expect(a.grantOf('v11')).toEqual({ cpu: 0, asid: 5, generation: 3 });
    expect(a.conflicts).toEqual([]);
  });

  test('CPUs are independent; isCurrent compares the recorded generation', () => {
    const a = small(3);
    a.resetCpu(0);
    a.resetCpu(1);
    const g0 = a.newAsid(0, 'x');
    const g1 = a.newAsid(1, 'y');
    expect(g0.asid).toBe(5);
    expect(g1.asid).toBe(5);
    expect(a.isCurrent(0, g0.generation)).toBe(true);
    expect(a.isCurrent(0, 0)).toBe(false); // pre_svm_run zeroes the generation of a vCPU that moved CPUs
    expect(a.isCurrent(2, 0)).toBe(false); // CPU 2 never enabled
    expect(() => a.newAsid(2, 'z')).toThrow(UsageError);
    expect(() => a.newAsid(3, 'z')).toThrow(UsageError);
  });

  test('a holder that takes a new ASID (migration, or asid_generation--) drops its old entry', () => {
    const a = small();
    a.resetCpu(0);
    a.resetCpu(1);
    a.newAsid(0, 'v');
    a.newAsid(0, 'v');
    expect(a.holders(0)).toEqual([[6, 'v']]);
    a.newAsid(1, 'v');
    expect(a.holders(0)).toEqual([]);
    expect(a.holders(1)).toEqual([[5, 'v']]);
    a.releaseHolder('v');
    expect(a.holders(1)).toEqual([]);
    expect(a.grantOf('v')).toBeUndefined();
    a.releaseHolder('never-seen');
  });

  test('8192 CPUs are cheap (typed arrays, lazy holder maps)', () => {
    const a = new AsidAllocator<number>({ nrCpus: 8192, nrAsids: 32768, maxSevAsid: 509 });
    for (let cpu = 0; cpu < 8192; cpu++) a.resetCpu(cpu);
    expect(a.newAsid(8191, 1)).toEqual({ asid: 510, generation: 2, flushAll: true });
    expect(a.generation(4000)).toBe(1);
  });

  test('invalid geometry is a usage error', () => {
    expect(() => new AsidAllocator({ nrCpus: 0, nrAsids: 16, maxSevAsid: 0 })).toThrow(UsageError);
    expect(() => new AsidAllocator({ nrCpus: 8193, nrAsids: 16, maxSevAsid: 0 })).toThrow(UsageError);
    expect(() => new AsidAllocator({ nrCpus: 1, nrAsids: 1, maxSevAsid: 0 })).toThrow(UsageError);
    expect(() => new AsidAllocator({ nrCpus: 1, nrAsids: 16, maxSevAsid: 15 })).toThrow(UsageError);
    expect(new AsidAllocator({ nrCpus: 1, nrAsids: 16, maxSevAsid: 14 }).minAsid).toBe(15);
  });

  test('two modules sharing the state never get the same ASID on a CPU in a generation', () => {
    const a = small(1);
    a.resetCpu(0);
    const kvm0 = a.newAsid(0, 'kvm0/vm1/vcpu0');
    const kvm1 = a.newAsid(0, 'kvm1/vm1/vcpu0');
    expect(kvm0.generation).toBe(kvm1.generation);
    expect(kvm0.asid).not.toBe(kvm1.asid);
  });

  test('re-enable never reuses a generation (Linux resets to 1; VAC continues), so a stale grant stays stale', () => {
    const a = small(1);
    a.resetCpu(0);
    const old = a.newAsid(0, 'A'); // generation 2, ASID 5
    expect(old).toEqual({ asid: 5, generation: 2, flushAll: true });
    a.resetCpu(0); // suspend/resume: Linux's svm_hardware_enable would set asid_generation = 1 again
    expect(a.generation(0)).toBe(3);
    const b = a.newAsid(0, 'B'); // rolls over to generation 4, ASID 5, flushing every ASID
    expect(b).toEqual({ asid: 5, generation: 4, flushAll: true });
    expect(a.isCurrent(0, old.generation)).toBe(false); // A must take a new ASID
    expect(a.conflicts).toEqual([]);
  });

  test('property: no duplicate ASID within a CPU generation; ASIDs stay in [min, max]', () => {
    const step = fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 29 }), fc.boolean());
    fc.assert(
      fc.property(fc.array(step, { maxLength: 300 }), (steps) => {
        const a = small(3);
        for (let cpu = 0; cpu < 3; cpu++) a.resetCpu(cpu);
        // What each vCPU's VMCB recorded: (cpu, generation, asid).
        const vmcb = new Map<string, { cpu: number; generation: number; asid: number }>();
        for (const [cpu, v, release] of steps) {
          const holder = `v${v}`;
          if (release) {
            a.releaseHolder(holder);
            vmcb.delete(holder);
            continue;
          }
          // pre_svm_run: a new ASID when the vCPU moved or its generation is stale.
          const rec = vmcb.get(holder);
          if (rec === undefined || rec.cpu !== cpu || !a.isCurrent(cpu, rec.generation)) {
            const g = a.newAsid(cpu, holder);
            expect(g.asid).toBeGreaterThanOrEqual(a.minAsid);
            expect(g.asid).toBeLessThanOrEqual(a.maxAsid);
            vmcb.set(holder, { cpu, generation: g.generation, asid: g.asid });
          }
          for (let c = 0; c < 3; c++) {
            const current = [...vmcb.values()].filter((r) => r.cpu === c && a.isCurrent(c, r.generation));
            const asids = current.map((r) => r.asid);
            expect(new Set(asids).size).toBe(asids.length);
            expect(a.holders(c).map(([asid]) => asid)).toEqual([...asids].sort((x, y) => x - y));
          }
        }
        expect(a.conflicts).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});
