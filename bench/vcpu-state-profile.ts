/**
 * Where a vCPU's save/restore spends its time, ioctl by ioctl (issue 11). Not part of the bench suite (no rows, no
 * targets); process CPU time throughout (`process.cpuUsage`), the minimum over `reps` repetitions of each loop:
 *
 * - the whole `saveVcpu` + `restoreVcpu`, and the time the garbage collector spent in those loops (`gc` performance
 *   entries);
 * - each ioctl of the sequence repeated on its own with the argument it had in the sequence ("alone");
 * - the recorded ioctls replayed in their order with their arguments, without the helpers around them;
 * - each ioctl's marginal cost inside the sequence ("in seq"): the sequence with that one ioctl issued a second time
 *   right after itself, minus the plain sequence.
 *
 * `npx --yes pnpm@10.34.9 exec tsx --conditions=@vac/source bench/vcpu-state-profile.ts [rounds] [intel|amd|both] [chip|nochip] [reps]`
 */
import { PerformanceObserver } from 'node:perf_hooks';
import * as K from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import type { HostOptions, Process } from '@vac/core';
import { OUT_LOOP, addMemory, makeHost, makeVm, mapRun, openDev, resetVcpu, vmmProcess } from './lib/guest.js';

const names = new Map<number, string>();
for (const [k, v] of Object.entries(K)) if (k.startsWith('KVM_') && typeof v === 'number' && !names.has(v) && v > 0xffff) names.set(v, k);

const rounds = Number(process.argv[2] ?? 2000);
const which = process.argv[3] ?? 'both';
const chip = (process.argv[4] ?? 'nochip') === 'chip';
const reps = Number(process.argv[5] ?? 5);

let gcNs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcNs += e.duration * 1e6;
}).observe({ entryTypes: ['gc'] });

/** The process's CPU time in ns (user + system). */
function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

/** The minimum over `reps` runs of `fn` (`rounds` calls each) of the CPU time per call, and the GC time of that run. */
function minPerCall(fn: () => void): { ns: number; gc: number } {
  for (let i = 0; i < rounds; i++) fn();
  let best = { ns: Infinity, gc: 0 };
  for (let r = 0; r < reps; r++) {
    const g = gcNs;
    const t = cpuNs();
    for (let i = 0; i < rounds; i++) fn();
    const ns = (cpuNs() - t) / rounds;
    // the gc entries are delivered asynchronously; what they say is read after the loop (approximate)
    if (ns < best.ns) best = { ns, gc: (gcNs - g) / rounds };
  }
  return best;
}

function vcpu(proc: Process, sys: number): number {
  if (!chip) {
    const vm = makeVm(proc, sys, OUT_LOOP, 1);
    const fd = (vm.vcpus[0] as { fd: number }).fd;
    proc.ioctl(fd, K.KVM_RUN, 0);
    return fd;
  }
  const vm = proc.ioctl(sys, K.KVM_CREATE_VM, 0);
  proc.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0);
  addMemory(proc, vm, OUT_LOOP);
  const fd = proc.ioctl(vm, K.KVM_CREATE_VCPU, 0);
  mapRun(proc, fd);
  resetVcpu(proc, fd);
  proc.ioctl(fd, K.KVM_RUN, 0);
  return fd;
}

function us(ns: number): string {
  return (ns / 1000).toFixed(2).padStart(7);
}

interface Call {
  fd: number;
  req: number;
  arg: unknown;
}

const vendors: Array<[string, HostOptions['hardware']]> = [];
if (which !== 'amd') vendors.push(['Intel', intel()]);
if (which !== 'intel') vendors.push(['AMD', amd()]);
for (const [name, hw] of vendors) {
  const host = makeHost(hw, 2);
  host.modprobe(K.kvm({ postfix: '0' }));
  const proc = vmmProcess(host);
  const sys = openDev(proc, 'kvm0');
  const fd = vcpu(proc, sys);
  const msrs = K.msrIndexList(proc, sys);
  const orig = proc.ioctl.bind(proc) as (fd: number, req: number, arg?: unknown) => number;
  const calls: Call[] = [];
  let recording = true;
  let twice = -1; // the index in the sequence of the call to issue twice
  let at = 0;
  (proc as { ioctl: unknown }).ioctl = (f: number, req: number, arg?: unknown): number => {
    if (recording) calls.push({ fd: f, req, arg: arg instanceof Uint8Array ? arg.slice() : arg });
    if (at++ === twice) orig(f, req, arg);
    return orig(f, req, arg);
  };
  const saveRestore = (): void => {
    at = 0;
    K.restoreVcpu(proc, fd, K.saveVcpu(proc, sys, fd, 0, msrs));
  };
  saveRestore();
  recording = false;
  const save = (): void => {
    at = 0;
    K.saveVcpu(proc, sys, fd, 0, msrs);
  };
  const saved = K.saveVcpu(proc, sys, fd, 0, msrs);
  const restore = (): void => {
    at = 0;
    K.restoreVcpu(proc, fd, saved);
  };
  const whole = minPerCall(saveRestore);
  // The recorded ioctls replayed in their order with their arguments, without the helpers around them.
  const replayArgs = calls.map((c) => (c.arg instanceof Uint8Array ? c.arg.slice() : c.arg));
  const replay = minPerCall(() => {
    for (let i = 0; i < calls.length; i++) {
      const c = calls[i] as Call;
      try {
        orig(c.fd, c.req, replayArgs[i]);
      } catch {
        // KVM_GET_LAPIC without an in-kernel LAPIC
      }
    }
  });
  const s = minPerCall(save);
  const r = minPerCall(restore);
  console.log(`\n${name}${chip ? ' (in-kernel irqchip)' : ''}: ${calls.length} ioctls per save+restore, ${reps} × ${rounds} rounds, min CPU time`);
  console.log(`  save+restore ${us(whole.ns)} µs (GC ${us(whole.gc)}), save alone ${us(s.ns)} (GC ${us(s.gc)}), restore alone ${us(r.ns)} (GC ${us(r.gc)})`);
  console.log(`  the same ${calls.length} ioctls replayed in order without the helpers: ${us(replay.ns)} µs`);
  if (process.argv[6] === 'whole') continue;
  console.log(`  ${'#'.padStart(3)} ${'ioctl'.padEnd(26)} ${'in seq'.padStart(7)} ${'alone'.padStart(7)}  µs`);
  let sumSeq = 0;
  let sumAlone = 0;
  calls.forEach((c, i) => {
    let seq = NaN;
    if (process.argv[6] !== 'alone') {
      twice = i;
      seq = minPerCall(saveRestore).ns - whole.ns;
      twice = -1;
    }
    const arg = c.arg instanceof Uint8Array ? c.arg.slice() : c.arg;
    const alone = minPerCall(() => {
      try {
        orig(c.fd, c.req, arg);
      } catch {
        // an ioctl the sequence expects to fail (KVM_GET_LAPIC without an in-kernel LAPIC)
      }
    }).ns;
    sumSeq += seq;
    sumAlone += alone;
    console.log(`  ${String(i).padStart(3)} ${(names.get(c.req) ?? `0x${c.req.toString(16)}`).padEnd(26)} ${us(seq)} ${us(alone)}`);
  });
  console.log(`  ${''.padStart(3)} ${'sum'.padEnd(26)} ${us(sumSeq)} ${us(sumAlone)}`);
}
