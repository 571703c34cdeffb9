/* `mrlease demo --device uring` (tools/demo_uring.c). */
#ifndef MRL_DEMO_URING_H
#define MRL_DEMO_URING_H
#include <stdbool.h>
#include <stdint.h>

struct uring_demo_opts {
	unsigned seconds, deadline_ms;
	uint64_t size;
	bool no_lease, json;
};
int cmd_demo_uring(const struct uring_demo_opts *o);
/* tools/mrlease.c: run a real tool quietly, return its exit status; *t0 gets
 * the time it was started (CLOCK_MONOTONIC ns) when t0 is not NULL */
int cli_run_tool(char *const argv[], uint64_t *t0);
#endif
