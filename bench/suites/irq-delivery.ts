/**
 * 8. One interrupt delivered to a halted vCPU, end to end (issue 12), against KVM_RUN with no interrupt pending —
 * ratios in the same run, no timed assertion:
 *
 * - **KVM_RUN, no interrupt** (the baseline): `proc.ioctl(vcpuFd, KVM_RUN, 0)` on `out dx,al; jmp $-3` (group 4's
 *   rig), on a VM without an irqchip, and the same guest on a VM with the in-kernel irqchip (PIC, IOAPIC, LAPIC: every
 *   entry asks whether an interrupt is pending);
 * - **irqfd → wake-up → handler → iret → hlt**: a vCPU thread halted in KVM_RUN (IF = 1, KVM_MP_STATE_HALTED); the
 *   VMM writes its irqfd (GSI 5 → PIC IRQ 5), then one scheduler tick: the thread wakes, the interrupt goes through
 *   the IVT, the handler counts and EOIs the PIC (port 0x20, in the kernel), `iret`, `hlt`, and the thread sleeps
 *   again;
 * - **KVM_IRQ_LINE → KVM_RUN → handler → iret → hlt**: the same with KVM_IRQ_LINE 1/0 and a direct KVM_RUN, which
 *   returns EINTR once the guest halts again with nothing left to wake it (the EINTR's KernelError included).
 *
 * Targets (issue 12): one interrupt to a halted vCPU ≤ 2 µs; KVM_RUN with no interrupt pending ≤ 150 ns.
 */
import { O_RDWR, eventfd, isKernelError, type Host, type HostOptions, type Process } from '@vac/core';
import {
  Asm16,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VM,
  KVM_EXIT_IO,
  KVM_IRQFD,
  KVM_IRQ_LINE,
  KVM_RUN,
  KVM_SET_USER_MEMORY_REGION,
  asm16,
  createRealModeVcpu,
  kvm,
  vcpuOf,
} from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { check, fmtNs, measure, row, type Budget, type Row, type TargetCheck } from '../lib/harness.js';
import { makeHost, vmmProcess } from '../lib/guest.js';
import { runRig } from './kvm-run.js';

const GROUP = '8. Interrupt delivery';

/** A VM on a fresh host with kvm0. */
function vmOn(hardware: HostOptions['hardware']): { host: Host; p: Process; sys: number; vm: number } {
  const host = makeHost(hardware, 2);
  host.modprobe(kvm({ postfix: '0' }));
  const p = vmmProcess(host);
  const sys = p.open('/dev/kvm0', O_RDWR);
  return { host, p, sys, vm: p.ioctl(sys, KVM_CREATE_VM, 0) };
}

/** The halting guest: PIC master programmed (vectors 8–15, only IRQ 5 unmasked), `sti; l: hlt; jmp l`, an IRQ 5 handler counting at 0x500. */
function haltingVm(hardware: HostOptions['hardware']): { host: Host; p: Process; vm: number; fd: number; mem: Uint8Array } {
  const { host, p, sys, vm } = vmOn(hardware);
  const a = asm16()
    .mov('al', 0x11).out(0x20, 'al').mov('al', 0x08).out(0x21, 'al').mov('al', 0x04).out(0x21, 'al').mov('al', 0x01).out(0x21, 'al')
    .mov('al', 0xdf).out(0x21, 'al')
    .sti().label('l').hlt().jmp('l')
    .label('h').inc(Asm16.word(0x500)).mov('al', 0x20).out(0x20, 'al').iret();
  const m = p.mmapAnonymous(0x10000);
  m.bytes.set(a.bytes(), 0x1000);
  const h = a.addressOf('h');
  m.bytes[13 * 4] = h & 0xff;
  m.bytes[13 * 4 + 1] = h >> 8;
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: m.addr });
  p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  const v = createRealModeVcpu(p, sys, vm, { regs: { rsp: 0x8000n } });
  return { host, p, vm, fd: v.fd, mem: m.bytes };
}

function counter(mem: Uint8Array): number {
  return (mem[0x500] ?? 0) | ((mem[0x501] ?? 0) << 8);
}

