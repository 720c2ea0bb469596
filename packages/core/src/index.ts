/**
 * `@vac/core`: the simulated host (CPUs, module loader, /dev, processes, scheduler, hotplug, power, single-owner
 * kernel hooks) and VAC, the base module that owns every virtualization resource the KVM modules share.
 *
 * Start with {@link createHost}; load modules with `host.modprobe(kvm({ postfix: '0' }))` (from `@vac/kvm`); drive
 * them through processes (`host.spawn()`, `proc.open('/dev/kvm0')`, `proc.ioctl(…)`); look at VAC with
 * {@link vacOf} and check the whole host with {@link checkInvariants}. Plug-ins (hardware models, KVM modules) use
 * the contracts listed last; the packages of this repository also use `@vac/core/internal`, which is not for users.
 *
 * @packageDocumentation
 */

// ---- The host -----------------------------------------------------------------------------------------------
export { createHost, Host, MAX_CPUS, type HostOptions, type HostSnapshot, type SystemState } from './host/host.js';
export { CpuTopology, MAX_THREADS_PER_CORE, cpuList } from './host/topology.js';
export { Cpu, cpuidKey, type CpuidRegs, type MsrSlot, type MsrWriteHook } from './cpu.js';
export { checkInvariants } from './vac/invariants.js';

// ---- Errors -------------------------------------------------------------------------------------------------
export {
  ERRNO,
  KernelError,
  USAGE_CODES,
  UsageError,
  errnoOf,
  isKernelError,
  isUsageError,
  type ErrnoCode,
  type UsageCode,
} from './errors.js';

// ---- Processes, files and /dev ------------------------------------------------------------------------------
export {
  ALL_CAPABILITIES,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  PAGE_SIZE,
  Process,
  type Capability,
  type Mapping,
  type SpawnOptions,
} from './host/process.js';
export { OpenFile, type FileOperations } from './host/file.js';
export {
  ARCH_GET_XCOMP_GUEST_PERM,
  ARCH_GET_XCOMP_PERM,
  ARCH_GET_XCOMP_SUPP,
  ARCH_REQ_XCOMP_GUEST_PERM,
  ARCH_REQ_XCOMP_PERM,
  FPU_GUEST_PERM_LOCKED,
  XFEATURE_MASK_USER_DYNAMIC,
  XFEATURE_MASK_XTILE,
  XFEATURE_XTILE_DATA,
} from './host/xstate-perm.js';
export { EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE, EventFd, eventFdOf, eventfd, type EventFdWake } from './host/eventfd.js';
export { MFD_ALLOW_SEALING, MFD_CLOEXEC, MFD_EXEC, MFD_HUGETLB, MFD_NAME_MAX_LEN, MFD_NOEXEC_SEAL, MemfdObject, memfdCreate, memfdOf } from './host/memfd.js';
export {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  MSG_CMSG_CLOEXEC,
  MSG_CTRUNC,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  SCM_MAX_FD,
  SCM_RIGHTS,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOCK_SEQPACKET,
  SOCK_STREAM,
  SOL_SOCKET,
  UnixSocket,
  recvmsg,
  sendmsg,
  socketOf,
  socketpair,
  type ReceivedMessage,
  type SendMessage,
} from './host/socket.js';
export { CLONE_NEWNS, MS_BIND, MS_REC, MountNamespace, S_IFCHR, mknod, mount, umount, unshare } from './host/mount-ns.js';
export { DeviceCgroup, type DeviceAccess, type DeviceType } from './host/device-cgroup.js';
export { Devfs, KVM_MINOR, MISC_DYNAMIC_MINOR, MISC_MAJOR, type CharDevice, type DevInode, type DevStat, type MiscDevice, type MiscRegistration } from './host/devfs.js';

// ---- Modules and their parameters ---------------------------------------------------------------------------
export {
  LoadedModule,
  ModuleLoader,
  type AnyModuleImage,
  type LoadOptions,
  type LsmodEntry,
  type ModuleContext,
  type ModuleImage,
  type ModuleState,
} from './host/modules.js';
export {
  boolParam,
  charpParam,
  enumParam,
  intParam,
  uintParam,
  type ParamInput,
  type ParamInputs,
  type ParamSpec,
  type ParamSpecs,
  type ParamValues,
} from './host/params.js';

