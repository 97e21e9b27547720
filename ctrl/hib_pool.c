/*
 * The hibernation image in the memory pool (hib_int.h): which pages go, where they go, and the
 * one-sided WRITEs/READs that move them.
 *
 * Only pages that hold data travel: the RAM file's holes (never-touched guest memory) are found
 * with SEEK_DATA/SEEK_HOLE and skipped without reading them, and pages of data regions that are
 * all zero are skipped too (a guest's freed memory is often zeroed). Stored pages are packed
 * back to back into extents of at most HIB_EXTENT_MAX; the manifest's runs say where each
 * stretch of guest pages went. The transfers come straight from / go straight into the mapped
 * RAM file (it is registered with the transport), HIB_WR_BYTES per work request, HIB_WINDOW
 * requests in flight.
 *
 * An image must outlive the process that stored it (ferryd restarts, a resume on another node):
 * once written, every extent is kept (KEEP) and leaves our session; the manifest records the
 * claim tokens. A resume, from whatever process, claims them (CLAIM: they become that session's
 * extents, with keys valid on its connection), reads the pages and frees them once the VM runs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "ctrl/hib_int.h"
#include "dataplane/common/auth.h"
#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/pool_client.h"

#define HIB_EXTENT_MAX (64ull << 20)
#define HIB_WR_BYTES (1u << 20)
#define HIB_WINDOW 16

void hib_pool_disconnect(struct hib *h)
{
	if (h->pc)
		pool_client_close(h->pc);
	if (h->ctx)
		fx_ctx_destroy(h->ctx);
	h->pc = NULL;
	h->ctx = NULL;
}

int hib_pool_connect(struct hib *h, struct ferry_err *err)
{
	struct ferry_secret secret;
	struct fx_ctx_opts co = { .op_timeout_ms = 3000, .connect_timeout_ms = 3000, .poll_spin_us = FX_POLL_SPIN_OFF };
	struct pool_client_opts o = { .host = h->pool_host, .port = h->pool_port, .name = h->client_name,
				      .timeout_ms = 5000 };
	int rc;

	if (h->pc && fx_conn_state(pool_client_conn(h->pc)) == FX_CONN_CONNECTED)
		return 0;
	if (h->pc) {	/* a broken session: its extents are gone with it */
		pool_client_close(h->pc);
		h->pc = NULL;
	}
	if (h->ctx) {
		fx_ctx_destroy(h->ctx);
		h->ctx = NULL;
	}
	if (!h->pool_port)
		return ferry_err_set(err, EINVAL, "no memory server configured (pool port)");
	rc = ferry_secret_load(h->secret_path, &secret, err);
	if (rc)
		return ferry_err_prefix(err, "memory server %s:%u: ", h->pool_host, h->pool_port);
	o.secret = &secret;
	rc = fx_ctx_create(h->transport, &co, &h->ctx, err);
	if (!rc)
		rc = pool_client_connect(h->ctx, &o, &h->pc, err);
	ferry_secret_wipe(&secret);
	if (rc) {
		if (h->ctx)
			fx_ctx_destroy(h->ctx);
		h->ctx = NULL;
		h->pc = NULL;
		return ferry_err_prefix(err, "memory server %s:%u: ", h->pool_host, h->pool_port);
	}
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (unsigned i = 0; i < HIB_PAGE / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	return true;
}

static int run_add(struct hib_manifest *m, size_t *cap, uint64_t page, uint64_t count)
{
	if (m->nruns > 0) {
		struct hib_run *l = &m->runs[m->nruns - 1];

		if (l->page + l->count == page) {	/* extends the last run: placement comes later */
			l->count += count;
			return 0;
		}
	}
	if (m->nruns == *cap) {
		size_t c = *cap ? *cap * 2 : 256;
		struct hib_run *n = realloc(m->runs, c * sizeof(*n));

		if (!n)
			return -ENOMEM;
		m->runs = n;
		*cap = c;
	}
	m->runs[m->nruns++] = (struct hib_run){ .page = page, .count = count };
	return 0;
}

