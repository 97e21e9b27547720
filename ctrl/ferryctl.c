/*
 * ferryctl: the CLI of ferryd.
 *
 *   ferryctl [-s SOCKET | -C HOST:PORT -k SECRET] [--json] [-t MS] COMMAND
 *
 * By default it talks to the local ferryd over its Unix socket (root or the
 * configured allowed_uid, no secret needed); -C talks to any ferryd over TCP
 * with the cluster secret. Exit status: 0 done, 1 ferryd refused or the
 * operation failed (its ERROR is printed), 2 usage, 3 ferryd unreachable.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctrl/ferryctl.h"
#include "ctrl/ferryctl_client.h"
#include "dataplane/common/units.h"

#define DEFAULT_SOCKET "/run/ferry/ferryd.sock"

static struct ferry_ctrl_msg req, rep;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: ferryctl [OPTIONS] COMMAND [ARGS]\n"
		"\n"
		"Commands:\n"
		"  status                         this ferryd: node, roles, supervised processes\n"
		"  nodes                          the cluster: state, load, memory, scores, accept node\n"
		"  vms                            every VM: state and node\n"
		"  stats                          this ferryd's counters\n"
		"  migrate VM --to MAIN --sub-hosts A,B [--budget SIZE] [--mode precopy|postcopy|planned]\n"
		"                                 split-migrate VM; shows progress until it ends\n"
		"  hibernate VM                   hibernate VM on its node\n"
		"  resume VM [--on NODE]          resume VM on NODE, or on the least-loaded node\n"
		"  abort VM                       abort VM's migration\n"
		"\n"
		"Options:\n"
		"  -s, --socket PATH      local ferryd's Unix socket (default %s, or $FERRYD_SOCKET)\n"
		"  -C, --connect H:P      a ferryd over TCP instead (needs --secret-file)\n"
		"  -k, --secret-file P    the cluster secret, for --connect\n"
		"  -j, --json             JSON output (one document; JSON lines for migrate progress)\n"
		"  -t, --timeout MS       per reply (default 10000; migrate/hibernate/resume: 300000)\n"
		"  -h, --help\n",
		DEFAULT_SOCKET);
}

struct opts {
	const char *socket, *connect, *secret;
	bool json;
	int timeout_ms;
	const char *to, *subs, *budget, *mode, *on;
};

static int connect_ferryd(const struct opts *o, struct ctl_client *c, int timeout_ms)
{
	struct ferry_err err = { 0 };
	int rc;

	if (o->connect) {
		struct ferry_secret secret;

		if (!o->secret) {
			fprintf(stderr, "ferryctl: --connect needs --secret-file\n");
			return 2;
		}
		if (ferry_auth_init(&err) < 0 || ferry_secret_load(o->secret, &secret, &err) < 0) {
			fprintf(stderr, "ferryctl: %s\n", err.msg);
			return 3;
		}
		rc = ctl_client_open_tcp(c, o->connect, &secret, "ferryctl", timeout_ms, &err);
		ferry_secret_wipe(&secret);
	} else {
		rc = ctl_client_open_unix(c, o->socket, timeout_ms, &err);
	}
	if (rc < 0) {
		fprintf(stderr, "ferryctl: %s\n", err.msg);
		return 3;
	}
	return 0;
}

/* Send req, print the one reply. */
static int simple(const struct opts *o, struct ctl_client *c, const char *what)
{
	struct ferry_err err = { 0 };
	int rc = ctl_client_call(c, &req, &rep, &err);

	if (rc == -EREMOTEIO) {
		print_error(stdout, what, rep.u.error.code, rep.u.error.msg, o->json);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "ferryctl: %s: %s\n", what, err.msg);
		return 3;
	}
	switch (rep.hdr.type) {
	case FERRY_CTRL_STATUS_OK:
		print_status(stdout, &rep.u.status, o->json);
		break;
	case FERRY_CTRL_NODES_OK:
		print_nodes(stdout, &rep.u.nodes, o->json);
		break;
	case FERRY_CTRL_VMS_OK:
		print_vms(stdout, &rep.u.vms, o->json);
		break;
	case FERRY_CTRL_STATS_OK:
		print_stats(stdout, &rep.u.stats_ok, o->json);
		break;
	case FERRY_CTRL_OK:
		if (o->json)
			printf("{\"ok\":%llu}\n", (unsigned long long)rep.u.ok);
		else
			printf("ok\n");
		break;
	default:
		fprintf(stderr, "ferryctl: %s: unexpected reply %s\n", what, ferry_ctrl_type_name(rep.hdr.type));
		return 1;
	}
	return 0;
}

