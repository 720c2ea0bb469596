#!/usr/bin/env node
// The `vac` command. From an npm install it runs the built dist/; in the repository (no dist/) it runs the
// TypeScript sources through tsx, with the workspace's source condition.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/cli/main.js', import.meta.url);
/** Whether a dependency's built entry exists (a tree where only some packages were built runs the sources). */
const built = (name) => {
  try {
    return existsSync(fileURLToPath(import.meta.resolve(name)));
  } catch {
    return false;
  }
};
if (existsSync(fileURLToPath(dist)) && ['@vac/core', '@vac/kvm', '@vac/vmx', '@vac/svm', 'commander'].every(built)) {
  const { main } = await import(dist.href);
  process.exitCode = await main(process.argv.slice(2));
} else {
  const src = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
  const r = spawnSync(process.execPath, ['--conditions=@vac/source', '--import', import.meta.resolve('tsx'), src, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exitCode = r.status ?? 1;
}
