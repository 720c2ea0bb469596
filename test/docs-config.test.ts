/**
 * The API site's configuration (typedoc.config.mjs and its plugins in docs/typedoc/): "Defined in" links into the
 * repository named by package.json, and every picture of a page linked to its file (full size).
 */
import { describe, expect, test } from 'vitest';
import { linkPictures } from '../docs/typedoc/pictures.mjs';
import { ciRepository, repositoryBase, sourceLinkTemplate, sourceOptions } from '../docs/typedoc/source-links.mjs';

describe('source links', () => {
  test.each([
    ['https://github.com/o/r.git', 'https://github.com/o/r'],
    ['git+https://github.com/o/r.git', 'https://github.com/o/r'],
    [{ type: 'git', url: 'git+ssh://git@github.com/o/r.git' }, 'https://github.com/o/r'],
    ['git@gitlab.com:o/r.git', 'https://gitlab.com/o/r'],
    ['github:o/r', 'https://github.com/o/r'],
    ['o/r', 'https://github.com/o/r'],
    ['https://bitbucket.org/o/r/', 'https://bitbucket.org/o/r'],
  ])('the repository field %j is browsed at %s', (field, base) => {
    expect(repositoryBase(field)).toBe(base);
  });

  test('each host gets its own file-and-line URL', () => {
    expect(sourceLinkTemplate('https://github.com/o/r')).toBe('https://github.com/o/r/blob/{gitRevision}/{path}#L{line}');
    expect(sourceLinkTemplate('https://gitlab.com/o/r')).toBe('https://gitlab.com/o/r/-/blob/{gitRevision}/{path}#L{line}');
    expect(sourceLinkTemplate('https://bitbucket.org/o/r')).toBe('https://bitbucket.org/o/r/src/{gitRevision}/{path}#lines-{line}');
  });

  test('with a repository the site links each declaration at the built commit (or VAC_DOCS_REVISION); without one it shows none', () => {
    const manifest = { repository: { type: 'git', url: 'git+https://github.com/o/r.git' } };
    expect(sourceOptions(manifest, {})).toEqual({ disableSources: false, sourceLinkTemplate: 'https://github.com/o/r/blob/{gitRevision}/{path}#L{line}' });
    expect(sourceOptions(manifest, { VAC_DOCS_REVISION: 'v0.1.0' })).toMatchObject({ gitRevision: 'v0.1.0' });
    expect(sourceOptions({}, {})).toEqual({ disableSources: true });
    expect(repositoryBase({})).toBeUndefined();
    expect(repositoryBase('')).toBeUndefined();
  });

  test('without a repository field: VAC_REPOSITORY_URL, then the CI\'s repository, then the origin remote; a local remote is no source', () => {
    const gh = 'https://github.com/o/r/blob/{gitRevision}/{path}#L{line}';
    expect(sourceOptions({}, { VAC_REPOSITORY_URL: 'https://github.com/o/r.git', GITHUB_SERVER_URL: 'https://github.com', GITHUB_REPOSITORY: 'x/y' }, 'git@gitlab.com:z/w.git')).toEqual({ disableSources: false, sourceLinkTemplate: gh });
    expect(sourceOptions({}, { GITHUB_SERVER_URL: 'https://github.com', GITHUB_REPOSITORY: 'o/r' }, 'git@gitlab.com:z/w.git')).toEqual({ disableSources: false, sourceLinkTemplate: gh });
    expect(sourceOptions({}, {}, 'git@gitlab.com:z/w.git')).toEqual({ disableSources: false, sourceLinkTemplate: 'https://gitlab.com/z/w/-/blob/{gitRevision}/{path}#L{line}' });
    expect(sourceOptions({ repository: 'github:a/b' }, { VAC_REPOSITORY_URL: 'https://github.com/o/r' })).toMatchObject({ sourceLinkTemplate: 'https://github.com/a/b/blob/{gitRevision}/{path}#L{line}' });
    expect(ciRepository({ CI_PROJECT_URL: 'https://gitlab.example.com/g/p' })).toBe('https://gitlab.example.com/g/p');
    expect(ciRepository({ GITHUB_REPOSITORY: 'o/r' })).toBeUndefined();
    expect(sourceOptions({}, {}, '/work/main')).toEqual({ disableSources: true });
    expect(sourceOptions({}, {}, 'file:///srv/git/vac.git')).toEqual({ disableSources: true });
    expect(sourceOptions({}, {})).toEqual({ disableSources: true });
  });
});

describe('pictures open at full size', () => {
  test('every picture from media/ is wrapped in a link to its file; one already in a link is left alone', () => {
    const html = '<p><img src="../media/a.svg" alt="A"></p><p><a href="x.html"><img src="../media/b.svg" alt="B"></a></p><img src="https://example.invalid/c.png">';
    expect(linkPictures(html)).toBe(
      '<p><a href="../media/a.svg" class="vac-picture" title="Open the picture at full size"><img src="../media/a.svg" alt="A"></a></p>' +
        '<p><a href="x.html"><img src="../media/b.svg" alt="B"></a></p><img src="https://example.invalid/c.png">',
    );
  });
});
