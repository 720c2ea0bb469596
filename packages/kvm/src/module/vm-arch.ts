/**
 * The x86 part of a VM (`struct kvm_arch`, arch/x86/include/asm/kvm_host.h) that the VM ioctls set: enabled
 * capabilities, the MSR filter, the kvmclock offset, the default TSC frequency, the identity-map and MMU-page
 * settings, and the I/O the kernel handles itself (ioeventfds, coalesced-MMIO zones). Made at first use.
 *
 * @module
 */
import type { EventFd } from '@vac/core';
import { KVM_MAX_VCPU_IDS } from '../abi/constants.js';
import { hostNs } from './host-clock.js';
import type { Vm } from './vm.js';
import { x86Caps } from './x86-caps.js';
import { bytesDigest } from './bytes-digest.js';
import type { DirtyRing } from './dirty-ring.js';

/** One range of an MSR filter (`struct msr_bitmap_range`): the kernel's copy of the user's bitmap. */
/** `struct kvm_x86_pmu_event_filter`: a VM's PMU event filter as `prepare_filter_lists` left it. */
export interface PmuEventFilter {
  /** `KVM_PMU_EVENT_ALLOW` or `KVM_PMU_EVENT_DENY`. */
  readonly action: number;
  /** The fixed counters the action applies to. */
  readonly fixedCounterBitmap: number;
  /** `KVM_PMU_EVENT_FLAG_MASKED_EVENTS` or 0. */
  readonly flags: number;
  /** The masked entries that include, sorted by event select. */
  readonly includes: readonly bigint[];
  /** The masked entries that exclude (masked filters only), sorted by event select. */
  readonly excludes: readonly bigint[];
}

export interface MsrFilterRange {
  /** `KVM_MSR_FILTER_READ` / `_WRITE`. */
  readonly flags: number;
  /** First MSR. */
  readonly base: number;
  /** MSRs covered. */
  readonly nmsrs: number;
  /** One bit per MSR, 1 = allowed. */
  readonly bitmap: Uint8Array;
}

/** `struct kvm_x86_msr_filter`. */
export interface MsrFilter {
  /** What no range covers may do. */
  readonly defaultAllow: boolean;
  /** The ranges, in the order given. */
  readonly ranges: readonly MsrFilterRange[];
}

/** An ioeventfd (`struct _ioeventfd`, virt/kvm/eventfd.c). */
export interface IoEventFd {
  /** `KVM_PIO_BUS`, `KVM_MMIO_BUS` or the (s390) virtio-ccw bus, which never fires on x86. */
  readonly bus: 'pio' | 'mmio' | 'ccw';
  /** Address. */
  readonly addr: number;
  /** Width (0 = any). */
  readonly length: number;
  /** Value to match, or `undefined` for any. */
  readonly datamatch: bigint | undefined;
  /** The eventfd's counter (`eventfd_ctx_fdget` keeps it, not the fd). */
  readonly eventfd: EventFd;
}

/** A coalesced-MMIO or -PIO zone (`struct kvm_coalesced_mmio_dev`). */
export interface CoalescedZone {
  /** Start. */
  readonly addr: number;
  /** Length. */
  readonly size: number;
  /** Port I/O (else MMIO). */
  readonly pio: boolean;
}

