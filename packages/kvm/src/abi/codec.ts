/**
 * One mechanism for every ioctl argument structure: a declarative description of a C structure (its fields,
 * their C types, nested structures and arrays) from which come
 *
 * - `make(init)`: a fresh value with every field zero, overridden by `init` (nested values copied, not shared);
 * - `copy(v)`: a deep, independent copy holding only the structure's fields;
 * - `problem(x)`: the first thing that makes `x` not an exact value of the structure (for `validate*`);
 * - `copyIn(x, op)`: the kernel's `copy_from_user` — a copy of the caller's argument taken once, reading only
 *   own data properties of the right types (a getter, a Proxy trap, a missing or wrong-typed field, a value a C
 *   field cannot hold is a bad user pointer: `KernelError` EFAULT). The ioctl validates and applies the copy,
 *   never the caller's object, so nothing the caller does between two reads can change what the kernel saw;
 * - `copyOut(v, dst, op)`: `copy_to_user` — written back field by field (a frozen or non-writable destination
 *   is EFAULT);
 * - `encode(v, view, offset)` / `decode(view, offset)`: the exact bytes of the C structure at the offsets of its
 *   {@link CLayout} (`layout.ts`; padding written as zero). The ioctls also take those bytes directly: an
 *   argument that is a `Uint8Array` is the C structure itself, as a bridge from a real VMM forwards it.
 *
 * ## How C types become JavaScript values
 *
 * `__u8` … `__u32`, `__s8` … `__s32` are `number`s. A `__u64`/`__s64` holding a register or any 64-bit pattern
 * is a `bigint` ({@link u64}, {@link s64}); one holding a guest-physical address, a size or a user pointer is a
 * `number` ({@link u64n}): exact below 2^53, which covers every valid address; one the kernel checks exactly above
 * 2^53 too is a `number` below 2^53 and a `bigint` from there ({@link u64exact}). `copyIn` takes any non-negative
 * integer `number` below 2^64 for such a field (C can hold it; the ioctl then answers EINVAL for an address or
 * size out of range), while `problem` insists on a safe integer. Byte arrays are `Uint8Array`s
 * ({@link bytes}); other fixed arrays are JavaScript arrays ({@link tuple}).
 *
 * @module
 */
import { KernelError, UsageError } from '@vac/core';
import { C_SCALAR_SIZE, type CLayout, type CScalar } from './layout.js';

/* ------------------------------------------------------------------------------------------------------ */
/* Reading user data without running user code twice                                                       */
/* ------------------------------------------------------------------------------------------------------ */

/** A bad user argument found while copying it: becomes EFAULT at the ioctl. */
export class UserFault extends Error {
  /** @param message - what was wrong, naming the field */
  constructor(message: string) {
    super(message);
    this.name = 'UserFault';
  }
}

const gopd = Object.getOwnPropertyDescriptor;
const isArray = Array.isArray;
/** `%TypedArray%.prototype[Symbol.toStringTag]`: the real typed-array name, `undefined` for anything else (a Proxy too). */
const typedArrayTag = gopd(Object.getPrototypeOf(Uint8Array.prototype) as object, Symbol.toStringTag)?.get as (this: unknown) => string | undefined;
/** `%TypedArray%.prototype.length`, read from the internal slot (an own `length` property cannot lie to it). */
const typedArrayLength = gopd(Object.getPrototypeOf(Uint8Array.prototype) as object, 'length')?.get as (this: unknown) => number;

/** Whether `x` is a genuine `Uint8Array` (not a Proxy, not another typed array). */
export function isRealUint8Array(x: unknown): x is Uint8Array {
  return typeof x === 'object' && x !== null && typedArrayTag.call(x) === 'Uint8Array';
}

/** The length of a genuine typed array, from its internal slot. */
function realLength(x: Uint8Array): number {
  return typedArrayLength.call(x);
}

/**
 * The value of own data property `key` of `obj`, read once through its descriptor: a missing property, an
 * accessor or a non-object holder is a fault. (A Proxy's `getOwnPropertyDescriptor` trap runs once; whatever
 * it throws is caught by the caller and becomes a fault too.)
 */
