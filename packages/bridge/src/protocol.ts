/**
 * The wire protocol between the preload library (`native/vac-preload.c`) and the bridge: fixed little-endian
 * headers, one request and one reply at a time on each connection (one connection per VMM thread, plus one
 * "life" connection per VMM process whose closing tells the bridge that the process is gone).
 *
 * ```
 * request  (48 bytes + payload)                reply (40 bytes + body)
 *   u32 magic "VAC1"   u32 length (all)          u32 magic     u32 length (all)
 *   u32 op             i32 fd (simulated)        i32 errno (0 = success)     u32 reserved
 *   u32 flags          u32 reserved              i64 result
 *   u64 a              u64 b                     u32 out length   u32 new-fd kind
 *   u64 c                                        u32 vCPU mmap size  u32 message length
 *   payload: input bytes (c of them), then       body: out bytes (copied to the ioctl argument), the
 *   for KVM_RUN the kvm_run bytes the VMM         message (UTF-8), then kvm_run patches
 *   changed ({u32 offset, u32 length, bytes}…     ({u32 offset, u32 length, bytes}…) until the end
 *   until the end), or its whole kvm_run area
 * ```
 *
 * Both sides keep a shadow of the VMM's kvm_run as the bridge knows it (zeros at first, like the new mapping):
 * the library sends the byte runs where its copy differs from its shadow, the bridge the runs where the
 * model's differs from its own, and each side applies the other's patches to its copy and its shadow, so the
 * shadows stay equal without the 12 KiB area crossing the socket each time.
 *
 * | op | a | b | c | payload | result |
 * |---|---|---|---|---|---|
 * | HELLO | pid | tid | | | 0 |
 * | OPEN | open flags | | | path | simulated fd |
 * | CLOSE | | | | | 0 |
 * | IOCTL | request (32 bits) | argument value | input length | input, kvm_run patches (or area) | the ioctl's result |
 * | MMAP | length | offset | prot | | simulated address |
 * | MUNMAP | simulated address | length | | | 0 |
 * | DUP | | | | | simulated fd |
 * | EVENTFD | relay id | | | | a new simulated eventfd, the twin of a real one (KVM_IRQFD, KVM_IOEVENTFD) |
 * | SIGNAL | relay id | count | | | no reply: the VMM wrote this count into the real eventfd of an irqfd |
 * | INTERRUPT | | | | | no reply: a signal reached the thread waiting in KVM_RUN on this connection |
 *
 * The bridge also writes to a process's relay connection (HELLO with {@link HELLO_RELAY}) on its own: a request
 * header with op EVENTFD_WRITE, `a` the relay id and `b` a count the model signalled on the simulated eventfd
 * (an ioeventfd matched, a resamplefd was notified), which the library adds to the real eventfd.
 *
 * @module
 */

/** `"VAC1"` as a little-endian u32: the first word of every message. */
export const VAC_MAGIC = 0x31434156;
/** Size of a request header. */
export const REQUEST_HEADER = 48;
/** Size of a reply header. */
export const REPLY_HEADER = 40;
/** The largest request the bridge accepts (a malformed length beyond it is refused and the connection closed). */
export const MAX_REQUEST = 64 * 1024 * 1024 + REQUEST_HEADER + 16384;

/** Request operations. */
export const Op = {
  HELLO: 1,
  OPEN: 2,
  CLOSE: 3,
  IOCTL: 4,
  MMAP: 5,
  MUNMAP: 6,
  DUP: 7,
  EVENTFD: 8,
  SIGNAL: 9,
  EVENTFD_WRITE: 10,
  INTERRUPT: 11,
} as const;

/** The name of an operation code, for traces. */
export function opName(op: number): string {
  return OP_NAMES.get(op) ?? `op${op}`;
}

/** Operation number → name, built once (the bridge names every call it records). */
const OP_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Op).map(([k, v]) => [v, k]));

