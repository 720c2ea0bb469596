/**
 * fast-check arbitraries of the model's commands, the seeded runner shared by the CI run and the soak, and
 * the replay plumbing (REPLAY_SEED / REPLAY_PATH).
 *
 * @module
 */
import { turnEventLoopIfDue } from '@vac/test-support';
import fc from 'fast-check';
import { MEM_VARIANTS, NR_CPUS, PARAM_SETS, SITES, World, newStats, type Cmd, type Stats, type Vendor } from './model.js';
import { OBSERVED_EVENTS, OBSERVER_ACTS } from './observer.js';

const pick = fc.nat(63);
const cpu = fc.integer({ min: 0, max: NR_CPUS - 1 });
const nonBoot = fc.integer({ min: 1, max: NR_CPUS - 1 });
const mod = fc.integer({ min: 0, max: 3 });
const kvmMod = fc.integer({ min: 1, max: 3 });

const c = <K extends Cmd['k']>(k: K) => fc.constant(k);

/** One command, weighted so that sequences build up state (modules, processes, VMs, vCPUs) and use it. */
export const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: c('load'), mod: kvmMod, modprobe: fc.boolean(), params: fc.constantFrom(...PARAM_SETS), actor: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(7) }) }) },
  { weight: 1, arbitrary: fc.record({ k: c('load'), mod: fc.constant(0), modprobe: fc.boolean(), params: fc.constantFrom('default' as const, 'unknown' as const), actor: fc.constant(0) }) },
  { weight: 2, arbitrary: fc.record({ k: c('rmmod'), mod, actor: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(7) }) }) },
  { weight: 4, arbitrary: fc.record({ k: c('spawn'), kind: fc.constantFrom('kvm' as const, 'kvm' as const, 'kvm' as const, 'nokvm' as const, 'root' as const), cpu }) },
  { weight: 2, arbitrary: fc.record({ k: c('kill'), p: pick }) },
  { weight: 1, arbitrary: fc.record({ k: c('setcpu'), p: pick, cpu }) },
  { weight: 8, arbitrary: fc.record({ k: c('open'), p: pick, dev: fc.oneof({ weight: 8, arbitrary: fc.nat(3) }, { weight: 1, arbitrary: fc.constant(4) }) }) },
  { weight: 4, arbitrary: fc.record({ k: c('close'), p: pick, f: pick, bogus: fc.constant(false) }) },
  { weight: 1, arbitrary: fc.record({ k: c('close'), p: pick, f: pick, bogus: fc.constant(true) }) },
  { weight: 8, arbitrary: fc.record({ k: c('createVm'), p: pick, f: pick }) },
  { weight: 10, arbitrary: fc.record({ k: c('createVcpu'), p: pick, f: pick, id: fc.constantFrom('next' as const, 'next' as const, 'next' as const, 'next' as const, 'dup' as const, 'big' as const, 'neg' as const, 'max' as const) }) },
  { weight: 8, arbitrary: fc.record({ k: c('mem'), p: pick, f: pick, v: fc.oneof({ weight: 6, arbitrary: fc.constant('load' as const) }, { weight: 3, arbitrary: fc.constantFrom(...MEM_VARIANTS) }), prog: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ k: c('irqchip'), p: pick, f: pick }) },
  { weight: 1, arbitrary: fc.record({ k: c('sev'), p: pick, f: pick, es: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: c('mmap'), p: pick, f: pick }) },
  { weight: 1, arbitrary: fc.record({ k: c('munmap'), p: pick, m: pick }) },
  { weight: 16, arbitrary: fc.record({ k: c('run'), p: pick, f: pick }) },
  { weight: 2, arbitrary: fc.record({ k: c('reset'), p: pick, f: pick }) },
  { weight: 8, arbitrary: fc.record({ k: c('thread'), p: pick, f: pick, pin: fc.integer({ min: -2, max: NR_CPUS - 1 }) }) },
  { weight: 8, arbitrary: fc.record({ k: c('tick'), n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: c('signal'), t: pick }) },
  { weight: 2, arbitrary: fc.record({ k: c('cpuDown'), cpu: fc.oneof({ weight: 6, arbitrary: nonBoot }, { weight: 1, arbitrary: fc.constant(0) }) }) },
  { weight: 2, arbitrary: fc.record({ k: c('cpuUp'), cpu: nonBoot }) },
  { weight: 1, arbitrary: fc.record({ k: c('suspend') }) },
  { weight: 1, arbitrary: fc.record({ k: c('resume') }) },
  { weight: 4, arbitrary: fc.record({ k: c('pmi'), cpu }) },
  { weight: 1, arbitrary: fc.record({ k: c('nmi'), cpu }) },
  { weight: 1, arbitrary: fc.record({ k: c('piWakeup'), cpu }) },
  { weight: 2, arbitrary: fc.record({ k: c('query'), p: pick, f: pick, q: fc.nat(7) }) },
  { weight: 3, arbitrary: fc.record({ k: c('bad'), p: pick, f: pick, b: fc.nat(63) }) },
  { weight: 1, arbitrary: fc.record({ k: c('symlink'), target: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ k: c('unlink') }) },
  { weight: 1, arbitrary: fc.record({ k: c('enableFault'), cpu, mode: fc.constantFrom('once' as const, 'once' as const, 'always' as const, 'off' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: c('foreign'), cpu, on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: c('failNth'), site: fc.constantFrom(...SITES), n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: c('failInit'), mod, step: fc.nat(9) }) },
  { weight: 1, arbitrary: fc.record({ k: c('clearFaults') }) },
  { weight: 2, arbitrary: fc.record({ k: c('observe'), event: fc.nat(OBSERVED_EVENTS.length - 1), act: fc.nat(OBSERVER_ACTS.length - 1) }) },
);

