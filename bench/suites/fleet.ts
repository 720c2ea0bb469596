/**
 * 11. @vac/fleet: moving one VM of 4 vCPUs between modules in place (its phases through the ABI, with probed
 * facts, as an upgrade plan makes it), against the bare `saveVm` + `restoreVm` it is built on, and the target VM's
 * construction alone; and fleet hosts of 16 CPUs with 24 VMs × 2 vCPUs each (`runHostJob`: the host built, its VMs started, every VM moved kvm0 → kvm1,
 * kvm0 unloaded), per host at 10 and 100 hosts (1 and 2 with --quick), with the memory a fleet of 10,000 needs: one
 * live host per worker and every host's outcome. The 10,000-host time is projected from the per-host cost (labelled
 * so), not run here: `pnpm bench:fleet -- --hosts=10000` (bench/fleet-run.ts) rolls such a fleet for real.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { O_RDWR, createHost, type Mapping, type Process } from '@vac/core';
import { GuestVmm, countingGuest, generateFleet, moveInPlace, runHostJob, type HostJob } from '@vac/fleet';
import { KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_VCPU_MMAP_SIZE, kvm, probeModule, restoreVm, saveVm } from '@vac/kvm';
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

/** One VM as a restore builds it on `/dev/kvm1` — KVM_CREATE_VM, the irqchip and PIT, four vCPUs with `kvm_run` mapped — then closed. */
function constructionOnly(p: Process): () => void {
  const sys = p.open('/dev/kvm1', O_RDWR);
  const size = p.ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0);
  return () => {
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
    p.ioctl(vm, KVM_CREATE_PIT2, { flags: 0 });
    const vcpus: number[] = [];
    const maps: Mapping[] = [];
    for (let i = 0; i < 4; i++) {
      const fd = p.ioctl(vm, KVM_CREATE_VCPU, i);
      vcpus.push(fd);
      maps.push(p.mmap(fd, size));
    }
    for (const m of maps) p.munmap(m.addr, m.length);
    for (const fd of vcpus) p.close(fd);
    p.close(vm);
  };
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

