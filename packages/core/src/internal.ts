/**
 * `@vac/core/internal`: what the other packages of this repository (the vendor models, KVM) need from the core and
 * users do not — shared per-CPU mechanisms, the ID bitmap, parameter parsing, VAC's hook registration for legacy
 * modules. Not part of the public API: it may change in any release.
 *
 * @module
 */
export { CounterTable, FAULT_MODES, FaultKnobs, checkCpuIndex, cpuAt, isFaultMode, noSuchCpu, resolvePerCpu } from './per-cpu.js';
export { IdBitmap } from './id-bitmap.js';
export { CpuTables, type PerCpuTable } from './cpu.js';
export { kstrtobool, kstrtoll, paramText } from './host/params.js';
export { registerCoreImage } from './host/host.js';
export { checkVendorSupport, registerVacHooks, type VacHooks } from './vac/vac.js';
export { IrqRegistry } from './vac/irq.js';
export { VirtualizationControl } from './vac/virtualization.js';
export { UserReturnMsrs } from './vac/uret.js';
export type { VacParts } from './vac/handle.js';
export { emitVirtEvent } from './virt-events.js';
export { XstatePermissions, fpuUserConfig, type FpuUserConfig } from './host/xstate-perm.js';
