# SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
# Benchmarks (included by the Makefile). `make bench` runs them all and writes
# results/<time>/bench.json, the plots and the callgrind counts; `make test`
# runs a tiny smoke of each (BENCH_SMOKE) that checks they work, not how fast.
BENCH_SRCS := $(wildcard bench/*.c)
ifndef BENCH_RESULTS
BENCH_RESULTS := results/$(shell date -u +%Y%m%d-%H%M%S)
endif

$(B)/bench:
	mkdir -p $@

$(B)/bench/mrl_bench: $(BENCH_SRCS) bench/common.h $(B)/libmrlease.a $(PRELOAD) include/mrlease.h | $(B)/bench
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS) -Ibench -o $@ $(BENCH_SRCS) $(PL_LINK) -Wl,-rpath,$(abspath $(B)) $(B)/libmrlease.a $(LIBS) -lm

$(B)/bench/smoke: bench/smoke.sh $(B)/bench/mrl_bench
	install -m 755 bench/smoke.sh $@

BENCH_SMOKE += $(B)/bench/smoke

bench: $(B)/bench/mrl_bench
	./$(B)/bench/mrl_bench --out $(BENCH_RESULTS) $(BENCH_PARTS)
	./bench/plot.sh $(BENCH_RESULTS)

.PHONY: bench
