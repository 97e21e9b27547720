/**
 * @file hib.h
 * Hibernation of real QEMU guests into Ferry's memory pool, and their resume.
 *
 * A VM is defined once (name, QEMU command line without RAM or QMP options, RAM size); the
 * library adds its RAM as a shared file (memory-backend-file, share=on, in /dev/shm) and a QMP
 * socket, and keeps everything it needs in a state directory so that another process can read
 * it back:
 *
 *   STATE/NAME.vm.json        the definition and where the VM is (running + pid | hibernated)
 *   STATE/NAME.manifest.json  while hibernated: which pages are where in the pool, sizes, the
 *                             QEMU command line, checksums; itself checksummed (a manifest that
 *                             does not match its checksum is refused)
 *   STATE/NAME.qmp, NAME.log  QMP socket and QEMU's own output
 *
 * hibernate: QMP stop; migrate-set-capabilities x-ignore-shared; max-bandwidth high; migrate to
 * "exec:cat > FILE" (QEMU 7.2 has no file: URI) so the migration stream holds the device state
 * only; poll query-migrate until completed; then the guest RAM file's used pages (holes found
 * with SEEK_DATA/SEEK_HOLE and all-zero pages are left out) and the device state go into
 * extents of a memory server with one-sided WRITEs; manifest written; QEMU quit and reaped;
 * the RAM file deleted (its host memory released). Any failure before the quit puts the VM
 * back to running (cont) and leaves nothing in the pool.
 *
 * resume: manifest checked; a new RAM file created (unused pages stay holes); QEMU started on
 * it with the same command line + -incoming defer while the file is filled with one-sided READs
 * (QEMU maps it shared: its start-up overlaps the transfer) and the checksum compared;
 * x-ignore-shared; migrate-incoming "exec:cat FILE"; wait while inmigrate; cont. Any
 * failure leaves the VM hibernated with its image in the pool (the resume can be retried), the
 * half-made RAM file and a half-started QEMU removed.
 *
 * Pool lifetime: once written, the image's extents are kept (ferry-memsrv KEEP, proto/page.h
 * "Kept extents"): they leave the session that stored them and outlive it, and the manifest
 * records their claim tokens. Any process on any node that has the cluster secret, the
 * manifest and the same memory server configured resumes the VM: it claims the extents (they
 * become its session's), reads the pages and frees them once the VM runs. A failed resume keeps
 * them again under new tokens (the manifest is rewritten), so it can be retried from anywhere.
 * The claim tokens are capabilities: the manifest is written 0600 and a token leak is an image
 * leak. Kept images are lost if the memory server itself restarts (a memory pool; the resume
 * then says the server no longer holds the image). The manifest names the memory server as the
 * hibernating side reached it (host:port): a resume talks to that server for the one call,
 * whatever this struct hib is configured with, so the hibernating side must use an address the
 * other nodes can reach too (not 127.0.0.1 if another node is to resume). hib_destroy of a hibernated VM discards
 * its image.
 *
 * Idle detection (hib_idle_*): packets on the VM's tap over a window (from the QEMU process's
 * network namespace: /proc/PID/net/dev, or /sys/class/net/TAP/statistics in ours), host CPU of
 * the QEMU process (/proc/PID/stat), and an optional list of guest processes that forbid
 * hibernation, read through the QEMU guest agent when one is configured and answers ("no guest
 * agent" otherwise, which does not forbid).
 *
 * Every call returns 0 or a negative errno with @p err filled. One thread at a time per struct hib.
 */
#ifndef FERRY_CTRL_HIB_H
#define FERRY_CTRL_HIB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "dataplane/common/ferry_err.h"
#include "dataplane/transport/transport.h"

#define HIB_NAME_MAX 48

struct hib;

struct hib_opts {
	const char *state_dir;       /**< required; created if missing */
	const char *ram_dir;         /**< where RAM files live (default /dev/shm) */
	/* The memory server that holds hibernation images (connected on first use). */
	const char *pool_host;       /**< default 127.0.0.1 */
	uint16_t pool_port;
	const char *secret_path;     /**< cluster secret file */
	enum fx_kind transport;      /**< default tcp */
	int qmp_timeout_ms;          /**< per QMP command and for QEMU to come up (default 10000) */
	int migrate_timeout_ms;      /**< device state out / in (default 60000) */
	bool no_verify;              /**< skip the page checksum on resume (it is on by default) */
	const char *client_name;     /**< our name at the memory server (default "ferry-hib") */
};

