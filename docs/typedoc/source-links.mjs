// @ts-check
/**
 * Where the API site's "Defined in" links point: the file and line in the repository named by the root
 * package.json's `repository` field, at the commit the site was built from (TypeDoc fills `{gitRevision}` from
 * `git rev-parse HEAD`; `VAC_DOCS_REVISION` overrides it, for a site built from a tarball). Without a
 * `repository` field the site shows no source references: TypeDoc would otherwise guess from the `origin`
 * remote and warn (failing the build) in a clone that has none.
 */

/**
 * The browsable base URL of a `repository` field (`{ url }` or a string; `git+…`, `.git` and `github:o/r` forms).
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
  return url.replace(/\.git$/, '').replace(/\/+$/, '');
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
 * The source options for every package of the site, from the root manifest.
 *
 * @param {{ repository?: unknown }} manifest
 * @param {NodeJS.ProcessEnv} env
 * @returns {{ disableSources: boolean, sourceLinkTemplate?: string, gitRevision?: string }}
 */
export function sourceOptions(manifest, env) {
  const base = repositoryBase(manifest.repository);
  if (base === undefined) return { disableSources: true };
  const revision = env['VAC_DOCS_REVISION'];
  return { disableSources: false, sourceLinkTemplate: sourceLinkTemplate(base), ...(revision ? { gitRevision: revision } : {}) };
}
