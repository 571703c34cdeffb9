/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The registrar contract, one suite run against every registrar: mock,
 * libfabric (tcp;ofi_rxm) and io_uring fixed buffers.
 * - registration gives distinct keys; a key asked for while in use is
 *   refused or replaced by another, never shared;
 * - a restore (in place where the device has it, else dereg + reg) keeps the
 *   key or reports the new one, and the device reaches the range under it;
 * - a break (hole punch by another process) pauses and restores every MR
 *   keeping its key; dereg ends device access; a second dereg is -ESTALE;
 * - bad input gets -errno and a message, for every registrar alike. */
#include <sys/mman.h>

#include "uring_rig.h"
#include "mrl_int.h"

#define LEN (8 * PG)

struct target {
	const char *name, *provider;
	struct rig rig;
	bool rig_open;
};

/* Does the device reach [addr, addr+len) under key? (where it can be asked) */
static int probe(struct target *t, mrl_ctx *ctx, uint64_t key, void *addr, size_t len)
{
	struct mrl_ctx *c = ctx;
	if (!strcmp(t->provider, "mock")) {
		void *a;
		size_t l;
		return mrl_mock_lookup(c->dev, key, &a, &l) == 0 && a == addr && l == len ? 1 : 0;
	}
	if (!strcmp(t->provider, "uring")) {
		/* the slot's last page must take a READ_FIXED */
		uint8_t *last = (uint8_t *)addr + len - PG;
		int res = rig_read_fixed(&t->rig, last, 0, (unsigned)key, 9);
		if (res != PG) { /* refused: the page sent is still in the socket */
			uint8_t junk[PG];
			if (recv(t->rig.sv[0], junk, sizeof(junk), MSG_DONTWAIT) < 0) {
			}
		}
		return res == PG && last[0] == rig_byte(9, 0) ? 1 : 0;
	}
	return -1; /* libfabric: no local way to ask the domain */
}

static mrl_ctx *open_target(struct target *t)
{
	struct mrl_ctx_opts o = {.size = sizeof(o), .provider = t->provider, .deadline_ms = 3000};
	mrl_ctx *ctx = NULL;
	int ret = mrl_ctx_create(&o, &ctx);
	if (ret) {
		printf("-- %s: not available here (%s): skipped\n", t->name, mrl_last_error());
		return NULL;
	}
	if (!strcmp(t->provider, "uring")) {
		rig_open(&t->rig);
		t->rig_open = true;
		REQUIRE(mrl_uring_attach(ctx, &t->rig.ring, 8) == 0, "attach: %s", mrl_last_error());
	}
	return ctx;
}

