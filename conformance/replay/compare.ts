/**
 * Comparing a golden value (the kernel's answer) with what the model produced.
 *
 * Only what the golden value holds is compared: a field the recorder did not write is not looked at, and
 * `{"$opaque": …}` fields (host times, host-sized counts) must exist but are not compared. Integers compare
 * by value whatever their JS type (number or bigint); byte arrays may be arrays or typed arrays; a hex
 * string compares with bytes.
 *
 * @module
 */
import type { Json, JsonObject } from './golden.js';
import { isHexInt, isOpaque, jsonInt } from './values.js';

/** One difference between the kernel and the model. */
export interface Mismatch {
  /** The fact. */
  readonly fact: string;
  /** The model vendor it was replayed on. */
  readonly vendor: 'intel' | 'amd';
  /** Where: `steps.3.errno`, `steps.5.out.cs.base`, `steps.7.run.exit_reason`. */
  readonly path: string;
  /** The ioctl or step it is in (`KVM_SET_SREGS`), for messages. */
  readonly step: string;
  /** The kernel's value, as text. */
  readonly expected: string;
  /** The model's value, as text. */
  readonly actual: string;
}

/** A value as text for messages: integers in hex when large. */
export function show(x: unknown): string {
  if (x === undefined) return '(missing)';
  if (typeof x === 'bigint') return x > 0xffffn || x < 0n ? `0x${x.toString(16)}` : x.toString();
  if (typeof x === 'number') return Number.isInteger(x) && (x > 0xffff || x < 0) ? `0x${x.toString(16)}` : String(x);
  if (x instanceof Uint8Array) return `[${Array.from(x).join(',')}]`;
  if (typeof x === 'string') return x;
  try {
    return JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v));
  } catch {
    return String(x);
  }
}

function asInt(x: unknown): bigint | undefined {
  if (typeof x === 'bigint') return x;
  if (typeof x === 'number' && Number.isInteger(x)) return BigInt(x);
  if (typeof x === 'boolean') return x ? 1n : 0n;
  return undefined;
}

function asList(x: unknown): readonly unknown[] | undefined {
  if (Array.isArray(x)) return x as readonly unknown[];
  if (ArrayBuffer.isView(x) && !(x instanceof DataView)) return Array.from(x as unknown as ArrayLike<number>);
  return undefined;
}

function hexOf(x: unknown): string | undefined {
  const l = asList(x);
  if (l === undefined) return undefined;
  let s = '';
  for (const b of l) {
    const n = asInt(b);
    if (n === undefined || n < 0n || n > 255n) return undefined;
    s += n.toString(16).padStart(2, '0');
  }
  return s;
}

/** A receiver of differences: path, kernel's value, model's value. */
export type Report = (path: string, expected: string, actual: string) => void;

/** Compare golden `expected` with the model's `actual` at `path`; report each difference. */
export function compareValue(path: string, expected: Json, actual: unknown, report: Report): void {
  if (isOpaque(expected)) {
    if (actual === undefined) report(path, '(a value)', '(missing)');
    return;
  }
  if (typeof expected === 'number' || (typeof expected === 'string' && isHexInt(expected))) {
    const want = jsonInt(expected);
    const got = asInt(actual);
    if (got === undefined || BigInt.asUintN(64, got) !== BigInt.asUintN(64, want)) report(path, show(want), show(actual));
    return;
  }
  if (typeof expected === 'string') {
    const got = typeof actual === 'string' ? actual : hexOf(actual);
    if (got !== expected) report(path, expected, got ?? show(actual));
    return;
  }
  if (expected === null || typeof expected === 'boolean') {
    if (actual !== expected) report(path, String(expected), show(actual));
    return;
  }
  if (Array.isArray(expected)) {
    const list = asList(actual);
    const exp = expected as readonly Json[];
    if (list === undefined) {
      report(path, `an array of ${exp.length}`, show(actual));
      return;
    }
    if (list.length !== exp.length) report(`${path}.length`, String(exp.length), String(list.length));
    const n = Math.min(list.length, exp.length);
    for (let i = 0; i < n; i++) compareValue(`${path}.${i}`, exp[i] as Json, list[i], report);
    return;
  }
  const obj = expected as JsonObject;
  if (typeof actual !== 'object' || actual === null) {
    report(path, 'an object', show(actual));
    return;
  }
  const rec = actual as Record<string, unknown>;
  for (const [k, v] of Object.entries(obj)) {
    // A fixed C array the recorder wrote only up to its count (recorder/structs.c): compare that many.
    const count = PARTIAL_ARRAYS[k];
    const got = rec[k];
    if (count !== undefined && Array.isArray(got) && typeof rec[count] === 'number') compareValue(`${path}.${k}`, v, got.slice(0, rec[count]), report);
    else compareValue(`${path}.${k}`, v, got, report);
  }
}

/** Fixed C arrays the recorder writes only in part, by field: the field holding the count (`kvm_xcrs.xcrs`). */
const PARTIAL_ARRAYS: Readonly<Record<string, string>> = { xcrs: 'nr_xcrs' };
