// @ts-check
/**
 * ESLint (flat config) with typescript-eslint's type-aware recommended rules, on every TypeScript file of the
 * workspace; `npx --yes pnpm@10.34.9 lint` runs it and .ci/run requires zero findings.
 */
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', 'site/**', 'tarballs/**', '**/.gen/**', '**/.gen-*/**', 'coverage/**', 'artifacts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // Each file is checked with the tsconfig.json nearest to it; the root config files belong to none.
        projectService: { allowDefaultProject: ['*.config.ts', 'packages/bridge/tsup.config.ts', 'packages/fleet/tsup.config.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Left off: recommended rules the code does not pass yet, with their findings when this config was written
      // (turning them on means editing code, which this config must not force). Each is worth a pass of its own.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off', // 68 findings in 24 files: casts the checker finds redundant (`as unknown as Json`, `program.opts() as …`)
      '@typescript-eslint/no-unused-vars': 'off', // 51 findings in 30 files: unused imports and locals, mostly in bench/, tests and examples
      '@typescript-eslint/no-unsafe-argument': 'off', // 48 findings in 18 files: `any` passed on, mostly vitest's `expect.objectContaining(…)` in tests
      '@typescript-eslint/unbound-method': 'off', // 19 findings in 5 files: file operations read off `fops` before the call (core/src/host)
      '@typescript-eslint/no-unsafe-member-access': 'off', // 14 findings in 1 file: the routing entries of kvm/src/irqchip/routing.ts
      '@typescript-eslint/no-this-alias': 'off', // 5 findings in 5 files: `const self = this` for generator and callback bodies
    },
  },
  // Rules that are on everywhere except the few files that do not pass them yet (one to five findings each).
  {
    files: ["conformance/replay/compare.ts", "packages/bridge/src/cli/main.ts", "packages/kvm/test/reliability/fuzz.test.ts"],
    rules: { '@typescript-eslint/no-base-to-string': 'off' },
  },
  {
    files: ["conformance/replay/facts.ts"],
    rules: { '@typescript-eslint/no-unused-expressions': 'off' },
  },
  {
    files: ["examples/unchanged-vmm/main.ts"],
    rules: { 'prefer-const': 'off', 'require-yield': 'off' },
  },
  {
    files: ["packages/core/src/events.ts"],
    rules: { '@typescript-eslint/no-empty-object-type': 'off', '@typescript-eslint/no-redundant-type-constituents': 'off', 'prefer-const': 'off' },
  },
  {
    files: ["packages/core/src/host/faults.ts"],
    rules: { '@typescript-eslint/no-redundant-type-constituents': 'off' },
  },
  {
    files: ["packages/core/src/trace/svg.ts"],
    rules: { 'no-useless-assignment': 'off' },
  },
  {
    files: ["packages/core/test/host/events.test.ts"],
    rules: { 'prefer-const': 'off' },
  },
  {
    files: ["packages/core/test/host/host.property.test.ts"],
    rules: { '@typescript-eslint/only-throw-error': 'off' },
  },
  {
    files: ["packages/core/test/host/knobs.test.ts", "packages/core/test/trace/timeline.test.ts", "packages/kvm/test/conformance/vac.property.test.ts"],
    rules: { '@typescript-eslint/no-unsafe-assignment': 'off' },
  },
  {
    // Code generated from field names (StructCodec encoders, the register-file copies of the state ioctls).
    files: ["packages/kvm/src/abi/codec.ts", "packages/kvm/src/module/regfile-copy.ts"],
    rules: { '@typescript-eslint/no-implied-eval': 'off' },
  },
  {
    files: ["packages/kvm/src/guest/asm.ts"],
    rules: { '@typescript-eslint/no-namespace': 'off' },
  },
  {
    files: ["packages/kvm/src/module/caps.ts"],
    rules: { 'no-fallthrough': 'off' },
  },
  {
    files: ["packages/kvm/test/module/multi.test.ts"],
    rules: { '@typescript-eslint/no-non-null-asserted-optional-chain': 'off' },
  },
  {
    files: ["packages/kvm/test/reliability/support.ts"],
    rules: { 'preserve-caught-error': 'off' },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { parserOptions: { projectService: false }, globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
