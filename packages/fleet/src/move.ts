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
 * 4. `restore` — `restoreVm` on the target with the same memory slots and the capabilities the VMM had enabled,
 *    and of the saved MSRs those the target lists (as QEMU restores only what `KVM_GET_MSR_INDEX_LIST` offers — so
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
import { UsageError, type Host } from '@vac/core';
import { KVM_ENABLE_CAP, canMove, makeKvmEnableCap, probeModule, restoreVm, saveVm, type ModuleFacts, type MoveVerdict, type SavedVm } from '@vac/kvm';
import type { GuestVmm, VmIncarnation } from './guest-vmm.js';
import { DEFAULT_SYSCALL_COSTS, MeteredProcess, type SyscallCosts, type SyscallCount } from './meter.js';

/** The phases of a move, in order. */
export const MOVE_PHASES = ['pause', 'save', 'check', 'restore', 'resume', 'release'] as const;

/** One phase of a move. */
export type MovePhase = (typeof MOVE_PHASES)[number];

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

/** A phase that failed: its name and the error. */
class PhaseFailure extends Error {
  constructor(
    readonly phase: MovePhase,
    readonly error: unknown,
  ) {
    super(`${phase}: ${String(error)}`);
  }
}

/** The machine-check bank MSRs (MCi_CTL/STATUS/ADDR/MISC, MCi_CTL2), which a VMM saves from MCG_CAP, not from the MSR list. */
function isMceBank(msr: number): boolean {
  return (msr >= 0x400 && msr <= 0x47f) || (msr >= 0x280 && msr <= 0x29f);
}

/** `<vm>` of `/dev/<vm>`. */
const moduleOf = (dev: string): string => dev.replace(/^\/dev\//, '');

/**
 * Move `vmm`'s VM to the module at `devPath` in place (see the module comment). Never throws for a move that fails
 * — the result says where it stopped, and the VM runs on the source as before.
 *
 * @throws UsageError `ERR_INVALID_ARG` when `devPath` is where the VM already is, or `costs` is malformed
 */
export function moveInPlace(vmm: GuestVmm, devPath: string, options: MoveOptions = {}): MoveResult {
  const from = vmm.devPath;
  if (devPath === from) throw new UsageError('ERR_INVALID_ARG', `moveInPlace: ${vmm.name} already runs on ${devPath}`);
  const host: Host = vmm.host;
  const meter = new MeteredProcess(host, vmm.proc, options.costs ?? DEFAULT_SYSCALL_COSTS);
  const proc = meter.proc;
  const clock = host.clock;
  const t0 = clock.nowNs;
  const phases: PhaseRecord[] = [];
  const wasRunning = vmm.running;
  let phaseStart = t0;
  let phaseIoctls = 0;
  const emitPhase = (phase: MovePhase, ok: boolean): void => {
    const ns = clock.nowNs - phaseStart;
    const ioctls = meter.count().ioctls - phaseIoctls;
    phases.push({ phase, ok, ns, ioctls });
    host.events.emit('fleet:move-phase', { vmm: vmm.name, pid: vmm.proc.pid, from: moduleOf(from), to: moduleOf(devPath), phase, ok, ns, ioctls });
    phaseStart = clock.nowNs;
    phaseIoctls = meter.count().ioctls;
  };
  const run = <T>(phase: MovePhase, body: () => T): T => {
    let v: T;
    try {
      v = body();
    } catch (e) {
      emitPhase(phase, false);
      throw new PhaseFailure(phase, e);
    }
    emitPhase(phase, true);
    return v;
  };

  let pauseNs = 0;
  let verdict: MoveVerdict | undefined;
  const fdsBefore = new Set(vmm.proc.fds().map((f) => f.fd));
  const mapsBefore = new Set(vmm.proc.mappings().map((m) => m.addr));
  try {
    run('pause', () => vmm.pause());
    pauseNs = clock.nowNs - t0;
    const saved: SavedVm = run('save', () => saveVm(proc, vmm.current.handle));
    let listed: ReadonlySet<number> = new Set();
    run('check', () => {
      const source = options.facts?.source ?? probeModule(proc, from);
      const target = options.facts?.target ?? probeModule(proc, devPath);
      listed = new Set(target.msrIndexList);
      verdict = canMove({ saved, enabledCaps: vmm.enabledCaps }, source, target);
      const refusal = verdict.reasons.find((r) => r.kind !== 'note');
      if (options.check !== false && refusal !== undefined) throw new UsageError('ERR_INVALID_STATE', `canMove refuses: ${refusal.step}: ${refusal.detail}`);
    });
    const next: VmIncarnation = run('restore', () => {
      // As QEMU does (kvm_put_msrs sends what kvm_get_supported_msrs found), only the MSRs the target lists are
      // restored; the machine-check banks come from MCG_CAP, not from the list.
      const restorable: SavedVm = { ...saved, vcpus: saved.vcpus.map((v) => ({ ...v, msrs: v.msrs.filter((m) => isMceBank(m.index) || listed.has(m.index)) })) };
      const r = restoreVm(proc, devPath, restorable, {
        slots: vmm.slots,
        configure: (p, _sys, vm) => {
          for (const { cap, flags } of vmm.enabledCaps) p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap, args: [flags, 0n, 0n, 0n] }));
        },
      });
      const vcpus = r.vcpus.map((v) => ({ id: v.id, fd: v.fd, run: v.run }));
      const chip = vmm.current.handle.irqchip;
      return { devPath, handle: chip === undefined ? { sys: r.sys, vm: r.vm, vcpus } : { sys: r.sys, vm: r.vm, vcpus, irqchip: chip }, runMappings: r.vcpus.map((v) => v.runMapping) };
    });
    const old = vmm.current;
    run('resume', () => {
      vmm.adopt(next);
      if (wasRunning) vmm.start();
    });
    const blackoutNs = clock.nowNs - t0;
    run('release', () => {
      for (const m of old.runMappings) proc.munmap(m.addr, m.length);
      for (const v of old.handle.vcpus) proc.close(v.fd);
      proc.close(old.handle.vm);
      proc.close(old.handle.sys);
    });
    const result: MoveResult = { vmm: vmm.name, from, to: devPath, outcome: 'moved', ...(verdict === undefined ? {} : { verdict }), pauseNs, blackoutNs, durationNs: clock.nowNs - t0, phases, syscalls: meter.count() };
    host.events.emit('fleet:move', { vmm: vmm.name, pid: vmm.proc.pid, from: moduleOf(from), to: moduleOf(devPath), outcome: 'moved', blackoutNs, ioctls: result.syscalls.ioctls });
    return result;
  } catch (e) {
    if (!(e instanceof PhaseFailure)) throw e;
    if (e.phase === 'release') throw e.error; // the VM runs on the target; a failing close is a bug, not a move to undo
    // Roll back: give back what the restore took (the fds and mappings the VMM did not have), resume on the source.
    for (const m of vmm.proc.mappings()) if (!mapsBefore.has(m.addr)) vmm.proc.munmap(m.addr, m.length);
    for (const f of vmm.proc.fds().reverse()) if (!fdsBefore.has(f.fd)) vmm.proc.close(f.fd);
    if (wasRunning) vmm.start();
    const blackoutNs = clock.nowNs - t0;
    const syscalls = meter.count();
    host.events.emit('fleet:move', { vmm: vmm.name, pid: vmm.proc.pid, from: moduleOf(from), to: moduleOf(devPath), outcome: 'rolled-back', blackoutNs, ioctls: syscalls.ioctls, failedPhase: e.phase });
    return {
      vmm: vmm.name,
      from,
      to: devPath,
      outcome: 'rolled-back',
      failedPhase: e.phase,
      error: e.error,
      ...(verdict === undefined ? {} : { verdict }),
      pauseNs: e.phase === 'pause' ? blackoutNs : pauseNs,
      blackoutNs,
      durationNs: blackoutNs,
      phases,
      syscalls,
    };
  }
}
