/**
 * KVM_IRQFD (virt/kvm/eventfd.c): an eventfd bound to a GSI. Each time the process (or kernel code) signals the
 * eventfd, the irqfd's wait-queue entry runs (`irqfd_wakeup`): it takes the count (`eventfd_ctx_do_read`) and
 * injects — an edge (`kvm_set_irq` 1 then 0 from `KVM_USERSPACE_IRQ_SOURCE_ID`, `irqfd_inject`), or for a
 * resampling irqfd a level held high from `KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID` until the guest acknowledges it: then
 * the resampler (`irqfd_resampler_ack`, an ack notifier on the GSI, shared by every resampling irqfd of that GSI)
 * lowers the line and signals each one's `resamplefd`. Linux queues the injection as work; the model runs it at
 * once, inside the write that signalled (the same order of effects, with no other activity between).
 *
 * An irqfd goes away with KVM_IRQFD(DEASSIGN), when its eventfd file is released (EPOLLHUP), or with its VM
 * (`kvm_irqfd_release`). The last irqfd of a resampler lowers the line and unregisters the ack notifier
 * (`irqfd_resampler_shutdown`).
 *
 * @module
 */
import { KernelError, eventFdOf, type EventFd, type Process, type Unsubscribe } from '@vac/core';
import { KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, KVM_USERSPACE_IRQ_SOURCE_ID } from '../irqchip/constants.js';
import type { Unregister } from '../irqchip/irqchip.js';
import type { kvm_irqfd } from '../abi/structs-irq.js';
import type { VmIrqchip } from './vm-irqchip.js';

/** `KVM_IRQFD_FLAG_DEASSIGN`. */
export const KVM_IRQFD_FLAG_DEASSIGN = 1 << 0;
/** `KVM_IRQFD_FLAG_RESAMPLE`. */
export const KVM_IRQFD_FLAG_RESAMPLE = 1 << 1;

/** `struct kvm_kernel_irqfd_resampler`: the ack notifier of one GSI and the resampling irqfds on it. */
interface Resampler {
  readonly gsi: number;
  readonly irqfds: Set<Irqfd>;
  readonly unregister: Unregister[];
}

/** `struct kvm_kernel_irqfd`. */
interface Irqfd {
  readonly gsi: number;
  readonly eventfd: EventFd;
  readonly resamplefd: EventFd | undefined;
  resampler: Resampler | undefined;
  unwait: Unsubscribe | undefined;
}

/** `eventfd_ctx_fdget`: the eventfd behind `fd` of `proc`; EBADF for no file, EINVAL for another kind of file. */
export function eventfdOf(proc: Process, fd: number, op: string): EventFd {
  if (fd > 0x7fffffff) throw new KernelError('EBADF', op, `bad file descriptor ${fd}`);
  const ctx = eventFdOf(proc.file(fd));
  if (ctx === undefined) throw new KernelError('EINVAL', op, `fd ${fd} is not an eventfd`);
  return ctx;
}

/** The irqfds of one VM (`kvm->irqfds`). */
export class Irqfds {
  readonly #chip: VmIrqchip;
  readonly #items: Irqfd[] = [];
  readonly #resamplers = new Map<number, Resampler>();

  /** @internal */
  constructor(chip: VmIrqchip) {
    this.#chip = chip;
  }

  /** How many irqfds are assigned. */
  get size(): number {
    return this.#items.length;
  }

  /** KVM_IRQFD (`kvm_irqfd`): assign, or with `KVM_IRQFD_FLAG_DEASSIGN` deassign. */
  ioctl(args: kvm_irqfd, proc: Process): number {
    const op = 'KVM_IRQFD';
    if ((args.flags & ~(KVM_IRQFD_FLAG_DEASSIGN | KVM_IRQFD_FLAG_RESAMPLE)) !== 0) throw new KernelError('EINVAL', op, `unknown flags 0x${args.flags.toString(16)}`);
    if (args.flags & KVM_IRQFD_FLAG_DEASSIGN) return this.#deassign(args, proc);
    return this.#assign(args, proc);
  }

