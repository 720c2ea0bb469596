/**
 * `saveVm` keeps the in-kernel irqchip's state as the C bytes KVM_GET_IRQCHIP and KVM_GET_PIT2 wrote (vmm-irqchip.ts):
 * the bytes are exactly what the object form of the same GETs encodes to, `parseSavedIrqchip` / `savedIrqchipOf`
 * convert both ways without loss and refuse malformed structures, and `restoreVm` hands the (edited) bytes to
 * KVM_SET_IRQCHIP and KVM_SET_PIT2 as they are.
 */
import { createHost, isUsageError, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  KVM_GET_IRQCHIP,
  KVM_GET_PIT2,
  KVM_IRQCHIP_CODEC,
  KVM_IRQCHIP_IOAPIC,
  KVM_IRQCHIP_PIC_MASTER,
  KVM_IRQCHIP_PIC_SLAVE,
  KVM_PIT_STATE2_CODEC,
  KVM_SET_IRQCHIP,
  createRealModeVm,
  kvm,
  makeKvmIrqchip,
  makeKvmPitState2,
  parseSavedIrqchip,
  restoreVm,
  saveVm,
  savedIrqchipOf,
  type RealModeVm,
  type SavedIrqchip,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';

/** A VM on kvm0 with a full irqchip and a PIT, one IOAPIC pin and the master PIC's mask set through the ABI. */
function setup(vendor: (typeof VENDORS)[number]): { p: Process; vm: RealModeVm } {
  const host = createHost({ cpus: 1, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  const vm = createRealModeVm(p, '/dev/kvm0', { code: [], guestPhysAddr: 0, memorySize: 0x10000, vcpus: 0 });
  p.ioctl(vm.vm, KVM_CREATE_IRQCHIP, 0);
  p.ioctl(vm.vm, KVM_CREATE_PIT2, { flags: 0 });
  const io = makeKvmIrqchip({ chip_id: KVM_IRQCHIP_IOAPIC });
  p.ioctl(vm.vm, KVM_GET_IRQCHIP, io);
  if (!('ioapic' in io.chip)) throw new Error('no IOAPIC');
  io.chip.ioapic.redirtbl[3] = 0x10033n; // masked: nothing is delivered through it
  p.ioctl(vm.vm, KVM_SET_IRQCHIP, io);
  const pic = makeKvmIrqchip({ chip_id: KVM_IRQCHIP_PIC_MASTER });
  p.ioctl(vm.vm, KVM_GET_IRQCHIP, pic);
  if (!('pic' in pic.chip)) throw new Error('no PIC');
  pic.chip.pic.imr = 0xfa;
  p.ioctl(vm.vm, KVM_SET_IRQCHIP, pic);
  return { p, vm };
}

/** The object form of KVM_GET_IRQCHIP of chip `id`, as C bytes. */
function chipBytes(p: Process, vm: number, id: number): Uint8Array {
  const c = makeKvmIrqchip({ chip_id: id });
  p.ioctl(vm, KVM_GET_IRQCHIP, c);
  return KVM_IRQCHIP_CODEC.toBytes(c);
}

const slotOf = (vm: RealModeVm) => [{ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: vm.memory.addr }];

describe.each(VENDORS)('saveVm keeps the irqchip as C structures on $name', (vendor) => {
  test('each chip is byte for byte what the object form of KVM_GET_IRQCHIP / KVM_GET_PIT2 encodes to', () => {
    const { p, vm } = setup(vendor);
    const s = saveVm(p, { ...vm, irqchip: { mode: 'kernel' } }).irqchip!;
    expect(s.pic?.[0]).toEqual(chipBytes(p, vm.vm, KVM_IRQCHIP_PIC_MASTER));
    expect(s.pic?.[1]).toEqual(chipBytes(p, vm.vm, KVM_IRQCHIP_PIC_SLAVE));
    expect(s.ioapic).toEqual(chipBytes(p, vm.vm, KVM_IRQCHIP_IOAPIC));
    const pit = makeKvmPitState2();
    p.ioctl(vm.vm, KVM_GET_PIT2, pit);
    expect(s.pit).toEqual(KVM_PIT_STATE2_CODEC.toBytes(pit));
    const parsed = parseSavedIrqchip(s);
    expect(parsed.pic?.[0].imr).toBe(0xfa);
    expect(parsed.ioapic?.redirtbl[3]).toBe(0x10033n);
    expect(parsed.pit).toEqual(pit);
  });

  test('parseSavedIrqchip and savedIrqchipOf are inverse', () => {
    const { p, vm } = setup(vendor);
    const s = saveVm(p, { ...vm, irqchip: { mode: 'kernel', pitFlags: 0 } }).irqchip!;
    const again = savedIrqchipOf(parseSavedIrqchip(s));
    expect(again).toEqual(s);
    expect(parseSavedIrqchip(again)).toEqual(parseSavedIrqchip(s));
  });

  test('restoreVm hands an edited state to KVM_SET_IRQCHIP as it is', () => {
    const { p, vm } = setup(vendor);
    const saved = saveVm(p, { ...vm, irqchip: { mode: 'kernel' } });
    const chip = parseSavedIrqchip(saved.irqchip!);
    const redirtbl = [...chip.ioapic!.redirtbl];
    redirtbl[7] = 0x10037n;
    const edited = savedIrqchipOf({ ...chip, ioapic: { ...chip.ioapic!, redirtbl } as typeof chip.ioapic & object });
    const next = restoreVm(p, '/dev/kvm1', { ...saved, irqchip: edited }, { slots: slotOf(vm) });
    const io = makeKvmIrqchip({ chip_id: KVM_IRQCHIP_IOAPIC });
    p.ioctl(next.vm, KVM_GET_IRQCHIP, io);
    if (!('ioapic' in io.chip)) throw new Error('no IOAPIC');
    expect(io.chip.ioapic.redirtbl[7]).toBe(0x10037n);
    expect(io.chip.ioapic.redirtbl[3]).toBe(0x10033n);
  });

  test('malformed structures are refused with ERR_INVALID_ARG', () => {
    const { p, vm } = setup(vendor);
    const s = saveVm(p, { ...vm, irqchip: { mode: 'kernel' } }).irqchip!;
    const refused = (x: SavedIrqchip): boolean => {
      try {
        parseSavedIrqchip(x);
        return false;
      } catch (e) {
        return isUsageError(e, 'ERR_INVALID_ARG');
      }
    };
    expect(refused({ ...s, ioapic: s.ioapic!.subarray(0, 100) })).toBe(true);
    expect(refused({ ...s, pic: [s.pic![1], s.pic![0]] })).toBe(true); // the chip ids swapped
    expect(refused({ ...s, ioapic: s.pic![0] })).toBe(true);
    expect(refused({ ...s, pit: s.pit!.subarray(1) })).toBe(true);
    expect(refused(s)).toBe(false);
  });

  test('a VM without an in-kernel irqchip saves none', () => {
    const host = createHost({ cpus: 1, hardware: vendor.hardware() });
    host.modprobe(kvm({ postfix: '0' }));
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const vm = createRealModeVm(p, '/dev/kvm0', { code: [0xf4] });
    expect(saveVm(p, vm).irqchip).toBeUndefined();
  });
});
