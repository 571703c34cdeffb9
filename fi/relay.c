/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The board relay: the state board carried between hosts, for hooked
 * processes run with MRLEASE_FI_RELAY=PORT (off by default).
 *
 * Owner's host: one hooked process (the first to bind PORT) serves the
 * host's boards. A remote initiator names a key; the relay answers with the
 * entry's state and, while the entry is active, holds one operation in
 * flight on it for that initiator: an owner pausing the MR waits for it as
 * for a local initiator's operations. On a pause (or a fence, or the key
 * gone) the relay tells the initiator and lets its hold go only when the
 * initiator confirms that nothing of its own is still in flight to the MR
 * (or after RELAY_ACK_NS, closing the connection: the owner is not held
 * longer by a silent peer). It counts in first and reads the state after,
 * as a local initiator does, so an owner that saw no operation in flight
 * after pausing knows every initiator will hold back.
 *
 * Initiator: a key found on no local board, posted to an address the
 * endpoint's address vector resolves to an IP, is looked up at that IP's
 * relay. Until the answer the post is held (-FI_EAGAIN); then the hook
 * guards it on a private mirror of the remote entry exactly as on a local
 * board (ep.c guard). A host without a relay (refused, or no answer within
 * RELAY_CONNECT_NS) is remembered for RELAY_RETRY_NS: posts go as they are.
 *
 * No authentication: the relay tells whoever connects whether a key is
 * leased on the host and lets it delay a pause by RELAY_ACK_NS at most; use
 * it on networks whose hosts are trusted, as the provider's own traffic. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "board.h"
#include "hook.h"
#include "mrl_int.h"

#define RELAY_MAGIC 0x6d726c72u /* "mrlr" */
#define RELAY_ACK_NS 2000000000ull
#define RELAY_CONNECT_NS 1000000000ull
#define RELAY_RETRY_NS 5000000000ull
#define RELAY_TICK_MS 1
#define MAX_CONNS 64
#define MAX_SUBS 256    /* per connection, served */
#define MAX_MIRRORS 1024
#define MAX_PEERS 64

enum { M_SUB = 1, M_STATE, M_ACK };
struct relay_msg {
	uint32_t magic, type;
	uint64_t key;
	uint32_t seq, state;
	uint64_t valid, base, len;
	uint32_t tail, found;
	uint64_t pkey;
};

/* ---- served: a connection from a remote initiator ---- */
struct sub {
	uint64_t key;
	struct board_ent *e;
	struct board_ent *held; /* the entry our +1 is on (inflight), NULL: none */
	bool await;         /* told of a pause: its hold goes with the ack */
	uint64_t retry;     /* not on a board here: looked for again after this */
	uint32_t seq;
	uint64_t deadline;
	struct relay_msg last;  /* what was last told */
};
struct sconn {
	int fd;
	size_t inlen;
	char in[sizeof(struct relay_msg)];
	unsigned nsubs;
	struct sub subs[MAX_SUBS];
};

/* ---- asked: the relays of the hosts this process writes to ---- */
struct peer {
	uint8_t ip[16];      /* IPv4 mapped into IPv6 */
	int fd;              /* -1: not connected */
	bool up, dead;
	uint64_t since;      /* connect started, or dead since */
	size_t inlen;
	char in[sizeof(struct relay_msg)];
};
struct mirror {
	struct board_ent ent;    /* guarded as a board entry; key 0: post as it is */
	int peer;                /* index in peers + 1; 0: a free slot */
	uint64_t key;
	bool asked, known;       /* SUB sent; an answer came */
	uint32_t ack_seq;        /* a pause to confirm once ent.inflight is 0 */
	bool ack_due;
};

