/**
 * The capabilities of the in-kernel interrupt controllers, as Linux 6.12 answers KVM_CHECK_EXTENSION for them
 * (virt/kvm/kvm_main.c `kvm_vm_ioctl_check_extension_generic`: IRQ_ROUTING, IRQFD, SIGNAL_MSI; arch/x86/kvm/x86.c
 * `kvm_vm_ioctl_check_extension`: the rest) — each non-zero only because what it promises works in the model:
 * the PIT (KVM_CREATE_PIT, KVM_CREATE_PIT2, KVM_GET/SET_PIT2, KVM_REINJECT_CONTROL), KVM_IRQ_LINE_STATUS,
 * GSI routing, irqfds with resampling, KVM_SIGNAL_MSI, the split irqchip, KVM_NMI, the x2APIC API flags, and an
 * IOAPIC that ignores the polarity bit. KVM_CAP_TSC_DEADLINE_TIMER is answered in caps.ts (1: the guest's
 * IA32_TSC_DEADLINE reaches the in-kernel LAPIC timer).
 *
 * Still 0 in the model (`CAP_DIVERGENCES` of caps.ts): KVM_CAP_VAPIC, KVM_CAP_PCI_SEGMENT
 * and KVM_CAP_X86_APIC_BUS_CYCLES_NS.
 *
 * @module
 */
import {
  KVM_CAP_IOAPIC_POLARITY_IGNORED,
  KVM_CAP_IRQFD,
  KVM_CAP_IRQFD_RESAMPLE,
  KVM_CAP_IRQ_INJECT_STATUS,
  KVM_CAP_IRQ_ROUTING,
  KVM_CAP_PIT,
  KVM_CAP_PIT2,
  KVM_CAP_PIT_STATE2,
  KVM_CAP_REINJECT_CONTROL,
  KVM_CAP_SIGNAL_MSI,
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_CAP_USER_NMI,
  KVM_CAP_X2APIC_API,
} from '../abi/constants.js';
import { KVM_MAX_IRQ_ROUTES } from '../irqchip/constants.js';
import { KVM_X2APIC_API_VALID_FLAGS } from './irq-vm-ioctls.js';

/** What KVM_CHECK_EXTENSION answers for interrupt capability `cap`, or `undefined` when `cap` is not one. */
export function irqCapability(cap: number): number | undefined {
  switch (cap) {
    case KVM_CAP_IRQ_ROUTING:
      return KVM_MAX_IRQ_ROUTES;
    case KVM_CAP_X2APIC_API:
      return KVM_X2APIC_API_VALID_FLAGS;
    case KVM_CAP_IRQ_INJECT_STATUS:
    case KVM_CAP_IRQFD:
    case KVM_CAP_IRQFD_RESAMPLE:
    case KVM_CAP_SIGNAL_MSI:
    case KVM_CAP_PIT:
    case KVM_CAP_PIT2:
    case KVM_CAP_PIT_STATE2:
    case KVM_CAP_REINJECT_CONTROL:
    case KVM_CAP_SPLIT_IRQCHIP:
    case KVM_CAP_USER_NMI:
    case KVM_CAP_IOAPIC_POLARITY_IGNORED:
      return 1;
    default:
      return undefined;
  }
}
