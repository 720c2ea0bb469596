/**
 * UNIX stream socket pairs (`socketpair(AF_UNIX, SOCK_STREAM, 0)`, net/unix/af_unix.c) carrying bytes and open
 * files (`SCM_RIGHTS`, net/core/scm.c): just enough socket for one process to hand another a memfd, a `/dev/kvmX`
 * fd or a VM fd. A process gets the other end into a second process by starting it with the end open
 * (`host.spawn({ parent })`), or by sending it over a socket that process already holds.
 *
 * - `sendmsg` takes the files out of the sender's fd table at once (each in-flight file holds a reference: closing
 *   the sender's fd does not release it); `recvmsg` installs them in the receiver at the lowest free fds.
 * - A read stops after the bytes that came with files (their files are the read's), so files are never delivered
 *   with bytes sent after them; bytes sent without files before them are read together with them.
 * - Files that do not fit the receiver's room (`maxFds`) or its fd table are closed and the read reports
 *   `MSG_CTRUNC`.
 * - When an end is closed, the files queued to it are released; the other end reads what is left, then 0 bytes
 *   (end of file), and a send to it fails with EPIPE (no SIGPIPE: the model has no signals).
 *
 * Where the model differs (docs/fidelity.md, "UNIX sockets"): only `AF_UNIX` / `SOCK_STREAM` pairs (no `bind`,
 * `listen`, `connect`, no datagram sockets); a read of an empty socket whose peer is open answers EAGAIN (a direct
 * call never blocks, as with `MSG_DONTWAIT`); there is no send buffer limit; a socket sent over itself (a cycle the
 * kernel's `unix_gc` would collect) stays alive.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import type { FileOperations, OpenFile } from './file.js';
import { O_CLOEXEC, O_RDWR, type Process } from './process.js';

/** `AF_UNIX` (= `AF_LOCAL`, `PF_UNIX`). */
export const AF_UNIX = 1;
/** `AF_INET`. */
export const AF_INET = 2;
/** `AF_INET6`. */
export const AF_INET6 = 10;
/** `SOCK_STREAM`. */
export const SOCK_STREAM = 1;
/** `SOCK_DGRAM`. */
export const SOCK_DGRAM = 2;
/** `SOCK_RAW` (an `AF_UNIX` raw socket is a datagram socket). */
export const SOCK_RAW = 3;
/** `SOCK_SEQPACKET`. */
export const SOCK_SEQPACKET = 5;
/** `SOCK_NONBLOCK` (= `O_NONBLOCK`). */
export const SOCK_NONBLOCK = 0o4000;
/** `SOCK_CLOEXEC` (= `O_CLOEXEC`): both new fds are close-on-exec. */
export const SOCK_CLOEXEC = O_CLOEXEC;
/** `SOL_SOCKET`: the level of an `SCM_RIGHTS` control message. */
export const SOL_SOCKET = 1;
/** `SCM_RIGHTS`: a control message carrying fds. */
export const SCM_RIGHTS = 1;
/** `SCM_MAX_FD` (include/net/scm.h): the most fds one message carries. */
export const SCM_MAX_FD = 253;
/** `MSG_CTRUNC`: some passed fds were not delivered (no room, or the fd table was full). */
export const MSG_CTRUNC = 0x8;
/** `MSG_DONTWAIT`: do not block (the model's calls never do). */
export const MSG_DONTWAIT = 0x40;
/** `MSG_NOSIGNAL`: no SIGPIPE on a closed peer (the model has no signals: EPIPE either way). */
export const MSG_NOSIGNAL = 0x4000;
/** `MSG_CMSG_CLOEXEC`: the received fds are close-on-exec. */
export const MSG_CMSG_CLOEXEC = 0x4000_0000;

/** `NPROTO` (= `AF_MAX`): address families are below it. */
const NPROTO = 46;
/** `SOCK_MAX`: socket types are below it. */
const SOCK_MAX = 11;
/** `SOCK_TYPE_MASK`. */
const SOCK_TYPE_MASK = 0xf;

/** What one `sendmsg` queued: bytes and, with `SCM_RIGHTS`, the files in flight (`struct sk_buff` + `UNIXCB(skb).fp`). */
interface Segment {
  readonly data: Uint8Array;
  /** How much of `data` has been read. */
  consumed: number;
  /** The files in flight, until a read takes them. */
  files: OpenFile[] | undefined;
}

/** One end of a socket pair (`struct unix_sock`). */
export class UnixSocket {
  /** The other end; `undefined` once it is closed. */
  #peer: UnixSocket | undefined;
  /** The receive queue (`sk_receive_queue`). */
  readonly #queue: Segment[] = [];
  /** Set once this end is closed (`SOCK_DEAD`). */
  #dead = false;

