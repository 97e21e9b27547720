/*
 * libFuzzer target: ferry_wake_decode on arbitrary bytes.
 *
 * Every message that decodes is re-encoded with its encoder and must
 * reproduce the input's message bytes exactly (the wire form is canonical:
 * every reserved field is zero; the request id is kept; HELLO's features
 * word, which encoders always write as 0, is copied over) and decode again to
 * the same type. The header decoder must agree with the full decoder about
 * the header.
 */
#include "proto/wake.h"
#include "proto/wire.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[FERRY_WAKE_MAX_MSG];
static struct ferry_wake_vm vms[FERRY_WAKE_TABLE_MAX];
static struct ferry_wake_msg m1, m2;

static void check(bool ok)
{
	if (!ok)
		abort();
}

static int reencode(const struct ferry_wake_msg *m)
{
	uint64_t req = m->hdr.request_id;

	switch (m->hdr.type) {
	case FERRY_WAKE_HELLO:
		return ferry_wake_encode_hello(req, m->u.hello.name, m->u.hello.version_min,
					       m->u.hello.version_max, out, sizeof(out));
	case FERRY_WAKE_CHALLENGE:
		return ferry_wake_encode_challenge(req, m->u.challenge.version, m->u.challenge.nonce,
						   out, sizeof(out));
	case FERRY_WAKE_AUTH:
		return ferry_wake_encode_auth(req, m->u.auth.nonce, m->u.auth.mac, out, sizeof(out));
	case FERRY_WAKE_AUTH_OK:
		return ferry_wake_encode_auth_ok(req, m->u.auth_ok.mac, out, sizeof(out));
	case FERRY_WAKE_VM_ADD:
		return ferry_wake_encode_vm_add(req, &m->u.vm, out, sizeof(out));
	case FERRY_WAKE_VM_DEL:
		return ferry_wake_encode_vm_del(req, m->u.ref.id, out, sizeof(out));
	case FERRY_WAKE_VM_RUNNING:
		return ferry_wake_encode_vm_running(req, m->u.ref.id, out, sizeof(out));
	case FERRY_WAKE_VM_TABLE:
		for (uint16_t i = 0; i < m->u.table.count; i++)
			ferry_wake_table_entry(&m->u.table, i, &vms[i]);
		return ferry_wake_encode_vm_table(req, m->u.table.flags, vms, m->u.table.count, out, sizeof(out));
	case FERRY_WAKE_ROLE_TAKE:
		return ferry_wake_encode_role_take(req, m->u.role.epoch, out, sizeof(out));
	case FERRY_WAKE_ROLE_DROP:
		return ferry_wake_encode_role_drop(req, m->u.role.epoch, out, sizeof(out));
	case FERRY_WAKE_WAKE_REQUEST:
		return ferry_wake_encode_wake_request(req, &m->u.wake, out, sizeof(out));
	case FERRY_WAKE_STATS:
		return ferry_wake_encode_stats(req, out, sizeof(out));
	case FERRY_WAKE_STATS_OK:
		return ferry_wake_encode_stats_ok(req, m->u.stats_ok.stats, m->u.stats_ok.count, out, sizeof(out));
	case FERRY_WAKE_OK:
		return ferry_wake_encode_ok(req, m->u.ok.value, out, sizeof(out));
	case FERRY_WAKE_ERROR:
		return ferry_wake_encode_error(req, m->u.error.code, m->u.error.msg, out, sizeof(out));
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_wake_hdr hdr;
	uint8_t *copy;
	int rc, hrc, n;

	/* An exact-size heap copy so that ASan sees any read past the end. */
	copy = malloc(size ? size : 1);
	check(copy != NULL);
	if (size)
		memcpy(copy, data, size);
	rc = ferry_wake_decode(copy, size, &m1);
	hrc = ferry_wake_hdr_decode(copy, size, &hdr);
	check(rc >= 0 && rc <= FERRY_WAKE_E_CODE_MAX);
	if (hrc != FERRY_WAKE_E_OK)
		check(rc == hrc);
	if (rc == FERRY_WAKE_E_OK) {
		check(hrc == FERRY_WAKE_E_OK && hdr.type == m1.hdr.type && hdr.payload_len == m1.hdr.payload_len);
		n = reencode(&m1);
		check(n == (int)(FERRY_WAKE_HDR_LEN + m1.hdr.payload_len));
		/* HELLO's features word is kept, not refused, but the encoder always writes 0. */
		if (m1.hdr.type == FERRY_WAKE_HELLO)
			wire_put_u32(out + FERRY_WAKE_HDR_LEN + 4, m1.u.hello.features);
		check(memcmp(out, copy, (size_t)n) == 0);
		check(ferry_wake_decode(out, (size_t)n, &m2) == FERRY_WAKE_E_OK);
		check(m2.hdr.type == m1.hdr.type && m2.hdr.request_id == m1.hdr.request_id);
	}
	free(copy);
	return 0;
}
