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
#endif
