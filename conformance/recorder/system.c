/*
 * Group "system": the ioctls of /dev/kvm itself — API version, VM types, the vCPU mmap size, the MSR
 * index lists, feature MSRs, supported and emulated CPUID, MCE capabilities — on good and bad inputs, and
 * ioctl numbers it does not know.
 */
#include <stdio.h>
#include <string.h>

#include "groups.h"
#include "structs.h"

static struct msr_list_buf list;
static struct cpuid_buf cpuid;
static struct msrs_buf msrs;

#define LIST(nr) #nr, nr

/* The E2BIG protocol of an MSR index list: too small (the count written back), exact, one short; the list. */
static void msr_list_facts(const char *what, const char *name, unsigned long nr) {
	char id[96], title[240];

	snprintf(id, sizeof id, "system.%s.too-small", what);
	snprintf(title, sizeof title, "%s with nmsrs = 0: E2BIG, with nmsrs set to the number of MSRs", name);
	FACT(id, title) {
		memset(&list, 0, sizeof list);
		step_ptr_always("sys", name, nr, "kvm_msr_list", &list, (emit_fn)emit_msr_list_in, (emit_fn)emit_msr_list_count_opaque);
	}

	snprintf(id, sizeof id, "system.%s.exact-count", what);
	snprintf(title, sizeof title, "%s with the count it gave back succeeds with that count; one fewer is E2BIG", name);
	FACT(id, title) {
		memset(&list, 0, sizeof list);
		step_ptr_always("sys", name, nr, "kvm_msr_list", &list, (emit_fn)emit_msr_list_in, (emit_fn)emit_msr_list_count_opaque);
		unsigned n = list.h.nmsrs;
		count_ref = "steps.0.out.nmsrs";
		count_add = 0;
		memset(&list, 0, sizeof list);
		list.h.nmsrs = n;
		step_ptr_always("sys", name, nr, "kvm_msr_list", &list, (emit_fn)emit_msr_list_in_ref, (emit_fn)emit_msr_list_count_opaque);
		count_add = -1;
		memset(&list, 0, sizeof list);
		list.h.nmsrs = n - 1;
		step_ptr_always("sys", name, nr, "kvm_msr_list", &list, (emit_fn)emit_msr_list_in_ref, (emit_fn)emit_msr_list_count_opaque);
	}

	snprintf(id, sizeof id, "system.%s.content", what);
	snprintf(title, sizeof title, "%s: the MSR indices, in order", name);
	FACT(id, title) {
		memset(&list, 0, sizeof list);
		list.h.nmsrs = 1024;
		step_ptr("sys", name, nr, "kvm_msr_list", &list, (emit_fn)emit_msr_list_in, (emit_fn)emit_msr_list);
	}

	snprintf(id, sizeof id, "system.%s.null", what);
	snprintf(title, sizeof title, "%s with a NULL pointer: EFAULT", name);
	FACT(id, title) {
		step_null("sys", name, nr, "kvm_msr_list");
	}
}

