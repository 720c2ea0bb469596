/**
 * Moving a running VM to another KVM module on the same host, in place: the VMM process opens the target module's
 * `/dev/kvmY` and recreates its VM there over the same guest memory (its own mapping, registered again — nothing is
 * copied), as the RFC leaves to user space. The phases, each an event (`fleet:move-phase`):
 *
 * 1. `pause` — `immediate_exit` and a signal to each vCPU thread ({@link GuestVmm.pause});
 * 2. `save` — the whole VM through the ioctls (`saveVm` of `@vac/kvm`: pending I/O completed, kvmclock, the
 *    irqchip, every vCPU's state);
 * 3. `check` — `canMove` of `@vac/kvm` over what the VMM sees of both modules (`probeModule`): the target's
 *    capabilities, MSR list, supported CPUID and XSAVE size against the saved state; a move it refuses stops here;
 * 4. `restore` — `restoreVm` on the target with the same memory slots and the capabilities the VMM had enabled;
 *    it restores of the saved MSRs those the target lists (as QEMU restores only what `KVM_GET_MSR_INDEX_LIST` offers — so
 *    without the check a value the target cannot hold is lost silently, which is what `canMove` warns of);
 * 5. `resume` — the vCPU threads start again, on the target;
 * 6. `release` — the source's `kvm_run` mappings unmapped and its fds closed: the source VM is destroyed and its
 *    module no longer used by this VMM.
 *
 * A failure in phases 1–4 is rolled back: whatever the restore opened or mapped is closed and unmapped (the VMM
 * compares its fds and mappings with those before), and the VM resumes on the source — the host as it was. The
 * blackout is read off the host's simulated clock, which the VMM's calls move forward by their cost
 * ({@link MeteredProcess}).
 *
 * @module
 */
import type { ModuleFacts, MoveVerdict } from '@vac/kvm';
import type { GuestVmm, VmIncarnation } from './guest-vmm.js';
import type { SyscallCosts, SyscallCount } from './meter.js';
import { MoveRun, PhaseFailure } from './move-run.js';

/** The phases of a move in place, in order. */
export const MOVE_PHASES = ['pause', 'save', 'check', 'restore', 'resume', 'release'] as const;

/** The phases of a move by handoff, in order: a `handoff` (the new VMM process gets the guest memory) before the restore. */
export const HANDOFF_PHASES = ['pause', 'save', 'check', 'handoff', 'restore', 'resume', 'release'] as const;

/** One phase of a move. */
export type MovePhase = (typeof HANDOFF_PHASES)[number];

/** Options of {@link moveInPlace}. */
export interface MoveOptions {
  /** What each system call costs in simulated time. Default {@link DEFAULT_SYSCALL_COSTS}. */
  readonly costs?: SyscallCosts;
  /**
   * What the VMM knows of the modules (`probeModule`'s result), as a VMM that probed them once keeps it; a module not
   * given is probed during the `check` phase (and its ioctls counted).
   */
  readonly facts?: { readonly source?: ModuleFacts; readonly target?: ModuleFacts };
  /** Refuse a move `canMove` refuses (default true). With false the move goes ahead and fails where the kernel refuses. */
  readonly check?: boolean;
}

/** One phase as it went. */
export interface PhaseRecord {
  /** The phase. */
  readonly phase: MovePhase;
  /** Whether it completed. */
  readonly ok: boolean;
  /** Simulated time it took, in ns. */
  readonly ns: number;
  /** ioctls it made. */
  readonly ioctls: number;
}

/** What {@link moveInPlace} did. */
export interface MoveResult {
  /** The VMM's name. */
  readonly vmm: string;
  /** The source module's device. */
  readonly from: string;
  /** The target module's device. */
  readonly to: string;
  /** `moved`: the VM runs on the target; `rolled-back`: it runs on the source, the host as before the move. */
  readonly outcome: 'moved' | 'rolled-back';
  /** The phase that failed (a rolled-back move). */
  readonly failedPhase?: MovePhase;
  /** Why it failed. */
  readonly error?: unknown;
  /** `canMove`'s verdict (when the move got that far). */
  readonly verdict?: MoveVerdict;
  /** Simulated time from the pause request until every vCPU thread had left `KVM_RUN`, in ns (scheduler ticks). */
  readonly pauseNs: number;
  /** Simulated time the guest did not run: from the pause request until its vCPUs were started again, in ns. */
  readonly blackoutNs: number;
  /** Simulated time of the whole move (until the source was released), in ns. */
  readonly durationNs: number;
  /** The phases, in order, as far as the move went. */
  readonly phases: readonly PhaseRecord[];
  /** The system calls the move made. */
  readonly syscalls: SyscallCount;
}

/**
 * Move `vmm`'s VM to the module at `devPath` in place (see the module comment). Never throws for a move that fails
 * — the result says where it stopped, and the VM runs on the source as before.
 *
 * @throws UsageError `ERR_INVALID_ARG` when `devPath` is where the VM already is, or `costs` is malformed
 */
export function moveInPlace(vmm: GuestVmm, devPath: string, options: MoveOptions = {}): MoveResult {
  const m = new MoveRun(vmm, devPath, options, 'moveInPlace');
  const proc = m.meter.proc;
  const fdsBefore = new Set(vmm.proc.fds().map((f) => f.fd));
  const mapsBefore = new Set(vmm.proc.mappings().map((x) => x.addr));
  try {
    const saved = m.pauseSaveCheck();
    const next: VmIncarnation = m.run('restore', () => m.restoreWith(proc, saved, vmm.slots));
    const old = vmm.current;
    m.run('resume', () => {
      vmm.adopt(next);
      if (m.wasRunning) vmm.start();
    });
    const blackoutNs = m.host.clock.nowNs - m.t0;
    m.run('release', () => {
      for (const x of old.runMappings) proc.munmap(x.addr, x.length);
      for (const v of old.handle.vcpus) proc.close(v.fd);
      proc.close(old.handle.vm);
      proc.close(old.handle.sys);
    });
    return m.moved(blackoutNs, vmm.proc.pid);
  } catch (e) {
    if (!(e instanceof PhaseFailure)) throw e;
    if (e.phase === 'release') throw e.error; // the VM runs on the target; a failing close is a bug, not a move to undo
    // Roll back: give back what the restore took (the fds and mappings the VMM did not have), resume on the source.
    for (const x of vmm.proc.mappings()) if (!mapsBefore.has(x.addr)) vmm.proc.munmap(x.addr, x.length);
    for (const f of vmm.proc.fds().reverse()) if (!fdsBefore.has(f.fd)) vmm.proc.close(f.fd);
    if (m.wasRunning) vmm.start();
    return m.rolledBack(e);
  }
}
