/**
 * Two and three KVM modules at once (issue 4, "Done means" 3): same vendor, different parameters, their VMs'
 * vCPU threads interleaved on shared CPUs by the deterministic scheduler, threads moved between CPUs at random
 * ticks, PMIs raised at random points (between ticks, and from a monitor thread in the middle of a tick).
 * After every tick the invariant checker is clean; every PMI is attributed to the vCPU the scheduler has in
 * guest mode on that CPU, or to nobody; `rmmod` of one module leaves the others running.
 */
import fc from 'fast-check';
import { PERF_GUEST_ACTIVE, checkInvariants, type Host, type ParamInputs, type Process } from '@vac/core';
import { amd } from '@vac/svm';
import { intel, type IntelHardware } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { kvm } from '../../src/index.js';
import { SPIN, makeHost, makeVm, vmmProcess } from './helpers.js';
import { IO_LOOP, expectedOwner, inst, rng, spawnVcpuThread, vacIn, type VcpuThread } from './integration.js';
import { VPIDS } from '@vac/vmx';
import { ASIDS } from '@vac/svm';

/** A guest that does I/O every ~400 instructions: `mov dx,0x3f8; a: mov cx,200; b: dec cx; jnz b; out dx,al; inc ax; jmp a`. */
const SLOW_IO = [0xba, 0xf8, 0x03, 0xb9, 0xc8, 0x00, 0x49, 0x75, 0xfd, 0xee, 0x40, 0xeb, 0xf6];

interface ModuleSetup {
  readonly postfix: string;
  readonly params: ParamInputs;
  readonly code: readonly number[];
  /** The VMM yields after each exit it handles (its thread is then current in user space). */
  readonly yieldInUser: boolean;
}

const VENDOR_SETUPS = {
  intel: {
    // A small VPID space is not needed: VPIDs are per vCPU, not per CPU. Three modules, three mitigations.
    hardware: () => intel(),
    modules: [
      { postfix: '0', params: { vmentry_l1d_flush: 'always' }, code: SPIN, yieldInUser: false },
      { postfix: '1', params: { vmentry_l1d_flush: 'never' }, code: IO_LOOP, yieldInUser: true },
      { postfix: '2', params: { vpid: 0, vmentry_l1d_flush: 'never' }, code: SLOW_IO, yieldInUser: false },
    ] as ModuleSetup[],
  },
  amd: {
    // 16 ASIDs, SEV 3…4, SEV-ES 1…2: ordinary guests use 5…15, so migrations roll generations over.
    hardware: () => amd({ nrAsids: 16, maxSevAsid: 4, minSevAsid: 3 }),
    modules: [
      { postfix: '0', params: { npt: 1 }, code: SPIN, yieldInUser: false },
      { postfix: '1', params: { npt: 0, avic: 1 }, code: IO_LOOP, yieldInUser: true },
      { postfix: '2', params: { sev: 0, nested: 0 }, code: SLOW_IO, yieldInUser: false },
    ] as ModuleSetup[],
  },
} as const;

const VCPUS_PER_VM = 2;
const SHARED_CPUS = 2; // every vCPU thread starts on CPU 0 or 1; CPU 3 runs the PMI monitor

interface Scenario {
  readonly host: Host;
  readonly procs: Process[];
  readonly threads: VcpuThread[];
  readonly mismatches: string[];
  pmis: { attributed: number; none: number };
  readonly sharedBy: Array<Set<string>>;
  /** One scheduler tick, then the checks and the random moves. */
  tick: () => void;
}

