/**
 * Every ```ts block of the guides and the README is executed here, so the docs cannot rot: each block is
 * written to a module next to this test and imported (vitest compiles it; a throw fails the test).
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';

const root = join(import.meta.dirname, '..', '..', '..', '..');
const gen = join(import.meta.dirname, '.gen');
const files = [join(root, 'README.md'), ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join(root, 'docs', f))];

interface Block {
  readonly file: string;
  readonly index: number;
  readonly code: string;
}

const blocks: Block[] = [];
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  let i = 0;
  for (const m of text.matchAll(/^```ts\n([\s\S]*?)^```/gm)) blocks.push({ file: file.slice(root.length + 1), index: i++, code: m[1] ?? '' });
}

mkdirSync(gen, { recursive: true });
afterAll(() => rmSync(gen, { recursive: true, force: true }));

describe('code blocks in the docs run', () => {
  test('there are blocks to run', () => {
    expect(blocks.length).toBeGreaterThan(3);
  });
  test.each(blocks.map((b) => [`${b.file} #${b.index}`, b] as const))('%s', async (_name, b) => {
    const path = join(gen, `${b.file.replace(/[^A-Za-z0-9]/g, '_')}_${b.index}.ts`);
    writeFileSync(path, b.code);
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    try {
      await import(path);
    } finally {
      log.mockRestore();
    }
  });
});
