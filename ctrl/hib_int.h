/*
 * Internals of the hibernation library (hib.h): the VM record, the manifest, and the parts
 * split into their own files (persistence: hib_state.c; pool I/O: hib_pool.c; QEMU process:
 * hib_qemu.c; idle detection: hib_idle.c).
 */
#ifndef FERRY_CTRL_HIB_INT_H
#define FERRY_CTRL_HIB_INT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ctrl/hib.h"
#include "ctrl/qmp.h"

#define HIB_PAGE 4096u
#define HIB_SUM_LEN 32u                   /* page checksum: 4 x 64-bit lanes (hib_pool.c) */
#define HIB_MANIFEST_FORMAT 2           /* 2: extents carry their claim tokens (kept extents) */
#define HIB_TOKEN_LEN 32u                 /* a kept extent's claim token (pool_client.h) */

struct pool_client;

struct hib {
	char state_dir[PATH_MAX];
	char ram_dir[PATH_MAX];
	char pool_host[64];
	uint16_t pool_port;
	char secret_path[PATH_MAX];
	enum fx_kind transport;
	int qmp_timeout_ms, migrate_timeout_ms;
	bool no_verify;
	struct fx_ctx *ctx;               /* the pool session (connected on first use) */
	struct pool_client *pc;
	char client_name[65];             /* our name at the memory server */
};

struct hib_vm {
	char name[HIB_NAME_MAX];
	char **argv;                      /* NULL-terminated, owned */
	size_t argc;
	uint64_t ram_bytes;
	enum hib_vm_state state;
	pid_t pid;
	char json_path[PATH_MAX], manifest_path[PATH_MAX];
	char ram_path[PATH_MAX], qmp_path[PATH_MAX], log_path[PATH_MAX], dev_path[PATH_MAX];
};

struct hib_extent {
	uint32_t id, rkey;
	uint64_t base, length;
	bool kept;                        /* out of every session, named by token (else ours: id/rkey/base) */
	uint8_t token[HIB_TOKEN_LEN];     /* the claim token while kept: a capability, 0600 on disk */
};

/* Pages [page, page+count) of the RAM file are at byte off of extent ext. */
struct hib_run {
	uint64_t page, count;
	uint32_t ext;
	uint64_t off;
};

struct hib_manifest {
	char name[HIB_NAME_MAX];
	uint64_t ram_bytes;
	char **argv;                      /* the command line the VM ran with (owned) */
	size_t argc;
	char pool[96];                    /* host:port of the memory server */
	struct hib_extent *ext;
	size_t next;
	struct hib_run *runs;
	size_t nruns;
	uint64_t stored_pages;
	uint32_t dev_ext;
	uint64_t dev_off, dev_bytes;
	uint64_t data_pages, zero_pages;
	uint8_t sum[HIB_SUM_LEN];         /* pages in run order, then the device state */
};

/* hib_state.c */
int hib_vm_paths(struct hib *h, const char *name, struct hib_vm *vm, struct ferry_err *err);
int hib_vm_load(struct hib *h, const char *name, struct hib_vm *vm, struct ferry_err *err);
int hib_vm_save(const struct hib_vm *vm, struct ferry_err *err);
void hib_vm_free(struct hib_vm *vm);
int hib_manifest_save(const struct hib_vm *vm, const struct hib_manifest *m, struct ferry_err *err);
int hib_manifest_load(const struct hib_vm *vm, struct hib_manifest *m, struct ferry_err *err);
void hib_manifest_free(struct hib_manifest *m);
char **hib_argv_dup(char *const argv[], size_t *argc);
void hib_argv_free(char **argv);
int hib_write_file_atomic(const char *path, const void *data, size_t len, struct ferry_err *err);

/* hib_pool.c */
int hib_pool_connect(struct hib *h, struct ferry_err *err);
/* Close the pool session (our own extents go with it; kept ones stay). */
void hib_pool_disconnect(struct hib *h);
/* Allocate extents and plan runs for the used pages of ram[0..ram_bytes): fills m->ext, m->runs
 * and the page counters. Zero pages and holes (of fd) are left out. */
int hib_pool_plan(struct hib *h, int fd, const uint8_t *ram, uint64_t ram_bytes, uint64_t dev_bytes,
		  struct hib_manifest *m, struct ferry_err *err);
/* Move the planned runs and the device state: write = 1 stores (ram -> pool), 0 loads. */
int hib_pool_io(struct hib *h, int write, uint8_t *ram, uint64_t ram_bytes, uint8_t *dev, const struct hib_manifest *m,
		struct ferry_err *err);
/* Give up the image: kept extents are discarded (by token), our own extents freed. */
void hib_pool_release(struct hib *h, struct hib_manifest *m);
/* Detach every extent of the image from our session (KEEP): it outlives this process; the
 * manifest (saved after this) carries the claim tokens. On failure the kept ones stay marked
 * kept (hib_pool_release discards them). */
int hib_pool_keep(struct hib *h, struct hib_manifest *m, struct ferry_err *err);
/* Take every kept extent of the image into our session (CLAIM): fills id/rkey/base. On failure
 * the claimed ones are ours (not kept); hib_pool_keep gives them new tokens. */
int hib_pool_claim(struct hib *h, struct hib_manifest *m, struct ferry_err *err);
void hib_checksum(const uint8_t *ram, const uint8_t *dev, const struct hib_manifest *m, uint8_t out[HIB_SUM_LEN]);

/* hib_qemu.c */
int hib_qemu_spawn(struct hib *h, struct hib_vm *vm, bool incoming, pid_t *pid, struct ferry_err *err);
/* Connect to its QMP socket, failing early (with QEMU's log) if the process exits. */
int hib_qemu_qmp(struct hib *h, struct hib_vm *vm, pid_t pid, struct qmp **q, struct ferry_err *err);
/* Wait until pid is gone (reaped if it is our child). */
int hib_qemu_wait_exit(pid_t pid, int timeout_ms, struct ferry_err *err);
bool hib_pid_alive(pid_t pid);
void hib_log_tail(const char *path, char *buf, size_t len);

double hib_now_ms(void);

#endif /* FERRY_CTRL_HIB_INT_H */
