/**
 * @file ferry_err.h
 * Error reporting shared by every Ferry module.
 *
 * Every function that can fail returns a negative errno-style value and, when
 * the caller passes a `struct ferry_err`, fills it with a one-line message a
 * human can act on ("pool full: 64 MiB requested, 12 MiB free"). Callers that
 * do not care pass NULL.
 */
#ifndef FERRY_ERR_H
#define FERRY_ERR_H

#include <stddef.h>

#define FERRY_ERR_MSG_MAX 256

/** A failure: negative errno-style code plus a printable message. */
struct ferry_err {
	int code;                      /**< negative errno, 0 when no error */
	char msg[FERRY_ERR_MSG_MAX];   /**< NUL-terminated, never empty when code != 0 */
};

/**
 * Record an error. @p code is a positive or negative errno; it is stored and
 * returned negative so that `return ferry_err_set(err, ENOMEM, "...")` works.
 * @p err may be NULL.
 */
int ferry_err_set(struct ferry_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** Prefix an already-set message with more context ("connect 10.0.0.2: "). */
int ferry_err_prefix(struct ferry_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/** Clear @p err (may be NULL). */
void ferry_err_clear(struct ferry_err *err);

#endif /* FERRY_ERR_H */
