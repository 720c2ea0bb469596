/** The local APIC against lapic.c: registers, priorities, IPIs, the base MSR, the timer. */
import { describe, expect, test } from 'vitest';
import {
  APIC_ARBPRI,
  APIC_ESR,
  APIC_IRR,
  APIC_ISR,
  APIC_LVR,
  APIC_LVT1,
  APIC_LVTCMCI,
  APIC_LVTERR,
  APIC_LVTPC,
  APIC_LVTTHMR,
  APIC_TMR,
  APIC_DEST_NOSHORT,
  APIC_DEST_PHYSICAL,
  APIC_DFR,
  APIC_DM_LOWEST,
  APIC_EOI,
  APIC_ICR,
  APIC_ICR2,
  APIC_ID,
  APIC_LDR,
  APIC_LVT0,
  APIC_LVTT,
  APIC_PROCPRI,
  APIC_SPIV,
  APIC_TASKPRI,
  APIC_TDCR,
  APIC_TMCCT,
  APIC_TMICT,
  MSR_IA32_APICBASE_ENABLE,
  X2APIC_ENABLE,
  type LapicIrq,
} from '../../src/irqchip/index.js';
import { KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED } from '../../src/abi/constants.js';
import { KvmIrqchip } from '../../src/irqchip/index.js';
import { fakeVcpu, vmWith } from './helpers.js';

function enabled(n = 2) {
  const vm = vmWith(n);
  for (const v of vm.vcpus) v.lapic.writeRegister(APIC_SPIV, 0x1ff, 0n);
  return vm;
}

describe('registers — kvm_lapic_reg_write / kvm_lapic_reg_read', () => {
  test('LVT writes are masked while software-disabled, and keep only their writable bits', () => {
    const { vcpus } = vmWith(1);
    const l = vcpus[0]!.lapic;
    l.writeRegister(APIC_LVT0, 0x700, 0n);
    expect(l.readRegister(APIC_LVT0, 4, 0n)).toBe(0x10700);
    l.writeRegister(APIC_SPIV, 0x1ff, 0n);
    l.writeRegister(APIC_LVT0, 0xffffffff, 0n);
    expect(l.readRegister(APIC_LVT0, 4, 0n)).toBe(0x1f7ff);
  });

  test('clearing SVR.8 masks every LVT', () => {
    const { vcpus } = enabled(1);
    const l = vcpus[0]!.lapic;
    l.writeRegister(APIC_LVTT, 0x30, 0n);
    l.writeRegister(APIC_SPIV, 0xff, 0n);
    expect(l.readRegister(APIC_LVTT, 4, 0n)).toBe(0x10030);
  });

  test('DFR keeps bits 28-31 only (the rest read 1); LDR keeps bits 24-31; ID bits 24-31', () => {
    const { vcpus } = vmWith(1);
    const l = vcpus[0]!.lapic;
    l.writeRegister(APIC_DFR, 0, 0n);
    expect(l.readRegister(APIC_DFR, 4, 0n)).toBe(0x0fffffff);
    l.writeRegister(APIC_LDR, 0xffffffff, 0n);
    expect(l.readRegister(APIC_LDR, 4, 0n)).toBe(0xff000000);
    l.writeRegister(APIC_ID, 0x07123456, 0n);
    expect(l.readRegister(APIC_ID, 4, 0n)).toBe(0x07000000);
    expect(l.readRegister(APIC_ID + 3, 1, 0n)).toBe(0x07);
    expect(l.readRegister(APIC_ID + 2, 4, 0n)).toBeUndefined(); // crosses the register
    expect(l.readRegister(0x400, 4, 0n)).toBeUndefined();
    expect(l.writeRegister(0x10, 0, 0n)).toBe(false);
  });

  test('PPR = max(TPR, ISR class); an interrupt must be above PPR’s class', () => {
    const { chip, vcpus } = enabled(1);
    const l = vcpus[0]!.lapic;
    chip.signalMsi({ address_lo: 0xfee00000, address_hi: 0, data: 0x45, flags: 0, devid: 0 });
    l.writeRegister(APIC_TASKPRI, 0x40, 0n);
    expect(l.hasInterrupt()).toBe(-1);
    l.writeRegister(APIC_TASKPRI, 0x3f, 0n);
    expect(l.readRegister(APIC_PROCPRI, 4, 0n)).toBe(0x3f);
    expect(l.getInterrupt()).toBe(0x45);
    expect(l.readRegister(APIC_PROCPRI, 4, 0n)).toBe(0x40);
    chip.signalMsi({ address_lo: 0xfee00000, address_hi: 0, data: 0x48, flags: 0, devid: 0 });
    expect(l.hasInterrupt()).toBe(-1); // same class as the one in service
    l.writeRegister(APIC_EOI, 0, 0n);
    expect(l.getInterrupt()).toBe(0x48);
  });

  test('an MSI to a hardware-disabled APIC is not taken; LINT0 ExtINT on the BSP accepts the PIC', () => {
    const { chip, vcpus } = enabled(2);
    expect(vcpus[0]!.lapic.acceptsPicIntr()).toBe(true);
    expect(vcpus[1]!.lapic.acceptsPicIntr()).toBe(false);
    expect(vcpus[1]!.lapic.setApicBase(0xfee00000n, true)).toBe(true); // disabled
    expect(vcpus[1]!.lapic.acceptsPicIntr()).toBe(true);
    expect(chip.signalMsi({ address_lo: 0xfee01000, address_hi: 0, data: 0x33, flags: 0, devid: 0 })).toBe(0);
  });
});

