/*
 * tokcache.h - the verified-token cache shared by the bearer authenticators
 * that do real work per token (JWT, TokenReview); static keys are a hash
 * probe already and do not use it.
 *
 * Key: HMAC-SHA256(random per-cache secret, authenticator ‖ token ‖
 * audiences), length-prefixed as kube does, so raw tokens are never stored
 * and keys cannot be precomputed. Value: the identity, until min(token
 * expiry, TTL). Bounded: least recently used entries go first. Striped
 * locks, so workers rarely contend. A cache belongs to one config snapshot:
 * a reload starts empty. Only successes are cached here.
 */
#ifndef FG_TOKCACHE_H
#define FG_TOKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "identity.h"

#define FG_TOKCACHE_KEY 32

struct fg_tokcache;

/* capacity: most entries kept; ttl_ms: longest life of an entry. */
struct fg_tokcache *fg_tokcache_new(size_t capacity, uint64_t ttl_ms);
void fg_tokcache_free(struct fg_tokcache *c);

/*
 * Frees c on f's thread a batch of entries at a time, with a pause between batches, or at once
 * when f is NULL or c is small. For caches dropped by a reload: freeing 100k entries in one go
 * is ~50 ms of CPU, and glibc's frees race the workers' allocations on a 2-core machine; in
 * slices the reload's latency bump disappears (make bench (f): p99 under 20 SIGHUPs after
 * workload (c) filled the cache). Nobody may use c any more.
 */
#define FG_TOKCACHE_RETIRE_BATCH    2000
#define FG_TOKCACHE_RETIRE_PAUSE_MS 2
struct fg_fetcher;
void fg_tokcache_retire(struct fg_tokcache *c, struct fg_fetcher *f);
/* Frees every cache still being retired; call once f is gone (its timers no longer run). */
void fg_tokcache_retire_finish(void);

/* Counts over every cache of the process (for /metrics): lookups that found a live entry, those
 * that did not, entries pushed out by the capacity, and entries held now. */
void fg_tokcache_stats(uint64_t *hits, uint64_t *misses, uint64_t *evictions, int64_t *entries);

/* Computes the cache key for (authenticator, token, audiences). */
void fg_tokcache_key(const struct fg_tokcache *c, const char *authn, const char *token,
                     size_t token_len, char *const *audiences, size_t naudiences,
                     unsigned char key[FG_TOKCACHE_KEY]);

/* A new reference to the cached identity, or NULL (absent or expired at now_ms). */
struct fg_identity *fg_tokcache_get(struct fg_tokcache *c, const unsigned char *key,
                                    uint64_t now_ms);
/* As fg_tokcache_get; *until receives when the entry expires. */
struct fg_identity *fg_tokcache_get_until(struct fg_tokcache *c, const unsigned char *key,
                                          uint64_t now_ms, uint64_t *until);

/*
 * Stores id (taking a new reference) until min(expires_ms, now_ms + ttl),
 * which it returns (0 when nothing was stored). expires_ms == 0 means "no
 * expiry of its own".
 */
uint64_t fg_tokcache_put(struct fg_tokcache *c, const unsigned char *key, struct fg_identity *id,
                         uint64_t expires_ms, uint64_t now_ms);

/* Entries currently held (for tests and metrics). */
size_t fg_tokcache_size(struct fg_tokcache *c);

#endif
