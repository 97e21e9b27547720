/*
 * libFuzzer target: ferry_vmmp_decode on arbitrary bytes, and the allow-list
 * parser.
 *
 * Input: byte 0 selects. 0xA5: the rest is an allow-list spec (parsed, then
 * matched). Anything else: byte 0 % 20 is the number of descriptors that
 * "arrived" with the message in the rest of the input. Every message that
 * decodes is re-encoded with its encoder (prefix encoders plus the data for
 * STATE_PUT/STATE_DATA) and decoded again; the two decodings must agree and
 * the re-encoding must reproduce the input bytes exactly (the wire form is
 * canonical: every reserved field is zero). A message that decodes must be
 * refused with FD_MISMATCH under any other descriptor count. Server requests
 * and the F_SERVER replies to them take the same round trip; a header of an
 * unknown server request must be reported skippable within bounds.
 */
#include "proto/vmm.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[FERRY_VMMP_MAX_MSG];
static struct ferry_vmmp_range ranges[FERRY_VMMP_MAX_HINTS];
static struct ferry_vmmp_msg m1, m2;
static char spec[4096];

static void check(bool ok)
{
	if (!ok)
		abort();
}

static int add_data(int n, const uint8_t *src, uint32_t len)
{
	if (n < 0)
		return n;
	check((size_t)n + len <= sizeof(out));
	if (len)
		memcpy(out + n, src, len);
	return n + (int)len;
}

/* An OK/ERROR that answers a server request carries F_SERVER too. */
static int server_reply(const struct ferry_vmmp_msg *m, int n)
{
	if (n > 0 && (m->hdr.flags & FERRY_VMMP_F_SERVER))
		check(ferry_vmmp_mark_server_reply(out, (size_t)n) == 0);
	return n;
}

static int encode(const struct ferry_vmmp_msg *m)
{
	uint64_t req = m->hdr.request_id;

	switch (m->hdr.type) {
	case FERRY_VMMP_REGISTER:
		return ferry_vmmp_encode_register(req, &m->u.reg, out, sizeof(out));
	case FERRY_VMMP_REGISTER_OK:
		return ferry_vmmp_encode_register_ok(req, &m->u.reg_ok, out, sizeof(out));
	case FERRY_VMMP_FREE_HINT:
		for (uint32_t i = 0; i < m->u.hints.count; i++)
			ferry_vmmp_hint_entry(&m->u.hints, i, &ranges[i]);
		return ferry_vmmp_encode_free_hint(req, ranges, m->u.hints.count, out, sizeof(out));
	case FERRY_VMMP_NOTIFY:
		return ferry_vmmp_encode_notify(req, m->u.notify.event, out, sizeof(out));
	case FERRY_VMMP_STATE_PUT:
	case FERRY_VMMP_STATE_DATA:
		return add_data(ferry_vmmp_encode_state_prefix(m->hdr.type, req, m->u.state.total_len,
							       m->u.state.offset, m->u.state.data_len, out,
							       sizeof(out)),
				m->u.state.data, m->u.state.data_len);
	case FERRY_VMMP_STATE_GET:
		return ferry_vmmp_encode_state_get(req, m->u.state_get.offset, m->u.state_get.max_len, out,
						   sizeof(out));
	case FERRY_VMMP_STATS:
		return ferry_vmmp_encode_stats(req, out, sizeof(out));
	case FERRY_VMMP_STATS_OK:
		return ferry_vmmp_encode_stats_ok(req, m->u.stats_ok.stats, m->u.stats_ok.count, out, sizeof(out));
	case FERRY_VMMP_UNREGISTER:
		return ferry_vmmp_encode_unregister(req, out, sizeof(out));
	case FERRY_VMMP_OK:
		return server_reply(m, ferry_vmmp_encode_ok(req, m->u.ok.value, out, sizeof(out)));
	case FERRY_VMMP_ERROR:
		return server_reply(m, ferry_vmmp_encode_error(req, m->u.error.code, m->u.error.msg, out, sizeof(out)));
	case FERRY_VMMP_PAUSE:
	case FERRY_VMMP_RESUME:
		return ferry_vmmp_encode_ctl(m->hdr.type, req, m->u.ctl.flags, out, sizeof(out));
	case FERRY_VMMP_DROP_PTES:
		for (uint32_t i = 0; i < m->u.hints.count; i++)
			ferry_vmmp_hint_entry(&m->u.hints, i, &ranges[i]);
		return ferry_vmmp_encode_drop_ptes(req, ranges, m->u.hints.count, out, sizeof(out));
	case FERRY_VMMP_NOTICE:
		return ferry_vmmp_encode_notice(req, m->u.notice.event, out, sizeof(out));
	default:
		abort();
	}
}

