/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The board relay (fi/relay.c) under the sanitizers: the hook's sources
 * linked in (as t_fi_hook), two processes over tcp;ofi_rxm on loopback,
 * each with its own board directory, as on two hosts, MRLEASE_FI_RELAY on
 * a free port. The owner (a child) leases a file window on a disk
 * filesystem and serves its board; the initiator (the parent) finds the
 * window's key on no board of its own: its first write is held until the
 * owner's relay answers, then lands. A hole punched under the window (the
 * owner's break) waits for the initiator's confirmation through the relay
 * and is restored under the same key: writes land after it. A truncate
 * below the window's end: a write past it is refused at post
 * (-FI_EKEYREJECTED) from the initiator's copy of the owner's entry, one
 * below it lands. */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../fi/board.h"
#include "../fi/hook.h"
#include "helpers.h"

#define LEN (256 * 1024)
#define BLK 4096

struct fab {
	struct fi_info *info;
	struct fid_fabric *fab;
	struct fid_domain *dom;
	struct fid_cq *cq;
	struct fid_av *av;
	struct fid_ep *ep;
};

/* a fabric as the application opens it, with the hook over it */
static void fab_open(struct fab *f)
{
	struct fi_info *hints = fi_allocinfo();
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_RMA | FI_MSG;
	hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_LOCAL;
	hints->domain_attr->threading = FI_THREAD_SAFE;
	hints->fabric_attr->prov_name = strdup("tcp;ofi_rxm");
	CHECK(fi_getinfo(FI_VERSION(1, 9), "127.0.0.1", NULL, FI_SOURCE, hints, &f->info) == 0,
	      "fi_getinfo tcp;ofi_rxm");
	fi_freeinfo(hints);
	struct fid_fabric *hfab;
	CHECK(fi_fabric(f->info->fabric_attr, &hfab, NULL) == 0, "fi_fabric");
	struct fi_provider rxm = {.name = "ofi_rxm"};
	struct fi_fabric_attr fa = {.fabric = hfab};
	CHECK(fi_prov_ini() == &hook_prov && hook_prov.fabric(&fa, &f->fab, &rxm) == 0, "the hook wraps the fabric");
	struct fi_cq_attr ca = {.format = FI_CQ_FORMAT_CONTEXT, .size = 64};
	struct fi_av_attr aa = {.type = FI_AV_TABLE};
	CHECK(fi_domain(f->fab, f->info, &f->dom, NULL) == 0 && fi_cq_open(f->dom, &ca, &f->cq, NULL) == 0 &&
	      fi_av_open(f->dom, &aa, &f->av, NULL) == 0 && fi_endpoint(f->dom, f->info, &f->ep, NULL) == 0 &&
	      fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV) == 0 && fi_ep_bind(f->ep, &f->av->fid, 0) == 0 &&
	      fi_enable(f->ep) == 0, "domain, cq, av, endpoint");
}

static void fab_close(struct fab *f)
{
	fi_close(&f->ep->fid);
	fi_close(&f->av->fid);
	fi_close(&f->cq->fid);
	fi_close(&f->dom->fid);
	fi_close(&f->fab->fid);
	fi_freeinfo(f->info);
}

struct hello {
	char name[64];
	size_t namelen;
	uint64_t key, base;
};

/* the owner: leases the window, says where it is, serves until the pipe closes */
static void owner(const char *path, const char *boards, int out, int in)
{
	setenv("MRLEASE_FI_BOARD_DIR", boards, 1);
	struct fab f;
	fab_open(&f);
	int fd = open(path, O_RDWR);
	uint8_t *win = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	CHECK(win != MAP_FAILED, "owner: mmap");
	struct fid_mr *mr;
	/* a random key: the state board tells owners apart by key, and other
	 * programs on the host ask for small ones too */
	uint64_t rk = 0;
	size_t ks = f.info->domain_attr->mr_key_size;
	while (!rk && getrandom(&rk, sizeof(rk), 0) == (ssize_t)sizeof(rk))
		rk &= ks && ks < 8 ? (1ull << (8 * ks)) - 1 : ~0ull >> 16;
	CHECK(fi_mr_reg(f.dom, win, LEN, FI_REMOTE_READ | FI_REMOTE_WRITE, 0, rk, 0, &mr, NULL) == 0,
	      "owner: register the window");
	struct hook_mr *hm = (struct hook_mr *)mr;
	CHECK(hm->lease && hm->bent, "owner: leased and on its board");
	struct hello h = {.namelen = sizeof(h.name), .key = fi_mr_key(mr),
			  .base = f.info->domain_attr->mr_mode & FI_MR_VIRT_ADDR ? (uintptr_t)win : 0};
	CHECK(fi_getname(&f.ep->fid, h.name, &h.namelen) == 0, "owner: name");
	CHECK(write(out, &h, sizeof(h)) == (ssize_t)sizeof(h), "owner: hello");
	/* progress until the initiator is done (its end of the pipe closes) */
	for (;;) {
		struct fi_cq_entry e;
		fi_cq_read(f.cq, &e, 1);
		char c;
		ssize_t n = recv(in, &c, 1, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
		usleep(50);
	}
	CHECK(fi_close(&mr->fid) == 0, "owner: close the window");
	fab_close(&f);
	munmap(win, LEN);
}

static struct fab F;
static fi_addr_t peer;

/* one write of BLK at off, held posts retried: 0 or -errno; *held counts -FI_EAGAIN */
static int write_blk(void *buf, uint64_t addr, uint64_t key, unsigned *held)
{
	ssize_t r;
	while ((r = fi_write(F.ep, buf, BLK, NULL, peer, addr, key, buf)) == -FI_EAGAIN) {
		struct fi_cq_entry e;
		fi_cq_read(F.cq, &e, 0);
		if (held)
			(*held)++;
		usleep(100);
	}
	if (r)
		return (int)r;
	for (;;) {
		struct fi_cq_entry e;
		ssize_t n = fi_cq_read(F.cq, &e, 1);
		if (n == 1)
			return e.op_context == buf ? 0 : -EPROTO;
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry err = {0};
			fi_cq_readerr(F.cq, &err, 0);
			return -err.err;
		}
	}
}

