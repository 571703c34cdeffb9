/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The guardian process: a forked copy of the owner that only keeps the
 * bound on other processes' waits when the owner cannot (stopped, hung,
 * its monitor deadlocked, paged out). It answers a held fanotify event, or
 * lets go of a broken lease, once the break's deadline plus a margin has
 * passed, and reads and lets go the events the owner never read. Each such
 * act is written in the shared table (guard.h) for the owner to treat as a
 * change it saw after it landed.
 *
 * It runs in the child of a multithreaded process: raw system calls and
 * its own stack only (no malloc, no locks, no stdio), and it is built
 * without sanitizers (Makefile): their runtimes are not safe after a bare
 * clone. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "guard.h"

#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
#endif
#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif
#define PERM_MASK (FAN_PRE_ACCESS | FAN_OPEN_PERM | FAN_ACCESS_PERM | FAN_OPEN_EXEC_PERM)

#define LD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)

static bool cas(uint32_t *p, uint32_t from, uint32_t to)
{
	return __atomic_compare_exchange_n(p, &from, to, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static uint64_t mono(void)
{
	struct timespec ts;
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void answer(int fan_fd, int fd, bool deny)
{
	struct fanotify_response r = {
		.fd = fd,
		.response = deny ? FAN_DENY | ((uint32_t)GUARD_DENY_ERRNO << 24) : FAN_ALLOW};
	syscall(SYS_write, fan_fd, &r, sizeof(r));
}

static void allow(int fan_fd, int fd)
{
	answer(fan_fd, fd, false);
}

/* "NR 0xA0 0xA1 ..." (/proc/TID/syscall): false unless nr and 3 args */
static bool parse_line(const char *p, long *nr, uint64_t a[3])
{
	long n = 0;
	if (*p < '0' || *p > '9')
		return false;
	while (*p >= '0' && *p <= '9')
		n = n * 10 + (*p++ - '0');
	*nr = n;
	for (int i = 0; i < 3; i++) {
		while (*p == ' ')
			p++;
		if (p[0] != '0' || p[1] != 'x')
			return false;
		p += 2;
		uint64_t v = 0;
		for (;; p++) {
			int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
			if (d < 0)
				break;
			v = v * 16 + (uint64_t)d;
		}
		a[i] = v;
	}
	return true;
}

/* Would the call in line shrink a file of size bytes? */
static bool shrinks(const char *line, uint32_t mask, uint64_t size)
{
	long nr;
	uint64_t a[3];
	if (!parse_line(line, &nr, a))
		return false;
	if (mask & FAN_OPEN_PERM) {
		uint64_t flags = nr == SYS_open ? a[1] : nr == SYS_openat ? a[2] : 0;
		return nr == SYS_creat || (flags & O_TRUNC);
	}
	if (nr == SYS_truncate || nr == SYS_ftruncate)
		return a[1] < size;
	return nr == SYS_fallocate && (a[1] & FALLOC_FL_COLLAPSE_RANGE);
}

static void actor_line(int tid, char *line);

static void wake(int wake_fd)
{
	uint64_t one = 1;
	syscall(SYS_write, wake_fd, &one, sizeof(one));
}

/* the numbers the owner has published (held events): an answer by number
 * must never reach one of those it was not meant for */
static uint64_t published[(1u << 20) / 64];

/* ---- held events the owner published ---- */
static uint64_t fan_slots(struct guard_shm *g, int fan_fd, uint64_t now, bool *acted)
{
	uint64_t next = UINT64_MAX;
	for (int i = 0; i < GUARD_FAN_SLOTS; i++) {
		struct guard_slot *s = &g->fan[i];
		if (LD(&s->state) != GS_PENDING)
			continue;
		uint64_t due = LD(&s->deadline_ns) + GUARD_MARGIN_NS;
		if (now < due) {
			next = due < next ? due : next;
			continue;
		}
		if (!cas(&s->state, GS_PENDING, GS_CLAIMED))
			continue;
		char line[GUARD_LINE];
		actor_line(s->tid, line);
		s->lease_type = shrinks(line, FAN_PRE_ACCESS | (s->pad2 ? FAN_OPEN_PERM : 0), s->size);
		answer(fan_fd, s->fd, s->lease_type);
		s->acted_ns = now;
		ST(&s->state, GS_DONE);
		ADD(&g->acts, 1);
		*acted = true;
	}
	return next;
}

/* ---- leases (the guardian's dups of the owner's leased fds) ---- */
static int lfd[GUARD_LEASE_SLOTS];
static uint64_t lseen[GUARD_LEASE_SLOTS];
static uint32_t lgen[GUARD_LEASE_SLOTS];

static uint64_t lease_slots(struct guard_shm *g, uint64_t now, bool *acted)
{
	uint64_t next = UINT64_MAX;
	for (int i = 0; i < GUARD_LEASE_SLOTS; i++) {
		struct guard_slot *s = &g->lease[i];
		uint32_t st = LD(&s->state);
		if (st == GS_CLOSE) {
			if (lfd[i] >= 0)
				syscall(SYS_close, lfd[i]);
			lfd[i] = -1;
			ST(&s->state, GS_FREE);
			continue;
		}
		if ((st != GS_ARMED && st != GS_PENDING) || lfd[i] < 0) {
			lseen[i] = 0;
			continue;
		}
		uint32_t gen = LD(&s->pad);
		if (gen != lgen[i]) { /* armed again since we last looked */
			lgen[i] = gen;
			lseen[i] = 0;
		}
		long t = syscall(SYS_fcntl, lfd[i], F_GETLEASE);
		bool breaking = t >= 0 && (uint32_t)t != s->lease_type;
		uint64_t due;
		if (st == GS_PENDING) {
			due = LD(&s->deadline_ns) + GUARD_MARGIN_NS;
		} else if (breaking) {
			/* the owner has not seen it: count from when we did, less
			 * the time it may have waited unseen */
			if (!lseen[i])
				lseen[i] = now;
			due = lseen[i] + g->deadline_ns + GUARD_MARGIN_NS - GUARD_LEASE_POLL_NS;
		} else {
			lseen[i] = 0;
			due = now + GUARD_LEASE_POLL_NS;
			next = due < next ? due : next;
			continue;
		}
		if (now < due || !breaking) {
			uint64_t look = now + GUARD_LEASE_POLL_NS;
			due = breaking && due < look ? due : look;
			next = due < next ? due : next;
			continue;
		}
		if (!cas(&s->state, st, GS_CLAIMED))
			continue;
		syscall(SYS_fcntl, lfd[i], F_SETLEASE, F_UNLCK);
		s->lease_type = (uint32_t)t; /* the target: F_RDLCK for a reader */
		s->acted_ns = now;
		ST(&s->state, GS_DONE);
		ADD(&g->acts, 1);
		lseen[i] = 0;
		*acted = true;
	}
	return next;
}

static void recv_fds(int sock)
{
	for (;;) {
		uint32_t slot;
		struct iovec iov = {&slot, sizeof(slot)};
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} c;
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
				   .msg_controllen = sizeof(c.buf)};
		long n = syscall(SYS_recvmsg, sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n <= 0)
			return;
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		if (!h || h->cmsg_type != SCM_RIGHTS || n != sizeof(slot))
			continue;
		int fd;
		memcpy(&fd, CMSG_DATA(h), sizeof(fd));
		if (slot >= GUARD_LEASE_SLOTS) {
			syscall(SYS_close, fd);
			continue;
		}
		if (lfd[slot] >= 0)
			syscall(SYS_close, lfd[slot]);
		lfd[slot] = fd;
		lseen[slot] = 0;
	}
}

/* ---- events nobody read ---- */
static void actor_line(int tid, char *line)
{
	char path[40] = "/proc/", num[12];
	int k = 0, p = 6;
	unsigned v = (unsigned)tid;
	do
		num[k++] = (char)('0' + v % 10);
	while ((v /= 10) && k < 11);
	while (k)
		path[p++] = num[--k];
	memcpy(path + p, "/syscall", 9);
	line[0] = 0;
	/* "running" until the actor sleeps for the answer, which it will: look
	 * again, briefly (as the owner does, fan.c read_line) */
	for (int tries = 0; tries < 200; tries++) {
		long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
		long n = syscall(SYS_read, fd, line, GUARD_LINE - 1);
		syscall(SYS_close, fd);
		line[n > 0 ? n : 0] = 0;
		if (memcmp(line, "running", 7))
			break;
		struct timespec ts = {0, 50000};
		if (tries < 20)
			syscall(SYS_sched_yield);
		else
			syscall(SYS_nanosleep, &ts, NULL);
	}
	for (int i = 0; line[i]; i++)
		if (line[i] == '\n')
			line[i] = 0;
}

/* Write down md for the owner; true if it is to be refused (a shrink). */
static bool record(struct guard_shm *g, const struct fanotify_event_metadata *md, uint64_t lo,
		   uint64_t hi, uint64_t now)
{
	struct guard_rec *r = &g->rec[LD(&g->rec_head) % GUARD_RECS];
	struct stat st = {0};
	if (LD(&r->full)) { /* the owner learns of it by inotify alone */
		char line[GUARD_LINE];
		ADD(&g->rec_lost, 1);
		actor_line(md->pid, line);
		return (md->mask & PERM_MASK) && syscall(SYS_fstat, md->fd, &st) == 0 &&
		       shrinks(line, (uint32_t)md->mask, (uint64_t)st.st_size);
	}
	r->dev = r->ino = 0;
	if (syscall(SYS_fstat, md->fd, &st) == 0) {
		r->dev = st.st_dev;
		r->ino = st.st_ino;
	}
	r->mask = (uint32_t)md->mask;
	r->tid = md->pid;
	r->lo = lo;
	r->hi = hi;
	r->at = now;
	r->denied = 0;
	if (md->mask & PERM_MASK) {
		actor_line(md->pid, r->line);
		r->denied = shrinks(r->line, (uint32_t)md->mask, (uint64_t)st.st_size);
	} else {
		r->line[0] = 0;
	}
	bool deny = r->denied;
	ST(&r->full, 1);
	ADD(&g->rec_head, 1);
	return deny;
}

/* An answer by number reaches the first held event with that number, which
 * may be one the owner read (numbers are per process): answer the owner's
 * first (it is past any deadline worth keeping: the owner stopped reading),
 * so that ours then reaches ours. */
static void clear_number(struct guard_shm *g, int fan_fd, int fd, uint64_t now)
{
	for (int i = 0; i < GUARD_FAN_SLOTS; i++) {
		struct guard_slot *s = &g->fan[i];
		if (s->fd != fd)
			continue;
		/* the owner is writing its own answer: let it land first */
		uint64_t until = now + g->deadline_ns;
		while (LD(&s->state) == GS_OWNED && mono() < until)
			syscall(SYS_sched_yield);
		if (cas(&s->state, GS_PENDING, GS_CLAIMED)) {
			char line[GUARD_LINE];
			actor_line(s->tid, line);
			s->lease_type = shrinks(line, FAN_PRE_ACCESS | (s->pad2 ? FAN_OPEN_PERM : 0), s->size);
			answer(fan_fd, fd, s->lease_type);
			s->acted_ns = now;
			ST(&s->state, GS_DONE);
			ADD(&g->acts, 1);
		}
	}
}

static void read_unread(struct guard_shm *g, int fan_fd, uint64_t swept_for)
{
	char buf[4096] __attribute__((aligned(8)));
	ST(&g->guard_reading, 1);
	uint64_t r = LD(&g->owner_reading);
	if (r && r != swept_for) { /* the owner is reading now: it is alive */
		ST(&g->guard_reading, 0);
		return;
	}
	long n;
	while ((n = syscall(SYS_read, fan_fd, buf, sizeof(buf))) > 0) {
		uint64_t now = mono();
		struct fanotify_event_metadata *md = (void *)buf;
		for (; FAN_EVENT_OK(md, n); md = FAN_EVENT_NEXT(md, n)) {
			if (md->fd < 0)
				continue;
			uint64_t lo = 0, hi = UINT64_MAX;
			for (char *p = (char *)md + md->metadata_len;
			     p + sizeof(struct fanotify_event_info_header) <= (char *)md + md->event_len;) {
				const struct fanotify_event_info_header *h = (void *)p;
				if (!h->len)
					break;
				if (h->info_type == FAN_EVENT_INFO_TYPE_RANGE && h->len >= 24) {
					uint64_t off, cnt;
					memcpy(&off, p + 8, 8);
					memcpy(&cnt, p + 16, 8);
					lo = off;
					hi = cnt ? off + cnt : UINT64_MAX;
				}
				p += h->len;
			}
			bool deny = record(g, md, lo, hi, now);
			if (md->mask & PERM_MASK) {
				clear_number(g, fan_fd, md->fd, now);
				answer(fan_fd, md->fd, deny);
				ADD(&g->acts, 1);
			}
			syscall(SYS_close, md->fd);
		}
	}
	ST(&g->guard_reading, 0);
}

/* The owner stopped between its read and publishing what it read: those
 * numbers are unknown here, so answer every number it may hold that is not
 * one it published (those keep their own deadlines). The owner, when it
 * runs, sees the sweep and treats that whole read as let go. */
static void sweep(struct guard_shm *g, int fan_fd)
{
	int max = g->owner_nofile;
	if (max > (int)(sizeof(published) * 8))
		max = (int)(sizeof(published) * 8);
	memset(published, 0, sizeof(published));
	for (int i = 0; i < GUARD_FAN_SLOTS; i++) {
		uint32_t st = LD(&g->fan[i].state);
		int fd = g->fan[i].fd;
		if (st != GS_FREE && fd >= 0 && fd < max)
			published[fd / 64] |= 1ull << (fd % 64);
	}
	for (int fd = 0; fd < max; fd++)
		if (!(published[fd / 64] & (1ull << (fd % 64))))
			allow(fan_fd, fd);
	ADD(&g->sweeps, 1);
	ADD(&g->acts, 1);
}

static void close_others(const int *keep, int n)
{
	/* ascending: keep[] is sorted by the caller */
	unsigned lo = 0;
	for (int i = 0; i < n; i++) {
		if (keep[i] < 0)
			continue;
		if ((unsigned)keep[i] > lo)
			syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0);
		lo = (unsigned)keep[i] + 1;
	}
	syscall(SYS_close_range, lo, ~0u, 0);
}

