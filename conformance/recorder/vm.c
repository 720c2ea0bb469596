/*
 * Group "vm": the ioctls of a VM fd other than memory slots — KVM_CREATE_VCPU limits, SET_TSS_ADDR,
 * SET_IDENTITY_MAP_ADDR, the in-kernel irqchip's creation order, the clock, KVM_ENABLE_CAP, MMU pages,
 * coalesced MMIO, ioeventfd, MSR filters, boot CPU, and ioctl numbers a VM fd does not know.
 */
#include <stdio.h>
#include <string.h>

#include "groups.h"
#include "structs.h"

#define VM() IO_BIND("sys", KVM_CREATE_VM, 0, "vm")

static void enable_cap_fact(const char *id, const char *title, const char *fd, uint32_t cap, uint32_t flags, uint64_t a0, uint64_t a1) {
	FACT(id, title) {
		VM();
		/* "vcpu0": on the vCPU fd; "vm+vcpu0": on the VM fd once vCPU 0 exists. */
		if (strcmp(fd, "vcpu0") == 0 || strcmp(fd, "vm+vcpu0") == 0) IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		if (strcmp(fd, "vm+vcpu0") == 0) fd = "vm";
		struct kvm_enable_cap c = { .cap = cap, .flags = flags, .args = { a0, a1 } };
		IO_PTR(fd, KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
	}
}

static void create_vcpu_facts(void) {
	FACT("vm.create-vcpu.first", "KVM_CREATE_VCPU(0): a vCPU fd") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
	}
	FACT("vm.create-vcpu.duplicate", "KVM_CREATE_VCPU twice with id 0: EEXIST") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0b");
	}
	FACT("vm.create-vcpu.max-id", "KVM_CREATE_VCPU(KVM_MAX_VCPU_IDS - 1 = 4095)") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 4095, "vcpu4095");
	}
	FACT("vm.create-vcpu.id-too-big", "KVM_CREATE_VCPU(KVM_MAX_VCPU_IDS = 4096): EINVAL") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 4096, "vcpu4096");
	}
	FACT("vm.create-vcpu.id-minus-one", "KVM_CREATE_VCPU(-1): EINVAL") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, ~0ULL, "vcpu");
	}
	FACT("vm.create-vcpu.id-above-32-bits", "KVM_CREATE_VCPU(1 << 32): the id is an unsigned long, not truncated") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 1ULL << 32, "vcpu");
	}
	FACT("vm.create-vcpu.ids-not-dense", "KVM_CREATE_VCPU(7) then (3): ids need not be dense") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 7, "vcpu7");
		IO_BIND("vm", KVM_CREATE_VCPU, 3, "vcpu3");
	}
	FACT("vm.create-vcpu.max-vcpus", "1024 vCPUs (KVM_MAX_VCPUS) are created, the next one is refused") {
		VM();
		step_create_vcpus("vm", 0, 1024);
		IO_BIND("vm", KVM_CREATE_VCPU, 1024, "vcpu1024");
	}
	FACT("vm.create-vcpu.close-keeps-vcpu", "Closing a vCPU fd keeps the vCPU: its id is still taken") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		step_close("vcpu0");
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0b");
	}
	FACT("vm.max-vcpu-id.lower", "KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID, 4): id 3 is created, id 4 is refused") {
		VM();
		struct kvm_enable_cap c = { .cap = KVM_CAP_MAX_VCPU_ID, .args = { 4 } };
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
		IO_BIND("vm", KVM_CREATE_VCPU, 3, "vcpu3");
		IO_BIND("vm", KVM_CREATE_VCPU, 4, "vcpu4");
	}
	FACT("vm.max-vcpu-id.change", "KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID) again: the same value succeeds, another is refused") {
		VM();
		struct kvm_enable_cap c = { .cap = KVM_CAP_MAX_VCPU_ID, .args = { 4 } };
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
		c.args[0] = 8;
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
	}
	FACT("vm.max-vcpu-id.too-big", "KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID, 4097): EINVAL") {
		VM();
		struct kvm_enable_cap c = { .cap = KVM_CAP_MAX_VCPU_ID, .args = { 4097 } };
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
	}
	FACT("vm.max-vcpu-id.after-vcpu", "KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID) after a vCPU exists") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		struct kvm_enable_cap c = { .cap = KVM_CAP_MAX_VCPU_ID, .args = { 4 } };
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
	}
}

