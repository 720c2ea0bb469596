/**
 * The interrupt ioctls of a VM fd (arch/x86/kvm/x86.c `kvm_arch_vm_ioctl`, `kvm_vm_ioctl_enable_cap`,
 * `kvm_vm_ioctl_irq_line`; virt/kvm/kvm_main.c `kvm_vm_ioctl`; virt/kvm/eventfd.c `kvm_irqfd`; virt/kvm/irqchip.c
 * `kvm_set_irq_routing`, `kvm_send_userspace_msi`; arch/x86/kvm/i8254.c), each checking its argument in Linux's
 * order and changing nothing when it fails:
 *
 * KVM_CREATE_IRQCHIP, KVM_ENABLE_CAP (KVM_CAP_SPLIT_IRQCHIP, KVM_CAP_X2APIC_API), KVM_CREATE_PIT2 and the legacy
 * KVM_CREATE_PIT, KVM_GET/SET_PIT2 and KVM_GET/SET_PIT, KVM_REINJECT_CONTROL, KVM_IRQ_LINE and
 * KVM_IRQ_LINE_STATUS, KVM_SET_GSI_ROUTING, KVM_GET/SET_IRQCHIP, KVM_IRQFD, KVM_SIGNAL_MSI.
 *
 * @module
 */
import { KernelError, type Process } from '@vac/core';
import {
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_CAP_X2APIC_API,
  KVM_CAP_X86_APIC_BUS_CYCLES_NS,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT,
  KVM_CREATE_PIT2,
  KVM_GET_IRQCHIP,
  KVM_GET_PIT,
  KVM_GET_PIT2,
  KVM_IRQCHIP_IOAPIC,
  KVM_IRQCHIP_PIC_MASTER,
  KVM_IRQCHIP_PIC_SLAVE,
  KVM_IRQFD,
  KVM_IRQ_LINE,
  KVM_IRQ_LINE_STATUS,
  KVM_REINJECT_CONTROL,
  KVM_SET_GSI_ROUTING,
  KVM_SET_IRQCHIP,
  KVM_SET_PIT,
  KVM_SET_PIT2,
  KVM_SIGNAL_MSI,
} from '../abi/constants.js';
import { checkUserWritable, copyFromUser, copyToUser, userAccess } from '../abi/codec.js';
import {
  KVM_IRQCHIP_CODEC,
  KVM_IRQFD_CODEC,
  KVM_IRQ_LEVEL_CODEC,
  KVM_IRQ_LEVEL_STATUS_CODEC,
  KVM_IRQ_ROUTING_CODEC,
  KVM_MSI_CODEC,
  KVM_PIT_CONFIG_CODEC,
  KVM_PIT_STATE2_CODEC,
  KVM_PIT_STATE_CODEC,
  KVM_REINJECT_CONTROL_CODEC,
  resolveKvmIrqchip,
} from '../abi/structs-irq.js';
import { KvmIrqchip, type IrqchipOptions } from '../irqchip/irqchip.js';
import type { KvmPit } from '../irqchip/pit.js';
import { KVM_MAX_IRQ_ROUTES, KVM_PIT_SPEAKER_DUMMY, KVM_USERSPACE_IRQ_SOURCE_ID } from '../irqchip/constants.js';
import { decodeKvmIrqchip, type kvm_irqchip } from '../irqchip/state/irqchip-state.js';
import { KVM_LAYOUTS } from '../abi/layout.js';
import type { VmFile } from './files.js';
import type { IoctlDef } from './ioctl-table.js';
import { KVM_IRQFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_RESAMPLE, eventfdOf } from './irqfd.js';
import { userStructView } from './user-struct-bytes.js';
import { VmIrqchip } from './vm-irqchip.js';
import { vendorArch } from './vendor-arch.js';
import type { Vm } from './vm.js';

/** `KVM_X2APIC_API_USE_32BIT_IDS`. */
export const KVM_X2APIC_API_USE_32BIT_IDS = 1 << 0;
/** `KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK`. */
export const KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK = 1 << 1;
/** `KVM_X2APIC_API_VALID_FLAGS` (Linux 6.12). */
export const KVM_X2APIC_API_VALID_FLAGS = KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK;