describe('IPIs through the ICR', () => {
  test('fixed IPI to APIC 1; NMI IPI; INIT then SIPI become pending events', () => {
    const { vcpus, fakes } = enabled(2);
    const l0 = vcpus[0]!.lapic;
    l0.writeRegister(APIC_ICR2, 1 << 24, 0n);
    l0.writeRegister(APIC_ICR, 0x1000 | 0x55, 0n); // busy bit is cleared
    expect(l0.readRegister(APIC_ICR, 4, 0n)).toBe(0x55);
    expect(vcpus[1]!.lapic.hasInterrupt()).toBe(0x55);
    l0.writeRegister(APIC_ICR, 0x400, 0n);
    expect(fakes[1]!.nmis).toBe(1);
    l0.writeRegister(APIC_ICR, 0x4500, 0n);
    l0.writeRegister(APIC_ICR, 0x4698, 0n);
    expect(vcpus[1]!.lapic.pendingEvents).toBe(0b11);
    expect(vcpus[1]!.lapic.sipiVector).toBe(0x98);
  });

  test('shorthands: self, all including self, all but self', () => {
    const { vcpus } = enabled(3);
    const l0 = vcpus[0]!.lapic;
    l0.writeRegister(APIC_ICR, 0x40000 | 0x61, 0n);
    expect(vcpus.map((v) => v.lapic.hasInterrupt())).toEqual([0x61, -1, -1]);
    l0.writeRegister(APIC_ICR, 0xc0000 | 0x72, 0n); // all but self
    expect(vcpus.map((v) => v.lapic.hasInterrupt())).toEqual([0x61, 0x72, 0x72]);
    l0.writeRegister(APIC_ICR, 0x80000 | 0x83, 0n); // all including self
    expect(vcpus.map((v) => v.lapic.hasInterrupt())).toEqual([0x83, 0x83, 0x83]);
  });

  test('logical flat destination', () => {
    const { vcpus } = enabled(2);
    vcpus[0]!.lapic.writeRegister(APIC_LDR, 0x01000000, 0n);
    vcpus[1]!.lapic.writeRegister(APIC_LDR, 0x02000000, 0n);
    vcpus[0]!.lapic.writeRegister(APIC_ICR2, 0x03000000, 0n);
    vcpus[0]!.lapic.writeRegister(APIC_ICR, 0x800 | 0x66, 0n);
    expect(vcpus.map((v) => v.lapic.hasInterrupt())).toEqual([0x66, 0x66]);
  });
});

