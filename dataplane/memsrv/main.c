/*
 * ferry-memsrv: the memory server of a sub-host.
 *
 * Exit status: 0 after --help/--version or a clean shutdown (SIGTERM/SIGINT),
 * 1 when the server cannot start or fails, 2 for a bad configuration.
 */
#include <stdio.h>

#include "dataplane/common/ferry_log.h"
#include "dataplane/memsrv/config.h"
#include "dataplane/memsrv/server.h"

int main(int argc, char **argv)
{
	static struct memsrv_config cfg;   /* large (paths): not on the stack */
	struct ferry_err err = { 0 };
	struct memsrv *srv;
	int rc;

	ferry_log_set_component("memsrv");
	rc = memsrv_config_from_args(&cfg, argc, argv, stdout, &err);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "ferry-memsrv: %s\n", err.msg);
		return 2;
	}
	if (cfg.log_level >= 0)
		ferry_log_set_level((enum ferry_log_level)cfg.log_level);
	memsrv_config_log(&cfg);

	rc = memsrv_create(&cfg, &srv, &err);
	if (rc) {
		LOG_ERR("cannot start: %s", err.msg);
		return 1;
	}
	rc = memsrv_run(srv, &err);
	memsrv_destroy(srv);
	if (rc) {
		LOG_ERR("stopped on an error: %s", err.msg);
		return 1;
	}
	return 0;
}
