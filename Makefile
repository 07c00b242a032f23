# duet: build, test, install.
#
#   make                 build libduet and every program into build/
#   make deps            install the Debian packages (as root) or print the command
#   make test            run every test, normal build then ASan+UBSan build
#   make test SANITIZE=0 only the normal build; SANITIZE=1 only the sanitizer build
#   make bench           `duet bench` on the benchmark models (see BENCHMARKS.md)
#   make bench-daemons   KV transfer, streaming overlap, decode batching, hand-offs (SECTIONS=)
#   make bench-matmul    the matmul kernels alone: weight GB/s and GFLOP/s
#   make bench-guide     guided decoding (response_format): token mask cost
#   make soak            2000 requests, hang-ups, a node killed: nothing leaks
#   make bench-router    the router's overhead
#   make bench-cluster   colocated vs disaggregated, trace replay over a rate sweep
#   make up              start a local cluster (router + nodes) until Ctrl-C
#   make demo            write a small random model and stream a completion
#   make install         binaries, systemd units, man pages, example configs
#                        (PREFIX=/usr/local DESTDIR= SYSCONFDIR=/etc); make uninstall
#   make test-systemd    boot a real systemd in a container and run duet.target there
#   make test-stress     the daemon tests again and again under a CPU hog (stress-ng)

SANITIZE ?=
ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

CC ?= gcc
OPT ?= -O2
CFLAGS ?= $(OPT) -g
WARN := -Wall -Wextra -Werror
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -Icommon -Irouter -Itools -I$(BUILD)/proto -pthread -MMD -MP $(SANFLAGS) $(CFLAGS)
LDFLAGS ?=
LDLIBS := -ljansson -lzmq -lprotobuf-c -lsystemd -linih -lopenblas -lxxhash -lpcre2-8 -lutf8proc -lm -pthread

# Debian packages: build tools and -dev libraries the code uses, plus what
# tests and benchmarks run.
DEB_PACKAGES := build-essential pkg-config libopenblas-dev libxxhash-dev libpcre2-dev libutf8proc-dev \
	libcmocka-dev libzmq3-dev libprotobuf-c-dev protobuf-c-compiler \
	libsystemd-dev libinih-dev libjansson-dev libmicrohttpd-dev \
	libcurl4-openssl-dev gnuplot-nox clang libclang-rt-14-dev \
	help2man man-db systemd systemd-container openssl iproute2 nftables jq stress-ng

