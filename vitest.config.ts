import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { COMPILED, compileSources, nativeSources } from './test/native-sources.js';

/** Resolve workspace packages to their TypeScript sources (the `@vac/source` export condition). */
const conditions = ['@vac/source', 'import', 'module', 'node', 'default'];

/**
 * Whether this vitest process watches (`vitest`, `vitest watch`, `--watch`) rather than running once (`vitest run`),
 * decided from the command line as vitest decides it (a bare `vitest` watches on a terminal outside CI).
 */
function watching(): boolean {
  const args = process.argv.slice(2);
  if (args.includes('--watch') || args.includes('-w') || args[0] === 'watch' || args[0] === 'dev') return true;
  if (args[0] === 'run' || args.includes('--run')) return false;
  return process.env['CI'] === undefined && process.stdin.isTTY;
}

/**
 * Run once (`vitest run`): the model's sources compiled to plain ESM that Node loads itself, not through vite-node,
 * whose module wrapper made the guest interpreter 6× slower (test/native-sources.ts). The tests, their helpers and
 * test-support still go through vite-node (vi.mock, vi.spyOn and the like act on them as before). Watch mode keeps
 * vite-node for the sources too: it reruns the tests that import a changed file by vite's module graph, which holds
 * only the modules vite-node loaded. `VAC_TEST_VITE_NODE=1` keeps vite-node in a `vitest run` too: slower, but a
 * stack trace thrown inside the model then names the `.ts` line instead of the compiled copy's.
 */
const viteNode = watching() || process.env['VAC_TEST_VITE_NODE'] === '1';
const compiled = viteNode ? undefined : await compileSources(fileURLToPath(new URL('.', import.meta.url)));

export default defineConfig({
  plugins: compiled === undefined ? [] : [nativeSources(compiled)],
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['@vac/source'] } },
  test: {
    // No test may depend on wall-clock speed: on a loaded 2-core machine a property test that takes 2 s alone takes
    // 6 s next to three other projects, so the per-test limit is generous (suites that need more say so).
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One test worker per CPU. Vitest's default leaves one CPU to itself (one worker on a 2-core machine), but its
    // main process is idle while the workers run, so the suite took ~290 s on the 2-core CI machine with one worker.
    maxWorkers: availableParallelism(),
    // A turn of each test worker's event loop after every test (test/event-loop-turn.ts): without it a file of
    // synchronous tests that ran past 60 s on a loaded machine failed with vitest's "Timeout calling onTaskUpdate".
    setupFiles: [fileURLToPath(new URL('test/event-loop-turn.ts', import.meta.url))],
    ...(compiled !== undefined && { server: { deps: { external: [COMPILED] } } }),
    projects: [
      ...['core', 'vmx', 'svm', 'kvm', 'bridge', 'fleet'].map((name) => ({
        extends: true,
        test: { name, root: `packages/${name}`, include: ['test/**/*.test.ts'] },
      })),
      // The model against facts recorded from a real /dev/kvm (conformance/README.md).
      { extends: true, test: { name: 'conformance', root: 'conformance', include: ['test/**/*.test.ts'] } },
      // The repository as users meet it: the README's commands and snippets, the packages' metadata and READMEs.
      { extends: true, test: { name: 'repo', root: 'test', include: ['**/*.test.ts'] } },
    ],
  },
});
