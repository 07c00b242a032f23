# Sourced by the shell tests: one "ok - NAME" or "not ok - NAME" line per
# check (tests/run.sh counts them), and $failures for the exit status.
# The sourcing script sets CHECK_DIR to a scratch directory of its own.
failures=0

ok() { echo "ok - $1"; }
not_ok() {
	echo "not ok - $1"
	failures=$((failures + 1))
}
# check NAME CMD...: CMD must succeed; its output is shown when it does not.
check() {
	local name=$1
	shift
	if "$@" >"$CHECK_DIR/out" 2>&1; then ok "$name"; else
		not_ok "$name"
		sed 's/^/    /' "$CHECK_DIR/out" | tail -30
	fi
}
# until_ok SECONDS CMD...: retries CMD every 0.2 s until it succeeds.
# (The clock is bash's EPOCHREALTIME in microseconds: SECONDS counts whole
# seconds, so a window of N seconds from it was anywhere from N - 1 to N.)
until_ok() {
	local end=$((${EPOCHREALTIME/./} + $1 * 1000000))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "${EPOCHREALTIME/./}" -lt $end ] || return 1
		sleep 0.2
	done
}
