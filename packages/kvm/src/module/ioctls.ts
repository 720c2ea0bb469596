/**
 * Every ioctl the three KVM files answer, as tables (`ioctl-table.ts`): what `fops.ts` dispatches through, what
 * the argument tests walk, and what docs/abi.md lists. `KVM_RUN` is in the vCPU table for its description, but
 * `fops.ts` runs it before looking anything up (it is the hot path).
 *
 * @module
 */
import { KVM_RUN } from '../abi/constants.js';
import type { SystemFile, VmFile } from './files.js';
import { ioctlTable, type IoctlDef, type IoctlFd, type IoctlTable } from './ioctl-table.js';
import { SYSTEM_ARCH_IOCTLS } from './system-arch-ioctls.js';
import { SYSTEM_GENERIC_IOCTLS } from './system-ioctls.js';
import type { Vcpu } from './vcpu.js';
import { DIRTY_RING_VM_IOCTLS } from './dirty-ring.js';
import { VCPU_EVENTS_IOCTLS } from './vcpu-events-ioctls.js';
import { VCPU_SMM_IOCTLS } from './smm.js';
import { VCPU_FPU_IOCTLS } from './vcpu-fpu-ioctls.js';
import { VCPU_MISC_IOCTLS } from './vcpu-misc-ioctls.js';
import { VCPU_TRANSLATE_IOCTL } from './vcpu-translate.js';
import { VCPU_ATTR_IOCTLS } from './vcpu-attr-ioctls.js';
import { PMU_EVENT_FILTER_IOCTL } from './pmu-event-filter.js';
import { VCPU_DEBUG_IOCTLS } from './vcpu-guest-debug.js';
import { VCPU_MSR_IOCTLS } from './vcpu-msr-ioctls.js';
import { VCPU_NESTED_STATE_IOCTLS } from './vcpu-nested-state-ioctls.js';
import { VCPU_REGS_IOCTLS } from './vcpu-regs-ioctls.js';
import { VM_ARCH_IOCTLS } from './vm-arch-ioctls.js';
import { VM_IO_IOCTLS } from './vm-io-ioctls.js';
import { VM_BASE_IOCTLS } from './vm-ioctls.js';
import { VCPU_IRQ_IOCTLS } from './irq-vcpu-ioctls.js';
import { VM_IRQ_IOCTLS } from './irq-vm-ioctls.js';

/** The description of KVM_RUN (run by `fops.ts` itself). */
const KVM_RUN_DEF: IoctlDef<Vcpu> = {
  name: 'KVM_RUN',
  request: KVM_RUN,
  arg: { dir: 'value' },
  run: () => {
    throw new Error('KVM_RUN is dispatched by fops.ts');
  },
};

/** /dev/kvmX. */
export const SYSTEM_IOCTLS: IoctlTable<SystemFile> = ioctlTable([...SYSTEM_GENERIC_IOCTLS, ...SYSTEM_ARCH_IOCTLS]);
/** VM fds. */
export const VM_IOCTLS: IoctlTable<VmFile> = ioctlTable([...VM_BASE_IOCTLS, ...VM_IO_IOCTLS, ...VM_ARCH_IOCTLS, ...VM_IRQ_IOCTLS, ...DIRTY_RING_VM_IOCTLS, PMU_EVENT_FILTER_IOCTL]);
/** vCPU fds. */
export const VCPU_IOCTLS: IoctlTable<Vcpu> = ioctlTable([
  KVM_RUN_DEF,
  ...VCPU_REGS_IOCTLS,
  ...VCPU_MSR_IOCTLS,
  ...VCPU_FPU_IOCTLS,
  ...VCPU_EVENTS_IOCTLS,
  ...VCPU_MISC_IOCTLS,
  VCPU_TRANSLATE_IOCTL,
  ...VCPU_ATTR_IOCTLS,
  ...VCPU_DEBUG_IOCTLS,
  ...VCPU_IRQ_IOCTLS,
  ...VCPU_NESTED_STATE_IOCTLS,
  ...VCPU_SMM_IOCTLS,
]);

/** One row of {@link KVM_IOCTL_TABLE}. */
export interface KvmIoctlInfo {
  /** Which file. */
  readonly fd: IoctlFd;
  /** The Linux name. */
  readonly name: string;
  /** The request number. */
  readonly request: number;
  /** What the argument is. */
  readonly arg: IoctlDef<unknown>['arg'];
}

/** Every ioctl the model answers, by file, in table order. */
export const KVM_IOCTL_TABLE: readonly KvmIoctlInfo[] = [
  ...[...SYSTEM_IOCTLS.values()].map((d) => ({ fd: 'system' as const, name: d.name, request: d.request, arg: d.arg })),
  ...[...VM_IOCTLS.values()].map((d) => ({ fd: 'vm' as const, name: d.name, request: d.request, arg: d.arg })),
  ...[...VCPU_IOCTLS.values()].map((d) => ({ fd: 'vcpu' as const, name: d.name, request: d.request, arg: d.arg })),
];
