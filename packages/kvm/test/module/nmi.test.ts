/**
 * NMI blocking (arch/x86/kvm/x86.c `kvm_check_and_inject_events`, `process_nmi`, `kvm_vcpu_has_events`,
 * `kvm_vcpu_ready_for_interrupt_injection`, `kvm_vcpu_ioctl_x86_get/set_vcpu_events`; vmx/vmx.c `vmx_nmi_blocked`,
 * svm/svm.c `svm_nmi_blocked`, `svm_inject_nmi`, `iret_interception`): an injected NMI blocks the next until the
 * handler's IRET; while blocked at most one more stays pending and the rest are dropped; an STI or MOV SS shadow holds
 * an NMI for one instruction; KVM_GET/SET_VCPU_EVENTS show and set exactly that.
 */
import { describe, expect, test } from 'vitest';
import {
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_GET_MP_STATE,
  KVM_MP_STATE_RUNNABLE,
  KVM_SET_USER_MEMORY_REGION,
  mapKvmRun,
  makeKvmMpState,
  vcpuOf,
  KVM_EXIT_IRQ_WINDOW_OPEN,
  KVM_GET_REGS,
  KVM_GET_VCPU_EVENTS,
  KVM_NMI,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_VCPU_EVENTS,
  makeKvmRegs,
  makeKvmVcpuEvents,
} from '../../src/index.js';
import { guestVm, startAt1000, type GuestVm } from '../abi/guest-vm.js';
import { openVm } from '../abi/support.js';
import { VENDORS } from './helpers.js';

const KVM_VCPUEVENT_VALID_NMI_PENDING = 1;
const KVM_VCPUEVENT_VALID_SHADOW = 4;
const KVM_X86_SHADOW_INT_STI = 2;

/**
 * The guest: main at 0x1000 `out 0x10; out 0x11; out 0x12; hlt`; the NMI handler (IVT vector 2) at 0x2000
 * `out 0x20; out 0x21; iret`. Each OUT is an exit whose port says where the guest is.
 */
function nmiGuest(vendor: (typeof VENDORS)[number]): GuestVm {
  const g = guestVm(vendor, [0xe6, 0x10, 0xe6, 0x11, 0xe6, 0x12, 0xf4]);
  g.mem.bytes.set([0x00, 0x20, 0x00, 0x00], 2 * 4);
  g.mem.bytes.set([0xe6, 0x20, 0xe6, 0x21, 0xcf], 0x2000);
  return g;
}

/**
 * As {@link nmiGuest} with an in-kernel irqchip (KVM_CREATE_IRQCHIP before the vCPU), the NMI handler at 0x2000
 * `out 0x50; hlt; out 0x51; iret` (ports 0x20/0x21 are the in-kernel PIC's).
 */
function irqchipNmiGuest(vendor: (typeof VENDORS)[number]): GuestVm {
  const s = openVm(vendor, 0);
  const mem = s.p.mmapAnonymous(0x10000);
  mem.bytes.set([0xe6, 0x10, 0xe6, 0x11, 0xf4], 0x1000);
  mem.bytes.set([0x00, 0x20, 0x00, 0x00], 2 * 4);
  mem.bytes.set([0xe6, 0x50, 0xf4, 0xe6, 0x51, 0xcf], 0x2000);
  s.p.ioctl(s.vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: mem.addr });
  s.p.ioctl(s.vm, KVM_CREATE_IRQCHIP, 0);
  const fd = s.p.ioctl(s.vm, KVM_CREATE_VCPU, 0);
  startAt1000(s.p, fd, 0x8000n);
  const run = mapKvmRun(s.p, s.sys, fd);
  return { ...s, vcpus: [fd], runs: [run], mem, fd, run };
}

/** KVM_RUN; the port of the OUT it exited at. */
function runToPort(g: GuestVm): number {
  expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
  expect(g.run.exit_reason).toBe(KVM_EXIT_IO);
  return g.run.io.port;
}

/** KVM_GET_VCPU_EVENTS' NMI fields: [injected, pending, masked]. */
function nmiState(g: GuestVm): number[] {
  const ev = makeKvmVcpuEvents();
  g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
  return [ev.nmi.injected, ev.nmi.pending, ev.nmi.masked];
}