function ownData(obj: unknown, key: string, path: string): unknown {
  if (typeof obj !== 'object' || obj === null) throw new UserFault(`${path} must be an object`);
  const d = gopd(obj, key);
  if (d === undefined) throw new UserFault(`${path}.${key} is missing`);
  if (d.get !== undefined || d.set !== undefined) throw new UserFault(`${path}.${key} is an accessor, not a data property`);
  return d.value;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Field kinds                                                                                              */
/* ------------------------------------------------------------------------------------------------------ */

/**
 * How one field is represented, copied, checked and encoded. `T` is its JavaScript type.
 *
 * The methods take a `path` (`kvm_sregs.cs.base`) for messages.
 */
export interface FieldKind<T> {
  /** What it is, for messages and docs: `__u32`, `__u64 (bigint)`, `struct kvm_segment`, `__u8[16]`, … */
  readonly cName: string;
  /** Size in bytes of the C member. */
  readonly size: number;
  /** The C scalar (for scalars and arrays of scalars) or layout (for nested structures) it must match. */
  readonly c: CScalar | CLayout;
  /** Element count for arrays (`undefined` for a single member). */
  readonly count: number | undefined;
  /** The zero value (a fresh object for aggregates). */
  zero(): T;
  /** A deep copy of a value of this kind (assumed well formed). */
  clone(v: T): T;
  /** The first problem of `v` as an exact value of this kind, or `undefined`. */
  problem(v: unknown, path: string): string | undefined;
  /** `copy_from_user` of one field value (already read once from its holder): a fresh, checked copy. @throws UserFault */
  copyIn(v: unknown, path: string): T;
  /**
   * `copy_to_user` of `v` into property `key` of `holder` (an aggregate is written into the object already there
   * when there is one, else a fresh copy is stored). @throws UserFault (or whatever the holder throws)
   */
  copyOut(v: T, holder: Record<string, unknown>, key: string, path: string): void;
  /**
   * Whether {@link FieldKind.copyOut} can complete when the holder's property currently holds `cur` (the holder's
   * property itself was checked writable by the caller). @throws UserFault
   */
  checkOut(cur: unknown, path: string): void;
  /** Write `v` at `offset` of `view`, little-endian. */
  encode(v: T, view: DataView, offset: number): void;
  /** Read a value at `offset` of `view`. */
  decode(view: DataView, offset: number): T;
}

type Scalar32 = 'u8' | 's8' | 'u16' | 's16' | 'u32' | 's32';

/** A scalar is overwritten whatever the property held. */
function noCheck(): void {}

/**
 * Check that property `key` of `holder` can be written: an own writable data property, or absent from an
 * extensible object. @returns the property's current value (undefined when absent) @throws UserFault
 */
function writableSlot(holder: object, key: string, path: string): unknown {
  const d = gopd(holder, key);
  if (d === undefined) {
    if (!Object.isExtensible(holder)) throw new UserFault(`${path} cannot be added (the object is not extensible)`);
    return undefined;
  }
  if (d.get !== undefined || d.set !== undefined) throw new UserFault(`${path} is an accessor, not a data property`);
  if (d.writable !== true) throw new UserFault(`${path} is read-only`);
  // Store the value back: nothing changes for an ordinary object, while an exotic one (a Proxy whose `set` trap
  // throws) fails here, before anything has been written.
  (holder as Record<string, unknown>)[key] = d.value;
  return d.value;
}

/** The values of an integer C scalar: `[min, max]`. */
function intRange(c: Scalar32): [number, number] {
  const size = C_SCALAR_SIZE[c];
  return c.startsWith('s') ? [-(2 ** (8 * size - 1)), 2 ** (8 * size - 1) - 1] : [0, 2 ** (8 * size) - 1];
}

function intKind(c: Scalar32): FieldKind<number> {
  const size = C_SCALAR_SIZE[c];
  const [min, max] = intRange(c);
  const cName = `__${c}`;
  const check = (v: unknown, path: string): string | undefined =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? undefined : `${path} must be an integer in ${min}..${max} (${cName})`;
  const set: (view: DataView, o: number, v: number) => void =
    c === 'u8' ? (d, o, v) => d.setUint8(o, v)
    : c === 's8' ? (d, o, v) => d.setInt8(o, v)
    : c === 'u16' ? (d, o, v) => d.setUint16(o, v, true)
    : c === 's16' ? (d, o, v) => d.setInt16(o, v, true)
    : c === 'u32' ? (d, o, v) => d.setUint32(o, v, true)
    : (d, o, v) => d.setInt32(o, v, true);
  const get: (view: DataView, o: number) => number =
    c === 'u8' ? (d, o) => d.getUint8(o)
    : c === 's8' ? (d, o) => d.getInt8(o)
    : c === 'u16' ? (d, o) => d.getUint16(o, true)
    : c === 's16' ? (d, o) => d.getInt16(o, true)
    : c === 'u32' ? (d, o) => d.getUint32(o, true)
    : (d, o) => d.getInt32(o, true);
  return {
    cName,
    size,
    c,
    count: undefined,
    zero: () => 0,
    clone: (v) => v,
    problem: check,
    copyIn(v, path) {
      const p = check(v, path);
      if (p !== undefined) throw new UserFault(p);
      return v as number;
    },
    copyOut(v, holder, key) {
      holder[key] = v;
    },
    checkOut: noCheck,
    encode: (v, view, o) => set(view, o, v),
    decode: (view, o) => get(view, o),
  };
}

/** `__u8` as a `number`. */
export const u8: FieldKind<number> = intKind('u8');
/** `__s8` as a `number`. */
export const s8: FieldKind<number> = intKind('s8');
/** `__u16` as a `number`. */
export const u16: FieldKind<number> = intKind('u16');
/** `__s16` as a `number`. */
export const s16: FieldKind<number> = intKind('s16');
/** `__u32` as a `number`. */
export const u32: FieldKind<number> = intKind('u32');
/** `__s32` as a `number`. */
export const s32: FieldKind<number> = intKind('s32');

const U64_MAX = (1n << 64n) - 1n;
const S64_MIN = -(1n << 63n);
const S64_MAX = (1n << 63n) - 1n;

function bigKind(signed: boolean): FieldKind<bigint> {
  const min = signed ? S64_MIN : 0n;
  const max = signed ? S64_MAX : U64_MAX;
  const cName = signed ? '__s64 (bigint)' : '__u64 (bigint)';
  const check = (v: unknown, path: string): string | undefined =>
    typeof v === 'bigint' && v >= min && v <= max ? undefined : `${path} must be a bigint in ${signed ? '-2^63..2^63-1' : '0..2^64-1'} (${signed ? '__s64' : '__u64'})`;
  return {
    cName,
    size: 8,
    c: signed ? 's64' : 'u64',
    count: undefined,
    zero: () => 0n,
    clone: (v) => v,
    problem: check,
    copyIn(v, path) {
      const p = check(v, path);
      if (p !== undefined) throw new UserFault(p);
      return v as bigint;
    },
    copyOut(v, holder, key) {
      holder[key] = v;
    },
    checkOut: noCheck,
    encode: signed ? (v, view, o) => view.setBigInt64(o, v, true) : (v, view, o) => view.setBigUint64(o, v, true),
    decode: signed ? (view, o) => view.getBigInt64(o, true) : (view, o) => view.getBigUint64(o, true),
  };
}

/** `__u64` as a `bigint` (registers, MSR values, any 64-bit pattern). */
export const u64: FieldKind<bigint> = bigKind(false);
/** `__s64` as a `bigint`. */
export const s64: FieldKind<bigint> = bigKind(true);

/**
 * `__u64` holding an address, a size or a user pointer, as a `number`. `copyIn` takes any non-negative integer
 * below 2^64 (what C can hold; above 2^53 the `number` may be rounded, but it stays above 2^53, where every
 * address is invalid and the ioctl answers EINVAL); `problem` requires a safe integer. `decode` gives the
 * nearest `number`, exact for every value below 2^53.
 */
export const u64n: FieldKind<number> = {
  cName: '__u64 (number)',
  size: 8,
  c: 'u64',
  count: undefined,
  zero: () => 0,
  clone: (v) => v,
  problem: (v, path) =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? undefined : `${path} must be a non-negative safe integer (__u64 address or size)`,
  copyIn(v, path) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= 2 ** 64) {
      throw new UserFault(`${path} must be a non-negative integer below 2^64 (__u64 address or size, a number)`);
    }
    return v;
  },
  copyOut(v, holder, key) {
    holder[key] = v;
  },
  checkOut: noCheck,
  encode(v, view, o) {
    view.setBigUint64(o, BigInt(v), true);
  },
  decode(view, o) {
    return view.getUint32(o + 4, true) * 0x1_0000_0000 + view.getUint32(o, true);
  },
};

/**
 * `__u64` holding an address or a size the kernel checks exactly even above 2^53 (`kvm_userspace_memory_region`'s,
 * where an unaligned address above 2^53 is EINVAL and a deletion ignores its address): a `number` below 2^53 and
 * a `bigint` from 2^53 up, so every value C can pass has one exact form. `copyIn` takes a non-negative integer
 * `number` below 2^64 (one above 2^53 becomes the `bigint` of its exact value) or a `bigint` in 2^53..2^64-1 (a
 * smaller one is not the canonical form: EFAULT, as for {@link u64n}); `decode` gives the canonical form.
 */
export const u64exact: FieldKind<number | bigint> = {
  cName: '__u64 (number below 2^53, else bigint)',
  size: 8,
  c: 'u64',
  count: undefined,
  zero: () => 0,
  clone: (v) => v,
  problem: (v, path) =>
    (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) || (typeof v === 'bigint' && v > BigInt(Number.MAX_SAFE_INTEGER) && v < 2n ** 64n)
      ? undefined
      : `${path} must be a non-negative safe integer, or a bigint from 2^53 below 2^64 (__u64 address or size)`,
  copyIn(v, path) {
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v < 0 || v >= 2 ** 64) throw new UserFault(`${path} must be a non-negative integer below 2^64 (__u64 address or size)`);
      return v <= Number.MAX_SAFE_INTEGER ? v : BigInt(v);
    }
    if (typeof v !== 'bigint' || v <= BigInt(Number.MAX_SAFE_INTEGER) || v >= 2n ** 64n) {
      throw new UserFault(`${path} must be a number below 2^53 or a bigint from 2^53 below 2^64 (__u64 address or size)`);
    }
    return v;
  },
  copyOut(v, holder, key) {
    holder[key] = v;
  },
  checkOut: noCheck,
  encode(v, view, o) {
    view.setBigUint64(o, BigInt(v), true);
  },
  decode(view, o) {
    const hi = view.getUint32(o + 4, true);
    return hi < 0x20_0000 ? hi * 0x1_0000_0000 + view.getUint32(o, true) : view.getBigUint64(o, true);
  },
};

