/**
 * Golden JSON values ↔ the model's ioctl arguments.
 *
 * The model takes structs as plain objects with the C field names (docs/abi.md). Which JS type a field has
 * (`number` or `bigint`, an array or a `Uint8Array`) is the model's choice, so arguments are built
 * *shape-directed*: when `@vac/kvm` exports a `make<Struct>()` constructor (`makeKvmRegs`, `makeKvmSregs`, …),
 * its result is the template and every golden value is converted to the type of the template's field; a
 * struct the model has no constructor for yet is built from the golden value alone (`__u64` fields as
 * bigints, narrower ones as numbers — the types the recorder wrote them with). So when another engineer adds
 * a struct with its `make…` constructor, the facts that use it need no change here.
 *
 * @module
 */
import * as kvmApi from '@vac/kvm';
import type { Json, JsonObject } from './golden.js';

/** What a golden argument may refer to: the fact's mappings and the model's earlier answers. */
export interface ValueContext {
  /** The address of mapping `buf` in the model process. */
  bufferAddress(buf: string): number;
  /** The model's value at `path` of an earlier step's result (`steps.0.out.nmsrs`). */
  reference(path: string): unknown;
}

/** Struct arrays whose element type the template cannot show (its array is empty). */
const ELEMENT_TYPES: Readonly<Record<string, string>> = {
  'kvm_msrs.entries': 'kvm_msr_entry',
  'kvm_cpuid2.entries': 'kvm_cpuid_entry2',
  'kvm_xcrs.xcrs': 'kvm_xcr',
};

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !ArrayBuffer.isView(x);
}

/** `kvm_userspace_memory_region` → `makeKvmUserspaceMemoryRegion`. */
export function constructorName(type: string): string {
  return `make${type.split('_').map((w) => (w === '' ? '' : w[0]!.toUpperCase() + w.slice(1))).join('')}`;
}

/** A fresh template of `type` from the model's `make…` constructor, or undefined if it has none. */
export function template(type: string): unknown {
  const make = (kvmApi as Readonly<Record<string, unknown>>)[constructorName(type)];
  return typeof make === 'function' ? (make as () => unknown)() : undefined;
}

/** Whether `s` is a golden 64-bit integer string. */
export function isHexInt(s: string): boolean {
  return /^-?0x[0-9a-f]+$/i.test(s);
}

/** The integer a golden value holds (a JSON number or a `"0x…"` string). */
export function jsonInt(v: Json): bigint {
  if (typeof v === 'number') return BigInt(v);
  if (typeof v === 'string' && isHexInt(v)) return BigInt(v);
  throw new Error(`not a golden integer: ${JSON.stringify(v)}`);
}

/** `{"$opaque": v}`: recorded but not compared. */
export function isOpaque(v: Json | undefined): v is { readonly $opaque: Json } {
  return isObject(v) && '$opaque' in v;
}

/** The integer, number or bigint, that fits `like`'s type: a number only when it is exact. */
function intLike(v: bigint, like: unknown): number | bigint {
  if (typeof like === 'bigint') return v;
  if (typeof like === 'number') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  return v;
}

/**
 * The model's value for golden value `v` of a field whose template is `like` (undefined: no template).
 * `elementType` names the struct of an array's elements when the template array is empty.
 */
export function toModel(v: Json, like: unknown, ctx: ValueContext, where = ''): unknown {
  if (v === null || typeof v === 'boolean') return v;
  if (typeof v === 'number') return typeof like === 'bigint' ? BigInt(v) : v;
  if (typeof v === 'string') {
    if (!isHexInt(v)) return v;
    const n = BigInt(v);
    return intLike(n, like ?? 0n);
  }
  if (Array.isArray(v)) {
    const arr = v as readonly Json[];
    if (like instanceof Uint8Array) return Uint8Array.from(arr.map((x) => Number(jsonInt(x))));
    let elem: unknown = Array.isArray(like) && like.length > 0 ? (like as unknown[])[0] : undefined;
    const elemType = ELEMENT_TYPES[where];
    if (elem === undefined && elemType !== undefined) elem = template(elemType);
    const out = arr.map((x) => toModel(x, elem, ctx, elemType ?? ''));
    // A fixed C array the recorder wrote only in part (the xcrs of kvm_xcrs, the ranges of kvm_msr_filter): the rest
    // as the template has it (zeros).
    if (Array.isArray(like) && like.length > out.length) for (const rest of (like as unknown[]).slice(out.length)) out.push(cloneValue(rest));
    return out;
  }
  const o = v as JsonObject;
  // A value the recorder marked as the host's (a time): the model gets the value itself.
  if (isOpaque(o)) return toModel(o.$opaque, like, ctx, where);
  if (typeof o.$buf === 'string') {
    const addr = ctx.bufferAddress(o.$buf) + Number(o.offset ?? 0);
    return intLike(BigInt(addr), like ?? 0);
  }
  if (typeof o.$ref === 'string') {
    const base = ctx.reference(o.$ref);
    const add = typeof o.add === 'number' ? o.add : 0;
    if (typeof base === 'number') return base + add;
    if (typeof base === 'bigint') return base + BigInt(add);
    return base;
  }
  const out: Record<string, unknown> = isObject(like) ? clone(like) : {};
  const struct = where;
  for (const [k, x] of Object.entries(o)) {
    out[k] = toModel(x, isObject(like) ? like[k] : undefined, ctx, struct === '' ? '' : `${struct}.${k}`);
  }
  return out;
}

/** A deep copy of a template value (plain objects, arrays, typed arrays). */
function cloneValue(y: unknown): unknown {
  if (Array.isArray(y)) return y.map(cloneValue);
  if (ArrayBuffer.isView(y) && !(y instanceof DataView)) return (y as unknown as Uint8Array).slice();
  if (isObject(y)) return Object.fromEntries(Object.entries(y).map(([k, z]) => [k, cloneValue(z)]));
  return y;
}

/** A deep copy of a template (plain objects, arrays, typed arrays). */
function clone(x: unknown): Record<string, unknown> {
  return cloneValue(x) as Record<string, unknown>;
}

/** A zeroed value of the shape of golden value `v` (for an output buffer the model has no constructor for). */
export function zeroShape(v: Json): unknown {
  if (v === null || typeof v === 'boolean') return v;
  if (typeof v === 'number') return 0;
  if (typeof v === 'string') return isHexInt(v) ? 0n : '';
  if (Array.isArray(v)) return (v as readonly Json[]).map(zeroShape);
  const o = v as JsonObject;
  if (isOpaque(o)) return zeroShape(o.$opaque);
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, zeroShape(x)]));
}

/**
 * The model's argument for a struct step: the golden `value` converted over the model's template of `type`
 * (an output buffer: the template itself, or zeros in the shape of the golden `out`).
 */
export function structArg(type: string, value: Json | undefined, out: Json | undefined, ctx: ValueContext): unknown {
  const like = template(type);
  if (value !== undefined) return toModel(value, like, ctx, type);
  if (like !== undefined) return like;
  return out === undefined ? {} : zeroShape(out);
}
