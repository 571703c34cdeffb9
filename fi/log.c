/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* What an operator of an unmodified application sees: MRLEASE_LOG=FILE (or
 * "stderr") gets one line per break, restore and fence naming the key, the
 * file, the cause and the actor's pid, and a summary when a domain closes.
 * The event thread reads each domain's mrlease events, logs them, answers
 * breaks for the application (policy notify) and acks them. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hook.h"
#include "mrl_int.h"

static int log_fd = -2; /* -2: not looked at yet, -1: off */
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_open(void)
{
	const char *p = getenv("MRLEASE_LOG");
	if (!p || !*p)
		log_fd = -1;
	else if (!strcmp(p, "stderr") || !strcmp(p, "-") || !strcmp(p, "1"))
		log_fd = 2;
	else
		log_fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

bool hook_log_on(void)
{
	pthread_once(&log_once, log_open);
	return log_fd >= 0;
}

/* One write per line: processes sharing the file never interleave within one. */
void hook_log(const char *fmt, ...)
{
	if (!hook_log_on())
		return;
	char buf[768];
	int n = snprintf(buf, sizeof(buf), "mrlease[%d]: ", (int)getpid());
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n += m < 0 ? 0 : (m > (int)sizeof(buf) - n - 2 ? (int)sizeof(buf) - n - 2 : m);
	buf[n++] = '\n';
	if (write(log_fd, buf, (size_t)n) < 0) {
		/* nowhere else to say it */
	}
}

/* The MR an event names, and what the log says of it (mrs_lock held). */
static struct hook_mr *find_mr(struct hook_domain *d, mrl_mr_t h)
{
	for (struct hook_mr *hm = d->mrs; hm; hm = hm->next)
		if (hm->lease == h)
			return hm;
	return NULL;
}

static void log_event(struct hook_domain *d, const struct mrl_event *ev)
{
	char what[320];
	mrl_lock(&d->mrs_lock);
	struct hook_mr *hm = find_mr(d, ev->mr);
	if (hm)
		snprintf(what, sizeof(what), "key %#llx file %s", (unsigned long long)hm->mr.key,
			 hm->path);
	else
		snprintf(what, sizeof(what), "lease %#llx (closed)", (unsigned long long)ev->mr);
	mrl_unlock(&d->mrs_lock);
	const char *cause = mrl_cause_str(ev->cause);
	switch (ev->type) {
	case MRL_EVENT_BREAK:
		atomic_fetch_add(&d->n.breaks, 1);
		hook_log("break: %s bytes %llu+%llu cause %s pid %d; hooked peers on this host hold "
			 "their operations, peers without the hook cannot be paused: remote access "
			 "fenced until restored",
			 what, (unsigned long long)ev->offset, (unsigned long long)ev->length, cause,
			 (int)ev->pid);
		break;
	case MRL_EVENT_RESTORED:
		atomic_fetch_add(&d->n.restores, 1);
		hook_log("restore: %s bytes %llu+%llu cause %s generation %u, same key", what,
			 (unsigned long long)ev->offset, (unsigned long long)ev->length, cause,
			 ev->generation);
		break;
	case MRL_EVENT_FENCED:
		atomic_fetch_add(&d->n.fences, 1);
		hook_log("fence: %s bytes %llu+%llu cause %s pid %d", what,
			 (unsigned long long)ev->offset, (unsigned long long)ev->length, cause,
			 (int)ev->pid);
		break;
	case MRL_EVENT_CHANGED:
		atomic_fetch_add(&d->n.changed, 1);
		hook_log("changed (seen after it landed): %s bytes %llu+%llu cause %s", what,
			 (unsigned long long)ev->offset, (unsigned long long)ev->length, cause);
		break;
	default:
		hook_log("%s: %s cause %s", mrl_event_str(ev->type), what, cause);
		break;
	}
}

static void *ev_main(void *arg)
{
	struct hook_domain *d = arg;
	struct pollfd p[2] = {{.fd = mrl_event_fd(d->ctx), .events = POLLIN},
			      {.fd = d->stop_fd, .events = POLLIN}};
	bool draining = false;
	for (;;) {
		/* a pause waiting for operations in flight: look again every ms */
		if (poll(p, 2, draining ? 1 : -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents) {
			uint64_t v;
			if (read(d->stop_fd, &v, sizeof(v)) < 0) {
				/* nonblocking: another turn read it */
			}
			if (atomic_load(&d->stopping))
				break;
		}
		draining = hook_quiesce_poll(d);
		struct mrl_event ev;
		while (mrl_event_get(d->ctx, &ev) == 0) {
			log_event(d, &ev);
			/* policy notify: the hook is the application's answer */
			if (ev.type == MRL_EVENT_BREAK && d->policy == MRL_POLICY_NOTIFY &&
			    mrl_mr_restore(d->ctx, ev.mr) < 0)
				atomic_fetch_add(&d->n.errors, 1);
			mrl_event_ack(d->ctx, &ev);
		}
	}
	return NULL;
}

int hook_events_start(struct hook_domain *d)
{
	d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->stop_fd < 0)
		return -errno;
	int ret = pthread_create(&d->ev_thread, NULL, ev_main, d);
	if (ret) {
		close(d->stop_fd);
		d->stop_fd = -1;
		return -ret;
	}
	d->ev_running = true;
	return 0;
}

void hook_events_stop(struct hook_domain *d)
{
	if (!d->ev_running)
		return;
	atomic_store(&d->stopping, true);
	uint64_t one = 1;
	if (write(d->stop_fd, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only on overflow: the thread is woken already */
	}
	pthread_join(d->ev_thread, NULL);
	close(d->stop_fd);
	d->stop_fd = -1;
	d->ev_running = false;
	/* what came after the thread's last look */
	struct mrl_event ev;
	while (d->ctx && mrl_event_get(d->ctx, &ev) == 0) {
		log_event(d, &ev);
		mrl_event_ack(d->ctx, &ev);
	}
}

void hook_summary(struct hook_domain *d)
{
	hook_log("summary: domain on %s: %llu MRs (%llu leased, %llu registered as they are), "
		 "%llu breaks, %llu restores, %llu fences, %llu changed after; "
		 "as initiator: %llu posts held by a pause, %llu refused, %llu discarded past a truncated end, "
		 "%llu counted out by a counter; "
		 "endpoints: %llu, scalable %llu (tx contexts %llu)",
		 d->prov_name, (unsigned long long)d->n.mrs, (unsigned long long)d->n.leased,
		 (unsigned long long)d->n.unleased, (unsigned long long)d->n.breaks,
		 (unsigned long long)d->n.restores, (unsigned long long)d->n.fences,
		 (unsigned long long)d->n.changed, (unsigned long long)hook_held,
		 (unsigned long long)hook_refused, (unsigned long long)hook_discarded,
		 (unsigned long long)hook_by_cntr,
		 (unsigned long long)d->n.eps, (unsigned long long)d->n.seps, (unsigned long long)d->n.txctxs);
}