/**
 * A user pointer (`__u64 addr`, `__u8 *bitmap`): the caller's buffer itself (a `Uint8Array`, which the ioctl then
 * reads or fills, as the kernel does the memory the pointer names) or an address in the process (a `number`, looked
 * up in its mappings). The pointer is copied, not what it points to. As bytes it is the address (a `Uint8Array` has
 * none and encodes as 0).
 */
export const userPtr: FieldKind<Uint8Array | number> = {
  cName: '__u64 (user pointer)',
  size: 8,
  c: 'u64',
  count: undefined,
  zero: () => 0,
  clone: (v) => v,
  problem: (v, path) =>
    isRealUint8Array(v) || (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) ? undefined : `${path} must be a Uint8Array or an address (a non-negative safe integer)`,
  copyIn(v, path) {
    if (isRealUint8Array(v)) return v;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= 2 ** 64) throw new UserFault(`${path} must be a Uint8Array or an address below 2^64`);
    return v;
  },
  copyOut(v, holder, key) {
    holder[key] = v;
  },
  checkOut: noCheck,
  encode(v, view, o) {
    view.setBigUint64(o, typeof v === 'number' ? BigInt(v) : 0n, true);
  },
  decode(view, o) {
    return view.getUint32(o + 4, true) * 0x1_0000_0000 + view.getUint32(o, true);
  },
};

/** A fixed array of `count` bytes (`__u8 x[count]`, or any member of that size) as a `Uint8Array`. */
export function bytes(count: number, c: CScalar = 'u8'): FieldKind<Uint8Array<ArrayBuffer>> {
  const elem = C_SCALAR_SIZE[c];
  return {
    cName: `__${c}[${count / elem}]`,
    size: count,
    c,
    count: count / elem,
    zero: () => new Uint8Array(count),
    clone: (v) => v.slice(),
    problem: (v, path) => (isRealUint8Array(v) && realLength(v) === count ? undefined : `${path} must be a Uint8Array of ${count} bytes`),
    copyIn(v, path) {
      if (!isRealUint8Array(v) || realLength(v) !== count) throw new UserFault(`${path} must be a Uint8Array of ${count} bytes`);
      const out = new Uint8Array(count);
      out.set(v);
      return out;
    },
    copyOut(v, holder, key, path) {
      const dst = holder[key];
      if (dst === undefined) {
        holder[key] = v.slice();
        return;
      }
      if (!isRealUint8Array(dst) || realLength(dst) !== count) throw new UserFault(`${path} must be a Uint8Array of ${count} bytes`);
      dst.set(v);
    },
    checkOut(cur, path) {
      if (cur !== undefined && (!isRealUint8Array(cur) || realLength(cur) !== count)) throw new UserFault(`${path} must be a Uint8Array of ${count} bytes`);
    },
    encode(v, view, o) {
      new Uint8Array(view.buffer, view.byteOffset + o, count).set(v);
    },
    decode(view, o) {
      return new Uint8Array(view.buffer.slice(view.byteOffset + o, view.byteOffset + o + count)) as Uint8Array<ArrayBuffer>;
    },
  };
}

/** Whether typed arrays on this host are little-endian (as the C structures are). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Whether `x` is a genuine `Uint32Array`. */
function isRealUint32Array(x: unknown): x is Uint32Array {
  return typeof x === 'object' && x !== null && typedArrayTag.call(x) === 'Uint32Array';
}

/**
 * `__u32 name[count]` as a `Uint32Array` (fast to copy: a typed array's elements are always own data). As input
 * an array of `count` unsigned 32-bit numbers is taken too (element by element, own data properties only).
 */
export function words32(count: number): FieldKind<Uint32Array<ArrayBuffer>> {
  const cName = `__u32[${count}]`;
  const bad = (path: string): string => `${path} must be a Uint32Array or an array of ${count} __u32`;
  const fromArray = (v: unknown[], path: string): Uint32Array<ArrayBuffer> => {
    const len = ownData(v, 'length', path);
    if (len !== count) throw new UserFault(bad(path));
    const out = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const x = ownData(v, String(i), path);
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 0xffff_ffff) throw new UserFault(`${path}[${i}] must be a __u32`);
      out[i] = x;
    }
    return out;
  };
  return {
    cName,
    size: 4 * count,
    c: 'u32',
    count,
    zero: () => new Uint32Array(count),
    clone: (v) => v.slice(),
    problem(v, path) {
      if (isRealUint32Array(v)) return typedArrayLength.call(v) === count ? undefined : bad(path);
      if (!isArray(v) || v.length !== count) return bad(path);
      return v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff) ? undefined : bad(path);
    },
    copyIn(v, path) {
      if (isRealUint32Array(v)) {
        if (typedArrayLength.call(v) !== count) throw new UserFault(bad(path));
        return new Uint32Array(v);
      }
      if (!isArray(v)) throw new UserFault(bad(path));
      return fromArray(v, path);
    },
    copyOut(v, holder, key, path) {
      const dst = holder[key];
      if (dst === undefined) {
        holder[key] = v.slice();
        return;
      }
      if (isRealUint32Array(dst) && typedArrayLength.call(dst) === count) {
        dst.set(v);
        return;
      }
      if (!isArray(dst)) throw new UserFault(bad(path));
      const d = dst as unknown as Record<string, unknown>;
      for (let i = 0; i < count; i++) d[String(i)] = v[i];
    },
    checkOut(cur, path) {
      if (cur === undefined) return;
      if (isRealUint32Array(cur)) {
        if (typedArrayLength.call(cur) !== count) throw new UserFault(bad(path));
        return;
      }
      if (!isArray(cur) || cur.length !== count) throw new UserFault(bad(path));
      for (let i = 0; i < count; i++) writableSlot(cur, String(i), `${path}[${i}]`);
    },
    encode(v, view, o) {
      if (LITTLE_ENDIAN && isRealUint32Array(v)) {
        new Uint8Array(view.buffer, view.byteOffset + o, 4 * count).set(new Uint8Array(v.buffer, v.byteOffset, 4 * count));
        return;
      }
      for (let i = 0; i < count; i++) view.setUint32(o + 4 * i, v[i] as number, true);
    },
    decode(view, o) {
      // On a little-endian host the words are the bytes as they are (one copy, not `count` DataView reads).
      if (LITTLE_ENDIAN) return new Uint32Array(view.buffer.slice(view.byteOffset + o, view.byteOffset + o + 4 * count)) as Uint32Array<ArrayBuffer>;
      const out = new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getUint32(o + 4 * i, true);
      return out;
    },
  };
}

