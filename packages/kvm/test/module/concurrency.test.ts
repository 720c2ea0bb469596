/**
 * Concurrency in simulated time (issue 4, "Done means" 4): vCPU threads that stay in guest mode across
 * scheduler ticks while CPUs go offline, signals arrive, processes die, the host suspends — and the same
 * calls giving the same event stream.
 */
import { PERF_GUEST_ACTIVE, checkInvariants, type EventName, type EventStamp, type Host } from '@vac/core';
import type { IntelHardware } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import {
  KVM_CREATE_IRQCHIP,
  KVM_EXIT_HLT,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_IN,
  KVM_GET_REGS,
  KVM_RUN,
  kvm,
  makeKvmRegs,
} from '../../src/index.js';
import { SPIN, VENDORS, makeHost, makeVm, vmmProcess } from './helpers.js';
import { addVcpu, expectCode, expectFail, fourPinnedSpinners, rng, spawnVcpuThread, vacIn, type VcpuThread } from './integration.js';
import { VPIDS } from '@vac/vmx';
import { ASIDS } from '@vac/svm';

type Vendor = (typeof VENDORS)[number];

function oneSpinner(vendor: Vendor, cpu: number, params = {}): { host: Host; t: VcpuThread; proc: ReturnType<typeof vmmProcess> } {
  const host = makeHost(vendor.hardware(), 4);
  host.modprobe(kvm({ postfix: '0' }), params);
  const proc = vmmProcess(host);
  const vm = makeVm(proc, '/dev/kvm0', SPIN);
  const v = vm.vcpus[0]!;
  return { host, proc, t: spawnVcpuThread(host, proc, v.fd, v.run, { cpu }) };
}

const intelHw = (host: Host): IntelHardware => host.hardware as IntelHardware;

