/**
 * The interrupt path end to end, as VMMs drive it: kvmtool's and QEMU's (pc, microvm) set-up sequences in their
 * order, an irqfd the process signals waking a halted vCPU thread, a signal to a blocked vCPU thread, PIT ticks
 * counted by a halted vCPU thread, and two modules' VMs taking interrupts on the same CPUs without crossing.
 */
import { KernelError, checkInvariants, eventfd, isKernelError, type Host, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  Asm16,
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  KVM_ENABLE_CAP,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_GET_LAPIC,
  KVM_GET_PIT2,
  KVM_IRQFD,
  KVM_IRQ_LINE,
  KVM_IRQ_LINE_STATUS,
  KVM_RUN,
  KVM_SET_GSI_ROUTING,
  KVM_SET_IRQCHIP,
  KVM_SET_LAPIC,
  KVM_SET_PIT2,
  KVM_SET_TSS_ADDR,
  KVM_SIGNAL_MSI,
  KVM_GET_IRQCHIP,
  asm16,
  irqchip,
  makeKvmIrqchip,
  makeKvmIrqRouting,
  makeKvmLapicState,
  makeKvmPitState2,
  vcpuOf,
  type kvm_irq_routing_entry,
} from '../../src/index.js';
import { countingHandler, irqHost, irqVm, picInit, pitInit, VENDORS } from './support.js';

const { KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI } = irqchip;

/** `sti; l: hlt; jmp l` after programming the master PIC, with a handler per unmasked IRQ counting at 0x500 + 2·irq. */
function haltingGuest(irqs: readonly number[], pit?: number) {
  const a = asm16();
  picInit(a, irqs);
  if (pit !== undefined) pitInit(a, pit);
  a.sti().label('idle').hlt().jmp('idle');
  for (const irq of irqs) countingHandler(a, `irq${irq}`, 0x500 + 2 * irq);
  return { a, handlers: Object.fromEntries(irqs.map((irq) => [8 + irq, `irq${irq}`])) };
}

/** kvmtool's and QEMU pc's GSI routing: GSI 0–15 on the PICs (not 2), GSI 0 on IOAPIC pin 2, 1–23 on their pins. */
function pcRouting(): kvm_irq_routing_entry[] {
  const e: kvm_irq_routing_entry[] = [];
  const add = (gsi: number, chip: number, pin: number): void => void e.push({ gsi, type: KVM_IRQ_ROUTING_IRQCHIP, flags: 0, irqchip: { irqchip: chip, pin } });
  for (let i = 0; i < 8; i++) if (i !== 2) add(i, 0, i);
  for (let i = 8; i < 16; i++) add(i, 1, i - 8);
  for (let i = 0; i < 24; i++) if (i === 0) add(0, 2, 2); else if (i !== 2) add(i, 2, i);
  return e;
}

/** A vCPU thread that runs KVM_RUN until an exit that is not I/O, recording exits and errors. */
function vcpuThread(host: Host, p: Process, fd: number, run: { exit_reason: number }, cpu?: number) {
  const st = { exits: [] as number[], errors: [] as string[] };
  const thread = host.scheduler.spawn(p, cpu === undefined ? {} : { cpu }, function* (t) {
    for (;;) {
      try {
        yield* t.ioctl(fd, KVM_RUN, 0);
      } catch (e) {
        if (!isKernelError(e)) throw e;
        st.errors.push(e.code);
        st.exits.push(run.exit_reason);
        return;
      }
      st.exits.push(run.exit_reason);
      if (run.exit_reason !== KVM_EXIT_IO) return;
    }
  });
  return { ...st, st, thread };
}

