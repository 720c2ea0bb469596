import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/** Resolve workspace packages to their TypeScript sources (the `@vac/source` export condition). */
const conditions = ['@vac/source', 'import', 'module', 'node', 'default'];

export default defineConfig({
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
