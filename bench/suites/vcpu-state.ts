/**
 * 7. A vCPU's whole state read and written through the ABI: `saveVcpu` (KVM_GET_CPUID2, KVM_GET_REGS, KVM_GET_SREGS2,
 * KVM_GET_XSAVE, KVM_GET_VCPU_EVENTS, KVM_GET_MP_STATE, KVM_GET_DEBUGREGS, KVM_GET_TSC_KHZ, the MSR list and every
 * MSR) followed by `restoreVcpu` (the matching SETs, KVM_X86_SETUP_MCE and KVM_SET_MSRS), on a vCPU that has run.
 * The helpers pass each structure's C bytes (as a C VMM does); the MSR list is asked once, at start-up.
 *
 * Baseline: one KVM_GET_REGS + KVM_SET_REGS pair, the smallest state round trip. Target (issue 11): reading and
 * writing the whole state of a vCPU in at most 20 µs.
 */
import { KVM_GET_REGS, KVM_RUN, KVM_SET_REGS, kvm, makeKvmRegs, msrIndexList, restoreVcpu, saveVcpu } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import type { HostOptions } from '@vac/core';
import { check, fmtNs, measure, row, sink, type Budget, type Row, type TargetCheck } from '../lib/harness.js';
import { OUT_LOOP, makeHost, makeVm, openDev, vmmProcess } from '../lib/guest.js';

const GROUP = '7. vCPU state save/restore';

/** Run the group. */
export function runVcpuState(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const rows: Row[] = [];
  const targets: TargetCheck[] = [];
  for (const [name, hw] of [
    ['Intel', intel()],
    ['AMD', amd()],
  ] as Array<[string, HostOptions['hardware']]>) {
    const host = makeHost(hw, 2);
    host.modprobe(kvm({ postfix: '0' }));
    const proc = vmmProcess(host);
    const sys = openDev(proc, 'kvm0');
    const vm = makeVm(proc, sys, OUT_LOOP, 1);
    const fd = (vm.vcpus[0] as { fd: number }).fd;
    proc.ioctl(fd, KVM_RUN, 0);
    const regs = makeKvmRegs();
    const mRegs = measure(b, `regs ${name}`, () => {
      proc.ioctl(fd, KVM_GET_REGS, regs);
      proc.ioctl(fd, KVM_SET_REGS, regs);
    });
    const base = { label: `KVM_GET_REGS + KVM_SET_REGS (${name})`, m: mRegs };
    rows.push(row(GROUP, `KVM_GET_REGS + KVM_SET_REGS (${name})`, 'one register pair (baseline)', mRegs, undefined));
    const msrs = msrIndexList(proc, sys); // asked once, as a VMM does at start-up
    const before = saveVcpu(proc, sys, fd, 0, msrs);
    const mAll = measure(b, `whole ${name}`, () => {
      const s = saveVcpu(proc, sys, fd, 0, msrs);
      restoreVcpu(proc, fd, s);
      sink.n += s.msrs.length;
    });
    // correctness: the state is what it was
    const after = saveVcpu(proc, sys, fd, 0, msrs);
    if (JSON.stringify(after, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) !== JSON.stringify(before, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) {
      throw new Error(`${name}: save + restore changed the vCPU's state`);
    }
    rows.push(row(GROUP, `saveVcpu + restoreVcpu (${name})`, `${before.msrs.length} MSRs, CPUID, regs, sregs2, XSAVE, events, MP state, debug regs, MCE`, mAll, base));
    targets.push(check(`a vCPU's whole state read and written (${name}): ≤ 20 µs`, fmtNs(mAll.nsPerOp), mAll.nsPerOp, 20_000));
  }
  return { rows, targets };
}
