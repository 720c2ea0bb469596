/**
 * The bookkeeping and the shared phases of a move ({@link MoveRun}): every phase timed on the simulated clock,
 * counted in ioctls and emitted as a `fleet:move-phase` event; pause, save and check as both kinds of move make them;
 * the restore on the target; the result and the `fleet:move` event. Used by `moveInPlace` and `moveByHandoff`.
 *
 * @module
 */
import { UsageError, type Host, type Process } from '@vac/core';
import { KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM, KVM_ENABLE_CAP, canMove, makeKvmEnableCap, probeModule, restoreVm, saveVm, type MoveVerdict, type SavedVm, type kvm_userspace_memory_region } from '@vac/kvm';
import type { GuestVmm, VmIncarnation } from './guest-vmm.js';
import { DEFAULT_SYSCALL_COSTS, MeteredProcess, type SyscallCount } from './meter.js';
import type { MoveOptions, MovePhase, MoveResult, PhaseRecord } from './move.js';

/** A phase that failed: its name and the error. */
export class PhaseFailure extends Error {
  constructor(
    readonly phase: MovePhase,
    readonly error: unknown,
  ) {
    super(`${phase}: ${String(error)}`);
  }
}

/** Why an SEV VM stays where it is without VAC's mediation. */
export const SEV_STAYS = 'an SEV guest cannot leave its module: KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM from another module is EBADF unless VAC mediates (vac.cross_module_moves=Y)';

/**
 * Whether VAC hands encryption contexts between modules on `host`: `/sys/module/vac/parameters/cross_module_moves`
 * reads `Y` (beyond the RFC; docs/builds.md).
 */
export function sevMayLeave(host: Host): boolean {
  try {
    return host.readParam('vac', 'cross_module_moves') === 'Y';
  } catch {
    return false;
  }
}

