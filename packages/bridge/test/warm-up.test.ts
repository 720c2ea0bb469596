/**
 * The bridge's warm-up (`warm-up.ts`): the model's code for a migration's downtime calls, run on a scratch host when
 * the bridge starts. Its calls must be answered as a VMM's are (else it would compile the error paths instead), and
 * the served host must not see any of it.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { createHost } from '@vac/core';
import { kvm } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { BridgeServer } from '../src/index.js';
import { WARM_UP_ROUNDS, warmUp } from '../src/warm-up.js';

describe('warm-up', () => {
  // Per round: 2 VM state gets, 8 CHECK_EXTENSION (4 capabilities on the system fd and the VM fd), 8 vCPU state gets, KVM_GET_MSRS, the dirty log's GET and CLEAR,
  // 3 KVM_GET_IRQCHIP, KVM_SET_MSRS, 3 KVM_SET_IRQCHIP, KVM_GET_TSC_KHZ, KVM_SET_TSC_KHZ, 10 sets, KVM_KVMCLOCK_CTRL.
  test.each([
    ['intel', intel],
    ['amd', amd],
  ] as const)('%s: every call is answered as a VMM’s, except KVM_KVMCLOCK_CTRL (no kvmclock in its guest)', (_name, hardware) => {
    const w = warmUp(hardware(), 2);
    expect(w.calls).toBe(1 + 2 * 41); // KVM_GET_MSR_INDEX_LIST, then two rounds
    expect(w.refused).toEqual(['KVM_KVMCLOCK_CTRL']);
    expect(WARM_UP_ROUNDS).toBeGreaterThan(1);
  });

  test('a hardware model without VMX (no KVM module loads): the bridge logs that it did no warm-up, and listens', async () => {
    const host = createHost({ cpus: 1, hardware: intel({ vmx: false }) });
    const lines: string[] = [];
    const server = new BridgeServer({ host, socketPath: join(mkdtempSync(join(tmpdir(), 'vac-warm-')), 'bridge.sock'), warmUp: true, log: (l) => lines.push(l) });
    await server.listen();
    await server.close();
    expect(lines.filter((l) => l.startsWith('bridge: no warm-up ('))).toHaveLength(1);
  });

  test('the served host sees nothing of it: the same processes, warnings and snapshot as a bridge without it', async () => {
    const snapshots: unknown[] = [];
    for (const warm of [false, true]) {
      const host = createHost({ cpus: 2, hardware: intel() });
      host.modprobe(kvm({ postfix: '0' }));
      const before = host.processes().map((p) => p.pid);
      const lines: string[] = [];
      const server = new BridgeServer({ host, socketPath: join(mkdtempSync(join(tmpdir(), 'vac-warm-')), 'bridge.sock'), warmUp: warm, log: (l) => lines.push(l) });
      await server.listen();
      await server.close();
      expect(host.processes().map((p) => p.pid)).toEqual(before);
      expect(host.warnings).toEqual([]);
      expect(lines.some((l) => l.startsWith('bridge: warmed up'))).toBe(warm);
      snapshots.push(host.snapshot());
    }
    expect(snapshots[1]).toEqual(snapshots[0]);
  });
});
