/**
 * The scheduler's CPU affinity across CPU hotplug and suspend/resume.
 *
 * A hotplug offline migrates the runnable threads of the dying CPU and unpins those pinned to it
 * (`sched_cpu_dying` → `migrate_tasks` → `select_fallback_rq`, "no longer affine to cpu%d"). A suspend freezes
 * the tasks before `freeze_secondary_cpus` takes the CPUs down: frozen tasks are not on a runqueue, so they are
 * not migrated and keep their affinity; `thaw_secondary_cpus` brings the CPUs back before `thaw_processes` wakes
 * them, on their own CPUs. Only a thread whose CPU did not come back goes through `select_fallback_rq` at its
 * wakeup.
 */
import { describe, expect, test } from 'vitest';
import { KernelError, createHost } from '../../src/index.js';
import type { Host, Process, Thread } from '../../src/index.js';
import { fakeHardware } from '../support/fake-hardware.js';

function newHost(cpus = 4): Host {
  return createHost({ cpus, hardware: fakeHardware() });
}

const online = (host: Host): number[] => host.cpus.filter((c) => c.online).map((c) => c.id);

interface Traced {
  readonly thread: Thread;
  /** The CPU of every slice the thread got. */
  readonly ran: number[];
  /** Preempt notifier calls: `in:N` / `out:N`. */
  readonly notes: string[];
}

/** A thread that records the CPU of each of its slices and its preempt notifier calls. */
function spawnTraced(host: Host, proc: Process, cpu: number | undefined, name: string): Traced {
  const ran: number[] = [];
  const notes: string[] = [];
  const thread = host.scheduler.spawn(proc, cpu === undefined ? { name } : { cpu, name }, function* (t) {
    for (;;) {
      ran.push(t.cpu);
      yield* t.yield();
    }
  });
  thread.addPreemptNotifier({ schedIn: (c) => notes.push(`in:${c}`), schedOut: (c) => notes.push(`out:${c}`) });
  return { thread, ran, notes };
}

/** A hotplug state that refuses the CPUs `refuse()` names (as VAC refuses a CPU whose enable fails). */
function refuseUp(host: Host, refuse: () => readonly number[]): void {
  host.cpuhp.setup(
    'refuse',
    {
      startup(cpu) {
        if (refuse().includes(cpu)) throw new KernelError('EIO', 'cpuhp', `CPU ${cpu} will not come up`);
      },
    },
    { invoke: false },
  );
}

describe('hotplug offline of a CPU a runnable thread is pinned to', () => {
  test('the thread is unpinned (select_fallback_rq) and moves to the first other online CPU; it stays there after the CPU comes back', () => {
    const host = newHost(4);
    const p = host.spawn({ name: 'vmm' });
    const t = spawnTraced(host, p, 2, 'pinned');
    host.scheduler.run(2);
    expect(t.ran).toEqual([2, 2]);
    host.cpuDown(2);
    expect(t.thread.affinity).toBeUndefined();
    expect(t.thread.cpu).toBe(0);
    expect(t.notes).toEqual(['in:2', 'out:2']);
    host.scheduler.run(1);
    expect(t.ran).toEqual([2, 2, 0]);
    host.cpuUp(2);
    host.scheduler.run(2);
    expect(t.thread.affinity).toBeUndefined();
    expect(t.ran).toEqual([2, 2, 0, 0, 0]);
    expect(t.notes).toEqual(['in:2', 'out:2', 'in:0']);
  });

  test('an unpinned thread and a process default CPU on it move as well', () => {
    const host = newHost(4);
    const p = host.spawn({ name: 'vmm', cpu: 3 });
    const t = spawnTraced(host, p, undefined, 'unpinned');
    host.scheduler.run(1);
    expect([t.thread.cpu, t.thread.affinity]).toEqual([3, undefined]);
    host.cpuDown(3);
    expect(t.thread.cpu).toBe(0);
    expect(p.cpu).toBe(0);
    host.cpuUp(3);
    host.scheduler.run(1);
    expect(t.ran).toEqual([3, 0]);
    expect(p.cpu).toBe(0);
  });

  test('setAffinity to an offline CPU is refused with EINVAL', () => {
    const host = newHost(4);
    const t = spawnTraced(host, host.spawn(), 1, 't');
    host.cpuDown(2);
    expect(() => t.thread.setAffinity(2)).toThrow(KernelError);
    expect(t.thread.affinity).toBe(1);
  });
});

