/*
 * The cluster: every ferryd reports its load and memory to the coordinator
 * each report interval; the coordinator keeps the node table, marks a node
 * down when its reports stop, scores the nodes and hands the accept-node
 * role around (paper 004, section 2.2).
 *
 * Scores (per mille; lower = less loaded), as paper 004 defines them: the
 * load average and the memory use are scored separately and the node's
 * score is the higher of the two, because whichever is high is the
 * bottleneck:
 *
 *   load_score = min(1000, 1000 * loadavg_1min / cpus)   (1.0 per CPU = full)
 *   mem_score  = 1000 * (mem_total - mem_available) / mem_total
 *   score      = max(load_score, mem_score)
 *
 * The accept role: every accept_period_ms the coordinator moves it to the
 * least-loaded up node that can hold it (roles include accept), chosen among
 * the *other* nodes as in the paper (the holder stays only when it is the
 * only candidate); it also moves at once when the holder goes down. Each
 * move increments the epoch; the new holder gets ROLE(take, epoch) and the
 * old one ROLE(drop, epoch), so a late message from an older epoch is
 * refused by the node (STALE_EPOCH) and by ferry-wake.
 */
#include "ctrl/ferryd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ferry_log.h"

/* ---------------------------------------------------------------- local figures */

static int read_loadavg(uint32_t *l1, uint32_t *l5, uint32_t *l15)
{
	double a, b, c;
	FILE *f = fopen("/proc/loadavg", "r");
	int n;

	if (!f)
		return -errno;
	n = fscanf(f, "%lf %lf %lf", &a, &b, &c);
	fclose(f);
	if (n != 3)
		return -EIO;
	*l1 = (uint32_t)(a * 1000.0 + 0.5);
	*l5 = (uint32_t)(b * 1000.0 + 0.5);
	*l15 = (uint32_t)(c * 1000.0 + 0.5);
	return 0;
}

static int read_meminfo(uint64_t *total, uint64_t *avail)
{
	char line[256];
	unsigned long long v;
	FILE *f = fopen("/proc/meminfo", "r");
	int got = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f) && got != 3) {
		if (sscanf(line, "MemTotal: %llu kB", &v) == 1) {
			*total = v * 1024;
			got |= 1;
		} else if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
			*avail = v * 1024;
			got |= 2;
		}
	}
	fclose(f);
	if (got != 3)
		return -EIO;
	if (*avail > *total)
		*avail = *total;
	return 0;
}

int ferryd_local_report(struct ferryd *d, struct ferry_ctrl_report *rp)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int rc;

	memset(rp, 0, sizeof(*rp));
	snprintf(rp->name, sizeof(rp->name), "%s", d->cfg.name);
	rp->cpus = (uint16_t)(cpus > 0 ? (cpus > 65535 ? 65535 : cpus) : 1);
	rc = read_loadavg(&rp->load1, &rp->load5, &rp->load15);
	if (rc == 0)
		rc = read_meminfo(&rp->mem_total, &rp->mem_free);
	ferryd_vms_report(d, rp);
	return rc;
}

/* ---------------------------------------------------------------- coordinator */

static struct ferryd_node *node_find(struct ferryd *d, const char *name)
{
	for (unsigned int i = 0; i < d->nnodes; i++)
		if (strcmp(d->nodes[i].info.name, name) == 0)
			return &d->nodes[i];
	return NULL;
}

void ferryd_cluster_init(struct ferryd *d)
{
	d->is_coord = strcmp(d->cfg.name, d->cfg.coordinator) == 0;
	d->nnodes = d->cfg.nnodes;
	for (unsigned int i = 0; i < d->cfg.nnodes; i++) {
		struct ferryd_node *n = &d->nodes[i];

		memset(n, 0, sizeof(*n));
		/* Same sizes (NAME/ADDR_MAX + 1), both NUL-terminated by the config parser. */
		memcpy(n->info.name, d->cfg.node[i].name, sizeof(n->info.name));
		memcpy(n->info.addr, d->cfg.node[i].addr, sizeof(n->info.addr));
		n->info.state = FERRY_CTRL_NODE_DOWN;
		n->info.mem_total = 0;
	}
	d->next_report_ms = 0;
	d->next_rotate_ms = ferry_mono_ms() + d->cfg.accept_period_ms;
}

