/**
 * 7. A vCPU's whole state read and written through the ABI: `saveVcpu` (KVM_GET_CPUID2, KVM_GET_REGS, KVM_GET_SREGS2,
 * KVM_GET_XSAVE, KVM_GET_XCRS, KVM_GET_VCPU_EVENTS, KVM_GET_MP_STATE, KVM_GET_DEBUGREGS, KVM_GET_TSC_KHZ, the MSR list
 * and every MSR, KVM_GET_LAPIC, KVM_GET_NESTED_STATE) followed by `restoreVcpu` (the matching SETs, KVM_X86_SETUP_MCE
 * and KVM_SET_MSRS), on a vCPU that has run — without and with an in-kernel irqchip (QEMU's default, which adds the
 * LAPIC). The helpers pass each structure's C bytes (as a C VMM does) and keep them; the MSR list is asked once, at
 * start-up. Then each GET + SET pair of the sequence on its own, on the C bytes, to show where the time goes.
 *
 * Baseline: one KVM_GET_REGS + KVM_SET_REGS pair, the smallest state round trip. Target (issue 11): reading and
 * writing the whole state of a vCPU in at most 20 µs.
 */
import {
  KVM_CAP_NESTED_STATE,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_CPUID2,
  KVM_GET_DEBUGREGS,
  KVM_GET_LAPIC,
  KVM_GET_MP_STATE,
  KVM_GET_MSRS,
  KVM_GET_NESTED_STATE,
  KVM_GET_REGS,
  KVM_GET_SREGS2,
  KVM_GET_TSC_KHZ,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_XCRS,
  KVM_GET_XSAVE,
  KVM_RUN,
  KVM_SET_CPUID2,
  KVM_SET_DEBUGREGS,
  KVM_SET_LAPIC,
  KVM_SET_MP_STATE,
  KVM_SET_MSRS,
  KVM_SET_NESTED_STATE,
  KVM_SET_REGS,
  KVM_SET_SREGS2,
  KVM_SET_VCPU_EVENTS,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
  kvm,
  msrIndexList,
  restoreVcpu,
  saveVcpu,
  type SavedVcpu,
} from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import type { HostOptions, Process } from '@vac/core';
import { check, fmtNs, measure, row, sink, type Budget, type Measurement, type Row, type TargetCheck } from '../lib/harness.js';
import { OUT_LOOP, addMemory, makeHost, makeVm, mapRun, openDev, resetVcpu, vmmProcess } from '../lib/guest.js';

const GROUP = '7. vCPU state save/restore';

/** A vCPU with an in-kernel irqchip (KVM_CREATE_IRQCHIP before it), run once. */
function irqchipVcpu(proc: Process, sys: number): number {
  const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
  proc.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  addMemory(proc, vm, OUT_LOOP);
  const fd = proc.ioctl(vm, KVM_CREATE_VCPU, 0);
  mapRun(proc, fd);
  resetVcpu(proc, fd);
  proc.ioctl(fd, KVM_RUN, 0);
  return fd;
}

