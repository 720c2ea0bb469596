/**
 * Naming a bad argument in an error message without running the caller's code: no `toString`, no `valueOf`, no
 * getter or Proxy trap is touched (a template literal of an object would call them; of a bigint mixed into
 * arithmetic, or of a symbol, it would throw a TypeError of its own).
 *
 * @module
 */

/** `"text"`, `12`, `12n`, `Symbol(x)`, `null`, `undefined`, `an object`, `an array`, `a function`. */
export function describeArg(v: unknown): string {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'bigint':
      return `${v}n`;
    case 'symbol':
      return v.toString();
    case 'function':
      return 'a function';
    case 'object':
      return v === null ? 'null' : Array.isArray(v) ? 'an array' : 'an object';
    default:
      return String(v);
  }
}
