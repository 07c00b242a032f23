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
# the profiles' plain step and chunk are printed too). The nodes trace
# their runs, and `duet trace steps` holds each node's passes during each
# rate's replay against the profile taken before: a third simulation, each
# rate with the profiles re-timed by its ratios ("re-timed"), takes the
# step times the nodes had in the runs and so tells the simulator's
# queueing and placement apart from the host's speed.
#
#   colocated:     two decode nodes, --policy colocated; simulated with the
#                  huge-page profile (a decode node's weights)
#   disaggregated: one prefill node and one decode node, --policy
#                  length-aware; both keep their weights in huge pages (the
#                  daemons' default), so one profile stands for either
#
# The two nodes of either configuration share this machine's memory, and
# each slows the other while it reads weights or KV (NEIGHBOUR): every
# profile is taken alone and again beside a decode loop on the other CPU
# (its beside model, plan/profile.h), and the simulator runs each pass
# between the two by what its neighbour is doing at the time
# (--machine-nodes 2).
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
#   CHUNK     max-batch-tokens of every node, prefill nodes too (the profile
#             has one chunk) [64]
#   REPEAT    measured repetitions of each configuration's sweep [1]; with
#             more, the table shows their mean and range and counts the
#             figures whose repetitions differ by more than the tolerance
#   PROFILE_CPU  CPU the profiles are measured on [the last one]
#   NEIGHBOUR 1: each profile is measured alone and beside a decode loop on
#             the other CPU, and the nodes simulated as sharing one machine;
#             0: alone only, every node its own machine [1]
#   TOLERANCE relative difference counted as agreeing [0.15]
#   OUT       results [BUILD/validate-plan]
#   RESIMULATE  1: measure nothing, simulate again against the profiles and
#             runs already in OUT (after a change to the simulator) [0]
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
REPEAT=${REPEAT:-1}
PROFILE_CPU=${PROFILE_CPU:-$(($(nproc) - 1))}
NEIGHBOUR=${NEIGHBOUR:-1}
NEIGHBOUR_CPU=$((PROFILE_CPU == 0 ? 1 : 0))
TOLERANCE=${TOLERANCE:-0.15}
OUT=${OUT:-$BUILD/validate-plan}
unset OPENBLAS_CORETYPE
name=${TRACE%.*}
mkdir -p "$OUT"

# Two nodes on the two CPUs of one machine share its memory system: on
# this machine a decode loop beside another ran at 0.59-0.73x its speed
# alone, beside a prefill loop at 0.95x (BENCHMARKS.md, 2026-12-06 second),
# though only in episodes of the host's (2026-12-06 eighth).
# The neighbour, a decode loop of one sequence (the hungriest for memory),
# runs until the profile is taken.
neighbour_start() {
	taskset -c "$NEIGHBOUR_CPU" bash -c 'while :; do "$@" >/dev/null 2>&1 || exit; done' \
		neighbour "$DUET" bench -m "$MODEL" -t 1 -r 1000 -p 0 -n 256 &
	NEIGHBOUR_PID=$!
	sleep 2
}
neighbour_stop() {
	kill "$NEIGHBOUR_PID" 2>/dev/null || true
	pkill -f "$DUET bench -m $MODEL -t 1 -r 1000" 2>/dev/null || true
	wait "$NEIGHBOUR_PID" 2>/dev/null || true
}
profile() { # name, alone | beside, then duet bench options
	local p=$1 nb=$2 rc=0
	shift 2
	echo "   $p ($OUT/$p.json)$([ "$nb" = beside ] && echo ", beside a decode loop on CPU $NEIGHBOUR_CPU")"
	[ "$nb" = beside ] && neighbour_start
	taskset -c "$PROFILE_CPU" "$DUET" bench -m "$MODEL" -t 1 --chunk "$CHUNK" -r 3 \
		--profile "$OUT/$p.json" "$@" >"$OUT/$p.log" 2>&1 || rc=1
	[ "$nb" = beside ] && neighbour_stop
	[ $rc = 0 ] || { cat "$OUT/$p.log"; exit 1; }
}
# A profile taken alone (name-alone) and, with NEIGHBOUR, beside a decode
# loop (name-beside): name.json is the first with the second's step model
# as its beside model.
profile_pair() { # name, then duet bench options
	local p=$1
	shift
	profile "$p-alone" alone "$@"
	if [ "$NEIGHBOUR" = 1 ]; then
		profile "$p-beside" beside "$@"
		jq --slurpfile b "$OUT/$p-beside.json" '.beside = $b[0].step' "$OUT/$p-alone.json" >"$OUT/$p.json"
	else
		cp "$OUT/$p-alone.json" "$OUT/$p.json"
	fi
}
profiles() { # before | after
	profile_pair "$1-hugepages"
}
MACHINE_NODES=$([ "$NEIGHBOUR" = 1 ] && echo 2 || echo 1)

