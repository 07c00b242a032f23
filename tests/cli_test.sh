#!/bin/bash
# The duet tool as a user runs it: mkmodel, generate, tokenize and bench,
# their exit codes and their one-line errors. Prints "ok - NAME" or
# "not ok - NAME" per check (counted by run.sh). Usage: cli_test.sh BUILD_DIR
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DUET="$BUILD/duet"
SHARED=${DUET_SHARED_MODELS:-$(cd .. && pwd)/shared/models}
[ -r "$SHARED/ggml-vocab-llama-spm.gguf" ] || SHARED=/work/shared/models
VOCAB="$SHARED/ggml-vocab-llama-spm.gguf"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

check() { # name, then a command that must succeed
	local name=$1
	shift
	if "$@" >"$TMP/out" 2>"$TMP/err"; then
		echo "ok - $name"
	else
		echo "not ok - $name"
		sed 's/^/    /' "$TMP/out" "$TMP/err" | head -20
		failures=$((failures + 1))
	fi
}

# A command that must fail with a non-zero status and exactly one line on
# stderr containing every further argument.
fails_with_one_line() {
	local cmd=$1
	shift
	local rc=0
	eval "$cmd" >/dev/null 2>"$TMP/e1" || rc=$?
	[ "$rc" -ne 0 ] || { echo "exit status 0"; return 1; }
	[ "$(wc -l <"$TMP/e1")" -eq 1 ] || { echo "stderr is not one line:"; cat "$TMP/e1"; return 1; }
	for want in "$@"; do
		grep -qF -- "$want" "$TMP/e1" || { echo "stderr lacks '$want':"; cat "$TMP/e1"; return 1; }
	done
}

mk() { "$DUET" mkmodel --vocab "$VOCAB" "$@" 2>/dev/null; }

check "mkmodel gguf" mk --shape tiny --dtype f16 --chat-template none -o "$TMP/tiny.gguf"
check "mkmodel writes a chat template by default" bash -c "'$DUET' mkmodel --vocab '$VOCAB' --shape tiny -o '$TMP/chat.gguf' 2>/dev/null && grep -q 'tokenizer.chat_template' '$TMP/chat.gguf' && grep -q 'INST' '$TMP/chat.gguf'"
mkdir -p "$TMP/l2c"
check "mkmodel gguf mha" mk --shape tiny-mha -o "$TMP/mha.gguf" --seed 4
check "mkmodel llama2c" mk --shape tiny-mha --format llama2c -o "$TMP/l2c/mha.bin" --seed 4
check "mkmodel llama2c wrote tokenizer.bin" test -s "$TMP/l2c/tokenizer.bin"
check "mkmodel refuses unknown shape" fails_with_one_line "$DUET mkmodel --vocab $VOCAB --shape nope -o $TMP/x" "nope"
check "mkmodel refuses more layers than the shape has" fails_with_one_line "$DUET mkmodel --vocab $VOCAB --shape tiny --layers 99 -o $TMP/x" "layers"
check "mkmodel refuses llama2c q8_0" fails_with_one_line "$DUET mkmodel --vocab $VOCAB --shape tiny --dtype q8_0 --format llama2c -o $TMP/x.bin" "f32"

gen() { "$DUET" generate -t 2 --temp 0 -n 24 --ignore-eos "$@"; }
check "generate streams text and reports speed" \
	bash -c "'$DUET' generate -m '$TMP/tiny.gguf' -p 'Once upon a time' -n 16 --temp 0 >'$TMP/g.out' 2>'$TMP/g.err' &&
		grep -q '^Once upon a time' '$TMP/g.out' && grep -q 'tok/s' '$TMP/g.err'"
check "generate: same greedy text from GGUF and llama2.c" \
	bash -c "cmp <(gen -m '$TMP/mha.gguf' -p 'Hello there' 2>/dev/null) <(gen -m '$TMP/l2c/mha.bin' -p 'Hello there' 2>/dev/null)"
