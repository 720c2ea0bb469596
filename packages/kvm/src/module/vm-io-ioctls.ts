/**
 * The VM ioctls for guest I/O the kernel handles and for guest memory: KVM_IOEVENTFD (virt/kvm/eventfd.c
 * `kvm_ioeventfd`), KVM_REGISTER/UNREGISTER_COALESCED_MMIO (virt/kvm/coalesced_mmio.c), KVM_GET_DIRTY_LOG /
 * KVM_CLEAR_DIRTY_LOG (virt/kvm/kvm_main.c) and KVM_SET_USER_MEMORY_REGION2 without guest_memfd.
 *
 * @module
 */
import { KernelError, eventFdOf } from '@vac/core';
import {
  KVM_CLEAR_DIRTY_LOG,
  KVM_GET_DIRTY_LOG,
  KVM_IOEVENTFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_REGISTER_COALESCED_MMIO,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_USER_MEMORY_REGION2,
  KVM_UNREGISTER_COALESCED_MMIO,
} from '../abi/constants.js';
import {
  KVM_IOEVENTFD_FLAG_DATAMATCH,
  KVM_IOEVENTFD_FLAG_DEASSIGN,
  KVM_IOEVENTFD_FLAG_PIO,
  KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY,
  KVM_IOEVENTFD_VALID_FLAG_MASK,
} from '../abi/constants-x86.js';
import { copyFromUser, userAccess } from '../abi/codec.js';
import { KVM_CLEAR_DIRTY_LOG_CODEC, KVM_COALESCED_MMIO_ZONE_CODEC, KVM_DIRTY_LOG_CODEC, KVM_IOEVENTFD_CODEC } from '../abi/structs-x86.js';
import { dirtyBitmapBytes, loggingSlot, manualProtect, requireDirtyBitmap, updateDirtyLogging } from './dirty-log.js';
import type { VmFile } from './files.js';
import type { IoctlDef } from './ioctl-table.js';
import { inZone } from './kernel-io.js';
import { MEMORY_REGION2_ARG_CODEC, MEMORY_REGION_ARG_CODEC, type MemoryRegionArg } from './memslot-region.js';
import { userBuffer } from './user-memory.js';
import { vmArch } from './vm-arch.js';
import type { Vm } from './vm.js';

/** `kvm_set_memory_region` and what follows it here (dirty bitmaps). */
function setMemoryRegion(vm: Vm, mem: MemoryRegionArg): number {
  const change = vm.memslots.set(mem, vm.owner);
  // A call that changes nothing refreshes the dirty-logging views as a flags-only change does.
  updateDirtyLogging(vm, mem.slot & 0xffff, mem.slot >>> 16, change === 'none' ? 'flags' : change);
  return 0;
}