static int migrate(const struct opts *o, struct ctl_client *c)
{
	struct ferry_err err = { 0 };
	bool tty = isatty(STDOUT_FILENO);
	int rc = ctl_client_send(c, &req, &err);

	if (rc < 0) {
		fprintf(stderr, "ferryctl: migrate: %s\n", err.msg);
		return 3;
	}
	for (;;) {
		rc = ctl_client_recv(c, &rep, &err);
		if (rc < 0) {
			if (tty && !o->json)
				fputc('\n', stdout);
			fprintf(stderr, "ferryctl: migrate: %s\n", err.msg);
			return 3;
		}
		if (rep.hdr.type == FERRY_CTRL_ERROR) {
			if (tty && !o->json)
				fputc('\n', stdout);
			print_error(stdout, "migrate", rep.u.error.code, rep.u.error.msg, o->json);
			return 1;
		}
		if (rep.hdr.type != FERRY_CTRL_PROGRESS) {
			fprintf(stderr, "ferryctl: migrate: unexpected reply %s\n", ferry_ctrl_type_name(rep.hdr.type));
			return 1;
		}
		print_progress(stdout, &rep.u.progress, o->json, tty);
		if (rep.u.progress.flags & FERRY_CTRL_PROGRESS_FINAL)
			return rep.u.progress.phase == FERRY_CTRL_PHASE_DONE ? 0 : 1;
	}
}

static int set_name(char *dst, const char *what, const char *value)
{
	if (!value || ferry_ctrl_check_name(value) != FERRY_CTRL_E_OK) {
		fprintf(stderr, "ferryctl: %s '%s' is not a name (1..64 of A-Z a-z 0-9 . _ -)\n", what,
			value ? value : "");
		return -1;
	}
	snprintf(dst, FERRY_CTRL_NAME_MAX + 1, "%s", value);
	return 0;
}

