/**
 * KVM's in-kernel interrupt controllers and PIT as device models (Linux 6.12 semantics): the PIC pair, the
 * IOAPIC, the local APICs and their bus, the PIT, GSI routing and MSIs, wired per VM by {@link KvmIrqchip},
 * with their uapi state structs and byte codecs. Timed devices take simulated time as a `bigint` of ns.
 *
 * @module
 */
export * from './constants.js';
export { DeviceClock, SimTimer, NSEC_PER_SEC, earliest } from './time.js';
export { LineStates } from './line-state.js';
export { KvmPic, PIC_PORTS, type PicHooks } from './pic.js';
export { KvmIoapic, type IoapicHooks } from './ioapic.js';
export { ApicRegs, KVM_APIC_REG_SIZE } from './apic-regs.js';
export { type LapicIrq, icrToLapicIrq, destModeOf, isLowestPriority } from './apic-irq.js';
export { ApicBus, type ApicBusOptions } from './apic-bus.js';
export { LapicTimer, type LapicTimerOwner } from './lapic-timer.js';
export {
  KvmLapic,
  KVM_APIC_INIT,
  KVM_APIC_SIPI,
  lapicModeOf,
  type LapicMode,
  type LapicVcpu,
  type LapicVm,
  type LapicOptions,
  type LapicCpuid,
} from './lapic.js';
export { msiToLapicIrq, msiRouteInvalid, type MsiMessage } from './msi.js';
export { RoutingTable, DEFAULT_ROUTING, type KernelRoute, type RoutingChips, type kvm_irq_routing_entry } from './routing.js';
export { KvmPit, type PitHooks } from './pit.js';
export { KvmIrqchip, type IrqchipOptions, type kvm_msi, type Unregister } from './irqchip.js';
export { VcpuInterrupts, type IrqchipMode, type ExtintSource } from './vcpu-interrupts.js';
export * from './state/pic-state.js';
export * from './state/ioapic-state.js';
export * from './state/lapic-state.js';
export * from './state/pit-state.js';
export * from './state/irqchip-state.js';
