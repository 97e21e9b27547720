/*
 * Daemon configuration plumbing: INI file + command-line flags.
 *
 * Flags are collected in a first getopt pass and applied after the file, so
 * "flags override the file" holds whatever order they are given in.
 */
#include "dataplane/common/daemon_opts.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"

int daemon_parse_uint(const char *value, uint64_t max, uint64_t *out)
{
	char *end;

	if (!value[0] || value[0] == '-' || value[0] == '+' || value[0] == ' ')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(value, &end, 10);

	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int daemon_set_log_level(int *level, const char *value, const char *origin, const char *section,
			 const char *key, struct ferry_err *err)
{
	int lvl = ferry_log_parse_level(value);

	if (lvl < 0)
		return ferry_err_set(err, EINVAL, "%s: [%s] %s: '%s' is not a log level (error, warn, info or debug)",
				     origin, section, key, value);
	*level = lvl;
	return 0;
}

int daemon_set_transport(enum fx_kind *kind, const char *value, const char *origin, const char *section,
			 const char *key, struct ferry_err *err)
{
	/* Parsed here rather than with fx_kind_parse so that the daemons' config
	 * modules do not need the transport library to be linked. */
	if (strcmp(value, "tcp") == 0)
		*kind = FX_KIND_TCP;
	else if (strcmp(value, "rdma") == 0)
		*kind = FX_KIND_RDMA;
	else
		return ferry_err_set(err, EINVAL, "%s: [%s] %s: '%s' is not a transport (tcp or rdma)", origin,
				     section, key, value);
	return 0;
}

int daemon_set_path(char *dst, size_t cap, const char *value, const char *origin, const char *section,
		    const char *key, struct ferry_err *err)
{
	size_t len = strlen(value);

	if (len == 0 || len >= cap)
		return ferry_err_set(err, EINVAL, "%s: [%s] %s: path empty or too long", origin, section, key);
	memcpy(dst, value, len + 1);
	return 0;
}

/* ------------------------------------------------------------ file */

struct ini_state {
	const struct daemon_ini *ini;
	const char *path;
	FILE *file;
	int line;                 /* lines read so far = line of the handler call */
	int long_line;            /* first line longer than inih's buffer, 0 if none */
	int err_line;             /* line of the first handler error, 0 if none */
	struct ferry_err first;
};

/*
 * fgets wrapper that counts lines, so handler errors can name their line
 * (Debian's inih is built without INI_HANDLER_LINENO), and (if asked) that
 * notices lines too long for inih's buffer instead of letting it parse the
 * tail as a line.
 */
static char *ini_read_line(char *str, int num, void *stream)
{
	struct ini_state *st = stream;

	if (!fgets(str, num, st->file))
		return NULL;
	st->line++;
	size_t len = strlen(str);

	if (st->ini->reject_long_lines && len > 0 && str[len - 1] != '\n' && !feof(st->file)) {
		int c;

		if (!st->long_line)
			st->long_line = st->line;
		while ((c = fgetc(st->file)) != EOF && c != '\n')
			;
		str[0] = '\0';   /* hand inih an empty line instead of a fragment */
	}
	return str;
}

static int ini_handler_cb(void *user, const char *section, const char *name, const char *value)
{
	struct ini_state *st = user;
	char origin[PATH_MAX + 16];

	if (st->err_line)
		return 1;   /* report only the first problem */
	snprintf(origin, sizeof(origin), "%s:%d", st->path, st->line);
	if (st->ini->set(st->ini->cfg, section, name, value, origin, &st->first)) {
		st->err_line = st->line;
		return 0;
	}
	return 1;
}

int daemon_ini_load(const struct daemon_ini *ini, const char *path, struct ferry_err *err)
{
	struct ini_state st = { .ini = ini, .path = path };
	int rc;

	st.file = fopen(path, "re");
	if (!st.file)
		return ferry_err_set(err, errno, "config file %s: %s", path, strerror(errno));
	rc = ini_parse_stream(ini_read_line, &st, ini_handler_cb, &st);
	fclose(st.file);

	/* Report whichever problem comes first in the file (or a key error first, if asked). */
	int syntax_line = rc > 0 && rc != st.err_line && !(ini->key_errors_first && st.err_line) ? rc : 0;
	int first = 0;

	if (st.long_line)
		first = st.long_line;
	if (st.err_line && (!first || st.err_line < first))
		first = st.err_line;
	if (syntax_line && (!first || syntax_line < first))
		first = syntax_line;

	if (!first && rc == 0) {
		if (ini->loaded_path)
			snprintf(ini->loaded_path, ini->loaded_path_cap, "%s", path);
		return 0;
	}
	if (first == st.err_line && st.err_line) {
		*err = st.first;
		return err->code ? err->code : -EINVAL;
	}
	if (first == st.long_line && st.long_line)
		return ferry_err_set(err, EINVAL, "%s:%d: line too long (at most %d characters)", path, first,
				     INI_MAX_LINE - 2);
	if (first)
		return ferry_err_set(err, EINVAL, "%s:%d: syntax error (expected '[section]' or 'key = value')",
				     path, first);
	return ferry_err_set(err, EIO, "config file %s: cannot be parsed (inih error %d)", path, rc);
}

/* ------------------------------------------------------------ command line */

enum { OPT_HELP = 'h', OPT_VERSION = 'V', OPT_CONFIG = 'c' };

int daemon_opts_parse(const struct daemon_cli *cli, void *cfg, int argc, char **argv, FILE *out,
		      struct ferry_err *err)
{
	struct option *longopts;
	char *shortopts;
	const char *config_path = NULL;
	struct { const struct daemon_flag *f; const char *arg; } *pending;
	size_t npending = 0, n = 0;
	int rc = 0, opt;

	pending = calloc((size_t)argc + 1, sizeof(*pending));
	longopts = calloc(cli->nflags + 4, sizeof(*longopts));
	shortopts = calloc(2 * cli->nflags + 8, 1);
	if (!pending || !longopts || !shortopts) {
		rc = ferry_err_set(err, ENOMEM, "out of memory");
		goto out;
	}

	strcpy(shortopts, ":hVc:");
	for (size_t i = 0; i < cli->nflags; i++) {
		longopts[n++] = (struct option){ cli->flags[i].name, required_argument, NULL, cli->flags[i].val };
		if (cli->flags[i].val < DAEMON_OPTS_LONG_ONLY) {
			size_t l = strlen(shortopts);

			shortopts[l] = (char)cli->flags[i].val;
			shortopts[l + 1] = ':';
			shortopts[l + 2] = '\0';
		}
	}
	longopts[n++] = (struct option){ "config", required_argument, NULL, OPT_CONFIG };
	longopts[n++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	longopts[n++] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
	longopts[n] = (struct option){ 0 };

	optind = 0;   /* full getopt reset: callable more than once (unit tests) */
	opterr = 0;   /* we word the errors ourselves */
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		const char *bad = argv[optind - 1];

		switch (opt) {
		case OPT_HELP:
			cli->usage(out, argv[0]);
			rc = 1;
			goto out;
		case OPT_VERSION:
			fprintf(out, "%s %s\n", cli->prog, cli->version);
			rc = 1;
			goto out;
		case OPT_CONFIG:
			config_path = optarg;
			break;
		case ':':
			rc = ferry_err_set(err, EINVAL, "option '%s' needs a value (see --help)", bad);
			goto out;
		case '?':
			rc = ferry_err_set(err, EINVAL, "unknown option '%s' (see --help)", bad);
			goto out;
		default:
			for (size_t i = 0; i < cli->nflags; i++) {
				if (cli->flags[i].val == opt) {
					pending[npending].f = &cli->flags[i];
					pending[npending++].arg = optarg;
					break;
				}
			}
			break;
		}
	}
	if (optind < argc) {
		rc = ferry_err_set(err, EINVAL, "unexpected argument '%s' (see --help)", argv[optind]);
		goto out;
	}

	if (config_path) {
		rc = cli->load_file(cfg, config_path, err);
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < npending; i++) {
		char origin[64];

		snprintf(origin, sizeof(origin), "--%s", pending[i].f->name);
		rc = cli->set(cfg, pending[i].f->section, pending[i].f->key, pending[i].arg, origin, err);
		if (rc)
			goto out;
	}
out:
	free(shortopts);
	free(longopts);
	free(pending);
	return rc;
}
