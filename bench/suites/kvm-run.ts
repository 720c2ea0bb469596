/**
 * 4. KVM_RUN round trip through the public ABI: `proc.ioctl(vcpuFd, KVM_RUN, 0)` → `vcpu_load` → the
 * guest completes the previous `out` and executes `jmp; out dx,al` → `KVM_EXIT_IO` → `vcpu_put` → return.
 *
 * Baseline: the interpreter step alone, `runGuest(regs, memslots, quantum, exit)` on the very vCPU state and
 * memslots the ioctl uses (reached through `KvmInstance.allVcpus()`), so both execute the same two
 * instructions.
 *
 * Every timed run reads its exit from the `kvm_run` mapping as a VMM does (`exit_reason`, `io.port`, the data byte at
 * `io.data_offset`), and the batch checks that each run was one `KVM_EXIT_IO` on 0x3f8 writing 'A'.
 *
 * Cases: same CPU every run; a different CPU every run (`proc.setAffinity(cpu)` before each run: VMCS migration, TLB
 * flush request, VPID flush); with no event listener; with a trace recorder attached
 * (core's `recordEvents(host, { limit: 4096 })`: every event, the newest 4,096 kept in a ring). On an AMD host
 * too (VMCB, per-CPU ASIDs: a migration takes a new ASID).
 */
import { recordEvents, type Host, type HostOptions, type Process } from '@vac/core';
import { KVM_EXIT_IO, KVM_RUN, kvm, runGuest, type KvmInstance, type KvmRunView, type Vcpu } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { check, measure, row, sink, type Budget, type Measurement, type Row, type TargetCheck } from '../lib/harness.js';
import { OUT_LOOP, makeHost, makeVm, openDev, vmmProcess } from '../lib/guest.js';

const GROUP = '4. KVM_RUN round trip';

/** A host with kvm0 and one VM with one vCPU running {@link OUT_LOOP}. */
export interface RunRig {
  readonly host: Host;
  readonly proc: Process;
  readonly fd: number;
  readonly run: KvmRunView;
  readonly vcpu: Vcpu;
}

/** Build a {@link RunRig} on `hardware` with `cpus` CPUs. */
export function runRig(hardware: HostOptions['hardware'], cpus: number): RunRig {
  const host = makeHost(hardware, cpus);
  const mod = host.modprobe(kvm({ postfix: '0' }));
  const proc = vmmProcess(host);
  const vm = makeVm(proc, openDev(proc, 'kvm0'), OUT_LOOP, 1);
  const v = vm.vcpus[0] as { fd: number; run: KvmRunView };
  const inst = mod.exports as KvmInstance;
  const vcpu = [...inst.allVcpus()][0];
  if (vcpu === undefined) throw new Error('no vCPU');
  // Correctness: one run is one I/O exit on port 0x3f8 writing 'A'.
  proc.ioctl(v.fd, KVM_RUN, 0);
  if (v.run.exit_reason !== KVM_EXIT_IO || v.run.io.port !== 0x3f8 || v.run.bytes[v.run.io.data_offset] !== 0x41) {
    throw new Error(`KVM_RUN check: exit ${v.run.exit_reason}, port ${v.run.io.port}`);
  }
  return { host, proc, fd: v.fd, run: v.run, vcpu };
}

/** Core's trace recorder, bounded (a ring of the newest 4,096 events) so millions of runs fit in memory. */
export function attachRecorder(host: Host): () => void {
  const rec = recordEvents(host, { limit: 4096 });
  return () => {
    if (rec.size === 0) throw new Error('the trace recorder saw no event');
    rec.stop();
  };
}

