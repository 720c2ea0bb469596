/**
 * Which KVM x86 fixes a host with several KVM modules can ship by loading a new `kvmX`, and which need a reboot or
 * a live update because they change code the base module (VAC) owns: the RFC moves VMX/SVM enabling, VPID and
 * ASID allocation, the user-return MSRs and the interrupt callbacks (perf guest callbacks, the posted-interrupt
 * wakeup vector) into VAC, and the emergency (reboot/crash) disabling of virtualization lives in the core kernel.
 *
 * Every entry is an upstream commit of torvalds/linux, a CVE fix or a stable-tagged fix, with the files its diff
 * changes and the functions the fix is about (checked against the patches and stable backports on the stable and
 * kvm lists, which name each commit as "commit … upstream").
 * The classification is computed from those files and functions ({@link classifyFix}), not asserted: docs/builds.md
 * shows the table and the resulting share.
 *
 * @module
 */

/** Where a fix's code lives once the RFC is applied: in a KVM module, or in VAC / the core kernel. */
export type FixArea = 'kvmX' | 'vac';

/** One upstream fix. */
export interface KvmFix {
  /** The upstream commit (torvalds/linux), 12 to 40 hex digits. */
  readonly commit: string;
  /** Its subject line. */
  readonly subject: string;
  /**
   * The CVE it fixes; `'stable'` for a fix picked into the stable trees without one (its backport is on the stable
   * list); `'fix'` for an upstream fix whose stable backport was not found.
   */
  readonly cve: string;
  /** The release it was merged in. */
  readonly since: string;
  /** The files it changes. */
  readonly files: readonly string[];
  /** The functions it changes. */
  readonly functions: readonly string[];
  /** The classification, as written here; {@link classifyFix} recomputes it from `files` and `functions`. */
  readonly area: FixArea;
}

/** Files whose code VAC or the core kernel owns with the RFC applied (the emergency disabling of VMX/SVM, perf). */
export const VAC_OWNED_FILES: readonly string[] = [
  'arch/x86/kernel/reboot.c',
  'arch/x86/kernel/crash.c',
  'arch/x86/include/asm/virtext.h',
  'arch/x86/include/asm/reboot.h',
  'kernel/events/core.c',
];

/**
 * Functions VAC owns with the RFC applied, wherever they are today: VMX/SVM enabling per CPU, the VPID and ASID
 * allocators, the user-return MSR machinery and the interrupt callbacks.
 */
export const VAC_OWNED_FUNCTIONS: readonly string[] = [
  // VMX/SVM enable and disable on a CPU
  'kvm_cpu_vmxon', 'kvm_cpu_vmxoff', 'vmx_hardware_enable', 'vmx_hardware_disable', 'hardware_enable', 'hardware_disable',
  'svm_hardware_enable', 'svm_hardware_disable', 'cpu_svm_disable', 'kvm_cpu_svm_disable', 'cpu_emergency_disable_virtualization',
  'crash_vmclear_local_loaded_vmcss',
  // VPID and ASID allocation
  'allocate_vpid', 'free_vpid', 'sev_asid_new', 'sev_asid_free', 'new_asid',
  // user-return MSRs
  'kvm_on_user_return', 'kvm_set_user_return_msr', 'kvm_user_return_msr_cpu_online', 'kvm_add_user_return_msr',
  // interrupt callbacks
  'kvm_register_perf_callbacks', 'perf_register_guest_info_callbacks', 'kvm_set_posted_intr_wakeup_handler',
];

/** The classification of a fix from what it touches: `'vac'` when any file or function is VAC's, else `'kvmX'`. */
export function classifyFix(fix: Pick<KvmFix, 'files' | 'functions'>): FixArea {
  if (fix.files.some((f) => VAC_OWNED_FILES.includes(f))) return 'vac';
  if (fix.functions.some((f) => VAC_OWNED_FUNCTIONS.includes(f))) return 'vac';
  return 'kvmX';
}

