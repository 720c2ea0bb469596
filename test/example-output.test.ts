/**
 * One output style for the examples: aligned tables from `@vac/example-support` (a header on every column, no
 * console.table with its `(index)` column and quoted strings); and the examples whose output is pinned byte for byte
 * (test/example-output/<name>.txt: the model is deterministic, so any change to what they print is seen here).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runProcess, type ProcessResult } from '@vac/test-support';
import { describe, expect, test } from 'vitest';
import { formatTable } from '../examples/support/index.js';

const root = join(import.meta.dirname, '..');
const examples = readdirSync(join(root, 'examples'), { withFileTypes: true })
  .filter((e) => e.isDirectory() && e.name !== 'support')
  .map((e) => e.name);

describe('formatTable', () => {
  test('aligns columns under their headers: strings left, numbers right, no quotes, no index column', () => {
    expect(formatTable([{ Module: 'kvm1', Refs: 6 }, { Module: 'vac', Refs: 12 }])).toBe(
      ['Module  Refs', '------  ----', 'kvm1       6', 'vac       12'].join('\n'),
    );
  });
  test('takes the columns of every row, in first-seen order; a missing cell is empty', () => {
    expect(formatTable([{ A: 'x' }, { A: 'y', B: 'z' }])).toBe(['A  B', '-  -', 'x', 'y  z'].join('\n'));
  });
  test('refuses a column without a header', () => {
    expect(() => formatTable([{ A: 1, '': 'ok' }])).toThrow('every column needs a header');
  });
  test('prints nothing for no rows', () => {
    expect(formatTable([])).toBe('');
  });
});

/**
 * Run an example from its sources, as `pnpm examples` does; its stdout, stderr and exit status. Not spawnSync: the
 * worker's event loop turns while the example runs (vitest's worker RPC times out after 60 s without).
 */
function runExample(name: string): Promise<ProcessResult> {
  return runProcess(process.execPath, [join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), '--conditions=@vac/source', 'main.ts'], {
    cwd: join(root, 'examples', name),
    env: { ...process.env, NODE_OPTIONS: '' },
  });
}

/** Every table of an example's output has a header over each column of its rule, and no console.table marks. */
function expectTablesWithHeaders(name: string, stdout: string): void {
  expect(stdout).not.toMatch(/\(index\)|[│┌└]/);
  const lines = stdout.split('\n');
  const rules = lines.flatMap((l, i) => (/^-+( +-+)*$/.test(l) ? [i] : []));
  expect(rules.length).toBeGreaterThan(0);
  for (const i of rules) {
    const header = lines[i - 1] ?? '';
    const cols = lines[i]!.split(/ {2}/);
    // Each column's header starts where its rule does, and is not blank.
    let at = 0;
    for (const c of cols) {
      expect(header.slice(at, at + c.length).trim(), `${name}: header over the rule at line ${i}`).not.toBe('');
      at += c.length + 2;
    }
  }
}

describe('pinned output', () => {
  test.each(['mitigations'])('%s prints exactly its pinned output (test/example-output/<name>.txt), in the one table style', async (name) => {
    const r = await runExample(name);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(readFileSync(join(root, 'test', 'example-output', `${name}.txt`), 'utf8'));
    expectTablesWithHeaders(name, r.stdout);
  }, 120_000);
});

describe('the examples', () => {
  test.each(examples)('%s prints tables only through @vac/example-support', (name) => {
    const src = readFileSync(join(root, 'examples', name, 'main.ts'), 'utf8');
    expect(src).not.toContain('console.table');
    expect(src).not.toMatch(/(const|function) table\b/);
    if (/\btable\(/.test(src)) expect(src).toMatch(/^import \{[^}]*\btable\b[^}]*\} from '@vac\/example-support';$/m);
    expect(src).not.toMatch(/^\s*'': /m);
  });

  test.each(['quickstart', 'unchanged-vmm', 'pmi-routing'])('%s: every table has a header and a rule, no console.table marks', async (name) => {
    const r = await runExample(name);
    expect(r.status, r.stderr).toBe(0);
    expectTablesWithHeaders(name, r.stdout);
  }, 120_000);
});
