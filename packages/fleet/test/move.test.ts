import { createHost, faultSites, type Host } from '@vac/core';
import { KVM_GET_REGS, LINUX_5_7, completePendingIo, kvm, makeKvmRegs, type KvmBuild } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { GuestVmm, MOVE_PHASES, countingGuest, moveInPlace, words, type ExitHandler } from '../src/index.js';

const MSR_KVM_ASYNC_PF_INT = 0x4b564d06;

/** The host's whole observable state, as text. */
const state = (host: Host): string => JSON.stringify(host.snapshot(), (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v), 1);

/**
 * The state to compare a rolled-back move with: the VM paused, its last exit's I/O completed (what any pause does),
 * its threads started again (they have not run yet: the move's pause stops them before they enter KVM_RUN).
 */
function settled(vmm: GuestVmm): string {
  vmm.pause();
  for (const v of vmm.current.handle.vcpus) completePendingIo(vmm.proc, v.fd, v.run);
  vmm.start();
  return state(vmm.host);
}

function twoModules(vendor: 'intel' | 'amd', target?: KvmBuild): Host {
  const host = createHost({ cpus: 4, hardware: vendor === 'intel' ? intel() : amd() });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(target === undefined ? kvm({ postfix: '1' }) : kvm({ postfix: '1', build: target }));
  return host;
}

/** Four programs, one per vCPU, each counting on its own port at its own pace. */
const PROGRAMS = [0, 1, 2, 3].map((i) => countingGuest({ origin: 0x1000 + i * 0x1000, counterOffset: 0x800, port: 0x3f8 + i, busy: 30 + 17 * i, upTo: 40 + i }));
const CODE = PROGRAMS.flatMap((p) => [...p, ...new Array<number>(0x1000 - p.length).fill(0)]);

/** Per vCPU: what it printed. */
function perVcpuOutput(): { outputs: number[][]; onExit: ExitHandler } {
  const outputs: number[][] = [[], [], [], []];
  const onExit: ExitHandler = (_vmm, id, run) => {
    if (run.exit_reason === 2) {
      const o = run.io.data_offset;
      outputs[id]!.push((run.bytes[o] ?? 0) | ((run.bytes[o + 1] ?? 0) << 8));
      return 'continue';
    }
    return 'stop';
  };
  return { outputs, onExit };
}

function fourVcpuVm(host: Host, onExit: ExitHandler): GuestVmm {
  return GuestVmm.create(host, { name: 'vmm', devPath: '/dev/kvm0', code: CODE, vcpus: 4, memorySize: 0x4000, regs: (id) => ({ rip: BigInt(0x1000 + id * 0x1000) }), onExit });
}

function finalRegs(vmm: GuestVmm): unknown[] {
  return vmm.current.handle.vcpus.map((v) => {
    const r = makeKvmRegs();
    vmm.proc.ioctl(v.fd, KVM_GET_REGS, r);
    return r;
  });
}

