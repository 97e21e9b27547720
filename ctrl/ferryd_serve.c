/*
 * What ferryd does with each request (after the handshake, or from the
 * local Unix socket). Who may send what:
 *
 *   anyone authenticated   STATUS NODES VMS STATS MIGRATE HIBERNATE RESUME ABORT
 *   peers over TCP only    NODE_REGISTER NODE_REPORT (coordinator only),
 *                          PREPARE_INCOMING, VM_PLACED (coordinator), ROLE
 *
 * A peer's NODE_REGISTER / NODE_REPORT must name the node it authenticated
 * as (its HELLO name): a node cannot report for another.
 */
#include "ctrl/ferryd.h"

#include <stdio.h>
#include <string.h>

#include "dataplane/common/ferry_log.h"

static int do_status(struct ferryd *d, struct ferryd_conn *c, uint64_t req)
{
	struct ferry_ctrl_status *s = &d->out_msg.u.status;

	memset(&d->out_msg, 0, sizeof(d->out_msg.hdr) + sizeof(*s));
	d->out_msg.hdr.type = FERRY_CTRL_STATUS_OK;
	d->out_msg.hdr.request_id = req;
	s->uptime_ms = ferry_mono_ms() - d->start_ms;
	s->roles = d->cfg.roles | (d->is_coord ? FERRY_CTRL_ROLE_COORD : 0);
	s->coordinator = d->is_coord;
	snprintf(s->name, sizeof(s->name), "%s", d->cfg.name);
	snprintf(s->coord, sizeof(s->coord), "%s", d->cfg.coordinator);
	if (d->is_coord) {
		s->epoch = d->epoch;
		snprintf(s->accept, sizeof(s->accept), "%s", d->accept);
	} else if (d->have_view) {
		s->epoch = d->view.epoch;
		snprintf(s->accept, sizeof(s->accept), "%s", d->view.accept);
	}
	s->child_count = (uint8_t)d->nchildren;
	for (unsigned int i = 0; i < d->nchildren; i++) {
		const struct ferryd_child *ch = &d->child[i];

		s->child[i].pid = ch->pid > 0 ? (uint32_t)ch->pid : 0;
		s->child[i].restarts = ch->restarts;
		s->child[i].state = ch->state;
		snprintf(s->child[i].name, sizeof(s->child[i].name), "%s", ch->cfg->name);
	}
	return ferryd_send_msg(d, c);
}

static int do_stats(struct ferryd *d, struct ferryd_conn *c, uint64_t req)
{
	struct ferry_ctrl_stats_ok *st = &d->out_msg.u.stats_ok;
	uint16_t n = 0;

	d->out_msg.hdr.type = FERRY_CTRL_STATS_OK;
	d->out_msg.hdr.request_id = req;
#define FERRYD_STAT(f)                                                   \
	snprintf(st->stats[n].name, sizeof(st->stats[n].name), "%s", #f); \
	st->stats[n++].value = d->ctr.f;
	FERRYD_COUNTERS(FERRYD_STAT)
#undef FERRYD_STAT
	snprintf(st->stats[n].name, sizeof(st->stats[n].name), "role_epoch");
	st->stats[n++].value = d->role_epoch;
	snprintf(st->stats[n].name, sizeof(st->stats[n].name), "role_held");
	st->stats[n++].value = d->role_held;
	snprintf(st->stats[n].name, sizeof(st->stats[n].name), "vms");
	st->stats[n++].value = d->nvms;
	st->count = n;
	return ferryd_send_msg(d, c);
}

static int do_nodes(struct ferryd *d, struct ferryd_conn *c, uint64_t req)
{
	if (!d->is_coord && !d->have_view)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_NODE_DOWN,
					 "no cluster view yet: coordinator %s has not answered", d->cfg.coordinator);
	d->out_msg.hdr.type = FERRY_CTRL_NODES_OK;
	d->out_msg.hdr.request_id = req;
	ferryd_nodes_view(d, &d->out_msg.u.nodes);
	return ferryd_send_msg(d, c);
}

