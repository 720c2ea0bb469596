import { createHost, O_RDWR, Process } from '@vac/core';
import { KVM_CREATE_VM, KVM_GET_API_VERSION, kvm } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { MeteredProcess, ioctlName, renderRolloutSvg, type FleetReport, type HostRecord } from '../src/index.js';

describe('MeteredProcess', () => {
  test('counts every call by name and moves the clock by exactly its cost; the kernel sees the same calls', () => {
    const host = createHost({ cpus: 1, hardware: intel() });
    host.modprobe(kvm({ postfix: '0' }));
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const m = new MeteredProcess(host, p, { defaultIoctlNs: 7, ioctlNs: { KVM_CREATE_VM: 1000 }, fileNs: 3 });
    const t0 = host.clock.nowNs;
    const sys = m.proc.open('/dev/kvm0', O_RDWR);
    expect(m.proc.ioctl(sys, KVM_GET_API_VERSION, 0)).toBe(12);
    const vm = m.proc.ioctl(sys, KVM_CREATE_VM, 0);
    expect(() => m.proc.ioctl(vm, KVM_CREATE_VM, 0)).toThrow(); // a failing call is counted and costed too
    m.proc.close(vm);
    const c = m.count();
    expect([c.ioctls, c.fileOps, c.ns]).toEqual([3, 2, 7 + 1000 + 1000 + 3 + 3]);
    expect([...c.byName]).toEqual([['KVM_GET_API_VERSION', 1], ['KVM_CREATE_VM', 2]]);
    expect(host.clock.nowNs - t0).toBe(c.ns);
    expect(m.proc.pid).toBe(p.pid);
    expect(p.fds().map((f) => f.path)).toEqual(['/dev/kvm0']);
    // The view is the process: its methods and accessors reach the real object (its private state), and a second
    // meter of the same process counts apart.
    expect(m.proc).toBeInstanceOf(Process);
    expect(m.proc.fds()).toEqual(p.fds());
    expect(m.proc.cpu).toBe(p.cpu);
    const m2 = new MeteredProcess(host, p, { defaultIoctlNs: 1, fileNs: 0 });
    m2.proc.ioctl(sys, KVM_GET_API_VERSION, 0);
    expect([m.count().ioctls, m2.count().ioctls]).toEqual([3, 1]);
    // A view of another process of the same class shows that process.
    const q = host.spawn({ uid: 1000, groups: ['kvm'] });
    const mq = new MeteredProcess(host, q);
    expect([mq.proc.pid, mq.proc.fds().length]).toEqual([q.pid, 0]);
    q.kill();
    expect(mq.proc.alive).toBe(false);
  });
  test('prices each ioctl by its table: a frozen table by what it says, an unfrozen one as it reads at the call', () => {
    const host = createHost({ cpus: 1, hardware: intel() });
    host.modprobe(kvm({ postfix: '0' }));
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const sys = p.open('/dev/kvm0', O_RDWR);
    const frozen = Object.freeze({ defaultIoctlNs: 5, ioctlNs: Object.freeze({ KVM_GET_API_VERSION: 40 }), fileNs: 0 });
    for (const n of [1, 2]) {
      const m = new MeteredProcess(host, p, frozen); // the second meter of the same table prices alike
      m.proc.ioctl(sys, KVM_GET_API_VERSION, 0);
      m.proc.ioctl(sys, KVM_GET_API_VERSION, 0);
      m.proc.close(m.proc.ioctl(sys, KVM_CREATE_VM, 0));
      expect([n, m.count().ns]).toEqual([n, 40 + 40 + 5]);
    }
    const table: { defaultIoctlNs: number; ioctlNs: Record<string, number>; fileNs: number } = { defaultIoctlNs: 5, ioctlNs: { KVM_GET_API_VERSION: 40 }, fileNs: 0 };
    const m = new MeteredProcess(host, p, table);
    m.proc.ioctl(sys, KVM_GET_API_VERSION, 0);
    table.ioctlNs.KVM_GET_API_VERSION = 9;
    m.proc.ioctl(sys, KVM_GET_API_VERSION, 0);
    expect(m.count().ns).toBe(40 + 9);
  });
  test('names requests as Linux does, and rejects costs that are not counts', () => {
    expect(ioctlName(KVM_CREATE_VM)).toBe('KVM_CREATE_VM');
    expect(ioctlName(0x1234)).toBe('ioctl:0x1234');
    const host = createHost({ cpus: 1, hardware: intel() });
    expect(() => new MeteredProcess(host, host.init, { defaultIoctlNs: -1, fileNs: 0 })).toThrow(/non-negative safe integer/);
  });
});

