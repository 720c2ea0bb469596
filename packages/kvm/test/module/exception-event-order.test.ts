/**
 * An NMI or interrupt waiting at an entry that carries an exception (arch/x86/kvm/x86.c `kvm_check_and_inject_events`):
 * the exception goes alone. A pending NMI (or an injectable interrupt, or an SMI) cannot go with it (`can_inject`
 * false → -EBUSY), so the entry is an immediate exit (`req_immediate_exit`): the guest leaves before the exception
 * handler's first instruction, and the next entry injects the NMI on top of the exception's frame. An NMI or interrupt
 * set as being injected (`nmi.injected`, `interrupt.injected`) is not re-injected beside the exception and the exit
 * after the entry drops it (vmx/vmx.c `__vmx_complete_interrupts`, svm/svm.c `svm_complete_interrupts`).
 *
 * A host whose kvm0 has `syncRunLimit: 1` ends a direct KVM_RUN with EINTR (KVM_EXIT_INTR) after its first pass, as a
 * signal arriving then would: that is where the immediate exit shows, and KVM_GET_VCPU_EVENTS reads the state between
 * the two entries.
 */
import { O_RDWR } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_GET_REGS,
  KVM_GET_VCPU_EVENTS,
  KVM_RUN,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_VCPU_EVENTS,
  kvm,
  makeKvmRegs,
  makeKvmVcpuEvents,
  mapKvmRun,
  readKvmStats,
  type KvmRunView,
} from '../../src/index.js';
import { startAt1000 } from '../abi/guest-vm.js';
import { makeHost, vmmProcess, VENDORS } from './helpers.js';
import type { Process } from '@vac/core';

const KVM_VCPUEVENT_VALID_NMI_PENDING = 1;
/** The exception injected: #UD (a fault: its frame returns to the instruction). */
const UD_VECTOR = 6;

/** A real-mode vCPU at 0x1000 and its `kvm_run`. */
interface Guest {
  readonly p: Process;
  readonly fd: number;
  readonly run: KvmRunView;
}

/**
 * A guest on a host of `vendor` whose kvm0 has the given `syncRunLimit`: main at 0x1000 `out 0x10; hlt`; the NMI
 * handler (vector 2) at 0x2000 `out 0x20; iret`; the #UD handler (vector 6) at 0x3000 `out 0x30; iret`; an interrupt
 * handler (vector 0x40) at 0x4000 `out 0x40; iret`. Each OUT is an exit whose port says where the guest is.
 */
function guest(vendor: (typeof VENDORS)[number], syncRunLimit?: number): Guest {
  const host = makeHost(vendor.hardware(), 2);
  host.modprobe(kvm({ postfix: '0', ...(syncRunLimit === undefined ? {} : { syncRunLimit }) }));
  const p = vmmProcess(host);
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const mem = p.mmapAnonymous(0x10000);
  mem.bytes.set([0xe6, 0x10, 0xf4], 0x1000);
  for (const [vector, at, port] of [
    [2, 0x2000, 0x20],
    [UD_VECTOR, 0x3000, 0x30],
    [0x40, 0x4000, 0x40],
  ] as const) {
    mem.bytes.set([at & 0xff, at >> 8, 0, 0], vector * 4);
    mem.bytes.set([0xe6, port, 0xcf], at);
  }
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: mem.addr });
  const fd = p.ioctl(vm, KVM_CREATE_VCPU, 0);
  startAt1000(p, fd, 0x8000n);
  return { p, fd, run: mapKvmRun(p, sys, fd) };
}

/** KVM_SET_VCPU_EVENTS: #UD injected, and what `also` adds. */
function injectUd(g: Guest, also: (ev: ReturnType<typeof makeKvmVcpuEvents>) => void): void {
  const ev = makeKvmVcpuEvents();
  g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
  ev.exception.injected = 1;
  ev.exception.nr = UD_VECTOR;
  also(ev);
  expect(g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev)).toBe(0);
}

/** KVM_GET_VCPU_EVENTS: [exception.injected, interrupt.injected, nmi.injected, nmi.pending, nmi.masked]. */
function events(g: Guest): number[] {
  const ev = makeKvmVcpuEvents();
  g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
  return [ev.exception.injected, ev.interrupt.injected, ev.nmi.injected, ev.nmi.pending, ev.nmi.masked];
}

/** The ports of the next `n` OUT exits. */
function ports(g: Guest, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_IO);
    out.push(g.run.io.port);
  }
  return out;
}

