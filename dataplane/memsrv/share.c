/*
 * Extent sharing in ferry-memsrv (proto/page.h, "Extent sharing").
 *
 * A share is the owner's explicit grant on one of its extents, named by 32
 * random bytes (libsodium). Anyone authenticated on this server who presents
 * the token may ATTACH: that registers the extent's exact range once more, in
 * the attacher's own protection domain and with the granted rights only. So
 * the attachment's rkey is worthless on every other connection (like an
 * extent's own key), and a read-only attachment refuses WRITE in the
 * transport (TCP) or the NIC (RDMA), before any byte moves.
 *
 * Revocation is deregistration: UNSHARE, the owner's FREE and the end of the
 * owner's session drop every attachment's registration before the memory is
 * scrubbed or handed on, so a revoked rkey fails with a remote access error
 * and touches nothing. The numbers are small (SHARE_MAX_PER_EXTENT shares
 * per extent, SESS_MAX_ATTACH attachments per session), so plain lists do.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/server_int.h"

static int access_of(uint32_t rights)
{
	int access = 0;

	if (rights & FERRY_PAGE_SHARE_READ)
		access |= FX_ACCESS_REMOTE_READ;
	/* Verbs require local write for remote write; it gives the attacher nothing more. */
	if (rights & FERRY_PAGE_SHARE_WRITE)
		access |= FX_ACCESS_REMOTE_WRITE | FX_ACCESS_LOCAL_WRITE;
	return access;
}

uint32_t share_count(const struct session *owner, uint32_t extent_id)
{
	uint32_t n = 0;

	for (const struct share *sh = owner->srv->shares; sh; sh = sh->next)
		if (sh->owner == owner && sh->extent_id == extent_id)
			n++;
	return n;
}

int share_create(struct session *owner, uint32_t extent_id, uint64_t offset, uint64_t length, uint32_t rights,
		 uint8_t token[FERRY_PAGE_TOKEN_LEN])
{
	struct memsrv *srv = owner->srv;
	struct share *sh;

	if (share_count(owner, extent_id) >= SHARE_MAX_PER_EXTENT)
		return -EMLINK;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	sh->owner = owner;
	sh->extent_id = extent_id;
	sh->rights = rights;
	sh->offset = offset;
	sh->length = length;
	randombytes_buf(sh->token, sizeof(sh->token));
	memcpy(token, sh->token, sizeof(sh->token));
	sh->next = srv->shares;
	srv->shares = sh;
	srv->c.shares++;
	srv->c.shares_active++;
	return 0;
}

struct share *share_find(struct memsrv *srv, const uint8_t token[FERRY_PAGE_TOKEN_LEN])
{
	/* Constant-time per comparison: a timing probe learns nothing about a live token's bytes. */
	for (struct share *sh = srv->shares; sh; sh = sh->next)
		if (sodium_memcmp(sh->token, token, FERRY_PAGE_TOKEN_LEN) == 0)
			return sh;
	return NULL;
}

int share_attach(struct share *sh, struct session *s, struct ferry_page_attach_ok *out, struct ferry_err *err)
{
	struct memsrv *srv = s->srv;
	struct attachment *a;
	int rc;

	if (s->nattach >= SESS_MAX_ATTACH)
		return ferry_err_set(err, EMLINK, "this session already holds %u attachments (the limit)",
				     SESS_MAX_ATTACH);
	a = calloc(1, sizeof(*a));
	if (!a)
		return ferry_err_set(err, ENOMEM, "out of memory");
	rc = fx_reg_mr(s->pd, (uint8_t *)srv->pool.region.addr + sh->offset, sh->length, access_of(sh->rights),
		       &a->mr, err);
	if (rc) {
		free(a);
		return rc;
	}
	do
		a->id = ++s->next_attach_id;
	while (a->id == 0);
	a->share = sh;
	a->attacher = s;
	a->next = sh->atts;
	sh->atts = a;
	s->nattach++;
	srv->c.attaches++;
	srv->c.attachments_active++;
	*out = (struct ferry_page_attach_ok){ .attach_id = a->id, .rkey = a->mr->rkey, .base = a->mr->remote_base,
					      .length = sh->length, .rights = sh->rights };
	return 0;
}

/* Deregister and free one attachment already unlinked from its share. @return 0 or the dereg error. */
static int attachment_drop(struct attachment *a)
{
	struct session *s = a->attacher;
	int rc = fx_dereg_mr(a->mr);

	if (rc)
		LOG_ERR("client %llu: deregistering attachment %u (extent %u of client %llu) failed: %s",
			(unsigned long long)s->sid, a->id, a->share->extent_id,
			(unsigned long long)a->share->owner->sid, strerror(-rc));
	s->nattach--;
	s->srv->c.attachments_active--;
	free(a);
	return rc;
}

int share_detach(struct session *s, uint32_t attach_id)
{
	for (struct share *sh = s->srv->shares; sh; sh = sh->next) {
		for (struct attachment **pp = &sh->atts; *pp; pp = &(*pp)->next) {
			struct attachment *a = *pp;

			if (a->attacher != s || a->id != attach_id)
				continue;
			*pp = a->next;
			s->srv->c.detaches++;
			return attachment_drop(a);
		}
	}
	return -ENOENT;
}

/* Revoke every attachment of @sh and free it (already unlinked from the server's list). */
static uint32_t share_destroy(struct share *sh, uint32_t *failed)
{
	struct memsrv *srv = sh->owner->srv;
	uint32_t n = 0;

	while (sh->atts) {
		struct attachment *a = sh->atts;

		sh->atts = a->next;
		LOG_DEBUG("client %llu: attachment %u to extent %u of client %llu revoked",
			  (unsigned long long)a->attacher->sid, a->id, sh->extent_id,
			  (unsigned long long)sh->owner->sid);
		if (attachment_drop(a))
			(*failed)++;
		srv->c.revocations++;
		n++;
	}
	sodium_memzero(sh->token, sizeof(sh->token));
	srv->c.shares_active--;
	free(sh);
	return n;
}

uint32_t share_revoke_extent(struct session *owner, uint32_t extent_id, uint32_t *failed)
{
	struct share **pp = &owner->srv->shares;
	uint32_t n = 0;

	*failed = 0;
	while (*pp) {
		struct share *sh = *pp;

		if (sh->owner == owner && sh->extent_id == extent_id) {
			*pp = sh->next;
			n += share_destroy(sh, failed);
		} else {
			pp = &sh->next;
		}
	}
	return n;
}

void share_session_closed(struct session *s)
{
	struct share **pp = &s->srv->shares;
	uint32_t failed = 0, revoked = 0;

	while (*pp) {
		struct share *sh = *pp;

		if (sh->owner == s) {
			*pp = sh->next;
			revoked += share_destroy(sh, &failed);
			continue;
		}
		for (struct attachment **ap = &sh->atts; *ap;) {
			struct attachment *a = *ap;

			if (a->attacher == s) {
				*ap = a->next;
				attachment_drop(a);
			} else {
				ap = &a->next;
			}
		}
		pp = &sh->next;
	}
	if (revoked)
		LOG_INFO("client %llu: its end revoked %u attachments of its extents held by other clients%s",
			 (unsigned long long)s->sid, revoked, failed ? " (some registrations would not go away)" : "");
}
