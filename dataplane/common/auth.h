/**
 * @file auth.h
 * The cluster secret and the challenge-response MACs that peers exchange.
 *
 * A secret file holds at least 32 bytes (anything beyond 1 KiB is ignored;
 * trailing newlines are stripped). It must be readable by its owner only
 * (mode 0600 or stricter): a world-readable secret is refused, because anyone
 * on the host could then read every VM's memory.
 *
 * MACs are HMAC-SHA-256 (libsodium) keyed with SHA-256(secret), over a fixed
 * label that names the protocol and direction, then the two nonces in the
 * order given, then the peer name, so that a MAC can never be replayed in the
 * other direction or another protocol. Comparisons are constant-time.
 */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/common/ferry_err.h"

#define FERRY_AUTH_KEY_LEN 32
#define FERRY_AUTH_NONCE_LEN 32
#define FERRY_AUTH_MAC_LEN 32
#define FERRY_AUTH_SECRET_MIN 32

struct ferry_secret {
	uint8_t key[FERRY_AUTH_KEY_LEN];   /**< SHA-256 of the file contents */
};

/** Initialise libsodium; safe to call many times. */
int ferry_auth_init(struct ferry_err *err);
/** Load and check a secret file. */
int ferry_secret_load(const char *path, struct ferry_secret *secret, struct ferry_err *err);
/** Derive a secret from bytes in memory (tests, generated secrets). */
int ferry_secret_from_bytes(const void *bytes, size_t len, struct ferry_secret *secret, struct ferry_err *err);
/** Write a fresh random secret to @p path with mode 0600 (refuses to overwrite). */
int ferry_secret_generate(const char *path, struct ferry_err *err);
/** Wipe a secret from memory. */
void ferry_secret_wipe(struct ferry_secret *secret);

/** Fill @p nonce with random bytes. */
void ferry_auth_nonce(uint8_t nonce[FERRY_AUTH_NONCE_LEN]);

/**
 * mac = HMAC(key, label | nonce_a | nonce_b | name). @p label is e.g.
 * "ferry-page-c" (client proof) or "ferry-page-s" (server proof).
 */
void ferry_auth_mac(const struct ferry_secret *secret, const char *label,
		    const uint8_t nonce_a[FERRY_AUTH_NONCE_LEN], const uint8_t nonce_b[FERRY_AUTH_NONCE_LEN],
		    const char *name, size_t name_len, uint8_t mac[FERRY_AUTH_MAC_LEN]);
/** Constant-time check of @p mac against the expected one; 0 if equal, -EACCES if not. */
int ferry_auth_verify(const struct ferry_secret *secret, const char *label,
		      const uint8_t nonce_a[FERRY_AUTH_NONCE_LEN], const uint8_t nonce_b[FERRY_AUTH_NONCE_LEN],
		      const char *name, size_t name_len, const uint8_t mac[FERRY_AUTH_MAC_LEN]);

#endif /* FERRY_AUTH_H */