/** `kvm->arch.x2apic_format` / `x2apic_broadcast_quirk_disabled` set before the irqchip exists, by VM. */
const x2apicApi = new WeakMap<Vm, number>();

function irqchipOptions(vm: Vm): IrqchipOptions {
  const f = x2apicApi.get(vm) ?? 0;
  return {
    x2apicFormat: (f & KVM_X2APIC_API_USE_32BIT_IDS) !== 0,
    broadcastQuirkDisabled: (f & KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK) !== 0,
    lapic: { x2apicIcrIsSplit: vendorArch(vm.instance).x2apicIcrIsSplit },
  };
}

/** Where `chip_id` is in `struct kvm_irqchip`. */
const IRQCHIP_CHIP_ID = KVM_LAYOUTS.kvm_irqchip.offsetOf('chip_id');

/** The VM's irqchip, or `err` (ENXIO for most, EINVAL for routing) when there is none. */
function needIrqchip(vm: Vm, op: string, errno: 'ENXIO' | 'EINVAL' = 'ENXIO'): VmIrqchip {
  const irq = vm.irq;
  if (irq === undefined) throw new KernelError(errno, op, 'the VM has no in-kernel irqchip');
  return irq;
}

/** `irqchip_kernel`: the full irqchip (PIC and IOAPIC in the kernel), else ENXIO. */
function needFullIrqchip(vm: Vm, op: string): VmIrqchip {
  const irq = vm.irq;
  if (irq === undefined || !irq.full) throw KernelError.withoutStack('ENXIO', op, 'the VM has no in-kernel PIC and IOAPIC'); // saveVm's probe (KVM_GET_IRQCHIP) on every save
  return irq;
}

/** The VM's irqchip and its PIT, else ENXIO. */
function needPit(vm: Vm, op: string): { irq: VmIrqchip; pit: KvmPit } {
  const irq = vm.irq;
  const pit = irq?.chip.pit;
  if (irq === undefined || pit === undefined) throw KernelError.withoutStack('ENXIO', op, 'the VM has no PIT'); // saveVm's probe (KVM_GET_PIT2) on every save
  return { irq, pit };
}

/**
 * KVM_ENABLE_CAP's interrupt capabilities (`kvm_vm_ioctl_enable_cap`), for whoever dispatches KVM_ENABLE_CAP on a VM:
 * `undefined` for a capability that is not one of them.
 */
export function enableIrqCap(vm: Vm, cap: number, args0: bigint, op: string): number | undefined {
  switch (cap) {
    case KVM_CAP_SPLIT_IRQCHIP: {
      if (args0 > BigInt(KVM_MAX_IRQ_ROUTES)) throw new KernelError('EINVAL', op, `${args0} reserved IOAPIC pins is above ${KVM_MAX_IRQ_ROUTES}`);
      if (vm.irq !== undefined) throw new KernelError('EEXIST', op, 'the VM has an irqchip');
      if (vm.createdVcpus > 0) throw new KernelError('EEXIST', op, 'vCPUs exist already');
      vm.irq = new VmIrqchip(vm, KvmIrqchip.createSplit(Number(args0), irqchipOptions(vm)));
      return 0;
    }
    case KVM_CAP_X2APIC_API: {
      if ((args0 & ~BigInt(KVM_X2APIC_API_VALID_FLAGS)) !== 0n) throw new KernelError('EINVAL', op, `unknown x2APIC API flags 0x${args0.toString(16)}`);
      // The flags only ever get set; the model's APIC bus takes them when the irqchip is made.
      if (vm.irq !== undefined && (Number(args0) & ~(x2apicApi.get(vm) ?? 0)) !== 0) {
        throw new KernelError('EINVAL', op, 'the model takes KVM_CAP_X2APIC_API before the irqchip is created (docs/fidelity.md)');
      }
      x2apicApi.set(vm, (x2apicApi.get(vm) ?? 0) | Number(args0));
      return 0;
    }
    case KVM_CAP_X86_APIC_BUS_CYCLES_NS: {
      // tmict_to_ns must not overflow: the largest TMICT times 128 (the largest divider, and some) times the cycle.
      if (args0 === 0n || args0 * (0xffff_ffffn << 7n) > 2n ** 64n - 1n) throw new KernelError('EINVAL', op, `bus cycle ${args0} ns (1 up to where a TMICT's time overflows)`);
      if (vm.irq === undefined) throw new KernelError('ENXIO', op, 'the VM has no in-kernel LAPIC');
      if (vm.createdVcpus > 0) throw new KernelError('EINVAL', op, 'vCPUs exist already');
      vm.irq.chip.apicBusCycleNs = Number(args0);
      return 0;
    }
    default:
      return undefined;
  }
}

