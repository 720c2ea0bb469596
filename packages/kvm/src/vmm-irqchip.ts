/**
 * Saving and restoring a VM's in-kernel interrupt controllers, as a VMM does to move the VM (QEMU's `kvm_pic_get`
 * / `kvm_pic_put`, `kvm_ioapic_get` / `kvm_ioapic_put`, `kvm_pit_get` / `kvm_pit_put`): the PICs' and the IOAPIC's
 * state kept as the `struct kvm_irqchip` bytes KVM_GET_IRQCHIP wrote, the PIT's as the `struct kvm_pit_state2`
 * bytes of KVM_GET_PIT2, and handed back to KVM_SET_IRQCHIP and KVM_SET_PIT2 as they are — no object per chip, as
 * `vmm-vcpu.ts` keeps a vCPU's state. {@link parseSavedIrqchip} gives the decoded form to callers that want to read
 * it, {@link savedIrqchipOf} turns a decoded form (perhaps edited) back into the structures.
 *
 * User-space code like the rest of the VMM helpers (`vmm.ts`): it never reaches into the module.
 *
 * @module
 */
import { UsageError, isKernelError, type Process } from '@vac/core';
import {
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  KVM_ENABLE_CAP,
  KVM_GET_IRQCHIP,
  KVM_GET_PIT2,
  KVM_IRQCHIP_IOAPIC,
  KVM_IRQCHIP_PIC_MASTER,
  KVM_IRQCHIP_PIC_SLAVE,
  KVM_REINJECT_CONTROL,
  KVM_SET_GSI_ROUTING,
  KVM_SET_IRQCHIP,
  KVM_SET_PIT2,
} from './abi/constants.js';
import { KVM_IRQCHIP_CODEC, KVM_PIT_STATE2_CODEC, makeKvmIrqRouting, type kvm_ioapic_state, type kvm_irq_routing_entry, type kvm_pic_state, type kvm_pit_state2 } from './abi/structs-irq.js';
import { makeKvmEnableCap } from './abi/structs.js';
import { decodeKvmIrqchip, encodeKvmIrqchip } from './irqchip/state/irqchip-state.js';

/**
 * What a VMM made of the in-kernel interrupt controllers. KVM has no call that reports the split irqchip's reserved
 * pins, KVM_CREATE_PIT2's flags, the PIT's reinjection mode or the GSI routing table: a VMM keeps what it set (QEMU
 * keeps its routing table in user space and commits it again) and passes it here.
 */
export interface IrqchipConfig {
  /** KVM_CREATE_IRQCHIP (`'kernel'`: PIC, IOAPIC and LAPICs) or KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) (`'split'`). */
  readonly mode: 'kernel' | 'split';
  /** The IOAPIC pins KVM_CAP_SPLIT_IRQCHIP reserved (`args[0]`). Default 24. */
  readonly splitPins?: number;
  /** KVM_CREATE_PIT2's `flags` (e.g. KVM_PIT_SPEAKER_DUMMY). Default 0. */
  readonly pitFlags?: number;
  /** KVM_REINJECT_CONTROL's `pit_reinject` the VMM set. Default true (KVM's default). */
  readonly pitReinject?: boolean;
  /** The table the VMM last gave KVM_SET_GSI_ROUTING; `undefined`: KVM's default routing (none was set). */
  readonly routing?: readonly kvm_irq_routing_entry[];
}

/**
 * A VM's in-kernel interrupt controllers, saved: the VMM's configuration and the devices' state, each as the C bytes
 * its GET ioctl wrote (little-endian, at the offsets of `include/uapi/linux/kvm.h` and
 * `arch/x86/include/uapi/asm/kvm.h`). Plain data; {@link parseSavedIrqchip} decodes it.
 */
