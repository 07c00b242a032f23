# duet: build, test, install.
#
#   make                 build libduet and every program into build/
#   make deps            install the Debian packages (as root) or print the command
#   make test            run every test, normal build then ASan+UBSan build
#   make test SANITIZE=0 only the normal build; SANITIZE=1 only the sanitizer build
#   make bench           `duet bench` on the benchmark models (see BENCHMARKS.md)
#   make demo            write a small random model and stream a completion

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
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -Icommon -pthread -MMD -MP $(SANFLAGS) $(CFLAGS)
LDFLAGS ?=
LDLIBS := -lopenblas -lxxhash -lm -pthread

# Debian packages: build tools and -dev libraries the code uses, plus what
# tests and benchmarks run.
DEB_PACKAGES := build-essential pkg-config libopenblas-dev libxxhash-dev \
	libcmocka-dev libzmq3-dev libprotobuf-c-dev protobuf-c-compiler \
	libsystemd-dev libinih-dev libjansson-dev libmicrohttpd-dev \
	libcurl4-openssl-dev gnuplot-nox

COMMON_SRC := $(sort $(wildcard common/*.c))
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
TOOLS_SRC := $(sort $(wildcard tools/*.c))
TOOLS_OBJ := $(TOOLS_SRC:%.c=$(BUILD)/%.o)
TEST_SUPPORT_SRC := tests/ref_forward.c tests/testutil.c
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

LIB := $(BUILD)/libduet.a
DUET := $(BUILD)/duet

.PHONY: all deps test test-bin bench clean
all: $(DUET)

# Kernels for one instruction set each; the library picks at run time.
$(BUILD)/common/kern_avx512.o: ISA := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c
$(BUILD)/common/kern_avx2.o: ISA := -mavx2 -mfma -mf16c

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ISA) -c $< -o $@

$(LIB): $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(DUET): $(TOOLS_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $(TOOLS_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_SUPPORT_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

test-bin: $(DUET) $(TEST_BIN)

test:
	@tests/run.sh $(if $(SANITIZE),$(BUILD),build build-asan)

deps:
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES); \
	else \
		echo "run as root: apt-get install -y $(DEB_PACKAGES)"; \
	fi

bench: $(DUET)
	@tests/bench.sh $(BUILD)

clean:
	rm -rf build build-asan

-include $(COMMON_OBJ:.o=.d) $(TOOLS_OBJ:.o=.d) $(TEST_SUPPORT_OBJ:.o=.d) $(TEST_BIN:%=%.d)

# A first run: a random-weight stories15m model with the real Llama-2
# vocabulary, then one streamed completion.
SHARED_MODELS ?= $(abspath ../shared/models)
DEMO_MODEL := $(BUILD)/models/stories15m.gguf
$(DEMO_MODEL): | $(DUET)
	@mkdir -p $(dir $@)
	$(DUET) mkmodel --shape stories15m --vocab $(SHARED_MODELS)/ggml-vocab-llama-spm.gguf -o $@

.PHONY: demo
demo: $(DUET) $(DEMO_MODEL)
	$(DUET) generate -m $(DEMO_MODEL) -p "Once upon a time" -n 48 --temp 0
