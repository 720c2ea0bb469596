/**
 * Events a VMM with its own interrupt controller injects (arch/x86/kvm/x86.c `kvm_vcpu_ioctl_interrupt`,
 * `kvm_vcpu_ioctl_nmi`): KVM_INTERRUPT queues an external interrupt that the next KVM_RUN delivers (the VMM checks
 * first that the guest can take it), KVM_NMI queues an NMI. Both act at the next entry (`VcpuRequest.Event`).
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_INTERRUPT, KVM_NMI } from '../abi/constants.js';
import { copyFromUser } from '../abi/codec.js';
import { KVM_INTERRUPT_CODEC } from '../abi/structs-x86.js';
import type { IoctlDef } from './ioctl-table.js';
import { vcpuArch } from './vcpu-arch.js';
import { VcpuRequest, makeRequest } from './vcpu-requests.js';
import type { Vcpu } from './vcpu.js';

/** `KVM_NR_INTERRUPTS`. */
const KVM_NR_INTERRUPTS = 256;

/** The event-injection ioctls of a vCPU. */
export const VCPU_INJECT_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_INTERRUPT',
    request: KVM_INTERRUPT,
    arg: { dir: 'in', codec: KVM_INTERRUPT_CODEC },
    run(v, arg) {
      const op = 'KVM_INTERRUPT';
      const irq = copyFromUser(KVM_INTERRUPT_CODEC, arg, op).irq;
      if (irq >= KVM_NR_INTERRUPTS) throw new KernelError('EINVAL', op, `vector ${irq} is not below ${KVM_NR_INTERRUPTS}`);
      // With the in-kernel irqchip (its PIC) KVM_INTERRUPT is refused: the PIC injects ExtINT itself.
      if (v.vm.irqchip) throw new KernelError('ENXIO', op, 'the VM has an in-kernel interrupt controller');
      // kvm_queue_interrupt(vcpu, irq, false)
      const i = vcpuArch(v).interrupt;
      i.injected = true;
      i.soft = false;
      i.nr = irq;
      makeRequest(v, VcpuRequest.Event);
      return 0;
    },
  },
  {
    name: 'KVM_NMI',
    request: KVM_NMI,
    arg: { dir: 'none' },
    run(v) {
      // kvm_inject_nmi: one more queued NMI, folded into the pending ones at the next entry (process_nmi).
      vcpuArch(v).nmiQueued++;
      makeRequest(v, VcpuRequest.Event);
      return 0;
    },
  },
];
