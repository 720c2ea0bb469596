/**
 * 3. PMI dispatch: which KVM instance's vCPU runs on the CPU a PMI hit, and that instance's callback.
 *
 * The host has kvm0 loaded and a vCPU thread inside KVM_RUN on CPU 1, in guest mode (a spinning guest,
 * one scheduler tick in). Rows:
 *
 * - baseline (the limit): a per-CPU array of callbacks, `callbacks[cpu](cpu)`, each returning the guest
 *   state of its CPU from a typed array;
 * - VAC's registry: `vac.internals.irq.perfCallbacks.state(cpu)`, the `state()` perf calls — running
 *   instance of the CPU → `KvmInstance.perfGuestState(cpu)` → its vCPU → in guest mode? A pure question, as
 *   `kvm_guest_state` is (perf asks it several times per sample). This is the row the target is checked on;
 * - `host.raisePmi(cpu)`: perf's whole PMI path in the model — `state()`, then `getIp()` (the guest RIP as
 *   a bigint) and `attribute()` (the NMI-induced VM exit, once per PMI: `nmi_exits`, the `pmi:guest` event
 *   offered, the event clock ticked), and a result object; its baseline (issue 14) is a lean per-CPU owner lookup
 *   that builds the same answer — the owner of the CPU, in guest mode?, its RIP as a bigint, its NMI exit counted,
 *   the clock ticked, the same result object;
 * - eventemitter3 5.0.1 `emit('pmi', cpu)` and node:events `emit('pmi', cpu)`, one listener each that
 *   reads the same typed array.
 */
import { EventEmitter as NodeEmitter } from 'node:events';
import { PERF_GUEST_ACTIVE, vacOf, type Host } from '@vac/core';
import { KVM_RUN, kvm } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { EventEmitter } from 'eventemitter3';
import { check, fmtFactor, measure, row, sink, type Budget, type Row, type TargetCheck } from '../lib/harness.js';
import { makeHost, makeVm, openDev, vmmProcess } from '../lib/guest.js';

const GROUP = '3. PMI dispatch';

/** A guest that never exits: `inc ax; jmp $-3`. */
const SPIN = [0x40, 0xeb, 0xfd];

/** A host with kvm0 and one vCPU in guest mode on `cpu` (a thread inside KVM_RUN). */
export function hostWithGuestOn(cpu: number, cpus = 8): Host {
  const host = makeHost(intel(), cpus);
  host.modprobe(kvm({ postfix: '0' }));
  const proc = vmmProcess(host);
  const vm = makeVm(proc, openDev(proc, 'kvm0'), SPIN, 1);
  const fd = (vm.vcpus[0] as { fd: number }).fd;
  host.scheduler.spawn(proc, { cpu, name: 'vcpu0' }, function* (t) {
    yield* t.ioctl(fd, KVM_RUN, 0);
  });
  host.scheduler.tick();
  return host;
}

