/*
 * Node scores and the least-loaded node (paper 004, section 2.2): pure
 * functions of the cluster view, shared by the coordinator (accept role) and
 * every ferryd (where a resume lands), and unit-tested on their own.
 *
 *   load_score = min(1000, 1000 * loadavg_1min / cpus)   (1.0 per CPU = full)
 *   mem_score  = 1000 * (mem_total - mem_available) / mem_total
 *   score      = max(load_score, mem_score)              lower = less loaded
 */
#include "ctrl/ferryd.h"

#include <string.h>

void ferryd_scores(struct ferry_ctrl_node *nd)
{
	uint64_t load = nd->cpus ? (uint64_t)nd->load1 / nd->cpus : nd->load1;

	nd->load_score = load > 1000 ? 1000 : (uint32_t)load;
	/* In double: a report's sizes are the peer's word and 1000 x a u64 could wrap. mem_free <= mem_total (codec). */
	nd->mem_score = nd->mem_total ? (uint32_t)((double)(nd->mem_total - nd->mem_free) * 1000.0 / (double)nd->mem_total)
				      : 1000;
	nd->score = nd->load_score > nd->mem_score ? nd->load_score : nd->mem_score;
}

const struct ferry_ctrl_node *ferryd_least_loaded(const struct ferry_ctrl_nodes *view, uint32_t roles,
						  const char *skip)
{
	const struct ferry_ctrl_node *best = NULL;

	for (unsigned int i = 0; i < view->count; i++) {
		const struct ferry_ctrl_node *nd = &view->node[i];

		if (nd->state != FERRY_CTRL_NODE_UP || (nd->roles & roles) != roles)
			continue;
		if (skip && skip[0] && strcmp(nd->name, skip) == 0)
			continue;
		/* Ties go to the name that sorts first, so every reader picks the same node. */
		if (!best || nd->score < best->score || (nd->score == best->score && strcmp(nd->name, best->name) < 0))
			best = nd;
	}
	return best;
}