/** A fixed array of `count` elements of `elem` as a JavaScript array (`__u64 args[4]` → `bigint[]`). */
export function tuple<T>(elem: FieldKind<T>, count: number): FieldKind<T[]> {
  return {
    cName: `${elem.cName}[${count}]`,
    size: elem.size * count,
    c: elem.c,
    count,
    zero: () => Array.from({ length: count }, () => elem.zero()),
    clone: (v) => v.map((x) => elem.clone(x)),
    problem(v, path) {
      if (!isArray(v) || v.length !== count) return `${path} must be an array of ${count} (${elem.cName})`;
      for (let i = 0; i < count; i++) {
        const p = elem.problem(v[i], `${path}[${i}]`);
        if (p !== undefined) return p;
      }
      return undefined;
    },
    copyIn(v, path) {
      if (!isArray(v)) throw new UserFault(`${path} must be an array of ${count} (${elem.cName})`);
      const len = ownData(v, 'length', path);
      if (len !== count) throw new UserFault(`${path} must be an array of ${count} (${elem.cName})`);
      const out: T[] = [];
      for (let i = 0; i < count; i++) out.push(elem.copyIn(ownData(v, String(i), path), `${path}[${i}]`));
      return out;
    },
    copyOut(v, holder, key, path) {
      const dst = holder[key];
      if (dst === undefined) {
        holder[key] = v.map((x) => elem.clone(x));
        return;
      }
      if (!isArray(dst)) throw new UserFault(`${path} must be an array of ${count} (${elem.cName})`);
      const d = dst as unknown as Record<string, unknown>;
      for (let i = 0; i < count; i++) elem.copyOut(v[i] as T, d, String(i), `${path}[${i}]`);
    },
    checkOut(cur, path) {
      if (cur === undefined) return;
      if (!isArray(cur)) throw new UserFault(`${path} must be an array of ${count} (${elem.cName})`);
      for (let i = 0; i < count; i++) elem.checkOut(writableSlot(cur, String(i), `${path}[${i}]`), `${path}[${i}]`);
    },
    encode(v, view, o) {
      for (let i = 0; i < count; i++) elem.encode(v[i] as T, view, o + i * elem.size);
    },
    decode(view, o) {
      const out: T[] = [];
      for (let i = 0; i < count; i++) out.push(elem.decode(view, o + i * elem.size));
      return out;
    },
  };
}

/**
 * Source text that zeroes `len` bytes at `o + at` of `view`: DataView stores for a short gap (padding, a reserved
 * word) — making a `Uint8Array` view to `fill` costs more than the whole structure's other fields — and a `fill` for a
 * long one.
 */
function zeroGap(at: number, len: number): string {
  if (len > 64) return `new Uint8Array(view.buffer, view.byteOffset + o + ${at}, ${len}).fill(0);`;
  const out: string[] = [];
  let i = 0;
  for (; i + 4 <= len; i += 4) out.push(`view.setUint32(o + ${at + i}, 0);`);
  if (i + 2 <= len) {
    out.push(`view.setUint16(o + ${at + i}, 0);`);
    i += 2;
  }
  if (i < len) out.push(`view.setUint8(o + ${at + i}, 0);`);
  return out.join(' ');
}

/** The generated encode / decode / zero of one {@link StructCodec}. */
interface CompiledStruct<T> {
  encode(v: T, view: DataView, offset: number): void;
  decode(view: DataView, offset: number): T;
  zero(): T;
  /** {@link StructCodec.copyIn} of an object argument (already known to be a non-array object). */
  copyIn(x: object, path: string): T;
  /** {@link StructCodec.copyOut} into an object (already known to be a non-array object). */
  copyOut(v: T, d: object, path: string): void;
  /** {@link StructCodec.checkWritable} of an object (already known to be a non-array object). */
  checkWritable(d: object, path: string): void;
}

/** Source text of a scalar kind's encode (value expression, offset expression), decode (offset) and zero. */
interface ScalarOp {
  readonly encode: (v: string, at: string) => string;
  readonly decode: (at: string) => string;
  readonly zero: string;
  /**
   * For the integer kinds: an expression true when the value (a variable's name) is one the kind's `copyIn` returns
   * unchanged, so the compiled copy calls `copyIn` (for its fault) only when it is false.
   */
  readonly valid?: (v: string) => string;
}

/** {@link ScalarOp.valid} of integer kind `c` (what `intKind`'s check accepts). */
function intValid(c: Scalar32): (v: string) => string {
  const [min, max] = intRange(c);
  return (v) => `(typeof ${v} === 'number' && Number.isInteger(${v}) && ${v} >= ${min} && ${v} <= ${max})`;
}

/**
 * The scalar kinds {@link StructCodec} compiles to single DataView accesses. Each one's `copyOut` is a store of the value
 * into the holder and its `checkOut` nothing, which the compiled copy-out and writable check rely on.
 */
const SCALAR_OPS: ReadonlyMap<FieldKind<unknown>, ScalarOp> = new Map<FieldKind<unknown>, ScalarOp>([
  [u8 as FieldKind<unknown>, { encode: (v, at) => `view.setUint8(${at}, ${v});`, decode: (at) => `view.getUint8(${at})`, zero: '0', valid: intValid('u8') }],
  [s8 as FieldKind<unknown>, { encode: (v, at) => `view.setInt8(${at}, ${v});`, decode: (at) => `view.getInt8(${at})`, zero: '0', valid: intValid('s8') }],
  [u16 as FieldKind<unknown>, { encode: (v, at) => `view.setUint16(${at}, ${v}, true);`, decode: (at) => `view.getUint16(${at}, true)`, zero: '0', valid: intValid('u16') }],
  [s16 as FieldKind<unknown>, { encode: (v, at) => `view.setInt16(${at}, ${v}, true);`, decode: (at) => `view.getInt16(${at}, true)`, zero: '0', valid: intValid('s16') }],
  [u32 as FieldKind<unknown>, { encode: (v, at) => `view.setUint32(${at}, ${v}, true);`, decode: (at) => `view.getUint32(${at}, true)`, zero: '0', valid: intValid('u32') }],
  [s32 as FieldKind<unknown>, { encode: (v, at) => `view.setInt32(${at}, ${v}, true);`, decode: (at) => `view.getInt32(${at}, true)`, zero: '0', valid: intValid('s32') }],
  [u64 as FieldKind<unknown>, { encode: (v, at) => `view.setBigUint64(${at}, ${v}, true);`, decode: (at) => `view.getBigUint64(${at}, true)`, zero: '0n' }],
  [s64 as FieldKind<unknown>, { encode: (v, at) => `view.setBigInt64(${at}, ${v}, true);`, decode: (at) => `view.getBigInt64(${at}, true)`, zero: '0n' }],
  [u64n as FieldKind<unknown>, {
    encode: (v, at) => `view.setUint32(${at}, ${v} % 4294967296, true); view.setUint32(${at} + 4, Math.floor(${v} / 4294967296) % 4294967296, true);`,
    decode: (at) => `view.getUint32(${at} + 4, true) * 4294967296 + view.getUint32(${at}, true)`,
    zero: '0',
  }],
  [userPtr as FieldKind<unknown>, {
    encode: (v, at) => `{ const p = ${v}; const n = typeof p === 'number' ? p : 0; view.setUint32(${at}, n % 4294967296, true); view.setUint32(${at} + 4, Math.floor(n / 4294967296) % 4294967296, true); }`,
    decode: (at) => `view.getUint32(${at} + 4, true) * 4294967296 + view.getUint32(${at}, true)`,
    zero: '0',
  }],
]);

