/*
 * json.h - a strict JSON (RFC 8259) parser for small untrusted documents
 * (JWT headers and claims): the whole buffer becomes a read-only tree that
 * lives in one arena per document.
 *
 * Refused: anything RFC 8259 does not allow (trailing commas, NaN, Infinity,
 * leading zeros, single quotes, comments, a byte-order mark), trailing
 * garbage, nesting deeper than the caller's limit (checked on the way down,
 * so a deep bomb costs nothing), duplicate object keys, invalid UTF-8 (overlong
 * forms, UTF-16 surrogates, past U+10FFFF), unescaped control characters,
 * \u0000, lone or misordered surrogate escapes, integers outside int64 and
 * reals that overflow a double. These are jansson's rules with
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY: an integer is a number without a
 * fraction or exponent ("-0" too), a real is what strtod makes of the text
 * (underflow gives 0 or a subnormal, as strtod does). One difference: a NUL
 * byte outside a string is refused here, where jansson 2.14 skips one that
 * follows a number or a literal ("[1\0]" loads there as [1]).
 *
 * Values are borrowed from their document and valid until its last reference
 * is dropped. Every accessor accepts NULL (and a value of another type) and
 * then returns NULL, 0 or an empty answer, so lookups chain.
 */
#ifndef FG_JSON_H
#define FG_JSON_H

#include <stddef.h>
#include <stdint.h>

enum fg_json_type {
    FG_JSON_NULL,
    FG_JSON_FALSE,
    FG_JSON_TRUE,
    FG_JSON_INT,
    FG_JSON_REAL,
    FG_JSON_STRING,
    FG_JSON_ARRAY,
    FG_JSON_OBJECT,
};

enum fg_json_status {
    FG_JSON_OK,
    FG_JSON_INVALID,  /* not acceptable JSON; *why says how */
    FG_JSON_TOO_DEEP, /* arrays and objects nested deeper than max_depth */
};

struct fg_json;     /* a value */
struct fg_json_doc; /* a parsed document: its arena and root, reference-counted */

/*
 * Parses text[0..len), which need not be NUL-terminated, with at most
 * max_depth arrays and objects open at once (the outermost counts; 0 allows
 * scalars only). Recursion is as deep as the nesting, so keep max_depth
 * small. On FG_JSON_OK *doc is a new document holding one reference; else
 * *doc is NULL and *why a static string that quotes nothing from text.
 */
enum fg_json_status fg_json_parse(const char *text, size_t len, int max_depth,
                                  struct fg_json_doc **doc, const char **why);
/* Adds a reference to doc (thread-safe); returns doc. */
struct fg_json_doc *fg_json_ref(struct fg_json_doc *doc);
/* Drops a reference (thread-safe); the last one frees the document. NULL is fine. */
void fg_json_free(struct fg_json_doc *doc);
/* The document's top-level value; NULL for a NULL doc. */
const struct fg_json *fg_json_root(const struct fg_json_doc *doc);

/* v's type; FG_JSON_NULL for a NULL v too (use fg_json_is to tell them apart). */
enum fg_json_type fg_json_type(const struct fg_json *v);
/* 1 when v is not NULL and has type t; else 0. */
int fg_json_is(const struct fg_json *v, enum fg_json_type t);
/* 1 when v is an integer or a real. */
int fg_json_is_number(const struct fg_json *v);

/* A string's bytes, NUL-terminated (JSON forbids NUL in strings), and its length in *len if len
 * is not NULL; NULL (and 0) when v is not a string. */
const char *fg_json_string(const struct fg_json *v, size_t *len);
/* An integer's value; 0 for anything else. */
int64_t fg_json_int(const struct fg_json *v);
/* A number's value as a double (integers converted); 0 for anything else. */
double fg_json_real(const struct fg_json *v);
/* A number as whole seconds: integers as they are, reals truncated toward zero and clamped to
 * int64. 0 and *secs set when v is a number; -1 otherwise. */
int fg_json_seconds(const struct fg_json *v, int64_t *secs);

/* Elements of an array or members of an object; 0 for anything else. */
size_t fg_json_len(const struct fg_json *v);
/* Element i of an array, or NULL (not an array, or i out of range). */
const struct fg_json *fg_json_at(const struct fg_json *arr, size_t i);
/* Member i of an object, in document order: its value, and its key (NUL-terminated) in *key and
 * key length in *klen when not NULL; NULL when obj is not an object or i is out of range. */
const struct fg_json *fg_json_member(const struct fg_json *obj, size_t i, const char **key,
                                     size_t *klen);
/* The value of obj's member named key (NUL-terminated), or NULL. A linear scan: objects here
 * are small. */
const struct fg_json *fg_json_get(const struct fg_json *obj, const char *key);

#endif
