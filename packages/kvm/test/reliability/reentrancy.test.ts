/**
 * Observers cannot corrupt the kernel (issue 14). For every event the host emits — core's, the vendors', KVM's —
 * during the script of `reentrancy-script.ts`:
 *
 * - a listener that throws: every step ends as it does without the listener (same outcome, same `host.snapshot()`,
 *   same clock), the exception is a warning from source `events`, and `checkInvariants` is clean;
 * - a listener that re-enters each public entry point: the listener sees a consistent host (not inside an operation,
 *   invariants as after the step), and the host ends exactly as if the entry point had been called right after the
 *   step returned — the step finished, and the re-entrant call is an operation of its own.
 *
 * Then the findings of the issue, each as its own test: a listener throwing on `virt:enable` during modprobe, on
 * `fd:close`, on `module:load`, during suspend and resume, and listeners calling back from inside VAC's handle,
 * `destroyVm`, a thread's KVM_RUN and a hotplug state's setup.
 */
import { describe, expect, test } from 'vitest';
import { idleVacInstance } from '@vac/test-support';
import { O_RDWR, checkInvariants, vacOf, type EventName, type Host, type HostSnapshot, type Vac } from '@vac/core';
import { KVM_CREATE_VM, KVM_RUN, kvm, type KvmInstance } from '../../src/index.js';
import { GUESTS, readyVm } from './support.js';
import { attempt, entryPoints, script, scriptHost, type EntryPoint, type Outcome, type Step, type Vendor } from './reentrancy-script.js';

/** Every event of the host (core's, KVM's, and the vendors' l1d:flush / tlb:flush). */
const ALL_EVENTS: readonly EventName[] = [
  'warning', 'module:load', 'module:unload', 'device:register', 'device:unregister', 'process:spawn', 'process:exit',
  'fd:open', 'fd:close', 'cpu:online', 'cpu:offline', 'power', 'virt:enable', 'virt:disable', 'virt:usage',
  'l1d:flush', 'tlb:flush', 'vm:create', 'vm:destroy', 'vcpu:create', 'vcpu:load', 'vcpu:put', 'vcpu:exit', 'pmi:guest',
];

/** How a run of the script (up to a step) ended. */
interface RunEnd {
  readonly outcomes: Outcome[];
  readonly snapshot: HostSnapshot;
  readonly warnings: string[];
  readonly seq: number;
  readonly violations: string[];
}

function end(host: Host, outcomes: Outcome[]): RunEnd {
  return {
    outcomes,
    snapshot: host.snapshot(),
    warnings: host.warnings.map((w) => `${w.source}: ${w.message}`),
    seq: host.events.seq,
    violations: checkInvariants(host).map((v) => `${v.invariant}: ${v.message}`),
  };
}

/**
 * Run `steps[0..last]` on a fresh host; around step `last`, `during` may install listeners (it returns their undo);
 * after it, `after` may call something.
 */
function runTo(vendor: Vendor, steps: readonly Step[], last: number, during?: (h: Host) => () => void, after?: (h: Host) => Outcome): RunEnd {
  const host = scriptHost(vendor);
  const outcomes: Outcome[] = [];
  for (let i = 0; i <= last; i++) {
    const stop = i === last ? during?.(host) : undefined;
    const step = steps[i] as Step;
    outcomes.push(attempt(() => step.run(host)));
    stop?.();
  }
  if (after !== undefined) outcomes.push(after(host));
  return end(host, outcomes);
}

/** The events each step emits, in order, from a plain run. */
function eventsByStep(vendor: Vendor, steps: readonly Step[]): EventName[][] {
  const host = scriptHost(vendor);
  const out: EventName[][] = [];
  let current: EventName[] = [];
  host.events.onAny((name) => current.push(name));
  for (const step of steps) {
    current = [];
    attempt(() => step.run(host));
    out.push(current);
  }
  return out;
}

/** For each event, the first step that emits it. */
function firstSteps(byStep: readonly EventName[][]): Map<EventName, number> {
  const first = new Map<EventName, number>();
  byStep.forEach((names, i) => {
    for (const n of names) if (!first.has(n)) first.set(n, i);
  });
  return first;
}