/* Split runs at extent boundaries and give each its (extent, offset). */
static int place_runs(struct hib_manifest *m, uint64_t ext_bytes, struct ferry_err *err)
{
	size_t cap = m->nruns + m->nruns / 2 + 64, n = 0;
	struct hib_run *out = calloc(cap, sizeof(*out));
	uint64_t cursor = 0;	/* byte position in the concatenation of extents */

	if (!out)
		return ferry_err_set(err, ENOMEM, "out of memory");
	for (size_t i = 0; i < m->nruns; i++) {
		uint64_t page = m->runs[i].page, left = m->runs[i].count;

		while (left > 0) {
			uint64_t room = (ext_bytes - cursor % ext_bytes) / HIB_PAGE;
			uint64_t take = left < room ? left : room;

			if (n == cap) {
				struct hib_run *x = realloc(out, (cap *= 2) * sizeof(*out));

				if (!x) {
					free(out);
					return ferry_err_set(err, ENOMEM, "out of memory");
				}
				out = x;
			}
			out[n++] = (struct hib_run){ page, take, (uint32_t)(cursor / ext_bytes), cursor % ext_bytes };
			cursor += take * HIB_PAGE;
			page += take;
			left -= take;
		}
	}
	free(m->runs);
	m->runs = out;
	m->nruns = n;
	return 0;
}

int hib_pool_plan(struct hib *h, int fd, const uint8_t *ram, uint64_t ram_bytes, uint64_t dev_bytes,
		  struct hib_manifest *m, struct ferry_err *err)
{
	size_t cap = 0;
	off_t pos = 0;
	uint64_t dev_pages = (dev_bytes + HIB_PAGE - 1) / HIB_PAGE, total, left;
	int rc;

	m->data_pages = m->zero_pages = m->stored_pages = 0;
	/* Walk the data regions; holes are skipped without touching them. */
	while ((uint64_t)pos < ram_bytes) {
		off_t d = lseek(fd, pos, SEEK_DATA), e;

		if (d < 0 && errno == ENXIO)
			break;
		if (d < 0)
			return ferry_err_set(err, errno, "SEEK_DATA on the RAM file: %s", strerror(errno));
		e = lseek(fd, d, SEEK_HOLE);
		if (e < 0)
			return ferry_err_set(err, errno, "SEEK_HOLE on the RAM file: %s", strerror(errno));
		if ((uint64_t)e > ram_bytes)
			e = (off_t)ram_bytes;
		for (uint64_t p = (uint64_t)d / HIB_PAGE; p < ((uint64_t)e + HIB_PAGE - 1) / HIB_PAGE; p++) {
			m->data_pages++;
			if (page_is_zero(ram + p * HIB_PAGE)) {
				m->zero_pages++;
				continue;
			}
			if (run_add(m, &cap, p, 1))
				return ferry_err_set(err, ENOMEM, "out of memory");
			m->stored_pages++;
		}
		pos = e;
	}
	/* Extents: pages then the device state, HIB_EXTENT_MAX at most each. */
	rc = place_runs(m, HIB_EXTENT_MAX, err);
	if (rc)
		return rc;
	total = (m->stored_pages + dev_pages) * HIB_PAGE;
	m->dev_ext = (uint32_t)(m->stored_pages * HIB_PAGE / HIB_EXTENT_MAX);
	m->dev_off = m->stored_pages * HIB_PAGE % HIB_EXTENT_MAX;
	m->dev_bytes = dev_bytes;
	if (dev_bytes && m->dev_off + dev_pages * HIB_PAGE > HIB_EXTENT_MAX) {	/* device state never straddles */
		m->dev_ext++;
		m->dev_off = 0;
		total = (uint64_t)m->dev_ext * HIB_EXTENT_MAX + dev_pages * HIB_PAGE;
	}
	if (total == 0)
		total = HIB_PAGE;
	m->next = (size_t)((total + HIB_EXTENT_MAX - 1) / HIB_EXTENT_MAX);
	m->ext = calloc(m->next, sizeof(*m->ext));
	if (!m->ext)
		return ferry_err_set(err, ENOMEM, "out of memory");
	rc = hib_pool_connect(h, err);
	if (rc)
		return rc;
	left = total;
	for (size_t i = 0; i < m->next; i++) {
		struct pool_extent pe;
		uint64_t len = left < HIB_EXTENT_MAX ? left : HIB_EXTENT_MAX;

		rc = pool_client_alloc(h->pc, len, &pe, err);
		if (rc) {
			m->next = i;	/* hib_pool_release frees what we got */
			return ferry_err_prefix(err, "memory server %s:%u: storing %llu bytes: ", h->pool_host,
						h->pool_port, (unsigned long long)total);
		}
		m->ext[i] = (struct hib_extent){ .id = pe.id, .rkey = pe.rkey, .base = pe.base, .length = pe.length };
		left -= len;
	}
	snprintf(m->pool, sizeof(m->pool), "%s:%u", h->pool_host, h->pool_port);
	return 0;
}

