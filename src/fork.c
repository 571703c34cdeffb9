/* fork: every forked child bumps the fork generation (pthread_atfork), so a
 * public call can tell a child using its parent's objects (MRL_CHILD_CHECK)
 * before it touches a lock the parent's threads may have held at fork. */
#include <errno.h>
#include <pthread.h>

#include "mrl_int.h"

_Atomic unsigned mrl_fork_gen;

static void fork_child(void)
{
	atomic_fetch_add(&mrl_fork_gen, 1);
}

static void fork_watch_once(void)
{
	pthread_atfork(NULL, NULL, fork_child);
}

void mrl_fork_watch(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, fork_watch_once);
}

int mrl_child_err(const char *fn)
{
	return mrl_err(EPERM, "%s: this object belongs to the parent process (the caller is a "
			      "forked child); a child must create its own context", fn);
}