describe.each(VENDORS)('an exception and an NMI at the same entry ($name)', (vendor) => {
  test('a pending NMI waits for the next entry: the entry with the exception is an immediate exit', () => {
    const g = guest(vendor, 1);
    injectUd(g, (ev) => {
      ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING;
      ev.nmi.pending = 1;
    });
    expect(events(g)).toEqual([1, 0, 0, 1, 0]);
    // The first entry delivers #UD alone and leaves at once; the run ends there (a signal then: EINTR).
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(g.run.exit_reason).toBe(KVM_EXIT_INTR);
    expect(events(g)).toEqual([0, 0, 0, 1, 0]);
    const regs = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, regs);
    expect([regs.rip, regs.rsp]).toEqual([0x3000n, 0x7ffan]); // at the #UD handler, nothing of it run, its frame pushed
    // The next entry injects the NMI on top: its handler, then the #UD handler, then main.
    expect(ports(g, 1)).toEqual([0x20]);
    expect(events(g)).toEqual([0, 0, 0, 0, 1]);
    expect(ports(g, 2)).toEqual([0x30, 0x10]);
  });

  test('within one KVM_RUN the immediate exit is invisible: the NMI handler runs first, over the #UD frame', () => {
    const g = guest(vendor);
    injectUd(g, (ev) => {
      ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING;
      ev.nmi.pending = 1;
    });
    expect(ports(g, 3)).toEqual([0x20, 0x30, 0x10]);
  });

  test('an NMI set as being injected beside an injected exception is dropped (only the exception is delivered)', () => {
    const g = guest(vendor, 1);
    injectUd(g, (ev) => {
      ev.nmi.injected = 1;
    });
    expect(events(g)).toEqual([1, 0, 1, 0, 0]);
    expect(ports(g, 1)).toEqual([0x30]);
    expect(events(g)).toEqual([0, 0, 0, 0, 0]);
    expect(ports(g, 1)).toEqual([0x10]);
  });

  test('an interrupt set as being injected beside an injected exception is dropped at the immediate exit', () => {
    const g = guest(vendor, 1);
    injectUd(g, (ev) => {
      ev.interrupt.injected = 1;
      ev.interrupt.nr = 0x40;
    });
    expect(events(g)).toEqual([1, 1, 0, 0, 0]);
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(events(g)).toEqual([0, 0, 0, 0, 0]);
    expect(ports(g, 2)).toEqual([0x30, 0x10]);
  });
});

describe.each(VENDORS)('NMIs and interrupts being injected ($name)', (vendor) => {
  test('an NMI and an interrupt both set as being injected: the NMI is injected again (an immediate exit: the interrupt still queued counts) and the exit drops the interrupt', () => {
    const g = guest(vendor, 1);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    ev.nmi.injected = 1;
    ev.interrupt.injected = 1;
    ev.interrupt.nr = 0x40;
    expect(g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev)).toBe(0);
    expect(events(g)).toEqual([0, 1, 1, 0, 0]);
    // The entry with the NMI leaves at once (the interrupt still queued counts as injectable: kvm_cpu_has_extint).
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(events(g)).toEqual([0, 0, 0, 0, 1]);
    const regs = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, regs);
    expect(regs.rip).toBe(0x2000n);
    // The NMI handler, then main: interrupt 0x40 never comes.
    expect(ports(g, 2)).toEqual([0x20, 0x10]);
  });

  test('an interrupt being injected and a pending NMI: the interrupt goes first, the entry is an immediate exit, the NMI comes before the interrupt handler\'s first instruction', () => {
    const g = guest(vendor, 1);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING;
    ev.nmi.pending = 1;
    ev.interrupt.injected = 1;
    ev.interrupt.nr = 0x40;
    expect(g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev)).toBe(0);
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(events(g)).toEqual([0, 0, 0, 1, 0]);
    const regs = makeKvmRegs();
    g.p.ioctl(g.fd, KVM_GET_REGS, regs);
    expect([regs.rip, regs.rsp]).toEqual([0x4000n, 0x7ffan]);
    // The NMI on top of the interrupt's frame: its handler, the interrupt's, then main.
    expect(ports(g, 3)).toEqual([0x20, 0x40, 0x10]);
  });

  test('the exits statistic counts VM exits, as stat.exits does: KVM_RUN with immediate_exit none (no entry), the immediate exit of a re-injected interrupt one', () => {
    const g = guest(vendor);
    const exits = (): number | undefined => readKvmStats(g.p, g.fd)['exits'];
    g.run.immediate_exit = 1;
    expect(() => g.p.ioctl(g.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    g.run.immediate_exit = 0;
    expect(exits()).toBe(0);
    const ev = makeKvmVcpuEvents();
    g.p.ioctl(g.fd, KVM_GET_VCPU_EVENTS, ev);
    ev.interrupt.injected = 1;
    ev.interrupt.nr = 0x40;
    expect(g.p.ioctl(g.fd, KVM_SET_VCPU_EVENTS, ev)).toBe(0);
    // The entry that injects 0x40 leaves at once (without an in-kernel LAPIC the queued interrupt counts as injectable:
    // kvm_cpu_has_extint), the next runs to the handler's OUT: two VM exits for one return to user space.
    expect(ports(g, 1)).toEqual([0x40]);
    expect(exits()).toBe(2);
    expect(ports(g, 1)).toEqual([0x10]);
    expect(exits()).toBe(3);
  });
});
