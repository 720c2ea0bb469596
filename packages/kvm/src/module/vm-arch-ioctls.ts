/**
 * The x86 VM ioctls a VMM sets a VM up with (arch/x86/kvm/x86.c `kvm_arch_vm_ioctl`, `kvm_vm_ioctl_enable_cap`,
 * `kvm_vm_ioctl_set_msr_filter`, `kvm_vm_ioctl_get_clock` / `_set_clock`; virt/kvm/kvm_main.c
 * `kvm_vm_ioctl_enable_cap_generic`): the identity-map page, the MMU page budget, kvmclock, the VM-wide TSC
 * frequency, the boot vCPU, capabilities and the MSR filter.
 *
 * @module
 */
import { KernelError } from '@vac/core';
import {
  KVM_CAP_DIRTY_LOG_RING,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
  KVM_CAP_DISABLE_QUIRKS,
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_EXCEPTION_PAYLOAD,
  KVM_CAP_EXIT_HYPERCALL,
  KVM_CAP_EXIT_ON_EMULATION_FAILURE,
  KVM_CAP_HALT_POLL,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_MSR_PLATFORM_INFO,
  KVM_CAP_X86_USER_SPACE_MSR,
  KVM_CAP_X86_DISABLE_EXITS,
  KVM_CAP_VM_COPY_ENC_CONTEXT_FROM,
  KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM,
  KVM_CAP_VM_DISABLE_NX_HUGE_PAGES,
  KVM_CAP_X86_TRIPLE_FAULT_EVENT,
  KVM_ENABLE_CAP,
  KVM_GET_CLOCK,
  KVM_GET_STATS_FD,
  KVM_GET_TSC_KHZ,
  KVM_MAX_VCPU_IDS,
  KVM_SET_BOOT_CPU_ID,
  KVM_SET_CLOCK,
  KVM_SET_IDENTITY_MAP_ADDR,
  KVM_SET_NR_MMU_PAGES,
  KVM_SET_TSC_KHZ,
  KVM_X86_DISABLE_EXITS_CSTATE,
  KVM_X86_DISABLE_EXITS_HLT,
  KVM_X86_DISABLE_EXITS_MWAIT,
  KVM_X86_DISABLE_EXITS_PAUSE,
  KVM_X86_SET_MSR_FILTER,
} from '../abi/constants.js';
import {
  KVM_CLOCK_HOST_TSC,
  KVM_CLOCK_REALTIME,
  KVM_CLOCK_TSC_STABLE,
  KVM_CLOCK_VALID_FLAGS,
  KVM_DIRTY_LOG_MANUAL_CAPS,
  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
  KVM_MIN_ALLOC_MMU_PAGES,
  KVM_MSR_EXIT_REASON_VALID_MASK,
  KVM_MSR_FILTER_DEFAULT_DENY,
  KVM_MSR_FILTER_MAX_BITMAP_SIZE,
  KVM_MSR_FILTER_RANGE_VALID_MASK,
  KVM_MSR_FILTER_VALID_MASK,
} from '../abi/constants-x86.js';
import { copyFromUser, copyToUser, userAccess } from '../abi/codec.js';
import { KVM_ENABLE_CAP_CODEC } from '../abi/structs.js';
import { KVM_CLOCK_DATA_CODEC, KVM_MSR_FILTER_CODEC, U64_POINTER_CODEC } from '../abi/structs-x86.js';
import { GUEST_DEFAULT_QUIRKS } from '../guest/interpreter.js';
import { allowedDisableExits } from './caps.js';
import { buildHasErrnoChange, supportedQuirks } from '../builds/build.js';
import { enableDirtyRing } from './dirty-ring.js';
import { encContextFrom } from './enc-context.js';
import type { VmFile } from './files.js';
import { hostNs, hostRealtimeNs, hostTsc } from './host-clock.js';
import { valueArg, type IoctlDef } from './ioctl-table.js';
import { enableIrqCap } from './irq-vm-ioctls.js';
import { kvmclockNs } from './pvclock.js';
import { openStatsFd, statsFops } from './stats.js';
import { vcpuArch } from './vcpu-arch.js';
import { VcpuRequest, makeRequest } from './vcpu-requests.js';
import { userBuffer } from './user-memory.js';
import { vmArch, type MsrFilterRange } from './vm-arch.js';
import { x86Caps } from './x86-caps.js';
import { vendorArch } from './vendor-arch.js';

/** `kvm_vm_ioctl_enable_cap_generic` then `kvm_vm_ioctl_enable_cap` (x86), for the capabilities the model has. */
/** `KVM_X86_DISABLE_VALID_EXITS` of 6.12 (MWAIT | HLT | PAUSE | CSTATE; removed in 6.14 by af5366bea2cb). */
const KVM_X86_DISABLE_VALID_EXITS = KVM_X86_DISABLE_EXITS_MWAIT | KVM_X86_DISABLE_EXITS_HLT | KVM_X86_DISABLE_EXITS_PAUSE | KVM_X86_DISABLE_EXITS_CSTATE;