/** The I/O and memory VM ioctls. */
export const VM_IO_IOCTLS: readonly IoctlDef<VmFile>[] = [
  {
    name: 'KVM_SET_USER_MEMORY_REGION',
    request: KVM_SET_USER_MEMORY_REGION,
    arg: { dir: 'in', codec: MEMORY_REGION_ARG_CODEC },
    run: ({ vm }, arg) => setMemoryRegion(vm, copyFromUser(MEMORY_REGION_ARG_CODEC, arg, 'KVM_SET_USER_MEMORY_REGION')),
  },
  {
    name: 'KVM_SET_USER_MEMORY_REGION2',
    request: KVM_SET_USER_MEMORY_REGION2,
    arg: { dir: 'in', codec: MEMORY_REGION2_ARG_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_SET_USER_MEMORY_REGION2';
      const m = copyFromUser(MEMORY_REGION2_ARG_CODEC, arg, op);
      // check_memory_region_flags: KVM_MEM_GUEST_MEMFD only for VMs with private memory, which default VMs are not.
      if ((m.flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0) throw new KernelError('EINVAL', op, `invalid flags 0x${m.flags.toString(16)}`);
      return setMemoryRegion(vm, { slot: m.slot, flags: m.flags, guest_phys_addr: m.guest_phys_addr, memory_size: m.memory_size, userspace_addr: m.userspace_addr });
    },
  },
  {
    name: 'KVM_IOEVENTFD',
    request: KVM_IOEVENTFD,
    arg: { dir: 'in', codec: KVM_IOEVENTFD_CODEC },
    run({ vm }, arg, proc) {
      const op = 'KVM_IOEVENTFD';
      const io = copyFromUser(KVM_IOEVENTFD_CODEC, arg, op);
      const bus = (io.flags & KVM_IOEVENTFD_FLAG_PIO) !== 0 ? 'pio' : (io.flags & KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY) !== 0 ? 'ccw' : 'mmio';
      const a = vmArch(vm);
      const eventfd = (): import('@vac/core').EventFd => {
        // eventfd_ctx_fdget: EBADF for a bad fd, EINVAL for a file that is not an eventfd
        const ctx = eventFdOf(proc.file(io.fd));
        if (ctx === undefined) throw new KernelError('EINVAL', op, `fd ${io.fd} is not an eventfd`);
        return ctx;
      };
      if ((io.flags & KVM_IOEVENTFD_FLAG_DEASSIGN) !== 0) {
        // kvm_deassign_ioeventfd_idx
        const ctx = eventfd();
        const wildcard = (io.flags & KVM_IOEVENTFD_FLAG_DATAMATCH) === 0;
        const i = a.ioeventfds.findIndex(
          (p) => p.bus === bus && p.eventfd === ctx && p.addr === io.addr && p.length === io.len && (p.datamatch === undefined) === wildcard && (wildcard || p.datamatch === io.datamatch),
        );
        if (i < 0) throw new KernelError('ENOENT', op, 'no such ioeventfd');
        a.ioeventfds.splice(i, 1);
        vm.kernelIo = a.ioeventfds.length > 0 || a.coalesced.length > 0;
        return 0;
      }
      // kvm_assign_ioeventfd
      if (![0, 1, 2, 4, 8].includes(io.len)) throw new KernelError('EINVAL', op, `length ${io.len} (0, 1, 2, 4 or 8)`);
      if (io.addr + io.len >= 2 ** 64) throw new KernelError('EINVAL', op, 'the range wraps');
      if ((io.flags & ~KVM_IOEVENTFD_VALID_FLAG_MASK) !== 0) throw new KernelError('EINVAL', op, `unknown flags 0x${io.flags.toString(16)}`);
      if (io.len === 0 && (io.flags & KVM_IOEVENTFD_FLAG_DATAMATCH) !== 0) throw new KernelError('EINVAL', op, 'a length-0 ioeventfd cannot match data');
      const ctx = eventfd();
      const datamatch = (io.flags & KVM_IOEVENTFD_FLAG_DATAMATCH) !== 0 ? io.datamatch : undefined;
      // ioeventfd_check_collision
      const clash = a.ioeventfds.some(
        (p) => p.bus === bus && p.addr === io.addr && (p.length === 0 || io.len === 0 || (p.length === io.len && (p.datamatch === undefined || datamatch === undefined || p.datamatch === datamatch))),
      );
      if (clash) throw new KernelError('EEXIST', op, 'an ioeventfd matches the same accesses');
      a.ioeventfds.push({ bus, addr: io.addr, length: io.len, datamatch, eventfd: ctx });
      vm.kernelIo = true;
      return 0;
    },
  },
  {
    name: 'KVM_REGISTER_COALESCED_MMIO',
    request: KVM_REGISTER_COALESCED_MMIO,
    arg: { dir: 'in', codec: KVM_COALESCED_MMIO_ZONE_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_REGISTER_COALESCED_MMIO';
      const z = copyFromUser(KVM_COALESCED_MMIO_ZONE_CODEC, arg, op);
      if (z.pio !== 0 && z.pio !== 1) throw new KernelError('EINVAL', op, `pio must be 0 or 1, not ${z.pio}`);
      vmArch(vm).coalesced.push({ addr: z.addr, size: z.size, pio: z.pio === 1 });
      vm.kernelIo = true;
      return 0;
    },
  },
  {
    name: 'KVM_UNREGISTER_COALESCED_MMIO',
    request: KVM_UNREGISTER_COALESCED_MMIO,
    arg: { dir: 'in', codec: KVM_COALESCED_MMIO_ZONE_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_UNREGISTER_COALESCED_MMIO';
      const z = copyFromUser(KVM_COALESCED_MMIO_ZONE_CODEC, arg, op);
      if (z.pio !== 0 && z.pio !== 1) throw new KernelError('EINVAL', op, `pio must be 0 or 1, not ${z.pio}`);
      // Every registered zone inside the given range goes; none is not an error.
      const a = vmArch(vm);
      for (let i = a.coalesced.length - 1; i >= 0; i--) {
        const d = a.coalesced[i];
        if (d !== undefined && d.pio === (z.pio === 1) && inZone(d, z.addr, z.size)) a.coalesced.splice(i, 1);
      }
      vm.kernelIo = a.ioeventfds.length > 0 || a.coalesced.length > 0;
      return 0;
    },
  },
  {
    name: 'KVM_GET_DIRTY_LOG',
    request: KVM_GET_DIRTY_LOG,
    arg: { dir: 'in', codec: KVM_DIRTY_LOG_CODEC },
    run({ vm }, arg, proc) {
      const op = 'KVM_GET_DIRTY_LOG';
      const log = copyFromUser(KVM_DIRTY_LOG_CODEC, arg, op);
      const { bitmap, pages } = loggingSlot(vm, log.slot, op);
      const n = dirtyBitmapBytes(pages);
      const out = userAccess(op, () => userBuffer(proc, log.dirty_bitmap, n, op));
      out.set(bitmap.subarray(0, n));
      // Without manual protection the bits are taken (and the pages write-protected again).
      if (!manualProtect(vm)) bitmap.fill(0);
      return 0;
    },
  },
  {
    name: 'KVM_CLEAR_DIRTY_LOG',
    request: KVM_CLEAR_DIRTY_LOG,
    arg: { dir: 'inout', codec: KVM_CLEAR_DIRTY_LOG_CODEC },
    run({ vm }, arg, proc) {
      const op = 'KVM_CLEAR_DIRTY_LOG';
      const log = copyFromUser(KVM_CLEAR_DIRTY_LOG_CODEC, arg, op);
      requireDirtyBitmap(vm, op);
      // kvm_arch_nr_memslot_as_ids: 2 on x86 (address space 1: SMM)
      if ((log.slot >>> 16) >= 2 || (log.slot & 0xffff) >= 32764) throw new KernelError('EINVAL', op, `invalid slot ${log.slot}`);
      if (log.first_page % 64 !== 0) throw new KernelError('EINVAL', op, 'first_page must be a multiple of 64');
      const { bitmap, pages } = loggingSlot(vm, log.slot, op);
      if (log.first_page > pages || log.num_pages > pages - log.first_page || (log.num_pages < pages - log.first_page && log.num_pages % 64 !== 0)) {
        throw new KernelError('EINVAL', op, `pages ${log.first_page} + ${log.num_pages} do not fit the slot's ${pages}`);
      }
      const n = dirtyBitmapBytes(log.num_pages);
      const given = userAccess(op, () => userBuffer(proc, log.dirty_bitmap, n, op)).slice();
      const firstByte = log.first_page / 8;
      for (let i = 0; i < n && firstByte + i < bitmap.length; i++) {
        bitmap[firstByte + i] = (bitmap[firstByte + i] as number) & ~(given[i] as number);
      }
      return 0;
    },
  },
];
