#!/bin/bash
# The cluster benchmark (make bench-cluster): the same model and the same
# trace slices, replayed at a sweep of request rates against
#   colocated:     two colocated (decode) nodes, one core each, chunked
#                  prefill, --policy colocated
#   disaggregated: one prefill node and one decode node, one core each,
#                  --policy length-aware
# or, with NETNS=1, each daemon on its own host (a network namespace) and
# each node host given a share of one CPU's time by a cgroup quota: a
# prefill host with more CPU time than the decode host against two equal
# colocated hosts of the same total (bench/cluster_hosts.sh);
# REPEAT times each, then per trace: `duet replay --compare` of the first
# repetition's sweeps (table and plots side by side) and summary.csv, every
# repetition's goodput and p99 TBT per rate with their spread, the ratio
# disaggregated / colocated per repetition, and whether all repetitions
# agree on the winner.
#
# Both configurations get the same SLOs (SLO_TTFT_X and SLO_TBT_X times
# colocated's unloaded TTFT and TBT, measured once per trace) and the
# same router objectives (slo-ttft-ms = the TTFT SLO, slo-tbt-ms =
# ROUTER_TBT_SHARE of the TBT SLO: the router keeps predicted steps within
# it so that a request's p99 gap stays inside the SLO), and the same
# pinning: nodes one per CPU as duet up pins them, the router and the
# load generator on AUX_CPU (disaggregated: beside the prefill node, never
# on the decode node's core; colocated: beside decode-0, as two decode
# nodes leave no other).
#
# Usage: bench_cluster.sh BUILD MODEL TRACES_DIR
# Environment (defaults in brackets):
#   TRACES    trace files in TRACES_DIR
#             [azure_llm_2023_conv.csv azure_llm_2023_code.csv mooncake_conversation.jsonl]
#   START     trace seconds skipped [600]      REQUESTS  requests per rate [40]
#   RATE      mean rate at multiplier 1, req/s [0.3]
#   SWEEP     rate multipliers [1,2,3,4,5]
#   LENGTH    --length-scale of the Azure traces [0.5]
#   MOONCAKE_LENGTH  --length-scale of Mooncake traces (prompts of 7-20k) [0.1]
#   CHUNK     max-batch-tokens of every decode node (the chunk of a prefill
#             mixed with running streams, colocated or local) [64]
#   PREFILL_CHUNK  max-batch-tokens of the prefill node: it runs no streams,
#             so its passes need not be short; longer passes run nearer the
#             sgemm ceiling (BENCHMARKS.md, 2026-12-05 seventh) [512]
#   SLO_TTFT_X  the TTFT SLO as a multiple of colocated's unloaded TTFT [5]
#   SLO_TBT_X   the TBT SLO as a multiple of colocated's unloaded TBT [3:
#             the issue's bound, no looser than 3x the unloaded step]
#   ROUTER_SLO  1: give the router the objectives above, 0: none [1]
#   ROUTER_TBT_SHARE  the router's TBT objective as a share of the SLO [0.66]
#   REPEAT    repetitions of each configuration's sweep [3]
#   AUX_CPU   CPU of the router and the load generator [0]
#   UP_TRACE  1: every daemon writes a trace (duet up --trace), kept beside
#             each run's results as OUT/TRACE/rep-R/CONFIG/*.trace.json
#             (duet trace steps holds them against a profile) [0]
#   OUT       results [BUILD/bench-cluster]
#   NETNS     1: the hosts of bench/cluster_hosts.sh (root; CPU_PREFILL,
#             CPU_DECODE, CPU_COLOCATED, CG_PERIOD_US there) [0]
set -eu
BUILD=$1
MODEL=$2
TRACES_DIR=$3
DUET=$BUILD/duet
TRACES=${TRACES:-azure_llm_2023_conv.csv azure_llm_2023_code.csv mooncake_conversation.jsonl}
START=${START:-600}
REQUESTS=${REQUESTS:-40}
RATE=${RATE:-0.3}
SWEEP=${SWEEP:-1,2,3,4,5}
LENGTH=${LENGTH:-0.5}
MOONCAKE_LENGTH=${MOONCAKE_LENGTH:-0.1}
CHUNK=${CHUNK:-64}
PREFILL_CHUNK=${PREFILL_CHUNK:-512}
SLO_TTFT_X=${SLO_TTFT_X:-5}
SLO_TBT_X=${SLO_TBT_X:-3}
ROUTER_SLO=${ROUTER_SLO:-1}
ROUTER_TBT_SHARE=${ROUTER_TBT_SHARE:-0.66}
REPEAT=${REPEAT:-3}
AUX_CPU=${AUX_CPU:-0}
UP_TRACE=${UP_TRACE:-0}
OUT=${OUT:-$BUILD/bench-cluster}
NETNS=${NETNS:-0}
PORT=18650
URL=http://127.0.0.1:$PORT
unset OPENBLAS_CORETYPE # benchmarks run with OpenBLAS's own core choice
PIN="taskset -c $AUX_CPU"

