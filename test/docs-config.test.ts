/**
 * The API site's configuration (typedoc.config.mjs and its plugins in docs/typedoc/): "Defined in" links into the
 * repository named by package.json, and every picture of a page linked to its file (full size).
 */
import { describe, expect, test } from 'vitest';
import { linkPictures } from '../docs/typedoc/pictures.mjs';
import { repositoryBase, sourceLinkTemplate, sourceOptions } from '../docs/typedoc/source-links.mjs';

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