static void suite(struct target *t)
{
	mrl_ctx *ctx = open_target(t);
	if (!ctx)
		return;
	struct mrl_ctx *c = ctx;
	const struct mrl_registrar_ops *ops = c->rops;
	printf("-- %s (registrar %s)\n", t->name, ops->name);
	CHECK(ops->size >= offsetof(struct mrl_registrar_ops, close) + sizeof(ops->close),
	      "ops table carries its size");
	CHECK(ops->open && ops->reg && ops->dereg && ops->close, "mandatory ops present");
	CHECK(ops->desc && ops->pins && ops->quiesce && ops->revoke && ops->restore,
	      "optional ops answered (by stubs where the device has none)");

	/* 1. ops level: distinct keys; a key in use is never shared */
	uint8_t *anon = mmap(NULL, 4 * LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	REQUIRE(anon != MAP_FAILED, "mmap");
	memset(anon, 0, 4 * LEN);
	uint64_t k1 = 0;
	mrl_lock(&c->lock);
	REQUIRE(mrl_key_new(c, &k1) == 0, "a fresh key: %s", mrl_last_error());
	mrl_unlock(&c->lock);
	uint64_t k2 = k1;
	void *h1 = NULL, *h2 = NULL;
	REQUIRE(ops->reg(c->dev, anon, LEN, MRL_ACCESS_REMOTE_WRITE, &k1, &h1) == 0, "reg 1: %s",
		mrl_last_error());
	int ret = ops->reg(c->dev, anon + LEN, LEN, MRL_ACCESS_REMOTE_WRITE, &k2, &h2);
	CHECK(ret < 0 || k2 != k1, "key %#llx asked while in use: refused or another reported (%d, %#llx)",
	      (unsigned long long)k1, ret, (unsigned long long)k2);
	if (ret == 0)
		CHECK(ops->dereg(c->dev, h2) == 0, "dereg 2");
	CHECK(probe(t, ctx, k1, anon, LEN) != 0, "the device reaches MR 1 under its key");

	/* 2. restore keeps the key or reports the new one */
	uint64_t k = k1;
	ret = ops->restore(c->dev, h1, anon, LEN / 2);
	CHECK(ret == 0 || ret == -EOPNOTSUPP, "restore in place, or -EOPNOTSUPP (%d)", ret);
	if (ret == 0) {
		CHECK(probe(t, ctx, k, anon, LEN / 2) != 0, "restored range reached under the same key");
	} else {
		CHECK(ops->dereg(c->dev, h1) == 0, "dereg before re-registering");
		REQUIRE(ops->reg(c->dev, anon, LEN / 2, MRL_ACCESS_REMOTE_WRITE, &k, &h1) == 0, "re-reg");
		printf("   re-registration: key %#llx -> %#llx (%s)\n", (unsigned long long)k1,
		       (unsigned long long)k, k == k1 ? "kept" : "new one reported");
		CHECK(probe(t, ctx, k, anon, LEN / 2) != 0, "re-registered range reached under the reported key");
	}
	/* a device the library quiesces has revoke too, and the other way round */
	int q = ops->quiesce(c->dev, h1, 1), rv = ops->revoke(c->dev, h1);
	CHECK((q == -EOPNOTSUPP) == (rv == -EOPNOTSUPP), "quiesce and revoke come together (%d, %d)", q, rv);
	if (rv != -EOPNOTSUPP) {
		CHECK(q == 0, "quiesce with nothing in flight (%d)", q);
		CHECK(rv == 0, "revoke (%d)", rv);
		CHECK(probe(t, ctx, k, anon, LEN / 2) != 1, "a revoked registration is not reached");
		CHECK(ops->restore(c->dev, h1, anon, LEN) == 0, "restore after revoke");
		CHECK(probe(t, ctx, k, anon, LEN) != 0, "reached again, same key");
	}
	CHECK(ops->dereg(c->dev, h1) == 0, "dereg");
	CHECK(probe(t, ctx, k, anon, LEN) != 1, "a deregistered key is not reached");

	/* 3. through the library: a break restores every MR, keys kept */
	char dir[256], path[300];
	t_scratch("tmpfs", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	t_make_file(path, 2 * LEN);
	void *v;
	REQUIRE(mrl_file_map(ctx, path, 0, 2 * LEN, PROT_READ | PROT_WRITE, &v) == 0, "map");
	uint8_t *p = v;
	mrl_mr_t mr[2];
	uint64_t key[2];
	for (int i = 0; i < 2; i++) {
		REQUIRE(mrl_mr_reg(ctx, p + i * LEN, LEN, MRL_ACCESS_REMOTE_WRITE, NULL, &mr[i]) == 0,
			"mrl_mr_reg %d: %s", i, mrl_last_error());
		key[i] = t_query(ctx, mr[i]).key;
	}
	CHECK(key[0] != key[1], "distinct keys");
	CHECK(t_sh("fallocate --punch-hole -o %u -l %u %s", PG, LEN, path) == 0, "punch over both MRs");
	for (int i = 0; i < 2; i++) {
		CHECK(t_wait_state(ctx, mr[i], MRL_STATE_ACTIVE, T_HANG_MS) == 0, "MR %d active again", i);
		struct mrl_mr_info in = t_query(ctx, mr[i]);
		CHECK(in.restores == 1, "MR %d restored once (%u)", i, in.restores);
		CHECK(in.key == key[i], "MR %d key kept (%#llx -> %#llx)", i, (unsigned long long)key[i],
		      (unsigned long long)in.key);
		CHECK(probe(t, ctx, in.key, p + i * LEN, LEN) != 0, "MR %d reached after the restore", i);
	}

	/* 4. dereg, then a second dereg of the same handle */
	CHECK(mrl_mr_dereg(ctx, mr[0]) == 0, "dereg");
	CHECK(probe(t, ctx, key[0], p, LEN) != 1, "no device access after dereg");
	CHECK(mrl_mr_dereg(ctx, mr[0]) == -ESTALE, "double dereg: -ESTALE");
	CHECK(mrl_mr_query(ctx, mr[0], &(struct mrl_mr_info){.size = sizeof(struct mrl_mr_info)}) ==
		      -ESTALE,
	      "query of a deregistered MR: -ESTALE");

	/* 5. bad input */
	mrl_mr_t bad;
	CHECK(mrl_mr_reg(ctx, NULL, LEN, 0, NULL, &bad) == -EINVAL, "NULL address");
	CHECK(mrl_mr_reg(ctx, anon, 0, 0, NULL, &bad) == -EINVAL, "zero length");
	CHECK(mrl_mr_reg(ctx, anon, LEN, 0x80, NULL, &bad) == -EINVAL, "unknown access bits");
	uint8_t *hole = mmap(NULL, 2 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(hole, 2 * PG);
	CHECK(mrl_mr_reg(ctx, hole, PG, 0, NULL, &bad) == -EFAULT, "unmapped memory: -EFAULT");
	CHECK(strlen(mrl_last_error()) > 0, "with a message");
	uint8_t *ro = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mrl_mr_reg(ctx, ro, PG, MRL_ACCESS_REMOTE_WRITE, NULL, &bad) == -EACCES,
	      "remote write on read-only memory: -EACCES");
	munmap(ro, PG);

	CHECK(mrl_mr_dereg(ctx, mr[1]) == 0, "dereg 2");
	CHECK(mrl_file_unmap(ctx, p, 2 * LEN) == 0, "unmap");
	mrl_ctx_destroy(ctx);
	munmap(anon, 4 * LEN);
	if (t->rig_open)
		rig_close(&t->rig);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	struct target targets[] = {
		{.name = "mock", .provider = "mock"},
		{.name = "libfabric", .provider = "tcp;ofi_rxm"},
		{.name = "io_uring", .provider = "uring"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(targets); i++)
		suite(&targets[i]);
	return t_done("t_registrar");
}
