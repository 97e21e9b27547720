/*
 * Hibernate and resume real QEMU guests through Ferry's memory pool (hib.h).
 */
#include "ctrl/hib.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctrl/hib_int.h"
#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/pool_client.h"

#define MIGRATE_POLL_US 2000
#define QUIT_TIMEOUT_MS 20000

const char *hib_state_name(enum hib_vm_state s)
{
	return s == HIB_RUNNING ? "running" : s == HIB_HIBERNATED ? "hibernated" : "stopped";
}

/* Paths go into QEMU option strings (commas split them) and a shell command (exec:cat). */
static bool path_safe(const char *p)
{
	return strpbrk(p, ",'\"\\$`;&|<> \n") == NULL;
}

int hib_open(const struct hib_opts *o, struct hib **out, struct ferry_err *err)
{
	struct hib *h;

	if (!o->state_dir || !o->state_dir[0])
		return ferry_err_set(err, EINVAL, "no state directory");
	if (!path_safe(o->state_dir) || (o->ram_dir && !path_safe(o->ram_dir)))
		return ferry_err_set(err, EINVAL, "state/RAM directory paths must not contain spaces, commas or quotes");
	if (sodium_init() < 0)
		return ferry_err_set(err, EIO, "libsodium failed to initialize");
	if (mkdir(o->state_dir, 0700) != 0 && errno != EEXIST)
		return ferry_err_set(err, errno, "cannot create %s: %s", o->state_dir, strerror(errno));
	h = calloc(1, sizeof(*h));
	if (!h)
		return ferry_err_set(err, ENOMEM, "out of memory");
	snprintf(h->state_dir, sizeof(h->state_dir), "%s", o->state_dir);
	snprintf(h->ram_dir, sizeof(h->ram_dir), "%s", o->ram_dir ? o->ram_dir : "/dev/shm");
	snprintf(h->pool_host, sizeof(h->pool_host), "%s", o->pool_host ? o->pool_host : "127.0.0.1");
	h->pool_port = o->pool_port;
	snprintf(h->secret_path, sizeof(h->secret_path), "%s", o->secret_path ? o->secret_path : "/etc/ferry/secret");
	h->transport = o->transport;
	h->qmp_timeout_ms = o->qmp_timeout_ms > 0 ? o->qmp_timeout_ms : 10000;
	h->migrate_timeout_ms = o->migrate_timeout_ms > 0 ? o->migrate_timeout_ms : 60000;
	h->no_verify = o->no_verify;
	snprintf(h->client_name, sizeof(h->client_name), "%s", o->client_name ? o->client_name : "ferry-hib");
	*out = h;
	return 0;
}

void hib_close(struct hib *h)
{
	if (!h)
		return;
	if (h->pc)
		pool_client_close(h->pc);
	if (h->ctx)
		fx_ctx_destroy(h->ctx);
	free(h);
}

int hib_define(struct hib *h, const char *name, char *const argv[], uint64_t ram_bytes, struct ferry_err *err)
{
	struct hib_vm vm, old;
	int rc;

	if (!argv || !argv[0])
		return ferry_err_set(err, EINVAL, "VM %s: empty QEMU command line", name);
	if (ram_bytes == 0 || ram_bytes % (1u << 20))
		return ferry_err_set(err, EINVAL, "VM %s: RAM size must be a positive multiple of 1 MiB", name);
	if (hib_vm_load(h, name, &old, NULL) == 0) {
		bool busy = old.state != HIB_STOPPED;

		hib_vm_free(&old);
		if (busy)
			return ferry_err_set(err, EBUSY, "VM %s is %s: cannot redefine it", name, hib_state_name(old.state));
	}
	rc = hib_vm_paths(h, name, &vm, err);
	if (rc)
		return rc;
	if (!path_safe(vm.ram_path))
		return ferry_err_set(err, EINVAL, "bad RAM path %s", vm.ram_path);
	vm.argv = hib_argv_dup(argv, &vm.argc);
	if (!vm.argv)
		return ferry_err_set(err, ENOMEM, "out of memory");
	vm.ram_bytes = ram_bytes;
	vm.state = HIB_STOPPED;
	rc = hib_vm_save(&vm, err);
	hib_vm_free(&vm);
	return rc;
}

