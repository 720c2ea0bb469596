/**
 * UNIX stream socket pairs with SCM_RIGHTS (net/unix/af_unix.c, net/core/scm.c), and child processes that inherit
 * fds (`host.spawn({ parent })`). Errno codes and delivery rules are those recorded on Linux 6.18
 * (test/fixtures/linux-facts/memfd-socket.txt).
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  AF_INET,
  AF_UNIX,
  MSG_CMSG_CLOEXEC,
  MSG_CTRUNC,
  O_CLOEXEC,
  PAGE_SIZE,
  SCM_MAX_FD,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_STREAM,
  createHost,
  eventfd,
  memfdCreate,
  recvmsg,
  sendmsg,
  socketOf,
  socketpair,
} from '../../src/index.js';
import { expectKernelError, expectUsageError, record } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A supervisor with a socket pair, and a VMM started as its child holding the other end (fd 4). */
function setup() {
  const host = createHost({ cpus: 1, hardware: fakeHardware() });
  const sup = host.spawn({ name: 'supervisor' });
  const [mine, theirs] = socketpair(sup, AF_UNIX, SOCK_STREAM);
  const vmm = host.spawn({ name: 'vmm', parent: sup, uid: 1000 });
  // as after fork: each side closes the end it does not use
  sup.close(theirs);
  vmm.close(mine);
  return { host, sup, vmm, mine, theirs };
}

describe('socketpair', () => {
  test('two connected stream sockets at the lowest free fds, shown as socket:[N]', () => {
    const host = createHost({ cpus: 1, hardware: fakeHardware() });
    const p = host.spawn();
    expect(socketpair(p, AF_UNIX, SOCK_STREAM)).toEqual([3, 4]);
    expect(socketpair(p, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, AF_UNIX)).toEqual([5, 6]);
    expect(p.fds().map((f) => f.path)).toEqual(['socket:[10001]', 'socket:[10002]', 'socket:[10003]', 'socket:[10004]']);
    expect([p.closeOnExec(4), p.closeOnExec(5)]).toEqual([false, true]);
    expect(socketOf(p.file(3))?.connected).toBe(true);
    expect(p.write(3, bytes('hi'))).toBe(2);
    expect(text(p.read(4, 10))).toBe('hi');
  });

  test('argument checks in Linux order: EAFNOSUPPORT, EINVAL (type), EOPNOTSUPP (AF_INET), EPROTONOSUPPORT, ESOCKTNOSUPPORT; nothing is installed', () => {
    const host = createHost({ cpus: 1, hardware: fakeHardware() });
    const p = host.spawn();
    expectKernelError(host, () => socketpair(p, 0, SOCK_STREAM), 'EAFNOSUPPORT');
    expectKernelError(host, () => socketpair(p, 99, 11), 'EAFNOSUPPORT');
    expectKernelError(host, () => socketpair(p, AF_INET, 11), 'EINVAL');
    expectKernelError(host, () => socketpair(p, AF_UNIX, 11), 'EINVAL');
    expectKernelError(host, () => socketpair(p, AF_UNIX, SOCK_STREAM | 0x100), 'EINVAL');
    expectKernelError(host, () => socketpair(p, AF_INET, SOCK_STREAM), 'EOPNOTSUPP');
    expectKernelError(host, () => socketpair(p, AF_UNIX, SOCK_STREAM, 2), 'EPROTONOSUPPORT');
    expectKernelError(host, () => socketpair(p, AF_UNIX, 4), 'ESOCKTNOSUPPORT');
    expectUsageError(host, () => socketpair(p, AF_UNIX, SOCK_DGRAM), 'ERR_NOT_SUPPORTED');
    expectUsageError(host, () => socketpair(p, 16, SOCK_STREAM), 'ERR_NOT_SUPPORTED');
    expectUsageError(host, () => socketpair(p, AF_UNIX, 1.5), 'ERR_INVALID_ARG');
  });

  test('fewer than two free fds → EMFILE, and neither end is left behind', () => {
    const host = createHost({ cpus: 1, hardware: fakeHardware() });
    const p = host.spawn({ nofile: 5 });
    eventfd(p);
    expectKernelError(host, () => socketpair(p, AF_UNIX, SOCK_STREAM), 'EMFILE');
  });

  test('an injected fd fault on the second end takes the first one back', () => {
    const host = createHost({ cpus: 1, hardware: fakeHardware() });
    const p = host.spawn();
    host.faults.failNth('fd', 2);
    expect(() => socketpair(p, AF_UNIX, SOCK_STREAM)).toThrow(expect.objectContaining({ code: 'ENOMEM' }));
    expect(p.fds()).toEqual([]);
  });
});