describe.each(['intel', 'amd'] as const)('moveInPlace on %s', (vendor) => {
  test('a 4-vCPU guest moved mid-run prints exactly what one never moved prints, and ends in the same state', () => {
    const ref = perVcpuOutput();
    const refHost = twoModules(vendor);
    const never = fourVcpuVm(refHost, ref.onExit);
    never.start();
    refHost.scheduler.runUntilIdle(10_000);

    const moved = perVcpuOutput();
    const host = twoModules(vendor);
    const vmm = fourVcpuVm(host, moved.onExit);
    vmm.start();
    host.scheduler.run(15);
    const midway = moved.outputs.map((o) => o.length);
    expect(midway.every((n, i) => n > 0 && n < 40 + i)).toBe(true); // really mid-run
    const r = moveInPlace(vmm, '/dev/kvm1');
    expect(r.outcome).toBe('moved');
    expect(vmm.devPath).toBe('/dev/kvm1');
    host.scheduler.runUntilIdle(10_000);

    expect(moved.outputs).toEqual(ref.outputs);
    expect(moved.outputs.map((o) => o.at(-1))).toEqual([40, 41, 42, 43]);
    expect(moved.outputs[0]).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(finalRegs(vmm)).toEqual(finalRegs(never));
    expect([...vmm.memory.bytes]).toEqual([...never.memory.bytes]);
    // kvm0 holds nothing of the VMM any more: it unloads.
    host.rmmod('kvm0');
    expect(host.lsmod().map((m) => m.name)).not.toContain('kvm0');
  });

  test('every phase is an event, in order, and the move is counted: ioctls per move grow by a fixed number per vCPU', () => {
    const counts: number[] = [];
    for (const n of [1, 2, 3]) {
      const host = twoModules(vendor);
      const vmm = GuestVmm.create(host, { devPath: '/dev/kvm0', code: countingGuest({ busy: 50 }), vcpus: n, memorySize: 0x1000 });
      vmm.start();
      host.scheduler.run(3);
      const seen: string[] = [];
      host.events.onAny((name, e) => {
        if (name === 'fleet:move-phase') seen.push((e as unknown as { phase: string }).phase);
        if (name === 'fleet:move') seen.push(`move:${(e as unknown as { outcome: string }).outcome}`);
      });
      const r = moveInPlace(vmm, '/dev/kvm1');
      expect(seen).toEqual([...MOVE_PHASES, 'move:moved']);
      expect(r.phases.map((p) => p.phase)).toEqual([...MOVE_PHASES]);
      expect(r.phases.every((p) => p.ok)).toBe(true);
      expect(r.phases.reduce((a, p) => a + p.ioctls, 0)).toBe(r.syscalls.ioctls);
      expect(r.syscalls.byName.get('KVM_CREATE_VM')).toBe(1);
      expect(r.syscalls.byName.get('KVM_CREATE_VCPU')).toBe(n);
      expect(r.syscalls.byName.get('KVM_SET_CLOCK')).toBe(1);
      // The blackout is what the calls cost plus the pause: the clock moved by exactly their cost after the pause.
      expect(r.blackoutNs).toBeGreaterThan(r.pauseNs);
      counts.push(r.syscalls.ioctls);
    }
    expect(counts[2]! - counts[1]!).toBe(counts[1]! - counts[0]!);
    expect(counts[1]! - counts[0]!).toBeGreaterThan(20);
  });
});

