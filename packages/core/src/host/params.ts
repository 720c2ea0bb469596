/**
 * Module parameters: typed specs, parsing as the kernel's `param_set_*` helpers do, and the text shown in
 * `/sys/module/<name>/parameters/<param>` (`param_get_*`).
 *
 * @module
 */
import { UsageError } from '../errors.js';

/** The spec of one module parameter. `T` is the parsed value type. */
export interface ParamSpec<T = unknown> {
  /** The type as `modinfo` shows it: `bool`, `int`, `uint`, `charp`, or a custom name. */
  readonly type: string;
  /** The value when the parameter is not given. */
  readonly defaultValue: T;
  /** `MODULE_PARM_DESC`. */
  readonly description: string;
  /** Parse the text given at load time; `undefined` means ill-typed (the load fails with EINVAL). */
  parse(raw: string): T | undefined;
  /** The text of the sysfs file. */
  show(value: T): string;
}

/** A module's parameter specs by name. */
export type ParamSpecs = Readonly<Record<string, ParamSpec>>;

/** The parsed values of a module's parameters. */
export type ParamValues<P extends ParamSpecs> = { readonly [K in keyof P]: P[K] extends ParamSpec<infer T> ? T : never };

/** What a caller may pass for a parameter at load time (turned into text, as `insmod x p=v` would). */
export type ParamInput = string | number | boolean | bigint;

/** Load-time parameters by name. */
export type ParamInputs = Readonly<Record<string, ParamInput>>;

/**
 * Turn a caller's value into the text the kernel would see on the command line. Only the four primitive kinds are
 * values: nothing of the caller's (a `toString`, a `valueOf`) runs.
 * @throws {@link UsageError} ERR_INVALID_ARG for anything else
 */
export function paramText(v: ParamInput, name = 'a parameter'): string {
  switch (typeof v) {
    case 'boolean':
      return v ? 'Y' : 'N';
    case 'string':
      return v;
    case 'number':
    case 'bigint':
      return `${v}`;
    default:
      throw new UsageError('ERR_INVALID_ARG', `the value of ${name} must be a string, number, boolean or bigint, got ${v === null ? 'null' : typeof v}`);
  }
}

/**
 * The load-time parameters as the kernel gets them: the command line's text, copied once, before the load changes
 * anything (`load_module` copies `uargs` with `strndup_user` first). Each own enumerable property is read once; a
 * value that is not a primitive is refused, so no caller code runs inside the load.
 * @throws {@link UsageError} ERR_INVALID_ARG (not an object, or a value of the wrong kind)
 */
export function paramTexts(params: unknown, module: string): Readonly<Record<string, string>> {
  if (params === undefined) return {};
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new UsageError('ERR_INVALID_ARG', `${module}: parameters must be an object of name → value, got ${params === null ? 'null' : Array.isArray(params) ? 'an array' : typeof params}`);
  }
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const key of Object.keys(params)) out[key] = paramText((params as Record<string, ParamInput>)[key] as ParamInput, `${module} parameter '${key}'`);
  return out;
}

/**
 * `kstrtobool` (lib/kstrtox.c): `y`/`Y`/`1`/`on`/`t`… are true, `n`/`N`/`0`/`off`/`f`… false.
 * @returns the boolean, or `undefined` when the text is not a boolean
 */
export function kstrtobool(s: string): boolean | undefined {
  const c0 = s[0];
  switch (c0) {
    case 'y':
    case 'Y':
    case 't':
    case 'T':
    case '1':
      return true;
    case 'n':
    case 'N':
    case 'f':
    case 'F':
    case '0':
      return false;
    case 'o':
    case 'O':
      if (s[1] === 'n' || s[1] === 'N') return true;
      if (s[1] === 'f' || s[1] === 'F') return false;
      return undefined;
    default:
      return undefined;
  }
}

/** `kstrtoll` with base 0 (`0x` hex, leading-`0` octal, else decimal). */
export function kstrtoll(s: string): bigint | undefined {
  const m = /^([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\n?$/.exec(s);
  if (m === null) return undefined;
  const sign = m[1] === '-' ? -1n : 1n;
  const body = m[2] ?? '';
  let v: bigint;
  if (body.startsWith('0x') || body.startsWith('0X')) v = BigInt(body);
  else if (body.length > 1 && body.startsWith('0')) v = BigInt(`0o${body.slice(1)}`);
  else v = BigInt(body);
  return sign * v;
}

/** A `bool` parameter (`module_param(x, bool, 0444)`); sysfs shows `Y` or `N`. */
export function boolParam(defaultValue: boolean, description: string): ParamSpec<boolean> {
  return { type: 'bool', defaultValue, description, parse: kstrtobool, show: (v) => (v ? 'Y' : 'N') };
}

function integerParam(type: string, min: bigint, max: bigint, defaultValue: number, description: string): ParamSpec<number> {
  return {
    type,
    defaultValue,
    description,
    parse(raw) {
      // Unsigned types parse with kstrtoull, which takes no '-' at all (so "-0" is EINVAL too).
      if (min >= 0n && raw.startsWith('-')) return undefined;
      const v = kstrtoll(raw);
      if (v === undefined || v < min || v > max) return undefined;
      return Number(v);
    },
    show: (v) => String(v),
  };
}

/** An `int` parameter (32-bit signed, `param_set_int`). */
export function intParam(defaultValue: number, description: string): ParamSpec<number> {
  return integerParam('int', -(2n ** 31n), 2n ** 31n - 1n, defaultValue, description);
}

/** A `uint` parameter (32-bit unsigned, `param_set_uint`). */
export function uintParam(defaultValue: number, description: string): ParamSpec<number> {
  return integerParam('uint', 0n, 2n ** 32n - 1n, defaultValue, description);
}

/** A `charp` parameter (any string). */
export function charpParam(defaultValue: string, description: string): ParamSpec<string> {
  return { type: 'charp', defaultValue, description, parse: (raw) => raw, show: (v) => v };
}

/**
 * A parameter that takes one of a fixed set of words, as parameters with a custom `kernel_param_ops` do
 * (e.g. kvm_intel's `vmentry_l1d_flush`: `always`, `cond`, `never`).
 */
export function enumParam<const V extends string>(values: readonly V[], defaultValue: V, description: string): ParamSpec<V> {
  return {
    type: 'string',
    defaultValue,
    description,
    parse: (raw) => {
      const w = raw.trim();
      return (values as readonly string[]).includes(w) ? (w as V) : undefined;
    },
    show: (v) => v,
  };
}