# the tiny model's first layer alone (same seed: the same rows) as its
# draft: the draft is wrong often, the text must not change
check "mkmodel --layers: a smaller model" bash -c "'$DUET' mkmodel --vocab '$VOCAB' --shape tiny --dtype f16 --chat-template none --layers 1 -o '$TMP/tiny-l1.gguf' 2>/dev/null &&
	[ \$(stat -c %s '$TMP/tiny-l1.gguf') -lt \$(stat -c %s '$TMP/tiny.gguf') ]"
check "generate: a draft of the first layer leaves the text as it is" \
	bash -c "cmp <(gen -m '$TMP/tiny.gguf' -p 'The sky' --draft '$TMP/tiny-l1.gguf' 2>/dev/null) <(gen -m '$TMP/tiny.gguf' -p 'The sky' 2>/dev/null)"
check "generate: same text from 1 and 2 threads" \
	bash -c "cmp <(gen -m '$TMP/tiny.gguf' -p 'The sky' -t 1 2>/dev/null) <(gen -m '$TMP/tiny.gguf' -p 'The sky' 2>/dev/null)"
check "generate: seed makes sampling reproducible" \
	bash -c "cmp <('$DUET' generate -m '$TMP/tiny.gguf' -p 'Hi' -n 20 --temp 1 --seed 9 2>/dev/null) <('$DUET' generate -m '$TMP/tiny.gguf' -p 'Hi' -n 20 --temp 1 --seed 9 2>/dev/null)"

# Broken inputs: one line, non-zero status.
head -c 1000 "$TMP/tiny.gguf" >"$TMP/trunc.gguf"
check "generate: truncated model" fails_with_one_line "$DUET generate -m $TMP/trunc.gguf -p hi" "$TMP/trunc.gguf"
printf 'definitely not a model, just some text in a file' >"$TMP/text.gguf"
check "generate: not a model" fails_with_one_line "$DUET generate -m $TMP/text.gguf -p hi" "$TMP/text.gguf"
check "generate: missing model" fails_with_one_line "$DUET generate -m $TMP/none.gguf -p hi" "$TMP/none.gguf"
check "generate: bad flag value" fails_with_one_line "$DUET generate -m $TMP/tiny.gguf -p hi --top-p 7" "--top-p"
check "generate: bad thread count" fails_with_one_line "$DUET generate -m $TMP/tiny.gguf -p hi -t abc" "-t"

check "tokenize: known Llama-2 ids" \
	bash -c "[ \"\$(printf 'Hello, world!' | '$DUET' tokenize --vocab '$VOCAB')\" = '1 15043 29892 3186 29991' ]"
check "tokenize: model and vocabulary agree" \
	bash -c "cmp <(printf 'héllo 🦙' | '$DUET' tokenize -m '$TMP/l2c/mha.bin' --pieces) <(printf 'héllo 🦙' | '$DUET' tokenize --vocab '$VOCAB' --pieces)"

check "bench prints its table" \
	bash -c "'$DUET' bench -m '$TMP/tiny.gguf' -p 32 -n 8 -r 2 -b 1,4 --ceiling-seconds 0.2 >'$TMP/b.out' 2>/dev/null &&
		grep -q 'pp32' '$TMP/b.out' && grep -q 'tg8' '$TMP/b.out' && grep -q 'sgemm' '$TMP/b.out' && grep -q 'b4' '$TMP/b.out'"

