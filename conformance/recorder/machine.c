/*
 * Group "machine": what the facts were recorded on — the kernel (uname), the KVM modules and their
 * parameters (/sys/module/kvm*), the host CPU (CPUID), the number of online CPUs. Not facts: the test
 * reads it to build a model host of the same size and to say where the facts come from.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "groups.h"
#include "json.h"

static void read_line(const char *path, char *buf, size_t n) {
	FILE *f = fopen(path, "r");
	buf[0] = 0;
	if (!f) return;
	if (fgets(buf, (int)n, f)) buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

static void modules(void) {
	j_arr("modules");
	DIR *d = opendir("/sys/module");
	struct dirent *e;
	char names[32][256];
	int n = 0;
	while (d && (e = readdir(d)) && n < 32)
		if (strncmp(e->d_name, "kvm", 3) == 0) snprintf(names[n++], sizeof names[0], "%.200s", e->d_name);
	if (d) closedir(d);
	qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
	for (int i = 0; i < n; i++) {
		j_obj(NULL);
		j_str("name", names[i]);
		j_obj("parameters");
		char dir[512];
		snprintf(dir, sizeof dir, "/sys/module/%.200s/parameters", names[i]);
		struct dirent **list;
		int m = scandir(dir, &list, NULL, alphasort);
		for (int k = 0; k < m; k++) {
			if (list[k]->d_name[0] != '.') {
				char path[1024], val[256];
				snprintf(path, sizeof path, "%.400s/%.200s", dir, list[k]->d_name);
				read_line(path, val, sizeof val);
				j_str(list[k]->d_name, val);
			}
			free(list[k]);
		}
		if (m > 0) free(list);
		j_end_obj();
		j_end_obj();
	}
	j_end_arr();
}

static void cpuid_leaf(unsigned leaf, unsigned sub) {
	unsigned a, b, c, d;
	__cpuid_count(leaf, sub, a, b, c, d);
	j_obj(NULL);
	j_int("function", leaf);
	j_int("index", sub);
	j_int("eax", a);
	j_int("ebx", b);
	j_int("ecx", c);
	j_int("edx", d);
	j_end_obj();
}

static void vendor(const char *key, unsigned leaf) {
	unsigned a, b, c, d;
	char s[13];
	__cpuid(leaf, a, b, c, d);
	if (leaf == 0) {
		memcpy(s, &b, 4); memcpy(s + 4, &d, 4); memcpy(s + 8, &c, 4);
	} else {
		memcpy(s, &b, 4); memcpy(s + 4, &c, 4); memcpy(s + 8, &d, 4);
	}
	s[12] = 0;
	for (int i = 0; i < 12; i++)
		if (s[i] && (s[i] < 0x20 || s[i] > 0x7e)) s[i] = '?';
	j_str(key, s);
}

void record_machine(void) {
	struct utsname u;
	uname(&u);
	char model[256] = "";
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[1024];
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "model name", 10) == 0) {
			char *p = strchr(line, ':');
			if (p) snprintf(model, sizeof model, "%s", p + 2);
			model[strcspn(model, "\n")] = 0;
			break;
		}
	if (f) fclose(f);

	j_obj(NULL);
	j_int("schema", 1);
	j_str("group", "machine");
	j_obj("uname");
	j_str("sysname", u.sysname);
	j_str("release", u.release);
	j_str("version", u.version);
	j_str("machine", u.machine);
	j_end_obj();
	j_int("online_cpus", sysconf(_SC_NPROCESSORS_ONLN));
	j_obj("cpu");
	j_str("model_name", model);
	vendor("vendor", 0);
	vendor("hypervisor", 0x40000000);
	j_arr("cpuid");
	cpuid_leaf(0, 0);
	cpuid_leaf(1, 0);
	cpuid_leaf(7, 0);
	cpuid_leaf(0xd, 0);
	cpuid_leaf(0xd, 1);
	cpuid_leaf(0x40000000, 0);
	cpuid_leaf(0x80000000, 0);
	cpuid_leaf(0x80000001, 0);
	cpuid_leaf(0x80000008, 0);
	j_end_arr();
	j_end_obj();
	modules();
	j_end_obj();
	fputc('\n', j_file());
}