/** Twenty KVM x86 fixes of 2016–2023, oldest VAC-side ones included, each classified. */
export const KVM_X86_FIXES: readonly KvmFix[] = Object.freeze([
  { commit: '07721feee46b4b248402133228235318199b05ec', subject: "KVM: nVMX: Don't emulate instructions in guest mode", cve: 'CVE-2020-2732', since: '5.6', files: ['arch/x86/kvm/vmx/vmx.c'], functions: ['vmx_check_intercept'], area: 'kvmX' },
  { commit: 'a58d9166a756a0f4a6618e4f593232593d6df134', subject: 'KVM: SVM: load control fields from VMCB12 before checking them', cve: 'CVE-2021-29657', since: '5.12', files: ['arch/x86/kvm/svm/nested.c'], functions: ['nested_svm_vmrun', 'nested_vmcb_checks'], area: 'kvmX' },
  { commit: 'b1bd5cba3306691c771d558e94baa73e8b0b96b7', subject: 'KVM: X86: MMU: Use the correct inherited permissions to get shadow page', cve: 'CVE-2021-38198', since: '5.13', files: ['arch/x86/kvm/mmu/paging_tmpl.h'], functions: ['FNAME(fetch)'], area: 'kvmX' },
  { commit: '0f923e07124df069ba68d8bb12324398f4b6b709', subject: 'KVM: nSVM: avoid picking up unsupported bits from L2 in int_ctl', cve: 'CVE-2021-3653', since: '5.14', files: ['arch/x86/kvm/svm/nested.c', 'arch/x86/kvm/svm/svm.c', 'arch/x86/kvm/svm/svm.h'], functions: ['nested_vmcb02_prepare_control', 'svm_clear_vintr'], area: 'kvmX' },
  { commit: 'c7dfa4009965a9b2d7b329ee970eb8da0d32f0bc', subject: 'KVM: nSVM: always intercept VMLOAD/VMSAVE when nested', cve: 'CVE-2021-3656', since: '5.14', files: ['arch/x86/kvm/svm/nested.c'], functions: ['recalc_intercepts'], area: 'kvmX' },
  { commit: '2a8859f373b0a86f0ece8ec8312607eacf12485d', subject: 'KVM: x86/mmu: do compare-and-exchange of gPTE via the user address', cve: 'CVE-2022-1158', since: '5.18', files: ['arch/x86/kvm/mmu/paging_tmpl.h'], functions: ['FNAME(cmpxchg_gpte)'], area: 'kvmX' },
  { commit: '9f46c187e2e680ecd9de7983e4d081c3391acc76', subject: 'KVM: x86/mmu: fix NULL pointer dereference on guest INVPCID', cve: 'CVE-2022-1789', since: '5.18', files: ['arch/x86/kvm/mmu/mmu.c'], functions: ['kvm_mmu_invpcid_gva'], area: 'kvmX' },
  { commit: 'fee060cd52d69c114b62d1a2948ea9648b5131f9', subject: 'KVM: x86: avoid calling x86 emulator without a decoded instruction', cve: 'CVE-2022-1852', since: '5.19', files: ['arch/x86/kvm/x86.c'], functions: ['x86_decode_emulated_instruction', 'x86_emulate_instruction'], area: 'kvmX' },
  { commit: '6cd88243c7e03845a450795e134b488fc2afb736', subject: 'KVM: x86: do not report a vCPU as preempted outside instruction boundaries', cve: 'CVE-2022-39189', since: '5.19', files: ['arch/x86/include/asm/kvm_host.h', 'arch/x86/kvm/svm/svm.c', 'arch/x86/kvm/vmx/vmx.c', 'arch/x86/kvm/x86.c'], functions: ['kvm_steal_time_set_preempted', 'kvm_arch_vcpu_put'], area: 'kvmX' },
  { commit: '16ae56d7e0528559bf8dc9070e3bfd8ba3de80df', subject: 'KVM: x86: nSVM: harden svm_free_nested against freeing vmcb02 while still in use', cve: 'CVE-2022-3344', since: '6.1', files: ['arch/x86/kvm/svm/nested.c'], functions: ['svm_free_nested'], area: 'kvmX' },
  { commit: 'f9697df251438b0798780900e8b43bdb12a56d64', subject: 'KVM: x86: add kvm_leave_nested', cve: 'CVE-2022-3344', since: '6.1', files: ['arch/x86/kvm/x86.c', 'arch/x86/kvm/svm/nested.c', 'arch/x86/kvm/vmx/nested.c'], functions: ['kvm_leave_nested'], area: 'kvmX' },
  { commit: '2c10b61421a28e95a46ab489fd56c0f442ff6952', subject: 'kvm: initialize all of the kvm_debugregs structure before sending it to userspace', cve: 'CVE-2023-1513', since: '6.3', files: ['arch/x86/kvm/x86.c'], functions: ['kvm_vcpu_ioctl_x86_get_debugregs'], area: 'kvmX' },
  { commit: '112e66017bff7f2837030f34c2bc19501e9212d5', subject: 'KVM: nVMX: add missing consistency checks for CR0 and CR4', cve: 'CVE-2023-30456', since: '6.3', files: ['arch/x86/kvm/vmx/nested.c'], functions: ['nested_vmx_check_guest_state'], area: 'kvmX' },
  { commit: '7588dbcebcbf0193ab5b76987396d0254270b04a', subject: 'KVM: SEV: only access GHCB fields once', cve: 'CVE-2023-4155', since: '6.5', files: ['arch/x86/kvm/svm/sev.c'], functions: ['sev_handle_vmgexit', 'sev_es_validate_vmgexit'], area: 'kvmX' },
  { commit: 'e0096d01c4fcb8c96c05643cfc2c20ab78eae4da', subject: 'KVM: SVM: Fix TSC_AUX virtualization setup', cve: 'stable', since: '6.6', files: ['arch/x86/kvm/svm/sev.c', 'arch/x86/kvm/svm/svm.c', 'arch/x86/kvm/svm/svm.h'], functions: ['sev_es_vcpu_after_set_cpuid', 'svm_vcpu_after_set_cpuid'], area: 'kvmX' },
  { commit: '916e3e5f26abc165437950daff370c0693572ef4', subject: 'KVM: SVM: Do not use user return MSR support for virtualized TSC_AUX', cve: 'fix', since: '6.6', files: ['arch/x86/kvm/svm/svm.c', 'arch/x86/kvm/svm/sev.c'], functions: ['svm_prepare_switch_to_guest', 'svm_set_msr'], area: 'kvmX' },
  { commit: '1650b4ebc99da4c137bfbfc531be4a2405f951dd', subject: 'KVM: Disable irq while unregistering user notifier', cve: 'fix', since: '4.9', files: ['arch/x86/kvm/x86.c'], functions: ['kvm_on_user_return'], area: 'vac' },
  { commit: '4f6ea0a87608', subject: 'KVM: VMX: Gracefully handle faults on VMXON', cve: 'fix', since: '5.7', files: ['arch/x86/kvm/vmx/vmx.c', 'arch/x86/kvm/vmx/vmx.h'], functions: ['kvm_cpu_vmxon', 'hardware_enable'], area: 'vac' },
  { commit: '6a3236580b0b1accc3976345e723104f74f6f8e6', subject: 'x86/virt: Force GIF=1 prior to disabling SVM (for reboot flows)', cve: 'stable', since: '6.3', files: ['arch/x86/include/asm/virtext.h'], functions: ['cpu_svm_disable'], area: 'vac' },
  { commit: 'b23c83ad2c638420ec0608a9de354507c41bec29', subject: 'x86/reboot: VMCLEAR active VMCSes before emergency reboot', cve: 'stable', since: '6.6', files: ['arch/x86/include/asm/kexec.h', 'arch/x86/include/asm/reboot.h', 'arch/x86/kernel/crash.c', 'arch/x86/kernel/reboot.c', 'arch/x86/kvm/vmx/vmx.c'], functions: ['cpu_emergency_disable_virtualization', 'crash_vmclear_local_loaded_vmcss'], area: 'vac' },
] satisfies readonly KvmFix[]);

/** How many of {@link KVM_X86_FIXES} a module swap deploys, how many need VAC changed, and the share. */
export function fixShare(fixes: readonly KvmFix[] = KVM_X86_FIXES): { readonly kvmX: number; readonly vac: number; readonly share: number } {
  const kvmX = fixes.filter((f) => classifyFix(f) === 'kvmX').length;
  return { kvmX, vac: fixes.length - kvmX, share: fixes.length === 0 ? 0 : kvmX / fixes.length };
}