/** What a hibernate or resume did, for reports and benchmarks (times in ms). */
struct hib_stats {
	uint64_t ram_bytes;          /**< guest RAM size */
	uint64_t data_pages;         /**< pages in the RAM file's data regions (not holes) */
	uint64_t zero_pages;         /**< of those, all-zero (not stored) */
	uint64_t stored_pages;       /**< pages in the pool */
	uint64_t stored_bytes;       /**< bytes in the pool: pages + device state */
	uint64_t dev_bytes;          /**< device state */
	uint32_t runs;               /**< contiguous page runs in the manifest */
	double t_stop, t_devstate, t_scan, t_pool, t_quit, t_total;       /* hibernate */
	double t_ram, t_qemu_up, t_incoming, t_cont;                      /* resume (+ t_total) */
	pid_t pid;                   /**< resume: the new QEMU */
};

int hib_open(const struct hib_opts *opts, struct hib **out, struct ferry_err *err);
/** Closes the pool session too (hibernated images stay in the pool: they are kept). */
void hib_close(struct hib *h);

/** Define (or redefine, when not running) VM @p name: QEMU argv (NULL-terminated), RAM bytes. */
int hib_define(struct hib *h, const char *name, char *const argv[], uint64_t ram_bytes, struct ferry_err *err);
/** Start a defined, stopped VM (fresh boot). */
int hib_start(struct hib *h, const char *name, pid_t *pid, struct ferry_err *err);
int hib_hibernate(struct hib *h, const char *name, struct hib_stats *st, struct ferry_err *err);
int hib_resume(struct hib *h, const char *name, struct hib_stats *st, struct ferry_err *err);
/** Stop a running VM (quit, reap, RAM file removed) or drop a hibernated one's image. */
int hib_destroy(struct hib *h, const char *name, struct ferry_err *err);

/**
 * The seed's approach, kept for same-run comparisons (ferry-perf wake's baseline): the whole
 * machine state, RAM included (no x-ignore-shared), into one file on disk (fsynced and dropped
 * from the page cache), nothing in the pool; and its resume (QEMU -incoming from that file).
 */
int hib_hibernate_file(struct hib *h, const char *name, const char *image, struct hib_stats *st, struct ferry_err *err);
int hib_resume_file(struct hib *h, const char *name, const char *image, struct hib_stats *st, struct ferry_err *err);

enum hib_vm_state { HIB_STOPPED = 0, HIB_RUNNING, HIB_HIBERNATED };
const char *hib_state_name(enum hib_vm_state s);
/** Where VM @p name is, and its QEMU pid when running. */
int hib_query(struct hib *h, const char *name, enum hib_vm_state *state, pid_t *pid, struct ferry_err *err);

/** A sample of a VM's activity. */
struct hib_idle_sample {
	double t;                    /**< monotonic seconds */
	uint64_t rx_packets, tx_packets;
	uint64_t cpu_ticks;          /**< utime + stime of the QEMU process */
};

struct hib_idle_opts {
	const char *tap;             /**< the VM's tap interface */
	double cpu_max_pct;          /**< idle only below this share of one CPU (default 5) */
	const char *qga_path;        /**< QEMU guest agent socket, or NULL */
	const char *const *forbid;   /**< guest process names that forbid hibernation (NULL-terminated) */
};

struct hib_idle_result {
	bool idle;                   /**< all three below */
	bool net_idle, cpu_idle, procs_allow;
	uint64_t packets;            /**< rx + tx during the window */
	double cpu_pct;              /**< of one CPU, during the window */
	bool agent;                  /**< a guest agent answered */
	char reason[192];            /**< why not idle, or "idle" */
};

int hib_idle_sample(struct hib *h, const char *name, const char *tap, struct hib_idle_sample *s, struct ferry_err *err);
/** Judge two samples (pure, but for the optional guest agent query). */
int hib_idle_judge(const struct hib_idle_sample *a, const struct hib_idle_sample *b, const struct hib_idle_opts *o,
		   struct hib_idle_result *r, struct ferry_err *err);
/** Sample, wait @p window_s, sample, judge. */
int hib_idle_check(struct hib *h, const char *name, const struct hib_idle_opts *o, double window_s,
		   struct hib_idle_result *r, struct ferry_err *err);

/**
 * Ask the guest agent at @p qga_path for the running process names (guest-exec of ps).
 * -ENOENT with "no guest agent" when the socket is absent or nobody answers.
 */
int hib_qga_processes(const char *qga_path, int timeout_ms, char ***names, size_t *n, struct ferry_err *err);

#endif /* FERRY_CTRL_HIB_H */
