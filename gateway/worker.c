/*
 * worker.c - small pieces of a worker's machinery: the queue that brings
 * parked authentications back from other threads, and eager socket writes.
 */
#include "conn.h"
#include "worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <sys/uio.h>
#include <unistd.h>

void fg_worker_post_waiter(struct fg_authn_waiter *w)
{
    struct fg_worker *wk = w->owner;
    pthread_mutex_lock(&wk->authq_lock);
    w->post_next = wk->authq;
    wk->authq = w;
    pthread_mutex_unlock(&wk->authq_lock);
    fg_worker_notify(wk);
}

void fg_worker_notify(struct fg_worker *w)
{
    uint64_t one = 1;
    while (write(w->mailbox_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

void fg_worker_run_waiters(struct fg_worker *wk)
{
    pthread_mutex_lock(&wk->authq_lock);
    struct fg_authn_waiter *list = wk->authq, *fifo = NULL;
    wk->authq = NULL;
    pthread_mutex_unlock(&wk->authq_lock);
    while (list) { /* the queue is LIFO; answer in arrival order */
        struct fg_authn_waiter *next = list->post_next;
        list->post_next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo) {
        struct fg_authn_waiter *next = fifo->post_next;
        fifo->done(fifo);
        fifo = next;
    }
}

void fg_chunk_head(struct evbuffer *out, size_t n)
{
    char line[20];
    size_t len = fg_fmt_hex(line, n);
    line[len++] = '\r';
    line[len++] = '\n';
    evbuffer_add(out, line, len);
}

int fg_io_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    /* A socket bufferevent freezes the start of its output so only it drains it; we
     * drain it the same way it would, then put the freeze back. */
    evbuffer_unfreeze(out, 1);
    while (evbuffer_get_length(out) > 0) {
        if (evbuffer_write(out, fd) <= 0)
            break; /* EAGAIN, or an error the bufferevent will report */
    }
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) == 0)
        return 1;
    bufferevent_enable(bev, EV_WRITE);
    return 0;
}

#define READ_CHUNK 16384

static void reader_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fg_reader *r = arg;
    if (what & EV_TIMEOUT) {
        r->on_close(r->arg, BEV_EVENT_TIMEOUT | BEV_EVENT_READING);
        return;
    }
    struct evbuffer *in = bufferevent_get_input(r->bev);
    struct evbuffer_iovec v[2];
    /* A socket bufferevent freezes the end of its input so only it fills it; we fill it
     * the same way, then put the freeze back. */
    evbuffer_unfreeze(in, 0);
    int n = evbuffer_reserve_space(in, READ_CHUNK, v, 2);
    ssize_t got = n > 0 ? readv(fd, (struct iovec *)v, n) : -1;
    int err = errno;
    if (got > 0) {
        size_t left = (size_t)got;
        for (int i = 0; i < n; i++) {
            v[i].iov_len = left < v[i].iov_len ? left : v[i].iov_len;
            left -= v[i].iov_len;
        }
        evbuffer_commit_space(in, v, n);
    }
    evbuffer_freeze(in, 0);
    if (got > 0) {
        if (evbuffer_get_length(in) >= r->high)
            event_del(r->ev); /* full: fg_reader_set re-arms once it drained */
        r->on_data(r->arg);
    } else if (got == 0) {
        r->on_close(r->arg, BEV_EVENT_EOF | BEV_EVENT_READING);
    } else if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
        errno = err;
        r->on_close(r->arg, BEV_EVENT_ERROR | BEV_EVENT_READING);
    }
}

void fg_reader_init(struct fg_reader *r, struct event_base *base, struct bufferevent *bev,
                    void (*on_data)(void *), void (*on_close)(void *, short), void *arg,
                    size_t high)
{
    r->bev = bev;
    r->on_data = on_data;
    r->on_close = on_close;
    r->arg = arg;
    r->high = high;
    r->timeout_ms = 0;
    r->timeout_dropped = 0;
    r->want = 0;
    r->ev = event_new(base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, reader_cb, r);
}

/*
 * Arming costs an epoll_ctl only when the event was not pending: a pending
 * event gets its new timeout (or loses it) without the kernel hearing of it.
 */
void fg_reader_set(struct fg_reader *r, int want)
{
    r->want = want;
    if (r->ev == NULL)
        return;
    if (!want || evbuffer_get_length(bufferevent_get_input(r->bev)) >= r->high) {
        event_del(r->ev);
        return;
    }
    if (r->timeout_ms) {
        struct timeval tv = {(time_t)(r->timeout_ms / 1000),
                             (suseconds_t)((r->timeout_ms % 1000) * 1000)};
        const struct timeval *common = event_base_init_common_timeout(event_get_base(r->ev), &tv);
        event_add(r->ev, common ? common : &tv);
    } else if (!event_pending(r->ev, EV_READ, NULL)) {
        event_add(r->ev, NULL);
    } else if (r->timeout_dropped) {
        event_remove_timer(r->ev);
    }
    r->timeout_dropped = 0;
}

void fg_reader_timeout(struct fg_reader *r, uint64_t ms)
{
    if (ms == 0 && r->timeout_ms)
        r->timeout_dropped = 1; /* the next fg_reader_set removes the armed timeout */
    r->timeout_ms = ms;
}

void fg_reader_free(struct fg_reader *r)
{
    if (r->ev)
        event_free(r->ev);
    r->ev = NULL;
}