up_pid=
stop_up() {
	if [ -n "$up_pid" ]; then
		kill -INT "$up_pid" 2>/dev/null || true
		wait "$up_pid" || true
		up_pid=
	fi
}

start_up() { # name, then duet up options
	local name=$1
	shift
	local log=$OUT/$name-up.log
	if [ "$UP_TRACE" = 1 ]; then set -- "$@" --trace; fi
	# (emptied here, not only by the redirection below: that happens in
	# the child, after the wait loop may have read the last run's log and
	# its "serving" line)
	: >"$log"
	# (--kv-prefault: no step pays for zeroing fresh KV pages, as on a
	# dedicated node.) duet up and the router inherit AUX_CPU; duet up pins each node to
	# its own CPU of the machine's (not of its own AUX_CPU affinity: then
	# every node ran on AUX_CPU and the other CPUs idled).
	$PIN "$DUET" up --model "$MODEL" --port $PORT --dir "$OUT/$name-run" \
		--node-cpus "0-$(($(nproc) - 1))" --kv-prefault \
		--decode-arg=--max-batch-tokens=$CHUNK --prefill-arg=--max-batch-tokens=$PREFILL_CHUNK \
		"$@" >"$log" 2>&1 &
	up_pid=$!
	for _ in $(seq 1 600); do
		grep -q '^duet up: serving' "$log" && return 0
		sleep 0.1
	done
	cat "$log"
	return 1
}

replay() { # out dir, label, then extra options
	local dir=$1 label=$2
	shift 2
	# exit status 3 (some requests failed) is a result at overload, not an error
	$PIN "$DUET" replay --url "$URL" --trace "$TRACES_DIR/$trace" \
		--start "$START" --max-requests "$REQUESTS" --rate "$RATE" --sweep "$SWEEP" \
		--length-scale "$length" --out "$dir" --label "$label" -q "$@" || [ $? -eq 3 ]
}

# The router's objectives in ms (0 0: none) from the TTFT and TBT SLO in
# seconds.
router_objectives() {
	awk -v t="$1" -v b="$2" -v s="$ROUTER_TBT_SHARE" -v on="$ROUTER_SLO" 'BEGIN {
		if (on == 1) printf "%d %d\n", t * 1000 + 0.5, b * 1000 * s + 0.5
		else print "0 0" }'
}

router_args() { # the router's objectives in ms
	[ "$1" -gt 0 ] || [ "$2" -gt 0 ] || return 0
	echo "--router-arg=--slo-ttft-ms=$1 --router-arg=--slo-tbt-ms=$2"
}

# CONFIG(colocated|disaggregated) OBJ_TTFT_MS OBJ_TBT_MS: the cluster up
# and serving at URL, with the router's objectives (0 0: none).
start_cluster() {
	if [ "$NETNS" = 1 ]; then
		hosts_start "$@"
		return
	fi
	# shellcheck disable=SC2046 # router_args is a list of words
	if [ "$1" = colocated ]; then
		start_up colocated -P 0 -D 2 --policy colocated $(router_args "$2" "$3")
	else
		start_up disaggregated -P 1 -D 1 --policy length-aware $(router_args "$2" "$3")
	fi
}

stop_cluster() {
	if [ "$NETNS" = 1 ]; then hosts_stop; else stop_up; fi
}

if [ "$NETNS" = 1 ]; then
	# shellcheck source=bench/cluster_hosts.sh
	. "$(dirname "$0")/cluster_hosts.sh"
	trap hosts_cleanup EXIT
else
	trap stop_up EXIT
fi