int hib_query(struct hib *h, const char *name, enum hib_vm_state *state, pid_t *pid, struct ferry_err *err)
{
	struct hib_vm vm;
	int rc = hib_vm_load(h, name, &vm, err);

	if (rc)
		return rc;
	/* A "running" VM whose QEMU is gone (crashed, killed) is reported stopped. */
	if (vm.state == HIB_RUNNING && !hib_pid_alive(vm.pid))
		vm.state = HIB_STOPPED;
	*state = vm.state;
	if (pid)
		*pid = vm.state == HIB_RUNNING ? vm.pid : 0;
	hib_vm_free(&vm);
	return 0;
}

static void kill_qemu(pid_t pid)
{
	if (pid > 0 && hib_pid_alive(pid)) {
		kill(pid, SIGKILL);
		hib_qemu_wait_exit(pid, 5000, NULL);
	}
}

static int hib_start_locked(struct hib *h, const char *name, pid_t *pid, struct ferry_err *err)
{
	struct hib_vm vm;
	struct qmp *q = NULL;
	char status[32];
	pid_t p = 0;
	int rc = hib_vm_load(h, name, &vm, err);

	if (rc)
		return rc;
	if (vm.state == HIB_RUNNING && hib_pid_alive(vm.pid)) {
		rc = ferry_err_set(err, EBUSY, "VM %s is already running (pid %d)", name, (int)vm.pid);
		goto out;
	}
	if (vm.state == HIB_HIBERNATED) {
		rc = ferry_err_set(err, EBUSY, "VM %s is hibernated: resume it", name);
		goto out;
	}
	unlink(vm.ram_path);	/* a fresh boot: no stale RAM */
	rc = hib_qemu_spawn(h, &vm, false, &p, err);
	if (!rc)
		rc = hib_qemu_qmp(h, &vm, p, &q, err);
	if (!rc)
		rc = qmp_status(q, status, sizeof(status), h->qmp_timeout_ms, err);
	if (rc) {
		kill_qemu(p);
		unlink(vm.ram_path);
		goto out;
	}
	vm.state = HIB_RUNNING;
	vm.pid = p;
	rc = hib_vm_save(&vm, err);
	if (pid)
		*pid = p;
out:
	qmp_close(q);
	hib_vm_free(&vm);
	return rc;
}

static int read_file(const char *path, uint8_t **buf, uint64_t *len, struct ferry_err *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint64_t off = 0;

	if (fd < 0)
		return ferry_err_set(err, errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || st.st_size <= 0) {
		close(fd);
		return ferry_err_set(err, EIO, "%s: empty device state", path);
	}
	*len = (uint64_t)st.st_size;
	*buf = aligned_alloc(HIB_PAGE, (*len + HIB_PAGE - 1) / HIB_PAGE * HIB_PAGE);
	if (!*buf) {
		close(fd);
		return ferry_err_set(err, ENOMEM, "out of memory");
	}
	while (off < *len) {
		ssize_t r = read(fd, *buf + off, *len - off);

		if (r <= 0) {
			close(fd);
			free(*buf);
			*buf = NULL;
			return ferry_err_set(err, EIO, "cannot read %s", path);
		}
		off += (uint64_t)r;
	}
	close(fd);
	return 0;
}

/* The migration stream of a stopped QEMU into @p path: device state only with x-ignore-shared
 * (the RAM file is shared), the whole machine, RAM included, without it. */
static int save_state(struct hib *h, struct hib_vm *vm, struct qmp *q, const char *path, bool ignore_shared,
		      struct ferry_err *err)
{
	char uri[PATH_MAX + 32];
	double deadline = hib_now_ms() + h->migrate_timeout_ms;
	int rc;