/** The x86 state of one VM. */
export class VmArch {
  /** `exception_payload_enabled`. */
  exceptionPayload = false;
  /** `triple_fault_event`. */
  tripleFaultEvent = false;
  /** `max_vcpu_ids` (0 = not set: KVM_MAX_VCPU_IDS). */
  maxVcpuIds = 0;
  /** `bsp_vcpu_id` (KVM_SET_BOOT_CPU_ID). */
  bspVcpuId = 0;
  /** `disabled_quirks`. */
  disabledQuirks = 0;
  /** The KVM_CAP_X86_DISABLE_EXITS bits in force. */
  disabledExits = 0;
  /** `guest_can_read_msr_platform_info`. */
  guestCanReadPlatformInfo = true;
  /** `exit_on_emulation_error`. */
  exitOnEmulationError = false;
  /** `hypercall_exit_enabled`. */
  hypercallExit = 0;
  /** `pmu_event_filter`: the guest PMU's event filter (KVM_SET_PMU_EVENT_FILTER), none at first. */
  pmuEventFilter: PmuEventFilter | undefined = undefined;
  /** `disable_nx_huge_pages`. */
  disableNxHugePages = false;
  /** `manual_dirty_log_protect`. */
  manualDirtyLogProtect = 0;
  /** The MSR filter, or `undefined` (allow everything). */
  msrFilter: MsrFilter | undefined;
  /** `user_space_msr_mask`: the `KVM_MSR_EXIT_REASON_*` of the guest MSR accesses that exit to user space. */
  userSpaceMsrMask = 0;
  /** KVM_SET_IDENTITY_MAP_ADDR (VMX `ept_identity_map_addr`; 0xfffbc000 until set). */
  identityMapAddr = 0xfffbc000;
  /** `n_requested_mmu_pages` (KVM_SET_NR_MMU_PAGES; 0 = automatic). */
  requestedMmuPages = 0;
  /** `kvmclock_offset`: kvmclock = host ns + this. */
  kvmclockOffset: bigint;
  /** `default_tsc_khz` (VM-wide KVM_SET_TSC_KHZ). */
  defaultTscKhz: number;
  /** The ioeventfds. */
  readonly ioeventfds: IoEventFd[] = [];
  /** The coalesced zones, in registration order. */
  readonly coalesced: CoalescedZone[] = [];
  /** The coalesced ring's `first` as the kernel last saw it. */
  ringFirst = 0;
  /** The coalesced ring's `last`. */
  ringLast = 0;
  /** The dirty bitmaps of the slots with KVM_MEM_LOG_DIRTY_PAGES, by slot (address space << 16 | id), one bit per page. */
  readonly dirty = new Map<number, Uint8Array>();
  /**
   * `dirty_ring_size`: the bytes of each vCPU's dirty ring (KVM_CAP_DIRTY_LOG_RING), 0 without one. With a ring,
   * {@link VmArch.dirty} holds no dirty log but the pages written since they were last write-protected (dirty-ring.ts).
   */
  dirtyRingSize = 0;
  /** The ring of the vCPU whose guest runs (`kvm_get_running_vcpu`): where guest writes push (dirty-ring.ts). */
  dirtyRingWriter: DirtyRing | undefined = undefined;
  /** `last_tsc_nsec`: host ns of the last TSC synchronization (`kvm_synchronize_tsc`). */
  lastTscNsec = 0n;
  /** `last_tsc_write`: the TSC value last written. */
  lastTscWrite = 0n;
  /** `last_tsc_khz`: the vCPU frequency of the last synchronization (0: none yet). */
  lastTscKhz = 0;
  /** `last_tsc_offset`: the offset the last synchronization gave its vCPU. */
  lastTscOffset = 0n;
  /** `cur_tsc_offset`: the offset vCPUs that synchronize now take. */
  curTscOffset = 0n;
  /** `user_set_tsc`: user space has written a TSC. */
  userSetTsc = false;

  /** @param vm - the VM */
  constructor(vm: Vm) {
    // kvm_arch_init_vm: kvmclock starts at 0; the default TSC rate is the host's.
    this.kvmclockOffset = -hostNs(vm.instance.host);
    this.defaultTscKhz = x86Caps(vm.instance).tscKhz;
  }

  /** The highest vCPU id + 1 KVM_CREATE_VCPU accepts. */
  get vcpuIdLimit(): number {
    return this.maxVcpuIds === 0 ? KVM_MAX_VCPU_IDS : this.maxVcpuIds;
  }

  /** A plain copy for `host.snapshot()`. */
  snapshot(): unknown {
    return {
      exceptionPayload: this.exceptionPayload,
      tripleFaultEvent: this.tripleFaultEvent,
      maxVcpuIds: this.maxVcpuIds,
      bspVcpuId: this.bspVcpuId,
      disabledQuirks: this.disabledQuirks,
      disabledExits: this.disabledExits,
      guestCanReadPlatformInfo: this.guestCanReadPlatformInfo,
      exitOnEmulationError: this.exitOnEmulationError,
      hypercallExit: this.hypercallExit,
      disableNxHugePages: this.disableNxHugePages,
      pmuEventFilter: this.pmuEventFilter === undefined ? undefined : { ...this.pmuEventFilter, includes: [...this.pmuEventFilter.includes], excludes: [...this.pmuEventFilter.excludes] },
      manualDirtyLogProtect: this.manualDirtyLogProtect,
      userSpaceMsrMask: this.userSpaceMsrMask,
      msrFilter: this.msrFilter === undefined ? undefined : { defaultAllow: this.msrFilter.defaultAllow, ranges: this.msrFilter.ranges.map((r) => ({ ...r, bitmap: bytesDigest(r.bitmap) })) },
      identityMapAddr: this.identityMapAddr,
      requestedMmuPages: this.requestedMmuPages,
      kvmclockOffset: this.kvmclockOffset,
      defaultTscKhz: this.defaultTscKhz,
      ioeventfds: this.ioeventfds.map((e) => ({ bus: e.bus, addr: e.addr, length: e.length, datamatch: e.datamatch, count: e.eventfd.count })),
      coalesced: this.coalesced.map((z) => ({ ...z })),
      ring: [this.ringFirst, this.ringLast],
      tscSync: [this.lastTscNsec, this.lastTscWrite, this.lastTscKhz, this.lastTscOffset, this.curTscOffset, this.userSetTsc],
      dirty: [...this.dirty].map(([id, b]) => [id, bytesDigest(b)]),
      dirtyRingSize: this.dirtyRingSize,
    };
  }
}

const ARCH = new WeakMap<Vm, VmArch>();

/** The {@link VmArch} of a VM (made at first use). */
export function vmArch(vm: Vm): VmArch {
  let a = ARCH.get(vm);
  if (a === undefined) {
    a = new VmArch(vm);
    ARCH.set(vm, a);
  }
  return a;
}

/** Whether the VM has its x86 state yet (so that snapshots of untouched VMs stay as they were). */
export function hasVmArch(vm: Vm): boolean {
  return ARCH.has(vm);
}
