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
import { socketPaths, startDaemon, type Daemon } from '../src/index.js';
import { eventsFirmware } from './support/firmware.js';
import { buildNative, nativeSkipReason, parseLines, runVmm, until, type Native } from './support/native.js';

const skip = nativeSkipReason();


describe.skipIf(skip !== undefined)('a VMM with the in-kernel irqchip through the bridge', () => {
  let native: Native;
  let d: Daemon;
  let dir: string;
  beforeAll(async () => {
    native = buildNative();
    dir = mkdtempSync(join(tmpdir(), 'vac-irqchip-'));
    d = await startDaemon({ runDir: dir, host: { cpus: 2, modules: [{ name: 'kvm0' }], symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: () => {} });
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
    expect(r.stdout).toContain('ABdone=2\n');
    const relayed = d.bridge.calls().slice(first).filter((c) => c.op === 'signal');
    expect(relayed.map((c) => c.error)).toEqual([undefined, undefined]); // the VMM's two irqfd writes, relayed
    await clean();
  });
});