  /** @internal Made by {@link socketpair}. */
  static pair(): [UnixSocket, UnixSocket] {
    const a = new UnixSocket();
    const b = new UnixSocket();
    a.#peer = b;
    b.#peer = a;
    return [a, b];
  }

  private constructor() {}

  /** Bytes queued to be read (`ioctl(SIOCINQ)`). */
  get pending(): number {
    let n = 0;
    for (const s of this.#queue) n += s.data.length - s.consumed;
    return n;
  }

  /** Files in flight to this end: sent, not yet received. */
  get filesInFlight(): number {
    let n = 0;
    for (const s of this.#queue) n += s.files?.length ?? 0;
    return n;
  }

  /** True while the other end is open. */
  get connected(): boolean {
    return this.#peer !== undefined;
  }

  /**
   * `unix_stream_sendmsg`: queue `data` (a copy) with `files` (already referenced by the caller) to the peer.
   * Sending 0 bytes queues nothing: the files are released and 0 is returned, as Linux does.
   * @throws {@link KernelError} EPIPE (the peer is closed)
   */
  send(data: Uint8Array, files: OpenFile[] | undefined): number {
    const peer = this.#peer;
    if (data.length === 0) {
      for (const f of files ?? []) f.drop();
      return 0;
    }
    if (peer === undefined || peer.#dead) {
      for (const f of files ?? []) f.drop();
      throw new KernelError('EPIPE', 'sendmsg', 'Broken pipe: the other end is closed');
    }
    peer.#queue.push({ data: data.slice(), consumed: 0, files });
    return data.length;
  }

  /**
   * `unix_stream_read_generic`: up to `size` bytes; stops after a segment that carried files (whose files are
   * returned, to be installed or released by the caller).
   * @throws {@link KernelError} EAGAIN (nothing queued and the peer is open)
   */
  receive(size: number): { readonly data: Uint8Array<ArrayBuffer>; readonly files: OpenFile[] | undefined } {
    const parts: Uint8Array[] = [];
    let copied = 0;
    let files: OpenFile[] | undefined;
    let left = size;
    do {
      const seg = this.#queue[0];
      if (seg === undefined) {
        // Nothing more queued: what was read so far, end of file when the peer is gone, else it would block.
        if (copied >= Math.min(1, size) || this.#peer === undefined) break;
        throw new KernelError('EAGAIN', 'recvmsg', 'nothing to read (a direct read does not block)');
      }
      const chunk = Math.min(seg.data.length - seg.consumed, left);
      parts.push(seg.data.subarray(seg.consumed, seg.consumed + chunk));
      seg.consumed += chunk;
      copied += chunk;
      left -= chunk;
      if (seg.files !== undefined) {
        files = seg.files;
        seg.files = undefined;
      }
      if (seg.consumed < seg.data.length) break;
      this.#queue.shift();
      if (files !== undefined) break;
    } while (left > 0);
    const data = new Uint8Array(copied);
    let at = 0;
    for (const p of parts) {
      data.set(p, at);
      at += p.length;
    }
    return { data, files };
  }

  /** `unix_release_sock`: the end is closed; the files queued to it are released, the peer sees end of file. */
  release(): void {
    this.#dead = true;
    const peer = this.#peer;
    this.#peer = undefined;
    if (peer !== undefined) peer.#peer = undefined;
    for (const seg of this.#queue.splice(0)) for (const f of seg.files ?? []) f.drop();
  }
}

const SOCKET_FOPS: FileOperations<UnixSocket> = {
  read(file: OpenFile<UnixSocket>, count: number, offset: number | undefined) {
    // A socket has no position: pread is ESPIPE (FMODE_PREAD is not set); read() has no room for files.
    if (offset !== undefined) throw new KernelError('ESPIPE', 'pread', 'Illegal seek');
    const { data, files } = file.privateData.receive(count);
    for (const f of files ?? []) f.drop();
    return data;
  },
  write(file: OpenFile<UnixSocket>, data: Uint8Array) {
    return file.privateData.send(data, undefined);
  },
  release(file: OpenFile<UnixSocket>) {
    file.privateData.release();
  },
};

/** The {@link UnixSocket} behind an open file, or `undefined` when the file is no socket. */
export function socketOf(file: OpenFile): UnixSocket | undefined {
  return file.fops === (SOCKET_FOPS as FileOperations) ? (file.privateData as UnixSocket) : undefined;
}

/**
 * `socketpair(domain, type, protocol)` in process `proc`: two connected `AF_UNIX` stream sockets, shown as
 * `socket:[N]`.
 * @returns the two fds (the lowest free numbers, in order)
 * @throws {@link KernelError} EINVAL (a type out of range, or flags other than `SOCK_NONBLOCK` / `SOCK_CLOEXEC`),
 *   EAFNOSUPPORT (no such address family), EOPNOTSUPP (`AF_INET`, `AF_INET6`: no pairs), ESOCKTNOSUPPORT (a type
 *   `AF_UNIX` does not have), EPROTONOSUPPORT (a protocol other than 0 or `PF_UNIX`), EMFILE (fewer than two free
 *   fds); {@link UsageError} ERR_NOT_SUPPORTED for what the model does not have (datagram sockets, other families)
 * @example
 * ```ts
 * import { AF_UNIX, SOCK_STREAM, createHost, memfdCreate, recvmsg, sendmsg, socketpair } from '@vac/core';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * const oldVmm = host.spawn({ name: 'old-vmm' });
 * const [mine, theirs] = socketpair(oldVmm, AF_UNIX, SOCK_STREAM);
 * const newVmm = host.spawn({ name: 'new-vmm', parent: oldVmm }); // inherits both ends
 * oldVmm.close(theirs);
 * const ram = memfdCreate(oldVmm, 'pc.ram');
 * sendmsg(oldVmm, mine, { data: new Uint8Array([1]), fds: [ram] });
 * const got = recvmsg(newVmm, theirs, 16);
 * console.log(got.fds, newVmm.file(got.fds[0]!).path); // [ 5 ] /memfd:pc.ram (deleted)
 * ```
 */
export function socketpair(proc: Process, domain: number, type: number, protocol = 0): [number, number] {
  for (const [v, what] of [[domain, 'domain'], [type, 'type'], [protocol, 'protocol']] as const) {
    if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw new UsageError('ERR_INVALID_ARG', `socketpair: ${what} ${String(v)} is not an int`);
  }
  // __sys_socketpair: the flags out of the type, then __sock_create's checks, then the family's create.
  const flags = type & ~SOCK_TYPE_MASK;
  if ((flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK)) !== 0) throw new KernelError('EINVAL', 'socketpair', `unknown type flags 0x${(flags >>> 0).toString(16)}`);
  const kind = type & SOCK_TYPE_MASK;
  if (domain < 0 || domain >= NPROTO || domain === 0) throw new KernelError('EAFNOSUPPORT', 'socketpair', `address family ${domain} not supported`);
  if (kind >= SOCK_MAX) throw new KernelError('EINVAL', 'socketpair', `socket type ${kind} out of range`);
  if (domain === AF_INET || domain === AF_INET6) throw new KernelError('EOPNOTSUPP', 'socketpair', 'an internet socket cannot be made in pairs');
  if (domain !== AF_UNIX) throw new UsageError('ERR_NOT_SUPPORTED', `socketpair: the model has AF_UNIX sockets only (got family ${domain})`);
  // unix_create: the protocol, then the type.
  if (protocol !== 0 && protocol !== AF_UNIX) throw new KernelError('EPROTONOSUPPORT', 'socketpair', `protocol ${protocol} not supported`);
  if (kind === SOCK_DGRAM || kind === SOCK_RAW || kind === SOCK_SEQPACKET) throw new UsageError('ERR_NOT_SUPPORTED', 'socketpair: the model has SOCK_STREAM sockets only');
  if (kind !== SOCK_STREAM) throw new KernelError('ESOCKTNOSUPPORT', 'socketpair', `socket type ${kind} not supported by AF_UNIX`);
  if (proc.nofile - 3 - proc.fds().length < 2) throw new KernelError('EMFILE', 'socketpair', 'Too many open files');
  const [a, b] = UnixSocket.pair();
  const fileFlags = O_RDWR | (flags & (SOCK_CLOEXEC | SOCK_NONBLOCK));
  const fd0 = proc.installFile(`socket:[${proc.host.nextInode()}]`, SOCKET_FOPS, a, fileFlags);
  try {
    return [fd0, proc.installFile(`socket:[${proc.host.nextInode()}]`, SOCKET_FOPS, b, fileFlags)];
  } catch (e) {
    proc.close(fd0); // put_unused_fd: the first end goes again
    throw e;
  }
}

/** A message for {@link sendmsg}: bytes and the fds to pass (`SCM_RIGHTS`). */
export interface SendMessage {
  /** The bytes (`msg_iov`). */
  readonly data?: Uint8Array;
  /** The fds to pass (an `SCM_RIGHTS` control message), at most {@link SCM_MAX_FD}; the same fd may repeat. */
  readonly fds?: readonly number[];
}

/** What {@link recvmsg} read. */
export interface ReceivedMessage {
  /** The bytes. */
  readonly data: Uint8Array<ArrayBuffer>;
  /** The fds installed in the receiver for the files passed (lowest free numbers, in the order sent). */
  readonly fds: number[];
  /** `msg_flags`: {@link MSG_CTRUNC} when passed files were dropped. */
  readonly flags: number;
}

function socketFile(proc: Process, fd: number, op: string): UnixSocket {
  const sock = socketOf(proc.file(fd));
  if (sock === undefined) throw new KernelError('ENOTSOCK', op, `fd ${fd} is not a socket`);
  return sock;
}

/**
 * `sendmsg(fd, msg, flags)`: send bytes and, with `msg.fds`, the open files behind those fds of the sender.
 * @returns the bytes sent (0 for no bytes: then nothing is sent, files included, as Linux does)
 * @throws {@link KernelError} EBADF (`fd`, or a passed fd, is not open), ENOTSOCK (`fd` is no socket), EINVAL
 *   (more than {@link SCM_MAX_FD} fds), EPIPE (the other end is closed); {@link UsageError} for flags other than
 *   {@link MSG_DONTWAIT} / {@link MSG_NOSIGNAL}, or data that is no `Uint8Array`
 */
export function sendmsg(proc: Process, fd: number, msg: SendMessage, flags = 0): number {
  if ((flags & ~(MSG_DONTWAIT | MSG_NOSIGNAL)) !== 0) throw new UsageError('ERR_NOT_SUPPORTED', `sendmsg: flags 0x${(flags >>> 0).toString(16)} (the model takes MSG_DONTWAIT and MSG_NOSIGNAL)`);
  const data = msg.data ?? new Uint8Array(0);
  if (!(data instanceof Uint8Array)) throw new UsageError('ERR_INVALID_ARG', 'sendmsg: data must be a Uint8Array');
  const fds = msg.fds === undefined ? undefined : Array.from(msg.fds);
  // __sys_sendmsg: the socket first, then __scm_send (scm_fp_copy: the count, then each fd), then the send.
  const sock = socketFile(proc, fd, 'sendmsg');
  let files: OpenFile[] | undefined;
  if (fds !== undefined && fds.length > 0) {
    if (fds.length > SCM_MAX_FD) throw new KernelError('EINVAL', 'sendmsg', `${fds.length} fds in one message (SCM_MAX_FD ${SCM_MAX_FD})`);
    const found = fds.map((n) => proc.file(n));
    for (const f of found) f.hold();
    files = found;
  }
  return sock.send(data, files);
}

/**
 * `recvmsg(fd, msg, flags)`: read up to `size` bytes and install the files passed with them.
 * @param maxFds - room for fds in the control buffer (default {@link SCM_MAX_FD}); files beyond it are closed and
 *   {@link MSG_CTRUNC} is set
 * @param flags - {@link MSG_CMSG_CLOEXEC} (the new fds are close-on-exec), {@link MSG_DONTWAIT}
 * @throws {@link KernelError} EBADF, ENOTSOCK, EAGAIN (nothing to read and the other end is open: a direct call
 *   does not block); {@link UsageError} for a bad size or flags the model does not take
 */
export function recvmsg(proc: Process, fd: number, size: number, maxFds: number = SCM_MAX_FD, flags = 0): ReceivedMessage {
  if (!Number.isSafeInteger(size) || size < 0) throw new UsageError('ERR_INVALID_ARG', `recvmsg: size ${String(size)} is not a non-negative integer`);
  if (!Number.isSafeInteger(maxFds) || maxFds < 0) throw new UsageError('ERR_INVALID_ARG', `recvmsg: maxFds ${String(maxFds)} is not a non-negative integer`);
  if ((flags & ~(MSG_CMSG_CLOEXEC | MSG_DONTWAIT)) !== 0) throw new UsageError('ERR_NOT_SUPPORTED', `recvmsg: flags 0x${(flags >>> 0).toString(16)} (the model takes MSG_CMSG_CLOEXEC and MSG_DONTWAIT)`);
  const sock = socketFile(proc, fd, 'recvmsg');
  const { data, files } = sock.receive(size);
  const out: number[] = [];
  let msgFlags = 0;
  if (files !== undefined) {
    // scm_detach_fds: as many as fit the room and the fd table; the rest are released and MSG_CTRUNC set.
    for (const f of files) {
      if (out.length < maxFds) {
        try {
          out.push(proc.receiveFile(f, (flags & MSG_CMSG_CLOEXEC) !== 0));
          f.drop();
          continue;
        } catch (e) {
          if (!(e instanceof KernelError)) throw e;
        }
      }
      msgFlags |= MSG_CTRUNC;
      f.drop();
    }
  }
  return { data, fds: out, flags: msgFlags };
}
