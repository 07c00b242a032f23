#!/bin/bash
# Decode speed against llama.cpp in pairs: ROUNDS rounds of duet bench tgN
# then llama-bench tgN on the same file, each round's ratio printed, then
# the median. On a shared host whose bandwidth drifts within minutes, only
# ratios taken seconds apart mean anything (BENCHMARKS.md).
#
# Usage: LLAMA_CPP=/path/to/llama.cpp/build/bin bench/tg_pairs.sh BUILD MODEL.gguf
# Knobs: ROUNDS (6), N (64), REPS (3), THREADS (2).
set -euo pipefail
BUILD=${1:?usage: bench/tg_pairs.sh BUILD MODEL.gguf}
MODEL=${2:?usage: bench/tg_pairs.sh BUILD MODEL.gguf}
: "${LLAMA_CPP:?set LLAMA_CPP to the build/bin of llama.cpp}"
ROUNDS=${ROUNDS:-6} N=${N:-64} REPS=${REPS:-3} THREADS=${THREADS:-2}
ratios=()
for i in $(seq "$ROUNDS"); do
	d=$("$BUILD/duet" bench -m "$MODEL" -p 0 -n "$N" -r "$REPS" -t "$THREADS" --no-ceilings 2>/dev/null |
		awk -F'|' '$2 ~ /tg/ {print $3 + 0}')
	l=$("$LLAMA_CPP/llama-bench" -m "$MODEL" -p 0 -n "$N" -r "$REPS" -t "$THREADS" 2>/dev/null |
		awk -F'|' '$7 ~ /tg/ {print $8 + 0}')
	r=$(awk -v d="$d" -v l="$l" 'BEGIN {printf "%.3f", d / l}')
	echo "round $i: duet $d t/s, llama.cpp $l t/s, ratio $r"
	ratios+=("$r")
done
printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR] = $1} END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "median ratio %.3f over %d rounds\n", m, NR}'
