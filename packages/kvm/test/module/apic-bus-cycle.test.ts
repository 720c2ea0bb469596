/**
 * KVM_CAP_X86_APIC_BUS_CYCLES_NS (arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension / kvm_vm_ioctl_enable_cap,
 * lapic.c tmict_to_ns): answered APIC_BUS_CYCLE_NS_DEFAULT (1); KVM_ENABLE_CAP sets the LAPIC timer's bus cycle —
 * EINVAL for 0 or a cycle that overflows the longest TMICT, ENXIO without an in-kernel irqchip, EINVAL once a vCPU
 * exists (the cycle unchanged) — and the timer of the vCPUs made after it counts one tick per cycle.
 */
import { O_RDWR, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { APIC_LVTT, APIC_TDCR, APIC_TMCCT, APIC_TMICT } from '../../src/irqchip/constants.js';
import {
  KVM_CAP_X86_APIC_BUS_CYCLES_NS,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_ENABLE_CAP,
  kvm,
  makeKvmEnableCap,
  vcpuOf,
} from '../../src/index.js';
import { errnoOf, makeHost, vmmProcess, VENDORS } from './helpers.js';

/** A process with /dev/kvm0 open. */
function setup(vendor: (typeof VENDORS)[number]): { p: Process; sys: number } {
  const host = makeHost(vendor.hardware(), 2);
  host.modprobe(kvm({ postfix: '0' }));
  const p = vmmProcess(host);
  return { p, sys: p.open('/dev/kvm0', O_RDWR) };
}

/** KVM_ENABLE_CAP(KVM_CAP_X86_APIC_BUS_CYCLES_NS, ns) on `vm`. */
function setBusCycle(p: Process, vm: number, ns: bigint): number {
  return p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_X86_APIC_BUS_CYCLES_NS, args: [ns, 0n, 0n, 0n] }));
}

/** Vcpu 0's LAPIC timer after a one-shot TMICT of `count` at time 0 with the divider at 1: its period, TMCCT at 5 µs. */
function timerOf(p: Process, vcpu: number, count: number): [bigint, number | undefined] {
  const lapic = vcpuOf(p, vcpu).intr?.chip?.lapic;
  if (lapic === undefined) throw new Error('no LAPIC');
  lapic.writeRegister(APIC_TDCR, 0xb, 0n); // divide by 1
  lapic.writeRegister(APIC_LVTT, 0x30, 0n); // one-shot, vector 0x30
  lapic.writeRegister(APIC_TMICT, count, 0n);
  return [lapic.timer.period, lapic.readRegister(APIC_TMCCT, 4, 5000n)];
}

describe.each(VENDORS)('KVM_CAP_X86_APIC_BUS_CYCLES_NS ($name)', (vendor) => {
  test('answered 1 (the default cycle) on /dev/kvm and on a VM', () => {
    const { p, sys } = setup(vendor);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_X86_APIC_BUS_CYCLES_NS)).toBe(1);
    expect(p.ioctl(p.ioctl(sys, KVM_CREATE_VM, 0), KVM_CHECK_EXTENSION, KVM_CAP_X86_APIC_BUS_CYCLES_NS)).toBe(1);
  });

  test('a 10 ns cycle: TMICT 1000 lasts 10 µs, TMCCT counts down one per 10 ns; without the cap, 1 ns', () => {
    const { p, sys } = setup(vendor);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
    expect(setBusCycle(p, vm, 10n)).toBe(0);
    expect(timerOf(p, p.ioctl(vm, KVM_CREATE_VCPU, 0), 1000)).toEqual([10_000n, 500]);
    const plain = p.ioctl(sys, KVM_CREATE_VM, 0);
    p.ioctl(plain, KVM_CREATE_IRQCHIP, 0);
    expect(timerOf(p, p.ioctl(plain, KVM_CREATE_VCPU, 0), 1000)).toEqual([1000n, 0]);
  });

  test('EINVAL for 0 and past the overflow bound, ENXIO without an irqchip, EINVAL after a vCPU: the cycle unchanged', () => {
    const { p, sys } = setup(vendor);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    // (2^64 - 1) / (0xffffffff << 7) = 33554432.0000000075: the largest cycle that does not overflow.
    const largest = (2n ** 64n - 1n) / (0xffff_ffffn << 7n);
    expect(errnoOf(() => setBusCycle(p, vm, 10n))).toBe('ENXIO');
    p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
    expect(errnoOf(() => setBusCycle(p, vm, 0n))).toBe('EINVAL');
    expect(errnoOf(() => setBusCycle(p, vm, largest + 1n))).toBe('EINVAL');
    expect(errnoOf(() => p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_X86_APIC_BUS_CYCLES_NS, flags: 1, args: [10n, 0n, 0n, 0n] })))).toBe('EINVAL');
    expect(setBusCycle(p, vm, largest)).toBe(0);
    expect(setBusCycle(p, vm, 4n)).toBe(0);
    const vcpu = p.ioctl(vm, KVM_CREATE_VCPU, 0);
    expect(errnoOf(() => setBusCycle(p, vm, 10n))).toBe('EINVAL');
    expect(timerOf(p, vcpu, 1000)).toEqual([4000n, 0]);
  });
});
