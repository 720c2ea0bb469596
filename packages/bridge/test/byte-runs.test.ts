import { describe, expect, it } from 'vitest';
import { forEachChangedRun } from '../src/byte-runs.js';

function runs(cur: Uint8Array, old: Uint8Array, from = 0, to = cur.length, joinGap = 0): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  forEachChangedRun(cur, old, from, to, (s, e) => out.push([s, e]), joinGap);
  return out;
}

describe('forEachChangedRun', () => {
  it('reports nothing for equal bytes, and nothing outside [from, to)', () => {
    const a = new Uint8Array(4096).fill(7);
    expect(runs(a, a.slice())).toEqual([]);
    const b = a.slice();
    b[10] = 1;
    b[4000] = 1;
    expect(runs(b, a, 11, 3999)).toEqual([]);
    expect(runs(b, a, 10, 11)).toEqual([[10, 11]]);
  });

  it('gives exact runs by default: one unchanged byte between two changes splits them', () => {
    const old = new Uint8Array(1024);
    const cur = old.slice();
    cur[3] = 1;
    cur[5] = 1;
    cur[6] = 2;
    expect(runs(cur, old)).toEqual([
      [3, 4],
      [5, 7],
    ]);
  });

  it('finds runs across the native chunks and at the ends, in order', () => {
    const old = new Uint8Array(3 * 256 + 10);
    const cur = old.slice();
    cur[0] = 9;
    cur.fill(9, 250, 262); // across the first chunk boundary
    cur[old.length - 1] = 9;
    expect(runs(cur, old)).toEqual([
      [0, 1],
      [250, 262],
      [old.length - 1, old.length],
    ]);
  });

  it('joins runs fewer than joinGap equal bytes apart, and only those', () => {
    const old = new Uint8Array(600);
    const cur = old.slice();
    cur[0] = 1;
    cur[16] = 1; // 15 equal bytes between: joined
    cur[33] = 1; // 16 equal bytes after 16: a new run
    cur[300] = 1; // a whole equal chunk between: a new run
    expect(runs(cur, old, 0, cur.length, 16)).toEqual([
      [0, 17],
      [33, 34],
      [300, 301],
    ]);
  });

  it('works on views with a byte offset', () => {
    const big = new Uint8Array(2048);
    const oldBig = big.slice();
    big[1500] = 5;
    expect(runs(big.subarray(1000), oldBig.subarray(1000))).toEqual([[500, 501]]);
  });
});
