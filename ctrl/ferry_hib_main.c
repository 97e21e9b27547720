/*
 * ferry-hib: drive the hibernation library (ctrl/hib.h) by hand and from tests.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctrl/hib.h"
#include "dataplane/common/ferry_log.h"
#include "dataplane/common/units.h"

static const char usage[] =
	"usage: ferry-hib --state DIR [options] COMMAND ...\n"
	"\n"
	"commands:\n"
	"  define NAME --ram SIZE -- QEMU-ARGV...  define a VM (its QEMU command line without RAM/QMP options)\n"
	"  start NAME                              boot it (RAM in RAM_DIR/NAME.ferry-ram, QMP in DIR/NAME.qmp)\n"
	"  hibernate NAME                          stop it, device state + used RAM pages into the pool (kept\n"
	"                                          extents: the image outlives this process), quit\n"
	"  resume NAME                             claim the image (from any process or node using the same\n"
	"                                          memory server), RAM back, QEMU -incoming, cont\n"
	"  hibernate-file NAME IMAGE / resume-file NAME IMAGE\n"
	"                                          the seed's way, for comparisons: the whole state, RAM\n"
	"                                          included, in one file on disk; no pool\n"
	"  destroy NAME                            quit it / drop its pool image; the definition stays\n"
	"  status NAME                             stopped | running PID | hibernated\n"
	"  idle NAME --tap TAP [--window S] [--cpu-max PCT] [--qga SOCK] [--forbid P1,P2]\n"
	"                                          is it idle (exit 0) or busy (exit 1)?\n"
	"  shell                                   read commands (\"hibernate NAME\", \"resume NAME\",\n"
	"                                          \"status NAME\", \"quit\") from stdin, one reply line each\n"
	"                                          (\"ok {json}\" | \"error MESSAGE\"), one pool session throughout\n"
	"\n"
	"options:\n"
	"  --state DIR         state directory (VM records, manifests, QMP sockets, QEMU logs)\n"
	"  --pool HOST:PORT    memory server holding the images (default 127.0.0.1:7470)\n"
	"  --secret FILE       cluster secret (default /etc/ferry/secret)\n"
	"  --transport tcp|rdma\n"
	"  --ram-dir DIR       where guest RAM files live (default /dev/shm)\n"
	"  --no-verify         skip the checksum of pages read back on resume\n"
	"  --client-name NAME  our name at the memory server (default ferry-hib)\n"
	"  --transient         accepted and ignored (images no longer depend on this process)\n"
	"\n"
	"Images are kept extents of the memory server: they outlive the process that stored them\n"
	"(the manifest, mode 0600, holds their claim tokens) and are lost only if the memory server\n"
	"itself restarts. Resume claims them from any process; destroy discards them.\n"
	"Output: one JSON object on stdout per command (stats and times in ms).\n";

static void print_stats(FILE *out, const char *what, const char *name, const struct hib_stats *s)
{
	fprintf(out,
		"{\"op\":\"%s\",\"vm\":\"%s\",\"ram_bytes\":%llu,\"data_pages\":%llu,\"zero_pages\":%llu,"
		"\"stored_pages\":%llu,\"stored_bytes\":%llu,\"dev_bytes\":%llu,\"runs\":%u,\"pid\":%d,"
		"\"t_stop\":%.3f,\"t_devstate\":%.3f,\"t_scan\":%.3f,\"t_pool\":%.3f,\"t_quit\":%.3f,"
		"\"t_ram\":%.3f,\"t_qemu_up\":%.3f,\"t_incoming\":%.3f,\"t_cont\":%.3f,\"t_total\":%.3f}\n",
		what, name, (unsigned long long)s->ram_bytes, (unsigned long long)s->data_pages,
		(unsigned long long)s->zero_pages, (unsigned long long)s->stored_pages,
		(unsigned long long)s->stored_bytes, (unsigned long long)s->dev_bytes, s->runs, (int)s->pid, s->t_stop,
		s->t_devstate, s->t_scan, s->t_pool, s->t_quit, s->t_ram, s->t_qemu_up, s->t_incoming, s->t_cont,
		s->t_total);
	fflush(out);
}

static int cmd_status(struct hib *h, const char *name, FILE *out, struct ferry_err *err)
{
	enum hib_vm_state st;
	pid_t pid;
	int rc = hib_query(h, name, &st, &pid, err);

	if (!rc)
		fprintf(out, "{\"op\":\"status\",\"vm\":\"%s\",\"state\":\"%s\",\"pid\":%d}\n", name, hib_state_name(st),
			(int)pid);
	fflush(out);
	return rc;
}

static int cmd_shell(struct hib *h)
{
	char line[512];

	while (fgets(line, sizeof(line), stdin)) {
		char cmd[32] = "", name[HIB_NAME_MAX + 16] = "";
		struct hib_stats s;
		struct ferry_err err = { 0 };
		int rc = 0;

		if (sscanf(line, "%31s %63s", cmd, name) < 1)
			continue;
		if (strcmp(cmd, "quit") == 0)
			break;
		char *buf = NULL;
		size_t blen = 0;
		FILE *out = open_memstream(&buf, &blen);

		if (!out)
			return 1;
		if (strcmp(cmd, "hibernate") == 0 && (rc = hib_hibernate(h, name, &s, &err)) == 0)
			print_stats(out, cmd, name, &s);
		else if (strcmp(cmd, "resume") == 0 && (rc = hib_resume(h, name, &s, &err)) == 0)
			print_stats(out, cmd, name, &s);
		else if (strcmp(cmd, "status") == 0)
			rc = cmd_status(h, name, out, &err);
		else if (strcmp(cmd, "hibernate") && strcmp(cmd, "resume") && strcmp(cmd, "status"))
			rc = ferry_err_set(&err, EINVAL, "unknown command %s", cmd);
		fclose(out);
		if (rc)
			printf("error %s\n", err.msg);
		else
			printf("ok %s", buf);
		free(buf);
		fflush(stdout);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "state", required_argument, NULL, 's' },   { "pool", required_argument, NULL, 'p' },
		{ "secret", required_argument, NULL, 'k' },  { "transport", required_argument, NULL, 't' },
		{ "ram-dir", required_argument, NULL, 'r' }, { "no-verify", no_argument, NULL, 'V' },
		{ "ram", required_argument, NULL, 'm' },     { "tap", required_argument, NULL, 'T' },
		{ "window", required_argument, NULL, 'w' },  { "cpu-max", required_argument, NULL, 'c' },
		{ "qga", required_argument, NULL, 'q' },     { "forbid", required_argument, NULL, 'f' },
		{ "transient", no_argument, NULL, 'X' },     { "help", no_argument, NULL, 'h' },
		{ "client-name", required_argument, NULL, 'n' },
		{ 0 }
	};
	struct hib_opts o = { .pool_port = 7470 };
	struct hib_idle_opts io = { 0 };
	char pool_host[64] = "127.0.0.1", *forbid_list = NULL;
	const char *forbid[33] = { 0 };
	uint64_t ram = 0;
	double window = 2;
	struct hib *h = NULL;
	struct ferry_err err = { 0 };
	struct hib_stats s;
	int c, rc = 0;

	ferry_log_set_level(FERRY_LOG_WARN);
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's': o.state_dir = optarg; break;
		case 'p': {
			char *colon = strrchr(optarg, ':');

			if (!colon || colon == optarg || atoi(colon + 1) <= 0 || atoi(colon + 1) > 65535) {
				fprintf(stderr, "ferry-hib: --pool wants HOST:PORT, not %s\n", optarg);
				return 2;
			}
			snprintf(pool_host, sizeof(pool_host), "%.*s", (int)(colon - optarg), optarg);
			o.pool_port = (uint16_t)atoi(colon + 1);
			break;
		}
		case 'k': o.secret_path = optarg; break;
		case 't':
			if (fx_kind_parse(optarg, &o.transport)) {
				fprintf(stderr, "ferry-hib: unknown transport %s\n", optarg);
				return 2;
			}
			break;
		case 'r': o.ram_dir = optarg; break;
		case 'V': o.no_verify = true; break;
		case 'm':
			if (ferry_size_parse(optarg, &ram)) {
				fprintf(stderr, "ferry-hib: bad size %s\n", optarg);
				return 2;
			}
			break;
		case 'T': io.tap = optarg; break;
		case 'w': window = atof(optarg); break;
		case 'c': io.cpu_max_pct = atof(optarg); break;
		case 'q': io.qga_path = optarg; break;
		case 'f': forbid_list = optarg; break;
		case 'X': break;	/* the old opt-in to a session-bound image: every image is kept now */
		case 'n': o.client_name = optarg; break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	o.pool_host = pool_host;
	if (!o.state_dir || optind >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	const char *cmd = argv[optind], *name = optind + 1 < argc ? argv[optind + 1] : NULL;

	if (strcmp(cmd, "shell") != 0 && !name) {
		fprintf(stderr, "ferry-hib %s: which VM?\n", cmd);
		return 2;
	}
	if (hib_open(&o, &h, &err)) {
		fprintf(stderr, "ferry-hib: %s\n", err.msg);
		return 1;
	}
	if (strcmp(cmd, "define") == 0) {
		int a = optind + 2;

		/* getopt moved the options first and dropped the "--" before the QEMU command line. */
		if (a < argc && strcmp(argv[a], "--") == 0)
			a++;
		if (!ram || a >= argc) {
			fprintf(stderr, "ferry-hib define: needs --ram SIZE and -- QEMU-ARGV...\n");
			rc = 2;
		} else {
			rc = hib_define(h, name, argv + a, ram, &err);
		}
	} else if (strcmp(cmd, "start") == 0) {
		pid_t pid = 0;

		rc = hib_start(h, name, &pid, &err);
		if (!rc)
			printf("{\"op\":\"start\",\"vm\":\"%s\",\"pid\":%d}\n", name, (int)pid);
	} else if (strcmp(cmd, "hibernate") == 0) {
		rc = hib_hibernate(h, name, &s, &err);
		if (!rc)
			print_stats(stdout, cmd, name, &s);
	} else if (strcmp(cmd, "resume") == 0) {
		rc = hib_resume(h, name, &s, &err);
		if (!rc)
			print_stats(stdout, cmd, name, &s);
	} else if ((strcmp(cmd, "hibernate-file") == 0 || strcmp(cmd, "resume-file") == 0) && optind + 2 < argc) {
		rc = cmd[0] == 'h' ? hib_hibernate_file(h, name, argv[optind + 2], &s, &err)
				   : hib_resume_file(h, name, argv[optind + 2], &s, &err);
		if (!rc)
			print_stats(stdout, cmd, name, &s);
	} else if (strcmp(cmd, "destroy") == 0) {
		rc = hib_destroy(h, name, &err);
	} else if (strcmp(cmd, "status") == 0) {
		rc = cmd_status(h, name, stdout, &err);
	} else if (strcmp(cmd, "idle") == 0) {
		struct hib_idle_result r;
		int n = 0;

		for (char *save = NULL, *t = forbid_list ? strtok_r(forbid_list, ",", &save) : NULL; t && n < 32;
		     t = strtok_r(NULL, ",", &save))
			forbid[n++] = t;
		io.forbid = n ? forbid : NULL;
		if (!io.tap) {
			fprintf(stderr, "ferry-hib idle: needs --tap TAP\n");
			rc = 2;
		} else if ((rc = hib_idle_check(h, name, &io, window, &r, &err)) == 0) {
			printf("{\"op\":\"idle\",\"vm\":\"%s\",\"idle\":%s,\"net_idle\":%s,\"cpu_idle\":%s,"
			       "\"procs_allow\":%s,\"packets\":%llu,\"cpu_pct\":%.2f,\"agent\":%s,\"reason\":\"%s\"}\n",
			       name, r.idle ? "true" : "false", r.net_idle ? "true" : "false",
			       r.cpu_idle ? "true" : "false", r.procs_allow ? "true" : "false",
			       (unsigned long long)r.packets, r.cpu_pct, r.agent ? "true" : "false", r.reason);
			rc = r.idle ? 0 : 1;
			hib_close(h);
			return rc;
		}
	} else if (strcmp(cmd, "shell") == 0) {
		rc = cmd_shell(h);
	} else {
		fprintf(stderr, "ferry-hib: unknown command %s\n", cmd);
		rc = 2;
	}
	if (rc && rc != 2)
		fprintf(stderr, "ferry-hib: %s\n", err.msg);
	hib_close(h);
	return rc == 0 ? 0 : rc == 2 ? 2 : 1;
}
