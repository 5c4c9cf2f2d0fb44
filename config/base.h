/*
 * base.h - the small toolbox every module shares: allocation that aborts on
 * out-of-memory, a growable byte buffer, bounded number parsing and the log
 * sink. Nothing here touches sockets or the event loop.
 */
#ifndef FG_BASE_H
#define FG_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define FG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define FG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define FG_UNUSED       __attribute__((unused))
#else
#define FG_PRINTF(f, a)
#define FG_UNUSED
#endif

/* Allocation wrappers: never return NULL; out-of-memory aborts the process. */
void *fg_malloc(size_t n);
void *fg_calloc(size_t count, size_t size);
void *fg_realloc(void *p, size_t n);
char *fg_strdup(const char *s);
char *fg_strndup(const char *s, size_t n);
/*
 * fg_calloc for a large table read at random on the request path (a workspace index, a key
 * table): from 2 MiB up, memory aligned to 2 MiB that the kernel is asked to back with
 * transparent huge pages, so a lookup costs a cache miss without a page walk. Freed only by
 * fg_free_huge with the same count and size.
 */
void *fg_calloc_huge(size_t count, size_t size);
void fg_free_huge(void *p, size_t count, size_t size);
/* Grows *arr (elements of esize) so that index `need - 1` is valid; *cap tracks capacity. */
void fg_grow(void *arr, size_t *cap, size_t need, size_t esize);

/* A growable byte buffer. Always NUL-terminated after any append. */
struct fg_buf {
    char *data;
    size_t len;
    size_t cap;
};

void fg_buf_reserve(struct fg_buf *b, size_t extra);
void fg_buf_add(struct fg_buf *b, const void *p, size_t n);
void fg_buf_adds(struct fg_buf *b, const char *s);
void fg_buf_addc(struct fg_buf *b, char c);
void fg_buf_printf(struct fg_buf *b, const char *fmt, ...) FG_PRINTF(2, 3);
/* Appends v in decimal (hot paths: no printf). */
void fg_buf_add_dec(struct fg_buf *b, uint64_t v);
/* Writes v in lowercase hex into out (at least 17 bytes); returns the length. */
size_t fg_fmt_hex(char *out, uint64_t v);
void fg_buf_vprintf(struct fg_buf *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal (with quotes). */
void fg_buf_json_str(struct fg_buf *b, const char *s, size_t n);
void fg_buf_reset(struct fg_buf *b);
void fg_buf_free(struct fg_buf *b);
/* Hands the data to the caller (who frees it) and empties the buffer. */
char *fg_buf_take(struct fg_buf *b);

/* Case-insensitive ASCII comparisons of a length-delimited string with a literal. */
int fg_strn_eqi(const char *a, size_t alen, const char *lit);
int fg_strn_prefixi(const char *a, size_t alen, const char *prefix);

/*
 * 1 when url is "http://" (lowercase) then exactly 127.0.0.1, localhost (any case) or [::1], then
 * optionally ":<port>" with port 1..65535, then the end or '/'; else 0 (NULL and "" too).
 */
int fg_url_is_loopback_http(const char *url);

/* Parses an unsigned decimal integer in s[0..n): 0 on success, -1 on junk or overflow past max. */
int fg_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out);
/*
 * Parses "250ms", "10s", "5m", "2h", "1h30m" (or "0") into milliseconds. A number without a unit
 * is refused: "timeout: 5" could mean seconds or milliseconds.
 */
int fg_parse_duration_ms(const char *s, uint64_t *out_ms);
/* Parses "65536", "64Ki", "1Mi", "2Gi" (also k/M/G as powers of 1000) into bytes. */
int fg_parse_size(const char *s, uint64_t *out);
/* Decodes one hex digit; -1 if c is not one. */
int fg_hexval(int c);

/* Time: monotonic milliseconds for timers and expiry, wall-clock seconds for tokens. */
uint64_t fg_now_ms(void);
int64_t fg_wall_s(void);

/*
 * Line files (key files, the workspace index): a cursor over text[0..len). fg_next_line hands
 * out each line without its "\n" or "\r\n" and counts lines from 1; 0 when the text is used up.
 */
struct fg_lines {
    const char *text;
    size_t len, pos;
    int lineno;
};
int fg_next_line(struct fg_lines *it, const char **line, size_t *llen);

/* Fills buf with n cryptographically random bytes; aborts if the RNG fails. */
void fg_random(void *buf, size_t n);

/*
 * SHA-256 without OpenSSL 3's per-call algorithm fetch (SHA256() looks the digest up in the
 * provider store on every call: ~430 ns against ~110 ns here for a 43-byte key). The digest is
 * fetched once per process; each thread hashes in its own scratch context.
 */
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
const EVP_MD *fg_sha256_md(void);
/* This thread's scratch digest context (reset by each user; freed when the thread exits). */
EVP_MD_CTX *fg_md_scratch(void);
void fg_sha256(const void *data, size_t len, unsigned char out[32]);

/*
 * Log sink. Lines are "time level message" on stderr. Messages never carry a
 * credential: callers log the authenticator's reason, never the token.
 */
enum fg_log_level { FG_LOG_DEBUG, FG_LOG_INFO, FG_LOG_WARN, FG_LOG_ERROR };

void fg_log(enum fg_log_level level, const char *fmt, ...) FG_PRINTF(2, 3);
void fg_log_set_level(enum fg_log_level level);
int fg_log_enabled(enum fg_log_level level);
/* Writes a complete, already formatted line (including '\n') to the log stream. */
void fg_log_write(const char *line, size_t n);
/* Appends a logfmt value: bare when safe, else quoted with control bytes escaped. */
void fg_buf_logval(struct fg_buf *b, const char *s, size_t n);

#endif
