/*
 * libferry-vmm serving server requests, against a scripted pager: a thread
 * on the other end of a real Unix socketpair that speaks the protocol with
 * the codec and vmm_io.h.
 *
 * - PAUSE with SAVE_STATE: ferry_vmm_reply_paused() uploads the blob in the
 *   pager's chunk size (STATE_PUT) and then answers OK(length), F_SERVER set;
 *   the pager's copy is byte-identical.
 * - interleaving: server requests that arrive while the VMM waits for the
 *   reply to its own request are queued (ferry_vmm_pending) and handed out
 *   in order; one of an unknown type (and one that does not decode) is
 *   answered ERROR on the spot, never handed out.
 * - DROP_PTES on the registered regions: a memfd range is dropped (the data
 *   is still there afterwards, the VMM's mapping refaults it from the file),
 *   an anonymous range is refused with UNSUPPORTED, a range outside with
 *   OUT_OF_RANGE; nothing is dropped then.
 * - the migrated-away NOTICE takes no answer; RESUME; timeouts; the pager
 *   closing the connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/vmm/ferry_vmm.h"
#include "dataplane/vmm/vmm_io.h"
#include "proto/vmm.h"

#define PAGE 4096u

struct peer {
	int sock;
	pthread_t thr;
	void (*script)(struct peer *p);
	bool ok;                      /* the script ran to its end */
	char why[256];                /* first failure in the script */
	uint8_t rx[FERRY_VMMP_MAX_MSG];
	uint8_t tx[FERRY_VMMP_MAX_MSG];
	struct ferry_vmmp_msg m;
	uint8_t *blob;                /* state the "pager" received */
	uint64_t blob_len;
	uint64_t answer;              /* value of the last OK answer to a server request */
	uint32_t answer_code;         /* code of the last ERROR answer (0: OK) */
};

#define P_CHECK(p, cond)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			snprintf((p)->why, sizeof((p)->why), "%s:%d: %s", __FILE__,   \
				 __LINE__, #cond);                                    \
			return;                                                       \
		}                                                                     \
	} while (0)

static int p_send(struct peer *p, int len)
{
	struct iovec iov = { p->tx, (size_t)len };

	if (len < 0)
		return len;
	return ferry_vmm_io_send(p->sock, &iov, 1, NULL, 0, ferry_vmm_io_deadline(5000));
}

/* Read one message; close any descriptors (REGISTER). @return its type, or -1. */
static int p_recv(struct peer *p)
{
	int fds[FERRY_VMMP_MAX_FDS], code;
	unsigned int nfds = 0;
	ssize_t n = ferry_vmm_io_recv_msg(p->sock, p->rx, sizeof(p->rx), fds, &nfds, FERRY_VMMP_MAX_FDS,
					  ferry_vmm_io_deadline(5000), &code);
	int rc;

	if (n < 0)
		return -1;
	rc = ferry_vmmp_decode(p->rx, (size_t)n, nfds, &p->m);
	ferry_vmm_io_close_fds(fds, nfds);
	return rc == FERRY_VMMP_E_OK ? p->m.hdr.type : -1;
}

/* Answer a REGISTER (max_chunk 4 KiB: blobs go in several chunks). */
static bool p_register(struct peer *p)
{
	struct ferry_vmmp_register_ok ok = { .vm_handle = 9, .server_features = FERRY_VMMP_SF_SERVER_REQ,
					     .max_chunk = PAGE };

	if (p_recv(p) != FERRY_VMMP_REGISTER || !(p->m.u.reg.flags & FERRY_VMMP_REG_F_SERVER_REQ))
		return false;
	return p_send(p, ferry_vmmp_encode_register_ok(p->m.hdr.request_id, &ok, p->tx, sizeof(p->tx))) == 0;
}