void ferryd_nodes_view(struct ferryd *d, struct ferry_ctrl_nodes *out)
{
	uint64_t now = ferry_mono_ms();

	if (!d->is_coord) {
		*out = d->view;
		return;
	}
	memset(out, 0, offsetof(struct ferry_ctrl_nodes, node));
	out->epoch = d->epoch;
	_Static_assert(sizeof(out->accept) == sizeof(d->accept) && sizeof(out->coord) == sizeof(d->cfg.name),
		       "names are copied whole");
	memcpy(out->accept, d->accept, sizeof(out->accept));
	memcpy(out->coord, d->cfg.name, sizeof(out->coord));
	out->count = (uint16_t)d->nnodes;
	for (unsigned int i = 0; i < d->nnodes; i++) {
		const struct ferryd_node *n = &d->nodes[i];
		uint64_t age = n->registered ? now - n->last_report_ms : 0;

		out->node[i] = n->info;
		out->node[i].age_ms = age > UINT32_MAX ? UINT32_MAX : (uint32_t)age;
		if (strcmp(n->info.name, d->cfg.coordinator) == 0)
			out->node[i].roles |= FERRY_CTRL_ROLE_COORD;
	}
}

int ferryd_coord_register(struct ferryd *d, const char *peer, const struct ferry_ctrl_register *r, uint32_t *code,
			  char *why, size_t whylen)
{
	struct ferryd_node *n = node_find(d, peer);

	if (!n) {
		*code = FERRY_CTRL_E_UNKNOWN_NODE;
		snprintf(why, whylen, "node %s is not in the cluster config", peer);
		return -1;
	}
	if (!n->registered || n->info.state != FERRY_CTRL_NODE_UP)
		LOG_INFO("node %s registered from %s (roles 0x%x, %u CPUs)", peer, r->addr, r->roles, r->cpus);
	n->registered = true;
	n->info.roles = r->roles & ~FERRY_CTRL_ROLE_COORD;
	n->info.cpus = r->cpus;
	n->info.mem_total = r->mem_total;
	if (n->info.mem_free > n->info.mem_total)
		n->info.mem_free = n->info.mem_total;
	snprintf(n->info.addr, sizeof(n->info.addr), "%s", r->addr);
	n->last_report_ms = ferry_mono_ms();
	n->info.state = FERRY_CTRL_NODE_UP;
	d->ctr.registers++;
	ferryd_scores(&n->info);
	return 0;
}

int ferryd_coord_report(struct ferryd *d, const char *peer, const struct ferry_ctrl_report *r, uint32_t *code,
			char *why, size_t whylen)
{
	struct ferryd_node *n = node_find(d, peer);

	if (!n || !n->registered) {
		/* After a coordinator restart: the node registers again and goes on. */
		*code = FERRY_CTRL_E_UNKNOWN_NODE;
		snprintf(why, whylen, "node %s has not registered", peer);
		return -1;
	}
	if (n->info.state != FERRY_CTRL_NODE_UP)
		LOG_INFO("node %s is up again", peer);
	n->info.state = FERRY_CTRL_NODE_UP;
	n->info.load1 = r->load1;
	n->info.load5 = r->load5;
	n->info.load15 = r->load15;
	n->info.cpus = r->cpus;
	n->info.mem_total = r->mem_total;
	n->info.mem_free = r->mem_free;
	n->info.vms_running = r->vms_running;
	n->last_report_ms = ferry_mono_ms();
	ferryd_scores(&n->info);
	d->ctr.reports++;
	/*
	 * A report only speaks for VMs placed on the reporter (or nowhere):
	 * one that another node resumed moved by VM_PLACED, and the old node's
	 * report may predate it.
	 */
	for (unsigned int i = 0; i < r->vm_count; i++) {
		const struct ferryd_vm *vm = ferryd_vm_find(d, r->vm[i].id);

		if (vm && vm->v.node[0] && strcmp(vm->v.node, peer) != 0)
			continue;
		ferryd_vms_placed(d, &r->vm[i]);
	}
	return 0;
}

static bool role_reply(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m, const char *why)
{
	(void)d;
	if (!m)
		LOG_WARN("ROLE to %s: %s", c->name, why);
	else if (m->hdr.type == FERRY_CTRL_ERROR)
		LOG_WARN("ROLE to %s refused: %s (%s)", c->name, ferry_ctrl_errcode_str(m->u.error.code),
			 m->u.error.msg);
	return false;
}

/* Tell @node about the role (itself when it is this ferryd). */
static void send_role(struct ferryd *d, const char *node, bool take)
{
	struct ferry_ctrl_msg msg = { .hdr = { .type = FERRY_CTRL_ROLE, .request_id = ++d->next_req } };
	struct ferry_err err = { 0 };
	char why[FERRY_CTRL_ERRMSG_MAX];
	uint32_t code;

	msg.u.role.epoch = d->epoch;
	msg.u.role.take = take;
	snprintf(msg.u.role.node, sizeof(msg.u.role.node), "%s", node);
	if (strcmp(node, d->cfg.name) == 0) {
		if (ferryd_role_apply(d, &msg.u.role, &code, why, sizeof(why)) < 0)
			LOG_WARN("ROLE to myself: %s", why);
		return;
	}
	if (!ferryd_request(d, node, &msg, 0, role_reply, &err))
		LOG_WARN("ROLE %s to %s: %s", take ? "take" : "drop", node, err.msg);
}