PROTO_C := $(BUILD)/proto/duet.pb-c.c
PROTO_H := $(BUILD)/proto/duet.pb-c.h
# libduet: common/ in its parts (docs/ARCHITECTURE.md says what each may
# include; tests/layers_test.sh checks it).
COMMON_SRC := $(sort $(wildcard common/*/*.c common/engine/kern/*.c))
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o) $(BUILD)/proto/duet.pb-c.o
# The model writer (duet mkmodel, tests, fuzz seeds): not in libduet, so the
# daemons never carry it.
MKMODEL_SRC := $(filter-out tools/mkmodel/cmd_%,$(sort $(wildcard tools/mkmodel/*.c)))
MKMODEL_LIB := $(BUILD)/libmkmodel.a
PREFILL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard prefill-node/*.c)))
DECODE_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard decode-node/*.c)))
ROUTER_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard router/*.c)))
TOOLS_SRC := $(sort $(wildcard tools/*.c tools/bench/*.c tools/replay/*.c tools/trace/*.c tools/plan/*.c) $(wildcard tools/mkmodel/cmd_*.c))
TOOLS_OBJ := $(TOOLS_SRC:%.c=$(BUILD)/%.o)
TEST_SUPPORT_SRC := tests/ref_forward.c tests/testutil.c tests/driver.c
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

LIB := $(BUILD)/libduet.a
DUET := $(BUILD)/duet
DAEMONS := $(BUILD)/duet-prefill $(BUILD)/duet-decode $(BUILD)/duet-router

.PHONY: all deps test test-bin bench clean fuzz
all: $(DUET) $(DAEMONS)

# The wire schema, compiled at build time; every object may include it.
$(PROTO_C) $(PROTO_H) &: proto/duet.proto
	@mkdir -p $(dir $@)
	protoc-c --c_out=$(BUILD)/proto -Iproto proto/duet.proto

$(BUILD)/proto/duet.pb-c.o: $(PROTO_C)
	$(CC) $(ALL_CFLAGS) -Wno-unused-parameter -c $< -o $@

# Kernels for one instruction set each; the library picks at run time.
ISA_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mfma -mf16c
ISA_avx2 := -mavx2 -mfma -mf16c
$(BUILD)/common/engine/kern/avx512.o $(BUILD)/common/engine/kern/avx512_attn.o $(BUILD)/common/engine/kern/avx512_groups.o \
$(BUILD)/common/engine/kern/avx512_quant.o: ISA := $(ISA_avx512)
$(BUILD)/common/engine/kern/avx2.o: ISA := $(ISA_avx2)
$(BUILD)/common/engine/kern/avxvnni.o: ISA := $(ISA_avx2) -mavxvnni
# The sanitizer build compiles the SIMD kernels at -O1: gcc takes 130-145 s
# over avx512.c with ASan+UBSan at -O2 (17 s without them), most of the
# ASan build's time, and -O1 instruments every load and store alike (the
# tests ran as fast: test_forward 81 s against 86 s, test_kernels 15 s
# against 12 s). The normal build tests the -O2 kernels.
ifeq ($(SANITIZE),1)
$(BUILD)/common/engine/kern/avx512.o $(BUILD)/common/engine/kern/avx512_attn.o $(BUILD)/common/engine/kern/avx512_groups.o \
$(BUILD)/common/engine/kern/avx512_quant.o \
$(BUILD)/common/engine/kern/avx2.o $(BUILD)/common/engine/kern/avxvnni.o: KERN_OPT := -O1
endif

$(BUILD)/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISA) $(KERN_OPT) -c $< -o $@

$(LIB): $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(MKMODEL_LIB): $(MKMODEL_SRC:%.c=$(BUILD)/%.o)
	@rm -f $@
	ar rcs $@ $^

# duet plan's simulator places requests with the router's own place.c.
$(DUET): $(TOOLS_OBJ) $(BUILD)/router/place.o $(MKMODEL_LIB) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $(TOOLS_OBJ) $(BUILD)/router/place.o $(MKMODEL_LIB) $(LIB) -lcurl -ljansson $(LDLIBS) -o $@

$(BUILD)/duet-prefill: $(PREFILL_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $(PREFILL_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/duet-decode: $(DECODE_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $(DECODE_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/duet-router: $(ROUTER_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $(ROUTER_OBJ) $(LIB) -lmicrohttpd -ljansson $(LDLIBS) -o $@

# Placement is tested as a unit, against the router's own place.c.
$(BUILD)/tests/test_place: $(BUILD)/tests/test_place.o $(BUILD)/router/place.o $(TEST_SUPPORT_OBJ) $(MKMODEL_LIB) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -lcurl -ljansson $(LDLIBS) -lcmocka -o $@

# The decode node's step model is tested as a unit, against its own file.
$(BUILD)/tests/test_step_model: $(BUILD)/tests/test_step_model.o $(BUILD)/decode-node/step_model.o $(TEST_SUPPORT_OBJ) $(MKMODEL_LIB) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -lcurl -ljansson $(LDLIBS) -lcmocka -o $@

# The replay pieces are tested as units and against a stub HTTP server.
REPLAY_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(filter-out tools/replay/cmd_%,$(wildcard tools/replay/*.c)) \
	tools/http_get.c tools/cli.c tools/trace/tracefile.c)
$(BUILD)/tests/test_replay: $(BUILD)/tests/test_replay.o $(REPLAY_OBJ) $(TEST_SUPPORT_OBJ) $(MKMODEL_LIB) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -lmicrohttpd -lcurl -ljansson $(LDLIBS) -lcmocka -o $@

# The simulator with the router's own placement.
PLAN_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(filter-out tools/plan/cmd_%,$(wildcard tools/plan/*.c))) $(BUILD)/router/place.o
$(BUILD)/tests/test_plan: $(BUILD)/tests/test_plan.o $(PLAN_OBJ) $(BUILD)/tools/trace/steps.o $(REPLAY_OBJ) $(TEST_SUPPORT_OBJ) $(MKMODEL_LIB) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -lmicrohttpd -lcurl -ljansson $(LDLIBS) -lcmocka -o $@

$(BUILD)/tests/test_trace: $(BUILD)/tests/test_trace.o $(BUILD)/tools/trace/tracefile.o $(TEST_SUPPORT_OBJ) $(MKMODEL_LIB) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -lcurl -ljansson $(LDLIBS) -lcmocka -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_SUPPORT_OBJ) $(MKMODEL_LIB) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -lcurl -ljansson $(LDLIBS) -lcmocka -o $@

test-bin: $(DUET) $(DAEMONS) $(TEST_BIN)

test:
	@tests/run.sh $(if $(SANITIZE),$(BUILD),build build-asan)

# The API test's Node packages (the official openai client, Ajv) go into
# tests/js/node_modules from the npm registry, as package-lock.json pins
# them; Node.js and npm come from Debian where the machine has none.
deps:
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) && \
		{ command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }; \
	else \
		echo "run as root: apt-get install -y $(DEB_PACKAGES) nodejs npm"; \
	fi
	@if command -v npm >/dev/null; then \
		cd tests/js && npm ci --no-audit --no-fund --loglevel=error; \
	fi

bench: $(DUET)
	@bench/bench.sh $(BUILD)

# The daemons' benchmark: KV transfer, streaming overlap, decode batching,
# on a stories110m-shaped model with a 4096-token context (made once).
BENCH_MODEL ?= $(BUILD)/models/stories110m-ctx4k.gguf
$(BUILD)/models/stories110m-ctx4k.gguf: | $(DUET)
	@mkdir -p $(dir $@)
	$(DUET) mkmodel --shape stories110m --ctx 4096 --vocab $(SHARED_MODELS)/ggml-vocab-llama-spm.gguf -o $@

.PHONY: bench-daemons
bench-daemons: $(DAEMONS) $(BUILD)/bench/bench_daemons $(BENCH_MODEL)
	$(BUILD)/bench/bench_daemons $(BUILD) $(BENCH_MODEL) $(or $(REPS),3) $(or $(KV),f16) $(or $(SECTIONS),transfer,overlap,decode,handoff)

# The matmul kernels alone, per weight type and batch width (weight GB/s
# and GFLOP/s; see bench/bench_matmul.c).
.PHONY: bench-matmul
bench-matmul: $(BUILD)/bench/bench_matmul
	@for t in f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q6_k; do for b in 1 4 8 16; do $(BUILD)/bench/bench_matmul $$t $$b; done; done
	@for t in q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q6_k; do for b in 1 4 8 16; do PACKED=1 $(BUILD)/bench/bench_matmul $$t $$b; done; done

# Decode attention alone: KV GB/s and ns per cached position and layer,
# stories110m's heads (12 KV heads) and tinyllama's (4 KV heads of 8 query
# heads), at 1k and 4k positions, 1 and 8 sequences; then prefill chunks'
# attention (GFLOP/s): 64 rows after 2048 positions and a 512-row prompt
# (bench/bench_attention.c).
.PHONY: bench-attention
bench-attention: $(BUILD)/bench/bench_attention
	@for t in f32 f16 int8; do for p in 1024 4096; do for b in 1 8; do \
		$(BUILD)/bench/bench_attention $$t $$p $$b; \
		$(BUILD)/bench/bench_attention $$t $$p $$b 32 4 64 22; done; done; done
	@for t in f16 int8; do for rp in 64:2048 512:0; do \
		ROWS=$${rp%%:*} $(BUILD)/bench/bench_attention $$t $${rp##*:} 1; \
		ROWS=$${rp%%:*} $(BUILD)/bench/bench_attention $$t $${rp##*:} 1 32 4 64 22; done; done

# Guided decoding's cost per step: the full token mask and one check, over
# each real vocabulary (see bench/bench_guide.c).
# The soak (BENCHMARKS.md, issue 21): 2000 requests, 30% of clients hanging
# up, a decode node killed halfway; nothing may leak (bench/soak.mjs).
.PHONY: soak
soak: $(DUET) $(DAEMONS)
	bench/soak.sh $(BUILD) $(SHARED_MODELS) $(or $(REQUESTS),2000) $(or $(HANGUP),0.3)

.PHONY: bench-guide
bench-guide: $(BUILD)/bench/bench_guide
	@for v in ggml-vocab-llama-spm.gguf llama3-tokenizer.json qwen3-tokenizer.json; do \
		$(BUILD)/bench/bench_guide $(SHARED_MODELS)/$$v; done

$(BUILD)/bench/bench_guide: $(BUILD)/bench/bench_guide.o $(MKMODEL_LIB) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bench/bench_matmul: $(BUILD)/bench/bench_matmul.o $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bench/bench_attention: $(BUILD)/bench/bench_attention.o $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bench/bench_daemons: $(BUILD)/bench/bench_daemons.o $(BUILD)/tests/driver.o $(BUILD)/tools/bench/ceilings.o $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

# libFuzzer targets (clang): `make fuzz FUZZ_SECONDS=600` runs each target
# that long (FUZZ_TARGETS="model trace" for some). New inputs go to
# build/fuzz/corpus-*, seeds come from tests/fuzz/corpus/*; a crash ends
# that target's run, is written to build/fuzz/crash-*, and fails make fuzz
# (tests/fuzz/run_targets.sh).
FUZZ_SECONDS ?= 60
# targets run at once (each is one process on one core)
FUZZ_JOBS ?= $(shell nproc)
FUZZ_CC ?= clang
FUZZ_TARGETS ?= frames model request trace hfvocab json
FUZZ_BASE := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -MMD -MP \
	-Icommon -Irouter -Itools -I$(BUILD)/proto
FUZZ_LIB_FLAGS = $(FUZZ_BASE) $(SAN_FLAGS)
SAN_FLAGS = -fsanitize=fuzzer-no-link,address,undefined
FUZZ_FLAGS := $(FUZZ_BASE) $(WARN) -fsanitize=fuzzer,address,undefined
FUZZ_OBJ := $(COMMON_SRC:%.c=$(BUILD)/fuzz/obj/%.o) $(BUILD)/fuzz/obj/proto.o
FUZZ_LIB := $(BUILD)/fuzz/libduet-fuzz.a
$(BUILD)/fuzz/obj/common/engine/kern/avx512.o $(BUILD)/fuzz/obj/common/engine/kern/avx512_attn.o $(BUILD)/fuzz/obj/common/engine/kern/avx512_groups.o \
$(BUILD)/fuzz/obj/common/engine/kern/avx512_quant.o: ISA := $(ISA_avx512)
$(BUILD)/fuzz/obj/common/engine/kern/avx2.o: ISA := $(ISA_avx2)
$(BUILD)/fuzz/obj/common/engine/kern/avxvnni.o: ISA := $(ISA_avx2) -mavxvnni
# The kernels without ASan/UBSan here: clang takes 4-5 minutes over
# avx512.c with them, against 5 s without, and no fuzz target reaches the
# kernels (the ASan build's tests do).
$(BUILD)/fuzz/obj/common/engine/kern/%.o: SAN_FLAGS := -fsanitize=fuzzer-no-link
$(BUILD)/fuzz/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_LIB_FLAGS) $(ISA) -c $< -o $@
$(BUILD)/fuzz/obj/proto.o: $(PROTO_C)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_LIB_FLAGS) -c $< -o $@
$(FUZZ_LIB): $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
# What each target tests beyond libduet.
FUZZ_EXTRA_request := $(BUILD)/fuzz/obj/router/request.o
FUZZ_EXTRA_trace := $(BUILD)/fuzz/obj/tools/replay/trace.o
FUZZ_EXTRA_hfvocab := $(BUILD)/fuzz/obj/tools/mkmodel/vocab_hf.o
FUZZ_BINS := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)
.SECONDEXPANSION:
$(FUZZ_BINS): $(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $$(FUZZ_EXTRA_$$*) $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(filter %.c %.o %.a,$^) -ljansson $(LDLIBS) -o $@

# Seeds that are binary files made by code (model files) are written at
# build time by the normal build's tools.
$(BUILD)/fuzz/seeds-model/.done: tests/fuzz/mkseeds_model.c $(MKMODEL_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(MKMODEL_LIB) $(LIB) $(LDLIBS) -o $(BUILD)/fuzz/mkseeds_model
	$(BUILD)/fuzz/mkseeds_model $(dir $@)
	touch $@
FUZZ_SEEDS_model := $(BUILD)/fuzz/seeds-model
FUZZ_ENV = DUET_FUZZ_VOCAB=$(SHARED_MODELS)/ggml-vocab-llama-spm.gguf

# The targets and their seeds without running them (make test builds them
# with -j first: make fuzz itself runs them).
.PHONY: fuzz-bin
fuzz-bin: $(FUZZ_BINS) $(BUILD)/fuzz/seeds-model/.done

fuzz: fuzz-bin
	@$(FUZZ_ENV) tests/fuzz/run_targets.sh $(BUILD) $(FUZZ_SECONDS) $(FUZZ_JOBS) $(FUZZ_SEEDS_model) $(FUZZ_TARGETS)

clean:
	rm -rf build build-asan

# ---- install ----
# Units go where systemd looks for them under PREFIX (/usr/local/lib/systemd
# /system is on its search path); configurations stay in SYSCONFDIR/duet
# whatever PREFIX is, as the units name them. Example configurations are
# copied there only when absent, and uninstall leaves them: they are the
# administrator's from then on.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
BINDIR := $(PREFIX)/bin
UNITDIR := $(PREFIX)/lib/systemd/system
MANDIR := $(PREFIX)/share/man/man1
EXAMPLEDIR := $(PREFIX)/share/doc/duet/examples
PROGRAMS := duet duet-prefill duet-decode duet-router
DUET_CMDS := generate tokenize bench mkmodel up replay keygen
UNITS := duet-router.service duet-prefill@.service duet-decode@.service
EXAMPLES := router.conf prefill-0.conf decode-0.conf
MAN_PAGES := $(PROGRAMS:%=$(BUILD)/man/%.1) $(DUET_CMDS:%=$(BUILD)/man/duet-%.1)
VERSION = $(shell sed -n 's/^#define DUET_VERSION "\(.*\)"/\1/p' common/base/version.h)

# Man pages are the programs' --help through help2man; `duet CMD` pages run
# the command through a one-line wrapper, as help2man takes one program.
MAN_NAME_duet := the duet command-line tool
MAN_NAME_duet-prefill := the duet prefill daemon
MAN_NAME_duet-decode := the duet decode daemon
MAN_NAME_duet-router := the duet router
$(PROGRAMS:%=$(BUILD)/man/%.1): $(BUILD)/man/%.1: $(BUILD)/%
	@mkdir -p $(dir $@)
	help2man -N --no-discard-stderr --version-string=$(VERSION) -n "$(MAN_NAME_$*)" -o $@ $<
$(DUET_CMDS:%=$(BUILD)/man/duet-%.1): $(BUILD)/man/duet-%.1: $(DUET)
	@mkdir -p $(BUILD)/man/wrap
	printf '#!/bin/sh\nexec "%s" %s "$$@"\n' "$(abspath $(DUET))" $* >$(BUILD)/man/wrap/duet-$*
	chmod +x $(BUILD)/man/wrap/duet-$*
	help2man -N --no-discard-stderr --version-string=$(VERSION) -n "duet $*" -o $@ $(BUILD)/man/wrap/duet-$*

.PHONY: man install uninstall test-systemd
man: $(MAN_PAGES)

install: all man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR)/duet-.service.d $(DESTDIR)$(MANDIR) \
		$(DESTDIR)$(EXAMPLEDIR) $(DESTDIR)$(SYSCONFDIR)/duet
	install -m 755 $(PROGRAMS:%=$(BUILD)/%) $(DESTDIR)$(BINDIR)/
	for u in $(UNITS); do \
		sed 's|@BINDIR@|$(BINDIR)|g' systemd/$$u.in >$(DESTDIR)$(UNITDIR)/$$u.tmp && \
		chmod 644 $(DESTDIR)$(UNITDIR)/$$u.tmp && mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -m 644 systemd/duet.target $(DESTDIR)$(UNITDIR)/
	install -m 644 systemd/duet-.service.d/10-hardening.conf $(DESTDIR)$(UNITDIR)/duet-.service.d/
	install -m 644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/
	install -m 644 $(EXAMPLES:%=systemd/%) $(DESTDIR)$(EXAMPLEDIR)/
	for f in $(EXAMPLES); do \
		[ -e $(DESTDIR)$(SYSCONFDIR)/duet/$$f ] || install -m 600 systemd/$$f $(DESTDIR)$(SYSCONFDIR)/duet/ || exit 1; \
	done

uninstall:
	rm -f $(PROGRAMS:%=$(DESTDIR)$(BINDIR)/%) $(UNITS:%=$(DESTDIR)$(UNITDIR)/%) \
		$(DESTDIR)$(UNITDIR)/duet.target $(DESTDIR)$(UNITDIR)/duet-.service.d/10-hardening.conf \
		$(addprefix $(DESTDIR)$(MANDIR)/,$(notdir $(MAN_PAGES))) $(EXAMPLES:%=$(DESTDIR)$(EXAMPLEDIR)/%)
	-rmdir $(DESTDIR)$(UNITDIR)/duet-.service.d $(DESTDIR)$(EXAMPLEDIR) $(DESTDIR)$(PREFIX)/share/doc/duet 2>/dev/null
	@echo "left $(DESTDIR)$(SYSCONFDIR)/duet (configurations) in place"

# Five hosts in network namespaces, failures, slow links and intruders
# (as root): see tests/cluster_netns.sh. The relay adds link delay.
$(BUILD)/tests/delay_relay: tests/delay_relay.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< -o $@

.PHONY: test-cluster
test-cluster: all $(BUILD)/tests/delay_relay
	tests/cluster_netns.sh $(BUILD)

# Tests must hold on a slower or busier machine than this one: the ASan
# builds of the daemon tests, STRESS_RUNS times each, while stress-ng keeps
# every CPU busy (tests/stress.sh; not part of make test).
STRESS_RUNS ?= 20
STRESS_TESTS ?= test_cluster
.PHONY: test-stress
test-stress:
	@$(MAKE) -s SANITIZE=1 BUILD=build-asan test-bin
	tests/stress.sh $(STRESS_RUNS) $(STRESS_TESTS:%=build-asan/tests/%)

# Boots systemd in a container over this machine's root (as root; needs
# systemd-nspawn) and runs duet.target there: see tests/systemd_boot.sh.
test-systemd: all
	tests/systemd_boot.sh $(BUILD)

# The fuzz objects too: a target built against an older struct layout
# reads the wrong fields.
-include $(FUZZ_OBJ:.o=.d) $(FUZZ_EXTRA_request:.o=.d) $(FUZZ_EXTRA_trace:.o=.d) \
	$(FUZZ_EXTRA_hfvocab:.o=.d) $(FUZZ_BINS:=.d)
-include $(patsubst %.c,$(BUILD)/%.d,$(wildcard bench/*.c))
-include $(COMMON_OBJ:.o=.d) $(MKMODEL_SRC:%.c=$(BUILD)/%.d) $(TOOLS_OBJ:.o=.d) $(PREFILL_OBJ:.o=.d) $(DECODE_OBJ:.o=.d) $(ROUTER_OBJ:.o=.d) $(TEST_SUPPORT_OBJ:.o=.d) $(TEST_BIN:%=%.d)

# A first run: a random-weight stories15m model with the real Llama-2
# vocabulary, then one streamed completion.
SHARED_MODELS ?= $(abspath ../shared/models)
DEMO_MODEL := $(BUILD)/models/stories15m.gguf
$(DEMO_MODEL): | $(DUET)
	@mkdir -p $(dir $@)
	$(DUET) mkmodel --shape stories15m --vocab $(SHARED_MODELS)/ggml-vocab-llama-spm.gguf -o $@

.PHONY: demo up
# A local cluster (router, one prefill and one decode node) serving until
# Ctrl-C: installs missing Debian packages first when run as root, builds,
# then `duet up $(UP_ARGS)` (see README for the curl line).
up:
	@dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1 || $(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory all
	$(DUET) up $(UP_ARGS)

demo: $(DUET) $(DEMO_MODEL)
	$(DUET) generate -m $(DEMO_MODEL) -p "Once upon a time" -n 48 --temp 0

# Router overhead: a local cluster (duet up) on the small demo model, then
# bench/bench_router.c against it.
.PHONY: bench-router
bench-router: $(DUET) $(DAEMONS) $(BUILD)/bench/bench_router $(DEMO_MODEL)
	@rm -rf $(BUILD)/bench-up; \
	$(DUET) up --model $(DEMO_MODEL) --port 18601 --dir $(BUILD)/bench-up >$(BUILD)/bench-up.out 2>&1 & \
	pid=$$!; for i in $$(seq 1 300); do grep -q '^duet up: serving' $(BUILD)/bench-up.out && break; sleep 0.1; done; \
	grep -q '^duet up: serving' $(BUILD)/bench-up.out || { cat $(BUILD)/bench-up.out; kill $$pid; exit 1; }; \
	$(BUILD)/bench/bench_router http://127.0.0.1:18601; rc=$$?; kill -INT $$pid; wait $$pid; exit $$rc

$(BUILD)/bench/bench_router: $(BUILD)/bench/bench_router.o
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -lcurl -o $@

# Colocated vs disaggregated over a sweep of request rates, replaying the
# Azure and Mooncake traces, three repetitions (bench/bench_cluster.sh
# documents the knobs; about two hours, REQUESTS=30 SWEEP=1,3 about one).
SHARED_TRACES ?= $(abspath ../shared/traces)
.PHONY: bench-cluster
bench-cluster: $(DUET) $(DAEMONS) $(BENCH_MODEL)
	bench/bench_cluster.sh $(BUILD) $(BENCH_MODEL) $(SHARED_TRACES)

# duet plan's simulator against bench-cluster's configurations measured in
# the same minutes (bench/validate_plan.sh documents the knobs; about 10
# minutes with its defaults).
.PHONY: validate-plan
validate-plan: $(DUET) $(DAEMONS) $(BENCH_MODEL)
	bench/validate_plan.sh $(BUILD) $(BENCH_MODEL) $(SHARED_TRACES)
