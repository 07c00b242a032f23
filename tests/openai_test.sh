#!/bin/bash
# The router through the official `openai` Node client (tests/js, installed
# by `make deps`, never vendored), against a cluster that `duet up` starts
# the way a newcomer would: completions and chat, streamed and not,
# include_usage, logprobs, n, response_format json_schema (100 sampled
# answers validated by Ajv), and four streams that survive kill -9 of a
# decode node. The decode nodes speculate by prompt lookup, so every
# greedy answer compared with `duet generate` (plain decoding) also checks
# that speculation in the continuous batch, failover included, changes no
# token. Prints "ok - NAME" / "not ok - NAME" per check (counted by
# run.sh). Usage: openai_test.sh BUILD_DIR
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DUET="$PWD/$BUILD/duet"
SHARED=${DUET_SHARED_MODELS:-$(cd .. && pwd)/shared/models}
[ -r "$SHARED/ggml-vocab-llama-spm.gguf" ] || SHARED=/work/shared/models
TMP=$(mktemp -d)
CHECK_DIR=$TMP
. tests/checks.sh
UP_PID=
cleanup() {
	[ -n "$UP_PID" ] && kill -INT "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

if ! command -v node >/dev/null || [ ! -d tests/js/node_modules/openai ]; then
	not_ok "the openai client is installed (make deps: npm install in tests/js)"
	exit 1
fi
# stories15m: slow enough that a kill lands mid-stream, small enough to be quick
check "mkmodel stories15m with a chat template" \
	"$DUET" mkmodel --shape stories15m --vocab "$SHARED/ggml-vocab-llama-spm.gguf" -o "$TMP/m.gguf"
PORT=$((19200 + $$ % 500))
while (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do PORT=$((PORT + 1)); done
"$DUET" up -m "$TMP/m.gguf" -P 1 -D 2 --port "$PORT" --dir "$TMP/up" --decode-arg=--spec-lookup=3 \
	--prefill-arg=--max-batch-tokens=256 >"$TMP/up.out" 2>&1 &
UP_PID=$!
if until_ok 120 grep -q "duet up: serving" "$TMP/up.out"; then ok "duet up serves"; else
	not_ok "duet up serves"
	cat "$TMP/up.out"
	exit 1
fi
# (each node's command line names its run directory, in its --router endpoint)
node_args() { ps -ww -eo args | grep -F -- "--name $1 " | grep -F -- "$TMP/up/" | grep -v grep; }
check "--prefill-arg reaches the prefill node" bash -c "$(declare -f node_args); TMP='$TMP'; node_args prefill-0 | grep -q -- '--max-batch-tokens=256'"
check "--prefill-arg reaches no decode node, --decode-arg no prefill node" bash -c "$(declare -f node_args); TMP='$TMP'
	! node_args decode-0 | grep -q -- '--max-batch-tokens=256' && node_args decode-0 | grep -q -- '--spec-lookup=3' &&
	! node_args prefill-0 | grep -q -- '--spec-lookup'"
node tests/js/openai_client.mjs "http://127.0.0.1:$PORT" "$TMP/m.gguf" "$DUET" | tee "$TMP/js.out"
failures=$((failures + $(grep -c '^not ok' "$TMP/js.out")))
grep -q '^ok - four streams' "$TMP/js.out" || true
check "duet up restarted the killed decode node" until_ok 30 grep -q "starting decode-0 again" "$TMP/up.out"
check "the restarted node serves again" until_ok 30 bash -c \
	"curl -s http://127.0.0.1:$PORT/v1/cluster | jq -e '[.nodes[] | select(.alive)] | length == 3'"
kill -INT "$UP_PID"
if wait "$UP_PID"; then ok "duet up stops cleanly on Ctrl-C"; else not_ok "duet up stops cleanly on Ctrl-C"; fi
UP_PID=

# A decode node drafting with the model's own Q8_0 copy: greedy answers
# are still duet generate's, and drafts were accepted.
check "mkmodel the Q8_0 copy" \
	"$DUET" mkmodel --shape stories15m --dtype q8_0 --vocab "$SHARED/ggml-vocab-llama-spm.gguf" -o "$TMP/q8.gguf"
"$DUET" up -m "$TMP/m.gguf" -P 1 -D 1 --port "$PORT" --dir "$TMP/up2" --decode-arg=--draft="$TMP/q8.gguf" \
	>"$TMP/up2.out" 2>&1 &
UP_PID=$!
until_ok 120 grep -q "duet up: serving" "$TMP/up2.out" || cat "$TMP/up2.out"
same_as_generate() { # prompt
	local got want
	got=$(curl -s "http://127.0.0.1:$PORT/v1/completions" -d "{\"prompt\":\"$1\",\"max_tokens\":60,\"temperature\":0,\"ignore_eos\":true}" |
		jq -r '.choices[0].text')
	want=$("$DUET" generate -m "$TMP/m.gguf" -p "$1" --temp 0 -n 60 --ignore-eos --no-echo -t 1 2>/dev/null)
	[ "$got" = "$want" ]
}
check "draft model on the decode node: greedy text equals duet generate" \
	bash -c "$(declare -f same_as_generate); PORT=$PORT DUET=$DUET TMP=$TMP; same_as_generate 'Once upon a time' && same_as_generate 'The little dog'"
check "draft model on the decode node: drafts accepted" bash -c \
	"curl -s http://127.0.0.1:$PORT/v1/cluster | jq -e '[.nodes[] | select(.role == \"decode\") | .speculation.accepted] | add > 0'"
kill -INT "$UP_PID"
wait "$UP_PID"
UP_PID=

# spec-draft-max-batch bounds the running sequences a draft proposes for:
# at 0 it never does, and the text is the same.
"$DUET" up -m "$TMP/m.gguf" -P 1 -D 1 --port "$PORT" --dir "$TMP/up3" --decode-arg=--draft="$TMP/q8.gguf" \
	--decode-arg=--spec-draft-max-batch=0 >"$TMP/up3.out" 2>&1 &
UP_PID=$!
until_ok 120 grep -q "duet up: serving" "$TMP/up3.out" || cat "$TMP/up3.out"
check "spec-draft-max-batch 0: greedy text equals duet generate" \
	bash -c "$(declare -f same_as_generate); PORT=$PORT DUET=$DUET TMP=$TMP; same_as_generate 'Once upon a time'"
check "spec-draft-max-batch 0: nothing proposed" bash -c \
	"curl -s http://127.0.0.1:$PORT/v1/cluster | jq -e '[.nodes[] | select(.role == \"decode\") | .speculation.proposed] | add == 0'"
kill -INT "$UP_PID"
wait "$UP_PID"
UP_PID=
exit $((failures > 0))