# A profile's plain step of one sequence at 512 positions, ms (its fitted
# model: base + per sequence + 0.512 x per 1k positions).
plain_step() {
	jq -r '.step | .base_ms + .seq_ms + 0.512 * .kctx_ms' "$OUT/$1.json"
}

# A profile's prefill pass of a 64-token chunk after 192 prompt tokens, ms
# (12288 chunk pairs).
chunk_pass() {
	jq -r '.step | .base_ms + .seq_ms + 64 * .token_ms + 0.25 * .kctx_ms + 12288 / 1048576 * .kpair_ms' \
		"$OUT/$1.json"
}

if [ "${RESIMULATE:-0}" = 1 ]; then
	echo "== simulating again the runs in $OUT"
else
	echo "== profiles before the runs, on CPU $PROFILE_CPU"
	profiles before

	echo "== the measured runs (bench/bench_cluster.sh, $REPEAT repetition(s))"
	# (LENGTH is this script's value in both: the trace's kind chose it)
	# shellcheck disable=SC2097,SC2098
	TRACES=$TRACE START=$START REQUESTS=$REQUESTS RATE=$RATE SWEEP=$SWEEP LENGTH=$LENGTH \
		MOONCAKE_LENGTH=$LENGTH CHUNK=$CHUNK PREFILL_CHUNK=$CHUNK REPEAT=$REPEAT OUT=$OUT/measured UP_TRACE=1 \
		bench/bench_cluster.sh "$BUILD" "$MODEL" "$TRACES_DIR" | sed 's/^/   /'

	echo "== profiles after the runs"
	profiles after
fi

