/*
 * Persistence of the hibernation library (hib_int.h): NAME.vm.json (definition + where the VM
 * is) and NAME.manifest.json (the image in the pool), both written atomically (temporary file,
 * fsync, rename). The manifest carries a blake2b checksum of its canonical body: a manifest
 * that was edited, truncated or mixed up is refused rather than resumed into garbage.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctrl/hib_int.h"

static bool name_ok(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len >= HIB_NAME_MAX)
		return false;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return false;
	return n[0] != '.';
}

int hib_vm_paths(struct hib *h, const char *name, struct hib_vm *vm, struct ferry_err *err)
{
	memset(vm, 0, sizeof(*vm));
	if (!name_ok(name))
		return ferry_err_set(err, EINVAL,
				     "bad VM name \"%s\": 1..%d characters of A-Z a-z 0-9 . _ -, not starting with '.'",
				     name, HIB_NAME_MAX - 1);
	snprintf(vm->name, sizeof(vm->name), "%s", name);
#define P(field, dir, suffix) \
	if (snprintf(vm->field, sizeof(vm->field), "%s/%s%s", dir, name, suffix) >= (int)sizeof(vm->field)) \
		return ferry_err_set(err, ENAMETOOLONG, "path too long for VM %s", name)
	P(json_path, h->state_dir, ".vm.json");
	P(manifest_path, h->state_dir, ".manifest.json");
	P(qmp_path, h->state_dir, ".qmp");
	P(log_path, h->state_dir, ".log");
	P(dev_path, h->state_dir, ".dev");
	P(ram_path, h->ram_dir, ".ferry-ram");
#undef P
	return 0;
}

char **hib_argv_dup(char *const argv[], size_t *argc)
{
	size_t n = 0;
	char **v;

	while (argv[n])
		n++;
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		v[i] = strdup(argv[i]);
		if (!v[i]) {
			hib_argv_free(v);
			return NULL;
		}
	}
	if (argc)
		*argc = n;
	return v;
}

void hib_argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

static json_t *argv_json(char *const *argv)
{
	json_t *a = json_array();

	for (size_t i = 0; a && argv && argv[i]; i++)
		json_array_append_new(a, json_string(argv[i]));
	return a;
}

/* A JSON array of strings -> argv; NULL if it is not one. */
static char **json_argv(json_t *a, size_t *argc)
{
	size_t n = json_array_size(a), i;
	char **v;

	if (!json_is_array(a) || n == 0 || n > 4096)
		return NULL;
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return NULL;
	for (i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(a, i));

		if (!s || !(v[i] = strdup(s))) {
			hib_argv_free(v);
			return NULL;
		}
	}
	*argc = n;
	return v;
}

int hib_write_file_atomic(const char *path, const void *data, size_t len, struct ferry_err *err)
{
	char tmp[PATH_MAX + 8];
	int fd, e;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return ferry_err_set(err, errno, "cannot write %s: %s", tmp, strerror(errno));
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) != 0) {
		e = errno ? errno : EIO;
		close(fd);
		unlink(tmp);
		return ferry_err_set(err, e, "cannot write %s: %s", tmp, strerror(e));
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		e = errno;
		unlink(tmp);
		return ferry_err_set(err, e, "cannot rename %s to %s: %s", tmp, path, strerror(e));
	}
	return 0;
}

static int save_json(const char *path, json_t *j, struct ferry_err *err)
{
	char *s;
	int rc;

	if (!j)
		return ferry_err_set(err, ENOMEM, "out of memory");
	s = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	json_decref(j);
	if (!s)
		return ferry_err_set(err, ENOMEM, "out of memory");
	rc = hib_write_file_atomic(path, s, strlen(s), err);
	free(s);
	return rc;
}

int hib_vm_save(const struct hib_vm *vm, struct ferry_err *err)
{
	json_t *j = json_pack("{s:i, s:s, s:o, s:I, s:s, s:i}", "format", HIB_MANIFEST_FORMAT, "name", vm->name, "argv",
			      argv_json(vm->argv), "ram_bytes", (json_int_t)vm->ram_bytes, "state",
			      hib_state_name(vm->state), "pid", (int)vm->pid);

	return save_json(vm->json_path, j, err);
}

int hib_vm_load(struct hib *h, const char *name, struct hib_vm *vm, struct ferry_err *err)
{
	json_error_t je;
	json_t *j;
	const char *st;
	json_int_t ram = 0;
	int pid = 0, rc;

	rc = hib_vm_paths(h, name, vm, err);
	if (rc)
		return rc;
	j = json_load_file(vm->json_path, 0, &je);
	if (!j) {
		if (access(vm->json_path, F_OK) != 0)
			return ferry_err_set(err, ENOENT, "no VM named %s (no %s)", name, vm->json_path);
		return ferry_err_set(err, EINVAL, "%s: %s (line %d)", vm->json_path, je.text, je.line);
	}
	if (json_unpack_ex(j, &je, 0, "{s:I, s:s, s:i}", "ram_bytes", &ram, "state", &st, "pid", &pid) ||
	    !(vm->argv = json_argv(json_object_get(j, "argv"), &vm->argc)) || ram <= 0 || ram % HIB_PAGE) {
		json_decref(j);
		return ferry_err_set(err, EINVAL, "%s: not a VM record (%s)", vm->json_path, je.text);
	}
	vm->ram_bytes = (uint64_t)ram;
	vm->pid = pid;
	vm->state = strcmp(st, "running") == 0 ? HIB_RUNNING : strcmp(st, "hibernated") == 0 ? HIB_HIBERNATED
												: HIB_STOPPED;
	json_decref(j);
	return 0;
}