/** `<vm>` of `/dev/<vm>`. */
const moduleOf = (dev: string): string => dev.replace(/^\/dev\//, '');

/** One move in progress. */
export class MoveRun {
  readonly host: Host;
  readonly from: string;
  readonly t0: number;
  readonly phases: PhaseRecord[] = [];
  readonly wasRunning: boolean;
  /** The source VMM's process, counted. */
  readonly meter: MeteredProcess;
  readonly #meters: MeteredProcess[] = [];
  readonly #vmm: GuestVmm;
  readonly #to: string;
  readonly #options: MoveOptions;
  #phaseStart: number;
  #phaseIoctls = 0;
  verdict: MoveVerdict | undefined;
  pauseNs = 0;
  /** The target's KVM_GET_MSR_INDEX_LIST (set by the `check` phase), which `restoreVm` restores the saved MSRs of. */
  listed: readonly number[] = [];

  constructor(vmm: GuestVmm, to: string, options: MoveOptions, what: string) {
    if (to === vmm.devPath) throw new UsageError('ERR_INVALID_ARG', `${what}: ${vmm.name} already runs on ${to}`);
    this.#vmm = vmm;
    this.#to = to;
    this.#options = options;
    this.host = vmm.host;
    this.from = vmm.devPath;
    this.meter = this.counted(vmm.proc);
    this.t0 = this.host.clock.nowNs;
    this.#phaseStart = this.t0;
    this.wasRunning = vmm.running;
  }

  /** `proc` with its system calls counted in this move (and costed on the clock). */
  counted(proc: Process): MeteredProcess {
    const m = new MeteredProcess(this.host, proc, this.#options.costs ?? DEFAULT_SYSCALL_COSTS);
    this.#meters.push(m);
    return m;
  }

  /** What every counted process made so far. */
  syscalls(): SyscallCount {
    const byName = new Map<string, number>();
    let ioctls = 0;
    let fileOps = 0;
    let ns = 0;
    for (const m of this.#meters) {
      const c = m.count();
      ioctls += c.ioctls;
      fileOps += c.fileOps;
      ns += c.ns;
      for (const [k, v] of c.byName) byName.set(k, (byName.get(k) ?? 0) + v);
    }
    return { ioctls, fileOps, byName, ns };
  }

  #emitPhase(phase: MovePhase, ok: boolean): void {
    const clock = this.host.clock;
    const ns = clock.nowNs - this.#phaseStart;
    let total = 0;
    for (const m of this.#meters) total += m.ioctls;
    const ioctls = total - this.#phaseIoctls;
    this.phases.push({ phase, ok, ns, ioctls });
    this.host.events.emit('fleet:move-phase', { vmm: this.#vmm.name, pid: this.#vmm.proc.pid, from: moduleOf(this.from), to: moduleOf(this.#to), phase, ok, ns, ioctls });
    this.#phaseStart = clock.nowNs;
    this.#phaseIoctls = total;
  }

  /** Run one phase: timed, counted, an event; a throw becomes a {@link PhaseFailure}. */
  run<T>(phase: MovePhase, body: () => T): T {
    let v: T;
    try {
      v = body();
    } catch (e) {
      this.#emitPhase(phase, false);
      throw new PhaseFailure(phase, e);
    }
    this.#emitPhase(phase, true);
    return v;
  }

  /** `pause`, `save` and `check`, as every move makes them. */
  pauseSaveCheck(): SavedVm {
    const vmm = this.#vmm;
    this.run('pause', () => vmm.pause());
    this.pauseNs = this.host.clock.nowNs - this.t0;
    const saved = this.run('save', () => saveVm(this.meter.proc, vmm.current.handle));
    this.run('check', () => {
      const source = this.#options.facts?.source ?? probeModule(this.meter.proc, this.from);
      const target = this.#options.facts?.target ?? probeModule(this.meter.proc, this.#to);
      this.listed = target.msrIndexList;
      this.verdict = canMove({ saved, enabledCaps: vmm.enabledCaps }, source, target);
      const refusal = this.verdict.reasons.find((r) => r.kind !== 'note');
      if (this.#options.check !== false && refusal !== undefined) throw new UsageError('ERR_INVALID_STATE', `canMove refuses: ${refusal.step}: ${refusal.detail}`);
      if (this.#options.check !== false && vmm.sev && !sevMayLeave(this.host)) throw new UsageError('ERR_INVALID_STATE', SEV_STAYS);
    });
    return saved;
  }

  /**
   * The VM restored on the target by `proc` with `slots` and the capabilities the VMM had enabled (`restoreVm`
   * restores the saved MSRs the target lists, which the `check` phase learnt).
   */
  restoreWith(proc: Process, saved: SavedVm, slots: readonly kvm_userspace_memory_region[], encSourceVm?: number): VmIncarnation {
    const caps = this.#vmm.enabledCaps;
    const r = restoreVm(proc, this.#to, saved, {
      slots,
      msrIndexList: this.listed,
      // A method, not an arrow: tsx names an arrow given to a property at run time (`__name`), at every move.
      configure(p, _sys, vm) {
        for (const { cap, flags } of caps) p.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap, args: [flags, 0n, 0n, 0n] }));
      },
    });
    // An SEV guest's memory is readable only with its key: the new VM takes the encryption context over, last, so
    // that a refusal (EBADF across modules without VAC's mediation) leaves the source VM alive for the rollback.
    if (this.#vmm.sev) proc.ioctl(r.vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM, args: [BigInt(encSourceVm ?? this.#vmm.current.handle.vm), 0n, 0n, 0n] }));
    const vcpus = r.vcpus.map((v) => ({ id: v.id, fd: v.fd, run: v.run }));
    const chip = this.#vmm.current.handle.irqchip;
    return { devPath: this.#to, handle: chip === undefined ? { sys: r.sys, vm: r.vm, vcpus } : { sys: r.sys, vm: r.vm, vcpus, irqchip: chip }, runMappings: r.vcpus.map((v) => v.runMapping) };
  }

  /** The result of a move that went through (`blackoutNs` taken at the resume), and its `fleet:move` event. */
  moved(blackoutNs: number, pid: number): MoveResult {
    const syscalls = this.syscalls();
    this.host.events.emit('fleet:move', { vmm: this.#vmm.name, pid, from: moduleOf(this.from), to: moduleOf(this.#to), outcome: 'moved', blackoutNs, ioctls: syscalls.ioctls });
    return { vmm: this.#vmm.name, from: this.from, to: this.#to, outcome: 'moved', ...(this.verdict === undefined ? {} : { verdict: this.verdict }), pauseNs: this.pauseNs, blackoutNs, durationNs: this.host.clock.nowNs - this.t0, phases: this.phases, syscalls };
  }

  /** The result of a move rolled back after `failure` (the VM runs on the source again), and its `fleet:move` event. */
  rolledBack(failure: PhaseFailure): MoveResult {
    const blackoutNs = this.host.clock.nowNs - this.t0;
    const syscalls = this.syscalls();
    this.host.events.emit('fleet:move', { vmm: this.#vmm.name, pid: this.#vmm.proc.pid, from: moduleOf(this.from), to: moduleOf(this.#to), outcome: 'rolled-back', blackoutNs, ioctls: syscalls.ioctls, failedPhase: failure.phase });
    return {
      vmm: this.#vmm.name,
      from: this.from,
      to: this.#to,
      outcome: 'rolled-back',
      failedPhase: failure.phase,
      error: failure.error,
      ...(this.verdict === undefined ? {} : { verdict: this.verdict }),
      pauseNs: failure.phase === 'pause' ? blackoutNs : this.pauseNs,
      blackoutNs,
      durationNs: blackoutNs,
      phases: this.phases,
      syscalls,
    };
  }
}