static int do_vms(struct ferryd *d, struct ferryd_conn *c, uint64_t req)
{
	d->out_msg.hdr.type = FERRY_CTRL_VMS_OK;
	d->out_msg.hdr.request_id = req;
	ferryd_vms_list(d, &d->out_msg.u.vms);
	return ferryd_send_msg(d, c);
}

static int coord_reply(struct ferryd *d, struct ferryd_conn *c, uint64_t req, int rc, uint32_t code,
		       const char *why)
{
	if (rc < 0)
		return ferryd_send_error(d, c, req, code, "%s", why);
	d->out_msg.hdr.type = FERRY_CTRL_NODES_OK;
	d->out_msg.hdr.request_id = req;
	ferryd_nodes_view(d, &d->out_msg.u.nodes);
	return ferryd_send_msg(d, c);
}

static int do_peer(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m)
{
	uint64_t req = m->hdr.request_id;
	char why[FERRY_CTRL_ERRMSG_MAX];
	uint32_t code = 0;
	int rc;

	if (c->kind != CONN_TCP_IN)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNEXPECTED, "%s comes from a peer ferryd over TCP",
					 ferry_ctrl_type_name(m->hdr.type));
	switch (m->hdr.type) {
	case FERRY_CTRL_VM_PLACED:
		/*
		 * To the coordinator from anyone; from the coordinator to the accept
		 * node; from a migration's source to its main host (the VM stays).
		 */
		if (!d->is_coord) {
			ferryd_mig_source_kept(d, c->name, &m->u.placed);
			if (strcmp(c->name, d->cfg.coordinator) == 0)
				ferryd_vms_placed(d, &m->u.placed);
			return ferryd_send_ok(d, c, req, 0);
		}
		/* fall through */
	case FERRY_CTRL_NODE_REGISTER:
	case FERRY_CTRL_NODE_REPORT:
		if (!d->is_coord)
			return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNEXPECTED,
						 "%s: this node is not the coordinator (%s is)",
						 ferry_ctrl_type_name(m->hdr.type), d->cfg.coordinator);
		break;
	default:
		break;
	}
	switch (m->hdr.type) {
	case FERRY_CTRL_NODE_REGISTER:
		if (strcmp(m->u.reg.name, c->name) != 0)
			return ferryd_send_error(d, c, req, FERRY_CTRL_E_DENIED,
						 "%s authenticated as %s cannot register as %s", c->name, c->name,
						 m->u.reg.name);
		rc = ferryd_coord_register(d, c->name, &m->u.reg, &code, why, sizeof(why));
		return coord_reply(d, c, req, rc, code, why);
	case FERRY_CTRL_NODE_REPORT:
		if (strcmp(m->u.report.name, c->name) != 0)
			return ferryd_send_error(d, c, req, FERRY_CTRL_E_DENIED,
						 "%s authenticated as %s cannot report for %s", c->name, c->name,
						 m->u.report.name);
		rc = ferryd_coord_report(d, c->name, &m->u.report, &code, why, sizeof(why));
		return coord_reply(d, c, req, rc, code, why);
	case FERRY_CTRL_VM_PLACED:
		ferryd_vms_placed(d, &m->u.placed);
		/*
		 * The accept node's ferry-wake waits for VM_RUNNING (stored SYNs) and
		 * VM_ADD: pass a placement on to the holder now rather than at its
		 * next report.
		 */
		if (d->is_coord && d->accept[0] && strcmp(d->accept, d->cfg.name) != 0 &&
		    strcmp(d->accept, c->name) != 0)
			ferryd_forward_placed(d, d->accept, &m->u.placed);
		return ferryd_send_ok(d, c, req, 0);
	case FERRY_CTRL_ROLE:
		/* Only the coordinator hands the role around. */
		if (strcmp(c->name, d->cfg.coordinator) != 0)
			return ferryd_send_error(d, c, req, FERRY_CTRL_E_DENIED, "ROLE from %s: only coordinator %s assigns it",
						 c->name, d->cfg.coordinator);
		if (ferryd_role_apply(d, &m->u.role, &code, why, sizeof(why)) < 0)
			return ferryd_send_error(d, c, req, code, "%s", why);
		return ferryd_send_ok(d, c, req, d->role_epoch);
	case FERRY_CTRL_PREPARE_INCOMING:
		return ferryd_mig_prepare(d, c, req, &m->u.migrate);
	default:
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNEXPECTED, "%s is not a request",
					 ferry_ctrl_type_name(m->hdr.type));
	}
}

