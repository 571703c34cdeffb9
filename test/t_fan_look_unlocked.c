/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* No /proc read under ctx->lock in fanotify's landing (issue 10): a change
 * whose landing only the actor's leaving its call shows (an fallocate
 * UNSHARE ext4 refuses after its pre-content event: no FAN_MODIFY, no new
 * size) is judged by the actor's /proc/TID/syscall line, read by the
 * monitor with no lock held. The monitor is held just before that read
 * (mrl_fan_look_hook, an event the test waits for); meanwhile calls that
 * need ctx->lock complete (mrl_ctx_stats, mrl_mr_query, the BREAK event got
 * and acked). Released, the read sees the actor gone from the call and the
 * MR is restored. Had the line been read under the lock, the stats call
 * would wait for the held monitor: the child hangs and the parent fails it.
 * Run in a child so a hang fails the test instead of the suite. */
#include <linux/falloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>

#include "mrl_int.h"
#include "helpers.h"

#define MB (1u << 20)

static sem_t in_look, go;
static _Atomic int looks;

static void hold(struct mrl_ctx *ctx)
{
	(void)ctx;
	if (looks++ == 0) {
		sem_post(&in_look);
		sem_wait(&go);
	}
}

static const char *path;
static int actor_ret, actor_errno;

static void *actor_main(void *p)
{
	(void)p;
	int fd = open(path, O_RDWR);
	actor_ret = fd < 0 ? -1 : fallocate(fd, FALLOC_FL_UNSHARE_RANGE, 0, 4096);
	actor_errno = errno;
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int child(void)
{
	char dir[256], file[300];
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(file, sizeof(file), "%s/f", dir);
	path = file;
	t_make_file(file, MB);
	mrl_ctx *ctx = t_ctx("mock", 10000);
	if (!(mrl_ctx_watchers(ctx) & MRL_WATCH_FANOTIFY))
		t_skip("fanotify pre-content events unavailable here (needs Linux >= 6.14 and CAP_SYS_ADMIN): %s",
		       mrl_last_error());
	void *base;
	REQUIRE(mrl_file_map(ctx, file, 0, MB, PROT_READ | PROT_WRITE, &base) == 0, "map");
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, base, MB, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");

	sem_init(&in_look, 0, 0);
	sem_init(&go, 0, 0);
	mrl_fan_look_hook = hold;
	pthread_t th;
	pthread_create(&th, NULL, actor_main, NULL);
	sem_wait(&in_look); /* the change was let go; the monitor is about to read the actor's line */

	struct mrl_stats st = {.size = sizeof(st)};
	CHECK(mrl_ctx_stats(ctx, &st) == 0 && st.mrs == 1, "stats while the monitor's read is held");
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.state == MRL_STATE_PAUSED && in.breaks == 1, "query while it is held: paused by the break (%s)",
	      mrl_state_str(in.state));
	struct mrl_event ev;
	CHECK(t_wait_event(ctx, MRL_EVENT_BREAK, mr, T_HANG_MS, &ev) == 0 && ev.cause == MRL_CAUSE_LAYOUT,
	      "its BREAK event got and acked while it is held");
	pthread_join(th, NULL); /* the actor was let go before the look */
	CHECK(actor_ret < 0 && actor_errno == EOPNOTSUPP, "ext4 refused the unshare after its event (%d, %s)",
	      actor_ret, strerror(actor_errno));
	sem_post(&go);

	CHECK(t_wait_event(ctx, MRL_EVENT_RESTORED, mr, T_HANG_MS, &ev) == 0,
	      "restored once the read saw the actor leave its call");
	mrl_fan_look_hook = NULL;
	CHECK(looks >= 1, "the landing was judged by a look (%d)", (int)looks);
	in = t_query(ctx, mr);
	CHECK(in.state == MRL_STATE_ACTIVE && in.restores == 1, "active again (%s)", mrl_state_str(in.state));
	mrl_mr_dereg(ctx, mr);
	mrl_ctx_destroy(ctx);
	unlink(file);
	rmdir(dir);
	return t_done("t_fan_look_unlocked child");
}

int main(void)
{
	return t_in_child(child, "t_fan_look_unlocked",
			  "the child hung: a call needing the context lock waited for fanotify's /proc read");
}