export interface SavedIrqchip {
  /** What the VMM made (with the saved mode). */
  readonly config: IrqchipConfig;
  /** KVM_GET_IRQCHIP of the master and the slave PIC: two `struct kvm_irqchip` (chip_id 0 and 1), with a full irqchip. */
  readonly pic: readonly [Uint8Array, Uint8Array] | undefined;
  /** KVM_GET_IRQCHIP of the IOAPIC: `struct kvm_irqchip` (chip_id 2), with a full irqchip. */
  readonly ioapic: Uint8Array | undefined;
  /** KVM_GET_PIT2: `struct kvm_pit_state2`, where the VM has a PIT. */
  readonly pit: Uint8Array | undefined;
}

/** {@link SavedIrqchip} decoded: each chip's state as its object form. */
export interface ParsedSavedIrqchip {
  /** What the VMM made. */
  readonly config: IrqchipConfig;
  /** The master and the slave PIC. */
  readonly pic: readonly [kvm_pic_state, kvm_pic_state] | undefined;
  /** The IOAPIC. */
  readonly ioapic: kvm_ioapic_state | undefined;
  /** The PIT. */
  readonly pit: kvm_pit_state2 | undefined;
}

const CHIP = KVM_IRQCHIP_CODEC.size;
const PIT = KVM_PIT_STATE2_CODEC.size;
const CHIP_ID = KVM_IRQCHIP_CODEC.offsetOf('chip_id');
/** Where a save reads the four structures (master, slave, IOAPIC, PIT) before copying them out at once. */
const area = new ArrayBuffer(3 * CHIP + PIT);
const areaView = new DataView(area);

/** Room for `n` zero bytes at `at` of {@link area}. */
function room(at: number, n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(area, at, n);
  b.fill(0);
  return b;
}

/** KVM_GET_IRQCHIP of chip `id` into {@link area} at `at`; false when the VM has no full irqchip (ENXIO). */
function getChip(proc: Process, vm: number, id: number, at: number): boolean {
  const b = room(at, CHIP);
  areaView.setUint32(at + CHIP_ID, id, true);
  try {
    proc.ioctl(vm, KVM_GET_IRQCHIP, b);
  } catch (e) {
    if (isKernelError(e, 'ENXIO')) return false;
    throw e;
  }
  if (areaView.getUint32(at + CHIP_ID, true) !== id) throw new UsageError('ERR_INVALID_STATE', 'saveVm: KVM_GET_IRQCHIP answered another chip');
  return true;
}

/**
 * The irqchip part of `saveVm`: the PICs and the IOAPIC (KVM_GET_IRQCHIP: ENXIO without a full irqchip), the PIT
 * (KVM_GET_PIT2: ENXIO without one), with the VMM's configuration `config`; `undefined` for a VM without an irqchip
 * (`lapics`: whether its vCPUs have in-kernel LAPICs, which a split irqchip gives them).
 */
export function saveIrqchip(proc: Process, vm: number, config: IrqchipConfig | undefined, lapics: boolean): SavedIrqchip | undefined {
  const full = getChip(proc, vm, KVM_IRQCHIP_PIC_MASTER, 0);
  const mode = full ? 'kernel' : lapics ? 'split' : config?.mode;
  if (mode === undefined) return undefined;
  if (config !== undefined && config.mode !== mode) {
    throw new UsageError('ERR_INVALID_STATE', `saveVm: the VM's irqchip is '${mode}', the VmHandle says '${config.mode}'`);
  }
  if (full && !(getChip(proc, vm, KVM_IRQCHIP_PIC_SLAVE, CHIP) && getChip(proc, vm, KVM_IRQCHIP_IOAPIC, 2 * CHIP))) {
    throw new UsageError('ERR_INVALID_STATE', 'saveVm: KVM_GET_IRQCHIP answered for one chip and not another');
  }
  let pit = true;
  try {
    proc.ioctl(vm, KVM_GET_PIT2, room(3 * CHIP, PIT));
  } catch (e) {
    if (!isKernelError(e, 'ENXIO')) throw e;
    pit = false;
  }
  // One copy of what was read; each structure a view of it.
  const from = full ? 0 : 3 * CHIP;
  const all = new Uint8Array(area, from, 3 * CHIP + (pit ? PIT : 0) - from).slice();
  return {
    config: { ...config, mode },
    pic: full ? [all.subarray(0, CHIP), all.subarray(CHIP, 2 * CHIP)] : undefined,
    ioapic: full ? all.subarray(2 * CHIP, 3 * CHIP) : undefined,
    pit: pit ? all.subarray(3 * CHIP - from, 3 * CHIP - from + PIT) : undefined,
  };
}

