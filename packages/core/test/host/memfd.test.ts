/**
 * memfd_create(2) (mm/memfd.c) in the simulated host: an anonymous shared-memory file whose mappings, in any
 * process and at any address, show the same bytes. The errno codes and byte results are those recorded on Linux
 * 6.18 (test/fixtures/linux-facts/memfd-socket.txt, by memfd-socket.py).
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  MFD_ALLOW_SEALING,
  MFD_CLOEXEC,
  MFD_EXEC,
  MFD_HUGETLB,
  MFD_NAME_MAX_LEN,
  MFD_NOEXEC_SEAL,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
  PAGE_SIZE,
  createHost,
  eventfd,
  memfdCreate,
  memfdOf,
  type MemfdObject,
} from '../../src/index.js';
import { expectKernelError, expectUsageError, record } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';

function setup() {
  const host = createHost({ cpus: 1, hardware: fakeHardware() });
  const a = host.spawn({ name: 'old-vmm' });
  const b = host.spawn({ name: 'new-vmm' });
  return { host, a, b };
}

const text = (b: Uint8Array): string => new TextDecoder().decode(b);

describe('memfd_create', () => {
  test('a new file of size 0, open read-write, shown as /memfd:<name> (deleted), at the lowest free fd', () => {
    const { host, a } = setup();
    const events = record(host, 'fd:open');
    const fd = memfdCreate(a, 'guest', MFD_CLOEXEC);
    expect(fd).toBe(3);
    expect(a.fds()).toEqual([{ fd: 3, path: '/memfd:guest (deleted)' }]);
    const obj = memfdOf(a.file(fd)) as MemfdObject;
    expect([obj.name, obj.size, obj.flags, obj.allocated]).toEqual(['guest', 0, MFD_CLOEXEC, 0]);
    expect(a.file(fd).flags & O_CLOEXEC).toBe(O_CLOEXEC);
    expect(events).toMatchObject([['fd:open', { pid: a.pid, fd: 3, path: '/memfd:guest (deleted)' }]]);
    expect(memfdOf(a.file(eventfd(a)))).toBeUndefined();
  });

  test('every flag Linux knows is taken (MFD_ALLOW_SEALING, MFD_NOEXEC_SEAL, MFD_EXEC)', () => {
    const { a } = setup();
    for (const f of [0, MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_NOEXEC_SEAL, MFD_EXEC, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC]) {
      expect(memfdFlags(a, f)).toBe(f);
    }
  });

  test('unknown flags, MFD_EXEC with MFD_NOEXEC_SEAL, a 250-byte name → EINVAL (22); 249 bytes are fine; nothing is installed', () => {
    const { host, a } = setup();
    expectKernelError(host, () => memfdCreate(a, 'x', 0x20), 'EINVAL');
    expectKernelError(host, () => memfdCreate(a, 'x', 0x8000_0000), 'EINVAL');
    expectKernelError(host, () => memfdCreate(a, 'x', MFD_EXEC | MFD_NOEXEC_SEAL), 'EINVAL');
    expectKernelError(host, () => memfdCreate(a, 'a'.repeat(MFD_NAME_MAX_LEN + 1)), 'EINVAL');
    // bytes, not characters: 125 two-byte characters are 250 bytes
    expectKernelError(host, () => memfdCreate(a, 'é'.repeat(125)), 'EINVAL');
    expect(MFD_NAME_MAX_LEN).toBe(249);
    expect(memfdCreate(a, 'a'.repeat(249))).toBe(3);
  });

  test('MFD_HUGETLB is not modelled: EINVAL (docs/fidelity.md)', () => {
    const { host, a } = setup();
    expectKernelError(host, () => memfdCreate(a, 'huge', MFD_HUGETLB), 'EINVAL');
  });

  test('the name stops at a NUL, as a C string', () => {
    const { a } = setup();
    const fd = memfdCreate(a, 'ram\0ignored');
    expect(a.file(fd).path).toBe('/memfd:ram (deleted)');
  });

  test('a full fd table → EMFILE (24) after the argument checks', () => {
    const host = createHost({ cpus: 1, hardware: fakeHardware() });
    const p = host.spawn({ nofile: 4 });
    expect(memfdCreate(p, 'one')).toBe(3);
    expectKernelError(host, () => memfdCreate(p, 'two'), 'EMFILE');
    expectKernelError(host, () => memfdCreate(p, 'two', 0x20), 'EINVAL');
  });

  test('a name that is no string, flags that are no unsigned int: UsageError', () => {
    const { host, a } = setup();
    expectUsageError(host, () => memfdCreate(a, 7 as unknown as string), 'ERR_INVALID_ARG');
    expectUsageError(host, () => memfdCreate(a, 'x', -1), 'ERR_INVALID_ARG');
    expectUsageError(host, () => memfdCreate(a, 'x', 1.5), 'ERR_INVALID_ARG');
  });
});

function memfdFlags(p: ReturnType<typeof setup>['a'], flags: number): number {
  return (memfdOf(p.file(memfdCreate(p, 'f', flags))) as MemfdObject).flags;
}

describe('ftruncate, read and write', () => {
  test('ftruncate sets the size; pread stops at the end; read and write move the file position', () => {
    const { a } = setup();
    const fd = memfdCreate(a, 'guest');
    a.ftruncate(fd, 8192);
    const obj = memfdOf(a.file(fd)) as MemfdObject;
    expect(obj.size).toBe(8192);
    expect(a.write(fd, new TextEncoder().encode('abcd'))).toBe(4);
    expect(text(a.read(fd, 4, 0))).toBe('abcd');
    expect(a.read(fd, 4, 9000).length).toBe(0);
    // the position is after the write: the next read starts there (recorded: read pos b'ab' b'cd' 4 after a rewind)
    expect(Array.from(a.read(fd, 2))).toEqual([0, 0]);
    expect(a.write(fd, new TextEncoder().encode('ZZ'))).toBe(2);
    expect(text(a.read(fd, 8, 0))).toBe('abcd\0\0ZZ');
  });

  test('a write across the end grows the file (recorded: 4 bytes at 8190 → size 8194)', () => {
    const { a } = setup();
    const fd = memfdCreate(a, 'guest');
    a.ftruncate(fd, 8190);
    a.read(fd, 8190); // to the end
    expect(a.write(fd, new TextEncoder().encode('1234'))).toBe(4);
    expect((memfdOf(a.file(fd)) as MemfdObject).size).toBe(8194);
    expect(text(a.read(fd, 10, 8188))).toBe('\0\x001234');
  });

  test('shrinking drops the bytes: a later growth shows zeros, also through a mapping (recorded: after shrink+grow 0000)', () => {
    const { a } = setup();
    const fd = memfdCreate(a, 'guest');
    a.ftruncate(fd, 8192);
    const m = a.mmap(fd, 8192);
    m.bytes.set([0x71, 0x71, 0x71, 0x71], 4096);
    a.ftruncate(fd, 4096);
    a.ftruncate(fd, 8192);
    expect(Array.from(m.bytes.subarray(4096, 4100))).toEqual([0, 0, 0, 0]);
  });

  test('ftruncate: a negative length → EINVAL before the fd is looked at; a bad fd → EBADF; a read-only file or one that is no regular file → EINVAL', () => {
    const { host, a } = setup();
    const fd = memfdCreate(a, 'guest');
    a.ftruncate(fd, 4096);
    const size = (): number => (memfdOf(a.file(fd)) as MemfdObject).size;
    expectKernelError(host, () => a.ftruncate(fd, -1), 'EINVAL');
    expectKernelError(host, () => a.ftruncate(99, -1), 'EINVAL');
    expectKernelError(host, () => a.ftruncate(99, 0), 'EBADF');
    const efd = eventfd(a);
    expectKernelError(host, () => a.ftruncate(efd, 0), 'EINVAL');
    expectUsageError(host, () => a.ftruncate(fd, 1.5), 'ERR_INVALID_ARG');
    expect(size()).toBe(4096);
  });

  test('a file open read-only cannot be truncated (EINVAL), one open for writing can', () => {
    const { host, a } = setup();
    const lengths: number[] = [];
    const fops = { truncate: (_f: unknown, length: number) => void lengths.push(length) };
    const ro = a.installFile('/tmp/file', fops, undefined, O_RDONLY);
    const rw = a.installFile('/tmp/file', fops, undefined, O_RDWR);
    expectKernelError(host, () => a.ftruncate(ro, 0), 'EINVAL');
    a.ftruncate(rw, 10);
    expect(lengths).toEqual([10]);
  });
});

describe('mappings', () => {
  test('two processes map the same memfd at different addresses and see the same bytes', () => {
    const { a, b } = setup();
    const fd = memfdCreate(a, 'pc.ram');
    a.ftruncate(fd, 4 * PAGE_SIZE);
    b.mmapAnonymous(PAGE_SIZE); // so that B's next mapping lands elsewhere than A's
    const ma = a.mmap(fd, 4 * PAGE_SIZE);
    const bfd = b.receiveFile(a.file(fd));
    const mb = b.mmap(bfd, 4 * PAGE_SIZE);
    expect(ma.addr).not.toBe(mb.addr);
    ma.bytes.set([1, 2, 3], 0x2000);
    expect(Array.from((b.userMemory(mb.addr + 0x2000, 3) as Uint8Array))).toEqual([1, 2, 3]);
    mb.bytes[0x3fff] = 0xee;
    expect(a.userMemory(ma.addr + 0x3fff, 1)?.[0]).toBe(0xee);
    expect(a.read(fd, 1, 0x3fff)[0]).toBe(0xee);
  });

  test('a mapping at an offset shows the bytes from there', () => {
    const { a } = setup();
    const fd = memfdCreate(a, 'ram');
    a.ftruncate(fd, 3 * PAGE_SIZE);
    a.write(fd, new Uint8Array(PAGE_SIZE + 1).fill(9));
    const m = a.mmap(fd, 2 * PAGE_SIZE, PAGE_SIZE);
    expect(m.bytes[0]).toBe(9);
    expect(m.bytes[1]).toBe(0);
  });

  test('the object lives while an fd or a mapping refers to it: closing every fd keeps the mapping, the last munmap releases it', () => {
    const { a, b } = setup();
    const fd = memfdCreate(a, 'ram');
    a.ftruncate(fd, PAGE_SIZE);
    const file = a.file(fd);
    const ma = a.mmap(fd, PAGE_SIZE);
    const bfd = b.receiveFile(file);
    a.close(fd);
    expect(file.released).toBe(false);
    a.kill();
    expect(file.released).toBe(false);
    const mb = b.mmap(bfd, PAGE_SIZE);
    ma.bytes[5] = 5; // A's bytes, still the object's (A is gone, the bytes are not)
    expect(mb.bytes[5]).toBe(5);
    b.close(bfd);
    expect(file.released).toBe(false);
    b.munmap(mb.addr, PAGE_SIZE);
    expect(file.released).toBe(true);
  });

  test('once mapped the object cannot grow past its allocation: ENOMEM, size unchanged (docs/fidelity.md); before, it can', () => {
    const { host, a } = setup();
    const fd = memfdCreate(a, 'ram');
    a.ftruncate(fd, PAGE_SIZE);
    a.write(fd, new Uint8Array([7]));
    a.ftruncate(fd, 2 * PAGE_SIZE); // not mapped yet: the store is replaced
    const obj = memfdOf(a.file(fd)) as MemfdObject;
    expect(a.read(fd, 1, 0)[0]).toBe(7);
    a.mmap(fd, 2 * PAGE_SIZE);
    expectKernelError(host, () => a.ftruncate(fd, 3 * PAGE_SIZE), 'ENOMEM');
    expect(obj.size).toBe(2 * PAGE_SIZE);
    a.ftruncate(fd, PAGE_SIZE); // shrinking and growing within the allocation are fine
    a.ftruncate(fd, 2 * PAGE_SIZE);
    expect(obj.size).toBe(2 * PAGE_SIZE);
  });

  test('property: a write through any mapping is what every other mapping and pread see', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(3), fc.nat(4 * PAGE_SIZE - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 40 }), (writes) => {
        const { a, b } = setup();
        const fd = memfdCreate(a, 'ram');
        a.ftruncate(fd, 4 * PAGE_SIZE);
        const bfd = b.receiveFile(a.file(fd));
        const maps = [a.mmap(fd, 4 * PAGE_SIZE), b.mmap(bfd, 4 * PAGE_SIZE), a.mmap(fd, 4 * PAGE_SIZE), b.mmap(bfd, 2 * PAGE_SIZE, 2 * PAGE_SIZE)];
        const model = new Uint8Array(4 * PAGE_SIZE);
        for (const [which, at, v] of writes) {
          const m = maps[which] as (typeof maps)[number];
          const base = which === 3 ? 2 * PAGE_SIZE : 0;
          if (at - base < 0 || at - base >= m.length) continue;
          m.bytes[at - base] = v;
          model[at] = v;
        }
        expect(Buffer.compare(a.read(fd, 4 * PAGE_SIZE, 0), model)).toBe(0);
        expect(Buffer.compare(b.userMemory((maps[1] as (typeof maps)[number]).addr, 4 * PAGE_SIZE) as Uint8Array, model)).toBe(0);
      }),
      { numRuns: 50 },
    );
  });
});