function setup(vendor: keyof typeof VENDOR_SETUPS, nModules: number, seed: number): Scenario {
  const cfg = VENDOR_SETUPS[vendor];
  const host = makeHost(cfg.hardware(), 4);
  host.scheduler.quantum = 100;
  const mods = cfg.modules.slice(0, nModules);
  for (const m of mods) host.modprobe(kvm({ postfix: m.postfix }), m.params);
  const s: Scenario = { host, procs: [], threads: [], mismatches: [], pmis: { attributed: 0, none: 0 }, sharedBy: host.cpus.map(() => new Set<string>()), tick: () => {} };
  host.events.on('vcpu:load', (e) => s.sharedBy[e.cpu]?.add(e.module));
  const random = rng(seed);
  const check = (where: string): void => {
    const cpu = Math.floor(random() * host.cpus.length);
    const want = expectedOwner(host, s.threads, cpu);
    const got = host.raisePmi(cpu);
    if (got.attributedTo !== want || got.state !== (want === undefined ? 0 : PERF_GUEST_ACTIVE)) {
      s.mismatches.push(`${where}: PMI on CPU ${cpu}: want ${String(want)}, got ${String(got.attributedTo)} (state ${got.state})`);
    }
    // An NMI there is an NMI-induced VM exit of the same vCPU's module, or nobody's.
    const nmi = host.raiseNmi(cpu);
    if (JSON.stringify(nmi) !== JSON.stringify(want === undefined ? [] : [want])) {
      s.mismatches.push(`${where}: NMI on CPU ${cpu}: want ${String(want)}, got ${JSON.stringify(nmi)}`);
    }
    if (want === undefined) s.pmis.none++;
    else s.pmis.attributed++;
  };
  mods.forEach((m, i) => {
    const p = vmmProcess(host);
    s.procs.push(p);
    const t = makeVm(p, `/dev/kvm${m.postfix}`, m.code, VCPUS_PER_VM);
    t.vcpus.forEach((v, j) => {
      s.threads.push(spawnVcpuThread(host, p, v.fd, v.run, { cpu: (i + j) % SHARED_CPUS, yieldInUser: m.yieldInUser }));
    });
    if (i === 0) {
      // A monitor thread between the first module's threads and the others': it raises PMIs in the middle
      // of every tick, when some vCPU threads had their slice this tick and others have not yet.
      const mon = host.spawn({ name: 'perf' });
      host.scheduler.spawn(mon, { cpu: 3, name: 'perf-monitor' }, function* (t) {
        for (;;) {
          for (let k = 0; k < 2; k++) check(`tick ${host.events.tick} (mid-tick)`);
          yield* t.yield();
        }
      });
    }
  });
  s.tick = (): void => {
    host.scheduler.tick();
    const v = checkInvariants(host);
    if (v.length > 0) s.mismatches.push(`tick ${host.events.tick}: ${JSON.stringify(v)}`);
    for (let k = 0; k < 3; k++) check(`after tick ${host.events.tick}`);
    // Now and then a vCPU thread is moved to another CPU (sched_setaffinity): VMCS migration / new ASID.
    if (random() < 0.2) {
      const t = s.threads[Math.floor(random() * s.threads.length)];
      if (t !== undefined && t.thread.alive) t.thread.setAffinity(Math.floor(random() * SHARED_CPUS + (random() < 0.25 ? 2 : 0)));
    }
  };
  return s;
}

