/*
 * json.c - a strict JSON parser into a read-only tree (contract in json.h).
 *
 * One recursive-descent pass. A container's children are parsed onto a
 * scratch stack (on the C stack while small) and copied into the arena, all
 * together, when the container closes, so every array and object is one
 * contiguous run of values; an object's run alternates key and value. The
 * arena is the document's own allocation plus, when that is full, a chain of
 * blocks that double in size: a JWT claims set takes one malloc.
 */
#include "json.h"

#include "../config/base.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Recursion bound whatever the caller asks: a level takes a few hundred bytes of stack. */
#define DEPTH_CAP   1024
#define LOCAL_SLOTS 64 /* scratch values before the stack moves to the heap */
#define SMALL_OBJ   32 /* objects up to this size are checked for duplicates without sorting */
#define NUM_BUF     64 /* reals shorter than this are copied to the C stack for strtod */

struct fg_json {
    uint32_t type;
    uint32_t n; /* string: bytes; array: elements; object: members */
    union {
        int64_t i;
        double d;
        const char *s;
        const struct fg_json *items; /* object: key, value, key, value... */
    } u;
};

struct block {
    struct block *next;
};

struct fg_json_doc {
    atomic_int refs;
    struct fg_json root;
    struct block *more; /* arena blocks after the first, which follows this struct */
};

struct parser {
    const unsigned char *p, *end;
    int depth, max_depth;
    enum fg_json_status st;
    const char *why;
    struct fg_json_doc *doc;
    char *cur, *lim; /* free arena space */
    size_t next_size;
    struct fg_json *stack;
    size_t top, cap;
    struct fg_json local[LOCAL_SLOTS];
};

static int value(struct parser *ps, struct fg_json *v);

static int fail(struct parser *ps, const char *why)
{
    if (ps->st == FG_JSON_OK) {
        ps->st = FG_JSON_INVALID;
        ps->why = why;
    }
    return -1;
}

/* ---- memory ---- */

static void grow_arena(struct parser *ps, size_t n)
{
    size_t size = ps->next_size > n ? ps->next_size : n;
    struct block *b = fg_malloc(sizeof(*b) + size);

    b->next = ps->doc->more;
    ps->doc->more = b;
    ps->cur = (char *)(b + 1);
    ps->lim = ps->cur + size;
    ps->next_size = size * 2;
}

/* n bytes of arena, aligned for values (align 8) or not (align 1). */
static void *take_aligned(struct parser *ps, size_t n, size_t align)
{
    size_t pad = (size_t)(-(uintptr_t)ps->cur & (align - 1));
    void *p;

    if (n > (size_t)(ps->lim - ps->cur) || pad > (size_t)(ps->lim - ps->cur) - n)
        grow_arena(ps, n);
    else
        ps->cur += pad;
    p = ps->cur;
    ps->cur += n;
    return p;
}

static void *take(struct parser *ps, size_t n)
{
    return take_aligned(ps, n, 8);
}

static char *take_bytes(struct parser *ps, size_t n)
{
    return take_aligned(ps, n, 1);
}

static void push(struct parser *ps, const struct fg_json *v)
{
    if (ps->top == ps->cap) {
        struct fg_json *s = fg_malloc(2 * ps->cap * sizeof(*s));
        memcpy(s, ps->stack, ps->top * sizeof(*s));
        if (ps->stack != ps->local)
            free(ps->stack);
        ps->stack = s;
        ps->cap *= 2;
    }
    ps->stack[ps->top++] = *v;
}

/* Moves the scratch values from base up into the arena; returns them. */
static const struct fg_json *pop_to_arena(struct parser *ps, size_t base)
{
    size_t n = ps->top - base;
    struct fg_json *items = NULL;

    if (n > 0) {
        items = take(ps, n * sizeof(*items));
        memcpy(items, ps->stack + base, n * sizeof(*items));
    }
    ps->top = base;
    return items;
}

/* ---- lexing ---- */

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* ---- strings ---- */

