/**
 * `@vac/bridge`: unmodified VMM binaries against a simulated vac host. A preload library (C, built on first
 * use) answers the VMM's /dev/kvm* calls by forwarding them over a Unix socket to {@link BridgeServer}, which
 * hosts one simulated host and lets the model answer; the `vac` command ({@link main}) starts such a host,
 * drives it as Linux's tools would, and runs VMMs against it. docs/bridge.md has the design and its costs.
 *
 * @packageDocumentation
 */
export { BridgeServer, Session, parseStatus, errnoName, systemGroups, type BridgeServerOptions, type CallRecord, type Credentials } from './server.js';
export {
  HostControl,
  controlCall,
  formatCall,
  parseHostDescription,
  parseModuleSpec,
  parseParams,
  runControl,
  type BootModule,
  type ControlReply,
  type ControlRequest,
  type HostDescription,
} from './control.js';
export { defaultRunDir, socketPaths, startDaemon, type Daemon, type DaemonOptions } from './daemon.js';
export { PRELOAD_SOURCE, PreloadBuildError, cacheDir, compileC, findCompiler, preloadLibrary } from './preload.js';
export { CODECS, decodeArg, type DecodedArg, type IoctlCodec } from './codec.js';
export { GuestMemoryMirror, type MemoryStats, type SyncRange } from './guest-memory.js';
export { VcpuRunner, type RunHandle, type RunHooks, type TimePacing } from './vcpu-runner.js';
export * from './protocol.js';
export { FIFO_ENVELOPE, FIFO_MAGIC, FIFO_MAX_MESSAGE, SPIN_US, YIELD_MAGIC, YIELD_MS, RequestFifo, fifoPath, spinSettings, type FifoHandlers, type SpinSettings } from './request-fifo.js';
export { NONBLOCKING_READ_MAX, NonBlockingReader } from './nonblocking-read.js';
export { SPARE_CPU_CHECK_MS, SPIN_CREDIT, SPIN_PROBE_EVERY, SpareCpu, SpinCredit, spareCpuIn } from './spare-cpu.js';
export { main, type CliIo } from './cli/main.js';
export { isStaticElf, whichProgram } from './elf.js';
