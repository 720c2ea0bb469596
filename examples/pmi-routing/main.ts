/**
 * PMI routing: perf has room for exactly one set of guest-info callbacks (`perf_register_guest_info_callbacks`;
 * a second registration WARNs and is ignored). With VAC, VAC owns that one registration and hands each PMI to
 * the module whose vCPU was running on the CPU it hit, so perf learns the right guest RIP whichever module
 * runs there.
 *
 * Two modules' vCPU threads share four CPUs; a seeded pseudo-random generator re-pins the threads every tick
 * and raises PMIs on random CPUs between ticks. Each PMI is checked against the ground truth (which thread
 * is on the CPU and whether its vCPU is in guest mode). Then the same run with kvm1 built in the legacy layout
 * (`legacy: ['irq']`): its callbacks are ignored with a warning, and every PMI that hits one of its guests is
 * taken for a host PMI: lost.
 *
 * Exits non-zero if anything it shows does not hold.
 */
import { PERF_GUEST_ACTIVE, checkInvariants, createHost, isKernelError, type Host, type Thread } from '@vac/core';
import {
  KVM_EXIT_IO,
  KVM_RUN,
  asm16,
  createRealModeVm,
  kvm,
  vcpuOf,
  type LegacyResource,
  type RealModeVcpu,
  type Vcpu,
} from '@vac/kvm';
import { intel } from '@vac/vmx';
import { Checks, table } from '@vac/example-support';

const checks = new Checks();
const expect = checks.expect;

/** mulberry32: a small seeded PRNG, so every run raises the same PMIs at the same points. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The guest: a counting loop that prints now and then (`out` on port 0x3f8), so a PMI finds it in guest mode
 * at varying RIPs, or in user space right after an exit.
 */
const GUEST = asm16()
  .mov('dx', 0x3f8)
  .label('top').mov('cx', 2500)
  .label('busy').inc('ax').add('bx', 'ax').loop('busy')
  .out('dx', 'al')
  .jmp('top')
  .bytes();

const CPUS = 4;
const TICKS = 60;
const SEED = 0x5eed;

interface Guest {
  readonly dev: string;
  readonly model: Vcpu;
  readonly thread: Thread;
  stop: boolean;
}

interface Row {
  readonly tick: number;
  readonly cpu: number;
  /** Ground truth: the vCPU in guest mode on the CPU, or `host`. */
  readonly running: string;
  /** What perf was told. */
  readonly attributedTo: string;
  readonly rip: string;
  readonly ok: boolean;
  readonly owner: string;
}

/** One run: a host, kvm0 and kvm1 (`legacy1` = kvm1's private resources), 4 + 4 guests, PMIs at random. */
function scenario(legacy1: readonly LegacyResource[] | undefined): { host: Host; rows: Row[] } {
  const host = createHost({ cpus: CPUS, hardware: intel() });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1', ...(legacy1 === undefined ? {} : { legacy: legacy1 }) }));
  const rnd = prng(SEED);
  const guests: Guest[] = [];
  for (let i = 0; i < 2 * CPUS; i++) {
    const dev = i % 2 === 0 ? 'kvm0' : 'kvm1';
    const p = host.spawn({ uid: 1000, groups: ['kvm'], name: `vmm${i}` });
    const { fd, run } = createRealModeVm(p, `/dev/${dev}`, { code: GUEST }).vcpus[0] as RealModeVcpu;
    const model = vcpuOf(p, fd);
    const g = { dev, model, stop: false } as Guest & { thread: Thread };
    g.thread = host.scheduler.spawn(p, { cpu: Math.floor(rnd() * CPUS), name: `vmm${i}/vcpu0` }, function* (t) {
      while (!g.stop) {
        try {
          yield* t.ioctl(fd, KVM_RUN, 0);
        } catch (e) {
          if (isKernelError(e, 'EINTR')) continue;
          throw e;
        }
        if (run.exit_reason !== KVM_EXIT_IO) checks.fail(`vmm${i}: unexpected exit ${run.exit_reason}`);
        yield* t.yield();
      }
    });
    guests.push(g);
  }

  const rows: Row[] = [];
  for (let tick = 1; tick <= TICKS; tick++) {
    // Re-pin every vCPU thread to a random CPU: who runs last on a CPU (and stays there) changes every tick.
    for (const g of guests) g.thread.setAffinity(Math.floor(rnd() * CPUS));
    host.scheduler.tick();
    // Between ticks the vCPUs that ended their slice in guest mode are still there. Raise 0–2 PMIs.
    const n = Math.floor(rnd() * 3);
    for (let k = 0; k < n; k++) {
      const cpu = Math.floor(rnd() * CPUS);
      const cur = host.scheduler.currentOn(cpu);
      const g = guests.find((x) => x.thread === cur);
      const inGuest = g !== undefined && g.model.inGuest && g.model.loadedOn === cpu;
      const truth = inGuest ? g.model.label : 'host';
      const wantRip = inGuest ? BigInt(g.model.regs.rip) : undefined;
      const r = host.raisePmi(cpu);
      const said = r.state & PERF_GUEST_ACTIVE ? (r.attributedTo ?? '?') : 'host';
      rows.push({
        tick,
        cpu,
        running: truth,
        attributedTo: said,
        rip: r.ip === undefined ? '-' : `0x${r.ip.toString(16)}`,
        ok: said === truth && r.ip === wantRip,
        owner: inGuest ? g.dev : 'host',
      });
    }
  }
  for (const g of guests) {
    g.stop = true;
    g.thread.signal();
  }
  host.scheduler.runUntilIdle(10);
  return { host, rows };
}

