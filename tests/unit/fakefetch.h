/*
 * fakefetch.h - a struct fg_fetcher for unit tests, driven by hand on the
 * test's own thread: fetch() records the request and the test answers it
 * later; post() and after() queue tasks that run only when the test says
 * (fake_run, fake_advance); the clock moves only with fake_advance.
 * Single-threaded: nothing here locks.
 */
#ifndef FG_FAKEFETCH_H
#define FG_FAKEFETCH_H

#include "auth/authn.h"
#include "auth/fetch.h"
#include "config/base.h"

#include <stdlib.h>
#include <string.h>

#define FAKE_MAX_DELAYS 256

struct fake_fetch {
    char *method, *url, *accept;
    SSL_CTX *tls;
    uint64_t timeout_ms;
    size_t max_response;
    fg_fetch_done done;
    void *arg;
};

struct fake_task {
    int timer; /* 0: posted, runs on fake_run */
    uint64_t at;
    uint64_t seq;
    fg_task_fn fn;
    void *arg;
};

struct fake {
    struct fg_fetcher f;
    uint64_t now;
    struct fake_fetch *fetches;
    size_t nfetches, fcap;
    struct fake_task *tasks;
    size_t ntasks, tcap;
    uint64_t seq;
    uint64_t delays[FAKE_MAX_DELAYS]; /* every after() delay, in call order */
    size_t ndelays;
    unsigned long started; /* fetch() calls so far */
};

static inline void fake_fetch_fn(struct fg_fetcher *f, const struct fg_fetch_req *req,
                                 fg_fetch_done done, void *arg)
{
    struct fake *fk = (struct fake *)f;
    fg_grow(&fk->fetches, &fk->fcap, fk->nfetches + 1, sizeof(struct fake_fetch));
    struct fake_fetch *x = &fk->fetches[fk->nfetches++];
    x->method = fg_strdup(req->method);
    x->url = fg_strdup(req->url);
    x->accept = req->accept ? fg_strdup(req->accept) : NULL;
    x->tls = req->tls;
    x->timeout_ms = req->timeout_ms;
    x->max_response = req->max_response;
    x->done = done;
    x->arg = arg;
    fk->started++;
}

static inline void fake_queue(struct fake *fk, int timer, uint64_t at, fg_task_fn fn, void *arg)
{
    fg_grow(&fk->tasks, &fk->tcap, fk->ntasks + 1, sizeof(struct fake_task));
    fk->tasks[fk->ntasks++] = (struct fake_task){timer, at, fk->seq++, fn, arg};
}

static inline void fake_after_fn(struct fg_fetcher *f, uint64_t ms, fg_task_fn fn, void *arg)
{
    struct fake *fk = (struct fake *)f;
    if (fk->ndelays < FAKE_MAX_DELAYS)
        fk->delays[fk->ndelays++] = ms;
    fake_queue(fk, 1, fk->now + ms, fn, arg);
}

static inline void fake_post_fn(struct fg_fetcher *f, fg_task_fn fn, void *arg)
{
    struct fake *fk = (struct fake *)f;
    fake_queue(fk, 0, fk->now, fn, arg);
}

static inline uint64_t fake_now_fn(struct fg_fetcher *f)
{
    return ((struct fake *)f)->now;
}

static inline void fake_init(struct fake *fk, uint64_t now)
{
    memset(fk, 0, sizeof(*fk));
    fk->f.fetch = fake_fetch_fn;
    fk->f.after = fake_after_fn;
    fk->f.post = fake_post_fn;
    fk->f.now_ms = fake_now_fn;
    fk->now = now;
}

/* The next task to run: posted ones first, then timers by due time; ntasks when none. */
static inline size_t fake_pick(const struct fake *fk, int any_time)
{
    size_t best = fk->ntasks;
    for (size_t i = 0; i < fk->ntasks; i++) {
        const struct fake_task *t = &fk->tasks[i], *b = &fk->tasks[best];
        if (t->timer && !any_time && t->at > fk->now)
            continue;
        if (best == fk->ntasks || t->timer < b->timer ||
            (t->timer == b->timer && (t->at < b->at || (t->at == b->at && t->seq < b->seq))))
            best = i;
    }
    return best;
}

