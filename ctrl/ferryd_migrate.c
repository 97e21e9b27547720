/*
 * Migration adapter: ferryd's side of split migration (issue #5).
 *
 * The flow, once dataplane/migrate's control API (migrate_ctl.h:
 * mig_ctl_connect / mig_ctl_prepare_incoming / mig_ctl_start /
 * mig_ctl_status / mig_ctl_abort, struct mig_progress) is built in:
 *
 *   ferryctl migrate VM --to MAIN --sub-hosts A,B
 *     -> the source ferryd (where VM runs; ferryd_serve.c relays it there)
 *     -> PREPARE_INCOMING at MAIN's ferryd: it starts the destination VM
 *        shell from [vm ID] launch_incoming, calls mig_ctl_prepare_incoming
 *        on its pager and answers ENDPOINT
 *     -> the source calls mig_ctl_start with that endpoint and the
 *        sub-hosts, then polls mig_ctl_status each tick and streams
 *        PROGRESS (phase, round, pages sent / skipped / remaining) to
 *        ferryctl until the final one.
 *
 * The engine is not in this tree yet (it is being built on h/migrate), so
 * every entry point answers ERROR(NOT_AVAILABLE) "migration engine not
 * available" after the checks that do not need it; ferryctl prints that.
 * Merging the engine means filling in these functions: the protocol,
 * ferryctl's progress display and the request routing are done.
 */
#include "ctrl/ferryd.h"

#include "dataplane/common/ferry_log.h"

#define NOT_BUILT "migration engine not available: this ferryd was built without dataplane/migrate"

bool ferryd_mig_available(void)
{
	return false;
}

int ferryd_mig_start(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_migrate *m)
{
	LOG_WARN("migrate %s to %s refused: %s", m->vm, m->main, NOT_BUILT);
	return ferryd_send_error(d, c, req, FERRY_CTRL_E_NOT_AVAILABLE, "%s", NOT_BUILT);
}

int ferryd_mig_prepare(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const struct ferry_ctrl_migrate *m)
{
	LOG_WARN("prepare incoming %s from %s refused: %s", m->vm, m->source, NOT_BUILT);
	return ferryd_send_error(d, c, req, FERRY_CTRL_E_NOT_AVAILABLE, "%s", NOT_BUILT);
}

int ferryd_mig_abort(struct ferryd *d, struct ferryd_conn *c, uint64_t req, const char *vm)
{
	struct ferryd_vm *v = ferryd_vm_find(d, vm);

	if (!v)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_UNKNOWN_VM, "unknown VM %s", vm);
	if (v->op != OP_MIGRATE)
		return ferryd_send_error(d, c, req, FERRY_CTRL_E_BAD_STATE, "VM %s is not migrating", vm);
	return ferryd_send_error(d, c, req, FERRY_CTRL_E_NOT_AVAILABLE, "%s", NOT_BUILT);
}

void ferryd_mig_tick(struct ferryd *d, uint64_t now)
{
	(void)d;
	(void)now;
}