/** HELLO flag: this is the process's life connection. */
export const HELLO_LIFE = 1;
/** HELLO flag: this is the process's eventfd relay connection (the library's helper thread). */
export const HELLO_RELAY = 2;
/** IOCTL flag: the input bytes of the argument follow. */
export const IOCTL_HAS_INPUT = 1;
/** IOCTL flag: the argument pointer could not be read (a bad pointer: `copy_from_user` would fail). */
export const IOCTL_INPUT_UNREADABLE = 2;
/** IOCTL flag: the vCPU's whole kvm_run area follows the input. */
export const IOCTL_HAS_RUN = 4;
/** IOCTL flag: the byte runs the VMM changed in its kvm_run (`{u32 offset, u32 length, bytes}…`) follow the input. */
export const IOCTL_RUN_PATCHES = 8;
/**
 * IOCTL flag: no input bytes follow; the argument is `c` zero bytes (`c` must be the request's `_IOC_SIZE`). For a
 * pure get that the kernel builds in a zeroed buffer of its own and copies out whole — `KVM_GET_XSAVE2` and
 * `KVM_GET_XSAVE` (`kzalloc`, then `copy_to_user` of the whole size, arch/x86/kvm/x86.c) — the VMM's bytes at the
 * pointer make no difference, and without their 4 KiB the request fits the request FIFO. Nothing is copied back
 * when the call fails (the VMM's bytes stay as they were, as they did when they were sent and returned unchanged).
 */
export const IOCTL_INPUT_ZEROED = 16;

/** What a new fd in a reply is, so the library can make the right placeholder. */
export const FdKind = {
  NONE: 0,
  SYSTEM: 1,
  VM: 2,
  VCPU: 3,
  OTHER: 4,
} as const;

/** A decoded request. */
export interface Request {
  /** Operation code ({@link Op}). */
  readonly op: number;
  /** The simulated fd the call is about. */
  readonly fd: number;
  /** Operation flags. */
  readonly flags: number;
  /** First argument. */
  readonly a: bigint;
  /** Second argument. */
  readonly b: bigint;
  /** Third argument. */
  readonly c: bigint;
  /** Everything after the header. */
  readonly payload: Uint8Array;
}

/** A reply to encode. */
export interface Reply {
  /** Linux errno (0 = success). */
  readonly errno: number;
  /** The result (on success). */
  readonly result: bigint | number;
  /** Bytes the library copies to the ioctl argument. */
  readonly out?: Uint8Array | undefined;
  /** {@link FdKind} of a new fd in `result`. */
  readonly fdKind?: number | undefined;
  /** The vCPU mmap size, for a new vCPU fd. */
  readonly mmapSize?: number | undefined;
  /** A message (the model's error text) for the library's trace. */
  readonly message?: string | undefined;
  /** kvm_run bytes that changed: `[offset, bytes]`. */
  readonly runPatches?: ReadonlyArray<readonly [number, Uint8Array]> | undefined;
}

