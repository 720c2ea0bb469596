/**
 * The events a KVM module adds to the host's stream (declaration merging into `ExtensionEvents`).
 *
 * @module
 */
import type { EventStamp } from '@vac/core';

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

export {};