static void address_facts(void) {
	static const struct { const char *id; uint64_t addr; } tss[] = {
		{ "vm.set-tss-addr.usual", 0xfffbd000 },
		{ "vm.set-tss-addr.zero", 0 },
		{ "vm.set-tss-addr.crosses-4g", 0xfffff000 },
		{ "vm.set-tss-addr.last-below-4g", 0xffffd000 },
		{ "vm.set-tss-addr.above-4g", 0x100000000ULL },
		{ "vm.set-tss-addr.unaligned", 0xfffbd001 },
	};
	for (size_t i = 0; i < sizeof tss / sizeof tss[0]; i++) {
		char title[120];
		snprintf(title, sizeof title, "KVM_SET_TSS_ADDR(0x%llx)", (unsigned long long)tss[i].addr);
		FACT(tss[i].id, title) {
			VM();
			IO_INT("vm", KVM_SET_TSS_ADDR, tss[i].addr);
		}
	}
	FACT("vm.set-tss-addr.after-vcpu", "KVM_SET_TSS_ADDR after a vCPU exists") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		IO_INT("vm", KVM_SET_TSS_ADDR, 0xfffbd000);
	}
	FACT("vm.set-tss-addr.twice", "KVM_SET_TSS_ADDR twice") {
		VM();
		IO_INT("vm", KVM_SET_TSS_ADDR, 0xfffbd000);
		IO_INT("vm", KVM_SET_TSS_ADDR, 0xfeffd000);
	}
	FACT("vm.set-identity-map-addr.usual", "KVM_SET_IDENTITY_MAP_ADDR(0xfeffc000)") {
		VM();
		uint64_t a = 0xfeffc000;
		IO_PTR("vm", KVM_SET_IDENTITY_MAP_ADDR, "__u64", &a, emit_u64p, NULL);
	}
	FACT("vm.set-identity-map-addr.after-vcpu", "KVM_SET_IDENTITY_MAP_ADDR after a vCPU exists") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		uint64_t a = 0xfeffc000;
		IO_PTR("vm", KVM_SET_IDENTITY_MAP_ADDR, "__u64", &a, emit_u64p, NULL);
	}
	FACT("vm.set-identity-map-addr.null", "KVM_SET_IDENTITY_MAP_ADDR with a NULL pointer: EFAULT") {
		VM();
		IO_NULL("vm", KVM_SET_IDENTITY_MAP_ADDR, "__u64");
	}
	FACT("vm.set-boot-cpu-id.before-vcpus", "KVM_SET_BOOT_CPU_ID(1) before any vCPU") {
		VM();
		IO_INT("vm", KVM_SET_BOOT_CPU_ID, 1);
	}
	FACT("vm.set-boot-cpu-id.after-vcpu", "KVM_SET_BOOT_CPU_ID(1) after a vCPU exists: EBUSY") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		IO_INT("vm", KVM_SET_BOOT_CPU_ID, 1);
	}
}

static void irqchip_facts(void) {
	FACT("vm.create-irqchip.once", "KVM_CREATE_IRQCHIP") {
		VM();
		IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
	}
	FACT("vm.create-irqchip.twice", "KVM_CREATE_IRQCHIP twice: EEXIST") {
		VM();
		IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
		IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
	}
	FACT("vm.create-irqchip.after-vcpu", "KVM_CREATE_IRQCHIP after a vCPU exists: EINVAL") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
	}
	FACT("vm.create-irqchip.after-split", "KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, 24), then KVM_CREATE_IRQCHIP: EEXIST") {
		VM();
		struct kvm_enable_cap c = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { 24 } };
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
		IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
	}
	FACT("vm.split-irqchip.after-irqchip", "KVM_CREATE_IRQCHIP, then KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, 24): EEXIST") {
		VM();
		IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
		struct kvm_enable_cap c = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { 24 } };
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
	}
	FACT("vm.create-pit2.without-irqchip", "KVM_CREATE_PIT2 without an irqchip: ENOENT") {
		VM();
		struct kvm_pit_config pc = { 0 };
		IO_PTR("vm", KVM_CREATE_PIT2, "kvm_pit_config", &pc, emit_pit_config, NULL);
	}
	FACT("vm.create-pit2.with-irqchip", "KVM_CREATE_IRQCHIP then KVM_CREATE_PIT2; a second PIT: EEXIST") {
		VM();
		IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
		struct kvm_pit_config pc = { 0 };
		IO_PTR("vm", KVM_CREATE_PIT2, "kvm_pit_config", &pc, emit_pit_config, NULL);
		IO_PTR("vm", KVM_CREATE_PIT2, "kvm_pit_config", &pc, emit_pit_config, NULL);
	}
	FACT("vm.irq-line.without-irqchip", "KVM_IRQ_LINE without an irqchip: ENXIO") {
		VM();
		struct kvm_irq_level l = { .irq = 4, .level = 1 };
		IO_PTR("vm", KVM_IRQ_LINE, "kvm_irq_level", &l, emit_irq_level, NULL);
	}
}

