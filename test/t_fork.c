/* fork: registered ranges are not copied into the child (MADV_DONTFORK, as
 * ibv_dontfork_range does), so copy-on-write never moves the parent's pages
 * away from the device; the child cannot use the parent's context or MRs
 * (every call says EPERM and why); the parent goes on unharmed. After
 * deregistration the range is copied again. */
#include <sys/mman.h>

#include "helpers.h"

#define LEN (1u << 20)

static bool mapped(void *a)
{
	unsigned char v;
	return mincore(a, 4096, &v) == 0;
}

int main(void)
{
	mrl_ctx *ctx = t_ctx("mock", 1000);
	char *a = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *other = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(a, 1, LEN);
	memset(other, 2, LEN);
	mrl_mr_t mr;
	REQUIRE(mrl_mr_reg(ctx, a, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr) == 0, "register");
	pid_t c = fork();
	if (c == 0) {
		int bad = 0;
		if (mapped(a))
			bad |= 1; /* the registered range must not exist here */
		if (!mapped(other) || other[0] != 2)
			bad |= 2; /* other memory is copied as usual */
		struct mrl_mr_info in = {.size = sizeof(in)};
		if (mrl_mr_query(ctx, mr, &in) != -EPERM)
			bad |= 4;
		if (!strstr(mrl_last_error(), "parent"))
			bad |= 8;
		mrl_mr_t m2;
		if (mrl_mr_reg(ctx, other, 4096, 0, NULL, &m2) != -EPERM)
			bad |= 16;
		if (mrl_mr_dereg(ctx, mr) != -EPERM)
			bad |= 32;
		struct mrl_event ev;
		if (mrl_event_get(ctx, &ev) != -EPERM)
			bad |= 64;
		/* the child's own context works */
		mrl_ctx *mine;
		struct mrl_ctx_opts o = {.size = sizeof(o), .provider = "mock"};
		if (mrl_ctx_create(&o, &mine) || mrl_mr_reg(mine, other, 4096, 0, NULL, &m2) ||
		    mrl_mr_dereg(mine, m2) || mrl_ctx_destroy(mine))
			bad |= 128;
		/* munmap of the parent's range in the child does not touch the parent's MR */
		munmap(a, LEN);
		_exit(bad);
	}
	int st = t_wait_status(c);
	CHECK(!(st & 1), "the registered range is not in the child");
	CHECK(!(st & 2), "the rest of memory is");
	CHECK(!(st & (4 | 16 | 32 | 64)), "the child gets EPERM from the parent's context (status %#x)", st);
	CHECK(!(st & 8), "and a message saying why");
	CHECK(!(st & 128), "the child can make its own context");
	struct mrl_mr_info in = t_query(ctx, mr);
	CHECK(in.state == MRL_STATE_ACTIVE && a[100] == 1, "the parent's MR and memory are untouched");
	mrl_mr_dereg(ctx, mr);
	c = fork();
	if (c == 0)
		_exit(mapped(a) && a[5] == 1 ? 0 : 1);
	CHECK(t_wait_status(c) == 0, "after deregistration the range is copied into a child again");
	mrl_ctx_destroy(ctx);
	return t_done("t_fork");
}
