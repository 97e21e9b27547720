/*
 * The hibernation manifest (ctrl/hib_state.c): what a restarted ferryd reads to resume a VM.
 * A round trip keeps everything; a manifest that was edited (checksum), truncated, of another
 * format, or that passes its checksum but lies (runs outside the guest's RAM or outside their
 * extent, another VM's, another RAM size) is refused with a message, never used.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include <sys/stat.h>

#include "ctrl/hib_int.h"

static char dir[64];
static struct hib *h;
static struct hib_vm vm;
static char *argv_q[] = { "qemu-system-x86_64", "-accel", "tcg", NULL };

static void make_manifest(struct hib_manifest *m)
{
	static struct hib_extent ext[2] = {
		{ .id = 7, .rkey = 0x1234, .base = 0, .length = 64ull << 20, .kept = true, .token = { 0xa1, 0xb2 } },
		{ .id = 8, .rkey = 0x5678, .base = 1ull << 30, .length = 4096 * 10, .kept = true, .token = { [31] = 0xff } },
	};
	static struct hib_run runs[3] = { { 0, 10, 0, 0 }, { 100, 5, 0, 40960 }, { 32767, 1, 1, 0 } };

	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "vm0");
	m->ram_bytes = 128ull << 20;
	m->argv = argv_q;
	m->argc = 3;
	snprintf(m->pool, sizeof(m->pool), "127.0.0.1:7470");
	m->ext = ext;
	m->next = 2;
	m->runs = runs;
	m->nruns = 3;
	m->stored_pages = 16;
	m->dev_ext = 1;
	m->dev_off = 4096;
	m->dev_bytes = 5000;
	m->data_pages = 20;
	m->zero_pages = 4;
	for (unsigned i = 0; i < HIB_SUM_LEN; i++)
		m->sum[i] = (uint8_t)i;
}

static int setup(void **state)
{
	struct hib_opts o = { 0 };
	struct ferry_err err = { 0 };

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ferry-hib-test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	o.state_dir = dir;
	o.ram_dir = dir;
	assert_int_equal(hib_open(&o, &h, &err), 0);
	assert_int_equal(hib_define(h, "vm0", argv_q, 128ull << 20, &err), 0);
	assert_int_equal(hib_vm_load(h, "vm0", &vm, &err), 0);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	hib_vm_free(&vm);
	hib_close(h);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
	return 0;
}

/* A manifest that names an extent still bound to our session would not resume elsewhere: refused. */
static void test_unkept_extent_refused(void **state)
{
	struct hib_manifest m;
	struct ferry_err err = { 0 };

	(void)state;
	make_manifest(&m);
	m.ext[1].kept = false;
	assert_int_equal(hib_manifest_save(&vm, &m, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "extent 8 is not kept"));
	m.ext[1].kept = true;
}