/* Serve STATE_PUTs until the answer to server request @id arrives. @return true on an answer. */
static bool p_collect_answer(struct peer *p, uint64_t id)
{
	for (;;) {
		int t = p_recv(p);

		if (t == FERRY_VMMP_STATE_PUT) {
			const struct ferry_vmmp_state *s = &p->m.u.state;

			if (s->offset == 0) {
				free(p->blob);
				p->blob = malloc(s->total_len + 1);
				p->blob_len = 0;
			}
			if (!p->blob || s->offset != p->blob_len)
				return false;
			memcpy(p->blob + p->blob_len, s->data, s->data_len);
			p->blob_len += s->data_len;
			if (p_send(p, ferry_vmmp_encode_ok(p->m.hdr.request_id, p->blob_len, p->tx, sizeof(p->tx))))
				return false;
			continue;
		}
		if ((t != FERRY_VMMP_OK && t != FERRY_VMMP_ERROR) ||
		    p->m.hdr.flags != (FERRY_VMMP_F_REPLY | FERRY_VMMP_F_SERVER) || p->m.hdr.request_id != id)
			return false;
		p->answer_code = t == FERRY_VMMP_ERROR ? p->m.u.error.code : 0;
		p->answer = t == FERRY_VMMP_OK ? p->m.u.ok.value : 0;
		return true;
	}
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;

	p->script(p);
	if (!p->why[0])
		p->ok = true;
	return NULL;
}

/* A connection whose other end runs @script; registered (memfd + anonymous region) when @reg. */
struct vmm {
	struct ferry_vmm_conn *c;
	struct peer *p;
	uint8_t *file_mem, *anon_mem;
	int memfd, fake_uffd;
};

static void vmm_start(struct vmm *v, void (*script)(struct peer *p), bool reg)
{
	int sv[2];

	memset(v, 0, sizeof(*v));
	v->memfd = v->fake_uffd = -1;
	v->p = calloc(1, sizeof(*v->p));
	assert_non_null(v->p);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	v->p->sock = sv[1];
	v->p->script = script;
	assert_int_equal(pthread_create(&v->p->thr, NULL, peer_main, v->p), 0);
	v->c = ferry_vmm_attach(sv[0]);
	assert_non_null(v->c);
	if (!reg)
		return;
	/* A 16-page memfd region at gpa 0 and a 16-page anonymous one at gpa 1 MiB. */
	v->memfd = memfd_create("srq-test", MFD_CLOEXEC);
	assert_true(v->memfd >= 0);
	assert_int_equal(ftruncate(v->memfd, 16 * PAGE), 0);
	v->file_mem = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, v->memfd, 0);
	v->anon_mem = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(v->file_mem != MAP_FAILED && v->anon_mem != MAP_FAILED);
	v->fake_uffd = eventfd(0, EFD_CLOEXEC);   /* the scripted pager does not serve faults */
	struct ferry_vmm_region r[2] = {
		{ .gpa = 0, .size = 16 * PAGE, .hva = (uintptr_t)v->file_mem, .mem_fd = v->memfd },
		{ .gpa = 1u << 20, .size = 16 * PAGE, .hva = (uintptr_t)v->anon_mem, .mem_fd = -1 },
	};
	struct ferry_vmm_reg_opts o = { .flags = FERRY_VMM_REG_SERVER_REQUESTS };

	assert_int_equal(ferry_vmm_register_opts(v->c, "vm-srq", r, 2, v->fake_uffd, -1, &o), 0);
}

/* Wait for the script and check it passed. */
static void vmm_finish(struct vmm *v)
{
	pthread_join(v->p->thr, NULL);
	if (!v->p->ok)
		fail_msg("scripted pager: %s", v->p->why);
	ferry_vmm_close(v->c);
	close(v->p->sock);
	free(v->p->blob);
	free(v->p);
	if (v->file_mem)
		munmap(v->file_mem, 16 * PAGE);
	if (v->anon_mem)
		munmap(v->anon_mem, 16 * PAGE);
	if (v->memfd >= 0)
		close(v->memfd);
	if (v->fake_uffd >= 0)
		close(v->fake_uffd);
}

/* ---------------------------------------------------------------- PAUSE + state, RESUME */

