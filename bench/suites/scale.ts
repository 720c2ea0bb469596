/**
 * 5. Scale.
 *
 * - `insmod kvm0` with `enable_virt_at_load=1` (the default) on 64, 1,024 and 8,192 CPUs: the timed call is
 *   `host.modprobe(kvm({ postfix: '0' }))` on a fresh host where `vac` is already loaded (it loads once per
 *   host; an upgrade loads only the new KVM module). It enables VMX on every CPU. Reported per CPU, with the
 *   ratio to the per-CPU cost at 64 CPUs; flatness is judged on the marginal cost per added CPU (at 64 CPUs
 *   the fixed cost of loading a module is most of the time).
 * - `KVM_CREATE_VM` + 4 × `KVM_CREATE_VCPU` with 10 and with 10,000 VMs (of 4 vCPUs each) already alive, two
 *   ways: all VMs in one VMM process (one fd table of 50,000 fds), and one VMM process per VM (as QEMU runs).
 *   The new VM's fds are closed after each timed call (untimed), so the count stays put.
 * - Memory per VM and per vCPU: the heap delta (V8 heap + ArrayBuffers, after a full GC) over 10,000 VMs
 *   (`KVM_CREATE_VM` only) and over 10,000 vCPUs (10 VMs × 1,000); no guest memory, and no `kvm_run` area:
 *   it is allocated at the first mmap or KVM_RUN, which is checked here.
 */
import { checkInvariants, type Host, type Process } from '@vac/core';
import { kvmInstance, KVM_CREATE_VCPU, KVM_CREATE_VM, kvm, type KvmImage, type KvmInstance } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { check, fmtFactor, fmtNs, measure, row, type Budget, type Measurement, type Row, type TargetCheck } from '../lib/harness.js';
import { makeHost, mapRun, openDev, vmmProcess } from '../lib/guest.js';
import { usedBytes } from '../lib/memory.js';

const GROUP = '5. Scale';

/** The CPU counts of the insmod benchmark. */
const INSMOD_CPUS = [64, 1024, 8192] as const;

/** The scale points reported, for the plot. */
export interface ScalePoint {
  readonly series: string;
  readonly size: number;
  readonly nsPerUnit: number;
}

