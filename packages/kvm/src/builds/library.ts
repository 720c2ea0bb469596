/**
 * The shipped builds: real KVM releases, each described by the upstream changes between it and 6.12 that the
 * model implements (docs/builds.md). A build of an older release is 6.12 less the listed changes; a newer one is
 * 6.12 plus them. Everything else stays as in 6.12.
 *
 * @module
 */
import { KVM_CAP_ASYNC_PF_INT, KVM_CAP_XSAVE2 } from '../abi/constants.js';
import { KVM_X86_QUIRK_SLOT_ZAP_ALL } from '../abi/constants-x86.js';
import { BASELINE_BUILD, KVM_X86_QUIRK_IGNORE_GUEST_PAT, KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM, type BuildChange, type KvmBuild } from './build.js';

/** `MSR_KVM_ASYNC_PF_INT`. */
const MSR_KVM_ASYNC_PF_INT = 0x4b564d06;
/** `MSR_KVM_ASYNC_PF_ACK`. */
const MSR_KVM_ASYNC_PF_ACK = 0x4b564d07;
/** `KVM_FEATURE_ASYNC_PF_INT` (KVM_CPUID_FEATURES EAX bit 14). */
const KVM_FEATURE_ASYNC_PF_INT = 1 << 14;

/** 6.12: `enable_virt_at_load` (default Y) — before it, virtualization is enabled when the first VM is created. */
export const CHANGE_ENABLE_VIRT_AT_LOAD: BuildChange = {
  id: 'enable-virt-at-load',
  direction: '-',
  commits: ['b4886fab6fb620b96ad7eeefb9801c42dfa91741'],
  subject: 'KVM: Add a module param to allow enabling virtualization when KVM is loaded',
  since: '6.12',
  summary: 'kvm.enable_virt_at_load does not exist: the module takes no usage reference at load, VMX/SVM is enabled when the first VM is created and disabled when the last goes.',
  linux: ['virt/kvm/kvm_main.c kvm_init_virtualization', 'virt/kvm/kvm_main.c kvm_create_vm (kvm_enable_virtualization)'],
  effects: { params: { enable_virt_at_load: null } },
};

/** 6.12: `KVM_X86_QUIRK_SLOT_ZAP_ALL`. */
export const CHANGE_QUIRK_SLOT_ZAP_ALL: BuildChange = {
  id: 'quirk-slot-zap-all',
  direction: '-',
  commits: ['aa8d1f48d353b0469bff357183ee9df137d15ef0'],
  subject: 'KVM: x86/mmu: Introduce a quirk to control memslot zap behavior',
  since: '6.12',
  summary: 'KVM_X86_QUIRK_SLOT_ZAP_ALL (bit 7) is not a valid quirk: KVM_CAP_DISABLE_QUIRKS2 does not offer it and KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2) with it fails with EINVAL.',
  linux: ['arch/x86/include/asm/kvm_host.h KVM_X86_VALID_QUIRKS', 'arch/x86/kvm/x86.c kvm_vm_ioctl_enable_cap (KVM_CAP_DISABLE_QUIRKS2)'],
  effects: { quirks: { remove: KVM_X86_QUIRK_SLOT_ZAP_ALL } },
};

/** CVE-2022-27672 (cross-thread return address predictions): `mitigate_smt_rsb`, in 6.2 and stable 6.1.12. */
export const CHANGE_MITIGATE_SMT_RSB: BuildChange = {
  id: 'mitigate-smt-rsb',
  direction: '-',
  commits: ['6f0f2d5ef895d66a3f2b32dd05189ec34afa5a55'],
  subject: 'KVM: x86: Mitigate the cross-thread return address predictions bug',
  since: '6.2 (stable 6.1.12: 40c4fdfc942e)',
  summary: 'kvm.mitigate_smt_rsb does not exist, so the CVE-2022-27672 mitigation cannot be turned on: KVM_CAP_X86_DISABLE_EXITS always offers HLT, MWAIT and CSTATE.',
  linux: ['arch/x86/kvm/x86.c kvm_get_allowed_disable_exits', 'arch/x86/kvm/x86.c module_param(mitigate_smt_rsb)'],
  effects: { params: { mitigate_smt_rsb: null } },
};