function enableCap(f: VmFile, arg: unknown, op: string, proc: import('@vac/core').Process): number {
  const vm = f.vm;
  const a = vmArch(vm);
  const cap = copyFromUser(KVM_ENABLE_CAP_CODEC, arg, op);
  const arg0 = cap.args[0];
  switch (cap.cap) {
    case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: {
      const allowed = (arg0 & BigInt(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) !== 0n ? KVM_DIRTY_LOG_MANUAL_CAPS : KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
      if (cap.flags !== 0 || (arg0 & ~BigInt(allowed)) !== 0n) throw new KernelError('EINVAL', op, `bad arguments for KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: 0x${arg0.toString(16)}`);
      a.manualDirtyLogProtect = Number(arg0);
      return 0;
    }
    case KVM_CAP_DIRTY_LOG_RING:
    case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
      return enableDirtyRing(vm, cap.cap, arg0, op); // flags are not looked at
    case KVM_CAP_HALT_POLL:
      if (cap.flags !== 0 || arg0 > 0xffff_ffffn) throw new KernelError('EINVAL', op, 'bad KVM_CAP_HALT_POLL argument');
      return 0; // max_halt_poll_ns: halt polling is not modelled (a vCPU blocks at once)
    default:
      break;
  }
  // kvm_vm_ioctl_enable_cap (x86)
  if (cap.flags !== 0) throw new KernelError('EINVAL', op, 'flags must be 0');
  switch (cap.cap) {
    case KVM_CAP_DISABLE_QUIRKS2:
    case KVM_CAP_DISABLE_QUIRKS:
      // DISABLE_QUIRKS2 refuses unknown quirks; the old DISABLE_QUIRKS ignores them.
      // kvm_caps.supported_quirks (the build's valid quirks, less the vendor's: builds/build.ts)
      if (cap.cap === KVM_CAP_DISABLE_QUIRKS2 && (arg0 & ~BigInt(supportedQuirks(vm.instance))) !== 0n) throw new KernelError('EINVAL', op, `unknown quirks in 0x${arg0.toString(16)}`);
      a.disabledQuirks |= Number(arg0 & BigInt(supportedQuirks(vm.instance)));
      vm.quirks = GUEST_DEFAULT_QUIRKS & ~a.disabledQuirks;
      return 0;
    case KVM_CAP_X86_DISABLE_EXITS: {
      // 6.12 checks the flags against KVM_X86_DISABLE_VALID_EXITS and applies only the allowed ones; 6.14 refuses
      // flags beyond kvm_get_allowed_disable_exits() (c829ccd4d9dc) and any call once a vCPU exists (04cd8f8628d8).
      const allowed = allowedDisableExits(vm.instance);
      const valid = buildHasErrnoChange(vm.instance, 'disable-exits-not-allowed') ? allowed : KVM_X86_DISABLE_VALID_EXITS;
      if ((arg0 & ~BigInt(valid)) !== 0n) throw new KernelError('EINVAL', op, `exits 0x${arg0.toString(16)} cannot be disabled (0x${valid.toString(16)} can)`);
      if (vm.createdVcpus > 0 && buildHasErrnoChange(vm.instance, 'disable-exits-after-vcpus')) throw new KernelError('EINVAL', op, 'vCPUs exist already');
      // vCPUs created from now on take the VM's flags (vcpu-create.ts); those that exist keep theirs.
      a.disabledExits |= Number(arg0) & allowed;
      return 0;
    }
    case KVM_CAP_X86_USER_SPACE_MSR:
      if ((arg0 & ~BigInt(KVM_MSR_EXIT_REASON_VALID_MASK)) !== 0n) throw new KernelError('EINVAL', op, `unknown MSR exit reasons in 0x${arg0.toString(16)}`);
      a.userSpaceMsrMask = Number(arg0);
      return 0;
    case KVM_CAP_MSR_PLATFORM_INFO:
      a.guestCanReadPlatformInfo = arg0 !== 0n;
      return 0;
    case KVM_CAP_EXCEPTION_PAYLOAD:
      a.exceptionPayload = arg0 !== 0n;
      return 0;
    case KVM_CAP_X86_TRIPLE_FAULT_EVENT:
      a.tripleFaultEvent = arg0 !== 0n;
      return 0;
    case KVM_CAP_EXIT_ON_EMULATION_FAILURE:
      if ((arg0 & ~1n) !== 0n) throw new KernelError('EINVAL', op, 'only bit 0');
      a.exitOnEmulationError = arg0 !== 0n;
      return 0;
    case KVM_CAP_MAX_VCPU_ID: {
      if (arg0 > BigInt(KVM_MAX_VCPU_IDS)) throw new KernelError('EINVAL', op, `${arg0} is above KVM_MAX_VCPU_IDS`);
      const n = Number(arg0);
      // Once set it cannot change, and not below the boot vCPU's id.
      if (a.bspVcpuId > n) throw new KernelError('EINVAL', op, `below the boot vCPU id ${a.bspVcpuId}`);
      if (a.maxVcpuIds === n) return 0;
      if (a.maxVcpuIds !== 0) throw new KernelError('EINVAL', op, `already ${a.maxVcpuIds}`);
      a.maxVcpuIds = n;
      return 0;
    }
    case KVM_CAP_VM_DISABLE_NX_HUGE_PAGES:
      // The iTLB multihit mitigation off for this VM: a guest could crash the host, so only for a process that may
      // reboot it (capable(), not ns_capable()), with args[0] 0 and before any vCPU.
      if (!proc.capable('CAP_SYS_BOOT')) throw new KernelError('EPERM', op, 'disabling NX huge pages needs CAP_SYS_BOOT');
      if (arg0 !== 0n) throw new KernelError('EINVAL', op, 'args[0] must be 0');
      if (vm.createdVcpus > 0) throw new KernelError('EINVAL', op, 'vCPUs exist already');
      a.disableNxHugePages = true;
      return 0;
    case KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM:
    case KVM_CAP_VM_COPY_ENC_CONTEXT_FROM:
      return encContextFrom(vm, f.files, cap.cap, arg0, proc, op);
    default: {
      const r = enableIrqCap(vm, cap.cap, arg0, op);
      if (r === undefined) throw new KernelError('EINVAL', op, `capability ${cap.cap} cannot be enabled on this VM`);
      return r;
    }
  }
}

/** `kvm_vm_ioctl_set_msr_filter`: the whole new filter is copied and checked before it replaces the old one. */
function setMsrFilter(f: VmFile, arg: unknown, proc: import('@vac/core').Process): number {
  const op = 'KVM_X86_SET_MSR_FILTER';
  const filter = copyFromUser(KVM_MSR_FILTER_CODEC, arg, op);
  if ((filter.flags & ~KVM_MSR_FILTER_VALID_MASK) !== 0) throw new KernelError('EINVAL', op, `unknown flags 0x${filter.flags.toString(16)}`);
  const empty = filter.ranges.every((r) => r.nmsrs === 0);
  const defaultAllow = (filter.flags & KVM_MSR_FILTER_DEFAULT_DENY) === 0;
  if (empty && !defaultAllow) throw new KernelError('EINVAL', op, 'a deny-by-default filter needs ranges');
  const ranges: MsrFilterRange[] = [];
  for (const r of filter.ranges) {
    // kvm_add_msr_filter
    if (r.nmsrs === 0) continue;
    if ((r.flags & ~KVM_MSR_FILTER_RANGE_VALID_MASK) !== 0 || r.flags === 0) throw new KernelError('EINVAL', op, `range flags 0x${r.flags.toString(16)}`);
    const size = Math.ceil(r.nmsrs / 64) * 8; // BITS_TO_LONGS(nmsrs) * sizeof(long)
    if (size > KVM_MSR_FILTER_MAX_BITMAP_SIZE) throw new KernelError('EINVAL', op, `a ${r.nmsrs}-MSR range needs a ${size}-byte bitmap (at most ${KVM_MSR_FILTER_MAX_BITMAP_SIZE})`);
    const bitmap = userAccess(op, () => userBuffer(proc, r.bitmap, size, op)).slice();
    ranges.push({ flags: r.flags, base: r.base, nmsrs: r.nmsrs, bitmap });
  }
  vmArch(f.vm).msrFilter = { defaultAllow, ranges };
  return 0;
}

/** The x86 VM ioctls. */
export const VM_ARCH_IOCTLS: readonly IoctlDef<VmFile>[] = [
  {
    name: 'KVM_SET_IDENTITY_MAP_ADDR',
    request: KVM_SET_IDENTITY_MAP_ADDR,
    arg: { dir: 'in', codec: U64_POINTER_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_SET_IDENTITY_MAP_ADDR';
      // created_vcpus is checked before the argument is read.
      if (vm.createdVcpus > 0) throw new KernelError('EINVAL', op, 'vCPUs exist already');
      const [value = 0n] = copyFromUser(U64_POINTER_CODEC, arg, op);
      // vmx_set_identity_map_addr / svm_set_identity_map_addr take any address.
      vmArch(vm).identityMapAddr = Number(BigInt.asUintN(53, value));
      return 0;
    },
  },
  {
    name: 'KVM_SET_NR_MMU_PAGES',
    request: KVM_SET_NR_MMU_PAGES,
    arg: { dir: 'value' },
    run({ vm }, arg) {
      const n = valueArg(arg, 'KVM_SET_NR_MMU_PAGES');
      if (n < KVM_MIN_ALLOC_MMU_PAGES) throw new KernelError('EINVAL', 'KVM_SET_NR_MMU_PAGES', `${n} pages: at least ${KVM_MIN_ALLOC_MMU_PAGES}`);
      vmArch(vm).requestedMmuPages = n;
      return 0;
    },
  },
  {
    name: 'KVM_GET_CLOCK',
    request: KVM_GET_CLOCK,
    arg: { dir: 'out', codec: KVM_CLOCK_DATA_CODEC },
    run({ vm }, arg) {
      // get_kvmclock with the master clock: the clock, the host's realtime and TSC at the same instant.
      const host = vm.instance.host;
      copyToUser(
        KVM_CLOCK_DATA_CODEC,
        { clock: kvmclockNs(vm), flags: KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC, realtime: hostRealtimeNs(host), host_tsc: hostTsc(host) },
        arg,
        'KVM_GET_CLOCK',
      );
      return 0;
    },
  },
  {
    name: 'KVM_SET_CLOCK',
    request: KVM_SET_CLOCK,
    arg: { dir: 'in', codec: KVM_CLOCK_DATA_CODEC },
    run({ vm }, arg) {
      const op = 'KVM_SET_CLOCK';
      const data = copyFromUser(KVM_CLOCK_DATA_CODEC, arg, op);
      if ((data.flags & ~KVM_CLOCK_VALID_FLAGS) !== 0) throw new KernelError('EINVAL', op, `unknown flags 0x${data.flags.toString(16)}`);
      const host = vm.instance.host;
      let clock = data.clock;
      // KVM_CLOCK_REALTIME: advance by the realtime that passed since, never stepping backwards.
      if ((data.flags & KVM_CLOCK_REALTIME) !== 0) {
        const now = hostRealtimeNs(host);
        if (now > data.realtime) clock += now - data.realtime;
      }
      vmArch(vm).kvmclockOffset = clock - hostNs(host);
      for (const v of vm.vcpus.values()) {
        if (vcpuArch(v).pvclock.active) makeRequest(v, VcpuRequest.ClockUpdate);
      }
      return 0;
    },
  },
  {
    name: 'KVM_SET_TSC_KHZ',
    request: KVM_SET_TSC_KHZ,
    arg: { dir: 'value' },
    run({ vm }, arg) {
      const op = 'KVM_SET_TSC_KHZ';
      const caps = x86Caps(vm.instance);
      let khz = valueArg(arg, op) % 2 ** 32;
      if (vendorArch(vm.instance).tscControl && khz >= caps.maxGuestTscKhz) throw new KernelError('EINVAL', op, `${khz} kHz is not below the maximum`);
      if (khz === 0) khz = caps.tscKhz;
      if (vm.createdVcpus > 0) throw new KernelError('EINVAL', op, 'vCPUs exist already');
      vmArch(vm).defaultTscKhz = khz;
      return 0;
    },
  },
  {
    name: 'KVM_GET_TSC_KHZ',
    request: KVM_GET_TSC_KHZ,
    arg: { dir: 'none' },
    run: ({ vm }) => vmArch(vm).defaultTscKhz,
  },
  {
    name: 'KVM_SET_BOOT_CPU_ID',
    request: KVM_SET_BOOT_CPU_ID,
    arg: { dir: 'value' },
    run({ vm }, arg) {
      const op = 'KVM_SET_BOOT_CPU_ID';
      const id = valueArg(arg, op);
      const a = vmArch(vm);
      if (vm.createdVcpus > 0) throw new KernelError('EBUSY', op, 'vCPUs exist already');
      if (id > KVM_MAX_VCPU_IDS || (a.maxVcpuIds !== 0 && id > a.maxVcpuIds)) throw new KernelError('EINVAL', op, `vCPU id ${id} is out of range`);
      a.bspVcpuId = id;
      return 0;
    },
  },
  {
    name: 'KVM_ENABLE_CAP',
    request: KVM_ENABLE_CAP,
    arg: { dir: 'in', codec: KVM_ENABLE_CAP_CODEC },
    run: (f, arg, proc) => enableCap(f, arg, 'KVM_ENABLE_CAP', proc),
  },
  {
    name: 'KVM_X86_SET_MSR_FILTER',
    request: KVM_X86_SET_MSR_FILTER,
    arg: { dir: 'in', codec: KVM_MSR_FILTER_CODEC },
    run: (f, arg, proc) => setMsrFilter(f, arg, proc),
  },
  {
    name: 'KVM_GET_STATS_FD',
    request: KVM_GET_STATS_FD,
    arg: { dir: 'none' },
    run: ({ vm }, _arg, proc) => openStatsFd(proc, statsFops(vm.instance.module), vm, undefined),
  },
];