	rc = qmp_executef(q, "migrate-set-capabilities", h->qmp_timeout_ms, NULL, err,
			  "{s:[{s:s, s:b}]}", "capabilities", "capability", "x-ignore-shared", "state", ignore_shared);
	if (!rc)
		rc = qmp_executef(q, "migrate-set-parameters", h->qmp_timeout_ms, NULL, err, "{s:I}", "max-bandwidth",
				  (json_int_t)(64ll << 30));
	if (rc)
		return rc;
	unlink(path);
	snprintf(uri, sizeof(uri), "exec:cat > '%s'", path);
	rc = qmp_executef(q, "migrate", h->qmp_timeout_ms, NULL, err, "{s:s}", "uri", uri);
	if (rc)
		return rc;
	for (;;) {
		json_t *r = NULL;
		const char *st;

		rc = qmp_execute(q, "query-migrate", NULL, h->qmp_timeout_ms, &r, err);
		if (rc)
			return rc;
		st = json_string_value(json_object_get(r, "status"));
		if (st && strcmp(st, "completed") == 0) {
			json_decref(r);
			return 0;
		}
		if (!st || strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0) {
			rc = ferry_err_set(err, EIO, "device state of %s: migration %s: %s", vm->name, st ? st : "?",
					   json_string_value(json_object_get(r, "error-desc")) ?: "no reason given");
			json_decref(r);
			return rc;
		}
		json_decref(r);
		if (hib_now_ms() > deadline)
			return ferry_err_set(err, ETIMEDOUT, "device state of %s: migration not done within %d ms",
					     vm->name, h->migrate_timeout_ms);
		usleep(MIGRATE_POLL_US);
	}
}

/* Feed a migration stream from @p path to a QEMU started with -incoming defer; wait until it
 * has loaded it. */
static int load_state(struct hib *h, struct hib_vm *vm, struct qmp *q, const char *path, bool ignore_shared,
		      struct ferry_err *err)
{
	char uri[PATH_MAX + 32], status[32] = "";
	int rc;

	snprintf(uri, sizeof(uri), "exec:cat '%s'", path);
	rc = qmp_executef(q, "migrate-set-capabilities", h->qmp_timeout_ms, NULL, err, "{s:[{s:s, s:b}]}",
			  "capabilities", "capability", "x-ignore-shared", "state", ignore_shared);
	if (!rc)
		rc = qmp_executef(q, "migrate-incoming", h->qmp_timeout_ms, NULL, err, "{s:s}", "uri", uri);
	for (double dl = hib_now_ms() + h->migrate_timeout_ms; !rc;) {
		rc = qmp_status(q, status, sizeof(status), h->qmp_timeout_ms, err);
		if (rc || strcmp(status, "inmigrate") != 0)
			break;
		if (hib_now_ms() > dl)
			return ferry_err_set(err, ETIMEDOUT, "state not loaded within %d ms", h->migrate_timeout_ms);
		usleep(MIGRATE_POLL_US);
	}
	if (rc)
		return rc;
	if (strcmp(status, "paused") != 0 && strcmp(status, "postmigrate") != 0 && strcmp(status, "prelaunch") != 0 &&
	    strcmp(status, "running") != 0) {
		char tail[400];

		hib_log_tail(vm->log_path, tail, sizeof(tail));
		return ferry_err_set(err, EIO, "state not accepted: QEMU is %s: %s", status, tail);
	}
	return 0;
}