function report(title: string, rows: Row[]): Record<string, Record<string, number>> {
  console.log(`\n${title}: first 12 of ${rows.length} PMIs`);
  table(
    rows.slice(0, 12).map((r) => ({
      Tick: r.tick,
      CPU: r.cpu,
      'Running (ground truth)': r.running,
      'perf attributed it to': r.attributedTo,
      'guest RIP': r.rip,
      Result: r.ok ? 'ok' : r.owner === 'kvm1' ? 'LOST' : 'WRONG',
    })),
  );
  const by: Record<string, Record<string, number>> = {};
  for (const r of rows) {
    const b = (by[r.owner] ??= { raised: 0, delivered: 0, lost: 0 });
    b['raised'] = (b['raised'] ?? 0) + 1;
    if (r.ok) b['delivered'] = (b['delivered'] ?? 0) + 1;
    else b['lost'] = (b['lost'] ?? 0) + 1;
  }
  console.log('\nSummary by owner');
  table(Object.entries(by).sort(([a], [b]) => a.localeCompare(b)).map(([owner, c]) => ({ 'PMI hit': owner, raised: c['raised'] ?? 0, 'attributed correctly': c['delivered'] ?? 0, lost: c['lost'] ?? 0 })));
  return by;
}

console.log(`PMI routing: 4 kvm0 + 4 kvm1 vCPU threads re-pinned at random on ${CPUS} CPUs for ${TICKS} ticks (seed 0x${SEED.toString(16)})`);

// 1. With VAC: one perf registration, dispatched to the running instance.
const vac = scenario(undefined);
console.log(`\nperf guest callbacks registered by: ${vac.host.hooks.perfGuestCallbacks ?? '(none)'}`);
const withVac = report('With VAC', vac.rows);
expect(vac.rows.every((r) => r.ok), `with VAC every PMI is attributed to the vCPU running there (${vac.rows.filter((r) => !r.ok).length} were not)`);
expect((withVac['kvm0']?.['raised'] ?? 0) > 0 && (withVac['kvm1']?.['raised'] ?? 0) > 0 && (withVac['host']?.['raised'] ?? 0) > 0, 'PMIs hit kvm0 guests, kvm1 guests and the host');
expect(vac.host.warnings.every((w) => w.source !== 'perf'), 'no perf warning with VAC');
const inv = checkInvariants(vac.host);
expect(inv.length === 0, `invariants with VAC: ${inv.map((v) => v.message).join('; ')}`);

// 2. kvm1 in the legacy layout: it registers its own callbacks, perf keeps VAC's and ignores them.
const legacy = scenario(['irq']);
const perfWarnings = legacy.host.warnings.filter((w) => w.source === 'perf');
console.log(`\nkvm1 loaded with legacy: ['irq'] — perf guest callbacks registered by: ${legacy.host.hooks.perfGuestCallbacks ?? '(none)'}`);
// (kvm1's ignored registration is its private copy of VAC's IRQ registry, which names itself "vac".)
for (const w of perfWarnings) console.log(`  WARNING (${w.source}): ${w.message}   <- kvm1's own callbacks, ignored`);
const withLegacy = report('kvm1 legacy', legacy.rows);
expect(perfWarnings.length === 1, 'the second registration is warned about once');
expect(legacy.rows.filter((r) => r.owner === 'kvm1').every((r) => !r.ok && r.attributedTo === 'host'), "every PMI that hit a kvm1 guest was taken for a host PMI (lost)");
expect((withLegacy['kvm1']?.['raised'] ?? 0) > 0, 'some PMIs hit kvm1 guests in the legacy run');
expect(legacy.rows.filter((r) => r.owner !== 'kvm1').every((r) => r.ok), 'kvm0 and host PMIs are still right in the legacy run');

checks.conclude(
  `All checks hold: with VAC ${vac.rows.length}/${vac.rows.length} PMIs reached their owner; with kvm1 in the legacy layout ` +
    `its ${withLegacy['kvm1']?.['raised'] ?? 0} PMIs were lost to the host.`,
);