static void same_body(const struct ferry_vmmp_msg *a, const struct ferry_vmmp_msg *b)
{
	switch (a->hdr.type) {
	case FERRY_VMMP_REGISTER:
		check(a->u.reg.uffd_features == b->u.reg.uffd_features && a->u.reg.fd_count == b->u.reg.fd_count &&
		      a->u.reg.region_count == b->u.reg.region_count && a->u.reg.vm_id_len == b->u.reg.vm_id_len &&
		      strcmp(a->u.reg.vm_id, b->u.reg.vm_id) == 0 && a->u.reg.flags == b->u.reg.flags &&
		      a->u.reg.migration_id == b->u.reg.migration_id &&
		      memcmp(a->u.reg.regions, b->u.reg.regions,
			     a->u.reg.region_count * sizeof(a->u.reg.regions[0])) == 0);
		break;
	case FERRY_VMMP_REGISTER_OK:
		check(a->u.reg_ok.vm_handle == b->u.reg_ok.vm_handle &&
		      a->u.reg_ok.server_features == b->u.reg_ok.server_features &&
		      a->u.reg_ok.max_chunk == b->u.reg_ok.max_chunk);
		break;
	case FERRY_VMMP_FREE_HINT:
	case FERRY_VMMP_DROP_PTES:
		check(a->u.hints.count == b->u.hints.count && a->u.hints.total_len == b->u.hints.total_len &&
		      memcmp(a->u.hints.entries, b->u.hints.entries,
			     (size_t)a->u.hints.count * FERRY_VMMP_HINT_LEN) == 0);
		break;
	case FERRY_VMMP_NOTIFY:
		check(a->u.notify.event == b->u.notify.event);
		break;
	case FERRY_VMMP_PAUSE:
	case FERRY_VMMP_RESUME:
		check(a->u.ctl.flags == b->u.ctl.flags);
		break;
	case FERRY_VMMP_NOTICE:
		check(a->u.notice.event == b->u.notice.event);
		break;
	case FERRY_VMMP_STATE_PUT:
	case FERRY_VMMP_STATE_DATA:
		check(a->u.state.total_len == b->u.state.total_len && a->u.state.offset == b->u.state.offset &&
		      a->u.state.data_len == b->u.state.data_len &&
		      (a->u.state.data_len == 0 || memcmp(a->u.state.data, b->u.state.data, a->u.state.data_len) == 0));
		check(a->u.state.offset + a->u.state.data_len <= a->u.state.total_len);
		break;
	case FERRY_VMMP_STATE_GET:
		check(a->u.state_get.offset == b->u.state_get.offset && a->u.state_get.max_len == b->u.state_get.max_len);
		break;
	case FERRY_VMMP_STATS_OK:
		check(a->u.stats_ok.count == b->u.stats_ok.count);
		for (uint16_t i = 0; i < a->u.stats_ok.count; i++)
			check(strcmp(a->u.stats_ok.stats[i].name, b->u.stats_ok.stats[i].name) == 0 &&
			      a->u.stats_ok.stats[i].value == b->u.stats_ok.stats[i].value);
		break;
	case FERRY_VMMP_OK:
		check(a->u.ok.value == b->u.ok.value);
		break;
	case FERRY_VMMP_ERROR:
		check(a->u.error.code == b->u.error.code && a->u.error.msg_len == b->u.error.msg_len &&
		      memcmp(a->u.error.msg, b->u.error.msg, a->u.error.msg_len + 1u) == 0);
		break;
	case FERRY_VMMP_STATS:
	case FERRY_VMMP_UNREGISTER:
		break;
	default:
		abort();
	}
}