static void script_pause(struct peer *p)
{
	P_CHECK(p, p_register(p));
	P_CHECK(p, p_send(p, ferry_vmmp_encode_ctl(FERRY_VMMP_PAUSE, 100, FERRY_VMMP_PAUSE_F_SAVE_STATE, p->tx,
						   sizeof(p->tx))) == 0);
	P_CHECK(p, p_collect_answer(p, 100));
	P_CHECK(p, p->answer_code == 0 && p->answer == 3 * PAGE + 123 && p->blob_len == p->answer);
	for (uint64_t i = 0; i < p->blob_len; i++)
		P_CHECK(p, p->blob[i] == (uint8_t)(i * 7 + 1));
	/* Without SAVE_STATE the answer is OK(0) and nothing is uploaded. */
	P_CHECK(p, p_send(p, ferry_vmmp_encode_ctl(FERRY_VMMP_PAUSE, 101, 0, p->tx, sizeof(p->tx))) == 0);
	P_CHECK(p, p_collect_answer(p, 101));
	P_CHECK(p, p->answer_code == 0 && p->answer == 0);
	P_CHECK(p, p_send(p, ferry_vmmp_encode_ctl(FERRY_VMMP_RESUME, 102, FERRY_VMMP_RESUME_F_LOAD_STATE, p->tx,
						   sizeof(p->tx))) == 0);
	P_CHECK(p, p_collect_answer(p, 102));
	P_CHECK(p, p->answer_code == FERRY_VMMP_E_BUSY);
}

static void test_pause_state_resume(void **state)
{
	struct ferry_vmm_request rq;
	struct vmm v;
	uint8_t blob[3 * PAGE + 123];

	(void)state;
	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7 + 1);
	vmm_start(&v, script_pause, true);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), 1);
	assert_int_equal(rq.kind, FERRY_VMM_REQ_PAUSE);
	assert_int_equal(rq.id, 100);
	assert_int_equal(rq.flags, FERRY_VMM_PAUSE_SAVE_STATE);
	assert_int_equal(ferry_vmm_reply_paused(v.c, &rq, blob, sizeof(blob)), 0);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), 1);
	assert_int_equal(rq.kind, FERRY_VMM_REQ_PAUSE);
	assert_int_equal(rq.flags, 0);
	assert_int_equal(ferry_vmm_reply_paused(v.c, &rq, blob, sizeof(blob)), 0);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), 1);
	assert_int_equal(rq.kind, FERRY_VMM_REQ_RESUME);
	assert_int_equal(rq.flags, FERRY_VMM_RESUME_LOAD_STATE);
	/* Notices only: RESUME needs an answer, and a paused-answer is for PAUSE only. */
	assert_int_equal(ferry_vmm_reply_paused(v.c, &rq, blob, 1), -EINVAL);
	assert_int_equal(ferry_vmm_reply_error(v.c, &rq, 0, "no"), -EINVAL);
	assert_int_equal(ferry_vmm_reply_error(v.c, &rq, FERRY_VMMP_E_BUSY, "try later"), 0);
	/* Nothing more: a zero timeout just looks. */
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 0), 0);
	vmm_finish(&v);
}

/* ---------------------------------------------------------------- interleaving */

static void script_interleave(struct peer *p)
{
	struct ferry_vmmp_range r[2] = { { 0, PAGE }, { 4 * PAGE, 2 * PAGE } };
	uint64_t notify_req;

	P_CHECK(p, p_recv(p) == FERRY_VMMP_NOTIFY);
	notify_req = p->m.hdr.request_id;
	/* Before the reply: a DROP_PTES, a server request from the future, a PAUSE that does not decode,
	 * a NOTICE, then the reply to the VMM's NOTIFY. */
	P_CHECK(p, p_send(p, ferry_vmmp_encode_drop_ptes(200, r, 2, p->tx, sizeof(p->tx))) == 0);
	{
		int n = ferry_vmmp_encode_ctl(FERRY_VMMP_PAUSE, 201, 0, p->tx, sizeof(p->tx));

		p->tx[5] = 200;                       /* unknown type, still framed */
		P_CHECK(p, p_send(p, n) == 0);
		n = ferry_vmmp_encode_ctl(FERRY_VMMP_PAUSE, 202, 0, p->tx, sizeof(p->tx));
		p->tx[FERRY_VMMP_HDR_LEN] = 0x80;     /* unknown PAUSE flag */
		P_CHECK(p, p_send(p, n) == 0);
	}
	P_CHECK(p, p_send(p, ferry_vmmp_encode_notice(203, FERRY_VMMP_NOTICE_MIGRATED, p->tx, sizeof(p->tx))) == 0);
	P_CHECK(p, p_send(p, ferry_vmmp_encode_ok(notify_req, 0, p->tx, sizeof(p->tx))) == 0);
	/* The two it cannot serve were answered at once, in order. */
	P_CHECK(p, p_collect_answer(p, 201) && p->answer_code == FERRY_VMMP_E_UNSUPPORTED);
	P_CHECK(p, p_collect_answer(p, 202) && p->answer_code == FERRY_VMMP_E_BAD_FLAGS);
	P_CHECK(p, p_collect_answer(p, 200) && p->answer_code == 0 && p->answer == 0);
}

