/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* The seccomp watcher's filter (seccomp.h): which system calls go to the
 * supervisor. By number and argument: ftruncate, munmap, mremap always;
 * fallocate with a mode that drops or moves blocks; madvise and
 * process_madvise with advice that drops pages; mmap with MAP_FIXED (but
 * not the library's own SIGBUS scratch page, MRL_SCRATCH_MMAP_OFF); shmat
 * with SHM_REMAP. Everything else is allowed in a few BPF instructions.
 *
 * A sanitizer runtime's own calls are allowed by instruction pointer:
 * LeakSanitizer's exit-time check clones a tracer that shares the address
 * space, is not a thread of the process (so the supervisor cannot tell it
 * apart by pid before it runs), ptrace-stops every thread, the supervisor
 * included, and then unmaps its own scratch memory: sent to a stopped
 * supervisor, that munmap would wait for ever. The runtime's code never
 * makes the application's calls (its interceptors call libc's), so its
 * executable segments are exempt, found once at install. */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <linux/audit.h>
#include <linux/falloc.h>
#include <linux/filter.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp.h"

#if defined(__x86_64__)
#define SC_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SC_ARCH AUDIT_ARCH_AARCH64
#endif

/* ---- a tiny assembler: forward jumps to labels, resolved at the end ---- */
enum { L_RAW = -2, L_NONE = -1, L_NOTIFY, L_ALLOW, L_FALLOC, L_MADV, L_PMADV, L_ADV, L_MMAP, L_SHMAT, L_MAX };
#define SC_INSNS 96

struct prog {
	struct sock_filter f[SC_INSNS];
	int jt[SC_INSNS], jf[SC_INSNS]; /* jump targets: a label, L_NONE or L_RAW */
	int at[L_MAX];
	unsigned n;
	bool full;
};

static void emit(struct prog *p, uint16_t code, uint32_t k, int jt, int jf)
{
	if (p->n == SC_INSNS) {
		p->full = true;
		return;
	}
	p->f[p->n] = (struct sock_filter){.code = code, .k = k};
	p->jt[p->n] = jt;
	p->jf[p->n++] = jf;
}

static void label(struct prog *p, int l)
{
	p->at[l] = (int)p->n;
}

#define LD(p, off) emit(p, BPF_LD | BPF_W | BPF_ABS, (off), L_NONE, L_NONE)
#define RET(p, v) emit(p, BPF_RET | BPF_K, (v), L_NONE, L_NONE)
/* jumps whose targets are labels; L_NONE = the next instruction, L_RAW =
 * the offset already in the instruction */
#define JEQ(p, v, t, f) emit(p, BPF_JMP | BPF_JEQ | BPF_K, (v), (t), (f))
#define JSET(p, v, t, f) emit(p, BPF_JMP | BPF_JSET | BPF_K, (v), (t), (f))
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + (i) * 8)
#define IP_LO offsetof(struct seccomp_data, instruction_pointer)
#define IP_HI (IP_LO + 4)

/* labels to relative offsets; false if one does not fit (never, at this size) */
static bool resolve(struct prog *p)
{
	for (unsigned i = 0; i < p->n; i++) {
		if (BPF_CLASS(p->f[i].code) != BPF_JMP)
			continue;
		int t = p->jt[i] == L_NONE ? (int)i + 1
			: p->jt[i] == L_RAW ? (int)i + 1 + p->f[i].jt : p->at[p->jt[i]];
		int f = p->jf[i] == L_NONE ? (int)i + 1
			: p->jf[i] == L_RAW ? (int)i + 1 + p->f[i].jf : p->at[p->jf[i]];
		if (t <= (int)i || f <= (int)i || t - (int)i - 1 > 255 || f - (int)i - 1 > 255)
			return false;
		p->f[i].jt = (uint8_t)(t - (int)i - 1);
		p->f[i].jf = (uint8_t)(f - (int)i - 1);
	}
	return !p->full;
}

/* ---- the sanitizer runtime's executable segments ---- */
#define SC_EXEMPT 4
struct exempt {
	uintptr_t sym;
	uint64_t lo[SC_EXEMPT], hi[SC_EXEMPT]; /* [lo, hi) */
	unsigned n;
};

static int exempt_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct exempt *e = arg;
	bool mine = false;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && e->sym >= a && e->sym < a + ph->p_memsz)
			mine = true;
	}
	if (!mine)
		return 0;
	for (int i = 0; i < info->dlpi_phnum && e->n < SC_EXEMPT; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		e->lo[e->n] = info->dlpi_addr + ph->p_vaddr;
		e->hi[e->n++] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
	}
	return 1;
}

/* every sanitizer runtime (ASan, TSan, LSan, UBSan) defines this one */
static void find_exempt(struct exempt *e)
{
	e->sym = (uintptr_t)dlsym(RTLD_DEFAULT, "__sanitizer_print_stack_trace");
	if (e->sym)
		dl_iterate_phdr(exempt_cb, e);
}