static int build_migrate(const struct opts *o, const char *vm)
{
	struct ferry_ctrl_migrate *m = &req.u.migrate;
	char subs[1024], *save = NULL;

	req.hdr.type = FERRY_CTRL_MIGRATE;
	if (set_name(m->vm, "VM", vm) || !o->to || set_name(m->main, "--to", o->to))
		return -1;
	if (!o->subs || strlen(o->subs) >= sizeof(subs)) {
		fprintf(stderr, "ferryctl: migrate needs --sub-hosts A,B,...\n");
		return -1;
	}
	snprintf(subs, sizeof(subs), "%s", o->subs);
	for (char *t = strtok_r(subs, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (m->sub_count == FERRY_CTRL_SUBHOSTS_MAX) {
			fprintf(stderr, "ferryctl: at most %u sub-hosts\n", FERRY_CTRL_SUBHOSTS_MAX);
			return -1;
		}
		if (set_name(m->sub[m->sub_count++], "sub-host", t))
			return -1;
	}
	if (!m->sub_count) {
		fprintf(stderr, "ferryctl: migrate needs at least one sub-host\n");
		return -1;
	}
	m->mode = ferry_ctrl_mode_parse(o->mode ? o->mode : "precopy");
	if (!m->mode) {
		fprintf(stderr, "ferryctl: --mode '%s': want precopy, postcopy or planned\n", o->mode);
		return -1;
	}
	if (o->budget && ferry_size_parse(o->budget, &m->budget)) {
		fprintf(stderr, "ferryctl: --budget '%s' is not a size (e.g. 512M)\n", o->budget);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },  { "connect", required_argument, NULL, 'C' },
		{ "secret-file", required_argument, NULL, 'k' }, { "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' }, { "help", no_argument, NULL, 'h' },
		{ "to", required_argument, NULL, 1 },        { "sub-hosts", required_argument, NULL, 2 },
		{ "budget", required_argument, NULL, 3 },    { "mode", required_argument, NULL, 4 },
		{ "on", required_argument, NULL, 5 },        { NULL, 0, NULL, 0 },
	};
	struct opts o = { .socket = getenv("FERRYD_SOCKET") ? getenv("FERRYD_SOCKET") : DEFAULT_SOCKET };
	struct ctl_client c;
	const char *cmd, *arg = NULL;
	int opt, rc, timeout;
	bool is_long;

	while ((opt = getopt_long(argc, argv, "+s:C:k:jt:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': o.socket = optarg; break;
		case 'C': o.connect = optarg; break;
		case 'k': o.secret = optarg; break;
		case 'j': o.json = true; break;
		case 't':
			o.timeout_ms = atoi(optarg);
			if (o.timeout_ms <= 0) {
				fprintf(stderr, "ferryctl: --timeout '%s': want milliseconds > 0\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		case 1: o.to = optarg; break;
		case 2: o.subs = optarg; break;
		case 3: o.budget = optarg; break;
		case 4: o.mode = optarg; break;
		case 5: o.on = optarg; break;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	/* Command options may follow the command and its argument: parse the rest too. */
	while (optind < argc) {
		if (argv[optind][0] != '-') {
			if (arg) {
				fprintf(stderr, "ferryctl: unexpected argument '%s'\n", argv[optind]);
				return 2;
			}
			arg = argv[optind++];
			continue;
		}
		opt = getopt_long(argc, argv, "+s:C:k:jt:h", longopts, NULL);
		switch (opt) {
		case 'j': o.json = true; break;
		case 1: o.to = optarg; break;
		case 2: o.subs = optarg; break;
		case 3: o.budget = optarg; break;
		case 4: o.mode = optarg; break;
		case 5: o.on = optarg; break;
		case -1: break;
		default: usage(stderr); return 2;
		}
	}

	memset(&req, 0, sizeof(req));
	is_long = false;
	if (!strcmp(cmd, "status") || !strcmp(cmd, "nodes") || !strcmp(cmd, "vms") || !strcmp(cmd, "stats")) {
		req.hdr.type = !strcmp(cmd, "status") ? FERRY_CTRL_STATUS
			       : !strcmp(cmd, "nodes") ? FERRY_CTRL_NODES
			       : !strcmp(cmd, "vms")   ? FERRY_CTRL_VMS
						       : FERRY_CTRL_STATS;
		if (arg) {
			fprintf(stderr, "ferryctl: %s takes no argument\n", cmd);
			return 2;
		}
	} else if (!strcmp(cmd, "hibernate") || !strcmp(cmd, "resume") || !strcmp(cmd, "abort")) {
		req.hdr.type = !strcmp(cmd, "hibernate") ? FERRY_CTRL_HIBERNATE
			       : !strcmp(cmd, "resume")  ? FERRY_CTRL_RESUME
							 : FERRY_CTRL_ABORT;
		if (set_name(req.u.vm_req.vm, "VM", arg))
			return 2;
		if (o.on && (req.hdr.type != FERRY_CTRL_RESUME || set_name(req.u.vm_req.node, "--on", o.on)))
			return 2;
		is_long = req.hdr.type != FERRY_CTRL_ABORT;
	} else if (!strcmp(cmd, "migrate")) {
		if (build_migrate(&o, arg))
			return 2;
		is_long = true;
	} else {
		fprintf(stderr, "ferryctl: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}

	timeout = o.timeout_ms ? o.timeout_ms : (is_long ? 300000 : 10000);
	rc = connect_ferryd(&o, &c, timeout);
	if (rc)
		return rc;
	rc = req.hdr.type == FERRY_CTRL_MIGRATE ? migrate(&o, &c) : simple(&o, &c, cmd);
	ctl_client_close(&c);
	return rc;
}
