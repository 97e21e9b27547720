/*
 * libFuzzer target: migp_decode on arbitrary bytes.
 *
 * Every message that decodes is re-encoded with its encoder and must
 * reproduce the input bytes exactly (the wire form is canonical except for
 * HELLO's version range / features and CHALLENGE's version, which encoders
 * always write as this version and are copied over) and decode again to the
 * same type. The header decoder must agree with the full decoder.
 */
#include "proto/migrate.h"
#include "proto/wire.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[MIGP_MAX_MSG];
static struct migp_map_entry map[MIGP_MAP_MAX];
static struct migp_extent ext[MIGP_EXTENTS_MSG];
static uint64_t fpages[MIGP_FETCH_MAX];
static struct migp_msg m1, m2;

static void check(bool ok)
{
	if (!ok)
		abort();
}

static int reencode(const struct migp_msg *m)
{
	uint64_t req = m->hdr.request_id;
	size_t cap = sizeof(out);

	switch (m->hdr.type) {
	case MIGP_PREPARE:
		return migp_encode_prepare(req, &m->u.prepare, out, cap);
	case MIGP_PREPARE_OK:
		return migp_encode_prepare_ok(req, &m->u.prepare_ok, out, cap);
	case MIGP_START:
		return migp_encode_start(req, &m->u.start, out, cap);
	case MIGP_STATUS:
		return migp_encode_status(req, m->u.ref.id, out, cap);
	case MIGP_ABORT:
		return migp_encode_abort(req, m->u.ref.id, out, cap);
	case MIGP_STATUS_OK:
		return migp_encode_status_ok(req, &m->u.status_ok, out, cap);
	case MIGP_OK:
		return migp_encode_ok(req, m->u.value.value, out, cap);
	case MIGP_RESUMED:
		return migp_encode_resumed(req, m->u.value.value, out, cap);
	case MIGP_POSTCOPY_DONE:
		return migp_encode_postcopy_done(req, m->u.value.value, out, cap);
	case MIGP_ERROR:
		return migp_encode_error(req, m->u.error.code, m->u.error.msg, out, cap);
	case MIGP_HELLO:
		return migp_encode_hello(req, m->u.hello.name, out, cap);
	case MIGP_CHALLENGE:
		return migp_encode_challenge(req, m->u.challenge.nonce, out, cap);
	case MIGP_AUTH:
		return migp_encode_auth(req, m->u.auth.nonce, m->u.auth.mac, out, cap);
	case MIGP_AUTH_OK:
		return migp_encode_auth_ok(req, &m->u.auth_ok, out, cap);
	case MIGP_LAYOUT:
		return migp_encode_layout(req, &m->u.layout, out, cap);
	case MIGP_LAYOUT_OK:
		return migp_encode_layout_ok(req, &m->u.layout_ok, out, cap);
	case MIGP_EXTENTS:
		for (uint16_t i = 0; i < m->u.extents.count; i++)
			migp_extents_entry(&m->u.extents, i, &ext[i]);
		return migp_encode_extents(req, ext, m->u.extents.count, m->u.extents.first, m->u.extents.total, out,
					   cap);
	case MIGP_PAGE_MAP:
		for (uint32_t i = 0; i < m->u.map.count; i++)
			migp_page_map_entry(&m->u.map, i, &map[i]);
		return migp_encode_page_map(req, map, m->u.map.count, out, cap);
	case MIGP_ROUND_END:
		return migp_encode_round_end(req, m->u.round_end.round, m->u.round_end.pages_dirty, out, cap);
	case MIGP_DEVSTATE:
		return migp_encode_devstate(req, m->u.devstate.total, m->u.devstate.offset, m->u.devstate.data,
					    m->u.devstate.len, out, cap);
	case MIGP_SWITCHOVER:
		return migp_encode_switchover(req, m->u.switchover.generation, m->u.switchover.pages_at_source,
					      out, cap);
	case MIGP_STATS:
		return migp_encode_stats(req, out, cap);
	case MIGP_STATS_OK:
		return migp_encode_stats_ok(req, m->u.stats_ok.stats, m->u.stats_ok.count, out, cap);
	case MIGP_SUBHOST:
		return migp_encode_subhost(req, &m->u.subhost, out, cap);
	case MIGP_BIND:
		return migp_encode_bind(req, m->u.bind.bind, out, cap);
	case MIGP_CREDIT:
		return migp_encode_credit(req, m->u.credit.slots, out, cap);
	case MIGP_FETCH:
		for (uint32_t i = 0; i < m->u.fetch.count; i++)
			fpages[i] = migp_fetch_page(&m->u.fetch, i);
		return migp_encode_fetch(req, fpages, m->u.fetch.count, m->u.fetch.first_slot, out, cap);
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct migp_hdr hdr;
	uint8_t *copy;
	int rc, hrc, n;

	copy = malloc(size ? size : 1);
	check(copy != NULL);
	if (size)
		memcpy(copy, data, size);
	rc = migp_decode(copy, size, &m1);
	hrc = migp_hdr_decode(copy, size, &hdr);
	check(rc >= 0 && rc <= MIG_E_CODE_MAX);
	if (hrc != MIG_E_OK)
		check(rc == hrc);
	if (rc == MIG_E_OK) {
		check(hrc == MIG_E_OK && hdr.type == m1.hdr.type && hdr.payload_len == m1.hdr.payload_len);
		n = reencode(&m1);
		check(n == (int)(MIGP_HDR_LEN + m1.hdr.payload_len));
		if (m1.hdr.type == MIGP_HELLO) {
			out[MIGP_HDR_LEN] = m1.u.hello.version_min;
			out[MIGP_HDR_LEN + 1] = m1.u.hello.version_max;
			wire_put_u32(out + MIGP_HDR_LEN + 4, m1.u.hello.features);
		}
		if (m1.hdr.type == MIGP_CHALLENGE)
			out[MIGP_HDR_LEN] = m1.u.challenge.version;
		check(memcmp(out, copy, (size_t)n) == 0);
		check(migp_decode(out, (size_t)n, &m2) == MIG_E_OK);
		check(m2.hdr.type == m1.hdr.type && m2.hdr.request_id == m1.hdr.request_id);
	}
	free(copy);
	return 0;
}