describe.each(VENDORS)('interrupt scenarios ($name)', ({ hardware }) => {
  test("kvmtool's order: KVM_SET_TSS_ADDR, KVM_CREATE_PIT2 (ENOENT before the irqchip, as Linux answers), KVM_CREATE_IRQCHIP, its GSI routing, then KVM_IRQ_LINE 1/0 pulses reach the guest's IRQ 4 handler", () => {
    const host = irqHost(hardware());
    const p = host.spawn({ name: 'lkvm' });
    const { a, handlers } = haltingGuest([4]);
    const g = irqVm(p, '/dev/kvm0', a, handlers);
    expect(p.ioctl(g.vm, KVM_SET_TSS_ADDR, 0xfffbd000)).toBe(0);
    expect(() => p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 })).toThrow(expect.objectContaining({ code: 'ENOENT' }) as Error);
    expect(p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0)).toBe(0);
    expect(p.ioctl(g.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting(pcRouting()))).toBe(0);
    expect(p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 })).toBe(0);
    const v = g.vcpu();
    // The guest programs its PIC and halts: nothing can wake it, so the direct KVM_RUN returns EINTR.
    expect(() => p.ioctl(v.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(v.run.exit_reason).toBe(KVM_EXIT_INTR);
    for (let i = 1; i <= 3; i++) {
      // kvm__irq_trigger: KVM_IRQ_LINE 1 then 0.
      p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 4, level: 1 });
      p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 4, level: 0 });
      expect(() => p.ioctl(v.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
      expect(g.word(0x508)).toBe(i);
    }
    expect(vcpuOf(p, v.fd).intr?.injections).toBe(3);
  });

  test('the EINTR of a direct KVM_RUN that would block is one shared stackless KernelError: errno 4, the same object every time, KVM_EXIT_INTR and the interrupt delivered each time', () => {
    const host = irqHost(hardware());
    const p = host.spawn({ name: 'lkvm' });
    const { a, handlers } = haltingGuest([4]);
    const g = irqVm(p, '/dev/kvm0', a, handlers);
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    const v = g.vcpu();
    const caught: unknown[] = [];
    const runToEintr = (): void => {
      try {
        p.ioctl(v.fd, KVM_RUN, 0);
      } catch (e) {
        caught.push(e);
        return;
      }
      throw new Error('KVM_RUN returned');
    };
    runToEintr();
    p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 4, level: 1 });
    p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 4, level: 0 });
    runToEintr();
    expect(g.word(0x508)).toBe(1);
    expect(v.run.exit_reason).toBe(KVM_EXIT_INTR);
    const [first, second] = caught;
    expect(first).toBeInstanceOf(KernelError);
    expect(first).toBeInstanceOf(Error);
    expect(second).toBe(first);
    const e = first as KernelError;
    expect([e.code, e.errno, e.op, e.message]).toEqual(['EINTR', 4, 'KVM_RUN', 'KVM_RUN: EINTR: the vCPU halted and nothing can wake it']);
    expect(e.stack).toBe(`KernelError: ${e.message}`);
    expect(vcpuOf(p, v.fd).stats.signal_exits).toBe(2);
  });

  test("QEMU -M pc's order: irqchip, vCPU, routing, PIT2, the reset's GET/SET of LAPIC, PIT and PICs/IOAPIC round-tripping, then the serial's IRQ 4 through KVM_IRQ_LINE_STATUS", () => {
    const host = irqHost(hardware());
    const p = host.spawn({ name: 'qemu' });
    const { a, handlers } = haltingGuest([4]);
    const g = irqVm(p, '/dev/kvm0', a, handlers);
    expect(p.ioctl(g.vm, KVM_SET_TSS_ADDR, 0xfeffd000)).toBe(0);
    expect(p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0)).toBe(0);
    const v = g.vcpu();
    expect(p.ioctl(g.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting(pcRouting()))).toBe(0);
    expect(p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 })).toBe(0);
    // QEMU's device reset: every line low, then the state read back and written again.
    const line = (irq: number, level: number): number => {
      const arg = { irq, level };
      p.ioctl(g.vm, KVM_IRQ_LINE_STATUS, arg);
      return (arg as { status?: number }).status as number;
    };
    // Each GSI has two routes (a PIC pin and an IOAPIC pin), each counting 1 (kvm_set_irq sums them).
    expect([line(0, 0), line(8, 0)]).toEqual([2, 2]);
    const lapic = makeKvmLapicState();
    p.ioctl(v.fd, KVM_GET_LAPIC, lapic);
    const pit = makeKvmPitState2();
    p.ioctl(g.vm, KVM_GET_PIT2, pit);
    p.ioctl(g.vm, KVM_SET_PIT2, pit);
    const chips = [0, 1, 2].map((id) => {
      const c = makeKvmIrqchip({ chip_id: id });
      p.ioctl(g.vm, KVM_GET_IRQCHIP, c);
      return c;
    });
    for (const c of chips) p.ioctl(g.vm, KVM_SET_IRQCHIP, c);
    p.ioctl(v.fd, KVM_SET_LAPIC, lapic);
    p.ioctl(g.vm, KVM_SET_PIT2, pit);
    const again = makeKvmLapicState();
    p.ioctl(v.fd, KVM_GET_LAPIC, again);
    expect(again.regs).toEqual(lapic.regs);
    // The guest runs to its HLT; the serial raises and lowers IRQ 4 (PIC pin 4 and IOAPIC pin 4).
    expect(() => p.ioctl(v.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    // Raised: the PIC takes it (1; the IOAPIC pin is masked, -1, not counted); lowered: 1 + 1; raised again before the
    // guest ran: the PIC's IRR still holds it, coalesced (0); lowered: 2. One interrupt reaches the guest.
    expect([line(4, 1), line(4, 0), line(4, 1), line(4, 0)]).toEqual([1, 2, 0, 2]);
    expect(() => p.ioctl(v.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(g.word(0x508)).toBe(1);
  });

  test("QEMU -M microvm's order: KVM_ENABLE_CAP(SPLIT_IRQCHIP, 24) and an empty routing; the LAPIC in the kernel takes MSIs, the PIC is user space's (no PIT)", () => {
    const host = irqHost(hardware());
    const p = host.spawn({ name: 'qemu' });
    const g = irqVm(p, '/dev/kvm0', asm16().sti().label('l').hlt().jmp('l').label('h').inc(Asm16.word(0x500)).iret(), { 0x30: 'h' });
    expect(p.ioctl(g.vm, KVM_ENABLE_CAP, { cap: KVM_CAP_SPLIT_IRQCHIP, flags: 0, args: [24n, 0n, 0n, 0n] })).toBe(0);
    expect(p.ioctl(g.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting([]))).toBe(0);
    expect(() => p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 })).toThrow(expect.objectContaining({ code: 'ENOENT' }) as Error);
    expect(() => p.ioctl(g.vm, KVM_GET_IRQCHIP, makeKvmIrqchip())).toThrow(expect.objectContaining({ code: 'ENXIO' }) as Error);
    const v = g.vcpu();
    // The guest enables its LAPIC (SPIV bit 8, at 0xfee000f0) — done here through KVM_SET_LAPIC, as QEMU restores it.
    const lapic = makeKvmLapicState();
    p.ioctl(v.fd, KVM_GET_LAPIC, lapic);
    lapic.regs[0xf1] = 0x01; // SPIV = 0x1ff
    p.ioctl(v.fd, KVM_SET_LAPIC, lapic);
    expect(() => p.ioctl(v.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    // An MSI to APIC 0, vector 0x30, fixed: delivered to one APIC.
    expect(p.ioctl(g.vm, KVM_SIGNAL_MSI, { address_lo: 0xfee00000, address_hi: 0, data: 0x30, flags: 0, devid: 0 })).toBe(1);
    // A routed MSI on GSI 5 through KVM_IRQ_LINE.
    p.ioctl(g.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting([{ gsi: 5, type: KVM_IRQ_ROUTING_MSI, flags: 0, msi: { address_lo: 0xfee00000, address_hi: 0, data: 0x30, devid: 0 } }]));
    expect(() => p.ioctl(v.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(g.word(0x500)).toBe(1);
  });

  test('an irqfd the process signals wakes a halted vCPU thread: IRQ 5 → IVT handler → iret → hlt again, once per write', () => {
    const host = irqHost(hardware());
    const p = host.spawn({ name: 'vmm' });
    const { a, handlers } = haltingGuest([5]);
    const g = irqVm(p, '/dev/kvm0', a, handlers);
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    const v = g.vcpu();
    const efd = eventfd(p);
    expect(p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 5, flags: 0, resamplefd: 0 })).toBe(0);
    const t = vcpuThread(host, p, v.fd, v.run, 1);
    host.scheduler.run(3);
    const vcpu = vcpuOf(p, v.fd);
    expect(vcpu.blockedOn).toBe(1);
    expect(t.thread.sleeping).toBe(true);
    const one = new Uint8Array(8);
    one[0] = 1;
    for (let i = 1; i <= 3; i++) {
      p.write(efd, one);
      // The write injected at once and woke the thread: it is no longer asleep.
      expect(t.thread.sleeping).toBe(false);
      host.scheduler.tick();
      expect(g.word(0x50a)).toBe(i);
      expect(vcpu.blockedOn).toBe(1);
    }
    expect(t.st.exits).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('a signal to a blocked vCPU thread: KVM_RUN returns EINTR with KVM_EXIT_INTR', () => {
    const host = irqHost(hardware());
    const p = host.spawn({ name: 'vmm' });
    const { a, handlers } = haltingGuest([5]);
    const g = irqVm(p, '/dev/kvm0', a, handlers);
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    const v = g.vcpu();
    const t = vcpuThread(host, p, v.fd, v.run, 2);
    host.scheduler.run(3);
    expect(vcpuOf(p, v.fd).blockedOn).toBe(2);
    t.thread.signal();
    host.scheduler.tick();
    expect(t.st.errors).toEqual(['EINTR']);
    expect(t.st.exits).toEqual([KVM_EXIT_INTR]);
    expect(vcpuOf(p, v.fd).blockedOn).toBe(-1);
    expect(t.thread.alive).toBe(false);
  });

  test('PIT ticks counted by a halted vCPU thread: with every thread asleep the clock jumps from tick to tick', () => {
    const host = irqHost(hardware());
    const p = host.spawn({ name: 'vmm' });
    const { a, handlers } = haltingGuest([0], 11932); // 10 ms
    const g = irqVm(p, '/dev/kvm0', a, handlers);
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 });
    const v = g.vcpu();
    vcpuThread(host, p, v.fd, v.run, 0);
    const ticks = host.scheduler.run.bind(host.scheduler);
    ticks(40);
    // 40 scheduler ticks, most of them a jump to the next PIT period: far more than 40 ms have passed.
    const counted = g.word(0x500);
    expect(counted).toBeGreaterThanOrEqual(15);
    const period = (11932n * 1_000_000_000n) / 1193182n;
    expect(host.clock.now / period).toBeGreaterThanOrEqual(BigInt(counted));
    expect(host.clock.now / period).toBeLessThanOrEqual(BigInt(counted) + 1n);
  });

  test("two modules' VMs take interrupts on the same CPUs without crossing", () => {
    const host = irqHost(hardware(), { two: true });
    const p = host.spawn({ name: 'vmm' });
    const vms = ['/dev/kvm0', '/dev/kvm1'].map((dev) => {
      const { a, handlers } = haltingGuest([3, 5]);
      const g = irqVm(p, dev, a, handlers);
      p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
      const v = g.vcpu();
      vcpuThread(host, p, v.fd, v.run, 1);
      return { g, v };
    });
    host.scheduler.run(3);
    const [k0, k1] = vms as [(typeof vms)[0], (typeof vms)[0]];
    p.ioctl(k0.g.vm, KVM_IRQ_LINE, { irq: 3, level: 1 });
    p.ioctl(k0.g.vm, KVM_IRQ_LINE, { irq: 3, level: 0 });
    const efd = eventfd(p);
    p.ioctl(k1.g.vm, KVM_IRQFD, { fd: efd, gsi: 5, flags: 0, resamplefd: 0 });
    const one = new Uint8Array(8);
    one[0] = 2;
    p.write(efd, one);
    host.scheduler.run(2);
    expect([k0.g.word(0x506), k0.g.word(0x50a), k1.g.word(0x506), k1.g.word(0x50a)]).toEqual([1, 0, 0, 1]);
    expect(vms.map(({ g, v }) => vcpuOf(g.proc, v.fd).blockedOn)).toEqual([1, 1]);
    expect(checkInvariants(host)).toEqual([]);
  });
});
