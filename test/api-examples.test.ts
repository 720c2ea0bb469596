/**
 * The `@example`s of the API reference run: every ```ts block of an `@example` tag in the packages' sources is
 * written to a module here and imported (a throw fails the test), and the main entry points have one.
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { runProcess } from '@vac/test-support';
import { afterAll, describe, expect, test, vi } from 'vitest';

const root = join(import.meta.dirname, '..');
const gen = join(import.meta.dirname, '.gen-examples');

const sources = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));

interface Example {
  readonly where: string;
  readonly declaration: string;
  readonly code: string;
}
const examples: Example[] = [];
for (const pkg of ['core', 'vmx', 'svm', 'kvm', 'bridge', 'fleet']) {
  for (const file of sources(join(root, 'packages', pkg, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const c of text.matchAll(/\/\*\*([\s\S]*?)\*\/\s*\n\s*([^\n]*)/g)) {
      const body = (c[1] ?? '').split('\n').map((l) => l.replace(/^\s*\* ?/, '')).join('\n');
      // The self-contained ones (with their imports); older fragments that assume a `host` are not run.
      for (const m of body.matchAll(/@example\n```ts\n(import [\s\S]*?)\n```/g)) {
        examples.push({ where: relative(root, file), declaration: (c[2] ?? '').trim(), code: m[1] ?? '' });
      }
    }
  }
}

mkdirSync(gen, { recursive: true });
examples.forEach((e, i) => writeFileSync(join(gen, `example_${i}.ts`), e.code));
afterAll(() => rmSync(gen, { recursive: true, force: true }));

describe('the API reference examples', () => {
  test.each([
    ['packages/core/src/host/host.ts', 'export function createHost('],
    ['packages/core/src/host/host.ts', 'modprobe<'],
    ['packages/core/src/host/process.ts', 'ioctl(fd'],
    ['packages/kvm/src/module/factory.ts', 'export function kvm('],
    ['packages/vmx/src/model.ts', 'export function intel('],
    ['packages/svm/src/model.ts', 'export function amd('],
    ['packages/kvm/src/vmm.ts', 'export function saveVm('],
    ['packages/kvm/src/vmm.ts', 'export function restoreVm('],
    ['packages/bridge/src/daemon.ts', 'export async function startDaemon('],
    ['packages/core/src/host/host.ts', 'spawn(opts'],
    ['packages/core/src/trace/recorder.ts', 'export function recordEvents('],
    ['packages/core/src/trace/svg.ts', 'export function renderTimelineSvg('],
    ['packages/core/src/trace/chrome.ts', 'export function toChromeTrace('],
    ['packages/kvm/src/vmm.ts', 'export function mapKvmRun('],
    ['packages/kvm/src/vmm.ts', 'export function createRealModeVcpu('],
    ['packages/kvm/src/vmm.ts', 'export function createRealModeVm('],
    ['packages/kvm/src/vmm.ts', 'export function releaseRealModeVm('],
    ['packages/kvm/src/vmm-vcpu.ts', 'export function msrIndexList('],
    ['packages/kvm/src/vmm-vcpu.ts', 'export function saveVcpu('],
    ['packages/kvm/src/vmm-vcpu.ts', 'export function restoreVcpu('],
    ['packages/kvm/src/vmm-vcpu.ts', 'export function parseSavedVcpu('],
    ['packages/kvm/src/vmm-vcpu.ts', 'export function savedVcpuOf('],
    ['packages/kvm/src/vmm.ts', 'export function completePendingIo('],
    ['packages/kvm/src/vmm.ts', 'export function moveRealModeVm('],
  ])('%s: %s has an @example', (where, declaration) => {
    expect(examples.some((e) => e.where === where && e.declaration.startsWith(declaration))).toBe(true);
  });

  test.each(examples.map((e, i) => [`${e.where}: ${e.declaration.slice(0, 50)}`, i, e] as const))('%s runs', async (_name, i, e) => {
    const path = join(gen, `example_${i}.ts`);
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.map(String).join(' ')));
    try {
      await import(path);
    } finally {
      log.mockRestore();
    }
    expect(lines.length).toBeGreaterThan(0);
  });

  test('they type-check (strict, as the packages are compiled)', async () => {
    writeFileSync(join(gen, 'tsconfig.json'), JSON.stringify({ extends: '../tsconfig.json', include: ['*.ts'] }));
    // Not spawnSync: the worker's event loop turns while tsc runs (vitest's worker RPC times out after 60 s without).
    const r = await runProcess(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', gen]);
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
    // tsc over the packages' sources took 103–110 s on the shared 2-core machine at load ~30 (past the 60 s default).
  }, 300_000);
});