static void clock_facts(void) {
	FACT("vm.get-clock", "KVM_GET_CLOCK: the flags (the clock itself is a time)") {
		VM();
		struct kvm_clock_data c = { 0 };
		IO_PTR("vm", KVM_GET_CLOCK, "kvm_clock_data", &c, NULL, emit_clock_data);
	}
	FACT("vm.set-clock.zero", "KVM_SET_CLOCK(clock 0, flags 0)") {
		VM();
		struct kvm_clock_data c = { 0 };
		IO_PTR("vm", KVM_SET_CLOCK, "kvm_clock_data", &c, emit_clock_data, NULL);
	}
	FACT("vm.set-clock.bad-flags", "KVM_SET_CLOCK with an unknown flag: EINVAL") {
		VM();
		struct kvm_clock_data c = { .flags = 0x80 };
		IO_PTR("vm", KVM_SET_CLOCK, "kvm_clock_data", &c, emit_clock_data, NULL);
	}
}

static void enable_cap_facts(void) {
	enable_cap_fact("vm.enable-cap.unknown", "KVM_ENABLE_CAP of a capability that cannot be enabled (KVM_CAP_IRQCHIP): EINVAL", "vm", KVM_CAP_IRQCHIP, 0, 0, 0);
	enable_cap_fact("vm.enable-cap.user-space-msr", "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_INVAL)", "vm", KVM_CAP_X86_USER_SPACE_MSR, 0, 1, 0);
	enable_cap_fact("vm.enable-cap.user-space-msr.bad-mask", "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR) with an unknown reason bit: EINVAL", "vm", KVM_CAP_X86_USER_SPACE_MSR, 0, 0x100, 0);
	enable_cap_fact("vm.enable-cap.exception-payload", "KVM_ENABLE_CAP(KVM_CAP_EXCEPTION_PAYLOAD, 1)", "vm", KVM_CAP_EXCEPTION_PAYLOAD, 0, 1, 0);
	enable_cap_fact("vm.enable-cap.manual-dirty-log-protect2", "KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 3)", "vm", KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 0, 3, 0);
	enable_cap_fact("vm.enable-cap.manual-dirty-log-protect2.bad", "KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 4): EINVAL", "vm", KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 0, 4, 0);
	enable_cap_fact("vm.enable-cap.triple-fault-event", "KVM_ENABLE_CAP(KVM_CAP_X86_TRIPLE_FAULT_EVENT, 1)", "vm", KVM_CAP_X86_TRIPLE_FAULT_EVENT, 0, 1, 0);
	enable_cap_fact("vm.enable-cap.disable-exits.hlt", "KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS, HLT)", "vm", KVM_CAP_X86_DISABLE_EXITS, 0, KVM_X86_DISABLE_EXITS_HLT, 0);
	enable_cap_fact("vm.enable-cap.disable-exits.bad", "KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) with an unknown bit: EINVAL", "vm", KVM_CAP_X86_DISABLE_EXITS, 0, 0x100, 0);
	enable_cap_fact("vm.enable-cap.disable-exits.after-vcpu", "KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) after a vCPU exists", "vm+vcpu0", KVM_CAP_X86_DISABLE_EXITS, 0, KVM_X86_DISABLE_EXITS_PAUSE, 0);
	enable_cap_fact("vm.enable-cap.disable-quirks2", "KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2, 0)", "vm", KVM_CAP_DISABLE_QUIRKS2, 0, 0, 0);
	enable_cap_fact("vm.enable-cap.disable-quirks2.bad", "KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2) with an unknown quirk: EINVAL", "vm", KVM_CAP_DISABLE_QUIRKS2, 0, 1ULL << 40, 0);
	enable_cap_fact("vm.enable-cap.split-irqchip", "KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, 24)", "vm", KVM_CAP_SPLIT_IRQCHIP, 0, 24, 0);
	enable_cap_fact("vm.enable-cap.split-irqchip.too-many-pins", "KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, 1000): EINVAL", "vm", KVM_CAP_SPLIT_IRQCHIP, 0, 1000, 0);
	enable_cap_fact("vm.enable-cap.bad-flags", "KVM_ENABLE_CAP(KVM_CAP_EXCEPTION_PAYLOAD) with flags = 1: EINVAL", "vm", KVM_CAP_EXCEPTION_PAYLOAD, 1, 1, 0);
	enable_cap_fact("vm.enable-cap.vcpu-unknown", "KVM_ENABLE_CAP on a vCPU fd of a capability it cannot enable (KVM_CAP_IRQCHIP): EINVAL", "vcpu0", KVM_CAP_IRQCHIP, 0, 0, 0);
}