struct io_req {
	uint8_t *local;
	uint32_t len;
	uint32_t ext;
	uint64_t off;
};

static int post_window(struct hib *h, int write, struct io_req *r, unsigned n, uint32_t lkey_ram, uint32_t lkey_dev,
		       uint8_t *dev, const struct hib_manifest *m, struct ferry_err *err)
{
	struct fx_sge sge[HIB_WINDOW];
	struct fx_send_wr wr[HIB_WINDOW];
	struct fx_wc wc[HIB_WINDOW];
	unsigned done = 0;
	int perr = 0, posted;

	for (unsigned i = 0; i < n; i++) {
		bool is_dev = dev && r[i].local >= dev && r[i].local < dev + m->dev_bytes + HIB_PAGE;

		sge[i] = (struct fx_sge){ r[i].local, r[i].len, is_dev ? lkey_dev : lkey_ram };
		wr[i] = (struct fx_send_wr){ .wr_id = i, .opcode = write ? FX_OP_WRITE : FX_OP_READ, .flags = FX_WR_SIGNALED,
					     .sg_list = &sge[i], .num_sge = 1,
					     .remote_addr = m->ext[r[i].ext].base + r[i].off, .rkey = m->ext[r[i].ext].rkey };
	}
	posted = fx_post_send(pool_client_conn(h->pc), wr, (int)n, &perr);
	if (posted < (int)n)
		return ferry_err_set(err, perr ? perr : EIO, "memory server %s:%u: cannot post %s: %s", h->pool_host,
				     h->pool_port, write ? "WRITE" : "READ",
				     fx_conn_error(pool_client_conn(h->pc)) ?: strerror(perr ? -perr : EIO));
	while (done < n) {
		int got = pool_client_poll(h->pc, wc, HIB_WINDOW, 10000);

		if (got <= 0)
			return ferry_err_set(err, got == 0 ? ETIMEDOUT : EIO, "memory server %s:%u: %s: %s", h->pool_host,
					     h->pool_port, got == 0 ? "no completion within 10 s" : "connection failed",
					     fx_conn_error(pool_client_conn(h->pc)) ?: "");
		for (int k = 0; k < got; k++) {
			if (wc[k].status != FX_WC_SUCCESS) {
				struct io_req *q = &r[wc[k].wr_id < n ? wc[k].wr_id : 0];

				return ferry_err_set(err, EIO,
						     "memory server %s:%u: %s of extent %u failed: %s%s", h->pool_host,
						     h->pool_port, write ? "WRITE" : "READ", m->ext[q->ext].id,
						     fx_wc_status_str(wc[k].status),
						     wc[k].status == FX_WC_REM_ACCESS_ERR
							     ? " (the extent is not reachable from this session)"
							     : "");
			}
			done++;
		}
	}
	return 0;
}