/** 5.8: interrupt-based 'page ready' async page faults (MSR_KVM_ASYNC_PF_INT / _ACK, KVM_FEATURE_ASYNC_PF_INT). */
export const CHANGE_ASYNC_PF_INT: BuildChange = {
  id: 'async-pf-int',
  direction: '-',
  commits: ['2635b5c4a0e407b84f68e188c719f28ba0e9ae1b', '557a961abbe0', '72de5fa4c16195827252b961ba44028a39dfeaff'],
  subject: "KVM: x86: interrupt based APF 'page ready' event delivery; acknowledgment mechanism for async pf page ready notifications; announce KVM_FEATURE_ASYNC_PF_INT",
  since: '5.8',
  summary: 'MSR_KVM_ASYNC_PF_INT and MSR_KVM_ASYNC_PF_ACK are not in KVM_GET_MSR_INDEX_LIST and have no handler (KVM_GET/SET_MSRS stop at them, the guest takes #GP); KVM_GET_SUPPORTED_CPUID does not offer KVM_FEATURE_ASYNC_PF_INT; KVM_CAP_ASYNC_PF_INT is 0.',
  linux: ['arch/x86/kvm/x86.c emulated_msrs_all', 'arch/x86/kvm/x86.c kvm_set_msr_common / kvm_get_msr_common (MSR_KVM_ASYNC_PF_INT, MSR_KVM_ASYNC_PF_ACK)', 'arch/x86/kvm/cpuid.c __do_cpuid_func (KVM_CPUID_FEATURES)', 'arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (KVM_CAP_ASYNC_PF_INT)'],
  effects: {
    msrs: { remove: [MSR_KVM_ASYNC_PF_INT, MSR_KVM_ASYNC_PF_ACK] },
    cpuid: [{ function: 0x40000001, index: 0, reg: 'eax', mask: KVM_FEATURE_ASYNC_PF_INT }],
    capsRemoved: [KVM_CAP_ASYNC_PF_INT],
  },
};

/** 6.14: `KVM_X86_QUIRK_IGNORE_GUEST_PAT`, offered by VMX on hosts with self-snoop only. */
export const CHANGE_QUIRK_IGNORE_GUEST_PAT: BuildChange = {
  id: 'quirk-ignore-guest-pat',
  direction: '+',
  commits: ['c9c1e20b4c7d60fa084b3257525d21a49fe651a1', 'bd7d5362b4c4ac8b951385867a0fadfae0ba3c07'],
  subject: 'KVM: x86: Introduce Intel specific quirk KVM_X86_QUIRK_IGNORE_GUEST_PAT; Introduce supported_quirks to block disabling quirks',
  since: '6.14',
  summary: 'KVM_X86_QUIRK_IGNORE_GUEST_PAT (bit 9) is a valid quirk; kvm_caps.supported_quirks offers it only on VMX with X86_FEATURE_SELFSNOOP, so KVM_CAP_DISABLE_QUIRKS2 has bit 9 there and KVM_ENABLE_CAP with it is EINVAL elsewhere.',
  linux: ['arch/x86/include/asm/kvm_host.h KVM_X86_VALID_QUIRKS', 'arch/x86/kvm/vmx/vmx.c vmx_hardware_setup', 'arch/x86/kvm/svm/svm.c svm_hardware_setup', 'arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (kvm_caps.supported_quirks)'],
  effects: { quirks: { add: KVM_X86_QUIRK_IGNORE_GUEST_PAT, vmxSelfSnoopOnly: KVM_X86_QUIRK_IGNORE_GUEST_PAT } },
};

/** 6.18: `KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM`. */
export const CHANGE_QUIRK_VMCS12_FREEZE_IN_SMM: BuildChange = {
  id: 'quirk-vmcs12-allow-freeze-in-smm',
  direction: '+',
  commits: ['e2ffe85b6d2b'],
  subject: 'KVM: x86: Introduce KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM',
  since: '6.18',
  summary: 'KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM (bit 10) is a valid quirk on every vendor: KVM_CAP_DISABLE_QUIRKS2 has bit 10.',
  linux: ['arch/x86/include/asm/kvm_host.h KVM_X86_VALID_QUIRKS', 'arch/x86/kvm/vmx/nested.c nested_vmx_check_guest_state'],
  effects: { quirks: { add: KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM } },
};

