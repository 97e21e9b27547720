/*
 * ferryctl's output. Human tables are for people (columns, units); --json is
 * for scripts and tests, one JSON document per command (a JSON line per
 * PROGRESS message while a migration streams).
 */
#include "ctrl/ferryctl.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/common/units.h"

static void dump(FILE *out, json_t *j)
{
	json_dumpf(j, out, JSON_INDENT(0) | JSON_COMPACT | JSON_PRESERVE_ORDER);
	fputc('\n', out);
	json_decref(j);
}

static json_t *roles_json(uint32_t roles)
{
	static const char *const names[] = { "sub", "main", "accept", "coord" };
	json_t *a = json_array();

	for (unsigned int i = 0; i < 4; i++)
		if (roles & (1u << i))
			json_array_append_new(a, json_string(names[i]));
	return a;
}

static const char *roles_str(uint32_t roles, char *buf, size_t len)
{
	static const char *const names[] = { "sub", "main", "accept", "coord" };
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < 4; i++)
		if (roles & (1u << i))
			off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s", off ? "," : "", names[i]);
	if (!off)
		snprintf(buf, len, "-");
	return buf;
}

void print_status(FILE *out, const struct ferry_ctrl_status *s, bool json)
{
	char roles[64];

	if (json) {
		json_t *j = json_object(), *ch = json_array();

		json_object_set_new(j, "node", json_string(s->name));
		json_object_set_new(j, "coordinator", json_string(s->coord));
		json_object_set_new(j, "is_coordinator", json_boolean(s->coordinator));
		json_object_set_new(j, "roles", roles_json(s->roles));
		json_object_set_new(j, "uptime_ms", json_integer((json_int_t)s->uptime_ms));
		json_object_set_new(j, "accept", s->accept[0] ? json_string(s->accept) : json_null());
		json_object_set_new(j, "epoch", json_integer((json_int_t)s->epoch));
		for (unsigned int i = 0; i < s->child_count; i++) {
			const struct ferry_ctrl_child *c = &s->child[i];

			json_array_append_new(ch, json_pack("{s:s, s:I, s:s, s:I}", "name", c->name, "pid",
							    (json_int_t)c->pid, "state",
							    ferry_ctrl_child_state_name(c->state), "restarts",
							    (json_int_t)c->restarts));
		}
		json_object_set_new(j, "children", ch);
		dump(out, j);
		return;
	}
	fprintf(out, "node         %s%s\n", s->name, s->coordinator ? " (coordinator)" : "");
	fprintf(out, "coordinator  %s\n", s->coord);
	fprintf(out, "roles        %s\n", roles_str(s->roles, roles, sizeof(roles)));
	fprintf(out, "uptime       %.1f s\n", (double)s->uptime_ms / 1000.0);
	fprintf(out, "accept node  %s (epoch %llu)\n", s->accept[0] ? s->accept : "-", (unsigned long long)s->epoch);
	if (!s->child_count) {
		fprintf(out, "children     none\n");
		return;
	}
	fprintf(out, "\n%-16s %8s %-8s %8s\n", "CHILD", "PID", "STATE", "RESTARTS");
	for (unsigned int i = 0; i < s->child_count; i++) {
		const struct ferry_ctrl_child *c = &s->child[i];
		char pid[16] = "-";

		if (c->pid)
			snprintf(pid, sizeof(pid), "%u", c->pid);
		fprintf(out, "%-16s %8s %-8s %8u\n", c->name, pid, ferry_ctrl_child_state_name(c->state), c->restarts);
	}
}

static const struct ferry_ctrl_node *least_loaded(const struct ferry_ctrl_nodes *ns)
{
	const struct ferry_ctrl_node *best = NULL;

	for (unsigned int i = 0; i < ns->count; i++) {
		const struct ferry_ctrl_node *nd = &ns->node[i];

		if (nd->state != FERRY_CTRL_NODE_UP)
			continue;
		if (!best || nd->score < best->score || (nd->score == best->score && strcmp(nd->name, best->name) < 0))
			best = nd;
	}
	return best;
}