static void rotate_accept(struct ferryd *d, uint64_t now, const char *reason)
{
	struct ferry_ctrl_nodes *view = &d->out_msg.u.nodes;
	const struct ferry_ctrl_node *next;
	char old[FERRYD_NAME_LEN];

	ferryd_nodes_view(d, view);
	/* Among the other nodes, as in the paper; the holder stays only if it is the one candidate. */
	next = ferryd_least_loaded(view, FERRY_CTRL_ROLE_ACCEPT, d->accept);
	if (!next) {
		const struct ferryd_node *cur = d->accept[0] ? node_find(d, d->accept) : NULL;

		if (cur && cur->info.state == FERRY_CTRL_NODE_UP)
			return;
		if (d->accept[0]) {
			LOG_WARN("accept node %s is down and no other node can take the role", d->accept);
			d->epoch++;
			d->accept[0] = '\0';
			d->ctr.role_changes++;
		}
		return;
	}
	snprintf(old, sizeof(old), "%s", d->accept);
	d->epoch++;
	snprintf(d->accept, sizeof(d->accept), "%s", next->name);
	d->ctr.role_changes++;
	LOG_INFO("accept node: %s -> %s (epoch %llu, score %u, %s)", old[0] ? old : "-", d->accept,
		 (unsigned long long)d->epoch, next->score, reason);
	send_role(d, d->accept, true);
	if (old[0]) {
		const struct ferryd_node *o = node_find(d, old);

		if (o && o->info.state == FERRY_CTRL_NODE_UP)
			send_role(d, old, false);
	}
	(void)now;
}

static void coord_tick(struct ferryd *d, uint64_t now)
{
	struct ferryd_node *holder = NULL;

	for (unsigned int i = 0; i < d->nnodes; i++) {
		struct ferryd_node *n = &d->nodes[i];

		/* last_report_ms may be a little after @now: this node's own report of this tick. */
		if (n->info.state == FERRY_CTRL_NODE_UP && now > n->last_report_ms &&
		    now - n->last_report_ms > d->cfg.down_after_ms) {
			n->info.state = FERRY_CTRL_NODE_DOWN;
			d->ctr.nodes_down++;
			LOG_WARN("node %s is down: no report for %llu ms", n->info.name,
				 (unsigned long long)(now - n->last_report_ms));
		}
	}
	if (d->accept[0])
		holder = node_find(d, d->accept);
	if (!d->accept[0] || !holder || holder->info.state != FERRY_CTRL_NODE_UP)
		rotate_accept(d, now, d->accept[0] ? "holder down" : "first holder");
	else if (now >= d->next_rotate_ms)
		rotate_accept(d, now, "period");
	if (now >= d->next_rotate_ms)
		d->next_rotate_ms = now + d->cfg.accept_period_ms;
}

/* ---------------------------------------------------------------- reporting */

static void fill_register(struct ferryd *d, struct ferry_ctrl_msg *m)
{
	struct ferry_ctrl_report rp;

	memset(m, 0, sizeof(m->hdr) + sizeof(m->u.reg));
	m->hdr.type = FERRY_CTRL_NODE_REGISTER;
	m->hdr.request_id = ++d->next_req;
	ferryd_local_report(d, &rp);
	m->u.reg.roles = d->cfg.roles;
	m->u.reg.cpus = rp.cpus;
	m->u.reg.mem_total = rp.mem_total;
	snprintf(m->u.reg.name, sizeof(m->u.reg.name), "%s", d->cfg.name);
	snprintf(m->u.reg.addr, sizeof(m->u.reg.addr), "%s", ferryd_config_node(&d->cfg, d->cfg.name)->addr);
}

static void fill_report(struct ferryd *d, struct ferry_ctrl_msg *m)
{
	m->hdr.type = FERRY_CTRL_NODE_REPORT;
	m->hdr.request_id = ++d->next_req;
	if (ferryd_local_report(d, &m->u.report) < 0)
		LOG_WARN("reading /proc/loadavg or /proc/meminfo failed: reporting zeros");
}

/*
 * The report exchange with the coordinator, one connection per interval:
 * [NODE_REGISTER -> NODES_OK] NODE_REPORT -> NODES_OK, VMS -> VMS_OK.
 */
