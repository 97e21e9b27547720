/*
 * ferry-wake's control server over a real Unix socket, with the burst loop
 * simulated by the test: the handshake (good and bad secrets), VM_ADD /
 * VM_TABLE / VM_DEL, ROLE_TAKE marking announcements, a captured SYN turning
 * into WAKE_REQUEST, its re-send with back-off while ferryd is silent and
 * its end once ferryd answers, VM_RUNNING marking the replay, STATS, and
 * malformed messages answered without ending the session, a silent peer
 * dropped after the 5 s authentication deadline; the handshake and
 * malformed traffic again over TCP.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/common/auth.h"
#include "dataplane/wake/wake_ctl.h"
#include "dataplane/wake/wake_pkt.h"
#include "proto/wake.h"

static struct wake_shared sh;
static struct wake_ctl ctl;
static struct ferry_secret secret, wrong;
static pthread_t tid;
static char dir[32], path[64];
static uint8_t buf[FERRY_WAKE_MAX_MSG];
static struct ferry_wake_msg m;
static uint64_t req = 100;

static void *run(void *arg)
{
	(void)arg;
	wake_ctl_run(&ctl);
	return NULL;
}

static bool use_tcp;

static int setup_common(void)
{
	struct ferry_err err;
	char spec[160];

	assert_int_equal(ferry_auth_init(&err), 0);
	assert_int_equal(ferry_secret_from_bytes("0123456789abcdef0123456789abcdef", 32, &secret, &err), 0);
	assert_int_equal(ferry_secret_from_bytes("0123456789abcdef0123456789abcdeX", 32, &wrong, &err), 0);
	strcpy(dir, "/tmp/wake-ctl-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	snprintf(spec, sizeof(spec), use_tcp ? "tcp:127.0.0.1:0" : "unix:%s", path);
	memset(&ctl, 0, sizeof(ctl));
	assert_int_equal(wake_shared_init(&sh, 16, &err), 0);
	assert_int_equal(wake_ctl_open(&ctl, spec, &secret, &sh, &err), 0);
	assert_int_equal(pthread_create(&tid, NULL, run, NULL), 0);
	return 0;
}

static int setup(void **state)
{
	(void)state;
	use_tcp = false;
	return setup_common();
}

static int setup_tcp(void **state)
{
	(void)state;
	use_tcp = true;
	return setup_common();
}

static int teardown(void **state)
{
	(void)state;
	__atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
	pthread_join(tid, NULL);
	wake_ctl_close(&ctl);
	wake_shared_fini(&sh);
	rmdir(dir);
	return 0;
}

static int conn(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (use_tcp) {
		/* listen_desc is "tcp:127.0.0.1:PORT". */
		struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		const char *colon = strrchr(ctl.listen_desc, ':');

		assert_non_null(colon);
		in.sin_port = htons((uint16_t)atoi(colon + 1));
		assert_true(in.sin_port != 0);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(fd >= 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&in, sizeof(in)), 0);
		return fd;
	}
	fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void put(int fd, int n)
{
	assert_true(n > 0);
	assert_int_equal(send(fd, buf, (size_t)n, MSG_NOSIGNAL), n);
}

/* One message, or -1 on EOF / nothing within @timeout_ms. */
static int get(int fd, int timeout_ms)
{
	size_t have = 0, want = FERRY_WAKE_HDR_LEN;
	struct ferry_wake_hdr h;

	while (have < want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, timeout_ms) <= 0)
			return -1;
		r = recv(fd, buf + have, want - have, 0);
		if (r <= 0)
			return -1;
		have += (size_t)r;
		if (have == FERRY_WAKE_HDR_LEN) {
			assert_int_equal(ferry_wake_hdr_decode(buf, have, &h), FERRY_WAKE_E_OK);
			want += h.payload_len;
		}
	}
	return ferry_wake_decode(buf, have, &m);
}

