/**
 * Mitigations per module: "run the 'same' KVM module with different params, e.g. to run trusted VMs with
 * different mitigations" (the RFC). Trusted VMs run on kvm0, loaded with `vmentry_l1d_flush=never`;
 * untrusted VMs on kvm1, loaded with `vmentry_l1d_flush=always` (the L1TF / CVE-2018-3646 mitigation).
 * Their vCPU threads are interleaved on the same four CPUs by the scheduler, so every CPU switches between a
 * trusted and an untrusted guest on each tick. Only kvm1's VM entries flush the L1 data cache: the vCPU
 * counters, the `l1d:flush` events and the CPUs' own IA32_FLUSH_CMD counters agree.
 *
 * Then SMT: on a host with two threads per core, the flush on kvm1's VM entries protects nothing while the sibling
 * thread of the same core runs a trusted guest — the two threads share the L1 data cache at the same time. A
 * placement that fills cores in order puts a trusted and an untrusted guest on the threads of every core; a
 * placement that reads the topology (`host.topology`, `thread_siblings_list`) keeps each core in one trust domain.
 * The example samples every core after each tick and counts those whose threads hold vCPUs of both modules at
 * once (loaded, from `vcpu:load` / `vcpu:put`: in guest mode or about to enter), for both placements; @vac/fleet's
 * checks say the same — `checkSmtIsolation` (cores whose threads are given to two trust domains) and `SmtMonitor`
 * (core-ticks in which a vCPU was loaded while its sibling thread ran the other domain's) — and its `CoreAllocator` makes the second placement.
 *
 * Exits non-zero if anything it shows does not hold.
 */
import { checkInvariants, createHost, isKernelError, type Host, type Process } from '@vac/core';
import {
  KVM_EXIT_IO,
  KVM_RUN,
  asm16,
  createRealModeVm,
  kvm,
  kvmInstance,
  vcpuOf,
  type KvmInstance,
  type RealModeVcpu,
  type Vcpu,
} from '@vac/kvm';
import { L1TF_MSG_L1D, intel, isIntelHardware, type VmxKvmModule } from '@vac/vmx';
import { Checks, table } from '@vac/example-support';
import { CoreAllocator, SmtMonitor, checkSmtIsolation, trustDomainOf, type SmtViolation } from '@vac/fleet';

const checks = new Checks();
const expect = checks.expect;

// 1. One host, two modules that differ only in their L1TF mitigation.
const CPUS = 4;
const host = createHost({ cpus: CPUS, hardware: intel() });
const hw = host.hardware;
if (!isIntelHardware(hw)) throw new Error('expected Intel hardware');
const trusted = host.modprobe(kvm({ postfix: '0', version: '6.12' }), { vmentry_l1d_flush: 'never' });
const untrusted = host.modprobe(kvm({ postfix: '1', version: '6.12' }), { vmentry_l1d_flush: 'always' });
const modules = [kvmInstance(host, trusted.name), kvmInstance(host, untrusted.name)];

// Count every l1d:flush event by module and CPU.
const flushEvents = new Map<string, number>();
host.events.on('l1d:flush', (e) => flushEvents.set(`${e.module}@${e.cpu}`, (flushEvents.get(`${e.module}@${e.cpu}`) ?? 0) + 1));

/** The guest: print the VM's digit (BL) on port 0x3f8, spin ~1500 instructions, print it again, forever. */
const GUEST = asm16()
  .mov('dx', 0x3f8)
  .label('top').mov('al', 'bl').out('dx', 'al')
  .mov('cx', 1500).label('wait').loop('wait')
  .jmp('top')
  .bytes();

interface Guest {
  readonly name: string;
  readonly dev: string;
  readonly cpu: number;
  readonly digit: number;
  readonly model: Vcpu;
  printed: string;
  stop: boolean;
}