  /** `kvm_irqfd_assign`, in its order of checks. */
  #assign(args: kvm_irqfd, proc: Process): number {
    const op = 'KVM_IRQFD';
    const resample = (args.flags & KVM_IRQFD_FLAG_RESAMPLE) !== 0;
    // kvm_arch_irqfd_allowed: a resampling irqfd needs the full in-kernel irqchip (its IOAPIC acks).
    if (resample && !this.#chip.full) throw new KernelError('EINVAL', op, 'a resampling irqfd needs KVM_CREATE_IRQCHIP (not a split irqchip)');
    const eventfd = eventfdOf(proc, args.fd, op);
    const resamplefd = resample ? eventfdOf(proc, args.resamplefd, op) : undefined;
    if (this.#items.some((i) => i.eventfd === eventfd)) throw new KernelError('EBUSY', op, `eventfd ${args.fd} is bound to a GSI already`);
    const irqfd: Irqfd = { gsi: args.gsi, eventfd, resamplefd, resampler: undefined, unwait: undefined };
    if (resample) this.#joinResampler(irqfd);
    this.#items.push(irqfd);
    irqfd.unwait = eventfd.addWaiter((why) => (why === 'in' ? this.#wakeup(irqfd) : this.#deactivate(irqfd)));
    // An event already pending before the registration is injected as if it had come now (not consumed).
    if (eventfd.count > 0n) this.#inject(irqfd);
    return 0;
  }

  /** `kvm_irqfd_deassign`: every irqfd of that eventfd and GSI goes; none is not an error. */
  #deassign(args: kvm_irqfd, proc: Process): number {
    const eventfd = eventfdOf(proc, args.fd, 'KVM_IRQFD');
    for (const i of [...this.#items]) if (i.eventfd === eventfd && i.gsi === args.gsi) this.#deactivate(i);
    return 0;
  }

  /** `irqfd_wakeup` (EPOLLIN): take the count, inject. */
  #wakeup(irqfd: Irqfd): void {
    irqfd.eventfd.take();
    this.#inject(irqfd);
  }

  /** `irqfd_inject` (one irqchip operation: `VmIrqchip.op` written out, no closure per signal). */
  #inject(irqfd: Irqfd): void {
    const vmChip = this.#chip;
    const chip = vmChip.chip;
    try {
      if (irqfd.resampler === undefined) {
        chip.setIrq(KVM_USERSPACE_IRQ_SOURCE_ID, irqfd.gsi, true, false);
        chip.setIrq(KVM_USERSPACE_IRQ_SOURCE_ID, irqfd.gsi, false, false);
      } else {
        chip.setIrq(KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, irqfd.gsi, true, false);
      }
    } finally {
      vmChip.sync();
    }
  }

  #joinResampler(irqfd: Irqfd): void {
    let r = this.#resamplers.get(irqfd.gsi);
    if (r === undefined) {
      const gsi = irqfd.gsi;
      const created: Resampler = { gsi, irqfds: new Set(), unregister: [] };
      const chip = this.#chip.chip;
      // irqfd_resampler_ack: the guest acknowledged the level interrupt — lower it, tell user space.
      created.unregister.push(chip.registerAckNotifier(gsi, () => {
        chip.setIrq(KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, gsi, false, false);
        for (const i of created.irqfds) i.resamplefd?.signal();
      }));
      // kvm_notify_irqfd_resampler (the IOAPIC found the pin masked on EOI): only the notification.
      created.unregister.push(chip.registerResampler(gsi, () => {
        for (const i of created.irqfds) i.resamplefd?.signal();
      }));
      this.#resamplers.set(gsi, created);
      r = created;
    }
    r.irqfds.add(irqfd);
    irqfd.resampler = r;
  }

  /** `irqfd_deactivate` → `irqfd_shutdown`: off the wait queue, out of its resampler (the last one lowers the line). */
  #deactivate(irqfd: Irqfd): void {
    const i = this.#items.indexOf(irqfd);
    if (i < 0) return;
    this.#items.splice(i, 1);
    irqfd.unwait?.();
    const r = irqfd.resampler;
    if (r === undefined) return;
    r.irqfds.delete(irqfd);
    if (r.irqfds.size > 0) return;
    // irqfd_resampler_shutdown
    for (const u of r.unregister) u();
    this.#resamplers.delete(r.gsi);
    this.#chip.op(() => this.#chip.chip.setIrq(KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, r.gsi, false, false));
  }

  /** `kvm_irqfd_release`: the VM is going away. */
  releaseAll(): void {
    for (const i of [...this.#items]) this.#deactivate(i);
  }
}
