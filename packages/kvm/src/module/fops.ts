/**
 * The file operations of /dev/kvmX, of VM fds and of vCPU fds: the ioctl switches of
 * `kvm_dev_ioctl`, `kvm_vm_ioctl` and `kvm_vcpu_ioctl` (virt/kvm/kvm_main.c) with their x86 defaults
 * (`kvm_arch_dev_ioctl` → EINVAL, `kvm_arch_vm_ioctl` → ENOTTY, `kvm_arch_vcpu_ioctl` → EINVAL).
 *
 * Structs are passed as objects; an argument that is not a readable struct of the right shape is what a
 * bad pointer is to the kernel: EFAULT.
 *
 * @module
 */
import { KernelError, type FileOperations, type MemEncryptCommand, type OpenFile, type Process, type Syscall, type Thread } from '@vac/core';
import {
  KVM_API_VERSION,
  KVM_CAP_CHECK_EXTENSION_VM,
  KVM_CAP_EXT_CPUID,
  KVM_CAP_HLT,
  KVM_CAP_IMMEDIATE_EXIT,
  KVM_CAP_IRQCHIP,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_NOP_IO_DELAY,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_NR_VCPUS,
  KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_SYNC_MMU,
  KVM_CAP_USER_MEMORY,
  KVM_CAP_VM_TYPES,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_API_VERSION,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_MAX_VCPUS,
  KVM_MAX_VCPU_IDS,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_TSS_ADDR,
  KVM_SET_USER_MEMORY_REGION,
  KVM_USER_MEM_SLOTS,
  KVM_VCPU_MMAP_SIZE,
  KVM_X86_DEFAULT_VM,
  PAGE_SIZE,
} from '../abi/constants.js';
import { VCPU_FAULT_SITE } from './faults.js';
import { KVMIO } from '../abi/ioctl.js';
import { validateKvmRegs, validateKvmSevCmd, validateKvmSregs, validateKvmUserspaceMemoryRegion, type kvm_regs, type kvm_sev_cmd, type kvm_sregs, type kvm_userspace_memory_region } from '../abi/structs.js';
import type { KvmInstance } from './instance.js';
import { Vcpu } from './vcpu.js';
import type { Vm } from './vm.js';

/** The three kinds of KVM file of one module. */
export interface KvmFileOps {
  /** /dev/kvmX. */
  readonly system: FileOperations<undefined>;
  /** `anon_inode:kvm-vm`. */
  readonly vm: FileOperations<Vm>;
  /** `anon_inode:kvm-vcpu:N`. */
  readonly vcpu: FileOperations<Vcpu>;
}

/**
 * The `unsigned long arg` of an ioctl: an integer that fits in 64 bits (a negative one is its two's
 * complement, as the C cast makes it). Anything else — a value C could not pass, such as 2n ** 64n — is
 * EINVAL, never silently truncated.
 */
function intArg(arg: unknown, op: string): number {
  if (arg === undefined) return 0;
  if (typeof arg === 'number' && Number.isInteger(arg) && arg >= -(2 ** 63) && arg < 2 ** 64) return arg < 0 ? 2 ** 64 + arg : arg;
  if (typeof arg === 'bigint' && arg >= -(2n ** 63n) && arg < 2n ** 64n) return Number(BigInt.asUintN(64, arg));
  throw new KernelError('EINVAL', op, 'the argument must be an integer that fits in an unsigned long');
}

/** `_IOC_TYPE(nr)`: bits 15:8 of an ioctl number. */
function ioctlType(request: number): number {
  return (request >>> 8) & 0xff;
}

function mutexHeld(v: Vcpu, request: number): KernelError {
  const op = request === KVM_RUN ? 'KVM_RUN' : 'ioctl';
  return new KernelError('EBUSY', op, `thread ${v.thread?.tid ?? '?'} is inside KVM_RUN on ${v.label} (holds vcpu->mutex); a direct call cannot wait for it — call from a scheduler thread to wait`);
}

function structArg<T>(arg: unknown, validate: (x: unknown) => string | undefined, op: string): T {
  const problem = validate(arg);
  if (problem !== undefined) throw new KernelError('EFAULT', op, `bad argument: ${problem}`);
  return arg as T;
}