void mrl_guard_loop(struct guard_shm *g, int sock, int fan_fd, int wake_fd, int owner_pidfd,
		    pid_t owner)
{
	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (syscall(SYS_getppid) != owner)
		syscall(SYS_exit_group, 0);
	syscall(SYS_prctl, PR_SET_NAME, "mrlease-guard", 0, 0, 0);
	/* out of the owner's process group (a stop sent to the job is not
	 * ours), and deaf to every signal but SIGKILL and SIGSTOP: the
	 * owner's handlers are no code to run here */
	syscall(SYS_setpgid, 0, 0);
	uint64_t all = ~0ull;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof(all));
	int keep[4] = {sock, fan_fd, wake_fd, owner_pidfd};
	for (int i = 0; i < 4; i++) /* sort */
		for (int j = i + 1; j < 4; j++)
			if (keep[j] < keep[i]) {
				int t = keep[i];
				keep[i] = keep[j];
				keep[j] = t;
			}
	close_others(keep, 4);
	for (int i = 0; i < GUARD_LEASE_SLOTS; i++)
		lfd[i] = -1;

	/* stalled: the owner's monitor has not turned since we had to act for
	 * it (we wake it each time), so whatever arrives meanwhile is let go
	 * at once -- an actor making many calls (cat: one event per read) must
	 * not wait a deadline for each */
	uint64_t fan_wait = 0, reads0 = 0, swept_for = 0, stall_alive = 0;
	bool stalled = false;
	for (;;) {
		bool acted = false;
		uint64_t reads_top = LD(&g->owner_reads); /* before the slots are looked at */
		uint64_t now = mono();
		if (stalled && LD(&g->alive) != stall_alive)
			stalled = false;
		uint64_t next = fan_slots(g, fan_fd, now, &acted);
		uint64_t t = lease_slots(g, now, &acted);
		next = t < next ? t : next;
		if (acted && !stalled) {
			stalled = true;
			stall_alive = LD(&g->alive);
		}
		/* the owner stuck between its read and its publishing */
		uint64_t rs = LD(&g->owner_reading);
		if (fan_fd >= 0 && rs && rs != swept_for) {
			uint64_t due = rs + g->deadline_ns + GUARD_MARGIN_NS;
			if (now >= due) {
				sweep(g, fan_fd);
				swept_for = rs;
				acted = true;
			} else {
				next = due < next ? due : next;
			}
		}
		/* Events nobody reads: the group stayed readable since fan_wait
		 * while the owner read nothing. Looked at every half margin: an
		 * owner read means what is queued now may have come after it,
		 * and its wait is counted from when we look again (late by at
		 * most that half margin). */
		if (fan_wait) {
			uint64_t reads = LD(&g->owner_reads);
			uint64_t due = stalled ? fan_wait : fan_wait + g->deadline_ns + GUARD_MARGIN_NS / 2;
			if (reads != reads0) {
				fan_wait = 0; /* the owner reads: look again */
			} else if (now >= due) {
				struct pollfd p = {.fd = fan_fd, .events = POLLIN};
				struct timespec z = {0, 0};
				if (syscall(SYS_ppoll, &p, 1, &z, NULL, 0) == 1) {
					read_unread(g, fan_fd, swept_for);
					acted = true;
					if (!stalled)
						stall_alive = LD(&g->alive);
					stalled = true;
				}
				fan_wait = 0;
			} else {
				due = due < now + GUARD_LEASE_POLL_NS ? due : now + GUARD_LEASE_POLL_NS;
				next = due < next ? due : next;
			}
		}
		if (acted)
			wake(wake_fd);
		struct pollfd pfd[3] = {{.fd = sock, .events = POLLIN},
					{.fd = owner_pidfd, .events = POLLIN},
					{.fd = fan_wait || fan_fd < 0 ? -1 : fan_fd, .events = POLLIN}};
		now = mono();
		struct timespec ts, *tsp = NULL;
		if (next != UINT64_MAX) {
			uint64_t d = next > now ? next - now : 0;
			ts.tv_sec = (time_t)(d / 1000000000ull);
			ts.tv_nsec = (long)(d % 1000000000ull);
			tsp = &ts;
		} else {
			/* No timer: say so, then look once more (guard_idle,
			 * mrl_guard_read_begin). An owner read that began before
			 * that is in flight (owner_reading) or done since the
			 * slots were looked at (owner_reads): look again (a read
			 * already swept for keeps no timer: not that one). */
			ST(&g->guard_idle, 1);
			uint64_t r = LD(&g->owner_reading);
			if ((r && r != swept_for) || LD(&g->owner_reads) != reads_top) {
				ST(&g->guard_idle, 0);
				continue;
			}
		}
		long n = syscall(SYS_ppoll, pfd, 3, tsp, NULL, 0);
		ST(&g->guard_idle, 0);
		if (n < 0)
			continue;
		if (pfd[1].revents || syscall(SYS_getppid) != owner)
			syscall(SYS_exit_group, 0);
		if (pfd[0].revents & (POLLHUP | POLLERR))
			syscall(SYS_exit_group, 0);
		if (pfd[0].revents & POLLIN)
			recv_fds(sock);
		if (pfd[2].revents & POLLIN) {
			fan_wait = mono();
			reads0 = LD(&g->owner_reads);
			if (stalled && LD(&g->alive) == stall_alive) { /* still stalled: at once */
				read_unread(g, fan_fd, swept_for);
				fan_wait = 0;
				wake(wake_fd);
			}
		}
	}
}