# each decode run against the bandwidth sampled around it: three runs with
# their samples, and the row's fraction the mean of the runs' own (those
# whose samples agree within 15%, or all when none do), recomputed here
# from the bytes a step reads
check "bench: decode runs against the bandwidth around each" \
	bash -c "'$DUET' bench -m '$TMP/tiny.gguf' -p 0 -n 8 -r 3 -b 1,2 --ceiling-seconds 0.2 --json '$TMP/bj.json' >/dev/null 2>&1 &&
		jq -e '.model as \$m | [.results[] | select(.bound == \"bandwidth\")] | length == 2 and all(.[];
			(.runs | length) == 3 and all(.runs[]; .bandwidth_gbps_before > 0 and .bandwidth_gbps_after > 0) and
			(.batch as \$b | (\$b * 1e9 / (\$m.weight_bytes_per_step + \$b * \$m.kv_bytes_per_position * 4)) as \$per |
			 ([.runs[] | select(.settled)] | if length > 0 then . else null end) // .runs |
			 (map(.tokens_per_s / ((.bandwidth_gbps_before + .bandwidth_gbps_after) / 2 * \$per)) | add / length)) as \$of |
			(.of_ceiling - \$of | fabs) < 1e-9 * \$of)' '$TMP/bj.json' >/dev/null"