/** Every byte of every saved structure, for the check that a save + restore changed nothing. */
function fingerprint(s: SavedVcpu): string {
  return JSON.stringify(s, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Array.from(v).join(',') : v));
}

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
    const regs = new Uint8Array(144);
    const mRegs = measure(b, `regs ${name}`, () => {
      proc.ioctl(fd, KVM_GET_REGS, regs);
      proc.ioctl(fd, KVM_SET_REGS, regs);
    });
    const base = { label: `KVM_GET_REGS + KVM_SET_REGS (${name})`, m: mRegs };
    rows.push(row(GROUP, `KVM_GET_REGS + KVM_SET_REGS (${name})`, 'one register pair, C bytes (baseline)', mRegs, undefined));
    const msrs = msrIndexList(proc, sys); // asked once, as a VMM does at start-up
    const whole = (label: string, vfd: number, detail: string): Measurement => {
      const before = saveVcpu(proc, sys, vfd, 0, msrs);
      const m = measure(b, `${label} ${name}`, () => {
        const s = saveVcpu(proc, sys, vfd, 0, msrs);
        restoreVcpu(proc, vfd, s);
        sink.n += s.msrs.length;
      });
      // correctness: the state is what it was
      if (fingerprint(saveVcpu(proc, sys, vfd, 0, msrs)) !== fingerprint(before)) throw new Error(`${name}: save + restore changed the vCPU's state`);
      const count = new DataView(before.msrs.buffer, before.msrs.byteOffset).getUint32(0, true);
      rows.push(row(GROUP, `saveVcpu + restoreVcpu (${name})`, `${label}: ${count} MSRs, ${detail}`, m, base));
      return m;
    };
    const mAll = whole('no irqchip', fd, 'CPUID, regs, sregs2, XSAVE, XCRs, events, MP state, debug regs, MCE, nested state');
    targets.push(check(`a vCPU's whole state read and written (${name}): ≤ 20 µs`, fmtNs(mAll.nsPerOp), mAll.nsPerOp, 20_000));
    const chipFd = irqchipVcpu(proc, sys);
    const mChip = whole('in-kernel irqchip', chipFd, 'the same and the LAPIC');
    targets.push(check(`a vCPU's whole state with its LAPIC read and written (${name}): ≤ 20 µs`, fmtNs(mChip.nsPerOp), mChip.nsPerOp, 20_000));
    // Each GET + SET pair of the sequence, on the C bytes the GET wrote.
    const saved = saveVcpu(proc, sys, chipFd, 0, msrs);
    const pair = (label: string, get: number, set: number, bytes: Uint8Array, note: string): void => {
      const arg = bytes.slice();
      const m = measure(b, `${label} ${name}`, () => {
        proc.ioctl(chipFd, get, arg);
        proc.ioctl(chipFd, set, arg);
      });
      rows.push(row(GROUP, `KVM_GET_${label} + KVM_SET_${label} (${name})`, note, m, base));
    };
    pair('SREGS2', KVM_GET_SREGS2, KVM_SET_SREGS2, saved.sregs2 ?? new Uint8Array(0), 'struct kvm_sregs2');
    pair('XSAVE', KVM_GET_XSAVE, KVM_SET_XSAVE, saved.xsave, 'struct kvm_xsave, 4 KiB');
    pair('XCRS', KVM_GET_XCRS, KVM_SET_XCRS, saved.xcrs ?? new Uint8Array(0), 'struct kvm_xcrs');
    pair('VCPU_EVENTS', KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, saved.events, 'struct kvm_vcpu_events');
    pair('MP_STATE', KVM_GET_MP_STATE, KVM_SET_MP_STATE, new Uint8Array(4), 'struct kvm_mp_state');
    pair('DEBUGREGS', KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, saved.debugregs, 'struct kvm_debugregs');
    pair('CPUID2', KVM_GET_CPUID2, KVM_SET_CPUID2, saved.cpuid, 'struct kvm_cpuid2 with the VMM\'s entries');
    pair('MSRS', KVM_GET_MSRS, KVM_SET_MSRS, saved.msrs, 'every saved MSR in one struct kvm_msrs');
    pair('LAPIC', KVM_GET_LAPIC, KVM_SET_LAPIC, saved.lapic ?? new Uint8Array(0), 'struct kvm_lapic_state');
    if (proc.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_NESTED_STATE) > 0 && saved.nestedState !== undefined) {
      // KVM_GET_NESTED_STATE takes the buffer's size in the header; the header alone comes back.
      pair('NESTED_STATE', KVM_GET_NESTED_STATE, KVM_SET_NESTED_STATE, saved.nestedState, 'the header (no nested guest)');
    }
    const mTsc = measure(b, `tsc ${name}`, () => {
      sink.n += proc.ioctl(chipFd, KVM_GET_TSC_KHZ, 0);
    });
    rows.push(row(GROUP, `KVM_GET_TSC_KHZ (${name})`, 'a value, no structure', mTsc, base));
  }
  return { rows, targets };
}