/** Why a byte stream is not a request. */
export class ProtocolError extends Error {
  /** @param message - what is wrong */
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Encode a request (the library's side; used by tests and the bench). */
export function encodeRequest(op: number, fd: number, flags: number, a: bigint, b: bigint, c: bigint, ...payload: Uint8Array[]): Uint8Array {
  const n = payload.reduce((s, p) => s + p.length, 0);
  const buf = new Uint8Array(REQUEST_HEADER + n);
  const v = new DataView(buf.buffer);
  v.setUint32(0, VAC_MAGIC, true);
  v.setUint32(4, buf.length, true);
  v.setUint32(8, op, true);
  v.setInt32(12, fd, true);
  v.setUint32(16, flags, true);
  v.setBigUint64(24, BigInt.asUintN(64, a), true);
  v.setBigUint64(32, BigInt.asUintN(64, b), true);
  v.setBigUint64(40, BigInt.asUintN(64, c), true);
  let o = REQUEST_HEADER;
  for (const p of payload) {
    buf.set(p, o);
    o += p.length;
  }
  return buf;
}

const EMPTY = new Uint8Array(0);

/** Encode a reply. */
export function encodeReply(r: Reply): Buffer {
  const out = r.out ?? EMPTY;
  const msg = r.message === undefined || r.message === '' ? EMPTY : Buffer.from(r.message, 'utf8');
  let patches = 0;
  for (const [, bytes] of r.runPatches ?? []) patches += 8 + bytes.length;
  // Every byte is written below (the header's padding at 12 included), so the buffer needs no zeroing.
  const buf = Buffer.allocUnsafe(REPLY_HEADER + out.length + msg.length + patches);
  buf.writeUInt32LE(VAC_MAGIC, 0);
  buf.writeUInt32LE(buf.length, 4);
  buf.writeInt32LE(r.errno, 8);
  buf.writeUInt32LE(0, 12);
  if (typeof r.result === 'number' && Number.isSafeInteger(r.result)) {
    // A safe integer as two 32-bit halves (two's complement): no BigInt per reply.
    buf.writeUInt32LE(r.result >>> 0, 16);
    buf.writeInt32LE(Math.floor(r.result / 2 ** 32), 20);
  } else buf.writeBigInt64LE(BigInt(r.result), 16);
  buf.writeUInt32LE(out.length, 24);
  buf.writeUInt32LE(r.fdKind ?? 0, 28);
  buf.writeUInt32LE(r.mmapSize ?? 0, 32);
  buf.writeUInt32LE(msg.length, 36);
  let o = REPLY_HEADER;
  buf.set(out, o);
  o += out.length;
  buf.set(msg, o);
  o += msg.length;
  for (const [offset, bytes] of r.runPatches ?? []) {
    buf.writeUInt32LE(offset, o);
    buf.writeUInt32LE(bytes.length, o + 4);
    buf.set(bytes, o + 8);
    o += 8 + bytes.length;
  }
  return buf;
}

/** A decoded reply (tests, the bench). */
export interface DecodedReply {
  /** errno. */
  readonly errno: number;
  /** result. */
  readonly result: bigint;
  /** out bytes. */
  readonly out: Uint8Array;
  /** new-fd kind. */
  readonly fdKind: number;
  /** vCPU mmap size. */
  readonly mmapSize: number;
  /** message. */
  readonly message: string;
  /** kvm_run patches. */
  readonly runPatches: Array<[number, Uint8Array]>;
}

/** Decode one whole reply. @throws {@link ProtocolError} */
export function decodeReply(buf: Uint8Array): DecodedReply {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < REPLY_HEADER || v.getUint32(0, true) !== VAC_MAGIC || v.getUint32(4, true) !== buf.length) throw new ProtocolError('not a whole reply');
  const outLen = v.getUint32(24, true);
  const msgLen = v.getUint32(36, true);
  const out = buf.subarray(REPLY_HEADER, REPLY_HEADER + outLen);
  const message = Buffer.from(buf.subarray(REPLY_HEADER + outLen, REPLY_HEADER + outLen + msgLen)).toString('utf8');
  const runPatches: Array<[number, Uint8Array]> = [];
  let o = REPLY_HEADER + outLen + msgLen;
  while (o + 8 <= buf.length) {
    const off = v.getUint32(o, true);
    const n = v.getUint32(o + 4, true);
    runPatches.push([off, buf.subarray(o + 8, o + 8 + n)]);
    o += 8 + n;
  }
  return { errno: v.getInt32(8, true), result: v.getBigInt64(16, true), out, fdKind: v.getUint32(28, true), mmapSize: v.getUint32(32, true), message, runPatches };
}

/**
 * Splits a connection's byte stream into requests. A bad magic or an impossible length is a
 * {@link ProtocolError}: the stream cannot be resynchronised, so the bridge answers with an error reply and
 * closes that connection (other connections are not affected).
 */
export class RequestReader {
  #chunks: Buffer[] = [];
  #size = 0;

  /** Add bytes received. */
  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
  }

  /** Bytes received but not yet part of a whole request. */
  get pending(): number {
    return this.#size;
  }

  /** The next whole request, or `undefined` until more bytes arrive. @throws {@link ProtocolError} */
  next(): Request | undefined {
    if (this.#size < 8) return undefined;
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    const buf = this.#chunks[0] as Buffer;
    const magic = buf.readUInt32LE(0);
    if (magic !== VAC_MAGIC) throw new ProtocolError(`bad magic 0x${magic.toString(16)}`);
    const len = buf.readUInt32LE(4);
    if (len < REQUEST_HEADER || len > MAX_REQUEST) throw new ProtocolError(`bad request length ${len}`);
    if (this.#size < len) return undefined;
    const msg = buf.subarray(0, len);
    const rest = buf.subarray(len);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#size = rest.length;
    return {
      op: msg.readUInt32LE(8),
      fd: msg.readInt32LE(12),
      flags: msg.readUInt32LE(16),
      a: msg.readBigUInt64LE(24),
      b: msg.readBigUInt64LE(32),
      c: msg.readBigUInt64LE(40),
      payload: msg.subarray(REQUEST_HEADER),
    };
  }
}