/* The E2BIG protocol of a CPUID list, and the list. */
static void cpuid_facts(const char *what, const char *name, unsigned long nr) {
	char id[96], title[240];

	snprintf(id, sizeof id, "system.%s.too-small", what);
	snprintf(title, sizeof title, "%s with nent = 1: E2BIG (nent is not written back)", name);
	FACT(id, title) {
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 1;
		step_ptr_always("sys", name, nr, "kvm_cpuid2", &cpuid, (emit_fn)emit_cpuid2_in, (emit_fn)emit_cpuid2_count);
	}

	snprintf(id, sizeof id, "system.%s.zero", what);
	snprintf(title, sizeof title, "%s with nent = 0: E2BIG", name);
	FACT(id, title) {
		memset(&cpuid, 0, sizeof cpuid);
		step_ptr_always("sys", name, nr, "kvm_cpuid2", &cpuid, (emit_fn)emit_cpuid2_in, (emit_fn)emit_cpuid2_count);
	}

	snprintf(id, sizeof id, "system.%s.exact-count", what);
	snprintf(title, sizeof title, "%s with KVM_MAX_CPUID_ENTRIES (256) gives the count; that count succeeds, one fewer is E2BIG", name);
	FACT(id, title) {
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 256;
		step_ptr_always("sys", name, nr, "kvm_cpuid2", &cpuid, (emit_fn)emit_cpuid2_in, (emit_fn)emit_cpuid2_count_opaque);
		unsigned n = cpuid.h.nent;
		count_ref = "steps.0.out.nent";
		count_add = 0;
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = n;
		step_ptr_always("sys", name, nr, "kvm_cpuid2", &cpuid, (emit_fn)emit_cpuid2_in_ref, (emit_fn)emit_cpuid2_count_opaque);
		count_add = -1;
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = n - 1;
		step_ptr_always("sys", name, nr, "kvm_cpuid2", &cpuid, (emit_fn)emit_cpuid2_in_ref, (emit_fn)emit_cpuid2_count_opaque);
	}

	snprintf(id, sizeof id, "system.%s.above-max", what);
	snprintf(title, sizeof title, "%s with nent = 300 (above KVM_MAX_CPUID_ENTRIES)", name);
	FACT(id, title) {
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 300;
		step_ptr_always("sys", name, nr, "kvm_cpuid2", &cpuid, (emit_fn)emit_cpuid2_in, (emit_fn)emit_cpuid2_count_opaque);
	}

	snprintf(id, sizeof id, "system.%s.content", what);
	snprintf(title, sizeof title, "%s: the entries", name);
	FACT(id, title) {
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 256;
		step_ptr("sys", name, nr, "kvm_cpuid2", &cpuid, (emit_fn)emit_cpuid2_in, (emit_fn)emit_cpuid2);
	}

	snprintf(id, sizeof id, "system.%s.null", what);
	snprintf(title, sizeof title, "%s with a NULL pointer: EFAULT", name);
	FACT(id, title) {
		step_null("sys", name, nr, "kvm_cpuid2");
	}
}

/* KVM_GET_MSRS on /dev/kvm with `n` MSRs `idx`; `opaque`: the values are the host's. */
static void feature_msrs(const char *id, const char *title, const uint32_t *idx, unsigned n, int opaque) {
	FACT(id, title) {
		memset(&msrs, 0, sizeof msrs);
		msrs.h.nmsrs = n;
		for (unsigned i = 0; i < n; i++) msrs.e[i].index = idx[i];
		IO_PTR("sys", KVM_GET_MSRS, "kvm_msrs", &msrs, emit_msrs, opaque ? emit_msrs_opaque : emit_msrs);
	}
}

