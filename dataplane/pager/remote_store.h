/**
 * @file remote_store.h
 * Pool slots for the pager: extents allocated from the configured memory
 * servers (pool_client), carved into 4 KiB slots with a free bitmap, and
 * batched one-sided READ/WRITE of pages through one bounce buffer that is
 * registered in every server's protection domain.
 *
 * Placement is least-used: a new slot goes to the live server with the fewest
 * used slots; an extent that becomes empty is FREEd back to its server at
 * once (so the server's bytes drop when the guest frees memory).
 *
 * A server whose connection fails (peer gone, op error, timeout) is marked
 * lost: its slots are forgotten, rs_io() on it fails, and rs_take_lost()
 * reports it once so the pager can fail the VMs that had pages there.
 * Single-threaded: one owner thread.
 */
#ifndef FERRY_PAGER_REMOTE_STORE_H
#define FERRY_PAGER_REMOTE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_err.h"
#include "dataplane/pager/config.h"
#include "dataplane/transport/transport.h"

/** Pages in the bounce buffer = most pages one rs_io() call moves. */
#define RS_BOUNCE_PAGES 256u

struct remote_store;

/** One page transfer: (server, slot) <-> bounce page @p buf. */
struct rs_op {
	uint16_t server;
	uint32_t slot;
	uint32_t buf;       /**< bounce page index (< RS_BOUNCE_PAGES) */
	int status;         /**< out: 0 or a negative errno */
};

/**
 * Connect to every server in @p cfg (a server that cannot be reached is
 * logged and marked lost; the store still starts). @p cfg->nservers may be 0:
 * then rs_alloc() always fails with -ENOSPC.
 */
int rs_create(const struct pager_config *cfg, const struct ferry_secret *secret, struct remote_store **rs,
	      struct ferry_err *err);
void rs_destroy(struct remote_store *rs);

unsigned rs_nservers(const struct remote_store *rs);
bool rs_alive(const struct remote_store *rs, uint16_t server);
/** Is any server alive? */
bool rs_any_alive(const struct remote_store *rs);
const char *rs_server_name(const struct remote_store *rs, uint16_t server);
/** Descriptor to watch (readable: call rs_service()), -1 for a lost server. */
int rs_server_fd(const struct remote_store *rs, uint16_t server);
/** Make transport progress on @p server without waiting; detects a lost server. */
void rs_service(struct remote_store *rs, uint16_t server);
/** Index of a server lost since the last call, or -1. Each loss is reported once. */
int rs_take_lost(struct remote_store *rs);

/** A free slot on the least-used live server. -ENOSPC when none can be had. */
int rs_alloc(struct remote_store *rs, uint16_t *server, uint32_t *slot, struct ferry_err *err);
/** Return a slot (no-op for a lost server). */
void rs_release(struct remote_store *rs, uint16_t server, uint32_t slot);

/** Bounce page @p i (4 KiB, registered). */
void *rs_bounce(struct remote_store *rs, uint32_t i);

/**
 * Run @p n (<= RS_BOUNCE_PAGES) transfers, @p op FX_OP_READ (slot -> bounce)
 * or FX_OP_WRITE (bounce -> slot), posted in batches per server and waited
 * for. @return 0 when all succeeded, else the first failure (each op's
 * status says which).
 */
int rs_io(struct remote_store *rs, enum fx_opcode op, struct rs_op *ops, unsigned n);

/* ---------------------------------------------------------------- split migration (issue 5) */

/** Index of the live server @p host:@p port, or -1. */
int rs_find_server(const struct remote_store *rs, const char *host, uint16_t port);
/**
 * Destination of a migration: allocate one extent on @p server whose slots
 * are all taken at once (the source fills them), and share it with write
 * rights: @p token goes to the source, which attaches and WRITEs pages into
 * it. Slot s of the extent is store slot *@p first_slot + s, s < *@p nslots;
 * rs_release() the slots that end up unreferenced (an empty extent is freed).
 */
int rs_share_extent(struct remote_store *rs, uint16_t server, uint32_t *first_slot, uint32_t *nslots,
		    uint64_t *length, uint32_t *extent_id, uint8_t token[32], struct ferry_err *err);
/** Revoke the shares of the extent holding slot @p first_slot (the source is done writing). */
void rs_unshare_extent(struct remote_store *rs, uint16_t server, uint32_t first_slot);
/** Is slot @p slot of @p server in use? */
bool rs_slot_used(const struct remote_store *rs, uint16_t server, uint32_t slot);

struct rs_stats {
	uint64_t slots_used, slots_total, extents, bytes_read, bytes_written, io_errors;
};
void rs_get_stats(const struct remote_store *rs, struct rs_stats *st);

#endif /* FERRY_PAGER_REMOTE_STORE_H */
