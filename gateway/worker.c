/*
 * worker.c - small pieces of a worker's machinery: the queue that brings
 * parked authentications back from other threads, and eager socket writes.
 */
#include "conn.h"
#include "worker.h"

#include <errno.h>
#include <event2/buffer.h>
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