const VENDORS: readonly Vendor[] = ['intel', 'amd'];
const ENDINGS = ['reboot', 'crash'] as const;

describe.each(VENDORS)('re-entrancy on %s', (vendor) => {
  const steps = script('reboot');
  const byStep = eventsByStep(vendor, steps);
  const first = firstSteps(byStep);

  test('the script emits every event of the host (l1d:flush on Intel only), and runs clean', () => {
    const want = ALL_EVENTS.filter((e) => vendor === 'intel' || e !== 'l1d:flush');
    expect([...first.keys()].sort()).toEqual([...want].sort());
    const crashFirst = firstSteps(eventsByStep(vendor, script('crash')));
    expect([...crashFirst.keys()].sort()).toEqual([...want].sort());
    const plain = runTo(vendor, steps, steps.length - 1);
    expect(plain.outcomes.every((o) => o === 'ok')).toBe(true);
    expect(plain.violations).toEqual([]);
  });

  test.each(ENDINGS)('a listener that throws, on each event of each step (%s ending): every step ends as without it', (ending) => {
    const s = script(ending);
    const bySteps = eventsByStep(vendor, s);
    let checked = 0;
    bySteps.forEach((names, i) => {
      const plain = runTo(vendor, s, i);
      for (const name of new Set(names)) {
        let thrown = 0;
        const got = runTo(vendor, s, i, (h) =>
          h.events.on(name, () => {
            thrown++;
            throw new Error(`listener of ${name}`);
          }),
        );
        const what = `${s[i]?.name} / ${name}`;
        expect(got.outcomes, what).toEqual(plain.outcomes);
        expect(got.snapshot, what).toEqual(plain.snapshot);
        expect(got.violations, what).toEqual([]);
        expect(thrown, what).toBe(names.filter((n) => n === name).length);
        const events = got.warnings.filter((w) => w.startsWith('events: '));
        expect(events.length, what).toBe(thrown);
        // Each exception is a warning event of its own (one thrown by a 'warning' listener is only recorded).
        expect(got.seq, what).toBe(plain.seq + (name === 'warning' ? 0 : thrown));
        expect(got.warnings.filter((w) => !w.startsWith('events: ')), what).toEqual(plain.warnings);
        checked++;
      }
    });
    expect(checked).toBe(bySteps.reduce((n, names) => n + new Set(names).size, 0));
    console.log(`[reentrancy] ${vendor}, ${ending} ending: a throwing listener on ${checked} (step, event) pairs`);
  }, 120_000);

  test('an onAny listener that always throws, through the whole script: after every step, the host is as without it', () => {
    const a = scriptHost(vendor);
    const b = scriptHost(vendor);
    const installedAt = b.events.seq;
    let calls = 0;
    b.events.onAny(() => {
      calls++;
      throw new Error('any');
    });
    for (const step of steps) {
      expect(attempt(() => step.run(b)), step.name).toBe(attempt(() => step.run(a)));
      expect(b.snapshot(), step.name).toEqual(a.snapshot());
      expect(checkInvariants(b), step.name).toEqual([]);
    }
    expect(b.warnings.filter((w) => w.source !== 'events')).toEqual(a.warnings);
    // Every event since the listener came was delivered to it (the warnings its exceptions made included) and each
    // exception is a warning.
    expect(calls).toBe(b.events.seq - installedAt);
    expect(b.warnings.filter((w) => w.source === 'events').length).toBe(calls);
  });

  test('a listener that re-enters each entry point, on each event: the host ends as if the call came right after the operation', () => {
    const calls = entryPoints();
    const sequential = new Map<string, RunEnd>();
    let checked = 0;
    for (const [name, i] of first) {
      const afterStep = runTo(vendor, steps, i);
      for (const ep of calls) {
        const key = `${i}/${ep.name}`;
        let want = sequential.get(key);
        if (want === undefined) {
          want = runTo(vendor, steps, i, undefined, (h) => attempt(() => ep.call(h)));
          sequential.set(key, want);
        }
        const seen: { inKernel?: boolean; violations?: string[]; outcome?: Outcome } = {};
        const got = runTo(
          vendor,
          steps,
          i,
          (h) => {
            let done = false;
            return h.events.on(name, () => {
              if (done) return;
              done = true;
              seen.inKernel = h.events.inKernel;
              seen.violations = checkInvariants(h).map((v) => `${v.invariant}: ${v.message}`);
              seen.outcome = attempt(() => ep.call(h));
            });
          },
          undefined,
        );
        const what = `${steps[i]?.name} / ${name} → ${ep.name}`;
        expect(seen.inKernel, what).toBe(false);
        expect(seen.violations, what).toEqual(afterStep.violations);
        expect([...got.outcomes, seen.outcome], what).toEqual(want.outcomes);
        expect(got.snapshot, what).toEqual(want.snapshot);
        expect(got.seq, what).toBe(want.seq);
        expect(got.warnings, what).toEqual(want.warnings);
        expect(got.violations, what).toEqual(want.violations);
        expect(got.violations, what).toEqual([]);
        checked++;
      }
    }
    expect(checked).toBe(first.size * calls.length);
    console.log(`[reentrancy] ${vendor}: ${first.size} events × ${calls.length} entry points = ${checked} re-entrant calls`);
  }, 300_000);
});

