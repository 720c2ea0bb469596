/**
 * The hardware_disable scenario (Linux's tools/testing/selftests/kvm/hardware_disable_test.c): many VMM
 * processes, each with a VM of 4 vCPUs whose threads run on CPUs 0–3, killed at random points — before their
 * threads started, between two KVM_RUNs, and while the vCPUs are loaded and in guest mode (between vcpu_load
 * and vcpu_put). After every kill the invariants hold and no PMI is attributed to a dead VM; after the last one
 * (enable_virt_at_load=0) every allocator is empty, every CPU is disabled and every user-return MSR holds its
 * host value. Here on two KVM modules at once, with guests that spin, do I/O, or halt with an in-kernel
 * irqchip, and on AMD some of them SEV guests.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { checkInvariants, isKernelError, type Host, type Process, type Thread } from '@vac/core';
import { kvmInstance, KVM_CREATE_IRQCHIP, KVM_MEMORY_ENCRYPT_OP, KVM_RUN, kvm, type KvmInstance } from '../../src/index.js';
import { GUESTS, VENDORS, makeHost, prng, readyVm, tally, vacHoldings, vacIn } from './support.js';

const VMMS = 50;
const kvm0 = kvm({ postfix: '0' });
const kvm1 = kvm({ postfix: '1' });

afterAll(() => {
  console.log(`[hardware_disable] ${tally.kills} kills, ${tally.killsInGuest} of them with vCPUs in guest mode`);
});

interface Vmm {
  readonly p: Process;
  readonly threads: Thread[];
  readonly errors: unknown[];
}

/** Every vCPU label of every live VM of the KVM modules. */
function liveLabels(host: Host): Set<string> {
  const out = new Set<string>();
  for (const name of ['kvm0', 'kvm1']) {
    if (host.modules.get(name) !== undefined) for (const v of kvmInstance(host, name).allVcpus()) out.add(v.label);
  }
  return out;
}

/** Whether any vCPU of a VM owned by `p` is loaded on a CPU and in guest mode. */
function inGuest(host: Host, p: Process): boolean {
  for (const name of ['kvm0', 'kvm1']) {
    if (host.modules.get(name) === undefined) continue;
    const inst = kvmInstance(host, name);
    for (const vm of inst.vms) {
      if (vm.owner !== p) continue;
      for (const v of vm.vcpus.values()) if (v.loadedOn >= 0 && v.inGuest) return true;
    }
  }
  return false;
}

describe.each(VENDORS)('hardware_disable on $name', (vendor) => {
  test.each([1, 2, 3])(`${VMMS} VMMs × 4 vCPUs on CPUs 0–3, killed at random points (seed %i)`, (seed) => {
    const rand = prng(seed * 7919 + (vendor.name === 'amd' ? 1 : 0));
    const host = makeHost(vendor, 4);
    host.modprobe(kvm0, { enable_virt_at_load: 0 });
    host.insmod(kvm1, { enable_virt_at_load: 0 });
    const live: Vmm[] = [];
    let spawned = 0;
    let killed = 0;
    let inGuestKills = 0;
    while (killed < VMMS) {
      if (spawned < VMMS && (live.length < 2 || (live.length < 8 && rand() < 0.6))) {
        const p = host.spawn({ uid: 1000, groups: ['kvm'], name: `vmm${spawned}`, cpu: Math.floor(rand() * 4) });
        const dev = rand() < 0.5 ? '/dev/kvm0' : '/dev/kvm1';
        const r = rand();
        const code = r < 0.6 ? GUESTS.spin : r < 0.8 ? GUESTS.io : GUESTS.hlt;
        const irqchip = code === GUESTS.hlt;
        const sev = vendor.name === 'amd' && rand() < 0.25;
        const t = readyVm(p, dev, code, 4, (vm) => {
          if (irqchip) p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
          if (sev) p.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, { id: 0, data: 0, error: 0, sev_fd: 0 });
        });
        const vmm: Vmm = { p, threads: [], errors: [] };
        // Some VMMs are killed before all their vCPU threads exist.
        const nThreads = rand() < 0.15 ? Math.floor(rand() * 4) : 4;
        for (let i = 0; i < nThreads; i++) {
          const fd = t.vcpus[i] as number;
          vmm.threads.push(
            host.scheduler.spawn(p, { cpu: i, name: `vmm${spawned}/vcpu${i}` }, function* (th) {
              for (;;) {
                try {
                  yield* th.ioctl(fd, KVM_RUN, 0);
                } catch (e) {
                  if (!isKernelError(e, 'EINTR')) {
                    vmm.errors.push(e);
                    return;
                  }
                }
                yield;
              }
            }),
          );
        }
        live.push(vmm);
        spawned++;
      }
      host.scheduler.run(Math.floor(rand() * 4));
      if (rand() < 0.3) host.raisePostedIntrWakeup(Math.floor(rand() * 4));
      if (rand() < 0.5 && live.length > 0) {
        // Half the time the victim is one whose vCPUs are in guest mode right now, if there is one.
        const running = live.findIndex((x) => inGuest(host, x.p));
        const i = running >= 0 && rand() < 0.5 ? running : Math.floor(rand() * live.length);
        const vmm = live[i] as Vmm;
        if (inGuest(host, vmm.p)) inGuestKills++;
        vmm.p.kill();
        live.splice(i, 1);
        killed++;
        expect(vmm.errors).toEqual([]);
        expect(vmm.threads.every((t) => !t.alive)).toBe(true);
        expect(checkInvariants(host)).toEqual([]);
        // No PMI is attributed to a VM that no longer exists.
        const labels = liveLabels(host);
        for (let cpu = 0; cpu < 4; cpu++) {
          const pmi = host.raisePmi(cpu);
          if (pmi.attributedTo !== undefined) expect(labels.has(pmi.attributedTo)).toBe(true);
          const running = vacIn(host).cpu(cpu).running;
          if (running !== undefined) expect(labels.has(running)).toBe(true);
        }
      }
      expect(checkInvariants(host)).toEqual([]);
    }
    tally.kills += killed;
    tally.killsInGuest += inGuestKills;
    expect(spawned).toBe(VMMS);
    expect(inGuestKills).toBeGreaterThanOrEqual(5);
    // After the last kill: nothing held, every CPU disabled, every user-return MSR at its host value.
    expect(vacHoldings(host)).toEqual({ usage: 0, enabled: [], vpids: 0, asids: 0, sev: 0, uretDirty: [] });
    expect(vacIn(host).usageHolders()).toEqual([]);
    expect(host.lsmod().find((m) => m.name === 'kvm0')?.refcount).toBe(0);
    host.rmmod('kvm0');
    host.rmmod('kvm1');
    host.rmmod('vac');
    expect(checkInvariants(host)).toEqual([]);
    expect(host.cpus.every((c) => !host.hardware.virt.isEnabled(c.id))).toBe(true);
  });
});
