/**
 * `GuestMemoryMirror.borrow` against a real process's memory (a `sleep` child, through /proc/PID/mem): the memory an
 * ioctl argument points to is shown to the model for the call, and what the model wrote in the range goes back.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createHost, type Process } from '@vac/core';
import { intel } from '@vac/vmx';
import { GuestMemoryMirror } from '../src/index.js';

describe('GuestMemoryMirror.borrow', () => {
  let child: ChildProcess;
  let page = 0;
  let mem = -1;
  beforeAll(async () => {
    child = spawn('sleep', ['60'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 100));
    // A page of the child's stack below anything it uses: ours to write.
    const stack = /^([0-9a-f]+)-[0-9a-f]+ .*\[stack\]$/m.exec(readFileSync(`/proc/${child.pid}/maps`, 'utf8'));
    page = parseInt(stack?.[1] as string, 16);
    mem = openSync(`/proc/${child.pid}/mem`, 'r+');
  });
  afterAll(() => {
    closeSync(mem);
    child.kill();
  });

  const vmmBytes = (addr: number, n: number): number[] => {
    const b = Buffer.alloc(n);
    readSync(mem, b, 0, n, addr);
    return [...b];
  };

  test('the model sees the VMM’s bytes; what it writes in the range goes back, nothing beyond it; later calls read afresh', () => {
    const proc: Process = createHost({ cpus: 1, hardware: intel() }).spawn();
    const m = new GuestMemoryMirror(child.pid as number, proc);
    writeSync(mem, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]), 0, 16, page + 0x100);
    const seen = m.borrow([{ addr: page + 0x100, size: 8 }], () => {
      const u = proc.userMemory(page + 0x100, 16) as Uint8Array;
      const before = [...u];
      u.fill(0xee); // eight bytes in the range, eight beyond it
      return before;
    });
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    expect(vmmBytes(page + 0x100, 16)).toEqual([...new Array<number>(8).fill(0xee), 9, 10, 11, 12, 13, 14, 15, 16]);
    expect(proc.userMemory(page, 4096)).toBeUndefined(); // mapped for the call only
    // The VMM changes the bytes; the next call (on the same page's buffer, reused) sees the new ones.
    writeSync(mem, Buffer.from([0x5a, 0x5b]), 0, 2, page + 0x100);
    const again = m.borrow([{ addr: page + 0x100, size: 8 }], () => [...(proc.userMemory(page + 0x100, 2) as Uint8Array)]);
    expect(again).toEqual([0x5a, 0x5b]);
    expect(vmmBytes(page + 0x100, 16)).toEqual([0x5a, 0x5b, ...new Array<number>(6).fill(0xee), 9, 10, 11, 12, 13, 14, 15, 16]);
    m.close();
  });
});
