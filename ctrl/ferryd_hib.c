/*
 * Hibernation adapter: how ferryd hibernates and resumes one VM.
 *
 * Today: the VM's hook commands from the config ([vm ID] hibernate_cmd,
 * resume_cmd), run with /bin/sh -c as children of ferryd (so the loop never
 * waits on them; ferryd_vms.c reaps them), with the VM in the environment:
 *
 *   FERRY_VM=ID  FERRY_VM_IP=A.B.C.D  FERRY_VM_MAC=xx:..  FERRY_NODE=this node
 *
 * Exit status 0 means done. A VM without the hook gets NOT_AVAILABLE, said
 * as such. The QEMU/QMP hibernation library (ctrl/hib.h, branch h/hib) slots
 * in here: these two functions are the whole seam.
 */
#include "ctrl/ferryd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int run_hook(struct ferryd *d, struct ferryd_vm *vm, const char *cmd, const char *what, pid_t *pid,
		    struct ferry_err *err)
{
	char e_vm[16 + FERRYD_NAME_LEN], e_ip[32], e_mac[40], e_node[16 + FERRYD_NAME_LEN];
	char *env[] = { e_vm, e_ip, e_mac, e_node, NULL };
	const uint8_t *ip = vm->v.ip, *mac = vm->v.mac;

	if (!cmd[0])
		return ferry_err_set(err, ENOSYS, "no %s backend: set [vm %s] %s_cmd", what, vm->v.id, what);
	snprintf(e_vm, sizeof(e_vm), "FERRY_VM=%s", vm->v.id);
	snprintf(e_ip, sizeof(e_ip), "FERRY_VM_IP=%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
	snprintf(e_mac, sizeof(e_mac), "FERRY_VM_MAC=%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
	snprintf(e_node, sizeof(e_node), "FERRY_NODE=%s", d->cfg.name);
	*pid = ferryd_spawn(NULL, cmd, NULL, env);
	if (*pid < 0)
		return ferry_err_set(err, errno, "%s hook: fork: %s", what, strerror(errno));
	return 0;
}

int ferryd_hib_hibernate(struct ferryd *d, struct ferryd_vm *vm, pid_t *pid, struct ferry_err *err)
{
	return run_hook(d, vm, vm->cfg->hibernate_cmd, "hibernate", pid, err);
}

int ferryd_hib_resume(struct ferryd *d, struct ferryd_vm *vm, pid_t *pid, struct ferry_err *err)
{
	return run_hook(d, vm, vm->cfg->resume_cmd, "resume", pid, err);
}