static void test_round_trip(void **state)
{
	struct hib_manifest m, r;
	struct ferry_err err = { 0 };

	(void)state;
	make_manifest(&m);
	assert_int_equal(hib_manifest_save(&vm, &m, &err), 0);
	assert_int_equal(hib_manifest_load(&vm, &r, &err), 0);
	assert_string_equal(r.name, "vm0");
	assert_int_equal(r.ram_bytes, m.ram_bytes);
	assert_int_equal(r.argc, 3);
	assert_string_equal(r.argv[2], "tcg");
	assert_string_equal(r.pool, "127.0.0.1:7470");
	assert_int_equal(r.next, 2);
	assert_int_equal(r.ext[1].id, 8);
	assert_int_equal(r.ext[1].rkey, 0x5678);
	assert_int_equal(r.ext[1].base, 1ull << 30);
	/* The claim tokens come back exactly, and they are what makes the file a secret: 0600. */
	assert_true(r.ext[0].kept && r.ext[1].kept);
	assert_memory_equal(r.ext[0].token, m.ext[0].token, HIB_TOKEN_LEN);
	assert_memory_equal(r.ext[1].token, m.ext[1].token, HIB_TOKEN_LEN);
	{
		struct stat sb;

		assert_int_equal(stat(vm.manifest_path, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}
	assert_int_equal(r.nruns, 3);
	assert_int_equal(r.runs[1].page, 100);
	assert_int_equal(r.runs[1].off, 40960);
	assert_int_equal(r.runs[2].ext, 1);
	assert_int_equal(r.stored_pages, 16);
	assert_int_equal(r.dev_ext, 1);
	assert_int_equal(r.dev_off, 4096);
	assert_int_equal(r.dev_bytes, 5000);
	assert_memory_equal(r.sum, m.sum, HIB_SUM_LEN);
	hib_manifest_free(&r);
}

/* Rewrite the saved manifest's body with @p edit applied and a VALID checksum: a lying manifest. */
static void save_lying(void (*edit)(json_t *body))
{
	struct hib_manifest m;
	struct ferry_err err = { 0 };
	json_t *j, *body;
	char *s, hex[2 * HIB_SUM_LEN + 1];
	uint8_t d[HIB_SUM_LEN];

	make_manifest(&m);
	assert_int_equal(hib_manifest_save(&vm, &m, &err), 0);
	j = json_load_file(vm.manifest_path, 0, NULL);
	assert_non_null(j);
	body = json_object_get(j, "body");
	edit(body);
	s = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	crypto_generichash(d, sizeof(d), (const uint8_t *)s, strlen(s), NULL, 0);
	free(s);
	for (unsigned i = 0; i < HIB_SUM_LEN; i++)
		sprintf(hex + 2 * i, "%02x", d[i]);
	json_object_set_new(j, "checksum", json_string(hex));
	assert_int_equal(json_dump_file(j, vm.manifest_path, 0), 0);
	json_decref(j);
}

static void expect_refused(const char *why)
{
	struct hib_manifest r;
	struct ferry_err err = { 0 };

	assert_true(hib_manifest_load(&vm, &r, &err) < 0);
	assert_non_null(strstr(err.msg, "refused"));
	if (why && !strstr(err.msg, why))
		fail_msg("expected \"%s\" in: %s", why, err.msg);
	assert_null(r.ext);
	assert_null(r.runs);
}

static void edit_nothing(json_t *b) { (void)b; }
static void run_past_ram(json_t *b) { json_array_set_new(json_object_get(b, "runs"), 2, json_pack("[i,i,i,i]", 32767, 2, 1, 0)); }
static void run_past_extent(json_t *b) { json_array_set_new(json_object_get(b, "runs"), 2, json_pack("[i,i,i,i]", 5000, 1, 1, 40960)); }
static void run_bad_extent(json_t *b) { json_array_set_new(json_object_get(b, "runs"), 0, json_pack("[i,i,i,i]", 0, 10, 9, 0)); }
static void run_negative(json_t *b) { json_array_set_new(json_object_get(b, "runs"), 0, json_pack("[i,i,i,i]", -1, 10, 0, 0)); }
static void run_not_array(json_t *b) { json_array_set_new(json_object_get(b, "runs"), 0, json_string("x")); }
static void count_lies(json_t *b) { json_object_set_new(b, "stored_pages", json_integer(17)); }
static void other_vm(json_t *b) { json_object_set_new(b, "name", json_string("vm1")); }
static void other_ram(json_t *b) { json_object_set_new(b, "ram_bytes", json_integer(256ll << 20)); }
static void dev_past_extent(json_t *b) { json_object_set_new(json_object_get(b, "device_state"), "bytes", json_integer(40000)); }
static void no_argv(json_t *b) { json_object_del(b, "argv"); }
static void bad_sum(json_t *b) { json_object_set_new(b, "pages_sum", json_string("zz")); }
static void token_short(json_t *b) { json_array_set_new(json_array_get(json_object_get(b, "extents"), 0), 4, json_string("a1b2")); }
static void token_not_hex(json_t *b)
{
	char s[65];

	memset(s, 'z', 64);
	s[64] = '\0';
	json_array_set_new(json_array_get(json_object_get(b, "extents"), 0), 4, json_string(s));
}
static void token_missing(json_t *b) { json_array_remove(json_array_get(json_object_get(b, "extents"), 1), 4); }

static void test_lying_manifests(void **state)
{
	struct { void (*edit)(json_t *); const char *why; } cases[] = {
		{ run_past_ram, "out of bounds" }, { run_past_extent, "out of bounds" },
		{ run_bad_extent, "out of bounds" }, { run_negative, "malformed" },
		{ run_not_array, "malformed" },      { count_lies, "does not match" },
		{ other_vm, "does not match" },      { other_ram, "does not match" },
		{ dev_past_extent, "does not match" }, { no_argv, NULL }, { bad_sum, NULL },
		{ token_short, "extent 0 malformed" }, { token_not_hex, "extent 0 malformed" },
		{ token_missing, "extent 1 malformed" },
	};

	(void)state;
	save_lying(edit_nothing);	/* the test's own re-signing is right: accepted */
	{
		struct hib_manifest r;
		struct ferry_err err = { 0 };

		assert_int_equal(hib_manifest_load(&vm, &r, &err), 0);
		hib_manifest_free(&r);
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		save_lying(cases[i].edit);
		expect_refused(cases[i].why);
	}
}

static void write_file(const char *s, size_t n)
{
	FILE *f = fopen(vm.manifest_path, "w");

	assert_non_null(f);
	fwrite(s, 1, n, f);
	fclose(f);
}

static void test_damaged_files(void **state)
{
	struct hib_manifest m;
	struct ferry_err err = { 0 };
	char *good;
	size_t n;
	FILE *f;

	(void)state;
	make_manifest(&m);
	assert_int_equal(hib_manifest_save(&vm, &m, &err), 0);
	f = fopen(vm.manifest_path, "r");
	good = calloc(1, 1 << 16);
	n = fread(good, 1, (1 << 16) - 1, f);
	fclose(f);
	/* An edit without re-signing: checksum mismatch. */
	char *p = strstr(good, "\"stored_pages\": 16");

	assert_non_null(p);
	p[strlen("\"stored_pages\": 1")] = '7';
	write_file(good, n);
	expect_refused("checksum mismatch");
	p[strlen("\"stored_pages\": 1")] = '6';
	/* Truncated at several points. */
	for (size_t cut = 0; cut < n; cut += n / 7 + 1) {
		write_file(good, cut);
		expect_refused(NULL);
	}
	write_file("[1, 2, 3]", strlen("[1, 2, 3]"));
	expect_refused("not a manifest");
	write_file("{\"format\": 99, \"checksum\": \"00\", \"body\": {}}",
		   strlen("{\"format\": 99, \"checksum\": \"00\", \"body\": {}}"));
	expect_refused("format 99");
	unlink(vm.manifest_path);
	expect_refused("missing");
	write_file(good, n);	/* and the intact one still loads */
	assert_int_equal(hib_manifest_load(&vm, &m, &err), 0);
	hib_manifest_free(&m);
	free(good);
}

static void test_names_and_definitions(void **state)
{
	struct ferry_err err = { 0 };
	struct hib_vm v;

	(void)state;
	assert_int_equal(hib_define(h, "../etc", argv_q, 128ull << 20, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bad VM name"));
	assert_int_equal(hib_define(h, "vm2", argv_q, 1000, &err), -EINVAL);
	assert_int_equal(hib_vm_load(h, "nosuchvm", &v, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no VM named nosuchvm"));
	/* Hibernate/resume of a VM that is not in the right state: clear errors, nothing touched. */
	assert_int_equal(hib_hibernate(h, "vm0", NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not running"));
	assert_int_equal(hib_resume(h, "vm0", NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not hibernated"));
}

/* An image on another memory server than the one this struct hib is configured with: the resume
 * goes to the server the manifest names (here nobody listens: a clear error naming it), makes
 * nothing, and leaves the configuration as it was. A manifest naming no HOST:PORT is refused. */
static void test_image_on_another_server(void **state)
{
	struct hib_manifest m;
	struct ferry_err err = { 0 };
	char ram[PATH_MAX + 8];
	int rc;

	(void)state;
	make_manifest(&m);
	snprintf(m.pool, sizeof(m.pool), "127.0.0.1:1");
	assert_int_equal(hib_manifest_save(&vm, &m, &err), 0);
	vm.state = HIB_HIBERNATED;
	assert_int_equal(hib_vm_save(&vm, &err), 0);
	rc = hib_resume(h, "vm0", NULL, &err);
	assert_true(rc < 0);
	assert_non_null(strstr(err.msg, "memory server 127.0.0.1:1"));
	assert_string_equal(h->pool_host, "127.0.0.1");
	assert_int_equal(h->pool_port, 0);
	snprintf(ram, sizeof(ram), "%s", vm.ram_path);
	assert_int_equal(access(ram, F_OK), -1);	/* no RAM file made */
	snprintf(m.pool, sizeof(m.pool), "no-port-here");
	assert_int_equal(hib_manifest_save(&vm, &m, &err), 0);
	assert_int_equal(hib_resume(h, "vm0", NULL, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "names memory server 'no-port-here', not HOST:PORT"));
	vm.state = HIB_STOPPED;
	assert_int_equal(hib_vm_save(&vm, &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_unkept_extent_refused),
		cmocka_unit_test(test_lying_manifests),
		cmocka_unit_test(test_damaged_files),
		cmocka_unit_test(test_names_and_definitions),
		cmocka_unit_test(test_image_on_another_server),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