/** A VMM process with one VM of one vCPU on /dev/`dev` of `on`, its vCPU thread pinned to `cpu`. */
function startGuest(name: string, dev: string, cpu: number, digit: number, on: Host = host): Guest {
  const p: Process = on.spawn({ uid: 1000, groups: ['kvm'], name, cpu });
  const { fd, run } = createRealModeVm(p, `/dev/${dev}`, { code: GUEST, regs: { rbx: BigInt(0x30 + digit) } }).vcpus[0] as RealModeVcpu;
  const model = vcpuOf(p, fd);
  const g: Guest = { name, dev, cpu, digit, model, printed: '', stop: false };
  on.scheduler.spawn(p, { cpu, name: `${name}/vcpu0` }, function* (t) {
    while (!g.stop) {
      try {
        yield* t.ioctl(fd, KVM_RUN, 0);
      } catch (e) {
        if (isKernelError(e, 'EINTR')) continue;
        throw e;
      }
      if (run.exit_reason === KVM_EXIT_IO) g.printed += String.fromCharCode(run.bytes[run.io.data_offset] ?? 0);
      else checks.fail(`${name}: unexpected exit ${run.exit_reason}`);
      yield* t.yield();
    }
  });
  return g;
}

// 2. On every CPU: one trusted and one untrusted vCPU thread, sharing the CPU tick by tick.
const guests: Guest[] = [];
for (let cpu = 0; cpu < CPUS; cpu++) {
  guests.push(startGuest(`trusted${cpu}`, 'kvm0', cpu, cpu));
  guests.push(startGuest(`untrusted${cpu}`, 'kvm1', cpu, 5 + cpu));
}
const TICKS = 60;
host.scheduler.run(TICKS);
for (const g of guests) {
  g.stop = true;
  const t = host.scheduler.threads().find((x) => x.name === `${g.name}/vcpu0`);
  t?.signal();
}
host.scheduler.runUntilIdle(10);

// 3. The account.
const cfg = (inst: KvmInstance): VmxKvmModule => inst.vendor as VmxKvmModule;
const vcpusOf = (inst: KvmInstance): Vcpu[] => guests.filter((g) => g.dev === inst.name).map((g) => g.model);
const entries = (vs: Vcpu[]): number => vs.reduce((a, v) => a + (v.vendor.stats['entries'] ?? 0), 0);
const flushes = (vs: Vcpu[]): number => vs.reduce((a, v) => a + (v.vendor.stats['l1dFlushes'] ?? 0), 0);

console.log(`L1TF mitigation per module: ${guests.length} VMs on ${CPUS} shared CPUs, ${TICKS} scheduler ticks\n`);
console.log('Per module');
table(
  modules.map((inst) => {
    const vs = vcpusOf(inst);
    return {
      Module: inst.name,
      VMs: vs.length,
      vmentry_l1d_flush: host.readParam(inst.name, 'vmentry_l1d_flush'),
      'in effect': `${cfg(inst).config.l1tf} (${cfg(inst).config.l1dFlushMethod})`,
      'VM entries': entries(vs),
      'L1D flushes': flushes(vs),
      'flushes/entry': entries(vs) === 0 ? '-' : (flushes(vs) / entries(vs)).toFixed(2),
    };
  }),
);

console.log('\nPer CPU: entries and flushes by module (vCPU stats, l1d:flush events) and the CPU\'s IA32_FLUSH_CMD writes');
const perCpu = Array.from({ length: CPUS }, (_, cpu) => {
  const on = (dev: string): Vcpu[] => guests.filter((g) => g.cpu === cpu && g.dev === dev).map((g) => g.model);
  return {
    CPU: cpu,
    'kvm0 entries': entries(on('kvm0')),
    'kvm0 flushes': flushes(on('kvm0')),
    'kvm1 entries': entries(on('kvm1')),
    'kvm1 flushes': flushes(on('kvm1')),
    'l1d:flush events': (flushEvents.get(`kvm0@${cpu}`) ?? 0) + (flushEvents.get(`kvm1@${cpu}`) ?? 0),
    'hw l1dFlush': hw.counters(cpu).l1dFlush,
    VMRESUMEs: hw.counters(cpu).vmresume,
  };
});
table(perCpu);

console.log('\nWhat each guest printed (first 12 characters)');
table(guests.map((g) => ({ Guest: g.name, Module: g.dev, CPU: g.cpu, Printed: g.printed.slice(0, 12) })));

