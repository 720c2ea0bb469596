/**
 * Moving an SEV guest: its memory is readable only with its key, so a move hands the encryption context to the new
 * VM (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM) — EBADF across modules as the RFC stands, so it stays on its module; with
 * `vac.cross_module_moves=Y` VAC mediates and the guest moves, its SEV ASID with it, and the old module can go.
 */
import { createHost, faultSites, isKernelError, vacOf, type Host } from '@vac/core';
import { completePendingIo, kvm } from '@vac/kvm';
import { SEV_ASIDS, amd } from '@vac/svm';
import { describe, expect, test } from 'vitest';
import { GuestVmm, countingGuest, describeUpgrade, moveByHandoff, moveInPlace, runUpgrade, words } from '../src/index.js';

const state = (host: Host): string => JSON.stringify(host.snapshot(), (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v), 1);

function sevHost(mediated: boolean): Host {
  const host = createHost({ cpus: 2, hardware: amd({ sev: true }) });
  host.modprobe('vac', mediated ? { cross_module_moves: 'Y' } : {});
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  return host;
}

const sevGuest = (host: Host, memfd = false): GuestVmm => GuestVmm.create(host, { name: 'sev', devPath: '/dev/kvm0', code: countingGuest({ busy: 25, upTo: 40 }), sev: true, irqchip: 'kernel', memfd });

const asids = (host: Host): Array<{ asid: number; holder: string }> => vacOf(host)?.tryResource(SEV_ASIDS)?.state().inUse ?? [];

/** The guest's whole output when it is never moved. */
function unmovedOutput(): number[] {
  const host = sevHost(false);
  const ref = sevGuest(host);
  ref.start();
  host.scheduler.runUntilIdle(10_000);
  return words(ref.output);
}

describe('an SEV guest and its module', () => {
  test('without VAC mediating: the check refuses (the guest stays on kvm0, runs on as if never touched); unchecked, KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM is EBADF and the move rolls back to the same host state', () => {
    const host = sevHost(false);
    const vmm = sevGuest(host);
    expect(vmm.sev).toBe(true);
    expect(asids(host)).toEqual([{ asid: 100, holder: 'kvm0/vm1' }]);
    vmm.start();
    host.scheduler.run(5);
    const checked = moveInPlace(vmm, '/dev/kvm1');
    expect(checked).toMatchObject({ outcome: 'rolled-back', failedPhase: 'check' });
    expect(String(checked.error)).toMatch(/cross_module_moves=Y/);

    vmm.pause();
    for (const v of vmm.current.handle.vcpus) completePendingIo(vmm.proc, v.fd, v.run);
    vmm.start();
    const before = state(host);
    const unchecked = moveInPlace(vmm, '/dev/kvm1', { check: false });
    expect(unchecked).toMatchObject({ outcome: 'rolled-back', failedPhase: 'restore' });
    expect(isKernelError(unchecked.error, 'EBADF')).toBe(true); // kvm1 does not take kvm0's VM fd (file_is_kvm)
    expect(state(host)).toBe(before);
    expect(() => host.rmmod('kvm0')).toThrow(expect.objectContaining({ code: 'EWOULDBLOCK' })); // the guest holds kvm0 (rmmod: in use)
    host.scheduler.runUntilIdle(10_000);
    expect(words(vmm.output)).toEqual(unmovedOutput());
  });

  test.each(['in place', 'by handoff'] as const)('with vac.cross_module_moves=Y, moved %s: the SEV ASID goes to kvm1\'s VM, kvm0 can be unloaded, the output is the unmoved guest\'s', (how) => {
    const host = sevHost(true);
    const vmm = sevGuest(host, how === 'by handoff');
    vmm.start();
    host.scheduler.run(5);
    const { result, vmm: now } = how === 'in place' ? { result: moveInPlace(vmm, '/dev/kvm1'), vmm } : moveByHandoff(vmm, '/dev/kvm1');
    expect(result.outcome).toBe('moved');
    expect(asids(host)).toEqual([{ asid: 100, holder: 'kvm1/vm1' }]);
    expect(now.sev).toBe(true);
    if (how === 'by handoff') expect(now.proc.fds().map((f) => f.path).filter((p) => p.includes('kvm-vm'))).toEqual(['anon_inode:kvm-vm']); // the dead source's fd was closed
    host.rmmod('kvm0');
    host.scheduler.runUntilIdle(10_000);
    expect(words(now.output)).toEqual(unmovedOutput());
  });
});

