/*
 * A streaming JSON writer for the recorder: objects, arrays, integers, strings. 64-bit fields are written
 * as "0x..." strings (JSON numbers cannot carry them exactly); narrower integers as numbers.
 */
#ifndef RECORDER_JSON_H
#define RECORDER_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Write to `f` from now on (resets the nesting state). */
void j_open(FILE *f);
/* The current output. */
FILE *j_file(void);

/* `key` is NULL inside arrays. */
void j_obj(const char *key);
void j_end_obj(void);
void j_arr(const char *key);
void j_end_arr(void);
/* A newline before the next element (one fact per line in the golden files). */
void j_newline(void);

/* A __u64 / __s64 field: "0x..." (two's complement for negatives). */
void j_u64(const char *key, uint64_t v);
/* A narrower integer (__u8 … __u32, __s32, int): a JSON number. */
void j_int(const char *key, int64_t v);
void j_str(const char *key, const char *s);
void j_bool(const char *key, int v);
/* Bytes as an array of numbers. */
void j_u8s(const char *key, const uint8_t *p, size_t n);
/* Bytes as one hex string. */
void j_hex(const char *key, const uint8_t *p, size_t n);

#endif
