/**
 * Generators of hostile ioctl arguments from a structure's description: getters, Proxies whose traps throw or
 * lie, revoked Proxies, missing fields, number/bigint confusion, frozen and read-only outputs. Used by the
 * argument suite to try every ioctl of `KVM_IOCTLS` with each of them.
 */
import type { AnyFlexCodec, AnyStructCodec, IoctlArgSpec } from '../../src/index.js';

/** A hostile argument and what it is, for messages. */
export interface BadArg {
  readonly what: string;
  readonly make: () => unknown;
}

type Path = readonly (string | number)[];

function isFlex(c: AnyStructCodec | AnyFlexCodec): c is AnyFlexCodec {
  return 'member' in c;
}

/** A well-formed argument for `spec` (zero fields; a flexible structure with `count` zero entries). */
export function sampleArg(spec: IoctlArgSpec, count = 1): unknown {
  if (spec.dir === 'none' || spec.dir === 'value') return 0;
  const c = spec.codec;
  if (!isFlex(c)) return c.zero();
  const h = c.header.zero() as Record<string, unknown>;
  h[c.countField] = count;
  h[c.member] = Array.from({ length: count }, () => c.entry.zero());
  return h;
}

/** Whether the kernel reads (`'in'`) or writes (`'out'`) the part of the argument at `path`, by its `flex` description. */
function uses(spec: IoctlArgSpec, path: Path, how: 'in' | 'out'): boolean {
  if (spec.dir === 'none' || spec.dir === 'value' || spec.flex === undefined) return true;
  const c = spec.codec;
  const entry = isFlex(c) && path[0] === c.member;
  const dir = entry ? spec.flex.entries : spec.flex.header;
  return dir === 'inout' || dir === how;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Every path to a property in `v` (objects, arrays), depth first, with the value there. */
function paths(v: unknown, prefix: Path = []): Array<{ path: Path; value: unknown }> {
  const out: Array<{ path: Path; value: unknown }> = [];
  if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) return out;
  const keys = Array.isArray(v) ? v.map((_x, i) => i) : Object.keys(v);
  for (const k of keys) {
    const child = (v as Record<string | number, unknown>)[k];
    out.push({ path: [...prefix, k], value: child });
    out.push(...paths(child, [...prefix, k]));
  }
  return out;
}

function parentOf(root: unknown, path: Path): Record<string | number, unknown> {
  let o = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  return o;
}

function at(root: unknown, path: Path, f: (holder: Record<string | number, unknown>, key: string | number) => void): unknown {
  const r = clone(root);
  f(parentOf(r, path), path[path.length - 1] as string | number);
  return r;
}

/** A value of the wrong JavaScript type for what `v` is. */
function confused(v: unknown): unknown {
  if (typeof v === 'number') return BigInt(v);
  if (typeof v === 'bigint') return Number(v);
  if (v instanceof Uint8Array) return Array.from(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array((v as Uint32Array).length); // a __u32 array given as bytes
  if (Array.isArray(v)) return { ...v, length: v.length };
  return 0;
}

const throwingTraps: ProxyHandler<object> = {
  getOwnPropertyDescriptor() {
    throw new Error('trap: getOwnPropertyDescriptor');
  },
  get() {
    throw new Error('trap: get');
  },
  ownKeys() {
    throw new Error('trap: ownKeys');
  },
};

/**
 * Hostile variants of an input structure `base` of an ioctl with argument `spec` (every one must be EFAULT at the
 * kernel's copy). Only the parts the ioctl reads are made hostile.
 */
export function badInputs(base: unknown, spec: IoctlArgSpec): BadArg[] {
  const out: BadArg[] = [];
  const p = (path: Path): string => path.join('.');
  out.push({ what: 'a Proxy whose traps throw', make: () => new Proxy(clone(base) as object, throwingTraps) });
  out.push({
    what: 'a revoked Proxy',
    make: () => {
      const r = Proxy.revocable(clone(base) as object, {});
      r.revoke();
      return r.proxy;
    },
  });
  for (const { path, value } of paths(base)) {
    if (!uses(spec, path, 'in')) continue;
    out.push({
      what: `${p(path)} as a getter`,
      make: () => at(base, path, (h, k) => Object.defineProperty(h, k, { get: () => value, enumerable: true, configurable: true })),
    });
    out.push({ what: `${p(path)} missing`, make: () => at(base, path, (h, k) => void delete h[k]) });
    out.push({ what: `${p(path)} of the wrong type`, make: () => at(base, path, (h, k) => void (h[k] = confused(value))) });
    if (typeof value === 'object' && value !== null && !ArrayBuffer.isView(value)) {
      out.push({ what: `${p(path)} a Proxy whose traps throw`, make: () => at(base, path, (h, k) => void (h[k] = new Proxy(value, throwingTraps))) });
    }
  }
  return out;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !ArrayBuffer.isView(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/**
 * Hostile variants of an output structure `base` of an ioctl with argument `spec` (every one must be EFAULT, leaving
 * the object untouched). Only the parts the ioctl writes are made read-only.
 */
export function badOutputs(base: unknown, spec: IoctlArgSpec): BadArg[] {
  const out: BadArg[] = [
    { what: 'a frozen object', make: () => Object.freeze(clone(base) as object) },
    { what: 'a deeply frozen object', make: () => deepFreeze(clone(base)) },
    { what: 'a non-extensible empty object', make: () => Object.preventExtensions({}) },
    {
      what: 'a Proxy whose set trap throws',
      make: () =>
        new Proxy(clone(base) as object, {
          set() {
            throw new Error('trap: set');
          },
        }),
    },
  ];
  for (const { path, value } of paths(base)) {
    if (ArrayBuffer.isView(value)) continue; // a typed array's elements are always writable
    if (!uses(spec, path, 'out')) continue;
    out.push({
      what: `${path.join('.')} read-only`,
      make: () => at(base, path, (h, k) => Object.defineProperty(h, k, { value, writable: false, enumerable: true, configurable: true })),
    });
    out.push({
      what: `${path.join('.')} an accessor`,
      make: () => at(base, path, (h, k) => Object.defineProperty(h, k, { get: () => value, set: () => undefined, enumerable: true, configurable: true })),
    });
  }
  return out;
}

/** Arguments that are no integer an `unsigned long` can hold (EINVAL for a value argument). */
export const BAD_VALUES: readonly BadArg[] = [
  { what: '0.5', make: () => 0.5 },
  { what: 'NaN', make: () => Number.NaN },
  { what: '2^64 (bigint)', make: () => 2n ** 64n },
  { what: '-2^63 - 1 (bigint)', make: () => -(2n ** 63n) - 1n },
  { what: 'a string', make: () => '1' },
  { what: 'an object', make: () => ({ valueOf: () => 0 }) },
  { what: 'a Proxy', make: () => new Proxy({}, throwingTraps) },
];