/* Removes and runs one task that is due (any timer when any_time); 0 when there is none. */
static inline int fake_step(struct fake *fk, int any_time)
{
    size_t i = fake_pick(fk, any_time);
    if (i == fk->ntasks)
        return 0;
    struct fake_task t = fk->tasks[i];
    memmove(&fk->tasks[i], &fk->tasks[i + 1], (fk->ntasks - i - 1) * sizeof(t));
    fk->ntasks--;
    t.fn(t.arg);
    return 1;
}

/* Runs posted tasks (and timers already due) until none is left. */
static inline void fake_run(struct fake *fk)
{
    while (fake_step(fk, 0))
        ;
}

/* Moves the clock by ms, running timers as they come due, then posted tasks. */
static inline void fake_advance(struct fake *fk, uint64_t ms)
{
    uint64_t end = fk->now + ms;
    for (;;) {
        fake_run(fk);
        uint64_t next = end + 1;
        for (size_t i = 0; i < fk->ntasks; i++)
            if (fk->tasks[i].timer && fk->tasks[i].at < next)
                next = fk->tasks[i].at;
        if (next > end)
            break;
        fk->now = next;
    }
    fk->now = end;
    fake_run(fk);
}

/* Timers queued and not yet run. */
static inline size_t fake_timers(const struct fake *fk)
{
    size_t n = 0;
    for (size_t i = 0; i < fk->ntasks; i++)
        n += fk->tasks[i].timer;
    return n;
}

static inline uint64_t fake_last_delay(const struct fake *fk)
{
    return fk->ndelays ? fk->delays[fk->ndelays - 1] : 0;
}

/* The URL of pending fetch i, or "" when there is none. */
static inline const char *fake_url(const struct fake *fk, size_t i)
{
    return i < fk->nfetches ? fk->fetches[i].url : "";
}

/* Completes pending fetch i with an HTTP answer (status 0: failed, body = error). */
static inline void fake_answer(struct fake *fk, size_t i, int status, const char *body,
                               const char *cache_control)
{
    if (i >= fk->nfetches)
        abort();
    struct fake_fetch x = fk->fetches[i];
    memmove(&fk->fetches[i], &fk->fetches[i + 1], (fk->nfetches - i - 1) * sizeof(x));
    fk->nfetches--;
    /* The body lives in a private copy that dies after the callback, as the contract says. */
    char *copy = fg_strdup(body ? body : "");
    struct fg_fetch_resp r = {0};
    r.status = status;
    r.error = status == 0 ? copy : NULL;
    r.body = status == 0 ? "" : copy;
    r.body_len = status == 0 ? 0 : strlen(copy);
    r.cache_control = cache_control;
    x.done(x.arg, &r);
    OPENSSL_cleanse(copy, strlen(copy));
    free(copy);
    free(x.method);
    free(x.url);
    free(x.accept);
}

/* Completes the oldest pending fetch. */
static inline void fake_answer0(struct fake *fk, int status, const char *body,
                                const char *cache_control)
{
    fake_answer(fk, 0, status, body, cache_control);
}

/*
 * For teardown, after every user released its providers: fails every
 * fetch and runs every task, due or not, until nothing is left.
 */
static inline void fake_drain(struct fake *fk)
{
    for (int round = 0; round < 1000 && (fk->nfetches || fk->ntasks); round++) {
        while (fk->nfetches)
            fake_answer(fk, 0, 0, "test over", NULL);
        fake_step(fk, 1);
    }
    free(fk->fetches);
    free(fk->tasks);
    fk->fetches = NULL;
    fk->tasks = NULL;
    fk->fcap = fk->tcap = 0;
}

/* A parked request's stand-in: counts how often it was posted and keeps the last status. */
struct fake_waiter {
    struct fg_authn_waiter w; /* first: post() casts back */
    int posts;
    enum fg_authn_status status;
};

static inline void fake_waiter_post(struct fg_authn_waiter *w)
{
    struct fake_waiter *r = (struct fake_waiter *)w;
    r->posts++;
    r->status = w->result.status;
}

static inline void fake_waiter_init(struct fake_waiter *r, int no_park)
{
    memset(r, 0, sizeof(*r));
    r->w.post = fake_waiter_post;
    r->w.no_park = no_park;
}

#endif
