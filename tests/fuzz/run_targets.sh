#!/bin/bash
# make fuzz: runs each libFuzzer target for SECONDS, JOBS at a time (each
# target is one process on one core, so a 2-core machine fuzzes two at
# once in the time of one), then prints each target's outcome in the order
# given: "== fuzz_T for S s", its summary lines, and the log's tail if it
# failed. Exit status 1 if any target failed.
# Usage: run_targets.sh BUILD SECONDS JOBS MODEL_SEEDS TARGET...
# (the environment passes on: DUET_FUZZ_VOCAB)
set -u
BUILD=$1
SECONDS_EACH=$2
JOBS=$3
MODEL_SEEDS=$4
shift 4

run_one() { # target
	local t=$1 seeds
	mkdir -p "$BUILD/fuzz/corpus-$t"
	seeds=$(ls -d "tests/fuzz/corpus/$t" 2>/dev/null)
	[ "$t" = model ] && seeds="$seeds $MODEL_SEEDS"
	# shellcheck disable=SC2086 # seeds: zero or more directories
	"$BUILD/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096 \
		-print_final_stats=1 -artifact_prefix="$BUILD/fuzz/crash-$t-" \
		"$BUILD/fuzz/corpus-$t" $seeds >"$BUILD/fuzz/log-$t" 2>&1
	echo $? >"$BUILD/fuzz/rc-$t"
}

running=0
for t in "$@"; do
	rm -f "$BUILD/fuzz/rc-$t"
	run_one "$t" &
	running=$((running + 1))
	if [ "$running" -ge "$JOBS" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait

failed=0
for t in "$@"; do
	echo "== fuzz_$t for $SECONDS_EACH s"
	grep -E "^(Done [0-9]+ runs|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|Test unit written)" \
		"$BUILD/fuzz/log-$t"
	if [ "$(cat "$BUILD/fuzz/rc-$t" 2>/dev/null)" != 0 ]; then
		tail -60 "$BUILD/fuzz/log-$t"
		failed=1
	fi
done
exit "$failed"
