/*
 * ferryd: main, signals and the poll loop. See ferryd.h for the files.
 *
 * Signals go through a signalfd: SIGTERM/SIGINT stop (children first, then
 * the sockets), SIGCHLD reaps supervised children and hook commands.
 */
#include "ctrl/ferryd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"

#define TICK_MS 50

static int write_ready(const char *path, const char *listen_desc)
{
	char tmp[PATH_MAX + 8];
	const char *port = strrchr(listen_desc, ':');
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "%s\n", port ? port + 1 : listen_desc);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return -errno;
	return 0;
}

static void reap(struct ferryd *d)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0)
			return;
		if (!ferryd_super_reaped(d, pid, status) && !ferryd_vms_reaped(d, pid, status))
			LOG_DEBUG("reaped pid %d (not ours any more)", (int)pid);
	}
}

static void on_signals(struct ferryd *d)
{
	struct signalfd_siginfo si;

	while (read(d->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD) {
			reap(d);
		} else if (!d->stopping) {
			LOG_INFO("%s: shutting down", strsignal((int)si.ssi_signo));
			d->stopping = true;
		}
	}
}

static int run(struct ferryd *d)
{
	struct pollfd pfd[FERRYD_MAX_CONNS + 5];
	unsigned int ids[FERRYD_MAX_CONNS + 5];   /* 0: a listener, the signalfd or ferry-wake's session */

	while (!d->stopping) {
		uint64_t now = ferry_mono_ms();
		int n = 0, nconn, rc;

		ferryd_cluster_tick(d, now);
		ferryd_super_tick(d, now);
		ferryd_vms_tick(d, now);
		ferryd_mig_tick(d, now);
		ferryd_conns_tick(d, now);
		ferryd_wake_tick(d, now);

		pfd[n] = (struct pollfd){ .fd = d->sig_fd, .events = POLLIN };
		ids[n++] = 0;
		pfd[n] = (struct pollfd){ .fd = d->listen_fd, .events = POLLIN };
		ids[n++] = 0;
		pfd[n] = (struct pollfd){ .fd = d->unix_fd, .events = POLLIN };
		ids[n++] = 0;
		/* -1 when there is no ferry-wake session: poll ignores it. */
		pfd[n] = (struct pollfd){ .fd = ferryd_wake_fd(d), .events = POLLIN };
		ids[n++] = 0;
		/* -1 without the hibernation worker. */
		pfd[n] = (struct pollfd){ .fd = ferryd_hib_fd(d), .events = POLLIN };
		ids[n++] = 0;
		nconn = ferryd_conns_pollfds(d, pfd + n, ids + n, FERRYD_MAX_CONNS);
		n += nconn;
		rc = poll(pfd, (nfds_t)n, TICK_MS);
		if (rc < 0 && errno != EINTR) {
			LOG_ERR("poll: %s", strerror(errno));
			return -1;
		}
		if (rc <= 0)
			continue;
		if (pfd[0].revents)
			on_signals(d);
		if (pfd[3].revents && pfd[3].fd >= 0)
			ferryd_wake_readable(d);
		if (pfd[4].revents && pfd[4].fd >= 0)
			ferryd_hib_poll(d);
		for (int i = 1; i < n && !d->stopping; i++)
			if (i != 3 && i != 4 && pfd[i].revents)
				ferryd_conns_event(d, &pfd[i], ids[i]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct ferryd d;   /* large (scratch messages): not on the stack */
	struct ferry_err err = { 0 };
	sigset_t mask;
	int rc, level;

	ferry_log_set_component("ferryd");
	ferryd_config_defaults(&d.cfg);
	rc = ferryd_config_parse(&d.cfg, argc, argv, &err);
	if (rc == 1)
		return 0;
	if (rc == 0)
		rc = ferryd_config_validate(&d.cfg, &err);
	if (rc < 0) {
		fprintf(stderr, "ferryd: %s\n", err.msg);
		return 2;
	}
	level = d.cfg.log_level;
	if (level >= 0)
		ferry_log_set_level((enum ferry_log_level)level);
	d.listen_fd = d.unix_fd = d.sig_fd = d.wake_fd = -1;
	d.start_ms = ferry_mono_ms();

	if (ferry_auth_init(&err) < 0 || ferry_secret_load(d.cfg.secret_file, &d.secret, &err) < 0) {
		LOG_ERR("%s", err.msg);
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGPIPE);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigdelset(&mask, SIGPIPE);
	d.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d.sig_fd < 0) {
		LOG_ERR("signalfd: %s", strerror(errno));
		goto out_secret;
	}
	if (ferryd_listen(&d, &err) < 0) {
		LOG_ERR("%s", err.msg);
		goto out_sig;
	}
	ferryd_cluster_init(&d);
	ferryd_super_init(&d);
	if (ferryd_vms_init(&d, &err) < 0) {
		LOG_ERR("%s", err.msg);
		ferryd_super_stop(&d);
		ferryd_conns_close(&d);
		goto out_sig;
	}
	{
		char roles[64];

		LOG_INFO("node %s serving on tcp %s and unix %s; coordinator %s%s; roles %s; %u children, %u VMs",
			 d.cfg.name, d.listen_desc, d.cfg.unix_path, d.cfg.coordinator, d.is_coord ? " (this node)" : "",
			 ferryd_roles_str(d.cfg.roles, roles, sizeof(roles)), d.nchildren, d.cfg.nvms);
	}
	if (d.cfg.ready_file[0] && (rc = write_ready(d.cfg.ready_file, d.listen_desc)) < 0)
		LOG_WARN("ready file %s: %s", d.cfg.ready_file, strerror(-rc));

	rc = run(&d);

	ferryd_super_stop(&d);
	ferryd_hib_close(&d);
	ferryd_wake_close(&d);
	ferryd_conns_close(&d);
	LOG_INFO("stopped: %llu requests, %llu reports sent, %llu auth failures",
		 (unsigned long long)d.ctr.requests, (unsigned long long)d.ctr.reports_sent,
		 (unsigned long long)d.ctr.auth_failed);
	close(d.sig_fd);
	ferry_secret_wipe(&d.secret);
	return rc < 0 ? 1 : 0;

out_sig:
	close(d.sig_fd);
out_secret:
	ferry_secret_wipe(&d.secret);
	return 1;
}
