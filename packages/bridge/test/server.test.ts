/**
 * The bridge server at the protocol level, with the test process itself as the "VMM" (its pid has a real
 * /proc entry): framing, HELLO and sessions, forwarding with the model's errno, request masking, the fd
 * table per process, the kvm_run patches, malformed input, and the end of a session.
 */
import { closeSync, mkdirSync, mkdtempSync, openSync, writeSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkInvariants, createHost } from '@vac/core';
import { KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_API_VERSION, KVM_GET_REGS, KVM_GET_XSAVE2, KVM_RUN, KVM_SET_REGS, KVM_SET_USER_MEMORY_REGION, capabilityName, kvm, makeKvmRegs } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import {
  BridgeServer,
  FdKind,
  HELLO_LIFE,
  IOCTL_HAS_INPUT,
  IOCTL_INPUT_UNREADABLE,
  IOCTL_INPUT_ZEROED,
  IOCTL_RUN_PATCHES,
  Op,
  ProtocolError,
  REPLY_HEADER,
  RequestReader,
  VAC_MAGIC,
  FIFO_MAGIC,
  decodeReply,
  encodeReply,
  fifoPath,
  encodeRequest,
  formatCall,
  parseStatus,
  type DecodedReply,
} from '../src/index.js';
import { decodeRegs, encodeMemoryRegion, encodeRegs } from '../src/codec.js';
import { until } from './support/native.js';

