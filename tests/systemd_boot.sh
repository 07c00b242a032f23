#!/bin/bash
# make test-systemd: duet under a real systemd, as a user runs it.
#
# This machine's PID 1 is not systemd, so the test boots one: systemd is
# PID 1 of a container started with systemd-nspawn -b on an overlay of
# this machine's root (the root read-only below, a tmpfs above it), so the
# container has exactly the packages the host has. `make install` puts duet
# into the overlay; the units are enabled with `systemctl --root`, and the
# container boots straight into duet.target with only a loopback network.
#
# Then, from the host, through nsenter into the container:
#   - duet.target starts the router, a prefill and a decode node; each unit
#     turns active only on READY=1, and runs as the dynamic user duet;
#   - a completion served through the router equals `duet generate`;
#   - journald holds the request's DUET_REQUEST_ID from all three units;
#   - kill -9 of the decode node: systemd restarts it, the router takes it
#     back and serves again;
#   - SIGSTOP of the decode node: its watchdog pings stop, systemd kills it
#     for the watchdog and restarts it;
#   - systemctl stop duet.target: every unit drains and exits 0.
#
# Needs root, systemd-nspawn (Debian: systemd-container) and overlayfs.
# Prints "ok - NAME" / "not ok - NAME" per check; exits 1 if any failed.
# Usage: systemd_boot.sh BUILD_DIR
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SHARED=${DUET_SHARED_MODELS:-$(cd .. && pwd)/shared/models}
[ -r "$SHARED/ggml-vocab-llama-spm.gguf" ] || SHARED=/work/shared/models
VOCAB="$SHARED/ggml-vocab-llama-spm.gguf"
BOOT_TIMEOUT=90  # s: boot, model load and registration
STEP_TIMEOUT=60  # s: any one wait below
WATCHDOG_S=3     # the decode unit's WatchdogSec in this test
PROMPT="Once upon a time there was a little robot who"
N_TOKENS=12

if [ "$(id -u)" != 0 ]; then
	echo "test-systemd: needs root (it mounts an overlay and boots a container)" >&2
	exit 2
fi
for c in systemd-nspawn nsenter curl; do
	command -v $c >/dev/null || { echo "test-systemd: $c not found (make deps installs it)" >&2; exit 2; }
done

T=$(mktemp -d /tmp/duet-systemd.XXXXXX)
ROOT=$T/root
NSPAWN_PID=
LEADER=

