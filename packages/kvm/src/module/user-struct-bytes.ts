/**
 * A structure argument read and written in place: when the caller passed the C bytes (a `Uint8Array`), the kernel
 * side can work on a view of them — no decoded copy, no object to encode back — as Linux's `copy_from_user` into a
 * stack buffer and `copy_to_user` from one amount to. The object form of the same argument keeps the codec's copy.
 *
 * @module
 */
import { checkUserWritable, isRealUint8Array, type StructCodec } from '../abi/codec.js';

/**
 * `sizeof(*codec)` bytes of `arg` as a `DataView` when `arg` is the C structure, `undefined` for the object form.
 * @throws KernelError EFAULT when the bytes are fewer than `sizeof`, as the codec's own copy says
 */
export function userStructView<T extends object>(codec: StructCodec<T>, arg: unknown, op: string): DataView | undefined {
  if (!isRealUint8Array(arg)) return undefined;
  checkUserWritable(codec, arg, op);
  return new DataView(arg.buffer, arg.byteOffset, codec.size);
}

/**
 * `arg` itself when it is the C structure (at least `sizeof(*codec)` bytes), `undefined` for the object form.
 * @throws KernelError EFAULT when the bytes are fewer than `sizeof`, as the codec's own copy says
 */
export function userStructBytes<T extends object>(codec: StructCodec<T>, arg: unknown, op: string): Uint8Array | undefined {
  if (!isRealUint8Array(arg)) return undefined;
  checkUserWritable(codec, arg, op);
  return arg;
}
