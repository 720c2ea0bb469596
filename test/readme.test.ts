/**
 * The README as a newcomer follows it: the Quick start's two commands, the Usage snippet saved to a file in the
 * clone and run with the command the README gives, and the "Use it in your own project" steps.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runProcess } from '@vac/test-support';
import { describe, expect, test } from 'vitest';

const root = join(import.meta.dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { packageManager: string; scripts: Record<string, string> };
const pnpm = `npx --yes ${manifest.packageManager}`;

/** The text of a `## heading` section, up to the next `## `. */
const section = (heading: string): string => {
  const start = readme.indexOf(`\n## ${heading}\n`);
  expect(start, heading).toBeGreaterThan(0);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
};
const blocks = (text: string, lang: string): string[] => [...text.matchAll(new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\``, 'gm'))].map((m) => m[1] ?? '');
/** The commands of a shell block, comments dropped. */
const commands = (block: string): string[] => block.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l !== '');

describe('the README', () => {
  test('Quick start: exactly two commands, each `npx --yes` of the pinned pnpm (no confirmation prompt) on scripts that exist', () => {
    const sh = blocks(section('Quick start'), 'sh');
    expect(sh).toHaveLength(1);
    const lines = commands(sh[0]!);
    expect(lines).toEqual([`${pnpm} install && ${pnpm} demo`, `${pnpm} install && ${pnpm} test`]);
    expect(manifest.scripts).toHaveProperty('demo');
    expect(manifest.scripts).toHaveProperty('test');
  });

  test('every npx of pnpm, in the README and the guides, says --yes and the pinned version', () => {
    const docs = ['README.md', ...['getting-started', 'bridge', 'performance', 'reliability'].map((d) => `docs/${d}.md`)];
    for (const file of docs) {
      const text = readFileSync(join(root, file), 'utf8');
      for (const m of text.matchAll(/npx [^\n`]*?pnpm\S*/g)) expect(m[0], file).toBe(pnpm);
    }
  });

  test('the Usage snippet, saved in the clone and run with the command the README gives, prints what it did', async () => {
    const usage = section('Usage');
    const [snippet] = blocks(usage, 'ts');
    const run = commands(blocks(usage, 'sh')[0] ?? '');
    expect(run).toEqual([`${pnpm} exec tsx --conditions=@vac/source try.ts`]);
    // `pnpm exec tsx` is the workspace's own tsx; a file name of our own, so a user's try.ts is left alone.
    const file = `.readme-usage-${process.pid}.ts`;
    writeFileSync(join(root, file), snippet!);
    try {
      const r = await runProcess(process.execPath, [join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), '--conditions=@vac/source', file], {
        cwd: root,
        env: { ...process.env, NODE_OPTIONS: '' },
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(
        [
          'a VM with one vCPU on kvm1 through /dev/kvm; lsmod: kvm1 kvm0 vac',
          'rmmod kvm1 while the VM lives: EWOULDBLOCK',
          'after the VMM exits, rmmod kvm1 works; lsmod: kvm0 vac',
          '',
        ].join('\n'),
      );
    } finally {
      rmSync(join(root, file), { force: true });
    }
  });

  test('the Usage snippet is plain JavaScript too (the README runs it as try.mjs in your own project)', () => {
    const [snippet] = blocks(section('Usage'), 'ts');
    // No type annotations, casts, non-null assertions or type imports: what `node try.mjs` would choke on.
    expect(snippet).not.toMatch(/\bas [A-Z]|!\.|!\)|: (string|number|boolean|unknown)\b|\bimport type\b|<[A-Z]\w*>\(/);
    expect(readme).toContain('save it as\n`try.mjs` and run `node try.mjs`');
  });

  test('"Use it in your own project": three commands, on a script that exists, and CI runs them (.ci/check-tarballs)', () => {
    const sh = blocks(section('Use it in your own project'), 'sh');
    expect(sh).toHaveLength(1);
    const lines = commands(sh[0]!);
    expect(lines).toEqual([`${pnpm} install && ${pnpm} tarballs`, 'cd /path/to/your-project && npm install /path/to/vac/tarballs/*.tgz', 'node try.mjs']);
    expect(manifest.scripts.tarballs).toContain('pack --pack-destination "$PWD/tarballs"');
    const ci = readFileSync(join(root, '.ci', 'run'), 'utf8');
    expect(ci).toMatch(/^\.ci\/check-tarballs\b/m);
    const check = readFileSync(join(root, '.ci', 'check-tarballs'), 'utf8');
    expect(check).toContain('tarballs/*.tgz');
    expect(check).toContain('node try.mjs');
  });
});