cleanup() {
	if [ -n "${KEEP_CONTAINER:-}" ]; then
		echo "kept: container leader $LEADER, nspawn $NSPAWN_PID, root $ROOT"
		return
	fi
	if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		# SIGTERM asks nspawn for a clean shutdown of the container.
		kill -TERM "$NSPAWN_PID" 2>/dev/null
		for _ in $(seq 1 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$NSPAWN_PID" 2>/dev/null
		wait "$NSPAWN_PID" 2>/dev/null
	fi
	umount "$ROOT" 2>/dev/null
	umount "$T" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

CHECK_DIR=$T
. tests/checks.sh
# Runs a command inside the container (all its namespaces).
in_ct() { nsenter -t "$LEADER" -m -u -i -n -p -- "$@"; }
unit_prop() { in_ct systemctl show -p "$2" --value "$1"; }
all_active() { in_ct systemctl is-active --quiet duet.target duet-router.service \
	duet-prefill@0.service duet-decode@0.service; }
# complete FILE: one greedy completion through the router (inside the
# container's network), the JSON answer in FILE.
complete() {
	nsenter -t "$LEADER" -n -- curl -sS --fail-with-body -m 60 http://127.0.0.1:8080/v1/completions \
		-H 'Content-Type: application/json' \
		-d "{\"prompt\": \"$PROMPT\", \"max_tokens\": $N_TOKENS, \"temperature\": 0}" >"$1"
}
# same_text FILE: the completion's text equals duet generate's.
same_text() {
	local got
	got=$PROMPT$(sed -n 's/.*"text": *"\(\([^"\\]\|\\.\)*\)".*/\1/p' "$1")
	[ "$got" = "$EXPECTED" ] || { echo "router: '$got'"; echo "generate: '$EXPECTED'"; return 1; }
}
# The decode unit's restart count reached $1 and it is active again.
restarted() {
	[ "$(unit_prop duet-decode@0.service NRestarts)" -ge "$1" ] && all_active &&
		[ "$(unit_prop duet-decode@0.service MainPID)" != "$2" ]
}
decode_alive() { # the router counts the decode node as up
	nsenter -t "$LEADER" -n -- curl -sS -m 5 http://127.0.0.1:8080/metrics |
		grep -q '^duet_node_up{node="decode-0",role="decode"} 1'
}

# ---- the container's root: this machine's, with duet installed on top ----
mount -t tmpfs -o mode=755 tmpfs "$T" || exit 1
mkdir -p "$T/upper" "$T/work" "$ROOT"
if ! mount -t overlay overlay -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$ROOT"; then
	echo "test-systemd: cannot mount an overlay of / (overlayfs)" >&2
	exit 2
fi
# nspawn refuses a container with the host's machine id.
systemd-id128 new >"$ROOT/etc/machine-id"
make -s install DESTDIR="$ROOT" PREFIX=/usr/local BUILD="$BUILD" >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log"; exit 1; }
mkdir -p "$ROOT/srv/duet/models"
"$BUILD/duet" mkmodel --shape tiny --vocab "$VOCAB" -o "$ROOT/srv/duet/models/model.gguf" 2>/dev/null ||
	{ echo "test-systemd: mkmodel failed"; exit 1; }
EXPECTED=$("$BUILD/duet" generate -m "$ROOT/srv/duet/models/model.gguf" -p "$PROMPT" \
	-n $N_TOKENS --temp 0 2>/dev/null | sed 's/\\/\\\\/g; s/"/\\"/g' | sed ':a;N;$!ba;s/\n/\\n/g')

# CURVE on every link, as the README's two-machine guide sets it up: keys
# from duet keygen, handed to each unit as credentials in a drop-in.
KEYS="$ROOT/etc/duet/keys"
mkdir -p "$KEYS"
"$BUILD/duet" keygen -d "$KEYS" router prefill-0 decode-0 >/dev/null || exit 1
cat "$KEYS/prefill-0.pub" "$KEYS/decode-0.pub" >"$KEYS/nodes.allow"
ROUTER_PUB=$(cut -d' ' -f1 "$KEYS/router.pub")
credentials() { # UNIT KEY [allow]: a drop-in loading the unit's key (and the allow-list)
	mkdir -p "$ROOT/etc/systemd/system/$1.d"
	{
		printf '[Service]\nLoadCredential=curve-key:/etc/duet/keys/%s.key\n' "$2"
		[ -z "${3:-}" ] || printf 'LoadCredential=curve-allow:/etc/duet/keys/nodes.allow\n'
	} >"$ROOT/etc/systemd/system/$1.d/curve.conf"
}
credentials duet-router.service router allow
credentials duet-prefill@0.service prefill-0
credentials duet-decode@0.service decode-0 allow

# One machine, so ipc:// endpoints in the units' RuntimeDirectory; every
# prompt goes through the prefill node (local_max_prompt 0) so one request
# crosses all three daemons. Debug level logs each request's steps. Key
# paths are relative to the configuration: the credentials directory.
cat >"$ROOT/etc/duet/router.conf" <<EOF
[router]
http_addr = 127.0.0.1
http_port = 8080
control = ipc:///run/duet-router/control.ipc
model = /srv/duet/models/model.gguf
local_max_prompt = 0
log_level = debug
curve_key = curve-key
curve_allow = curve-allow
EOF
node_conf() { # ROLE [extra lines]: /etc/duet/ROLE-0.conf
	printf '[%s]\nname = %s-0\nrouter = ipc:///run/duet-router/control.ipc\n' "$1" "$1"
	printf 'model = /srv/duet/models/model.gguf\nkv_mb = 64\nlog_level = debug\n'
	printf 'curve_key = curve-key\ncurve_router_key = %s\n%s\n' "$ROUTER_PUB" "${2:-}"
}
node_conf prefill >"$ROOT/etc/duet/prefill-0.conf"
node_conf decode "kv_endpoint = ipc:///run/duet-decode-0/kv.ipc
curve_allow = curve-allow" >"$ROOT/etc/duet/decode-0.conf"
chmod 600 "$ROOT"/etc/duet/*.conf
mkdir -p "$ROOT/etc/systemd/system/duet-decode@0.service.d"
printf '[Service]\nWatchdogSec=%ss\n' $WATCHDOG_S >"$ROOT/etc/systemd/system/duet-decode@0.service.d/test.conf"
check "systemctl enable duet.target and the three units" \
	systemctl --root="$ROOT" enable duet.target duet-router.service duet-prefill@0.service duet-decode@0.service

# ---- boot ----
# --register=no --keep-unit: no systemd on the host to register with.
systemd-nspawn --quiet --register=no --keep-unit --link-journal=no --console=pipe \
	--private-network -D "$ROOT" -b systemd.unit=duet.target >"$T/console.log" 2>&1 &
NSPAWN_PID=$!
find_leader() {
	LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd | head -1)
	[ -n "$LEADER" ]
}
if ! until_ok 20 find_leader; then
	not_ok "container boots systemd as PID 1"
	cat "$T/console.log"
	exit 1
fi
check "container boots systemd as PID 1" \
	bash -c "[ \"\$(awk '/^NSpid/ {print \$NF}' /proc/$LEADER/status)\" = 1 ]"

if until_ok $BOOT_TIMEOUT all_active; then ok "duet.target and its units become active"; else
	not_ok "duet.target and its units become active"
	in_ct systemctl --no-pager status 'duet*' 2>&1 | tail -40
	in_ct journalctl --no-pager -n 60 2>&1
	exit 1
fi
# A node's unit is active only after READY=1, which it sends once the
# router acknowledged it: so the router lists both (its /metrics snapshot
# follows within one turn of its loop).
both_listed() {
	decode_alive && nsenter -t "$LEADER" -n -- curl -sS -m 5 http://127.0.0.1:8080/metrics |
		grep -q '^duet_node_up{node="prefill-0",role="prefill"} 1'
}
check "the router knows both nodes when their units are active" until_ok 3 both_listed
check "CURVE on every link (keys loaded as credentials)" bash -c "
	nsenter -t $LEADER -m -u -i -n -p -- journalctl --no-pager -u duet-router.service | grep -q 'nodes connect to .* (CURVE)' &&
	nsenter -t $LEADER -m -u -i -n -p -- journalctl --no-pager -u 'duet-*@0.service' | grep -c 'CURVE on: public key' | grep -qx 2"
check "systemctl status shows each daemon's STATUS=" bash -c "
	for u in duet-router.service duet-prefill@0.service duet-decode@0.service; do
		s=\$(nsenter -t $LEADER -m -u -i -n -p -- systemctl show -p StatusText --value \$u)
		echo \"\$u: \$s\"; [ -n \"\$s\" ] || exit 1
	done"
check "the daemons run as the dynamic user duet" bash -c "
	for u in duet-router.service duet-prefill@0.service duet-decode@0.service; do
		p=\$(nsenter -t $LEADER -m -u -i -n -p -- systemctl show -p MainPID --value \$u)
		who=\$(nsenter -t $LEADER -m -u -i -n -p -- ps -o user= -p \$p)
		echo \"\$u: pid \$p user \$who\"; [ \"\$who\" = duet ] || exit 1
	done"

# ---- a request, and its journal across the three daemons ----
check "a completion through the router" complete "$T/r1.json"
check "it equals duet generate" same_text "$T/r1.json"
REQ=$(sed -n 's/.*"id": *"cmpl-\([0-9]*\)".*/\1/p' "$T/r1.json")
journal_has() { # UNIT NODE: an entry of UNIT with DUET_NODE=NODE for the request
	in_ct journalctl --no-pager -o export "DUET_REQUEST_ID=$REQ" _SYSTEMD_UNIT="$1" >"$T/j.$1"
	grep -qx "DUET_NODE=$2" "$T/j.$1" && grep -qx "PRIORITY=7" "$T/j.$1"
}
check "journal: request $REQ's DUET_REQUEST_ID in router, prefill and decode" bash -c "
	$(declare -f in_ct journal_has); LEADER=$LEADER; REQ=$REQ; T=$T
	journal_has duet-router.service router && journal_has duet-prefill@0.service prefill-0 &&
	journal_has duet-decode@0.service decode-0"

# ---- kill -9 the decode node ----
pid0=$(unit_prop duet-decode@0.service MainPID)
in_ct kill -KILL "$pid0"
check "kill -9 decode: systemd restarts it" until_ok $STEP_TIMEOUT restarted 1 "$pid0"
check "kill -9 decode: the router takes it back" until_ok $STEP_TIMEOUT decode_alive
check "kill -9 decode: a completion after the restart equals duet generate" \
	bash -c "$(declare -f complete same_text); LEADER=$LEADER; PROMPT='$PROMPT'; N_TOKENS=$N_TOKENS
		EXPECTED='$EXPECTED'; complete $T/r2.json && same_text $T/r2.json"

# ---- a hung decode node: the watchdog ----
pid1=$(unit_prop duet-decode@0.service MainPID)
in_ct kill -STOP "$pid1"
check "SIGSTOP decode: systemd's watchdog ($WATCHDOG_S s) kills and restarts it" \
	until_ok $STEP_TIMEOUT restarted 2 "$pid1"
check "SIGSTOP decode: the journal names the watchdog" bash -c \
	"nsenter -t $LEADER -m -u -i -n -p -- journalctl --no-pager -u duet-decode@0.service | grep -i 'watchdog timeout'"
check "SIGSTOP decode: served again after the restart" until_ok $STEP_TIMEOUT \
	bash -c "$(declare -f complete same_text); LEADER=$LEADER; PROMPT='$PROMPT'; N_TOKENS=$N_TOKENS
		EXPECTED='$EXPECTED'; complete $T/r3.json && same_text $T/r3.json"

# ---- stop ----
in_ct systemctl stop duet.target
# systemctl returns when the target's own job is done; the units' stop
# jobs (PartOf=, the router last) may still be running.
stopped_clean() {
	local u st
	for u in duet-router.service duet-prefill@0.service duet-decode@0.service; do
		st=$(in_ct systemctl show -p ActiveState -p Result -p ExecMainStatus "$u" | sort | tr '\n' ' ')
		echo "$u: $st"
		[ "$st" = 'ActiveState=inactive ExecMainStatus=0 Result=success ' ] || return 1
	done
}
until_ok $STEP_TIMEOUT stopped_clean
check "systemctl stop duet.target: each unit drained and exited 0" stopped_clean

if [ $failures -ne 0 ]; then
	echo "--- console"
	tail -20 "$T/console.log"
	echo "--- journal of the duet units"
	in_ct journalctl --no-pager -u 'duet*' -n 80 2>&1
fi
echo "test-systemd: $failures failed"
[ $failures -eq 0 ]