# the SLOs and router objectives the measured runs had (bench_cluster.sh)
read -r slo_ttft slo_tbt obj_ttft obj_tbt <"$OUT/measured/$name/slos"
echo "== simulating (SLOs $slo_ttft s / $slo_tbt s, router objectives $obj_ttft / $obj_tbt ms)"
simulate() { # profiles (before, after, retimed-RATE), configuration, then duet plan options
	local when=$1 cfg=$2 sweep=$SWEEP
	shift 2
	case $when in retimed-*) sweep=${when#retimed-} ;; esac
	"$DUET" plan simulate --trace "$TRACES_DIR/$TRACE" --start "$START" --max-requests "$REQUESTS" \
		--rate "$RATE" --sweep "$sweep" --length-scale "$LENGTH" \
		--router-slo-ttft-ms "$obj_ttft" --router-slo-tbt-ms "$obj_tbt" \
		--slo-ttft "$slo_ttft" --slo-tbt "$slo_tbt" --no-plots \
		--out "$OUT/simulated-$when/$cfg" --label "$cfg (simulated, profiles $when)" "$@" \
		>"$OUT/simulated-$when-$cfg.log" 2>&1 || { cat "$OUT/simulated-$when-$cfg.log"; exit 1; }
}
# measured / modelled time of the passes of the nodes named prefix* in a
# configuration's traces, every repetition's, during its replay at rate
# multiplier k (the wall-clock window its summary.json gives), against a
# profile; then, after a space, the spread of the per-pass ratio (each
# quantile the mean of the nodes', comma-separated, for plan scale)
step_ratio() { # cfg, node prefix, profile, k
	local d w
	for d in "$OUT/measured/$name"/rep-*/"$1"; do
		w=$(jq -r '"\(.start_unix_us) \(.start_unix_us + .duration_s * 1e6 | floor)"' \
			"$d/rate-$4/summary.json")
		"$DUET" trace steps --json --profile "$OUT/$3.json" --from "${w% *}" --to "${w#* }" \
			"$d"/*.trace.json
	done | jq -rs --arg p "$2" '[.[] | select(.node | startswith($p))] |
		"\((map(.measured_ms) | add) / (map(.model_ms) | add)) \(
		[.[].spread] | transpose | map(add / length | tostring) | join(","))"'
}
simulate_both() { # profiles (as simulate), colocated's, the decode node's, the prefill node's, nodes a machine
	simulate "$1" colocated --profile "$OUT/$2.json" --prefill 0 --decode 2 --policy colocated \
		--machine-nodes "$5"
	simulate "$1" disaggregated --prefill-profile "$OUT/$4.json" \
		--decode-profile "$OUT/$3.json" --prefill 1 --decode 1 --policy length-aware \
		--machine-nodes "$5"
}
# A profile scaled to the nodes' measured passes, which had their
# neighbours' effect in them: without a beside model, simulated alone.
retime() { # profile, "ratio spread" (step_ratio's), name of the re-timed one
	local f
	f=$(awk -v r="${2% *}" 'BEGIN { print 1 / r }')
	"$DUET" plan scale "$OUT/$1.json" "$OUT/$3.json" --compute "$f" --bandwidth "$f" \
		--step-spread "${2#* }" >/dev/null
	jq 'del(.beside)' "$OUT/$3.json" >"$OUT/$3.json.tmp" && mv "$OUT/$3.json.tmp" "$OUT/$3.json"
}
for when in before after; do
	simulate_both $when $when-hugepages $when-hugepages $when-hugepages "$MACHINE_NODES"
done
# Re-timed: each rate simulated alone with the profiles scaled by what
# the nodes' passes took during that rate's replay, the rows joined into
# one sweep.csv per configuration.
: >"$OUT/retimed.txt"
for k in ${SWEEP//,/ }; do
	r_col=$(step_ratio colocated decode before-hugepages "$k")
	r_dis=$(step_ratio disaggregated decode before-hugepages "$k")
	r_pre=$(step_ratio disaggregated prefill before-hugepages "$k")
	printf "== x%s: the nodes' passes against the profiles taken before: colocated decode x%.3f, disaggregated decode x%.3f, prefill x%.3f\n" \
		"$k" "${r_col% *}" "${r_dis% *}" "${r_pre% *}" | tee -a "$OUT/retimed.txt"
	retime before-hugepages "$r_col" "retimed-$k-colocated"
	retime before-hugepages "$r_dis" "retimed-$k-decode"
	retime before-hugepages "$r_pre" "retimed-$k-prefill"
	simulate_both "retimed-$k" "retimed-$k-colocated" "retimed-$k-decode" "retimed-$k-prefill" 1
done
for cfg in colocated disaggregated; do
	mkdir -p "$OUT/simulated-retimed/$cfg"
	files=()
	for k in ${SWEEP//,/ }; do files+=("$OUT/simulated-retimed-$k/$cfg/sweep.csv"); done
	awk 'NR == 1 || FNR > 1' "${files[@]}" >"$OUT/simulated-retimed/$cfg/sweep.csv" # one header
done

# sweep.csv: rate_multiplier,offered_rps,req_per_s,goodput_rps,slo_attainment,
# ttft_p99_s,tbt_p99_s,ttft_p50_s,tbt_p50_s,failed,slo_ttft_s,slo_tbt_s.
# One line per configuration and rate: cfg, multiplier, offered rate, then
# per metric the repetitions' mean, min and max, and the simulations with
# the profiles before and after the runs.
for cfg in colocated disaggregated; do
	files=()
	for r in $(seq 1 "$REPEAT"); do files+=("$OUT/measured/$name/rep-$r/$cfg/sweep.csv"); done
	awk -F, -v cfg=$cfg -v reps="$REPEAT" '
	BEGIN { split("4,5,8,6,9,7", col, ",") } # goodput, attainment, TTFT p50, p99, TBT p50, p99
	FNR == 1 { f++; next }
	{
		k = $1
		if (!(k in off)) { off[k] = $2; order[++n] = k }
		have[k, f] = 1
		for (i = 1; i <= 6; i++) v[k, f, i] = $(col[i])
	}
	END {
		for (j = 1; j <= n; j++) {
			k = order[j]
			for (g = 1; g <= reps + 3; g++) if (!have[k, g]) break
			if (g <= reps + 3) continue
			line = cfg "," k "," off[k]
			for (i = 1; i <= 6; i++) {
				s = 0; lo = 1e30; hi = -1e30
				for (g = 1; g <= reps; g++) {
					x = v[k, g, i]; s += x
					if (x < lo) lo = x
					if (x > hi) hi = x
				}
				line = line "," s / reps "," lo "," hi "," v[k, reps + 1, i] "," v[k, reps + 2, i] \
					"," v[k, reps + 3, i]
			}
			print line
		}
	}' "${files[@]}" "$OUT/simulated-before/$cfg/sweep.csv" "$OUT/simulated-after/$cfg/sweep.csv" \
		"$OUT/simulated-retimed/$cfg/sweep.csv"
done | awk -F, -v tol="$TOLERANCE" -v reps="$REPEAT" -v csv="$OUT/validation.csv" '
	function diff(a, b) { return a > 0 ? (b - a) / a : (b > 0 ? 1 : 0) }
	function out(d) { return d > tol || d < -tol }
	# The measured mean m (repetitions lo..hi) against the simulation with
	# the profiles before the runs (b): the verdict. The simulation with
	# those after (c), and the repetitions'"'"' own range, say how much of a
	# difference the host can account for: "band" counts a figure whose
	# two simulations reach the repetitions'"'"' range widened by the
	# tolerance; "spread" one whose repetitions differ by more than it.
	# The re-timed simulation (r) is counted on its own.
	function cell(m, lo, hi, b, c, r, unit, scale, fmt,   d, slo, shi, s) {
		d = diff(m, b)
		total++
		if (!out(d)) within++
		if (!out(diff(m, r))) within_r++
		slo = b < c ? b : c
		shi = b < c ? c : b
		if (!out(d) || (shi >= lo * (1 - tol) && slo <= hi * (1 + tol))) band++
		if (reps > 1 && (out(diff(m, hi)) || out(diff(m, lo)))) spread++
		s = sprintf(fmt, m * scale)
		if (reps > 1)
			s = s sprintf(" [" fmt "-" fmt "]", lo * scale, hi * scale)
		s = s sprintf(" / " fmt "%s (%+.0f%%; after " fmt "; re-timed " fmt ")", b * scale, unit,
			      100 * d, c * scale, r * scale)
		return out(d) ? "**" s "**" : s
	}
	BEGIN {
		print "config,rate_multiplier,offered_rps,metric,measured_mean,measured_min,measured_max,simulated,difference,simulated_after,simulated_retimed" > csv
		print "| configuration | rate | goodput | within SLO | TTFT p50 | TTFT p99 | TBT p50 | TBT p99 |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|"
		split("goodput_rps,slo_attainment,ttft_p50_s,ttft_p99_s,tbt_p50_s,tbt_p99_s", names, ",")
		split(",%, s, s, ms, ms", units, ",")
		split("1,100,1,1,1000,1000", scales, ",")
		split("%.3f,%.0f,%.2f,%.2f,%.0f,%.0f", fmts, ",")
	}
	{
		row = sprintf("| %s | %.2f |", $1, $3)
		for (i = 1; i <= 6; i++) {
			a = 4 + 6 * (i - 1) # mean, min, max, before, after, re-timed
			printf "%s,%s,%s,%s,%s,%s,%s,%s,%.4f,%s,%s\n", $1, $2, $3, names[i], $a, $(a + 1),
				$(a + 2), $(a + 3), diff($a, $(a + 3)), $(a + 4), $(a + 5) > csv
			row = row " " cell($a, $(a + 1), $(a + 2), $(a + 3), $(a + 4), $(a + 5), units[i],
					   scales[i], fmts[i]) " |"
		}
		print row
	}
	END {
		printf "\n%d of %d figures within %.0f%% of the simulation with the profiles taken before the runs", within, total, 100 * tol
		printf " (measured%s / simulated, difference relative to measured; in brackets the simulations with the profiles taken after, and re-timed to the nodes'"'"' measured passes);",
			(reps > 1 ? " mean [range] of " reps " repetitions" : "")
		printf " %d of %d where either simulation is within %.0f%% of the measured range", band, total, 100 * tol
		if (reps > 1)
			printf "; the repetitions themselves differ from their mean by more than %.0f%% in %d of %d", 100 * tol, spread, total
		printf "; %d of %d within %.0f%% of the re-timed simulation.\n", within_r, total, 100 * tol
	}' | tee "$OUT/validation.md"
b0=$(plain_step before-hugepages) b1=$(plain_step after-hugepages)
c0=$(chunk_pass before-hugepages) c1=$(chunk_pass after-hugepages)
awk -v a="$b0" -v b="$b1" -v c="$c0" -v d="$c1" 'BEGIN {
	printf "profile drift over the runs: plain step at 512 positions %.1f ms before, %.1f ms after (%+.0f%%);", a, b, 100 * (b - a) / a
	printf " prefill node, a 64-token chunk after 192 %.1f ms before, %.1f ms after (%+.0f%%)\n", c, d, 100 * (d - c) / c }' |
	tee -a "$OUT/validation.md"