void record_system(void) {
	FACT("system.api-version", "KVM_GET_API_VERSION: 12") {
		IO_INT("sys", KVM_GET_API_VERSION, 0);
	}
	FACT("system.api-version.nonzero-arg", "KVM_GET_API_VERSION with a non-zero argument: EINVAL") {
		IO_INT("sys", KVM_GET_API_VERSION, 1);
	}
	FACT("system.vcpu-mmap-size", "KVM_GET_VCPU_MMAP_SIZE: the size of the vCPU's mmap area") {
		IO_INT("sys", KVM_GET_VCPU_MMAP_SIZE, 0);
	}
	FACT("system.vcpu-mmap-size.nonzero-arg", "KVM_GET_VCPU_MMAP_SIZE with a non-zero argument: EINVAL") {
		IO_INT("sys", KVM_GET_VCPU_MMAP_SIZE, 1);
	}

	static const struct { const char *id; uint64_t type; } types[] = {
		{ "system.create-vm.default", KVM_X86_DEFAULT_VM },
		{ "system.create-vm.sw-protected", KVM_X86_SW_PROTECTED_VM },
		{ "system.create-vm.sev", KVM_X86_SEV_VM },
		{ "system.create-vm.sev-es", KVM_X86_SEV_ES_VM },
		{ "system.create-vm.snp", KVM_X86_SNP_VM },
		{ "system.create-vm.tdx", KVM_X86_TDX_VM },
		{ "system.create-vm.type-6", 6 },
		{ "system.create-vm.type-64", 64 },
		{ "system.create-vm.type-all-ones", ~0ULL },
	};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		char title[120];
		snprintf(title, sizeof title, "KVM_CREATE_VM of type 0x%llx", (unsigned long long)types[i].type);
		FACT(types[i].id, title) {
			IO_BIND("sys", KVM_CREATE_VM, types[i].type, "vm");
		}
	}
	FACT("system.create-vm.two", "Two KVM_CREATE_VM on one /dev/kvm fd: two VMs") {
		IO_BIND("sys", KVM_CREATE_VM, 0, "vm");
		IO_BIND("sys", KVM_CREATE_VM, 0, "vm2");
	}

	FACT("system.check-extension.negative", "KVM_CHECK_EXTENSION(-1): 0") {
		IO_INT("sys", KVM_CHECK_EXTENSION, ~0ULL);
	}
	FACT("system.check-extension.above-32-bits", "KVM_CHECK_EXTENSION(1 << 32 | KVM_CAP_USER_MEMORY): the cap is a long") {
		IO_INT("sys", KVM_CHECK_EXTENSION, (1ULL << 32) | KVM_CAP_USER_MEMORY);
	}

	msr_list_facts("msr-index-list", LIST(KVM_GET_MSR_INDEX_LIST));
	msr_list_facts("msr-feature-index-list", LIST(KVM_GET_MSR_FEATURE_INDEX_LIST));

	static const uint32_t always[] = { 0x10a /* ARCH_CAPABILITIES */, 0x345 /* PERF_CAPABILITIES */, 0x8b /* UCODE_REV */ };
	feature_msrs("system.get-msrs.none", "KVM_GET_MSRS on /dev/kvm with nmsrs = 0: 0", always, 0, 1);
	feature_msrs("system.get-msrs.common-features", "KVM_GET_MSRS on /dev/kvm of ARCH_CAPABILITIES, PERF_CAPABILITIES, UCODE_REV: all three read (values are the host's)", always, 3, 1);
	feature_msrs("system.get-msrs.common-feature-values", "KVM_GET_MSRS on /dev/kvm: the values of ARCH_CAPABILITIES, PERF_CAPABILITIES, UCODE_REV", always, 3, 0);
	static const uint32_t stop[] = { 0x10a, 0x10 /* TSC: not a feature MSR */, 0x345 };
	feature_msrs("system.get-msrs.stops-at-non-feature", "KVM_GET_MSRS on /dev/kvm stops at the first MSR that is not a feature MSR (returns 1)", stop, 3, 1);
	static const uint32_t unknown[] = { 0x12345678 };
	feature_msrs("system.get-msrs.unknown", "KVM_GET_MSRS on /dev/kvm of an MSR that does not exist: 0 read", unknown, 1, 1);
	FACT("system.get-msrs.too-many", "KVM_GET_MSRS on /dev/kvm with nmsrs = 256 (MAX_IO_MSRS): E2BIG") {
		memset(&msrs, 0, sizeof msrs);
		msrs.h.nmsrs = 256;
		IO_PTR("sys", KVM_GET_MSRS, "kvm_msrs", &msrs, emit_msrs, NULL);
	}
	FACT("system.get-msrs.null", "KVM_GET_MSRS on /dev/kvm with a NULL pointer: EFAULT") {
		IO_NULL("sys", KVM_GET_MSRS, "kvm_msrs");
	}

	cpuid_facts("supported-cpuid", LIST(KVM_GET_SUPPORTED_CPUID));
	cpuid_facts("emulated-cpuid", LIST(KVM_GET_EMULATED_CPUID));

	FACT("system.mce-cap-supported", "KVM_X86_GET_MCE_CAP_SUPPORTED: the MCG_CAP bits KVM supports") {
		uint64_t v = 0;
		IO_PTR("sys", KVM_X86_GET_MCE_CAP_SUPPORTED, "__u64", &v, NULL, emit_u64p);
	}

	FACT("system.unknown-ioctl", "An ioctl number /dev/kvm does not know (_IO(KVMIO, 0xff)): EINVAL") {
		IO_INT("sys", _IO(KVMIO, 0xff), 0);
	}
	FACT("system.unknown-ioctl-read", "An unknown _IOR(KVMIO, 0xfe, __u64) on /dev/kvm: EINVAL") {
		IO_INT("sys", _IOR(KVMIO, 0xfe, __u64), 0);
	}
	FACT("system.wrong-ioc-type", "KVM_GET_API_VERSION's number with _IOC_TYPE 0xAF instead of KVMIO: EINVAL") {
		IO_INT("sys", _IO(0xAF, 0x00), 0);
	}
	FACT("system.vm-ioctl", "A VM ioctl (KVM_CREATE_VCPU) on /dev/kvm: EINVAL") {
		IO_INT("sys", KVM_CREATE_VCPU, 0);
	}
	FACT("system.vcpu-ioctl", "A vCPU ioctl (KVM_RUN) on /dev/kvm: EINVAL") {
		IO_INT("sys", KVM_RUN, 0);
	}
	FACT("system.set-tss-addr", "KVM_SET_TSS_ADDR on /dev/kvm: EINVAL") {
		IO_INT("sys", KVM_SET_TSS_ADDR, 0xfffbd000);
	}
}
