/**
 * @file proc_harness.h
 * Child daemon processes for the integration-test harnesses (memsrv_harness,
 * pager_harness): a temporary directory, fork/exec with stdout and stderr
 * captured to a log file, bounded waits, SIGTERM then SIGKILL, reaping, and
 * reading the log back.
 *
 * A process is a (pid, wait status) pair the caller keeps: pid > 0 while it
 * runs, 0 once reaped (status then holds its wait status).
 * Call from the test's main thread only (it uses cmocka assertions).
 */
#ifndef FERRY_TESTS_PROC_HARNESS_H
#define FERRY_TESTS_PROC_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

uint64_t proc_now_ms(void);
void proc_sleep_ms(unsigned ms);

/** mkdtemp "/tmp/<prefix>-XXXXXX" into @p dir (fails the test otherwise). */
void proc_make_dir(char *dir, size_t cap, const char *prefix);
/** rm -rf @p dir (complains on stderr if it cannot) and clear it; no-op if "". */
void proc_remove_dir(char *dir);

/**
 * fork + execv(@p bin, @p argv) with stdout and stderr appended to @p log.
 * @p deathsig: signal the child gets if the test process dies (0 = none).
 * @return the child's pid (fails the test if fork fails).
 */
pid_t proc_spawn(const char *bin, char *const argv[], const char *log, int deathsig);

/**
 * Poll every 5 ms until @p ready(@p arg) is true. Fails the test, after
 * printing the log @p log, if the daemon @p name exits first
 * ("<name> exited before it was ready (status 0x..)") or is not ready within
 * @p timeout_ms ("<name> not ready within N ms").
 */
void proc_wait_ready(pid_t *pid, int *status, const char *name, const char *log, int timeout_ms,
		     bool (*ready)(void *arg), void *arg);

/** Reap *@p pid if it has exited, without waiting. @return true if it is gone (*pid = 0). */
bool proc_reaped(pid_t *pid, int *status);
/** Wait up to @p timeout_ms for *@p pid to exit and reap it. @return true if it exited (*pid = 0). */
bool proc_wait_exit(pid_t *pid, int *status, int timeout_ms);
/**
 * SIGTERM, wait up to @p timeout_ms, then SIGKILL; reap.
 * @return the wait status; -1 if it had to be killed; *status if already reaped.
 */
int proc_stop(pid_t *pid, int *status, int timeout_ms);
/** SIGKILL and reap, if still running. */
void proc_kill(pid_t *pid, int *status);

/** The whole file @p path, NUL-terminated (free() it); NULL if unreadable. */
char *proc_read_file(const char *path);
/** Does the log @p path contain @p needle? */
bool proc_log_contains(const char *path, const char *needle);
/** Print the log @p path of @p name on stderr (for a failing test). */
void proc_dump_log(const char *name, const char *path);

#endif /* FERRY_TESTS_PROC_HARNESS_H */