/**
 * The irqchip of a restored VM before its vCPUs (QEMU's `kvm_irqchip_create` and `kvm_pit_realizefn` in `kvm_init`
 * and machine set-up): KVM_CREATE_IRQCHIP or KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP), KVM_CREATE_PIT2 and
 * KVM_REINJECT_CONTROL, and the VMM's routing table (KVM_SET_GSI_ROUTING).
 */
export function createIrqchip(proc: Process, vm: number, saved: SavedIrqchip): void {
  const c = saved.config;
  if (c.mode === 'kernel') proc.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  else proc.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap: KVM_CAP_SPLIT_IRQCHIP, args: [BigInt(c.splitPins ?? 24), 0n, 0n, 0n] }));
  if (saved.pit !== undefined) {
    proc.ioctl(vm, KVM_CREATE_PIT2, { flags: c.pitFlags ?? 0 });
    if (c.pitReinject === false) proc.ioctl(vm, KVM_REINJECT_CONTROL, { pit_reinject: 0 });
  }
  if (c.routing !== undefined) proc.ioctl(vm, KVM_SET_GSI_ROUTING, makeKvmIrqRouting(c.routing));
}

/**
 * The devices' state once the vCPUs exist (QEMU's `kvm_pic_put`, `kvm_ioapic_put`, `kvm_pit_put` in the device
 * post-load order): KVM_SET_IRQCHIP of the master PIC, the slave PIC and the IOAPIC, then KVM_SET_PIT2 (which
 * reloads each channel's count at the current time, `kvm_pit_load_count`) — each the saved bytes as they are.
 */
export function restoreIrqchipState(proc: Process, vm: number, saved: SavedIrqchip): void {
  if (saved.pic !== undefined) {
    proc.ioctl(vm, KVM_SET_IRQCHIP, saved.pic[0]);
    proc.ioctl(vm, KVM_SET_IRQCHIP, saved.pic[1]);
  }
  if (saved.ioapic !== undefined) proc.ioctl(vm, KVM_SET_IRQCHIP, saved.ioapic);
  if (saved.pit !== undefined) proc.ioctl(vm, KVM_SET_PIT2, saved.pit);
}

const viewOf = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** The state of the chip in `bytes` (`struct kvm_irqchip`), checked to be chip `id`. */
function chipState(bytes: Uint8Array, id: number): kvm_pic_state | kvm_ioapic_state {
  if (bytes.byteLength !== CHIP) throw new UsageError('ERR_INVALID_ARG', `parseSavedIrqchip: a struct kvm_irqchip is ${CHIP} bytes, not ${bytes.byteLength}`);
  const c = decodeKvmIrqchip(viewOf(bytes));
  if (c.chip_id !== id) throw new UsageError('ERR_INVALID_ARG', `parseSavedIrqchip: chip_id ${c.chip_id} where ${id} was saved`);
  if ('pic' in c.chip) return c.chip.pic;
  if ('ioapic' in c.chip) return c.chip.ioapic;
  throw new UsageError('ERR_INVALID_ARG', `parseSavedIrqchip: chip_id ${c.chip_id} is no chip`);
}

