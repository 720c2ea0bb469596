/**
 * The conformance figures: facts recorded and compared, how many agree, and how many each class of
 * divergence covers — for docs/fidelity.md (`pnpm conformance:figures`).
 *
 * A fact "agrees" when neither model vendor differs from the kernel anywhere in it. Some agree only because
 * the model refuses an ioctl it does not have with the errno the kernel gives a bad argument (EINVAL on
 * /dev/kvm and vCPU fds, ENOTTY on VM fds); those are counted apart, as they say nothing about the model.
 *
 * @module
 */
import type { Mismatch } from './compare.js';
import { DIVERGENCE_CLASSES, covers, type Divergence, type DivergenceClass } from './explain.js';
import type { Fact } from './golden.js';

/** The figures. */
export interface Figures {
  /** Facts recorded. */
  readonly facts: number;
  /** Fact comparisons (facts × model vendors). */
  readonly comparisons: number;
  /** Facts that agree on both vendors. */
  readonly agreeing: number;
  /** … of which agree only by the model refusing an ioctl it lacks. */
  readonly agreeingByRefusal: number;
  /** Facts that differ on some vendor. */
  readonly diverging: number;
  /**
   * Facts that differ only where the recording machine is not what the model models (its vendor module, its
   * configuration, its Linux version): the model answers as Linux 6.12 on VMX/SVM would, as far as known.
   */
  readonly machineOnly: number;
  /** Per class: diverging facts it covers (a fact may be in two classes) and entries. */
  readonly byClass: Readonly<Record<DivergenceClass, { readonly facts: number; readonly entries: number }>>;
  /** Per group (fact id prefix): facts and agreeing. */
  readonly byGroup: ReadonlyArray<{ readonly group: string; readonly facts: number; readonly agreeing: number; readonly machineOnly: number }>;
}

/** The ioctls the model lacks: those it refused as unknown where the kernel succeeded. */
export function lackingIoctls(mismatches: readonly Mismatch[]): Set<string> {
  const out = new Set<string>();
  for (const m of mismatches) {
    if (m.path.endsWith('.errno') && m.expected === '(none)' && (m.actual === 'EINVAL' || m.actual === 'ENOTTY')) out.add(m.step);
  }
  return out;
}

function groupOf(id: string): string {
  return id.split('.')[0] as string;
}

/** Compute the figures of a replay. */
export function computeFigures(facts: readonly Fact[], mismatches: readonly Mismatch[], list: readonly Divergence[], vendors: number): Figures {
  const diverging = new Set(mismatches.map((m) => m.fact));
  const lacking = lackingIoctls(mismatches);
  let agreeing = 0;
  let byRefusal = 0;
  const machineClasses: readonly DivergenceClass[] = ['emulator-vendor', 'host-config', 'linux-version'];
  const modelSide = new Set(mismatches.filter((m) => list.some((d) => !machineClasses.includes(d.class) && covers(d, m)) || !list.some((d) => covers(d, m))).map((m) => m.fact));
  let machineOnly = 0;
  const groups = new Map<string, { facts: number; agreeing: number; machineOnly: number }>();
  for (const f of facts) {
    const g = groups.get(groupOf(f.id)) ?? { facts: 0, agreeing: 0, machineOnly: 0 };
    g.facts++;
    groups.set(groupOf(f.id), g);
    if (diverging.has(f.id)) {
      if (!modelSide.has(f.id)) {
        machineOnly++;
        g.machineOnly++;
      }
      continue;
    }
    agreeing++;
    g.agreeing++;
    if (f.steps.some((s) => s.op === 'ioctl' && lacking.has(s.name) && s.ret === -1 && (s.errno === 'EINVAL' || s.errno === 'ENOTTY'))) byRefusal++;
  }
  const byClass = Object.fromEntries(
    DIVERGENCE_CLASSES.map((c) => {
      const entries = list.filter((d) => d.class === c);
      const covered = new Set(mismatches.filter((m) => entries.some((d) => covers(d, m))).map((m) => m.fact));
      return [c, { facts: covered.size, entries: entries.length }];
    }),
  ) as Record<DivergenceClass, { facts: number; entries: number }>;
  return {
    facts: facts.length,
    comparisons: facts.length * vendors,
    agreeing,
    agreeingByRefusal: byRefusal,
    diverging: diverging.size,
    machineOnly,
    byClass,
    byGroup: [...groups].map(([group, g]) => ({ group, ...g })),
  };
}

/** The figures as the Markdown docs/fidelity.md shows. */
export function figuresMarkdown(f: Figures, machine: string): string {
  const rows = DIVERGENCE_CLASSES.map((c) => `| \`${c}\` | ${f.byClass[c].entries} | ${f.byClass[c].facts} |`);
  const groups = f.byGroup.map((g) => `| ${g.group} | ${g.facts} | ${g.agreeing} | ${g.machineOnly} |`);
  return [
    `Recorded on ${machine}. **${f.facts} facts**, each replayed on both model vendors (${f.comparisons} comparisons): **${f.agreeing} agree** on both`,
    `(${f.agreeingByRefusal} of them only because the model refuses an ioctl it lacks with the errno the kernel gives that bad input),`,
    `**${f.diverging} differ**, every difference covered by \`conformance/divergences.ts\`. Of those, ${f.machineOnly} differ only where the`,
    'recording machine is not what the model models (classes `emulator-vendor`, `host-config`, `linux-version`): there the model',
    'answers as Linux 6.12 on VMX/SVM does, as far as known. By class:',
    '',
    '| class | entries | facts it covers |',
    '|---|---|---|',
    ...rows,
    '',
    'A fact can be covered by entries of two classes. By group:',
    '',
    '| group | facts | agree | differ only by the machine |',
    '|---|---|---|---|',
    ...groups,
  ].join('\n');
}