static void test_interleaved_requests(void **state)
{
	struct ferry_vmm_request rq;
	struct vmm v;

	(void)state;
	vmm_start(&v, script_interleave, false);
	assert_int_equal(ferry_vmm_pending(v.c), 0);
	assert_int_equal(ferry_vmm_notify(v.c, FERRY_VMM_SUSPEND), 0);
	assert_int_equal(ferry_vmm_pending(v.c), 2);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 0), 1);
	assert_int_equal(rq.kind, FERRY_VMM_REQ_DROP_PTES);
	assert_int_equal(rq.id, 200);
	assert_int_equal(rq.nranges, 2);
	assert_int_equal(rq.ranges[1].gpa, 4 * PAGE);
	assert_int_equal(rq.ranges[1].len, 2 * PAGE);
	{
		struct ferry_vmm_request drop = rq;
		struct ferry_vmm_range keep[2] = { rq.ranges[0], rq.ranges[1] };

		drop.ranges = keep;
		assert_int_equal(ferry_vmm_next_request(v.c, &rq, 0), 1);
		assert_int_equal(rq.kind, FERRY_VMM_REQ_MIGRATED);
		assert_int_equal(rq.id, 203);
		assert_int_equal(ferry_vmm_reply_ok(v.c, &rq, 0), -EINVAL);   /* notices take no answer */
		assert_int_equal(ferry_vmm_pending(v.c), 0);
		/* Unregistered: no regions, so nothing to drop -> ranges outside -> OUT_OF_RANGE...
		 * answer it as OK by hand instead, as a VMM that dropped them itself would. */
		assert_int_equal(ferry_vmm_reply_ok(v.c, &drop, 0), 0);
	}
	vmm_finish(&v);
}

/* ---------------------------------------------------------------- DROP_PTES */

static void script_drop(struct peer *p)
{
	struct ferry_vmmp_range file[1] = { { 2 * PAGE, 4 * PAGE } };
	struct ferry_vmmp_range anon[1] = { { (1u << 20) + PAGE, PAGE } };
	struct ferry_vmmp_range outside[1] = { { 16 * PAGE, PAGE } };
	struct ferry_vmmp_range straddle[2] = { { 0, PAGE }, { 15 * PAGE, 2 * PAGE } };

	P_CHECK(p, p_register(p));
	P_CHECK(p, p_send(p, ferry_vmmp_encode_drop_ptes(300, file, 1, p->tx, sizeof(p->tx))) == 0);
	P_CHECK(p, p_collect_answer(p, 300) && p->answer_code == 0 && p->answer == 4 * PAGE);
	P_CHECK(p, p_send(p, ferry_vmmp_encode_drop_ptes(301, anon, 1, p->tx, sizeof(p->tx))) == 0);
	P_CHECK(p, p_collect_answer(p, 301) && p->answer_code == FERRY_VMMP_E_UNSUPPORTED);
	P_CHECK(p, p_send(p, ferry_vmmp_encode_drop_ptes(302, outside, 1, p->tx, sizeof(p->tx))) == 0);
	P_CHECK(p, p_collect_answer(p, 302) && p->answer_code == FERRY_VMMP_E_OUT_OF_RANGE);
	P_CHECK(p, p_send(p, ferry_vmmp_encode_drop_ptes(303, straddle, 2, p->tx, sizeof(p->tx))) == 0);
	P_CHECK(p, p_collect_answer(p, 303) && p->answer_code == FERRY_VMMP_E_OUT_OF_RANGE);
}

