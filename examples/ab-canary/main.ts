/**
 * A/B canary across KVM modules, as the multi-KVM talk at LPC 2023 proposed: the host runs its VMs on kvm0 (Linux
 * 6.12, loaded with the L1TF flush off: `vmentry_l1d_flush=never`) and loads a new build beside it as kvm1 — Linux
 * 6.18 with its defaults, so the flush is back to `cond` — then starts a share of the VMs (one in four) on kvm1. Every VMM reads its vCPU's statistics through
 * KVM_GET_STATS_FD, the host sums them per module and compares the arms per vCPU: exits by reason, L1D flushes,
 * halts, and the failed entries the VMMs saw (KVM_EXIT_FAIL_ENTRY; Linux has no statistic for them).
 *
 * Each guest prints a few bytes on COM1 and halts; every VM does the same work, so any difference between the
 * arms is the module's. Exits non-zero if anything it shows does not hold.
 */
import { createHost, type Process } from '@vac/core';
import { KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_IO, KVM_RUN, LINUX_6_18, canaryArms, createRealModeVm, kvm, readKvmStats, type KvmStatValues } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { Checks, table } from '@vac/example-support';

const checks = new Checks();
const expect = checks.expect;

const host = createHost({ cpus: 4, hardware: intel() });
host.modprobe(kvm({ postfix: '0', version: '6.12' }), { vmentry_l1d_flush: 'never' });
host.modprobe(kvm({ postfix: '1', build: LINUX_6_18 }));

/** The guest: `mov dx, 0x3f8`, then `out dx, al` three times, then `hlt`. */
const GUEST = [0xba, 0xf8, 0x03, 0xee, 0xee, 0xee, 0xf4];
const NR_VMS = 8;

const samples: Array<{ module: string; stats: KvmStatValues; failedEntries: number }> = [];
for (let n = 0; n < NR_VMS; n++) {
  const module = n % 4 === 3 ? 'kvm1' : 'kvm0'; // the canary share: one VM in four
  const proc: Process = host.spawn({ uid: 1000, groups: ['kvm'], name: `vmm${n}` });
  const vm = createRealModeVm(proc, `/dev/${module}`, { code: GUEST });
  const vcpu = vm.vcpus[0]!;
  let failedEntries = 0;
  for (let i = 0; i < 16; i++) {
    proc.ioctl(vcpu.fd, KVM_RUN, 0);
    const exit = vcpu.run.exit_reason;
    if (exit === KVM_EXIT_FAIL_ENTRY) failedEntries++;
    if (exit === KVM_EXIT_HLT) break;
    expect(exit === KVM_EXIT_IO, `VM ${n}: exit ${exit}, expected I/O or HLT`);
  }
  samples.push({ module, stats: readKvmStats(proc, vcpu.fd), failedEntries });
}

const arms = canaryArms(samples);
const row = (k: string): Record<string, string | number> => ({ statistic: k, ...Object.fromEntries(arms.map((a) => [`${a.module} per vCPU`, a.mean[k] ?? 0])) });
console.log(`${NR_VMS} VMs: ${arms.map((a) => `${a.vcpus} on ${a.module}`).join(', ')} (kvm0: linux-6.12, vmentry_l1d_flush=never; kvm1: linux-6.18, cond)\n`);
table(['exits', 'io_exits', 'halt_exits', 'mmio_exits', 'signal_exits', 'l1d_flush', 'failed_entries'].map(row));

const [a, b] = arms;
expect(a?.module === 'kvm0' && a.vcpus === 6 && b?.module === 'kvm1' && b.vcpus === 2, 'six VMs on kvm0, two on kvm1');
// The same guest work on both arms: the exits agree; the L1D flushes are the module's difference.
for (const k of ['exits', 'io_exits', 'halt_exits']) expect(a?.mean[k] === b?.mean[k], `${k} differs between the arms`);
expect((b?.mean['l1d_flush'] ?? 0) > 0 && a?.mean['l1d_flush'] === 0, 'kvm1 (cond) flushes L1D, kvm0 (never) does not');
const verdict = (b?.mean['failed_entries'] ?? 0) <= (a?.mean['failed_entries'] ?? 0) && (b?.mean['exits'] ?? 0) <= (a?.mean['exits'] ?? 0);
console.log(`\ncanary: ${verdict ? 'kvm1 behaves as kvm0 (no more exits, no failed entries); its cost is the L1D flushes' : 'kvm1 differs: roll back'}`);

checks.conclude();
