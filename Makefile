# mrlease: plain make. `make`, `make test`, `make demo`, `make bench`.
CC      ?= cc
PREFIX  ?= /usr/local
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wno-missing-field-initializers
CPPFLAGS += -D_GNU_SOURCE -Iinclude -Isrc
BASE_CFLAGS := -std=gnu11 $(WARN) -fvisibility=hidden -pthread
LIBS    := -lfabric -luring -pthread

# SAN=asan or SAN=tsan builds into its own tree
SAN ?=
B := build$(if $(SAN),-$(SAN))
ifeq ($(SAN),asan)
CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
ifeq ($(SAN),tsan)
CFLAGS += -O1 -fsanitize=thread
# the interposed mmap/munmap run before TSan's runtime is up (the loader and
# TSan itself call them): they must not be instrumented
$(B)/obj/interpose.o: CFLAGS += -fno-sanitize=thread
endif

SRCS := $(wildcard src/*.c)
OBJS := $(patsubst src/%.c,$(B)/obj/%.o,$(SRCS))
VERSION := 0.1.0

TESTS := $(patsubst test/%.c,$(B)/test/%,$(wildcard test/t_*.c))
# tests whose threads (monitor, progress) TSan checks
TSAN_TESTS := t_lease t_pause t_notify t_truncate t_fan t_fan_stream t_proto t_uring_hazard t_registrar t_unmap t_madvise

all: $(B)/libmrlease.so $(B)/libmrlease.a $(B)/mrlease $(B)/mrlease.pc

$(B)/obj/%.o: src/%.c src/*.h include/mrlease.h | $(B)/obj
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -fPIC $(CPPFLAGS) -c -o $@ $<

$(B)/obj $(B)/test:
	mkdir -p $@

$(B)/libmrlease.so: $(OBJS) src/libmrlease.map
	$(CC) -shared -Wl,--version-script=src/libmrlease.map -Wl,-soname,libmrlease.so.0 \
		$(CFLAGS) -o $@ $(OBJS) $(LIBS)

$(B)/libmrlease.a: $(OBJS)
	ar rcs $@ $(OBJS)

$(B)/mrlease: $(wildcard tools/*.c) $(wildcard tools/*.h) $(B)/libmrlease.a include/mrlease.h
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS) -o $@ $(wildcard tools/*.c) $(B)/libmrlease.a $(LIBS) -lm

$(B)/mrlease.pc: mrlease.pc.in
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# Tests link the static library so they can reach internal symbols too.
$(B)/test/%: test/%.c $(wildcard test/*.h) $(B)/libmrlease.a | $(B)/test
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(CPPFLAGS) -o $@ $< $(B)/libmrlease.a $(LIBS) -lm

tests: $(TESTS) $(B)/mrlease

# Benchmarks live in bench/bench.mk: `make bench`, and BENCH_SMOKE (tiny runs
# that only prove each benchmark still works) joins `make test`.
BENCH_SMOKE :=
-include bench/bench.mk

# The whole suite, then again under ASan/UBSan, then the threaded tests under TSan.
test: all tests $(BENCH_SMOKE)
	$(MAKE) --no-print-directory SAN=asan tests
	$(MAKE) --no-print-directory SAN=tsan build-tsan/mrlease $(addprefix build-tsan/test/,$(TSAN_TESTS))
	./test/run.sh $(TESTS) $(wildcard test/t_*.sh) $(BENCH_SMOKE) $(patsubst $(B)/%,build-asan/%,$(TESTS)) \
		$(addprefix build-tsan/test/,$(TSAN_TESTS))

check-asan:
	$(MAKE) SAN=asan tests && ./test/run.sh build-asan/test/t_*

demo: $(B)/mrlease
	./$(B)/mrlease demo

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/mrlease.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(B)/libmrlease.so $(DESTDIR)$(PREFIX)/lib/libmrlease.so.0
	ln -sf libmrlease.so.0 $(DESTDIR)$(PREFIX)/lib/libmrlease.so
	install -m 644 $(B)/libmrlease.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/mrlease $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' mrlease.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mrlease.pc

clean:
	rm -rf build

.PHONY: all test tests check-asan demo install clean
