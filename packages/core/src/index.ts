/**
 * `@vac/core`: the simulated host (CPUs, module loader, devfs, processes, power events, single-owner kernel
 * hooks) and VAC, the base module that owns every virtualization resource the KVM modules share.
 *
 * @packageDocumentation
 */
export * from './errors.js';
export * from './events.js';
export * from './cpu.js';
export * from './hardware.js';
export * from './per-cpu.js';
export * from './host/params.js';
export * from './host/modules.js';
export * from './host/file.js';
export * from './host/devfs.js';
export * from './host/process.js';
export * from './host/eventfd.js';
export * from './host/cpuhp.js';
export * from './host/power.js';
export * from './host/hooks.js';
export * from './host/sched.js';
export * from './host/faults.js';
export { createHost, Host, MAX_CPUS, type HostOptions, type HostSnapshot, type SystemState } from './host/host.js';
export * from './vac/vac.js';
export * from './vac/handle.js';
export * from './vac/irq.js';
export * from './vac/invariants.js';
export * from './vac/resource.js';
export * from './id-bitmap.js';
export * from './vac/uret.js';
export * from './vac/virtualization.js';
export * from './kvm-vendor.js';
export * from './trace/recorder.js';
export * from './trace/timeline.js';
export * from './trace/chrome.js';
export * from './trace/svg.js';
