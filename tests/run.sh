#!/bin/bash
# Builds and runs every test in each build directory given (build = normal,
# build-asan = ASan+UBSan), then prints one line: "N passed, N failed".
# Each cmocka case counts as one test, as does each check of cli_test.sh;
# a test program that dies before reporting counts as one failure.
set -u
cd "$(dirname "$0")/.."
pass=0
fail=0
failed_names=()
# Seconds each section took, printed slowest first at the end: the whole
# run must stay within CI's 15 minutes.
timings=()
took() {
	timings+=("$((SECONDS - $2)) $1")
}

# ASan: OpenBLAS's threads are left to the OS at exit; leaks in our code
# still show up in the programs that exercise them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# run_script NAME CMD...: a script printing "ok - " / "not ok - " per check.
run_script() {
	local name=$1 out rc p f
	shift
	echo "== $name"
	local t0=$SECONDS
	out=$(mktemp)
	"$@" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]} # before any other command resets it
	took "$name" "$t0"
	p=$(grep -c '^ok ' "$out")
	f=$(grep -c '^not ok ' "$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	pass=$((pass + p))
	fail=$((fail + f))
	[ "$f" -eq 0 ] || failed_names+=("$name")
	rm -f "$out"
}

# run_cmocka NAME CMD...: a cmocka program; each case counts.
run_cmocka() {
	local name=$1 out rc p f t0
	shift
	echo "== $name"
	t0=$SECONDS
	out=$(mktemp)
	"$@" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	took "$name" "$t0"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1 # crashed or a sanitizer stopped it
	fi
	pass=$((pass + p))
	fail=$((fail + f))
	[ "$f" -eq 0 ] || failed_names+=("$name")
	rm -f "$out"
}

for build in "$@"; do
	case "$build" in
	build-asan) san=1 ;;
	*) san=0 ;;
	esac
	echo "== building $build"
	t0=$SECONDS
	if ! make -s -j"$(nproc)" SANITIZE=$san BUILD="$build" test-bin; then
		echo "build of $build failed"
		fail=$((fail + 1))
		failed_names+=("$build: build")
		continue
	fi
	took "building $build" "$t0"
	for t in "$build"/tests/test_*; do
		[ -x "$t" ] || continue
		run_cmocka "$build/$(basename "$t")" "$t"
	done
	run_script "$build/cli_test.sh" tests/cli_test.sh "$build"
done

# The forward pass on an AVX2-only CPU (the kernel set a machine without
# AVX-512 VNNI takes), once, from the first build: every route's tokens
# and logits against the reference with that table's kernels. (The
# AVX-VNNI table gives AVX2's bits: test_kernels checks it.)
if grep -qw avx2 /proc/cpuinfo; then
	run_cmocka "$1/test_forward (DUET_KERNELS=avx2)" env DUET_KERNELS=avx2 "$1/tests/test_forward"
fi

# The parts of the code and the direction of their includes, once.
run_script layers_test.sh tests/layers_test.sh

# The OpenAI API through the official Node client, against `duet up`,
# once (from the first build).
run_script openai_test.sh tests/openai_test.sh "$1"

# Units, install and man pages, once (from the first build).
run_script units_test.sh tests/units_test.sh "$1"

# A short libFuzzer run of each target (make fuzz runs longer): one check
# per target that finished its time without a crash.
fuzz_s=${FUZZ_SECONDS:-10}
echo "== fuzz (${fuzz_s} s per target)"
flog=$(mktemp)
t0=$SECONDS
# the targets' build on every CPU, then the runs
make -s -j"$(nproc)" fuzz-bin >"$flog" 2>&1 &&
	make -s fuzz FUZZ_SECONDS="$fuzz_s" >>"$flog" 2>&1
frc=$?
took fuzz "$t0"
grep -v '^clang\|^ar \|^gcc' "$flog"
for t in $(sed -n 's/^== fuzz_\([a-z]*\) for .*/\1/p' "$flog"); do
	runs=$(sed -n "/^== fuzz_$t /,/^== /p" "$flog" | grep -o 'Done [0-9]* runs' | head -1)
	if [ -n "$runs" ]; then
		echo "ok - fuzz_$t: $runs"
		pass=$((pass + 1))
	else
		echo "not ok - fuzz_$t"
		fail=$((fail + 1))
		failed_names+=("fuzz_$t")
	fi
done
if [ "$frc" -ne 0 ] && ! grep -q '^== fuzz_' "$flog"; then
	echo "not ok - fuzz: the targets did not build"
	fail=$((fail + 1))
	failed_names+=("fuzz build")
fi
rm -f "$flog"

echo "== seconds per section, slowest first (whole run: $SECONDS s)"
printf '%s\n' "${timings[@]}" | sort -rn | head -12
for n in "${failed_names[@]+"${failed_names[@]}"}"; do
	echo "FAILED: $n"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