describe('INIT and SIPI — kvm_apic_accept_events', () => {
  test('an AP: INIT resets its APIC and waits for SIPI; SIPI then starts it at the vector', () => {
    const { vcpus } = enabled(2);
    const l0 = vcpus[0]!.lapic;
    const l1 = vcpus[1]!.lapic;
    l1.writeRegister(APIC_TASKPRI, 0x50, 0n);
    l0.writeRegister(APIC_ICR2, 1 << 24, 0n);
    l0.writeRegister(APIC_ICR, 0x4500, 0n);
    expect(l1.hasPendingInitOrSipi).toBe(true);
    expect(l1.acceptEvents(KVM_MP_STATE_UNINITIALIZED, false)).toEqual({ init: true, mpState: KVM_MP_STATE_INIT_RECEIVED, sipiVector: undefined });
    expect(l1.readRegister(APIC_TASKPRI, 4, 0n)).toBe(0);
    expect(l1.swEnabled).toBe(false);
    l0.writeRegister(APIC_ICR, 0x4600 | 0x9a, 0n);
    expect(l1.acceptEvents(KVM_MP_STATE_INIT_RECEIVED, false)).toEqual({ init: false, mpState: KVM_MP_STATE_RUNNABLE, sipiVector: 0x9a });
    expect(l1.hasPendingInitOrSipi).toBe(false);
  });

  test('a SIPI to a running vCPU is dropped; INIT leaves the BSP runnable', () => {
    const { vcpus } = enabled(2);
    vcpus[1]!.lapic.writeRegister(APIC_ICR, 0x40000 | 0x4600 | 0x10, 0n);
    expect(vcpus[1]!.lapic.acceptEvents(KVM_MP_STATE_RUNNABLE, false)).toEqual({ init: false, mpState: KVM_MP_STATE_RUNNABLE, sipiVector: undefined });
    vcpus[1]!.lapic.writeRegister(APIC_ICR2, 0, 0n);
    vcpus[1]!.lapic.writeRegister(APIC_ICR, 0x4500, 0n);
    expect(vcpus[0]!.lapic.acceptEvents(KVM_MP_STATE_RUNNABLE, true).mpState).toBe(KVM_MP_STATE_RUNNABLE);
  });
});