/* KVM_ENABLE_CAP(KVM_CAP_X86_APIC_BUS_CYCLES_NS) after `setup` (0: nothing, 1: an irqchip, 2: an irqchip and vCPU 0). */
static void apic_bus_fact(const char *id, const char *title, int setup, uint64_t ns) {
	FACT(id, title) {
		VM();
		if (setup >= 1) IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
		if (setup >= 2) IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		struct kvm_enable_cap c = { .cap = KVM_CAP_X86_APIC_BUS_CYCLES_NS, .args = { ns } };
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
	}
}

/* KVM_SET_PMU_EVENT_FILTER with `n` events (at most PMU_FILTER_BUF_EVENTS are given). */
static void pmu_filter_fact(const char *id, const char *title, uint32_t action, uint32_t flags, uint32_t n, const uint64_t *events) {
	FACT(id, title) {
		VM();
		struct pmu_filter_buf f = { .h = { .action = action, .nevents = n, .fixed_counter_bitmap = 0, .flags = flags } };
		for (uint32_t i = 0; i < n && i < PMU_FILTER_BUF_EVENTS; i++) f.events[i] = events[i];
		IO_PTR("vm", KVM_SET_PMU_EVENT_FILTER, "kvm_pmu_event_filter", &f, emit_pmu_event_filter, NULL);
	}
}

static void pmu_filter_facts(void) {
	const uint64_t plain[] = { 0x1c0, 0x10000c4, 0x3c };
	const uint64_t masked[] = { (1ULL << 55) | 0xc0, 0x3c, (0xfeULL << 56) | 0x1c0 };
	const uint64_t masked_bad[] = { 0x3c, 1ULL << 36 };
	pmu_filter_fact("vm.pmu-filter.allow", "KVM_SET_PMU_EVENT_FILTER(ALLOW) of three events, one impossible", KVM_PMU_EVENT_ALLOW, 0, 3, plain);
	pmu_filter_fact("vm.pmu-filter.deny-empty", "KVM_SET_PMU_EVENT_FILTER(DENY) of no events", KVM_PMU_EVENT_DENY, 0, 0, plain);
	pmu_filter_fact("vm.pmu-filter.bad-action", "KVM_SET_PMU_EVENT_FILTER with action 2: EINVAL", 2, 0, 1, plain);
	pmu_filter_fact("vm.pmu-filter.bad-flags", "KVM_SET_PMU_EVENT_FILTER with flags 2: EINVAL", KVM_PMU_EVENT_DENY, 2, 1, plain);
	pmu_filter_fact("vm.pmu-filter.too-many", "KVM_SET_PMU_EVENT_FILTER of 301 events: E2BIG", KVM_PMU_EVENT_DENY, 0, 301, plain);
	pmu_filter_fact("vm.pmu-filter.masked", "KVM_SET_PMU_EVENT_FILTER(ALLOW, MASKED_EVENTS): an exclude and two includes", KVM_PMU_EVENT_ALLOW, KVM_PMU_EVENT_FLAG_MASKED_EVENTS, 3, masked);
	pmu_filter_fact("vm.pmu-filter.masked-bad", "KVM_SET_PMU_EVENT_FILTER(MASKED_EVENTS) with bit 36 in an entry: EINVAL", KVM_PMU_EVENT_DENY, KVM_PMU_EVENT_FLAG_MASKED_EVENTS, 2, masked_bad);
	pmu_filter_fact("vm.pmu-filter.plain-bit36", "KVM_SET_PMU_EVENT_FILTER (not masked) with bit 36 in an event: dropped, 0", KVM_PMU_EVENT_DENY, 0, 2, masked_bad);
}