/** Run the group. */
export function runKvmRun(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const rows: Row[] = [];
  const batch = 1000;
  const cpus = 8;

  const timeRuns = (rig: RunRig, name: string, migrate: boolean): Measurement => {
    const { proc, fd, run } = rig;
    let cpu = 0;
    proc.setAffinity(0);
    // What a VMM reads after each run: the exit reason, the port, the byte written (one OUT of 'A' to 0x3f8 each).
    const expected = batch * (0x3f8 + 0x41);
    const checkBatch = (n: number): void => {
      if (n !== expected) throw new Error(`${name}: not one KVM_EXIT_IO on 0x3f8 with 'A' per run`);
    };
    const m = measure(
      b,
      name,
      migrate
        ? () => {
            let n = 0;
            for (let i = 0; i < batch; i++) {
              cpu = cpu === cpus - 1 ? 0 : cpu + 1;
              proc.setAffinity(cpu);
              proc.ioctl(fd, KVM_RUN, 0);
              if (run.exit_reason === KVM_EXIT_IO) n += run.io.port + (run.bytes[run.io.data_offset] ?? 0);
            }
            checkBatch(n);
          }
        : () => {
            let n = 0;
            for (let i = 0; i < batch; i++) {
              proc.ioctl(fd, KVM_RUN, 0);
              if (run.exit_reason === KVM_EXIT_IO) n += run.io.port + (run.bytes[run.io.data_offset] ?? 0);
            }
            checkBatch(n);
          },
      { opsPerCall: batch },
    );
    if (run.exit_reason !== KVM_EXIT_IO) throw new Error(`${name}: the last run ended with exit ${run.exit_reason}`);
    return m;
  };

  const rig = runRig(intel(), cpus);
  const quantum = rig.host.scheduler.quantum;
  const { vcpu } = rig;
  const mInterp = measure(
    b,
    'runGuest',
    () => {
      let acc = 0;
      for (let i = 0; i < batch; i++) acc += runGuest(vcpu.regs, vcpu.vm.memslots, quantum, vcpu.exit);
      sink.n += acc;
    },
    { opsPerCall: batch },
  );
  const base = { label: 'runGuest only', m: mInterp };
  rows.push(row(GROUP, 'runGuest only (interpreter step; baseline)', 'out + jmp', mInterp, undefined, { note: 'same vCPU state and memslots' }));

  const mSame = timeRuns(rig, 'KVM_RUN same CPU', false);
  rows.push(row(GROUP, 'KVM_RUN via proc.ioctl (Intel)', 'same CPU, no listener', mSame, base));
  const mMig = timeRuns(rig, 'KVM_RUN migrating', true);
  rows.push(row(GROUP, 'KVM_RUN via proc.ioctl (Intel)', 'new CPU every run, no listener', mMig, base));
  const detach = attachRecorder(rig.host);
  const mSameRec = timeRuns(rig, 'KVM_RUN same CPU + recorder', false);
  rows.push(row(GROUP, 'KVM_RUN via proc.ioctl (Intel)', 'same CPU, trace recorder', mSameRec, base));
  const mMigRec = timeRuns(rig, 'KVM_RUN migrating + recorder', true);
  rows.push(row(GROUP, 'KVM_RUN via proc.ioctl (Intel)', 'new CPU every run, trace recorder', mMigRec, base));
  detach();

  const amdRig = runRig(amd(), cpus);
  const mAmd = timeRuns(amdRig, 'KVM_RUN AMD same CPU', false);
  rows.push(row(GROUP, 'KVM_RUN via proc.ioctl (AMD)', 'same CPU, no listener', mAmd, base));
  const mAmdMig = timeRuns(amdRig, 'KVM_RUN AMD migrating', true);
  rows.push(row(GROUP, 'KVM_RUN via proc.ioctl (AMD)', 'new CPU every run, no listener', mAmdMig, base));

  const perSec = (m: Measurement): string => `${(1e9 / m.nsPerOp / 1e6).toFixed(2)} M/s (${m.nsPerOp.toFixed(0)} ns)`;
  const targets: TargetCheck[] = [
    check('KVM_RUN same CPU, no listener: ≥ 5,000,000/s (≤ 200 ns)', perSec(mSame), mSame.nsPerOp, 200),
    check('KVM_RUN same CPU, no listener, exit read (Intel): ≤ 150 ns (issue 11)', perSec(mSame), mSame.nsPerOp, 150),
    check('KVM_RUN same CPU, no listener, exit read (AMD): ≤ 150 ns (issue 11)', perSec(mAmd), mAmd.nsPerOp, 150),
    check('KVM_RUN same CPU with a trace recorder: ≤ 3× that (≤ 600 ns)', `${perSec(mSameRec)}, ${(mSameRec.nsPerOp / mSame.nsPerOp).toFixed(2)}× the run without`, mSameRec.nsPerOp, 600),
    check('KVM_RUN migrating every run: ≥ 1,000,000/s (≤ 1,000 ns)', perSec(mMig), mMig.nsPerOp, 1000),
  ];
  return { rows, targets };
}
