/**
 * The file operations of /dev/kvmX, of VM fds and of vCPU fds: the ioctl entry points of
 * `kvm_dev_ioctl`, `kvm_vm_ioctl` and `kvm_vcpu_ioctl` (virt/kvm/kvm_main.c) — the checks every ioctl of a file
 * makes first, then dispatch through the ioctl tables (`ioctls.ts`), with the x86 defaults for a request no
 * table has (`kvm_arch_dev_ioctl` → EINVAL, `kvm_arch_vm_ioctl` → ENOTTY, `kvm_arch_vcpu_ioctl` → EINVAL).
 *
 * Structs are passed as objects (or as their C bytes, a `Uint8Array`). Each ioctl takes a copy of its argument
 * first (`copyFromUser`, `codec.ts`: own data properties of the right types only, anything else is what a bad
 * pointer is to the kernel, EFAULT), validates and applies the copy, and writes its results back field by field
 * (`copyToUser`).
 *
 * @module
 */
import { KernelError, type FileOperations, type OpenFile, type Process, type Syscall, type Thread } from '@vac/core';
import { KVM_RUN, KVM_VCPU_MMAP_SIZE, PAGE_SIZE } from '../abi/constants.js';
import { KVMIO } from '../abi/ioctl.js';
import type { KvmFileOps, SystemFile } from './files.js';
import { dirtyRingMapping } from './dirty-ring.js';
import type { KvmInstance } from './instance.js';
import { valueArg } from './ioctl-table.js';
import { SYSTEM_IOCTLS, VCPU_IOCTLS, VM_IOCTLS } from './ioctls.js';
import type { Vcpu } from './vcpu.js';
import type { Vm } from './vm.js';

export { checkExtension } from './caps.js';
export type { KvmFileOps } from './files.js';

/** `_IOC_TYPE(nr)`: bits 15:8 of an ioctl number. */
function ioctlType(request: number): number {
  return (request >>> 8) & 0xff;
}

function mutexHeld(v: Vcpu, request: number): KernelError {
  const op = request === KVM_RUN ? 'KVM_RUN' : 'ioctl';
  return new KernelError('EBUSY', op, `thread ${v.thread?.tid ?? '?'} is inside KVM_RUN on ${v.label} (holds vcpu->mutex); a direct call cannot wait for it — call from a scheduler thread to wait`);
}

