/*
 * Supervised data-plane processes ([child NAME] sections): ferry-memsrv,
 * ferry-pager, ferry-wake, or anything else the host needs. Each is
 * fork/exec'd with its configured arguments (split on blanks, no shell: the
 * pid we hold is the daemon's own, so SIGTERM reaches it), its output
 * appended to its log file, and PR_SET_PDEATHSIG so it cannot outlive a
 * ferryd that is killed outright.
 *
 * When a child exits it is restarted after a backoff that starts at
 * restart_min_ms and doubles up to restart_max_ms; a child that ran for
 * 10 s or more starts over at the minimum. On SIGTERM ferryd stops them all:
 * SIGTERM, then SIGKILL after stop_timeout_ms.
 */
#include "ctrl/ferryd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"

#define STABLE_MS 10000

extern char **environ;

pid_t ferryd_spawn(char *const argv[], const char *shell_cmd, const char *log, char *const extra_env[])
{
	pid_t pid = fork();

	if (pid != 0) {
		/* Both sides set the group, so a kill(-pid) right after fork already reaches it. */
		if (pid > 0 && shell_cmd)
			setpgid(pid, pid);
		return pid;   /* parent, or -1 */
	}

	/* Child. ferryd is single-threaded, so ordinary libc calls are safe until exec. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* A shell command gets a process group of its own, so that stopping it stops what it started. */
	if (shell_cmd)
		setpgid(0, 0);
	{
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
	}
	if (log && log[0]) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
	}
	{
		int fd = open("/dev/null", O_RDONLY);

		if (fd >= 0 && fd != 0) {
			dup2(fd, 0);
			close(fd);
		}
	}
	for (unsigned int i = 0; extra_env && extra_env[i]; i++)
		putenv(extra_env[i]);
	if (shell_cmd) {
		execl("/bin/sh", "sh", "-c", shell_cmd, (char *)NULL);
	} else {
		execvp(argv[0], argv);
	}
	_exit(127);
}

/* Does [child] nodes = a,b,c name this node ("" = every node)? */
static bool runs_here(const char *nodes, const char *me)
{
	char buf[256], *save = NULL;

	if (!nodes[0])
		return true;
	snprintf(buf, sizeof(buf), "%s", nodes);
	for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
		if (strcmp(t, me) == 0)
			return true;
	return false;
}

void ferryd_super_init(struct ferryd *d)
{
	d->nchildren = 0;
	for (unsigned int i = 0; i < d->cfg.nchildren; i++) {
		struct ferryd_child *ch = &d->child[d->nchildren];

		if (!runs_here(d->cfg.child[i].nodes, d->cfg.name))
			continue;
		d->nchildren++;
		memset(ch, 0, sizeof(*ch));
		ch->cfg = &d->cfg.child[i];
		ch->state = FERRY_CTRL_CHILD_BACKOFF;   /* due at once */
		ch->backoff_ms = ch->cfg->restart_min_ms;
	}
}

static void start_child(struct ferryd *d, struct ferryd_child *ch, uint64_t now)
{
	char buf[FERRYD_CMD_MAX], *argv[FERRYD_ARGV_MAX + 1], *save = NULL;
	unsigned int argc = 0;

	snprintf(buf, sizeof(buf), "%s", ch->cfg->exec);
	for (char *t = strtok_r(buf, " \t", &save); t && argc < FERRYD_ARGV_MAX; t = strtok_r(NULL, " \t", &save))
		argv[argc++] = t;
	argv[argc] = NULL;
	if (!argc) {
		ch->state = FERRY_CTRL_CHILD_FAILED;
		return;
	}
	ch->pid = ferryd_spawn(argv, NULL, ch->cfg->log, NULL);
	if (ch->pid < 0) {
		LOG_ERR("child %s: fork: %s; retrying in %u ms", ch->cfg->name, strerror(errno),
			(unsigned int)ch->backoff_ms);
		ch->pid = 0;
		ch->next_start_ms = now + ch->backoff_ms;
		return;
	}
	ch->state = FERRY_CTRL_CHILD_RUNNING;
	ch->started_ms = now;
	d->ctr.child_starts++;
	LOG_INFO("child %s started: pid %d (%s)%s", ch->cfg->name, (int)ch->pid, ch->cfg->exec,
		 ch->restarts ? " (restart)" : "");
}

void ferryd_super_tick(struct ferryd *d, uint64_t now)
{
	if (d->stopping)
		return;
	for (unsigned int i = 0; i < d->nchildren; i++) {
		struct ferryd_child *ch = &d->child[i];

		if (ch->state == FERRY_CTRL_CHILD_BACKOFF && now >= ch->next_start_ms)
			start_child(d, ch, now);
	}
}

static void describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "status 0x%x", status);
}

bool ferryd_super_reaped(struct ferryd *d, pid_t pid, int status)
{
	uint64_t now = ferry_mono_ms();
	char how[64];

	for (unsigned int i = 0; i < d->nchildren; i++) {
		struct ferryd_child *ch = &d->child[i];

		if (ch->pid != pid)
			continue;
		describe_status(status, how, sizeof(how));
		ch->pid = 0;
		d->ctr.child_exits++;
		if (d->stopping) {
			ch->state = FERRY_CTRL_CHILD_STOPPED;
			LOG_INFO("child %s stopped (%s)", ch->cfg->name, how);
			return true;
		}
		if (now - ch->started_ms >= STABLE_MS)
			ch->backoff_ms = ch->cfg->restart_min_ms;
		ch->state = FERRY_CTRL_CHILD_BACKOFF;
		ch->next_start_ms = now + ch->backoff_ms;
		ch->restarts++;
		LOG_WARN("child %s (pid %d) exited: %s; restart %u in %llu ms", ch->cfg->name, (int)pid, how,
			 ch->restarts, (unsigned long long)ch->backoff_ms);
		ch->backoff_ms *= 2;
		if (ch->backoff_ms > ch->cfg->restart_max_ms)
			ch->backoff_ms = ch->cfg->restart_max_ms;
		return true;
	}
	return false;
}

void ferryd_super_stop(struct ferryd *d)
{
	uint64_t deadline = ferry_mono_ms() + d->cfg.stop_timeout_ms;
	unsigned int left = 0;

	for (unsigned int i = 0; i < d->nchildren; i++) {
		struct ferryd_child *ch = &d->child[i];

		if (ch->pid > 0) {
			kill(ch->pid, SIGTERM);
			left++;
		} else {
			ch->state = FERRY_CTRL_CHILD_STOPPED;
		}
	}
	while (left && ferry_mono_ms() < deadline) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid > 0) {
			if (ferryd_super_reaped(d, pid, status))
				left--;
			continue;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	for (unsigned int i = 0; i < d->nchildren; i++) {
		struct ferryd_child *ch = &d->child[i];
		int status;

		if (ch->pid <= 0)
			continue;
		LOG_WARN("child %s (pid %d) ignored SIGTERM for %u ms: SIGKILL", ch->cfg->name, (int)ch->pid,
			 d->cfg.stop_timeout_ms);
		kill(ch->pid, SIGKILL);
		if (waitpid(ch->pid, &status, 0) == ch->pid)
			ferryd_super_reaped(d, ch->pid, status);
	}
}
