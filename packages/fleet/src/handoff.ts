/**
 * Moving a running VM to another KVM module **by handoff**, as QEMU's cpr-transfer does: a new VMM process takes the
 * VM over. The old VMM pauses and saves the VM and checks the target; it makes a UNIX socket pair and starts the new
 * process (fork and exec: the child closes what it inherited besides its end of the socket, as QEMU's fds are
 * close-on-exec); it sends the guest memory's memfd over the socket (`SCM_RIGHTS`) with the saved state; the new
 * process maps the memfd at an address of its own and restores the VM on the target with memory slots at *its*
 * addresses; its vCPUs start; the old process exits, and its VM goes with it. Phases: `pause`, `save`, `check`,
 * `handoff`, `restore`, `resume`, `release`, each a `fleet:move-phase` event.
 *
 * A failure before `resume` is rolled back: the new process is killed (everything it made goes with it), the old
 * one closes its end of the socket and resumes its VM where it was.
 *
 * @module
 */
import { AF_UNIX, SOCK_STREAM, UsageError, recvmsg, sendmsg, socketpair, type Mapping } from '@vac/core';
import { GuestVmm, type VmIncarnation } from './guest-vmm.js';
import type { MoveOptions, MoveResult } from './move.js';
import { MoveRun, PhaseFailure } from './move-run.js';

/** What {@link moveByHandoff} returns: the move's result and, when it went through, the VMM that now runs the VM. */
export interface HandoffResult {
  /** The move. */
  readonly result: MoveResult;
  /** The new VMM (its process, its mapping of the guest memory, its VM on the target), or the old one after a rollback. */
  readonly vmm: GuestVmm;
}

/**
 * Move `vmm`'s VM to the module at `devPath` by handing it to a new VMM process (see the module comment). The guest
 * memory must be a memfd (`GuestVmm.create({ memfd: true })`). Never throws for a move that fails — the result says
 * where it stopped, and the old VMM runs the VM as before.
 *
 * @throws UsageError `ERR_INVALID_STATE` when the guest memory is not a memfd; `ERR_INVALID_ARG` when `devPath` is where the VM already is
 */
export function moveByHandoff(vmm: GuestVmm, devPath: string, options: MoveOptions = {}): HandoffResult {
  if (vmm.memfd === undefined) throw new UsageError('ERR_INVALID_STATE', `moveByHandoff: ${vmm.name}'s guest memory is not a memfd (GuestVmm.create({ memfd: true }))`);
  const memfd = vmm.memfd;
  const m = new MoveRun(vmm, devPath, options, 'moveByHandoff');
  const old = m.meter.proc;
  let child: GuestVmm['proc'] | undefined;
  let oldEnd: number | undefined;
  try {
    const saved = m.pauseSaveCheck();
    const handed = m.run('handoff', () => {
      const [mine, theirs] = socketpair(old, AF_UNIX, SOCK_STREAM);
      oldEnd = mine;
      child = m.host.spawn({ uid: old.uid, groups: ['kvm'], name: `${vmm.name}'`, parent: vmm.proc, cpu: vmm.proc.cpu });
      const next = m.counted(child).proc;
      for (const f of next.fds()) if (f.fd !== theirs) next.close(f.fd);
      old.close(theirs);
      // An SEV guest's VM fd goes along: the new process takes its encryption context over.
      sendmsg(old, mine, { data: new TextEncoder().encode('vmstate'), fds: vmm.sev ? [memfd, vmm.current.handle.vm] : [memfd] });
      const got = recvmsg(next, theirs, 64);
      const fd = got.fds[0];
      if (fd === undefined || (vmm.sev && got.fds[1] === undefined)) throw new UsageError('ERR_INVALID_STATE', 'moveByHandoff: the memfd did not arrive');
      const memory: Mapping = next.mmap(fd, vmm.memory.length);
      return { proc: next, fd, encSourceVm: got.fds[1], memory, slots: vmm.slots.map((s) => ({ ...s, userspace_addr: memory.addr + (s.userspace_addr - vmm.memory.addr) })) };
    });
    const now: VmIncarnation = m.run('restore', () => {
      const restored = m.restoreWith(handed.proc, saved, handed.slots, handed.encSourceVm);
      if (handed.encSourceVm !== undefined) handed.proc.close(handed.encSourceVm); // the dead source VM: nothing more to take
      return restored;
    });
    const successor = m.run('resume', () => {
      const s = GuestVmm.successor(vmm, child as GuestVmm['proc'], handed.memory, handed.fd, handed.slots, now);
      if (m.wasRunning) s.start();
      return s;
    });
    const blackoutNs = m.host.clock.nowNs - m.t0;
    m.run('release', () => vmm.proc.kill());
    return { result: m.moved(blackoutNs, successor.proc.pid), vmm: successor };
  } catch (e) {
    if (!(e instanceof PhaseFailure)) throw e;
    if (e.phase === 'release') throw e.error;
    // Roll back: the new process goes with everything it made; the old one closes its socket and runs on.
    if (child !== undefined && child.alive) child.kill();
    if (oldEnd !== undefined) vmm.proc.close(oldEnd);
    if (m.wasRunning) vmm.start();
    return { result: m.rolledBack(e), vmm };
  }
}