describe.each(['intel', 'amd'] as const)('several KVM modules interleaved on shared CPUs on %s', (vendor) => {
  test.each([2, 3])('%i modules: invariants after every tick, PMIs reach the owner, rmmod of one leaves the others running', (n) => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
        const s = setup(vendor, n, seed);
        const { host } = s;
        for (let i = 0; i < 60; i++) s.tick();
        expect(s.mismatches).toEqual([]);
        expect(s.pmis.attributed).toBeGreaterThan(0);
        expect(s.pmis.none).toBeGreaterThan(0);
        // Shared CPUs really were shared between modules.
        expect(s.sharedBy[0]!.size).toBe(n);
        expect(s.sharedBy[1]!.size).toBe(n);
        for (const t of s.threads) {
          expect(t.thread.alive).toBe(true);
          expect(t.errors).toEqual([]);
          expect(t.vcpu.stats.instructions).toBeGreaterThan(0);
        }
        const vac = vacIn(host);
        if (vendor === 'intel') {
          // VPIDs: unique, non-zero for kvm0/kvm1, 0 for the vpid=0 module.
          const vpids = s.threads.filter((t) => !t.label.startsWith('kvm2')).map((t) => t.vcpu.vendor.tlbTag().value);
          expect(new Set(vpids).size).toBe(vpids.length);
          expect(vpids.every((v) => v > 0)).toBe(true);
          expect((vac.tryResource(VPIDS)?.holders() ?? []).map((h) => h.holder).sort()).toEqual(s.threads.filter((t) => !t.label.startsWith('kvm2')).map((t) => t.label).sort());
        } else {
          // ASIDs: per CPU and generation, never two holders of one ASID; generations did roll over.
          for (const c of host.cpus) {
            const st = vac.tryResource(ASIDS)?.cpuState(c.id)!;
            expect(new Set(st.holders.map((h) => h.asid)).size).toBe(st.holders.length);
            expect(st.holders.every((h) => h.asid >= 5 && h.asid <= 15)).toBe(true);
          }
          expect(vac.tryResource(ASIDS)?.rollovers).toBeGreaterThan(0);
        }
        // rmmod of the last module once its VMs are gone (its VMM is killed): the others keep executing.
        const victim = `kvm${n - 1}`;
        s.procs[n - 1]!.kill();
        host.rmmod(victim);
        expect(checkInvariants(host)).toEqual([]);
        const survivors = s.threads.filter((t) => !t.label.startsWith(victim));
        const before = survivors.map((t) => t.vcpu.stats.instructions);
        for (let i = 0; i < 20; i++) s.tick();
        expect(s.mismatches).toEqual([]);
        survivors.forEach((t, i) => expect(t.vcpu.stats.instructions).toBeGreaterThan(before[i]!));
        for (const t of s.threads.filter((x) => x.label.startsWith(victim))) expect(t.thread.state).toBe('killed');
        // Everything goes away cleanly.
        for (const p of s.procs.slice(0, n - 1)) p.kill();
        for (let i = n - 2; i >= 0; i--) host.rmmod(`kvm${i}`);
        host.rmmod('vac');
        expect(host.lsmod()).toEqual([]);
        expect(checkInvariants(host)).toEqual([]);
      }),
      { seed: 20231107, numRuns: 4 },
    );
  });
});

describe('parameters differ visibly between modules on one host (Intel)', () => {
  test('vmentry_l1d_flush=always flushes L1D on every entry, never on none; vpid=0 runs with VPID 0 and a TLB flush per entry', () => {
    const s = setup('intel', 3, 7);
    const flushEvents: Record<string, number> = {};
    s.host.events.on('l1d:flush', (e) => {
      flushEvents[e.module] = (flushEvents[e.module] ?? 0) + 1;
    });
    for (let i = 0; i < 40; i++) s.tick();
    expect(s.mismatches).toEqual([]);
    const host = s.host;
    const by = (m: string): VcpuThread[] => s.threads.filter((t) => t.label.startsWith(`${m}/`));
    const stats = (t: VcpuThread): Record<string, number> => t.vcpu.vendor.stats;
    let always = 0;
    for (const t of by('kvm0')) {
      expect(stats(t)['entries']).toBeGreaterThan(0);
      expect(stats(t)['l1dFlushes']).toBe(stats(t)['entries']);
      expect(stats(t)['tlbFlushVpid0Entry']).toBe(0);
      always += stats(t)['l1dFlushes']!;
    }
    for (const t of by('kvm1')) {
      expect(stats(t)['entries']).toBeGreaterThan(0);
      expect(stats(t)['l1dFlushes']).toBe(0);
      expect(t.vcpu.vendor.tlbTag().value).toBeGreaterThan(0);
    }
    let vpid0 = 0;
    for (const t of by('kvm2')) {
      expect(t.vcpu.vendor.tlbTag()).toEqual({ kind: 'vpid', value: 0 });
      expect(stats(t)['tlbFlushVpid0Entry']).toBe(stats(t)['entries']);
      expect(stats(t)['l1dFlushes']).toBe(0);
      vpid0 += stats(t)['tlbFlushVpid0Entry']!;
    }
    // The hardware agrees: IA32_FLUSH_CMD writes are kvm0's only; VPID-0 entries are kvm2's only.
    const totals = (host.hardware as IntelHardware).totals();
    expect(totals.l1dFlush).toBe(always);
    expect(totals.vpid0Flush).toBe(vpid0);
    expect(flushEvents).toEqual({ kvm0: always });
    expect(inst(host, 'kvm2').vendor.userReturn.length).toBeGreaterThan(0);
  });
});
