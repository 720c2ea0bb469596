/**
 * The events a KVM module adds to the host's stream (declaration merging into `ExtensionEvents`), and what they
 * mean to the trace tools ({@link describeKvmEvents}).
 *
 * @module
 */
import type { EventBus, EventStamp } from '@vac/core';

declare module '@vac/core' {
  interface ExtensionEvents {
    /** A VM was created (`KVM_CREATE_VM`). */
    'vm:create': (e: EventStamp & { readonly module: string; readonly vm: number; readonly pid: number }) => void;
    /** A VM was destroyed (its last reference dropped). */
    'vm:destroy': (e: EventStamp & { readonly module: string; readonly vm: number }) => void;
    /** A vCPU was created (`KVM_CREATE_VCPU`). */
    'vcpu:create': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly tlbTag: number }) => void;
    /** A vCPU was loaded on a CPU (`vcpu_load`, `kvm_sched_in`). */
    'vcpu:load': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly cpu: number }) => void;
    /** A vCPU was put from a CPU (`vcpu_put`, `kvm_sched_out`). */
    'vcpu:put': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly cpu: number }) => void;
    /** `KVM_RUN` returned to user space with an exit. */
    'vcpu:exit': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly cpu: number; readonly reason: number }) => void;
    /** A PMI (or NMI) taken while a guest ran was handled by its module. */
    'pmi:guest': (e: EventStamp & { readonly module: string; readonly vm: number; readonly vcpu: number; readonly cpu: number; readonly rip: number }) => void;
  }
}

/** Tell the host's trace tools what KVM's events are: their timeline roles (idempotent; done at every load). */
export function describeKvmEvents(events: EventBus): void {
  events.describe('vcpu:load', { timeline: 'run:start' });
  events.describe('vcpu:put', { timeline: 'run:end' });
  events.describe('vcpu:exit', { timeline: 'run:exit' });
  events.describe('vm:create', { timeline: 'guest:start' });
  events.describe('vm:destroy', { timeline: 'guest:end' });
  events.describe('vcpu:create', { timeline: 'guest:vcpu' });
  events.describe('pmi:guest', { timeline: 'mark:pmi' });
}