# the compute ceiling: the f16 model's products are FMA's (the CI machines
# have AVX-512); the prompt is held against the prompt's (no classifier, so
# higher), and every decode row against the lower of its bandwidth ceiling
# and the compute one, which the column names; at 48
# sequences a step's products take 48 x 2 FLOP a weight while its reads
# are the weights' 2 bytes once, so FMA binds on any machine whose FMA
# peak is below 48 FLOP a byte of its bandwidth
check "bench: batched rows against the compute ceiling" \
	bash -c "'$DUET' bench -m '$TMP/tiny.gguf' -p 16 -n 4 -r 1 -b 1,48 --ceiling-seconds 0.2 --json '$TMP/bc.json' >'$TMP/bc.out' 2>/dev/null &&
		grep -q '^compute: FMA' '$TMP/bc.out' &&
		jq -e '.ceilings as \$c | \$c.fma_gops > 0 and \$c.int8_dot_gops == 0 and \$c.compute_tokens_per_s > 0 and
			all(.results[] | select(.test | startswith(\"tg\")); .ceiling_tokens_per_s <= \$c.compute_tokens_per_s * (1 + 1e-9) and
				(if .bound == \"FMA\" then (.ceiling_tokens_per_s == \$c.compute_tokens_per_s and
					(.of_ceiling - .tokens_per_s / \$c.compute_tokens_per_s | fabs) < 1e-9)
				 else .bound == \"bandwidth\" end)) and
			(.results[] | select(.batch == 48) | .bound == \"FMA\") and
			(.results[] | select(.test == \"pp16\") | .bound == \"FMA\" and
				.ceiling_tokens_per_s == \$c.compute_prompt_tokens_per_s and
				\$c.compute_prompt_tokens_per_s > \$c.compute_tokens_per_s)' '$TMP/bc.json' >/dev/null"

# no prompt, a batch of 8, weights copied in base pages: the batch's first
# tokens once read past the token array (ASan) and gave garbage ids
check "bench: batched decode with no prompt, weights copied" \
	bash -c "'$DUET' bench -m '$TMP/tiny.gguf' -p 0 -n 4 -r 1 -b 8 --weights copy --no-ceilings >'$TMP/b0.out' 2>'$TMP/b0.err' &&
		grep -q 'weights: copy' '$TMP/b0.out' && grep -q 'b8' '$TMP/b0.out'"

for cmd in generate tokenize bench mkmodel; do
	check "$cmd --help" bash -c "'$DUET' $cmd --help | grep -q '^Usage: duet $cmd'"
done
check "unknown subcommand" fails_with_one_line "$DUET frobnicate" "frobnicate"

# The daemons: --help, and one-line refusals of bad settings before they
# touch the network.
for d in duet-prefill duet-decode; do
	check "$d --help lists every key" bash -c "'$BUILD/$d' --help | grep -q -- '--kv-mb' && '$BUILD/$d' --help | grep -q -- '--config'"
	check "$d: unknown flag" fails_with_one_line "$BUILD/$d --frob 1" "--frob"
	check "$d: bad number" fails_with_one_line "$BUILD/$d --threads zero" "threads" "zero"
	check "$d: no model" fails_with_one_line "$BUILD/$d" "model"
	check "$d: corrupt model" fails_with_one_line "$BUILD/$d --model $TMP/trunc.gguf" "$TMP/trunc.gguf"
	printf 'name = x\nthreads = 2\nnot a setting\n' >"$TMP/$d.conf"
	check "$d: bad config line" fails_with_one_line "$BUILD/$d --config $TMP/$d.conf" "$TMP/$d.conf:3"
done
check "mkmodel: built-in byte vocabulary" bash -c "'$DUET' mkmodel --shape tiny --vocab builtin:bytes -o '$TMP/bytes.gguf' 2>/dev/null &&
	[ \"\$(printf 'hé' | '$DUET' tokenize --vocab '$TMP/bytes.gguf')\" = '1 35 107 198 172' ] &&
	'$DUET' generate -m '$TMP/bytes.gguf' -p 'héllo' -n 4 --temp 0 >/dev/null 2>&1"

# duet up: a whole cluster, one completion over plain HTTP (bash's
# /dev/tcp, so no HTTP client is needed), then Ctrl-C stops everything.
post() { # port path body: the raw HTTP response
	exec 3<>/dev/tcp/127.0.0.1/$1
	printf 'POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
		"$2" ${#3} "$3" >&3
	timeout 30 cat <&3
	exec 3<&-
}
# duet up itself pinned to CPU 0 (as make bench-cluster pins it with the
# router), its nodes over --node-cpus: each on its own CPU of those.
up_cluster() {
	local port=18517 out="$TMP/up.out" last=$(($(nproc) - 1))
	taskset -c 0 "$DUET" up --model "$TMP/tiny.gguf" --port $port --dir "$TMP/up" --trace \
		--node-cpus "0-$last" >"$out" 2>"$TMP/up.err" &
	local pid=$!
	for _ in $(seq 1 300); do
		grep -q '^duet up: serving' "$out" && break
		sleep 0.1
	done
	grep -q '^duet up: serving' "$out" || { cat "$TMP/up.err"; kill $pid; return 1; }
	local pinned
	pinned=$(for n in prefill-0 decode-0; do
		grep Cpus_allowed_list "/proc/$(pgrep -f -- "--name $n --router ipc://$TMP/up/")/status"
	done | awk '{ printf "%s ", $2 }')
	[ "$pinned" = "0 $((1 % (last + 1))) " ] || { echo "nodes pinned to: $pinned"; kill -INT $pid; return 1; }
	local resp chat stream
	resp=$(post $port /v1/completions '{"prompt":"Hello","max_tokens":5,"temperature":0}')
	# The tiny model was made without a chat template: chat is a clear 400.
	chat=$(post $port /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}]}')
	stream=$(post $port /v1/completions '{"prompt":"Hi","max_tokens":2,"stream":true}')
	# longer than local-max-prompt: prefilled on prefill-0, its KV handed over
	local words
	words=$(printf 'once upon a time %.0s' $(seq 1 40))
	long=$(post $port /v1/completions "{\"prompt\":\"$words\",\"max_tokens\":3}")
	kill -INT $pid
	wait $pid || { echo "duet up exited with $?"; return 1; }
	grep -q '"completion_tokens":5' <<<"$resp" || { echo "$resp"; return 1; }
	grep -q '^HTTP/1.1 400' <<<"$chat" && grep -q 'no chat template' <<<"$chat" || { echo "$chat"; return 1; }
	grep -q '^data: \[DONE\]' <<<"$stream" || { echo "$stream"; return 1; }
	grep -q '"completion_tokens":3' <<<"$long" || { echo "$long"; return 1; }
	! pgrep -f "$TMP/up/" >/dev/null || { echo "daemons left running"; return 1; }
}
check "up: serves a completion and stops on Ctrl-C" up_cluster
# --trace: every daemon wrote a closed trace; the merge reads them and its
# own output back (valid JSON both ways), and the timeline has the router's
# placement and SSE writes and the decode node's steps.
trace_merge() {
	local up="$TMP/up" m="$TMP/merged.json"
	for d in router prefill-0 decode-0; do
		tail -c 3 "$up/$d.trace.json" | grep -q ']' || { echo "$d: trace not closed"; return 1; }
	done
	"$DUET" trace merge -o "$m" "$up"/router.trace.json "$up"/prefill-0.trace.json \
		"$up"/decode-0.trace.json | grep -q 'events from 3 files' || return 1
	"$DUET" trace merge -o "$TMP/merged2.json" "$m" >/dev/null || return 1
	for ev in place sse step sample+send; do
		grep -q "\"name\":\"$ev\"" "$m" || { echo "no $ev event"; return 1; }
	done
	grep -q '"name":"process_name".*"decode-0"' "$m" || return 1
	# The hand-off's rows were written by the KV ingest thread, never by
	# the thread that steps.
	local d="$up/decode-0.trace.json" tid
	tid=$(grep '"thread_name".*"kv ingest"' "$d" | sed 's/.*"tid":\([0-9]*\).*/\1/')
	[ -n "$tid" ] || { echo "no kv ingest thread"; return 1; }
	grep -q '"name":"kv write"' "$d" || { echo "no kv write event"; return 1; }
	! grep '"name":"kv write"' "$d" | grep -vq "\"tid\":$tid," || { echo "kv write off the ingest thread"; return 1; }
}
check "up --trace: the daemons' traces merge into one timeline" trace_merge
check "trace merge: a file that is not a trace" fails_with_one_line "$DUET trace merge -o $TMP/x.json $TMP/tiny.gguf" "$TMP/tiny.gguf"
check "up --help" bash -c "'$DUET' up --help | grep -q -- '--prefill'"
check "up --help: passing flags to nodes" bash -c "'$DUET' up --help | grep -q -- '--node-arg'"

# duet replay: its errors before any server is involved (the replay itself
# is tested in test_replay.c).
check "replay --help" bash -c "'$DUET' replay --help | grep -q -- '--sweep'"
check "replay: no trace given" fails_with_one_line "$DUET replay" "--trace"
check "replay: missing trace" fails_with_one_line "$DUET replay --trace $TMP/none.csv" "$TMP/none.csv"
printf '0,10,5\n1,x,5\n' >"$TMP/bad.csv"
check "replay: malformed trace row" fails_with_one_line "$DUET replay --trace $TMP/bad.csv" "bad.csv:2: prompt_tokens 'x'"
printf '0,10,5\n1,10,5\n' >"$TMP/ok.csv"
check "replay: no server" fails_with_one_line "$DUET replay --url http://127.0.0.1:9 --trace $TMP/ok.csv" "127.0.0.1:9/v1/models"
check "replay: bad --slo-tbt" fails_with_one_line "$DUET replay --trace $TMP/ok.csv --slo-tbt fast" "--slo-tbt"
check "up: missing model" fails_with_one_line "$DUET up --model $TMP/none.gguf" "$TMP/none.gguf"

# duet plan from the command line (the simulator itself: test_plan.c): a
# hand-written profile, scaled with a step spread, simulated with and
# without it.
printf '{"name": "hand", "step": {"base_ms": 10, "seq_ms": 1, "token_ms": 0.5, "kctx_ms": 1}}\n' >"$TMP/hand.json"
printf '0,100,20\n0.1,40,20\n0.2,300,20\n0.3,20,20\n' >"$TMP/plan.csv"
spread=0.9,0.92,0.95,0.97,0.98,0.99,1,1.01,1.02,1.05,1.1,1.2,1.5
check "plan scale: a step spread into the profile" bash -c "'$DUET' plan scale '$TMP/hand.json' '$TMP/spread.json' --step-spread $spread &&
	jq -e '.step_spread | length == 13 and .[12] == 1.5' '$TMP/spread.json' >/dev/null"
check "plan scale: a spread that falls is refused" fails_with_one_line \
	"$DUET plan scale $TMP/hand.json $TMP/x.json --step-spread 1,1,1,1,1,1,1,1,1,1,1,2,1.5" "ratio 13"
check "plan scale: a short spread is refused" fails_with_one_line \
	"$DUET plan scale $TMP/hand.json $TMP/x.json --step-spread 1,2" "13"
plan_sim() { # out dir, then options
	local out=$1
	shift
	"$DUET" plan simulate --trace "$TMP/plan.csv" --profile "$TMP/spread.json" --slo-ttft 1 \
		--slo-tbt 0.1 --no-plots --out "$out" "$@" >/dev/null
}
check "plan simulate: passes drawn from the spread, the same for a seed" bash -c "
	$(declare -f plan_sim); DUET='$DUET' TMP='$TMP'
	plan_sim '$TMP/s1' && plan_sim '$TMP/s2' && plan_sim '$TMP/s0' --step-spread off &&
	jq -e '.simulated.step_spread' '$TMP/s1/summary.json' >/dev/null &&
	jq -e '.simulated.step_spread | not' '$TMP/s0/summary.json' >/dev/null &&
	cmp -s '$TMP/s1/tokens.csv' '$TMP/s2/tokens.csv' && ! cmp -s '$TMP/s1/tokens.csv' '$TMP/s0/tokens.csv'"
check "plan simulate: bad --step-spread" fails_with_one_line \
	"$DUET plan simulate --trace $TMP/plan.csv --profile $TMP/hand.json --slo-ttft 1 --slo-tbt 1 --step-spread maybe" "step-spread"
check "plan simulate: bad --tbt-admission" fails_with_one_line \
	"$DUET plan simulate --trace $TMP/plan.csv --profile $TMP/hand.json --slo-ttft 1 --slo-tbt 1 --tbt-admission maybe" "tbt-admission"
check "plan simulate: the summary states tbt-admission" bash -c "
	$(declare -f plan_sim); DUET='$DUET' TMP='$TMP'
	plan_sim '$TMP/a1' --tbt-admission on && jq -e '.simulated.router_tbt_admission == true' '$TMP/a1/summary.json' >/dev/null &&
	jq -e '.simulated.router_tbt_admission == false' '$TMP/s0/summary.json' >/dev/null"

check "duet-prefill: bad kv-dtype" fails_with_one_line "$BUILD/duet-prefill --kv-dtype q4 --model x" "q4"
check "duet-decode: bad kv-dtype" fails_with_one_line "$BUILD/duet-decode --kv-dtype q4 --model x" "q4"
check "duet-decode: bad qdot" fails_with_one_line "$BUILD/duet-decode --qdot fast --model x" "qdot"
check "duet-decode: bad weights" fails_with_one_line "$BUILD/duet-decode --weights disk --model x" "weights"
check "duet generate: bad --kv-dtype" fails_with_one_line "$DUET generate -m x -p hi --kv-dtype q4" "kv-dtype"
check "duet bench: bad --qdot" fails_with_one_line "$DUET bench -m x --qdot fast" "qdot"
check "duet-decode: wildcard kv-endpoint without kv-advertise" fails_with_one_line \
	"$BUILD/duet-decode --kv-endpoint tcp://0.0.0.0:5601 --model x" "kv-advertise"
check "keygen: makes its directory, keys 0600" bash -c "$DUET keygen -d $TMP/k/new a >/dev/null &&
	[ \"\$(stat -c %a $TMP/k/new/a.key)\" = 600 ] && grep -q ' a\$' $TMP/k/new/a.pub"

[ "$failures" -eq 0 ]
