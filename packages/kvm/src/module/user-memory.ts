/**
 * What a user pointer inside an ioctl argument names (`kvm_msr_filter_range.bitmap`, `kvm_dirty_log.dirty_bitmap`,
 * `kvm_device_attr.addr`): the caller's own buffer (a `Uint8Array`) or an address in the calling process's memory,
 * `copy_from_user` / `copy_to_user` on it failing with EFAULT when it is not (wholly) mapped.
 *
 * @module
 */
import { KernelError, type Process } from '@vac/core';
import { isRealUint8Array } from '../abi/codec.js';

/**
 * The `size` bytes a user pointer names.
 * @param proc - the calling process (for an address)
 * @param ptr - the buffer, or an address
 * @throws KernelError EFAULT when there are not `size` bytes there
 */
export function userBuffer(proc: Process | undefined, ptr: Uint8Array | number, size: number, op: string): Uint8Array {
  if (isRealUint8Array(ptr)) {
    if (ptr.length < size) throw new KernelError('EFAULT', op, `the buffer holds ${ptr.length} bytes, ${size} are needed`);
    return ptr.subarray(0, size);
  }
  const mem = proc === undefined || !Number.isSafeInteger(ptr) ? undefined : proc.userMemory(ptr, size);
  if (mem === undefined) throw new KernelError('EFAULT', op, `no ${size} bytes mapped at 0x${ptr.toString(16)}`);
  return mem;
}
