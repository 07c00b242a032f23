#!/bin/bash
# Runs test programs again and again while stress-ng keeps every CPU busy:
# tests must hold on a slower (or busier) machine, not only on this one.
# Usage: tests/stress.sh RUNS TEST_BINARY...   (make test-stress)
# Prints one line per run and a last line "N runs, N failures".
set -u
cd "$(dirname "$0")/.."
runs=${1:?runs}
shift
command -v stress-ng >/dev/null || { echo "stress-ng is not installed (make deps)"; exit 2; }
log=$(mktemp -d)
stress-ng --cpu "$(nproc)" --timeout 0 --quiet &
hog=$!
trap 'kill $hog 2>/dev/null; wait $hog 2>/dev/null' EXIT
total=0
failures=0
for i in $(seq 1 "$runs"); do
	for t in "$@"; do
		total=$((total + 1))
		start=$SECONDS
		if "$t" >"$log/out" 2>&1; then
			echo "run $i $(basename "$t"): ok ($((SECONDS - start)) s)"
		else
			failures=$((failures + 1))
			echo "run $i $(basename "$t"): FAILED ($((SECONDS - start)) s)"
			grep -E "^\[  (FAILED|ERROR) \]|FAIL|Assert|error" "$log/out" | head -20 | sed 's/^/    /'
			cp "$log/out" "$log/failed-$i-$(basename "$t").log"
		fi
	done
done
echo "$total runs, $failures failures (logs of failures in $log)"
[ "$failures" -eq 0 ]
