# pfpcache-relay
#
#   make            build ./pfpcache-relay (needs the packages of scripts/deps.sh)
#   make test       install missing dependencies, build, run unit and end-to-end tests
#   make asan       the same tests against an ASan + UBSan build
#   make bench      install benchmark tools, build, run the benchmarks
#   make fuzz       run each libFuzzer driver in fuzz/ for FUZZ_SECONDS (clang)
#   make format     apply .clang-format to every C file
#
# `test`, `asan` and `bench` install dependencies first and then call make
# again, so that pkg-config is asked only once the packages are there.

BIN     := pfpcache-relay
VERSION := 0.1.0
PKGS    := libh2o libuv openssl jansson lmdb libsecp256k1 vips libcurl zlib gmodule-no-export-2.0

VARIANT ?= release
ifeq ($(VARIANT),asan)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
# Leaks of third-party libraries that live as long as the process (tests/lsan.supp says which).
export LSAN_OPTIONS := suppressions=$(abspath tests/lsan.supp):print_suppressions=0
else
OPT := -O2 -g
endif

B        := build/$(VARIANT)
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-missing-field-initializers
CPPFLAGS := -D_GNU_SOURCE -DPFP_VERSION=\"$(VERSION)\" -Isrc
CFLAGS   := -std=gnu11 $(OPT) $(WARN)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))
LDLIBS   = $(PKG_LIBS) -lwslay -lpthread -lm

SRCS      := $(wildcard src/*.c)
OBJS      := $(SRCS:src/%.c=$(B)/obj/%.o)
LIB       := $(B)/libpfp.a
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
FIXTURE   := $(B)/tests/fixture.o
BENCH_TOOLS := $(patsubst bench/tools/%.c,$(B)/bench/%,$(wildcard bench/tools/*.c))
TEST_TOOLS := $(patsubst tests/tools/%.c,$(B)/tests/tools/%,$(wildcard tests/tools/*.c))

FUZZ_SECONDS ?= 30
FUZZERS   := $(patsubst fuzz/%.c,build/fuzz/%,$(wildcard fuzz/fuzz_*.c))

.PHONY: all test asan check unit e2e bench fuzz fuzz-run format clean
.DELETE_ON_ERROR:

all: $(BIN)

$(BIN): build/release/$(BIN)
	cp -f $< $@

$(B)/$(BIN): $(B)/obj/main.o $(LIB)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS)

$(LIB): $(filter-out $(B)/obj/main.o,$(OBJS))
	rm -f $@
	ar rcs $@ $^

# The page is assembled into web.o (.incbin), which the compiler's dependency files cannot see.
$(B)/obj/web.o: web/profile-pic-example.html

$(B)/obj/%.o: src/%.c | $(B)/obj
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

# Unit tests may #include the .c under test to reach its static functions;
# linking against the archive pulls in only the modules they do not include.
# Each also links the fixture they share, tests/unit/fixture.c, ahead of the archive.
$(B)/tests/%: tests/unit/%.c $(FIXTURE) $(LIB) | $(B)/tests
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -o $@ $< $(FIXTURE) $(LIB) $(LDLIBS) -lcmocka

$(FIXTURE): tests/unit/fixture.c | $(B)/tests
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(B)/bench/%: bench/tools/%.c $(LIB) | $(B)/bench
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -o $@ $< $(LIB) $(LDLIBS)

# Programs the end-to-end tests run, such as the generator of test images.
$(B)/tests/tools/%: tests/tools/%.c $(LIB) | $(B)/tests/tools
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -o $@ $< $(LIB) $(LDLIBS)

# The hostile JPEG is arithmetic-coded with the state table of libjpeg, the library that decodes it.
$(B)/tests/tools/make_fixtures: LDLIBS += -ljpeg

$(B)/obj $(B)/tests $(B)/bench $(B)/tests/tools:
	mkdir -p $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p node_modules && touch $@

test:
	scripts/deps.sh test
	$(MAKE) check VARIANT=release

asan:
	scripts/deps.sh test
	$(MAKE) check VARIANT=asan

check: unit e2e

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

e2e: $(B)/$(BIN) $(TEST_TOOLS) node_modules/.installed
	PFP_BIN=$(abspath $(B)/$(BIN)) PFP_TOOLS=$(abspath $(B)/tests/tools) node --test tests/e2e/*.test.mjs

bench:
	scripts/deps.sh bench
	$(MAKE) all node_modules/.installed $(BENCH_TOOLS) $(TEST_TOOLS)
	bench/run.sh

# Fuzzers build every module with clang, libFuzzer and the sanitizers, and grow a
# working corpus under build/fuzz from the seeds in fuzz/corpus.
build/fuzz/%: fuzz/%.c $(filter-out src/main.c,$(SRCS)) | build/fuzz
	clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined $(WARN) $(CPPFLAGS) $(PKG_CFLAGS) \
		-o $@ $< $(filter-out src/main.c,$(SRCS)) $(LDLIBS)

build/fuzz:
	mkdir -p $@

fuzz:
	scripts/deps.sh fuzz
	$(MAKE) fuzz-run

fuzz-run: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do \
		name=$$(basename $$f); seeds=fuzz/corpus/$${name#fuzz_}; mkdir -p build/fuzz/corpus/$$name; \
		echo "== $$name ($(FUZZ_SECONDS) s, log in build/fuzz/$$name.log)"; \
		if ! $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 \
			build/fuzz/corpus/$$name $$seeds >build/fuzz/$$name.log 2>&1; then \
			tail -40 build/fuzz/$$name.log; exit 1; \
		fi; \
		grep -E '^stat::number_of_executed_units' build/fuzz/$$name.log; \
	done

format:
	clang-format -i src/*.c src/*.h tests/unit/*.c tests/unit/*.h fuzz/*.c bench/tools/*.c

clean:
	rm -rf build $(BIN)

-include $(OBJS:.o=.d) $(FIXTURE:.o=.d) $(UNIT_BINS:=.d) $(BENCH_TOOLS:=.d) $(TEST_TOOLS:=.d)
