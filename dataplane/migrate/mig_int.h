/*
 * Engine internals shared by mig_engine.c (control socket, lifecycle, pager
 * hooks), mig_io.c (stream I/O, auth), mig_source.c and mig_dest.c. See
 * migrate.h for the design.
 */
#ifndef FERRY_MIG_INT_H
#define FERRY_MIG_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/mono_time.h"
#include "dataplane/common/sock_io.h"
#include "dataplane/migrate/migrate.h"
#include "dataplane/pager/pager.h"
#include "dataplane/transport/transport.h"
#include "proto/migrate.h"

#define MIG_IO_TIMEOUT_MS 5000
#define MIG_ERROR_SEND_MS 200     /* a failing side's last ERROR to its peer */
#define MIG_BATCH 256u             /* pages per WRITE batch + PAGE_MAP */
#define MIG_TICK_PAGES 512u        /* pages a source sends per loop iteration (other faults wait this long) */
#define MIG_MAX_ROUNDS 10u
#define MIG_STOP_PAGES 256u        /* dirty pages small enough to stop */
#define MIG_PULL_PAGES 64u
#define MIG_KEEPALIVE_IDLE_S 3      /* stream: silence before keepalive probes */
#define MIG_KEEPALIVE_PROBES 5      /* one a second; then the stream (and the migration) is dead */
#define MIG_GRAVE_MAX 256u         /* post-copy pages a destination pulls per loop iteration */

/* Every engine object watched by the pager's epoll starts with this. */
struct mig_evh {
	void (*fn)(struct mig_evh *h, uint32_t events);
	void *tag;                 /* pg_epoll_add tag */
	int fd;
};

struct mig_src;
struct mig_dst;

/* One control-socket connection. */
struct mig_ctl_conn {
	struct mig_evh h;
	struct mig_engine *eng;
	struct mig_ctl_conn *next;
	bool refused, dead;
	uint32_t uid;
	pid_t pid;
};

/* One not-yet-identified incoming stream (before HELLO names its migration). */
struct mig_engine {
	struct pager *pg;
	struct ferry_secret secret;
	bool have_secret;
	struct mig_evh ctl_l;      /* control listener */
	struct mig_evh stream_l;   /* incoming stream listener */
	uint16_t stream_port;
	struct mig_ctl_conn *conns;
	struct mig_src *srcs;
	struct mig_dst *dsts;
	void *grave[MIG_GRAVE_MAX]; /* epoll tags to free after this loop round */
	unsigned ngrave;
	uint8_t *buf;              /* MIGP_MAX_MSG, replies / messages */
	uint8_t *rx;               /* MIGP_MAX_MSG */
	struct {
		uint64_t ctl_requests, ctl_refused, bad_messages, auth_failures, started, succeeded, failed, aborted,
			incoming, stale_entries;
	} c;
};

/* ---------------------------------------------------------------- mig_io.c */
int mig_set_nonblock(int fd);
/* Read one whole message into @p rx (MIGP_MAX_MSG) and decode it. 0, -errno (I/O, -ETIMEDOUT, -ECONNRESET
 * at EOF) or -EPROTO with *@p code the MIG_E_* decode error. */
int mig_recv_msg(int fd, uint8_t *rx, struct migp_msg *m, int timeout_ms, int *code);
/* Data (or EOF / an error) is waiting on @p fd now. Event handlers check it first: a synchronous
 * exchange earlier in the same loop round (credits, post-copy fetch) may have read what the event
 * announced. */
bool mig_readable(int fd);
/* Keepalive and user timeout on a stream socket: a silently dropped link is noticed within
 * MIG_KEEPALIVE_IDLE_S + MIG_KEEPALIVE_PROBES seconds. */
void mig_stream_liveness(int fd);
/* Send an encoded message (len from an encoder: negative = encode error -> -EINVAL). */
int mig_send_msg(int fd, const uint8_t *buf, int len);
/* "vm-id/<hex token>": the name both MACs cover. */
void mig_auth_name(const char *id, const uint8_t token[MIGP_TOKEN_LEN], char *out, size_t cap);
int mig_tcp_connect(const char *host, uint16_t port, int timeout_ms, struct ferry_err *err);
int mig_tcp_listen(const char *host, uint16_t port, uint16_t *bound, struct ferry_err *err);
/* "ip" of a connected socket's peer. */
void mig_peer_ip(int fd, char *out, size_t cap);
int mig_evh_add(struct pager *pg, struct mig_evh *h, int fd, void (*fn)(struct mig_evh *, uint32_t));
void mig_evh_del(struct pager *pg, struct mig_evh *h);
/* Map the VM's memory regions into one contiguous area (page i at area + i*4096). */
void *mig_map_vm(struct pg_vm *vm, size_t *len, struct ferry_err *err);
void mig_set_progress_error(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- mig_source.c */
int mig_src_start(struct mig_engine *eng, const struct migp_start *s, struct ferry_err *err);
struct mig_src *mig_src_find(struct mig_engine *eng, const char *id);
void mig_src_progress(const struct mig_src *s, struct mig_progress *p);
int mig_src_abort(struct mig_src *s, struct ferry_err *err);
void mig_src_tick(struct mig_src *s);
struct pg_fault;
/** A fault of the source VM while planned mode samples it: 1 taken by the access sampler. */
int mig_src_sample_fault(struct mig_src *s, uint64_t idx, const struct pg_fault *f);
bool mig_src_busy(const struct mig_src *s);
void mig_src_note_write(struct mig_src *s, uint64_t idx);
void mig_src_vm_gone(struct mig_src *s);
bool mig_src_holds(const struct mig_src *s);
bool mig_src_no_pageout(const struct mig_src *s);
void mig_src_free_done(struct mig_engine *eng);
void mig_src_destroy_all(struct mig_engine *eng);

/* ---------------------------------------------------------------- mig_dest.c */
int mig_dst_prepare(struct mig_engine *eng, const struct migp_prepare *p, struct migp_prepare_ok *ok,
		    struct ferry_err *err);
struct mig_dst *mig_dst_find(struct mig_engine *eng, const char *id);
void mig_dst_progress(const struct mig_dst *d, struct mig_progress *p);
int mig_dst_abort(struct mig_dst *d, struct ferry_err *err);
void mig_dst_stream_accept(struct mig_engine *eng);
void mig_dst_tick(struct mig_dst *d);
bool mig_dst_busy(const struct mig_dst *d);
void mig_dst_vm_gone(struct mig_dst *d);
bool mig_dst_holds(const struct mig_dst *d);
int mig_dst_fetch(struct mig_dst *d, uint64_t idx, void *buf);
void mig_dst_destroy_all(struct mig_engine *eng);

#endif