/** 6.14: KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) after vCPU creation is EINVAL. */
export const CHANGE_DISABLE_EXITS_AFTER_VCPUS: BuildChange = {
  id: 'disable-exits-after-vcpus',
  direction: '+',
  commits: ['04cd8f8628d88da7839b1643db0bef8522c39254'],
  subject: 'KVM: x86: Disallow KVM_CAP_X86_DISABLE_EXITS after vCPU creation',
  since: '6.14',
  summary: 'KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) once the VM has a vCPU fails with EINVAL; 6.12 takes it (the VM\'s flags change, vCPUs created before keep their intercepts).',
  linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_enable_cap (KVM_CAP_X86_DISABLE_EXITS: kvm->created_vcpus)'],
  effects: { errnos: ['disable-exits-after-vcpus'] },
};

/** 6.14: KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) with an exit KVM does not offer is EINVAL. */
export const CHANGE_DISABLE_EXITS_NOT_ALLOWED: BuildChange = {
  id: 'disable-exits-not-allowed',
  direction: '+',
  commits: ['c829ccd4d9dc4a892e7c9ae032b87ac90ace2252'],
  subject: 'KVM: x86: Reject disabling of MWAIT/HLT interception when not allowed',
  since: '6.14',
  summary: 'KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) checks the flags against kvm_get_allowed_disable_exits() (KVM_CHECK_EXTENSION\'s answer): MWAIT without kvm_can_mwait_in_guest, or HLT/MWAIT/CSTATE with mitigate_smt_rsb, is EINVAL; 6.12 checks against KVM_X86_DISABLE_VALID_EXITS and ignores them.',
  linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_enable_cap (KVM_CAP_X86_DISABLE_EXITS)', 'arch/x86/kvm/x86.c kvm_get_allowed_disable_exits'],
  effects: { errnos: ['disable-exits-not-allowed'] },
};

/** `MSR_IA32_XFD`, `MSR_IA32_XFD_ERR`. */
const MSR_IA32_XFD = 0x1c4;
const MSR_IA32_XFD_ERR = 0x1c5;

/**
 * 5.17: AMX for guests — XTILECFG and XTILEDATA in `KVM_SUPPORTED_XCR0`, the AMX CPUID bits and tile leaves, the
 * expanded XSAVE buffer (KVM_CAP_XSAVE2, KVM_GET_XSAVE2, a guest FPU that grows at KVM_SET_CPUID2 when the process
 * has `ARCH_REQ_XCOMP_GUEST_PERM`), and the XFD MSRs.
 */
export const CHANGE_AMX: BuildChange = {
  id: 'amx',
  direction: '-',
  commits: [
    '86aff7a4799286635efd94dab17b513544703cad',
    '690a757d610e50c2c3acd2e4bc3992cfc63feff2',
    'be50b2065dfa3d88428fdfdc340d154d96bf6848',
    'c60427dd50ba9b20063ccaed0e98d62e886d7a3b',
    '5ab2f45bba4894a0db4af8567da3efd6228dd010',
    '820a6ee944e74e57255ac2e90916ecdaade57b95',
    '548e83650a51dce0d188b9e41b1e2ca5d63597cf',
  ],
  subject:
    'kvm: x86: Add XCR0 support for Intel AMX; Add CPUID support for Intel AMX; Add support for getting/setting expanded xstate buffer; x86/fpu: Add uabi_size to guest_fpu; kvm: x86: Enable dynamic xfeatures at KVM_SET_CPUID2; Add emulation for IA32_XFD; Emulate IA32_XFD_ERR for guest',
  since: '5.17',
  summary:
    'No AMX for guests: KVM_GET_SUPPORTED_CPUID offers neither XTILECFG/XTILEDATA (leaf 0xD) nor AMX-BF16/TILE/INT8 (7.0.EDX) nor the tile leaves 0x1D/0x1E, KVM_SET_XCRS and KVM_SET_XSAVE refuse the tile components (EINVAL), KVM_CAP_XSAVE2 is 0 and KVM_GET_XSAVE2 is EINVAL, KVM_SET_CPUID2 does not ask for the process\'s guest permission, and IA32_XFD / IA32_XFD_ERR are off the MSR list without a handler.',
  linux: [
    'arch/x86/kvm/x86.c KVM_SUPPORTED_XCR0',
    'arch/x86/kvm/cpuid.c kvm_set_cpu_caps (CPUID_7_EDX), __do_cpuid_func (0xd, 0x1d, 0x1e)',
    'arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (KVM_CAP_XSAVE2), kvm_arch_vcpu_ioctl (KVM_GET_XSAVE2, KVM_GET_XSAVE, KVM_SET_XSAVE)',
    'arch/x86/kvm/cpuid.c kvm_check_cpuid (fpu_enable_guest_xfd_features)',
    'arch/x86/kvm/x86.c kvm_set_msr_common / kvm_get_msr_common (MSR_IA32_XFD, MSR_IA32_XFD_ERR), msrs_to_save_base',
  ],
  effects: {
    xsave: { removeFeatures: 0x60000, dynamic: false },
    cpuid: [{ function: 7, index: 0, reg: 'edx', mask: (1 << 22) | (1 << 24) | (1 << 25) }],
    capsRemoved: [KVM_CAP_XSAVE2],
    msrs: { remove: [MSR_IA32_XFD, MSR_IA32_XFD_ERR] },
  },
};

