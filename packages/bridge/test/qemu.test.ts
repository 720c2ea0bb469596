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
    test(`-M ${machine}: stops at KVM_CAP_IRQ_ROUTING, which the model answers 0 (the in-kernel irqchip is not wired yet)`, async () => {
      const first = d.bridge.calls().length;
      const r = await runVmm(native, socketPaths(d.runDir).bridge, [QEMU, '-accel', 'kvm', '-M', machine, '-bios', bios, '-display', 'none', '-nographic', '-serial', 'stdio', '-m', '16', '-no-reboot', '-monitor', 'none'], { timeoutMs: 20_000 });
      const moved = 'QEMU got elsewhere than recorded: if the model answers more now, update this test and packages/bridge/VMM-STATUS.md';
      const calls = d.bridge.calls().slice(first).filter((c) => c.op === 'ioctl');
      expect(r.stderr, `${moved}\n${r.stderr}`).toContain('kvm: KVM_CAP_IRQ_ROUTING not supported by KVM');
      expect(r.stderr, moved).toContain('failed to initialize kvm: Operation not supported');
      expect(r.code, moved).toBe(1);
      expect(calls.filter((c) => c.error !== undefined), moved).toEqual([]); // nothing refused yet: a capability answered 0
      expect(calls.map((c) => `${c.what} = ${String(c.result)}`), moved).toEqual([
        'KVM_GET_API_VERSION(0) = 12',
        'KVM_CHECK_EXTENSION(KVM_CAP_IMMEDIATE_EXIT) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_NR_MEMSLOTS) = 32764',
        'KVM_CHECK_EXTENSION(KVM_CAP_MULTI_ADDRESS_SPACE) = 2',
        'KVM_CREATE_VM(0) = 4',
        'KVM_CHECK_EXTENSION(KVM_CAP_NR_VCPUS) = 2',
        'KVM_CHECK_EXTENSION(KVM_CAP_MAX_VCPUS) = 1024',
        'KVM_CHECK_EXTENSION(KVM_CAP_USER_MEMORY) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_DESTROY_MEMORY_REGION_WORKS) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_JOIN_MEMORY_REGIONS_WORKS) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_SET_TSS_ADDR) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_EXT_CPUID) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_MP_STATE) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO) = 2',
        'KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_PIO) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) = 3',
        'KVM_ENABLE_CAP = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_VCPU_EVENTS) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_X86_ROBUST_SINGLESTEP) = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_DEBUGREGS) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_NESTED_STATE) = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_SIGNAL_MSI) = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_PCI_2_3) = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_IRQ_INJECT_STATUS) = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_READONLY_MEM) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_IOEVENTFD) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_IRQFD) = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_IRQFD_RESAMPLE) = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_VM_ATTRIBUTES) = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_IOEVENTFD_ANY_LENGTH) = 1',
        'KVM_CHECK_EXTENSION(KVM_CAP_SET_GUEST_DEBUG) = 0',
        'KVM_CHECK_EXTENSION(KVM_CAP_IRQ_ROUTING) = 0',
      ]);
    });
  }
});