describe('an upgrade plan on an SEV host', () => {
  function hostWithGuests(mediated: boolean): { host: Host; vmms: GuestVmm[] } {
    const host = createHost({ cpus: 2, hardware: amd({ sev: true }) });
    host.modprobe('vac', mediated ? { cross_module_moves: 'Y' } : {});
    host.modprobe(kvm({ postfix: '0' }));
    const vmms = [false, true, false].map((sev, i) => GuestVmm.create(host, { name: `vm${i + 1}`, devPath: '/dev/kvm0', code: countingGuest(), sev }));
    for (const v of vmms) v.start();
    host.scheduler.run(3);
    return { host, vmms };
  }

  test('without VAC mediating, the SEV guest stays (not a failure) and the old module stays loaded; the dry run says so', () => {
    const { host, vmms } = hostWithGuests(false);
    const plan = { from: 'kvm0', load: { image: kvm({ postfix: '1' }) }, vmms, batchSize: 2 };
    expect(describeUpgrade(plan)).toEqual([
      'load kvm1 next to kvm0',
      'smoke test: create and close a VM on /dev/kvm1',
      'batch 1: move vm1 (1 vCPU), vm3 (1 vCPU)',
      'stay on kvm0: vm2 (SEV guests; vac.cross_module_moves=N)',
      'on failure: after 0 tolerated, rollback',
      'keep kvm0 loaded (the SEV guests hold it)',
    ]);
    const r = runUpgrade(host, plan);
    expect(r.outcome).toBe('completed');
    expect(r.failures).toEqual([]);
    expect(r.vms.map((v) => `${v.vmm}:${v.outcome}`)).toEqual(['vm1:moved', 'vm2:stays', 'vm3:moved']);
    expect(r.oldModuleKept).toBe(true);
    expect(r.actions.at(-1)).toMatchObject({ action: 'keep' });
    expect(host.lsmod().map((m) => m.name)).toContain('kvm0');
    expect(vmms[1]!.devPath).toBe('/dev/kvm0');
  });

  test('with VAC mediating, the SEV guest moves like the others and the old module is unloaded', () => {
    const { host, vmms } = hostWithGuests(true);
    const r = runUpgrade(host, { from: 'kvm0', load: { image: kvm({ postfix: '1' }) }, vmms });
    expect(r.vms.map((v) => v.outcome)).toEqual(['moved', 'moved', 'moved']);
    expect(r.oldModuleKept).toBe(false);
    expect(host.lsmod().map((m) => m.name)).not.toContain('kvm0');
    expect(asids(host)).toEqual([{ asid: 100, holder: 'kvm1/vm3' }]); // kvm1's vm1 was the smoke test's; vm2 is vm1's
  });
});

describe('an SEV move that fails rolls back: the guest runs on kvm0 with its ASID, the host as it was', () => {
  test.each([...faultSites().keys()])('a fault at every %s allocation of a mediated move', (site) => {
    const outcomes: string[] = [];
    for (let n = 1; n < 80; n++) {
      const host = sevHost(true);
      const vmm = sevGuest(host);
      vmm.start();
      host.scheduler.run(5);
      vmm.pause();
      for (const v of vmm.current.handle.vcpus) completePendingIo(vmm.proc, v.fd, v.run);
      vmm.start();
      const before = state(host);
      host.faults.failNth(site as never, n);
      const fired = host.faults.fired.length;
      const r = moveInPlace(vmm, '/dev/kvm1');
      host.faults.clear();
      if (host.faults.fired.length === fired) {
        expect(r.outcome).toBe('moved');
        break;
      }
      outcomes.push(r.outcome);
      if (r.outcome === 'rolled-back') {
        expect(state(host), `${site} #${n}`).toBe(before);
        expect(asids(host)).toEqual([{ asid: 100, holder: 'kvm0/vm1' }]);
      } else {
        expect(asids(host)).toEqual([{ asid: 100, holder: 'kvm1/vm1' }]); // a soft failure: moved all the same
      }
      host.scheduler.runUntilIdle(10_000);
      expect(words(vmm.output)).toEqual(unmovedOutput());
    }
    if (['fd', 'mmap', 'vm', 'vcpu'].includes(site)) expect(outcomes.length > 0 && outcomes.every((o) => o === 'rolled-back')).toBe(true);
  });
});