const l1tfWarning = host.warnings.find((w) => w.message === L1TF_MSG_L1D);
console.log(`\nWarning logged when the first trusted VM started: ${l1tfWarning === undefined ? '(none)' : `${l1tfWarning.source}: ${l1tfWarning.message.slice(0, 70)}…`}`);

// 4. Checks.
const [k0, k1] = modules as [KvmInstance, KvmInstance];
expect(flushes(vcpusOf(k0)) === 0, 'kvm0 (never) never flushes L1D');
expect(entries(vcpusOf(k1)) > 0 && flushes(vcpusOf(k1)) === entries(vcpusOf(k1)), 'kvm1 (always) flushes L1D before every VM entry');
for (const row of perCpu) {
  expect(row['kvm0 entries'] > 0 && row['kvm1 entries'] > 0, `CPU ${row.CPU} ran both modules' guests`);
  expect(row['hw l1dFlush'] === row['kvm1 flushes'], `CPU ${row.CPU}: the CPU's flush count equals kvm1's flushes there`);
  expect(row['l1d:flush events'] === row['kvm1 flushes'] && (flushEvents.get(`kvm0@${row.CPU}`) ?? 0) === 0, `CPU ${row.CPU}: l1d:flush events are kvm1's only`);
}
for (const g of guests) {
  const want = String.fromCharCode(0x30 + g.digit);
  expect(g.printed.length > 10 && [...g.printed].every((c) => c === want), `${g.name} printed only ${want} (got ${JSON.stringify(g.printed.slice(0, 20))})`);
}
expect(l1tfWarning !== undefined, 'the L1TF warning is logged for the module with vmentry_l1d_flush=never');
const bad = checkInvariants(host);
expect(bad.length === 0, `invariants: ${bad.map((v) => v.message).join('; ')}`);

// 5. SMT: two threads per core share the L1 data cache while both run.
const SMT_CPUS = 8;
/** A guest's trust domain, from its VMM's name (`trusted2`, `untrusted0`): what placement and the checks go by. */
const domainOf = (p: Process): string | undefined => /^(un)?trusted\d/.exec(p.name)?.[0].replace(/\d$/, '');
/**
 * Run four trusted (kvm0) and four untrusted (kvm1) guests, one per CPU as `placer` says; count mixed cores per tick
 * (sampled after each tick), and check with @vac/fleet: the static check of the vCPU threads' CPUs and the monitor
 * of vcpu:load.
 */
function smtRun(placer: (smt: Host) => (guest: number, untrusted: boolean) => number): {
  readonly smt: Host;
  readonly mixed: number;
  readonly coreTicks: number;
  readonly flushes: number;
  readonly layout: string[];
  readonly violations: SmtViolation[];
  readonly mixedCoreTicks: number;
} {
  const smt = createHost({ cpus: SMT_CPUS, threadsPerCore: 2, hardware: intel() });
  smt.modprobe(kvm({ postfix: '0', version: '6.12' }), { vmentry_l1d_flush: 'never' });
  smt.modprobe(kvm({ postfix: '1', version: '6.12' }), { vmentry_l1d_flush: 'always' });
  // What each thread runs: the module of the vCPU loaded there (vcpu:load … vcpu:put).
  const loaded: Array<string | undefined> = new Array<string | undefined>(SMT_CPUS).fill(undefined);
  smt.events.on('vcpu:load', (e) => (loaded[e.cpu] = e.module));
  smt.events.on('vcpu:put', (e) => (loaded[e.cpu] = undefined));
  const monitor = new SmtMonitor(smt, domainOf);
  const place = placer(smt);
  const gs: Guest[] = [];
  for (let i = 0; i < 4; i++) gs.push(startGuest(`trusted${i}`, 'kvm0', place(i, false), i, smt));
  for (let i = 0; i < 4; i++) gs.push(startGuest(`untrusted${i}`, 'kvm1', place(i, true), 5 + i, smt));
  let mixed = 0;
  let coreTicks = 0;
  for (let tick = 0; tick < TICKS; tick++) {
    smt.scheduler.run(1);
    for (let core = 0; core < smt.topology.cores; core++) {
      const mods = new Set(smt.topology.cpusOfCore(core).map((c) => loaded[c]).filter((m) => m !== undefined));
      coreTicks++;
      if (mods.has('kvm0') && mods.has('kvm1')) mixed++;
    }
  }
  const violations = checkSmtIsolation(smt, domainOf);
  monitor.stop();
  for (const g of gs) {
    g.stop = true;
    smt.scheduler.threads().find((x) => x.name === `${g.name}/vcpu0`)?.signal();
  }
  smt.scheduler.runUntilIdle(10);
  const layout = Array.from({ length: smt.topology.cores }, (_, core) => smt.topology.cpusOfCore(core).map((c) => gs.find((g) => g.cpu === c)?.dev ?? '-').join('+'));
  return { smt, mixed, coreTicks, flushes: flushes(gs.filter((g) => g.dev === 'kvm1').map((g) => g.model)), layout, violations, mixedCoreTicks: monitor.mixedCoreTicks };
}

