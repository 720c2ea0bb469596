/**
 * The events `@vac/fleet` adds to a host's stream (declaration merging into `ExtensionEvents`). They are user
 * space's trace markers — what a VMM or an upgrade agent would write to `trace_marker` — emitted on the host's bus
 * so that one recording (`recordEvents` of `@vac/core`) holds the kernel's events and the moves' steps in one order.
 *
 * @module
 */
import type { EventStamp } from '@vac/core';

declare module '@vac/core' {
  interface ExtensionEvents {
    /** One phase of a VM move ended (`ok: false`: it failed, and the move rolls back). */
    'fleet:move-phase': (e: EventStamp & { readonly vmm: string; readonly pid: number; readonly from: string; readonly to: string; readonly phase: string; readonly ok: boolean; readonly ns: number; readonly ioctls: number }) => void;
    /** A VM move ended: moved, or rolled back (the VM runs on the source). */
    'fleet:move': (e: EventStamp & { readonly vmm: string; readonly pid: number; readonly from: string; readonly to: string; readonly outcome: 'moved' | 'rolled-back'; readonly blackoutNs: number; readonly ioctls: number; readonly failedPhase?: string }) => void;
    /** An upgrade plan took an action (loaded a module, started a batch, rolled back, unloaded a module, …). */
    'fleet:action': (e: EventStamp & { readonly action: string; readonly detail: string }) => void;
  }
}

/** The names of the events this package emits. */
export const FLEET_EVENTS = ['fleet:move-phase', 'fleet:move', 'fleet:action'] as const;
