/**
 * @file daemon_opts.h
 * Configuration plumbing shared by the Ferry daemons (ferry-memsrv,
 * ferry-pager): an INI file (inih) whose every key can be overridden by a
 * command-line flag, both fed through the daemon's one setter so a value is
 * checked the same way wherever it comes from.
 *
 * The daemon owns its keys, defaults, validation, usage text and messages;
 * this module owns the mechanics: -c/--config, -h/--help, -V/--version,
 * "flags override the file" whatever order they are given in, the option
 * errors, and reading the file with line numbers for error messages.
 */
#ifndef FERRY_DAEMON_OPTS_H
#define FERRY_DAEMON_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/transport/transport.h"   /* enum fx_kind only: no link dependency */

/** Set [@p section] @p key = @p value; @p origin ("file:line" or "--flag") prefixes errors. */
typedef int (*daemon_opts_set_fn)(void *cfg, const char *section, const char *key, const char *value,
				  const char *origin, struct ferry_err *err);

/** getopt values from here up have no short option. */
#define DAEMON_OPTS_LONG_ONLY 1000

/** A flag that sets one config key; every flag takes a value. */
struct daemon_flag {
	const char *name;            /**< long name without "--" */
	int val;                     /**< short option character, or DAEMON_OPTS_LONG_ONLY + n */
	const char *section, *key;
};

struct daemon_cli {
	const char *prog;            /**< --version prints "<prog> <version>" */
	const char *version;
	const struct daemon_flag *flags;
	size_t nflags;
	void (*usage)(FILE *out, const char *argv0);
	/** Read the file named by -c/--config into @p cfg. */
	int (*load_file)(void *cfg, const char *path, struct ferry_err *err);
	daemon_opts_set_fn set;
};

/**
 * Parse @p argv: load the -c/--config file (if any) through cli->load_file,
 * then apply every other flag through cli->set. Defaults and validation are
 * the caller's (before and after). --help / --version print to @p out.
 * @return 0 = run, 1 = help or version printed (exit 0), < 0 = error in @p err.
 */
int daemon_opts_parse(const struct daemon_cli *cli, void *cfg, int argc, char **argv, FILE *out,
		      struct ferry_err *err);

struct daemon_ini {
	daemon_opts_set_fn set;
	void *cfg;
	/** Lines longer than inih's buffer are an error ("line too long") instead of being split. */
	bool reject_long_lines;
	/**
	 * Which problem of several to report: false = the first in the file;
	 * true = a bad key or value before any syntax error.
	 */
	bool key_errors_first;
	/** If not NULL: where @p path is recorded once the whole file loaded fine. */
	char *loaded_path;
	size_t loaded_path_cap;
};

/**
 * Read the INI file @p path, calling ini->set for every key with origin
 * "path:line"; stops reporting at the first problem.
 * @return 0 or < 0 with the message in @p err.
 */
int daemon_ini_load(const struct daemon_ini *ini, const char *path, struct ferry_err *err);

/** Decimal integer 0..@p max, no sign, blanks or suffix. @return 0 or -EINVAL. */
int daemon_parse_uint(const char *value, uint64_t max, uint64_t *out);

/*
 * Keys every daemon has, wherever they live: each sets its value from @p value
 * or fails with "<origin>: [<section>] <key>: <why>" in @p err.
 */

/** error, warn, info or debug. */
int daemon_set_log_level(int *level, const char *value, const char *origin, const char *section,
			 const char *key, struct ferry_err *err);
/** tcp or rdma. */
int daemon_set_transport(enum fx_kind *kind, const char *value, const char *origin, const char *section,
			 const char *key, struct ferry_err *err);
/** A file path (secret_file, ready_file): not empty, shorter than @p cap. */
int daemon_set_path(char *dst, size_t cap, const char *value, const char *origin, const char *section,
		    const char *key, struct ferry_err *err);

#endif /* FERRY_DAEMON_OPTS_H */
