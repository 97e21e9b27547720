/*
 * Idle detection for hibernation (hib.h): network packets on the VM's tap, host CPU of its QEMU
 * process, and guest processes that forbid hibernation (through the QEMU guest agent).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sodium.h>
#include <unistd.h>

#include "ctrl/hib_int.h"

/* The tap's counters, as seen from the QEMU process's network namespace (/proc/PID/net/dev
 * follows the namespace of PID), or from ours (/sys/class/net/TAP/statistics). */
static int tap_counters(pid_t pid, const char *tap, uint64_t *rx, uint64_t *tx, struct ferry_err *err)
{
	char path[128], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/net/dev", (int)pid);
	f = fopen(path, "r");
	if (f) {
		size_t tl = strlen(tap);

		while (fgets(line, sizeof(line), f)) {
			char *p = line;
			unsigned long long v[10];

			while (*p == ' ')
				p++;
			if (strncmp(p, tap, tl) != 0 || p[tl] != ':')
				continue;
			if (sscanf(p + tl + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
				   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) == 10) {
				*rx = v[1];
				*tx = v[9];
				fclose(f);
				return 0;
			}
		}
		fclose(f);
	}
	for (int i = 0; i < 2; i++) {
		unsigned long long v;

		snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s_packets", tap, i ? "tx" : "rx");
		f = fopen(path, "r");
		if (!f || fscanf(f, "%llu", &v) != 1) {
			if (f)
				fclose(f);
			return ferry_err_set(err, ENOENT, "no interface %s in the network namespace of pid %d or ours",
					     tap, (int)pid);
		}
		fclose(f);
		*(i ? tx : rx) = v;
	}
	return 0;
}

static int cpu_ticks(pid_t pid, uint64_t *ticks, struct ferry_err *err)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, stt;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		return ferry_err_set(err, ESRCH, "no process %d", (int)pid);
	}
	fclose(f);
	p = strrchr(buf, ')');	/* the name may hold spaces: fields count from after it */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
		return ferry_err_set(err, EPROTO, "cannot parse %s", path);
	*ticks = ut + stt;
	return 0;
}

int hib_idle_sample(struct hib *h, const char *name, const char *tap, struct hib_idle_sample *s, struct ferry_err *err)
{
	enum hib_vm_state state;
	pid_t pid;
	int rc = hib_query(h, name, &state, &pid, err);

	if (rc)
		return rc;
	if (state != HIB_RUNNING)
		return ferry_err_set(err, EINVAL, "VM %s is %s", name, hib_state_name(state));
	s->t = hib_now_ms() / 1000;
	rc = tap_counters(pid, tap, &s->rx_packets, &s->tx_packets, err);
	if (!rc)
		rc = cpu_ticks(pid, &s->cpu_ticks, err);
	return rc;
}

int hib_idle_judge(const struct hib_idle_sample *a, const struct hib_idle_sample *b, const struct hib_idle_opts *o,
		   struct hib_idle_result *r, struct ferry_err *err)
{
	double dt = b->t - a->t, max = o->cpu_max_pct > 0 ? o->cpu_max_pct : 5;
	long hz = sysconf(_SC_CLK_TCK);

	memset(r, 0, sizeof(*r));
	if (dt <= 0)
		return ferry_err_set(err, EINVAL, "idle samples out of order");
	r->packets = (b->rx_packets - a->rx_packets) + (b->tx_packets - a->tx_packets);
	r->cpu_pct = 100.0 * (double)(b->cpu_ticks - a->cpu_ticks) / (double)(hz > 0 ? hz : 100) / dt;
	r->net_idle = r->packets == 0;
	r->cpu_idle = r->cpu_pct < max;
	r->procs_allow = true;
	if (o->qga_path && o->forbid && o->forbid[0]) {
		char **names = NULL;
		size_t n = 0;
		struct ferry_err e = { 0 };

		if (hib_qga_processes(o->qga_path, 3000, &names, &n, &e) == 0) {
			r->agent = true;
			for (size_t i = 0; i < n && r->procs_allow; i++)
				for (const char *const *f = o->forbid; *f; f++)
					if (strcmp(names[i], *f) == 0) {
						r->procs_allow = false;
						snprintf(r->reason, sizeof(r->reason), "guest process %s forbids hibernation",
							 *f);
						break;
					}
			for (size_t i = 0; i < n; i++)
				free(names[i]);
			free(names);
		}
	}
	r->idle = r->net_idle && r->cpu_idle && r->procs_allow;
	if (r->idle)
		snprintf(r->reason, sizeof(r->reason), "idle: no packets, CPU %.1f%% < %.1f%%%s", r->cpu_pct, max,
			 o->qga_path && !r->agent ? ", no guest agent" : "");
	else if (!r->net_idle)
		snprintf(r->reason, sizeof(r->reason), "busy: %" PRIu64 " packets in %.1f s", r->packets, dt);
	else if (!r->cpu_idle)
		snprintf(r->reason, sizeof(r->reason), "busy: CPU %.1f%% >= %.1f%%", r->cpu_pct, max);
	return 0;
}

