#include "common.h"
int bench_churn(void) { return 0; }
