// @ts-check
/**
 * Where the API site's "Defined in" links point: the file and line in the repository the site is built from, at
 * that commit (TypeDoc fills `{gitRevision}` from `git rev-parse HEAD`; `VAC_DOCS_REVISION` overrides it, for a
 * site built from a tarball). The repository is the first of:
 *
 * 1. the root package.json's `repository` field (once the project names its home);
 * 2. `VAC_REPOSITORY_URL` (set by whoever builds the site);
 * 3. what the CI says it is building: GitHub Actions' `GITHUB_SERVER_URL`/`GITHUB_REPOSITORY`, GitLab's
 *    `CI_PROJECT_URL`, Bitbucket Pipelines' `BITBUCKET_GIT_HTTP_ORIGIN`;
 * 4. the clone's `origin` remote (typedoc.config.mjs reads `git config remote.origin.url`).
 *
 * Nothing is guessed beyond these: with none, the site shows no source references (TypeDoc would otherwise try the
 * `origin` remote itself and warn — failing the build — in a clone that has none).
 */

/**
 * The browsable base URL of a `repository` field (`{ url }` or a string; `git+…`, `.git` and `github:o/r` forms),
 * or of a remote URL; `undefined` for anything that is not a web host's repository (a local path, `file:`).
 *
 * @param {unknown} repository
 * @returns {string | undefined}
 */
export function repositoryBase(repository) {
  const raw = typeof repository === 'string' ? repository : typeof repository === 'object' && repository !== null ? /** @type {{ url?: unknown }} */ (repository).url : undefined;
  if (typeof raw !== 'string' || raw.trim() === '') return undefined;
  let url = raw.trim();
  if (/^[\w.-]+\/[\w.-]+$/.test(url)) url = `github:${url}`; // npm's shorthand for GitHub
  const short = /^(github|gitlab|bitbucket):([\w.-]+\/[\w.-]+)$/.exec(url);
  if (short) url = `https://${short[1]}.${short[1] === 'bitbucket' ? 'org' : 'com'}/${short[2]}`;
  url = url.replace(/^git\+/, '').replace(/^git:\/\//, 'https://').replace(/^ssh:\/\/git@/, 'https://').replace(/^git@([^:]+):/, 'https://$1/');
  url = url.replace(/\.git$/, '').replace(/\/+$/, '');
  return /^https?:\/\/[^/]+\/./.test(url) ? url : undefined; // a local path or an unknown scheme is not browsable
}

/**
 * TypeDoc's `sourceLinkTemplate` for a repository base URL (GitLab spells its file path `/-/blob/`, Bitbucket
 * `/src/` with `#lines-`).
 *
 * @param {string} base
 * @returns {string}
 */
export function sourceLinkTemplate(base) {
  if (/\/\/gitlab\./.test(base)) return `${base}/-/blob/{gitRevision}/{path}#L{line}`;
  if (/\/\/bitbucket\./.test(base)) return `${base}/src/{gitRevision}/{path}#lines-{line}`;
  return `${base}/blob/{gitRevision}/{path}#L{line}`;
}

/**
 * The repository a CI run builds, from the CI's own variables (GitHub Actions, GitLab CI, Bitbucket Pipelines).
 *
 * @param {NodeJS.ProcessEnv} env
 * @returns {string | undefined}
 */
export function ciRepository(env) {
  const server = env['GITHUB_SERVER_URL'];
  const repo = env['GITHUB_REPOSITORY'];
  if (server && repo) return `${server.replace(/\/+$/, '')}/${repo}`;
  return env['CI_PROJECT_URL'] || env['BITBUCKET_GIT_HTTP_ORIGIN'] || undefined;
}

/**
 * The source options for every package of the site: from the root manifest's `repository`, else
 * `VAC_REPOSITORY_URL`, else the CI's repository, else the clone's `origin` remote.
 *
 * @param {{ repository?: unknown }} manifest
 * @param {NodeJS.ProcessEnv} env
 * @param {string} [originUrl] `git config remote.origin.url` of the clone, if it has one
 * @returns {{ disableSources: boolean, sourceLinkTemplate?: string, gitRevision?: string }}
 */
export function sourceOptions(manifest, env, originUrl) {
  const base = repositoryBase(manifest.repository) ?? repositoryBase(env['VAC_REPOSITORY_URL']) ?? repositoryBase(ciRepository(env)) ?? repositoryBase(originUrl);
  if (base === undefined) return { disableSources: true };
  const revision = env['VAC_DOCS_REVISION'];
  return { disableSources: false, sourceLinkTemplate: sourceLinkTemplate(base), ...(revision ? { gitRevision: revision } : {}) };
}
