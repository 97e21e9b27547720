/*
 * libFuzzer target: ferry_page_decode on arbitrary bytes.
 *
 * Every message that decodes is re-encoded with its encoder (prefix encoders
 * plus the data for READ_DATA/WRITE) and decoded again; the two decodings
 * must agree field by field, and the re-encoding must reproduce the input
 * bytes exactly (the wire form is canonical: every reserved field is zero),
 * except HELLO's features word, which the encoder cannot set.
 */
#include "proto/page.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[FERRY_PAGE_HDR_LEN + FERRY_PAGE_MAX_PAYLOAD];
static struct ferry_page_iov iov[FERRY_PAGE_MAX_IOV];
static struct ferry_page_msg m1, m2;

static void check(bool ok)
{
	if (!ok)
		abort();
}

/* Append @len data bytes after an encoded prefix of @n bytes. */
static int add_data(int n, const uint8_t *src, uint64_t len)
{
	if (n < 0)
		return n;
	check((uint64_t)n + len <= sizeof(out));
	if (len)
		memcpy(out + n, src, len);
	return n + (int)len;
}

static int encode_rw(const struct ferry_page_msg *m)
{
	const struct ferry_page_rw *rw = &m->u.rw;
	uint8_t type = m->hdr.type;
	int n;

	if (type == FERRY_PAGE_READ_DATA) {
		n = ferry_page_encode_read_data_prefix(m->hdr.request_id, rw->count, rw->data_len,
						       out, sizeof(out));
		return add_data(n, rw->data, rw->data_len);
	}
	for (uint32_t i = 0; i < rw->count; i++)
		ferry_page_rw_entry(rw, i, &iov[i]);
	n = ferry_page_encode_rw_prefix(type, m->hdr.request_id, iov, rw->count,
					type == FERRY_PAGE_WRITE ? rw->data_len : 0, out, sizeof(out));
	return type == FERRY_PAGE_WRITE ? add_data(n, rw->data, rw->data_len) : n;
}

static int encode(const struct ferry_page_msg *m)
{
	uint64_t req = m->hdr.request_id;

	switch (m->hdr.type) {
	case FERRY_PAGE_HELLO:
		return ferry_page_encode_hello(req, m->u.hello.name, m->u.hello.version_min,
					       m->u.hello.version_max, out, sizeof(out));
	case FERRY_PAGE_CHALLENGE:
		return ferry_page_encode_challenge(req, m->u.challenge.version, m->u.challenge.nonce,
						   out, sizeof(out));
	case FERRY_PAGE_AUTH:
		return ferry_page_encode_auth(req, m->u.auth.nonce, m->u.auth.mac, out, sizeof(out));
	case FERRY_PAGE_AUTH_OK:
		return ferry_page_encode_auth_ok(req, &m->u.auth_ok, out, sizeof(out));
	case FERRY_PAGE_ALLOC:
		return ferry_page_encode_alloc(req, m->u.alloc.length, m->u.alloc.flags, out, sizeof(out));
	case FERRY_PAGE_ALLOC_OK:
		return ferry_page_encode_alloc_ok(req, &m->u.alloc_ok, out, sizeof(out));
	case FERRY_PAGE_FREE:
		return ferry_page_encode_free(req, m->u.free.extent_id, out, sizeof(out));
	case FERRY_PAGE_FREE_OK:
		return ferry_page_encode_free_ok(req, m->u.free.extent_id, out, sizeof(out));
	case FERRY_PAGE_READ:
	case FERRY_PAGE_WRITE:
	case FERRY_PAGE_READ_DATA:
		return encode_rw(m);
	case FERRY_PAGE_WRITE_OK:
		return ferry_page_encode_write_ok(req, m->u.write_ok.count, out, sizeof(out));
	case FERRY_PAGE_STATS:
		return ferry_page_encode_stats(req, out, sizeof(out));
	case FERRY_PAGE_STATS_OK:
		return ferry_page_encode_stats_ok(req, m->u.stats_ok.stats, m->u.stats_ok.count,
						  out, sizeof(out));
	case FERRY_PAGE_ERROR:
		return ferry_page_encode_error(req, m->u.error.code, m->u.error.msg, out, sizeof(out));
	case FERRY_PAGE_SHARE:
		return ferry_page_encode_share(req, m->u.share.extent_id, m->u.share.rights, out, sizeof(out));
	case FERRY_PAGE_SHARE_OK:
		return ferry_page_encode_share_ok(req, &m->u.share_ok, out, sizeof(out));
	case FERRY_PAGE_ATTACH:
		return ferry_page_encode_attach(req, m->u.attach.token, out, sizeof(out));
	case FERRY_PAGE_ATTACH_OK:
		return ferry_page_encode_attach_ok(req, &m->u.attach_ok, out, sizeof(out));
	case FERRY_PAGE_DETACH:
		return ferry_page_encode_detach(req, m->u.detach.attach_id, out, sizeof(out));
	case FERRY_PAGE_DETACH_OK:
		return ferry_page_encode_detach_ok(req, m->u.detach.attach_id, out, sizeof(out));
	case FERRY_PAGE_UNSHARE:
		return ferry_page_encode_unshare(req, m->u.unshare.extent_id, out, sizeof(out));
	case FERRY_PAGE_UNSHARE_OK:
		return ferry_page_encode_unshare_ok(req, m->u.unshare.extent_id, m->u.unshare.revoked,
						    out, sizeof(out));
	case FERRY_PAGE_KEEP:
		return ferry_page_encode_keep(req, m->u.keep.extent_id, out, sizeof(out));
	case FERRY_PAGE_KEEP_OK:
		return ferry_page_encode_keep_ok(req, m->u.keep.extent_id, m->u.keep.token, out, sizeof(out));
	case FERRY_PAGE_CLAIM:
		return ferry_page_encode_claim(req, m->u.claim.token, out, sizeof(out));
	case FERRY_PAGE_CLAIM_OK:
		return ferry_page_encode_claim_ok(req, &m->u.claim_ok, out, sizeof(out));
	case FERRY_PAGE_DISCARD:
		return ferry_page_encode_discard(req, m->u.claim.token, out, sizeof(out));
	case FERRY_PAGE_DISCARD_OK:
		return ferry_page_encode_discard_ok(req, m->u.discard_ok.length, out, sizeof(out));
	default:
		abort();
	}
}

