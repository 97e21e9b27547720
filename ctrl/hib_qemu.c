/*
 * The QEMU process of a hibernating VM (hib_int.h): start it with the VM's command line plus
 * its RAM file, QMP socket and (resume) -incoming defer; reach its QMP socket, noticing a QEMU
 * that died on the way (its log says why); wait for it to be gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctrl/hib_int.h"

double hib_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

bool hib_pid_alive(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;
	bool alive;

	if (pid <= 0)
		return false;
	if (waitpid(pid, NULL, WNOHANG) == pid)	/* our child, now reaped */
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	alive = fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	fclose(f);
	return alive;
}

void hib_log_tail(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	char line[512], last[3][512] = { "", "", "" };
	int n = 0;

	buf[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "--- ferry-hib:", 14) == 0) {	/* a new run: only its lines count */
			n = 0;
			continue;
		}
		if (line[0])
			snprintf(last[n++ % 3], sizeof(last[0]), "%s", line);
	}
	fclose(f);
	for (int i = n > 3 ? n - 3 : 0; i < n; i++) {
		size_t l = strlen(buf);

		snprintf(buf + l, len - l, "%s%s", l ? " | " : "", last[i % 3]);
	}
}

int hib_qemu_spawn(struct hib *h, struct hib_vm *vm, bool incoming, pid_t *pid, struct ferry_err *err)
{
	char size[32], obj[PATH_MAX + 96], qmp[PATH_MAX + 32];
	size_t n = 0;
	char **argv = calloc(vm->argc + 16, sizeof(*argv));
	pid_t p;
	int logfd;

	(void)h;
	if (!argv)
		return ferry_err_set(err, ENOMEM, "out of memory");
	snprintf(size, sizeof(size), "%lluM", (unsigned long long)(vm->ram_bytes >> 20));
	snprintf(obj, sizeof(obj), "memory-backend-file,id=ferry-ram,size=%llu,mem-path=%s,share=on",
		 (unsigned long long)vm->ram_bytes, vm->ram_path);
	snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", vm->qmp_path);
	for (size_t i = 0; i < vm->argc; i++)
		argv[n++] = vm->argv[i];
	argv[n++] = "-m";
	argv[n++] = size;
	argv[n++] = "-object";
	argv[n++] = obj;
	argv[n++] = "-machine";
	argv[n++] = "memory-backend=ferry-ram";
	argv[n++] = "-qmp";
	argv[n++] = qmp;
	if (incoming) {
		argv[n++] = "-incoming";
		argv[n++] = "defer";
	}
	argv[n] = NULL;
	unlink(vm->qmp_path);
	logfd = open(vm->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd < 0) {
		free(argv);
		return ferry_err_set(err, errno, "cannot open %s: %s", vm->log_path, strerror(errno));
	}
	dprintf(logfd, "--- ferry-hib: %s %s\n", incoming ? "resume" : "start", vm->name);
	p = fork();
	if (p < 0) {
		int e = errno;

		close(logfd);
		free(argv);
		return ferry_err_set(err, e, "fork: %s", strerror(e));
	}
	if (p == 0) {
		int nul = open("/dev/null", O_RDONLY);
		sigset_t none;

		/* A caller that blocks signals for a signalfd (ferryd) must not pass that on to QEMU. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();	/* its own session: a terminal's signals and our exit do not reach it */
		dup2(nul, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		execvp(argv[0], argv);
		dprintf(2, "ferry-hib: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(logfd);
	free(argv);
	*pid = p;
	return 0;
}

int hib_qemu_qmp(struct hib *h, struct hib_vm *vm, pid_t pid, struct qmp **q, struct ferry_err *err)
{
	double deadline = hib_now_ms() + h->qmp_timeout_ms;
	char tail[600];

	for (;;) {
		struct ferry_err e = { 0 };

		if (qmp_connect(vm->qmp_path, 200, q, &e) == 0)
			return 0;
		if (!hib_pid_alive(pid)) {
			hib_log_tail(vm->log_path, tail, sizeof(tail));
			return ferry_err_set(err, ECHILD, "QEMU of %s exited before its QMP socket came up: %s", vm->name,
					     tail[0] ? tail : "(no output)");
		}
		if (hib_now_ms() > deadline)
			return ferry_err_set(err, ETIMEDOUT, "QEMU of %s: no QMP within %d ms: %s", vm->name,
					     h->qmp_timeout_ms, e.msg);
		usleep(10000);
	}
}

int hib_qemu_wait_exit(pid_t pid, int timeout_ms, struct ferry_err *err)
{
	double deadline = hib_now_ms() + timeout_ms;

	while (hib_pid_alive(pid)) {
		if (hib_now_ms() > deadline)
			return ferry_err_set(err, ETIMEDOUT, "QEMU (pid %d) still running %d ms after quit", (int)pid,
					     timeout_ms);
		usleep(5000);
	}
	return 0;
}