int hib_idle_check(struct hib *h, const char *name, const struct hib_idle_opts *o, double window_s,
		   struct hib_idle_result *r, struct ferry_err *err)
{
	struct hib_idle_sample a, b;
	int rc = hib_idle_sample(h, name, o->tap, &a, err);

	if (rc)
		return rc;
	usleep((useconds_t)(window_s * 1e6));
	rc = hib_idle_sample(h, name, o->tap, &b, err);
	if (rc)
		return rc;
	return hib_idle_judge(&a, &b, o, r, err);
}

/* ---- QEMU guest agent: the same JSON lines as QMP, but no greeting and no capabilities. ---- */

static int qga_call(int fd, const char *req, json_t **ret, int timeout_ms, struct ferry_err *err)
{
	char buf[65536];
	size_t len = 0;
	double dl = hib_now_ms() + timeout_ms;

	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
		return ferry_err_set(err, EIO, "guest agent: send failed");
	for (;;) {
		char *nl = memchr(buf, '\n', len);

		if (nl) {
			json_t *m = json_loadb(buf, (size_t)(nl - buf), 0, NULL);
			json_t *rv = m ? json_object_get(m, "return") : NULL;

			if (!rv) {
				json_decref(m);
				return ferry_err_set(err, EPROTO, "guest agent: unexpected answer");
			}
			*ret = json_incref(rv);
			json_decref(m);
			return 0;
		}
		struct timeval tv;
		double left = dl - hib_now_ms();

		if (left <= 0 || len == sizeof(buf))
			return ferry_err_set(err, ETIMEDOUT, "guest agent: no answer");
		tv.tv_sec = (time_t)(left / 1000);
		tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec * 1000) * 1000);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ssize_t got = recv(fd, buf + len, sizeof(buf) - len, 0);

		if (got <= 0)
			return ferry_err_set(err, ETIMEDOUT, "guest agent: no answer");
		len += (size_t)got;
	}
}

int hib_qga_processes(const char *qga_path, int timeout_ms, char ***names, size_t *n, struct ferry_err *err)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	json_t *r = NULL;
	char req[256];
	long long gpid = 0;
	int fd, rc;

	*names = NULL;
	*n = 0;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", qga_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		if (fd >= 0)
			close(fd);
		return ferry_err_set(err, ENOENT, "no guest agent at %s", qga_path);
	}
	/* guest-sync first: it flushes whatever an earlier client left half-read. */
	rc = qga_call(fd, "{\"execute\":\"guest-sync\",\"arguments\":{\"id\":4242}}\n", &r, timeout_ms, err);
	json_decref(r);
	r = NULL;
	if (rc) {
		char why[FERRY_ERR_MSG_MAX];

		snprintf(why, sizeof(why), "%s", err ? err->msg : "no answer");	/* err->msg is rewritten below */
		close(fd);
		return ferry_err_set(err, ENOENT, "no guest agent at %s (%s)", qga_path, why);
	}
	rc = qga_call(fd,
		      "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"ps\",\"arg\":[\"-e\",\"-o\",\"comm=\"],"
		      "\"capture-output\":true}}\n",
		      &r, timeout_ms, err);
	if (!rc && json_unpack(r, "{s:I}", "pid", &gpid))
		rc = ferry_err_set(err, EPROTO, "guest agent: guest-exec gave no pid");
	json_decref(r);
	r = NULL;
	for (double dl = hib_now_ms() + timeout_ms; !rc;) {
		int exited = 0;

		snprintf(req, sizeof(req), "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":%lld}}\n", gpid);
		rc = qga_call(fd, req, &r, timeout_ms, err);
		if (rc)
			break;
		if (json_unpack(r, "{s:b}", "exited", &exited) == 0 && exited) {
			const char *b64 = json_string_value(json_object_get(r, "out-data"));
			size_t cap = b64 ? strlen(b64) : 0, outl = 0;
			unsigned char *out = malloc(cap + 1);

			if (out && b64 &&
			    sodium_base642bin(out, cap, b64, cap, "\n", &outl, NULL, sodium_base64_VARIANT_ORIGINAL) == 0) {
				out[outl] = '\0';
				for (char *save = NULL, *tok = strtok_r((char *)out, "\n", &save); tok;
				     tok = strtok_r(NULL, "\n", &save)) {
					char **v = realloc(*names, (*n + 1) * sizeof(*v));

					if (!v)
						break;
					*names = v;
					(*names)[(*n)++] = strdup(tok);
				}
			}
			free(out);
			break;
		}
		json_decref(r);
		r = NULL;
		if (hib_now_ms() > dl) {
			rc = ferry_err_set(err, ETIMEDOUT, "guest agent: ps did not finish");
			break;
		}
		usleep(20000);
	}
	json_decref(r);
	close(fd);
	return rc;
}