static bool report_reply(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m, const char *why)
{
	static struct ferry_ctrl_msg next;

	if (!m) {
		d->report_conn = 0;
		d->ctr.report_failures++;
		if (d->ctr.report_failures == 1 || d->ctr.report_failures % 30 == 0)
			LOG_WARN("report to coordinator %s failed: %s", d->cfg.coordinator, why);
		return false;
	}
	if (m->hdr.type == FERRY_CTRL_ERROR) {
		if (m->u.error.code == FERRY_CTRL_E_UNKNOWN_NODE)
			d->registered = false;
		d->ctr.report_failures++;
		LOG_WARN("coordinator %s refused our report: %s (%s)", d->cfg.coordinator,
			 ferry_ctrl_errcode_str(m->u.error.code), m->u.error.msg);
		d->report_conn = 0;
		return false;
	}
	if (m->hdr.type == FERRY_CTRL_NODES_OK) {
		d->view = m->u.nodes;
		d->have_view = true;
		if (!d->registered) {
			d->registered = true;
			LOG_INFO("registered with coordinator %s (%u nodes, accept node %s)", d->cfg.coordinator,
				 m->u.nodes.count, m->u.nodes.accept[0] ? m->u.nodes.accept : "-");
			fill_report(d, &next);
		} else {
			d->ctr.reports_sent++;
			memset(&next.hdr, 0, sizeof(next.hdr));
			next.hdr.type = FERRY_CTRL_VMS;
			next.hdr.request_id = ++d->next_req;
		}
		if (ferryd_conn_request(d, c, &next) < 0) {
			d->report_conn = 0;
			return false;
		}
		return true;
	}
	if (m->hdr.type == FERRY_CTRL_VMS_OK) {
		d->vm_view = m->u.vms;
		d->have_vm_view = true;
		ferryd_vms_adopt(d, &d->vm_view);
	}
	d->report_conn = 0;
	return false;
}

static void report_tick(struct ferryd *d)
{
	static struct ferry_ctrl_msg m;
	struct ferry_err err = { 0 };
	struct ferryd_conn *c;

	if (d->is_coord) {
		char why[FERRY_CTRL_ERRMSG_MAX];
		uint32_t code;

		/* The coordinator reports to itself, without a socket. */
		if (!d->registered) {
			fill_register(d, &m);
			if (ferryd_coord_register(d, d->cfg.name, &m.u.reg, &code, why, sizeof(why)) == 0)
				d->registered = true;
		}
		fill_report(d, &m);
		if (ferryd_coord_report(d, d->cfg.name, &m.u.report, &code, why, sizeof(why)) == 0)
			d->ctr.reports_sent++;
		ferryd_nodes_view(d, &d->view);
		d->have_view = true;
		return;
	}
	if (d->report_conn && ferryd_conn_find(d, d->report_conn))
		return;   /* the last one is still under way */
	if (d->registered)
		fill_report(d, &m);
	else
		fill_register(d, &m);
	c = ferryd_request(d, d->cfg.coordinator, &m, d->cfg.report_ms * 2, report_reply, &err);
	if (!c) {
		d->ctr.report_failures++;
		if (d->ctr.report_failures == 1 || d->ctr.report_failures % 30 == 0)
			LOG_WARN("report to coordinator %s: %s", d->cfg.coordinator, err.msg);
		return;
	}
	d->report_conn = c->id;
}

void ferryd_cluster_tick(struct ferryd *d, uint64_t now)
{
	if (now >= d->next_report_ms) {
		d->next_report_ms = now + d->cfg.report_ms;
		report_tick(d);
	}
	if (d->is_coord)
		coord_tick(d, now);
}

/* ---------------------------------------------------------------- the role here */

int ferryd_role_apply(struct ferryd *d, const struct ferry_ctrl_role *r, uint32_t *code, char *why, size_t whylen)
{
	if (strcmp(r->node, d->cfg.name) != 0) {
		*code = FERRY_CTRL_E_UNEXPECTED;
		snprintf(why, whylen, "ROLE for %s sent to %s", r->node, d->cfg.name);
		return -1;
	}
	if (r->epoch < d->role_epoch) {
		*code = FERRY_CTRL_E_STALE_EPOCH;
		snprintf(why, whylen, "ROLE epoch %llu < %llu", (unsigned long long)r->epoch,
			 (unsigned long long)d->role_epoch);
		return -1;
	}
	if (r->take && !(d->cfg.roles & FERRY_CTRL_ROLE_ACCEPT)) {
		*code = FERRY_CTRL_E_UNEXPECTED;
		snprintf(why, whylen, "%s has no accept role in its config", d->cfg.name);
		return -1;
	}
	d->role_epoch = r->epoch;
	if (d->role_held != (bool)r->take)
		LOG_INFO("accept role %s (epoch %llu)", r->take ? "taken" : "dropped", (unsigned long long)r->epoch);
	d->role_held = r->take;
	ferryd_wake_role(d, r->take, r->epoch);
	return 0;
}
