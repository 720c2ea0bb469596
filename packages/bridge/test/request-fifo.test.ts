/**
 * The request FIFO on its own (`request-fifo.ts`): messages from another thread arrive while the main thread serves
 * them from its blocking read or from the event loop, in order, and none is left unread when a blocking period ends.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, test } from 'vitest';
import { FIFO_MAGIC, Op, RequestFifo, SPIN_US, encodeRequest, spinSettings } from '../src/index.js';
import { until } from './support/native.js';

/** A thread that writes message `i` (connection id i, token 7) for i = 1…n, `gapMs` apart, into the FIFO at `path`. */
function writer(path: string, n: number, gapMs: number): Worker {
  const request = Buffer.from(encodeRequest(Op.CLOSE, 3, 0, 0n, 0n, 0n));
  return new Worker(
    `const { workerData } = require('node:worker_threads');
     const fs = require('node:fs');
     const fd = fs.openSync(workerData.path, 'w');
     const pause = new Int32Array(new SharedArrayBuffer(4));
     for (let i = 1; i <= workerData.n; i++) {
       Atomics.wait(pause, 0, 0, workerData.gapMs);
       const e = Buffer.alloc(16);
       e.writeUInt32LE(workerData.magic, 0);
       e.writeUInt32LE(i, 4);
       e.writeBigUInt64LE(7n, 8);
       fs.writeSync(fd, Buffer.concat([e, Buffer.from(workerData.request)]));
     }
     fs.closeSync(fd);`,
    { eval: true, workerData: { path, n, gapMs, magic: FIFO_MAGIC, request } },
  );
}

describe('RequestFifo', () => {
  let fifo: RequestFifo | undefined;
  afterEach(() => fifo?.close());

  // Without the spin, and with a spin (forced whatever the machine's load) long enough that the writer's next
  // message, 2 ms later, usually arrives while the main thread polls: the same messages, once each, in order.
  test.each([
    ['', { us: 0, always: false }],
    [', the main thread spinning before each blocking read', { us: 20_000, always: true }],
  ] as const)('every message is delivered once, in order, whether the main thread blocks or not — also when the runner gets busy right after a blocking period%s', async (_, spin) => {
    const path = join(mkdtempSync(join(tmpdir(), 'vac-fifo-')), 'bridge.sock.req');
    const got: number[] = [];
    let allow = true;
    fifo = new RequestFifo(path, {
      deliver: (id, token, bytes) => {
        expect([token, bytes.length]).toEqual([7n, 48]);
        got.push(id);
        // Every third message makes "the runner" busy at the next turn of the event loop (a KVM_RUN that started
        // a guest), and free again a little later: the FIFO must still be read meanwhile.
        if (id % 3 === 0) {
          setImmediate(() => (allow = false));
          setTimeout(() => (allow = true), 5);
        }
      },
      mayBlock: () => allow,
      log: () => {},
      spin,
    });
    const w = writer(path, 60, 2);
    await until(() => got.length === 60, 'the 60 messages', 20_000);
    expect(got).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    await w.terminate();
  });

  test('spin settings from the environment: the default budget, VAC_SPIN_US, VAC_NO_SPIN (which wins), VAC_SPIN_ALWAYS', () => {
    expect(spinSettings({})).toEqual({ us: SPIN_US, always: false });
    expect(spinSettings({ VAC_SPIN_US: '120' })).toEqual({ us: 120, always: false });
    expect(spinSettings({ VAC_SPIN_US: 'lots' })).toEqual({ us: SPIN_US, always: false });
    expect(spinSettings({ VAC_SPIN_US: '120', VAC_NO_SPIN: '1' })).toEqual({ us: 0, always: false });
    expect(spinSettings({ VAC_NO_SPIN: '' })).toEqual({ us: SPIN_US, always: false });
    expect(spinSettings({ VAC_SPIN_ALWAYS: '1' })).toEqual({ us: SPIN_US, always: true });
  });
});