static struct {
	pthread_once_t once;
	int port;                /* 0: off */
	int lfd, wake;           /* listener (-1: another process relays), eventfd */
	pthread_t thread;
	bool running;
	pid_t pid;               /* the process it runs in (a forked child has no thread) */
	atomic_bool stop;        /* the library is unloaded (or the process ends) */
	pthread_mutex_t lock;    /* leaf: peers, mirrors */
	struct sconn *conns[MAX_CONNS];
	struct peer peers[MAX_PEERS];
	int npeers;
	struct mirror mirrors[MAX_MIRRORS];
} R = {.once = PTHREAD_ONCE_INIT, .lfd = -1, .wake = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

static int relay_port(void)
{
	const char *p = getenv("MRLEASE_FI_RELAY");
	int port = p ? atoi(p) : 0;
	return port > 0 && port < 65536 ? port : 0;
}

/* the whole message, or false (the connection is then closed): a peer that
 * reads nothing for a second is given up */
static bool send_msg(int fd, struct relay_msg *m)
{
	m->magic = RELAY_MAGIC;
	size_t done = 0;
	for (int tries = 0; done < sizeof(*m) && tries < 100; tries++) {
		ssize_t n = send(fd, (char *)m + done, sizeof(*m) - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		struct pollfd pf = {.fd = fd, .events = POLLOUT};
		poll(&pf, 1, 10);
	}
	return done == sizeof(*m);
}

/* bytes into a frame buffer: 1 when a whole message is there, 0 not yet, -1 closed */
static int recv_msg(int fd, char *buf, size_t *len, struct relay_msg *m)
{
	ssize_t n = recv(fd, buf + *len, sizeof(*m) - *len, MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return -1;
	if (n > 0)
		*len += (size_t)n;
	if (*len < sizeof(*m))
		return 0;
	memcpy(m, buf, sizeof(*m));
	*len = 0;
	return m->magic == RELAY_MAGIC ? 1 : -1;
}

/* ---- the server's side ---- */
static void sub_release(struct sub *s)
{
	if (s->held)
		atomic_fetch_sub(&s->held->inflight, 1);
	s->held = NULL;
	s->await = false;
}

/* bring one subscription up to date: hold while active, tell changes */
static bool sub_update(struct sconn *c, struct sub *s, uint64_t now)
{
	if (s->await) {
		if (now < s->deadline)
			return true;
		hook_log("relay: a remote initiator did not confirm a pause of key %#llx in time: "
			 "released, connection closed", (unsigned long long)s->key);
		return false;
	}
	if ((!s->e || atomic_load(&s->e->key) != s->key) && now >= s->retry) {
		s->e = board_find_key(s->key); /* registered (again) since */
		s->retry = now + 100000000ull;
	}
	struct board_ent *e = s->e;
	bool there = e && atomic_load(&e->key) == s->key;
	uint32_t st = there ? atomic_load(&e->state) : BS_FREE;
	if (st == BS_ACTIVE && !s->held) { /* count in, then look again */
		atomic_fetch_add(&e->inflight, 1);
		st = atomic_load(&e->state);
		if (st == BS_ACTIVE && atomic_load(&e->key) == s->key)
			s->held = e;
		else
			atomic_fetch_sub(&e->inflight, 1);
	}
	struct relay_msg m = {.type = M_STATE, .key = s->key, .state = st, .found = there};
	if (there) {
		m.valid = atomic_load(&e->valid);
		m.base = e->base;
		m.len = e->len;
		m.tail = e->tail;
		m.pkey = atomic_load(&e->pkey);
	}
	if (st != BS_ACTIVE && s->held) { /* paused under our hold: tell, keep it until the ack */
		s->await = true;
		s->deadline = now + RELAY_ACK_NS;
	}
	m.seq = s->last.seq;
	if (!s->await && !memcmp(&m, &s->last, sizeof(m)))
		return true;
	m.seq = ++s->seq;
	s->last = m;
	return send_msg(c->fd, &m);
}

static void sconn_close(int i)
{
	struct sconn *c = R.conns[i];
	for (unsigned k = 0; k < c->nsubs; k++)
		sub_release(&c->subs[k]);
	close(c->fd);
	free(c);
	R.conns[i] = NULL;
}

static bool sconn_msg(struct sconn *c, const struct relay_msg *m, uint64_t now)
{
	if (m->type == M_SUB) {
		for (unsigned k = 0; k < c->nsubs; k++)
			if (c->subs[k].key == m->key)
				return sub_update(c, &c->subs[k], now);
		if (c->nsubs == MAX_SUBS)
			return false;
		struct sub *s = &c->subs[c->nsubs++];
		memset(s, 0, sizeof(*s));
		s->key = m->key;
		return sub_update(c, s, now);
	}
	if (m->type == M_ACK) {
		for (unsigned k = 0; k < c->nsubs; k++) {
			struct sub *s = &c->subs[k];
			if (s->key == m->key && s->await && m->seq == s->seq) {
				sub_release(s);
				return sub_update(c, s, now);
			}
		}
		return true;
	}
	return false;
}

/* ---- the initiator's side ---- */
static struct mirror *mirror_of(int peer, uint64_t key, bool make)
{
	unsigned h = (unsigned)(((key ^ (uint64_t)peer * 0x9e3779b97f4a7c15ull) * 0x9e3779b97f4a7c15ull) >> 54) %
		     MAX_MIRRORS;
	for (unsigned i = 0; i < MAX_MIRRORS; i++) {
		struct mirror *m = &R.mirrors[(h + i) % MAX_MIRRORS];
		if (m->peer == peer + 1 && m->key == key)
			return m;
		if (!m->peer) {
			if (!make)
				return NULL;
			m->peer = peer + 1;
			m->key = key;
			m->asked = m->known = m->ack_due = false;
			/* held (-FI_EAGAIN) until the relay answers */
			atomic_store(&m->ent.state, BS_PAUSED);
			atomic_store(&m->ent.key, key);
			return m;
		}
	}
	return NULL;
}

static void peer_dead(int p, uint64_t now)
{
	struct peer *pr = &R.peers[p];
	if (pr->fd >= 0)
		close(pr->fd);
	pr->fd = -1;
	pr->up = false;
	pr->dead = true;
	pr->since = now;
	pr->inlen = 0;
	/* its keys are posted as they are (a host without a relay), until a retry */
	for (unsigned i = 0; i < MAX_MIRRORS; i++) {
		struct mirror *m = &R.mirrors[i];
		if (m->peer == p + 1) {
			atomic_store(&m->ent.key, 0);
			m->asked = m->known = m->ack_due = false;
		}
	}
}

static void peer_connect(int p, uint64_t now)
{
	struct peer *pr = &R.peers[p];
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)R.port)};
	memcpy(&sa.sin6_addr, pr->ip, 16);
	pr->fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	pr->since = now;
	pr->dead = false;
	pr->up = false;
	pr->inlen = 0;
	if (pr->fd < 0 || (connect(pr->fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS))
		peer_dead(p, now);
}

/* the peer's answer about a key: the mirror follows the remote entry */
static void peer_msg(int p, const struct relay_msg *m)
{
	struct mirror *mi = mirror_of(p, m->key, false);
	if (!mi || m->type != M_STATE)
		return;
	mi->known = true;
	if (!m->found) { /* no leased MR of that key there (or no more): as it is */
		atomic_store(&mi->ent.key, 0);
		mi->ack_seq = m->seq; /* the relay may hold it for us until we confirm */
		mi->ack_due = true;
		return;
	}
	mi->ent.base = m->base;
	mi->ent.len = m->len;
	mi->ent.tail = m->tail;
	atomic_store(&mi->ent.pkey, m->pkey);
	atomic_store(&mi->ent.valid, m->valid);
	uint32_t st = m->state == BS_ACTIVE ? BS_ACTIVE : m->state == BS_PAUSED ? BS_PAUSED : BS_FENCED;
	atomic_store(&mi->ent.state, st);
	atomic_store(&mi->ent.key, m->key);
	if (st != BS_ACTIVE) { /* confirmed once nothing of ours is in flight to it */
		mi->ack_seq = m->seq;
		mi->ack_due = true;
	}
}

/* (lock) connections to finish, answers to read, SUBs to send,
 * confirmations due; whether to look again soon */
static bool peers_work(uint64_t now)
{
	bool soon = false;
	for (int p = 0; p < R.npeers; p++) {
		struct peer *pr = &R.peers[p];
		if (pr->dead) {
			if (now - pr->since > RELAY_RETRY_NS)
				pr->dead = false; /* asked again at the next miss */
			continue;
		}
		if (pr->fd < 0)
			continue;
		if (!pr->up) {
			struct pollfd pf = {.fd = pr->fd, .events = POLLOUT};
			int err = 0;
			socklen_t el = sizeof(err);
			int pr_ = poll(&pf, 1, 0);
			if (pr_ == 1 && (getsockopt(pr->fd, SOL_SOCKET, SO_ERROR, &err, &el) || err)) {
				peer_dead(p, now);
				continue;
			}
			if (pr_ != 1) {
				if (now - pr->since > RELAY_CONNECT_NS)
					peer_dead(p, now);
				else
					soon = true;
				continue;
			}
			pr->up = true;
			int one = 1;
			setsockopt(pr->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		struct relay_msg m;
		int r;
		while ((r = recv_msg(pr->fd, pr->in, &pr->inlen, &m)) == 1)
			peer_msg(p, &m);
		if (r < 0)
			peer_dead(p, now);
	}
	for (unsigned i = 0; i < MAX_MIRRORS; i++) {
		struct mirror *mi = &R.mirrors[i];
		if (!mi->peer)
			continue;
		struct peer *pr = &R.peers[mi->peer - 1];
		if (!pr->up)
			continue;
		if (!mi->asked) {
			struct relay_msg m = {.type = M_SUB, .key = mi->key};
			if (!send_msg(pr->fd, &m)) {
				peer_dead(mi->peer - 1, now);
				continue;
			}
			mi->asked = true;
			soon = true;
		}
		if (mi->ack_due) {
			if (atomic_load(&mi->ent.inflight) == 0) {
				struct relay_msg m = {.type = M_ACK, .key = mi->key, .seq = mi->ack_seq};
				if (!send_msg(pr->fd, &m)) {
					peer_dead(mi->peer - 1, now);
					continue;
				}
				mi->ack_due = false;
			} else {
				soon = true;
			}
		}
		if (mi->asked && !mi->known)
			soon = true;
	}
	return soon;
}

/* ---- the relay's thread: serves, and asks ---- */
static void *relay_main(void *arg)
{
	(void)arg;
	struct pollfd pf[2 + MAX_CONNS + MAX_PEERS];
	for (;;) {
		int n = 0, ci[MAX_CONNS];
		pf[n++] = (struct pollfd){.fd = R.wake, .events = POLLIN};
		pf[n++] = (struct pollfd){.fd = R.lfd, .events = POLLIN};
		int nconn = 0;
		bool subs = false;
		for (int i = 0; i < MAX_CONNS; i++)
			if (R.conns[i]) {
				ci[nconn++] = i;
				pf[n++] = (struct pollfd){.fd = R.conns[i]->fd, .events = POLLIN};
				subs |= R.conns[i]->nsubs > 0;
			}
		mrl_lock(&R.lock);
		bool soon = peers_work(mrl_now_ns());
		for (int p = 0; p < R.npeers; p++)
			if (R.peers[p].up)
				pf[n++] = (struct pollfd){.fd = R.peers[p].fd, .events = POLLIN};
		mrl_unlock(&R.lock);
		/* served entries are looked at every tick: an owner's pause waits for it */
		if (poll(pf, (nfds_t)n, subs || soon ? RELAY_TICK_MS : -1) < 0 && errno != EINTR)
			break;
		if (pf[0].revents) {
			uint64_t v;
			if (read(R.wake, &v, sizeof(v)) < 0) {
				/* nonblocking: read by an earlier turn */
			}
		}
		if (atomic_load(&R.stop))
			break;
		if (R.lfd >= 0 && (pf[1].revents & POLLIN)) {
			int fd = accept4(R.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			int slot = -1;
			for (int i = 0; i < MAX_CONNS && fd >= 0 && slot < 0; i++)
				if (!R.conns[i])
					slot = i;
			struct sconn *c = slot >= 0 ? calloc(1, sizeof(*c)) : NULL;
			if (c) {
				int one = 1;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				c->fd = fd;
				R.conns[slot] = c;
			} else if (fd >= 0) {
				close(fd);
			}
		}
		uint64_t now = mrl_now_ns();
		for (int k = 0; k < nconn; k++) {
			int i = ci[k];
			struct sconn *c = R.conns[i];
			bool ok = true;
			if (pf[2 + k].revents) {
				struct relay_msg m;
				int r;
				while (ok && (r = recv_msg(c->fd, c->in, &c->inlen, &m)) == 1)
					ok = sconn_msg(c, &m, now);
				if (r < 0)
					ok = false;
			}
			for (unsigned s = 0; ok && s < c->nsubs; s++)
				ok = sub_update(c, &c->subs[s], now);
			if (!ok)
				sconn_close(i);
		}
	}
	/* what it holds for remote initiators goes with it */
	for (int i = 0; i < MAX_CONNS; i++)
		if (R.conns[i])
			sconn_close(i);
	return NULL;
}

static void relay_init(void)
{
	R.port = relay_port();
	if (!R.port)
		return;
	R.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	/* the host's relay, if no other hooked process serves it already */
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1, zero = 0;
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)R.port),
				  .sin6_addr = IN6ADDR_ANY_INIT};
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	}
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) && !listen(fd, 16)) {
		R.lfd = fd;
		hook_log("relay: serving this host's state boards on port %d", R.port);
	} else {
		hook_log("relay: port %d taken (another hooked process of this host relays): asking only",
			 R.port);
		if (fd >= 0)
			close(fd);
	}
	if (R.wake < 0 || pthread_create(&R.thread, NULL, relay_main, NULL)) {
		hook_log("relay: cannot start its thread: off");
		R.port = 0;
		return;
	}
	R.running = true;
	R.pid = getpid();
}