/* Is the page at @addr mapped in this process (a PTE), per /proc/self/pagemap? */
static bool mapped(const void *addr)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	assert_true(fd >= 0);
	n = pread(fd, &e, sizeof(e), (off_t)((uintptr_t)addr / PAGE * sizeof(e)));
	close(fd);
	assert_int_equal(n, sizeof(e));
	return (e >> 63) & 1;   /* present */
}

static void test_drop_ptes(void **state)
{
	struct ferry_vmm_request rq;
	struct vmm v;

	(void)state;
	vmm_start(&v, script_drop, true);
	for (unsigned i = 0; i < 16; i++) {
		memset(v.file_mem + i * PAGE, 0x40 + (int)i, PAGE);
		memset(v.anon_mem + i * PAGE, 0x60 + (int)i, PAGE);
	}
	assert_true(mapped(v.file_mem + 3 * PAGE));
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), 1);
	assert_int_equal(rq.kind, FERRY_VMM_REQ_DROP_PTES);
	assert_int_equal(ferry_vmm_drop_ptes(v.c, &rq), 0);
	/* The PTEs are gone, the data is not: the file keeps it and a read maps it again. */
	assert_false(mapped(v.file_mem + 3 * PAGE));
	assert_true(mapped(v.file_mem + 1 * PAGE));
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(v.file_mem[i * PAGE + 17], 0x40 + (int)i);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), 1);
	assert_int_equal(ferry_vmm_drop_ptes(v.c, &rq), -EOPNOTSUPP);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), 1);
	assert_int_equal(ferry_vmm_drop_ptes(v.c, &rq), -ERANGE);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), 1);
	assert_true(mapped(v.file_mem));
	assert_int_equal(ferry_vmm_drop_ptes(v.c, &rq), -ERANGE);
	assert_true(mapped(v.file_mem));          /* all or nothing: the valid first range stayed */
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(v.anon_mem[i * PAGE + 17], 0x60 + (int)i);
	vmm_finish(&v);
}

/* ---------------------------------------------------------------- the pager goes away */

static void script_close(struct peer *p)
{
	P_CHECK(p, p_register(p));
	shutdown(p->sock, SHUT_RDWR);
}

static void script_garbage(struct peer *p)
{
	P_CHECK(p, p_register(p));
	memcpy(p->tx, "GARBAGE-GARBAGE-GARBAGE!", 24);
	P_CHECK(p, p_send(p, 24) == 0);
}

static void script_reply_out_of_turn(struct peer *p)
{
	P_CHECK(p, p_register(p));
	/* A reply nobody asked for, while the VMM waits for requests. */
	P_CHECK(p, p_send(p, ferry_vmmp_encode_ok(77, 0, p->tx, sizeof(p->tx))) == 0);
}

static void test_pager_gone(void **state)
{
	struct ferry_vmm_request rq;
	struct vmm v;

	(void)state;
	vmm_start(&v, script_close, true);
	pthread_join(v.p->thr, NULL);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), -ECONNRESET);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 0), -ENOTCONN);
	assert_int_equal(ferry_vmm_reply_ok(v.c, &rq, 0), -ENOTCONN);
	v.p->ok = true;
	ferry_vmm_close(v.c);
	close(v.p->sock);
	free(v.p);
	munmap(v.file_mem, 16 * PAGE);
	munmap(v.anon_mem, 16 * PAGE);
	close(v.memfd);
	close(v.fake_uffd);

	vmm_start(&v, script_garbage, true);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), -EPROTO);
	assert_non_null(strstr(ferry_vmm_errmsg(v.c), "bad message header"));
	vmm_finish(&v);

	vmm_start(&v, script_reply_out_of_turn, true);
	assert_int_equal(ferry_vmm_next_request(v.c, &rq, 5000), -EPROTO);
	vmm_finish(&v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pause_state_resume),
		cmocka_unit_test(test_interleaved_requests),
		cmocka_unit_test(test_drop_ptes),
		cmocka_unit_test(test_pager_gone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
