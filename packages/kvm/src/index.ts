/**
 * `@vac/kvm`: the KVM module factory. `kvm({ postfix })` builds the image of `kvm${postfix}`: a KVM module
 * with its own `/dev/kvm${postfix}`, its own parameters and VMs, attached to VAC. Also the /dev/kvm ABI
 * (constants, structs and the `kvm_run` view under their Linux names), the real-mode guest interpreter, and a
 * VMM helper ({@link createRealModeVm}) that sets up a real-mode VM through that ABI.
 *
 * @packageDocumentation
 */
// The events and fault sites this package adds to @vac/core's maps (declaration merging): imported here so the
// published .d.ts carries the augmentations to users of the built package, not only to the sources.
import './module/events.js';
import './module/faults.js';
export * from './abi/index.js';
export * from './guest/index.js';
export { kvm, kvmgt, type KvmOptions, type KvmImage, type KvmImageParams } from './module/factory.js';
export { kvmParams, type KvmParams } from './module/params.js';
export * from './builds/index.js';
export { KvmInstance, type InstanceConfig } from './module/instance.js';
export { Vm } from './module/vm.js';
export { Vcpu, type VcpuStats } from './module/vcpu.js';
export { Memslots, type Memslot, type MemslotChange } from './module/memslots.js';
export { MEMORY_REGION_ARG_CODEC, MEMORY_REGION2_ARG_CODEC, type MemoryRegionArg, type MemoryRegion2Arg } from './module/memslot-region.js';
export { CAP_DIVERGENCES, type CapDivergence } from './module/caps.js';
export { KVM_IOCTL_TABLE, type KvmIoctlInfo } from './module/ioctls.js';
export type { IoctlArgSpec, IoctlFd } from './module/ioctl-table.js';
export {
  createRealModeVcpu,
  createRealModeVm,
  mapKvmRun,
  releaseRealModeVm,
  saveVcpu,
  msrIndexList,
  restoreVcpu,
  parseSavedVcpu,
  savedVcpuOf,
  completePendingIo,
  saveVm,
  restoreVm,
  moveRealModeVm,
  type SavedVcpu,
  type ParsedSavedVcpu,
  parseSavedIrqchip,
  savedIrqchipOf,
  type SavedIrqchip,
  type ParsedSavedIrqchip,
  type IrqchipConfig,
  type SavedVm,
  type DirtyRingConfig,
  type HarvestedPage,
  type SavedDirtyRing,
  type VmHandle,
  type RestoreVmOptions,
  type RestoredVm,
  type RealModeRegs,
  type RealModeVcpu,
  type RealModeVcpuOptions,
  type RealModeVm,
  type RealModeVmOptions,
} from './vmm.js';
export { ALL_LEGACY_RESOURCES, type LegacyResource } from './module/legacy.js';
export { kvmInstance, vcpuOf, vmOf } from './introspect.js';
export * as irqchip from './irqchip/index.js';
