#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "memsrv_harness.h"
#include "proc_harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 15000   /* sanitizer builds start slowly; normally ~50 ms */

uint64_t msrv_now_ms(void)
{
	return proc_now_ms();
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void make_secret(struct msrv *m)
{
	uint8_t raw[32];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	char text[80];

	assert_true(fd >= 0);
	assert_int_equal(read(fd, raw, sizeof(raw)), (ssize_t)sizeof(raw));
	close(fd);
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(m->secret_hex + 2 * i, 3, "%02x", raw[i]);
	snprintf(text, sizeof(text), "%s\n", m->secret_hex);
	write_text(m->secret_path, text, 0600);
	/* The server hashes the file minus trailing newlines: same bytes here. */
	assert_int_equal(ferry_secret_from_bytes(m->secret_hex, 64, &m->key, NULL), 0);
}

/* Has the server written its port to the ready file? */
static bool ready_port(void *arg)
{
	struct msrv *m = arg;
	FILE *f = fopen(m->ready, "re");
	unsigned port = 0;
	int got;

	if (!f)
		return false;
	got = fscanf(f, "%u", &port);
	fclose(f);
	if (got != 1 || port == 0 || port >= 65536)
		return false;
	m->port = (uint16_t)port;
	return true;
}

void msrv_start(struct msrv *m, const struct msrv_opts *o)
{
	static const struct msrv_opts defaults = { 0 };
	char conf[1536], extra[512] = "";

	if (!o)
		o = &defaults;
	memset(m, 0, sizeof(*m));
	proc_make_dir(m->dir, sizeof(m->dir), "ferry-it");
	snprintf(m->conf, sizeof(m->conf), "%s/memsrv.conf", m->dir);
	snprintf(m->secret_path, sizeof(m->secret_path), "%s/secret", m->dir);
	snprintf(m->ready, sizeof(m->ready), "%s/ready", m->dir);
	snprintf(m->log, sizeof(m->log), "%s/memsrv.log", m->dir);
	make_secret(m);

	if (o->client_quota)
		snprintf(extra, sizeof(extra), "client_quota = %s\n", o->client_quota);
	if (o->extra_limits)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), "%s", o->extra_limits);
	snprintf(conf, sizeof(conf),
		 "[server]\nlisten = %s\nport = 0\ntransport = %s\nsecret_file = %s\nready_file = %s\n"
		 "max_clients = %u\n"
		 "[pool]\nsize = %s\nnuma_node = auto\nhugepages = %s\nprefault = no\n"
		 "[limits]\n%slog_level = %s\n",
		 msrv_host(), fx_kind_name(msrv_transport()), m->secret_path, m->ready,
		 o->max_clients ? o->max_clients : 64, o->pool_size ? o->pool_size : "64M",
		 o->hugepages ? o->hugepages : "auto", extra, o->log_level ? o->log_level : "info");
	write_text(m->conf, conf, 0644);

	char *argv[] = { "ferry-memsrv", "-c", m->conf, NULL };

	m->pid = proc_spawn(MSRV_BIN, argv, m->log, 0);

	proc_wait_ready(&m->pid, &m->status, "ferry-memsrv", m->log, READY_TIMEOUT_MS, ready_port, m);
}

bool msrv_wait_exit(struct msrv *m, int timeout_ms)
{
	return proc_wait_exit(&m->pid, &m->status, timeout_ms);
}

int msrv_stop(struct msrv *m, int timeout_ms)
{
	return proc_stop(&m->pid, &m->status, timeout_ms);
}

int msrv_finish(struct msrv *m)
{
	int status = msrv_stop(m, 5000);

	if (status != 0)
		msrv_dump_log(m);
	msrv_cleanup(m);
	return status == 0 ? 0 : -1;
}

void msrv_cleanup(struct msrv *m)
{
	proc_kill(&m->pid, &m->status);
	proc_remove_dir(m->dir);
}

bool msrv_log_contains(const struct msrv *m, const char *needle)
{
	return proc_log_contains(m->log, needle);
}

void msrv_dump_log(const struct msrv *m)
{
	proc_dump_log("ferry-memsrv", m->log);
}

int msrv_connect(const struct msrv *m, struct fx_ctx *ctx, const char *name, const struct ferry_secret *secret,
		 struct pool_client **client, struct ferry_err *err)
{
	struct pool_client_opts o = {
		.host = msrv_host(),
		.port = m->port,
		.name = name,
		.secret = secret ? secret : &m->key,
		.timeout_ms = 5000,
	};

	return pool_client_connect(ctx, &o, client, err);
}

uint64_t msrv_stat(const struct ferry_page_stats_ok *st, const char *name)
{
	for (unsigned i = 0; i < st->count; i++)
		if (strcmp(st->stats[i].name, name) == 0)
			return st->stats[i].value;
	fail_msg("STATS has no counter %s", name);
	return 0;
}

uint64_t msrv_client_stat(struct pool_client *c, const char *name)
{
	struct ferry_page_stats_ok st;
	struct ferry_err err = { 0 };

	if (pool_client_stats(c, &st, &err))
		fail_msg("STATS failed: %s", err.msg);
	return msrv_stat(&st, name);
}

enum fx_kind msrv_transport(void)
{
	const char *t = getenv("FERRY_TEST_TRANSPORT");
	enum fx_kind k = FX_KIND_TCP;

	if (t && *t && fx_kind_parse(t, &k) != 0)
		fail_msg("FERRY_TEST_TRANSPORT=%s: not tcp or rdma", t);
	return k;
}

const char *msrv_host(void)
{
	const char *h = getenv("FERRY_TEST_HOST");

	return h && *h ? h : "127.0.0.1";
}

struct fx_ctx *msrv_ctx(void)
{
	struct fx_ctx *ctx = NULL;
	struct ferry_err err = { 0 };

	if (fx_ctx_create(msrv_transport(), NULL, &ctx, &err))
		fail_msg("fx_ctx_create: %s", err.msg);
	return ctx;
}