int hib_pool_io(struct hib *h, int write, uint8_t *ram, uint64_t ram_bytes, uint8_t *dev, const struct hib_manifest *m,
		struct ferry_err *err)
{
	struct fx_mr *mr_ram = NULL, *mr_dev = NULL;
	struct io_req win[HIB_WINDOW];
	unsigned n = 0;
	uint64_t dev_len = (m->dev_bytes + HIB_PAGE - 1) / HIB_PAGE * HIB_PAGE;
	int rc;

	rc = hib_pool_connect(h, err);
	if (rc)
		return rc;
	rc = fx_reg_mr(pool_client_pd(h->pc), ram, ram_bytes, FX_ACCESS_LOCAL_WRITE, &mr_ram, err);
	if (!rc && dev && dev_len)
		rc = fx_reg_mr(pool_client_pd(h->pc), dev, dev_len, FX_ACCESS_LOCAL_WRITE, &mr_dev, err);
	if (rc)
		goto out;
	for (size_t i = 0; i <= m->nruns && !rc; i++) {
		uint8_t *p;
		uint64_t len, off;
		uint32_t ext;

		if (i < m->nruns) {
			p = ram + m->runs[i].page * HIB_PAGE;
			len = m->runs[i].count * HIB_PAGE;
			ext = m->runs[i].ext;
			off = m->runs[i].off;
		} else {
			if (!dev || !dev_len)
				break;
			p = dev;
			len = dev_len;
			ext = m->dev_ext;
			off = m->dev_off;
		}
		while (len > 0 && !rc) {
			uint32_t l = len < HIB_WR_BYTES ? (uint32_t)len : HIB_WR_BYTES;

			win[n++] = (struct io_req){ p, l, ext, off };
			p += l;
			off += l;
			len -= l;
			if (n == HIB_WINDOW) {
				rc = post_window(h, write, win, n, mr_ram->lkey, mr_dev ? mr_dev->lkey : 0, dev, m, err);
				n = 0;
			}
		}
	}
	if (!rc && n)
		rc = post_window(h, write, win, n, mr_ram->lkey, mr_dev ? mr_dev->lkey : 0, dev, m, err);
out:
	if (mr_dev)
		fx_dereg_mr(mr_dev);
	if (mr_ram)
		fx_dereg_mr(mr_ram);
	return rc;
}

_Static_assert(HIB_TOKEN_LEN == POOL_SHARE_TOKEN_LEN, "a manifest token is a pool claim token");

void hib_pool_release(struct hib *h, struct hib_manifest *m)
{
	bool any_kept = false;

	for (size_t i = 0; i < m->next; i++)
		any_kept |= m->ext[i].kept;
	/* Kept extents need a session to be discarded; our own die with ours anyway. */
	if (any_kept && hib_pool_connect(h, NULL) != 0) {
		LOG_WARN("hib: %s: memory server %s unreachable: the image's kept extents stay there until it "
			 "restarts", m->name, m->pool);
		return;
	}
	if (!h->pc || fx_conn_state(pool_client_conn(h->pc)) != FX_CONN_CONNECTED)
		return;
	for (size_t i = 0; i < m->next; i++) {
		struct ferry_err e = { 0 };

		if (m->ext[i].kept) {
			if (pool_client_discard(h->pc, m->ext[i].token, &e) && pool_client_last_code(h->pc) != FERRY_E_BAD_TOKEN)
				LOG_WARN("hib: %s: discarding kept extent %u: %s", m->name, m->ext[i].id, e.msg);
			m->ext[i].kept = false;
			sodium_memzero(m->ext[i].token, HIB_TOKEN_LEN);
		} else if (pool_client_free(h->pc, m->ext[i].id, &e)) {
			LOG_WARN("hib: %s: freeing extent %u: %s", m->name, m->ext[i].id, e.msg);
		}
	}
}

