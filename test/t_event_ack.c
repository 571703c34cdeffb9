/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Events are acked by value: a copy acked twice, a forged or altered event,
 * one from another context get -EINVAL and free nothing; an MR deregistered
 * while its event is outstanding stays allocated until the ack. */
#include <sys/mman.h>

#include "helpers.h"

#define NMANY 300 /* more outstanding events than the first hash table holds */

static uint64_t rnd(void)
{
	static uint64_t x = 0x9e3779b97f4a7c15ull;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

/* The owner fences mr: one FENCED event, got here (not acked). */
static void fence_and_get(mrl_ctx *ctx, mrl_mr_t mr, struct mrl_event *ev)
{
	REQUIRE(mrl_mr_fence(ctx, mr) == 0, "fence");
	REQUIRE(mrl_event_get(ctx, ev) == 0, "the fence queued an event");
	REQUIRE(ev->type == MRL_EVENT_FENCED && ev->mr == mr, "a fenced event for the MR (type %s)",
		mrl_event_str(ev->type));
}

int main(void)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	char *buf = mmap(NULL, (NMANY + 4) * pg, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(buf != MAP_FAILED, "mmap");
	memset(buf, 1, (NMANY + 4) * pg);
	mrl_ctx *a = t_ctx_flags("mock", 500, MRL_CTX_NO_LEASES);
	mrl_ctx *b = t_ctx_flags("mock", 500, MRL_CTX_NO_LEASES);
	mrl_mr_t m1, m2, mb, bx[2];
	REQUIRE(mrl_mr_reg(a, buf, pg, MRL_ACCESS_REMOTE_WRITE, NULL, &m1) == 0, "register m1");
	REQUIRE(mrl_mr_reg(a, buf + pg, pg, MRL_ACCESS_REMOTE_WRITE, NULL, &m2) == 0, "register m2");
	REQUIRE(mrl_mr_reg(b, buf + 2 * pg, pg, MRL_ACCESS_REMOTE_WRITE, NULL, &mb) == 0, "register mb");
	for (int i = 0; i < 2; i++) /* the last one's handle value is not one of a's */
		REQUIRE(mrl_mr_reg(b, buf + (size_t)(3 + i) * pg, pg, 0, NULL, &bx[i]) == 0, "register");

	/* 1. one event, acked through a copy */
	struct mrl_event ev, copy, f;
	fence_and_get(a, m1, &ev);
	CHECK(mrl_event_get(a, &f) == -EAGAIN, "one event only");
	copy = ev;

	/* forgeries first, while the event is outstanding: none may free m1 */
	NEG(mrl_event_ack(NULL, &copy), -EINVAL);
	NEG(mrl_event_ack(a, NULL), -EINVAL);
	f = ev;
	f.internal = 0;
	NEG(mrl_event_ack(a, &f), -EINVAL);
	for (int i = 0; i < 64; i++) {
		f = ev;
		do
			f.internal = rnd();
		while (f.internal == ev.internal);
		NEG(mrl_event_ack(a, &f), -EINVAL);
	}
	f = ev;
	f.internal = ev.internal + 1; /* the next sequence number, not given yet */
	NEG(mrl_event_ack(a, &f), -EINVAL);
	f = ev;
	f.mr = m2; /* right sequence number, another MR's handle */
	NEG(mrl_event_ack(a, &f), -EINVAL);
	f = ev;
	f.mr = bx[1]; /* a handle from another context */
	NEG(mrl_event_ack(a, &f), -EINVAL);
	/* a real event from context b, acked on a */
	struct mrl_event evb;
	fence_and_get(b, mb, &evb);
	NEG(mrl_event_ack(a, &evb), -EINVAL);
	/* and a's event acked on b: both MRs have the same handle value (each
	 * context's first), the sequence number tells the contexts apart */
	CHECK(ev.mr == evb.mr, "first handles of two contexts coincide (%#llx, %#llx)",
	      (unsigned long long)ev.mr, (unsigned long long)evb.mr);
	NEG(mrl_event_ack(b, &ev), -EINVAL);
	CHECK(strstr(mrl_last_error(), "another context") || strstr(mrl_last_error(), "this context"),
	      "the message names the context: %s", mrl_last_error());

	struct mrl_mr_info in = t_query(a, m1);
	CHECK(in.size && in.state == MRL_STATE_FENCED, "m1 still queryable after the forgeries");
	CHECK(t_query(a, m2).state == MRL_STATE_ACTIVE, "m2 untouched");

	NEG(mrl_event_ack(a, &copy), 0);
	NEG(mrl_event_ack(a, &copy), -EINVAL); /* the same copy again */
	NEG(mrl_event_ack(a, &ev), -EINVAL);   /* the original: the same event */
	CHECK(strstr(mrl_last_error(), "acked already") != NULL, "the message says why: %s",
	      mrl_last_error());
	in = t_query(a, m1);
	CHECK(in.size && in.state == MRL_STATE_FENCED, "m1 still queryable after the double ack");
	NEG(mrl_event_ack(b, &evb), 0);
	NEG(mrl_event_ack(b, &evb), -EINVAL);
	NEG(mrl_mr_dereg(a, m1), 0);
	NEG(mrl_mr_dereg(b, mb), 0);
	NEG(mrl_mr_dereg(b, bx[0]), 0);
	NEG(mrl_mr_dereg(b, bx[1]), 0);

	/* 2. deregistered while its event is outstanding, then acked: the MR's
	 * memory is held by the event (ASan reports any use after free) */
	fence_and_get(a, m2, &ev);
	copy = ev;
	NEG(mrl_mr_dereg(a, m2), 0);
	CHECK(mrl_mr_query(a, m2, &in) == -ESTALE, "deregistered handle is stale");
	while (mrl_event_get(a, &f) == 0) /* whatever the dereg queued */
		NEG(mrl_event_ack(a, &f), 0);
	NEG(mrl_event_ack(a, &copy), 0);
	NEG(mrl_event_ack(a, &ev), -EINVAL);

	/* 3. many outstanding at once (the table grows), acked out of order */
	static mrl_mr_t many[NMANY];
	static struct mrl_event evs[NMANY];
	for (int i = 0; i < NMANY; i++)
		REQUIRE(mrl_mr_reg(a, buf + (size_t)(i + 4) * pg, pg, MRL_ACCESS_REMOTE_WRITE, NULL,
				   &many[i]) == 0, "register %d", i);
	for (int i = 0; i < NMANY; i++)
		fence_and_get(a, many[i], &evs[i]);
	for (int i = 0; i < NMANY; i++) /* each event's sequence number is its own */
		for (int j = i + 1; j < NMANY; j++)
			if (evs[i].internal == evs[j].internal)
				CHECK(0, "events %d and %d share a sequence number", i, j);
	for (int i = NMANY - 1; i >= 0; i -= 2)
		NEG(mrl_event_ack(a, &evs[i]), 0);
	for (int i = 0; i < NMANY; i++) {
		f = evs[i];
		f.mr = many[(i + 1) % NMANY]; /* swapped handles never match */
		NEG(mrl_event_ack(a, &f), -EINVAL);
	}
	for (int i = NMANY - 2; i >= 0; i -= 2)
		NEG(mrl_event_ack(a, &evs[i]), 0);
	for (int i = 0; i < NMANY; i++)
		NEG(mrl_event_ack(a, &evs[i]), -EINVAL);
	for (int i = 0; i < NMANY; i++)
		NEG(mrl_mr_dereg(a, many[i]), 0);
	struct mrl_stats st = {.size = sizeof(st)};
	CHECK(mrl_ctx_stats(a, &st) == 0 && st.mrs == 0, "no MR left registered");

	/* 4. events left unacked (one got, one still queued) go with the context
	 * (the ASan build's leak check sees any MR left behind) */
	REQUIRE(mrl_mr_reg(a, buf, pg, MRL_ACCESS_REMOTE_WRITE, NULL, &m1) == 0, "register again");
	REQUIRE(mrl_mr_reg(a, buf + pg, pg, MRL_ACCESS_REMOTE_WRITE, NULL, &m2) == 0, "register again");
	fence_and_get(a, m1, &ev);
	REQUIRE(mrl_mr_fence(a, m2) == 0, "fence m2, event left queued");
	NEG(mrl_ctx_destroy(a), 0);
	NEG(mrl_ctx_destroy(b), 0);
	munmap(buf, (NMANY + 4) * pg);
	return t_done("t_event_ack");
}
