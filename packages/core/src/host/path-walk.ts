/**
 * Path lookup in the model's filesystem, as the VFS walks a path (fs/namei.c `link_path_walk`, `walk_component`,
 * `step_into`, `handle_dots`): the tree is `/` holding the directory `/dev`, whose entries are device nodes and
 * symlinks.
 *
 * - Repeated slashes are one separator; `.` stays in the directory, `..` goes to the parent (`/`'s parent is `/`).
 * - A symlink met in the middle of a path, or at its end when following (`stat`, `open`), is replaced by its target,
 *   read relative to the directory holding the link; more than `MAXSYMLINKS` (40) links in one lookup → ELOOP.
 * - A component that is not a directory with more path after it, or a trailing slash after one → ENOTDIR.
 * - An empty path → ENOENT; more than `PATH_MAX` − 1 bytes → ENAMETOOLONG, as a component of more than `NAME_MAX`.
 * - A relative path starts at `/` (the model's processes all run with `/` as their working directory).
 *
 * @module
 */
import { KernelError } from '../errors.js';

/** `MAXSYMLINKS` (include/linux/namei.h). */
export const MAXSYMLINKS = 40;
/** `PATH_MAX` (include/uapi/linux/limits.h), counting the terminating NUL. */
export const PATH_MAX = 4096;
/** `NAME_MAX`. */
export const NAME_MAX = 255;

/** The two directories of the model's filesystem. */
export type Dir = '/' | '/dev';

/** What an entry of /dev is, for the walk. */
export type DevEntry<N> = { readonly kind: 'node'; readonly node: N } | { readonly kind: 'link'; readonly target: string };

/** What a lookup found. */
export type Found<N> =
  | { readonly kind: 'dir'; readonly path: Dir }
  | { readonly kind: 'node'; readonly path: string; readonly node: N }
  /** A symlink at the end of a path that is not followed (`lstat`, `readlink`, `unlink`). */
  | { readonly kind: 'link'; readonly path: string; readonly target: string };

/** The last component of a path and the directory that holds it, for calls that create or remove an entry. */
export interface Parent {
  /** The directory the entry is (or would be) in. */
  readonly dir: Dir;
  /** The entry's name: `''` for `/`, `'.'`/`'..'` when the path ends with one of those. */
  readonly name: string;
  /** The path ended with a slash. */
  readonly trailingSlash: boolean;
}

/**
 * `getname`: the checks made when a path is copied in, before anything else of the syscall (`do_sys_openat2` copies
 * the name before it looks for a free fd). ENOENT for an empty path, ENAMETOOLONG from `PATH_MAX` bytes on.
 */
export function getname(path: string, op: string): void {
  if (path.length === 0) throw new KernelError('ENOENT', op, 'empty path');
  if (path.length >= PATH_MAX) throw new KernelError('ENAMETOOLONG', op, `path of ${path.length} bytes (PATH_MAX ${PATH_MAX})`);
}

/** Split a path into its components, refusing what no lookup accepts. */
function components(path: string, op: string): { readonly parts: string[]; readonly trailingSlash: boolean } {
  getname(path, op);
  const parts = path.split('/').filter((c) => c.length > 0);
  for (const c of parts) if (c.length > NAME_MAX) throw new KernelError('ENAMETOOLONG', op, `a path component of ${c.length} bytes (NAME_MAX ${NAME_MAX})`);
  return { parts, trailingSlash: path.endsWith('/') && parts.length > 0 };
}

/**
 * Look `path` up.
 * @param lookup - the entry of /dev called `name`, if any
 * @param follow - follow a symlink at the end of the path (`stat`, `open`) or not (`lstat`)
 * @param op - the syscall, for errors
 * @throws {@link KernelError} ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG
 */
export function walkPath<N>(path: string, lookup: (name: string) => DevEntry<N> | undefined, follow: boolean, op: string): Found<N> {
  const links = { count: 0 };
  return walkFrom('/', path, lookup, follow, op, links, path);
}

function walkFrom<N>(start: Dir, path: string, lookup: (name: string) => DevEntry<N> | undefined, follow: boolean, op: string, links: { count: number }, whole: string): Found<N> {
  const { parts, trailingSlash } = components(path, op);
  let dir: Dir = path.startsWith('/') ? '/' : start;
  for (let i = 0; i < parts.length; i++) {
    const c = parts[i] as string;
    const last = i === parts.length - 1;
    if (c === '.') continue;
    if (c === '..') {
      dir = '/';
      continue;
    }
    if (dir === '/') {
      if (c !== 'dev') throw new KernelError('ENOENT', op, `${whole}: No such file or directory`);
      dir = '/dev';
      continue;
    }
    const entry = lookup(c);
    if (entry === undefined) throw new KernelError('ENOENT', op, `${whole}: No such file or directory`);
    if (entry.kind === 'link') {
      if (last && !follow && !trailingSlash) return { kind: 'link', path: `/dev/${c}`, target: entry.target };
      if (++links.count > MAXSYMLINKS) throw new KernelError('ELOOP', op, `${whole}: Too many levels of symbolic links`);
      // The target, read from the directory holding the link; in the middle of a path it must be a directory.
      const to = walkFrom('/dev', entry.target, lookup, true, op, links, whole);
      if (to.kind === 'dir') {
        dir = to.path;
        continue;
      }
      if (!last || trailingSlash) throw new KernelError('ENOTDIR', op, `${whole}: Not a directory`);
      return to;
    }
    if (!last || trailingSlash) throw new KernelError('ENOTDIR', op, `${whole}: Not a directory`);
    return { kind: 'node', path: `/dev/${c}`, node: entry.node };
  }
  return { kind: 'dir', path: dir };
}

/**
 * The directory and last component of `path`, for `symlink` and `unlink` (`filename_create` / `do_unlinkat`: the
 * parent is walked, following links, the last component is not).
 * @throws {@link KernelError} ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG from the walk of the parent
 */
export function parentOf<N>(path: string, lookup: (name: string) => DevEntry<N> | undefined, op: string): Parent {
  const { parts, trailingSlash } = components(path, op);
  if (parts.length === 0) return { dir: '/', name: '', trailingSlash: false };
  const name = parts[parts.length - 1] as string;
  const head = parts.slice(0, -1).join('/');
  const parent = head.length === 0 ? { kind: 'dir' as const, path: '/' as Dir } : walkPath(`/${head}`, lookup, true, op);
  if (parent.kind !== 'dir') throw new KernelError('ENOTDIR', op, `${path}: Not a directory`);
  return { dir: parent.path, name, trailingSlash };
}
