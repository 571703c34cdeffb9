/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Errors, log lines and names: what every other file reports through.
 * Depends on nothing else in the library. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mrl_int.h"

/* ---- errors ---- */
static __thread char last_error[256];

int mrl_err(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	if (getenv("MRL_DEBUG"))
		fprintf(stderr, "mrlease: %s (%s)\n", last_error, strerror(err < 0 ? -err : err));
	return err < 0 ? err : -err;
}

void mrl_log(const char *fmt, ...)
{
	va_list ap;
	if (!getenv("MRL_DEBUG"))
		return;
	va_start(ap, fmt);
	fprintf(stderr, "mrlease[%d %.6f]: ", (int)getpid(), mrl_now_ns() / 1e9);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

MRL_EXPORT const char *mrl_last_error(void) { return last_error; }

void mrl_lock_failed(const char *what, int err)
{
	fprintf(stderr, "mrlease: internal error: %s failed: %s\n", what, strerror(err));
	abort();
}

MRL_EXPORT const char *mrl_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case ESTALE: return "stale MR handle (deregistered or never registered)";
	case EKEYREVOKED: return "remote MR fenced: access revoked (see cause)";
	case EOPNOTSUPP: return "not supported by this registrar or kernel";
	default: return strerror(err);
	}
}

/* ---- names ---- */
#define NAME_FN(fn, table)                                                                 \
	MRL_EXPORT const char *fn(unsigned v)                                              \
	{                                                                                  \
		return v < ARRAY_SIZE(table) && table[v] ? table[v] : "unknown";           \
	}
static const char *const cause_names[] = {
	[MRL_CAUSE_NONE] = "none", [MRL_CAUSE_OPEN_READ] = "open-read",
	[MRL_CAUSE_OPEN_WRITE] = "open-write", [MRL_CAUSE_TRUNCATED] = "truncated",
	[MRL_CAUSE_MODIFIED] = "modified", [MRL_CAUSE_UNMAPPED] = "unmapped",
	[MRL_CAUSE_MOVED] = "moved", [MRL_CAUSE_DEADLINE] = "deadline",
	[MRL_CAUSE_PEER_TIMEOUT] = "peer-timeout", [MRL_CAUSE_RELEASED] = "released",
	[MRL_CAUSE_OWNER] = "owner", [MRL_CAUSE_DEREGISTERED] = "deregistered",
	[MRL_CAUSE_DISCONNECTED] = "disconnected", [MRL_CAUSE_PUNCH_HOLE] = "punch-hole",
	[MRL_CAUSE_ZERO_RANGE] = "zero-range", [MRL_CAUSE_COLLAPSE_RANGE] = "collapse-range",
	[MRL_CAUSE_INSERT_RANGE] = "insert-range", [MRL_CAUSE_LAYOUT] = "layout",
	[MRL_CAUSE_MADVISED] = "madvised", [MRL_CAUSE_REPLACED] = "replaced",
	[MRL_CAUSE_REPLACED_FILE] = "replaced-file", [MRL_CAUSE_UNLINKED] = "unlinked",
	[MRL_CAUSE_PEER_LOST] = "peer-lost",
};
static const char *const state_names[] = {
	[MRL_STATE_ACTIVE] = "active", [MRL_STATE_PAUSED] = "paused",
	[MRL_STATE_FENCED] = "fenced", [MRL_STATE_DEREGISTERED] = "deregistered",
};
static const char *const kind_names[] = {
	[MRL_KIND_ANON] = "anonymous", [MRL_KIND_SHMEM] = "shmem", [MRL_KIND_MEMFD] = "memfd",
	[MRL_KIND_TMPFS] = "tmpfs-file", [MRL_KIND_FILE] = "file",
};
static const char *const change_names[] = {
	[MRL_CHG_OTHER_OPEN_READ] = "other: open for read",
	[MRL_CHG_OTHER_OPEN_WRITE] = "other: open for write",
	[MRL_CHG_OTHER_TRUNCATE] = "other: truncate",
	[MRL_CHG_OTHER_LAYOUT] = "other: punch/zero/collapse/insert",
	[MRL_CHG_OTHER_WRITE] = "other: write",
	[MRL_CHG_OWNER_TRUNCATE] = "owner: ftruncate",
	[MRL_CHG_OWNER_LAYOUT] = "owner: fallocate",
	[MRL_CHG_OWNER_MUNMAP] = "owner: munmap",
	[MRL_CHG_OWNER_MREMAP] = "owner: mremap",
	[MRL_CHG_OWNER_MADVISE] = "owner: madvise",
	[MRL_CHG_OWNER_OPEN] = "owner: open",
	[MRL_CHG_OWNER_WRITE] = "owner: write",
	[MRL_CHG_OWNER_MAP_FIXED] = "owner: mmap MAP_FIXED",
	[MRL_CHG_OTHER_OPEN_TRUNC] = "other: open O_TRUNC",
	[MRL_CHG_OTHER_RENAME] = "other: rename over the file",
	[MRL_CHG_OTHER_UNLINK] = "other: unlink the file",
};
static const char *const seen_names[] = {
	[MRL_SEEN_NEVER] = "not seen", [MRL_SEEN_AFTER] = "after",
	[MRL_SEEN_BEFORE] = "before", [MRL_SEEN_NA] = "n/a",
};
static const char *const event_names[] = {
	[MRL_EVENT_BREAK] = "break", [MRL_EVENT_RESTORED] = "restored",
	[MRL_EVENT_FENCED] = "fenced", [MRL_EVENT_LEASE_LOST] = "lease-lost",
	[MRL_EVENT_LEASE_HELD] = "lease-held", [MRL_EVENT_CHANGED] = "changed",
	[MRL_EVENT_DENIED] = "denied", [MRL_EVENT_PEER_LOST] = "peer-lost",
	[MRL_EVENT_REDIRECTED] = "redirected",
};
NAME_FN(mrl_cause_str, cause_names)
NAME_FN(mrl_state_str, state_names)
NAME_FN(mrl_kind_str, kind_names)
NAME_FN(mrl_change_str, change_names)
NAME_FN(mrl_seen_str, seen_names)
NAME_FN(mrl_event_str, event_names)