function call(ep: EntryPoint['call'], host: Host): Outcome {
  return attempt(() => ep(host));
}

describe.each(VENDORS)('the findings of issue 14 on %s', (vendor) => {
  test('a listener throwing on virt:enable during modprobe: the load completes, nothing is left enabled by a half-done load', () => {
    const host = scriptHost(vendor);
    host.events.on('virt:enable', (e) => {
      if (e.cpu === 2) throw new Error('no');
    });
    host.modprobe('kvm0');
    expect(host.lsmod().map((m) => `${m.name}:${m.state}`)).toEqual(['kvm0:live', 'vac:live']);
    expect(vacOf(host)?.cpus().map((c) => c.enabled)).toEqual([true, true, true, true]);
    expect(checkInvariants(host)).toEqual([]);
    host.rmmod('kvm0');
    host.rmmod('vac');
    expect(host.cpus.map((c) => host.hardware.virt.isEnabled(c.id))).toEqual([false, false, false, false]);
    host.modprobe('kvm1'); // later loads work (EBUSY before)
    expect(checkInvariants(host)).toEqual([]);
  });

  test('a listener throwing on fd:close: the VM is destroyed, rmmod works', () => {
    const host = scriptHost(vendor);
    host.modprobe('kvm0');
    const p = host.spawn({ groups: ['kvm'] });
    const t = readyVm(p, '/dev/kvm0', GUESTS.io, 1);
    host.events.on('fd:close', () => {
      throw new Error('no');
    });
    for (const fd of [...t.vcpus, t.vm, t.sys]) p.close(fd);
    expect(host.modules.exportsOf<KvmInstance>('kvm0')?.vms.size).toBe(0);
    expect(host.warnings.filter((w) => w.source === 'events').length).toBe(3);
    host.rmmod('kvm0');
    expect(checkInvariants(host)).toEqual([]);
  });

  test("a listener throwing on module:load: modprobe keeps both modules (its rollback does not unload vac under kvm0)", () => {
    const host = scriptHost(vendor);
    host.events.on('module:load', () => {
      throw new Error('no');
    });
    host.modprobe('kvm0');
    expect(host.lsmod().map((m) => `${m.name}:${m.state}:${m.usedBy.join(',')}`)).toEqual(['kvm0:live:', 'vac:live:kvm0']);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('listeners throwing during suspend and resume: the scheduler thaws, every CPU comes back enabled', () => {
    const host = scriptHost(vendor);
    host.modprobe('kvm0');
    const p = host.spawn({ groups: ['kvm'] });
    const t = readyVm(p, '/dev/kvm0', GUESTS.spin, 1);
    host.scheduler.spawn(p, { cpu: 2 }, function* (th) {
      yield* th.ioctl(t.vcpus[0] as number, KVM_RUN, 0);
    });
    host.scheduler.run(2);
    for (const name of ['power', 'cpu:offline', 'cpu:online', 'virt:enable', 'virt:disable', 'vcpu:put'] as const) {
      host.events.on(name, () => {
        throw new Error(name);
      });
    }
    host.suspend();
    expect(host.systemState).toBe('suspended');
    host.resume();
    expect(host.systemState).toBe('running');
    expect(host.scheduler.frozen).toBe(false);
    expect(host.cpus.map((c) => c.online)).toEqual([true, true, true, true]);
    expect(vacOf(host)?.cpus().map((c) => c.enabled)).toEqual([true, true, true, true]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test("listeners calling back from inside VAC's handle, destroyVm, a thread's KVM_RUN and a hotplug setup see whole operations", () => {
    const host = scriptHost(vendor);
    host.insmod(host.modules.library.get('vac') as never);
    const vac = vacOf(host) as Vac;
    const h = vac.attach(idleVacInstance('tool'));
    const during: string[] = [];
    const probe = (what: string) => () => {
      during.push(`${what}: inKernel=${String(host.events.inKernel)} violations=${checkInvariants(host).length}`);
    };
    let offUsage = host.events.on('virt:usage', probe('usage'));
    let offEnable = host.events.on('virt:enable', (e) => {
      probe('enable')();
      if (e.cpu === 0) during.push(`cpuDown 3 → ${call((x) => x.cpuDown(3), host)}`);
    });
    h.enableVirtualization();
    // Delivered after the whole 0→1 (enables then the count), and the cpuDown called from the first one ran after it
    // too: CPU 3 went down with virtualization on, as a call right after enableVirtualization would.
    expect(during).toEqual([
      'enable: inKernel=false violations=0',
      'cpuDown 3 → ok',
      'enable: inKernel=false violations=0',
      'enable: inKernel=false violations=0',
      'enable: inKernel=false violations=0',
      'usage: inKernel=false violations=0',
    ]);
    expect(vac.cpus().map((c) => c.enabled)).toEqual([true, true, true, false]);
    offUsage();
    offEnable();
    host.cpuUp(3);
    h.disableVirtualization();
    h.detach();
    expect(checkInvariants(host)).toEqual([]);

    host.modprobe('kvm0');
    const p = host.spawn({ groups: ['kvm'] });
    const sys = p.open('/dev/kvm0', O_RDWR);
    p.ioctl(sys, KVM_CREATE_VM, 0);
    const inst = host.modules.exportsOf<KvmInstance>('kvm0') as KvmInstance;
    const vm = [...inst.vms][0];
    during.length = 0;
    offUsage = host.events.on('vm:destroy', probe('destroy'));
    offEnable = host.events.on('virt:usage', probe('usage'));
    if (vm !== undefined) inst.destroyVm(vm);
    expect(during).toEqual(['usage: inKernel=false violations=0', 'destroy: inKernel=false violations=0']);
    offUsage();
    offEnable();

    // A thread's KVM_RUN driven by hand, outside the scheduler's tick: its steps are operations too.
    const t = readyVm(p, '/dev/kvm0', GUESTS.spin, 1);
    during.length = 0;
    const off = host.events.on('vcpu:load', probe('load'));
    const thread = host.scheduler.spawn(p, { cpu: 1 }, function* () {
      yield;
    });
    const gen = thread.ioctl(t.vcpus[0] as number, KVM_RUN, 0);
    gen.next();
    gen.return(0);
    off();
    expect(during).toEqual(['load: inKernel=false violations=0']);

    // A hotplug state installed by hand: its startups run as one operation.
    during.length = 0;
    const offOnline = host.events.on('warning', probe('warning'));
    host.cpuhp.setup('test:online', {
      startup: (cpu) => {
        if (cpu === 1) host.warn({ source: 'test', message: 'startup' });
      },
    })();
    offOnline();
    expect(during).toEqual(['warning: inKernel=false violations=0']);
    expect(checkInvariants(host)).toEqual([]);
  });
});