describe('KVM_SET_LAPIC in x2APIC mode', () => {
  test('with 32-bit IDs (x2apic_format) a foreign ID is EINVAL, and SVR was applied first, as in Linux', () => {
    const chip = KvmIrqchip.createKernel({ x2apicFormat: true });
    const v = chip.addVcpu(fakeVcpu(3));
    v.lapic.setCpuid({ x2apic: true, tscDeadline: false, maxPhyAddr: 36 });
    v.lapic.setApicBase(0xfee00c00n, true);
    const page = v.lapic.getState(0n);
    expect(new DataView(page.buffer).getUint32(APIC_ID, true)).toBe(3);
    new DataView(page.buffer).setUint32(APIC_ID, 4, true);
    new DataView(page.buffer).setUint32(APIC_SPIV, 0x1ff, true);
    expect(() => chip.setLapicState(v, page, 0n)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
    expect(v.lapic.swEnabled).toBe(true);
  });

  test('without it the ID is KVM’s (read back as id << 24), the LDR derived, ICR2 split out of the 64-bit ICR', () => {
    const chip = KvmIrqchip.createKernel();
    const v = chip.addVcpu(fakeVcpu(0x13));
    v.lapic.setCpuid({ x2apic: true, tscDeadline: false, maxPhyAddr: 36 });
    v.lapic.setApicBase(0xfee00c00n, true);
    v.lapic.writeRegister(APIC_SPIV, 0x1ff, 0n);
    expect(v.lapic.writeX2apicMsr(0x830, (5n << 32n) | 0x4031n, 0n)).toBe(true); // fixed IPI to x2APIC 5 (nobody)
    const page = v.lapic.getState(0n);
    const dv = new DataView(page.buffer);
    expect(dv.getUint32(APIC_ID, true)).toBe(0x13000000);
    expect(dv.getUint32(APIC_LDR, true)).toBe((1 << 16) | (1 << 3));
    expect([dv.getUint32(APIC_ICR, true), dv.getUint32(APIC_ICR2, true)]).toEqual([0x4031, 5]);
    dv.setUint32(APIC_ID, 0x77, true);
    chip.setLapicState(v, page, 0n);
    expect(v.lapic.readX2apicMsr(0x802, 0n)).toBe(0x13n);
    expect(v.lapic.readX2apicMsr(0x830, 0n)).toBe((5n << 32n) | 0x4031n);
  });
});

describe('the APIC base MSR — kvm_set_apic_base', () => {
  test('reserved bits, x2APIC without CPUID, invalid mode and the guest’s forbidden transitions fail', () => {
    const { vcpus } = vmWith(1);
    const l = vcpus[0]!.lapic;
    expect(l.setApicBase(0xfee00900n | 1n, false)).toBe(false);
    expect(l.setApicBase(0xfee00d00n, false)).toBe(false); // x2APIC not in CPUID
    l.setCpuid({ x2apic: true, tscDeadline: true, maxPhyAddr: 36 });
    expect(l.setApicBase(0xfee00500n, false)).toBe(false); // x2APIC without enable: invalid
    expect(l.setApicBase(0x1_0000_0000_0900n, false)).toBe(false); // above MAXPHYADDR
    expect(l.setApicBase(0xfee00d00n, false)).toBe(true);
    expect(l.x2apicMode).toBe(true);
    expect(l.readX2apicMsr(0x802, 0n)).toBe(0n); // x2APIC ID = vCPU id
    expect(l.readX2apicMsr(0x80d, 0n)).toBe(1n); // LDR (cluster 0, bit 0)
    expect(l.setApicBase(0xfee00900n, false)).toBe(false); // x2APIC → xAPIC by the guest
    expect(l.setApicBase(0xfee00900n, true)).toBe(true); // … but the host may
    expect(l.apicBase & (MSR_IA32_APICBASE_ENABLE | X2APIC_ENABLE)).toBe(MSR_IA32_APICBASE_ENABLE);
  });

  test('a disabled APIC’s MMIO reads all-ones; a moved base moves the page', () => {
    const { vcpus } = vmWith(1);
    const l = vcpus[0]!.lapic;
    expect(l.mmioRead(0xfee00030n, 4, 0n)).toBe(0x50014);
    l.setApicBase(0xfed00900n, true);
    expect(l.mmioRead(0xfee00030n, 4, 0n)).toBeUndefined();
    expect(l.mmioRead(0xfed00030n, 4, 0n)).toBe(0x50014);
    l.setApicBase(0xfed00000n, true);
    expect(l.mmioRead(0xfed00030n, 4, 0n)).toBe(0xffffffff);
  });
});

describe('the timer in simulated time', () => {
  test('one-shot: TMCCT counts down by the divider; the expiry kicks and LVTT delivers once', () => {
    const { vcpus, fakes } = enabled(1);
    const l = vcpus[0]!.lapic;
    l.writeRegister(APIC_TDCR, 0x3, 0n); // divide by 16
    l.writeRegister(APIC_LVTT, 0xef, 0n);
    l.writeRegister(APIC_TMICT, 1000, 100n);
    expect(l.nextDeadline()).toBe(100n + 16_000n);
    expect(l.readRegister(APIC_TMCCT, 4, 100n + 1600n)).toBe(900);
    const kicks = fakes[0]!.kicks;
    l.advance(100n + 16_000n);
    expect(fakes[0]!.kicks).toBe(kicks + 1);
    expect(l.hasPendingTimer()).toBe(true);
    l.injectPendingTimer();
    expect(l.hasInterrupt()).toBe(0xef);
    expect(l.readRegister(APIC_TMCCT, 4, 200_000n)).toBe(0);
    expect(l.nextDeadline()).toBeUndefined();
  });

  test('periodic needs KVM_SET_CPUID (timer_mode_mask); then it re-arms every period (≥ 200 µs)', () => {
    const { vcpus } = enabled(1);
    const l = vcpus[0]!.lapic;
    l.writeRegister(APIC_LVTT, 0x20000 | 0xe0, 0n);
    expect(l.readRegister(APIC_LVTT, 4, 0n)).toBe(0xe0); // mode bits dropped before KVM_SET_CPUID
    l.setCpuid({ x2apic: false, tscDeadline: false, maxPhyAddr: 36 });
    l.writeRegister(APIC_LVTT, 0x20000 | 0xe0, 0n);
    l.writeRegister(APIC_TDCR, 0xb, 0n); // divide by 1
    l.writeRegister(APIC_TMICT, 10, 0n); // 10 ns, limited to 200 µs (limit_periodic_timer_frequency)
    expect(l.nextDeadline()).toBe(200_000n);
    l.advance(200_000n);
    expect(l.nextDeadline()).toBe(400_000n);
    l.injectPendingTimer();
    expect(l.hasInterrupt()).toBe(0xe0);
    l.advance(200_000n * 6n); // five more periods; one pending expiry at a time
    expect(l.timer.pending).toBe(1);
    expect(l.nextDeadline()).toBe(200_000n * 7n);
  });

  test('TSC deadline: the MSR arms the timer at the deadline; reading it back after delivery gives 0', () => {
    const { vcpus } = enabled(1);
    const l = vcpus[0]!.lapic;
    l.setCpuid({ x2apic: false, tscDeadline: true, maxPhyAddr: 36 });
    l.writeRegister(APIC_LVTT, 0x40000 | 0xd0, 0n);
    l.setTscDeadlineMsr(5000n, 1000n); // guest TSC = ns at 1 GHz
    expect(l.getTscDeadlineMsr()).toBe(5000n);
    expect(l.nextDeadline()).toBe(5000n);
    l.writeRegister(APIC_TMICT, 99, 1000n); // ignored in TSC-deadline mode
    l.advance(5000n);
    l.injectPendingTimer();
    expect(l.hasInterrupt()).toBe(0xd0);
    expect(l.getTscDeadlineMsr()).toBe(0n);
  });

  test('an hour of a 200 µs periodic timer passes in one step (one expiry pending, the next period armed)', () => {
    const { chip, vcpus } = enabled(1);
    const l = vcpus[0]!.lapic;
    l.setCpuid({ x2apic: false, tscDeadline: false, maxPhyAddr: 36 });
    l.writeRegister(APIC_LVTT, 0x20000 | 0xe0, 0n);
    l.writeRegister(APIC_TDCR, 0xb, 0n);
    l.writeRegister(APIC_TMICT, 200_000, 0n);
    chip.advance(3_600_000_000_000n);
    expect(l.timer.pending).toBe(1);
    expect(l.nextDeadline()).toBe(3_600_000_000_000n + 200_000n);
  });

  test('time may not go back', () => {
    const { vcpus } = enabled(1);
    vcpus[0]!.lapic.advance(10n);
    expect(() => vcpus[0]!.lapic.advance(9n)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }) as Error);
  });
});

