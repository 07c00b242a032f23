#!/bin/bash
# make soak: a cluster from `duet up` (1 prefill, 2 decode nodes) on a
# stories15m-shaped model, then bench/soak.mjs against it (REQUESTS
# requests, HANGUP share of clients hanging up, decode-0 killed halfway).
# Usage: soak.sh BUILD_DIR SHARED_MODELS [REQUESTS] [HANGUP] [OUT_DIR]
set -eu
cd "$(dirname "$0")/.."
BUILD=$1 SHARED=$2 REQUESTS=${3:-2000} HANGUP=${4:-0.3} OUT=${5:-soak-out}
DUET="$PWD/$BUILD/duet"
mkdir -p "$OUT"
MODEL="$PWD/$BUILD/models/stories15m-soak.gguf"
[ -r "$MODEL" ] || "$DUET" mkmodel --shape stories15m --vocab "$SHARED/ggml-vocab-llama-spm.gguf" -o "$MODEL"
PORT=$((19700 + $$ % 200))
"$DUET" up -m "$MODEL" -P 1 -D 2 --port "$PORT" --dir "$OUT/up" >"$OUT/up.out" 2>&1 &
UP=$!
trap 'kill -INT $UP 2>/dev/null; wait $UP 2>/dev/null' EXIT
for _ in $(seq 600); do grep -q "duet up: serving" "$OUT/up.out" && break; sleep 0.2; done
grep -q "duet up: serving" "$OUT/up.out" || { cat "$OUT/up.out"; exit 1; }
node bench/soak.mjs "http://127.0.0.1:$PORT" "$MODEL" "$DUET" "$REQUESTS" "$HANGUP" "$OUT/summary.json"