static int do_migrate(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m)
{
	const struct ferry_ctrl_migrate *mg = &m->u.migrate;
	uint64_t req = m->hdr.request_id;
	struct ferryd_vm *vm = ferryd_vm_find(d, mg->vm);

	if (!vm)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNKNOWN_VM, "unknown VM %s", mg->vm);
	if (!ferryd_config_node(&d->cfg, mg->main))
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNKNOWN_NODE, "main host %s is not in the cluster",
					 mg->main);
	for (unsigned int i = 0; i < mg->sub_count; i++) {
		if (!ferryd_config_node(&d->cfg, mg->sub[i]))
			return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNKNOWN_NODE,
						 "sub-host %s is not in the cluster", mg->sub[i]);
		if (strcmp(mg->sub[i], mg->main) == 0)
			return ferryd_send_error(d, c, req, FERRY_CTRL_E_MALFORMED,
						 "%s is both the main host and a sub-host", mg->main);
	}
	/* The source ferryd drives the migration: the one where the VM runs. */
	if (strcmp(vm->v.node, d->cfg.name) != 0)
		return ferryd_relay(d, c->id, req, vm->v.node, m, 0) < 0 ? 0 : 0;
	if (strcmp(mg->main, d->cfg.name) == 0)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_MALFORMED, "VM %s already runs on %s", mg->vm,
					 mg->main);
	if (vm->v.state != FERRY_CTRL_VM_RUNNING || vm->op != OP_NONE)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_BAD_STATE, "VM %s is %s%s", mg->vm,
					 ferry_ctrl_vm_state_name(vm->v.state), vm->op ? " (busy)" : "");
	return ferryd_mig_start(d, c, req, mg);
}

int ferryd_dispatch(struct ferryd *d, struct ferryd_conn *c, const struct ferry_ctrl_msg *m)
{
	uint64_t req = m->hdr.request_id;

	LOG_DEBUG("conn %u (%s): %s", c->id, c->name, ferry_ctrl_type_name(m->hdr.type));
	if (d->stopping)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_SHUTDOWN, "ferryd is shutting down");
	switch (m->hdr.type) {
	case FERRY_CTRL_STATUS:
		return do_status(d, c, req);
	case FERRY_CTRL_STATS:
		return do_stats(d, c, req);
	case FERRY_CTRL_NODES:
		return do_nodes(d, c, req);
	case FERRY_CTRL_VMS:
		return do_vms(d, c, req);
	case FERRY_CTRL_HIBERNATE:
		return ferryd_vm_hibernate(d, c, req, &m->u.vm_req);
	case FERRY_CTRL_RESUME:
		return ferryd_vm_resume(d, c, req, &m->u.vm_req);
	case FERRY_CTRL_MIGRATE:
		return do_migrate(d, c, m);
	case FERRY_CTRL_ABORT:
		return ferryd_mig_abort(d, c, req, m->u.vm_req.vm);
	case FERRY_CTRL_NODE_REGISTER:
	case FERRY_CTRL_NODE_REPORT:
	case FERRY_CTRL_VM_PLACED:
	case FERRY_CTRL_ROLE:
	case FERRY_CTRL_PREPARE_INCOMING:
		return do_peer(d, c, m);
	case FERRY_CTRL_HELLO:
	case FERRY_CTRL_AUTH:
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNEXPECTED, "%s after authentication",
					 ferry_ctrl_type_name(m->hdr.type));
	default:
		/* Replies (OK, ERROR, PROGRESS, ...) are not requests. */
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNEXPECTED, "%s is not a request",
					 ferry_ctrl_type_name(m->hdr.type));
	}
}