describe('the APIC bus — kvm_irq_delivery_to_apic', () => {
  test('a lowest-priority physical broadcast goes to every APIC as fixed; the sender’s message is not changed', () => {
    const { chip, vcpus } = enabled(2);
    const msg: LapicIrq = { vector: 0x5a, deliveryMode: APIC_DM_LOWEST, destMode: APIC_DEST_PHYSICAL, level: true, trigMode: 0, shorthand: APIC_DEST_NOSHORT, destId: 0xff, msiRedirHint: false };
    const before = { ...msg };
    expect(chip.bus.deliver(undefined, msg)).toBe(2);
    expect(vcpus.map((v) => v.lapic.hasInterrupt())).toEqual([0x5a, 0x5a]);
    expect(msg).toEqual(before);
  });
});

describe('readable registers — kvm_lapic_readable_reg_mask', () => {
  // Linux's list: always these (ISR, TMR, IRR eight words each), the CMCI LVT when there is one, and ARBPRI, DFR and
  // ICR2 outside x2APIC mode.
  const always = [
    APIC_ID, APIC_LVR, APIC_TASKPRI, APIC_PROCPRI, APIC_LDR, APIC_SPIV, APIC_ESR, APIC_ICR, APIC_LVTT, APIC_LVTTHMR,
    APIC_LVTPC, APIC_LVT0, APIC_LVT1, APIC_LVTERR, APIC_TMICT, APIC_TMCCT, APIC_TDCR,
    ...Array.from({ length: 8 }, (_, i) => [APIC_ISR + 0x10 * i, APIC_TMR + 0x10 * i, APIC_IRR + 0x10 * i]).flat(),
  ];
  const mask = (regs: number[]): bigint => regs.reduce((m, r) => m | (1n << BigInt(r >> 4)), 0n);

  test('xAPIC, with the CMCI LVT, x2APIC: the mask, and a 4-byte read of every register outside it answers undefined', () => {
    const { vcpus } = enabled(1);
    const l = vcpus[0]!.lapic;
    const check = (regs: number[]): void => {
      expect(l.readableRegMask()).toBe(mask(regs));
      for (let off = 0; off <= 0x3f0; off += 0x10) expect(l.readRegister(off, 4, 0n) === undefined, `0x${off.toString(16)}`).toBe(!regs.includes(off));
    };
    check([...always, APIC_ARBPRI, APIC_DFR, APIC_ICR2]);
    l.setMcgCap(1n << 10n); // MCG_CAP.CMCI_P
    check([...always, APIC_LVTCMCI, APIC_ARBPRI, APIC_DFR, APIC_ICR2]);
    l.setCpuid({ x2apic: true, tscDeadline: false, maxPhyAddr: 40 });
    expect(l.setApicBase(0xfee00000n | MSR_IA32_APICBASE_ENABLE | X2APIC_ENABLE, true)).toBe(true);
    check([...always, APIC_LVTCMCI]);
    expect(l.readRegister(-0x10, 4, 0n)).toBeUndefined();
    expect(l.readRegister(0x400, 4, 0n)).toBeUndefined();
  });
});