/* ------------------------------------------------------------------------------------------------------ */
/* Structures                                                                                               */
/* ------------------------------------------------------------------------------------------------------ */

/** The field kinds of a structure `T`, one per property, in C order. */
export type FieldKinds<T> = { readonly [K in keyof T]-?: FieldKind<T[K]> };

/** A {@link StructCodec} with its value type erased: what ioctl tables and tests hold. */
export interface AnyStructCodec {
  /** The C layout. */
  readonly layout: CLayout;
  /** `struct <tag>`. */
  readonly cName: string;
  /** `sizeof`. */
  readonly size: number;
  /** The JavaScript fields in C order. */
  readonly keys: readonly string[];
  /** The kind of a field, or `undefined` for a name that is not one. */
  fieldKind(k: string): FieldKind<unknown> | undefined;
  /** A value with every field zero. */
  zero(): object;
  /** `copy_from_user`. @throws UserFault */
  copyIn(x: unknown, path?: string): object;
}

/** A {@link FlexCodec} with its value types erased. */
export interface AnyFlexCodec {
  /** The fixed part. */
  readonly header: AnyStructCodec;
  /** One element of the flexible array. */
  readonly entry: FieldKind<unknown>;
  /** The flexible member's name. */
  readonly member: string;
  /** The header field that counts the entries. */
  readonly countField: string;
}

/** A C structure as a JavaScript object type: its {@link FieldKind}s and everything derived from them. */
export class StructCodec<T extends object> implements AnyStructCodec {
  /** The C layout the fields are placed by. */
  readonly layout: CLayout;
  /** `struct <tag>`. */
  readonly cName: string;
  /** `sizeof`. */
  readonly size: number;
  /** The layout (for the nested-member check). */
  readonly c: CLayout;
  /** Not an array. */
  readonly count = undefined;
  /** The JavaScript fields in C order. */
  readonly keys: readonly (keyof T & string)[];
  readonly #kinds: FieldKinds<T>;
  readonly #offsets: number[];
  /** Byte ranges of the layout not covered by a field (padding, reserved members): written as zero. */
  readonly #gaps: Array<readonly [number, number]>;
  /** {@link StructCodec.encode}, {@link StructCodec.decode} and {@link StructCodec.zero} compiled for this layout. */
  #compiled: CompiledStruct<T> | undefined;

  /**
   * @param layout - the C layout (from `KVM_LAYOUTS`)
   * @param kinds - one kind per JavaScript field; each must name a member of `layout` of the same C type and size
   * @throws UsageError when a field does not match the layout (a definition bug, caught at import)
   */
  constructor(layout: CLayout, kinds: FieldKinds<T>) {
    this.layout = layout;
    this.c = layout;
    this.cName = `struct ${layout.name}`;
    this.size = layout.size;
    this.#kinds = kinds;
    this.keys = Object.keys(kinds) as (keyof T & string)[];
    this.#offsets = [];
    const covered = new Uint8Array(layout.size);
    for (const k of this.keys) {
      const kind = kinds[k] as FieldKind<unknown>;
      const m = layout.member(k);
      if (m.size !== kind.size) {
        throw new UsageError('ERR_INVALID_ARG', `${layout.name}.${k}: the field is ${kind.size} bytes (${kind.cName}) but the C member is ${m.size}`);
      }
      // `ptr` and `unsigned long` are 8-byte unsigned integers on x86-64, as `__u64` is.
      const norm = (c: CScalar | CLayout): string => (typeof c !== 'string' ? c.name : c === 'ptr' || c === 'ulong' ? 'u64' : c);
      const want = norm(kind.c);
      const have = norm(m.type);
      // A byte array may stand for any scalar member of its size (`__u32 region[1024]` as 4096 bytes), and for a
      // union whose member depends on another field (`kvm_nested_state.hdr`).
      if (want !== have && !(kind.c === 'u8' && (typeof m.type === 'string' || m.type.kind === 'union'))) {
        throw new UsageError('ERR_INVALID_ARG', `${layout.name}.${k}: the field is ${kind.cName} but the C member is ${have}`);
      }
      this.#offsets.push(m.offset);
      covered.fill(1, m.offset, m.offset + m.size);
    }
    this.#gaps = [];
    for (let i = 0; i < covered.length; ) {
      if (covered[i] === 1) {
        i++;
        continue;
      }
      let j = i;
      while (j < covered.length && covered[j] === 0) j++;
      this.#gaps.push([i, j - i]);
      i = j;
    }
  }

  /** The kind of field `k`. */
  kind<K extends keyof T & string>(k: K): FieldKind<T[K]> {
    return this.#kinds[k];
  }