# Every row of every repetition's sweep.csv of one trace dir, as
# cfg,rep,mult,offered,rps,goodput,attain,ttft99,tbt99,ttft50,tbt50,failed,slo_ttft,slo_tbt
sweep_rows() {
	local cfg r
	for cfg in colocated disaggregated; do
		for r in $(seq 1 "$REPEAT"); do
			awk -F, -v c=$cfg -v r="$r" 'NR > 1 { print c "," r "," $0 }' "$1/rep-$r/$cfg/sweep.csv"
		done
	done
}

# summary.csv of one trace from every repetition's sweep.csv: per rate and
# configuration, goodput and attainment (mean, min, max) and p99 TBT mean;
# per repetition the goodput ratio; then the verdicts on stdout.
summarize() { # trace dir
	local d=$1
	sweep_rows "$d" | awk -F, -v reps="$REPEAT" '
	# cfg,rep,mult,offered,rps,goodput,attain,ttft99,tbt99,ttft50,tbt50,failed,slo_ttft,slo_tbt
	{
		k = $3; g[$1, k, $2] = $6; a[$1, k, $2] = $7; t[$1, k, $2] = $9
		off[$1, k] += $4 / reps
		if (!(k in seen)) { seen[k] = 1; ks[++n] = k }
	}
	END {
		print "rate_multiplier,config,offered_rps,goodput_mean,goodput_min,goodput_max,attainment_mean,tbt_p99_mean_s,goodput_ratio_min,goodput_ratio_max,same_winner"
		for (i = 2; i <= n; i++) # by multiplier (a handful: insertion sort)
			for (j = i; j > 1 && ks[j - 1] + 0 > ks[j] + 0; j--) { x = ks[j]; ks[j] = ks[j - 1]; ks[j - 1] = x }
		for (i = 1; i <= n; i++) {
			k = ks[i]
			rmin = 1e9; rmax = 0; wins = 0
			for (r = 1; r <= reps; r++) {
				ratio = g["colocated", k, r] > 0 ? g["disaggregated", k, r] / g["colocated", k, r] : 1e9
				if (ratio < rmin) rmin = ratio
				if (ratio > rmax) rmax = ratio
				wins += g["disaggregated", k, r] > g["colocated", k, r]
			}
			same = wins == reps ? "disaggregated" : wins == 0 ? "colocated" : "no"
			for (c = 0; c < 2; c++) {
				cfg = c ? "disaggregated" : "colocated"
				s = 0; mn = 1e9; mx = 0; at = 0; tb = 0
				for (r = 1; r <= reps; r++) {
					v = g[cfg, k, r]; s += v; at += a[cfg, k, r]; tb += t[cfg, k, r]
					if (v < mn) mn = v
					if (v > mx) mx = v
				}
				printf "%s,%s,%.3f,%.4f,%.4f,%.4f,%.3f,%.4f,%.3f,%.3f,%s\n", k, cfg, off[cfg, k],
					s / reps, mn, mx, at / reps, tb / reps, rmin, rmax, same
			}
		}
	}' >"$d/summary.csv"
	if command -v column >/dev/null; then column -s, -t "$d/summary.csv"; else cat "$d/summary.csv"; fi
	# The issue's figure: at the first rate where colocated meets the SLOs
	# for less than 90% of requests, goodput and p99 TBT against colocated.
	awk -F, 'NR > 1 { if ($2 == "colocated") { c[$1] = $0 } else { d[$1] = $0 } ; ks[++n] = $1 }
	END {
		for (i = 1; i <= n; i += 2) {
			split(c[ks[i]], cc, ","); split(d[ks[i]], dd, ",")
			if (cc[7] < 0.9) {
				printf "at x%s (%.3f req/s), where colocated meets both SLOs for %.0f%%: goodput %.2fx colocated (per repetition %.2f-%.2f, winner %s), p99 TBT %.2fx\n",
					ks[i], cc[3], 100 * cc[7], dd[4] / (cc[4] > 0 ? cc[4] : 1e-9), dd[9], dd[10], dd[11], dd[8] / cc[8]
				exit
			}
		}
		print "colocated met both SLOs for >= 90% of requests at every rate: raise SWEEP"
	}' "$d/summary.csv"
	# DistServe's goodput: the highest rate at which >= 90% of requests
	# meet both SLOs (and at every lower rate of the sweep), per
	# repetition, and its ratio disaggregated / colocated.
	sweep_rows "$d" | sort -t, -k2,2n -k1,1 -k4,4g | awk -F, -v reps="$REPEAT" '
	# (by repetition, configuration and offered rate)
	{ k = $2 SUBSEP $1; if (!(k in broke)) broke[k] = 0
	  if (!broke[k] && $7 >= 0.9) cap[k] = $4; else broke[k] = 1 }
	END {
		for (c = 0; c < 2; c++) {
			cfg = c ? "disaggregated" : "colocated"; s = ""
			for (r = 1; r <= reps; r++) s = s (r > 1 ? " / " : "") sprintf("%.3f", cap[r, cfg] + 0)
			printf "%s: highest rate with >= 90%% within both SLOs (DistServe goodput), per repetition: %s req/s\n", cfg, s
		}
		rmin = 1e9; rmax = 0; none = 0
		for (r = 1; r <= reps; r++) {
			if (cap[r, "colocated"] <= 0) { none++; continue }
			x = cap[r, "disaggregated"] / cap[r, "colocated"]
			if (x < rmin) rmin = x
			if (x > rmax) rmax = x
		}
		if (none < reps)
			printf "DistServe goodput disaggregated / colocated per repetition: %.2f-%.2f", rmin, rmax
		if (none)
			printf "%s%d repetition(s) with colocated below 90%% at every rate", none < reps ? "; " : "", none
		print ""
	}'
}