/**
 * `saved` decoded: each chip's state as the object form of KVM_GET_IRQCHIP and KVM_GET_PIT2 gives it.
 *
 * @throws UsageError `ERR_INVALID_ARG` when a structure has the wrong size or chip id
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { KVM_CREATE_IRQCHIP, createRealModeVm, kvm, parseSavedIrqchip, saveVm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const vmm = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(vmm, '/dev/kvm0', { code: [], vcpus: 0 });
 * vmm.ioctl(vm.vm, KVM_CREATE_IRQCHIP, 0);
 * const chip = saveVm(vmm, { ...vm, irqchip: { mode: 'kernel' } }).irqchip!;
 * console.log(chip.ioapic?.length, parseSavedIrqchip(chip).ioapic?.redirtbl[0]); // 520 65536n: C bytes; a pin masked at reset
 * ```
 */
export function parseSavedIrqchip(saved: SavedIrqchip): ParsedSavedIrqchip {
  const pic = saved.pic === undefined ? undefined : ([chipState(saved.pic[0], KVM_IRQCHIP_PIC_MASTER), chipState(saved.pic[1], KVM_IRQCHIP_PIC_SLAVE)] as [kvm_pic_state, kvm_pic_state]);
  const ioapic = saved.ioapic === undefined ? undefined : (chipState(saved.ioapic, KVM_IRQCHIP_IOAPIC) as kvm_ioapic_state);
  if (saved.pit !== undefined && saved.pit.byteLength !== PIT) throw new UsageError('ERR_INVALID_ARG', `parseSavedIrqchip: a struct kvm_pit_state2 is ${PIT} bytes, not ${saved.pit.byteLength}`);
  const pit = saved.pit === undefined ? undefined : KVM_PIT_STATE2_CODEC.decode(viewOf(saved.pit), 0);
  return { config: saved.config, pic, ioapic, pit };
}

/**
 * The C structures of a decoded (perhaps edited) irqchip state: the inverse of {@link parseSavedIrqchip}.
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { KVM_CREATE_IRQCHIP, createRealModeVm, kvm, parseSavedIrqchip, saveVm, savedIrqchipOf } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * const vmm = host.spawn({ uid: 1000, groups: ['kvm'] });
 * const vm = createRealModeVm(vmm, '/dev/kvm0', { code: [], vcpus: 0 });
 * vmm.ioctl(vm.vm, KVM_CREATE_IRQCHIP, 0);
 * const parsed = parseSavedIrqchip(saveVm(vmm, { ...vm, irqchip: { mode: 'kernel' } }).irqchip!);
 * const redirtbl = parsed.ioapic!.redirtbl.map((entry, pin) => (pin === 4 ? entry & ~0x10000n : entry)); // unmask pin 4
 * const edited = savedIrqchipOf({ ...parsed, ioapic: { ...parsed.ioapic!, redirtbl } });
 * console.log(edited.ioapic?.length, parseSavedIrqchip(edited).ioapic?.redirtbl[4]); // 520 0n: C bytes, ready for KVM_SET_IRQCHIP
 * ```
 */
export function savedIrqchipOf(parsed: ParsedSavedIrqchip): SavedIrqchip {
  const chip = (c: Parameters<typeof encodeKvmIrqchip>[0]): Uint8Array => {
    const b = new Uint8Array(CHIP);
    encodeKvmIrqchip(c, viewOf(b));
    return b;
  };
  const pic = parsed.pic === undefined ? undefined : ([chip({ chip_id: KVM_IRQCHIP_PIC_MASTER, chip: { pic: parsed.pic[0] } }), chip({ chip_id: KVM_IRQCHIP_PIC_SLAVE, chip: { pic: parsed.pic[1] } })] as const);
  const ioapic = parsed.ioapic === undefined ? undefined : chip({ chip_id: KVM_IRQCHIP_IOAPIC, chip: { ioapic: parsed.ioapic } });
  const pit = parsed.pit === undefined ? undefined : KVM_PIT_STATE2_CODEC.toBytes(parsed.pit);
  return { config: parsed.config, pic, ioapic, pit };
}
