/**
 * Hotplug and power with two KVM modules loaded: every event reaches VAC once, and VAC acts for both.
 *
 * Four vCPU threads (two VMs on kvm0, two on kvm1) keep running real guest code while the host:
 * 1. takes CPU 2 offline (its vCPUs are put, its VMCSs VMCLEARed, VMXOFF; the threads move to CPU 0);
 * 2. brings CPU 2 back (VMXON again) and a thread migrates back to it (VMCLEAR on the old CPU, VMPTRLD);
 * 3. refuses to bring CPU 3 online while its VMXON faults (EIO; the CPU stays offline), then accepts it;
 * 4. suspends with the threads in guest mode and resumes (the guests are kicked out and carry on; the threads
 *    were frozen before the CPUs went down, so they keep their pinning and run on their own CPUs again);
 * 5. reboots: everything disabled, `rebooting` set for good, a new VM gets EBUSY.
 * A per-CPU table after each step shows VAC's view and the CPUs' VMX instruction counters.
 *
 * Exits non-zero if anything it shows does not hold.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { O_RDWR, checkInvariants, createHost, isKernelError, recordEvents, renderTimelineSvg, vacOf, type Thread, type TimelineAnnotation } from '@vac/core';
import {
  KVM_CREATE_VM,
  KVM_EXIT_IO,
  KVM_RUN,
  asm16,
  createRealModeVm,
  kvm,
  vcpuOf,
  type RealModeVcpu,
  type Vcpu,
} from '@vac/kvm';
import { intel, isIntelHardware, type IntelHardware } from '@vac/vmx';
import { Checks, table } from '@vac/example-support';

const checks = new Checks();
const expect = checks.expect;

// ---- the host: 4 CPUs, kvm0 and kvm1, four vCPU threads ---------------------------------------------

const CPUS = 4;
const host = createHost({ cpus: CPUS, hardware: intel() });
const recorder = recordEvents(host);
const annotations: TimelineAnnotation[] = [];
const hardware = host.hardware;
if (!isIntelHardware(hardware)) throw new Error('expected Intel hardware');
const hw: IntelHardware = hardware;
host.modprobe(kvm({ postfix: '0' }));
host.modprobe(kvm({ postfix: '1' }), { vmentry_l1d_flush: 'always' });
const vac = vacOf(host);
if (vac === undefined) throw new Error('vac is not loaded');

/** Prints 1, 2, 3, … on port 0x3f8, one every 5 ticks (4,500 turns of `loop` in between). */
const GUEST = asm16()
  .mov('dx', 0x3f8)
  .label('top').mov('cx', 4500).label('wait').loop('wait')
  .inc('al').out('dx', 'al')
  .jmp('top')
  .bytes();

interface Guest {
  readonly name: string;
  readonly model: Vcpu;
  readonly thread: Thread;
  readonly printed: number[];
  stop: boolean;
}

function startGuest(name: string, dev: string, cpu: number): Guest {
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name });
  const { fd, run } = createRealModeVm(p, `/dev/${dev}`, { code: GUEST }).vcpus[0] as RealModeVcpu;
  const model = vcpuOf(p, fd);
  const g = { name, model, printed: [] as number[], stop: false } as Guest & { thread: Thread };
  g.thread = host.scheduler.spawn(p, { cpu, name }, function* (t) {
    while (!g.stop) {
      try {
        yield* t.ioctl(fd, KVM_RUN, 0);
      } catch (e) {
        if (isKernelError(e, 'EINTR')) continue; // kicked (suspend, reboot) or signalled
        throw e;
      }
      if (run.exit_reason === KVM_EXIT_IO) g.printed.push(run.bytes[run.io.data_offset] ?? 0);
      else checks.fail(`${name}: unexpected exit ${run.exit_reason}`);
      yield* t.yield();
    }
  });
  return g;
}

