/**
 * The interrupt ioctls through the ABI: each one's success and each errno Linux gives, in Linux's order, with the
 * host exactly as it was after a failure (the snapshot includes the irqchip's device state).
 */
import { KernelError, eventfd, type Host, type Process } from '@vac/core';
import { expectKernelError } from '@vac/test-support';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_CAP_X2APIC_API,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT,
  KVM_CREATE_PIT2,
  KVM_CREATE_VCPU,
  KVM_ENABLE_CAP,
  KVM_GET_IRQCHIP,
  KVM_GET_LAPIC,
  KVM_GET_PIT,
  KVM_GET_PIT2,
  KVM_INTERRUPT,
  KVM_IRQFD,
  KVM_IRQ_LINE,
  KVM_IRQ_LINE_STATUS,
  KVM_NMI,
  KVM_REINJECT_CONTROL,
  KVM_SET_GSI_ROUTING,
  KVM_SET_IRQCHIP,
  KVM_SET_LAPIC,
  KVM_SET_PIT,
  KVM_SET_PIT2,
  KVM_SIGNAL_MSI,
  asm16,
  irqchip,
  makeKvmIrqchip,
  makeKvmIrqRouting,
  makeKvmLapicState,
  makeKvmPitState,
  makeKvmPitState2,
  vcpuOf,
  vmOf,
  KVM_IRQCHIP_CODEC,
} from '../../src/index.js';
import { irqHost, irqVm, VENDORS, type IrqVm } from './support.js';

const { KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MAX_IRQ_ROUTES } = irqchip;

function setup(hardware: () => Parameters<typeof irqHost>[0]): { host: Host; p: Process; g: IrqVm } {
  const host = irqHost(hardware());
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
  return { host, p, g: irqVm(p, '/dev/kvm0', asm16().hlt()) };
}

const enableCap = (cap: number, arg0: bigint, flags = 0) => ({ cap, flags, args: [arg0, 0n, 0n, 0n] as [bigint, bigint, bigint, bigint] });

