/*
 * guestsim-pager-driver: the real ferry-pager (ferry_pager_core, the same
 * code and command line as ferry-pager) with a test driver on stdin that
 * calls the server-request API (dataplane/pager/vmm_requests.h) from inside
 * the pager's loop, the way the migration engine will. For tests that need
 * PAUSE / RESUME / DROP_PTES / NOTICE before the engine exists
 * (tests/guestsim/srq_selftest.sh); not a daemon to deploy.
 *
 * Commands, one per line; results go to stdout, one line each:
 *   pause VM                 -> "done pause VM STATUS state=BYTES"
 *   resume VM [load]         -> "done resume VM STATUS"
 *   drop VM GPA LEN [...]    -> "done drop VM STATUS"
 *   notice VM                -> "notice VM RC"
 *   timeout MS               -> "ok"
 *   counters                 -> "counters sent=.. ok=.. refused=.. timeouts=.. aborted=.. bad_replies=..
 *                                incoming=.. incoming_refused=.."
 *   incoming accept|none     -> "ok"; then "incoming VM MIGID" when an incoming shell registers
 *   parked VM                -> "parked VM 0|1"
 *   unpark VM                -> "unpark VM RC"
 *   copy SRC DST             -> "copy SRC DST RC bytes=N": what a migration moves, on one host:
 *                               the device state blob and every byte of every region's memory
 *                               file (SRC and DST must have the same regions: gpa and size)
 * STATUS is 0 or an errno name. A test-only stand-in for the migration engine:
 * "copy" reads the source's memfd and writes the destination's directly.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/pager/config.h"
#include "dataplane/pager/pager.h"
#include "dataplane/pager/vmm_requests.h"

struct driver {
	char line[65536];
	size_t have;
	bool accept_incoming;
};

static const char *status_name(int status)
{
	static char buf[32];

	switch (-status) {
	case 0: return "0";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ECONNRESET: return "ECONNRESET";
	case ECANCELED: return "ECANCELED";
	case EPROTO: return "EPROTO";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENOTCONN: return "ENOTCONN";
	case ENOENT: return "ENOENT";
	case EINVAL: return "EINVAL";
	case ERANGE: return "ERANGE";
	case EBUSY: return "EBUSY";
	case EIO: return "EIO";
	case EREMOTEIO: return "EREMOTEIO";
	default:
		snprintf(buf, sizeof(buf), "E%d", -status);
		return buf;
	}
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void on_pause(struct pg_vm *vm, int status, void *ctx)
{
	(void)ctx;
	say("done pause %s %s state=%llu", vm->id, status_name(status),
	    (unsigned long long)(vm->state_valid ? vm->state_total : 0));
}

static void on_resume(struct pg_vm *vm, int status, void *ctx)
{
	(void)ctx;
	say("done resume %s %s", vm->id, status_name(status));
}

static void on_drop(struct pg_vm *vm, int status, void *ctx)
{
	(void)ctx;
	say("done drop %s %s", vm->id, status_name(status));
}

static int on_incoming(struct pg_vm *vm, uint64_t migration_id, void *ctx)
{
	struct driver *d = ctx;

	if (!d->accept_incoming)
		return FERRY_VMMP_E_UNSUPPORTED;
	say("incoming %s %llu", vm->id, (unsigned long long)migration_id);
	return FERRY_VMMP_E_OK;
}

/* One region's bytes from @s's memory file to @d's (same size), holes left as holes. */
static int copy_region(const struct pg_region *s, const struct pg_region *d, uint64_t *bytes)
{
	static uint8_t buf[1 << 20];

	for (uint64_t off = 0; off < s->size; off += sizeof(buf)) {
		uint64_t n = s->size - off < sizeof(buf) ? s->size - off : sizeof(buf);
		ssize_t r = pread(s->memfd, buf, n, (off_t)(s->offset + off));

		if (r != (ssize_t)n)
			return r < 0 ? -errno : -EIO;
		/* Holes stay holes: never-written pages read as zeros at the destination too. */
		bool zero = true;

		for (uint64_t i = 0; i < n && zero; i += 8)
			zero = *(const uint64_t *)(buf + i) == 0;
		if (zero)
			continue;
		if (pwrite(d->memfd, buf, n, (off_t)(d->offset + off)) != (ssize_t)n)
			return -errno;
		*bytes += n;
	}
	return 0;
}

/*
 * Device state and memory file contents from @src to @dst. Both must have
 * the same layout: as many regions, each at the same gpa with the same size,
 * each in a memory file (its offset in that file may differ).
 */
static int copy_vm(struct pg_vm *src, struct pg_vm *dst, uint64_t *bytes)
{
	if (src->nregions != dst->nregions || !src->state_valid)
		return -EINVAL;
	for (unsigned k = 0; k < src->nregions; k++)
		if (src->regions[k].gpa != dst->regions[k].gpa || src->regions[k].size != dst->regions[k].size ||
		    src->regions[k].memfd < 0 || dst->regions[k].memfd < 0)
			return -EINVAL;
	free(dst->state);
	dst->state = malloc(src->state_total ? src->state_total : 1);
	if (!dst->state)
		return -ENOMEM;
	memcpy(dst->state, src->state, src->state_total);
	dst->state_total = dst->state_have = src->state_total;
	dst->state_valid = true;
	*bytes = 0;
	for (unsigned k = 0; k < src->nregions; k++) {
		int rc = copy_region(&src->regions[k], &dst->regions[k], bytes);

		if (rc < 0)
			return rc;
	}
	return 0;
}