const guests = [startGuest('A', 'kvm0', 1), startGuest('B', 'kvm0', 2), startGuest('C', 'kvm1', 2), startGuest('D', 'kvm1', 3)];
const byName = (n: string): Guest => guests.find((g) => g.name === n) as Guest;

// ---- reporting ---------------------------------------------------------------------------------------

function cpuTable(title: string): void {
  console.log(`\n${title}   [system ${host.systemState}, usage count ${vac?.usageCount}, rebooting ${vac?.rebooting}]`);
  table(
    host.cpus.map((c) => {
      const v = vac?.cpu(c.id);
      const k = hw.counters(c.id);
      return {
        CPU: c.id,
        online: c.online ? 'yes' : 'no',
        VMX: v?.enabled === true ? 'on' : 'off',
        enables: v?.enableCount ?? 0,
        'vCPU loaded': v?.running ?? '-',
        'VMCS list': hw.loadedList(c.id).length,
        threads: guests.filter((g) => g.thread.alive && g.thread.cpu === c.id).map((g) => g.name).join(' ') || '-',
        VMXON: k.vmxon,
        VMXOFF: k.vmxoff,
        VMCLEAR: k.vmclear,
        VMPTRLD: k.vmptrld,
      };
    }),
  );
}

const instructions = (): number[] => guests.map((g) => g.model.stats.instructions);
const allRanSince = (before: number[]): boolean => instructions().every((n, i) => n > (before[i] ?? 0));
const invariants = (when: string): void => {
  const bad = checkInvariants(host);
  expect(bad.length === 0, `invariants ${when}: ${bad.map((v) => v.message).join('; ')}`);
};
const steps: Array<{ step: string; result: string }> = [];
/** A mark on the picture at `at`: the `host.events.seq` read just before the step's action, so it sits where the step begins. */
const annotate = (at: number, label: string): void => {
  annotations.push({ at, label });
};

console.log(`Hotplug and power on a ${CPUS}-CPU Intel host with kvm0 (A, B) and kvm1 (C, D) running guests`);
host.scheduler.run(4);
cpuTable('Start: A on CPU 1, B and C share CPU 2, D on CPU 3');
invariants('at the start');

// ---- 1. CPU 2 offline with B and C on it -------------------------------------------------------------

{
  const clear2 = hw.counters(2).vmclear;
  const lastC = byName('C').model.lastCpu;
  const at = host.events.seq;
  host.cpuDown(2);
  expect(!vac.cpu(2).enabled && hw.loadedList(2).length === 0, 'CPU 2 offline: VMX off, no VMCS left on its list');
  expect(hw.counters(2).vmclear - clear2 === 2, `CPU 2 offline: both VMCSs that were loaded there (B, C) VMCLEARed (got ${hw.counters(2).vmclear - clear2})`);
  const before = instructions();
  host.scheduler.run(4);
  expect(allRanSince(before), 'every guest keeps running after CPU 2 went offline');
  expect(byName('B').model.lastCpu === 0 && byName('C').model.lastCpu === 0 && lastC === 2, 'B and C moved from CPU 2 to CPU 0');
  annotate(at, 'cpuDown(2)');
  steps.push({ step: 'cpuDown(2)', result: 'B, C put and VMCLEARed, VMXOFF on CPU 2; threads moved to CPU 0' });
  cpuTable('1. After `echo 0 > cpu2/online` and 4 ticks');
  invariants('after CPU 2 went offline');
}

// ---- 2. CPU 2 back; C follows it ---------------------------------------------------------------------

