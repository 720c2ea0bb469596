/*
 * Group "guest": the seeded real-mode programs of conformance/programs (written by the record script as
 * programs.txt). Each runs from its initial registers and memory until HLT (or any exit that is not I/O, or
 * 64 exits); after every exit the registers, the segment registers and the memory that changed are
 * recorded. An IN gets data that depends only on the exit's number, so the model can be given the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "groups.h"
#include "guestvm.h"

#define MAX_EXITS 64

static uint8_t image[GUEST_MEM];

static int hexval(char c) {
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void run_program(const char *id, const char *title, const struct guest_regs *r) {
	FACT(id, title) {
		guest_setup(image, 0, r);
		for (int exit = 0; exit < MAX_EXITS; exit++) {
			long ret = guest_run();
			struct kvm_run *run = guest_kvm_run();
			if (ret < 0) break;
			guest_get_regs();
			guest_get_segments();
			step_mem("m0", image, GUEST_MEM);
			if (run->exit_reason != KVM_EXIT_IO) break;
			if (run->io.direction == KVM_EXIT_IO_IN) {
				uint8_t data[64];
				size_t n = (size_t)run->io.size * run->io.count;
				if (n > sizeof data) n = sizeof data;
				for (size_t i = 0; i < n; i++) data[i] = (uint8_t)(0x3d + 0x55 * exit + 0x11 * i);
				step_pio_data("vcpu0", data, n);
			}
		}
	}
}

void record_guest(const char *path) {
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		exit(2);
	}
	static char line[1 << 17];
	char id[128] = "", title[512] = "";
	struct guest_regs r;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (strncmp(line, "program ", 8) == 0) {
			char *sp = strchr(line + 8, ' ');
			if (sp) *sp = 0;
			snprintf(id, sizeof id, "%.120s", line + 8);
			snprintf(title, sizeof title, "%.500s", sp ? sp + 1 : "");
			memset(image, 0, sizeof image);
			memset(&r, 0, sizeof r);
		} else if (strncmp(line, "regs ", 5) == 0) {
			unsigned long long v[13];
			if (sscanf(line + 5, "%llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12]) != 13) {
				fprintf(stderr, "recorder: bad regs line in %s\n", path);
				exit(2);
			}
			r = (struct guest_regs){ .rax = v[0], .rbx = v[1], .rcx = v[2], .rdx = v[3], .rsi = v[4], .rdi = v[5], .rbp = v[6], .rsp = v[7], .rflags = v[8], .rip = v[9], .ds = (uint16_t)v[10], .es = (uint16_t)v[11], .ss = (uint16_t)v[12] };
		} else if (strncmp(line, "mem ", 4) == 0) {
			char *end;
			unsigned long addr = strtoul(line + 4, &end, 16);
			const char *h = end + 1;
			for (size_t i = 0; h[2 * i] && h[2 * i + 1]; i++) {
				if (addr + i >= GUEST_MEM) break;
				image[addr + i] = (uint8_t)(hexval(h[2 * i]) << 4 | hexval(h[2 * i + 1]));
			}
		} else if (strcmp(line, "end") == 0) {
			run_program(id, title, &r);
		}
	}
	fclose(f);
}
