/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Bootstrap: a TCP (or, "unix:PATH", Unix-domain) connection on which both
 * sides prove they know the endpoint's secret, or with MRL_EP_PEERCRED show
 * the kernel's word for their uid, and exchange fabric addresses (ep_int.h
 * has the four messages); it then stays open as the peer's liveness
 * channel. Handshakes never block the owner; a failed one leaves nothing
 * behind. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include "ep_int.h"

#define MAX_BOOTS 64

/* A handshake's budget, from accept: a silent connection is dropped then. */
int mrl_ep_boot_deadline_ms = 5000;

static int io_full(int fd, void *buf, size_t len, bool wr, int timeout_ms)
{
	size_t done = 0;
	uint64_t until = mrl_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (done < len) {
		struct pollfd pfd = {.fd = fd, .events = wr ? POLLOUT : POLLIN};
		uint64_t now = mrl_now_ns();
		if (now >= until)
			return -ETIMEDOUT;
		int pr = poll(&pfd, 1, (int)((until - now) / 1000000ull) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return pr < 0 ? -errno : -ETIMEDOUT;
		ssize_t n = wr ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL)
			       : recv(fd, (char *)buf + done, len - done, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

/* A peer entry, not usable (dead) until its handshake is through. A slot a
 * failed handshake left is used again: the tags tell old and new apart. */
static struct mrl_peer *peer_new_locked(struct mrl_ep *ep)
{
	uint32_t idx = 0;
	while (idx < ep->npeers && ep->peers[idx])
		idx++;
	if (idx == ep->cap) {
		uint32_t cap = ep->cap ? ep->cap * 2 : 8;
		struct mrl_peer **n = realloc(ep->peers, cap * sizeof(*n));
		if (!n)
			return NULL;
		ep->peers = n;
		ep->cap = cap;
	}
	struct mrl_peer *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->tp.t = &mrl_ep_transport;
	p->ep = ep;
	p->idx = idx;
	p->sock = -1;
	p->addr = FI_ADDR_NOTAVAIL;
	p->dead = true;
	ep->peers[idx] = p;
	if (idx == ep->npeers)
		ep->npeers++;
	return p;
}

static bool name_ok(uint32_t namelen)
{
	return namelen && namelen <= sizeof(((struct boot_hello *)0)->name);
}

/* The peer is usable from here: its messages are accepted from now on. */
static int peer_up_locked(struct mrl_ep *ep, struct mrl_peer *p, const unsigned char *name,
			  uint32_t remote_idx, int sock)
{
	int ret = fi_av_insert(ep->av, name, 1, &p->addr, 0, NULL);
	if (ret != 1) {
		p->addr = FI_ADDR_NOTAVAIL;
		return mrl_err(EADDRNOTAVAIL, "fi_av_insert failed (%d)", ret);
	}
	p->remote_idx = remote_idx;
	p->sock = sock;
	p->last_rx_ns = mrl_now_ns(); /* the handshake is the first sign of life */
	p->dead = false;
	return 0;
}

/* One non-blocking send of a handshake message: a fresh socket's buffer
 * takes its few bytes at once, and an owner never waits on a connection. */
static int send_now(int fd, const void *buf, size_t len)
{
	ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EAGAIN;
}

/* The owner's half, once the connector's proof is right: the peer is made
 * usable first and only then told our index, so the first request it
 * sends finds it alive (the ready is the owner's go-ahead). */
static int accept_finish(struct mrl_ep *ep, struct boot_conn *b, mrl_peer **out)
{
	struct boot_ready rdy = {.magic = MRL_BOOT_MAGIC};
	int ret, fd = b->fd;
	mrl_lock(&ep->lock);
	struct mrl_peer *p = peer_new_locked(ep);
	if (!p) {
		mrl_unlock(&ep->lock);
		return -ENOMEM;
	}
	ret = mrl_auth_keys(ep->secret, ep->secret_len, true, &b->t, p);
	if (!ret)
		ret = peer_up_locked(ep, p, b->t.name_c, b->their_idx, fd);
	if (ret) {
		p->sock = -1;
		mrl_ep_peer_free_locked(ep, p);
		mrl_unlock(&ep->lock);
		return ret;
	}
	rdy.idx = p->idx;
	mrl_unlock(&ep->lock);
	ret = send_now(fd, &rdy, sizeof(rdy));
	if (ret) {
		/* the connector cannot have sent anything without our ready */
		mrl_lock(&ep->lock);
		p->sock = -1;
		mrl_ep_peer_free_locked(ep, p);
		mrl_unlock(&ep->lock);
		return mrl_err(-ret, "bootstrap handshake: %s", strerror(-ret));
	}
	b->fd = -1; /* the peer's now */
	*out = p;
	return 0;
}

static void boot_drop(struct mrl_ep *ep, struct boot_conn **pp)
{
	struct boot_conn *b = *pp;
	*pp = b->next;
	if (b->fd >= 0)
		close(b->fd);
	explicit_bzero(b, sizeof(*b));
	free(b);
	ep->nboots--;
}

static void boot_add(struct mrl_ep *ep, int fd, uint64_t now)
{
	if (ep->nboots >= MAX_BOOTS) {
		/* a flood of connections: the oldest that has not even sent its
		 * hello goes first (a real peer answers its challenge at once) */
		struct boot_conn **old = NULL;
		for (struct boot_conn **pp = &ep->boots; *pp; pp = &(*pp)->next)
			if (!old || (*pp)->challenged < (*old)->challenged ||
			    ((*pp)->challenged == (*old)->challenged &&
			     (*pp)->deadline_ns < (*old)->deadline_ns))
				old = pp;
		mrl_log("bootstrap: %u handshakes in progress, dropping the oldest", ep->nboots);
		boot_drop(ep, old);
	}
	struct boot_conn *b = calloc(1, sizeof(*b));
	if (!b) {
		close(fd);
		return;
	}
	b->fd = fd;
	b->deadline_ns = now + (uint64_t)mrl_ep_boot_deadline_ms * 1000000ull;
	b->next = ep->boots;
	ep->boots = b;
	ep->nboots++;
}

/* Read what a handshake has sent: 1 the message it owes is in, 0 not yet,
 * <0 gone. */
static int boot_read(struct boot_conn *b)
{
	size_t want = b->challenged ? sizeof(b->in.proof) : sizeof(b->in.hello);
	for (;;) {
		ssize_t n = recv(b->fd, (char *)&b->in + b->got, want - b->got, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return errno == EINTR ? 0 : errno == EAGAIN ? 0 : -errno;
		b->got += (size_t)n;
		if (b->got == want)
			return 1;
	}
}

static void auth_refused(struct mrl_ep *ep, struct boot_conn *b, const char *why)
{
	ep->auth_failed++;
	mrl_log("bootstrap: refused a connection: %s", why);
	if (b->challenged) {
		struct boot_ready no = {.magic = MRL_BOOT_MAGIC, .status = -EACCES};
		send_now(b->fd, &no, sizeof(no));
	}
}

/* A complete message from a handshake: 1 a peer is up (*out), 0 the
 * handshake goes on, <0 it is over. */
static int boot_step(struct mrl_ep *ep, struct boot_conn *b, mrl_peer **out)
{
	if (!b->challenged) {
		const struct boot_hello *h = &b->in.hello;
		if (h->magic != MRL_BOOT_MAGIC || !name_ok(h->namelen)) {
			auth_refused(ep, b, "not an mrlease peer");
			return -EPROTO;
		}
		struct boot_challenge c = {.magic = MRL_BOOT_MAGIC,
					   .flags = ep->secret_len ? 0 : MRL_BOOT_INSECURE,
					   .namelen = (uint32_t)ep->namelen};
		memcpy(b->t.nonce_c, h->nonce, MRL_NONCE_LEN);
		b->t.namelen_c = h->namelen;
		memcpy(b->t.name_c, h->name, h->namelen);
		b->their_idx = h->idx;
		b->t.namelen_o = (uint32_t)ep->namelen;
		memcpy(b->t.name_o, ep->name, ep->namelen);
		memcpy(c.name, ep->name, ep->namelen);
		int ret = mrl_auth_random(b->t.nonce_o, MRL_NONCE_LEN);
		if (!ret)
			ret = mrl_auth_proof(ep->secret, ep->secret_len, true, &b->t, c.proof);
		memcpy(c.nonce, b->t.nonce_o, MRL_NONCE_LEN);
		if (!ret)
			ret = send_now(b->fd, &c, sizeof(c));
		if (ret)
			return ret;
		b->challenged = true;
		b->got = 0;
		return 0;
	}
	unsigned char want[MRL_HMAC_LEN];
	int ret = mrl_auth_proof(ep->secret, ep->secret_len, false, &b->t, want);
	if (ret)
		return ret;
	if (b->in.proof.magic != MRL_BOOT_MAGIC || !mrl_auth_eq(want, b->in.proof.proof, sizeof(want))) {
		auth_refused(ep, b, ep->secret_len ? "wrong secret" : "wrong proof");
		return -EACCES;
	}
	ret = accept_finish(ep, b, out);
	return ret ? ret : 1;
}

uint32_t mrl_ep_boot_pending(struct mrl_ep *ep)
{
	mrl_lock(&ep->boot_lock);
	uint32_t n = ep->nboots;
	mrl_unlock(&ep->boot_lock);
	return n;
}

uint64_t mrl_ep_auth_failed(struct mrl_ep *ep)
{
	mrl_lock(&ep->boot_lock);
	uint64_t n = ep->auth_failed;
	mrl_unlock(&ep->boot_lock);
	return n;
}

/* at destroy: the handshakes in progress, and a unix: socket's file */
void mrl_ep_boot_free(struct mrl_ep *ep)
{
	while (ep->boots)
		boot_drop(ep, &ep->boots);
	if (ep->unix_path) {
		unlink(ep->unix_path);
		free(ep->unix_path);
		ep->unix_path = NULL;
	}
}

/* MRL_EP_PEERCRED: the other end of a Unix-domain socket runs as our
 * effective uid or as root, by the kernel's word (SO_PEERCRED). An owner
 * counts and logs a refusal; a connector returns it. */
static bool peer_uid_ok(struct mrl_ep *ep, int s, const char *side)
{
	struct ucred uc;
	socklen_t l = sizeof(uc);
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &uc, &l) < 0 || l != sizeof(uc)) {
		mrl_err(EACCES, "bootstrap: no peer credentials on the socket: %s", strerror(errno));
	} else if (uc.uid == geteuid() || uc.uid == 0) {
		return true;
	} else {
		mrl_err(EACCES, "bootstrap: %s refused a peer of uid %u (pid %d): only uid %u%s may "
				"connect (MRL_EP_PEERCRED)",
			side, (unsigned)uc.uid, (int)uc.pid, (unsigned)geteuid(), geteuid() ? " or root" : "");
	}
	if (side[0] == 'o') {
		ep->auth_failed++;
		mrl_log("%s", mrl_last_error());
	}
	return false;
}

/* Handshakes in progress wait in ep->boots, each on its own deadline; one
 * pass reads what each has sent and accepts what the listening socket has.
 * Nothing here waits on one connection, so a silent one costs the others
 * (and the caller, which may have a break to answer) nothing. */
static int accept_step(struct mrl_ep *ep, uint64_t until, mrl_peer **out)
{
	struct pollfd pfd[MAX_BOOTS + 1];
	struct boot_conn *conn[MAX_BOOTS + 1];
	for (;;) {
		uint64_t now = mrl_now_ns(), wake = until;
		for (struct boot_conn **pp = &ep->boots; *pp;) {
			if ((*pp)->deadline_ns <= now) {
				mrl_log("bootstrap: a connection did not finish its handshake in %d ms, dropped",
					mrl_ep_boot_deadline_ms);
				boot_drop(ep, pp);
				continue;
			}
			if ((*pp)->deadline_ns < wake)
				wake = (*pp)->deadline_ns;
			pp = &(*pp)->next;
		}
		nfds_t n = 0;
		pfd[n] = (struct pollfd){.fd = ep->lsock, .events = POLLIN};
		conn[n++] = NULL;
		for (struct boot_conn *b = ep->boots; b; b = b->next) {
			pfd[n] = (struct pollfd){.fd = b->fd, .events = POLLIN};
			conn[n++] = b;
		}
		int ms = wake <= now ? 0 : wake == UINT64_MAX ? -1
			 : (int)((wake - now + 999999ull) / 1000000ull);
		int pr = poll(pfd, n, ms);
		if (pr < 0 && errno != EINTR)
			return mrl_err(errno, "accept: %s", strerror(errno));
		for (nfds_t i = 1; pr > 0 && i < n; i++) {
			if (!pfd[i].revents)
				continue;
			struct boot_conn *b = conn[i], **pp = &ep->boots;
			int r = boot_read(b);
			if (r == 0)
				continue;
			while (*pp != b)
				pp = &(*pp)->next;
			if (r > 0)
				r = boot_step(ep, b, out);
			if (r == 0)
				continue;
			/* through (the peer has the socket) or failed: that
			 * connection's loss alone */
			boot_drop(ep, pp);
			if (r > 0)
				return 0;
		}
		if (pr > 0 && pfd[0].revents) {
			int s;
			while ((s = accept4(ep->lsock, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
				if (ep->peercred && !peer_uid_ok(ep, s, "owner"))
					close(s);
				else
					boot_add(ep, s, mrl_now_ns());
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED &&
			    errno != EINTR)
				return mrl_err(errno, "accept: %s", strerror(errno));
			continue; /* read what the new ones may have sent already */
		}
		if (mrl_now_ns() >= until)
			return -ETIMEDOUT;
	}
}

/* The connector's half: hello, the owner's challenge (its proof checked
 * before ours is sent), our proof, the owner's ready, which it sends only
 * once it accepts our messages. */
static int connect_handshake(struct mrl_ep *ep, int sock, int timeout_ms, mrl_peer **out)
{
	struct boot_hello me = {.magic = MRL_BOOT_MAGIC,
				.flags = ep->secret_len ? 0 : MRL_BOOT_INSECURE,
				.namelen = (uint32_t)ep->namelen};
	struct boot_challenge c;
	struct boot_proof pf = {.magic = MRL_BOOT_MAGIC};
	struct boot_ready rdy;
	struct mrl_boot_transcript t;
	unsigned char want[MRL_HMAC_LEN];
	int ret;
	memset(&t, 0, sizeof(t));
	memcpy(me.name, ep->name, ep->namelen);
	mrl_lock(&ep->lock);
	struct mrl_peer *p = peer_new_locked(ep);
	mrl_unlock(&ep->lock);
	if (!p) {
		close(sock);
		return -ENOMEM;
	}
	me.idx = p->idx;
	ret = mrl_auth_random(me.nonce, MRL_NONCE_LEN);
	if (!ret)
		ret = io_full(sock, &me, sizeof(me), true, timeout_ms);
	if (!ret)
		ret = io_full(sock, &c, sizeof(c), false, timeout_ms);
	if (ret) {
		ret = mrl_err(ret, "bootstrap handshake: %s", strerror(-ret));
		goto out;
	}
	if (c.magic != MRL_BOOT_MAGIC || !name_ok(c.namelen)) {
		ret = mrl_err(EPROTO, "bootstrap handshake: not an mrlease owner");
		goto out;
	}
	if (ep->secret_len && (c.flags & MRL_BOOT_INSECURE)) {
		ret = mrl_err(EACCES, "bootstrap handshake: the owner has no secret (insecure); refused");
		goto out;
	}
	if (!ep->secret_len && !(c.flags & MRL_BOOT_INSECURE)) {
		ret = mrl_err(EACCES, "bootstrap handshake: the owner requires a secret and this endpoint "
				      "has none (MRLEASE_SECRET_FILE, MRLEASE_SECRET)");
		goto out;
	}
	memcpy(t.nonce_c, me.nonce, MRL_NONCE_LEN);
	memcpy(t.nonce_o, c.nonce, MRL_NONCE_LEN);
	t.namelen_c = me.namelen;
	memcpy(t.name_c, me.name, me.namelen);
	t.namelen_o = c.namelen;
	memcpy(t.name_o, c.name, c.namelen);
	if ((ret = mrl_auth_proof(ep->secret, ep->secret_len, true, &t, want)))
		goto out;
	if (!mrl_auth_eq(want, c.proof, sizeof(want))) {
		ret = mrl_err(EACCES, "bootstrap handshake: the owner does not know our secret; refused");
		goto out;
	}
	if ((ret = mrl_auth_proof(ep->secret, ep->secret_len, false, &t, pf.proof)))
		goto out;
	ret = io_full(sock, &pf, sizeof(pf), true, timeout_ms);
	if (!ret)
		ret = io_full(sock, &rdy, sizeof(rdy), false, timeout_ms);
	if (ret) {
		ret = mrl_err(ret, "bootstrap handshake: %s", strerror(-ret));
		goto out;
	}
	if (rdy.magic != MRL_BOOT_MAGIC || (rdy.status && rdy.status != -EACCES)) {
		ret = mrl_err(EPROTO, "bootstrap handshake: not an mrlease owner");
		goto out;
	}
	if (rdy.status) {
		ret = mrl_err(EACCES, "bootstrap handshake: the owner refused our proof (a different secret)");
		goto out;
	}
	mrl_lock(&ep->lock);
	ret = mrl_auth_keys(ep->secret, ep->secret_len, false, &t, p);
	if (!ret)
		ret = peer_up_locked(ep, p, c.name, rdy.idx, sock);
	mrl_unlock(&ep->lock);
out:
	explicit_bzero(&t, sizeof(t));
	if (ret) {
		mrl_lock(&ep->lock);
		p->sock = -1;
		mrl_ep_peer_free_locked(ep, p);
		mrl_unlock(&ep->lock);
		close(sock);
		return ret;
	}
	*out = p;
	return 0;
}

static int resolve(const char *host, uint16_t port, struct sockaddr_in *sa)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
	int r = getaddrinfo(host, NULL, &hints, &ai);
	if (r)
		return mrl_err(EADDRNOTAVAIL, "cannot resolve %s: %s", host, gai_strerror(r));
	*sa = *(struct sockaddr_in *)ai->ai_addr;
	sa->sin_port = htons(port);
	freeaddrinfo(ai);
	return 0;
}

/* "unix:PATH": a Unix-domain bootstrap address in *sa; 0 not one, 1 one,
 * <0 a bad one. */
static int unix_addr(const char *host, struct sockaddr_un *sa)
{
	if (strncmp(host, "unix:", 5))
		return 0;
	const char *path = host + 5;
	size_t n = strlen(path);
	if (!n || n >= sizeof(sa->sun_path))
		return mrl_err(EINVAL, "bootstrap address %s: a path of 1 to %zu bytes after unix:", host,
			       sizeof(sa->sun_path) - 1);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, n);
	return 1;
}

/* A socket left at path by an owner that died (nobody accepts on it) is
 * removed; anything else there stays and the bind says so. */
static void unix_clear_stale(const struct sockaddr_un *sa)
{
	struct stat st;
	if (lstat(sa->sun_path, &st) || !S_ISSOCK(st.st_mode))
		return;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	if (connect(s, (const struct sockaddr *)sa, sizeof(*sa)) < 0 && errno == ECONNREFUSED)
		unlink(sa->sun_path);
	close(s);
}

static int listen_unix(struct mrl_ep *ep, const struct sockaddr_un *sa, uint16_t *bound)
{
	int ret, s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return mrl_err(errno, "socket: %s", strerror(errno));
	char *path = strdup(sa->sun_path);
	if (!path) {
		close(s);
		return -ENOMEM;
	}
	unix_clear_stale(sa);
	/* only the owner's uid may connect until it says otherwise (chmod):
	 * nothing can connect before listen() */
	if (bind(s, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		ret = mrl_err(errno, "listen on unix:%s: %s", path, strerror(errno));
		goto fail;
	}
	if (chmod(path, 0600) < 0 || listen(s, 16) < 0) {
		ret = mrl_err(errno, "listen on unix:%s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	ep->lsock = s;
	ep->unix_path = path;
	if (bound)
		*bound = 0;
	return 0;
fail:
	free(path);
	close(s);
	return ret;
}

static int connect_unix(struct mrl_ep *ep, const struct sockaddr_un *sa, int timeout_ms,
			mrl_peer **out)
{
	int ret, s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return mrl_err(errno, "socket: %s", strerror(errno));
	/* a Unix-domain connect is made at once or refused (EAGAIN: the
	 * owner's backlog is full, as good as not answering) */
	if (connect(s, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		ret = mrl_err(errno == EAGAIN ? ETIMEDOUT : errno, "connect unix:%s: %s", sa->sun_path,
			      strerror(errno));
		close(s);
		return ret;
	}
	if (ep->peercred && !peer_uid_ok(ep, s, "this peer")) {
		close(s);
		return -EACCES;
	}
	ret = connect_handshake(ep, s, timeout_ms, out);
	if (ret == -ECONNRESET || ret == -EPIPE) /* an owner refusing a uid hangs up before a word */
		ret = mrl_err(EACCES, "connect unix:%s: the owner hung up at once: it takes only peers of "
				      "its own uid or root (MRL_EP_PEERCRED), or it went away", sa->sun_path);
	return ret;
}

MRL_EXPORT int mrl_ep_listen(mrl_ep *ep, const char *host, uint16_t port, uint16_t *bound)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int one = 1, ret;
	if (!ep || !host)
		return mrl_err(EINVAL, "mrl_ep_listen: NULL %s", !ep ? "ep" : "host");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_listen");
	if (ep->lsock >= 0)
		return mrl_err(EALREADY, "mrl_ep_listen: already listening");
	struct sockaddr_un su;
	if ((ret = unix_addr(host, &su)))
		return ret < 0 ? ret : listen_unix(ep, &su, bound);
	if (ep->peercred)
		return mrl_err(EINVAL, "mrl_ep_listen %s: MRL_EP_PEERCRED needs a unix:PATH bootstrap "
				       "(the kernel vouches for a peer's uid only there)", host);
	if ((ret = resolve(host, port, &sa)))
		return ret;
	/* non-blocking: a connection reset between poll and accept must not block */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return mrl_err(errno, "socket: %s", strerror(errno));
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 16) < 0 ||
	    getsockname(s, (struct sockaddr *)&sa, &sl) < 0) {
		ret = mrl_err(errno, "listen on %s:%u: %s", host, port, strerror(errno));
		close(s);
		return ret;
	}
	ep->lsock = s;
	if (bound)
		*bound = ntohs(sa.sin_port);
	return 0;
}

MRL_EXPORT int mrl_ep_accept(mrl_ep *ep, int timeout_ms, mrl_peer **out)
{
	if (!ep || !out)
		return mrl_err(EINVAL, "mrl_ep_accept: NULL %s", !ep ? "ep" : "out");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_accept");
	if (ep->lsock < 0)
		return mrl_err(EINVAL, "mrl_ep_accept: call mrl_ep_listen first");
	uint64_t until = timeout_ms < 0 ? UINT64_MAX
			 : mrl_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	mrl_lock(&ep->boot_lock);
	int ret = accept_step(ep, until, out);
	mrl_unlock(&ep->boot_lock);
	return ret;
}

MRL_EXPORT int mrl_ep_connect(mrl_ep *ep, const char *host, uint16_t port, int timeout_ms,
			      mrl_peer **out)
{
	struct sockaddr_in sa;
	int ret;
	if (!ep || !host || !out)
		return mrl_err(EINVAL, "mrl_ep_connect: NULL %s", !ep ? "ep" : !host ? "host" : "out");
	MRL_CHILD_CHECK(ep->ctx, "mrl_ep_connect");
	struct sockaddr_un su;
	if ((ret = unix_addr(host, &su)))
		return ret < 0 ? ret : connect_unix(ep, &su, timeout_ms, out);
	if (ep->peercred)
		return mrl_err(EINVAL, "mrl_ep_connect %s: MRL_EP_PEERCRED needs a unix:PATH bootstrap "
				       "(the kernel vouches for a peer's uid only there)", host);
	if (!port)
		return mrl_err(EINVAL, "mrl_ep_connect: port 0");
	if ((ret = resolve(host, port, &sa)))
		return ret;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return mrl_err(errno, "socket: %s", strerror(errno));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		ret = mrl_err(errno, "connect %s:%u: %s", host, port, strerror(errno));
		close(s);
		return ret;
	}
	struct pollfd pfd = {.fd = s, .events = POLLOUT};
	int err = 0;
	socklen_t el = sizeof(err);
	if (poll(&pfd, 1, timeout_ms) <= 0) {
		close(s);
		return mrl_err(ETIMEDOUT, "connect %s:%u: timed out", host, port);
	}
	getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err) {
		close(s);
		return mrl_err(err, "connect %s:%u: %s", host, port, strerror(err));
	}
	return connect_handshake(ep, s, timeout_ms, out);
}