function build(name: string, linux: string, changes: readonly BuildChange[]): KvmBuild {
  return Object.freeze({ name, linux, changes: Object.freeze([...changes]) });
}

/** Linux 6.12: the model's baseline. */
export const LINUX_6_12: KvmBuild = BASELINE_BUILD;
/** Linux 6.18 (the kernel under this machine's real /dev/kvm; the conformance golden files were recorded on it). */
export const LINUX_6_18: KvmBuild = build('linux-6.18', '6.18', [CHANGE_QUIRK_IGNORE_GUEST_PAT, CHANGE_DISABLE_EXITS_AFTER_VCPUS, CHANGE_DISABLE_EXITS_NOT_ALLOWED, CHANGE_QUIRK_VMCS12_FREEZE_IN_SMM]);
/** Linux 6.14. */
export const LINUX_6_14: KvmBuild = build('linux-6.14', '6.14', [CHANGE_QUIRK_IGNORE_GUEST_PAT, CHANGE_DISABLE_EXITS_AFTER_VCPUS, CHANGE_DISABLE_EXITS_NOT_ALLOWED]);
/** Linux 6.11. */
export const LINUX_6_11: KvmBuild = build('linux-6.11', '6.11', [CHANGE_ENABLE_VIRT_AT_LOAD, CHANGE_QUIRK_SLOT_ZAP_ALL]);
/** Linux 6.1.12: the stable release with the CVE-2022-27672 fix (mitigate_smt_rsb). */
export const LINUX_6_1_12: KvmBuild = build('linux-6.1.12', '6.1.12', [CHANGE_ENABLE_VIRT_AT_LOAD, CHANGE_QUIRK_SLOT_ZAP_ALL]);
/** Linux 6.1 before 6.1.12: without the CVE-2022-27672 fix. */
export const LINUX_6_1: KvmBuild = build('linux-6.1', '6.1', [CHANGE_ENABLE_VIRT_AT_LOAD, CHANGE_QUIRK_SLOT_ZAP_ALL, CHANGE_MITIGATE_SMT_RSB]);
/** Linux 5.16: the last release before AMX for guests (5.17). */
export const LINUX_5_16: KvmBuild = build('linux-5.16', '5.16', [CHANGE_ENABLE_VIRT_AT_LOAD, CHANGE_QUIRK_SLOT_ZAP_ALL, CHANGE_MITIGATE_SMT_RSB, CHANGE_AMX]);
/** Linux 5.7: before interrupt-based async page faults (and, as 5.16, before AMX). */
export const LINUX_5_7: KvmBuild = build('linux-5.7', '5.7', [CHANGE_ENABLE_VIRT_AT_LOAD, CHANGE_QUIRK_SLOT_ZAP_ALL, CHANGE_MITIGATE_SMT_RSB, CHANGE_AMX, CHANGE_ASYNC_PF_INT]);

/** Every shipped build, newest first. */
export const SHIPPED_BUILDS: readonly KvmBuild[] = Object.freeze([LINUX_6_18, LINUX_6_14, LINUX_6_12, LINUX_6_11, LINUX_6_1_12, LINUX_6_1, LINUX_5_16, LINUX_5_7]);