/* 1 for the bytes that stand for themselves in a string: printable ASCII but '"' and '\'. */
static const unsigned char plain_bytes[256] = {
    [0x20 ... 0x21] = 1, /* '"' is 0x22 */
    [0x23 ... 0x5b] = 1, /* '\' is 0x5c */
    [0x5d ... 0x7f] = 1,
};

static int plain(unsigned char c)
{
    return plain_bytes[c];
}

/* The length of the valid UTF-8 sequence at s (*s >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end)
{
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000}; /* by length: else overlong */
    size_t n = *s >= 0xF0 ? 4 : *s >= 0xE0 ? 3 : 2;
    uint32_t cp = *s & (0x3Fu >> (n - 1));
    int ok = *s >= 0xC2 && *s <= 0xF4 && (size_t)(end - s) >= n;

    for (size_t i = 1; ok && i < n; i++) {
        ok = (s[i] & 0xC0) == 0x80;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    /* Overlong forms, UTF-16 surrogates, past U+10FFFF. */
    ok = ok && cp >= least[n] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    return ok ? n : 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    static const unsigned char lead[] = {0, 0x00, 0xC0, 0xE0, 0xF0};
    size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;

    for (size_t i = n - 1; i > 0; i--, cp >>= 6)
        o[i] = (char)(0x80 | (cp & 0x3F));
    o[0] = (char)(lead[n] | cp);
    return n;
}

/* The value of 4 hex digits at s (end - s >= 4), or -1. */
static long hex4(const unsigned char *s)
{
    long v = 0;

    for (int i = 0; i < 4 && v >= 0; i++) {
        unsigned char c = s[i];
        int d = is_digit(c)            ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        v = d < 0 ? -1 : v << 4 | d;
    }
    return v;
}

static int high_surrogate(long u)
{
    return u >= 0xD800 && u <= 0xDBFF;
}

static int low_surrogate(long u)
{
    return u >= 0xDC00 && u <= 0xDFFF;
}

/*
 * The code point of the \u escape at *s (s[0] == '\\', s[1] == 'u'), a
 * surrogate pair taken whole; advances *s past it. -1 with why on error.
 */
static long u_escape(struct parser *ps, const unsigned char **s, const unsigned char *end)
{
    const unsigned char *e = *s;
    long cp = end - e >= 6 ? hex4(e + 2) : -1, lo = -1;

    if (high_surrogate(cp) && end - e >= 12 && e[6] == '\\' && e[7] == 'u')
        lo = hex4(e + 8);
    if (cp < 0)
        cp = fail(ps, "invalid \\u escape");
    else if (cp == 0)
        cp = fail(ps, "\\u0000 is not allowed in strings");
    else if (low_surrogate(cp) || (high_surrogate(cp) && !low_surrogate(lo)))
        cp = fail(ps, "lone or misordered UTF-16 surrogate");
    else if (high_surrogate(cp))
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    *s += lo >= 0 ? 12 : 6;
    return cp;
}

static const unsigned char *one_char_escape(unsigned char c)
{
    static const unsigned char map[][2] = {{'"', '"'},  {'\\', '\\'}, {'/', '/'},  {'b', '\b'},
                                           {'f', '\f'}, {'n', '\n'},  {'r', '\r'}, {'t', '\t'}};

    for (size_t i = 0; i < FG_ARRAY_LEN(map); i++)
        if (map[i][0] == c)
            return &map[i][1];
    return NULL;
}

/*
 * Decodes the string body s..end (end is the closing quote) into o, from the
 * first byte that is not plain ASCII on; returns the bytes written or -1.
 */
static long unescape(struct parser *ps, const unsigned char *s, const unsigned char *end, char *o)
{
    char *start = o;
    int rc = 0;

    while (rc == 0 && s < end) {
        const unsigned char *one;
        size_t n;
        long cp;
        if (plain(*s)) {
            *o++ = (char)*s++;
        } else if (*s >= 0x80) {
            n = utf8_seq(s, end);
            rc = n ? 0 : fail(ps, "invalid UTF-8 in string");
            memcpy(o, s, n);
            o += n, s += n;
        } else if (*s < 0x20) {
            rc = fail(ps, "control character in string");
        } else if (end - s >= 2 && s[1] == 'u') {
            cp = u_escape(ps, &s, end);
            rc = cp < 0 ? -1 : 0;
            o += cp < 0 ? 0 : put_utf8(o, (uint32_t)cp);
        } else if (end - s >= 2 && (one = one_char_escape(s[1])) != NULL) {
            *o++ = (char)*one;
            s += 2;
        } else {
            rc = fail(ps, "invalid escape in string");
        }
    }
    return rc == 0 ? o - start : -1;
}

