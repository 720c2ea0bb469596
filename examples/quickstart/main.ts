/**
 * Quickstart: an 8-CPU Intel host with VAC and two KVM modules that differ in their L1TF mitigation.
 * Creates VMs on both, runs real guest code on every CPU, and prints what each module holds.
 * Exits non-zero if anything it shows does not hold.
 */
import { checkInvariants, createHost, vacOf, type Process } from '@vac/core';
import {
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_GET_API_VERSION,
  KVM_RUN,
  KvmRunView,
  asm16,
  createRealModeVm,
  kvm,
  kvmInstance,
  type KvmInstance,
} from '@vac/kvm';
import { VPIDS, intel } from '@vac/vmx';
import { Checks, table } from '@vac/example-support';

const checks = new Checks();
const expect = checks.expect;

// 1. The host and its modules: `modprobe kvm0` loads vac first.
const host = createHost({ cpus: 8, hardware: intel() });
const kvm0 = host.modprobe(kvm({ postfix: '0', version: '6.12' }));
const kvm1 = host.modprobe(kvm({ postfix: '1', version: '6.12-l1tf' }), { vmentry_l1d_flush: 'always' });

// 2. A VMM process (not root, in group kvm) creates VMs through the ABI.
const vmm = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });

/**
 * The guest counts down from 4096 (several time slices, so several VM entries), then prints the digit in BL
 * and halts (14 bytes of real-mode code, assembled by asm16).
 */
const GUEST = asm16()
  .mov('cx', 0x1000)
  .label('wait').loop('wait')
  .mov('al', 'bl').add('al', '0'.charCodeAt(0))
  .mov('dx', 0x3f8).out('dx', 'al')
  .hlt()
  .bytes();

interface GuestVcpu {
  readonly dev: string;
  readonly fd: number;
  readonly run: KvmRunView;
  readonly cpu: number;
  readonly digit: number;
}

/** One VM with `n` vCPUs on `/dev/<dev>`; guest memory at 0x1000 holds GUEST. */
function createGuest(proc: Process, dev: string, n: number, firstCpu: number): GuestVcpu[] {
  const digitOf = (id: number): number => (firstCpu + id) % 10;
  const { sys, vcpus } = createRealModeVm(proc, `/dev/${dev}`, { code: GUEST, vcpus: n, regs: (id) => ({ rbx: BigInt(digitOf(id)) }) });
  expect(proc.ioctl(sys, KVM_GET_API_VERSION) === 12, 'KVM_GET_API_VERSION is 12');
  return vcpus.map(({ id, fd, run }) => ({ dev, fd, run, cpu: (firstCpu + id) % host.cpus.length, digit: digitOf(id) }));
}

const vcpus = [...createGuest(vmm, 'kvm0', 2, 0), ...createGuest(vmm, 'kvm0', 2, 2), ...createGuest(vmm, 'kvm1', 4, 4)];

// 3. Run every vCPU on its CPU until it halts.
for (const v of vcpus) {
  vmm.setAffinity(v.cpu);
  let printed = '';
  for (;;) {
    vmm.ioctl(v.fd, KVM_RUN, 0);
    if (v.run.exit_reason === KVM_EXIT_IO) printed += String.fromCharCode(v.run.bytes[v.run.io.data_offset] ?? 0);
    else break;
  }
  expect(v.run.exit_reason === KVM_EXIT_HLT, `${v.dev} vCPU on CPU ${v.cpu} ends with KVM_EXIT_HLT`);
  expect(printed === String(v.digit), `${v.dev} vCPU on CPU ${v.cpu} prints ${v.digit} (got ${JSON.stringify(printed)})`);
}

// 4. The account.
const vac = vacOf(host);
if (vac === undefined) throw new Error('vac is not loaded');

console.log('\n$ lsmod');
table(host.lsmod().map((m) => ({ Module: m.name, Version: m.version ?? '', 'Used by': `${m.refcount} ${m.usedBy.join(',')}`.trim() })));

console.log('\n$ ls -l /dev');
table(host.devfs.list().map((d) => (d.type === 'char' ? { Node: d.path, Device: `${d.major}:${d.minor}`, Owner: `${d.uid}:${d.gid}`, Mode: d.mode.toString(8) } : { Node: d.path, Device: `-> ${d.target}`, Owner: '', Mode: '' })));

console.log('\nVPIDs (one host-wide allocator in VAC)');
table(vac.resource(VPIDS).holders().map((h) => ({ VPID: h.vpid, vCPU: h.holder })));

const stats = (inst: KvmInstance): Record<string, string | number> => {
  let entries = 0;
  let l1d = 0;
  const cpus = new Set<number>();
  for (const v of inst.allVcpus()) {
    entries += v.stats.entries;
    l1d += v.vendor.stats['l1dFlushes'] ?? 0;
    cpus.add(v.lastCpu);
  }
  return { Module: inst.name, 'L1D flush': host.readParam(inst.name, 'vmentry_l1d_flush'), VMs: inst.vms.size, 'VM entries': entries, 'L1D flushes': l1d, CPUs: [...cpus].sort().join(',') };
};
console.log('\nPer module');
table([stats(kvmInstance(host, 'kvm0')), stats(kvmInstance(host, 'kvm1'))]);

console.log(`\nVAC: usage count ${vac.usageCount} (${vac.usageHolders().map(([h, n]) => `${h}×${n}`).join(', ')}); ` + `CPUs enabled ${vac.cpus().filter((c) => c.enabled).length}/${host.cpus.length}`);

const violations = checkInvariants(host);
expect(violations.length === 0, `invariants: ${violations.map((v) => v.message).join('; ')}`);
const vpidList = vac.resource(VPIDS).holders().map((h) => h.vpid);
expect(new Set(vpidList).size === vpidList.length && vpidList.length === vcpus.length, 'every vCPU has its own VPID');
const l1d0 = stats(kvmInstance(host, 'kvm0'))['L1D flushes'];
const l1d1 = stats(kvmInstance(host, 'kvm1'))['L1D flushes'];
expect(typeof l1d1 === 'number' && typeof l1d0 === 'number' && l1d1 > l1d0, 'kvm1 (always) flushes L1D more than kvm0 (cond)');

checks.conclude('All checks hold: VPIDs unique across modules, mitigations differ per module, invariants clean.');