void hib_vm_free(struct hib_vm *vm)
{
	hib_argv_free(vm->argv);
	vm->argv = NULL;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static int unhex(const char *s, uint8_t *b, size_t n)
{
	if (!s || strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		b[i] = (uint8_t)v;
	}
	return 0;
}

static void body_sum(json_t *body, char out[2 * HIB_SUM_LEN + 1])
{
	char *s = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	uint8_t d[HIB_SUM_LEN];

	crypto_generichash(d, sizeof(d), (const uint8_t *)(s ? s : ""), s ? strlen(s) : 0, NULL, 0);
	free(s);
	hex(d, sizeof(d), out);
}

int hib_manifest_save(const struct hib_vm *vm, const struct hib_manifest *m, struct ferry_err *err)
{
	json_t *ext = json_array(), *runs = json_array(), *body;
	char sum[2 * HIB_SUM_LEN + 1], bsum[2 * HIB_SUM_LEN + 1], tok[2 * HIB_TOKEN_LEN + 1];

	/* Only kept extents are worth a manifest: one that names session-bound extents would not resume. */
	for (size_t i = 0; i < m->next; i++)
		if (!m->ext[i].kept) {
			json_decref(ext);
			json_decref(runs);
			return ferry_err_set(err, EINVAL, "manifest of %s: extent %u is not kept", m->name, m->ext[i].id);
		}
	for (size_t i = 0; ext && i < m->next; i++) {
		hex(m->ext[i].token, HIB_TOKEN_LEN, tok);
		json_array_append_new(ext, json_pack("[I, I, I, I, s]", (json_int_t)m->ext[i].id,
						     (json_int_t)m->ext[i].rkey, (json_int_t)m->ext[i].base,
						     (json_int_t)m->ext[i].length, tok));
		sodium_memzero(tok, sizeof(tok));
	}
	for (size_t i = 0; runs && i < m->nruns; i++)
		json_array_append_new(runs, json_pack("[I, I, I, I]", (json_int_t)m->runs[i].page,
						      (json_int_t)m->runs[i].count, (json_int_t)m->runs[i].ext,
						      (json_int_t)m->runs[i].off));
	hex(m->sum, HIB_SUM_LEN, sum);
	body = json_pack("{s:s, s:I, s:o, s:s, s:o, s:o, s:I, s:{s:I, s:I, s:I}, s:I, s:I, s:s}", "name", m->name,
			 "ram_bytes", (json_int_t)m->ram_bytes, "argv", argv_json(m->argv), "pool", m->pool, "extents",
			 ext, "runs", runs, "stored_pages", (json_int_t)m->stored_pages, "device_state", "extent",
			 (json_int_t)m->dev_ext, "offset", (json_int_t)m->dev_off, "bytes", (json_int_t)m->dev_bytes,
			 "data_pages", (json_int_t)m->data_pages, "zero_pages", (json_int_t)m->zero_pages, "pages_sum", sum);
	if (!body)
		return ferry_err_set(err, ENOMEM, "cannot encode the manifest of %s", m->name);
	body_sum(body, bsum);
	return save_json(vm->manifest_path,
			 json_pack("{s:i, s:o, s:s}", "format", HIB_MANIFEST_FORMAT, "body", body, "checksum", bsum), err);
}

int hib_manifest_load(const struct hib_vm *vm, struct hib_manifest *m, struct ferry_err *err)
{
	json_error_t je;
	json_t *j, *body, *ext, *runs;
	const char *check = NULL, *name, *pool, *sum;
	char want[2 * HIB_SUM_LEN + 1];
	json_int_t ram, stored, dext, doff, dbytes, dp = 0, zp = 0;
	int format = 0, rc = 0;

	memset(m, 0, sizeof(*m));
	j = json_load_file(vm->manifest_path, 0, &je);
	if (!j)
		return ferry_err_set(err, access(vm->manifest_path, F_OK) ? ENOENT : EBADMSG,
				     "manifest %s refused: %s", vm->manifest_path,
				     access(vm->manifest_path, F_OK) ? "missing" : je.text);
	body = json_object_get(j, "body");
	if (json_unpack_ex(j, &je, 0, "{s:i, s:s}", "format", &format, "checksum", &check) || !json_is_object(body)) {
		rc = ferry_err_set(err, EBADMSG, "manifest %s refused: not a manifest (%s)", vm->manifest_path, je.text);
		goto out;
	}
	if (format != HIB_MANIFEST_FORMAT) {
		rc = ferry_err_set(err, EBADMSG, "manifest %s refused: format %d, this build reads %d", vm->manifest_path,
				   format, HIB_MANIFEST_FORMAT);
		goto out;
	}
	body_sum(body, want);
	if (strcmp(want, check) != 0) {
		rc = ferry_err_set(err, EBADMSG, "manifest %s refused: checksum mismatch (edited or damaged)",
				   vm->manifest_path);
		goto out;
	}
	if (json_unpack_ex(body, &je, 0, "{s:s, s:I, s:s, s:o, s:o, s:I, s:{s:I, s:I, s:I}, s:I, s:I, s:s}", "name",
			   &name, "ram_bytes", &ram, "pool", &pool, "extents", &ext, "runs", &runs, "stored_pages",
			   &stored, "device_state", "extent", &dext, "offset", &doff, "bytes", &dbytes, "data_pages", &dp,
			   "zero_pages", &zp, "pages_sum", &sum) ||
	    !(m->argv = json_argv(json_object_get(body, "argv"), &m->argc)) || unhex(sum, m->sum, HIB_SUM_LEN)) {
		rc = ferry_err_set(err, EBADMSG, "manifest %s refused: %s", vm->manifest_path, je.text);
		goto out;
	}
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->pool, sizeof(m->pool), "%s", pool);
	m->ram_bytes = (uint64_t)ram;
	m->stored_pages = (uint64_t)stored;
	m->dev_ext = (uint32_t)dext;
	m->dev_off = (uint64_t)doff;
	m->dev_bytes = (uint64_t)dbytes;
	m->data_pages = (uint64_t)dp;
	m->zero_pages = (uint64_t)zp;
	m->next = json_array_size(ext);
	m->nruns = json_array_size(runs);
	m->ext = calloc(m->next + 1, sizeof(*m->ext));
	m->runs = calloc(m->nruns + 1, sizeof(*m->runs));
	if (!m->ext || !m->runs) {
		rc = ferry_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < m->next; i++) {
		json_int_t id, rkey, base, len;
		const char *tok = NULL;

		if (json_unpack(json_array_get(ext, i), "[I, I, I, I, s]", &id, &rkey, &base, &len, &tok) || len <= 0 ||
		    unhex(tok, m->ext[i].token, HIB_TOKEN_LEN)) {
			rc = ferry_err_set(err, EBADMSG, "manifest %s refused: extent %zu malformed", vm->manifest_path, i);
			goto out;
		}
		m->ext[i].id = (uint32_t)id;
		m->ext[i].rkey = (uint32_t)rkey;
		m->ext[i].base = (uint64_t)base;
		m->ext[i].length = (uint64_t)len;
		m->ext[i].kept = true;
	}
	/* Every run must lie inside the guest RAM and inside its extent: a manifest that passes
	 * the checksum but lies (a bug elsewhere) still never makes us read out of bounds. */
	uint64_t pages = m->ram_bytes / HIB_PAGE, total = 0;

	for (size_t i = 0; i < m->nruns; i++) {
		json_int_t pg, cnt, e, off;
		struct hib_run *r = &m->runs[i];

		if (json_unpack(json_array_get(runs, i), "[I, I, I, I]", &pg, &cnt, &e, &off) || pg < 0 || cnt <= 0 ||
		    e < 0 || off < 0) {
			rc = ferry_err_set(err, EBADMSG, "manifest %s refused: run %zu malformed", vm->manifest_path, i);
			goto out;
		}
		*r = (struct hib_run){ (uint64_t)pg, (uint64_t)cnt, (uint32_t)e, (uint64_t)off };
		if (r->page + r->count > pages || r->ext >= m->next ||
		    r->off + r->count * HIB_PAGE > m->ext[r->ext].length) {
			rc = ferry_err_set(err, EBADMSG, "manifest %s refused: run %zu out of bounds", vm->manifest_path, i);
			goto out;
		}
		total += r->count;
	}
	if (m->ram_bytes != vm->ram_bytes || total != m->stored_pages || strcmp(m->name, vm->name) != 0 ||
	    (m->dev_bytes && (m->dev_ext >= m->next || m->dev_off + m->dev_bytes > m->ext[m->dev_ext].length))) {
		rc = ferry_err_set(err, EBADMSG, "manifest %s refused: it does not match VM %s (%llu bytes of RAM)",
				   vm->manifest_path, vm->name, (unsigned long long)vm->ram_bytes);
		goto out;
	}
out:
	json_decref(j);
	if (rc)
		hib_manifest_free(m);
	return rc;
}

void hib_manifest_free(struct hib_manifest *m)
{
	hib_argv_free(m->argv);
	if (m->ext)
		sodium_memzero(m->ext, m->next * sizeof(*m->ext));	/* claim tokens are capabilities */
	free(m->ext);
	free(m->runs);
	memset(m, 0, sizeof(*m));
}
