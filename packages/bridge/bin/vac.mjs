#!/usr/bin/env node
// The `vac` command. In the vac repository it runs the TypeScript sources through tsx (with the workspace's
// source condition), so it is always the code the tests test; from an npm install it runs the built dist/.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const inRepository = existsSync(fileURLToPath(new URL('../../../pnpm-workspace.yaml', import.meta.url)));
if (!inRepository) {
  const { main } = await import(new URL('../dist/cli/main.js', import.meta.url).href);
  process.exitCode = await main(process.argv.slice(2));
} else {
  const src = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
  const r = spawnSync(process.execPath, ['--conditions=@vac/source', '--import', import.meta.resolve('tsx'), src, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
}