static void new_cap_facts(void) {
	pmu_filter_facts();
	/* (2^64 - 1) / (U32_MAX * 128): the largest cycle tmict_to_ns cannot overflow with. */
	const uint64_t largest = UINT64_MAX / ((uint64_t)UINT32_MAX * 128);
	apic_bus_fact("vm.apic-bus-cycles.no-irqchip", "KVM_ENABLE_CAP(KVM_CAP_X86_APIC_BUS_CYCLES_NS, 10) without an irqchip: ENXIO", 0, 10);
	apic_bus_fact("vm.apic-bus-cycles.zero", "KVM_ENABLE_CAP(KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0): EINVAL", 1, 0);
	apic_bus_fact("vm.apic-bus-cycles.overflow", "KVM_ENABLE_CAP(KVM_CAP_X86_APIC_BUS_CYCLES_NS) one above the overflow bound: EINVAL", 1, largest + 1);
	apic_bus_fact("vm.apic-bus-cycles.largest", "KVM_ENABLE_CAP(KVM_CAP_X86_APIC_BUS_CYCLES_NS) at the overflow bound", 1, largest);
	apic_bus_fact("vm.apic-bus-cycles.after-vcpu", "KVM_ENABLE_CAP(KVM_CAP_X86_APIC_BUS_CYCLES_NS, 10) after a vCPU exists: EINVAL", 2, 10);
	/* The recorder runs as root (CAP_SYS_BOOT). */
	enable_cap_fact("vm.disable-nx-huge-pages", "KVM_ENABLE_CAP(KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, 0) with CAP_SYS_BOOT", "vm", KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, 0, 0, 0);
	enable_cap_fact("vm.disable-nx-huge-pages.arg", "KVM_ENABLE_CAP(KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, 1): EINVAL", "vm", KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, 0, 1, 0);
	enable_cap_fact("vm.disable-nx-huge-pages.after-vcpu", "KVM_ENABLE_CAP(KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, 0) after a vCPU exists: EINVAL", "vm+vcpu0", KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, 0, 0, 0);
}

