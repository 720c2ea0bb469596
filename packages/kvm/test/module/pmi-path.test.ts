/**
 * The model's whole PMI path (`host.raisePmi`) asks VAC's perf callbacks once (`sample`: the running vCPU looked up
 * once) instead of `state()`, `getIp()` and `attribute()` one after the other: it must answer exactly what the three
 * answer, count the same NMI exits and offer the same `pmi:guest` events; and a guest RIP of 2^53 or more is a RIP
 * like any other (it used to escape as a UsageError from the number accessor).
 */
import { describe, expect, test } from 'vitest';
import { vacOf, type Host, type PmiResult } from '@vac/core';
import { KVM_RUN, kvm, vcpuOf, type Vcpu } from '../../src/index.js';
import { SPIN, VENDORS, makeHost, makeVm, vmmProcess } from './helpers.js';

/** A host with a kvm0 vCPU thread in guest mode on CPU 1 (a spinning guest, one tick in). */
function guestOnCpu1(hardware: Parameters<typeof makeHost>[0]): { host: Host; vcpu: Vcpu } {
  const host = makeHost(hardware);
  host.modprobe(kvm({ postfix: '0' }));
  const p = vmmProcess(host);
  const t = makeVm(p, '/dev/kvm0', SPIN, 1);
  const fd = t.vcpus[0]?.fd as number;
  host.scheduler.spawn(p, { cpu: 1 }, function* (th) {
    yield* th.ioctl(fd, KVM_RUN, 0);
  });
  host.scheduler.tick();
  return { host, vcpu: vcpuOf(p, fd) };
}

/** What perf's three callbacks answer, asked one by one (as Linux's perf does). */
function oneByOne(host: Host, cpu: number): PmiResult {
  const cbs = vacOf(host)?.internals.irq.perfCallbacks;
  if (cbs === undefined) throw new Error('no VAC');
  const state = cbs.state(cpu);
  return { cpu, state, ip: state !== 0 ? cbs.getIp(cpu) : undefined, callbacks: cbs.name, attributedTo: state !== 0 ? cbs.attribute?.(cpu) : undefined };
}

describe.each(VENDORS)('the PMI path on $name', (vendor) => {
  test('raisePmi answers what state(), getIp() and attribute() answer, and counts the same NMI exits and events', () => {
    const a = guestOnCpu1(vendor.hardware());
    const b = guestOnCpu1(vendor.hardware());
    const eventsA: unknown[] = [];
    const eventsB: unknown[] = [];
    a.host.events.on('pmi:guest', (e) => eventsA.push(e));
    b.host.events.on('pmi:guest', (e) => eventsB.push(e));
    for (const cpu of [0, 1, 2, 1]) expect(a.host.raisePmi(cpu)).toEqual(oneByOne(b.host, cpu));
    expect(a.vcpu.stats.nmi_exits).toBe(2);
    expect(b.vcpu.stats.nmi_exits).toBe(2);
    expect(eventsA).toEqual(eventsB);
    expect(a.host.events.seq).toBe(b.host.events.seq);
  });

  test('with nobody listening (the unbracketed path) the answers and the NMI exits are the same', () => {
    const a = guestOnCpu1(vendor.hardware());
    const b = guestOnCpu1(vendor.hardware());
    for (const cpu of [1, 3, 1, 0]) expect(a.host.raisePmi(cpu)).toEqual(oneByOne(b.host, cpu));
    expect([a.vcpu.stats.nmi_exits, b.vcpu.stats.nmi_exits]).toEqual([2, 2]);
    expect(a.host.events.seq).toBe(b.host.events.seq);
  });

  test('a guest RIP of 2^53 or more is answered exactly (it threw a UsageError), and the event carries the nearest number', () => {
    const { host, vcpu } = guestOnCpu1(vendor.hardware());
    vcpu.regs.set64('rip', 0xffff_ffff_ffff_f000n);
    const events: number[] = [];
    host.events.on('pmi:guest', (e) => events.push(e.rip));
    const r = host.raisePmi(1);
    expect(r.ip).toBe(0xffff_ffff_ffff_f000n);
    expect(r.attributedTo).toBe('kvm0/vm1/vcpu0');
    expect(events).toEqual([2 ** 64 - 4096]);
    expect(oneByOne(host, 1).ip).toBe(0xffff_ffff_ffff_f000n);
  });
});
