/* Bootstrap: a TCP connection exchanges endpoint names (hello), then stays
 * open as the peer's liveness channel. */
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

struct hello {
	uint32_t magic;
	uint32_t idx;     /* the sender's index for the receiver */
	uint32_t namelen;
	unsigned char name[64];
};

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

static int handshake(struct mrl_ep *ep, int sock, int timeout_ms, mrl_peer **out)
{
	struct hello me = {.magic = MRL_MAGIC, .namelen = (uint32_t)ep->namelen}, them;
	int ret;
	memcpy(me.name, ep->name, ep->namelen);
	pthread_mutex_lock(&ep->lock);
	if (ep->npeers == ep->cap) {
		uint32_t cap = ep->cap ? ep->cap * 2 : 8;
		struct mrl_peer **n = realloc(ep->peers, cap * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&ep->lock);
			return -ENOMEM;
		}
		ep->peers = n;
		ep->cap = cap;
	}
	struct mrl_peer *p = calloc(1, sizeof(*p));
	if (!p) {
		pthread_mutex_unlock(&ep->lock);
		return -ENOMEM;
	}
	p->ep = ep;
	p->idx = ep->npeers;
	p->sock = -1;
	p->dead = true; /* not usable until the handshake is done */
	ep->peers[ep->npeers++] = p;
	pthread_mutex_unlock(&ep->lock);
	me.idx = p->idx;
	ret = io_full(sock, &me, sizeof(me), true, timeout_ms);
	if (!ret)
		ret = io_full(sock, &them, sizeof(them), false, timeout_ms);
	if (ret) {
		ret = mrl_err(ret, "bootstrap handshake: %s", strerror(-ret));
		goto fail;
	}
	if (them.magic != MRL_MAGIC || them.namelen == 0 || them.namelen > sizeof(them.name)) {
		ret = mrl_err(EPROTO, "bootstrap handshake: not an mrlease peer");
		goto fail;
	}
	pthread_mutex_lock(&ep->lock);
	ret = fi_av_insert(ep->av, them.name, 1, &p->addr, 0, NULL);
	if (ret != 1) {
		pthread_mutex_unlock(&ep->lock);
		ret = mrl_err(EADDRNOTAVAIL, "fi_av_insert failed (%d)", ret);
		goto fail;
	}
	p->remote_idx = them.idx;
	p->sock = sock;
	p->dead = false;
	pthread_mutex_unlock(&ep->lock);
	*out = p;
	return 0;
fail:
	close(sock);
	return ret;
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
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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
	struct pollfd pfd = {.fd = ep->lsock, .events = POLLIN};
	int pr = poll(&pfd, 1, timeout_ms);
	if (pr == 0)
		return -ETIMEDOUT;
	if (pr < 0)
		return mrl_err(errno, "accept: %s", strerror(errno));
	int s = accept4(ep->lsock, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (s < 0)
		return mrl_err(errno, "accept: %s", strerror(errno));
	return handshake(ep, s, timeout_ms > 0 ? timeout_ms : 5000, out);
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
	return handshake(ep, s, timeout_ms, out);
}