/* The end of the run from s of bytes that stand for themselves (valid UTF-8 included). */
static const unsigned char *plain_run(const unsigned char *s, const unsigned char *end)
{
    size_t n = 1;

    while (s < end && (plain(*s) || (*s >= 0x80 && (n = utf8_seq(s, end)) > 0)))
        s += plain(*s) ? 1 : n;
    return s;
}

/* Where the string body from s closes (its '"'), or NULL. */
static const unsigned char *string_end(const unsigned char *s, const unsigned char *end)
{
    while (s < end && *s != '"')
        s += *s == '\\' && end - s > 1 ? 2 : 1;
    return s < end ? s : NULL;
}

/* The plain run is copied as it is; from its end on, the body goes through unescape. */
static int string(struct parser *ps, struct fg_json *v)
{
    const unsigned char *s = ps->p + 1, *q = plain_run(s, ps->end);
    const unsigned char *close = q < ps->end && *q == '"' ? q : string_end(q, ps->end);
    size_t n = (size_t)(q - s);
    long u = 0;
    char *o;
    int rc = -1;

    if (close == NULL) {
        fail(ps, "unterminated string");
    } else {
        o = take_bytes(ps, (size_t)(close - s) + 1);
        memcpy(o, s, n);
        if (q < close)
            u = unescape(ps, q, close, o + n);
        if (u >= 0) {
            o[n + (size_t)u] = '\0';
            v->type = FG_JSON_STRING;
            v->n = (uint32_t)(n + (size_t)u);
            v->u.s = o;
            ps->p = close + 1;
            rc = 0;
        }
    }
    return rc;
}

/* ---- numbers ---- */

/*
 * The digits d[0..n) with sign neg as an int64. Like jansson, an integer
 * that does not fit is an error, not a real.
 */