/* libfabric unloads its providers at exit (fi_fini): the thread ends first */
__attribute__((destructor)) static void relay_fini(void)
{
	if (!R.running || R.pid != getpid())
		return;
	atomic_store(&R.stop, true);
	uint64_t one = 1;
	if (write(R.wake, &one, sizeof(one)) < 0) {
		/* awake anyway */
	}
	pthread_join(R.thread, NULL);
	R.running = false;
	if (R.lfd >= 0)
		close(R.lfd);
	R.lfd = -1;
	for (int p = 0; p < R.npeers; p++)
		if (R.peers[p].fd >= 0)
			close(R.peers[p].fd);
}

bool relay_on(void)
{
	pthread_once(&R.once, relay_init);
	return R.port != 0;
}

/* the IP an address of av resolves to, as IPv6 (IPv4 mapped) */
static bool addr_ip(struct fid_av *av, fi_addr_t dest, unsigned rx_bits, uint8_t ip[16])
{
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
		char buf[256];
	} u;
	size_t len = sizeof(u);
	if (rx_bits && rx_bits < 64) /* fi_rx_addr: the receive context in the high bits */
		dest &= (1ull << (64 - rx_bits)) - 1;
	if (!av || fi_av_lookup(av, dest, &u, &len) || len < sizeof(struct sockaddr_in))
		return false;
	if (u.sa.sa_family == AF_INET) {
		memset(ip, 0, 10);
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &u.in.sin_addr, 4);
		return true;
	}
	if (u.sa.sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		memcpy(ip, &u.in6.sin6_addr, 16);
		return true;
	}
	return false;
}

