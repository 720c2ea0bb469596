/**
 * The interrupt ioctls of a vCPU fd (arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl`): KVM_GET_LAPIC and KVM_SET_LAPIC
 * (`kvm_apic_get_state` / `kvm_apic_set_state`, EINVAL without an in-kernel LAPIC), KVM_INTERRUPT
 * (`kvm_vcpu_ioctl_interrupt`: a user-space PIC's vector, injected at the next entry; with a split irqchip the
 * ExtINT of the user-space PIC; ENXIO with the PIC in the kernel) and KVM_NMI (`kvm_vcpu_ioctl_nmi`).
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_GET_LAPIC, KVM_INTERRUPT, KVM_NMI, KVM_SET_LAPIC } from '../abi/constants.js';
import { copyFromUser, copyToUser } from '../abi/codec.js';
import { ApicRegs, KVM_APIC_REG_SIZE } from '../irqchip/apic-regs.js';
import { KVM_LAPIC_STATE_CODEC } from '../abi/structs-irq.js';
import { KVM_INTERRUPT_CODEC } from '../abi/structs-x86.js';
import type { IoctlDef } from './ioctl-table.js';
import { VcpuIntr } from './vcpu-intr.js';
import type { Vcpu } from './vcpu.js';
import { userStructView } from './user-struct-bytes.js';
import type { VmIrqchip } from './vm-irqchip.js';

/** `KVM_NR_INTERRUPTS`. */
const KVM_NR_INTERRUPTS = 256;

/**
 * KVM_GET_LAPIC's and KVM_SET_LAPIC's EINVAL without an in-kernel LAPIC: one shared stackless instance each, thrown
 * every time, as KVM_RUN's EINTR (docs/fidelity.md). The model's `saveVcpu` asks KVM_GET_LAPIC at every save and
 * takes the EINVAL as "no in-kernel LAPIC" (QEMU asks only with an in-kernel irqchip), and making an `Error`, even
 * without a stack, cost more than the rest of the ioctl (~0.8 µs).
 */
const NO_LAPIC: Readonly<Record<string, KernelError>> = {
  KVM_GET_LAPIC: KernelError.withoutStack('EINVAL', 'KVM_GET_LAPIC', 'the vCPU has no in-kernel LAPIC'),
  KVM_SET_LAPIC: KernelError.withoutStack('EINVAL', 'KVM_SET_LAPIC', 'the vCPU has no in-kernel LAPIC'),
};

/** The vCPU's in-kernel LAPIC (its interrupt state and VM irqchip), else EINVAL (`lapic_in_kernel`). */
function needLapic(v: Vcpu, op: 'KVM_GET_LAPIC' | 'KVM_SET_LAPIC'): { intr: VcpuIntr; irq: VmIrqchip } {
  const intr = v.intr;
  const irq = intr?.irqchip;
  if (intr?.chip === undefined || irq === undefined) throw NO_LAPIC[op] as KernelError;
  return { intr, irq };
}

/** KVM_GET_LAPIC's page before it is copied out (the work is synchronous: one for every vCPU). */
const GET_LAPIC_PAGE = new ApicRegs();

/** `struct kvm_lapic_state` (its only member, `regs`) over the caller's C bytes, or `undefined` for the object form. */
function lapicStateBytes(arg: unknown, op: string): Uint8Array | undefined {
  const view = userStructView(KVM_LAPIC_STATE_CODEC, arg, op);
  return view === undefined ? undefined : new Uint8Array(view.buffer, view.byteOffset, KVM_APIC_REG_SIZE);
}

/** The vCPU's interrupt state, made on first use. */
function intrOf(v: Vcpu): VcpuIntr {
  return (v.intr ??= new VcpuIntr(v, undefined));
}

/** The interrupt ioctls of a vCPU fd. */
export const VCPU_IRQ_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_GET_LAPIC',
    request: KVM_GET_LAPIC,
    arg: { dir: 'out', codec: KVM_LAPIC_STATE_CODEC },
    run(v, arg) {
      const op = 'KVM_GET_LAPIC';
      const { intr, irq } = needLapic(v, op);
      const lapic = intr.chip?.lapic;
      if (lapic === undefined) throw new KernelError('EINVAL', op, 'the vCPU has no in-kernel LAPIC');
      const page = irq.op((now) => lapic.getStateInto(GET_LAPIC_PAGE, now)).bytes;
      const dst = lapicStateBytes(arg, op);
      if (dst !== undefined) dst.set(page);
      else copyToUser(KVM_LAPIC_STATE_CODEC, { regs: page }, arg, op); // the object form gets a copy
      return 0;
    },
  },
  {
    name: 'KVM_SET_LAPIC',
    request: KVM_SET_LAPIC,
    arg: { dir: 'in', codec: KVM_LAPIC_STATE_CODEC },
    run(v, arg) {
      const op = 'KVM_SET_LAPIC';
      const { intr, irq } = needLapic(v, op);
      // The C bytes are read in place (setState copies the page before it looks at it); an object is copied in.
      const page = lapicStateBytes(arg, op) ?? copyFromUser(KVM_LAPIC_STATE_CODEC, arg, op).regs;
      const ints = intr.chip;
      if (ints !== undefined) irq.op((now) => irq.chip.setLapicState(ints, page, now));
      return 0;
    },
  },
  {
    name: 'KVM_INTERRUPT',
    request: KVM_INTERRUPT,
    arg: { dir: 'in', codec: KVM_INTERRUPT_CODEC },
    run(v, arg) {
      const op = 'KVM_INTERRUPT';
      const irq = copyFromUser(KVM_INTERRUPT_CODEC, arg, op).irq;
      if (irq >= KVM_NR_INTERRUPTS) throw new KernelError('EINVAL', op, `vector ${irq} is not below ${KVM_NR_INTERRUPTS}`);
      const intr = v.intr;
      if (intr?.chip !== undefined) {
        // With an in-kernel LAPIC only the ExtINT of a user-space PIC (split irqchip); ENXIO/EEXIST from there.
        const chip = intr.chip;
        (intr.irqchip as VmIrqchip).op(() => chip.injectExtint(irq));
        return 0;
      }
      // kvm_queue_interrupt(vcpu, irq, false): injected at the next entry, whatever RFLAGS.IF says then.
      intrOf(v).queuedIrq = irq;
      return 0;
    },
  },
  {
    name: 'KVM_NMI',
    request: KVM_NMI,
    arg: { dir: 'none' },
    run(v) {
      intrOf(v).injectNmi();
      return 0;
    },
  },
];
