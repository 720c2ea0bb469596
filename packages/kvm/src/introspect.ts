/**
 * From what a user holds — a host, a process and an fd — to the model's objects behind it: a loaded KVM module, the
 * VM behind a VM fd, the vCPU behind a vCPU fd. For tests, examples and tools that want to look inside (a vCPU's
 * counters, which CPU it is loaded on, its TLB tag) without reaching into module exports.
 *
 * @module
 */
import { UsageError, type Host, type Process } from '@vac/core';
import { KvmInstance } from './module/instance.js';
import { Vcpu } from './module/vcpu.js';
import { Vm } from './module/vm.js';

/**
 * The loaded KVM module `name` (`'kvm0'`).
 * @throws UsageError ERR_UNKNOWN_NAME when no KVM module of that name is loaded
 */
export function kvmInstance(host: Host, name: string): KvmInstance {
  const inst = host.modules.exportsOf<unknown>(name);
  if (!(inst instanceof KvmInstance)) throw new UsageError('ERR_UNKNOWN_NAME', `no KVM module named ${JSON.stringify(name)} is loaded`);
  return inst;
}

function privateDataOf(proc: Process, fd: number, what: string): unknown {
  try {
    return proc.file(fd).privateData;
  } catch {
    throw new UsageError('ERR_INVALID_ARG', `${proc.name} has no open fd ${String(fd)} (looking for a ${what} fd)`);
  }
}

/**
 * The VM behind `fd`, a VM fd of `proc` (`KVM_CREATE_VM`'s result).
 * @throws UsageError ERR_INVALID_ARG when `fd` is not an open VM fd of `proc`
 */
export function vmOf(proc: Process, fd: number): Vm {
  const d = privateDataOf(proc, fd, 'VM');
  if (!(d instanceof Vm)) throw new UsageError('ERR_INVALID_ARG', `fd ${String(fd)} of ${proc.name} is not a KVM VM fd`);
  return d;
}

/**
 * The vCPU behind `fd`, a vCPU fd of `proc` (`KVM_CREATE_VCPU`'s result).
 * @throws UsageError ERR_INVALID_ARG when `fd` is not an open vCPU fd of `proc`
 */
export function vcpuOf(proc: Process, fd: number): Vcpu {
  const d = privateDataOf(proc, fd, 'vCPU');
  if (!(d instanceof Vcpu)) throw new UsageError('ERR_INVALID_ARG', `fd ${String(fd)} of ${proc.name} is not a KVM vCPU fd`);
  return d;
}
