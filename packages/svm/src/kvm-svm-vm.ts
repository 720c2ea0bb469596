/**
 * The VM half of kvm_amd: `KVM_MEMORY_ENCRYPT_OP` for `KVM_SEV_INIT` / `KVM_SEV_ES_INIT` and the SEV part of
 * VM destruction.
 *
 * Follows `arch/x86/kvm/svm/sev.c`: `sev_mem_enc_ioctl()`, `sev_guest_init()` / `__sev_guest_init()` and
 * `sev_vm_destroy()`. The SEV ASID itself comes from VAC (`sev_asid_new()` / `sev_asid_free()` there), so
 * two modules' SEV VMs never share one — beyond the RFC, where each `kvmX.ko` kept its own bitmap.
 *
 * @module
 */
import { KernelError, UsageError } from '@vac/core';
import type { MemEncryptCommand, UniqueId, VcpuTag, VendorVm } from '@vac/core';
import type { SvmModuleContext } from './kvm-svm-state.js';

/** `KVM_SEV_INIT` (`enum sev_cmd_id`, `include/uapi/linux/kvm.h`). */
const KVM_SEV_INIT = 0;
/** `KVM_SEV_ES_INIT`. */
const KVM_SEV_ES_INIT = 1;

/** The encryption state of a VM: none, SEV, or SEV-ES. */
export type SvmEncryption = 'none' | 'sev' | 'sev-es';

/**
 * One VM of a module, as kvm_amd sees it (`struct kvm_svm` with its `struct kvm_sev_info`). Built by the
 * module's `createVm`.
 */
export class SvmVm implements VendorVm {
  /** The VM number within its module. */
  readonly id: number;
  /** VAC's name for the VM (`vcpu` = -1): the owner of its SEV ASID. */
  readonly tag: VcpuTag;
  readonly #m: SvmModuleContext;
  #encryption: SvmEncryption = 'none';
  #sevAsid = 0;
  #destroyed = false;
  /** `sev->enc_context_owner`: the VM whose context this one mirrors (KVM_CAP_VM_COPY_ENC_CONTEXT_FROM). */
  #owner: SvmVm | undefined;
  /** `sev->mirror_vms`. */
  readonly #mirrors = new Set<SvmVm>();

  /**
   * @internal Use the module's `createVm`.
   * @param m - the module's shared state
   * @param vm - the VM number and tag
   */
  constructor(m: SvmModuleContext, vm: { readonly id: number; readonly tag: VcpuTag }) {
    this.#m = m;
    this.id = vm.id;
    this.tag = vm.tag;
  }

  /** Whether `KVM_MEMORY_ENCRYPT_OP` is served: SEV is enabled in this module (`sev_enabled`). */
  get memEncrypt(): boolean {
    return this.#m.features.sev;
  }

  /** `sev_guest()` / `sev_es_guest()`: whether the VM is an SEV or SEV-ES guest. */
  get encryption(): SvmEncryption {
    return this.#encryption;
  }

  /** `sev->asid`: the VM's SEV ASID, 0 when it is not an SEV guest. */
  get sevAsid(): number {
    return this.#sevAsid;
  }

