/**
 * 11. @vac/fleet: moving one VM of 4 vCPUs between modules in place (its phases through the ABI, with probed
 * facts, as an upgrade plan makes it), against the bare `saveVm` + `restoreVm` it is built on; and fleet hosts of
 * 16 CPUs with 24 VMs × 2 vCPUs each (`runHostJob`: the host built, its VMs started, every VM moved kvm0 → kvm1,
 * kvm0 unloaded), per host at two fleet sizes, with the JavaScript heap a live host takes.
 */
import { createHost } from '@vac/core';
import { GuestVmm, countingGuest, generateFleet, moveInPlace, runHostJob, type HostJob } from '@vac/fleet';
import { kvm, probeModule, restoreVm, saveVm } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { check, fmtFactor, fmtNs, measure, row, type Budget, type Row, type TargetCheck } from '../lib/harness.js';

const GROUP = '11. Fleet';

/** A host with kvm0 and kvm1 and one paused 4-vCPU VM on kvm0, with both modules probed. */
function oneVm(): { vmm: GuestVmm; facts: { kvm0: ReturnType<typeof probeModule>; kvm1: ReturnType<typeof probeModule> } } {
  const host = createHost({ cpus: 4, hardware: intel() });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  const vmm = GuestVmm.create(host, { devPath: '/dev/kvm0', code: countingGuest(), vcpus: 4, irqchip: 'kernel' });
  vmm.start();
  host.scheduler.run(3);
  vmm.pause();
  const agent = host.spawn({ uid: 0 });
  return { vmm, facts: { kvm0: probeModule(agent, '/dev/kvm0'), kvm1: probeModule(agent, '/dev/kvm1') } };
}

/** The fleet host of the issue: 16 CPUs, 24 VMs × 2 vCPUs, Intel, kvm0 (6.12) → kvm1 (6.18). */
function jobs(n: number): HostJob[] {
  return generateFleet({ seed: 1, hosts: n, amdShare: 0, cpus: [16], vmsPerHost: [24, 24], vcpus: [2], asyncPfIntShare: 0 }).map((host) => ({
    host,
    seed: 1,
    fromBuild: 'linux-6.12',
    toBuild: 'linux-6.18',
    plan: { batchSize: 4 },
    finalize: 'commit' as const,
  }));
}

/** Run the group. */
export function runFleet(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const rows: Row[] = [];
  // Moving one VM: the bare helpers first (the baseline), then the move with its bookkeeping.
  const bare = oneVm();
  const p = bare.vmm.proc;
  const bareMove = measure(b, 'saveVm + restoreVm (4 vCPUs)', () => {
    const from = bare.vmm.current;
    const saved = saveVm(p, from.handle);
    const to = restoreVm(p, '/dev/kvm1', saved, { slots: bare.vmm.slots });
    for (const v of to.vcpus) {
      p.munmap(v.runMapping.addr, v.runMapping.length);
      p.close(v.fd);
    }
    p.close(to.vm);
    p.close(to.sys);
  });
  const baseLabel = 'saveVm + restoreVm, 4 vCPUs';
  rows.push(row(GROUP, 'saveVm + restoreVm (@vac/kvm)', '4 vCPUs, irqchip', bareMove, undefined, { unit: 'VM', note: 'the state transfer alone: the new VM closed again' }));
  const s = oneVm();
  let ioctls = 0;
  const move = measure(b, 'moveInPlace (4 vCPUs)', () => {
    const to = s.vmm.devPath === '/dev/kvm0' ? '/dev/kvm1' : '/dev/kvm0';
    const facts = to === '/dev/kvm1' ? { source: s.facts.kvm0, target: s.facts.kvm1 } : { source: s.facts.kvm1, target: s.facts.kvm0 };
    const r = moveInPlace(s.vmm, to, { facts });
    if (r.outcome !== 'moved') throw new Error(`the move failed: ${String(r.error)}`);
    ioctls = r.syscalls.ioctls;
  });
  rows.push(row(GROUP, 'moveInPlace (@vac/fleet)', '4 vCPUs, irqchip, paused', move, { label: baseLabel, m: bareMove }, { unit: 'move', note: `${ioctls} ioctls per move; pause, save, canMove, restore, resume, release` }));

  // Fleet hosts: the cost per host at two fleet sizes, in this thread.
  const sizes = b.quick ? [1, 2] : [5, 20];
  const perHost: number[] = [];
  for (const n of sizes) {
    const js = jobs(n);
    const t0 = performance.now();
    for (const j of js) {
      const o = runHostJob(j);
      if (o.outcome !== 'upgraded' || o.moves !== 24) throw new Error(`fleet host ${j.host.name}: ${o.outcome} with ${o.moves} moves (${o.failure ?? ''})`);
    }
    const ns = ((performance.now() - t0) * 1e6) / n;
    perHost.push(ns);
    rows.push(row(GROUP, 'fleet host upgrade (runHostJob)', `${n} hosts of 16 CPUs, 24 VMs × 2 vCPUs`, { nsPerOp: ns, meanNsPerOp: ns, rme: 0, samples: n }, n === sizes[0] ? undefined : { label: `${sizes[0]} hosts, per host`, m: { nsPerOp: perHost[0] as number, meanNsPerOp: perHost[0] as number, rme: 0, samples: sizes[0] as number } }, { unit: 'host', note: 'host built, 24 VMs started, all moved kvm0 → kvm1, kvm0 unloaded' }));
  }
  // The heap a live host takes (after its upgrade, both modules loaded): hosts kept alive, heap measured around them.
  const keep: unknown[] = [];
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const live = b.quick ? 2 : 10;
  for (const j of jobs(live)) {
    const host = createHost({ cpus: 16, hardware: intel() });
    host.modprobe(kvm({ postfix: '0' }));
    const vmms = j.host.vms.map((vm, i) => GuestVmm.create(host, { devPath: '/dev/kvm0', code: countingGuest(), vcpus: vm.vcpus, cpu: i % 16, irqchip: 'kernel' }));
    keep.push(host, vmms);
  }
  gc?.();
  const heapPerHost = (process.memoryUsage().heapUsed - before) / live;
  keep.length = 0;

  const ratio = (perHost[1] as number) / (perHost[0] as number);
  const projected = ((perHost[1] as number) * 10_000) / 2 / 1e9;
  const targets = [
    check('moving one VM with 4 vCPUs ≤ 100 µs', `${fmtNs(move.nsPerOp)} (the bare saveVm + restoreVm: ${fmtNs(bareMove.nsPerOp)})`, move.nsPerOp, 100_000),
    check(`fleet: per-host cost at ${sizes[1]} hosts ≤ 1.5× that at ${sizes[0]}`, `${fmtFactor(ratio)} (${fmtNs(perHost[1] as number)} vs ${fmtNs(perHost[0] as number)} per host)`, ratio, 1.5),
    check('fleet: 10,000 hosts in < 60 s on 2 cores (projected from the per-host cost, 2 workers)', `${projected.toFixed(0)} s projected`, projected, 60),
    check('fleet: 10,000 live hosts fit in 4 GiB', `${(heapPerHost / 2 ** 20).toFixed(2)} MiB of heap per live host${gc === undefined ? ' (approximate: no --expose-gc)' : ''} → ${((heapPerHost * 10_000) / 2 ** 30).toFixed(1)} GiB`, heapPerHost * 10_000, 4 * 2 ** 30),
  ];
  return { rows, targets };
}
