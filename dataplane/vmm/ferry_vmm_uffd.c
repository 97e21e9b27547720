/*
 * userfaultfd helpers for VMMs that have none yet (ferry_vmm.h): open one,
 * do the UFFDIO_API handshake with the features asked for, register ranges.
 */
#include "dataplane/vmm/ferry_vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OPEN_FLAGS (O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)
#define KNOWN_FLAGS (OPEN_FLAGS | FERRY_VMM_UFFD_BEST_EFFORT | FERRY_VMM_UFFD_DEV_ONLY | FERRY_VMM_UFFD_SYSCALL_ONLY)

/* A fresh uffd (no UFFDIO_API yet) through the syscall or /dev/userfaultfd. */
static int uffd_open(int flags, struct ferry_err *err)
{
	int open_flags = flags & OPEN_FLAGS;
	int fd, dev, sys_errno = 0;

	if (!(flags & FERRY_VMM_UFFD_DEV_ONLY)) {
		fd = (int)syscall(SYS_userfaultfd, open_flags);
		if (fd >= 0)
			return fd;
		sys_errno = errno;
		if (flags & FERRY_VMM_UFFD_SYSCALL_ONLY)
			return ferry_err_set(err, sys_errno, "userfaultfd(2): %s%s", strerror(sys_errno),
					     sys_errno == EPERM ? " (vm.unprivileged_userfaultfd is 0 and the process "
								  "lacks CAP_SYS_PTRACE)" : "");
		/* EPERM/ENOSYS: the device may still be open to us; anything else is real. */
		if (sys_errno != EPERM && sys_errno != ENOSYS)
			return ferry_err_set(err, sys_errno, "userfaultfd(2): %s", strerror(sys_errno));
	}
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		int e = errno;

		if (sys_errno)
			return ferry_err_set(err, sys_errno, "userfaultfd(2): %s; /dev/userfaultfd: %s",
					     strerror(sys_errno), strerror(e));
		return ferry_err_set(err, e, "/dev/userfaultfd: %s", strerror(e));
	}
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, open_flags);
	if (fd < 0) {
		int e = errno;

		close(dev);
		return ferry_err_set(err, e, "/dev/userfaultfd: USERFAULTFD_IOC_NEW: %s", strerror(e));
	}
	close(dev);
	return fd;
}

/* The features this kernel offers (UFFDIO_API on a throw-away uffd: it may be done only once). */
static int uffd_supported(int flags, uint64_t *supported, struct ferry_err *err)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = uffd_open(flags, err);

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int e = errno;

		close(fd);
		return ferry_err_set(err, e, "UFFDIO_API (probe): %s", strerror(e));
	}
	close(fd);
	*supported = api.features;
	return 0;
}

int ferry_vmm_uffd_create(int flags, uint64_t features, struct ferry_err *err)
{
	struct uffdio_api api = { .api = UFFD_API };
	uint64_t supported = 0;
	int fd, rc;

	if (flags & ~KNOWN_FLAGS)
		return ferry_err_set(err, EINVAL, "uffd_create: unknown flags 0x%x", (unsigned int)(flags & ~KNOWN_FLAGS));
	if ((flags & FERRY_VMM_UFFD_DEV_ONLY) && (flags & FERRY_VMM_UFFD_SYSCALL_ONLY))
		return ferry_err_set(err, EINVAL, "uffd_create: DEV_ONLY and SYSCALL_ONLY exclude each other");
	if (flags & FERRY_VMM_UFFD_BEST_EFFORT) {
		rc = uffd_supported(flags, &supported, err);
		if (rc < 0)
			return rc;
		features &= supported;
	}
	fd = uffd_open(flags, err);
	if (fd < 0)
		return fd;
	api.features = features;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int e = errno;

		close(fd);
		if (e == EINVAL && uffd_supported(flags, &supported, NULL) == 0)
			return ferry_err_set(err, e,
					     "UFFDIO_API: features 0x%llx not available (this kernel offers 0x%llx)",
					     (unsigned long long)features, (unsigned long long)supported);
		return ferry_err_set(err, e, "UFFDIO_API: %s", strerror(e));
	}
	return fd;
}

int ferry_vmm_uffd_register_range(int uffd, void *addr, size_t len, uint64_t modes, struct ferry_err *err)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = modes ? modes : UFFDIO_REGISTER_MODE_MISSING,
	};

	if (modes & ~(uint64_t)(FERRY_VMM_MODE_MISSING | FERRY_VMM_MODE_WP | FERRY_VMM_MODE_MINOR))
		return ferry_err_set(err, EINVAL, "UFFDIO_REGISTER: unknown mode bits 0x%llx",
				     (unsigned long long)modes);
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		int e = errno;

		return ferry_err_set(err, e, "UFFDIO_REGISTER [%p, +0x%zx) mode 0x%llx: %s%s", addr, len,
				     (unsigned long long)reg.mode, strerror(e),
				     e == EINVAL ? " (unaligned, unmapped, or a mode this memory type does not "
						   "support: MINOR needs shmem/hugetlbfs and its feature)" : "");
	}
	return 0;
}

int ferry_vmm_uffd_unregister_range(int uffd, void *addr, size_t len, struct ferry_err *err)
{
	struct uffdio_range range = { .start = (uintptr_t)addr, .len = len };

	if (ioctl(uffd, UFFDIO_UNREGISTER, &range) < 0) {
		int e = errno;

		return ferry_err_set(err, e, "UFFDIO_UNREGISTER [%p, +0x%zx): %s", addr, len, strerror(e));
	}
	return 0;
}