  /** Whether {@link SvmVm.destroy} ran. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * `KVM_MEMORY_ENCRYPT_OP` → `sev_mem_enc_ioctl()` (`arch/x86/kvm/svm/sev.c`):
   *
   * 1. SEV not enabled in this module (`sev` parameter N, or `sev_hardware_setup()` found no SEV) → ENOTTY.
   * 2. `KVM_SEV_ES_INIT` without SEV-ES enabled → ENOTTY.
   * 3. `KVM_SEV_INIT` / `KVM_SEV_ES_INIT` → `sev_guest_init()` → `__sev_guest_init()`: vCPUs exist → EINVAL;
   *    already an SEV guest (`sev->active`) → EINVAL; `sev_asid_new()` from VAC's SEV or SEV-ES range (EBUSY
   *    when none is left even after a recycle, ENOTTY for an empty range — both propagate); then the VM is
   *    an SEV / SEV-ES guest. `cmd.error` gets the firmware status of the platform init, `SEV_RET_SUCCESS`
   *    (0) — the RFC-era `sev_platform_init(&argp->error)`; the kernel copies the command back to user space.
   * 4. Any other id → EINVAL. Not modelled (they need the PSP firmware, or VM types other than
   *    `KVM_X86_DEFAULT_VM`): `KVM_SEV_LAUNCH_START` (2), `LAUNCH_UPDATE_DATA` (3), `LAUNCH_UPDATE_VMSA` (4),
   *    `LAUNCH_SECRET` (5), `LAUNCH_MEASURE` (6), `LAUNCH_FINISH` (7), `SEND_START` (8), `SEND_UPDATE_DATA`
   *    (9), `SEND_UPDATE_VMSA` (10), `SEND_FINISH` (11), `RECEIVE_START` (12), `RECEIVE_UPDATE_DATA` (13),
   *    `RECEIVE_UPDATE_VMSA` (14), `RECEIVE_FINISH` (15), `GUEST_STATUS` (16), `DBG_DECRYPT` (17),
   *    `DBG_ENCRYPT` (18), `CERT_EXPORT` (19), `GET_ATTESTATION_REPORT` (20), `SEND_CANCEL` (21), `INIT2`
   *    (22), `SNP_LAUNCH_START` (100), `SNP_LAUNCH_UPDATE` (101), `SNP_LAUNCH_FINISH` (102). Linux answers
   *    most of them ENOTTY on a VM that is not an SEV guest, and EINVAL for ids it does not know.
   *
   * @param cmd - the `struct kvm_sev_cmd` as KVM copied it in (`sev_fd` is `fd`; its `error` is written on success)
   * @param hasVcpus - `kvm->created_vcpus != 0`
   * @returns 0
   * @throws KernelError ENOTTY, EINVAL or EBUSY as above; nothing changes then
   */
  memEncryptOp(cmd: MemEncryptCommand, hasVcpus: boolean): number {
    if (this.#destroyed) throw new UsageError('ERR_DESTROYED', `${vmLabel(this.tag)}: KVM_MEMORY_ENCRYPT_OP on a destroyed VM`);
    const f = this.#m.features;
    // if (!sev_enabled) return -ENOTTY;
    if (!f.sev) throw new KernelError('ENOTTY', 'sev_mem_enc_ioctl', `SEV is not enabled in ${this.#m.env.module}`);
    let es: boolean;
    switch (cmd.id) {
      case KVM_SEV_ES_INIT:
        // case KVM_SEV_ES_INIT: if (!sev_es_enabled) { r = -ENOTTY; goto out; } fallthrough;
        if (!f.sevEs) throw new KernelError('ENOTTY', 'sev_mem_enc_ioctl', `SEV-ES is not enabled in ${this.#m.env.module}`);
        es = true;
        break;
      case KVM_SEV_INIT:
        es = false;
        break;
      default:
        throw new KernelError('EINVAL', 'sev_mem_enc_ioctl', `SEV command ${cmd.id} is not modelled`);
    }
    // __sev_guest_init(): if (kvm->created_vcpus) return -EINVAL; … if (unlikely(sev->active)) return -EINVAL;
    if (hasVcpus) throw new KernelError('EINVAL', 'sev_guest_init', `${vmLabel(this.tag)} already has vCPUs`);
    if (this.#encryption !== 'none') throw new KernelError('EINVAL', 'sev_guest_init', `${vmLabel(this.tag)} is already an SEV guest`);
    // ret = sev_asid_new(sev); if (ret) goto e_no_asid; — VAC's allocator, shared by every module.
    const sev = this.#m.sevAsids;
    if (sev === undefined) throw new KernelError('ENOTTY', 'sev_asid_new', 'SEV is not supported on this host');
    const asid = sev.alloc(es, this.tag);
    this.#sevAsid = asid;
    this.#encryption = es ? 'sev-es' : 'sev';
    cmd.error = 0;
    return 0;
  }

  /** Beyond the RFC: VAC hands SEV ASIDs between modules (`vac.cross_module_moves`), so a move may take another module's VM. */
  get crossModuleEncContext(): boolean {
    return this.#m.sevAsids?.crossModuleMoves === true;
  }

  /** `is_mirroring_enc_context()`: the VM whose encryption context this one mirrors, if any. */
  get mirrorOf(): SvmVm | undefined {
    return this.#owner;
  }

  /**
   * `sev_vm_move_enc_context_from()` (`arch/x86/kvm/svm/sev.c`) once KVM has the source VM (`file_is_kvm`,
   * `sev_lock_two_vms`): the VMs' types must match, this VM must not be an SEV guest and the source must be one
   * (EINVAL); for SEV-ES, `sev_check_source_vcpus()` wants as many vCPUs here as there, each with its guest state
   * protected (LAUNCH_UPDATE_VMSA, which the model does not have: an SEV-ES source with vCPUs is EINVAL). Then
   * `sev_migrate_from()`: the ASID (VAC's record of its holder with it) and the mirrors pass to this VM, the source
   * is left without a context (`src->asid = 0`, inactive). A source of another module is taken only through VAC
   * (beyond the RFC: `SevAsidView.takeOver`, EPERM unless VAC allows it).
   */
  moveEncContextFrom(source: VendorVm, vcpus: { readonly dst: number; readonly src: number }): void {
    const src = source instanceof SvmVm ? source : undefined;
    if (src === undefined) throw new KernelError('EINVAL', 'sev_vm_move_enc_context_from', 'the source is not an SVM VM');
    if (this.#encryption !== 'none' || src.#encryption === 'none') {
      throw new KernelError('EINVAL', 'sev_vm_move_enc_context_from', `${vmLabel(this.tag)} ${this.#encryption !== 'none' ? 'is already an SEV guest' : ''}${src.#encryption === 'none' ? `${vmLabel(src.tag)} is not an SEV guest` : ''}`.trim());
    }
    if (src.#encryption === 'sev-es') {
      if (vcpus.dst !== vcpus.src) throw new KernelError('EINVAL', 'sev_check_source_vcpus', `${vmLabel(this.tag)} has ${vcpus.dst} vCPUs, ${vmLabel(src.tag)} ${vcpus.src}`);
      if (vcpus.src > 0) throw new KernelError('EINVAL', 'sev_check_source_vcpus', `${vmLabel(src.tag)}'s vCPUs have no protected guest state (LAUNCH_UPDATE_VMSA is not modelled)`);
    }
    const asid = src.#sevAsid;
    const view = this.#m.sevAsids;
    if (view === undefined) throw new KernelError('EINVAL', 'sev_vm_move_enc_context_from', 'SEV is not supported on this host');
    if (src.tag.instance === this.tag.instance) {
      // a mirror's ASID is its owner's: only the owner's is recorded with VAC
      if (src.#owner === undefined) view.transfer(asid, this.tag);
    } else {
      if (src.#owner !== undefined || src.#mirrors.size > 0) throw new KernelError('EINVAL', 'sev_vm_move_enc_context_from', 'VAC does not move mirrored encryption contexts between modules');
      view.takeOver(asid, src.tag.instance, this.tag);
      src.#m.sevVmcbs.clearAsid(asid);
    }
    // sev_migrate_from()
    this.#encryption = src.#encryption;
    this.#sevAsid = asid;
    this.#owner = src.#owner;
    if (src.#owner !== undefined) {
      src.#owner.#mirrors.delete(src);
      src.#owner.#mirrors.add(this);
    }
    for (const mirror of src.#mirrors) {
      mirror.#owner = this;
      this.#mirrors.add(mirror);
    }
    src.#mirrors.clear();
    src.#owner = undefined;
    src.#encryption = 'none';
    src.#sevAsid = 0;
  }

  /**
   * `sev_vm_copy_enc_context_from()` (`arch/x86/kvm/svm/sev.c`) once KVM has the source VM: EINVAL when this VM is
   * an SEV guest, the source is not one, the source is itself a mirror, or this VM has created vCPUs. Then this
   * VM mirrors the source: the same ASID and SEV/SEV-ES state (`need_init` false), and the source keeps the ASID
   * (the caller takes a reference on the source VM, `kvm_get_kvm`, so it lives as long as the mirror).
   */
  copyEncContextFrom(source: VendorVm, dstHasVcpus: boolean): void {
    const src = source instanceof SvmVm ? source : undefined;
    if (src === undefined || src.tag.instance !== this.tag.instance) throw new KernelError('EINVAL', 'sev_vm_copy_enc_context_from', 'the source is not an SVM VM of this module');
    if (this.#encryption !== 'none' || src.#encryption === 'none' || src.#owner !== undefined || dstHasVcpus) {
      throw new KernelError('EINVAL', 'sev_vm_copy_enc_context_from', `${vmLabel(this.tag)} cannot mirror ${vmLabel(src.tag)} (an SEV guest already, vCPUs created, or the source is not an SEV guest or is a mirror)`);
    }
    this.#owner = src;
    src.#mirrors.add(this);
    this.#encryption = src.#encryption;
    this.#sevAsid = src.#sevAsid;
  }

  /** The SEV ASID of an SEV or SEV-ES guest: unique per VM across modules (invariant 3). */
  uniqueIds(): readonly UniqueId[] {
    // A mirror shares its owner's ASID; the owner holds it.
    return this.#encryption === 'none' || this.#owner !== undefined ? [] : [{ kind: 'SEV ASID', value: this.#sevAsid }];
  }

  /**
   * `svm_vm_destroy()` → `sev_vm_destroy()` (`arch/x86/kvm/svm/sev.c`): nothing for a VM that is not an SEV
   * guest; otherwise `wbinvd_on_all_cpus()` (so no cache line encrypted with the guest's key is written back
   * later), then `sev_asid_free()`: the ASID goes to VAC's reclaim bitmap (reusable only after the next
   * flush) and `sev_vmcbs[asid]` is cleared on every CPU. `sev_unbind_asid()` (the firmware's DEACTIVATE and
   * DECOMMISSION) is not modelled. A second call does nothing.
   */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#owner !== undefined) {
      // is_mirroring_enc_context(): leave the owner's list; the ASID is the owner's to free.
      this.#owner.#mirrors.delete(this);
      this.#owner = undefined;
      return;
    }
    if (this.#encryption === 'none') return;
    const m = this.#m;
    m.hw.svm.wbinvdOnAllCpus();
    const asid = this.#sevAsid;
    m.sevAsids?.free(asid);
    m.sevVmcbs.clearAsid(asid);
  }
}

/** `kvm0/vm3`. */
function vmLabel(tag: VcpuTag): string {
  return `${tag.instance}/vm${tag.vm}`;
}