/** `kvm_vm_ioctl_check_extension_generic` + the x86 part, for this module. */
export function checkExtension(inst: KvmInstance, cap: number): number {
  switch (cap) {
    case KVM_CAP_IRQCHIP:
    case KVM_CAP_HLT:
    case KVM_CAP_USER_MEMORY:
    case KVM_CAP_SET_TSS_ADDR:
    case KVM_CAP_EXT_CPUID:
    case KVM_CAP_NOP_IO_DELAY:
    case KVM_CAP_SYNC_MMU:
    case KVM_CAP_IMMEDIATE_EXIT:
    case KVM_CAP_CHECK_EXTENSION_VM:
      return 1;
    case KVM_CAP_NR_VCPUS: {
      // x86: min(num_online_cpus(), KVM_MAX_VCPUS)
      let online = 0;
      for (const c of inst.host.cpus) if (c.online) online++;
      return Math.min(online, KVM_MAX_VCPUS);
    }
    case KVM_CAP_NR_MEMSLOTS:
      return KVM_USER_MEM_SLOTS;
    case KVM_CAP_MAX_VCPUS:
      return KVM_MAX_VCPUS;
    case KVM_CAP_MAX_VCPU_ID:
      return KVM_MAX_VCPU_IDS;
    case KVM_CAP_VM_TYPES:
      return 1 << KVM_X86_DEFAULT_VM;
    default:
      return inst.vendor.extensions.get(cap) ?? 0;
  }
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
      // A vCPU file of another module (kvm0's, handed to kvm1's operations) is refused.
      inst.own(file.privateData.vm, 'ioctl');
      return vcpuIoctl(inst, file.privateData, request, arg, proc);
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
      if (intArg(arg, 'KVM_RUN') !== 0) throw new KernelError('EINVAL', 'KVM_RUN', 'the argument must be 0');
      return yield* v.runThreaded(thread, () => inst.host.scheduler.quantum);
    },
    mmap(file, length, pgoff) {
      // kvm_vcpu_mmap / kvm_vcpu_fault: page 0 is kvm_run, 1 the PIO page, 2 the coalesced-MMIO ring.
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
      inst.own(file.privateData, 'ioctl');
      return vmIoctl(inst, file.privateData, request, arg, proc, vcpu);
    },
  };

  const system: FileOperations<undefined> = {
    owner,
    ioctl(_file, request, arg, proc) {
      switch (request) {
        case KVM_GET_API_VERSION:
          if (intArg(arg, 'KVM_GET_API_VERSION') !== 0) throw new KernelError('EINVAL', 'KVM_GET_API_VERSION', 'the argument must be 0');
          return KVM_API_VERSION;
        case KVM_CREATE_VM: {
          const type = intArg(arg, 'KVM_CREATE_VM');
          if (type !== KVM_X86_DEFAULT_VM) throw new KernelError('EINVAL', 'KVM_CREATE_VM', `VM type ${type} is not supported`);
          const v = inst.createVm(proc);
          try {
            return proc.installAnonFile('kvm-vm', vm, v);
          } catch (e) {
            inst.destroyVm(v);
            throw e;
          }
        }
        case KVM_CHECK_EXTENSION:
          return checkExtension(inst, intArg(arg, 'KVM_CHECK_EXTENSION'));
        case KVM_GET_VCPU_MMAP_SIZE:
          if (intArg(arg, 'KVM_GET_VCPU_MMAP_SIZE') !== 0) throw new KernelError('EINVAL', 'KVM_GET_VCPU_MMAP_SIZE', 'the argument must be 0');
          return KVM_VCPU_MMAP_SIZE;
        default:
          // kvm_arch_dev_ioctl: -EINVAL
          throw new KernelError('EINVAL', 'ioctl', `unknown /dev/${inst.name} ioctl 0x${request.toString(16)}`);
      }
    },
  };

  return { system, vm, vcpu };
}

