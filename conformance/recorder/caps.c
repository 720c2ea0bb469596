/* Group "caps": KVM_CHECK_EXTENSION of every capability number on the system fd and on a VM fd. */
#include <stdio.h>

#include "capnames.h"
#include "groups.h"
#include "structs.h"

/* Capability numbers recorded: 0 … CAP_LAST. */
#define CAP_LAST 255

static const char *cap_name(int cap, char *buf, size_t n) {
	if (cap < (int)(sizeof cap_names / sizeof cap_names[0]) && cap_names[cap]) return cap_names[cap];
	snprintf(buf, n, "KVM_CAP_%d", cap);
	return buf;
}

void record_caps(void) {
	char id[96], title[160], nb[32];
	for (int cap = 0; cap <= CAP_LAST; cap++) {
		const char *name = cap_name(cap, nb, sizeof nb);
		snprintf(id, sizeof id, "cap.system.%s", name);
		snprintf(title, sizeof title, "KVM_CHECK_EXTENSION(%s = %d) on /dev/kvm", name, cap);
		FACT(id, title) {
			IO_INT("sys", KVM_CHECK_EXTENSION, cap);
		}
	}
	for (int cap = 0; cap <= CAP_LAST; cap++) {
		const char *name = cap_name(cap, nb, sizeof nb);
		snprintf(id, sizeof id, "cap.vm.%s", name);
		snprintf(title, sizeof title, "KVM_CHECK_EXTENSION(%s = %d) on a VM fd", name, cap);
		FACT(id, title) {
			IO_BIND("sys", KVM_CREATE_VM, 0, "vm");
			IO_INT("vm", KVM_CHECK_EXTENSION, cap);
		}
	}
}
