#include "common.h"
int bench_scale(void) { return 0; }
