#include "common.h"
int bench_breaks(void) { return 0; }