mkdir -p "$OUT"
nproc_=$(nproc)
echo "machine: $nproc_ CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "model: $MODEL; chunk $CHUNK tokens (prefill node $PREFILL_CHUNK); $REQUESTS requests per rate from ${START}s; $REPEAT repetitions"
if [ "$NETNS" = 1 ]; then
	hosts_init
else
	echo "pinning: nodes one per CPU (duet up); router and load generator on CPU $AUX_CPU"
fi
for trace in $TRACES; do
	name=${trace%.*}
	case $trace in
	mooncake*) length=$MOONCAKE_LENGTH ;;
	*) length=$LENGTH ;;
	esac
	slo_ttft='' slo_tbt='' obj_ttft='' obj_tbt=''
	for r in $(seq 1 "$REPEAT"); do
		if [ -z "$slo_ttft" ]; then
			# The SLOs: colocated's unloaded figures times SLO_*_X, from a
			# first sweep whose router has no objectives yet (it is
			# measured again below with them).
			echo "== $name: measuring the SLOs (colocated, unloaded probe)"
			start_cluster colocated 0 0
			# (12 requests: Mooncake's arrive six at a time, and --rate
			# needs a slice spread in time)
			replay "$OUT/$name/slo-probe" colocated --sweep 1 --max-requests 12 \
				--slo-ttft "${SLO_TTFT_X}x" --slo-tbt "${SLO_TBT_X}x" >/dev/null 2>&1
			stop_cluster
			read -r slo_ttft slo_tbt < <(awk -F, 'NR == 2 { print $11, $12 }' \
				"$OUT/$name/slo-probe/sweep.csv")
			read -r obj_ttft obj_tbt < <(router_objectives "$slo_ttft" "$slo_tbt")
			# for whoever simulates these runs (validate_plan.sh)
			echo "$slo_ttft $slo_tbt $obj_ttft $obj_tbt" >"$OUT/$name/slos"
			echo "   SLOs: TTFT $slo_ttft s, TBT $slo_tbt s; router objectives: TTFT $obj_ttft ms, TBT $obj_tbt ms"
		fi
		for cfg in colocated disaggregated; do
			echo "== $name: $cfg, repetition $r of $REPEAT"
			start_cluster $cfg "$obj_ttft" "$obj_tbt"
			replay "$OUT/$name/rep-$r/$cfg" $cfg --slo-ttft "$slo_ttft" --slo-tbt "$slo_tbt" >/dev/null
			stop_cluster
			if [ "$UP_TRACE" = 1 ]; then
				mv "$OUT/$cfg-run/"*.trace.json "$OUT/$name/rep-$r/$cfg/"
			fi
		done
	done
	echo "== $name: comparison (repetition 1) and every repetition"
	"$DUET" replay --compare "$OUT/$name/rep-1/colocated" "$OUT/$name/rep-1/disaggregated" \
		--out "$OUT/$name" 2>/dev/null
	summarize "$OUT/$name"
done