describe.each(VENDORS)('vCPU threads in simulated time on $name', (vendor) => {
  test('a vCPU thread in KVM_RUN stays in guest mode across ticks (PERF_GUEST_ACTIVE)', () => {
    const { host, t } = oneSpinner(vendor, 2);
    host.scheduler.run(5);
    expect(t.thread.alive).toBe(true);
    expect(t.inRun).toBe(true);
    expect(t.vcpu.inGuest).toBe(true);
    expect(t.vcpu.loadedOn).toBe(2);
    expect(t.vcpu.stats.entries).toBe(5);
    expect(t.vcpu.stats.exits).toBe(0);
    expect(t.vcpu.stats.instructions).toBe(5 * host.scheduler.quantum);
    const pmi = host.raisePmi(2);
    expect(pmi).toEqual({ cpu: 2, state: PERF_GUEST_ACTIVE, ip: BigInt(t.vcpu.regs.rip), callbacks: 'vac', attributedTo: 'kvm0/vm1/vcpu0' });
    expect(pmi.ip! >= 0x1000n && pmi.ip! < 0x1003n).toBe(true);
    expect(host.raisePmi(1)).toMatchObject({ state: 0, attributedTo: undefined });
    expect(vacIn(host).cpu(2).running).toBe('kvm0/vm1/vcpu0');
    expect(vacIn(host).runningInstance(2)).toBe('kvm0');
    expect(checkInvariants(host)).toEqual([]);
  });

  test('perf may ask state() several times per sample: only the PMI itself is an NMI exit (nmi_exits, pmi:guest)', () => {
    const { host, t } = oneSpinner(vendor, 2);
    host.scheduler.run(2);
    const perf = vacIn(host).internals.irq.perfCallbacks;
    const seen: number[] = [];
    host.events.on('pmi:guest', (e) => seen.push(e.cpu));
    const seq = host.events.seq;
    // perf_misc_flags, perf_instruction_pointer, the callchain hooks: each asks kvm_guest_state().
    for (let i = 0; i < 4; i++) expect(perf.state(2)).toBe(PERF_GUEST_ACTIVE);
    expect(perf.getIp(2)).toBe(BigInt(t.vcpu.regs.rip));
    expect([t.vcpu.stats.nmi_exits, seen.length, host.events.seq]).toEqual([0, 0, seq]);
    expect(host.raisePmi(2).attributedTo).toBe('kvm0/vm1/vcpu0');
    expect(host.raisePmi(1).attributedTo).toBeUndefined();
    expect([t.vcpu.stats.nmi_exits, seen]).toEqual([1, [2]]);
  });

  test('the CPU goes offline under it: the vCPU is put, the thread migrates and the vCPU is reloaded elsewhere', () => {
    const { host, t } = oneSpinner(vendor, 2);
    host.scheduler.run(3);
    const loads: number[] = [];
    const puts: number[] = [];
    host.events.on('vcpu:load', (e) => loads.push(e.cpu));
    host.events.on('vcpu:put', (e) => puts.push(e.cpu));
    const hw = vendor.name === 'intel' ? intelHw(host) : undefined;
    const c2 = hw?.counters(2);
    const c0 = hw?.counters(0);
    host.cpuDown(2);
    expect(puts).toEqual([2]); // put first (sched_cpu_deactivate), before VAC disables CPU 2
    expect(t.vcpu.loadedOn).toBe(-1);
    expect(t.vcpu.inGuest).toBe(false);
    expect(host.raisePmi(2)).toMatchObject({ state: 0, attributedTo: undefined });
    expect(vacIn(host).cpu(2)).toMatchObject({ online: false, enabled: false, running: undefined });
    expect(checkInvariants(host)).toEqual([]);
    if (hw !== undefined) {
      // Disabling CPU 2 VMCLEARed the VMCS there; nothing is left on its loaded list.
      expect(hw.counters(2).vmclear).toBe(c2!.vmclear + 1);
      expect(hw.loadedList(2)).toEqual([]);
    }
    host.scheduler.tick();
    expect(t.thread.cpu).toBe(0);
    expect(loads).toEqual([0]);
    expect(t.vcpu.loadedOn).toBe(0);
    expect(t.vcpu.inGuest).toBe(true);
    expect(t.vcpu.stats.migrations).toBe(1);
    expect(host.raisePmi(0).attributedTo).toBe('kvm0/vm1/vcpu0');
    if (hw !== undefined) {
      expect(hw.counters(0).vmptrld).toBe(c0!.vmptrld + 1);
      expect(hw.loadedList(0)).toEqual(['kvm0/vm1/vcpu0']);
    } else {
      const v = t.vcpu.vendor as unknown as { stats: { newAsids: number } };
      expect(v.stats.newAsids).toBe(2); // one on CPU 2, a new one on CPU 0
      expect(vacIn(host).tryResource(ASIDS)?.cpuState(0)?.holders.map((h) => h.holder)).toEqual(['kvm0/vm1/vcpu0']);
    }
    expect(checkInvariants(host)).toEqual([]);
    // The CPU comes back: VAC enables it again (usage count > 0); nothing runs there until asked.
    host.cpuUp(2);
    expect(vacIn(host).cpu(2)).toMatchObject({ online: true, enabled: true });
    host.scheduler.run(2);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('moving the thread (sched_setaffinity): VMCLEAR on the old CPU, VMPTRLD on the new, or a new ASID', () => {
    const { host, t } = oneSpinner(vendor, 1);
    host.scheduler.run(2);
    const hw = vendor.name === 'intel' ? intelHw(host) : undefined;
    const c1 = hw?.counters(1);
    const c3 = hw?.counters(3);
    t.thread.setAffinity(3);
    host.scheduler.tick();
    expect(t.vcpu.loadedOn).toBe(3);
    expect(t.vcpu.stats.migrations).toBe(1);
    if (hw !== undefined) {
      expect(hw.counters(1).vmclear).toBe(c1!.vmclear + 1);
      expect(hw.counters(3).vmptrld).toBe(c3!.vmptrld + 1);
      expect((t.vcpu.vendor.stats as Record<string, number>)['vmcsMigrations']).toBe(1);
      expect(hw.loadedList(1)).toEqual([]);
      expect(hw.loadedList(3)).toEqual(['kvm0/vm1/vcpu0']);
    } else {
      expect(vacIn(host).tryResource(ASIDS)?.cpuState(3)?.holders.map((h) => h.holder)).toEqual(['kvm0/vm1/vcpu0']);
    }
    expect(host.raisePmi(3).attributedTo).toBe('kvm0/vm1/vcpu0');
    expect(host.raisePmi(1).attributedTo).toBeUndefined();
    expect(checkInvariants(host)).toEqual([]);
  });

  test('thread.signal(): KVM_RUN fails with EINTR and exit_reason KVM_EXIT_INTR; the VMM may re-enter', () => {
    const { host, proc } = oneSpinner(vendor, 1);
    // A second vCPU thread that stops at the first EINTR.
    const vm2 = makeVm(proc, '/dev/kvm0', SPIN);
    const v2 = vm2.vcpus[0]!;
    const stopper = spawnVcpuThread(host, proc, v2.fd, v2.run, { cpu: 2, stopOnEintr: true });
    const looper = host.scheduler.threads()[0]!;
    host.scheduler.run(3);
    looper.signal();
    stopper.thread.signal();
    host.scheduler.tick();
    expect(stopper.errors).toEqual(['EINTR']);
    expect(stopper.thread.state).toBe('done');
    expect(v2.run.exit_reason).toBe(KVM_EXIT_INTR);
    expect(stopper.vcpu.stats.signal_exits).toBe(1);
    expect(stopper.vcpu.loadedOn).toBe(-1);
    expect(host.raisePmi(2).attributedTo).toBeUndefined();
    // The other one re-entered at once and is in guest mode again.
    expect(looper.alive).toBe(true);
    expect(host.raisePmi(1).attributedTo).toBe('kvm0/vm1/vcpu0');
    expect(checkInvariants(host)).toEqual([]);
    // A direct KVM_RUN on the stopped vCPU's fd from the VMM process works again.
    v2.run.immediate_exit = 0;
    // SPIN never exits: the direct call's run limit kicks it (EINTR, after the guest ran: not a no-op).
    expectCode(() => proc.ioctl(v2.fd, KVM_RUN, 0), 'EINTR');
    expect(v2.run.exit_reason).toBe(KVM_EXIT_INTR);
  });

  test('vcpu->mutex: while a thread is inside KVM_RUN, another thread\'s vCPU ioctls wait; direct calls get EBUSY', () => {
    const host = makeHost(vendor.hardware(), 4);
    host.modprobe(kvm({ postfix: '0' }));
    const proc = vmmProcess(host);
    const vm = makeVm(proc, '/dev/kvm0', SPIN);
    const v = vm.vcpus[0]!;
    const a = spawnVcpuThread(host, proc, v.fd, v.run, { cpu: 1, stopOnEintr: true });
    const log: string[] = [];
    const regs = makeKvmRegs();
    const b = host.scheduler.spawn(proc, { cpu: 2, name: 'b' }, function* (t) {
      log.push('GET_REGS');
      yield* t.ioctl(v.fd, KVM_GET_REGS, regs);
      log.push(`regs rip=0x${regs.rip.toString(16)}`);
      try {
        yield* t.ioctl(v.fd, KVM_RUN, 0);
      } catch (e) {
        log.push(String((e as { code?: string }).code));
      }
    });
    host.scheduler.run(4);
    // b sleeps on the mutex (holding its file) while a stays in guest mode.
    expect(log).toEqual(['GET_REGS']);
    expect(b.alive).toBe(true);
    expect(a.vcpu.inGuest).toBe(true);
    expect(a.vcpu.stats.entries).toBe(4);
    // A direct call cannot sleep: EBUSY for every vCPU ioctl, nothing changes; a non-KVM number is EINVAL first.
    const e = expectFail(host, () => proc.ioctl(v.fd, KVM_GET_REGS, makeKvmRegs()), 'EBUSY');
    expect(e.message).toContain(`thread ${a.thread.tid} is inside KVM_RUN on kvm0/vm1/vcpu0`);
    expectFail(host, () => proc.ioctl(v.fd, KVM_RUN, 0), 'EBUSY');
    expectFail(host, () => proc.ioctl(v.fd, 0x1234, 0), 'EINVAL');
    // A signal ends a's KVM_RUN (EINTR) and a returns; b gets the mutex in the same tick: its GET_REGS sees the
    // registers as a left them, then its own KVM_RUN enters the guest on CPU 2.
    a.thread.signal();
    host.scheduler.tick();
    expect(a.errors).toEqual(['EINTR']);
    expect(log).toEqual(['GET_REGS', `regs rip=0x${BigInt(a.vcpu.regs.rip).toString(16)}`]);
    expect(a.vcpu.loadedOn).toBe(2);
    expect(a.vcpu.inGuest).toBe(true);
    expect(host.raisePmi(2).attributedTo).toBe('kvm0/vm1/vcpu0');
    expect(checkInvariants(host)).toEqual([]);
    // Killing the process ends b's KVM_RUN; nothing is left behind.
    proc.kill();
    host.scheduler.tick();
    expect(b.alive).toBe(false);
    expect(a.vcpu.freed).toBe(true);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('a waiting thread that is killed, or whose holder is killed, leaves nothing behind', () => {
    const host = makeHost(vendor.hardware(), 4);
    host.modprobe(kvm({ postfix: '0' }));
    const proc = vmmProcess(host);
    const vm = makeVm(proc, '/dev/kvm0', SPIN);
    const v = vm.vcpus[0]!;
    const a = spawnVcpuThread(host, proc, v.fd, v.run, { cpu: 1 });
    const waiter = spawnVcpuThread(host, proc, v.fd, v.run, { cpu: 2 });
    host.scheduler.run(3);
    expect(waiter.thread.alive).toBe(true);
    expect(waiter.vcpu.stats.entries).toBe(3); // only a's entries
    proc.close(v.fd); // both calls hold the file: the vCPU lives on
    host.scheduler.run(2);
    expect(a.vcpu.freed).toBe(false);
    proc.kill();
    host.scheduler.tick();
    expect([a.thread.alive, waiter.thread.alive]).toEqual([false, false]);
    expect(a.vcpu.freed).toBe(true);
    expect(host.snapshot().providers['kvm0']).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('a direct KVM_RUN on a CPU where a vCPU thread is current schedules that thread out first', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    const p = vmmProcess(host); // its direct calls run on CPU 0
    const a = makeVm(p, '/dev/kvm1', SPIN);
    const t = spawnVcpuThread(host, p, a.vcpus[0]!.fd, a.vcpus[0]!.run, { cpu: 0 });
    host.scheduler.run(2);
    const b = makeVm(p, '/dev/kvm0', [0xf4]); // hlt
    p.ioctl(b.vcpus[0]!.fd, KVM_RUN, 0);
    expect(b.vcpus[0]!.run.exit_reason).toBe(KVM_EXIT_HLT);
    // kvm1's vCPU was put when the caller took CPU 0 (and nothing is left behind by the direct run).
    expect(t.vcpu.loadedOn).toBe(-1);
    expect(host.raisePmi(0).attributedTo).toBeUndefined();
    expect(checkInvariants(host)).toEqual([]);
    // At its next slice the thread loads its vCPU again and goes on in guest mode.
    host.scheduler.tick();
    expect(t.vcpu.loadedOn).toBe(0);
    expect(host.raisePmi(0).attributedTo).toBe('kvm1/vm1/vcpu0');
    if (vendor.name === 'intel') expect(intelHw(host).currentVmcs(0)?.owner).toBe('kvm1/vm1/vcpu0');
    expect(t.errors).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('closing the fds under a running vCPU thread: the call holds the file; the VM dies when KVM_RUN returns', () => {
    const { host, proc, t } = oneSpinner(vendor, 1);
    host.scheduler.run(2);
    const m = proc.mappings().find((x) => x.file !== undefined)!;
    proc.munmap(m.addr, m.length);
    proc.close(3 + 2); // the vCPU fd (after /dev/kvm0 = 3 and the VM fd = 4)
    proc.close(4);
    host.scheduler.run(2);
    expect(t.vcpu.freed).toBe(false);
    expect(t.vcpu.inGuest).toBe(true);
    expect(checkInvariants(host)).toEqual([]);
    t.thread.signal();
    host.scheduler.tick();
    // EINTR, then the VMM loop's next KVM_RUN finds the fd closed.
    expect(t.errors).toEqual(['EINTR', 'EBADF']);
    expect(t.vcpu.freed).toBe(true);
    expect(host.snapshot().providers['kvm0']).toEqual([]);
    expect(vacIn(host).usageHolders()).toEqual([['kvm0', 1]]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('HLT with an in-kernel irqchip blocks; a posted-interrupt wakeup on a CPU wakes every module\'s vCPUs blocked there', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    const p = vmmProcess(host);
    const threads: VcpuThread[] = [];
    for (const [dev, cpu] of [
      ['/dev/kvm0', 1],
      ['/dev/kvm1', 1],
      ['/dev/kvm1', 2],
    ] as const) {
      const t = makeVm(p, dev, [0xf4, 0x40, 0xeb, 0xfc], 0); // l: hlt; inc ax; jmp l
      p.ioctl(t.vm, KVM_CREATE_IRQCHIP);
      const v = addVcpu(p, t.vm, 0);
      threads.push(spawnVcpuThread(host, p, v.fd, v.run, { cpu }));
    }
    host.scheduler.run(3);
    expect(threads.map((t) => [t.vcpu.blockedOn, t.vcpu.stats.halt_exits, t.exits.length])).toEqual([
      [1, 1, 0],
      [1, 1, 0],
      [2, 1, 0],
    ]);
    // Asleep in the kernel: not in guest mode, not loaded.
    expect(threads.map((t) => t.vcpu.loadedOn)).toEqual([-1, -1, -1]);
    expect([host.raisePmi(1).attributedTo, host.raisePmi(2).attributedTo]).toEqual([undefined, undefined]);
    // VAC's single handler fans out to both modules' lists for CPU 1, and to nothing else.
    expect(host.raisePostedIntrWakeup(1)).toEqual(['kvm0/vm1/vcpu0', 'kvm1/vm1/vcpu0']);
    expect(host.raisePostedIntrWakeup(3)).toEqual([]);
    host.scheduler.tick();
    expect(threads.map((t) => [t.vcpu.stats.pi_wakeups, t.vcpu.stats.halt_exits, t.vcpu.regs.rax])).toEqual([
      [1, 2, 1],
      [1, 2, 1],
      [0, 1, 0],
    ]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('immediate_exit = 1: EINTR without entering the guest (a pending IN completed first)', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '0' }));
    const p = vmmProcess(host);
    // in al,0x60; hlt
    const t = makeVm(p, '/dev/kvm0', [0xe4, 0x60, 0xf4]);
    const v = t.vcpus[0]!;
    // Nothing pending: EINTR, no entry, the host as it was — and exit_reason as the last exit left it (0 before any
    // exit): kvm_arch_vcpu_ioctl_run returns -EINTR without touching kvm_run, as a real 6.18 /dev/kvm does.
    v.run.immediate_exit = 1;
    expectFail(host, () => p.ioctl(v.fd, KVM_RUN, 0), 'EINTR');
    expect(v.run.exit_reason).toBe(0);
    const vcpu = p.file(v.fd).privateData as { stats: { entries: number } };
    expect(vcpu.stats.entries).toBe(0);
    v.run.immediate_exit = 0;
    p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_IO);
    expect(v.run.io.direction).toBe(KVM_EXIT_IO_IN);
    expect(vcpu.stats.entries).toBe(1);
    // User space answers the IN, then asks for an immediate exit: the IN completes, the guest does not run.
    v.run.bytes[v.run.io.data_offset] = 0x5a;
    v.run.immediate_exit = 1;
    expectCode(() => p.ioctl(v.fd, KVM_RUN, 0), 'EINTR'); // not a no-op: the IN completes first
    expect(v.run.exit_reason).toBe(KVM_EXIT_IO); // the IN's exit, still
    expect(vcpu.stats.entries).toBe(1);
    const regs = makeKvmRegs();
    p.ioctl(v.fd, KVM_GET_REGS, regs);
    expect(regs.rax & 0xffn).toBe(0x5an);
    expect(regs.rip).toBe(0x1002n); // past the IN, before the HLT
    // The same from a simulated thread.
    const th = spawnVcpuThread(host, p, v.fd, v.run, { cpu: 1, stopOnEintr: true });
    host.scheduler.tick();
    expect(th.errors).toEqual(['EINTR']);
    expect(vcpu.stats.entries).toBe(1);
    v.run.immediate_exit = 0;
    p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('killing the VMM while its vCPUs are in guest mode: all put, VMs destroyed, VPIDs/ASIDs freed, usage dropped, rmmod works', () => {
    const host = makeHost(vendor.hardware(), 4);
    host.modprobe(kvm({ postfix: '0' }), { enable_virt_at_load: 0 });
    host.modprobe(kvm({ postfix: '1' })); // a bystander module with its own reference
    const p = vmmProcess(host);
    const threads: VcpuThread[] = [];
    for (let vmi = 0; vmi < 2; vmi++) {
      const t = makeVm(p, '/dev/kvm0', SPIN, 2);
      t.vcpus.forEach((v, j) => threads.push(spawnVcpuThread(host, p, v.fd, v.run, { cpu: vmi * 2 + j })));
    }
    host.scheduler.run(3);
    expect(threads.every((t) => t.vcpu.inGuest)).toBe(true);
    const vac = vacIn(host);
    expect(vac.usageHolders()).toEqual([
      ['kvm0/vm1', 1],
      ['kvm0/vm2', 1],
      ['kvm1', 1],
    ]);
    if (vendor.name === 'intel') expect((vac.tryResource(VPIDS)?.holders() ?? [])).toHaveLength(4);
    const seen: string[] = [];
    host.events.on('vcpu:put', (e) => seen.push(`put ${e.vm}/${e.vcpu}@${e.cpu}`));
    host.events.on('vm:destroy', (e) => seen.push(`destroy ${e.vm}`));
    p.kill();
    // Every vCPU is put (threads stop first), then the fds close and the VMs die.
    expect(seen.slice(0, 4).every((s) => s.startsWith('put'))).toBe(true);
    expect(seen.slice(4)).toEqual(['destroy 2', 'destroy 1']);
    expect(threads.map((t) => t.thread.state)).toEqual(['killed', 'killed', 'killed', 'killed']);
    expect(threads.every((t) => t.vcpu.loadedOn === -1 && t.vcpu.freed)).toBe(true);
    expect(vac.usageHolders()).toEqual([['kvm1', 1]]);
    expect((vac.tryResource(VPIDS)?.holders() ?? [])).toEqual([]);
    for (const c of host.cpus) {
      expect(vac.cpu(c.id).running).toBeUndefined();
      expect(vac.tryResource(ASIDS)?.cpuState(c.id)?.holders ?? []).toEqual([]);
      expect(vac.userReturnState(c.id)).toMatchObject({ registered: false });
      expect(host.raisePmi(c.id).attributedTo).toBeUndefined();
    }
    expect(host.lsmod().find((m) => m.name === 'kvm0')?.refcount).toBe(0);
    host.rmmod('kvm0');
    expect(checkInvariants(host)).toEqual([]);
    host.rmmod('kvm1');
    host.rmmod('vac');
    expect(checkInvariants(host)).toEqual([]);
  });

  test('suspend/resume with threads in guest mode: kicked (EINTR), and the VMM loop re-enters after resume', () => {
    const { host, threads } = fourPinnedSpinners(vendor.hardware());
    expect(threads.every((t) => t.vcpu.inGuest)).toBe(true);
    host.suspend();
    expect(host.systemState).toBe('suspended');
    expect(vacIn(host).cpus().map((c) => c.enabled)).toEqual([false, false, false, false]);
    expect(checkInvariants(host)).toEqual([]);
    // Nothing runs while suspended.
    const before = threads.map((t) => t.vcpu.stats.instructions);
    expect(host.scheduler.tick()).toBe(0);
    expect(threads.map((t) => t.vcpu.stats.instructions)).toEqual(before);
    host.resume();
    expect(vacIn(host).cpus().map((c) => c.enabled)).toEqual([true, true, true, true]);
    expect(checkInvariants(host)).toEqual([]);
    host.scheduler.run(3);
    for (const t of threads) {
      expect(t.errors).toEqual(['EINTR']); // kicked once, by the freezer
      expect(t.thread.alive).toBe(true);
      expect(t.vcpu.stats.signal_exits).toBe(1);
    }
    threads.forEach((t, i) => expect(t.vcpu.stats.instructions).toBeGreaterThan(before[i]!));
    expect(checkInvariants(host)).toEqual([]);
  });
});

describe('the same seed and the same calls give the same event stream', () => {
  /** A busy scenario: three modules, threads, random PMIs and migrations, a CPU going down and up, a kill. */
  function scenario(seed: number): Array<[EventName, EventStamp]> {
    const host = makeHost(VENDORS[0].hardware(), 4);
    const events: Array<[EventName, EventStamp]> = [];
    host.events.onAny((name, e) => events.push([name, e]));
    const random = rng(seed);
    host.scheduler.quantum = 50;
    host.modprobe(kvm({ postfix: '0' }), { vmentry_l1d_flush: 'always' });
    host.modprobe(kvm({ postfix: '1' }), { vpid: 0 });
    host.modprobe(kvm({ postfix: '2' }), { enable_virt_at_load: 0 });
    const procs = ['/dev/kvm0', '/dev/kvm1', '/dev/kvm2'].map((dev) => {
      const p = vmmProcess(host);
      const t = makeVm(p, dev, SPIN, 2);
      t.vcpus.forEach((v) => spawnVcpuThread(host, p, v.fd, v.run, { cpu: Math.floor(random() * 4) }));
      return p;
    });
    for (let i = 0; i < 40; i++) {
      host.scheduler.tick();
      host.raisePmi(Math.floor(random() * 4));
      if (i === 10) host.cpuDown(1 + Math.floor(random() * 3));
      if (i === 20) for (const c of host.cpus) host.cpuUp(c.id);
      if (i === 25) host.scheduler.threads()[Math.floor(random() * 6)]?.signal();
      if (i === 30) procs[Math.floor(random() * 3)]!.kill();
    }
    return events;
  }

  test('two hosts, same seed: identical streams; another seed: a different one', () => {
    const a = scenario(1234);
    const b = scenario(1234);
    expect(a.length).toBeGreaterThan(200);
    expect(b).toEqual(a);
    const c = scenario(4321);
    expect(c).not.toEqual(a);
    // The stream is stamped by the logical clock and the scheduler's ticks.
    expect(a.map(([, e]) => e.seq)).toEqual([...a.keys()].map((i) => a[0]![1].seq + i));
    expect(a.at(-1)![1].tick).toBe(40);
  });
});
