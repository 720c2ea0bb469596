/**
 * QEMU 7.2 (the distribution's qemu-system-x86) through the bridge, where it is installed (CI does not
 * install it; the README's test command does not need it).
 *
 * UPDATE AS THE ABI GROWS: this asserts how far QEMU gets *today* — the first answer of the model that
 * QEMU gives up on — so that a change in the model's ABI shows up here. When the model answers more, move the
 * expectation forward (and packages/bridge/VMM-STATUS.md with it); when QEMU prints the firmware's line,
 * replace it with that.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { socketPaths, startDaemon, type Daemon } from '../src/index.js';
import { helloFirmware } from './support/firmware.js';
import { buildNative, nativeSkipReason, runVmm, type Native } from './support/native.js';

const QEMU = 'qemu-system-x86_64';
const hasQemu = spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;
const skip = nativeSkipReason() ?? (hasQemu ? undefined : `${QEMU} is not installed (apt-get install qemu-system-x86)`);
if (skip !== undefined) console.warn(`@vac/bridge QEMU test skipped: ${skip}`);

describe.skipIf(skip !== undefined)('QEMU 7.2 through the bridge (today: how far it gets)', () => {
  let native: Native;
  let d: Daemon;
  let bios: string;
  beforeAll(async () => {
    native = buildNative();
    const dir = mkdtempSync(join(tmpdir(), 'vac-qemu-'));
    bios = join(dir, 'hello.bin');
    writeFileSync(bios, helloFirmware());
    d = await startDaemon({ runDir: dir, host: { cpus: 2, modules: [{ name: 'kvm0' }], symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: () => {} });
  });
  afterAll(async () => {
    await d?.stop();
  });

  for (const machine of ['pc', 'pc,kernel-irqchip=off', 'microvm', 'microvm,kernel-irqchip=off']) {
    test(`-M ${machine}: passes kvm_init and stops at the first feature MSR it reads (MSR_IA32_ARCH_CAPABILITIES, 0x10a)`, async () => {
      const first = d.bridge.calls().length;
      const r = await runVmm(native, socketPaths(d.runDir).bridge, [QEMU, '-accel', 'kvm', '-M', machine, '-bios', bios, '-display', 'none', '-nographic', '-serial', 'stdio', '-m', '16', '-no-reboot', '-monitor', 'none'], { timeoutMs: 20_000 });
      const moved = 'QEMU got elsewhere than recorded: if the model answers more now, update this test and packages/bridge/VMM-STATUS.md';
      const calls = d.bridge.calls().slice(first).filter((c) => c.op === 'ioctl');
      expect(r.stderr, `${moved}\n${r.stderr}`).toContain('KVM get MSR (index=0x10a) feature failed');
      expect(r.code, moved).not.toBe(0);
      // kvm_init got through: the VM exists, its capabilities were read, and the interrupt controller's were answered.
      const what = calls.map((c) => `${c.what} = ${String(c.result)}`);
      expect(what, moved).toContain('KVM_CHECK_EXTENSION(KVM_CAP_IRQ_ROUTING) = 4096');
      expect(what, moved).toContain('KVM_CREATE_VM(0) = 4');
    });
  }
});
