/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* `mrlease serve FILE`: export a file as MRs over the fabric, report every MR
 * event, and print the library's numbers at the end (the demo's server). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mrlease.h"
#include "cli.h"

int cmd_serve(const struct cli_opts *o)
{
	if (!o->nargs)
		return CLI_USAGE;
	const char *file = o->args[0];
	uint64_t size = o->size;
	/* unlike the demo and the client, it runs until stopped unless told */
	unsigned seconds = o->seconds_given ? o->seconds : 0;
	struct mrl_ctx_opts co = {.size = sizeof(co), .addr = o->addr, .deadline_ms = o->deadline_ms};
	mrl_ctx *ctx;
	mrl_ep *ep;
	int ret;
	if ((ret = cli_secret(o, "serve", true, o->unix_path)))
		return ret;
	if (o->insecure)
		fprintf(stderr, "mrlease serve: --insecure: anyone who can reach %s:%u can read and write %s\n",
			o->addr, o->port, file);
	if (o->no_lease)
		co.flags |= MRL_CTX_NO_LEASES;
	if (o->no_fanotify)
		co.flags |= MRL_CTX_NO_FANOTIFY;
	struct stat st;
	if (stat(file, &st) < 0) {
		int fd = open(file, O_RDWR | O_CREAT, 0644);
		if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
			fprintf(stderr, "mrlease serve: create %s: %s\n", file, strerror(errno));
			return 2;
		}
		close(fd);
	} else {
		if (!S_ISREG(st.st_mode)) {
			fprintf(stderr, "mrlease serve: %s is not a regular file\n", file);
			return 2;
		}
		if (o->size_given && (uint64_t)st.st_size != size)
			fprintf(stderr, "mrlease serve: %s exists: serving its %lld bytes (--size only sizes a new file)\n",
				file, (long long)st.st_size);
		size = (uint64_t)st.st_size;
	}
	/* whole pages per MR, the last one to the end of the file: an MR of a
	 * few bytes serves nobody and a page is what the device pins */
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t each = size / o->mrs / pg * pg;
	if (each == 0) {
		if (size < pg)
			fprintf(stderr, "mrlease serve: %s is %llu bytes: an MR needs at least one page (%llu bytes)\n",
				file, (unsigned long long)size, (unsigned long long)pg);
		else
			fprintf(stderr, "mrlease serve: %s is %llu bytes: %u MRs would be under one page (%llu bytes) each; use --mrs %llu or fewer\n",
				file, (unsigned long long)size, o->mrs, (unsigned long long)pg,
				(unsigned long long)(size / pg));
		return 2;
	}
	uint64_t last = size - (o->mrs - 1) * each;
	if (last != each && !o->machine)
		printf("mrlease: MRs of %llu bytes (whole pages), the last one %llu bytes to the end of the file\n",
		       (unsigned long long)each, (unsigned long long)last);
	/* libfabric may install a handler that turns a crash into exit(1); we
	 * want the truth: the default, set before the context, whose SIGBUS
	 * handler (MRL_WATCH_SIGBUS) catches a store past the file's end on
	 * an MR's own pages and passes every other fault on to it */
	signal(SIGBUS, SIG_DFL);
	signal(SIGSEGV, SIG_DFL);
	if ((ret = mrl_ctx_create(&co, &ctx)))
		cli_die("context", ret);
	void *base;
	if ((ret = mrl_file_map(ctx, file, 0, size, PROT_READ | PROT_WRITE, &base)))
		cli_die("map file", ret);
	mrl_mr_t mrs[MAX_MRS];
	for (unsigned i = 0; i < o->mrs; i++) {
		struct mrl_reg_opts ro = {.size = sizeof(ro), .policy = o->policy};
		if ((ret = mrl_mr_reg(ctx, (char *)base + i * each, i + 1 < o->mrs ? each : last,
				      MRL_ACCESS_REMOTE_READ | MRL_ACCESS_REMOTE_WRITE, &ro, &mrs[i])))
			cli_die("register", ret);
	}
	struct mrl_ep_opts eo = {.size = sizeof(eo),
				 .flags = MRL_EP_AUTO_PROGRESS | (o->insecure ? MRL_EP_INSECURE : 0) |
					  (o->unix_path ? MRL_EP_PEERCRED : 0)};
	if ((ret = mrl_ep_create(ctx, &eo, &ep)))
		cli_die("endpoint", ret);
	uint16_t port = 0;
	char where[160];
	if (o->unix_path) {
		snprintf(where, sizeof(where), "unix:%s", o->unix_path);
		if (strlen(o->unix_path) + 6 > sizeof(where))
			cli_die("listen", -ENAMETOOLONG);
		ret = mrl_ep_listen(ep, where, 0, NULL);
	} else {
		ret = mrl_ep_listen(ep, o->addr, (uint16_t)o->port, &port);
		snprintf(where, sizeof(where), "%s:%u", o->addr, port);
	}
	if (ret)
		cli_die("listen", ret);
	if (o->machine)
		printf("port %u\n", port);
	else
		printf("mrlease: serving %s (%" PRIu64 " bytes, %u MRs) on %s%s\n", file, size, o->mrs,
		       where, o->unix_path ? " (peers of this uid or root: SO_PEERCRED)" : "");
	fflush(stdout);
	signal(SIGTERM, cli_on_stop);
	signal(SIGINT, cli_on_stop);

	uint64_t until = seconds ? cli_now_ns() + (uint64_t)seconds * 1000000000ull : UINT64_MAX;
	uint64_t ev_lat[MAX_SAMPLES], last_seen = 0, last_print = 0;
	size_t nev = 0;
	uint64_t evcount[8] = {0};
	int npeers = 0;
	/* --policy redirect: MRs on scratch, to move back onto the file once
	 * the change has landed (a restore says -EAGAIN until it has) */
	mrl_mr_t back[MAX_MRS];
	unsigned nback = 0;
	while (!cli_stop && cli_now_ns() < until) {
		mrl_peer *peer;
		if (mrl_ep_accept(ep, 0, &peer) == 0)
			npeers++;
		struct pollfd p = {.fd = mrl_event_fd(ctx), .events = POLLIN};
		poll(&p, 1, 20);
		struct mrl_event ev;
		while (mrl_event_get(ctx, &ev) == 0) {
			uint64_t t = cli_now_ns();
			if (ev.type < 8)
				evcount[ev.type]++;
			/* one sample per break: the first MR event it produced */
			if (ev.type == MRL_EVENT_BREAK && ev.time_ns != last_seen) {
				last_seen = ev.time_ns;
				if (o->machine)
					printf("break %" PRIu64 " %" PRIu64 "\n", ev.time_ns, t);
				if (nev < MAX_SAMPLES)
					ev_lat[nev++] = t - ev.time_ns;
			}
			/* --policy notify: the owner decides, before the deadline;
			 * this server has nothing to keep, so it lets the change
			 * land and restores the MR onto the new pages */
			if (ev.type == MRL_EVENT_BREAK && o->policy == MRL_POLICY_NOTIFY) {
				int r = mrl_mr_restore(ctx, ev.mr);
				if (r && !o->machine)
					printf("mrlease: MR %#" PRIx64 ": answer restore: %s (%s)\n", ev.mr,
					       mrl_strerror(r), mrl_last_error());
				else if (!o->machine)
					printf("mrlease: MR %#" PRIx64 ": break (%s), answered restore\n", ev.mr,
					       mrl_cause_str(ev.cause));
			}
			/* --policy redirect: the device went on into scratch while
			 * the change landed; this server has nothing to keep, so
			 * it moves the MR back onto the file (same key) */
			if (ev.type == MRL_EVENT_REDIRECTED && nback < MAX_MRS)
				back[nback++] = ev.mr;
			if (ev.type == MRL_EVENT_PEER_LOST) {
				if (!o->machine) {
					printf("mrlease: a client is gone (%s)\n", mrl_cause_str(ev.cause));
					fflush(stdout);
				}
			} else if (!o->machine && ev.type != MRL_EVENT_BREAK)
				printf("mrlease: MR %#" PRIx64 ": %s (%s) bytes %" PRIu64 "+%" PRIu64 "\n",
				       ev.mr, mrl_event_str(ev.type), mrl_cause_str(ev.cause), ev.offset,
				       ev.length);
			mrl_event_ack(ctx, &ev);
		}
		for (unsigned i = 0; i < nback;) {
			int r = mrl_mr_restore(ctx, back[i]);
			if (r == -EAGAIN) { /* another change is landing: next time round */
				i++;
				continue;
			}
			if (r && !o->machine)
				printf("mrlease: MR %#" PRIx64 ": back from scratch: %s (%s)\n", back[i],
				       mrl_strerror(r), mrl_last_error());
			back[i] = back[--nback];
		}
		if (o->machine && cli_now_ns() - last_print > 200000000ull) {
			struct mrl_stats s = {.size = sizeof(s)};
			mrl_ctx_stats(ctx, &s);
			printf("stats %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", s.breaks, s.pauses,
			       s.restores, s.fences);
			last_print = cli_now_ns();
		}
		fflush(stdout);
	}
	struct mrl_stats s = {.size = sizeof(s)};
	mrl_ctx_stats(ctx, &s);
	/* which watchers watched the MRs, and how many MRs no break ever touched */
	unsigned watchers = 0, untouched = 0;
	for (unsigned i = 0; i < o->mrs; i++) {
		struct mrl_mr_info in = {.size = sizeof(in)};
		if (mrl_mr_query(ctx, mrs[i], &in) == 0) {
			watchers |= in.watchers;
			untouched += in.breaks == 0 && in.denials == 0;
		}
	}
	printf("%sfinal {\"breaks\":%" PRIu64 ",\"pauses\":%" PRIu64 ",\"restores\":%" PRIu64
	       ",\"fences\":%" PRIu64 ",\"lease_breaks\":%" PRIu64 ",\"peer_timeouts\":%" PRIu64
	       ",\"pause_us_p50\":%.1f,\"pause_us_p99\":%.1f,\"ev_us_p50\":%.1f,\"ev_us_p99\":%.1f,\"peers\":%d"
	       ",\"watchers\":%u,\"untouched\":%u,\"fan_events\":%" PRIu64 ",\"fan_layout\":%" PRIu64
	       ",\"fan_pass_data\":%" PRIu64 ",\"fan_pass_range\":%" PRIu64 ",\"denials\":%" PRIu64
	       ",\"classify_us\":%.2f,\"redirects\":%" PRIu64 "}\n",
	       o->machine ? "" : "mrlease: ", s.breaks, s.pauses, s.restores, s.fences,
	       s.lease_breaks, s.peer_timeouts, s.pause_ns_p50 / 1e3, s.pause_ns_p99 / 1e3,
	       cli_pct(ev_lat, nev, 50) / 1e3, cli_pct(ev_lat, nev, 99) / 1e3, npeers, watchers, untouched,
	       s.fan_events, s.fan_layout, s.fan_pass_data, s.fan_pass_range, s.denials,
	       s.classify_count ? (double)s.classify_ns_total / (double)s.classify_count / 1e3 : 0.0,
	       s.redirects);
	fflush(stdout);
	mrl_ep_destroy(ep);
	for (unsigned i = 0; i < o->mrs; i++)
		mrl_mr_dereg(ctx, mrs[i]);
	mrl_file_unmap(ctx, base, size);
	mrl_ctx_destroy(ctx);
	return 0;
}
