/**
 * Non-throwing reads of a non-blocking fd (`nonblocking-read.ts`, through Node's WASI): what the bridge's spin polls
 * the request FIFO with.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { NONBLOCKING_READ_MAX, NonBlockingReader } from '../src/index.js';

describe('NonBlockingReader', () => {
  test('an empty FIFO reads 0 bytes without throwing; written bytes are read once, in order; a buffer smaller than what waits takes what fits', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'vac-nbr-')), 'f');
    execFileSync('mkfifo', [path]);
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      const r = new NonBlockingReader(fd);
      const buf = Buffer.alloc(NONBLOCKING_READ_MAX);
      expect(r.read(buf)).toBe(0);
      writeSync(fd, Buffer.from('hello, '));
      writeSync(fd, Buffer.from('bridge'));
      const n = r.read(buf);
      expect(buf.subarray(0, n).toString()).toBe('hello, bridge');
      expect(r.read(buf)).toBe(0);
      writeSync(fd, Buffer.from('abcdef'));
      const small = Buffer.alloc(4);
      expect(r.read(small)).toBe(4);
      expect(small.toString()).toBe('abcd');
      expect(r.read(buf)).toBe(2);
      expect(buf.subarray(0, 2).toString()).toBe('ef');
    } finally {
      closeSync(fd);
    }
  });

  test('a read of a closed fd throws (it is not taken for "nothing there")', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'vac-nbr-')), 'f');
    execFileSync('mkfifo', [path]);
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    const r = new NonBlockingReader(fd);
    closeSync(fd);
    expect(() => r.read(Buffer.alloc(16))).toThrow(/WASI errno 8\b/); // __WASI_ERRNO_BADF
  });
});