describe('spawn({ parent })', () => {
  test('the child inherits the fds that are not close-on-exec, at the same numbers and to the same files', () => {
    const host = createHost({ cpus: 1, hardware: fakeHardware() });
    const parent = host.spawn({ nofile: 64 });
    const a = eventfd(parent);
    const b = memfdCreate(parent, 'ram', 1 /* MFD_CLOEXEC */);
    const c = parent.dup(a);
    parent.close(a);
    const events = record(host, 'process:spawn', 'fd:open');
    const child = host.spawn({ parent, uid: 1000 });
    expect(child.fds()).toEqual([{ fd: c, path: 'anon_inode:[eventfd]' }]);
    expect(child.file(c)).toBe(parent.file(c));
    expect(child.nofile).toBe(64);
    expect(parent.closeOnExec(b)).toBe(true);
    expect(events.map(([n, e]) => [n, e['pid'], e['fd']])).toEqual([
      ['process:spawn', child.pid, undefined],
      ['fd:open', child.pid, c],
    ]);
    // the file is shared: closing it in the parent leaves the child's
    parent.close(c);
    expect(child.file(c).released).toBe(false);
  });

  test('a parent that is no live process of this host, or an fd above the child\'s nofile: UsageError, nothing spawned', () => {
    const host = createHost({ cpus: 1, hardware: fakeHardware() });
    const other = createHost({ cpus: 1, hardware: fakeHardware() }).spawn();
    const parent = host.spawn();
    for (let i = 0; i < 10; i++) eventfd(parent);
    expectUsageError(host, () => host.spawn({ parent: other }), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.spawn({ parent, nofile: 8 }), 'ERR_OUT_OF_RANGE');
    const dead = host.spawn();
    dead.kill();
    expectUsageError(host, () => host.spawn({ parent: dead }), 'ERR_INVALID_ARG');
  });
});