describe.each(VENDORS)('NMI blocking on $name', (vendor) => {
  test('an NMI blocks the next until its IRET: one more stays pending (the rest are dropped) and is injected right after the IRET', () => {
    const g = nmiGuest(vendor);
    expect(g.p.ioctl(g.fd, KVM_NMI, 0)).toBe(0);
    expect(runToPort(g)).toBe(0x20); // in the handler
    expect(nmiState(g)).toEqual([0, 0, 1]);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    expect(nmiState(g)).toEqual([0, 1, 1]); // process_nmi: limit 1 while blocked
    expect(runToPort(g)).toBe(0x21); // the handler goes on: no nested NMI
    expect(runToPort(g)).toBe(0x20); // its IRET unblocked NMIs; the pending one came before the next instruction
    expect(nmiState(g)).toEqual([0, 0, 1]);
    expect(runToPort(g)).toBe(0x21);
    expect(runToPort(g)).toBe(0x10); // the second IRET returns to main
    expect(nmiState(g)).toEqual([0, 0, 0]);
  });

  test('two NMIs queued while unblocked: both are pending (limit 2); the first is injected, the second after its IRET', () => {
    const g = nmiGuest(vendor);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    expect(nmiState(g)).toEqual([0, 2, 0]);
    expect(runToPort(g)).toBe(0x20);
    expect(nmiState(g)).toEqual([0, 1, 1]);
    expect(runToPort(g)).toBe(0x21);
    expect(runToPort(g)).toBe(0x20);
    expect(runToPort(g)).toBe(0x21);
    expect(runToPort(g)).toBe(0x10);
  });

  test('KVM_SET_VCPU_EVENTS nmi.masked blocks a pending NMI (KVM_GET reads it back) until user space unblocks it', () => {
    const g = nmiGuest(vendor);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING;
    ev.nmi.pending = 2;
    ev.nmi.masked = 1;
    expect(g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev)).toBe(0);
    expect(nmiState(g)).toEqual([0, 1, 1]); // process_nmi with NMIs blocked keeps one
    expect(runToPort(g)).toBe(0x10);
    expect(runToPort(g)).toBe(0x11);
    // Unblocked from user space: injected at the next entry.
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    ev.flags = 0;
    ev.nmi.masked = 0;
    g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev);
    expect(nmiState(g)).toEqual([0, 1, 0]);
    expect(runToPort(g)).toBe(0x20);
  });

  test('an NMI being injected (nmi.injected) is injected again whatever the mask says', () => {
    const g = nmiGuest(vendor);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    ev.nmi.injected = 1;
    ev.nmi.masked = 1;
    g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev);
    expect(nmiState(g)).toEqual([1, 0, 1]);
    expect(runToPort(g)).toBe(0x20);
    expect(nmiState(g)).toEqual([0, 0, 1]);
  });

  test('an STI shadow holds a pending NMI for one instruction', () => {
    const g = nmiGuest(vendor);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
    ev.nmi.pending = 1;
    ev.interrupt.shadow = KVM_X86_SHADOW_INT_STI;
    g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev);
    expect(runToPort(g)).toBe(0x10); // the shadowed instruction first
    expect(runToPort(g)).toBe(0x20);
  });

  test('a blocked pending NMI does not close the interrupt window (KVM_EXIT_IRQ_WINDOW_OPEN)', () => {
    const g = nmiGuest(vendor);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    expect(runToPort(g)).toBe(0x20);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    // The handler runs with IF = 0 (as delivered); the VMM sets it so that the window is open.
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    expect(ev.nmi.pending).toBe(1);
    g.run.request_interrupt_window = 1;
    setIf(g);
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_IRQ_WINDOW_OPEN);
  });

  test('a halted vCPU (in-kernel LAPIC) is not woken by a blocked pending NMI, but a KVM_NMI (KVM_REQ_NMI) wakes it', () => {
    const g = irqchipNmiGuest(vendor);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    expect(runToPort(g)).toBe(0x50);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    // The handler's HLT: the pending NMI is blocked, nothing else can wake it: EINTR.
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }));
    expect(g.run.exit_reason).toBe(KVM_EXIT_INTR);
    expect(nmiState(g)).toEqual([0, 1, 1]);
    // A new NMI request wakes it (the NMI itself stays blocked: one pending, the second dropped).
    g.p.ioctl(g.fd, KVM_NMI, 0);
    expect(runToPort(g)).toBe(0x51);
    const mp = makeKvmMpState();
    g.p.ioctl(g.fd, KVM_GET_MP_STATE, mp);
    expect(mp.mp_state).toBe(KVM_MP_STATE_RUNNABLE);
    expect(nmiState(g)).toEqual([0, 1, 1]);
    expect(runToPort(g)).toBe(0x50); // the IRET: the pending NMI
  });

  test(`INIT ${vendor.name === 'intel' ? 'unblocks NMIs (vmx_vcpu_reset clears the interruptibility state)' : 'leaves NMIs blocked (svm_vcpu_reset keeps nmi_masked)'}`, () => {
    const g = irqchipNmiGuest(vendor);
    g.p.ioctl(g.fd, KVM_NMI, 0);
    expect(runToPort(g)).toBe(0x50);
    expect(nmiState(g)[2]).toBe(1);
    const lapic = vcpuOf(g.p, g.fd).intr?.chip?.lapic;
    expect(lapic).toBeDefined();
    lapic!.pendingEvents |= 1; // KVM_APIC_INIT, as an INIT IPI leaves it
    g.p.ioctl(g.fd, KVM_GET_MP_STATE, makeKvmMpState()); // accepts it: kvm_vcpu_reset(vcpu, true)
    expect(nmiState(g)).toEqual([0, 0, vendor.name === 'intel' ? 0 : 1]);
  });
});

/** Set RFLAGS.IF through KVM_GET/SET_REGS. */
function setIf(g: GuestVm): void {
  const regs = makeKvmRegs();
  g.p.ioctl(g.fd, KVM_GET_REGS, regs);
  regs.rflags |= 0x200n;
  g.p.ioctl(g.fd, KVM_SET_REGS, regs);
}
