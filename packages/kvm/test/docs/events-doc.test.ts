import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';

const root = join(import.meta.dirname, '..', '..', '..', '..');

test('docs/events.md lists exactly the declared events', () => {
  const declared = new Set<string>();
  for (const f of ['packages/core/src/events.ts', 'packages/kvm/src/module/events.ts', 'packages/fleet/src/events.ts']) {
    for (const m of readFileSync(join(root, f), 'utf8').matchAll(/^\s+'?([a-z]+(?::[a-z-]+)?)'?: \(e: EventStamp/gm)) declared.add(m[1] as string);
  }
  const documented = new Set([...readFileSync(join(root, 'docs/events.md'), 'utf8').matchAll(/^\| `([a-z:-]+)` \|/gm)].map((m) => m[1] as string));
  expect([...documented].sort()).toEqual([...declared].sort());
  expect(declared.size).toBeGreaterThan(20);
});