/** Run the group. */
export function runPmi(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const rows: Row[] = [];
  const batch = 1000;
  const cpus = 8;
  const cpu = 1;
  const host = hostWithGuestOn(cpu, cpus);
  const vac = vacOf(host);
  if (vac === undefined) throw new Error('vac is not loaded');
  const perf = vac.internals.irq.perfCallbacks;
  // Correctness: the PMI is the guest's, attributed to kvm0's vCPU.
  const probe = host.raisePmi(cpu);
  if (probe.state !== PERF_GUEST_ACTIVE || probe.attributedTo !== 'kvm0/vm1/vcpu0' || host.raisePmi(0).state !== 0) {
    throw new Error(`PMI check: ${JSON.stringify(probe, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
  }

  const inGuest = new Uint8Array(cpus);
  inGuest[cpu] = 1;

  // Baseline: per-CPU array of callbacks.
  const callbacks: Array<(c: number) => number> = Array.from({ length: cpus }, () => (c: number) => (inGuest[c] === 1 ? PERF_GUEST_ACTIVE : 0));
  const mDirect = measure(
    b,
    'direct',
    () => {
      let acc = 0;
      for (let i = 0; i < batch; i++) acc += (callbacks[cpu] as (c: number) => number)(cpu);
      sink.n += acc;
    },
    { opsPerCall: batch },
  );
  const base = { label: 'per-CPU callback array', m: mDirect };
  rows.push(row(GROUP, 'per-CPU callback array (the limit; baseline)', 'one PMI', mDirect, undefined, { note: 'callbacks[cpu](cpu)' }));

  const mVac = measure(
    b,
    'vac perf state',
    () => {
      let acc = 0;
      for (let i = 0; i < batch; i++) acc += perf.state(cpu);
      sink.n += acc;
    },
    { opsPerCall: batch },
  );
  rows.push(row(GROUP, "VAC registry: perfCallbacks.state(cpu) (ours)", 'one PMI', mVac, base, { note: 'CPU → running instance → KvmInstance.perfGuestState → vCPU' }));

  // The lean whole path: what raisePmi answers, from a per-CPU owner array, with the same accounting.
  const owners: Array<{ inGuest: boolean; rip: number; nmiExits: number; readonly label: string } | undefined> = Array.from({ length: cpus }, () => undefined);
  owners[cpu] = { inGuest: true, rip: 0x1000, nmiExits: 0, label: 'kvm0/vm1/vcpu0' };
  const clock = { seq: 0 };
  const leanPmi = (c: number): { cpu: number; state: number; ip: bigint | undefined; callbacks: string | undefined; attributedTo: string | undefined } => {
    const o = owners[c];
    if (o === undefined || !o.inGuest) return { cpu: c, state: 0, ip: undefined, callbacks: 'vac', attributedTo: undefined };
    o.nmiExits++;
    clock.seq++;
    return { cpu: c, state: PERF_GUEST_ACTIVE, ip: BigInt(o.rip), callbacks: 'vac', attributedTo: o.label };
  };
  // Both whole-path loops keep every answer (the optimiser may not drop the object, nor the bigint in it).
  const kept: unknown[] = new Array<unknown>(64).fill(undefined);
  const mLean = measure(
    b,
    'lean pmi',
    () => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const r = leanPmi(cpu);
        acc += r.state;
        kept[i & 63] = r;
      }
      sink.n += acc;
    },
    { opsPerCall: batch },
  );
  const leanBase = { label: 'lean per-CPU owner lookup, same answer', m: mLean };
  rows.push(row(GROUP, 'lean per-CPU owner lookup building the same answer (baseline of the whole path)', 'one PMI', mLean, base, { note: 'owners[cpu] → in guest? → BigInt(rip), nmi_exits++, clock++ → result object' }));

  const mRaise = measure(
    b,
    'host.raisePmi',
    () => {
      let acc = 0;
      for (let i = 0; i < batch; i++) {
        const r = host.raisePmi(cpu);
        acc += r.state;
        kept[i & 63] = r;
      }
      sink.n += acc;
    },
    { opsPerCall: batch },
  );
  rows.push(row(GROUP, 'host.raisePmi(cpu) (ours, whole perf path)', 'one PMI', mRaise, leanBase, { note: 'state() + getIp() + attribute() (the NMI exit: counted, pmi:guest offered) + result object' }));

  const ee3 = new EventEmitter();
  let acc3 = 0;
  ee3.on('pmi', (c: number) => {
    acc3 += inGuest[c] as number;
  });
  const mEe3 = measure(
    b,
    'eventemitter3',
    () => {
      for (let i = 0; i < batch; i++) ee3.emit('pmi', cpu);
      sink.n += acc3;
    },
    { opsPerCall: batch },
  );
  rows.push(row(GROUP, 'eventemitter3 5.0.1 emit, one listener', 'one PMI', mEe3, base));

  const ne = new NodeEmitter();
  let accN = 0;
  ne.on('pmi', (c: number) => {
    accN += inGuest[c] as number;
  });
  const mNode = measure(
    b,
    'node:events',
    () => {
      for (let i = 0; i < batch; i++) ne.emit('pmi', cpu);
      sink.n += accN;
    },
    { opsPerCall: batch },
  );
  rows.push(row(GROUP, `node:events emit, one listener (node ${process.versions.node})`, 'one PMI', mNode, base));

  const targets: TargetCheck[] = [
    check('the whole PMI path (host.raisePmi) ≤ 2× a lean per-CPU owner lookup building the same answer', `${fmtFactor(mRaise.nsPerOp / mLean.nsPerOp)} (${mRaise.nsPerOp.toFixed(1)} vs ${mLean.nsPerOp.toFixed(1)} ns)`, mRaise.nsPerOp / mLean.nsPerOp, 2),
    check('PMI dispatch ≤ 2× the direct per-CPU call', `${fmtFactor(mVac.nsPerOp / mDirect.nsPerOp)} (${mVac.nsPerOp.toFixed(1)} vs ${mDirect.nsPerOp.toFixed(1)} ns)`, mVac.nsPerOp / mDirect.nsPerOp, 2),
    check('PMI dispatch ≥ 2× faster than eventemitter3 emit', `${fmtFactor(mEe3.nsPerOp / mVac.nsPerOp)} faster (${mVac.nsPerOp.toFixed(1)} vs ${mEe3.nsPerOp.toFixed(1)} ns)`, mEe3.nsPerOp / mVac.nsPerOp, 2, false),
  ];
  return { rows, targets };
}