struct board_ent *relay_find(struct fid_av *av, unsigned rx_bits, uint64_t dest, uint64_t key)
{
	uint8_t ip[16];
	if (!relay_on() || !addr_ip(av, dest, rx_bits, ip))
		return NULL;
	mrl_lock(&R.lock);
	int p = 0;
	while (p < R.npeers && memcmp(R.peers[p].ip, ip, 16))
		p++;
	if (p == R.npeers) {
		if (p == MAX_PEERS) {
			mrl_unlock(&R.lock);
			return NULL;
		}
		memcpy(R.peers[p].ip, ip, 16);
		R.peers[p].fd = -1;
		R.peers[p].dead = false;
		R.npeers++;
	}
	struct peer *pr = &R.peers[p];
	struct mirror *m = NULL;
	bool wake = false;
	if (!pr->dead) {
		if (pr->fd < 0) {
			peer_connect(p, mrl_now_ns());
			wake = true;
		}
		m = pr->dead ? NULL : mirror_of(p, key, true);
		wake |= m && !m->asked;
	}
	mrl_unlock(&R.lock);
	if (wake) {
		uint64_t one = 1;
		if (write(R.wake, &one, sizeof(one)) < 0) {
			/* an eventfd write fails only when it overflows: awake anyway */
		}
	}
	return m ? &m->ent : NULL;
}

void relay_start(void)
{
	relay_on();
}