static int authed(const struct ferry_secret *s)
{
	uint8_t sn[32], cn[32], mac[32];
	int fd = conn();

	put(fd, ferry_wake_encode_hello(req++, "test-ferryd", 1, 1, buf, sizeof(buf)));
	assert_int_equal(get(fd, 2000), FERRY_WAKE_E_OK);
	assert_int_equal(m.hdr.type, FERRY_WAKE_CHALLENGE);
	memcpy(sn, m.u.challenge.nonce, 32);
	ferry_auth_nonce(cn);
	ferry_auth_mac(s, "ferry-wake-c", sn, cn, "test-ferryd", 11, mac);
	put(fd, ferry_wake_encode_auth(req++, cn, mac, buf, sizeof(buf)));
	assert_int_equal(get(fd, 2000), FERRY_WAKE_E_OK);
	if (s == &wrong) {
		assert_int_equal(m.hdr.type, FERRY_WAKE_ERROR);
		assert_int_equal(m.u.error.code, FERRY_WAKE_E_AUTH_FAILED);
		assert_int_equal(get(fd, 2000), -1);   /* closed */
		close(fd);
		return -1;
	}
	assert_int_equal(m.hdr.type, FERRY_WAKE_AUTH_OK);
	assert_int_equal(ferry_auth_verify(s, "ferry-wake-s", cn, sn, "test-ferryd", 11, m.u.auth_ok.mac), 0);
	return fd;
}

static uint64_t expect_ok(int fd)
{
	int rc;

	do {
		rc = get(fd, 2000);
		assert_int_equal(rc, FERRY_WAKE_E_OK);
	} while (m.hdr.type == FERRY_WAKE_WAKE_REQUEST);
	if (m.hdr.type == FERRY_WAKE_ERROR)
		print_error("ERROR %u: %s\n", m.u.error.code, m.u.error.msg);
	assert_int_equal(m.hdr.type, FERRY_WAKE_OK);
	return m.u.ok.value;
}

static uint32_t expect_error(int fd)
{
	assert_int_equal(get(fd, 2000), FERRY_WAKE_E_OK);
	assert_int_equal(m.hdr.type, FERRY_WAKE_ERROR);
	return m.u.error.code;
}

static struct ferry_wake_vm vm_of(const char *id, uint8_t last)
{
	struct ferry_wake_vm v = { .ip = { 10, 99, 0, last }, .mac = { 0x02, 0x99, 0, 0, 0, last } };

	snprintf(v.id, sizeof(v.id), "%s", id);
	return v;
}

static void test_auth(void **state)
{
	struct ferry_wake_vm v = vm_of("vm-1", 1);
	int fd;

	(void)state;
	assert_int_equal(authed(&wrong), -1);
	/* Anything but HELLO first: refused and closed. */
	fd = conn();
	put(fd, ferry_wake_encode_vm_add(1, &v, buf, sizeof(buf)));
	assert_int_equal(expect_error(fd), FERRY_WAKE_E_NOT_AUTHENTICATED);
	assert_int_equal(get(fd, 2000), -1);
	close(fd);
	pthread_mutex_lock(&sh.lock);
	assert_int_equal(sh.table.count, 0);
	pthread_mutex_unlock(&sh.lock);
	fd = authed(&secret);
	close(fd);
}

