/**
 * A C VMM with KVM's in-kernel irqchip through the bridge (`fixtures/irqchip.c`, firmware from
 * `support/firmware.ts`): the eventfd relay (KVM_IOEVENTFD, KVM_IRQFD with and without resample). The same
 * binary and firmware give the same output on the machine's real /dev/kvm.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkInvariants } from '@vac/core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { vmOf } from '@vac/kvm';
import { runControl, socketPaths, startDaemon, type Daemon, type Session } from '../src/index.js';
import { eventsFirmware, tickFirmware } from './support/firmware.js';
import { buildNative, nativeSkipReason, parseLines, runVmm, startVmm, until, type Native, type RunningVmm } from './support/native.js';

const skip = nativeSkipReason();


describe.skipIf(skip !== undefined)('a VMM with the in-kernel irqchip through the bridge', () => {
  let native: Native;
  let d: Daemon;
  let dir: string;
  beforeAll(async () => {
    native = buildNative();
    dir = mkdtempSync(join(tmpdir(), 'vac-irqchip-'));
    d = await startDaemon({ runDir: dir, host: { cpus: 2, modules: [{ name: 'kvm0' }, { name: 'kvm1' }], symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: () => {} });
  });
  afterAll(async () => {
    await d?.stop();
  });

  const clean = async (): Promise<void> => {
    await until(() => d.bridge.sessions().size === 0, 'the VMM session to end');
    expect(d.host().processes().map((p) => p.name)).toEqual(['init']);
    expect(checkInvariants(d.host())).toEqual([]);
  };

  test('eventfds: the guest’s ioeventfd write reaches the VMM’s eventfd; its irqfd writes inject IRQ 4 and IRQ 5; the EOI of IRQ 5 signals its resamplefd', async () => {
    const fw = join(dir, 'events.bin');
    writeFileSync(fw, eventsFirmware());
    const first = d.bridge.calls().length;
    const r = await runVmm(native, socketPaths(dir).bridge, [native.irqchip, fw, 'events'], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    const v = parseLines(r.stdout);
    expect(v).toMatchObject({
      ioeventfd_assign: '0',
      irqfd_assign: '0',
      resample_assign: '0',
      irqfd_twice: '-1:EBUSY', // the same eventfd through a dup: one relay (kcmp), kvm_irqfd_assign finds it bound
      irqfd_not_eventfd: '-1:EINVAL', // a /dev/kvm fd: eventfd_ctx_fdget's EINVAL
      irqfd_devnull: '-1:EINVAL',
      irqfd_closed: '-1:EBADF',
      ioeventfd_deassign_none: '-1:ENOENT',
      ioeventfd: '1', // the guest's OUT to 0x510, handled in the kernel, counted in the VMM's eventfd
      resample: '1', // the guest's EOI of IRQ 5
    });
    // The interrupts' handlers printed A then B, then the guest reported 2 on port 0x80.
    expect(v).toMatchObject({ serial: 'AB', done: '2' });
    // The halted vCPU slept in KVM_RUN until each interrupt: no EINTR, as on the real KVM.
    expect(v.eintr).toBe('0');
    const relayed = d.bridge.calls().slice(first).filter((c) => c.op === 'signal');
    expect(relayed.map((c) => c.error)).toEqual([undefined, undefined]); // the VMM's two irqfd writes, relayed
    await clean();
  });

  test('PIT ticks: the halted vCPU sleeps in KVM_RUN, the PIT’s IRQ 0 wakes it (simulated time paced to wall time); one line per tick', async () => {
    const fw = join(dir, 'ticks.bin');
    writeFileSync(fw, tickFirmware(5));
    const r = await runVmm(native, socketPaths(dir).bridge, [native.irqchip, fw, 'ticks'], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('tick 1\ntick 2\ntick 3\ntick 4\ntick 5\ndone=5\neintr=0\n');
    await clean();
  });

  // Also with the library spinning for its replies whatever the load, for up to 300 ms (VAC_SPIN_ALWAYS,
  // VAC_SPIN_US): the signal then usually comes while the thread polls for the KVM_RUN's reply with every signal
  // blocked, and must still end the KVM_RUN (the spin sees it pending and ppoll delivers it).
  test.each([
    ['', {}],
    ['; the same while the library spins for the reply', { VAC_SPIN_ALWAYS: '1', VAC_SPIN_US: '300000' }],
  ] as const)('a signal to the thread blocked in KVM_RUN (SIGUSR1 with a handler): KVM_RUN returns EINTR with KVM_EXIT_INTR%s', async (_, env) => {
    const fw = join(dir, 'ticks.bin');
    writeFileSync(fw, tickFirmware(1));
    const vmm = startVmm(native, socketPaths(dir).bridge, [native.irqchip, fw, 'hold'], { env, timeoutMs: 60_000 });
    await until(() => vmm.stdout().includes('done=1\n'), 'the guest to halt for good');
    // The guest halted with interrupts off: the vCPU sleeps in KVM_RUN, with nothing that could wake it.
    await until(() => d.bridge.sessions().get(vmm.child.pid ?? 0)?.running === 1, 'the KVM_RUN to be in progress');
    vmm.child.kill('SIGUSR1');
    const r = await vmm.done;
    expect(r.stderr).toBe('');
    expect(parseLines(r.stdout)).toMatchObject({ vcpu: '5', done: '1', intr: 'EINTR', exit_reason: '10', eintr: '0' }); // KVM_EXIT_INTR
    expect(r.code).toBe(0);
    await clean();
  });

  test('an irqfd whose eventfd the VMM closes: kept while a dup of the file is open, torn down when the file is released (eventfd_release’s EPOLLHUP, irqfd_wakeup); the VM goes on', async () => {
    const fw = join(dir, 'one-tick.bin');
    writeFileSync(fw, tickFirmware(1));
    const vmm = startVmm(native, socketPaths(dir).bridge, [native.irqchip, fw, 'closefd'], { timeoutMs: 60_000 });
    const irqfds = (): number | undefined => {
      const proc = d.bridge.sessions().get(vmm.child.pid ?? 0)?.proc;
      const vm = proc?.fds().find((f) => f.path === 'anon_inode:kvm-vm');
      return proc === undefined || vm === undefined ? undefined : vmOf(proc, vm.fd).irq?.irqfds.size;
    };
    const step = async (n: number): Promise<number | undefined> => {
      await until(() => vmm.stdout().includes(`closed=${n}\n`), `step ${n}`);
      const size = irqfds();
      vmm.child.stdin?.write('\n');
      return size;
    };
    expect(await step(1)).toBe(1); // the first fd closed; its dup keeps the file open
    expect(await step(2)).toBe(1); // the dup closed after a dup2 made a third: still open
    expect(await step(3)).toBe(0); // the last fd closed: the file is released, and the irqfd with it
    const r = await vmm.done;
    expect(r.stderr).toBe('');
    expect(parseLines(r.stdout)).toMatchObject({ irqfd_assign: '0', irqfd_again: '0' });
    await clean();
  });

  test('two threads, one vCPU: an ioctl on a vCPU inside another thread’s KVM_RUN waits for vcpu->mutex (kvm_vcpu_ioctl’s mutex_lock_killable) and returns after that KVM_RUN does; it does not fail', async () => {
    const fw = join(dir, 'one-tick.bin');
    writeFileSync(fw, tickFirmware(1));
    const vmm = startVmm(native, socketPaths(dir).bridge, [native.irqchip, fw, 'mutex'], { timeoutMs: 60_000 });
    await until(() => vmm.stdout().includes('done=1\n'), 'the guest to halt for good');
    const session = (): Session | undefined => d.bridge.sessions().get(vmm.child.pid ?? 0);
    await until(() => session()?.running === 1, 'the KVM_RUN to be in progress');
    vmm.child.stdin?.write('\n'); // the second thread's KVM_GET_REGS
    await until(() => session()?.waiting === 1, 'KVM_GET_REGS to wait for the vCPU');
    expect(vmm.stdout()).not.toContain('getregs=');
    vmm.child.kill('SIGUSR1'); // KVM_RUN returns EINTR, releasing the mutex: KVM_GET_REGS goes on
    const r = await vmm.done;
    expect(r.stderr).toBe('');
    // The same lines on the machine's real /dev/kvm (same binary and firmware): rip is past the final hlt.
    expect(parseLines(r.stdout)).toMatchObject({ intr: 'EINTR', exit_reason: '10', getregs: '0', rip: '5c' });
    expect(r.code).toBe(0);
    await clean();
  });

  /** Start `irqchip FIRMWARE hold` and wait until its vCPU sleeps in KVM_RUN for good. */
  async function holding(fw: string, env: NodeJS.ProcessEnv = {}): Promise<RunningVmm> {
    const vmm = startVmm(native, socketPaths(dir).bridge, [native.irqchip, fw, 'hold'], { env, timeoutMs: 120_000 });
    await until(() => vmm.stdout().includes('done=1\n'), 'the guest to halt for good');
    await until(() => d.bridge.sessions().get(vmm.child.pid ?? 0)?.running === 1, 'its KVM_RUN to be in progress');
    return vmm;
  }

  test('two VMMs at once on kvm0 and kvm1, both asleep in KVM_RUN: rmmod refused (EWOULDBLOCK) while each runs; one ends by its signal, one is SIGKILLed; then both modules unload and the host is clean', async () => {
    const fw = join(dir, 'one-tick.bin');
    writeFileSync(fw, tickFirmware(1));
    const created = d.control.recorder.events().filter((e) => e.name === 'vm:create').length;
    const a = await holding(fw);
    const b = await holding(fw, { VAC_DEV_KVM: '/dev/kvm1' });
    expect(d.control.recorder.events().filter((e) => e.name === 'vm:create').slice(created).map((e) => (e.payload as unknown as { module: string }).module)).toEqual(['kvm0', 'kvm1']);
    for (const m of ['kvm0', 'kvm1']) expect(runControl(d.control, { cmd: 'rmmod', args: [m] })).toMatchObject({ ok: false, code: 'EWOULDBLOCK', status: 1 });
    a.child.kill('SIGUSR1'); // its KVM_RUN returns EINTR, it exits
    expect(parseLines((await a.done).stdout)).toMatchObject({ intr: 'EINTR', exit_reason: '10' });
    await until(() => !d.bridge.sessions().has(a.child.pid ?? 0), 'the first VMM’s session to end');
    expect(runControl(d.control, { cmd: 'rmmod', args: ['kvm0'] })).toMatchObject({ ok: true });
    expect(runControl(d.control, { cmd: 'rmmod', args: ['kvm1'] })).toMatchObject({ ok: false, code: 'EWOULDBLOCK' });
    b.child.kill('SIGKILL'); // killed while its vCPU sleeps in the bridge
    expect((await b.done).signal).toBe('SIGKILL');
    await clean();
    expect(runControl(d.control, { cmd: 'rmmod', args: ['kvm1'] })).toMatchObject({ ok: true });
    expect(d.host().lsmod().map((m) => m.name)).toEqual(['vac']);
    expect(checkInvariants(d.host())).toEqual([]);
    expect(d.host().scheduler.threads()).toEqual([]);
  });
});