describe.each(VENDORS)('interrupt ioctls on $name', ({ hardware }) => {
  test('KVM_CREATE_IRQCHIP: once (EEXIST), before any vCPU (EINVAL), not after a split irqchip (EEXIST)', () => {
    const { host, p, g } = setup(hardware);
    expect(p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0)).toBe(0);
    expect(vmOf(p, g.vm).irq?.full).toBe(true);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0), 'EEXIST');
    const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
    g2.vcpu();
    expectKernelError(host, () => p.ioctl(g2.vm, KVM_CREATE_IRQCHIP, 0), 'EINVAL');
    const g3 = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g3.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, 24n));
    expectKernelError(host, () => p.ioctl(g3.vm, KVM_CREATE_IRQCHIP, 0), 'EEXIST');
  });

  test('KVM_ENABLE_CAP(SPLIT_IRQCHIP): EINVAL for flags or more than KVM_MAX_IRQ_ROUTES pins, EEXIST with an irqchip or a vCPU; X2APIC_API takes its two flags', () => {
    const { host, p, g } = setup(hardware);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, 24n, 1)), 'EINVAL');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, BigInt(KVM_MAX_IRQ_ROUTES + 1))), 'EINVAL');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_X2APIC_API, 4n)), 'EINVAL');
    expect(p.ioctl(g.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_X2APIC_API, 3n))).toBe(0);
    expect(p.ioctl(g.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, BigInt(KVM_MAX_IRQ_ROUTES)))).toBe(0);
    expect(vmOf(p, g.vm).irq?.chip.nrReservedIoapicPins).toBe(KVM_MAX_IRQ_ROUTES);
    expect(vmOf(p, g.vm).irq?.chip.bus.x2apicFormat).toBe(true);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, 24n)), 'EEXIST');
    const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g2.vm, KVM_CREATE_VCPU, 0);
    expectKernelError(host, () => p.ioctl(g2.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, 24n)), 'EEXIST');
    expectKernelError(host, () => p.ioctl(g2.vm, KVM_ENABLE_CAP, enableCap(9999, 0n)), 'EINVAL');
  });

  test('KVM_CREATE_PIT2 / KVM_CREATE_PIT: ENOENT without an in-kernel PIC (none, or split), EEXIST for a second; the legacy call has the speaker port', () => {
    const { host, p, g } = setup(hardware);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 }), 'ENOENT');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_CREATE_PIT, 0), 'ENOENT');
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    expect(p.ioctl(g.vm, KVM_CREATE_PIT, 0)).toBe(0);
    expect(vmOf(p, g.vm).irq?.chip.pit?.speakerDummy).toBe(true);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 }), 'EEXIST');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_CREATE_PIT, 0), 'EEXIST');
    const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g2.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, 24n));
    expectKernelError(host, () => p.ioctl(g2.vm, KVM_CREATE_PIT2, { flags: 0 }), 'ENOENT');
  });

  test('KVM_GET/SET_PIT2, KVM_GET/SET_PIT and KVM_REINJECT_CONTROL: ENXIO without a PIT; GET → SET → GET is exact', () => {
    const { host, p, g } = setup(hardware);
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_GET_PIT2, makeKvmPitState2()), 'ENXIO');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_PIT2, makeKvmPitState2()), 'ENXIO');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_GET_PIT, makeKvmPitState()), 'ENXIO');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_PIT, makeKvmPitState()), 'ENXIO');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_REINJECT_CONTROL, { pit_reinject: 0 }), 'ENXIO');
    // A bad pointer is EFAULT before the PIT is looked for (copy_from_user first), except for KVM_GET_PIT2.
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_PIT2, 'not a struct'), 'EFAULT');
    p.ioctl(g.vm, KVM_CREATE_PIT2, { flags: 0 });
    const s = makeKvmPitState2();
    p.ioctl(g.vm, KVM_GET_PIT2, s);
    expect(s.channels[0].mode).toBe(0xff);
    expect(s.channels[0].count).toBe(0x10000);
    s.channels[0].mode = 2;
    s.channels[0].count = 1193;
    s.flags = 0;
    p.ioctl(g.vm, KVM_SET_PIT2, s);
    const back = makeKvmPitState2();
    p.ioctl(g.vm, KVM_GET_PIT2, back);
    expect(back.channels[0].count).toBe(1193);
    expect(back.channels[0].mode).toBe(2);
    const legacy = makeKvmPitState();
    p.ioctl(g.vm, KVM_GET_PIT, legacy);
    expect(legacy.channels).toEqual(back.channels);
    expect(p.ioctl(g.vm, KVM_REINJECT_CONTROL, { pit_reinject: 0 })).toBe(0);
    expect(vmOf(p, g.vm).irq?.chip.pit?.reinject).toBe(false);
  });

  test('KVM_IRQ_LINE / KVM_IRQ_LINE_STATUS: ENXIO without an irqchip; the status is what kvm_set_irq answered (-1 unrouted, 0 coalesced)', () => {
    const { host, p, g } = setup(hardware);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 4, level: 1 }), 'ENXIO');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_IRQ_LINE_STATUS, { irq: 4, level: 1 }), 'ENXIO');
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    const arg = { irq: 0, level: 1 };
    expect(p.ioctl(g.vm, KVM_IRQ_LINE_STATUS, arg)).toBe(0);
    expect(arg).toEqual({ irq: 1, status: 1, level: 1 });
    const again = { irq: 0, level: 1 };
    p.ioctl(g.vm, KVM_IRQ_LINE_STATUS, again);
    expect(again).toEqual({ irq: 1, status: 1, level: 1 });
    const unrouted = { irq: 4000, level: 1 };
    p.ioctl(g.vm, KVM_IRQ_LINE_STATUS, unrouted);
    expect(unrouted).toEqual({ irq: 0xffffffff, status: -1, level: 1 });
    // As C bytes: status over irq.
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setUint32(0, 4000, true);
    p.ioctl(g.vm, KVM_IRQ_LINE_STATUS, bytes);
    expect(new DataView(bytes.buffer).getInt32(0, true)).toBe(-1);
    expect(p.ioctl(g.vm, KVM_IRQ_LINE, { irq: 0, level: 0 })).toBe(0);
  });

  test('KVM_SET_GSI_ROUTING: EINVAL before an irqchip, above KVM_MAX_IRQ_ROUTES, with flags or a bad entry — the table stays', () => {
    const { host, p, g } = setup(hardware);
    const pin = (gsi: number, chip: number, pinNo: number) => ({ gsi, type: KVM_IRQ_ROUTING_IRQCHIP, flags: 0, irqchip: { irqchip: chip, pin: pinNo } });
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting([pin(0, 0, 0)])), 'EINVAL');
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_GSI_ROUTING, { nr: KVM_MAX_IRQ_ROUTES + 1, flags: 0, entries: [] }), 'EINVAL');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_GSI_ROUTING, { nr: 0, flags: 1, entries: [] }), 'EINVAL');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting([pin(0, 2, 24)])), 'EINVAL');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting([pin(4096, 2, 0)])), 'EINVAL');
    // nr larger than the entries given: the entries cannot be read (EFAULT), nothing changes.
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_GSI_ROUTING, { nr: 2, flags: 0, entries: [pin(0, 0, 0)] }), 'EFAULT');
    expect(p.ioctl(g.vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting([pin(7, 2, 9), { gsi: 8, type: KVM_IRQ_ROUTING_MSI, flags: 0, msi: { address_lo: 0xfee00000, address_hi: 0, data: 0x41, devid: 0 } }]))).toBe(0);
    const arg = { irq: 7, level: 1 };
    p.ioctl(g.vm, KVM_IRQ_LINE_STATUS, arg);
    expect(arg.irq).toBe(0xffffffff); // IOAPIC pin 9 is masked
    expect(p.ioctl(g.vm, KVM_SET_GSI_ROUTING, { nr: 0, flags: 0, entries: [] })).toBe(0);
  });

  test('KVM_GET/SET_IRQCHIP: ENXIO without the full irqchip (none, or split), EINVAL for a chip_id above 2; SET → GET is exact', () => {
    const { host, p, g } = setup(hardware);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_GET_IRQCHIP, makeKvmIrqchip()), 'ENXIO');
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_GET_IRQCHIP, makeKvmIrqchip({ chip_id: 3 })), 'EINVAL');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_IRQCHIP, makeKvmIrqchip({ chip_id: 3 })), 'EINVAL');
    const master = makeKvmIrqchip({ chip_id: 0 });
    p.ioctl(g.vm, KVM_GET_IRQCHIP, master);
    expect(master.chip).toEqual({ pic: expect.objectContaining({ elcr_mask: 0xf8 }) as unknown });
    const state = { chip_id: 0, chip: { pic: { ...(master.chip as unknown as { pic: Record<string, number> }).pic, imr: 0x5a, irq_base: 0x20 } } };
    expect(p.ioctl(g.vm, KVM_SET_IRQCHIP, state)).toBe(0);
    const back = makeKvmIrqchip({ chip_id: 0 });
    p.ioctl(g.vm, KVM_GET_IRQCHIP, back);
    expect(back.chip).toEqual({ pic: state.chip.pic });
    // The IOAPIC as C bytes.
    const io = new Uint8Array(520);
    new DataView(io.buffer).setUint32(0, 2, true);
    p.ioctl(g.vm, KVM_GET_IRQCHIP, io);
    expect(new DataView(io.buffer).getBigUint64(8, true)).toBe(0xfec00000n);
    const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g2.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, 24n));
    expectKernelError(host, () => p.ioctl(g2.vm, KVM_SET_IRQCHIP, state), 'ENXIO');
  });

  test('KVM_GET/SET_IRQCHIP on the C bytes: each chip as the object form gives it; a SET from bytes equals one from the object; a short buffer is EFAULT with nothing changed', () => {
    const { host, p, g } = setup(hardware);
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    const bytesOf = (id: number): Uint8Array => {
      const b = new Uint8Array(520).fill(0xcc);
      new DataView(b.buffer).setUint32(0, id, true);
      p.ioctl(g.vm, KVM_GET_IRQCHIP, b);
      return b;
    };
    for (const id of [0, 1, 2]) {
      const o = makeKvmIrqchip({ chip_id: id });
      p.ioctl(g.vm, KVM_GET_IRQCHIP, o);
      expect(bytesOf(id)).toEqual(KVM_IRQCHIP_CODEC.toBytes(o));
    }
    const master = bytesOf(0);
    master[8 + 2] = 0x5a; // imr
    master[8 + 5] = 0x20; // irq_base
    expect(p.ioctl(g.vm, KVM_SET_IRQCHIP, master)).toBe(0);
    const o = makeKvmIrqchip({ chip_id: 0 });
    p.ioctl(g.vm, KVM_GET_IRQCHIP, o);
    expect(o.chip).toEqual({ pic: expect.objectContaining({ imr: 0x5a, irq_base: 0x20 }) as unknown });
    const io = bytesOf(2);
    io[8 + 24 + 8 * 3] = 0x31; // redirection entry 3's vector
    p.ioctl(g.vm, KVM_SET_IRQCHIP, io);
    expect(bytesOf(2)).toEqual(io);
    const short = new Uint8Array(519).fill(7);
    new DataView(short.buffer).setUint32(0, 0, true);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SET_IRQCHIP, short), 'EFAULT');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_GET_IRQCHIP, short), 'EFAULT');
    expect(short.subarray(4)).toEqual(new Uint8Array(515).fill(7));
    expect(bytesOf(0)).toEqual(master);
  });

  test('KVM_IRQFD: EINVAL for unknown flags and without an irqchip, EBADF/EINVAL for a bad fd, EBUSY for an eventfd in use, resample only with the full irqchip; deassign', () => {
    const { host, p, g } = setup(hardware);
    const efd = eventfd(p);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 4, flags: 0, resamplefd: 0 }), 'EINVAL');
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 4, flags: 4, resamplefd: 0 }), 'EINVAL');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_IRQFD, { fd: 999, gsi: 4, flags: 0, resamplefd: 0 }), 'EBADF');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_IRQFD, { fd: g.sys, gsi: 4, flags: 0, resamplefd: 0 }), 'EINVAL');
    expectKernelError(host, () => p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 4, flags: 2, resamplefd: 999 }), 'EBADF');
    expect(p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 4, flags: 0, resamplefd: 0 })).toBe(0);
    expectKernelError(host, () => p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 5, flags: 0, resamplefd: 0 }), 'EBUSY');
    expect(vmOf(p, g.vm).irq?.irqfds.size).toBe(1);
    // Deassign: the wrong GSI matches nothing (0), the right one removes it.
    expect(p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 5, flags: 1, resamplefd: 0 })).toBe(0);
    expect(vmOf(p, g.vm).irq?.irqfds.size).toBe(1);
    expect(p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 4, flags: 1, resamplefd: 0 })).toBe(0);
    expect(vmOf(p, g.vm).irq?.irqfds.size).toBe(0);
    // Closing the eventfd shuts its irqfd down (EPOLLHUP).
    p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 4, flags: 0, resamplefd: 0 });
    p.close(efd);
    expect(vmOf(p, g.vm).irq?.irqfds.size).toBe(0);
    const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g2.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, 24n));
    const e2 = eventfd(p);
    const r2 = eventfd(p);
    expectKernelError(host, () => p.ioctl(g2.vm, KVM_IRQFD, { fd: e2, gsi: 4, flags: 2, resamplefd: r2 }), 'EINVAL');
    expect(p.ioctl(g2.vm, KVM_IRQFD, { fd: e2, gsi: 4, flags: 0, resamplefd: 0 })).toBe(0);
  });

  test('a resampling irqfd holds the level until the guest acknowledges it, then lowers it and signals the resamplefd', () => {
    const { host, p, g } = setup(hardware);
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    const efd = eventfd(p);
    const rfd = eventfd(p);
    expect(p.ioctl(g.vm, KVM_IRQFD, { fd: efd, gsi: 10, flags: 2, resamplefd: rfd })).toBe(0);
    const chip = vmOf(p, g.vm).irq?.chip;
    const one = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
    p.write(efd, one);
    // GSI 10 on the slave PIC, pin 2: IRR set and held (a level from the resample source).
    expect(chip?.pic?.getState(1).irr).toBe(1 << 2);
    // The guest takes it (INTA) and EOIs both PICs: the slave's EOI runs the ack notifier of GSI 10.
    v0(p, g);
    chip?.run(() => {
      chip.pic?.readIrq();
      chip.pic?.ioWrite(0xa0, 0x20);
      chip.pic?.ioWrite(0x20, 0x20);
    });
    expect(chip?.pic?.getState(1).irr).toBe(0);
    expect(p.read(rfd, 8)[0]).toBe(1);
    void host;
  });

  test('KVM_SIGNAL_MSI: EINVAL without an irqchip or with unknown flags; EPERM when no APIC takes it (Linux returns -1); a count otherwise', () => {
    const { host, p, g } = setup(hardware);
    const msi = { address_lo: 0xfee00000, address_hi: 0, data: 0x30, flags: 0, devid: 0 };
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SIGNAL_MSI, msi), 'EINVAL');
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    // No vCPU, no APIC: the slow path finds none, -1, which user space sees as EPERM.
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SIGNAL_MSI, msi), 'EPERM');
    g.vcpu();
    expectKernelError(host, () => p.ioctl(g.vm, KVM_SIGNAL_MSI, { ...msi, flags: 2 }), 'EINVAL');
    // The LAPIC is software-disabled after reset: delivered to no one, 0.
    expect(p.ioctl(g.vm, KVM_SIGNAL_MSI, msi)).toBe(0);
  });

  test('KVM_GET/SET_LAPIC: EINVAL without an in-kernel LAPIC; GET → SET → GET is exact', () => {
    const { host, p, g } = setup(hardware);
    const v = g.vcpu();
    expectKernelError(host, () => p.ioctl(v.fd, KVM_GET_LAPIC, makeKvmLapicState()), 'EINVAL');
    expectKernelError(host, () => p.ioctl(v.fd, KVM_SET_LAPIC, makeKvmLapicState()), 'EINVAL');
    // Each is one shared stackless error (as KVM_RUN's EINTR): the same object every time, a fresh one's fields.
    const thrown = (req: number): unknown => {
      try {
        p.ioctl(v.fd, req, makeKvmLapicState());
      } catch (e) {
        return e;
      }
      return undefined;
    };
    for (const [req, op] of [[KVM_GET_LAPIC, 'KVM_GET_LAPIC'], [KVM_SET_LAPIC, 'KVM_SET_LAPIC']] as const) {
      const e = thrown(req);
      expect(thrown(req)).toBe(e);
      expect(e).toBeInstanceOf(KernelError);
      expect(e).toMatchObject({ code: 'EINVAL', errno: 22, op, message: `${op}: EINVAL: the vCPU has no in-kernel LAPIC` });
      expect((e as Error).stack).toBe(`KernelError: ${op}: EINVAL: the vCPU has no in-kernel LAPIC`);
    }
    const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g2.vm, KVM_CREATE_IRQCHIP, 0);
    const v2 = g2.vcpu();
    const s = makeKvmLapicState();
    p.ioctl(v2.fd, KVM_GET_LAPIC, s);
    expect(s.regs[0x30]).toBe(0x14); // LVR
    s.regs[0x80] = 0x40; // TPR
    s.regs[0xf0] = 0xff;
    s.regs[0xf1] = 0x01; // SPIV: enabled
    p.ioctl(v2.fd, KVM_SET_LAPIC, s);
    const back = makeKvmLapicState();
    p.ioctl(v2.fd, KVM_GET_LAPIC, back);
    expect(back.regs[0x80]).toBe(0x40);
    expect(back.regs[0xf1]).toBe(0x01);
    p.ioctl(v2.fd, KVM_SET_LAPIC, back);
    const again = makeKvmLapicState();
    p.ioctl(v2.fd, KVM_GET_LAPIC, again);
    expect(again.regs).toEqual(back.regs);
  });

  test('KVM_GET/SET_LAPIC on the C bytes: the same page as the object form, read in place; a short buffer is EFAULT with nothing changed', () => {
    const { host, p } = setup(hardware);
    const g = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g.vm, KVM_CREATE_IRQCHIP, 0);
    const v = g.vcpu();
    const obj = makeKvmLapicState();
    p.ioctl(v.fd, KVM_GET_LAPIC, obj);
    const c = new Uint8Array(0x400 + 8).fill(0xee); // bytes past sizeof are not the kernel's
    p.ioctl(v.fd, KVM_GET_LAPIC, c);
    expect(c.subarray(0, 0x400)).toEqual(obj.regs);
    expect([...c.subarray(0x400)]).toEqual(new Array<number>(8).fill(0xee));
    c[0x80] = 0x50; // TPR
    c[0xf1] = 0x01; // SPIV: enabled
    p.ioctl(v.fd, KVM_SET_LAPIC, c);
    c[0x80] = 0; // the kernel copied the page: a later change of the caller's buffer is not seen
    const back = makeKvmLapicState();
    p.ioctl(v.fd, KVM_GET_LAPIC, back);
    expect([back.regs[0x80], back.regs[0xf1]]).toEqual([0x50, 0x01]);
    const short = new Uint8Array(0x3ff).fill(0x11);
    expectKernelError(host, () => p.ioctl(v.fd, KVM_SET_LAPIC, short), 'EFAULT');
    expectKernelError(host, () => p.ioctl(v.fd, KVM_GET_LAPIC, short), 'EFAULT');
    expect([...short]).toEqual(new Array<number>(0x3ff).fill(0x11));
    const after = makeKvmLapicState();
    p.ioctl(v.fd, KVM_GET_LAPIC, after);
    expect(after.regs).toEqual(back.regs);
  });

  test('KVM_INTERRUPT: EINVAL above 255; queued for a user-space PIC; ENXIO with the PIC in the kernel; EEXIST while a split irqchip ExtINT waits', () => {
    const { host, p, g } = setup(hardware);
    const v = g.vcpu();
    expectKernelError(host, () => p.ioctl(v.fd, KVM_INTERRUPT, { irq: 256 }), 'EINVAL');
    expect(p.ioctl(v.fd, KVM_INTERRUPT, { irq: 0x20 })).toBe(0);
    expect(vcpuOf(p, v.fd).intr?.queuedIrq).toBe(0x20);
    const g2 = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g2.vm, KVM_CREATE_IRQCHIP, 0);
    const v2 = g2.vcpu();
    expectKernelError(host, () => p.ioctl(v2.fd, KVM_INTERRUPT, { irq: 0x20 }), 'ENXIO');
    const g3 = irqVm(p, '/dev/kvm0', asm16().hlt());
    p.ioctl(g3.vm, KVM_ENABLE_CAP, enableCap(KVM_CAP_SPLIT_IRQCHIP, 24n));
    const v3 = g3.vcpu();
    expect(p.ioctl(v3.fd, KVM_INTERRUPT, { irq: 0x20 })).toBe(0);
    expectKernelError(host, () => p.ioctl(v3.fd, KVM_INTERRUPT, { irq: 0x21 }), 'EEXIST');
  });

  test('KVM_NMI: queued (at most two), delivered through IVT vector 2 at the next entry whatever IF says', () => {
    const { host, p, g } = setup(hardware);
    void host;
    const v = g.vcpu();
    expect(p.ioctl(v.fd, KVM_NMI, 0)).toBe(0);
    p.ioctl(v.fd, KVM_NMI, 0);
    p.ioctl(v.fd, KVM_NMI, 0);
    expect(vcpuOf(p, v.fd).intr?.nmiPending).toBe(2);
  });
});

/** Make a vCPU (the LAPIC the PIC's output goes through). */
function v0(_p: Process, g: IrqVm): void {
  g.vcpu();
}
