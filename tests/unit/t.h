/*
 * t.h - a minimal TAP producer for the unit tests. Each TEST() is one TAP
 * test point; CHECK failures inside it are printed as diagnostics.
 */
#ifndef FG_T_H
#define FG_T_H

#include <stdio.h>
#include <string.h>

static int t_failed_total, t_count, t_cur_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("#   %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                    \
            t_cur_failed++;                                                                        \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *t_a = (a), *t_b = (b);                                                         \
        if (t_a == NULL || t_b == NULL || strcmp(t_a, t_b) != 0) {                                 \
            printf("#   %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, t_a ? t_a : "(null)",      \
                   t_b ? t_b : "(null)");                                                          \
            t_cur_failed++;                                                                        \
        }                                                                                          \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *t_h = (hay), *t_n = (needle);                                                  \
        if (t_h == NULL || strstr(t_h, t_n) == NULL) {                                             \
            printf("#   %s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,              \
                   t_h ? t_h : "(null)", t_n);                                                     \
            t_cur_failed++;                                                                        \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        t_cur_failed = 0;                                                                          \
        fn();                                                                                      \
        t_count++;                                                                                 \
        printf("%s %d - %s\n", t_cur_failed ? "not ok" : "ok", t_count, #fn);                      \
        if (t_cur_failed)                                                                          \
            t_failed_total++;                                                                      \
    } while (0)

#define DONE()                                                                                     \
    do {                                                                                           \
        printf("1..%d\n", t_count);                                                                \
        return t_failed_total ? 1 : 0;                                                             \
    } while (0)

#endif