static void same_rw(const struct ferry_page_rw *a, const struct ferry_page_rw *b, uint8_t type)
{
	check(a->count == b->count && a->data_len == b->data_len);
	if (type != FERRY_PAGE_READ_DATA)
		check(memcmp(a->entries, b->entries, (size_t)a->count * FERRY_PAGE_IOV_LEN) == 0);
	if (type != FERRY_PAGE_READ)
		check(a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0);
}

static void same_stats(const struct ferry_page_stats_ok *a, const struct ferry_page_stats_ok *b)
{
	check(a->count == b->count);
	for (uint16_t i = 0; i < a->count; i++)
		check(strcmp(a->stats[i].name, b->stats[i].name) == 0 && a->stats[i].value == b->stats[i].value);
}

static void same_body(const struct ferry_page_msg *a, const struct ferry_page_msg *b)
{
	switch (a->hdr.type) {
	case FERRY_PAGE_HELLO:
		check(a->u.hello.version_min == b->u.hello.version_min &&
		      a->u.hello.version_max == b->u.hello.version_max &&
		      a->u.hello.name_len == b->u.hello.name_len &&
		      strcmp(a->u.hello.name, b->u.hello.name) == 0 && b->u.hello.features == 0);
		break;
	case FERRY_PAGE_CHALLENGE:
		check(a->u.challenge.version == b->u.challenge.version &&
		      memcmp(a->u.challenge.nonce, b->u.challenge.nonce, FERRY_PAGE_NONCE_LEN) == 0);
		break;
	case FERRY_PAGE_AUTH:
		check(memcmp(&a->u.auth, &b->u.auth, sizeof(a->u.auth)) == 0);
		break;
	case FERRY_PAGE_AUTH_OK:
		check(memcmp(a->u.auth_ok.mac, b->u.auth_ok.mac, FERRY_PAGE_MAC_LEN) == 0 &&
		      a->u.auth_ok.session_id == b->u.auth_ok.session_id &&
		      a->u.auth_ok.quota_bytes == b->u.auth_ok.quota_bytes &&
		      a->u.auth_ok.max_data == b->u.auth_ok.max_data);
		break;
	case FERRY_PAGE_ALLOC:
		check(a->u.alloc.length == b->u.alloc.length && a->u.alloc.flags == b->u.alloc.flags);
		break;
	case FERRY_PAGE_ALLOC_OK:
		check(a->u.alloc_ok.extent_id == b->u.alloc_ok.extent_id &&
		      a->u.alloc_ok.rkey == b->u.alloc_ok.rkey && a->u.alloc_ok.base == b->u.alloc_ok.base &&
		      a->u.alloc_ok.length == b->u.alloc_ok.length);
		break;
	case FERRY_PAGE_FREE:
	case FERRY_PAGE_FREE_OK:
		check(a->u.free.extent_id == b->u.free.extent_id);
		break;
	case FERRY_PAGE_READ:
	case FERRY_PAGE_WRITE:
	case FERRY_PAGE_READ_DATA:
		same_rw(&a->u.rw, &b->u.rw, a->hdr.type);
		break;
	case FERRY_PAGE_WRITE_OK:
		check(a->u.write_ok.count == b->u.write_ok.count);
		break;
	case FERRY_PAGE_STATS:
		break;
	case FERRY_PAGE_STATS_OK:
		same_stats(&a->u.stats_ok, &b->u.stats_ok);
		break;
	case FERRY_PAGE_ERROR:
		check(a->u.error.code == b->u.error.code && a->u.error.msg_len == b->u.error.msg_len &&
		      memcmp(a->u.error.msg, b->u.error.msg, a->u.error.msg_len + 1u) == 0);
		break;
	case FERRY_PAGE_SHARE:
		check(a->u.share.extent_id == b->u.share.extent_id && a->u.share.rights == b->u.share.rights);
		break;
	case FERRY_PAGE_SHARE_OK:
		check(a->u.share_ok.extent_id == b->u.share_ok.extent_id &&
		      a->u.share_ok.rights == b->u.share_ok.rights &&
		      memcmp(a->u.share_ok.token, b->u.share_ok.token, FERRY_PAGE_TOKEN_LEN) == 0);
		break;
	case FERRY_PAGE_ATTACH:
		check(memcmp(a->u.attach.token, b->u.attach.token, FERRY_PAGE_TOKEN_LEN) == 0);
		break;
	case FERRY_PAGE_ATTACH_OK:
		check(a->u.attach_ok.attach_id == b->u.attach_ok.attach_id &&
		      a->u.attach_ok.rkey == b->u.attach_ok.rkey && a->u.attach_ok.base == b->u.attach_ok.base &&
		      a->u.attach_ok.length == b->u.attach_ok.length &&
		      a->u.attach_ok.rights == b->u.attach_ok.rights);
		break;
	case FERRY_PAGE_DETACH:
	case FERRY_PAGE_DETACH_OK:
		check(a->u.detach.attach_id == b->u.detach.attach_id);
		break;
	case FERRY_PAGE_UNSHARE:
	case FERRY_PAGE_UNSHARE_OK:
		check(a->u.unshare.extent_id == b->u.unshare.extent_id &&
		      a->u.unshare.revoked == b->u.unshare.revoked);
		break;
	case FERRY_PAGE_KEEP:
		check(a->u.keep.extent_id == b->u.keep.extent_id);
		break;
	case FERRY_PAGE_KEEP_OK:
		check(a->u.keep.extent_id == b->u.keep.extent_id &&
		      memcmp(a->u.keep.token, b->u.keep.token, FERRY_PAGE_TOKEN_LEN) == 0);
		break;
	case FERRY_PAGE_CLAIM:
	case FERRY_PAGE_DISCARD:
		check(memcmp(a->u.claim.token, b->u.claim.token, FERRY_PAGE_TOKEN_LEN) == 0);
		break;
	case FERRY_PAGE_CLAIM_OK:
		check(a->u.claim_ok.extent_id == b->u.claim_ok.extent_id &&
		      a->u.claim_ok.rkey == b->u.claim_ok.rkey && a->u.claim_ok.base == b->u.claim_ok.base &&
		      a->u.claim_ok.length == b->u.claim_ok.length);
		break;
	case FERRY_PAGE_DISCARD_OK:
		check(a->u.discard_ok.length == b->u.discard_ok.length);
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len;
	int rc, n;

	rc = ferry_page_decode(data, size, &m1);
	check(rc >= FERRY_E_OK && rc <= FERRY_E_CODE_MAX);
	if (rc != FERRY_E_OK)
		return 0;

	len = FERRY_PAGE_HDR_LEN + (size_t)m1.hdr.payload_len;
	check(len <= size);
	n = encode(&m1);
	check(n > 0 && (size_t)n == len);
	check(ferry_page_decode(out, (size_t)n, &m2) == FERRY_E_OK);
	check(m1.hdr.type == m2.hdr.type && m1.hdr.flags == m2.hdr.flags &&
	      m1.hdr.request_id == m2.hdr.request_id && m1.hdr.payload_len == m2.hdr.payload_len);
	same_body(&m1, &m2);

	if (m1.hdr.type == FERRY_PAGE_HELLO && m1.u.hello.features != 0)
		return 0;
	check(memcmp(out, data, len) == 0);
	return 0;
}
