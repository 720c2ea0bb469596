// @ts-check
/**
 * The API site (`npx --yes pnpm@10.34.9 run docs`): the five packages, the guides (docs/*.md), warnings as errors.
 * Source links: the root package.json's `repository`, else VAC_REPOSITORY_URL, else the CI's repository, else the
 * clone's `origin` remote; none without any (docs/typedoc/source-links.mjs).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { sourceOptions } from './docs/typedoc/source-links.mjs';

const manifest = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));

/** The clone's `origin` remote, if it has one. */
function originUrl() {
  try {
    return execFileSync('git', ['config', '--get', 'remote.origin.url'], { cwd: new URL('.', import.meta.url), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || undefined;
  } catch {
    return undefined;
  }
}
const sources = sourceOptions(manifest, process.env, originUrl());

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
  packageOptions: sources,
  ...sources,
  plugin: ['./docs/typedoc/categories.mjs', './docs/typedoc/pictures.mjs'],
  markdownItOptions: { html: true, linkify: false },
  searchInDocuments: true,
  searchInComments: true,
};

export default config;