static void fuzz_allow(const uint8_t *data, size_t size)
{
	struct ferry_vmmp_allow allow;
	uint32_t absent = 0;
	size_t n = size < sizeof(spec) - 1 ? size : sizeof(spec) - 1;
	int rc;

	memcpy(spec, data, n);
	spec[n] = '\0';
	rc = ferry_vmmp_allow_parse(spec, &allow);
	check(rc == FERRY_VMMP_E_OK || rc == FERRY_VMMP_E_MALFORMED || rc == FERRY_VMMP_E_TOO_LARGE);
	if (rc != FERRY_VMMP_E_OK)
		return;
	check(allow.count >= 1 && allow.count <= FERRY_VMMP_ALLOW_MAX);
	for (uint32_t i = 0; i < allow.count; i++) {
		check(allow.e[i].id != UINT32_MAX);
		check(ferry_vmmp_allow_match(&allow, allow.e[i].kind == FERRY_VMMP_ALLOW_UID ? allow.e[i].id : 7,
					     &allow.e[i].id, 1));
	}
	/* An id on no entry matches nothing. */
	for (uint32_t i = 0; i < allow.count; i++)
		if (allow.e[i].id == absent) {
			absent++;
			i = UINT32_MAX; /* restart: the loop's i++ wraps it to 0 */
		}
	check(!ferry_vmmp_allow_match(&allow, absent, &absent, 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_vmmp_hdr hdr;
	unsigned int nfds;
	size_t len;
	int rc, n;

	if (size < 1)
		return 0;
	if (data[0] == 0xA5) {
		fuzz_allow(data + 1, size - 1);
		return 0;
	}
	nfds = data[0] % 20u;
	data++;
	size--;

	rc = ferry_vmmp_decode(data, size, nfds, &m1);
	check(rc >= FERRY_VMMP_E_OK && rc <= FERRY_VMMP_E_CODE_MAX);
	/* A skippable unknown server request: the header says how much to skip, within bounds. */
	if (ferry_vmmp_hdr_decode(data, size, &hdr) == FERRY_VMMP_E_UNSUPPORTED)
		check(hdr.type > FERRY_VMMP_TYPE_MAX && hdr.flags == FERRY_VMMP_F_SERVER &&
		      hdr.payload_len <= FERRY_VMMP_MAX_PAYLOAD);
	if (rc != FERRY_VMMP_E_OK)
		return 0;
	check(ferry_vmmp_hdr_decode(data, size, &hdr) == FERRY_VMMP_E_OK);
	check(ferry_vmmp_decode(data, size, nfds + 1, &m2) == FERRY_VMMP_E_FD_MISMATCH);

	len = FERRY_VMMP_HDR_LEN + (size_t)m1.hdr.payload_len;
	check(len <= size);
	n = encode(&m1);
	check(n > 0 && (size_t)n == len);
	check(memcmp(out, data, len) == 0);
	check(ferry_vmmp_decode(out, (size_t)n, nfds, &m2) == FERRY_VMMP_E_OK);
	check(m1.hdr.type == m2.hdr.type && m1.hdr.flags == m2.hdr.flags &&
	      m1.hdr.request_id == m2.hdr.request_id && m1.hdr.payload_len == m2.hdr.payload_len);
	same_body(&m1, &m2);
	return 0;
}