/* ip in [lo, hi): allow. Split at 4 GiB boundaries so each piece compares
 * one high word and one low word:
 *	ld ip_hi; jeq HI ? next : +3; ld ip_lo; jge LO ? next : +1;
 *	jgt LAST ? next : allow	(next: the following piece) */
static void emit_exempt(struct prog *p, uint64_t lo, uint64_t hi)
{
	while (lo < hi) {
		uint64_t end = ((lo >> 32) + 1) << 32;
		uint64_t last = (end && hi > end ? end : hi) - 1;
		LD(p, IP_HI);
		JEQ(p, (uint32_t)(lo >> 32), L_NONE, L_RAW);
		if (!p->full)
			p->f[p->n - 1].jf = 3;
		LD(p, IP_LO);
		emit(p, BPF_JMP | BPF_JGE | BPF_K, (uint32_t)lo, L_NONE, L_RAW);
		if (!p->full)
			p->f[p->n - 1].jf = 1;
		emit(p, BPF_JMP | BPF_JGT | BPF_K, (uint32_t)last, L_NONE, L_ALLOW);
		lo = last + 1;
		if (!lo)
			break;
	}
}

static int build(struct prog *p)
{
#ifdef SC_ARCH
	const uint32_t drop_modes = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE |
				    FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE;
	LD(p, offsetof(struct seccomp_data, arch));
	JEQ(p, SC_ARCH, L_NONE, L_ALLOW);
	LD(p, offsetof(struct seccomp_data, nr));
	JEQ(p, SYS_ftruncate, L_NOTIFY, L_NONE);
	JEQ(p, SYS_munmap, L_NOTIFY, L_NONE);
	JEQ(p, SYS_mremap, L_NOTIFY, L_NONE);
	JEQ(p, SYS_fallocate, L_FALLOC, L_NONE);
	JEQ(p, SYS_madvise, L_MADV, L_NONE);
	JEQ(p, SYS_process_madvise, L_PMADV, L_NONE);
	JEQ(p, SYS_mmap, L_MMAP, L_NONE);
	JEQ(p, SYS_shmat, L_SHMAT, L_ALLOW);
	label(p, L_FALLOC);
	LD(p, ARG_LO(1)); /* fallocate mode */
	JSET(p, drop_modes, L_NOTIFY, L_ALLOW);
	label(p, L_MADV);
	LD(p, ARG_LO(2)); /* madvise advice */
	emit(p, BPF_JMP | BPF_JA, 0, L_NONE, L_NONE);
	unsigned ja = p->n - 1;
	label(p, L_PMADV);
	LD(p, ARG_LO(3)); /* process_madvise advice */
	label(p, L_ADV);
	p->f[ja].k = (uint32_t)(p->at[L_ADV] - (int)ja - 1);
	JEQ(p, MADV_DONTNEED, L_NOTIFY, L_NONE);
	JEQ(p, MADV_REMOVE, L_NOTIFY, L_NONE);
	JEQ(p, MADV_FREE, L_NOTIFY, L_NONE);
	JEQ(p, MADV_DONTNEED_LOCKED, L_NOTIFY, L_ALLOW);
	label(p, L_MMAP);
	LD(p, ARG_LO(3)); /* mmap flags */
	JSET(p, MAP_FIXED, L_NONE, L_ALLOW);
	/* the SIGBUS handler's scratch page (MRL_SCRATCH_MMAP_OFF): let go */
	LD(p, ARG_LO(5));
	JEQ(p, (uint32_t)MRL_SCRATCH_MMAP_OFF, L_NONE, L_NOTIFY);
	LD(p, ARG_LO(5) + 4);
	JEQ(p, (uint32_t)(MRL_SCRATCH_MMAP_OFF >> 32), L_ALLOW, L_NOTIFY);
	label(p, L_SHMAT);
	LD(p, ARG_LO(2)); /* shmat flags */
	JSET(p, SHM_REMAP, L_NOTIFY, L_ALLOW);
	label(p, L_NOTIFY);
	struct exempt e = {0};
	find_exempt(&e);
	for (unsigned i = 0; i < e.n; i++)
		emit_exempt(p, e.lo[i], e.hi[i]);
	RET(p, SECCOMP_RET_USER_NOTIF);
	label(p, L_ALLOW);
	RET(p, SECCOMP_RET_ALLOW);
	return 0;
#else
	(void)p;
	return -EOPNOTSUPP;
#endif
}

int mrl_sc_filter_install(void)
{
	struct prog p = {.n = 0};
	int err = build(&p);
	if (err)
		return err;
	if (!resolve(&p))
		return -E2BIG;
	struct sock_fprog prog = {.len = (unsigned short)p.n, .filter = p.f};
	int fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
			      &prog);
	if (fd < 0 && errno == EACCES) {
		/* no CAP_SYS_ADMIN: the kernel wants no_new_privs first */
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			return -errno;
		fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
				  SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	}
	return fd < 0 ? -errno : fd;
}
