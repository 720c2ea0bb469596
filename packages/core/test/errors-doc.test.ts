import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ERRNO, USAGE_CODES, errnoOf, type ErrnoCode } from '../src/index.js';

const root = join(import.meta.dirname, '..', '..', '..');
const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
const usageRows = [...doc.matchAll(/^\| `(ERR_[A-Z_]+)` \|/gm)].map((m) => m[1] as string);
const rows = [...doc.matchAll(/^\| `([A-Z][A-Z0-9]+)` \| (\d+) \|/gm)].map((m) => ({ code: m[1] as ErrnoCode, errno: Number(m[2]) }));

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('docs/errors.md', () => {
  test('lists every errno code of the ERRNO table, plus EWOULDBLOCK, with the right numbers', () => {
    const documented = rows.map((r) => r.code).sort();
    expect(documented).toEqual([...Object.keys(ERRNO), 'EWOULDBLOCK'].sort());
    for (const r of rows) expect(r.errno, r.code).toBe(errnoOf(r.code));
  });

  test('every code thrown anywhere in the packages is documented', () => {
    const thrown = new Set<string>();
    for (const pkg of ['core', 'vmx', 'svm', 'kvm']) {
      for (const file of sources(join(root, 'packages', pkg, 'src'))) {
        for (const m of readFileSync(file, 'utf8').matchAll(/KernelError\(\s*'([A-Z][A-Z0-9]+)'/g)) thrown.add(m[1] as string);
      }
    }
    const documented = new Set(rows.map((r) => r.code as string));
    expect([...thrown].filter((c) => !documented.has(c))).toEqual([]);
    expect(thrown.size).toBeGreaterThan(10);
  });

  test('lists every UsageError code, and every code thrown in the packages is one of them', () => {
    expect([...usageRows].sort()).toEqual([...USAGE_CODES].sort());
    const thrown = new Set<string>();
    for (const pkg of ['core', 'vmx', 'svm', 'kvm']) {
      for (const file of sources(join(root, 'packages', pkg, 'src'))) {
        for (const m of readFileSync(file, 'utf8').matchAll(/UsageError\(\s*'([A-Z_]+)'/g)) thrown.add(m[1] as string);
      }
    }
    expect([...thrown].filter((c) => !usageRows.includes(c))).toEqual([]);
    expect(thrown.size).toBe(USAGE_CODES.length);
  });
});
