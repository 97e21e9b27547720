/*
 * Client of ferry-pager's migration control socket (see migrate_ctl.h).
 * Stub: the wire side lands with proto/migrate.[ch].
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/migrate/migrate_ctl.h"

struct mig_ctl {
	int fd;
};

int mig_ctl_connect(const char *path, struct mig_ctl **ctl, struct ferry_err *err)
{
	(void)path;
	*ctl = NULL;
	return ferry_err_set(err, ENOSYS, "migration control: not implemented yet");
}

void mig_ctl_close(struct mig_ctl *ctl)
{
	free(ctl);
}

int mig_ctl_prepare_incoming(struct mig_ctl *ctl, const char *vm_id, uint64_t budget_bytes,
			     const struct mig_subhost *subs, unsigned nsubs, struct mig_endpoint *ep,
			     struct ferry_err *err)
{
	(void)ctl, (void)vm_id, (void)budget_bytes, (void)subs, (void)nsubs, (void)ep;
	return ferry_err_set(err, ENOSYS, "migration control: not implemented yet");
}

int mig_ctl_start(struct mig_ctl *ctl, const char *vm_id, const struct mig_endpoint *dest, enum mig_mode mode,
		  struct ferry_err *err)
{
	(void)ctl, (void)vm_id, (void)dest, (void)mode;
	return ferry_err_set(err, ENOSYS, "migration control: not implemented yet");
}

int mig_ctl_status(struct mig_ctl *ctl, const char *vm_id, struct mig_progress *p, struct ferry_err *err)
{
	(void)ctl, (void)vm_id;
	memset(p, 0, sizeof(*p));
	return ferry_err_set(err, ENOSYS, "migration control: not implemented yet");
}

int mig_ctl_abort(struct mig_ctl *ctl, const char *vm_id, struct ferry_err *err)
{
	(void)ctl, (void)vm_id;
	return ferry_err_set(err, ENOSYS, "migration control: not implemented yet");
}

static const char *const mode_names[] = {
	[MIG_MODE_PRECOPY] = "precopy", [MIG_MODE_POSTCOPY] = "postcopy",
	[MIG_MODE_PLANNED] = "planned", [MIG_MODE_FULL] = "full",
};
static const char *const phase_names[] = {
	[MIG_PH_IDLE] = "idle",       [MIG_PH_SETUP] = "setup",   [MIG_PH_PRECOPY] = "precopy",
	[MIG_PH_STOP] = "stop",       [MIG_PH_SWITCHOVER] = "switchover", [MIG_PH_POSTCOPY] = "postcopy",
	[MIG_PH_DONE] = "done",       [MIG_PH_FAILED] = "failed", [MIG_PH_ABORTED] = "aborted",
};

const char *mig_mode_name(enum mig_mode m)
{
	return (unsigned)m < sizeof(mode_names) / sizeof(mode_names[0]) && mode_names[m] ? mode_names[m] : "?";
}

const char *mig_phase_name(enum mig_phase p)
{
	return (unsigned)p < sizeof(phase_names) / sizeof(phase_names[0]) ? phase_names[p] : "?";
}

int mig_mode_parse(const char *s, enum mig_mode *m)
{
	for (unsigned i = 1; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (mode_names[i] && strcmp(s, mode_names[i]) == 0) {
			*m = (enum mig_mode)i;
			return 0;
		}
	return -EINVAL;
}