/** The interrupt ioctls of a VM fd. */
export const VM_IRQ_IOCTLS: readonly IoctlDef<VmFile>[] = [
  {
    name: 'KVM_CREATE_IRQCHIP',
    request: KVM_CREATE_IRQCHIP,
    arg: { dir: 'none' },
    run({ vm }) {
      const op = 'KVM_CREATE_IRQCHIP';
      if (vm.irq !== undefined) throw new KernelError('EEXIST', op, 'the VM has an irqchip');
      if (vm.createdVcpus > 0) throw new KernelError('EINVAL', op, 'vCPUs exist already');
      // kvm_pic_init, kvm_ioapic_init, kvm_setup_default_irq_routing; then irqchip_mode = KVM_IRQCHIP_KERNEL.
      vm.irq = new VmIrqchip(vm, KvmIrqchip.createKernel(irqchipOptions(vm)));
      return 0;
    },
  },
  {
    name: 'KVM_CREATE_PIT2',
    request: KVM_CREATE_PIT2,
    arg: { dir: 'in', codec: KVM_PIT_CONFIG_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_CREATE_PIT2';
      return createPit(vm, copyFromUser(KVM_PIT_CONFIG_CODEC, arg, op).flags, op);
    },
  },
  {
    name: 'KVM_CREATE_PIT',
    request: KVM_CREATE_PIT,
    arg: { dir: 'none' },
    // The legacy call: a PIT with the speaker port (KVM_PIT_SPEAKER_DUMMY).
    run: ({ vm }) => createPit(vm, KVM_PIT_SPEAKER_DUMMY, 'KVM_CREATE_PIT'),
  },
  {
    name: 'KVM_GET_PIT',
    request: KVM_GET_PIT,
    arg: { dir: 'inout', codec: KVM_PIT_STATE_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_GET_PIT';
      copyFromUser(KVM_PIT_STATE_CODEC, arg, op);
      const { irq, pit } = needPit(vm, op);
      copyToUser(KVM_PIT_STATE_CODEC, irq.op(() => pit.getState()), arg, op);
      return 0;
    },
  },
  {
    name: 'KVM_SET_PIT',
    request: KVM_SET_PIT,
    arg: { dir: 'in', codec: KVM_PIT_STATE_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_SET_PIT';
      const ps = copyFromUser(KVM_PIT_STATE_CODEC, arg, op);
      const { irq, pit } = needPit(vm, op);
      irq.op((now) => pit.setState(ps, now));
      return 0;
    },
  },
  {
    name: 'KVM_GET_PIT2',
    request: KVM_GET_PIT2,
    arg: { dir: 'out', codec: KVM_PIT_STATE2_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_GET_PIT2';
      const { irq, pit } = needPit(vm, op);
      const ps = irq.op(() => pit.getState2());
      copyToUser(KVM_PIT_STATE2_CODEC, ps, arg, op);
      return 0;
    },
  },
  {
    name: 'KVM_SET_PIT2',
    request: KVM_SET_PIT2,
    arg: { dir: 'in', codec: KVM_PIT_STATE2_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_SET_PIT2';
      const ps = copyFromUser(KVM_PIT_STATE2_CODEC, arg, op);
      const { irq, pit } = needPit(vm, op);
      irq.op((now) => pit.setState2(ps, now));
      return 0;
    },
  },
  {
    name: 'KVM_REINJECT_CONTROL',
    request: KVM_REINJECT_CONTROL,
    arg: { dir: 'in', codec: KVM_REINJECT_CONTROL_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_REINJECT_CONTROL';
      const c = copyFromUser(KVM_REINJECT_CONTROL_CODEC, arg, op);
      const { irq } = needPit(vm, op);
      irq.op(() => irq.chip.setPitReinject(c.pit_reinject !== 0));
      return 0;
    },
  },
  {
    name: 'KVM_IRQ_LINE',
    request: KVM_IRQ_LINE,
    arg: { dir: 'in', codec: KVM_IRQ_LEVEL_CODEC },
    run: ({ vm }, arg) => irqLine(vm, arg, false),
  },
  {
    name: 'KVM_IRQ_LINE_STATUS',
    request: KVM_IRQ_LINE_STATUS,
    arg: { dir: 'inout', codec: KVM_IRQ_LEVEL_CODEC },
    run: ({ vm }, arg) => irqLine(vm, arg, true),
  },
  {
    name: 'KVM_SET_GSI_ROUTING',
    request: KVM_SET_GSI_ROUTING,
    arg: { dir: 'in', codec: KVM_IRQ_ROUTING_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_SET_GSI_ROUTING';
      const header = userAccess(op, () => KVM_IRQ_ROUTING_CODEC.copyInHeader(arg));
      // kvm_arch_can_set_irq_routing, then the count and the flags, before the entries are read.
      const irq = needIrqchip(vm, op, 'EINVAL');
      if (header.nr > KVM_MAX_IRQ_ROUTES) throw new KernelError('EINVAL', op, `${header.nr} entries is above KVM_MAX_IRQ_ROUTES (${KVM_MAX_IRQ_ROUTES})`);
      if (header.flags !== 0) throw new KernelError('EINVAL', op, 'flags must be 0');
      const entries = header.nr === 0 ? [] : userAccess(op, () => KVM_IRQ_ROUTING_CODEC.copyInEntries(arg, header.nr));
      irq.op(() => irq.chip.setGsiRouting(entries));
      return 0;
    },
  },
  {
    name: 'KVM_GET_IRQCHIP',
    request: KVM_GET_IRQCHIP,
    arg: { dir: 'inout', codec: KVM_IRQCHIP_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_GET_IRQCHIP';
      // Only chip_id is read: from the C bytes in place, or from the object's copy.
      const bytes = userStructView(KVM_IRQCHIP_CODEC, arg, op);
      const chipId = bytes !== undefined ? bytes.getUint32(IRQCHIP_CHIP_ID, true) : copyFromUser(KVM_IRQCHIP_CODEC, arg, op).chip_id;
      const irq = needFullIrqchip(vm, op);
      const c = irq.chip;
      let out: kvm_irqchip;
      // kvm_vm_ioctl_get_irqchip
      if (chipId === KVM_IRQCHIP_PIC_MASTER || chipId === KVM_IRQCHIP_PIC_SLAVE) out = { chip_id: chipId, chip: { pic: c.pic?.getState(chipId) as NonNullable<ReturnType<NonNullable<KvmIrqchip['pic']>['getState']>> } };
      else if (chipId === KVM_IRQCHIP_IOAPIC) out = { chip_id: chipId, chip: { ioapic: c.ioapic?.getState() as NonNullable<ReturnType<NonNullable<KvmIrqchip['ioapic']>['getState']>> } };
      else throw new KernelError('EINVAL', op, `unknown chip_id ${chipId}`);
      copyToUser(KVM_IRQCHIP_CODEC, out, arg, op);
      return 0;
    },
  },
  {
    name: 'KVM_SET_IRQCHIP',
    request: KVM_SET_IRQCHIP,
    arg: { dir: 'in', codec: KVM_IRQCHIP_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_SET_IRQCHIP';
      // The union read by chip_id: straight from the C bytes, or from the object's copy.
      const bytes = userStructView(KVM_IRQCHIP_CODEC, arg, op);
      const chip = bytes !== undefined ? decodeKvmIrqchip(bytes) : resolveKvmIrqchip(copyFromUser(KVM_IRQCHIP_CODEC, arg, op));
      const irq = needFullIrqchip(vm, op);
      const c = irq.chip;
      // kvm_vm_ioctl_set_irqchip: a raw copy of the chip's state, then kvm_pic_update_irq.
      if ('pic' in chip.chip && (chip.chip_id === KVM_IRQCHIP_PIC_MASTER || chip.chip_id === KVM_IRQCHIP_PIC_SLAVE)) {
        const s = chip.chip.pic;
        const id = chip.chip_id;
        irq.op(() => c.run(() => c.pic?.setState(id, s)));
      } else if ('ioapic' in chip.chip) {
        const s = chip.chip.ioapic;
        irq.op(() => c.run(() => c.ioapic?.setState(s)));
      } else {
        throw new KernelError('EINVAL', op, `unknown chip_id ${chip.chip_id}`);
      }
      return 0;
    },
  },
  {
    name: 'KVM_IRQFD',
    request: KVM_IRQFD,
    arg: { dir: 'in', codec: KVM_IRQFD_CODEC },
    run({ vm }, arg, proc) {
      const op = 'KVM_IRQFD';
      const args = copyFromUser(KVM_IRQFD_CODEC, arg, op);
      const irq = vm.irq;
      if (irq === undefined) {
        // kvm_irqfd: the flags first, then (assign) kvm_arch_irqfd_allowed; a deassign finds nothing.
        if ((args.flags & ~(KVM_IRQFD_FLAG_DEASSIGN | KVM_IRQFD_FLAG_RESAMPLE)) !== 0 || (args.flags & KVM_IRQFD_FLAG_DEASSIGN) === 0) throw new KernelError('EINVAL', op, 'the VM has no in-kernel irqchip');
        return deassignWithoutIrqchip(args.fd, proc);
      }
      return irq.irqfds.ioctl(args, proc);
    },
  },
  {
    name: 'KVM_SIGNAL_MSI',
    request: KVM_SIGNAL_MSI,
    arg: { dir: 'in', codec: KVM_MSI_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_SIGNAL_MSI';
      const msi = copyFromUser(KVM_MSI_CODEC, arg, op);
      const irq = needIrqchip(vm, op, 'EINVAL');
      const r = irq.op(() => irq.chip.signalMsi(msi));
      // kvm_set_msi's -1 (no destination on the slow path) reaches user space as -EPERM, its -EINVAL as EINVAL.
      if (r === -1) throw new KernelError('EPERM', op, 'no APIC took the MSI');
      if (r < 0) throw new KernelError('EINVAL', op, 'invalid MSI address');
      return r;
    },
  },
];