describe('a move that fails rolls back: the VM runs on the source, the host as it was', () => {
  const sites = [...faultSites().keys()];

  test.each(sites)('a fault at every %s allocation the move makes', (site) => {
    const outcomes: string[] = [];
    for (let n = 1; n < 80; n++) {
      const host = twoModules('intel');
      const out = perVcpuOutput();
      const vmm = GuestVmm.create(host, { name: 'vmm', devPath: '/dev/kvm0', code: CODE.slice(0, 0x2000), vcpus: 2, memorySize: 0x2000, regs: (id) => ({ rip: BigInt(0x1000 + id * 0x1000) }), onExit: out.onExit });
      vmm.start();
      host.scheduler.run(5);
      const before = settled(vmm);
      host.faults.failNth(site as never, n);
      const firedBefore = host.faults.fired.length;
      const r = moveInPlace(vmm, '/dev/kvm1');
      host.faults.clear();
      if (host.faults.fired.length === firedBefore) {
        expect(r.outcome).toBe('moved'); // the move makes fewer than n such calls: every one of them was made to fail
        break;
      }
      outcomes.push(r.outcome);
      if (r.outcome === 'rolled-back') {
        expect(r.failedPhase).toBe('restore');
        expect(state(host), `${site} #${n}`).toBe(before);
        expect(vmm.devPath).toBe('/dev/kvm0');
      } else {
        expect(vmm.devPath).toBe('/dev/kvm1'); // a soft failure (a VPID or ASID): the vCPU runs without one
      }
      host.scheduler.runUntilIdle(10_000);
      expect(out.outputs.slice(0, 2)).toEqual([Array.from({ length: 40 }, (_, i) => i + 1), Array.from({ length: 41 }, (_, i) => i + 1)]);
      expect(vmm.problems).toEqual([]);
    }
    // The hard sites fail the move at each call; the soft ones never do.
    if (['fd', 'mmap', 'vm', 'vcpu'].includes(site)) expect(outcomes.length > 0 && outcomes.every((o) => o === 'rolled-back')).toBe(true);
    else expect(outcomes.every((o) => o === 'moved')).toBe(true);
  });

  test('the target refuses the VM (canMove: an MSR the guest uses is not in its list): stopped at check, nothing changed', () => {
    const host = twoModules('intel', LINUX_5_7);
    const vmm = GuestVmm.create(host, { devPath: '/dev/kvm0', code: countingGuest({ busy: 20 }), irqchip: 'kernel', msrs: [{ index: MSR_KVM_ASYNC_PF_INT, data: 0xecn }] });
    vmm.start();
    host.scheduler.run(5);
    const before = settled(vmm);
    const printed = vmm.output.length;
    const r = moveInPlace(vmm, '/dev/kvm1');
    expect(r.outcome).toBe('rolled-back');
    expect(r.failedPhase).toBe('check');
    expect(String(r.error)).toContain('MSR 0x4b564d06 = 0xec is not in the target');
    expect(r.phases.map((p) => `${p.phase}:${p.ok}`)).toEqual(['pause:true', 'save:true', 'check:false']);
    expect(state(host)).toBe(before);
    host.scheduler.run(5);
    expect(vmm.output.length).toBeGreaterThan(printed); // it runs on, on kvm0
    expect(vmm.devPath).toBe('/dev/kvm0');
  });

  test('without the check the move goes through and the MSR the target does not list is lost, as canMove said', () => {
    const host = twoModules('amd', LINUX_5_7);
    const vmm = GuestVmm.create(host, { devPath: '/dev/kvm0', code: countingGuest({ busy: 20 }), irqchip: 'kernel', msrs: [{ index: MSR_KVM_ASYNC_PF_INT, data: 0xecn }] });
    vmm.start();
    host.scheduler.run(5);
    const r = moveInPlace(vmm, '/dev/kvm1', { check: false });
    expect(r.outcome).toBe('moved');
    expect(r.verdict?.reasons.filter((x) => x.kind === 'loses-state').map((x) => x.detail)).toEqual(["vCPU 0: MSR 0x4b564d06 = 0xec is not in the target's KVM_GET_MSR_INDEX_LIST: its value would be lost"]);
    expect(r.syscalls.byName.get('KVM_SET_MSRS')).toBe(2); // the APIC base, then the listed MSRs in one call: none refused
    host.scheduler.run(5);
    const after = words(vmm.output);
    expect(after).toEqual(Array.from({ length: after.length }, (_, i) => i + 1));
  });

  test('a target that does not exist: ENOENT at restore (probed facts given), rolled back', () => {
    const host = twoModules('intel');
    const vmm = GuestVmm.create(host, { devPath: '/dev/kvm0', code: countingGuest() });
    vmm.start();
    host.scheduler.run(2);
    const before = settled(vmm);
    const r = moveInPlace(vmm, '/dev/kvm7');
    expect(r.outcome).toBe('rolled-back');
    expect(r.failedPhase).toBe('check');
    expect((r.error as { code?: string }).code).toBe('ENOENT');
    expect(state(host)).toBe(before);
  });

  test('moving to where the VM already is is a usage error, and changes nothing', () => {
    const host = twoModules('intel');
    const vmm = GuestVmm.create(host, { devPath: '/dev/kvm0', code: countingGuest() });
    expect(() => moveInPlace(vmm, '/dev/kvm0')).toThrow(/already runs on \/dev\/kvm0/);
  });
});
