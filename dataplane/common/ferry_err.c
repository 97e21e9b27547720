#include "dataplane/common/ferry_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ferry_err_set(struct ferry_err *err, int code, const char *fmt, ...)
{
	int neg = code > 0 ? -code : code;

	if (neg == 0)
		neg = -1;
	if (!err)
		return neg;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = neg;
	return neg;
}

int ferry_err_prefix(struct ferry_err *err, const char *fmt, ...)
{
	if (!err)
		return -1;
	char prefix[FERRY_ERR_MSG_MAX];
	char old[FERRY_ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Both parts are bounded by FERRY_ERR_MSG_MAX; truncating the joined text is intended. */
	size_t plen = strnlen(prefix, sizeof(err->msg) - 1);
	memcpy(err->msg, prefix, plen);
	size_t olen = strnlen(old, sizeof(err->msg) - 1 - plen);
	memcpy(err->msg + plen, old, olen);
	err->msg[plen + olen] = '\0';
	return err->code ? err->code : -1;
}

void ferry_err_clear(struct ferry_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
