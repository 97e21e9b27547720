/*
 * ferry-pager: the VMM backend.
 *
 * Exit status: 0 after --help/--version or a clean shutdown (SIGTERM/SIGINT),
 * 1 when it cannot start or fails, 2 for a bad configuration.
 */
#include <stdio.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/pager/config.h"
#include "dataplane/pager/pager.h"

int main(int argc, char **argv)
{
	static struct pager_config cfg;
	struct ferry_err err = { 0 };
	struct pager *pg = NULL;
	int rc;

	ferry_log_set_component("pager");
	rc = pager_config_from_args(&cfg, argc, argv, stdout, &err);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "ferry-pager: %s\n", err.msg);
		return 2;
	}
	if (cfg.log_level >= 0)
		ferry_log_set_level((enum ferry_log_level)cfg.log_level);
	pager_config_log(&cfg);
	rc = pg_create(&cfg, &pg, &err);
	if (rc) {
		LOG_ERR("cannot start: %s", err.msg);
		pg_destroy(pg);
		return 1;
	}
	rc = pg_run(pg, &err);
	pg_destroy(pg);
	if (rc) {
		LOG_ERR("stopped on an error: %s", err.msg);
		return 1;
	}
	LOG_INFO("stopped");
	return 0;
}