  /** {@link AnyStructCodec.fieldKind}. */
  fieldKind(k: string): FieldKind<unknown> | undefined {
    return (this.keys as readonly string[]).includes(k) ? (this.#kinds[k as keyof T & string] as FieldKind<unknown>) : undefined;
  }

  /** Byte offset of field `k`. */
  offsetOf(k: keyof T & string): number {
    return this.layout.offsetOf(k);
  }

  /** A value with every field zero. */
  zero(): T {
    return (this.#compiled ??= this.#compile()).zero();
  }

  /** A fresh value with every field zero, overridden by `init` (nested values copied, not shared). */
  make(init: Partial<T> = {}): T {
    const out = {} as T;
    for (const k of this.keys) {
      const kind = this.#kinds[k];
      const v = init[k];
      out[k] = v === undefined ? kind.zero() : kind.clone(v as T[typeof k]);
    }
    return out;
  }

  /** A deep, independent copy holding only the structure's fields. */
  clone(v: T): T {
    return this.make(v);
  }

  /** The first problem of `x` as an exact value of the structure, or `undefined`. */
  problem(x: unknown, path: string = this.layout.name): string | undefined {
    if (typeof x !== 'object' || x === null || isArray(x)) return `${path} must be an object`;
    const o = x as Record<string, unknown>;
    for (const k of this.keys) {
      const p = this.#kinds[k].problem(o[k], `${path}.${k}`);
      if (p !== undefined) return p;
    }
    return undefined;
  }

  /**
   * `copy_from_user`: an independent copy of `x` read once, own data properties only. A `Uint8Array` argument is
   * the C structure's bytes (at least `sizeof`). @throws UserFault
   */
  copyIn(x: unknown, path: string = this.layout.name): T {
    if (isRealUint8Array(x)) {
      if (realLength(x) < this.size) throw new UserFault(`${path}: ${realLength(x)} bytes, the structure is ${this.size}`);
      return this.decode(new DataView(x.buffer, x.byteOffset, this.size), 0);
    }
    if (typeof x !== 'object' || x === null || isArray(x)) throw new UserFault(`${path} must be an object`);
    // Straight-line (#compile): each field read through ownData and checked in C order, as a loop over the kinds would.
    return (this.#compiled ??= this.#compile()).copyIn(x, path);
  }

  /**
   * `copy_to_user`: write every field of `v` into `dst` (an object, whose nested objects are written in place;
   * or a `Uint8Array` of at least `sizeof`, which gets the C bytes). @throws UserFault
   */
  copyOut(v: T, dst: unknown, path: string = this.layout.name): void {
    if (isRealUint8Array(dst)) {
      if (realLength(dst) < this.size) throw new UserFault(`${path}: ${realLength(dst)} bytes, the structure is ${this.size}`);
      this.encode(v, new DataView(dst.buffer, dst.byteOffset, this.size), 0);
      return;
    }
    if (typeof dst !== 'object' || dst === null || isArray(dst)) throw new UserFault(`${path} must be an object`);
    // Straight-line (#compile): field by field in C order, as a loop over the kinds would.
    (this.#compiled ??= this.#compile()).copyOut(v, dst, path);
  }

  /**
   * Whether `copyOut` into `dst` can complete without a fault: every field an own writable data property (nested
   * objects checked the same way) or absent from an extensible object; a `Uint8Array` of at least `sizeof`. An
   * ioctl whose effect cannot be undone checks this before it acts, so a read-only destination fails with
   * nothing changed. @throws UserFault
   */
  checkWritable(dst: unknown, path: string = this.layout.name): void {
    if (isRealUint8Array(dst)) {
      if (realLength(dst) < this.size) throw new UserFault(`${path}: ${realLength(dst)} bytes, the structure is ${this.size}`);
      return;
    }
    if (typeof dst !== 'object' || dst === null || isArray(dst)) throw new UserFault(`${path} must be an object`);
    (this.#compiled ??= this.#compile()).checkWritable(dst, path);
  }

  /** {@link FieldKind.copyOut} for a nested structure: into the object already there, or a fresh copy. */
  copyOutField(v: T, holder: Record<string, unknown>, key: string, path: string): void {
    const cur = holder[key];
    if (cur === undefined) holder[key] = this.clone(v);
    else this.copyOut(v, cur, path);
  }

  /** Write `v` as the C structure at `offset` of `view` (padding and reserved members zero). */
  encode(v: T, view: DataView, offset = 0): void {
    (this.#compiled ??= this.#compile()).encode(v, view, offset);
  }

  /** Read the C structure at `offset` of `view`. */
  decode(view: DataView, offset = 0): T {
    return (this.#compiled ??= this.#compile()).decode(view, offset);
  }

  /**
   * Straight-line `encode` / `decode` / `zero` for this layout (one DataView access per scalar field, a call for the
   * others): the state ioctls move hundreds of fields per call, and the generic loop over field kinds costs tens of
   * nanoseconds per field. Generated from the field kinds, so it cannot disagree with them.
   */
  #compile(): CompiledStruct<T> {
    const kinds = this.keys.map((k) => this.#kinds[k] as FieldKind<unknown>);
    const enc: string[] = [];
    const dec: string[] = [];
    const zero: string[] = [];
    this.keys.forEach((k, i) => {
      const key = JSON.stringify(k);
      const at = `o + ${this.#offsets[i] as number}`;
      const op = SCALAR_OPS.get(kinds[i] as FieldKind<unknown>);
      if (op !== undefined) {
        enc.push(op.encode(`v[${key}]`, at));
        dec.push(`${key}: ${op.decode(at)}`);
        zero.push(`${key}: ${op.zero}`);
      } else {
        enc.push(`kinds[${i}].encode(v[${key}], view, ${at});`);
        dec.push(`${key}: kinds[${i}].decode(view, ${at})`);
        zero.push(`${key}: kinds[${i}].zero()`);
      }
    });
    for (const [at, len] of this.#gaps) enc.push(zeroGap(at, len));
    // copyIn: field by field in C order (each read once through ownData, then checked by its kind), into an object
    // literal of one shape; a field's path for a fault's message is made once per path, not per field per call.
    // An integer field's range is checked inline; its kind's copyIn runs only to raise the fault.
    const cin = this.keys.map((k, i) => {
      const read = `ownData(x, ${JSON.stringify(k)}, path)`;
      const at = `path === root ? paths[${i}] : path + ${JSON.stringify(`.${k}`)}`;
      const valid = SCALAR_OPS.get(kinds[i] as FieldKind<unknown>)?.valid;
      if (valid === undefined) return `const f${i} = kinds[${i}].copyIn(${read}, ${at});`;
      return `const v${i} = ${read}; const f${i} = ${valid(`v${i}`)} ? v${i} : kinds[${i}].copyIn(v${i}, ${at});`;
    });
    const lit = this.keys.map((k, i) => `${JSON.stringify(k)}: f${i}`);
    // copyOut and checkWritable: the same field by field in C order. A scalar kind's copyOut is a store into the
    // holder and its checkOut nothing, so they are written out; the others' are called.
    const cout: string[] = [];
    const cw: string[] = [];
    this.keys.forEach((k, i) => {
      const key = JSON.stringify(k);
      const at = `path === root ? paths[${i}] : path + ${JSON.stringify(`.${k}`)}`;
      if (SCALAR_OPS.has(kinds[i] as FieldKind<unknown>)) {
        cout.push(`d[${key}] = v[${key}];`);
        cw.push(`writableSlot(d, ${key}, ${at});`);
      } else {
        cout.push(`kinds[${i}].copyOut(v[${key}], d, ${key}, ${at});`);
        cw.push(`{ const p = ${at}; kinds[${i}].checkOut(writableSlot(d, ${key}, p), p); }`);
      }
    });
    const make = new Function('kinds', 'ownData', 'writableSlot', 'root', 'paths', `return [
      function encode(v, view, o) { ${enc.join(' ')} },
      function decode(view, o) { return { ${dec.join(', ')} }; },
      function zero() { return { ${zero.join(', ')} }; },
      function copyIn(x, path) { ${cin.join(' ')} return { ${lit.join(', ')} }; },
      function copyOut(v, d, path) { ${cout.join(' ')} },
      function checkWritable(d, path) { ${cw.join(' ')} },
    ];`) as (
      kinds: readonly FieldKind<unknown>[],
      own: typeof ownData,
      slot: typeof writableSlot,
      root: string,
      paths: readonly string[],
    ) => [
      CompiledStruct<T>['encode'],
      CompiledStruct<T>['decode'],
      CompiledStruct<T>['zero'],
      CompiledStruct<T>['copyIn'],
      CompiledStruct<T>['copyOut'],
      CompiledStruct<T>['checkWritable'],
    ];
    const root = this.layout.name;
    const [encode, decode, z, copyIn, copyOut, checkWritable] = make(kinds, ownData, writableSlot, root, this.keys.map((k) => `${root}.${k}`));
    return { encode, decode, zero: z, copyIn, copyOut, checkWritable };
  }

  /** The C bytes of `v` (`sizeof` bytes). */
  toBytes(v: T): Uint8Array<ArrayBuffer> {
    const b = new Uint8Array(this.size);
    this.encode(v, new DataView(b.buffer), 0);
    return b;
  }
}

/**
 * A nested structure as a field (its {@link FieldKind}): the codec itself, with `copyOut` writing into the object
 * already in the holder.
 */
export function nested<T extends object>(codec: StructCodec<T>): FieldKind<T> {
  return {
    cName: codec.cName,
    size: codec.size,
    c: codec.layout,
    count: undefined,
    zero: () => codec.zero(),
    clone: (v) => codec.clone(v),
    problem: (v, path) => codec.problem(v, path),
    copyIn: (v, path) => codec.copyIn(v, path),
    copyOut: (v, holder, key, path) => codec.copyOutField(v, holder, key, path),
    checkOut: (cur, path) => {
      if (cur !== undefined) codec.checkWritable(cur, path);
    },
    encode: (v, view, o) => codec.encode(v, view, o),
    decode: (view, o) => codec.decode(view, o),
  };
}

/** Declare the JavaScript view of a C structure. */
export function defineStruct<T extends object>(layout: CLayout, kinds: FieldKinds<T>): StructCodec<T> {
  return new StructCodec<T>(layout, kinds);
}

/**
 * What the kernel's `copy_from_user` / `copy_to_user` of one argument needs: a {@link StructCodec}, or the
 * {@link ScalarArrayCodec} of a pointer to scalars.
 */
export interface UserCodec<T extends object> {
  /** `copy_from_user`. @throws UserFault */
  copyIn(x: unknown, path?: string): T;
  /** Whether `copyOut` into `dst` can complete. @throws UserFault */
  checkWritable(dst: unknown, path?: string): void;
  /** `copy_to_user`. @throws UserFault */
  copyOut(v: T, dst: unknown, path?: string): void;
}

/**
 * An argument that is a pointer to `count` scalars of one C type rather than to a structure (`__u64 *` of
 * KVM_SET_IDENTITY_MAP_ADDR, KVM_X86_SETUP_MCE, KVM_X86_GET_MCE_CAP_SUPPORTED): in JavaScript an array of that many
 * values (`[0xfffbc000n]`), or the C bytes as a `Uint8Array`.
 */
export class ScalarArrayCodec<E> implements AnyStructCodec, UserCodec<E[]> {
  /** The C layout (a structure of the one member, for its size). */
  readonly layout: CLayout;
  /** The C type, e.g. `__u64[1]`. */
  readonly cName: string;
  /** `sizeof`. */
  readonly size: number;
  /** The indices, as property names. */
  readonly keys: readonly string[];
  readonly #elem: FieldKind<E>;
  readonly #kind: FieldKind<E[]>;

  /**
   * @param layout - a C layout of `count` elements (its size is checked)
   * @param elem - the element
   * @param count - how many
   */
  constructor(layout: CLayout, elem: FieldKind<E>, count: number) {
    if (layout.size !== elem.size * count) throw new UsageError('ERR_INVALID_ARG', `${layout.name}: ${layout.size} bytes, not ${count} × ${elem.size}`);
    this.layout = layout;
    this.#elem = elem;
    this.#kind = tuple(elem, count);
    this.cName = this.#kind.cName;
    this.size = this.#kind.size;
    this.keys = Array.from({ length: count }, (_x, i) => String(i));
  }

  /** {@link AnyStructCodec.fieldKind}: the element kind for an index. */
  fieldKind(k: string): FieldKind<unknown> | undefined {
    return this.keys.includes(k) ? (this.#elem as FieldKind<unknown>) : undefined;
  }

  /** Every element zero. */
  zero(): E[] {
    return this.#kind.zero();
  }

  /** `copy_from_user`: own data elements of the right type, or the C bytes. @throws UserFault */
  copyIn(x: unknown, path: string = this.cName): E[] {
    if (isRealUint8Array(x)) {
      if (realLength(x) < this.size) throw new UserFault(`${path}: ${realLength(x)} bytes, the argument is ${this.size}`);
      return this.#kind.decode(new DataView(x.buffer, x.byteOffset, this.size), 0);
    }
    return this.#kind.copyIn(x, path);
  }

  /** Whether {@link ScalarArrayCodec.copyOut} into `dst` can complete. @throws UserFault */
  checkWritable(dst: unknown, path: string = this.cName): void {
    if (isRealUint8Array(dst)) {
      if (realLength(dst) < this.size) throw new UserFault(`${path}: ${realLength(dst)} bytes, the argument is ${this.size}`);
      return;
    }
    if (!isArray(dst)) throw new UserFault(`${path} must be an array of ${this.keys.length} (${this.#elem.cName})`);
    this.#kind.checkOut(dst, path);
  }

  /** `copy_to_user` into an array (element by element) or C bytes. @throws UserFault */
  copyOut(v: E[], dst: unknown, path: string = this.cName): void {
    if (isRealUint8Array(dst)) {
      this.checkWritable(dst, path);
      this.#kind.encode(v, new DataView(dst.buffer, dst.byteOffset, this.size), 0);
      return;
    }
    if (!isArray(dst)) throw new UserFault(`${path} must be an array of ${this.keys.length} (${this.#elem.cName})`);
    this.#kind.copyOut(v, { arg: dst }, 'arg', path);
  }

  /** The C bytes of `v`. */
  toBytes(v: E[]): Uint8Array<ArrayBuffer> {
    const b = new Uint8Array(this.size);
    this.#kind.encode(v, new DataView(b.buffer), 0);
    return b;
  }

  /** Read the elements at `offset` of `view`. */
  decode(view: DataView, offset = 0): E[] {
    return this.#kind.decode(view, offset);
  }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Structures with a flexible array (`struct kvm_msrs { __u32 nmsrs; …; struct kvm_msr_entry entries[]; }`) */
/* ------------------------------------------------------------------------------------------------------ */

/**
 * A structure ending in a flexible array member, as the kernel reads it: the fixed header first
 * (`copy_from_user(&msrs, user, sizeof(msrs))`), then — after the ioctl has checked the count the header gives —
 * that many entries (`memdup_user(user->entries, n * sizeof(entry))`). In JavaScript the header's fields and the
 * entries are one object: `{ nmsrs, entries: [...] }`; as bytes, the entries follow the header at the member's
 * offset.
 */
export class FlexCodec<H extends object, E> implements AnyFlexCodec {
  /** The header (the structure without its flexible member). */
  readonly header: StructCodec<H>;
  /** One entry. */
  readonly entry: FieldKind<E>;
  /** The JavaScript name of the flexible member (`entries`, `indices`). */
  readonly member: string;
  /** The header field that counts the entries (`nmsrs`, `nent`). */
  readonly countField: keyof H & string;
  /** Byte offset of the first entry. */
  readonly entriesOffset: number;

  /**
   * @param header - the fixed part
   * @param countField - the header field holding the number of entries
   * @param member - the flexible member's name in the header's layout
   * @param entry - one element
   */
  constructor(header: StructCodec<H>, countField: keyof H & string, member: string, entry: FieldKind<E>) {
    this.header = header;
    this.countField = countField;
    this.entry = entry;
    this.member = member;
    const m = header.layout.member(member);
    if (m.count !== 0) throw new UsageError('ERR_INVALID_ARG', `${header.layout.name}.${member} is not a flexible array member`);
    if (m.elementSize !== entry.size) throw new UsageError('ERR_INVALID_ARG', `${header.layout.name}.${member}: entries are ${m.elementSize} bytes, not ${entry.size}`);
    this.entriesOffset = m.offset;
  }

  /** `copy_from_user` of the header. @throws UserFault */
  copyInHeader(x: unknown, path: string = this.header.layout.name): H {
    return this.header.copyIn(x, path);
  }

  /** `memdup_user` of the first `n` entries. @throws UserFault */
  copyInEntries(x: unknown, n: number, path: string = this.header.layout.name): E[] {
    const out: E[] = [];
    const size = this.entry.size;
    if (isRealUint8Array(x)) {
      const need = this.entriesOffset + n * size;
      if (realLength(x) < need) throw new UserFault(`${path}: ${realLength(x)} bytes, ${n} entries need ${need}`);
      const view = new DataView(x.buffer, x.byteOffset, need);
      for (let i = 0; i < n; i++) out.push(this.entry.decode(view, this.entriesOffset + i * size));
      return out;
    }
    const where = `${path}.${this.member}`;
    const list = ownData(x, this.member, path);
    if (!isArray(list)) throw new UserFault(`${where} must be an array`);
    const len = ownData(list, 'length', where) as number;
    if (len < n) throw new UserFault(`${where} has ${len} entries, the header says ${n}`);
    for (let i = 0; i < n; i++) out.push(this.entry.copyIn(ownData(list, String(i), where), `${where}[${i}]`));
    return out;
  }

  /** Whether {@link FlexCodec.copyOutEntries} of `n` entries into `dst` can complete. @throws UserFault */
  checkEntriesWritable(dst: unknown, n: number, path: string = this.header.layout.name): void {
    if (isRealUint8Array(dst)) {
      const need = this.entriesOffset + n * this.entry.size;
      if (realLength(dst) < need) throw new UserFault(`${path}: ${realLength(dst)} bytes, ${n} entries need ${need}`);
      return;
    }
    if (typeof dst !== 'object' || dst === null) throw new UserFault(`${path} must be an object`);
    const where = `${path}.${this.member}`;
    const list = writableSlot(dst, this.member, where);
    if (list === undefined) return;
    if (!isArray(list)) throw new UserFault(`${where} must be an array`);
    for (let i = 0; i < n; i++) this.entry.checkOut(writableSlot(list, String(i), `${where}[${i}]`), `${where}[${i}]`);
  }

  /**
   * `copy_to_user` of `entries` into the caller's flexible array. A JavaScript caller's array is filled in place
   * and grows when it is shorter (it is the caller's buffer); the bytes must have room. @throws UserFault
   */
  copyOutEntries(entries: readonly E[], dst: unknown, path: string = this.header.layout.name): void {
    const size = this.entry.size;
    if (isRealUint8Array(dst)) {
      const need = this.entriesOffset + entries.length * size;
      if (realLength(dst) < need) throw new UserFault(`${path}: ${realLength(dst)} bytes, ${entries.length} entries need ${need}`);
      const view = new DataView(dst.buffer, dst.byteOffset, need);
      entries.forEach((e, i) => this.entry.encode(e, view, this.entriesOffset + i * size));
      return;
    }
    if (typeof dst !== 'object' || dst === null) throw new UserFault(`${path} must be an object`);
    const holder = dst as Record<string, unknown>;
    let list = holder[this.member];
    if (list === undefined) {
      list = [];
      holder[this.member] = list;
    }
    if (!isArray(list)) throw new UserFault(`${path}.${this.member} must be an array`);
    const l = list as unknown as Record<string, unknown>;
    entries.forEach((e, i) => this.entry.copyOut(e, l, String(i), `${path}.${this.member}[${i}]`));
  }

  /** A fresh value: the header zeroed (overridden by `init`) with `entries` copied. */
  make(init: Partial<H> = {}, entries: readonly E[] = []): H & Record<string, E[]> {
    const h = this.header.make(init) as H & Record<string, E[]>;
    (h as Record<string, unknown>)[this.member] = entries.map((e) => this.entry.clone(e));
    return h;
  }

  /** The C bytes of a header and its entries. */
  toBytes(h: H, entries: readonly E[]): Uint8Array<ArrayBuffer> {
    const size = this.entry.size;
    const b = new Uint8Array(this.entriesOffset + entries.length * size);
    const view = new DataView(b.buffer);
    this.header.encode(h, view, 0);
    entries.forEach((e, i) => this.entry.encode(e, view, this.entriesOffset + i * size));
    return b;
  }

  /** Read a header and its entries (as many as the header's count, or `n`) from C bytes. */
  decode(view: DataView, offset = 0, n?: number): { header: H; entries: E[] } {
    const header = this.header.decode(view, offset);
    const count = n ?? (header[this.countField] as unknown as number);
    const entries: E[] = [];
    for (let i = 0; i < count; i++) entries.push(this.entry.decode(view, offset + this.entriesOffset + i * this.entry.size));
    return { header, entries };
  }
}

/* ------------------------------------------------------------------------------------------------------ */
/* From a fault to the ioctl's error                                                                        */
/* ------------------------------------------------------------------------------------------------------ */

/**
 * Run `read` (a copy from or to the caller's memory) and turn whatever it throws into EFAULT for `op`: a
 * {@link UserFault}, or an exception the caller's own objects threw at us (a Proxy trap, a frozen object's
 * TypeError, a setter). Those are what a bad user pointer is to the kernel.
 */
export function userAccess<R>(op: string, read: () => R): R {
  try {
    return read();
  } catch (e) {
    throw userAccessError(e, op);
  }
}

/** What {@link userAccess} throws for `e`: a `KernelError` as it is, anything else as EFAULT for `op`. */
function userAccessError(e: unknown, op: string): unknown {
  if (e instanceof KernelError) return e;
  const why = e instanceof UserFault ? e.message : `the argument could not be accessed (${e instanceof Error ? e.message : String(e)})`;
  return new KernelError('EFAULT', op, `bad argument: ${why}`);
}

/** `copy_from_user` of a whole structure for `op`: the copy, or EFAULT. */
export function copyFromUser<T extends object>(codec: UserCodec<T>, arg: unknown, op: string): T {
  // userAccess written out: no closure per copy (every ioctl with a structure argument comes through here).
  try {
    return codec.copyIn(arg);
  } catch (e) {
    throw userAccessError(e, op);
  }
}

/** {@link StructCodec.checkWritable} for `op`, or EFAULT. */
export function checkUserWritable<T extends object>(codec: UserCodec<T>, arg: unknown, op: string): void {
  try {
    codec.checkWritable(arg);
  } catch (e) {
    throw userAccessError(e, op);
  }
}

/**
 * `copy_to_user` of a whole structure for `op`, or EFAULT. The destination is checked first, so a frozen or
 * read-only one (or a nested part of it) fails with nothing written.
 */
export function copyToUser<T extends object>(codec: UserCodec<T>, v: T, arg: unknown, op: string): void {
  try {
    codec.checkWritable(arg);
    codec.copyOut(v, arg);
  } catch (e) {
    throw userAccessError(e, op);
  }
}

/**
 * `copy_to_user` of a flexible structure's header and entries for `op`, or EFAULT. Both destinations are checked
 * before either is written, so a read-only count or entry fails with nothing written.
 */
export function copyFlexToUser<H extends object, E>(codec: FlexCodec<H, E>, header: H, entries: readonly E[], arg: unknown, op: string): void {
  userAccess(op, () => {
    codec.header.checkWritable(arg);
    codec.checkEntriesWritable(arg, entries.length);
    codec.copyOutEntries(entries, arg);
    codec.header.copyOut(header, arg);
  });
}
