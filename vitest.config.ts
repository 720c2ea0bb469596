import { defineConfig } from 'vitest/config';

/** Resolve workspace packages to their TypeScript sources (the `@vac/source` export condition). */
const conditions = ['@vac/source', 'import', 'module', 'node', 'default'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['@vac/source'] } },
  test: {
    projects: [
      ...['core', 'vmx', 'svm', 'kvm', 'bridge'].map((name) => ({
        extends: true,
        test: { name, root: `packages/${name}`, include: ['test/**/*.test.ts'] },
      })),
      // The model against facts recorded from a real /dev/kvm (conformance/README.md).
      { extends: true, test: { name: 'conformance', root: 'conformance', include: ['test/**/*.test.ts'] } },
    ],
  },
});