static void misc_facts(void) {
	FACT("vm.enable-cap.null", "KVM_ENABLE_CAP with a NULL pointer: EFAULT") {
		VM();
		IO_NULL("vm", KVM_ENABLE_CAP, "kvm_enable_cap");
	}
	FACT("vm.nr-mmu-pages.set-get", "KVM_SET_NR_MMU_PAGES(64), then KVM_GET_NR_MMU_PAGES") {
		VM();
		IO_INT("vm", KVM_SET_NR_MMU_PAGES, 64);
		IO_INT("vm", KVM_GET_NR_MMU_PAGES, 0);
	}
	FACT("vm.nr-mmu-pages.too-few", "KVM_SET_NR_MMU_PAGES(10): below KVM_MIN_ALLOC_MMU_PAGES") {
		VM();
		IO_INT("vm", KVM_SET_NR_MMU_PAGES, 10);
	}
	FACT("vm.coalesced-mmio.register-unregister", "KVM_REGISTER_COALESCED_MMIO, then KVM_UNREGISTER_COALESCED_MMIO of the same zone") {
		VM();
		struct kvm_coalesced_mmio_zone z = { .addr = 0xe0000000, .size = 0x1000 };
		IO_PTR("vm", KVM_REGISTER_COALESCED_MMIO, "kvm_coalesced_mmio_zone", &z, emit_coalesced_zone, NULL);
		IO_PTR("vm", KVM_UNREGISTER_COALESCED_MMIO, "kvm_coalesced_mmio_zone", &z, emit_coalesced_zone, NULL);
	}
	FACT("vm.ioeventfd.bad-flags", "KVM_IOEVENTFD with an unknown flag: EINVAL") {
		VM();
		struct kvm_ioeventfd e = { .addr = 0x3f8, .len = 1, .fd = -1, .flags = 0x100 };
		IO_PTR("vm", KVM_IOEVENTFD, "kvm_ioeventfd", &e, emit_ioeventfd, NULL);
	}
	FACT("vm.ioeventfd.bad-fd", "KVM_IOEVENTFD(PIO 0x3f8, len 1) with fd -1: EBADF") {
		VM();
		struct kvm_ioeventfd e = { .addr = 0x3f8, .len = 1, .fd = -1, .flags = KVM_IOEVENTFD_FLAG_PIO };
		IO_PTR("vm", KVM_IOEVENTFD, "kvm_ioeventfd", &e, emit_ioeventfd, NULL);
	}
	FACT("vm.msr-filter.default-allow", "KVM_X86_SET_MSR_FILTER with no ranges and default allow") {
		VM();
		struct kvm_msr_filter f = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };
		IO_PTR("vm", KVM_X86_SET_MSR_FILTER, "kvm_msr_filter", &f, emit_msr_filter, NULL);
	}
	FACT("vm.msr-filter.bad-flags", "KVM_X86_SET_MSR_FILTER with an unknown flag: EINVAL") {
		VM();
		struct kvm_msr_filter f = { .flags = 0x80 };
		IO_PTR("vm", KVM_X86_SET_MSR_FILTER, "kvm_msr_filter", &f, emit_msr_filter, NULL);
	}
	FACT("vm.memory-encrypt-op", "KVM_MEMORY_ENCRYPT_OP(KVM_SEV_INIT) on a default VM") {
		VM();
		uint64_t cmd[3] = { 0 };
		IO_PTR("vm", KVM_MEMORY_ENCRYPT_OP, "kvm_sev_cmd", cmd, emit_sev_cmd, NULL);
	}
	FACT("vm.get-stats-fd", "KVM_GET_STATS_FD on a VM fd: a new fd") {
		VM();
		IO_BIND("vm", KVM_GET_STATS_FD, 0, "stats");
	}
	FACT("vm.get-dirty-log.no-slot", "KVM_GET_DIRTY_LOG of a slot that does not exist: ENOENT") {
		VM();
		struct kvm_dirty_log d = { .slot = 0 };
		IO_PTR("vm", KVM_GET_DIRTY_LOG, "kvm_dirty_log", &d, emit_dirty_log, NULL);
	}
	FACT("vm.unknown-ioctl", "An ioctl number a VM fd does not know (_IO(KVMIO, 0xff)): ENOTTY") {
		VM();
		IO_INT("vm", _IO(KVMIO, 0xff), 0);
	}
	FACT("vm.wrong-ioc-type", "KVM_CREATE_VCPU's number with _IOC_TYPE 0xAF: ENOTTY") {
		VM();
		IO_INT("vm", _IO(0xAF, 0x41), 0);
	}
	FACT("vm.system-ioctl", "A /dev/kvm ioctl (KVM_GET_API_VERSION) on a VM fd") {
		VM();
		IO_INT("vm", KVM_GET_API_VERSION, 0);
	}
	FACT("vm.create-vm-ioctl", "KVM_CREATE_VM on a VM fd") {
		VM();
		IO_BIND("vm", KVM_CREATE_VM, 0, "vm2");
	}
	FACT("vm.vcpu-ioctl", "A vCPU ioctl (KVM_RUN) on a VM fd") {
		VM();
		IO_INT("vm", KVM_RUN, 0);
	}
	FACT("vm.get-regs", "KVM_GET_REGS on a VM fd") {
		VM();
		struct kvm_regs r;
		memset(&r, 0, sizeof r);
		IO_PTR("vm", KVM_GET_REGS, "kvm_regs", &r, NULL, NULL);
	}
}

void record_vm(void) {
	create_vcpu_facts();
	address_facts();
	irqchip_facts();
	clock_facts();
	enable_cap_facts();
	new_cap_facts();
	misc_facts();
	record_vm_dirty_ring();
}