/** A deassign on a VM without irqchip: the eventfd is looked up (EBADF/EINVAL), then nothing matches. */
function deassignWithoutIrqchip(fd: number, proc: Process): number {
  eventfdOf(proc, fd, 'KVM_IRQFD');
  return 0;
}

/** KVM_CREATE_PIT2 / KVM_CREATE_PIT: EEXIST, then ENOENT without an in-kernel PIC. */
function createPit(vm: Vm, flags: number, op: string): number {
  const irq = vm.irq;
  if (irq?.chip.pit !== undefined) throw new KernelError('EEXIST', op, 'the VM has a PIT');
  if (irq === undefined || !irq.full) throw new KernelError('ENOENT', op, 'no in-kernel PIC');
  irq.op((now) => irq.chip.createPit(flags, now));
  return 0;
}

/** `kvm_vm_ioctl_irq_line`; KVM_IRQ_LINE_STATUS writes `kvm_set_irq`'s answer back over `irq`. */
function irqLine(vm: Vm, arg: unknown, status: boolean): number {
  const op = status ? 'KVM_IRQ_LINE_STATUS' : 'KVM_IRQ_LINE';
  const ev = copyFromUser(KVM_IRQ_LEVEL_CODEC, arg, op);
  const irq = needIrqchip(vm, op);
  if (status) checkUserWritable(KVM_IRQ_LEVEL_STATUS_CODEC, arg, op);
  const r = irq.setIrq(KVM_USERSPACE_IRQ_SOURCE_ID, ev.irq, ev.level !== 0, status);
  if (status) copyToUser(KVM_IRQ_LEVEL_STATUS_CODEC, { irq: r >>> 0, status: r, level: ev.level }, arg, op);
  return 0;
}
