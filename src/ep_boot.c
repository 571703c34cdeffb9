/* Bootstrap: a TCP connection exchanges endpoint names (hello: the
 * connector's first, the owner's once the peer is usable), then stays open
 * as the peer's liveness channel. Handshakes never block the owner. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* A peer entry, not usable (dead) until its handshake is through. */
static struct mrl_peer *peer_new_locked(struct mrl_ep *ep)
{
	if (ep->npeers == ep->cap) {
		uint32_t cap = ep->cap ? ep->cap * 2 : 8;
		struct mrl_peer **n = realloc(ep->peers, cap * sizeof(*n));
		if (!n)
			return NULL;
		ep->peers = n;
		ep->cap = cap;
	}
	struct mrl_peer *p = calloc(1, sizeof(*p));
	if (p)
		p->tp.t = &mrl_ep_transport;
	if (!p)
		return NULL;
	p->ep = ep;
	p->idx = ep->npeers;
	p->sock = -1;
	p->addr = FI_ADDR_NOTAVAIL;
	p->dead = true;
	ep->peers[ep->npeers++] = p;
	return p;
}

static bool hello_ok(const struct boot_hello *h)
{
	return h->magic == MRL_MAGIC && h->namelen && h->namelen <= sizeof(h->name);
}

/* The peer is usable from here: its messages are accepted from now on. */
static int peer_up_locked(struct mrl_ep *ep, struct mrl_peer *p, const struct boot_hello *them,
			  int sock)
{
	int ret = fi_av_insert(ep->av, them->name, 1, &p->addr, 0, NULL);
	if (ret != 1) {
		p->addr = FI_ADDR_NOTAVAIL;
		return mrl_err(EADDRNOTAVAIL, "fi_av_insert failed (%d)", ret);
	}
	p->remote_idx = them->idx;
	p->sock = sock;
	p->last_rx_ns = mrl_now_ns(); /* the handshake is the first sign of life */
	p->dead = false;
	return 0;
}

/* The owner's half, once the connector's hello is in: the peer is made
 * usable first and only then told our name and index, so the first request
 * it sends finds it alive (the hello is the owner's "ready"). */
static int accept_finish(struct mrl_ep *ep, int fd, const struct boot_hello *them, mrl_peer **out)
{
	struct boot_hello me = {.magic = MRL_MAGIC, .namelen = (uint32_t)ep->namelen};
	int ret;
	memcpy(me.name, ep->name, ep->namelen);
	if (!hello_ok(them)) {
		close(fd);
		return mrl_err(EPROTO, "bootstrap handshake: not an mrlease peer");
	}
	mrl_lock(&ep->lock);
	struct mrl_peer *p = peer_new_locked(ep);
	if (!p) {
		mrl_unlock(&ep->lock);
		close(fd);
		return -ENOMEM;
	}
	if ((ret = peer_up_locked(ep, p, them, fd))) {
		mrl_ep_peer_free_locked(ep, p);
		mrl_unlock(&ep->lock);
		close(fd);
		return ret;
	}
	me.idx = p->idx;
	mrl_unlock(&ep->lock);
	/* a fresh socket's buffer takes the few bytes at once */
	ret = io_full(fd, &me, sizeof(me), true, 1000);
	if (ret) {
		/* the connector cannot have sent anything without our hello */
		mrl_lock(&ep->lock);
		p->sock = -1;
		mrl_ep_peer_free_locked(ep, p);
		mrl_unlock(&ep->lock);
		close(fd);
		return mrl_err(ret, "bootstrap handshake: %s", strerror(-ret));
	}
	*out = p;
	return 0;
}

static void boot_drop(struct mrl_ep *ep, struct boot_conn **pp)
{
	struct boot_conn *b = *pp;
	*pp = b->next;
	close(b->fd);
	free(b);
	ep->nboots--;
}

static void boot_add(struct mrl_ep *ep, int fd, uint64_t now)
{
	if (ep->nboots >= MAX_BOOTS) {
		/* a flood of connections: the oldest handshake goes first */
		struct boot_conn **old = &ep->boots;
		for (struct boot_conn **pp = &ep->boots; *pp; pp = &(*pp)->next)
			if ((*pp)->deadline_ns < (*old)->deadline_ns)
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

/* Read what a handshake has sent: 1 its hello is in, 0 not yet, <0 gone. */
static int boot_read(struct boot_conn *b)
{
	for (;;) {
		ssize_t n = recv(b->fd, (char *)&b->them + b->got, sizeof(b->them) - b->got, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return errno == EINTR ? 0 : errno == EAGAIN ? 0 : -errno;
		b->got += (size_t)n;
		if (b->got == sizeof(b->them))
			return 1;
	}
}

uint32_t mrl_ep_boot_pending(struct mrl_ep *ep)
{
	mrl_lock(&ep->boot_lock);
	uint32_t n = ep->nboots;
	mrl_unlock(&ep->boot_lock);
	return n;
}

void mrl_ep_boot_free(struct mrl_ep *ep)
{
	while (ep->boots)
		boot_drop(ep, &ep->boots);
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
				mrl_log("bootstrap: a connection sent no hello in %d ms, dropped",
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
			if (r < 0) {
				boot_drop(ep, pp);
				continue;
			}
			*pp = b->next;
			ep->nboots--;
			struct boot_hello them = b->them;
			int fd = b->fd;
			free(b);
			if (accept_finish(ep, fd, &them, out) == 0)
				return 0;
			/* a failed handshake is that connection's loss alone */
		}
		if (pr > 0 && pfd[0].revents) {
			int s;
			while ((s = accept4(ep->lsock, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0)
				boot_add(ep, s, mrl_now_ns());
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED &&
			    errno != EINTR)
				return mrl_err(errno, "accept: %s", strerror(errno));
			continue; /* read what the new ones may have sent already */
		}
		if (mrl_now_ns() >= until)
			return -ETIMEDOUT;
	}
}

/* The connector's half: our hello, then the owner's, which it sends only
 * once it accepts our messages. */
static int connect_handshake(struct mrl_ep *ep, int sock, int timeout_ms, mrl_peer **out)
{
	struct boot_hello me = {.magic = MRL_MAGIC, .namelen = (uint32_t)ep->namelen}, them;
	int ret;
	memcpy(me.name, ep->name, ep->namelen);
	mrl_lock(&ep->lock);
	struct mrl_peer *p = peer_new_locked(ep);
	mrl_unlock(&ep->lock);
	if (!p) {
		close(sock);
		return -ENOMEM;
	}
	me.idx = p->idx;
	ret = io_full(sock, &me, sizeof(me), true, timeout_ms);
	if (!ret)
		ret = io_full(sock, &them, sizeof(them), false, timeout_ms);
	if (ret)
		ret = mrl_err(ret, "bootstrap handshake: %s", strerror(-ret));
	else if (!hello_ok(&them))
		ret = mrl_err(EPROTO, "bootstrap handshake: not an mrlease peer");
	mrl_lock(&ep->lock);
	if (!ret)
		ret = peer_up_locked(ep, p, &them, sock);
	if (ret)
		mrl_ep_peer_free_locked(ep, p);
	mrl_unlock(&ep->lock);
	if (ret) {
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