// In order: CPUs 0-3 to the trusted guests, 4-7 to the untrusted ones. With thread-major numbering CPU n and n + 4
// are one core, so every core gets one guest of each module.
const naive = smtRun(() => (i, untrusted) => (untrusted ? 4 + i : i));
// By trust domain: @vac/fleet's CoreAllocator gives each domain whole cores (from host.topology) — cores 0-1
// trusted, 2-3 untrusted.
const byCore = smtRun((smt) => {
  const cores = new CoreAllocator(smt);
  return (_i, untrusted) => cores.allocate(trustDomainOf({ trusted: !untrusted }), 1)?.[0] ?? -1;
});

console.log(`\nSMT: ${SMT_CPUS} CPUs, ${naive.smt.topology.threadsPerCore} threads per core; 4 trusted (kvm0) and 4 untrusted (kvm1) guests, one per CPU, ${TICKS} ticks`);
table(
  [0, 1, 2, 3].map((core) => ({
    Core: core,
    CPUs: naive.smt.readSysfs(`/sys/devices/system/cpu/cpu${core}/topology/thread_siblings_list`),
    'in order': naive.layout[core] ?? '',
    'by trust domain': byCore.layout[core] ?? '',
  })),
);
table(
  [naive, byCore].map((r, i) => ({
    Placement: i === 0 ? 'in order' : 'by trust domain',
    'kvm1 L1D flushes': r.flushes,
    'core-ticks': r.coreTicks,
    'both modules loaded on one core': r.mixed,
    'cores with two domains (check)': r.violations.length,
    'core-ticks with a load beside the other domain (monitor)': r.mixedCoreTicks,
  })),
);
for (const v of naive.violations) console.log(`  in order, core ${v.core} (CPUs ${v.cpus.join(', ')}): ${v.domains.join(' and ')} — ${v.processes.join(', ')}`);
console.log('kvm1 flushes L1D before every entry either way; only the placement keeps its guests off the trusted guests\' cores.');

expect(naive.smt.readSysfs('/sys/devices/system/cpu/cpu0/topology/thread_siblings_list') === '0,4', 'CPU 0 and CPU 4 are siblings');
expect(naive.flushes > 0 && byCore.flushes > 0, 'kvm1 flushes L1D in both placements');
expect(naive.mixed > 0, 'in order: cores hold a trusted and an untrusted guest in guest mode at once');
expect(byCore.mixed === 0, 'by trust domain: no core ever holds guests of both modules');
expect(naive.violations.length === 4 && byCore.violations.length === 0, 'the static check finds every core mixed in order, none by trust domain');
expect(naive.mixedCoreTicks > 0 && byCore.mixedCoreTicks === 0, 'the monitor sees both domains on a core in order, never by trust domain');
for (const r of [naive, byCore]) {
  const v = checkInvariants(r.smt);
  expect(v.length === 0, `SMT host invariants: ${v.map((x) => x.message).join('; ')}`);
}

checks.conclude('All checks hold: on the same CPUs, only the untrusted module flushes L1D, once per VM entry; with SMT, only a placement by trust domain keeps the modules off each other\'s cores; invariants clean.');
