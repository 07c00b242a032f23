#!/bin/bash
# duet against llama.cpp on the same GGUF files in the same session, model
# by model (each pair run back to back, as the machine's bandwidth drifts):
# prefill ppP, decode tgN, and batched decode at each B (duet bench -b
# against llama-batched-bench's S_TG). Prints one markdown table.
#
# Usage: LLAMA_CPP=/path/to/llama.cpp/build/bin bench/vs_llamacpp.sh BUILD MODEL.gguf...
# Knobs: P (512; 0 skips prefill), N (64), BATCHES (8,16), REPS (3), THREADS (2).
# llama.cpp is built outside this repository from a snapshot (BENCHMARKS.md
# says how); nothing of it is in here.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?build dir}
shift
LB=${LLAMA_CPP:?set LLAMA_CPP to the bin directory of a llama.cpp build}
P=${P:-512}
N=${N:-64}
BATCHES=${BATCHES:-8,16}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# OpenBLAS must pick its AVX-512 kernels for duet's prefill (README).
run_duet() { env -u OPENBLAS_CORETYPE "$BUILD/duet" bench "$@"; }

echo "| model | test | llama.cpp t/s | duet t/s | duet / llama.cpp | duet of its ceiling |"
echo "|---|---|---:|---:|---:|---:|"
for m in "$@"; do
	name=$(basename "$m" .gguf)
	echo "== $name" >&2
	run_duet -m "$m" -p "$P" -n "$N" -b "1,$BATCHES" -r "$REPS" -t "$THREADS" \
		--json "$OUT/duet.json" >&2
	"$LB/llama-bench" -m "$m" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" -o json \
		>"$OUT/lb.json" 2>/dev/null
	"$LB/llama-batched-bench" -m "$m" -c 4096 -npp 128 -ntg "$N" -npl "$BATCHES" \
		-t "$THREADS" >"$OUT/lbb.md" 2>/dev/null || true
	row() { # test llama duet fraction
		awk -v m="$name" -v t="$1" -v l="$2" -v d="$3" -v f="$4" 'BEGIN {
			r = (l > 0) ? sprintf("%.2f", d / l) : "-";
			printf "| %s | %s | %s | %.2f | %s | %s |\n", m, t, (l > 0 ? sprintf("%.2f", l) : "-"), d, r, f }'
	}
	if [ "$P" -gt 0 ]; then
		l=$(jq "[.[] | select(.n_prompt == $P and .n_gen == 0)][0].avg_ts // 0" "$OUT/lb.json")
		d=$(jq ".results[] | select(.test == \"pp$P\") | .tokens_per_s" "$OUT/duet.json")
		f=$(jq -r ".results[] | select(.test == \"pp$P\") | \"\(.of_ceiling * 100 | floor)% \(.bound)\"" "$OUT/duet.json")
		row "pp$P" "$l" "$d" "$f"
	fi
	l=$(jq "[.[] | select(.n_gen == $N and .n_prompt == 0)][0].avg_ts // 0" "$OUT/lb.json")
	d=$(jq ".results[] | select(.test == \"tg$N\") | .tokens_per_s" "$OUT/duet.json")
	f=$(jq -r ".results[] | select(.test == \"tg$N\") | \"\(.of_ceiling * 100 | floor)% \(.bound)\"" "$OUT/duet.json")
	row "tg$N" "$l" "$d" "$f"
	for B in ${BATCHES//,/ }; do
		# llama-batched-bench: | PP | TG | B | N_KV | T_PP | S_PP | T_TG | S_TG | T | S |
		l=$(awk -F'|' -v b="$B" '$4 + 0 == b && $2 + 0 > 0 { gsub(/ /, "", $9); print $9 }' "$OUT/lbb.md" | head -1)
		d=$(jq ".results[] | select(.test == \"tg$N b$B\") | .tokens_per_s" "$OUT/duet.json")
		f=$(jq -r ".results[] | select(.test == \"tg$N b$B\") | \"\(.of_ceiling * 100 | floor)% \(.bound), \(.vs_batch1 * 100 | floor / 100)x batch 1\"" "$OUT/duet.json")
		row "batch $B decode" "${l:-0}" "$d" "$f"
	done
done
