#include "json.h"

#include <stdlib.h>

#define MAX_DEPTH 64

static FILE *out;
static int depth;
static int first[MAX_DEPTH];
static int want_newline;

void j_open(FILE *f) {
	out = f;
	depth = 0;
	first[0] = 1;
	want_newline = 0;
}

FILE *j_file(void) { return out; }

static void put_string(const char *s);

static void key(const char *k) {
	if (!first[depth]) fputc(',', out);
	first[depth] = 0;
	if (want_newline) {
		fputc('\n', out);
		want_newline = 0;
	}
	if (k) {
		put_string(k);
		fputc(':', out);
	}
}

static void push(char c) {
	fputc(c, out);
	if (++depth >= MAX_DEPTH) {
		fprintf(stderr, "recorder: JSON nested too deeply\n");
		exit(2);
	}
	first[depth] = 1;
}

void j_obj(const char *k) { key(k); push('{'); }
void j_arr(const char *k) { key(k); push('['); }
void j_end_obj(void) { depth--; fputc('}', out); }
void j_end_arr(void) { depth--; fputc(']', out); }
void j_newline(void) { want_newline = 1; }

void j_u64(const char *k, uint64_t v) {
	key(k);
	fprintf(out, "\"0x%llx\"", (unsigned long long)v);
}

void j_int(const char *k, int64_t v) {
	key(k);
	fprintf(out, "%lld", (long long)v);
}

void j_bool(const char *k, int v) {
	key(k);
	fputs(v ? "true" : "false", out);
}

void j_str(const char *k, const char *s) {
	key(k);
	put_string(s);
}

static void put_string(const char *s) {
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
		else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
		else fputc(*p, out);
	}
	fputc('"', out);
}

void j_u8s(const char *k, const uint8_t *p, size_t n) {
	j_arr(k);
	for (size_t i = 0; i < n; i++) j_int(NULL, p[i]);
	j_end_arr();
}

void j_hex(const char *k, const uint8_t *p, size_t n) {
	key(k);
	fputc('"', out);
	for (size_t i = 0; i < n; i++) fprintf(out, "%02x", p[i]);
	fputc('"', out);
}