/** V8's `gc()`, exposed at run time (the benchmarks run under tsx, without `--expose-gc`). */
function exposedGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
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
  // The target VM's construction alone (what a restore builds before it sets any state), against the bare move.
  const build = constructionOnly(bare.vmm.proc);
  const construct = measure(b, 'KVM_CREATE_VM + IRQCHIP + PIT2 + 4 vCPUs', build);
  rows.push(row(GROUP, 'VM construction (KVM_CREATE_VM, _IRQCHIP, _PIT2, 4 × KVM_CREATE_VCPU + mmap)', '4 vCPUs, closed again', construct, { label: baseLabel, m: bareMove }, { unit: 'VM', note: "a restore's share that builds the target, before any state is set" }));

  // Fleet hosts: the cost per host at two fleet sizes, in this thread (a fleet's worker runs its hosts this way, one
  // after another: each host job builds its host, upgrades it and keeps only its outcome).
  const sizes = b.quick ? [1, 2] : [10, 100];
  const perHost: number[] = [];
  // CPU time too: on a shared machine (other processes on the two cores) the wall time per host is inflated by the
  // time this thread waited for a core, which a fleet's workers on two free cores would not.
  const cpuPerHost: number[] = [];
  for (const j of jobs(b.quick ? 1 : 3)) runHostJob(j); // warm-up (the JIT), not timed
  let ioctlsPerMove: number;
  for (const n of sizes) {
    const js = jobs(n);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    let moves = 0;
    let ioctls = 0;
    for (const j of js) {
      const o = runHostJob(j);
      if (o.outcome !== 'upgraded' || o.moves !== 24) throw new Error(`fleet host ${j.host.name}: ${o.outcome} with ${o.moves} moves (${o.failure ?? ''})`);
      moves += o.moves;
      ioctls += o.moveIoctls;
    }
    const ns = ((performance.now() - t0) * 1e6) / n;
    const c = process.cpuUsage(c0);
    cpuPerHost.push(((c.user + c.system) * 1e3) / n);
    ioctlsPerMove = ioctls / moves;
    perHost.push(ns);
    rows.push(row(GROUP, 'fleet host upgrade (runHostJob)', `${n} hosts of 16 CPUs, 24 VMs × 2 vCPUs`, { nsPerOp: ns, meanNsPerOp: ns, rme: 0, samples: n }, n === sizes[0] ? undefined : { label: `${sizes[0]} hosts, per host`, m: { nsPerOp: perHost[0] as number, meanNsPerOp: perHost[0] as number, rme: 0, samples: sizes[0] as number } }, { unit: 'host', note: `host built, 24 VMs started, all moved kvm0 → kvm1 (${ioctlsPerMove.toFixed(0)} ioctls per move), kvm0 unloaded; ${fmtNs(cpuPerHost[cpuPerHost.length - 1] as number)} of CPU time per host` }));
  }
  // Memory, with a real full GC (V8's gc exposed at run time: tsx does not pass --expose-gc).
  const gc = exposedGc();
  const heap = (): number => {
    gc();
    gc();
    return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  };
  // (1) What a fleet keeps per host once it is done: its outcome (the host itself is dropped), measured as the heap
  // of 10,000 copies of a real one.
  const outcome = runHostJob(jobs(1)[0] as HostJob);
  const before0 = heap();
  const kept = Array.from({ length: 10_000 }, () => structuredClone(outcome));
  const outcomeBytes = (heap() - before0) / kept.length;
  kept.length = 0;
  // (2) One host alive (what each worker holds while it runs a job): both modules loaded, its 24 VMs on kvm0.
  const keep: unknown[] = [];
  const live = b.quick ? 2 : 10;
  const before = heap();
  for (const j of jobs(live)) {
    const host = createHost({ cpus: 16, hardware: intel() });
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    const vmms = j.host.vms.map((vm, i) => GuestVmm.create(host, { devPath: '/dev/kvm0', code: countingGuest(), vcpus: vm.vcpus, cpu: i % 16, irqchip: 'kernel' }));
    keep.push(host, vmms);
  }
  const heapPerHost = (heap() - before) / live;
  keep.length = 0;
  const workers = 2;
  const fleetBytes = workers * heapPerHost + 10_000 * outcomeBytes;

  const ratio = (perHost[1] as number) / (perHost[0] as number);
  const projected = ((perHost[1] as number) * 10_000) / workers / 1e9;
  const projectedCpu = ((cpuPerHost[1] as number) * 10_000) / workers / 1e9;
  const mib = (x: number): string => `${(x / 2 ** 20).toFixed(2)} MiB`;
  const targets = [
    check('moving one VM with 4 vCPUs ≤ 100 µs', `${fmtNs(move.nsPerOp)} (the bare saveVm + restoreVm: ${fmtNs(bareMove.nsPerOp)})`, move.nsPerOp, 100_000),
    check(`fleet: per-host cost at ${sizes[1]} hosts ≤ 1.5× that at ${sizes[0]}`, `${fmtFactor(ratio)} (${fmtNs(perHost[1] as number)} vs ${fmtNs(perHost[0] as number)} per host)`, ratio, 1.5),
    check(
      'fleet: 10,000 hosts in < 60 s on 2 cores',
      `${projected.toFixed(0)} s — projected, not run: the per-host wall time at ${sizes[1]} hosts × 10,000 ÷ ${workers} workers (each host job is independent of the fleet's size); from the CPU time per host (two free cores): ${projectedCpu.toFixed(0)} s`,
      projected,
      60,
    ),
    check(
      'fleet: 10,000 hosts fit in 4 GiB',
      `${(fleetBytes / 2 ** 30).toFixed(2)} GiB = ${workers} live hosts (${mib(heapPerHost)} each, one per worker) + 10,000 outcomes (${(outcomeBytes / 1024).toFixed(1)} KiB each); all 10,000 alive at once would take ${((heapPerHost * 10_000) / 2 ** 30).toFixed(1)} GiB`,
      fleetBytes,
      4 * 2 ** 30,
    ),
  ];
  return { rows, targets };
}