static int free_port(void)
{
	int s = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
	socklen_t l = sizeof(sa);
	int port = 0;
	if (s >= 0 && !bind(s, (struct sockaddr *)&sa, sizeof(sa)) && !getsockname(s, (struct sockaddr *)&sa, &l))
		port = ntohs(sa.sin6_port);
	if (s >= 0)
		close(s);
	return port;
}

int main(void)
{
	if (geteuid() != 0)
		t_skip("fanotify pre-content events need root");
	char dir[] = "/var/tmp/mrl-firelay-XXXXXX", path[300], boards[2][300], cmd[1200], port[16];
	CHECK(mkdtemp(dir), "mkdtemp");
	struct statfs sf;
	if (statfs(dir, &sf) == 0 && sf.f_type == 0x01021994) /* TMPFS_MAGIC */
		t_skip("/var/tmp is tmpfs: no fanotify pre-content events");
	snprintf(path, sizeof(path), "%s/f", dir);
	for (int i = 0; i < 2; i++) {
		snprintf(boards[i], sizeof(boards[i]), "%s/boards-%s", dir, i ? "initiator" : "owner");
		mkdir(boards[i], 0700);
	}
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	CHECK(fd >= 0 && ftruncate(fd, LEN) == 0, "file");
	close(fd);
	snprintf(port, sizeof(port), "%d", free_port());
	setenv("MRLEASE_FI_RELAY", port, 1);
	char logp[320];
	snprintf(logp, sizeof(logp), "%s/log", dir);
	setenv("MRLEASE_LOG", logp, 1);

	int hello[2], hold[2];
	CHECK(pipe(hello) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, hold) == 0, "pipes");
	pid_t pid = fork();
	if (pid == 0) { /* before any thread of this process */
		close(hello[0]);
		close(hold[0]);
		owner(path, boards[0], hello[1], hold[1]);
		_exit(t_failures ? 1 : 0);
	}
	close(hello[1]);
	close(hold[1]);
	struct hello h;
	CHECK(read(hello[0], &h, sizeof(h)) == (ssize_t)sizeof(h), "the owner's window");
	setenv("MRLEASE_FI_BOARD_DIR", boards[1], 1);
	fab_open(&F);
	CHECK(fi_av_insert(F.av, h.name, 1, &peer, 0, NULL) == 1, "the owner's address");
	int wfd = open(path, O_RDWR);
	uint8_t *win = mmap(NULL, LEN, PROT_READ, MAP_SHARED, wfd, 0);
	close(wfd);
	uint8_t *buf = aligned_alloc(BLK, BLK);

	CHECK(board_find(F.av, peer, h.key) == NULL, "the owner's key is on no board of the initiator's");
	unsigned held = 0;
	memset(buf, 1, BLK);
	CHECK(write_blk(buf, h.base + 0, h.key, &held) == 0 && win[0] == 1 && win[BLK - 1] == 1,
	      "the first write lands");
	CHECK(held > 0, "it was held until the owner's relay answered (%u retries)", held);

	snprintf(cmd, sizeof(cmd), "fallocate --punch-hole -o 131072 -l 16384 %s", path);
	CHECK(system(cmd) == 0, "punch (the owner's pause waits for the initiator through the relay)");
	memset(buf, 2, BLK);
	int r = -1;
	for (int i = 0; i < 64 && r; i++) /* the restore follows the punch at once */
		r = write_blk(buf, h.base + 8192, h.key, NULL);
	CHECK(r == 0 && win[8192] == 2, "a write after the punch lands, same key (%d)", r);

	snprintf(cmd, sizeof(cmd), "truncate -s 196608 %s", path);
	CHECK(system(cmd) == 0, "truncate");
	memset(buf, 3, BLK);
	for (int i = 0; i < 100000 && (r = write_blk(buf, h.base + 200704, h.key, NULL)) == 0; i++)
		usleep(1000); /* until the relay has told the new end */
	CHECK(r == -FI_EKEYREJECTED, "a write past the new end is refused at post (%d)", r);
	CHECK(write_blk(buf, h.base + 4096, h.key, NULL) == 0 && win[4096] == 3, "a write below it lands");
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size == 196608, "nothing reached the file past its end");

	close(hold[0]); /* the owner ends */
	int status;
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "the owner ends cleanly");
	fab_close(&F);
	munmap(win, LEN);
	free(buf);
	snprintf(cmd, sizeof(cmd), "grep -q 'relay: serving this host' %s && grep -q 'break: .*cause punch-hole' %s",
		 logp, logp);
	CHECK(system(cmd) == 0, "the owner relayed its board and logged the break");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd)) {
	}
	printf("relay: first write held until the owner's relay answered, punch paused and restored "
	       "across it, tail refused from the relayed entry\n");
	return t_done("t_fi_relay");
}
