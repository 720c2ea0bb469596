/**
 * The Linux ioctl request encoding (`include/uapi/asm-generic/ioctl.h`, used unchanged by x86).
 *
 * A request is a 32-bit number: bits 0–7 are the command number (`nr`), bits 8–15 the driver's type byte
 * (`KVMIO` = 0xAE for KVM), bits 16–29 the size of the argument structure and bits 30–31 the direction
 * (`_IOC_WRITE` = 1 when user space passes data in, `_IOC_READ` = 2 when the kernel passes data out).
 *
 * Every helper here returns an unsigned 32-bit number (`0x8090AE81`, never a negative int32), so requests
 * compare with `===` against the literals printed by strace or found in C headers. Unlike the C macros,
 * the encoders reject out-of-range fields with a `UsageError` instead of silently overlapping bits.
 *
 * @module
 */

import { UsageError } from '@vac/core';

/** Width of the command-number field. */
export const _IOC_NRBITS = 8;
/** Width of the type field. */
export const _IOC_TYPEBITS = 8;
/** Width of the size field (x86 uses the generic 14 bits, so arguments are at most 16 KiB − 1). */
export const _IOC_SIZEBITS = 14;
/** Width of the direction field. */
export const _IOC_DIRBITS = 2;

/** Mask of the command-number field (after shifting). */
export const _IOC_NRMASK = (1 << _IOC_NRBITS) - 1;
/** Mask of the type field (after shifting). */
export const _IOC_TYPEMASK = (1 << _IOC_TYPEBITS) - 1;
/** Mask of the size field (after shifting). */
export const _IOC_SIZEMASK = (1 << _IOC_SIZEBITS) - 1;
/** Mask of the direction field (after shifting). */
export const _IOC_DIRMASK = (1 << _IOC_DIRBITS) - 1;

/** Bit position of the command number. */
export const _IOC_NRSHIFT = 0;
/** Bit position of the type byte. */
export const _IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS;
/** Bit position of the size field. */
export const _IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS;
/** Bit position of the direction field. */
export const _IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS;

/** Direction: no data transfer. */
export const _IOC_NONE = 0;
/** Direction bit: user space writes, the kernel reads (`copy_from_user`). */
export const _IOC_WRITE = 1;
/** Direction bit: the kernel writes, user space reads (`copy_to_user`). */
export const _IOC_READ = 2;

/** The ioctl type byte of KVM (`#define KVMIO 0xAE`). */
export const KVMIO = 0xae;

function checkField(what: string, value: number, mask: number): void {
  if (!Number.isInteger(value) || value < 0 || value > mask) {
    throw new UsageError('ERR_OUT_OF_RANGE', `ioctl ${what} ${String(value)} does not fit in its field (0..${mask})`);
  }
}

/**
 * Compose a request from its four fields (`_IOC(dir, type, nr, size)`).
 *
 * @param dir - `_IOC_NONE`, `_IOC_WRITE`, `_IOC_READ` or `_IOC_READ | _IOC_WRITE`
 * @param type - type byte, e.g. {@link KVMIO}
 * @param nr - command number
 * @param size - `sizeof` the argument (0 for none)
 * @returns the request as an unsigned 32-bit number
 */
export function _IOC(dir: number, type: number, nr: number, size: number): number {
  checkField('direction', dir, _IOC_DIRMASK);
  checkField('type', type, _IOC_TYPEMASK);
  checkField('number', nr, _IOC_NRMASK);
  checkField('size', size, _IOC_SIZEMASK);
  return ((dir << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT) | (type << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT)) >>> 0;
}

/** A request without an argument structure (`_IO(type, nr)`); any argument is passed by value. */
export function _IO(type: number, nr: number): number {
  return _IOC(_IOC_NONE, type, nr, 0);
}

/** A request whose argument the kernel fills in (`_IOR(type, nr, size)`); `size` is `sizeof` the argument. */
export function _IOR(type: number, nr: number, size: number): number {
  return _IOC(_IOC_READ, type, nr, size);
}

/** A request whose argument the kernel reads (`_IOW(type, nr, size)`); `size` is `sizeof` the argument. */
export function _IOW(type: number, nr: number, size: number): number {
  return _IOC(_IOC_WRITE, type, nr, size);
}

/** A request whose argument goes both ways (`_IOWR(type, nr, size)`); `size` is `sizeof` the argument. */
export function _IOWR(type: number, nr: number, size: number): number {
  return _IOC(_IOC_READ | _IOC_WRITE, type, nr, size);
}

/** The direction bits of a request (`_IOC_DIR`). */
export function _IOC_DIR(request: number): number {
  return (request >>> _IOC_DIRSHIFT) & _IOC_DIRMASK;
}

/** The type byte of a request (`_IOC_TYPE`); 0xAE for every KVM ioctl. */
export function _IOC_TYPE(request: number): number {
  return (request >>> _IOC_TYPESHIFT) & _IOC_TYPEMASK;
}

/** The command number of a request (`_IOC_NR`). */
export function _IOC_NR(request: number): number {
  return (request >>> _IOC_NRSHIFT) & _IOC_NRMASK;
}

/** The argument size encoded in a request (`_IOC_SIZE`). */
export function _IOC_SIZE(request: number): number {
  return (request >>> _IOC_SIZESHIFT) & _IOC_SIZEMASK;
}

/**
 * Render a request as the macro call that would produce it, e.g. `_IOWR(0xae, 0x99, 8)`, for messages about
 * requests that have no known name.
 */
export function formatIoctl(request: number): string {
  const req = request >>> 0;
  const type = `0x${_IOC_TYPE(req).toString(16)}`;
  const nr = `0x${_IOC_NR(req).toString(16).padStart(2, '0')}`;
  const size = _IOC_SIZE(req);
  switch (_IOC_DIR(req)) {
    case _IOC_NONE:
      return size === 0 ? `_IO(${type}, ${nr})` : `_IOC(0, ${type}, ${nr}, ${size})`;
    case _IOC_READ:
      return `_IOR(${type}, ${nr}, ${size})`;
    case _IOC_WRITE:
      return `_IOW(${type}, ${nr}, ${size})`;
    default:
      return `_IOWR(${type}, ${nr}, ${size})`;
  }
}
