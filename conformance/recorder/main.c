/*
 * The conformance recorder: runs each fact on this machine's /dev/kvm and writes the kernel's answers to
 * <out>/<group>.json. Built and run by `pnpm conformance:record` (conformance/record/record.ts).
 *
 *   recorder --out DIR [--programs FILE] [--dev /dev/kvm] [GROUP...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "facts.h"
#include "groups.h"

struct group { const char *name; void (*record)(void); };

static const char *programs_path;
static void guest(void) { record_guest(programs_path); }

static const struct group groups[] = {
	{ "machine", record_machine },
	{ "caps", record_caps },
	{ "system", record_system },
	{ "vm", record_vm },
	{ "memslots", record_memslots },
	{ "vcpu", record_vcpu },
	{ "run", record_run },
	{ "irq", record_irq },
	{ "dirty-ring", record_dirty_ring },
	{ "xsave", record_xsave },
	{ "guest", guest },
};

static int wanted(const char *name, int argc, char **argv, int first) {
	if (first >= argc) return 1;
	for (int i = first; i < argc; i++)
		if (strcmp(argv[i], name) == 0) return 1;
	return 0;
}

int main(int argc, char **argv) {
	const char *out = NULL;
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (i + 1 >= argc) break;
		if (strcmp(argv[i], "--out") == 0) out = argv[i + 1];
		else if (strcmp(argv[i], "--programs") == 0) programs_path = argv[i + 1];
		else if (strcmp(argv[i], "--dev") == 0) kvm_path = argv[i + 1];
		else {
			fprintf(stderr, "recorder: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (!out) {
		fprintf(stderr, "usage: recorder --out DIR [--programs FILE] [--dev /dev/kvm] [GROUP...]\n");
		return 2;
	}
	/* On CPU 0 only, so what depends on the CPU (its APIC ID in CPUID leaf 1) is the same in every run. */
	cpu_set_t cpu0;
	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	if (sched_setaffinity(0, sizeof cpu0, &cpu0) != 0) perror("recorder: sched_setaffinity");
	for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
		if (!wanted(groups[g].name, argc, argv, i)) continue;
		if (strcmp(groups[g].name, "guest") == 0 && !programs_path) {
			fprintf(stderr, "recorder: the guest group needs --programs\n");
			return 2;
		}
		char path[4096];
		snprintf(path, sizeof path, "%s/%s.json", out, groups[g].name);
		FILE *f = fopen(path, "w");
		if (!f) {
			fprintf(stderr, "recorder: %s: %s\n", path, strerror(errno));
			return 2;
		}
		j_open(f);
		if (strcmp(groups[g].name, "machine") == 0) {
			groups[g].record();
		} else {
			group_begin(groups[g].name);
			groups[g].record();
			group_end();
		}
		fclose(f);
		fprintf(stderr, "recorder: wrote %s\n", path);
	}
	return 0;
}