void print_nodes(FILE *out, const struct ferry_ctrl_nodes *ns, bool json)
{
	const struct ferry_ctrl_node *best = least_loaded(ns);
	char roles[64], free_s[FERRY_SIZE_STR], total_s[FERRY_SIZE_STR];

	if (json) {
		json_t *j = json_object(), *a = json_array();

		json_object_set_new(j, "coordinator", ns->coord[0] ? json_string(ns->coord) : json_null());
		json_object_set_new(j, "accept", ns->accept[0] ? json_string(ns->accept) : json_null());
		json_object_set_new(j, "epoch", json_integer((json_int_t)ns->epoch));
		json_object_set_new(j, "least_loaded", best ? json_string(best->name) : json_null());
		for (unsigned int i = 0; i < ns->count; i++) {
			const struct ferry_ctrl_node *nd = &ns->node[i];
			json_t *o = json_object();

			json_object_set_new(o, "name", json_string(nd->name));
			json_object_set_new(o, "state", json_string(ferry_ctrl_node_state_name(nd->state)));
			json_object_set_new(o, "address", json_string(nd->addr));
			json_object_set_new(o, "roles", roles_json(nd->roles));
			json_object_set_new(o, "accept", json_boolean(strcmp(nd->name, ns->accept) == 0));
			json_object_set_new(o, "cpus", json_integer(nd->cpus));
			json_object_set_new(o, "load1", json_real(nd->load1 / 1000.0));
			json_object_set_new(o, "load5", json_real(nd->load5 / 1000.0));
			json_object_set_new(o, "load15", json_real(nd->load15 / 1000.0));
			json_object_set_new(o, "mem_total", json_integer((json_int_t)nd->mem_total));
			json_object_set_new(o, "mem_free", json_integer((json_int_t)nd->mem_free));
			json_object_set_new(o, "vms_running", json_integer(nd->vms_running));
			json_object_set_new(o, "load_score", json_integer(nd->load_score));
			json_object_set_new(o, "mem_score", json_integer(nd->mem_score));
			json_object_set_new(o, "score", json_integer(nd->score));
			json_object_set_new(o, "age_ms", json_integer(nd->age_ms));
			json_array_append_new(a, o);
		}
		json_object_set_new(j, "nodes", a);
		dump(out, j);
		return;
	}
	fprintf(out, "%-2s%-12s %-5s %-21s %-21s %4s %6s %21s %5s %5s %5s %7s\n", "", "NODE", "STATE", "ADDRESS",
		"ROLES", "CPUS", "LOAD1", "MEM FREE/TOTAL", "LOAD", "MEM", "SCORE", "AGE");
	for (unsigned int i = 0; i < ns->count; i++) {
		const struct ferry_ctrl_node *nd = &ns->node[i];
		char mem[48];

		snprintf(mem, sizeof(mem), "%s/%s", ferry_size_format(nd->mem_free, free_s, sizeof(free_s)),
			 ferry_size_format(nd->mem_total, total_s, sizeof(total_s)));
		fprintf(out, "%-2s%-12s %-5s %-21s %-21s %4u %6.2f %21s %5u %5u %5u %6.1fs\n",
			strcmp(nd->name, ns->accept) == 0 ? "*" : "", nd->name, ferry_ctrl_node_state_name(nd->state),
			nd->addr, roles_str(nd->roles, roles, sizeof(roles)), nd->cpus, nd->load1 / 1000.0, mem,
			nd->load_score, nd->mem_score, nd->score, nd->age_ms / 1000.0);
	}
	fprintf(out, "\n* accept node: %s (epoch %llu); least loaded: %s; scores per mille, score = max(load, mem)\n",
		ns->accept[0] ? ns->accept : "none", (unsigned long long)ns->epoch, best ? best->name : "none");
}

static void ip_str(const uint8_t ip[4], char *buf, size_t len)
{
	if (!ip[0] && !ip[1] && !ip[2] && !ip[3])
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
}