/** Run the group, on both vendors. */
export function runIrqDelivery(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const rows: Row[] = [];
  const targets: TargetCheck[] = [];
  const batch = b.quick ? 50 : 1000;
  for (const [name, hw] of [
    ['Intel', intel],
    ['AMD', amd],
  ] as Array<[string, () => HostOptions['hardware']]>) {
    // KVM_RUN with no interrupt pending: group 4's rig, and the same guest with the in-kernel irqchip.
    const plain = runRig(hw(), 2);
    // Each run's exit is read from the kvm_run mapping, as a VMM does.
    const mPlain = measure(b, `plain ${name}`, () => {
      let n = 0;
      for (let i = 0; i < batch; i++) {
        plain.proc.ioctl(plain.fd, KVM_RUN, 0);
        if (plain.run.exit_reason === KVM_EXIT_IO) n += plain.run.io.port;
      }
      if (n !== batch * 0x3f8) throw new Error('check: not one I/O exit per run');
    }, { opsPerCall: batch });
    if (plain.run.exit_reason !== KVM_EXIT_IO) throw new Error('check: no I/O exit');
    const base = { label: `KVM_RUN, no interrupt pending, no irqchip (${name})`, m: mPlain };
    rows.push(row(GROUP, base.label, 'out dx,al loop (baseline)', mPlain, undefined));

    const chip = vmOn(hw());
    const code = chip.p.mmapAnonymous(0x1000);
    code.bytes.set([0xba, 0xf8, 0x03, 0xee, 0xeb, 0xfd]); // mov dx,0x3f8; l: out dx,al; jmp l
    chip.p.ioctl(chip.vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: code.addr });
    chip.p.ioctl(chip.vm, KVM_CREATE_IRQCHIP, 0);
    const cv = createRealModeVcpu(chip.p, chip.sys, chip.vm);
    const mChip = measure(b, `chip ${name}`, () => {
      let n = 0;
      for (let i = 0; i < batch; i++) {
        chip.p.ioctl(cv.fd, KVM_RUN, 0);
        if (cv.run.exit_reason === KVM_EXIT_IO) n += cv.run.io.port;
      }
      if (n !== batch * 0x3f8) throw new Error('check: not one I/O exit per run with the irqchip');
    }, { opsPerCall: batch });
    if (cv.run.exit_reason !== KVM_EXIT_IO || cv.run.io.port !== 0x3f8) throw new Error('check: no I/O exit with the irqchip');
    rows.push(row(GROUP, `KVM_RUN, no interrupt pending, in-kernel irqchip (${name})`, 'out dx,al loop', mChip, base));
    targets.push(check(`KVM_RUN with no interrupt pending, in-kernel irqchip (${name}): ≤ 150 ns`, fmtNs(mChip.nsPerOp), mChip.nsPerOp, 150));

    // irqfd → wake → handler → hlt, on a vCPU thread.
    const th = haltingVm(hw());
    const efd = eventfd(th.p);
    th.p.ioctl(th.vm, KVM_IRQFD, { fd: efd, gsi: 5, flags: 0, resamplefd: 0 });
    th.host.scheduler.spawn(th.p, { cpu: 1 }, function* (t) {
      yield* t.ioctl(th.fd, KVM_RUN, 0);
    });
    th.host.scheduler.run(3);
    const vcpu = vcpuOf(th.p, th.fd);
    if (vcpu.blockedOn !== 1) throw new Error('check: the vCPU thread is not blocked');
    const one = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
    const irqBatch = b.quick ? 20 : 200;
    const mIrqfd = measure(b, `irqfd ${name}`, () => {
      const before = counter(th.mem);
      for (let i = 0; i < irqBatch; i++) {
        th.p.write(efd, one);
        th.host.scheduler.tick();
      }
      if (counter(th.mem) !== ((before + irqBatch) & 0xffff) || vcpu.blockedOn !== 1) throw new Error('check: not one interrupt per write');
    }, { opsPerCall: irqBatch });
    rows.push(row(GROUP, `irqfd write → wake → IVT handler → iret → hlt (${name})`, 'a halted vCPU thread, one scheduler tick', mIrqfd, base));
    targets.push(check(`one interrupt to a halted vCPU, irqfd (${name}): ≤ 2 µs`, fmtNs(mIrqfd.nsPerOp), mIrqfd.nsPerOp, 2000));

    // KVM_IRQ_LINE → direct KVM_RUN (EINTR when it halts again).
    const dr = haltingVm(hw());
    const runToHalt = (): void => {
      try {
        dr.p.ioctl(dr.fd, KVM_RUN, 0);
      } catch (e) {
        if (!isKernelError(e) || e.code !== 'EINTR') throw e;
        return;
      }
      throw new Error('check: KVM_RUN did not end in EINTR');
    };
    runToHalt();
    const mLine = measure(b, `line ${name}`, () => {
      const before = counter(dr.mem);
      for (let i = 0; i < irqBatch; i++) {
        dr.p.ioctl(dr.vm, KVM_IRQ_LINE, { irq: 5, level: 1 });
        dr.p.ioctl(dr.vm, KVM_IRQ_LINE, { irq: 5, level: 0 });
        runToHalt();
      }
      if (counter(dr.mem) !== ((before + irqBatch) & 0xffff)) throw new Error('check: not one interrupt per pulse');
    }, { opsPerCall: irqBatch });
    rows.push(row(GROUP, `KVM_IRQ_LINE 1/0 → KVM_RUN → handler → iret → hlt → EINTR (${name})`, 'direct KVM_RUN', mLine, base));
    targets.push(check(`one interrupt to a halted vCPU, KVM_IRQ_LINE + KVM_RUN (${name}): ≤ 2 µs`, fmtNs(mLine.nsPerOp), mLine.nsPerOp, 2000));
  }
  return { rows, targets };
}
