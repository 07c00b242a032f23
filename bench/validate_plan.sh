#!/bin/bash
# The simulator against the cluster it simulates (make validate-plan):
# the two configurations of make bench-cluster measured on this machine,
# then simulated by `duet plan simulate` with node profiles measured here
# in the same minutes, and every figure side by side with its difference.
#
# On a shared host whose speed drifts within minutes, a profile taken an
# hour before the runs validates nothing (BENCHMARKS.md, 2026-12-04), so
# the profiles are measured right before the runs and again right after;
# the verdict is against the simulation with the profiles taken before,
# and a second simulation with those taken after shows how much of a
# difference the host's drift over the runs can account for (the drift of
# the profiles' plain step is printed too).
#
#   colocated:     two decode nodes, --policy colocated; simulated with the
#                  huge-page profile (a decode node's weights)
#   disaggregated: one prefill node (its default: mapped weights, so its
#                  profile is measured with --weights mmap) and one decode
#                  node, --policy length-aware
#
# Same slice, rates, SLOs (from bench-cluster's unloaded probe) and router
# objectives for both. Writes OUT/validation.csv and OUT/validation.md (the
# table for BENCHMARKS.md: measured / simulated (difference; the
# simulation with the later profiles), outside the tolerance in bold) and
# prints the table and how many figures are within it.
#
# Usage: validate_plan.sh BUILD MODEL TRACES_DIR
# Environment (defaults in brackets):
#   TRACE     trace file in TRACES_DIR [azure_llm_2023_conv.csv]
#   START     trace seconds skipped [600]     REQUESTS  requests per rate [30]
#   RATE      rate at multiplier 1, req/s [0.3]   SWEEP  multipliers [1,2,3]
#   LENGTH    --length-scale [0.5, Mooncake traces 0.1]
#   CHUNK     max-batch-tokens of every node [64]
#   PROFILE_CPU  CPU the profiles are measured on [the last one]
#   TOLERANCE relative difference counted as agreeing [0.15]
#   OUT       results [BUILD/validate-plan]
set -eu
BUILD=$1
MODEL=$2
TRACES_DIR=$3
DUET=$BUILD/duet
TRACE=${TRACE:-azure_llm_2023_conv.csv}
START=${START:-600}
REQUESTS=${REQUESTS:-30}
RATE=${RATE:-0.3}
SWEEP=${SWEEP:-1,2,3}
case $TRACE in
mooncake*) LENGTH=${LENGTH:-0.1} ;;
*) LENGTH=${LENGTH:-0.5} ;;
esac
CHUNK=${CHUNK:-64}
PROFILE_CPU=${PROFILE_CPU:-$(($(nproc) - 1))}
TOLERANCE=${TOLERANCE:-0.15}
OUT=${OUT:-$BUILD/validate-plan}
ROUTER_TBT_SHARE=${ROUTER_TBT_SHARE:-0.66} # as bench_cluster.sh
unset OPENBLAS_CORETYPE
name=${TRACE%.*}
mkdir -p "$OUT"

profile() { # name, then duet bench options
	local p=$1
	shift
	echo "   $p ($OUT/$p.json)"
	taskset -c "$PROFILE_CPU" "$DUET" bench -m "$MODEL" -t 1 --chunk "$CHUNK" -r 3 \
		--profile "$OUT/$p.json" "$@" >"$OUT/$p.log" 2>&1 || { cat "$OUT/$p.log"; exit 1; }
}

# A profile's plain step of one sequence at 512 positions, ms (its fitted
# model: base + per sequence + 0.512 x per 1k positions).
plain_step() {
	jq -r '.step | .base_ms + .seq_ms + 0.512 * .kctx_ms' "$OUT/$1.json"
}

echo "== profiles before the runs, on CPU $PROFILE_CPU"
profile before-hugepages
profile before-mmap --weights mmap

echo "== the measured runs (bench/bench_cluster.sh, one repetition)"
TRACES=$TRACE START=$START REQUESTS=$REQUESTS RATE=$RATE SWEEP=$SWEEP LENGTH=$LENGTH \
	MOONCAKE_LENGTH=$LENGTH CHUNK=$CHUNK REPEAT=1 OUT=$OUT/measured \
	bench/bench_cluster.sh "$BUILD" "$MODEL" "$TRACES_DIR" | sed 's/^/   /'

echo "== profiles after the runs"
profile after-hugepages
profile after-mmap --weights mmap

read -r slo_ttft slo_tbt < <(awk -F, 'NR == 2 { print $11, $12 }' "$OUT/measured/$name/slo-probe/sweep.csv")
read -r obj_ttft obj_tbt < <(awk -v t="$slo_ttft" -v b="$slo_tbt" -v s="$ROUTER_TBT_SHARE" \
	'BEGIN { printf "%d %d\n", t * 1000 + 0.5, b * 1000 * s + 0.5 }')
