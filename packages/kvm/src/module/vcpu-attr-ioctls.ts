/**
 * The vCPU device attributes (arch/x86/kvm/x86.c `kvm_vcpu_ioctl_device_attr`, `kvm_arch_tsc_has_attr`,
 * `kvm_arch_tsc_get_attr`, `kvm_arch_tsc_set_attr`): KVM_HAS/GET/SET_DEVICE_ATTR on a vCPU fd, whose only group is
 * KVM_VCPU_TSC_CTRL with the one attribute KVM_VCPU_TSC_OFFSET, the vCPU's L1 TSC offset — what KVM_CAP_VCPU_ATTRIBUTES
 * promises. Another group or attribute is ENXIO; the value moves through the `__u64` at `addr` (EFAULT when it
 * cannot be read or written); `flags` is not looked at.
 *
 * @module
 */
import { KernelError, type Process } from '@vac/core';
import { KVM_GET_DEVICE_ATTR, KVM_HAS_DEVICE_ATTR, KVM_SET_DEVICE_ATTR } from '../abi/constants.js';
import { KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET } from '../abi/constants-x86.js';
import { copyFromUser, userAccess } from '../abi/codec.js';
import { KVM_DEVICE_ATTR_CODEC } from '../abi/structs-x86.js';
import type { IoctlDef } from './ioctl-table.js';
import { userBuffer } from './user-memory.js';
import { vcpuArch } from './vcpu-arch.js';
import { setTscOffset } from './vcpu-tsc.js';
import type { Vcpu } from './vcpu.js';

/** Which of the three ioctls. */
type AttrOp = 'KVM_HAS_DEVICE_ATTR' | 'KVM_GET_DEVICE_ATTR' | 'KVM_SET_DEVICE_ATTR';

/** `kvm_vcpu_ioctl_device_attr`. */
function vcpuDeviceAttr(v: Vcpu, arg: unknown, proc: Process, op: AttrOp): number {
  const attr = copyFromUser(KVM_DEVICE_ATTR_CODEC, arg, op);
  if (attr.group !== KVM_VCPU_TSC_CTRL) throw new KernelError('ENXIO', op, `no vCPU attribute group ${attr.group}`);
  if (attr.attr !== BigInt(KVM_VCPU_TSC_OFFSET)) throw new KernelError('ENXIO', op, `no TSC attribute ${attr.attr}`);
  if (op === 'KVM_HAS_DEVICE_ATTR') return 0;
  const value = (): DataView =>
    userAccess(op, () => {
      const buf = userBuffer(proc, attr.addr, 8, op);
      return new DataView(buf.buffer, buf.byteOffset, 8);
    });
  if (op === 'KVM_GET_DEVICE_ATTR') value().setBigUint64(0, vcpuArch(v).tscOffset, true); // put_user(l1_tsc_offset)
  else setTscOffset(v, value().getBigUint64(0, true)); // get_user, then __kvm_synchronize_tsc
  return 0;
}

/** KVM_HAS/GET/SET_DEVICE_ATTR on a vCPU fd. */
export const VCPU_ATTR_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_HAS_DEVICE_ATTR',
    request: KVM_HAS_DEVICE_ATTR,
    arg: { dir: 'in', codec: KVM_DEVICE_ATTR_CODEC },
    run: (v, arg, proc) => vcpuDeviceAttr(v, arg, proc, 'KVM_HAS_DEVICE_ATTR'),
  },
  {
    name: 'KVM_GET_DEVICE_ATTR',
    request: KVM_GET_DEVICE_ATTR,
    arg: { dir: 'in', codec: KVM_DEVICE_ATTR_CODEC },
    run: (v, arg, proc) => vcpuDeviceAttr(v, arg, proc, 'KVM_GET_DEVICE_ATTR'),
  },
  {
    name: 'KVM_SET_DEVICE_ATTR',
    request: KVM_SET_DEVICE_ATTR,
    arg: { dir: 'in', codec: KVM_DEVICE_ATTR_CODEC },
    run: (v, arg, proc) => vcpuDeviceAttr(v, arg, proc, 'KVM_SET_DEVICE_ATTR'),
  },
];
