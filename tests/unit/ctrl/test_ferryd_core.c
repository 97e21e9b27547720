/*
 * ferryd's pure parts: the configuration (INI file + flags through
 * daemon_opts, the cross-key checks) and the seed-004 scores with the choice
 * of the least-loaded node.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctrl/ferryd.h"

static char path[64];
static struct ferryd_cfg cfg;

static void write_conf(const char *text)
{
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/ferryd-test-XXXXXX");
	{
		int fd = mkstemp(path);

		assert_true(fd >= 0);
		close(fd);
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Parse @text as the file plus --name @name and validate; returns the first error code. */
static int load(const char *text, const char *name, struct ferry_err *err)
{
	char *argv[] = { "ferryd", "-c", path, "--name", (char *)name, NULL };
	int rc;

	write_conf(text);
	ferryd_config_defaults(&cfg);
	memset(err, 0, sizeof(*err));
	optind = 0;   /* getopt again from the start */
	rc = ferryd_config_parse(&cfg, 5, argv, err);
	if (rc == 0)
		rc = ferryd_config_validate(&cfg, err);
	unlink(path);
	return rc;
}

#define CLUSTER                                                     \
	"[ferryd]\nsecret_file = /etc/ferry/secret\nroles = sub,main\n" \
	"[cluster]\ncoordinator = h1\nreport_interval_ms = 250\n"       \
	"[node h1]\naddress = 10.0.0.1:7400\n"                          \
	"[node h2]\naddress = 10.0.0.2:7400\nmemsrv = 10.0.0.2:7401\n"

static void test_config_ok(void **state)
{
	struct ferry_err err;
	uint32_t roles;

	(void)state;
	assert_int_equal(load(CLUSTER "[child memsrv]\nnodes = h2\nexec = /bin/ferry-memsrv -c /etc/m.conf\n"
				      "[vm web-1]\nip = 10.0.0.50\nmac = 02:00:00:00:00:50\nnode = h2\nstate = hibernated\n"
				      "resume_cmd = /bin/true\nannounce_port = 22\n"
				      "qga_socket = /run/qga-web-1.sock\nforbid_procs = backup, rsync\n",
			      "h2", &err),
			 0);
	assert_string_equal(cfg.name, "h2");
	assert_int_equal(cfg.nnodes, 2);
	/* Defaults filled by validate: listen = this node's address, down after 3 intervals. */
	assert_string_equal(cfg.listen, "10.0.0.2:7400");
	assert_int_equal(cfg.down_after_ms, 750);
	assert_string_equal(cfg.node[1].memsrv, "10.0.0.2:7401");
	assert_int_equal(cfg.roles, FERRY_CTRL_ROLE_SUB | FERRY_CTRL_ROLE_MAIN);
	assert_int_equal(cfg.nchildren, 1);
	assert_string_equal(cfg.child[0].nodes, "h2");
	assert_int_equal(cfg.child[0].restart_min_ms, 200);
	assert_int_equal(cfg.nvms, 1);
	assert_int_equal(cfg.vm[0].state, FERRY_CTRL_VM_HIBERNATED);
	assert_int_equal(cfg.vm[0].ip[3], 50);
	assert_int_equal(cfg.vm[0].mac[5], 0x50);
	assert_int_equal(cfg.vm[0].announce_port, 22);
	assert_string_equal(cfg.vm[0].qga_socket, "/run/qga-web-1.sock");
	assert_string_equal(cfg.vm[0].forbid_procs, "backup, rsync");
	assert_int_equal(ferryd_parse_roles("accept, main", &roles), 0);
	assert_int_equal(roles, FERRY_CTRL_ROLE_ACCEPT | FERRY_CTRL_ROLE_MAIN);
	assert_int_equal(ferryd_parse_roles("main,boss", &roles), -1);
}

