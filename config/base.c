#include "base.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <pthread.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n)
{
    fprintf(stderr, "frontgate: out of memory allocating %zu bytes\n", n);
    abort();
}

void *fg_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *fg_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    return p;
}

void *fg_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

#define HUGE_PAGE ((size_t)2 << 20)

void *fg_calloc_huge(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        oom(SIZE_MAX);
    size_t n = count * size;
    if (n < HUGE_PAGE)
        return fg_calloc(count, size);
    /* map one huge page more than needed and keep the aligned part */
    size_t len = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    char *m =
        mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        oom(n);
    char *p = (char *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > m)
        munmap(m, (size_t)(p - m));
    munmap(p + len, (size_t)(m + HUGE_PAGE - p));
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* advice: without THP the memory is ordinary pages */
#endif
    return p;
}

void fg_free_huge(void *p, size_t count, size_t size)
{
    size_t n = count * size;
    if (p == NULL)
        return;
    if (n < HUGE_PAGE)
        free(p);
    else
        munmap(p, (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1));
}

char *fg_strdup(const char *s)
{
    return fg_strndup(s, strlen(s));
}

char *fg_strndup(const char *s, size_t n)
{
    char *p = fg_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void fg_grow(void *arr, size_t *cap, size_t need, size_t esize)
{
    void **pa = arr;
    if (need <= *cap)
        return;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    *pa = fg_realloc(*pa, ncap * esize);
    *cap = ncap;
}

void fg_buf_reserve(struct fg_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t ncap = b->cap ? b->cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    b->data = fg_realloc(b->data, ncap);
    b->cap = ncap;
}

void fg_buf_add(struct fg_buf *b, const void *p, size_t n)
{
    fg_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void fg_buf_adds(struct fg_buf *b, const char *s)
{
    fg_buf_add(b, s, strlen(s));
}

void fg_buf_addc(struct fg_buf *b, char c)
{
    fg_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void fg_buf_vprintf(struct fg_buf *b, const char *fmt, va_list ap)
{
    char probe[1];
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(probe, sizeof(probe), fmt, cp);
    va_end(cp);
    if (n < 0)
        return;
    fg_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void fg_buf_printf(struct fg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fg_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void fg_buf_add_dec(struct fg_buf *b, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    fg_buf_add(b, tmp + sizeof(tmp) - n, n);
}

size_t fg_fmt_hex(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    do {
        tmp[15 - n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    memcpy(out, tmp + 16 - n, n);
    out[n] = '\0';
    return n;
}

void fg_buf_json_str(struct fg_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    fg_buf_reserve(b, n + 2);
    fg_buf_addc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fg_buf_addc(b, '\\');
            fg_buf_addc(b, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            fg_buf_add(b, esc, sizeof(esc));
        } else {
            fg_buf_addc(b, (char)c);
        }
    }
    fg_buf_addc(b, '"');
}

void fg_buf_reset(struct fg_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void fg_buf_free(struct fg_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *fg_buf_take(struct fg_buf *b)
{
    char *p = b->data ? b->data : fg_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

int fg_strn_eqi(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    if (alen != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)lit[i]))
            return 0;
    return 1;
}

int fg_strn_prefixi(const char *a, size_t alen, const char *prefix)
{
    size_t n = strlen(prefix);
    if (alen < n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)prefix[i]))
            return 0;
    return 1;
}

/* Prefix matching let "http://localhost.evil.example/" pass: the host must end where the name
 * does. Ports are bounded so "localhost:99999" is not a loopback URL but a malformed one. */
int fg_url_is_loopback_http(const char *url)
{
    static const char *const hosts[] = {"127.0.0.1", "localhost", "[::1]"};
    const char *h = url != NULL && strncmp(url, "http://", 7) == 0 ? url + 7 : NULL;
    /* "[::1]" holds colons: a bracketed host runs to its ']'. */
    const char *rb = h != NULL && h[0] == '[' ? strchr(h, ']') : NULL;
    size_t n = rb != NULL ? (size_t)(rb - h) + 1 : h != NULL ? strcspn(h, ":/") : 0, plen = 0;
    int ok = 0;
    uint64_t port = 0;

    for (size_t i = 0; h != NULL && i < FG_ARRAY_LEN(hosts); i++)
        ok = ok || fg_strn_eqi(h, n, hosts[i]);
    if (ok && h[n] == ':') {
        plen = strcspn(h + n + 1, "/");
        ok = fg_parse_u64(h + n + 1, plen, 65535, &port) == 0 && port > 0;
        n += 1 + plen;
    }
    return ok && (h[n] == '\0' || h[n] == '/');
}

int fg_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (d > max || v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int fg_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    uint64_t total = 0;
    size_t i = 0, n = strlen(s);
    if (n == 0)
        return -1;
    while (i < n) {
        size_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        uint64_t v;
        if (fg_parse_u64(s + start, i - start, UINT64_MAX / 3600000ULL, &v) != 0)
            return -1;
        uint64_t mul;
        if (i == n && start == 0 && v == 0) {
            mul = 1; /* "0" needs no unit (as in Go) */
        } else if (i + 2 <= n && s[i] == 'm' && s[i + 1] == 's') {
            mul = 1, i += 2;
        } else if (i < n && s[i] == 's') {
            mul = 1000, i++;
        } else if (i < n && s[i] == 'm') {
            mul = 60000, i++;
        } else if (i < n && s[i] == 'h') {
            mul = 3600000, i++;
        } else {
            return -1;
        }
        if (v > (UINT64_MAX - total) / mul)
            return -1;
        total += v * mul;
    }
    *out_ms = total;
    return 0;
}

int fg_parse_size(const char *s, uint64_t *out)
{
    size_t n = strlen(s), i = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    uint64_t v, mul = 1;
    if (fg_parse_u64(s, i, UINT64_MAX >> 31, &v) != 0)
        return -1;
    const char *suf = s + i;
    if (*suf == '\0')
        mul = 1;
    else if (strcmp(suf, "Ki") == 0)
        mul = 1ULL << 10;
    else if (strcmp(suf, "Mi") == 0)
        mul = 1ULL << 20;
    else if (strcmp(suf, "Gi") == 0)
        mul = 1ULL << 30;
    else if (strcmp(suf, "k") == 0)
        mul = 1000;
    else if (strcmp(suf, "M") == 0)
        mul = 1000000;
    else if (strcmp(suf, "G") == 0)
        mul = 1000000000;
    else
        return -1;
    *out = v * mul;
    return 0;
}

int fg_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

uint64_t fg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t fg_wall_s(void)
{
    return (int64_t)time(NULL);
}

int fg_next_line(struct fg_lines *it, const char **line, size_t *llen)
{
    if (it->pos >= it->len)
        return 0;
    const char *l = it->text + it->pos;
    const char *nl = memchr(l, '\n', it->len - it->pos);
    size_t n = nl ? (size_t)(nl - l) : it->len - it->pos;
    it->pos += n + 1;
    it->lineno++;
    if (n > 0 && l[n - 1] == '\r')
        n--;
    *line = l;
    *llen = n;
    return 1;
}

void fg_random(void *buf, size_t n)
{
    if (RAND_bytes(buf, (int)n) != 1) {
        fprintf(stderr, "frontgate: the random number generator failed\n");
        abort();
    }
}

static EVP_MD *sha256_md;
static pthread_key_t scratch_key;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void sha256_init(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    if (sha256_md == NULL || pthread_key_create(&scratch_key, scratch_free) != 0) {
        fprintf(stderr, "frontgate: OpenSSL has no SHA-256\n");
        abort();
    }
}

const EVP_MD *fg_sha256_md(void)
{
    pthread_once(&sha256_once, sha256_init);
    return sha256_md;
}

EVP_MD_CTX *fg_md_scratch(void)
{
    pthread_once(&sha256_once, sha256_init);
    EVP_MD_CTX *m = pthread_getspecific(scratch_key);
    if (m == NULL) {
        m = EVP_MD_CTX_new();
        if (m == NULL || pthread_setspecific(scratch_key, m) != 0)
            oom(sizeof(void *));
    }
    return m;
}

void fg_sha256(const void *data, size_t len, unsigned char out[32])
{
    EVP_MD_CTX *m = fg_md_scratch();
    if (EVP_DigestInit_ex(m, sha256_md, NULL) != 1 || EVP_DigestUpdate(m, data, len) != 1 ||
        EVP_DigestFinal_ex(m, out, NULL) != 1)
        abort();
}

static int log_level = FG_LOG_INFO; /* atomic */

void fg_log_set_level(enum fg_log_level level)
{
    __atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

int fg_log_enabled(enum fg_log_level level)
{
    return (int)level >= __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void fg_log_write(const char *line, size_t n)
{
    /* One write per line keeps lines from different threads whole. */
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, line, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        line += w;
        n -= (size_t)w;
    }
}

static const char *level_name(enum fg_log_level l)
{
    switch (l) {
    case FG_LOG_DEBUG:
        return "debug";
    case FG_LOG_INFO:
        return "info";
    case FG_LOG_WARN:
        return "warn";
    default:
        return "error";
    }
}

static void add_time(struct fg_buf *b)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    fg_buf_printf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

void fg_log(enum fg_log_level level, const char *fmt, ...)
{
    if (!fg_log_enabled(level))
        return;
    struct fg_buf b = {0};
    add_time(&b);
    fg_buf_printf(&b, " %s ", level_name(level));
    va_list ap;
    va_start(ap, fmt);
    fg_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    fg_buf_addc(&b, '\n');
    fg_log_write(b.data, b.len);
    fg_buf_free(&b);
}

void fg_buf_logval(struct fg_buf *b, const char *s, size_t n)
{
    int bare = n > 0;
    for (size_t i = 0; i < n && bare; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
            bare = 0;
    }
    if (bare) {
        fg_buf_add(b, s, n);
        return;
    }
    fg_buf_json_str(b, s, n);
}