/** Build the file operations of one module instance. */
export function makeFileOps(inst: KvmInstance): KvmFileOps {
  const owner = inst.module;

  const vcpu: FileOperations<Vcpu> = {
    owner,
    release(file) {
      file.privateData.vm.put();
    },
    ioctl(file, request, arg, proc) {
      const v = file.privateData;
      const vm = v.vm;
      // The usual KVM_RUN — argument 0, from the VM's process, on this module's live VM, no thread inside KVM_RUN —
      // passes every check of vcpuIoctl: it goes straight to the run, so that this function stays small enough for
      // V8 to inline the run's own layers into it. Anything else takes vcpuIoctl's checks in their order.
      if (request === KVM_RUN && arg === 0 && vm.instance === inst && proc === vm.owner && !vm.dead && !vm.vmDead && v.thread === undefined) {
        return v.runSyncOrError(proc.cpu, inst.host.scheduler.quantum, inst.config.syncRunLimit);
      }
      return vcpuIoctl(inst, v, request, arg, proc);
    },
    // Every vCPU ioctl from a simulated thread: kvm_vcpu_ioctl takes vcpu->mutex (mutex_lock_killable) after
    // its EIO checks, so while another thread is inside KVM_RUN (which holds the mutex until it returns to
    // user space, halted or not) this thread sleeps until that KVM_RUN returns. Only a fatal signal ends the
    // wait (a killed thread never resumes); other signals stay pending.
    *ioctlBlocking(file: OpenFile<Vcpu>, request: number, arg: unknown, proc: Process, thread: Thread): Syscall<number | undefined> {
      const v = file.privateData;
      const op = request === KVM_RUN ? 'KVM_RUN' : 'ioctl';
      inst.own(v.vm, op);
      v.vm.checkCaller(proc, op);
      if (ioctlType(request) !== KVMIO) return undefined; // EINVAL before the mutex
      while (v.thread !== undefined) yield;
      if (request !== KVM_RUN) return undefined; // the mutex is free: the plain ioctl runs now
      if (valueArg(arg, 'KVM_RUN') !== 0) throw runArgNotZero();
      return yield* v.runThreaded(thread, () => inst.host.scheduler.quantum);
    },
    mmap(file, length, pgoff) {
      // kvm_vcpu_mmap / kvm_vcpu_fault: page 0 is kvm_run, 1 the PIO page, 2 the coalesced-MMIO ring; from
      // KVM_DIRTY_LOG_PAGE_OFFSET the dirty ring's pages, when the VM has one.
      const ring = dirtyRingMapping(file.privateData, length, pgoff);
      if (ring !== undefined) return ring;
      const off = pgoff * PAGE_SIZE;
      if (off + length > KVM_VCPU_MMAP_SIZE) throw new KernelError('EINVAL', 'mmap', `the vCPU area is ${KVM_VCPU_MMAP_SIZE} bytes`);
      return file.privateData.run.bytes.subarray(off, off + length);
    },
  };

  const vm: FileOperations<Vm> = {
    owner,
    release(file) {
      file.privateData.put();
    },
    ioctl(file, request, arg, proc) {
      const v = file.privateData;
      inst.own(v, 'ioctl');
      // kvm_vm_ioctl: kvm->mm != current->mm || kvm->vm_dead → EIO, before anything else.
      v.checkCaller(proc, 'ioctl');
      const def = VM_IOCTLS.get(request);
      // kvm_arch_vm_ioctl: -ENOTTY
      if (def === undefined) throw new KernelError('ENOTTY', 'ioctl', `unknown VM ioctl 0x${request.toString(16)}`);
      return def.run({ vm: v, files }, arg, proc);
    },
  };

  const system: FileOperations<undefined> = {
    owner,
    ioctl(_file, request, arg, proc) {
      const def = SYSTEM_IOCTLS.get(request);
      // kvm_arch_dev_ioctl: -EINVAL
      if (def === undefined) throw new KernelError('EINVAL', 'ioctl', `unknown /dev/${inst.name} ioctl 0x${request.toString(16)}`);
      return def.run(systemFile, arg, proc);
    },
  };

  const files: KvmFileOps = { system, vm, vcpu };
  const systemFile: SystemFile = { inst, files };
  return files;
}

// The errors of vcpuIoctl, built out of line: KVM_RUN's dispatch stays small enough for V8 to inline the run into it.
function notKvmIoctl(request: number): KernelError {
  return new KernelError('EINVAL', 'ioctl', `not a KVM ioctl: 0x${request.toString(16)}`);
}

function runArgNotZero(): KernelError {
  return new KernelError('EINVAL', 'KVM_RUN', 'the argument must be 0');
}

function unknownVcpuIoctl(request: number): KernelError {
  return new KernelError('EINVAL', 'ioctl', `unknown vCPU ioctl 0x${request.toString(16)}`);
}

function vcpuIoctl(inst: KvmInstance, v: Vcpu, request: number, arg: unknown, proc: Process): number | KernelError {
  // A vCPU file of another module (kvm0's, handed to kvm1's operations) is refused.
  inst.own(v.vm, 'ioctl');
  v.vm.checkCaller(proc, 'ioctl');
  // `_IOC_TYPE(ioctl) != KVMIO` → EINVAL, before the mutex.
  if (ioctlType(request) !== KVMIO) throw notKvmIoctl(request);
  // vcpu->mutex is held by a thread inside KVM_RUN: Linux would sleep until it is released, which a direct call
  // (not made from a simulated thread) cannot do. EBUSY instead (docs/fidelity.md); from a thread it waits.
  if (v.thread !== undefined) throw mutexHeld(v, request);
  if (request === KVM_RUN) {
    // The usual argument, 0, needs no conversion (valueArg(0) is 0).
    if (arg !== 0 && valueArg(arg, 'KVM_RUN') !== 0) throw runArgNotZero();
    return v.runSyncOrError(proc.cpu, inst.host.scheduler.quantum, inst.config.syncRunLimit);
  }
  const def = VCPU_IOCTLS.get(request);
  // kvm_arch_vcpu_ioctl: -EINVAL
  if (def === undefined) throw unknownVcpuIoctl(request);
  return def.run(v, arg, proc);
}