/** A client connection that sends one request and reads one reply at a time. */
class Client {
  readonly #s: Socket;
  #buf = Buffer.alloc(0);
  #waiting: ((b: Buffer) => void) | undefined;
  closed = false;
  constructor(path: string) {
    this.#s = createConnection(path);
    this.#s.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#deliver();
    });
    this.#s.on('close', () => {
      this.closed = true;
    });
    this.#s.on('error', () => {});
  }
  #deliver(): void {
    if (this.#waiting === undefined || this.#buf.length < 8) return;
    const len = this.#buf.readUInt32LE(4);
    if (this.#buf.length < len) return;
    const msg = this.#buf.subarray(0, len);
    this.#buf = this.#buf.subarray(len);
    const w = this.#waiting;
    this.#waiting = undefined;
    w(msg);
  }
  raw(bytes: Uint8Array): Promise<DecodedReply> {
    return new Promise((resolve) => {
      this.#waiting = (b) => resolve(decodeReply(b));
      this.#s.write(bytes);
      this.#deliver();
    });
  }
  call(op: number, fd: number, flags: number, a: bigint, b = 0n, c = 0n, ...payload: Uint8Array[]): Promise<DecodedReply> {
    return this.raw(encodeRequest(op, fd, flags, a, b, c, ...payload));
  }
  ioctl(fd: number, request: number | bigint, value = 0n, input?: Uint8Array): Promise<DecodedReply> {
    if (input === undefined) return this.call(Op.IOCTL, fd, 0, BigInt(request), value);
    return this.call(Op.IOCTL, fd, IOCTL_HAS_INPUT, BigInt(request), value, BigInt(input.length), input);
  }
  /** Write `bytes` (an envelope and a request) into the request FIFO `fifo` and read the reply on this socket. */
  viaFifo(fifo: number, bytes: Uint8Array): Promise<DecodedReply> {
    return new Promise((resolve) => {
      this.#waiting = (b) => resolve(decodeReply(b));
      writeSync(fifo, bytes);
      this.#deliver();
    });
  }
  /** Send a request that gets no reply (SIGNAL, INTERRUPT). */
  send(op: number, fd: number, a: bigint, b = 0n): void {
    this.#s.write(encodeRequest(op, fd, 0, a, b, 0n));
  }
  end(): void {
    this.#s.destroy();
  }
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const errnoOf = (r: DecodedReply): number => r.errno;

describe('protocol', () => {
  test('a request split anywhere is reassembled; two in one chunk come out in order', () => {
    const a = encodeRequest(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm'));
    const b = encodeRequest(Op.CLOSE, 7, 0, 0n, 0n, 0n);
    const r = new RequestReader();
    const all = Buffer.concat([a, b]);
    r.push(all.subarray(0, 5));
    expect(r.next()).toBeUndefined();
    r.push(all.subarray(5, 60));
    const first = r.next();
    expect(first).toMatchObject({ op: Op.OPEN, fd: 0, a: 2n });
    expect(Buffer.from(first?.payload ?? []).toString()).toBe('/dev/kvm');
    expect(r.next()).toBeUndefined();
    r.push(all.subarray(60));
    expect(r.next()).toMatchObject({ op: Op.CLOSE, fd: 7 });
    expect(r.pending).toBe(0);
  });

  test('a bad magic or an impossible length is a ProtocolError', () => {
    const r = new RequestReader();
    r.push(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    expect(() => r.next()).toThrow(ProtocolError);
    const r2 = new RequestReader();
    const h = Buffer.alloc(8);
    h.writeUInt32LE(VAC_MAGIC, 0);
    h.writeUInt32LE(12, 4); // shorter than a header
    r2.push(h);
    expect(() => r2.next()).toThrow(/bad request length 12/);
  });

  test('a reply carries the result as a signed 64-bit integer, a number or a bigint, and its message and out bytes', () => {
    for (const result of [0, 3, -1, -22, 2 ** 40 + 5, -(2 ** 33) + 7, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]) {
      expect(decodeReply(encodeReply({ errno: 0, result })).result).toBe(BigInt(result));
    }
    expect(decodeReply(encodeReply({ errno: 0, result: 2n ** 63n - 1n })).result).toBe(2n ** 63n - 1n);
    const r = decodeReply(encodeReply({ errno: 22, result: -1, message: 'KVM_RUN: é', out: Uint8Array.of(1, 2) }));
    expect([r.errno, r.message, [...r.out]]).toEqual([22, 'KVM_RUN: é', [1, 2]]);
  });

  test('parseStatus reads effective ids, groups and the capabilities the model checks', () => {
    const text = 'Name:\tqemu-system-x86\nUid:\t1000\t1001\t1001\t1001\nGid:\t36\t37\t37\t37\nGroups:\t36 100 \nCapEff:\t0000000000210002\n';
    expect(parseStatus(text)).toEqual({ uid: 1001, gid: 37, groups: [36, 100], caps: ['CAP_DAC_OVERRIDE', 'CAP_SYS_MODULE', 'CAP_SYS_ADMIN'], name: 'qemu-system-x86' });
    expect(parseStatus(text.replace('0000000000210002', '0000000000c00000')).caps).toEqual(['CAP_SYS_BOOT', 'CAP_SYS_NICE']);
  });
});

describe('bridge server', () => {
  let server: BridgeServer;
  let path: string;
  let clients: Client[];
  const logs: string[] = [];
  const newClient = (): Client => {
    const c = new Client(path);
    clients.push(c);
    return c;
  };
  const hello = async (c: Client, life: boolean, pid = process.pid): Promise<DecodedReply> => await c.call(Op.HELLO, 0, life ? HELLO_LIFE : 0, BigInt(pid), 1n);

  beforeEach(async () => {
    const host = createHost({ cpus: 2, hardware: intel() });
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    path = join(mkdtempSync(join(tmpdir(), 'vac-srv-')), 'bridge.sock');
    server = new BridgeServer({ host, socketPath: path, log: (l) => logs.push(l) });
    await server.listen();
    clients = [];
  });
  afterEach(async () => {
    for (const c of clients) c.end();
    await server.close();
  });

  test('forwards open and ioctls to the model: results, new fds with their kind, and the model’s errno', async () => {
    const c = newClient();
    expect(errnoOf(await hello(c, true))).toBe(0);
    const sys = await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'));
    expect([sys.errno, sys.fdKind]).toEqual([0, FdKind.SYSTEM]);
    const fd = Number(sys.result);
    expect((await c.ioctl(fd, KVM_GET_API_VERSION)).result).toBe(12n);
    expect((await c.ioctl(fd, KVM_GET_API_VERSION, 1n)).errno).toBe(22); // EINVAL
    expect((await c.ioctl(fd, KVM_CHECK_EXTENSION, BigInt(KVM_CAP_USER_MEMORY))).result).toBe(1n);
    // The request travels as 64 bits; only its low 32 bits are the ioctl (QEMU's sign extension).
    expect((await c.ioctl(fd, 0xffff_ffff_0000_0000n | BigInt(KVM_GET_API_VERSION))).result).toBe(12n);
    const vm = await c.ioctl(fd, KVM_CREATE_VM);
    expect([vm.errno, vm.fdKind]).toEqual([0, FdKind.VM]);
    const vcpu = await c.ioctl(Number(vm.result), KVM_CREATE_VCPU, 0n);
    expect([vcpu.errno, vcpu.fdKind, vcpu.mmapSize]).toEqual([0, FdKind.VCPU, 12288]);
    const again = await c.ioctl(Number(vm.result), KVM_CREATE_VCPU, 0n);
    expect([again.errno, again.message]).toEqual([17, 'KVM_CREATE_VCPU: EEXIST: vCPU 0 exists']);
    expect((await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm7'))).errno).toBe(2); // ENOENT
    expect((await c.ioctl(99, KVM_GET_API_VERSION)).errno).toBe(9); // EBADF
    const rec = server.calls().at(-1);
    expect(rec).toMatchObject({ op: 'ioctl', fd: 99, what: 'KVM_GET_API_VERSION(0)', error: 'EBADF' });
    // `vac trace` prints it strace -T style, with the time from the request's arrival to its reply.
    expect(typeof rec?.us).toBe('number');
    expect(formatCall({ ...(rec as NonNullable<typeof rec>), pid: 7, tid: 8, us: 42 })).toBe('[7 8] ioctl(99, KVM_GET_API_VERSION(0)) = -1 EBADF (fdget: EBADF: bad file descriptor 99) <0.000042>\n');
  });

  test('struct arguments go through the codec both ways; a bad pointer is the model’s EFAULT', async () => {
    const c = newClient();
    await hello(c, true);
    const sys = Number((await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).result);
    const vm = Number((await c.ioctl(sys, KVM_CREATE_VM)).result);
    const vcpu = Number((await c.ioctl(vm, KVM_CREATE_VCPU, 0n)).result);
    const regs = makeKvmRegs({ rip: 0xfff0n, rax: 0x1122334455667788n, rflags: 2n });
    expect((await c.ioctl(vcpu, KVM_SET_REGS, 0x7000n, encodeRegs(regs))).errno).toBe(0);
    const got = await c.ioctl(vcpu, KVM_GET_REGS, 0x7000n, new Uint8Array(144));
    expect(got.out.length).toBe(144);
    expect(decodeRegs(got.out)).toMatchObject({ rip: 0xfff0n, rax: 0x1122334455667788n, rflags: 2n });
    const bad = await c.call(Op.IOCTL, vcpu, IOCTL_INPUT_UNREADABLE, BigInt(KVM_SET_REGS), 0n);
    expect([bad.errno, bad.out.length]).toEqual([14, 0]);
    // An ioctl the model does not know gets the model's answer whatever its bytes: ENOTTY on a VM fd.
    const unknown = await c.ioctl(vm, 0xc008aef0, 0x7000n, new Uint8Array(8)); // _IOWR(KVMIO, 0xf0, 8 bytes): no such ioctl
    expect(unknown.errno).toBe(25);
  });

  test('a zeroed input (KVM_GET_XSAVE2 without its 4 KiB): the model gets zeros and answers what it answers with the VMM’s bytes; a wrong length is refused, a failure copies nothing back', async () => {
    const c = newClient();
    await hello(c, true);
    const sys = Number((await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).result);
    const vm = Number((await c.ioctl(sys, KVM_CREATE_VM)).result);
    const vcpu = Number((await c.ioctl(vm, KVM_CREATE_VCPU, 0n)).result);
    const withBytes = await c.ioctl(vcpu, KVM_GET_XSAVE2, 0x7000n, new Uint8Array(4096).fill(0xa5));
    const zeroed = await c.call(Op.IOCTL, vcpu, IOCTL_INPUT_ZEROED, BigInt(KVM_GET_XSAVE2), 0x7000n, 4096n);
    expect([zeroed.errno, zeroed.out.length]).toEqual([0, 4096]);
    expect(Buffer.from(zeroed.out).equals(Buffer.from(withBytes.out))).toBe(true);
    const short = await c.call(Op.IOCTL, vcpu, IOCTL_INPUT_ZEROED, BigInt(KVM_GET_XSAVE2), 0x7000n, 64n);
    expect([short.errno, short.out.length]).toEqual([5, 0]); // EIO: not the request's size
    // KVM_GET_XSAVE2 on a VM fd: the model's EINVAL, and no bytes back (the VMM's were never sent).
    const failed = await c.call(Op.IOCTL, vm, IOCTL_INPUT_ZEROED, BigInt(KVM_GET_XSAVE2), 0x7000n, 4096n);
    expect([failed.errno === 0, failed.out.length]).toEqual([false, 0]);
  });

  test('KVM_RUN: the kvm_run bytes go in, the exit comes back as patches of the bytes the model changed', async () => {
    const c = newClient();
    await hello(c, true);
    const sys = Number((await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).result);
    const vm = Number((await c.ioctl(sys, KVM_CREATE_VM)).result);
    // Guest RAM: a page of this very process (a Buffer's memory is not page-aligned, so no memslot here); an
    // empty VM's vCPU runs into no memory: KVM_EXIT_INTERNAL_ERROR, written into kvm_run.
    const vcpu = Number((await c.ioctl(vm, KVM_CREATE_VCPU, 0n)).result);
    const run = new Uint8Array(12288);
    const r = await c.call(Op.IOCTL, vcpu, 4 /* IOCTL_HAS_RUN */, BigInt(KVM_RUN), 0n, 0n, run);
    expect(r.errno).toBe(0);
    for (const [off, bytes] of r.runPatches) run.set(bytes, off);
    expect(new DataView(run.buffer).getUint32(8, true)).toBe(17); // exit_reason = KVM_EXIT_INTERNAL_ERROR
    const total = r.runPatches.reduce((s, [, b]) => s + b.length, 0);
    expect(total).toBeLessThan(64); // only what changed travels back
    // immediate_exit set by the VMM reaches the model: KVM_RUN returns EINTR, exit_reason as the last exit left it
    // (kvm_arch_vcpu_ioctl_run does not touch kvm_run; a real 6.18 kernel was checked to do the same)
    run[1] = 1; // kvm_run.immediate_exit (offset 1)
    const r2 = await c.call(Op.IOCTL, vcpu, 4, BigInt(KVM_RUN), 0n, 0n, run);
    expect(r2.errno).toBe(4); // EINTR
    for (const [off, bytes] of r2.runPatches) run.set(bytes, off);
    expect(new DataView(run.buffer).getUint32(8, true)).toBe(17); // still KVM_EXIT_INTERNAL_ERROR
  });

  test('KVM_RUN with the VMM’s kvm_run changes as patches: applied to what the bridge knows; a malformed patch changes nothing', async () => {
    const c = newClient();
    await hello(c, true);
    const sys = Number((await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).result);
    const vm = Number((await c.ioctl(sys, KVM_CREATE_VM)).result);
    const vcpu = Number((await c.ioctl(vm, KVM_CREATE_VCPU, 0n)).result);
    const patch = (off: number, bytes: number[]): Uint8Array => {
      const p = new Uint8Array(8 + bytes.length);
      const v = new DataView(p.buffer);
      v.setUint32(0, off, true);
      v.setUint32(4, bytes.length, true);
      p.set(bytes, 8);
      return p;
    };
    const run = new Uint8Array(12288);
    const first = await c.call(Op.IOCTL, vcpu, IOCTL_RUN_PATCHES, BigInt(KVM_RUN), 0n, 0n); // nothing changed yet
    expect(first.errno).toBe(0);
    for (const [off, bytes] of first.runPatches) run.set(bytes, off);
    expect(new DataView(run.buffer).getUint32(8, true)).toBe(17); // KVM_EXIT_INTERNAL_ERROR, as with the whole area
    // A patch past the area's end (and one whose length runs past the message): an error reply, nothing applied —
    // immediate_exit, in the same message, does not reach the model — and the connection keeps being served.
    const beyond = await c.call(Op.IOCTL, vcpu, IOCTL_RUN_PATCHES, BigInt(KVM_RUN), 0n, 0n, patch(1, [1]), patch(12287, [1, 2]));
    expect(beyond.errno).toBe(5);
    expect(beyond.message).toMatch(/kvm_run patch of 2 bytes at 12287/);
    const cut = await c.call(Op.IOCTL, vcpu, IOCTL_RUN_PATCHES, BigInt(KVM_RUN), 0n, 0n, patch(1, [1]).subarray(0, 9), new Uint8Array(3));
    expect(cut.errno).toBe(5);
    const again = await c.call(Op.IOCTL, vcpu, IOCTL_RUN_PATCHES, BigInt(KVM_RUN), 0n, 0n);
    expect(again.errno).toBe(0); // immediate_exit is still 0 in the model: the run happened
    // immediate_exit as a one-byte patch reaches the model: EINTR.
    const stop = await c.call(Op.IOCTL, vcpu, IOCTL_RUN_PATCHES, BigInt(KVM_RUN), 0n, 0n, patch(1, [1]));
    expect(stop.errno).toBe(4);
    // The bridge now knows the VMM's byte: it does not send it back, and clearing it is another patch.
    expect(stop.runPatches.some(([off, bytes]) => off <= 1 && off + bytes.length > 1)).toBe(false);
    expect((await c.call(Op.IOCTL, vcpu, IOCTL_RUN_PATCHES, BigInt(KVM_RUN), 0n, 0n, patch(1, [0]))).errno).toBe(0);
  });

  test('KVM_SET_USER_MEMORY_REGION over memory the VMM has not mapped is the model’s to judge; the slot is unbacked', async () => {
    const c = newClient();
    await hello(c, true);
    const sys = Number((await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).result);
    const vm = Number((await c.ioctl(sys, KVM_CREATE_VM)).result);
    const region = encodeMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: 0x1000 });
    expect((await c.ioctl(vm, KVM_SET_USER_MEMORY_REGION, 0x7000n, region)).errno).toBe(0);
    const unaligned = encodeMemoryRegion({ slot: 1, flags: 0, guest_phys_addr: 0x3000, memory_size: 0x1000, userspace_addr: 0x1234 });
    expect((await c.ioctl(vm, KVM_SET_USER_MEMORY_REGION, 0x7000n, unaligned)).errno).toBe(22);
  });

  test('one VMM cannot use another’s fds: each real process has its own simulated fd table', async () => {
    const a = newClient();
    await hello(a, true);
    const fdA = Number((await a.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).result);
    // Another process: pid 1 (init) has a /proc entry; it gets a session of its own.
    const b = newClient();
    expect((await hello(b, true, 1)).errno).toBe(0);
    expect((await b.ioctl(fdA, KVM_GET_API_VERSION)).errno).toBe(9); // EBADF in pid 1's table
    expect(server.sessions().size).toBe(2);
    expect(server.sessions().get(1)?.proc.uid).toBe(0);
  });

  test('a thread connection joins its process’s session; without one it is refused (ESRCH)', async () => {
    const t = newClient();
    expect((await hello(t, false)).errno).toBe(3);
    const life = newClient();
    await hello(life, true);
    const t2 = newClient();
    expect((await hello(t2, false)).errno).toBe(0);
    const fd = Number((await life.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm1'))).result);
    expect((await t2.ioctl(fd, KVM_GET_API_VERSION)).result).toBe(12n); // fds are per process, not per thread
    const none = newClient();
    expect((await none.ioctl(3, KVM_GET_API_VERSION)).errno).toBe(71); // EPROTO: no HELLO
  });

  test('dup and close map onto the simulated fd table; mmap/munmap of a vCPU fd are the model’s', async () => {
    const c = newClient();
    await hello(c, true);
    const sys = Number((await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).result);
    const vm = Number((await c.ioctl(sys, KVM_CREATE_VM)).result);
    const vcpu = Number((await c.ioctl(vm, KVM_CREATE_VCPU, 0n)).result);
    const vm2 = Number((await c.call(Op.DUP, vm, 0, 0n)).result);
    expect(vm2).not.toBe(vm);
    expect((await c.call(Op.CLOSE, vm, 0, 0n)).errno).toBe(0);
    expect((await c.call(Op.CLOSE, vm, 0, 0n)).errno).toBe(9);
    expect((await c.ioctl(vm2, KVM_CREATE_VCPU, 1n)).errno).toBe(0);
    const m = await c.call(Op.MMAP, vcpu, 0, 12288n, 0n);
    expect(m.errno).toBe(0);
    expect((await c.call(Op.MMAP, vcpu, 0, 4096n, 12288n)).errno).toBe(22);
    expect((await c.call(Op.MMAP, vm2, 0, 4096n, 0n)).errno).toBe(19);
    expect((await c.call(Op.MUNMAP, 0, 0, m.result, 12288n)).errno).toBe(0);
  });

  test('a malformed message gets an error reply and closes that connection only; the others are served', async () => {
    const good = newClient();
    await hello(good, true);
    const bad = newClient();
    const junk = Buffer.alloc(REPLY_HEADER, 0x41);
    const r = await bad.raw(junk);
    expect(r.errno).toBe(71); // EPROTO
    expect(r.message).toMatch(/bad magic/);
    await new Promise((res) => setTimeout(res, 20));
    expect(bad.closed).toBe(true);
    expect((await good.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).errno).toBe(0);
    expect(logs.some((l) => l.includes('malformed message'))).toBe(true);
  });

  test('eventfd relays: EVENTFD makes a simulated eventfd, SIGNAL adds to it (no reply); a relay id twice, a SIGNAL to no relay and an INTERRUPT outside KVM_RUN change nothing and the connection goes on', async () => {
    const c = newClient();
    await hello(c, true);
    const ev = await c.call(Op.EVENTFD, 0, 0, 1n);
    expect(ev.errno).toBe(0);
    const fd = Number(ev.result);
    const proc = server.sessions().get(process.pid)?.proc;
    expect(proc?.file(fd).path).toBe('anon_inode:[eventfd]');
    const twice = await c.call(Op.EVENTFD, 0, 0, 1n);
    expect([twice.errno, twice.message]).toEqual([5, 'bridge: relay 1 exists already']); // EIO: the library's mistake
    c.send(Op.SIGNAL, 0, 1n, 3n);
    c.send(Op.SIGNAL, 0, 9n, 1n); // no relay 9: logged, no reply
    c.send(Op.INTERRUPT, 0, 0n); // no KVM_RUN in progress: nothing
    // The next call's reply is the next message on the connection: neither SIGNAL nor INTERRUPT sent one.
    expect((await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).errno).toBe(0);
    expect(new DataView(proc?.read(fd, 8).buffer as ArrayBuffer).getBigUint64(0, true)).toBe(3n);
    expect(logs.some((l) => l.includes('relay 9: bridge: no relay 9'))).toBe(true);
    expect(server.calls().filter((r) => r.op === 'signal').map((r) => [r.what, r.error])).toEqual([['relay 1 +3', undefined], ['relay 9 +1', 'EIO']]);
    expect(server.calls().some((r) => r.op === 'interrupt')).toBe(false);
  });

  test('no request FIFO (something else at its path): the bridge logs it and serves everything on the sockets; a thread’s HELLO gives no FIFO id', async () => {
    const other = join(mkdtempSync(join(tmpdir(), 'vac-srv-')), 'bridge.sock');
    mkdirSync(fifoPath(other));
    const lines: string[] = [];
    const plain = new BridgeServer({ host: server.host, socketPath: other, log: (l) => lines.push(l) });
    await plain.listen();
    try {
      expect(lines.some((l) => l.includes('no request FIFO'))).toBe(true);
      const life = new Client(other);
      clients.push(life);
      await hello(life, true);
      const c = new Client(other);
      clients.push(c);
      expect((await hello(c, false)).out.length).toBe(0);
      const sys = await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'));
      expect((await c.ioctl(Number(sys.result), KVM_GET_API_VERSION)).result).toBe(12n);
    } finally {
      for (const x of clients.splice(0)) x.end();
      await plain.close();
    }
  });

  test('the request FIFO: a thread connection’s HELLO gives its id and secret token, a request written there with them is answered on its socket; a wrong token, an unknown id and bytes that are no message are dropped and the connection goes on', async () => {
    const life = newClient();
    expect((await hello(life, true)).out.length).toBe(0); // a life connection has no id on the FIFO
    const c = newClient();
    const h = await hello(c, false);
    expect(h.out.length).toBe(16);
    const v = new DataView(h.out.buffer, h.out.byteOffset, 16);
    const id = v.getUint32(0, true);
    const token = v.getBigUint64(8, true);
    expect(id).toBeGreaterThan(0);
    const envelope = (cid: number, tok: bigint, req: Uint8Array): Buffer => {
      const e = Buffer.alloc(16);
      e.writeUInt32LE(FIFO_MAGIC, 0);
      e.writeUInt32LE(cid, 4);
      e.writeBigUInt64LE(tok, 8);
      return Buffer.concat([e, req]);
    };
    const fifo = openSync(fifoPath(path), 'w');
    try {
      const open = await c.viaFifo(fifo, envelope(id, token, encodeRequest(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))));
      expect([open.errno, open.fdKind]).toEqual([0, FdKind.SYSTEM]);
      const sys = Number(open.result);
      expect(server.calls().at(-1)).toMatchObject({ op: 'open', what: '/dev/kvm0', via: 'fifo' });
      // Forged: another token, another id, and garbage; none is served (KVM_CREATE_VM would make a VM and a record).
      const before = server.calls().length;
      const create = encodeRequest(Op.IOCTL, sys, 0, BigInt(KVM_CREATE_VM), 0n, 0n);
      writeSync(fifo, envelope(id, token ^ 1n, create));
      writeSync(fifo, envelope(id + 1000, token, create));
      writeSync(fifo, Buffer.from('no message at all, just bytes'));
      const version = await c.viaFifo(fifo, envelope(id, token, encodeRequest(Op.IOCTL, sys, 0, BigInt(KVM_GET_API_VERSION), 0n, 0n)));
      expect([version.errno, version.result]).toEqual([0, 12n]);
      expect(server.calls().slice(before).map((r) => r.what)).toEqual(['KVM_GET_API_VERSION(0)']);
      expect(logs.some((l) => l.includes('a wrong token'))).toBe(true);
      expect(logs.some((l) => l.includes('no such connection'))).toBe(true);
      expect(logs.some((l) => l.includes('that are no message skipped'))).toBe(true);
      // The same connection's socket still works, and its requests are recorded as such.
      expect((await c.ioctl(sys, KVM_GET_API_VERSION)).result).toBe(12n);
      expect(server.calls().at(-1)?.via).toBe('socket');
      // A malformed request in a good envelope: EPROTO on its socket, that connection closed, others served.
      const bad = Buffer.from(encodeRequest(Op.IOCTL, sys, 0, 0n, 0n, 0n));
      bad.writeUInt32LE(12, 4); // a length shorter than a request header
      const r = await c.viaFifo(fifo, envelope(id, token, bad));
      expect(r.errno).toBe(71);
      await until(() => c.closed, 'the connection to close');
      expect((await life.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).errno).toBe(0);
    } finally {
      closeSync(fifo);
    }
  });

  test('call records: the newest keepCalls are kept, trimmed in batches of a quarter', async () => {
    const small = new BridgeServer({ host: server.host, socketPath: `${path}.small`, keepCalls: 8 });
    await small.listen();
    const c = new Client(`${path}.small`);
    try {
      await hello(c, true);
      const sys = Number((await c.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).result);
      const seen: number[] = [];
      for (let i = 0; i < 20; i++) {
        await c.ioctl(sys, KVM_CHECK_EXTENSION, BigInt(i));
        seen.push(small.calls().length);
      }
      expect(Math.max(...seen)).toBe(10); // 8 + 8/4: then trimmed back to 8
      expect(Math.min(...seen.slice(8))).toBe(8);
      expect(small.calls().at(-1)?.what).toBe(`KVM_CHECK_EXTENSION(${capabilityName(19)})`);
    } finally {
      c.end();
      await small.close();
    }
  });

  test('the life connection closing ends the session: the simulated process is killed, VMs die, the host is clean', async () => {
    const life = newClient();
    await hello(life, true);
    const sys = Number((await life.call(Op.OPEN, 0, 0, 2n, 0n, 0n, utf8('/dev/kvm0'))).result);
    const vm = Number((await life.ioctl(sys, KVM_CREATE_VM)).result);
    await life.ioctl(vm, KVM_CREATE_VCPU, 0n);
    expect(server.host.lsmod().find((m) => m.name === 'kvm0')?.refcount).toBe(3);
    life.end();
    const end = Date.now() + 2000;
    while (server.sessions().size > 0 && Date.now() < end) await new Promise((res) => setTimeout(res, 5));
    expect(server.sessions().size).toBe(0);
    expect(server.host.lsmod().find((m) => m.name === 'kvm0')?.refcount).toBe(0);
    expect(server.host.processes().map((p) => p.name)).toEqual(['init']);
    expect(checkInvariants(server.host)).toEqual([]);
  });
});
