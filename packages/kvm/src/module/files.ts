/**
 * What an ioctl handler of the system or VM file works on: the module (or the VM) and the file operations of the
 * files it may create (`KVM_CREATE_VM` installs a VM file, `KVM_CREATE_VCPU` a vCPU file).
 *
 * @module
 */
import type { FileOperations } from '@vac/core';
import type { KvmInstance } from './instance.js';
import type { Vcpu } from './vcpu.js';
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

/** The context of a system ioctl: the module and its file operations. */
export interface SystemFile {
  /** The module whose /dev/kvmX it is. */
  readonly inst: KvmInstance;
  /** Its file operations. */
  readonly files: KvmFileOps;
}

/** The context of a VM ioctl: the VM and its module's file operations. */
export interface VmFile {
  /** The VM. */
  readonly vm: Vm;
  /** Its module's file operations. */
  readonly files: KvmFileOps;
}