/** A prefix that builds a typical state quickly: two modules, two VMM processes, VMs with vCPUs. */
export const PREFIX: readonly Cmd[] = [
  { k: 'load', mod: 1, modprobe: true, params: 'default', actor: 0 },
  { k: 'load', mod: 2, modprobe: true, params: 'noEval', actor: 0 },
  { k: 'spawn', kind: 'kvm', cpu: 0 },
  { k: 'spawn', kind: 'kvm', cpu: 1 },
  { k: 'open', p: 0, dev: 0 },
  { k: 'open', p: 1, dev: 1 },
  { k: 'createVm', p: 0, f: 0 },
  { k: 'createVm', p: 1, f: 0 },
  { k: 'mem', p: 0, f: 0, v: 'load', prog: 0 },
  { k: 'mem', p: 1, f: 0, v: 'load', prog: 3 },
  { k: 'createVcpu', p: 0, f: 0, id: 'next' },
  { k: 'createVcpu', p: 0, f: 0, id: 'next' },
  { k: 'createVcpu', p: 1, f: 0, id: 'next' },
];

/** A generated sequence. */
export interface Sequence {
  readonly vendor: Vendor;
  /** Start with {@link PREFIX}. */
  readonly prefix: boolean;
  readonly cmds: Cmd[];
  /** A reboot or a crash (terminal) inserted at `at` (modulo the length), or none. */
  readonly special: 'none' | 'reboot' | 'crash';
  readonly at: number;
}

/** A sequence of up to `maxCommands` commands (lengths spread over the whole range). */
export const sequenceArb = (maxCommands: number): fc.Arbitrary<Sequence> =>
  fc.record({
    vendor: fc.constantFrom<Vendor>('intel', 'amd'),
    prefix: fc.constantFrom(true, true, true, false),
    cmds: fc.array(cmdArb, { minLength: 1, maxLength: maxCommands, size: 'max' }),
    special: fc.constantFrom<Sequence['special']>('none', 'none', 'none', 'none', 'none', 'none', 'none', 'reboot', 'crash', 'crash'),
    at: fc.nat(),
  });