static void test_auth_deadline(void **state)
{
	int fd = conn();
	double t0;
	struct timespec ts;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	/* Silent and unauthenticated: dropped after 5 s, so it cannot hold a slot. */
	assert_int_equal(get(fd, 8000), -1);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	assert_true((double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - t0 >= 4.5);
	close(fd);
}

/* What the burst loop does with a SYN to @ip. */
static void simulate_syn(const uint8_t ip[4], uint16_t sport)
{
	struct wake_pkt p = { .kind = WAKE_PKT_TCP_SYN, .src_ip = { 10, 99, 0, 10 }, .sport = sport, .dport = 7,
			      .isn = 1234 };
	uint8_t frame[74] = { 0 };
	struct wake_vm *vm;
	bool first;

	memcpy(p.dst_ip, ip, 4);
	pthread_mutex_lock(&sh.lock);
	vm = wake_table_find_ip(&sh.table, ip);
	assert_non_null(vm);
	wake_vm_store_syn(vm, frame, sizeof(frame), &p);
	first = wake_vm_note_access(vm, &p, ferry_mono_ns());
	pthread_mutex_unlock(&sh.lock);
	if (first)
		wake_shared_kick(&sh);
}

static void test_vm_lifecycle(void **state)
{
	struct ferry_wake_vm v = vm_of("vm-5", 5), tab[2] = { vm_of("vm-6", 6), vm_of("vm-7", 7) };
	int fd = authed(&secret);
	struct wake_vm *vm;
	uint64_t first_req;

	(void)state;
	put(fd, ferry_wake_encode_vm_add(req++, &v, buf, sizeof(buf)));
	assert_int_equal(expect_ok(fd), 0);
	/* Same IP, other id: EXISTS. */
	v = vm_of("vm-55", 5);
	put(fd, ferry_wake_encode_vm_add(req++, &v, buf, sizeof(buf)));
	assert_int_equal(expect_error(fd), FERRY_WAKE_E_EXISTS);
	put(fd, ferry_wake_encode_vm_table(req++, 0, tab, 2, buf, sizeof(buf)));
	assert_int_equal(expect_ok(fd), 2);

	put(fd, ferry_wake_encode_role_take(req++, 3, buf, sizeof(buf)));
	assert_int_equal(expect_ok(fd), 3);
	pthread_mutex_lock(&sh.lock);
	assert_true(sh.role);
	assert_int_equal(__atomic_load_n(&sh.pending, __ATOMIC_ACQUIRE), 1);
	vm = wake_table_find_id(&sh.table, "vm-6");
	assert_non_null(vm);
	assert_true(vm->announce_pending);
	pthread_mutex_unlock(&sh.lock);
	put(fd, ferry_wake_encode_role_take(req++, 2, buf, sizeof(buf)));
	assert_int_equal(expect_error(fd), FERRY_WAKE_E_STALE_EPOCH);

	/* A SYN: WAKE_REQUEST at once; silence: re-sent after ~250 ms; OK: no more. */
	simulate_syn((uint8_t[4]){ 10, 99, 0, 5 }, 40000);
	assert_int_equal(get(fd, 1000), FERRY_WAKE_E_OK);
	assert_int_equal(m.hdr.type, FERRY_WAKE_WAKE_REQUEST);
	assert_string_equal(m.u.wake.id, "vm-5");
	assert_int_equal(m.u.wake.attempt, 1);
	assert_int_equal(m.u.wake.reason, FERRY_WAKE_REASON_SYN);
	assert_int_equal(m.u.wake.src_port, 40000);
	first_req = m.hdr.request_id;
	simulate_syn((uint8_t[4]){ 10, 99, 0, 5 }, 40000);   /* a retransmit: no new request */
	assert_int_equal(get(fd, 1000), FERRY_WAKE_E_OK);
	assert_int_equal(m.hdr.type, FERRY_WAKE_WAKE_REQUEST);
	assert_int_equal(m.u.wake.attempt, 2);
	assert_true(m.hdr.request_id != first_req);
	put(fd, ferry_wake_encode_ok(m.hdr.request_id, 0, buf, sizeof(buf)));
	assert_int_equal(get(fd, 1200), -1);                 /* acknowledged: silence */

	put(fd, ferry_wake_encode_vm_running(req++, "vm-5", buf, sizeof(buf)));
	assert_int_equal(expect_ok(fd), 1);                   /* one SYN to replay */
	pthread_mutex_lock(&sh.lock);
	vm = wake_table_find_id(&sh.table, "vm-5");
	assert_non_null(vm);
	assert_true(vm->replay_pending);
	wake_table_del(&sh.table, vm);                        /* what the burst loop does after sending */
	pthread_mutex_unlock(&sh.lock);

	put(fd, ferry_wake_encode_vm_running(req++, "vm-6", buf, sizeof(buf)));
	assert_int_equal(expect_ok(fd), 0);                   /* nothing stored: removed at once */
	put(fd, ferry_wake_encode_vm_del(req++, "vm-7", buf, sizeof(buf)));
	assert_int_equal(expect_ok(fd), 0);
	put(fd, ferry_wake_encode_vm_del(req++, "vm-7", buf, sizeof(buf)));
	assert_int_equal(expect_error(fd), FERRY_WAKE_E_UNKNOWN_VM);

	put(fd, ferry_wake_encode_role_drop(req++, 4, buf, sizeof(buf)));
	assert_int_equal(expect_ok(fd), 0);
	assert_false(__atomic_load_n(&sh.role, __ATOMIC_ACQUIRE));

	put(fd, ferry_wake_encode_stats(req++, buf, sizeof(buf)));
	assert_int_equal(get(fd, 2000), FERRY_WAKE_E_OK);
	assert_int_equal(m.hdr.type, FERRY_WAKE_STATS_OK);
	for (uint16_t i = 0; i < m.u.stats_ok.count; i++) {
		if (!strcmp(m.u.stats_ok.stats[i].name, "vms"))
			assert_int_equal(m.u.stats_ok.stats[i].value, 0);
		if (!strcmp(m.u.stats_ok.stats[i].name, "wake_requests_sent"))
			assert_int_equal(m.u.stats_ok.stats[i].value, 2);
		if (!strcmp(m.u.stats_ok.stats[i].name, "wake_requests_acked"))
			assert_int_equal(m.u.stats_ok.stats[i].value, 1);
	}
	close(fd);
}

static void test_malformed(void **state)
{
	struct ferry_wake_vm v = vm_of("vm-9", 9);
	int fd = authed(&secret), n;

	(void)state;
	/* Whole but malformed bodies: ERROR, the session goes on. */
	n = ferry_wake_encode_vm_add(req++, &v, buf, sizeof(buf));
	buf[FERRY_WAKE_HDR_LEN + 4] |= 1;
	put(fd, n);
	assert_int_equal(expect_error(fd), FERRY_WAKE_E_BAD_ADDR);
	n = ferry_wake_encode_stats(req++, buf, sizeof(buf));
	put(fd, n);
	assert_int_equal(get(fd, 2000), FERRY_WAKE_E_OK);
	assert_int_equal(m.hdr.type, FERRY_WAKE_STATS_OK);
	/* Split across writes: reassembled. */
	n = ferry_wake_encode_vm_add(req++, &v, buf, sizeof(buf));
	assert_int_equal(send(fd, buf, 10, 0), 10);
	usleep(20000);
	assert_int_equal(send(fd, buf + 10, (size_t)n - 10, 0), n - 10);
	assert_int_equal(expect_ok(fd), 0);
	/* A bad header: ERROR and closed. */
	n = ferry_wake_encode_stats(req++, buf, sizeof(buf));
	buf[4] = 9;
	put(fd, n);
	assert_int_equal(expect_error(fd), FERRY_WAKE_E_VERSION);
	assert_int_equal(get(fd, 2000), -1);
	close(fd);
	assert_true(WAKE_READ(sh.ctl.ctl_malformed) >= 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_vm_lifecycle),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_auth_deadline),
	};
	const struct CMUnitTest tcp_tests[] = {
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_malformed),
	};
	int failed = cmocka_run_group_tests_name("unix", tests, setup, teardown);

	/* The same server on a TCP socket. */
	return failed + cmocka_run_group_tests_name("tcp", tcp_tests, setup_tcp, teardown);
}
