/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Authentication at the bootstrap: endpoints with the same secret connect
 * and work; a wrong secret, a missing one on either side, or an endpoint
 * with no secret and no MRL_EP_INSECURE are refused with a message that
 * says which; the owner makes no peer entry for a refused connection, and
 * 500 refused handshakes leave the heap where it was. Secrets from the
 * options, MRLEASE_SECRET and MRLEASE_SECRET_FILE (only a file its owner
 * alone may read). */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "ep_int.h"
#include "helpers.h"

#define SECRET "the-owner-and-its-peers-share-this"

struct owner {
	mrl_ctx *ctx;
	mrl_ep *ep;
	uint16_t port;
	pthread_t th;
	atomic_bool stop;
	atomic_int accepted;
	mrl_peer *last;
};

/* the owner's loop, as `mrlease serve` runs it */
static void *owner_main(void *a)
{
	struct owner *o = a;
	while (!atomic_load(&o->stop)) {
		mrl_peer *p;
		if (mrl_ep_accept(o->ep, 50, &p) == 0) {
			o->last = p;
			atomic_fetch_add(&o->accepted, 1);
		}
	}
	return NULL;
}

static void owner_start(struct owner *o, const char *secret, unsigned flags)
{
	memset(o, 0, sizeof(*o));
	o->ctx = t_ctx("tcp;ofi_rxm", 10000);
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = MRL_EP_AUTO_PROGRESS | flags,
				 .secret = secret, .secret_len = secret ? strlen(secret) : 0};
	REQUIRE(mrl_ep_create(o->ctx, &eo, &o->ep) == 0, "owner endpoint");
	REQUIRE(mrl_ep_listen(o->ep, "127.0.0.1", 0, &o->port) == 0, "listen");
	pthread_create(&o->th, NULL, owner_main, o);
}

static void owner_stop(struct owner *o)
{
	atomic_store(&o->stop, true);
	pthread_join(o->th, NULL);
	mrl_ep_destroy(o->ep);
	mrl_ctx_destroy(o->ctx);
}

/* connect with this secret (NULL: insecure); the result of mrl_ep_connect */
static int try_connect(mrl_ctx *ctx, struct owner *o, const char *secret, mrl_ep **epp, mrl_peer **pp)
{
	struct mrl_ep_opts eo = {.size = sizeof(eo), .flags = secret ? 0 : MRL_EP_INSECURE,
				 .secret = secret, .secret_len = secret ? strlen(secret) : 0};
	mrl_ep *ep;
	mrl_peer *p = NULL;
	REQUIRE(mrl_ep_create(ctx, &eo, &ep) == 0, "peer endpoint");
	int r = mrl_ep_connect(ep, "127.0.0.1", o->port, T_HANG_MS, &p);
	if (epp && r == 0) {
		*epp = ep;
		*pp = p;
	} else {
		mrl_ep_destroy(ep);
	}
	return r;
}

static uint32_t owner_peers(struct owner *o)
{
	mrl_lock(&o->ep->lock);
	uint32_t n = 0;
	for (uint32_t i = 0; i < o->ep->npeers; i++)
		n += o->ep->peers[i] != NULL;
	mrl_unlock(&o->ep->lock);
	return n;
}