function vmIoctl(inst: KvmInstance, vm: Vm, request: number, arg: unknown, proc: Process, vcpuOps: FileOperations<Vcpu>): number {
  switch (request) {
    case KVM_CREATE_VCPU: {
      vm.checkCaller(proc, 'KVM_CREATE_VCPU');
      const id = intArg(arg, 'KVM_CREATE_VCPU');
      if (id < 0 || id >= KVM_MAX_VCPU_IDS) throw new KernelError('EINVAL', 'KVM_CREATE_VCPU', `vCPU id ${id} is not below KVM_MAX_VCPU_IDS (${KVM_MAX_VCPU_IDS})`);
      if (vm.createdVcpus >= KVM_MAX_VCPUS) throw new KernelError('EINVAL', 'KVM_CREATE_VCPU', `the VM has KVM_MAX_VCPUS (${KVM_MAX_VCPUS}) vCPUs`);
      if (vm.vcpus.has(id)) throw new KernelError('EEXIST', 'KVM_CREATE_VCPU', `vCPU ${id} exists`);
      if (inst.host.faults.shouldFail(VCPU_FAULT_SITE)) throw new KernelError('ENOMEM', 'KVM_CREATE_VCPU', 'injected allocation failure');
      const tag = { instance: inst.name, vm: vm.id, vcpu: id };
      const vendor = inst.vendor.createVcpu(vm.vendor, tag);
      const v = new Vcpu(inst, vm, id, tag, vendor);
      let fd: number;
      try {
        fd = proc.installAnonFile(`kvm-vcpu:${id}`, vcpuOps, v);
      } catch (e) {
        vendor.free();
        throw e;
      }
      vm.vcpus.set(id, v);
      vm.createdVcpus++;
      vm.users++; // kvm_get_kvm: the vCPU fd pins the VM
      inst.host.events.emit('vcpu:create', { module: inst.name, vm: vm.id, vcpu: id, tlbTag: vendor.tlbTag().value });
      return fd;
    }
    case KVM_SET_USER_MEMORY_REGION: {
      vm.checkCaller(proc, 'KVM_SET_USER_MEMORY_REGION');
      const mem = structArg<kvm_userspace_memory_region>(arg, validateKvmUserspaceMemoryRegion, 'KVM_SET_USER_MEMORY_REGION');
      vm.memslots.set(mem, vm.owner);
      return 0;
    }
    case KVM_CHECK_EXTENSION:
      return checkExtension(inst, intArg(arg, 'KVM_CHECK_EXTENSION'));
    case KVM_CREATE_IRQCHIP:
      vm.checkCaller(proc, 'KVM_CREATE_IRQCHIP');
      if (vm.irqchip) throw new KernelError('EEXIST', 'KVM_CREATE_IRQCHIP', 'the VM has an irqchip');
      if (vm.createdVcpus > 0) throw new KernelError('EINVAL', 'KVM_CREATE_IRQCHIP', 'vCPUs exist already');
      vm.irqchip = true;
      return 0;
    case KVM_SET_TSS_ADDR: {
      vm.checkCaller(proc, 'KVM_SET_TSS_ADDR');
      const addr = intArg(arg, 'KVM_SET_TSS_ADDR');
      // vmx_set_tss_addr: the three pages must lie below 4 GiB; SVM accepts anything.
      if (addr + 3 * PAGE_SIZE > 2 ** 32) throw new KernelError('EINVAL', 'KVM_SET_TSS_ADDR', 'the TSS must lie below 4 GiB');
      return 0;
    }
    case KVM_MEMORY_ENCRYPT_OP: {
      vm.checkCaller(proc, 'KVM_MEMORY_ENCRYPT_OP');
      if (!vm.vendor.memEncrypt) throw new KernelError('ENOTTY', 'KVM_MEMORY_ENCRYPT_OP', `${inst.name} has no memory encryption`);
      const cmd = structArg<kvm_sev_cmd>(arg, validateKvmSevCmd, 'KVM_MEMORY_ENCRYPT_OP');
      const c: MemEncryptCommand = { id: cmd.id, data: cmd.data, error: cmd.error, fd: cmd.sev_fd };
      try {
        return vm.vendor.memEncryptOp(c, vm.createdVcpus > 0);
      } finally {
        cmd.error = c.error; // sev_mem_enc_ioctl copies the command back whatever the result
      }
    }
    default:
      // kvm_arch_vm_ioctl: -ENOTTY
      throw new KernelError('ENOTTY', 'ioctl', `unknown VM ioctl 0x${request.toString(16)}`);
  }
}

function vcpuIoctl(inst: KvmInstance, v: Vcpu, request: number, arg: unknown, proc: Process): number {
  v.vm.checkCaller(proc, 'ioctl');
  // `_IOC_TYPE(ioctl) != KVMIO` → EINVAL, before the mutex.
  if (ioctlType(request) !== KVMIO) throw new KernelError('EINVAL', 'ioctl', `not a KVM ioctl: 0x${request.toString(16)}`);
  // vcpu->mutex is held by a thread inside KVM_RUN: Linux would sleep until it is released, which a direct call
  // (not made from a simulated thread) cannot do. EBUSY instead (docs/fidelity.md); from a thread it waits.
  if (v.thread !== undefined) throw mutexHeld(v, request);
  switch (request) {
    case KVM_RUN:
      if (intArg(arg, 'KVM_RUN') !== 0) throw new KernelError('EINVAL', 'KVM_RUN', 'the argument must be 0');
      return v.runSync(proc.cpu, inst.host.scheduler.quantum, inst.config.syncRunLimit);
    case KVM_GET_REGS:
      v.getRegs(structArg<kvm_regs>(arg, validateKvmRegs, 'KVM_GET_REGS'));
      return 0;
    case KVM_SET_REGS:
      v.setRegs(structArg<kvm_regs>(arg, validateKvmRegs, 'KVM_SET_REGS'));
      return 0;
    case KVM_GET_SREGS:
      v.getSregs(structArg<kvm_sregs>(arg, validateKvmSregs, 'KVM_GET_SREGS'));
      return 0;
    case KVM_SET_SREGS: {
      const s = structArg<kvm_sregs>(arg, validateKvmSregs, 'KVM_SET_SREGS');
      // kvm_is_valid_sregs: CR0.PG without CR0.PE is invalid.
      if ((s.cr0 & 0x80000000n) !== 0n && (s.cr0 & 1n) === 0n) throw new KernelError('EINVAL', 'KVM_SET_SREGS', 'CR0.PG set without CR0.PE');
      v.setSregs(s);
      return 0;
    }
    default:
      // kvm_arch_vcpu_ioctl: -EINVAL
      throw new KernelError('EINVAL', 'ioctl', `unknown vCPU ioctl 0x${request.toString(16)}`);
  }
}