describe('renderRolloutSvg', () => {
  const rec = (id: number, outcome: HostRecord['outcome'], wave: number): HostRecord => ({ id, outcome, wave, startNs: wave * 100, vms: 2, moves: 2, failedMoves: outcome === 'failed' ? 1 : 0, blackoutsNs: [], moveIoctls: 0, upgradeNs: 10, rollbackNs: outcome === 'rolled-back' ? 5 : 0, mappedBytes: 0, sevVms: 0, sevStayed: 0, oldModuleKept: false, ...(outcome === 'failed' ? { failure: 'vm1: refused' } : {}) });
  const report = (n: number, failed: number[]): FleetReport => ({
    seed: 1,
    fromBuild: 'linux-6.12',
    toBuild: 'linux-6.18',
    outcome: 'rolled-back',
    hosts: Array.from({ length: n }, (_, i) => rec(i, failed.includes(i) ? 'failed' : i % 7 === 3 ? 'rolled-back' : 'upgraded', i % 3)),
    fleet: { intel: n, amd: 0, sev: 0, sevMediated: 0, vms: 2 * n, sevVms: 0, vcpus: 2 * n },
    waves: [0, 1, 2].map((w) => ({ label: `w${w}`, hosts: 1, upgraded: 0, failed: 0, rolledBack: 0, startNs: w * 100, endNs: w * 100 + 100, verdict: 'passed' as const, failures: [] })),
    durationNs: 300,
    injectedFaultRate: 0,
  });
  test('one row per host when they fit; a sample with every failed and rolled-back host when not', () => {
    const small = renderRolloutSvg(report(10, [4]));
    expect(small).toContain('10 hosts.');
    expect(small.match(/✕<title>/g)).toHaveLength(1);
    const big = renderRolloutSvg(report(500, [11, 250, 499]), { maxRows: 40 });
    expect(big).toContain('40 of 500 hosts (every failed or rolled-back one, then an even sample)');
    expect(big.match(/✕<title>/g)).toHaveLength(3);
    expect(big.match(/↺<title>/g)).toHaveLength(37); // the failed first, then as many rolled-back ones as fit (71 of them)
    expect(renderRolloutSvg(report(500, [11, 250, 499]), { maxRows: 40 })).toBe(big); // deterministic
  });

  test.each([[10, 60], [500, 60], [500, 40]])('%i hosts, at most %i rows: laid out 600 wide, every text at least 11 units, the wave labels apart; the document 1000 px wide', (n, maxRows) => {
    const svg = renderRolloutSvg(report(n, [4]), { maxRows });
    expect(svg).toMatch(/^<svg [^>]*width="1000" height="\d+" viewBox="0 0 600 \d+"/);
    const sizes = [...svg.matchAll(/<text [^>]*font-size="([\d.]+)"[^>]*>([^<]*)/g)].filter((m) => m[2]!.trim() !== '').map((m) => Number(m[1]));
    expect(sizes.length).toBeGreaterThan(10);
    expect(Math.min(...sizes)).toBeGreaterThanOrEqual(11);
    // The wave labels (w0 (1), w1 (1), w2 (1) start at 0, 1/3 and 2/3 of the axis): no two on one line overlap.
    const labels = [...svg.matchAll(/<text x="([\d.]+)" y="([\d.]+)" font-size="11" fill="#1f2328">(w\d \(\d+\))<\/text>/g)].map((m) => ({ x: Number(m[1]), y: Number(m[2]), w: m[3]!.length * 6.6 }));
    expect(labels).toHaveLength(3);
    for (const a of labels) for (const b of labels) if (a !== b && a.y === b.y) expect(a.x + a.w <= b.x || b.x + b.w <= a.x).toBe(true);
  });

  test('a narrower layout width or document is honoured (at least 400), the layout never wider than the document', () => {
    expect(renderRolloutSvg(report(10, []), { width: 1400, layoutWidth: 500 })).toMatch(/width="1400" height="\d+" viewBox="0 0 500 /);
    expect(renderRolloutSvg(report(10, []), { width: 500 })).toMatch(/width="500" height="\d+" viewBox="0 0 500 /);
    expect(renderRolloutSvg(report(10, []), { width: 100, layoutWidth: 10 })).toMatch(/width="400" height="\d+" viewBox="0 0 400 /);
  });
});