int hib_pool_keep(struct hib *h, struct hib_manifest *m, struct ferry_err *err)
{
	int rc = hib_pool_connect(h, err);

	if (rc)
		return rc;
	for (size_t i = 0; i < m->next; i++) {
		if (m->ext[i].kept)
			continue;
		rc = pool_client_keep(h->pc, m->ext[i].id, m->ext[i].token, err);
		if (rc)
			return ferry_err_prefix(err, "memory server %s:%u: keeping the image (extent %u): ", h->pool_host,
						h->pool_port, m->ext[i].id);
		m->ext[i].kept = true;
	}
	return 0;
}

int hib_pool_claim(struct hib *h, struct hib_manifest *m, struct ferry_err *err)
{
	int rc = hib_pool_connect(h, err);

	if (rc)
		return rc;
	for (size_t i = 0; i < m->next; i++) {
		struct pool_extent pe;

		if (!m->ext[i].kept)
			continue;
		rc = pool_client_claim(h->pc, m->ext[i].token, &pe, err);
		if (rc) {
			if (rc == -EACCES)
				ferry_err_prefix(err, "the memory server no longer holds this image (restarted, or "
						      "the image was resumed or dropped elsewhere): ");
			return ferry_err_prefix(err, "memory server %s:%u: claiming the image (extent %u): ",
						h->pool_host, h->pool_port, m->ext[i].id);
		}
		if (pe.length != m->ext[i].length)
			return ferry_err_set(err, EPROTO, "memory server %s:%u: claimed extent %u has %llu bytes, the "
					     "manifest says %llu", h->pool_host, h->pool_port, pe.id,
					     (unsigned long long)pe.length, (unsigned long long)m->ext[i].length);
		m->ext[i] = (struct hib_extent){ .id = pe.id, .rkey = pe.rkey, .base = pe.base, .length = pe.length };
	}
	return 0;
}

/*
 * Page checksum: four independent 64-bit lanes, each updated with xxHash64's round
 * (acc += w * P2; acc = rotl(acc, 31); acc *= P1) over every fourth word. It catches pages that
 * come back damaged, mixed up or missing; it is not meant to resist an adversary (the pool is
 * authenticated and reaches only our extents). A cryptographic hash (blake2b) took ~3x the
 * pool transfer itself on resume; this runs at memory speed.
 */
#define SUM_P1 0x9E3779B185EBCA87ull
#define SUM_P2 0xC2B2AE3D27D4EB4Full

static inline uint64_t sum_round(uint64_t acc, uint64_t w)
{
	acc += w * SUM_P2;
	acc = (acc << 31) | (acc >> 33);
	return acc * SUM_P1;
}

static void sum_update(uint64_t lane[4], const uint8_t *p, uint64_t n)
{
	uint64_t i = 0, w[4];

	for (; i + 32 <= n; i += 32) {
		memcpy(w, p + i, 32);
		lane[0] = sum_round(lane[0], w[0]);
		lane[1] = sum_round(lane[1], w[1]);
		lane[2] = sum_round(lane[2], w[2]);
		lane[3] = sum_round(lane[3], w[3]);
	}
	for (; i < n; i++)
		lane[0] = sum_round(lane[0], p[i]);
	lane[1] = sum_round(lane[1], n);	/* lengths count: a shorter run is a different image */
}

void hib_checksum(const uint8_t *ram, const uint8_t *dev, const struct hib_manifest *m, uint8_t out[HIB_SUM_LEN])
{
	uint64_t lane[4] = { SUM_P1, SUM_P2, ~SUM_P1, ~SUM_P2 };

	for (size_t i = 0; i < m->nruns; i++) {
		lane[2] = sum_round(lane[2], m->runs[i].page);	/* where a run goes counts too */
		sum_update(lane, ram + m->runs[i].page * HIB_PAGE, m->runs[i].count * HIB_PAGE);
	}
	if (dev && m->dev_bytes)
		sum_update(lane, dev, m->dev_bytes);
	memcpy(out, lane, HIB_SUM_LEN);
}