{
  const at = host.events.seq;
  host.cpuUp(2);
  expect(vac.cpu(2).enabled && vac.cpu(2).enableCount === 2, 'CPU 2 online again: VMX on (second enable)');
  const c = byName('C');
  const migrations = c.model.vendor.stats['vmcsMigrations'] ?? 0;
  const clear0 = hw.counters(0).vmclear;
  const ptrld2 = hw.counters(2).vmptrld;
  c.thread.setAffinity(2);
  const before = instructions();
  host.scheduler.run(4);
  expect(allRanSince(before), 'every guest keeps running after CPU 2 came back');
  expect(c.model.lastCpu === 2 && (c.model.vendor.stats['vmcsMigrations'] ?? 0) === migrations + 1, "C's VMCS migrated from CPU 0 to CPU 2");
  expect(hw.counters(0).vmclear > clear0 && hw.counters(2).vmptrld > ptrld2, 'the migration VMCLEARed on CPU 0 and VMPTRLDed on CPU 2');
  annotate(at, 'cpuUp(2); pin C to 2');
  steps.push({ step: 'cpuUp(2); pin C to 2', result: 'VMXON on CPU 2; C: VMCLEAR on CPU 0, VMPTRLD on CPU 2' });
  cpuTable('2. After `echo 1 > cpu2/online`, C pinned back to CPU 2, 4 ticks');
  invariants('after CPU 2 came back');
}

// ---- 3. CPU 3 cannot enable VMX: refused online ---------------------------------------------------------

{
  host.cpuDown(3);
  hw.injectEnableFault(3, 'always'); // VMXON on CPU 3 now faults (#GP)
  let code = 'none';
  const at = host.events.seq;
  try {
    host.cpuUp(3);
  } catch (e) {
    code = isKernelError(e) ? e.code : String(e);
  }
  annotate(at, `cpuUp(3) → ${code}`);
  expect(code === 'EIO', `CPU 3 whose VMXON faults is refused online with EIO (got ${code})`);
  expect(!host.cpus[3]?.online && !vac.cpu(3).enabled, 'CPU 3 stays offline and disabled');
  const warning = host.warnings.find((w) => w.cpu === 3 && w.message.includes('enabling virtualization on CPU3 failed'));
  expect(warning !== undefined, 'the failure is logged: "kvm: enabling virtualization on CPU3 failed"');
  cpuTable(`3. After \`echo 1 > cpu3/online\` with VMXON faulting on CPU 3 → ${code} (logged: "${warning?.message ?? '?'}")`);
  invariants('after CPU 3 was refused');
  hw.injectEnableFault(3, 'off');
  host.cpuUp(3);
  byName('D').thread.setAffinity(3);
  const before = instructions();
  host.scheduler.run(4);
  expect(allRanSince(before) && byName('D').model.lastCpu === 3, 'with the fault gone CPU 3 comes online and D runs there again');
  steps.push({ step: 'cpuUp(3), VMXON faulting', result: `${code}: online refused, CPU 3 stays offline; accepted once the fault is gone` });
  invariants('after CPU 3 came back');
}

// ---- 4. suspend / resume with the threads in guest mode -----------------------------------------------