static void test_secrets_from(void)
{
	mrl_ctx *ctx = t_ctx("tcp;ofi_rxm", 10000);
	mrl_ep *ep;
	char dir[256], path[300];
	/* nothing anywhere: refused, and it says how to give one */
	unsetenv("MRLEASE_SECRET");
	unsetenv("MRLEASE_SECRET_FILE");
	struct mrl_ep_opts eo = {.size = sizeof(eo)};
	CHECK(mrl_ep_create(ctx, &eo, &ep) == -EACCES, "no secret, no MRL_EP_INSECURE");
	CHECK(strstr(mrl_last_error(), "MRL_EP_INSECURE") != NULL, "the message names the way out");
	CHECK(mrl_ep_create(ctx, NULL, &ep) == -EACCES, "no options, no secret");
	/* an options struct from before the secret fields: the environment's */
	struct mrl_ep_opts old = {.size = offsetof(struct mrl_ep_opts, secret), .secret = "ignored"};
	CHECK(mrl_ep_create(ctx, &old, &ep) == -EACCES, "a short struct's secret is not read");
	eo.secret = "short";
	eo.secret_len = 5;
	CHECK(mrl_ep_create(ctx, &eo, &ep) == -EINVAL, "a 5-byte secret");
	eo.flags = 0x80;
	eo.secret = SECRET;
	eo.secret_len = strlen(SECRET);
	CHECK(mrl_ep_create(ctx, &eo, &ep) == -EINVAL, "unknown flags");
	/* a secret file only its owner may read */
	t_scratch("ext4", dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/secret", dir);
	FILE *f = fopen(path, "w");
	REQUIRE(f && fprintf(f, "%s\n", SECRET) > 0 && fclose(f) == 0, "write %s", path);
	chmod(path, 0644);
	setenv("MRLEASE_SECRET_FILE", path, 1);
	CHECK(mrl_ep_create(ctx, NULL, &ep) == -EACCES, "a secret file others can read");
	CHECK(strstr(mrl_last_error(), "chmod 600") != NULL, "the message says what to do");
	chmod(path, 0600);
	CHECK(mrl_ep_create(ctx, NULL, &ep) == 0, "a secret file of mode 0600");
	/* the file's secret (newline stripped) is the one an owner with the
	 * same bytes in its options accepts */
	struct owner o;
	owner_start(&o, SECRET, 0);
	mrl_peer *p;
	CHECK(mrl_ep_connect(ep, "127.0.0.1", o.port, T_HANG_MS, &p) == 0, "file secret accepted");
	mrl_ep_destroy(ep);
	unsetenv("MRLEASE_SECRET_FILE");
	setenv("MRLEASE_SECRET", SECRET, 1);
	CHECK(mrl_ep_create(ctx, NULL, &ep) == 0, "MRLEASE_SECRET");
	CHECK(mrl_ep_connect(ep, "127.0.0.1", o.port, T_HANG_MS, &p) == 0, "environment secret accepted");
	mrl_ep_destroy(ep);
	setenv("MRLEASE_SECRET", "another-secret-of-enough-bytes", 1);
	CHECK(mrl_ep_create(ctx, NULL, &ep) == 0, "another MRLEASE_SECRET");
	CHECK(mrl_ep_connect(ep, "127.0.0.1", o.port, T_HANG_MS, &p) == -EACCES, "wrong secret refused");
	mrl_ep_destroy(ep);
	unsetenv("MRLEASE_SECRET");
	owner_stop(&o);
	unlink(path);
	rmdir(dir);
	mrl_ctx_destroy(ctx);
}

static void test_refusals(void)
{
	mrl_ctx *ctx = t_ctx("tcp;ofi_rxm", 10000);
	struct owner o;
	owner_start(&o, SECRET, 0);
	mrl_ep *ep;
	mrl_peer *p;
	/* the right secret: connected, and the owner's MRs listed */
	REQUIRE(try_connect(ctx, &o, SECRET, &ep, &p) == 0, "same secret");
	char *mem = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mrl_mr_t mr, ids[4];
	REQUIRE(mrl_mr_reg(o.ctx, mem, 65536, MRL_ACCESS_REMOTE_READ, NULL, &mr) == 0, "register");
	CHECK(mrl_peer_list(p, ids, 4, T_HANG_MS) == 1 && ids[0] == mr, "authenticated peer lists the MR");
	mrl_ep_destroy(ep);
	uint32_t before = owner_peers(&o);
	uint64_t failed = mrl_ep_auth_failed(o.ep);
	/* a wrong secret: the owner's proof does not match, the connector
	 * stops before sending its own */
	CHECK(try_connect(ctx, &o, "a-secret-the-owner-does-not-have", NULL, NULL) == -EACCES,
	      "wrong secret refused");
	CHECK(strstr(mrl_last_error(), "does not know our secret") != NULL, "says why: %s",
	      mrl_last_error());
	/* no secret against an owner that has one */
	CHECK(try_connect(ctx, &o, NULL, NULL, NULL) == -EACCES, "insecure peer refused");
	CHECK(strstr(mrl_last_error(), "requires a secret") != NULL, "says why: %s", mrl_last_error());
	CHECK(owner_peers(&o) == before, "no peer entry for a refused connection (%u, was %u)",
	      owner_peers(&o), before);
	CHECK(atomic_load(&o.accepted) == 1, "only the right secret was accepted (%d)",
	      atomic_load(&o.accepted));
	(void)failed;
	mrl_mr_dereg(o.ctx, mr);
	munmap(mem, 65536);
	owner_stop(&o);

	/* an insecure owner: a peer with a secret refuses it; two insecure
	 * endpoints connect (an explicit choice on both sides) */
	owner_start(&o, NULL, MRL_EP_INSECURE);
	CHECK(try_connect(ctx, &o, SECRET, NULL, NULL) == -EACCES, "secured peer refuses an insecure owner");
	CHECK(strstr(mrl_last_error(), "has no secret") != NULL, "says why: %s", mrl_last_error());
	CHECK(try_connect(ctx, &o, NULL, &ep, &p) == 0, "insecure to insecure");
	CHECK(mrl_peer_list(p, ids, 4, T_HANG_MS) == 0, "and the control channel works");
	mrl_ep_destroy(ep);
	owner_stop(&o);
	mrl_ctx_destroy(ctx);
}

/* The connector's wrong proof: an owner whose own proof the connector
 * accepts (same secret) but whose connector then sends garbage. Built
 * from the raw handshake: hello, challenge, a wrong proof, a refusal. */
static void test_wrong_proof(void)
{
	struct owner o;
	owner_start(&o, SECRET, 0);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(o.port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	REQUIRE(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
	struct boot_hello h = {.magic = MRL_BOOT_MAGIC, .namelen = 16};
	struct boot_challenge c;
	struct boot_proof pf = {.magic = MRL_BOOT_MAGIC};
	struct boot_ready r;
	CHECK(send(s, &h, sizeof(h), 0) == sizeof(h), "hello");
	CHECK(recv(s, &c, sizeof(c), MSG_WAITALL) == sizeof(c), "challenge");
	CHECK(send(s, &pf, sizeof(pf), 0) == sizeof(pf), "a proof of zeros");
	CHECK(recv(s, &r, sizeof(r), MSG_WAITALL) == sizeof(r) && r.magic == MRL_BOOT_MAGIC &&
		      r.status == -EACCES,
	      "refused");
	char x;
	CHECK(recv(s, &x, 1, 0) == 0, "and hung up");
	close(s);
	CHECK(mrl_ep_auth_failed(o.ep) == 1, "counted (%llu)", (unsigned long long)mrl_ep_auth_failed(o.ep));
	CHECK(owner_peers(&o) == 0, "no peer entry");
	owner_stop(&o);
}

/* 500 refused handshakes (wrong secret) cost the heap nothing that stays */
static void test_no_leak(void)
{
	mrl_ctx *ctx = t_ctx("tcp;ofi_rxm", 10000);
	struct owner o;
	owner_start(&o, SECRET, 0);
	struct mrl_ep_opts eo = {.size = sizeof(eo), .secret = "wrong-wrong-wrong-wrong", .secret_len = 23};
	mrl_ep *ep;
	mrl_peer *p;
	REQUIRE(mrl_ep_create(ctx, &eo, &ep) == 0, "peer endpoint");
	for (int i = 0; i < 50; i++) /* warm up: the allocator's and libfabric's first uses */
		mrl_ep_connect(ep, "127.0.0.1", o.port, T_HANG_MS, &p);
	struct mallinfo2 m0 = mallinfo2();
	int refused = 0;
	for (int i = 0; i < 500; i++)
		refused += mrl_ep_connect(ep, "127.0.0.1", o.port, T_HANG_MS, &p) == -EACCES;
	struct mallinfo2 m1 = mallinfo2();
	CHECK(refused == 500, "500 wrong secrets refused (%d)", refused);
	long grew = (long)m1.uordblks - (long)m0.uordblks;
	printf("heap after 500 refused handshakes: %+ld bytes\n", grew);
#if !defined(__SANITIZE_ADDRESS__)
	/* ASan's allocator does not feed mallinfo; its leak check runs at exit */
	CHECK(grew < 16384, "the heap grew %ld bytes over 500 refused handshakes", grew);
#endif
	CHECK(ep->npeers <= 1, "the connector reuses its failed peer slot (%u)", ep->npeers);
	mrl_ep_destroy(ep);
	owner_stop(&o);
	mrl_ctx_destroy(ctx);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_secrets_from();
	test_refusals();
	test_wrong_proof();
	test_no_leak();
	return t_done("t_auth");
}
