/**
 * The shape of an ioctl handler and of the tables the three KVM files dispatch through: one entry per ioctl,
 * with its Linux name, request number, what its argument is (a value, or a structure read in, written out or
 * both — with the `StructCodec` / `FlexCodec` that copies it), and the handler.
 *
 * The tables are what `fops.ts` dispatches on (`kvm_dev_ioctl` / `kvm_vm_ioctl` / `kvm_vcpu_ioctl` and their x86
 * `kvm_arch_*_ioctl` defaults), what the argument test suite walks to try every ioctl with bad arguments, and
 * what docs/abi.md is checked against.
 *
 * @module
 */
import { KernelError, type Process } from '@vac/core';
import type { AnyFlexCodec, AnyStructCodec } from '../abi/codec.js';

/** Which KVM file an ioctl is made on. */
export type IoctlFd = 'system' | 'vm' | 'vcpu';

/**
 * What an ioctl's argument is.
 *
 * - `none`: `_IO` with no argument (whatever is passed is ignored, or must be 0 where Linux checks it);
 * - `value`: `_IO`/`_IOW` whose `unsigned long` argument is the value itself (a cap number, an address, a count);
 * - `in` / `out` / `inout`: a pointer to a structure the kernel reads (`copy_from_user`), writes (`copy_to_user`)
 *   or both; `codec` describes it (a {@link FlexCodec} when it ends in a flexible array).
 */
export type IoctlArgSpec =
  | { readonly dir: 'none' }
  | { readonly dir: 'value' }
  | {
      readonly dir: 'in' | 'out' | 'inout';
      readonly codec: AnyStructCodec | AnyFlexCodec;
      /**
       * For a structure with a flexible array, how the kernel uses its two parts when they differ from `dir`: the
       * header (with the count) and the entries. KVM_GET_MSRS reads the header and reads and writes the entries;
       * KVM_GET_MSR_INDEX_LIST reads and writes the header and only writes the entries.
       */
      readonly flex?: { readonly header: 'in' | 'inout'; readonly entries: 'in' | 'out' | 'inout' };
    };

/** One ioctl of one KVM file. `C` is what the handler works on (the module, a VM, a vCPU). */
export interface IoctlDef<C> {
  /** The Linux name, e.g. `KVM_GET_MSRS`. */
  readonly name: string;
  /** The request number. */
  readonly request: number;
  /** What the argument is. */
  readonly arg: IoctlArgSpec;
  /**
   * Run it: copy the argument in, validate the copy, apply it, copy results out.
   * @returns the ioctl's non-negative result
   * @throws KernelError with Linux's errno
   */
  run(ctx: C, arg: unknown, proc: Process): number;
}

/** A table of ioctls by request number. */
export type IoctlTable<C> = ReadonlyMap<number, IoctlDef<C>>;

/** Build a table, refusing two entries for one request (a definition bug). */
export function ioctlTable<C>(defs: readonly IoctlDef<C>[]): IoctlTable<C> {
  const m = new Map<number, IoctlDef<C>>();
  for (const d of defs) {
    if (m.has(d.request)) throw new Error(`two handlers for ioctl ${d.name} (0x${d.request.toString(16)})`);
    m.set(d.request, d);
  }
  return m;
}

/**
 * The `unsigned long arg` of an ioctl: an integer that fits in 64 bits (a negative one is its two's
 * complement, as the C cast makes it). Anything else — a value C could not pass, such as 2n ** 64n — is
 * EINVAL, never silently truncated.
 */
export function valueArg(arg: unknown, op: string): number {
  if (arg === undefined) return 0;
  if (typeof arg === 'number' && Number.isInteger(arg) && arg >= -(2 ** 63) && arg < 2 ** 64) return arg < 0 ? 2 ** 64 + arg : arg;
  if (typeof arg === 'bigint' && arg >= -(2n ** 63n) && arg < 2n ** 64n) return Number(BigInt.asUintN(64, arg));
  throw new KernelError('EINVAL', op, 'the argument must be an integer that fits in an unsigned long');
}

/** {@link valueArg} as an exact 64-bit value (for arguments that are addresses or frequencies). */
export function valueArg64(arg: unknown, op: string): bigint {
  if (arg === undefined) return 0n;
  if (typeof arg === 'number' && Number.isInteger(arg) && arg >= -(2 ** 63) && arg < 2 ** 64) return BigInt.asUintN(64, BigInt(arg));
  if (typeof arg === 'bigint' && arg >= -(2n ** 63n) && arg < 2n ** 64n) return BigInt.asUintN(64, arg);
  throw new KernelError('EINVAL', op, 'the argument must be an integer that fits in an unsigned long');
}
