#include "dataplane/common/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int ferry_size_parse(const char *text, uint64_t *bytes)
{
	uint64_t value = 0;
	unsigned shift = 0;
	const char *p = text;

	if (!text || !isdigit((unsigned char)*p))
		return -EINVAL;   /* also rejects "", "-1", "+1", " 1" */
	for (; isdigit((unsigned char)*p); p++) {
		unsigned digit = (unsigned)(*p - '0');

		if (value > (UINT64_MAX - digit) / 10)
			return -ERANGE;
		value = value * 10 + digit;
	}
	switch (*p) {
	case 'k': case 'K': shift = 10; p++; break;
	case 'm': case 'M': shift = 20; p++; break;
	case 'g': case 'G': shift = 30; p++; break;
	case 't': case 'T': shift = 40; p++; break;
	default: break;
	}
	/* "1G", "1GB", "1GiB", "4096B" are all fine; "1iB" is not. */
	if (shift && (strcasecmp(p, "ib") == 0 || strcasecmp(p, "b") == 0))
		p += strlen(p);
	else if (!shift && strcasecmp(p, "b") == 0)
		p++;
	if (*p != '\0')
		return -EINVAL;
	if (shift && value > (UINT64_MAX >> shift))
		return -ERANGE;
	*bytes = value << shift;
	return 0;
}

const char *ferry_size_format(uint64_t bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;

	while (u < 6 && bytes >= (1ull << (10 * (u + 1))))
		u++;
	/* Exact bytes below 1 MiB unless a whole unit: "4095 B" beats "4.0 KiB". */
	if (u == 0 || (u == 1 && (bytes & 1023))) {
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	} else if ((bytes & ((1ull << (10 * u)) - 1)) == 0) {
		snprintf(buf, len, "%llu %s", (unsigned long long)(bytes >> (10 * u)), unit[u]);
	} else {
		/* Not a whole number of units: one decimal is enough for humans. */
		double v = (double)bytes / (double)(1ull << (10 * u));

		snprintf(buf, len, "%.1f %s", v, unit[u]);
	}
	return buf;
}
