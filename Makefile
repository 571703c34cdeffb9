# mrlease: plain make. `make`, `make test`, `make demo`, `make bench`.
CC      ?= cc
PREFIX  ?= /usr/local
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wno-missing-field-initializers
CPPFLAGS += -D_GNU_SOURCE -Iinclude -Isrc
BASE_CFLAGS := -std=gnu11 $(WARN) -fvisibility=hidden -pthread
LIBS    := -lfabric -luring -lcrypto -pthread

# SAN=asan or SAN=tsan builds into its own tree
SAN ?=
B := build$(if $(SAN),-$(SAN))
ifeq ($(SAN),asan)
CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
ifeq ($(SAN),tsan)
CFLAGS += -O1 -fsanitize=thread
endif

SRCS := $(wildcard src/*.c)
OBJS := $(patsubst src/%.c,$(B)/obj/%.o,$(SRCS))
VERSION := 0.1.0

TESTS := $(patsubst test/%.c,$(B)/test/%,$(wildcard test/t_*.c))
# tests whose threads (monitor, progress) TSan checks
TSAN_TESTS := t_lease t_pause t_notify t_truncate t_fan t_fan_stream t_proto t_uring_hazard t_registrar t_unmap t_madvise \
	t_intp_stress t_auth t_rogue_auth

# libmrlease-preload.so: the libc address-space calls, for every object in
# the process. It runs before any sanitizer runtime is up: never instrumented.
PRELOAD := $(B)/libmrlease-preload.so
PL_CFLAGS := $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(CFLAGS))
# linked first (after a sanitizer runtime) so its definitions come before libc's
PL_LINK := -Wl,--no-as-needed $(PRELOAD)

all: $(B)/libmrlease.so $(B)/libmrlease.a $(PRELOAD) $(B)/mrlease $(B)/mrlease.pc

$(PRELOAD): $(wildcard preload/*.c preload/*.h) | $(B)/obj
	$(CC) -std=gnu11 $(WARN) -fvisibility=hidden $(PL_CFLAGS) -fPIC -shared -Wl,-soname,libmrlease-preload.so \
		-o $@ $(wildcard preload/*.c)

$(B)/obj/%.o: src/%.c src/*.h include/mrlease.h preload/mrlease_preload.h | $(B)/obj
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -fPIC $(CPPFLAGS) -c -o $@ $<

$(B)/obj $(B)/test:
	mkdir -p $@

$(B)/libmrlease.so: $(OBJS) src/libmrlease.map
	$(CC) -shared -Wl,--version-script=src/libmrlease.map -Wl,-soname,libmrlease.so.0 \
		$(CFLAGS) -o $@ $(OBJS) $(LIBS)

$(B)/libmrlease.a: $(OBJS)
	ar rcs $@ $(OBJS)

# the demo's server relies on interposition: the preload library beside it
# (build tree) or in ../lib (installed)
$(B)/mrlease: $(wildcard tools/*.c) $(wildcard tools/*.h) $(B)/libmrlease.a $(PRELOAD) include/mrlease.h
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS) -o $@ $(wildcard tools/*.c) $(PL_LINK) \
		-Wl,-rpath,'$$ORIGIN:$$ORIGIN/../lib' $(B)/libmrlease.a $(LIBS) -lm

$(B)/mrlease.pc: mrlease.pc.in
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# Tests link the static library so they can reach internal symbols too,
# and the preload library so the owner's calls are seen before they land.
$(B)/test/%: test/%.c $(wildcard test/*.h) $(B)/libmrlease.a $(PRELOAD) | $(B)/test
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS) -o $@ $< $(PL_LINK) -Wl,-rpath,$(abspath $(B)) \
		$(B)/libmrlease.a $(LIBS) -lm

# test/t_preload.sh: a program that knows nothing of mrlease, a plugin
# linked with the shared library, a second interposer (plain tree only: an
# unsanitized program cannot load sanitized objects)
PL_TEST := $(B)/test/pl
ifeq ($(SAN),)
PL_TEST_BINS := $(PL_TEST)/main $(PL_TEST)/plugin.so $(PL_TEST)/second.so
endif
$(PL_TEST):
	mkdir -p $@
$(PL_TEST)/main: test/t_preload.d/main.c test/t_preload.d/plugin.h | $(PL_TEST)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS) -o $@ $< -ldl
$(PL_TEST)/plugin.so: test/t_preload.d/plugin.c test/t_preload.d/plugin.h $(B)/libmrlease.so | $(PL_TEST)
	ln -sf libmrlease.so $(B)/libmrlease.so.0
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS) -fPIC -shared -o $@ $< -L$(B) -l:libmrlease.so \
		-Wl,-rpath,$(abspath $(B))
$(PL_TEST)/second.so: test/t_preload.d/second.c | $(PL_TEST)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS) -fPIC -shared -o $@ $< -ldl

tests: $(TESTS) $(B)/mrlease $(PL_TEST_BINS)

# Benchmarks live in bench/bench.mk: `make bench`, and BENCH_SMOKE (tiny runs
# that only prove each benchmark still works) joins `make test`.
BENCH_SMOKE :=
-include bench/bench.mk

# The whole suite, then again under ASan/UBSan, then the threaded tests under TSan.
test: all tests $(BENCH_SMOKE)
	$(MAKE) --no-print-directory SAN=asan tests
	$(MAKE) --no-print-directory SAN=tsan build-tsan/mrlease $(addprefix build-tsan/test/,$(TSAN_TESTS))
	$(MAKE) --no-print-directory fuzz-build
	./test/run.sh $(TESTS) $(wildcard test/t_*.sh) $(BENCH_SMOKE) $(patsubst $(B)/%,build-asan/%,$(TESTS)) \
		$(addprefix build-tsan/test/,$(TSAN_TESTS))

# The control-message parser under libFuzzer (clang, ASan+UBSan, its own
# tree): test/t_fuzz_msg.sh runs it briefly in `make test`, `make fuzz` for
# FUZZ_SECONDS (default 300) from the corpus in build-fuzz/corpus.
FUZZ_B := build-fuzz
FUZZ_CC ?= clang
FUZZ_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_OBJS := $(patsubst src/%.c,$(FUZZ_B)/obj/%.o,$(SRCS))
FUZZ_SECONDS ?= 300
$(FUZZ_B)/obj/%.o: src/%.c src/*.h include/mrlease.h preload/mrlease_preload.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -fPIC $(CPPFLAGS) -c -o $@ $<
$(FUZZ_B)/fuzz_msg: test/fuzz_msg.c test/helpers.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(CPPFLAGS) -o $@ $< $(FUZZ_OBJS) $(LIBS) -lm
fuzz-build: $(FUZZ_B)/fuzz_msg
fuzz: $(FUZZ_B)/fuzz_msg
	mkdir -p $(FUZZ_B)/corpus
	$(FUZZ_B)/fuzz_msg -max_total_time=$(FUZZ_SECONDS) -max_len=1025 -print_final_stats=1 $(FUZZ_B)/corpus

check-asan:
	$(MAKE) SAN=asan tests && ./test/run.sh build-asan/test/t_*

demo: $(B)/mrlease
	./$(B)/mrlease demo

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/mrlease.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(B)/libmrlease.so $(DESTDIR)$(PREFIX)/lib/libmrlease.so.0
	install -m 755 $(PRELOAD) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libmrlease.so.0 $(DESTDIR)$(PREFIX)/lib/libmrlease.so
	install -m 644 $(B)/libmrlease.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/mrlease $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' mrlease.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mrlease.pc

clean:
	rm -rf build

.PHONY: all test tests check-asan demo install clean fuzz fuzz-build
