/*
 * Kept extents in ferry-memsrv (proto/page.h, "Kept extents").
 *
 * KEEP takes an extent out of its session: its shares are revoked, its
 * window on the keeper's connection is unbound, and the allocator moves it
 * from the keeper's account to the server's own "kept" account, whose quota
 * is the kept_bytes limit. What remains is the extent's registration
 * (without remote rights: nobody can reach it) and its bytes, untouched,
 * named by a claim token of 32 random bytes (libsodium).
 *
 * CLAIM hands it to the presenting session: the allocator moves it to that
 * session's account (its quota applies), a new window over it is bound to
 * that session's connection only, and the token is wiped: it is spent.
 * DISCARD scrubs the memory and gives it back to the pool.
 *
 * Trust model: the cluster secret admits a client (any node), the token is
 * the capability. Tokens are compared in constant time, and a refused token
 * says nothing about which tokens exist. Kept extents live only in this
 * process: a restart of ferry-memsrv loses them (it is a memory pool).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/common/units.h"
#include "dataplane/memsrv/server_int.h"

int kept_open(struct memsrv *srv, struct ferry_err *err)
{
	/* Quota 0 would mean "no limit" to the allocator; kept_bytes 0 means "no KEEP" and is checked first. */
	return ea_client_open(srv->ea, srv->cfg->kept_bytes ? srv->cfg->kept_bytes : 1, &srv->kept_acct, err);
}

struct kept *kept_find(struct memsrv *srv, const uint8_t token[FERRY_PAGE_TOKEN_LEN], struct kept ***link)
{
	/* Constant time per comparison: a timing probe learns nothing about a live token's bytes. */
	for (struct kept **pp = &srv->kept; *pp; pp = &(*pp)->next)
		if (sodium_memcmp((*pp)->token, token, FERRY_PAGE_TOKEN_LEN) == 0) {
			if (link)
				*link = pp;
			return *pp;
		}
	return NULL;
}

int kept_add(struct memsrv *srv, struct session *s, uint32_t extent_id, struct fx_mr *mr,
	     uint8_t token[FERRY_PAGE_TOKEN_LEN], struct ferry_err *err)
{
	char sz[FERRY_SIZE_STR], held[FERRY_SIZE_STR], lim[FERRY_SIZE_STR];
	struct ea_extent e;
	struct kept *k;
	int rc;

	if (srv->cfg->kept_bytes == 0)
		return ferry_err_set(err, EPERM, "keep: this server keeps no extents (kept_bytes = 0)");
	if (srv->nkept >= srv->cfg->kept_max)
		return ferry_err_set(err, EMLINK, "keep: %u extents are kept already (kept_max)", srv->nkept);
	if (ea_lookup(srv->ea, s->acct, extent_id, &e, err))
		return -ENOENT;
	k = calloc(1, sizeof(*k));
	if (!k)
		return ferry_err_set(err, ENOMEM, "keep: out of memory");
	rc = ea_transfer(srv->ea, s->acct, extent_id, srv->kept_acct, err);
	if (rc == -EDQUOT) {
		free(k);
		return ferry_err_set(err, EMLINK, "keep: %s more would pass the kept-bytes limit (%s kept of %s)",
				     ferry_size_format(e.length, sz, sizeof(sz)),
				     ferry_size_format(ea_client_bytes(srv->kept_acct), held, sizeof(held)),
				     ferry_size_format(srv->cfg->kept_bytes, lim, sizeof(lim)));
	}
	if (rc) {
		free(k);
		return rc;
	}
	k->extent_id = extent_id;
	k->offset = e.offset;
	k->length = e.length;
	k->mr = mr;
	k->from_sid = s->sid;
	randombytes_buf(k->token, sizeof(k->token));
	memcpy(token, k->token, sizeof(k->token));
	k->next = srv->kept;
	srv->kept = k;
	srv->nkept++;
	srv->c.kept++;
	return 0;
}

void kept_unlink(struct memsrv *srv, struct kept **link)
{
	struct kept *k = *link;

	*link = k->next;
	srv->nkept--;
	sodium_memzero(k->token, sizeof(k->token));
	free(k);
}

int kept_discard(struct memsrv *srv, struct kept **link, uint64_t *length)
{
	struct kept *k = *link;
	int rc = fx_dereg_mr(k->mr);

	if (rc)
		return rc;   /* still registered: do not hand the memory on */
	memset((uint8_t *)srv->pool.region.addr + k->offset, 0, k->length);
	ea_free(srv->ea, srv->kept_acct, k->extent_id, NULL);
	*length = k->length;
	kept_unlink(srv, link);
	srv->c.discards++;
	return 0;
}

void kept_destroy_all(struct memsrv *srv)
{
	uint64_t len;
	uint32_t n = 0;

	while (srv->kept) {
		if (kept_discard(srv, &srv->kept, &len)) {
			LOG_WARN("kept extent %u: deregistration failed at shutdown", srv->kept->extent_id);
			kept_unlink(srv, &srv->kept);
		}
		n++;
	}
	if (n)
		LOG_INFO("shutdown: %u kept extents lost (kept extents do not outlive the server)", n);
}