/** The commands of a sequence, in order. */
export function commandsOf(s: Sequence): Cmd[] {
  const cmds = [...(s.prefix ? PREFIX : []), ...s.cmds];
  if (s.special !== 'none') cmds.splice(s.at % (cmds.length + 1), 0, { k: s.special });
  return cmds;
}

/** Run one sequence: every command on the host and the model, then tear down and check invariant 6. */
export function runSequence(vendor: Vendor, cmds: readonly Cmd[], stats: Stats): void {
  const w = new World(vendor, stats);
  stats.sequences++;
  const firedBefore = w.host.faults.fired.length;
  try {
    for (const cmd of cmds) {
      w.exec(cmd);
      if (w.crashed) break;
    }
    w.finish();
  } finally {
    stats.faultsFired += w.host.faults.fired.length - firedBefore;
  }
}

/** Settings from the environment. */
export interface RunSettings {
  readonly runs: number;
  readonly seed: number;
  readonly path: string | undefined;
  readonly maxCommands: number;
}

/**
 * Run `runs` random sequences with fast-check; on failure, throw with the seed, path and replay command. The property
 * is asynchronous only to turn the worker's event loop about once a second (`turnEventLoopIfDue`): the sequences are
 * the seed's, whatever the load.
 */
export async function runModel(settings: RunSettings, stats: Stats = newStats()): Promise<Stats> {
  const prop = fc.asyncProperty(sequenceArb(settings.maxCommands), async (s) => {
    runSequence(s.vendor, commandsOf(s), stats);
    await turnEventLoopIfDue();
  });
  const params: fc.Parameters<[Sequence]> = {
    seed: settings.seed,
    numRuns: settings.runs,
    ...(settings.path === undefined ? {} : { path: settings.path, endOnFailure: true }),
  };
  const out = await fc.check(prop, params);
  if (out.failed) {
    const replay = `REPLAY_SEED=${out.seed} REPLAY_PATH=${out.counterexamplePath ?? ''} npx vitest run --project kvm test/reliability`;
    const ce = out.counterexample?.[0];
    const list = ce === undefined ? [] : commandsOf(ce);
    const cmds = ce === undefined ? '' : `\nvendor ${ce.vendor}, ${list.length} commands:\n${list.map((x) => JSON.stringify(x)).join('\n')}`;
    const why = out.errorInstance instanceof Error ? out.errorInstance.message : String(out.errorInstance);
    throw new Error(`model run failed (seed ${out.seed}, path ${out.counterexamplePath ?? '?'})\nreplay: ${replay}\n${why}${cmds}`);
  }
  return stats;
}

/** Read the run settings: CI defaults, SOAK_RUNS / SOAK_SEED for a soak, REPLAY_SEED / REPLAY_PATH for a replay. */
export function settingsFromEnv(ciRuns: number, ciSeed: number, maxCommands: number): RunSettings & { readonly mode: 'ci' | 'soak' | 'replay' } {
  const env = process.env;
  if (env['REPLAY_SEED'] !== undefined && env['REPLAY_SEED'] !== '' && (env['REPLAY_TEST'] ?? 'model') === 'model') {
    return { mode: 'replay', runs: 1, seed: Number(env['REPLAY_SEED']), path: env['REPLAY_PATH'], maxCommands };
  }
  if (env['SOAK_RUNS'] !== undefined && env['SOAK_RUNS'] !== '') {
    const seed = env['SOAK_SEED'] !== undefined && env['SOAK_SEED'] !== '' ? Number(env['SOAK_SEED']) : Date.now() % 2 ** 31;
    return { mode: 'soak', runs: Number(env['SOAK_RUNS']), seed, path: undefined, maxCommands };
  }
  return { mode: 'ci', runs: ciRuns, seed: ciSeed, path: undefined, maxCommands };
}