static int hib_hibernate_locked(struct hib *h, const char *name, struct hib_stats *st, struct ferry_err *err)
{
	struct hib_stats local = { 0 };
	struct hib_vm vm;
	struct hib_manifest m = { 0 };
	struct qmp *q = NULL;
	uint8_t *ram = MAP_FAILED, *dev = NULL;
	uint64_t dev_bytes = 0;
	int fd = -1, rc;
	bool stopped = false, stored = false;
	double t0 = hib_now_ms(), t;

	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	rc = hib_vm_load(h, name, &vm, err);
	if (rc)
		return rc;
	if (vm.state != HIB_RUNNING || !hib_pid_alive(vm.pid)) {
		rc = ferry_err_set(err, EINVAL, "VM %s is not running (%s)", name,
				   vm.state == HIB_RUNNING ? "its QEMU is gone" : hib_state_name(vm.state));
		goto out;
	}
	st->ram_bytes = vm.ram_bytes;
	rc = hib_pool_connect(h, err);	/* before anything changes: no pool, no hibernation */
	if (rc)
		goto out;
	rc = qmp_connect(vm.qmp_path, h->qmp_timeout_ms, &q, err);
	if (rc)
		goto out;
	t = hib_now_ms();
	rc = qmp_execute(q, "stop", NULL, h->qmp_timeout_ms, NULL, err);
	if (rc)
		goto out;
	stopped = true;
	st->t_stop = hib_now_ms() - t;
	t = hib_now_ms();
	rc = save_state(h, &vm, q, vm.dev_path, true, err);
	if (!rc)
		rc = read_file(vm.dev_path, &dev, &dev_bytes, err);
	if (rc)
		goto out;
	st->t_devstate = hib_now_ms() - t;

	t = hib_now_ms();
	fd = open(vm.ram_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = ferry_err_set(err, errno, "cannot open the RAM file %s: %s", vm.ram_path, strerror(errno));
		goto out;
	}
	ram = mmap(NULL, vm.ram_bytes, PROT_READ, MAP_SHARED, fd, 0);
	if (ram == MAP_FAILED) {
		rc = ferry_err_set(err, errno, "cannot map %s: %s", vm.ram_path, strerror(errno));
		goto out;
	}
	snprintf(m.name, sizeof(m.name), "%s", vm.name);
	m.ram_bytes = vm.ram_bytes;
	m.argv = hib_argv_dup(vm.argv, &m.argc);
	if (!m.argv) {
		rc = ferry_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	stored = true;	/* from here on, extents (even some of them) are released on failure */
	rc = hib_pool_plan(h, fd, ram, vm.ram_bytes, dev_bytes, &m, err);
	if (rc)
		goto out;
	hib_checksum(ram, dev, &m, m.sum);
	st->t_scan = hib_now_ms() - t;
	t = hib_now_ms();
	rc = hib_pool_io(h, 1, (uint8_t *)ram, vm.ram_bytes, dev, &m, err);
	if (rc)
		goto out;
	/* Out of our session: the image now outlives this process, named by the manifest's tokens. */
	rc = hib_pool_keep(h, &m, err);
	if (rc)
		goto out;
	rc = hib_manifest_save(&vm, &m, err);
	if (rc)
		goto out;
	st->t_pool = hib_now_ms() - t;

	/* The image is safe in the pool: QEMU goes, then its memory. */
	t = hib_now_ms();
	{
		struct ferry_err qe = { 0 };

		if (qmp_execute(q, "quit", NULL, h->qmp_timeout_ms, NULL, &qe) && hib_pid_alive(vm.pid))
			LOG_WARN("hib: %s: quit: %s; killing QEMU", name, qe.msg);
	}
	qmp_close(q);
	q = NULL;
	if (hib_qemu_wait_exit(vm.pid, QUIT_TIMEOUT_MS, NULL))
		kill_qemu(vm.pid);
	munmap(ram, vm.ram_bytes);
	ram = MAP_FAILED;
	close(fd);
	fd = -1;
	unlink(vm.ram_path);
	unlink(vm.dev_path);
	st->t_quit = hib_now_ms() - t;
	vm.state = HIB_HIBERNATED;
	vm.pid = 0;
	rc = hib_vm_save(&vm, err);
	stopped = false;
	stored = false;

out:
	st->data_pages = m.data_pages;
	st->zero_pages = m.zero_pages;
	st->stored_pages = m.stored_pages;
	st->dev_bytes = dev_bytes;
	st->stored_bytes = m.stored_pages * HIB_PAGE + dev_bytes;
	st->runs = (uint32_t)m.nruns;
	if (stored) {
		hib_pool_release(h, &m);
		unlink(vm.manifest_path);
	}
	if (stopped && q) {	/* failed before the quit: the VM runs on as if nothing happened */
		struct ferry_err e2 = { 0 };

		if (qmp_execute(q, "cont", NULL, h->qmp_timeout_ms, NULL, &e2))
			LOG_ERR("hib: %s: hibernation failed and cont failed too: %s", name, e2.msg);
		unlink(vm.dev_path);
	}
	if (ram != MAP_FAILED)
		munmap(ram, vm.ram_bytes);
	if (fd >= 0)
		close(fd);
	free(dev);
	qmp_close(q);
	hib_manifest_free(&m);
	hib_vm_free(&vm);
	st->t_total = hib_now_ms() - t0;
	if (rc)
		ferry_err_prefix(err, "hibernate %s: ", name);
	return rc;
}

/*
 * An image is on the memory server its manifest names, which another node's configuration may
 * name differently: one operation on it (resume, destroy) talks to that server, then the struct
 * hib goes back to its own (between operations our session holds no extents: images are kept).
 */
struct pool_saved {
	char host[sizeof(((struct hib *)0)->pool_host)];
	uint16_t port;
};

static int pool_follow(struct hib *h, const char *pool, struct pool_saved *saved, struct ferry_err *err)
{
	const char *colon = strrchr(pool, ':');
	char *end = NULL;
	unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
	size_t hlen = colon ? (size_t)(colon - pool) : 0;

	if (!colon || hlen == 0 || hlen >= sizeof(h->pool_host) || !end || *end || port == 0 || port > 65535)
		return ferry_err_set(err, EBADMSG, "the manifest names memory server '%s', not HOST:PORT", pool);
	hib_pool_disconnect(h);
	snprintf(saved->host, sizeof(saved->host), "%s", h->pool_host);
	saved->port = h->pool_port;
	snprintf(h->pool_host, sizeof(h->pool_host), "%.*s", (int)hlen, pool);
	h->pool_port = (uint16_t)port;
	return 0;
}

static void pool_unfollow(struct hib *h, const struct pool_saved *saved)
{
	hib_pool_disconnect(h);
	snprintf(h->pool_host, sizeof(h->pool_host), "%s", saved->host);
	h->pool_port = saved->port;
}

static int hib_resume_locked(struct hib *h, const char *name, struct hib_stats *st, struct ferry_err *err)
{
	struct hib_stats local = { 0 };
	struct hib_vm vm;
	struct hib_manifest m = { 0 };
	struct qmp *q = NULL;
	uint8_t *ram = MAP_FAILED, *dev = NULL, sum[HIB_SUM_LEN];
	uint64_t dev_len = 0;
	int fd = -1, rc;
	pid_t pid = 0;
	bool ram_made = false, claimed = false, switched = false;
	struct pool_saved saved = { 0 };
	double t0 = hib_now_ms(), t;

	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	rc = hib_vm_load(h, name, &vm, err);
	if (rc)
		return rc;
	if (vm.state != HIB_HIBERNATED) {
		rc = ferry_err_set(err, EINVAL, "VM %s is not hibernated (%s)", name, hib_state_name(vm.state));
		goto out;
	}
	rc = hib_manifest_load(&vm, &m, err);
	if (rc)
		goto out;
	{
		char here[sizeof(m.pool)];

		snprintf(here, sizeof(here), "%s:%u", h->pool_host, h->pool_port);
		if (strcmp(here, m.pool) != 0) {
			rc = pool_follow(h, m.pool, &saved, err);
			if (rc)
				goto out;
			LOG_INFO("hib: %s: the image is on memory server %s, not on the configured %s: resuming from "
				 "there", name, m.pool, here);
			switched = true;
		}
	}
	st->ram_bytes = m.ram_bytes;
	st->stored_pages = m.stored_pages;
	st->dev_bytes = m.dev_bytes;
	st->stored_bytes = m.stored_pages * HIB_PAGE + m.dev_bytes;
	st->runs = (uint32_t)m.nruns;

	/* RAM back from the pool into a new file: pages never written stay holes. */
	t = hib_now_ms();
	rc = hib_pool_connect(h, err);
	if (rc)
		goto out;
	/* The image becomes ours (whoever stored it, whatever process or node we are); the tokens
	 * are spent, so a failure below keeps it again under new ones (see out). */
	claimed = true;
	rc = hib_pool_claim(h, &m, err);
	if (rc)
		goto out;
	fd = open(vm.ram_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = ferry_err_set(err, errno, "cannot create the RAM file %s: %s%s", vm.ram_path, strerror(errno),
				   errno == EEXIST ? " (is another QEMU of this VM running?)" : "");
		goto out;
	}
	ram_made = true;
	if (ftruncate(fd, (off_t)vm.ram_bytes) != 0) {
		rc = ferry_err_set(err, errno, "cannot size %s: %s", vm.ram_path, strerror(errno));
		goto out;
	}
	/* QEMU with the same command line, waiting for its device state: it starts (~50-100 ms
	 * under TCG) while the pages come in. It maps the same file shared, so what we write is
	 * what it sees; the guest runs only after the device state is loaded and cont. */
	rc = hib_qemu_spawn(h, &vm, true, &pid, err);
	if (rc)
		goto out;
	ram = mmap(NULL, vm.ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ram == MAP_FAILED) {
		rc = ferry_err_set(err, errno, "cannot map %s: %s", vm.ram_path, strerror(errno));
		goto out;
	}
	dev_len = (m.dev_bytes + HIB_PAGE - 1) / HIB_PAGE * HIB_PAGE;
	dev = aligned_alloc(HIB_PAGE, dev_len ? dev_len : HIB_PAGE);
	if (!dev) {
		rc = ferry_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	rc = hib_pool_io(h, 0, ram, vm.ram_bytes, dev, &m, err);
	if (rc)
		goto out;
	if (!h->no_verify) {
		hib_checksum(ram, dev, &m, sum);
		if (sodium_memcmp(sum, m.sum, HIB_SUM_LEN) != 0) {
			rc = ferry_err_set(err, EBADMSG, "the image read back from the pool does not match its checksum");
			goto out;
		}
	}
	rc = hib_write_file_atomic(vm.dev_path, dev, m.dev_bytes, err);
	if (rc)
		goto out;
	munmap(ram, vm.ram_bytes);
	ram = MAP_FAILED;
	close(fd);
	fd = -1;
	st->t_ram = hib_now_ms() - t;

	t = hib_now_ms();
	rc = hib_qemu_qmp(h, &vm, pid, &q, err);
	if (rc)
		goto out;
	st->t_qemu_up = hib_now_ms() - t;	/* what QEMU's start added after the pages were in */
	t = hib_now_ms();
	rc = load_state(h, &vm, q, vm.dev_path, true, err);
	if (rc)
		goto out;
	st->t_incoming = hib_now_ms() - t;
	t = hib_now_ms();
	rc = qmp_execute(q, "cont", NULL, h->qmp_timeout_ms, NULL, err);
	if (rc)
		goto out;
	st->t_cont = hib_now_ms() - t;
	vm.state = HIB_RUNNING;
	vm.pid = pid;
	rc = hib_vm_save(&vm, err);
	if (rc)
		goto out;
	st->pid = pid;
	pid = 0;
	ram_made = false;
	claimed = false;
	/* Running again: the image is no longer needed. */
	hib_pool_release(h, &m);
	unlink(vm.manifest_path);
	unlink(vm.dev_path);
out:
	if (claimed) {	/* failed after claiming: keep the image again, for a retry from anywhere */
		struct ferry_err e2 = { 0 };

		if (hib_pool_keep(h, &m, &e2) || hib_manifest_save(&vm, &m, &e2))
			LOG_ERR("hib: %s: resume failed and the image could not be kept again: %s", name, e2.msg);
	}
	if (switched)
		pool_unfollow(h, &saved);
	if (pid) {	/* failed: no half-resumed QEMU stays behind, the VM stays hibernated */
		kill_qemu(pid);
		unlink(vm.dev_path);
	}
	if (ram != MAP_FAILED)
		munmap(ram, vm.ram_bytes);
	if (fd >= 0)
		close(fd);
	if (ram_made)
		unlink(vm.ram_path);
	free(dev);
	qmp_close(q);
	hib_manifest_free(&m);
	hib_vm_free(&vm);
	st->t_total = hib_now_ms() - t0;
	if (rc)
		ferry_err_prefix(err, "resume %s: ", name);
	return rc;
}

static int hib_destroy_locked(struct hib *h, const char *name, struct ferry_err *err)
{
	struct hib_vm vm;
	int rc = hib_vm_load(h, name, &vm, err);

	if (rc)
		return rc;
	if (vm.state == HIB_RUNNING && hib_pid_alive(vm.pid)) {
		struct qmp *q = NULL;

		if (qmp_connect(vm.qmp_path, 2000, &q, NULL) == 0) {
			qmp_execute(q, "quit", NULL, 2000, NULL, NULL);
			qmp_close(q);
		}
		if (hib_qemu_wait_exit(vm.pid, QUIT_TIMEOUT_MS, NULL))
			kill_qemu(vm.pid);
	}
	if (vm.state == HIB_HIBERNATED) {
		struct hib_manifest m;

		if (hib_manifest_load(&vm, &m, NULL) == 0) {
			struct pool_saved saved;
			char here[sizeof(m.pool)];
			bool follow;

			snprintf(here, sizeof(here), "%s:%u", h->pool_host, h->pool_port);
			follow = strcmp(here, m.pool) != 0 && pool_follow(h, m.pool, &saved, NULL) == 0;
			hib_pool_release(h, &m);	/* the image's kept extents are discarded */
			if (follow)
				pool_unfollow(h, &saved);
			hib_manifest_free(&m);
		}
		unlink(vm.manifest_path);
	}
	unlink(vm.ram_path);
	unlink(vm.dev_path);
	vm.state = HIB_STOPPED;
	vm.pid = 0;
	rc = hib_vm_save(&vm, err);
	hib_vm_free(&vm);
	return rc;
}

/* ---- The seed's approach, for same-run comparisons: the whole machine state, RAM included,
 * in one file on disk; nothing in the pool. ---- */

static int hib_hibernate_file_locked(struct hib *h, const char *name, const char *image, struct hib_stats *st,
		       struct ferry_err *err)
{
	struct hib_stats local = { 0 };
	struct hib_vm vm;
	struct qmp *q = NULL;
	double t0 = hib_now_ms(), t;
	struct stat sb;
	int rc, fd;

	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	if (!path_safe(image))
		return ferry_err_set(err, EINVAL, "image path must not contain spaces, commas or quotes");
	rc = hib_vm_load(h, name, &vm, err);
	if (rc)
		return rc;
	if (vm.state != HIB_RUNNING || !hib_pid_alive(vm.pid)) {
		rc = ferry_err_set(err, EINVAL, "VM %s is not running", name);
		goto out;
	}
	st->ram_bytes = vm.ram_bytes;
	rc = qmp_connect(vm.qmp_path, h->qmp_timeout_ms, &q, err);
	if (!rc)
		rc = qmp_execute(q, "stop", NULL, h->qmp_timeout_ms, NULL, err);
	if (rc)
		goto out;
	t = hib_now_ms();
	rc = save_state(h, &vm, q, image, false, err);
	if (rc) {
		qmp_execute(q, "cont", NULL, h->qmp_timeout_ms, NULL, NULL);
		goto out;
	}
	/* On disk for real, and out of the page cache: the resume reads it back from the disk. */
	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		if (fstat(fd, &sb) == 0)
			st->stored_bytes = (uint64_t)sb.st_size;
		close(fd);
	}
	st->t_devstate = hib_now_ms() - t;
	t = hib_now_ms();
	qmp_execute(q, "quit", NULL, h->qmp_timeout_ms, NULL, NULL);
	qmp_close(q);
	q = NULL;
	if (hib_qemu_wait_exit(vm.pid, QUIT_TIMEOUT_MS, NULL))
		kill_qemu(vm.pid);
	unlink(vm.ram_path);
	st->t_quit = hib_now_ms() - t;
	vm.state = HIB_HIBERNATED;
	vm.pid = 0;
	rc = hib_vm_save(&vm, err);
out:
	qmp_close(q);
	hib_vm_free(&vm);
	st->t_total = hib_now_ms() - t0;
	if (rc)
		ferry_err_prefix(err, "hibernate %s to %s: ", name, image);
	return rc;
}

static int hib_resume_file_locked(struct hib *h, const char *name, const char *image, struct hib_stats *st, struct ferry_err *err)
{
	struct hib_stats local = { 0 };
	struct hib_vm vm;
	struct qmp *q = NULL;
	double t0 = hib_now_ms(), t;
	pid_t pid = 0;
	int rc;

	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	rc = hib_vm_load(h, name, &vm, err);
	if (rc)
		return rc;
	if (vm.state != HIB_HIBERNATED) {
		rc = ferry_err_set(err, EINVAL, "VM %s is not hibernated", name);
		goto out;
	}
	st->ram_bytes = vm.ram_bytes;
	unlink(vm.ram_path);	/* QEMU makes it; the stream fills it */
	t = hib_now_ms();
	rc = hib_qemu_spawn(h, &vm, true, &pid, err);
	if (!rc)
		rc = hib_qemu_qmp(h, &vm, pid, &q, err);
	if (rc)
		goto out;
	st->t_qemu_up = hib_now_ms() - t;
	t = hib_now_ms();
	rc = load_state(h, &vm, q, image, false, err);
	if (rc)
		goto out;
	st->t_incoming = hib_now_ms() - t;
	t = hib_now_ms();
	rc = qmp_execute(q, "cont", NULL, h->qmp_timeout_ms, NULL, err);
	if (rc)
		goto out;
	st->t_cont = hib_now_ms() - t;
	vm.state = HIB_RUNNING;
	vm.pid = pid;
	rc = hib_vm_save(&vm, err);
	st->pid = pid;
	if (!rc)
		pid = 0;
out:
	if (pid) {
		kill_qemu(pid);
		unlink(vm.ram_path);
	}
	qmp_close(q);
	hib_vm_free(&vm);
	st->t_total = hib_now_ms() - t0;
	if (rc)
		ferry_err_prefix(err, "resume %s from %s: ", name, image);
	return rc;
}

/* ---- One operation on a VM at a time, across processes: STATE/NAME.lock (flock). ---- */

static int vm_lock(struct hib *h, const char *name, int *fd, struct ferry_err *err)
{
	struct hib_vm vm;
	char path[PATH_MAX + 8];
	int rc = hib_vm_paths(h, name, &vm, err);

	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/%s.lock", h->state_dir, name);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*fd < 0)
		return ferry_err_set(err, errno, "cannot open %s: %s", path, strerror(errno));
	if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
		close(*fd);
		return ferry_err_set(err, EBUSY, "VM %s is busy: another operation on it is under way", name);
	}
	return 0;
}