echo "== simulating (SLOs $slo_ttft s / $slo_tbt s, router objectives $obj_ttft / $obj_tbt ms)"
simulate() { # profiles (before or after), configuration, then duet plan options
	local when=$1 cfg=$2
	shift 2
	"$DUET" plan simulate --trace "$TRACES_DIR/$TRACE" --start "$START" --max-requests "$REQUESTS" \
		--rate "$RATE" --sweep "$SWEEP" --length-scale "$LENGTH" \
		--router-slo-ttft-ms "$obj_ttft" --router-slo-tbt-ms "$obj_tbt" \
		--slo-ttft "$slo_ttft" --slo-tbt "$slo_tbt" --no-plots \
		--out "$OUT/simulated-$when/$cfg" --label "$cfg (simulated, profiles $when)" "$@" \
		>"$OUT/simulated-$when-$cfg.log" 2>&1 || { cat "$OUT/simulated-$when-$cfg.log"; exit 1; }
}
for when in before after; do
	simulate $when colocated --profile "$OUT/$when-hugepages.json" --prefill 0 --decode 2 \
		--policy colocated
	simulate $when disaggregated --prefill-profile "$OUT/$when-mmap.json" \
		--decode-profile "$OUT/$when-hugepages.json" --prefill 1 --decode 1 --policy length-aware
done

# sweep.csv: rate_multiplier,offered_rps,req_per_s,goodput_rps,slo_attainment,
# ttft_p99_s,tbt_p99_s,ttft_p50_s,tbt_p50_s,failed,slo_ttft_s,slo_tbt_s.
# One line per configuration and rate: measured, then simulated with the
# profiles before the runs, then with those after (12 columns each).
for cfg in colocated disaggregated; do
	awk -F, -v cfg=$cfg 'FNR == 1 { f++; next }
		f == 1 { m[$1] = $0; next }
		f == 2 { b[$1] = $0; next }
		($1 in m) && ($1 in b) { print cfg "," m[$1] "," b[$1] "," $0 }' \
		"$OUT/measured/$name/rep-1/$cfg/sweep.csv" "$OUT/simulated-before/$cfg/sweep.csv" \
		"$OUT/simulated-after/$cfg/sweep.csv"
done | awk -F, -v tol="$TOLERANCE" -v csv="$OUT/validation.csv" '
	function diff(a, b) { return a > 0 ? (b - a) / a : (b > 0 ? 1 : 0) }
	function out(d) { return d > tol || d < -tol }
	# measured a, simulated with the profiles before (b) and after (c):
	# the difference with b is the verdict; the band [b, c] says how much
	# of it the host moving during the runs can account for
	function cell(a, b, c, unit, scale, fmt,   d, lo, hi, s) {
		d = diff(a, b)
		total++
		if (!out(d)) within++
		lo = b < c ? b : c
		hi = b < c ? c : b
		if (!out(d) || (a >= lo * (1 - tol) && a <= hi * (1 + tol))) band++
		s = sprintf(fmt " / " fmt "%s (%+.0f%%; after " fmt ")", a * scale, b * scale, unit, 100 * d, c * scale)
		return out(d) ? "**" s "**" : s
	}
	BEGIN {
		print "config,rate_multiplier,offered_rps,metric,measured,simulated,difference,simulated_after" > csv
		print "| configuration | rate | goodput | within SLO | TTFT p50 | TTFT p99 | TBT p50 | TBT p99 |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|"
		split("goodput_rps,slo_attainment,ttft_p50_s,ttft_p99_s,tbt_p50_s,tbt_p99_s", names, ",")
		# each metric'"'"'s column in a sweep.csv row
		split("4,5,8,6,9,7", col, ",")
	}
	{
		# measured: columns 2-13, before: 14-25, after: 26-37
		for (i = 1; i <= 6; i++) {
			k = col[i] + 1
			printf "%s,%s,%s,%s,%s,%s,%.4f,%s\n", $1, $2, $3, names[i], $k, $(k + 12),
				diff($k, $(k + 12)), $(k + 24) > csv
		}
		printf "| %s | %.2f | %s | %s | %s | %s | %s | %s |\n", $1, $3,
			cell($5, $17, $29, "", 1, "%.3f"), cell($6, $18, $30, "%", 100, "%.0f"),
			cell($9, $21, $33, " s", 1, "%.2f"), cell($7, $19, $31, " s", 1, "%.2f"),
			cell($10, $22, $34, " ms", 1000, "%.0f"), cell($8, $20, $32, " ms", 1000, "%.0f")
	}
	END {
		printf "\n%d of %d figures within %.0f%% of the simulation with the profiles taken before the runs", within, total, 100 * tol
		printf " (measured / simulated, difference relative to measured; in brackets also the simulation with the profiles taken after);"
		printf " %d of %d within %.0f%% of the range the two simulations span.\n", band, total, 100 * tol
	}' | tee "$OUT/validation.md"
b0=$(plain_step before-hugepages) b1=$(plain_step after-hugepages)
awk -v a="$b0" -v b="$b1" 'BEGIN { printf "profile drift over the runs: plain step at 512 positions %.1f ms before, %.1f ms after (%+.0f%%)\n", a, b, 100 * (b - a) / a }' |
	tee -a "$OUT/validation.md"