{
  host.scheduler.run(1);
  const inGuest = guests.filter((g) => g.model.inGuest).map((g) => g.name);
  const intr = guests.map((g) => g.model.stats.signal_exits);
  // Where each thread runs and what it is pinned to: A, C and D pinned to CPUs 1, 2 and 3; B unpinned on CPU 0.
  const placement = (): string => guests.map((g) => `${g.name}:${g.thread.cpu}/${g.thread.affinity ?? '-'}`).join(' ');
  const beforeSuspend = placement();
  host.suspend();
  expect(host.systemState === 'suspended', 'the host is suspended');
  expect(host.cpus.every((c) => !vac.cpu(c.id).enabled) && host.cpus.every((c) => !hw.inVmxOperation(c.id)), 'suspended: VMX off on every CPU');
  expect(host.scheduler.tick() === 0, 'no thread runs while suspended');
  expect(placement() === beforeSuspend, `frozen threads are not migrated off the CPUs going down (${placement()}, before: ${beforeSuspend})`);
  cpuTable(`4a. After suspend (in guest mode before it: ${inGuest.join(', ') || 'none'}; the threads are frozen where they were)`);
  // Freezing the tasks scheduled every thread out (kvm_sched_out put its vCPU) before VMX went off; the vCPUs
  // were kicked, so each leaves KVM_RUN with EINTR at its first slice after resume.
  expect(host.cpus.every((c) => vac.cpu(c.id).running === undefined), 'suspended: no vCPU is loaded on any CPU');
  invariants('while suspended');
  host.resume();
  expect(host.cpus.every((c) => c.online && vac.cpu(c.id).enabled), 'resumed: every CPU online with VMX on');
  // Tasks are frozen before the CPUs go down and thawed after they are back: no re-pinning needed.
  expect(placement() === beforeSuspend, `after resume every thread is where it was, pinned as before (${placement()}, before: ${beforeSuspend})`);
  const before = instructions();
  host.scheduler.run(4);
  expect(allRanSince(before), 'every guest runs again after resume');
  expect(guests.every((g) => g.model.lastCpu === g.thread.cpu), 'each vCPU ran on its own thread\'s CPU after resume');
  expect(guests.every((g, i) => g.model.stats.signal_exits > (intr[i] ?? 0) || !inGuest.includes(g.name)), 'the guests in guest mode were kicked out (KVM_RUN → EINTR) by the freeze');
  // No mark of our own: the picture marks suspend and resume where they happen (powerAnnotations).
  steps.push({ step: 'suspend; resume', result: `${inGuest.length} vCPUs kicked out of guest mode; VMXOFF everywhere; all back on their CPUs after resume` });
  cpuTable('4b. After resume and 4 ticks');
  invariants('after resume');
}

// ---- 5. reboot ----------------------------------------------------------------------------------------

{
  host.reboot();
  expect(vac.rebooting, '`rebooting` is set');
  expect(host.cpus.every((c) => !vac.cpu(c.id).enabled && !hw.inVmxOperation(c.id)), 'after reboot: VMX off on every CPU');
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'late-vmm' });
  let code = 'none';
  const at = host.events.seq;
  try {
    p.ioctl(p.open('/dev/kvm1', O_RDWR), KVM_CREATE_VM, 0);
  } catch (e) {
    code = isKernelError(e) ? e.code : String(e);
  }
  expect(code === 'EBUSY', `KVM_CREATE_VM after reboot fails with EBUSY (got ${code})`);
  expect(vac.rebooting, '`rebooting` stays set (sticky)');
  annotate(at, `KVM_CREATE_VM → ${code}`);
  steps.push({ step: 'reboot; KVM_CREATE_VM', result: `VMXOFF everywhere, rebooting=true (sticky); new VM → ${code}` });
  cpuTable(`5. After reboot (a new KVM_CREATE_VM → ${code})`);
  invariants('after reboot');
}

// The picture of the run: one lane per CPU (which module's vCPU runs there, VMXON/VMXOFF, offline
// periods), one per module. `VAC_PICTURES_DIR` puts a copy where the guides embed it.
recorder.stop();
const svg = renderTimelineSvg(recorder.events(), {
  cpus: CPUS,
  title: 'Hotplug and power with kvm0 and kvm1 loaded: every event reaches VAC once',
  annotations,
  width: 1200,
});
for (const dir of [join(dirname(fileURLToPath(import.meta.url)), 'out'), process.env['VAC_PICTURES_DIR']]) {
  if (dir === undefined) continue;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'hotplug-and-power.svg'), svg);
}

console.log('\nSteps');
table(steps.map((s, i) => ({ '#': i + 1, Step: s.step, 'What VAC did': s.result })));
console.log('\nWhat each guest printed (it counts 1, 2, 3, … in AL)');
table(guests.map((g) => ({ Guest: g.name, Module: g.model.label, 'counts printed': g.printed.length, 'in order': g.printed.every((v, i) => v === ((i + 1) & 0xff)) ? 'yes' : 'NO' })));
for (const g of guests) expect(g.printed.length > 0 && g.printed.every((v, i) => v === ((i + 1) & 0xff)), `${g.name} printed 1, 2, 3, … without a gap`);

checks.conclude('All checks hold: each hotplug and power event reached VAC once and was applied for both modules; invariants clean.');
