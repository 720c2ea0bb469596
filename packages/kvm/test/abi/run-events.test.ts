/**
 * KVM_RUN details of issue 11 and the events a VMM injects (arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl_run`,
 * `inject_pending_event`, `prepare_emulation_failure_exit`): `exit_reason` after `immediate_exit` (as a real kernel
 * leaves it), `internal.ndata` of an emulation failure, KVM_INTERRUPT and KVM_NMI delivered at the next entry through
 * the real-mode IVT, an exception and a triple fault from KVM_SET_VCPU_EVENTS.
 */
import { describe, expect, test } from 'vitest';
import {
  KVM_ENABLE_CAP,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_SHUTDOWN,
  KVM_CAPS,
  KVM_GET_REGS,
  KVM_GET_VCPU_EVENTS,
  KVM_INTERRUPT,
  KVM_NMI,
  KVM_RUN,
  KVM_SET_VCPU_EVENTS,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  makeKvmEnableCap,
  makeKvmInterrupt,
  makeKvmRegs,
  makeKvmVcpuEvents,
  KVM_VCPU_EVENTS_CODEC,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { REAL, errnoOf, openVm } from './support.js';
import { guestVm } from './guest-vm.js';

/** IVT entries 0x20 (interrupt), 2 (NMI), 6 (#UD) → handlers at 0x2000 / 0x2100 / 0x2200 that `out` their mark and halt. */
function withHandlers(mem: Uint8Array): void {
  const entry = (vector: number, ip: number): void => mem.set([ip & 0xff, ip >> 8, 0, 0], vector * 4);
  entry(0x20, 0x2000);
  entry(2, 0x2100);
  entry(6, 0x2200);
  mem.set([0xb0, 0x20, 0xe6, 0x80, 0xf4], 0x2000); // mov al,0x20; out 0x80,al; hlt
  mem.set([0xb0, 0x02, 0xe6, 0x80, 0xf4], 0x2100);
  mem.set([0xb0, 0x06, 0xe6, 0x80, 0xf4], 0x2200);
}

describe.each(VENDORS)('KVM_RUN and injected events on $name', (vendor) => {
  test('immediate_exit: EINTR without entering, exit_reason as the last exit left it (a real kernel: 2 after an I/O exit)', () => {
    const g = guestVm(vendor, [0xe6, 0x10, 0x0f, 0x0b]); // out 0x10,al; ud2
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(REAL.run['first_exit_reason']);
    g.run.immediate_exit = 1;
    // (the OUT the last exit reported completes first: RIP moves past it; the guest does not run)
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: REAL.run['immediate_errno'] }));
    expect(g.run.exit_reason).toBe(REAL.run['exit_reason_after_immediate_exit']);
    const r = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, r);
    expect(r.rip).toBe(0x1002n);
  });

  test('an emulation failure reports the flags, the instruction bytes and five words of exit information (ndata 8)', () => {
    const g = guestVm(vendor, [0x0f, 0x58, 0xc0]); // addps xmm0, xmm0: SSE, not implemented by the model's interpreter
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_INTERNAL_ERROR);
    expect(g.run.emulation_failure.ndata).toBe(8);
    expect(g.run.emulation_failure.flags).toBe(1); // KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES
  });

  test('KVM_INTERRUPT: the vector is delivered at the next KVM_RUN through the IVT; over 255 is EINVAL; with an in-kernel irqchip ENXIO', () => {
    const g = guestVm(vendor, [0xfb, 0xf4, 0xf4]); // sti; hlt; hlt
    withHandlers(g.mem.bytes);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(errnoOf(g.host, () => g.p.ioctl(g.fd, KVM_INTERRUPT, makeKvmInterrupt({ irq: 256 })))).toBe('EINVAL');
    expect(g.p.ioctl(g.fd, KVM_INTERRUPT, makeKvmInterrupt({ irq: 0x20 }))).toBe(0);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    expect([ev.interrupt.injected, ev.interrupt.nr]).toEqual([1, 0x20]);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect([g.run.exit_reason, g.run.io.port, g.run.bytes[g.run.io.data_offset]]).toEqual([KVM_EXIT_IO, 0x80, 0x20]);
    // the handler's frame: FLAGS (IF set), CS 0, the IP after the first hlt
    const r = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, r);
    expect([...g.mem.bytes.subarray(0x7ffa, 0x8000)]).toEqual([0x02, 0x10, 0x00, 0x00, 0x02 | 0, 0x02]);
    expect(r.rflags & 0x200n).toBe(0n); // IF cleared by the delivery
    const k = openVm(vendor, 0);
    k.p.ioctl(k.vm, KVM_CREATE_IRQCHIP, 0);
    const kfd = k.p.ioctl(k.vm, KVM_CREATE_VCPU, 0);
    expect(errnoOf(k.host, () => k.p.ioctl(kfd, KVM_INTERRUPT, makeKvmInterrupt({ irq: 0x20 })))).toBe('ENXIO');
  });

  test('KVM_NMI: an NMI is delivered at the next entry (vector 2)', () => {
    const g = guestVm(vendor, [0xf4, 0xf4]);
    withHandlers(g.mem.bytes);
    expect(g.p.ioctl(g.fd, KVM_NMI, 0)).toBe(0);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    expect(ev.nmi.pending).toBe(1);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect([g.run.exit_reason, g.run.io.port, g.run.bytes[g.run.io.data_offset]]).toEqual([KVM_EXIT_IO, 0x80, 0x02]);
  });

  test('KVM_SET_VCPU_EVENTS: an injected exception is delivered at the next entry; a triple fault (with the capability) is KVM_EXIT_SHUTDOWN', () => {
    const g = guestVm(vendor, [0xf4]);
    withHandlers(g.mem.bytes);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    ev.exception.injected = 1;
    ev.exception.nr = 6;
    // pending and a payload without KVM_VCPUEVENT_VALID_PAYLOAD: the kernel's copy drops them, the caller's keeps them
    ev.exception.pending = 1;
    ev.exception_has_payload = 1;
    const asBytes = KVM_VCPU_EVENTS_CODEC.toBytes(ev);
    const given = { object: structuredClone(ev), bytes: asBytes.slice() };
    expect(g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev)).toBe(0);
    expect(g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, asBytes)).toBe(0);
    expect({ object: ev, bytes: asBytes }).toEqual(given);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect([g.run.exit_reason, g.run.bytes[g.run.io.data_offset]]).toEqual([KVM_EXIT_IO, 0x06]);

    const t = guestVm(vendor, [0xf4]);
    const tev = makeKvmVcpuEvents();
    t.p.ioctl(t.fd, KVM_GET_VCPU_EVENTS, tev);
    tev.flags = 0x20; // KVM_VCPUEVENT_VALID_TRIPLE_FAULT
    tev.triple_fault.pending = 1;
    expect(errnoOf(t.host, () => t.p.ioctl(t.fd, KVM_SET_VCPU_EVENTS, tev))).toBe('EINVAL'); // not enabled yet
    t.p.ioctl(t.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAPS.KVM_CAP_X86_TRIPLE_FAULT_EVENT, args: [1n, 0n, 0n, 0n] }));
    expect(t.p.ioctl(t.fd, KVM_SET_VCPU_EVENTS, tev)).toBe(0);
    t.p.ioctl(t.fd, KVM_RUN, 0);
    expect(t.run.exit_reason).toBe(KVM_EXIT_SHUTDOWN);
  });

  test('KVM_SET_VCPU_EVENTS with an exception, an NMI and an interrupt: one event state (KVM_GET_VCPU_EVENTS reads it back); the exception is delivered alone (vcpu-requests) and the entry is an immediate exit, which drops the interrupt set as being injected (vmx/svm_complete_interrupts); the next entry injects the NMI before the exception handler\'s first instruction, so the NMI handler runs first, then the exception\'s', () => {
    // handlers that out their mark and return (iret), so each delivery shows in order
    const g = guestVm(vendor, [0xf4]);
    const mem = g.mem.bytes;
    const entry = (vector: number, ip: number): void => mem.set([ip & 0xff, ip >> 8, 0, 0], vector * 4);
    entry(0x20, 0x2000);
    entry(2, 0x2100);
    entry(6, 0x2200);
    mem.set([0xb0, 0x20, 0xe6, 0x80, 0xcf], 0x2000);
    mem.set([0xb0, 0x02, 0xe6, 0x80, 0xcf], 0x2100);
    mem.set([0xb0, 0x06, 0xe6, 0x80, 0xf4], 0x2200);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    ev.exception.injected = 1;
    ev.exception.nr = 6;
    ev.nmi.pending = 1;
    ev.interrupt.injected = 1;
    ev.interrupt.nr = 0x20;
    ev.flags = 1; // KVM_VCPUEVENT_VALID_NMI_PENDING
    g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev);
    const back = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, back);
    expect([back.exception.injected, back.nmi.pending, back.interrupt.injected, back.interrupt.nr]).toEqual([1, 1, 1, 0x20]);
    const marks: number[] = [];
    for (let i = 0; i < 2; i++) {
      g.p.ioctl(g.fd, KVM_RUN, 0);
      expect(g.run.exit_reason).toBe(KVM_EXIT_IO);
      marks.push(g.run.bytes[g.run.io.data_offset]!);
    }
    expect(marks).toEqual([0x02, 0x06]);
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, back);
    expect([back.exception.injected, back.nmi.pending, back.interrupt.injected]).toEqual([0, 0, 0]);
  });
});