describe('suspend and resume keep CPU affinity (tasks are frozen before the CPUs go down)', () => {
  test('a pinned thread keeps its pinning and runs on its CPU again after resume', () => {
    const host = newHost(4);
    const p = host.spawn({ name: 'vmm' });
    const a = spawnTraced(host, p, 1, 'a');
    const b = spawnTraced(host, p, 2, 'b');
    const c = spawnTraced(host, p, 3, 'c');
    host.scheduler.run(2);
    host.suspend();
    // Frozen where they were: scheduled out (KVM would put its vCPU), not migrated, still pinned.
    expect(host.scheduler.frozen).toBe(true);
    expect(online(host)).toEqual([0]);
    for (const [t, cpu] of [[a, 1], [b, 2], [c, 3]] as const) {
      expect(t.thread.affinity).toBe(cpu);
      expect(t.thread.cpu).toBe(cpu);
      expect(t.notes).toEqual([`in:${cpu}`, `out:${cpu}`]);
      expect(host.scheduler.currentOn(cpu)).toBeUndefined();
    }
    expect(host.scheduler.tick()).toBe(0);
    host.resume();
    expect(host.scheduler.frozen).toBe(false);
    expect(online(host)).toEqual([0, 1, 2, 3]);
    host.scheduler.run(2);
    for (const [t, cpu] of [[a, 1], [b, 2], [c, 3]] as const) {
      expect(t.thread.affinity).toBe(cpu);
      expect(t.ran).toEqual([cpu, cpu, cpu, cpu]);
      // scheduled back in on its own CPU (kvm_sched_in → vcpu_load there)
      expect(t.notes).toEqual([`in:${cpu}`, `out:${cpu}`, `in:${cpu}`]);
      expect(host.scheduler.currentOn(cpu)).toBe(t.thread);
    }
    expect(host.scheduler.currentOn(0)).toBeUndefined();
    expect(host.warnings).toEqual([]);
  });

  test('an unpinned thread wakes on the CPU it ran on; a process default CPU comes back to it', () => {
    const host = newHost(4);
    const p = host.spawn({ name: 'vmm', cpu: 2 });
    const t = spawnTraced(host, p, undefined, 'unpinned');
    host.scheduler.run(1);
    host.suspend();
    expect(t.thread.cpu).toBe(2);
    // Direct syscalls are not frozen by the model: while suspended they run on an online CPU.
    expect(p.cpu).toBe(0);
    host.resume();
    expect(p.cpu).toBe(2);
    host.scheduler.run(1);
    expect(t.ran).toEqual([2, 2]);
    expect(t.thread.affinity).toBeUndefined();
  });

  test('every process default CPU moved by the suspend goes back; a process killed meanwhile is ignored', () => {
    const host = newHost(4);
    const p = host.spawn({ name: 'vmm', cpu: 2 });
    const q = host.spawn({ name: 'other', cpu: 3 });
    const r = host.spawn({ name: 'late', cpu: 1 });
    host.suspend();
    expect([p.cpu, q.cpu, r.cpu]).toEqual([0, 0, 0]);
    r.kill();
    host.resume();
    expect(host.processes().map((x) => [x.name, x.cpu])).toEqual([
      ['init', 0],
      ['vmm', 2],
      ['other', 3],
    ]);
  });

  test('a CPU offline before the suspend stays offline: a thread that was moved off it stays unpinned where it is', () => {
    const host = newHost(4);
    const t = spawnTraced(host, host.spawn(), 2, 't');
    host.scheduler.run(1);
    host.cpuDown(2);
    expect(t.thread.affinity).toBeUndefined();
    host.suspend();
    host.resume();
    host.scheduler.run(1);
    expect(online(host)).toEqual([0, 1, 3]);
    expect(t.ran).toEqual([2, 0]);
    expect(t.thread.affinity).toBeUndefined();
  });

  test('a thread moved with setAffinity just before the suspend goes to its new CPU after resume', () => {
    const host = newHost(4);
    const t = spawnTraced(host, host.spawn(), 1, 't');
    host.scheduler.run(1);
    t.thread.setAffinity(3); // takes effect at its next slice, which comes after the resume
    host.suspend();
    host.resume();
    host.scheduler.run(1);
    expect(t.ran).toEqual([1, 3]);
    expect(t.notes).toEqual(['in:1', 'out:1', 'in:3']);
    expect(t.thread.affinity).toBe(3);
  });

  test('resume cannot bring the CPU back: the thread pinned to it is unpinned (select_fallback_rq) and runs on the first online CPU', () => {
    const host = newHost(4);
    let refuse: number[] = [];
    refuseUp(host, () => refuse);
    const p = host.spawn({ name: 'vmm', cpu: 2 });
    const lost = spawnTraced(host, p, 2, 'lost');
    const kept = spawnTraced(host, p, 3, 'kept');
    const free = spawnTraced(host, p, undefined, 'free'); // unpinned, on the process's CPU 2
    host.scheduler.run(1);
    host.suspend();
    refuse = [2];
    host.resume();
    expect(host.warnings.map((w) => w.message)).toEqual(['Error taking CPU2 up: -5']);
    expect(online(host)).toEqual([0, 1, 3]);
    // Thawed with no allowed online CPU: affinity widened, moved to the first online CPU.
    expect(lost.thread.affinity).toBeUndefined();
    expect(lost.thread.cpu).toBe(0);
    // The unpinned one and the process's default CPU go there too; the other pinned thread keeps its CPU.
    expect(free.thread.cpu).toBe(0);
    expect(p.cpu).toBe(0);
    expect([kept.thread.cpu, kept.thread.affinity]).toEqual([3, 3]);
    host.scheduler.run(2);
    expect(lost.ran).toEqual([2, 0, 0]);
    expect(free.ran).toEqual([2, 0, 0]);
    expect(kept.ran).toEqual([3, 3, 3]);
    // Scheduled out of CPU 2 by the freeze, scheduled in on CPU 0 (and out again whenever the other one runs there).
    expect(lost.notes.slice(0, 3)).toEqual(['in:2', 'out:2', 'in:0']);
    // Once the CPU is back it stays unpinned, as after a hotplug offline.
    refuse = [];
    host.cpuUp(2);
    host.scheduler.run(1);
    expect(lost.ran.at(-1)).toBe(0);
    expect(lost.thread.affinity).toBeUndefined();
  });

  test('a failed suspend (a syscore suspend refuses) leaves every thread and process where it was, pinned', () => {
    const host = newHost(3);
    const p = host.spawn({ name: 'vmm', cpu: 2 });
    const t1 = spawnTraced(host, p, 1, 't1');
    const t2 = spawnTraced(host, p, undefined, 't2');
    host.scheduler.run(1);
    host.power.registerSyscore({
      name: 'refuses',
      suspend() {
        throw new KernelError('EBUSY', 'syscore_suspend', 'no');
      },
    });
    expect(() => host.suspend()).toThrow(KernelError);
    expect(host.systemState).toBe('running');
    expect(host.scheduler.frozen).toBe(false);
    expect([t1.thread.cpu, t1.thread.affinity]).toEqual([1, 1]);
    expect([t2.thread.cpu, t2.thread.affinity]).toEqual([2, undefined]);
    expect(p.cpu).toBe(2);
    host.scheduler.run(1);
    expect(t1.ran).toEqual([1, 1]);
    expect(t2.ran).toEqual([2, 2]);
  });

  test('a thread killed while suspended is gone after resume; threads spawned while suspended run', () => {
    const host = newHost(2);
    const p = host.spawn({ name: 'vmm' });
    const q = host.spawn({ name: 'other' });
    spawnTraced(host, p, 1, 'dies');
    host.scheduler.run(1);
    host.suspend();
    p.kill();
    const late = spawnTraced(host, q, 0, 'late');
    host.resume();
    host.scheduler.run(1);
    expect(host.scheduler.threads().map((t) => t.name)).toEqual(['late']);
    expect(late.ran).toEqual([0]);
  });
});