static void mac_str(const uint8_t m[6], char *buf, size_t len)
{
	snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

void print_vms(FILE *out, const struct ferry_ctrl_vms *vs, bool json)
{
	char ip[16], mac[18];

	if (json) {
		json_t *j = json_object(), *a = json_array();

		for (unsigned int i = 0; i < vs->count; i++) {
			const struct ferry_ctrl_vm *v = &vs->vm[i];

			ip_str(v->ip, ip, sizeof(ip));
			mac_str(v->mac, mac, sizeof(mac));
			json_array_append_new(a, json_pack("{s:s, s:s, s:o, s:s, s:s}", "id", v->id, "state",
							   ferry_ctrl_vm_state_name(v->state), "node",
							   v->node[0] ? json_string(v->node) : json_null(), "ip", ip,
							   "mac", mac));
		}
		json_object_set_new(j, "vms", a);
		dump(out, j);
		return;
	}
	fprintf(out, "%-20s %-11s %-12s %-15s %s\n", "VM", "STATE", "NODE", "IP", "MAC");
	for (unsigned int i = 0; i < vs->count; i++) {
		const struct ferry_ctrl_vm *v = &vs->vm[i];

		ip_str(v->ip, ip, sizeof(ip));
		mac_str(v->mac, mac, sizeof(mac));
		fprintf(out, "%-20s %-11s %-12s %-15s %s\n", v->id, ferry_ctrl_vm_state_name(v->state),
			v->node[0] ? v->node : "-", ip, mac);
	}
	if (!vs->count)
		fprintf(out, "(no VMs)\n");
}

void print_stats(FILE *out, const struct ferry_ctrl_stats_ok *st, bool json)
{
	if (json) {
		json_t *j = json_object();

		for (unsigned int i = 0; i < st->count; i++)
			json_object_set_new(j, st->stats[i].name, json_integer((json_int_t)st->stats[i].value));
		dump(out, j);
		return;
	}
	for (unsigned int i = 0; i < st->count; i++)
		fprintf(out, "%-20s %llu\n", st->stats[i].name, (unsigned long long)st->stats[i].value);
}

void print_progress(FILE *out, const struct ferry_ctrl_progress *p, bool json, bool tty)
{
	uint64_t done = p->pages_sent + p->pages_skipped;
	uint64_t total = p->pages_total ? p->pages_total : done + p->pages_remaining;
	unsigned int pct = total ? (unsigned int)(done * 100 / total) : 0;
	bool final = p->flags & FERRY_CTRL_PROGRESS_FINAL;

	if (pct > 100 || p->phase == FERRY_CTRL_PHASE_DONE)
		pct = 100;
	if (json) {
		dump(out, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "vm", p->vm, "phase",
				    ferry_ctrl_phase_name(p->phase), "round", (json_int_t)p->round, "pages_sent",
				    (json_int_t)p->pages_sent, "pages_skipped", (json_int_t)p->pages_skipped,
				    "pages_remaining", (json_int_t)p->pages_remaining, "pages_total",
				    (json_int_t)total, "bytes_sent", (json_int_t)p->bytes_sent, "elapsed_ms",
				    (json_int_t)p->elapsed_ms, "percent", (json_int_t)pct, "final", final));
		fflush(out);
		return;
	}
	if (tty) {
		char bar[31];
		unsigned int fill = pct * 30 / 100;

		memset(bar, '#', fill);
		memset(bar + fill, '.', 30 - fill);
		bar[30] = '\0';
		fprintf(out, "\r\033[K%s [%s] %3u%%  %-13s round %u  sent %llu  skipped %llu  remaining %llu  %.1f s",
			p->vm, bar, pct, ferry_ctrl_phase_name(p->phase), p->round, (unsigned long long)p->pages_sent,
			(unsigned long long)p->pages_skipped, (unsigned long long)p->pages_remaining,
			p->elapsed_ms / 1000.0);
		if (final)
			fputc('\n', out);
	} else {
		fprintf(out, "%s %s round=%u sent=%llu skipped=%llu remaining=%llu total=%llu percent=%u elapsed_ms=%llu\n",
			p->vm, ferry_ctrl_phase_name(p->phase), p->round, (unsigned long long)p->pages_sent,
			(unsigned long long)p->pages_skipped, (unsigned long long)p->pages_remaining,
			(unsigned long long)total, pct, (unsigned long long)p->elapsed_ms);
	}
	fflush(out);
}

void print_error(FILE *out, const char *what, uint32_t code, const char *msg, bool json)
{
	if (json) {
		dump(out, json_pack("{s:{s:s, s:I, s:s, s:s}}", "error", "request", what, "code", (json_int_t)code,
				    "name", ferry_ctrl_errcode_str(code), "message", msg));
		return;
	}
	fprintf(stderr, "ferryctl: %s: %s: %s\n", what, ferry_ctrl_errcode_str(code), msg);
}
