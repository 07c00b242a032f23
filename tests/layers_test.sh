#!/bin/bash
# The parts of the code and the one way their ties run (docs/ARCHITECTURE.md):
# greps every quoted #include and fails on one that points the wrong way.
# Prints "ok - NAME" / "not ok - NAME" per check (counted by run.sh).
set -u
cd "$(dirname "$0")/.."
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
CHECK_DIR=$TMP
. tests/checks.sh

# What each part of common/ may include besides itself. duet.pb-c.h is the
# generated wire schema: the network layer's, and the node's above it.
declare -A MAY=(
	[base]=""
	[text]="base"
	[engine]="base text"
	[net]="base duet.pb-c.h"
	[node]="base text engine net duet.pb-c.h"
)

# includes FILE...: "file<TAB>included" for every quoted include.
includes() {
	grep -H -o '^#include "[^"]*"' "$@" 2>/dev/null | sed 's/:#include "/\t/; s/"$//'
}

for part in base text engine net node; do
	bad=$(includes $(find common/$part -name '*.[ch]') | while IFS=$'\t' read -r f inc; do
		top=${inc%%/*}
		[ "$inc" = duet.pb-c.h ] && top=duet.pb-c.h
		[ "$top" = "$part" ] && continue
		case " ${MAY[$part]} " in *" $top "*) continue ;; esac
		echo "$f includes $inc"
	done)
	if [ -z "$bad" ]; then ok "common/$part includes only: $part ${MAY[$part]}"; else
		not_ok "common/$part includes only: $part ${MAY[$part]}"
		echo "$bad" | sed 's/^/    /'
	fi
done

# Every include of a part names it ("engine/model.h", not "model.h"), so a
# reader sees each tie where it is made.
bare=$(includes $(find common prefill-node decode-node router tools tests bench -name '*.[ch]') |
	awk -F'\t' '{ n = split($2, p, "/"); if (n == 1) print }' |
	while IFS=$'\t' read -r f inc; do
		[ -e "common/$inc" ] || [ -e "$(dirname "$f")/../common/$inc" ] && echo "$f includes $inc"
		case "$f" in common/*) [ "$inc" = duet.pb-c.h ] || echo "$f includes $inc" ;; esac
	done | sort -u)
if [ -z "$bare" ]; then ok "includes name their part"; else
	not_ok "includes name their part"
	echo "$bare" | sed 's/^/    /'
fi

# The daemons never carry the model writer, the benchmarks' ceilings or
# the replay client, and none includes another daemon's headers.
bad=$(includes prefill-node/*.[ch] decode-node/*.[ch] router/*.[ch] |
	while IFS=$'\t' read -r f inc; do
		dir=${f%%/*}
		case "$inc" in
		mkmodel/* | bench/* | replay/*) echo "$f includes $inc" ;;
		*/*) ;;
		*) [ -e "$dir/$inc" ] || echo "$f includes $inc (not its own)" ;;
		esac
	done)
if [ -z "$bad" ]; then ok "daemons include common/ and their own headers only"; else
	not_ok "daemons include common/ and their own headers only"
	echo "$bad" | sed 's/^/    /'
fi

# The model loaders never call back into model.c: the calls run model.c ->
# model_gguf.c / model_llama2c.c -> model_check.c.
defined=$(sed -n 's/^[a-z].* \**\(duet_[a-z0-9_]*\)(.*/\1/p' common/engine/model.c | sort -u | tr "\n" " ")
calls=""
for fn in $defined; do
	grep -l "\b$fn(" common/engine/model_gguf.c common/engine/model_llama2c.c \
		common/engine/model_check.c >/dev/null 2>&1 && calls="$calls $fn"
done
if [ -n "$defined" ] && [ -z "$calls" ]; then ok "model loaders do not call back into model.c"; else
	not_ok "model loaders do not call back into model.c (${defined:-nothing found in model.c}:$calls)"
fi

exit $((failures > 0))