static void vm_unlock(int fd)
{
	close(fd);	/* drops the flock */
}

#define HIB_LOCKED(call)                                       \
	do {                                                   \
		int lk_, rc_ = vm_lock(h, name, &lk_, err);    \
		if (rc_)                                       \
			return rc_;                            \
		rc_ = (call);                                  \
		vm_unlock(lk_);                                \
		return rc_;                                    \
	} while (0)

int hib_start(struct hib *h, const char *name, pid_t *pid, struct ferry_err *err)
{
	HIB_LOCKED(hib_start_locked(h, name, pid, err));
}

int hib_hibernate(struct hib *h, const char *name, struct hib_stats *st, struct ferry_err *err)
{
	HIB_LOCKED(hib_hibernate_locked(h, name, st, err));
}

int hib_resume(struct hib *h, const char *name, struct hib_stats *st, struct ferry_err *err)
{
	HIB_LOCKED(hib_resume_locked(h, name, st, err));
}

int hib_destroy(struct hib *h, const char *name, struct ferry_err *err)
{
	HIB_LOCKED(hib_destroy_locked(h, name, err));
}

int hib_hibernate_file(struct hib *h, const char *name, const char *image, struct hib_stats *st,
		       struct ferry_err *err)
{
	HIB_LOCKED(hib_hibernate_file_locked(h, name, image, st, err));
}

int hib_resume_file(struct hib *h, const char *name, const char *image, struct hib_stats *st, struct ferry_err *err)
{
	HIB_LOCKED(hib_resume_file_locked(h, name, image, st, err));
}
