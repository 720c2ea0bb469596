/**
 * A `read(2)` of a non-blocking fd that answers "nothing there" without throwing — what the bridge's main thread
 * needs to poll the request FIFO in a tight loop (`request-fifo.ts`, the spin before a blocking read).
 *
 * Node's `fs.readSync` reports `EAGAIN` by throwing an `Error` it builds with a message and a stack trace:
 * 7.7 µs per empty poll here (19 µs with the default stack trace limit), longer than a whole round trip's share of
 * the bridge's work. Node's WASI (uvwasi) does the same `read(2)` and returns the errno as a number: a tiny
 * WebAssembly module (built below, byte by byte: no toolchain) imports WASI's `fd_read` and exports it with a page
 * of memory, and the fd is given to the WASI instance as its stdin. An empty poll then costs 0.45 µs (same
 * machine, same minute). uvwasi never closes the fds it is given (its `uvwasi_fd_table_free` only frees its
 * table), so the caller keeps owning the fd.
 *
 * Node 20 prints an `ExperimentalWarning` when `node:wasi` is first loaded; the bridge's users would see it on
 * every start, so that one warning is dropped while the module loads (nothing else is filtered).
 *
 * @module
 */
import { createRequire } from 'node:module';
import type { WASI as WasiClass } from 'node:wasi';

/** WASI's `errno` for "try again" (`__WASI_ERRNO_AGAIN`). */
const WASI_EAGAIN = 6;
/** Where the reader keeps its iovec (8 bytes) and the count of bytes read (4) in the module's memory. */
const IOVEC = 0;
const NREAD = 8;
/** Where the bytes read land in the module's memory, and how many one read may take. */
const DATA = 64;
/** The most one {@link NonBlockingReader.read} returns: what fits in the module's one page of memory after the 64 bytes of its iovec and count. */
export const NONBLOCKING_READ_MAX = 65536 - DATA;

/** A WebAssembly section: its id, its length (one LEB128 byte: every section here is shorter than 128), its bytes. */
function section(id: number, content: number[]): number[] {
  return [id, content.length, ...content];
}

/** A WebAssembly name: its length and its UTF-8 bytes. */
function name(s: string): number[] {
  return [s.length, ...Buffer.from(s, 'utf8')];
}

const I32 = 0x7f;
/** The module: `(import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))`, one page
 * of memory, both exported. */
const MODULE_BYTES = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
  ...section(1, [1, 0x60, 4, I32, I32, I32, I32, 1, I32]),
  ...section(2, [1, ...name('wasi_snapshot_preview1'), ...name('fd_read'), 0x00, 0]),
  ...section(5, [1, 0x00, 1]),
  ...section(7, [2, ...name('memory'), 0x02, 0, ...name('fd_read'), 0x00, 0]),
]);

/** The part of the `WebAssembly` global used here (this package's TypeScript libraries do not declare it). */
interface WasmApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object, imports: object) => { readonly exports: object };
}
const wasm = (globalThis as unknown as { readonly WebAssembly: WasmApi }).WebAssembly;

let wasiClass: typeof WasiClass | undefined;
let compiled: object | undefined;

/** Node's `WASI` class, loaded once without its experimental-feature warning (module notes). */
function loadWasi(): typeof WasiClass {
  if (wasiClass !== undefined) return wasiClass;
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
    const text = typeof warning === 'string' ? warning : warning.message;
    if (type === 'ExperimentalWarning' && text.includes('WASI')) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    wasiClass = (createRequire(import.meta.url)('node:wasi') as { WASI: typeof WasiClass }).WASI;
  } finally {
    process.emitWarning = emit;
  }
  return wasiClass;
}

interface ReaderExports {
  readonly memory: { readonly buffer: ArrayBuffer };
  readonly fd_read: (fd: number, iovs: number, iovsLen: number, nread: number) => number;
}

/** Non-throwing reads of one non-blocking fd (module notes). */
export class NonBlockingReader {
  readonly #read: ReaderExports['fd_read'];
  readonly #view: DataView;
  readonly #bytes: Uint8Array;

  /**
   * A reader of `fd`, which must be open for reading with `O_NONBLOCK` (else a read blocks). The caller keeps
   * owning `fd` and closes it after its last read.
   * @throws when this Node has no WASI (the caller then does without polling)
   */
  constructor(fd: number) {
    const WASI = loadWasi();
    const wasi = new WASI({ version: 'preview1', stdin: fd, returnOnExit: true });
    compiled ??= new wasm.Module(MODULE_BYTES);
    const instance = new wasm.Instance(compiled, wasi.getImportObject());
    wasi.initialize(instance);
    const exports = instance.exports as unknown as ReaderExports;
    this.#read = exports.fd_read;
    this.#view = new DataView(exports.memory.buffer);
    this.#bytes = new Uint8Array(exports.memory.buffer);
    this.#view.setUint32(IOVEC, DATA, true);
  }

  /**
   * Read what the fd holds now, up to {@link NONBLOCKING_READ_MAX} bytes, into `into` (from its start): the number
   * of bytes read, 0 when there is nothing to read now.
   * @throws an `Error` naming the WASI errno when the read fails otherwise (a closed fd)
   */
  read(into: Uint8Array): number {
    this.#view.setUint32(IOVEC + 4, Math.min(into.length, NONBLOCKING_READ_MAX), true);
    const errno = this.#read(0, IOVEC, 1, NREAD);
    if (errno === WASI_EAGAIN) return 0;
    if (errno !== 0) throw new Error(`read of a non-blocking fd failed: WASI errno ${errno}`);
    const n = this.#view.getUint32(NREAD, true);
    into.set(this.#bytes.subarray(DATA, DATA + n), 0);
    return n;
  }
}
