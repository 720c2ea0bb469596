/**
 * The ordered index of one address space's memslots by guest-physical base, as Linux keeps them in an rbtree
 * (`kvm_memslots.gfn_tree`, virt/kvm/kvm_main.c `kvm_insert_gfn_node`, `kvm_replace_gfn_node`; lookups through
 * `search_memslots`): insertion, removal and "the slot at or below this address" in O(log n), so that a VMM
 * filling all 32,764 slots pays the same per slot at the last as at the first.
 *
 * A treap: a binary search tree by base whose nodes also form a heap by a priority. The priorities come from a
 * fixed pseudo-random sequence (not `Math.random`), so the same calls build the same tree: the model stays
 * deterministic.
 *
 * @module
 */

/** What the tree orders: anything with a guest-physical base and end (slots do not overlap). */
export interface SlotRange {
  /** First guest-physical address. */
  readonly base: number;
  /** One past the last. */
  readonly end: number;
}

interface TreeNode<T extends SlotRange> {
  readonly item: T;
  readonly priority: number;
  left: TreeNode<T> | undefined;
  right: TreeNode<T> | undefined;
}

/** The ordered index (one per address space). */
export class SlotTree<T extends SlotRange> {
  #root: TreeNode<T> | undefined;
  #size = 0;
  #seed = 0x9e3779b9;

  /** Number of slots in the tree. */
  get size(): number {
    return this.#size;
  }

  /** Add `item` (no slot with the same base may be in the tree). */
  insert(item: T): void {
    const [lo, hi] = split(this.#root, item.base);
    const node: TreeNode<T> = { item, priority: this.#nextPriority(), left: undefined, right: undefined };
    this.#root = merge(merge(lo, node), hi);
    this.#size++;
  }

  /** Remove the slot whose base is `base`. @returns whether there was one */
  remove(base: number): boolean {
    const [lo, rest] = split(this.#root, base);
    const [mid, hi] = split(rest, base + 1);
    this.#root = merge(lo, hi);
    if (mid === undefined) return false;
    this.#size--;
    return true;
  }

  /** The slot with the greatest base at or below `addr`, if any (the only one that can contain `addr`). */
  floor(addr: number): T | undefined {
    let n = this.#root;
    let best: T | undefined;
    while (n !== undefined) {
      if (n.item.base <= addr) {
        best = n.item;
        n = n.right;
      } else {
        n = n.left;
      }
    }
    return best;
  }

  /** The slot containing `addr`, if any. */
  containing(addr: number): T | undefined {
    const s = this.floor(addr);
    return s !== undefined && addr < s.end ? s : undefined;
  }

  /**
   * A slot other than `except` that overlaps [`base`, `end`), if any: only the last slot starting below `end` — or,
   * when that is `except`, the one before it — can (slots do not overlap each other).
   */
  overlapping(base: number, end: number, except: T | undefined): T | undefined {
    let s = this.floor(end - 1);
    if (s !== undefined && s === except) s = this.floor(s.base - 1);
    return s !== undefined && s.end > base ? s : undefined;
  }

  /** The slots in order of base. */
  *[Symbol.iterator](): IterableIterator<T> {
    const stack: TreeNode<T>[] = [];
    let n = this.#root;
    while (n !== undefined || stack.length > 0) {
      while (n !== undefined) {
        stack.push(n);
        n = n.left;
      }
      const top = stack.pop() as TreeNode<T>;
      yield top.item;
      n = top.right;
    }
  }

  /** xorshift32: a fixed sequence of priorities. */
  #nextPriority(): number {
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x >>> 0;
    return this.#seed;
  }
}

/** Split `t` into the nodes with base < `key` and those with base ≥ `key`. */
function split<T extends SlotRange>(t: TreeNode<T> | undefined, key: number): [TreeNode<T> | undefined, TreeNode<T> | undefined] {
  if (t === undefined) return [undefined, undefined];
  if (t.item.base < key) {
    const [l, r] = split(t.right, key);
    t.right = l;
    return [t, r];
  }
  const [l, r] = split(t.left, key);
  t.left = r;
  return [l, t];
}

/** Join two treaps where every base of `a` is below every base of `b`. */
function merge<T extends SlotRange>(a: TreeNode<T> | undefined, b: TreeNode<T> | undefined): TreeNode<T> | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  if (a.priority > b.priority) {
    a.right = merge(a.right, b);
    return a;
  }
  b.left = merge(a, b.left);
  return b;
}
