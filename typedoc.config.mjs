// @ts-check
/**
 * The API site (`npx --yes pnpm@10.34.9 run docs`): the five packages, the guides (docs/*.md), warnings as errors.
 * Source links come from the root package.json's `repository` field (docs/typedoc/source-links.mjs).
 */
import { readFileSync } from 'node:fs';
import { sourceOptions } from './docs/typedoc/source-links.mjs';

const manifest = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));

/** @type {Partial<import('typedoc').TypeDocOptions>} */
const config = {
  name: 'vac',
  entryPointStrategy: 'packages',
  entryPoints: ['packages/*'],
  out: 'site',
  readme: 'README.md',
  projectDocuments: ['docs/*.md'],
  treatWarningsAsErrors: true,
  excludeInternal: true,
  validation: { notExported: true, invalidLink: true, notDocumented: true },
  // Each package's own typedoc.json adds its category order; these apply to all of them.
  packageOptions: sourceOptions(manifest, process.env),
  ...sourceOptions(manifest, process.env),
  plugin: ['./docs/typedoc/categories.mjs', './docs/typedoc/pictures.mjs'],
  markdownItOptions: { html: true, linkify: false },
  searchInDocuments: true,
  searchInComments: true,
};

export default config;
