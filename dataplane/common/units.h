/**
 * @file units.h
 * Byte sizes as people write them: "512M", "1G", "64k", "4096".
 * Suffixes are binary (K = 1024) and case-insensitive; an optional trailing
 * "B" or "iB" is accepted ("1GiB", "512MB").
 */
#ifndef FERRY_UNITS_H
#define FERRY_UNITS_H

#include <stddef.h>
#include <stdint.h>

/**
 * Parse @p text into *@p bytes. Rejects empty strings, signs, fractions,
 * unknown suffixes, trailing garbage and overflow. @return 0 or -EINVAL/-ERANGE.
 */
int ferry_size_parse(const char *text, uint64_t *bytes);

/**
 * Format @p bytes for log lines and error messages: "64 MiB", "1.5 GiB",
 * "4096 B". @return @p buf.
 */
const char *ferry_size_format(uint64_t bytes, char *buf, size_t len);

/** Buffer size that always fits ferry_size_format's output. */
#define FERRY_SIZE_STR 32

#endif /* FERRY_UNITS_H */
