#!/bin/bash
# The benchmark runs recorded in BENCHMARKS.md: writes the benchmark models
# (once; ~8 GB in $DUET_BENCH_DIR, default BUILD/models) and runs duet bench
# on each. Usage: bench/bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DUET="$BUILD/duet"
DIR=${DUET_BENCH_DIR:-$BUILD/models}
SHARED=${DUET_SHARED_MODELS:-$(cd .. && pwd)/shared/models}
VOCAB="$SHARED/ggml-vocab-llama-spm.gguf"
REPS=${REPS:-5}
THREADS=${THREADS:-2}
mkdir -p "$DIR"

model() { # shape dtype
	local f="$DIR/$1-$2.gguf"
	[ -s "$f" ] || "$DUET" mkmodel --shape "$1" --dtype "$2" --vocab "$VOCAB" -o "$f" >&2
	echo "$f"
}

run() {
	echo "\$ duet bench $*"
	"$DUET" bench "$@"
	echo
}

run -m "$(model stories110m f32)" -p 512 -n 128 -t "$THREADS" -r "$REPS" -b 1,4,8
for dt in f32 f16 q8_0; do
	run -m "$(model tinyllama-1.1b $dt)" -p 512 -n 128 -t "$THREADS" -r "$REPS"
done
