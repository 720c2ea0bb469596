/**
 * Where the time of one KVM_RUN round trip goes: the whole ioctl, then each of its pieces timed on its own, on
 * the same vCPU and host as benchmark 4 (Intel, same CPU, no listener). A tool for whoever makes KVM_RUN
 * faster, not a benchmark with targets: the pieces do not add up to the whole (V8 inlines differently when a
 * piece runs alone), but a piece that grows shows where to look.
 *
 *   npx tsx --conditions=@vac/source bench/kvm-run-parts.ts          (Intel)
 *   VENDOR=amd npx tsx --conditions=@vac/source bench/kvm-run-parts.ts
 *
 * Prints the fastest of 5 rounds of 2,000,000 calls per piece, in ns of CPU time (`process.cpuUsage`, so that other
 * processes on a loaded machine do not count; Node's own GC and compiler threads do).
 */
import { kvmInstance, KVM_EXIT_IO, KVM_RUN, runGuest, type KvmInstance } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { runRig } from './suites/kvm-run.js';

const rig = runRig(process.env['VENDOR'] === 'amd' ? amd() : intel(), 8);
const { host, proc, fd, run, vcpu: v } = rig;
proc.setAffinity(0);
const inst = kvmInstance(host, 'kvm0');
const vac = inst.vac;
const quantum = host.scheduler.quantum;
const N = 2_000_000;
const ALL_ONES = (1n << 64n) - 1n;

const pieces: Record<string, () => void> = {
  'proc.ioctl(KVM_RUN) + reading the exit': () => {
    let n = 0;
    for (let i = 0; i < N; i++) {
      proc.ioctl(fd, KVM_RUN, 0);
      if (run.exit_reason === KVM_EXIT_IO) n += run.io.port + (run.bytes[run.io.data_offset] ?? 0);
    }
    if (n !== N * (0x3f8 + 0x41)) throw new Error('not one I/O exit per run');
  },
  'proc.ioctl(KVM_RUN)': () => {
    for (let i = 0; i < N; i++) proc.ioctl(fd, KVM_RUN, 0);
  },
  'Vcpu.runSync (no ioctl layer)': () => {
    for (let i = 0; i < N; i++) v.runSync(0, quantum, 1e9);
  },
  'runGuest (interpreter step)': () => {
    for (let i = 0; i < N; i++) runGuest(v.regs, v.vm.memslots, quantum, v.exit);
  },
  'vcpu_load + vcpu_put': () => {
    for (let i = 0; i < N; i++) {
      v.load(0);
      v.put(0);
    }
  },
  'vendor load + put (VMCS / VMCB)': () => {
    for (let i = 0; i < N; i++) {
      v.vendor.load(0);
      v.vendor.put(0);
    }
  },
  'vendor prepareEntry': () => {
    v.vendor.load(0);
    for (let i = 0; i < N; i++) v.vendor.prepareEntry(0);
    v.vendor.put(0);
  },
  'vendor enter + exit (VMRESUME / VMRUN)': () => {
    v.vendor.load(0);
    for (let i = 0; i < N; i++) {
      v.vendor.enter(0);
      v.vendor.exit(0);
    }
    v.vendor.put(0);
  },
  'VAC vcpuLoad + vcpuPut': () => {
    for (let i = 0; i < N; i++) {
      vac.vcpuLoad(0);
      vac.vcpuPut(0);
    }
  },
  'user-return MSR set': () => {
    for (let i = 0; i < N; i++) vac.setUserReturnMsr(0, 0, 0n, ALL_ONES);
  },
  'user-return MSRs: guest values + return to user': () => {
    for (let i = 0; i < N; i++) {
      inst.loadGuestUserReturnMsrs(0);
      vac.returnToUser(0);
    }
  },
  'event clock: 4 × stamp': () => {
    const ev = host.events;
    let n = 0;
    for (let i = 0; i < N; i++) {
      n += ev.stamp('vcpu:load') + ev.stamp('vcpu:put') + ev.stamp('vcpu:exit') + ev.stamp('l1d:flush');
    }
    if (n !== -4 * N) throw new Error('someone listens');
  },
};

const best = new Map<string, number>();
for (let round = 0; round < 5; round++) {
  for (const [name, run] of Object.entries(pieces)) {
    const t0 = process.cpuUsage();
    run();
    const used = process.cpuUsage(t0);
    const ns = ((used.user + used.system) * 1000) / N;
    best.set(name, Math.min(best.get(name) ?? Infinity, ns));
  }
}
for (const [name, ns] of best) process.stdout.write(`${name.padEnd(50)} ${ns.toFixed(1).padStart(7)} ns\n`);