/* Each bad config fails with a message that names the problem. */
static void test_config_errors(void **state)
{
	static const struct {
		const char *text, *name, *says;
	} cases[] = {
		{ CLUSTER "[ferryd]\nlisten = nowhere\n", "h1", "is not HOST:PORT" },
		{ CLUSTER "[ferryd]\ncolour = blue\n", "h1", "unknown key 'colour'" },
		{ CLUSTER "[galaxy]\nx = 1\n", "h1", "unknown section [galaxy]" },
		{ CLUSTER "[ferryd]\nroles = sub,boss\n", "h1", "is not a list of sub, main, accept" },
		{ CLUSTER "[node h 3]\naddress = 1.2.3.4:5\n", "h1", "is not a name" },
		{ CLUSTER, "h9", "this node 'h9' has no [node h9] section" },
		{ "[ferryd]\nsecret_file = /s\n[node h1]\naddress = 1.2.3.4:5\n", "h1", "no coordinator" },
		{ CLUSTER "[vm v]\nnode = h7\n", "h1", "[vm v] node 'h7' is not a [node]" },
		{ CLUSTER "[vm v]\nmac = 02:00:00:00:00\n", "h1", "is not a MAC address" },
		{ CLUSTER "[vm v]\nip = 10.0.0.300\n", "h1", "is not an IPv4 address" },
		{ CLUSTER "[child c]\nrestart_min_ms = 0\n", "h1", "is not a time in ms" },
		{ CLUSTER "[child c]\nlog = /tmp/c.log\n", "h1", "[child c] has no exec" },
		{ CLUSTER "[cluster]\nreport_interval_ms = soon\n", "h1", "is not a time in ms" },
		{ CLUSTER "[node h3]\nmemsrv = 10.0.0.3:7401\n", "h1", "[node h3] has no address" },
		{ CLUSTER "[vm v]\nqga_socket = qga.sock\n", "h1", "is not an absolute socket path" },
		{ CLUSTER "[vm v]\nforbid_procs = a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\n", "h1", "at most 16 process names" },
	};
	struct ferry_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = load(cases[i].text, cases[i].name, &err);

		if (rc >= 0 || !strstr(err.msg, cases[i].says)) {
			fprintf(stderr, "case %zu: rc %d, message \"%s\", want \"%s\"\n", i, rc, err.msg, cases[i].says);
			fail();
		}
	}
}

static struct ferry_ctrl_node node(const char *name, uint32_t load1, uint16_t cpus, uint64_t total, uint64_t free_b)
{
	struct ferry_ctrl_node n = { .state = FERRY_CTRL_NODE_UP, .roles = FERRY_CTRL_ROLE_MAIN | FERRY_CTRL_ROLE_ACCEPT,
				     .load1 = load1, .cpus = cpus, .mem_total = total, .mem_free = free_b };

	snprintf(n.name, sizeof(n.name), "%s", name);
	ferryd_scores(&n);
	return n;
}

static void test_scores(void **state)
{
	struct ferry_ctrl_node n;

	(void)state;
	/* Load 1.5 on 2 CPUs = 750; memory 25% used = 250: the score is the higher. */
	n = node("a", 1500, 2, 1000, 750);
	assert_int_equal(n.load_score, 750);
	assert_int_equal(n.mem_score, 250);
	assert_int_equal(n.score, 750);
	/* Memory the bottleneck. */
	n = node("a", 100, 4, 1 << 20, 1 << 18);
	assert_int_equal(n.load_score, 25);
	assert_int_equal(n.mem_score, 750);
	assert_int_equal(n.score, 750);
	/* Overload is capped; no CPUs counts as one; no memory figure is full. */
	n = node("a", 9000, 2, 100, 100);
	assert_int_equal(n.load_score, 1000);
	n = node("a", 500, 0, 0, 0);
	assert_int_equal(n.load_score, 500);
	assert_int_equal(n.mem_score, 1000);
	/* Sizes a peer may send: no wrap-around. */
	n = node("a", 0, 1, UINT64_MAX, UINT64_MAX / 2);
	assert_int_equal(n.mem_score, 500);
}

static void test_least_loaded(void **state)
{
	static struct ferry_ctrl_nodes v;
	const struct ferry_ctrl_node *best;

	(void)state;
	memset(&v, 0, sizeof(v));
	v.count = 4;
	v.node[0] = node("h1", 1800, 2, 100, 90);   /* 900 */
	v.node[1] = node("h2", 400, 2, 100, 70);    /* 300 */
	v.node[2] = node("h3", 400, 2, 100, 70);    /* 300: ties with h2 */
	v.node[3] = node("h4", 0, 2, 100, 100);     /* 0, but down */
	v.node[3].state = FERRY_CTRL_NODE_DOWN;
	best = ferryd_least_loaded(&v, FERRY_CTRL_ROLE_MAIN, NULL);
	assert_non_null(best);
	assert_string_equal(best->name, "h2");          /* ties: the name that sorts first */
	best = ferryd_least_loaded(&v, FERRY_CTRL_ROLE_ACCEPT, "h2");
	assert_string_equal(best->name, "h3");          /* the role moves to another node */
	v.node[2].roles = FERRY_CTRL_ROLE_MAIN;         /* h3 cannot hold the accept role */
	best = ferryd_least_loaded(&v, FERRY_CTRL_ROLE_ACCEPT, "h2");
	assert_string_equal(best->name, "h1");
	assert_null(ferryd_least_loaded(&v, FERRY_CTRL_ROLE_SUB, NULL));
	v.count = 0;
	assert_null(ferryd_least_loaded(&v, 0, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_ok),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_scores),
		cmocka_unit_test(test_least_loaded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
