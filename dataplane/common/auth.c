#include "dataplane/common/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ferry_auth_init(struct ferry_err *err)
{
	if (sodium_init() < 0)
		return ferry_err_set(err, EIO, "libsodium initialisation failed");
	return 0;
}

int ferry_secret_from_bytes(const void *bytes, size_t len, struct ferry_secret *secret, struct ferry_err *err)
{
	int rc = ferry_auth_init(err);

	if (rc)
		return rc;
	if (len < FERRY_AUTH_SECRET_MIN)
		return ferry_err_set(err, EINVAL, "secret too short: %zu bytes, need at least %d", len,
				     FERRY_AUTH_SECRET_MIN);
	crypto_hash_sha256(secret->key, bytes, len);
	return 0;
}

int ferry_secret_load(const char *path, struct ferry_secret *secret, struct ferry_err *err)
{
	uint8_t buf[1024];
	struct stat st;
	ssize_t n;
	size_t len;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ferry_err_set(err, errno, "secret file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = ferry_err_set(err, errno, "secret file %s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = ferry_err_set(err, EINVAL, "secret file %s is not a regular file", path);
		goto out_close;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		rc = ferry_err_set(err, EPERM,
				   "secret file %s is accessible by group/others (mode %03o); chmod 600 it",
				   path, (unsigned)(st.st_mode & 0777));
		goto out_close;
	}
	n = read(fd, buf, sizeof(buf));
	if (n < 0) {
		rc = ferry_err_set(err, errno, "secret file %s: %s", path, strerror(errno));
		goto out_close;
	}
	len = (size_t)n;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	rc = ferry_secret_from_bytes(buf, len, secret, err);
	if (rc)
		ferry_err_prefix(err, "secret file %s: ", path);
	sodium_memzero(buf, sizeof(buf));
out_close:
	close(fd);
	return rc;
}

int ferry_secret_generate(const char *path, struct ferry_err *err)
{
	uint8_t raw[32];
	char hex[sizeof(raw) * 2 + 2];
	int rc = ferry_auth_init(err);
	int fd;

	if (rc)
		return rc;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return ferry_err_set(err, errno, "create secret file %s: %s", path, strerror(errno));
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(hex, sizeof(hex) - 1, raw, sizeof(raw));
	size_t len = strlen(hex);
	hex[len++] = '\n';
	if (write(fd, hex, len) != (ssize_t)len)
		rc = ferry_err_set(err, errno ? errno : EIO, "write secret file %s: %s", path, strerror(errno));
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(hex, sizeof(hex));
	close(fd);
	return rc;
}

void ferry_secret_wipe(struct ferry_secret *secret)
{
	sodium_memzero(secret, sizeof(*secret));
}

void ferry_auth_nonce(uint8_t nonce[FERRY_AUTH_NONCE_LEN])
{
	randombytes_buf(nonce, FERRY_AUTH_NONCE_LEN);
}

void ferry_auth_mac(const struct ferry_secret *secret, const char *label,
		    const uint8_t nonce_a[FERRY_AUTH_NONCE_LEN], const uint8_t nonce_b[FERRY_AUTH_NONCE_LEN],
		    const char *name, size_t name_len, uint8_t mac[FERRY_AUTH_MAC_LEN])
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, secret->key, sizeof(secret->key));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label) + 1);
	crypto_auth_hmacsha256_update(&st, nonce_a, FERRY_AUTH_NONCE_LEN);
	crypto_auth_hmacsha256_update(&st, nonce_b, FERRY_AUTH_NONCE_LEN);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)name, name_len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
}

int ferry_auth_verify(const struct ferry_secret *secret, const char *label,
		      const uint8_t nonce_a[FERRY_AUTH_NONCE_LEN], const uint8_t nonce_b[FERRY_AUTH_NONCE_LEN],
		      const char *name, size_t name_len, const uint8_t mac[FERRY_AUTH_MAC_LEN])
{
	uint8_t expect[FERRY_AUTH_MAC_LEN];
	int rc;

	ferry_auth_mac(secret, label, nonce_a, nonce_b, name, name_len, expect);
	rc = sodium_memcmp(expect, mac, FERRY_AUTH_MAC_LEN) == 0 ? 0 : -EACCES;
	sodium_memzero(expect, sizeof(expect));
	return rc;
}
