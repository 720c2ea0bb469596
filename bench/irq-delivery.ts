/**
 * One interrupt delivered to a halted vCPU, end to end, against KVM_RUN with no interrupt pending — ratios in the
 * same run (no timed assertion):
 *
 * - **KVM_RUN, no interrupt** (the baseline): `proc.ioctl(vcpuFd, KVM_RUN, 0)` on `out dx,al; jmp $-3` (benchmark 4's
 *   rig), on a VM without an irqchip and on one with the in-kernel irqchip (PIC, IOAPIC, LAPIC: every entry asks
 *   whether an interrupt is pending);
 * - **irqfd → wake-up → handler → iret → hlt**: a vCPU thread halted in KVM_RUN (IF = 1); the VMM writes its irqfd
 *   (GSI 5 → PIC IRQ 5), then one scheduler tick: the thread wakes, the interrupt goes through the IVT, the handler
 *   counts and EOIs the PIC (ports 0x20, in the kernel), `iret`, `hlt`, and the thread sleeps again;
 * - **KVM_IRQ_LINE → KVM_RUN → handler → iret → hlt**: the same with KVM_IRQ_LINE 1/0 and a direct KVM_RUN, which
 *   returns EINTR once the guest halts again with nothing left to wake it (the EINTR's KernelError included).
 *
 *   npx tsx --conditions=@vac/source bench/irq-delivery.ts
 *
 * Prints the fastest of 5 rounds (ns per operation) and each ratio to the no-interrupt KVM_RUN.
 */
import { eventfd, isKernelError, type Host, type Process } from '@vac/core';
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
import { intel } from '@vac/vmx';
import { O_RDWR, createHost } from '@vac/core';
import { runRig } from './suites/kvm-run.js';

const N = 200_000;

/** A halting guest: PIC master programmed (vectors 8–15, only IRQ 5 unmasked), `sti; l: hlt; jmp l`, an IRQ 5 handler counting at 0x500. */
function haltingVm(withIrqchip: boolean): { host: Host; p: Process; vm: number; fd: number; run: { exit_reason: number }; mem: Uint8Array } {
  const host = createHost({ cpus: 2, hardware: intel() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
  const a = asm16()
    .mov('al', 0x11).out(0x20, 'al').mov('al', 0x08).out(0x21, 'al').mov('al', 0x04).out(0x21, 'al').mov('al', 0x01).out(0x21, 'al')
    .mov('al', 0xdf).out(0x21, 'al')
    .sti().label('l').hlt().jmp('l')
    .label('h').inc(Asm16.word(0x500)).mov('al', 0x20).out(0x20, 'al').iret();
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const m = p.mmapAnonymous(0x10000);
  m.bytes.set(a.bytes(), 0x1000);
  const h = a.addressOf('h');
  m.bytes[13 * 4] = h & 0xff;
  m.bytes[13 * 4 + 1] = h >> 8;
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: m.addr });
  if (withIrqchip) p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  const v = createRealModeVcpu(p, sys, vm, { regs: { rsp: 0x8000n } });
  return { host, p, vm, fd: v.fd, run: v.run, mem: m.bytes };
}

function counter(mem: Uint8Array): number {
  return (mem[0x500] ?? 0) | ((mem[0x501] ?? 0) << 8);
}

function best(name: string, rounds: number, fn: () => number): number {
  let min = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    const n = fn();
    min = Math.min(min, Number(process.hrtime.bigint() - t0) / n);
  }
  void name;
  return min;
}

// KVM_RUN with no interrupt: benchmark 4's rig (no irqchip), and the same guest on a VM with the in-kernel irqchip.
const plain = runRig(intel(), 2);
const withChip = (() => {
  const host = createHost({ cpus: 2, hardware: intel() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const m = p.mmapAnonymous(0x1000);
  m.bytes.set([0xba, 0xf8, 0x03, 0xee, 0xeb, 0xfd]); // mov dx,0x3f8; l: out dx,al; jmp l
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: m.addr });
  p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  const v = createRealModeVcpu(p, sys, vm);
  p.ioctl(v.fd, KVM_RUN, 0);
  if (v.run.exit_reason !== KVM_EXIT_IO) throw new Error('check: no I/O exit');
  return { p, fd: v.fd };
})();

function runPlain(): number {
  for (let i = 0; i < N; i++) plain.proc.ioctl(plain.fd, KVM_RUN, 0);
  if (plain.run.exit_reason !== KVM_EXIT_IO) throw new Error('check: no I/O exit');
  return N;
}

function runWithChip(): number {
  for (let i = 0; i < N; i++) withChip.p.ioctl(withChip.fd, KVM_RUN, 0);
  return N;
}

// irqfd → wake → handler → hlt, on a vCPU thread.
const th = haltingVm(true);
const efd = eventfd(th.p);
th.p.ioctl(th.vm, KVM_IRQFD, { fd: efd, gsi: 5, flags: 0, resamplefd: 0 });
th.host.scheduler.spawn(th.p, { cpu: 1 }, function* (t) {
  yield* t.ioctl(th.fd, KVM_RUN, 0);
});
th.host.scheduler.run(3);
const vcpu = vcpuOf(th.p, th.fd);
if (vcpu.blockedOn !== 1) throw new Error('check: the vCPU thread is not blocked');
const one = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
const M = 50_000;

function irqfdRound(): number {
  const before = counter(th.mem);
  for (let i = 0; i < M; i++) {
    th.p.write(efd, one);
    th.host.scheduler.tick();
  }
  if (counter(th.mem) !== ((before + M) & 0xffff) || vcpu.blockedOn !== 1) throw new Error('check: not one interrupt per write');
  return M;
}

// KVM_IRQ_LINE → direct KVM_RUN (EINTR when it halts again).
const dr = haltingVm(true);
try {
  dr.p.ioctl(dr.fd, KVM_RUN, 0);
} catch (e) {
  if (!isKernelError(e) || e.code !== 'EINTR') throw e;
}

function irqLineRound(): number {
  const before = counter(dr.mem);
  for (let i = 0; i < M; i++) {
    dr.p.ioctl(dr.vm, KVM_IRQ_LINE, { irq: 5, level: 1 });
    dr.p.ioctl(dr.vm, KVM_IRQ_LINE, { irq: 5, level: 0 });
    try {
      dr.p.ioctl(dr.fd, KVM_RUN, 0);
    } catch (e) {
      if (!isKernelError(e) || e.code !== 'EINTR') throw e;
    }
  }
  if (counter(dr.mem) !== ((before + M) & 0xffff)) throw new Error('check: not one interrupt per pulse');
  return M;
}

const base = best('plain', 5, runPlain);
const rows: Array<[string, number]> = [
  ['KVM_RUN, no interrupt pending, no irqchip (baseline)', base],
  ['KVM_RUN, no interrupt pending, in-kernel irqchip', best('chip', 5, runWithChip)],
  ['irqfd write → wake → IVT handler → iret → hlt (thread)', best('irqfd', 5, irqfdRound)],
  ['KVM_IRQ_LINE 1/0 → KVM_RUN → handler → iret → hlt → EINTR', best('line', 5, irqLineRound)],
];
for (const [name, ns] of rows) process.stdout.write(`${name.padEnd(62)} ${ns.toFixed(1).padStart(8)} ns   ${(ns / base).toFixed(2).padStart(6)}×\n`);
