# hone — build, test, demo, bench. See README.md.
#
#   make          build ./hone
#   make deps     install missing Debian packages (idempotent)
#   make test     deps + build + unit tests (also under ASan/UBSan) + integration tests
#   make demo     deps + build + run the default example pipeline
#   make bench    deps + build + benchmarks against peers (slow; not part of test)

CC       ?= cc
PKGS_LIB := lua5.4 libxxhash sqlite3 libarchive libutf8proc
CFLAGS   ?= -O2
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread
CPPFLAGS += $(shell pkg-config --cflags $(PKGS_LIB) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS_LIB) 2>/dev/null) -lm -pthread

# Debian packages: to build, to test, to benchmark.
DEPS_BUILD := gcc make pkg-config liblua5.4-dev libxxhash-dev libsqlite3-dev libarchive-dev libutf8proc-dev
DEPS_TEST  := libcmocka-dev xxhash tar gzip xz-utils zstd bzip2 zip
DEPS_BENCH := snakemake xxhash hyperfine jq bc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

SRC := $(wildcard engine/*.c engine/stages/*.c engine/io/*.c)
OBJ := $(SRC:%.c=build/%.o)
LIB_OBJ := $(filter-out build/engine/main.o,$(OBJ))
UNIT := $(basename $(notdir $(wildcard tests/unit/test_*.c)))

.PHONY: all deps deps-test deps-bench test unit unit-asan demo bench clean fuzz

all: hone

hone: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LDLIBS)

build/%.o: %.c $(wildcard engine/*.h engine/stages/*.h engine/io/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# --- dependencies ------------------------------------------------------------
define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "hone: installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) -E apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	fi
endef

deps:
	$(call install_missing,$(DEPS_BUILD) $(DEPS_TEST))

deps-bench: deps
	$(call install_missing,$(DEPS_BENCH))

# --- tests -------------------------------------------------------------------
# Unit tests link the engine's objects; the ASan/UBSan build compiles them
# again with the sanitizers into build/asan/.
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ASAN_OBJ := $(LIB_OBJ:build/%=build/asan/%)

build/asan/%.o: %.c $(wildcard engine/*.h engine/stages/*.h engine/io/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread $(ASAN_FLAGS) -c $< -o $@

build/tests/%: tests/unit/%.c $(LIB_OBJ) tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Iengine -o $@ $< $(LIB_OBJ) $(LDLIBS) -lcmocka

build/tests-asan/%: tests/unit/%.c $(ASAN_OBJ) tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread $(ASAN_FLAGS) -Iengine -o $@ $< $(ASAN_OBJ) $(LDLIBS) -lcmocka

unit: $(UNIT:%=build/tests/%) $(UNIT:%=build/tests-asan/%)

test: deps
	@$(MAKE) --no-print-directory hone unit
	@tests/run.sh

# --- demo and bench ----------------------------------------------------------
demo: deps
	@$(MAKE) --no-print-directory hone
	./hone run examples/wordfreq/pipeline.lua

bench: deps-bench
	@$(MAKE) --no-print-directory hone
	tests/bench/noop.sh

clean:
	rm -rf build hone
