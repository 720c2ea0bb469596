/**
 * KVM_ENABLE_CAP(KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM / KVM_CAP_VM_COPY_ENC_CONTEXT_FROM) on a VM fd, `args[0]` the fd of
 * the source VM: the generic half of `sev_vm_move_enc_context_from()` / `sev_vm_copy_enc_context_from()`
 * (arch/x86/kvm/svm/sev.c) — `fdget`, `file_is_kvm`, `sev_lock_two_vms` — then the vendor's
 * (`VendorVm.moveEncContextFrom` / `copyEncContextFrom`), then `kvm_vm_dead(source)` for a move and
 * `kvm_get_kvm(source)` for a copy.
 *
 * `file_is_kvm()` compares the file's operations with *this module's* `kvm_vm_fops`, so with the RFC applied a VM
 * of another KVM module is EBADF: an encrypted VM cannot move between modules by the means Linux has for one.
 * Beyond the RFC, VAC's `cross_module_moves` parameter lets a move take a VM of another module attached to the
 * same VAC, VAC handing the SEV ASID over (docs/builds.md); a copy stays within one module.
 *
 * @module
 */
import { KernelError, type Process } from '@vac/core';
import { KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM } from '../abi/constants.js';
import type { KvmFileOps } from './files.js';
import { Vm } from './vm.js';

/** KVM_ENABLE_CAP of the two encryption-context capabilities on `vm` (whose module's files are `files`). */
export function encContextFrom(vm: Vm, files: KvmFileOps, cap: number, arg0: bigint, proc: Process, op: string): number {
  const move = cap === KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM;
  const vendor = vm.vendor;
  // kvm_vm_ioctl_enable_cap: r = -EINVAL; if (!kvm_x86_ops.vm_{move,copy}_enc_context_from) break;
  if ((move ? vendor.moveEncContextFrom : vendor.copyEncContextFrom) === undefined) {
    throw new KernelError('EINVAL', op, `${vm.label}: the vendor has no encryption context to ${move ? 'move' : 'copy'}`);
  }
  // (unsigned int source_fd) — the low 32 bits of args[0]; fdget → EBADF for no file.
  const fd = Number(arg0 & 0xffff_ffffn);
  let file;
  try {
    file = proc.file(fd);
  } catch {
    throw new KernelError('EBADF', op, `source fd ${fd} is not open`);
  }
  // file_is_kvm(): f_op == &kvm_vm_fops — this module's.
  const ours = file.fops === files.vm;
  const data: unknown = file.privateData;
  const foreign = !ours && data instanceof Vm && data.instance !== vm.instance && move && crossModuleAllowed(vm);
  if (!ours && !foreign) throw new KernelError('EBADF', op, `fd ${fd} is not a VM of ${vm.instance.name}`);
  const src = data as Vm;
  // sev_lock_two_vms(): the same VM twice → EINVAL.
  if (src === vm) throw new KernelError('EINVAL', op, `${vm.label} cannot take its own encryption context`);
  if (move) {
    (vendor.moveEncContextFrom as NonNullable<typeof vendor.moveEncContextFrom>).call(vendor, src.vendor, { dst: vm.vcpus.size, src: src.vcpus.size });
    // sev_migrate_from(): the mirrors' references pass to the new owner (kvm_get_kvm(dst), kvm_put_kvm(src)); a moved
    // mirror holds its owner as the source did.
    const mirrors = MIRRORS.get(src);
    MIRRORS.delete(src);
    if (mirrors !== undefined) {
      MIRRORS.set(vm, mirrors);
      for (const m of mirrors) {
        OWNER.set(m, vm);
        vm.users++;
        src.put();
      }
    }
    const owner = OWNER.get(src);
    if (owner !== undefined) {
      OWNER.delete(src);
      mirrorOf(vm, owner);
      MIRRORS.get(owner)?.delete(src);
    }
    // kvm_vm_dead(source_kvm): every further ioctl of the source VM and its vCPUs is EIO.
    src.vmDead = true;
  } else {
    (vendor.copyEncContextFrom as NonNullable<typeof vendor.copyEncContextFrom>).call(vendor, src.vendor, vm.createdVcpus > 0);
    // kvm_get_kvm(source_kvm): the source lives as long as its mirror (kvm_put_kvm in sev_vm_destroy).
    src.users++;
    mirrorOf(vm, src);
  }
  return 0;
}

/** `sev->enc_context_owner` as KVM holds it: the VM a mirror holds a reference on. */
const OWNER = new WeakMap<Vm, Vm>();
/** `sev->mirror_vms`. */
const MIRRORS = new WeakMap<Vm, Set<Vm>>();

/** Record `mirror` as a mirror of `owner` (the reference on `owner` is taken by the caller) and drop it when the mirror goes. */
function mirrorOf(mirror: Vm, owner: Vm): void {
  OWNER.set(mirror, owner);
  let set = MIRRORS.get(owner);
  if (set === undefined) MIRRORS.set(owner, (set = new Set()));
  set.add(mirror);
  mirror.onDestroy.push(() => {
    const o = OWNER.get(mirror);
    if (o === undefined) return;
    OWNER.delete(mirror);
    MIRRORS.get(o)?.delete(mirror);
    o.put();
  });
}

/** Beyond the RFC: whether this module's vendor says VAC hands encryption contexts between modules. */
function crossModuleAllowed(vm: Vm): boolean {
  return vm.vendor.crossModuleEncContext === true;
}
