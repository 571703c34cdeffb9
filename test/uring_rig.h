/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Test rig for io_uring fixed buffers: a ring, a socket pair to stream
 * from, READ_FIXED one page at a time, and a read-back of the file. */
#ifndef MRL_TEST_URING_RIG_H
#define MRL_TEST_URING_RIG_H

#include <liburing.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "helpers.h"

#define PG 4096u

struct rig {
	struct io_uring ring;
	int sv[2]; /* write sv[1], READ_FIXED from sv[0] */
};

static inline void rig_open(struct rig *r)
{
	int ret = io_uring_queue_init(8, &r->ring, 0);
	if (ret == -ENOSYS || ret == -EPERM)
		t_skip("io_uring unavailable: %s (kernel.io_uring_disabled?)", strerror(-ret));
	if (ret) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
		exit(1);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, r->sv) < 0) {
		perror("socketpair");
		exit(1);
	}
}

static inline void rig_close(struct rig *r)
{
	io_uring_queue_exit(&r->ring);
	close(r->sv[0]);
	close(r->sv[1]);
}

/* A context (breaks fenced after deadline_ms) with the ring attached, 4 slots. */
static inline mrl_ctx *rig_ctx(struct rig *r, unsigned deadline_ms)
{
	mrl_ctx *ctx = t_ctx("uring", deadline_ms);
	REQUIRE(mrl_uring_attach(ctx, &r->ring, 4) == 0, "attach");
	return ctx;
}

/* rig_open, a file of size bytes at path, rig_ctx, and the file mapped
 * read-write by the context at *map. */
static inline mrl_ctx *rig_file(struct rig *r, const char *path, uint64_t size, unsigned deadline_ms,
				void **map)
{
	rig_open(r);
	t_make_file(path, size);
	mrl_ctx *ctx = rig_ctx(r, deadline_ms);
	REQUIRE(mrl_file_map(ctx, path, 0, size, PROT_READ | PROT_WRITE, map) == 0, "map");
	return ctx;
}

/* The lease held again and the MR live (a restore waits for the device,
 * after the lease is back), and the events so far read: the change's break
 * and events are the next ones. */
static inline bool rig_wait_lease(mrl_ctx *ctx, mrl_mr_t mr)
{
	uint64_t until = t_now_ns() + T_HANG_MS * 1000000ull;
	struct mrl_mr_info in = t_query(ctx, mr);
	while ((!in.lease_held || in.state != MRL_STATE_ACTIVE) && t_now_ns() < until) {
		usleep(1000);
		in = t_query(ctx, mr);
	}
	struct mrl_event ev;
	while (mrl_event_get(ctx, &ev) == 0)
		mrl_event_ack(ctx, &ev);
	return in.lease_held && in.state == MRL_STATE_ACTIVE;
}

static inline uint8_t rig_byte(unsigned round, uint64_t off)
{
	return (uint8_t)((off * 31 + (off >> 12) * 5 + round * 77) | 1); /* never 0: holes read 0 */
}

static inline void rig_send(struct rig *r, unsigned round, uint64_t off, unsigned len)
{
	uint8_t buf[PG];
	for (unsigned i = 0; i < len; i++)
		buf[i] = rig_byte(round, off + i);
	if (write(r->sv[1], buf, len) != (ssize_t)len) {
		perror("socket write");
		exit(1);
	}
}

static inline void rig_submit(struct rig *r, void *dst, unsigned len, unsigned idx)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	io_uring_prep_read_fixed(sqe, r->sv[0], dst, len, 0, (int)idx);
	if (io_uring_submit(&r->ring) != 1) {
		fprintf(stderr, "io_uring_submit failed\n");
		exit(1);
	}
}

static inline int rig_reap(struct rig *r)
{
	struct io_uring_cqe *cqe;
	int ret = io_uring_wait_cqe(&r->ring, &cqe);
	if (ret)
		return ret;
	ret = cqe->res;
	io_uring_cqe_seen(&r->ring, cqe);
	return ret;
}

/* One page of round `round` streamed into buf+off through READ_FIXED. */
static inline int rig_read_fixed(struct rig *r, uint8_t *buf, uint64_t off, unsigned idx,
				 unsigned round)
{
	rig_send(r, round, off, PG);
	rig_submit(r, buf + off, PG, idx);
	return rig_reap(r);
}

/* Bytes of [0, len) of the file that do not hold round `round`: read back
 * through a file description of its own (O_RDONLY: a reader pauses nothing). */
static inline uint64_t rig_lost(const char *path, unsigned round, uint64_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t buf[PG];
	uint64_t lost = 0;
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	for (uint64_t off = 0; off < len; off += PG) {
		ssize_t n = pread(fd, buf, PG, (off_t)off);
		for (unsigned i = 0; i < PG; i++)
			lost += i >= (n > 0 ? (size_t)n : 0) || buf[i] != rig_byte(round, off + i);
	}
	close(fd);
	return lost;
}

#endif