static int integer(struct parser *ps, const unsigned char *d, size_t n, int neg, struct fg_json *v)
{
    uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
    int ok = 1;

    for (size_t i = 0; ok && i < n; i++) {
        unsigned dig = (unsigned)(d[i] - '0');
        ok = acc <= (lim - dig) / 10;
        acc = acc * 10 + dig;
    }
    v->type = FG_JSON_INT;
    v->u.i = neg ? (acc == lim ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
    return ok ? 0 : fail(ps, "integer out of range");
}

/* The real in s[0..n) (JSON number syntax, checked), as strtod reads it in the C locale. */
static int real(struct parser *ps, const unsigned char *s, size_t n, struct fg_json *v)
{
    char local[NUM_BUF], *buf = n < sizeof(local) ? local : take_bytes(ps, n + 1), *end;
    int rc = 0;

    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    v->type = FG_JSON_REAL;
    v->u.d = strtod(buf, &end);
    if (end != buf + n)
        rc = fail(ps, "invalid number");
    else if (errno == ERANGE && isinf(v->u.d))
        rc = fail(ps, "real number overflow"); /* underflow gives 0 or a subnormal, as in jansson */
    return rc;
}

/* Consumes digits; how many. */
static size_t digits(struct parser *ps)
{
    const unsigned char *s = ps->p;

    while (ps->p < ps->end && is_digit(*ps->p))
        ps->p++;
    return (size_t)(ps->p - s);
}

/* Consumes c if it is next; whether it was. */
static int eat(struct parser *ps, unsigned char c)
{
    int ok = ps->p < ps->end && *ps->p == c;

    ps->p += ok;
    return ok;
}

/* -? int frac? exp?: an integer when there is neither fraction nor exponent. */
static int number(struct parser *ps, struct fg_json *v)
{
    const unsigned char *s = ps->p, *d = s + (*s == '-');
    size_t nd, nf = 1, ne = 1;
    int frac, ex, rc;

    ps->p = d;
    nd = digits(ps);
    if ((frac = eat(ps, '.')) != 0)
        nf = digits(ps);
    if ((ex = eat(ps, 'e') || eat(ps, 'E')) != 0) {
        if (!eat(ps, '+'))
            eat(ps, '-');
        ne = digits(ps);
    }
    if (nd == 0 || nf == 0 || ne == 0)
        rc = fail(ps, "invalid number");
    else if (nd > 1 && *d == '0')
        rc = fail(ps, "leading zero in number");
    else if (frac || ex)
        rc = real(ps, s, (size_t)(ps->p - s), v);
    else
        rc = integer(ps, d, nd, *s == '-', v);
    return rc;
}

/* ---- literals and containers ---- */

static int literal(struct parser *ps, struct fg_json *v)
{
    static const struct {
        const char *text;
        size_t len;
        enum fg_json_type type;
    } lits[] = {{"true", 4, FG_JSON_TRUE}, {"false", 5, FG_JSON_FALSE}, {"null", 4, FG_JSON_NULL}};
    size_t left = (size_t)(ps->end - ps->p);
    int rc = -1;

    for (size_t i = 0; rc < 0 && i < FG_ARRAY_LEN(lits); i++) {
        if (left >= lits[i].len && memcmp(ps->p, lits[i].text, lits[i].len) == 0) {
            v->type = lits[i].type;
            ps->p += lits[i].len;
            rc = 0;
        }
    }
    return rc == 0 ? 0 : fail(ps, "unexpected character");
}

/* After a container's element: ',' (*more = 1) or close (*more = 0); else -1 with why. */
static int separator(struct parser *ps, unsigned char close, const char *why, int *more)
{
    skip_ws(ps);
    *more = eat(ps, ',');
    return *more || eat(ps, close) ? 0 : fail(ps, why);
}

static int array(struct parser *ps, struct fg_json *v)
{
    size_t base = ps->top;
    struct fg_json item;
    int rc = 0, more;

    ps->p++;
    skip_ws(ps);
    more = !eat(ps, ']');
    while (rc == 0 && more) {
        rc = value(ps, &item);
        if (rc == 0) {
            push(ps, &item);
            rc = separator(ps, ']', "expected ',' or ']' in array", &more);
        }
    }
    v->type = FG_JSON_ARRAY;
    v->n = (uint32_t)(ps->top - base);
    v->u.items = pop_to_arena(ps, base);
    return rc;
}

static int same_key(const struct fg_json *a, const struct fg_json *b)
{
    return a->n == b->n && (a->n == 0 || a->u.s[0] == b->u.s[0]) &&
           memcmp(a->u.s, b->u.s, a->n) == 0;
}

static int key_order(const void *a, const void *b)
{
    const struct fg_json *x = *(const struct fg_json *const *)a;
    const struct fg_json *y = *(const struct fg_json *const *)b;
    int c = memcmp(x->u.s, y->u.s, x->n < y->n ? x->n : y->n);

    return c != 0 ? c : (x->n > y->n) - (x->n < y->n);
}

/* A key's bit in a 256-bit filter: length, first and last byte. */
static unsigned key_bit(const struct fg_json *k)
{
    const unsigned char *s = (const unsigned char *)k->u.s;

    return (k->n * 7 + (k->n ? s[0] * 31u + s[k->n - 1] : 0)) & 255;
}

/*
 * 1 when two of the n members (key, value pairs) share a key. Small objects:
 * a key is compared with the earlier ones only when its filter bit is taken
 * (a JWT's claims almost never); large ones are sorted, so a crafted object
 * costs O(n log n) whatever its keys.
 */
static int has_duplicate(struct parser *ps, const struct fg_json *kv, size_t n)
{
    const struct fg_json **keys;
    uint64_t seen[4] = {0};
    int dup = 0;

    if (n <= SMALL_OBJ) {
        for (size_t i = 0; !dup && i < n; i++) {
            unsigned bit = key_bit(&kv[2 * i]);
            for (size_t j = 0; !dup && (seen[bit / 64] >> (bit % 64) & 1) && j < i; j++)
                dup = same_key(&kv[2 * i], &kv[2 * j]);
            seen[bit / 64] |= (uint64_t)1 << (bit % 64);
        }
    } else {
        keys = take(ps, n * sizeof(*keys));
        for (size_t i = 0; i < n; i++)
            keys[i] = &kv[2 * i];
        qsort(keys, n, sizeof(*keys), key_order);
        for (size_t i = 1; !dup && i < n; i++)
            dup = same_key(keys[i], keys[i - 1]);
    }
    return dup;
}

static int member(struct parser *ps)
{
    struct fg_json key, val;
    int rc = 0;

    skip_ws(ps);
    if (ps->p == ps->end || *ps->p != '"')
        rc = fail(ps, "expected a string key in object");
    if (rc == 0 && (rc = string(ps, &key)) == 0) {
        skip_ws(ps);
        rc = eat(ps, ':') ? 0 : fail(ps, "expected ':' in object");
    }
    if (rc == 0 && (rc = value(ps, &val)) == 0) {
        push(ps, &key);
        push(ps, &val);
    }
    return rc;
}

static int object(struct parser *ps, struct fg_json *v)
{
    size_t base = ps->top;
    int rc = 0, more;

    ps->p++;
    skip_ws(ps);
    more = !eat(ps, '}');
    while (rc == 0 && more) {
        rc = member(ps);
        if (rc == 0)
            rc = separator(ps, '}', "expected ',' or '}' in object", &more);
    }
    if (rc == 0 && has_duplicate(ps, ps->stack + base, (ps->top - base) / 2))
        rc = fail(ps, "duplicate object key");
    v->type = FG_JSON_OBJECT;
    v->n = (uint32_t)((ps->top - base) / 2);
    v->u.items = pop_to_arena(ps, base);
    return rc;
}

static int container(struct parser *ps, struct fg_json *v)
{
    int rc;

    if (++ps->depth > ps->max_depth) {
        ps->st = FG_JSON_TOO_DEEP;
        ps->why = "nested too deeply";
        rc = -1;
    } else {
        rc = *ps->p == '[' ? array(ps, v) : object(ps, v);
    }
    ps->depth--;
    return rc;
}

/* One value after optional whitespace into *v. */
static int value(struct parser *ps, struct fg_json *v)
{
    int rc;

    skip_ws(ps);
    if (ps->p == ps->end)
        rc = fail(ps, "unexpected end of input");
    else if (*ps->p == '[' || *ps->p == '{')
        rc = container(ps, v);
    else if (*ps->p == '"')
        rc = string(ps, v);
    else if (*ps->p == '-' || is_digit(*ps->p))
        rc = number(ps, v);
    else
        rc = literal(ps, v);
    return rc;
}

/* ---- documents ---- */

/* A JWT claims set of n bytes needs about 3n of arena; more comes in blocks. */
static size_t first_arena(size_t len)
{
    return len < 4096 ? 3 * len + 256 : len + 8192;
}

static void doc_destroy(struct fg_json_doc *doc)
{
    struct block *b = doc->more, *next;

    for (; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(doc);
}

enum fg_json_status fg_json_parse(const char *text, size_t len, int max_depth,
                                  struct fg_json_doc **doc, const char **why)
{
    size_t first = first_arena(len);
    struct parser ps = {.p = (const unsigned char *)text, .end = (const unsigned char *)text + len};

    ps.max_depth = max_depth < DEPTH_CAP ? max_depth : DEPTH_CAP;
    ps.stack = ps.local;
    ps.cap = LOCAL_SLOTS;
    ps.doc = fg_malloc(sizeof(*ps.doc) + first);
    atomic_init(&ps.doc->refs, 1);
    ps.doc->more = NULL;
    ps.cur = (char *)(ps.doc + 1);
    ps.lim = ps.cur + first;
    ps.next_size = 2 * first;
    if (len > UINT32_MAX) {
        fail(&ps, "document too large");
    } else if (value(&ps, &ps.doc->root) == 0) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            fail(&ps, "unexpected text after the value");
    }
    if (ps.stack != ps.local)
        free(ps.stack);
    if (ps.st != FG_JSON_OK) {
        doc_destroy(ps.doc);
        ps.doc = NULL;
        *why = ps.why;
    }
    *doc = ps.doc;
    return ps.st;
}

struct fg_json_doc *fg_json_ref(struct fg_json_doc *doc)
{
    atomic_fetch_add_explicit(&doc->refs, 1, memory_order_relaxed);
    return doc;
}

void fg_json_free(struct fg_json_doc *doc)
{
    if (doc != NULL && atomic_fetch_sub_explicit(&doc->refs, 1, memory_order_acq_rel) == 1)
        doc_destroy(doc);
}

const struct fg_json *fg_json_root(const struct fg_json_doc *doc)
{
    return doc != NULL ? &doc->root : NULL;
}

/* ---- accessors ---- */

enum fg_json_type fg_json_type(const struct fg_json *v)
{
    return v != NULL ? (enum fg_json_type)v->type : FG_JSON_NULL;
}

int fg_json_is(const struct fg_json *v, enum fg_json_type t)
{
    return v != NULL && v->type == (uint32_t)t;
}

int fg_json_is_number(const struct fg_json *v)
{
    return fg_json_is(v, FG_JSON_INT) || fg_json_is(v, FG_JSON_REAL);
}

const char *fg_json_string(const struct fg_json *v, size_t *len)
{
    int ok = fg_json_is(v, FG_JSON_STRING);

    if (len != NULL)
        *len = ok ? v->n : 0;
    return ok ? v->u.s : NULL;
}

int64_t fg_json_int(const struct fg_json *v)
{
    return fg_json_is(v, FG_JSON_INT) ? v->u.i : 0;
}

double fg_json_real(const struct fg_json *v)
{
    return fg_json_is(v, FG_JSON_REAL) ? v->u.d : (double)fg_json_int(v);
}

int fg_json_seconds(const struct fg_json *v, int64_t *secs)
{
    double d = fg_json_real(v);
    int rc = fg_json_is_number(v) ? 0 : -1;

    if (fg_json_is(v, FG_JSON_INT))
        *secs = v->u.i;
    else if (rc == 0)
        *secs = d >= 0x1p63 ? INT64_MAX : d < -0x1p63 ? INT64_MIN : (int64_t)d;
    return rc;
}

size_t fg_json_len(const struct fg_json *v)
{
    return fg_json_is(v, FG_JSON_ARRAY) || fg_json_is(v, FG_JSON_OBJECT) ? v->n : 0;
}

const struct fg_json *fg_json_at(const struct fg_json *arr, size_t i)
{
    return fg_json_is(arr, FG_JSON_ARRAY) && i < arr->n ? &arr->u.items[i] : NULL;
}

const struct fg_json *fg_json_member(const struct fg_json *obj, size_t i, const char **key,
                                     size_t *klen)
{
    const struct fg_json *k =
        fg_json_is(obj, FG_JSON_OBJECT) && i < obj->n ? &obj->u.items[2 * i] : NULL;

    if (key != NULL)
        *key = k != NULL ? k->u.s : NULL;
    if (klen != NULL)
        *klen = k != NULL ? k->n : 0;
    return k != NULL ? k + 1 : NULL;
}

const struct fg_json *fg_json_get(const struct fg_json *obj, const char *key)
{
    size_t n = fg_json_is(obj, FG_JSON_OBJECT) ? obj->n : 0, klen = strlen(key);
    const struct fg_json *v = NULL;

    for (size_t i = 0; v == NULL && i < n; i++) {
        const struct fg_json *k = &obj->u.items[2 * i];
        if (k->n == klen && memcmp(k->u.s, key, klen) == 0)
            v = k + 1;
    }
    return v;
}