describe('sendmsg and recvmsg with SCM_RIGHTS', () => {
  test('the receiver gets new fds, the lowest free ones, to the same open files; the bytes arrive with them', () => {
    const { sup, vmm, mine, theirs } = setup();
    const ram = memfdCreate(sup, 'pc.ram');
    sup.ftruncate(ram, PAGE_SIZE);
    const ev = eventfd(sup);
    expect(eventfd(vmm)).toBe(3); // the VMM holds 3 and 4: what it receives goes to 5, 6, 7
    expect(sendmsg(sup, mine, { data: bytes('ram+ev'), fds: [ram, ev, ram] })).toBe(6);
    const got = recvmsg(vmm, theirs, 64);
    expect(text(got.data)).toBe('ram+ev');
    expect(got.flags).toBe(0);
    expect(got.fds).toEqual([5, 6, 7]);
    expect(vmm.file(5)).toBe(sup.file(ram));
    expect(vmm.file(6)).toBe(sup.file(ev));
    expect(vmm.file(7)).toBe(sup.file(ram));
    expect([vmm.closeOnExec(5), vmm.closeOnExec(6)]).toEqual([false, false]);
  });

  test('MSG_CMSG_CLOEXEC makes the received fds close-on-exec', () => {
    const { sup, vmm, mine, theirs } = setup();
    sendmsg(sup, mine, { data: bytes('x'), fds: [mine] });
    const got = recvmsg(vmm, theirs, 1, SCM_MAX_FD, MSG_CMSG_CLOEXEC);
    expect(vmm.closeOnExec(got.fds[0] as number)).toBe(true);
    expect(vmm.file(got.fds[0] as number).flags & O_CLOEXEC).toBe(0);
  });

  test('the file in flight stays alive after the sender closes its fd, and its memfd bytes with it (recorded: in flight after close b\'kept\')', () => {
    const { sup, vmm, mine, theirs } = setup();
    const ram = memfdCreate(sup, 'inflight');
    sup.write(ram, bytes('kept'));
    const file = sup.file(ram);
    sendmsg(sup, mine, { data: bytes('k'), fds: [ram] });
    sup.close(ram);
    expect(file.released).toBe(false);
    expect(socketOf(vmm.file(theirs))?.filesInFlight).toBe(1);
    const got = recvmsg(vmm, theirs, 10);
    expect(text(vmm.read(got.fds[0] as number, 4, 0))).toBe('kept');
  });

  test('files queued to a socket that is closed are released; a send to it is EPIPE', () => {
    const { host, sup, vmm, mine, theirs } = setup();
    const ram = memfdCreate(sup, 'ram');
    const file = sup.file(ram);
    sendmsg(sup, mine, { data: bytes('q'), fds: [ram] });
    sup.close(ram);
    vmm.close(theirs);
    expect(file.released).toBe(true);
    expect(socketOf(sup.file(mine))?.connected).toBe(false);
    expectKernelError(host, () => sendmsg(sup, mine, { data: bytes('x') }), 'EPIPE');
    expectKernelError(host, () => sup.write(mine, bytes('x')), 'EPIPE');
  });

  test('after the peer closes, the rest is read, then end of file (0 bytes)', () => {
    const { sup, vmm, mine, theirs } = setup();
    sup.write(mine, bytes('bye'));
    sup.close(mine);
    expect(text(recvmsg(vmm, theirs, 10).data)).toBe('bye');
    expect(recvmsg(vmm, theirs, 10).data.length).toBe(0);
  });

  test('an empty socket whose peer is open: EAGAIN (a direct call does not block)', () => {
    const { host, vmm, theirs } = setup();
    expectKernelError(host, () => recvmsg(vmm, theirs, 10), 'EAGAIN');
  });

  test('a read stops after the bytes that carried files; bytes sent before them come along (recorded: merge AB, two scm CDAB then CD)', () => {
    const { sup, vmm, mine, theirs } = setup();
    const ram = memfdCreate(sup, 'ram');
    sendmsg(sup, mine, { data: bytes('AB'), fds: [ram] });
    sup.write(mine, bytes('CD'));
    expect(((r) => [text(r.data), r.fds.length])(recvmsg(vmm, theirs, 10))).toEqual(['AB', 1]);
    sendmsg(sup, mine, { data: bytes('AB'), fds: [ram] });
    sendmsg(sup, mine, { data: bytes('CD'), fds: [ram] });
    expect(((r) => [text(r.data), r.fds.length])(recvmsg(vmm, theirs, 10))).toEqual(['CDAB', 1]);
    expect(((r) => [text(r.data), r.fds.length])(recvmsg(vmm, theirs, 10))).toEqual(['CD', 1]);
  });

  test('a partial read of bytes that carried files takes the files (recorded: partial WX 1, rest YZ 0)', () => {
    const { sup, vmm, mine, theirs } = setup();
    sendmsg(sup, mine, { data: bytes('WXYZ'), fds: [mine] });
    expect(((r) => [text(r.data), r.fds.length])(recvmsg(vmm, theirs, 2))).toEqual(['WX', 1]);
    expect(((r) => [text(r.data), r.fds.length])(recvmsg(vmm, theirs, 10))).toEqual(['YZ', 0]);
  });

  test('no room for the files: they are released and MSG_CTRUNC is set (recorded: no room y [] 8; room for 1 z [15] 8)', () => {
    const { sup, vmm, mine, theirs } = setup();
    const ram = memfdCreate(sup, 'ram');
    const file = sup.file(ram);
    sendmsg(sup, mine, { data: bytes('y'), fds: [ram] });
    sendmsg(sup, mine, { data: bytes('z'), fds: [ram, ram] });
    sup.close(ram);
    expect(recvmsg(vmm, theirs, 10, 0)).toMatchObject({ fds: [], flags: MSG_CTRUNC });
    const one = recvmsg(vmm, theirs, 10, 1);
    expect([text(one.data), one.fds.length, one.flags]).toEqual(['z', 1, MSG_CTRUNC]);
    expect(file.released).toBe(false);
    vmm.close(one.fds[0] as number);
    expect(file.released).toBe(true);
  });

  test('a full fd table on the receiver: the fds that fit, then MSG_CTRUNC; the bytes still arrive (recorded: emfile on receive full 1 8)', () => {
    const host = createHost({ cpus: 1, hardware: fakeHardware() });
    const sup = host.spawn();
    const [mine, theirs] = socketpair(sup, AF_UNIX, SOCK_STREAM);
    const vmm = host.spawn({ parent: sup, nofile: 6 });
    sendmsg(sup, mine, { data: bytes('full'), fds: [mine, mine] });
    const got = recvmsg(vmm, theirs, 10);
    expect([text(got.data), got.fds, got.flags]).toEqual(['full', [5], MSG_CTRUNC]);
  });

  test('read() of bytes that carried files drops the files (recorded: read() drops R)', () => {
    const { sup, vmm, mine, theirs } = setup();
    const ram = memfdCreate(sup, 'ram');
    const file = sup.file(ram);
    sendmsg(sup, mine, { data: bytes('R'), fds: [ram] });
    sup.close(ram);
    expect(text(vmm.read(theirs, 10))).toBe('R');
    expect(file.released).toBe(true);
  });

  test('errors: EBADF (the socket or a passed fd), ENOTSOCK, EINVAL (254 fds), ESPIPE (pread), ENODEV (mmap), EINVAL (ftruncate); nothing is sent', () => {
    const { host, sup, vmm, mine, theirs } = setup();
    const ev = eventfd(sup);
    expectKernelError(host, () => sendmsg(sup, 99, { data: bytes('x') }), 'EBADF');
    expectKernelError(host, () => sendmsg(sup, ev, { data: bytes('x') }), 'ENOTSOCK');
    expectKernelError(host, () => recvmsg(sup, ev, 1), 'ENOTSOCK');
    expectKernelError(host, () => sendmsg(sup, mine, { data: bytes('x'), fds: [ev, 99] }), 'EBADF');
    expectKernelError(host, () => sendmsg(sup, mine, { data: bytes('x'), fds: new Array<number>(SCM_MAX_FD + 1).fill(ev) }), 'EINVAL');
    expect(sendmsg(sup, mine, { data: bytes('x'), fds: new Array<number>(SCM_MAX_FD).fill(ev) })).toBe(1);
    expect(recvmsg(vmm, theirs, 1).fds.length).toBe(SCM_MAX_FD);
    expectKernelError(host, () => vmm.read(theirs, 1, 0), 'ESPIPE');
    expectKernelError(host, () => vmm.mmap(theirs, PAGE_SIZE), 'ENODEV');
    expectKernelError(host, () => vmm.ftruncate(theirs, 0), 'EINVAL');
    expect(socketOf(vmm.file(theirs))?.pending).toBe(0);
  });

  test('0 bytes with fds: 0 is returned and nothing is sent, files included (recorded: empty data send 0, recv EAGAIN)', () => {
    const { host, sup, vmm, mine, theirs } = setup();
    const ram = memfdCreate(sup, 'ram');
    const file = sup.file(ram);
    expect(sendmsg(sup, mine, { fds: [ram] })).toBe(0);
    sup.close(ram);
    expect(file.released).toBe(true);
    expectKernelError(host, () => recvmsg(vmm, theirs, 10), 'EAGAIN');
  });

  test('property: bytes arrive in order and complete, however they are sent and read', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 20 }), { maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 10 }), (sends, reads) => {
        const { sup, vmm, mine, theirs } = setup();
        for (const s of sends) sendmsg(sup, mine, { data: s, fds: s[0] === 0 ? [mine] : [] });
        sup.close(mine);
        const out: number[] = [];
        for (let i = 0; ; i++) {
          const r = recvmsg(vmm, theirs, reads[i % reads.length] as number);
          for (const fd of r.fds) vmm.close(fd);
          if (r.data.length === 0) break;
          out.push(...r.data);
        }
        expect(out).toEqual(sends.flatMap((s) => [...s]));
      }),
      { numRuns: 100 },
    );
  });
});