// ---- Threads, hotplug, power, kernel hooks, faults -----------------------------------------------------------
export { SimClock, type ClockTimer } from './host/clock.js';
export { Scheduler, Thread, type PreemptNotifier, type Syscall, type ThreadBody, type ThreadOptions, type ThreadState } from './host/sched.js';
export { CPUHP_AP_ONLINE_DYN, CPUHP_FIXED_STATES, Cpuhp, type CpuhpCallbacks, type CpuhpFixedState, type CpuhpSetupOptions } from './host/cpuhp.js';
export { PowerHooks, type Freezer, type RebootNotifier, type SyscoreOps } from './host/power.js';
export {
  KernelHooks,
  PERF_GUEST_ACTIVE,
  PERF_GUEST_USER,
  type EmergencyVirtCallback,
  type NmiHandler,
  type PerfGuestCallbacks,
  type PmiResult,
  type PostedIntrWakeupHandler,
} from './host/hooks.js';
export { FaultInjector, defineFaultSite, faultSites, type FaultSite, type FaultSites, type FiredFault } from './host/faults.js';

// ---- Events -------------------------------------------------------------------------------------------------
export {
  EventBus,
  makeUndo,
  type AllEvents,
  type EventMeaning,
  type EventName,
  type EventOf,
  type EventPayload,
  type EventStamp,
  type ExtensionEvents,
  type HostEvents,
  type ListenerErrorHandler,
  type TimelineRole,
  type Unsubscribe,
  type WarningRecord,
} from './events.js';

// ---- VAC ----------------------------------------------------------------------------------------------------
export { VAC_ABI_VERSION, VAC_MODULE, Vac, vacImage, vacOf, vacParams, type VacCpuState } from './vac/vac.js';
export { VacHandle, vcpuLabel, type VacPort, type VcpuTag } from './vac/handle.js';
export {
  ScopedView,
  VacResourceKey,
  type AnyVacResource,
  type ScopedVacResource,
  type VacResource,
  type VacResourceContext,
} from './vac/resource.js';
export { KVM_MAX_NR_USER_RETURN_MSRS, type UretCpuState, type UretGuestValue, type UretSlot, type UretValue } from './vac/uret.js';
export type { VacInstanceOps } from './vac/irq.js';

// ---- Traces and pictures ------------------------------------------------------------------------------------
export { recordEvents, type RecordOptions, type RecordedEvent, type TraceEvent, type TraceRecorder, type TraceSource } from './trace/recorder.js';
export {
  MODULE_PALETTE,
  VAC_COLOR,
  buildTimeline,
  moduleColors,
  type ClockPoint,
  type Mark,
  type MarkKind,
  type ModuleSpan,
  type OfflineSpan,
  type RunSlice,
  type Span,
  type Timeline,
  type TimelineOptions,
  type TraceColor,
  type UsagePoint,
  type VmSpan,
} from './trace/timeline.js';
export {
  CHROME_PID_CPUS,
  CHROME_PID_MODULES,
  toChromeTrace,
  type ChromeTrace,
  type ChromeTraceArg,
  type ChromeTraceEvent,
  type ChromeTraceOptions,
} from './trace/chrome.js';
export { renderTimelineSvg, type TimelineAnnotation, type TimelineSvgOptions } from './trace/svg.js';
export { timeScale, type ClockSource, type TimeScale, type TimelineAxis } from './trace/clock.js';

// ---- Plug-in contracts: hardware models and KVM's vendor code -----------------------------------------------
export type { FaultMode, HardwareEnv, HardwareModel, HostHardware, Violation, VirtOps } from './hardware.js';
export type { CpuCapsEditor, CpuidWord, KvmVendorEnv, KvmVendorOps, MemEncryptCommand, NestedStateHeader, NestedStateVcpu, SmmVcpu, UniqueId, VendorArch, VendorModule, VendorMsrSpec, VendorNestedState, VendorSmm, VendorVcpu, VendorVm } from './kvm-vendor.js';
export { positiveCount } from './settings.js';