/** Run the group. */
export function runScale(b: Budget): { rows: Row[]; targets: TargetCheck[]; points: ScalePoint[] } {
  const rows: Row[] = [];
  const targets: TargetCheck[] = [];
  const points: ScalePoint[] = [];

  // ---- insmod kvm0 ----
  let base64: { label: string; m: Measurement } | undefined;
  const whole = new Map<number, Measurement>();
  let host: Host | undefined;
  let image: KvmImage | undefined;
  for (const cpus of INSMOD_CPUS) {
    const m = measure(
      b,
      `insmod kvm0 @${cpus}`,
      () => {
        (host as Host).modprobe(image as KvmImage);
      },
      {
        // Big hosts take a few loads before the per-CPU loops are optimised: warm up longer there.
        time: b.quick ? 1 : cpus === 8192 ? 200 : 100,
        iterations: b.quick ? 2 : cpus === 8192 ? 20 : 40,
        warmupTime: b.quick ? 1 : cpus === 8192 ? 100 : 30,
        warmupIterations: b.quick ? 1 : cpus === 8192 ? 10 : 5,
        beforeEach: () => {
          host = makeHost(intel(), cpus);
          host.modprobe('vac');
          image = kvm({ postfix: '0' });
        },
        afterEach: () => {
          const h = host as Host;
          // Correctness: every CPU has VMX on.
          if (h.hardware.virt.isEnabled(cpus - 1) !== true || h.hardware.virt.isEnabled(0) !== true) throw new Error('insmod kvm0: VMX is not on everywhere');
          host = undefined;
        },
      },
    );
    whole.set(cpus, m);
    const perCpu: Measurement = { ...m, nsPerOp: m.nsPerOp / cpus, meanNsPerOp: m.meanNsPerOp / cpus };
    rows.push(row(GROUP, 'insmod kvm0, enable_virt_at_load=1', `${cpus.toLocaleString('en-US')} CPUs`, perCpu, base64, { unit: 'CPU', note: `whole insmod: ${fmtNs(m.nsPerOp)}` }));
    points.push({ series: 'insmod kvm0 (per CPU)', size: cpus, nsPerUnit: perCpu.nsPerOp });
    base64 ??= { label: 'insmod kvm0 at 64 CPUs, per CPU', m: perCpu };
  }
  const t = (n: number): number => (whole.get(n) as Measurement).nsPerOp;
  // "Per CPU" at 64 CPUs is mostly the fixed cost of loading a module; the marginal cost per added CPU says
  // whether the per-CPU work stays flat.
  const marginalLow = (t(1024) - t(64)) / (1024 - 64);
  const marginalHigh = (t(8192) - t(1024)) / (8192 - 1024);
  const fixed = t(64) - 64 * marginalLow;
  targets.push(check('insmod kvm0 (enable_virt_at_load=1) on 8,192 CPUs < 20 ms', fmtNs(t(8192)), t(8192), 20e6));
  targets.push(
    check(
      'insmod kvm0: flat per CPU from 64 to 8,192 (marginal cost per CPU, 1,024→8,192 vs 64→1,024, ≤ 1.5×)',
      `${fmtNs(marginalHigh)} vs ${fmtNs(marginalLow)} per added CPU (${fmtFactor(marginalHigh / marginalLow)}); fixed part ≈ ${fmtNs(Math.max(0, fixed))}`,
      marginalHigh / marginalLow,
      1.5,
    ),
  );

  // ---- KVM_CREATE_VM + 4 × KVM_CREATE_VCPU with N VMs alive ----
  const big = b.quick ? 1000 : 10_000;
  for (const layout of ['one VMM process', 'one process per VM'] as const) {
    let base: { label: string; m: Measurement } | undefined;
    for (const alive of [10, big]) {
      const h = makeHost(intel(), 64);
      h.modprobe(kvm({ postfix: '0' }));
      const shared = vmmProcess(h, 1 << 20);
      const sharedSys = openDev(shared, 'kvm0');
      const createIn = (proc: Process, sys: number): number[] => {
        const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
        const fds = [vm];
        for (let id = 0; id < 4; id++) fds.push(proc.ioctl(vm, KVM_CREATE_VCPU, id));
        return fds;
      };
      for (let i = 0; i < alive; i++) {
        if (layout === 'one VMM process') createIn(shared, sharedSys);
        else {
          const p = vmmProcess(h);
          createIn(p, openDev(p, 'kvm0'));
        }
      }
      let proc: Process = shared;
      let sys = sharedSys;
      let fds: number[] = [];
      const m = measure(
        b,
        `create VM @${alive} ${layout}`,
        () => {
          fds = createIn(proc, sys);
        },
        {
          time: b.quick ? 2 : 150,
          iterations: b.quick ? 3 : 50,
          warmupTime: b.quick ? 1 : 20,
          warmupIterations: b.quick ? 1 : 5,
          beforeEach:
            layout === 'one VMM process'
              ? undefined
              : () => {
                  proc = vmmProcess(h);
                  sys = openDev(proc, 'kvm0');
                },
          afterEach: () => {
            if (layout === 'one VMM process') for (const fd of fds.reverse()) proc.close(fd);
            else proc.kill();
          },
        },
      );
      const inst = kvmInstance(h, 'kvm0');
      if (inst.vms.size !== alive) throw new Error(`create VM: ${inst.vms.size} VMs alive, expected ${alive}`);
      const v = `${alive.toLocaleString('en-US')} VMs alive`;
      rows.push(row(GROUP, `KVM_CREATE_VM + 4×KVM_CREATE_VCPU (${layout})`, v, m, base, { note: layout === 'one VMM process' ? `fd table of ${(alive * 5 + 1).toLocaleString('en-US')} fds` : 'each VMM has 1 + 5 fds' }));
      points.push({ series: `create VM + 4 vCPUs (${layout})`, size: alive, nsPerUnit: m.nsPerOp });
      if (base !== undefined) {
        targets.push(check(`KVM_CREATE_VM + 4 vCPUs, ${big.toLocaleString('en-US')} vs 10 VMs alive, ${layout}: ratio near 1 (≤ 1.5)`, `${fmtFactor(m.nsPerOp / base.m.nsPerOp)} (${fmtNs(m.nsPerOp)} vs ${fmtNs(base.m.nsPerOp)})`, m.nsPerOp / base.m.nsPerOp, 1.5));
      }
      base ??= { label: `10 VMs alive, ${layout}`, m };
    }
  }

  // ---- memory per VM and per vCPU ----
  {
    const n = b.quick ? 1000 : 10_000;
    const h = makeHost(intel(), 64);
    h.modprobe(kvm({ postfix: '0' }));
    const inst = kvmInstance(h, 'kvm0');
    const proc = vmmProcess(h, 1 << 20);
    const sys = openDev(proc, 'kvm0');
    // Warm every path once so code and one-off caches are not counted.
    const warm = proc.ioctl(sys, KVM_CREATE_VM, 0);
    proc.close(proc.ioctl(warm, KVM_CREATE_VCPU, 0));
    proc.close(warm);
    const vmFds: number[] = new Array<number>(n);
    const before = usedBytes();
    for (let i = 0; i < n; i++) vmFds[i] = proc.ioctl(sys, KVM_CREATE_VM, 0);
    const afterVms = usedBytes();
    const perVm = (afterVms - before) / n;
    for (const fd of vmFds) proc.close(fd);
    const hosts = Array.from({ length: 10 }, () => proc.ioctl(sys, KVM_CREATE_VM, 0));
    const beforeVcpus = usedBytes();
    const vcpuFds: number[] = [];
    for (const vm of hosts) for (let id = 0; id < n / 10; id++) vcpuFds.push(proc.ioctl(vm, KVM_CREATE_VCPU, id));
    const afterVcpus = usedBytes();
    const perVcpu = (afterVcpus - beforeVcpus) / n;
    // The kvm_run area is not allocated until the first mmap (or KVM_RUN).
    const lazy = [...inst.allVcpus()].every((v) => !v.runAllocated);
    mapRun(proc, vcpuFds[0] as number);
    const mapped = [...inst.allVcpus()].filter((v) => v.runAllocated).length;
    if (!lazy || mapped !== 1) throw new Error(`kvm_run area: allocated before mmap (${!lazy}), ${mapped} allocated after one mmap`);
    if (checkInvariants(h).length > 0) throw new Error('memory: invariants broken');
    const mem = (bytes: number): Measurement => ({ nsPerOp: bytes, meanNsPerOp: bytes, rme: 0, samples: 1 });
    rows.push(row(GROUP, 'memory per VM (KVM_CREATE_VM)', `heap delta over ${n.toLocaleString('en-US')} VMs`, mem(perVm), { label: 'target 4 KiB', m: mem(4096) }, { unit: 'byte', note: 'bytes per VM (ns/op column); includes the VM fd; ratio to the 4 KiB budget' }));
    rows.push(row(GROUP, 'memory per vCPU (KVM_CREATE_VCPU)', `heap delta over ${n.toLocaleString('en-US')} vCPUs`, mem(perVcpu), { label: 'target 2 KiB', m: mem(2048) }, { unit: 'byte', note: 'bytes per vCPU (ns/op column); includes the vCPU fd; kvm_run not allocated; ratio to the 2 KiB budget' }));
    targets.push(check('memory per VM ≤ 4 KiB', `${perVm.toFixed(0)} bytes`, perVm, 4096));
    targets.push(check('memory per vCPU ≤ 2 KiB (kvm_run allocated at first mmap)', `${perVcpu.toFixed(0)} bytes`, perVcpu, 2048));
  }
  return { rows, targets, points };
}
