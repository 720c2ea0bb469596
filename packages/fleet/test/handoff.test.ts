import { createHost, faultSites, type Host } from '@vac/core';
import { LINUX_5_7, completePendingIo, kvm, type KvmBuild } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { GuestVmm, HANDOFF_PHASES, countingGuest, moveByHandoff, words } from '../src/index.js';

const state = (host: Host): string => JSON.stringify(host.snapshot(), (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v), 1);

function twoModules(vendor: 'intel' | 'amd', target?: KvmBuild): Host {
  const host = createHost({ cpus: 4, hardware: vendor === 'intel' ? intel() : amd() });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(target === undefined ? kvm({ postfix: '1' }) : kvm({ postfix: '1', build: target }));
  return host;
}

const counting = (host: Host, more: Partial<Parameters<typeof GuestVmm.create>[1]> = {}): GuestVmm =>
  GuestVmm.create(host, { name: 'vmm', devPath: '/dev/kvm0', code: countingGuest({ busy: 25, upTo: 50 }), vcpus: 1, memfd: true, irqchip: 'kernel', ...more });

describe.each(['intel', 'amd'] as const)('moveByHandoff on %s', (vendor) => {
  test('a new VMM process adopts the memfd at its own address and runs the guest on, exactly as if never moved', () => {
    const refHost = twoModules(vendor);
    const ref = counting(refHost);
    ref.start();
    refHost.scheduler.run(400);

    const host = twoModules(vendor);
    const vmm = counting(host);
    vmm.start();
    host.scheduler.run(10);
    const seen: string[] = [];
    host.events.on('fleet:move-phase', (e) => seen.push(e.phase));
    const { result, vmm: next } = moveByHandoff(vmm, '/dev/kvm1');
    expect(result.outcome).toBe('moved');
    expect(seen).toEqual([...HANDOFF_PHASES]);
    expect(next).not.toBe(vmm);
    expect(next.proc.pid).not.toBe(vmm.proc.pid);
    expect(vmm.proc.alive).toBe(false); // the old VMM exited
    // The slot is registered at the new process's own mapping of the memfd (each process has its own address space).
    expect(next.memory).not.toBe(vmm.memory);
    expect(next.proc.mappings()).toContain(next.memory);
    expect(next.slots[0]?.userspace_addr).toBe(next.memory.addr);
    expect(next.proc.file(next.memfd!).path).toMatch(/^\/memfd:guest-ram/);
    host.scheduler.run(400);
    expect(words(next.output)).toEqual(words(ref.output));
    expect(words(next.output)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect([...next.memory.bytes]).toEqual([...ref.memory.bytes]);
    host.rmmod('kvm0');
  });
});

describe('a handoff that fails rolls back: the old VMM runs on, the host as it was', () => {
  test.each([...faultSites().keys()])('a fault at every %s allocation of the handoff', (site) => {
    const outcomes: string[] = [];
    for (let n = 1; n < 80; n++) {
      const host = twoModules('intel');
      const vmm = counting(host);
      vmm.start();
      host.scheduler.run(5);
      vmm.pause();
      for (const v of vmm.current.handle.vcpus) completePendingIo(vmm.proc, v.fd, v.run);
      vmm.start();
      const before = state(host);
      host.faults.failNth(site as never, n);
      const fired = host.faults.fired.length;
      const { result, vmm: after } = moveByHandoff(vmm, '/dev/kvm1');
      host.faults.clear();
      if (host.faults.fired.length === fired) {
        expect(result.outcome).toBe('moved');
        break;
      }
      outcomes.push(result.outcome);
      if (result.outcome === 'rolled-back') {
        expect(after).toBe(vmm);
        expect(state(host), `${site} #${n}`).toBe(before);
      }
      host.scheduler.run(300);
      expect(words(after.output)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    }
    if (['fd', 'mmap', 'vm', 'vcpu'].includes(site)) expect(outcomes.length > 0 && outcomes.every((o) => o === 'rolled-back')).toBe(true);
  });

  test('the target refuses the VM: stopped at check, before any process is started', () => {
    const host = twoModules('intel', LINUX_5_7);
    const vmm = counting(host, { msrs: [{ index: 0x4b564d06, data: 0xecn }] });
    vmm.start();
    host.scheduler.run(3);
    const pids = host.processes().map((p) => p.pid);
    const { result } = moveByHandoff(vmm, '/dev/kvm1');
    expect(result.failedPhase).toBe('check');
    expect(host.processes().map((p) => p.pid)).toEqual(pids);
  });

  test('guest memory that is not a memfd cannot be handed over', () => {
    const host = twoModules('intel');
    const vmm = counting(host, { memfd: false });
    expect(() => moveByHandoff(vmm, '/dev/kvm1')).toThrow(/guest memory is not a memfd/);
  });
});
