#!/bin/bash
# The cluster benchmark (make bench-cluster): the same model and the same
# trace slices, replayed at a sweep of request rates against
#   colocated:     two colocated (decode) nodes, one core each, chunked
#                  prefill, --policy colocated
#   disaggregated: one prefill node and one decode node, one core each,
#                  --policy length-aware
# then `duet replay --compare` of the two sweeps per trace.
#
# Usage: bench_cluster.sh BUILD MODEL TRACES_DIR
# Environment (defaults in brackets):
#   TRACES    trace files in TRACES_DIR [azure_llm_2023_conv.csv azure_llm_2023_code.csv]
#   START     trace seconds skipped [600]      REQUESTS  requests per rate [40]
#   RATE      mean rate at multiplier 1, req/s [0.3]
#   SWEEP     rate multipliers [1,2,3,4,5]    LENGTH    --length-scale [0.5]
#   CHUNK     max-batch-tokens of every node (the colocated prefill chunk) [64]
#   SLO_X     SLOs as multiples of colocated's unloaded TTFT and TBT [5]
#   OUT       results [BUILD/bench-cluster]
set -eu
BUILD=$1
MODEL=$2
TRACES_DIR=$3
DUET=$BUILD/duet
TRACES=${TRACES:-azure_llm_2023_conv.csv azure_llm_2023_code.csv}
START=${START:-600}
REQUESTS=${REQUESTS:-40}
RATE=${RATE:-0.3}
SWEEP=${SWEEP:-1,2,3,4,5}
LENGTH=${LENGTH:-0.5}
CHUNK=${CHUNK:-64}
SLO_X=${SLO_X:-5}
OUT=${OUT:-$BUILD/bench-cluster}
PORT=18650
unset OPENBLAS_CORETYPE # benchmarks run with OpenBLAS's own core choice

up_pid=
stop_up() {
	if [ -n "$up_pid" ]; then
		kill -INT "$up_pid" 2>/dev/null || true
		wait "$up_pid" || true
		up_pid=
	fi
}
trap stop_up EXIT

start_up() { # name, then duet up options
	local name=$1
	shift
	local log=$OUT/$name-up.log
	"$DUET" up --model "$MODEL" --port $PORT --dir "$OUT/$name-run" \
		--node-arg=--max-batch-tokens=$CHUNK "$@" >"$log" 2>&1 &
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
	"$DUET" replay --url http://127.0.0.1:$PORT --trace "$TRACES_DIR/$trace" \
		--start "$START" --max-requests "$REQUESTS" --rate "$RATE" --sweep "$SWEEP" \
		--length-scale "$LENGTH" --out "$dir" --label "$label" "$@" || [ $? -eq 3 ]
}

mkdir -p "$OUT"
nproc_=$(nproc)
echo "machine: $nproc_ CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "model: $MODEL; chunk $CHUNK tokens; $REQUESTS requests per rate from ${START}s; lengths x$LENGTH"
for trace in $TRACES; do
	name=${trace%.*}
	echo "== $name: colocated"
	start_up colocated -P 0 -D 2 --policy colocated
	replay "$OUT/$name/colocated" colocated --slo-ttft ${SLO_X}x --slo-tbt ${SLO_X}x
	stop_up
	# The same absolute SLOs for both: colocated's unloaded figures times SLO_X.
	read -r slo_ttft slo_tbt < <(awk -F, 'NR == 2 { print $11, $12 }' "$OUT/$name/colocated/sweep.csv")
	echo "== $name: disaggregated (SLO: TTFT $slo_ttft s, TBT $slo_tbt s)"
	start_up disaggregated -P 1 -D 1 --policy length-aware
	replay "$OUT/$name/disaggregated" disaggregated --slo-ttft "$slo_ttft" --slo-tbt "$slo_tbt"
	stop_up
	echo "== $name: comparison"
	"$DUET" replay --compare "$OUT/$name/colocated" "$OUT/$name/disaggregated" --out "$OUT/$name"
done