static void command(struct pager *pg, struct driver *d, char *line)
{
	char *save = NULL, *cmd = strtok_r(line, " \t", &save), *id;
	struct pg_vm *vm = NULL;
	int rc;

	if (!cmd)
		return;
	if (strcmp(cmd, "timeout") == 0) {
		char *ms = strtok_r(NULL, " \t", &save);

		pg_vmm_set_request_timeout(pg, ms ? (unsigned)strtoul(ms, NULL, 0) : 0);
		say("ok");
		return;
	}
	if (strcmp(cmd, "counters") == 0) {
		struct pg_vmm_req_counters c;

		pg_vmm_request_counters(pg, &c);
		say("counters sent=%llu ok=%llu refused=%llu timeouts=%llu aborted=%llu bad_replies=%llu incoming=%llu "
		    "incoming_refused=%llu",
		    (unsigned long long)c.sent, (unsigned long long)c.ok, (unsigned long long)c.refused,
		    (unsigned long long)c.timeouts, (unsigned long long)c.aborted, (unsigned long long)c.bad_replies,
		    (unsigned long long)c.incoming, (unsigned long long)c.incoming_refused);
		return;
	}
	if (strcmp(cmd, "incoming") == 0) {
		char *what = strtok_r(NULL, " \t", &save);

		d->accept_incoming = what && strcmp(what, "accept") == 0;
		pg_vm_incoming_hook = d->accept_incoming ? on_incoming : NULL;
		pg_vm_incoming_ctx = d;
		say("ok");
		return;
	}
	id = strtok_r(NULL, " \t", &save);
	vm = id ? pg_vm_find(pg, id) : NULL;
	if (!vm || vm->dead) {
		say("error %s: no VM %s", cmd, id ? id : "(none)");
		return;
	}
	if (strcmp(cmd, "pause") == 0) {
		rc = pg_vmm_request_pause(vm, on_pause, NULL);
		if (rc)
			say("done pause %s %s state=0", id, status_name(rc));
	} else if (strcmp(cmd, "resume") == 0) {
		char *load = strtok_r(NULL, " \t", &save);

		rc = pg_vmm_request_resume(vm, load && strcmp(load, "load") == 0, on_resume, NULL);
		if (rc)
			say("done resume %s %s", id, status_name(rc));
	} else if (strcmp(cmd, "drop") == 0) {
		struct ferry_vmmp_range r[256];
		size_t n = 0;
		char *a, *b;

		while (n < 256 && (a = strtok_r(NULL, " \t", &save)) && (b = strtok_r(NULL, " \t", &save))) {
			r[n].gpa = strtoull(a, NULL, 0);
			r[n].len = strtoull(b, NULL, 0);
			n++;
		}
		rc = pg_vmm_request_drop_ptes(vm, r, n, on_drop, NULL);
		if (rc)
			say("done drop %s %s", id, status_name(rc));
	} else if (strcmp(cmd, "notice") == 0) {
		say("notice %s %d", id, pg_vmm_notice_migrated(vm));
	} else if (strcmp(cmd, "parked") == 0) {
		say("parked %s %d", id, pg_vm_parked(vm));
	} else if (strcmp(cmd, "unpark") == 0) {
		say("unpark %s %d", id, pg_vm_unpark(vm));
	} else if (strcmp(cmd, "copy") == 0) {
		char *dst_id = strtok_r(NULL, " \t", &save);
		struct pg_vm *dst = dst_id ? pg_vm_find(pg, dst_id) : NULL;
		uint64_t bytes = 0;

		rc = dst ? copy_vm(vm, dst, &bytes) : -ENOENT;
		say("copy %s %s %s bytes=%llu", id, dst_id ? dst_id : "(none)", status_name(rc),
		    (unsigned long long)bytes);
	} else {
		say("error unknown command %s", cmd);
	}
}

static void on_stdin(struct pager *pg, int fd, uint32_t events, void *arg)
{
	struct driver *d = arg;
	ssize_t n;
	char *nl;

	(void)events;
	n = read(fd, d->line + d->have, sizeof(d->line) - 1 - d->have);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			pg_loop_unwatch(pg, fd);   /* no more commands; the pager runs on */
		return;
	}
	d->have += (size_t)n;
	d->line[d->have] = '\0';
	while ((nl = strchr(d->line, '\n'))) {
		size_t used = (size_t)(nl - d->line) + 1;

		*nl = '\0';
		command(pg, d, d->line);
		memmove(d->line, d->line + used, d->have - used);
		d->have -= used;
		d->line[d->have] = '\0';
	}
	if (d->have == sizeof(d->line) - 1)
		d->have = 0;   /* a line longer than the buffer: drop it */
}

int main(int argc, char **argv)
{
	static struct pager_config cfg;
	static struct driver d;
	struct ferry_err err = { 0 };
	struct pager *pg = NULL;
	int rc;

	ferry_log_set_component("pager-driver");
	rc = pager_config_from_args(&cfg, argc, argv, stdout, &err);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "guestsim-pager-driver: %s\n", err.msg);
		return 2;
	}
	if (cfg.log_level >= 0)
		ferry_log_set_level((enum ferry_log_level)cfg.log_level);
	rc = pg_create(&cfg, &pg, &err);
	if (rc) {
		LOG_ERR("cannot start: %s", err.msg);
		pg_destroy(pg);
		return 1;
	}
	rc = pg_loop_watch(pg, STDIN_FILENO, on_stdin, &d);
	if (rc) {
		LOG_ERR("cannot watch stdin: %s", strerror(-rc));
		pg_destroy(pg);
		return 1;
	}
	rc = pg_run(pg, &err);
	pg_destroy(pg);
	if (rc) {
		LOG_ERR("stopped on an error: %s", err.msg);
		return 1;
	}
	return 0;
}
