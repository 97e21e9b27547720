/**
 * @file pager_harness.h
 * Integration-test harness for ferry-pager: runs the real daemon (fork/exec)
 * with flags in a fresh temp dir and waits until its socket accepts; and a
 * "test VMM" in the calling process: a memfd (or anonymous) guest RAM,
 * stamped pages, a userfaultfd registered over libferry-vmm. Touching the
 * RAM from the test thread blocks until the pager resolves the fault.
 *
 * Call from the test's main thread only (cmocka assertions), except
 * tvm_verify()/tvm_stamp(), which are thread-safe per VM.
 */
#ifndef FERRY_TESTS_PAGER_HARNESS_H
#define FERRY_TESTS_PAGER_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dataplane/vmm/ferry_vmm.h"

#define PAGER_BIN FERRY_BUILD_DIR "/dataplane/pager/ferry-pager"
#define PAGE 4096u

struct pgr {
	char dir[64];
	char sock[128], fc_sock[128], log[128];
	pid_t pid;
	int status;
};

/**
 * Start ferry-pager with the extra flags @p args (NULL-terminated; socket/allow added unless given;
 * an argument "@FC" is replaced by the Firecracker socket path p->fc_sock).
 * With "--servers" and no "--transport", "--transport" msrv_transport() is added
 * (FERRY_TEST_TRANSPORT); build the servers' addresses with msrv_host().
 */
void pgr_start(struct pgr *p, const char *const *args);
int pgr_stop(struct pgr *p, int timeout_ms);
void pgr_cleanup(struct pgr *p);
bool pgr_log_contains(const struct pgr *p, const char *needle);
void pgr_dump_log(const struct pgr *p);
bool pgr_alive(struct pgr *p);

/* Stamps: every 8-byte word of page p at version v holds stamp(p, v, word). */
uint64_t tvm_stamp_word(uint64_t page, uint32_t version, unsigned word);
void tvm_fill(void *page_addr, uint64_t page, uint32_t version);
/** 1 = matches (page, version), 0 = all zero, -1 = anything else. */
int tvm_check(const void *page_addr, uint64_t page, uint32_t version);

struct tvm {
	int memfd;               /* -1 for anonymous RAM */
	int uffd;
	uint8_t *ram;
	size_t pages;
	struct ferry_vmm_conn *c;
	uint32_t *version;       /* per page, 0 = never written (expect zeros) */
};

enum { TVM_ANON = 1, TVM_WP = 2, TVM_NO_REGISTER = 4, TVM_POISON = 8 /* ask for UFFD_FEATURE_POISON */,
       TVM_EVENTS = 16 /* ask for UNMAP, REMAP and FORK events */,
       TVM_MINOR = 32 /* register MINOR mode too (memfd RAM only) */ };

/**
 * Guest RAM of @p pages pages; pages for which @p stamped(i) is true are
 * written (version 1) before registering, the rest stay holes. Registers as
 * @p id on @p sock unless TVM_NO_REGISTER.
 */
void tvm_create(struct tvm *v, const char *sock, const char *id, size_t pages, int flags,
		bool (*stamped)(size_t i));
void tvm_destroy(struct tvm *v);
/** Fetch counter @p name from STATS (fails the test if absent). */
uint64_t tvm_stat(struct tvm *v, const char *name);
/** Write version ++ of page @p i through the mapping. */
void tvm_write(struct tvm *v, size_t i);
/** Read page @p i through the mapping and compare with what it should hold. @return true if right. */
bool tvm_verify(struct tvm *v, size_t i);

uint64_t now_ms(void);
void sleep_ms(unsigned ms);

#endif
