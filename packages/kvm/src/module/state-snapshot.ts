/**
 * The x86 state of a module's VMs and vCPUs as plain data, for `host.snapshot()` (registered next to the instance's
 * own snapshot as `kvmX:x86`): every register, the system registers, and the {@link VmArch} / {@link VcpuArch}
 * state the state ioctls get and set, and each vCPU's dirty ring (its pages and indices). A failed ioctl must leave all
 * of it as it was.
 *
 * @module
 */
import { KVM_REGS_CODEC, KVM_SREGS_CODEC } from '../abi/structs.js';
import type { KvmInstance } from './instance.js';
import { vcpuArch } from './vcpu-arch.js';
import { hasVmArch, vmArch } from './vm-arch.js';
import { bytesDigest } from './bytes-digest.js';

/** The snapshot of every VM of `inst` (by VM id), with its vCPUs (by vCPU id). */
export function x86StateSnapshot(inst: KvmInstance): unknown {
  return [...inst.vms].map((vm) => ({
    vm: vm.id,
    arch: hasVmArch(vm) ? vmArch(vm).snapshot() : undefined,
    quirks: vm.quirks,
    vcpus: [...vm.vcpus.values()].map((v) => {
      const regs = KVM_REGS_CODEC.zero();
      const sregs = KVM_SREGS_CODEC.zero();
      v.getRegs(regs);
      v.getSregs(sregs);
      return { id: v.id, regs, sregs, pending: v.regs.pending, requests: v.requests, guestDebug: v.guestDebug?.snapshot(), arch: vcpuArch(v).snapshot(), run: v.runAllocated ? bytesDigest(v.run.bytes) : undefined, dirtyRing: v.dirtyRing?.snapshot() };
    }),
  }));
}
