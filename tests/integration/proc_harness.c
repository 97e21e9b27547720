#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "proc_harness.h"

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

uint64_t proc_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void proc_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

void proc_make_dir(char *dir, size_t cap, const char *prefix)
{
	snprintf(dir, cap, "/tmp/%s-XXXXXX", prefix);
	assert_non_null(mkdtemp(dir));
}

void proc_remove_dir(char *dir)
{
	char cmd[128];

	if (!dir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	dir[0] = '\0';
}

pid_t proc_spawn(const char *bin, char *const argv[], const char *log, int deathsig)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		/* A test that crashes must not leave its daemon behind. */
		if (deathsig)
			prctl(PR_SET_PDEATHSIG, deathsig);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execv(bin, argv);
		_exit(127);
	}
	return pid;
}

bool proc_reaped(pid_t *pid, int *status)
{
	if (*pid <= 0)
		return true;
	if (waitpid(*pid, status, WNOHANG) == *pid) {
		*pid = 0;
		return true;
	}
	return false;
}

void proc_wait_ready(pid_t *pid, int *status, const char *name, const char *log, int timeout_ms,
		     bool (*ready)(void *arg), void *arg)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;

	while (!ready(arg)) {
		if (proc_reaped(pid, status)) {
			proc_dump_log(name, log);
			fail_msg("%s exited before it was ready (status 0x%x)", name, *status);
		}
		if (proc_now_ms() > deadline) {
			proc_dump_log(name, log);
			fail_msg("%s not ready within %d ms", name, timeout_ms);
		}
		proc_sleep_ms(5);
	}
}

bool proc_wait_exit(pid_t *pid, int *status, int timeout_ms)
{
	uint64_t deadline = proc_now_ms() + (uint64_t)timeout_ms;

	if (*pid <= 0)
		return true;
	for (;;) {
		pid_t r = waitpid(*pid, status, WNOHANG);

		if (r == *pid || (r < 0 && errno == ECHILD)) {
			*pid = 0;
			return true;
		}
		if (proc_now_ms() >= deadline)
			return false;
		proc_sleep_ms(2);
	}
}

void proc_kill(pid_t *pid, int *status)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGKILL);
	waitpid(*pid, status, 0);
	*pid = 0;
}

int proc_stop(pid_t *pid, int *status, int timeout_ms)
{
	if (*pid <= 0)
		return *status;
	kill(*pid, SIGTERM);
	if (proc_wait_exit(pid, status, timeout_ms))
		return *status;
	proc_kill(pid, status);
	return -1;
}

char *proc_read_file(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long len;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)len + 1);
	if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

bool proc_log_contains(const char *path, const char *needle)
{
	char *log = proc_read_file(path);
	bool found = log && strstr(log, needle);

	free(log);
	return found;
}

void proc_dump_log(const char *name, const char *path)
{
	char *log = proc_read_file(path);

	fprintf(stderr, "----- %s log (%s) -----\n%s----- end of log -----\n", name, path, log ? log : "(none)\n");
	free(log);
}
