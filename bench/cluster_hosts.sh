# shellcheck shell=bash
# bench_cluster.sh's NETNS=1 clusters (sourced): each daemon on its own
# host, a network namespace joined to a bridge (tests/netns.sh), with CURVE
# on every ZeroMQ link as tcp between hosts requires, and each node host
# given a share of one CPU's time by a cgroup's CPU quota (cpu.max, or
# cpu.cfs_quota_us on cgroup v1): a compute-heavy prefill host and a
# lighter decode host, as Splitwise provisions the two phases, against
# two equal colocated hosts with the same total CPU time.
#
#   router  10.78.0.10  the router, on AUX_CPU, no quota
#   p0      10.78.0.21  disaggregated: the prefill node, CPU 0, CPU_PREFILL
#   d0      10.78.0.31  disaggregated: the decode node, CPU 1, CPU_DECODE;
#                       colocated: a colocated node, CPU 1, CPU_COLOCATED
#   d1      10.78.0.32  colocated: the other colocated node, CPU 0,
#                       CPU_COLOCATED
# The load generator runs in the caller's namespace (on the bridge,
# 10.78.0.1), on AUX_CPU.
#
# Uses from bench_cluster.sh: BUILD, MODEL, OUT, CHUNK, PREFILL_CHUNK, UP_TRACE, AUX_CPU.
# Environment: CPU_PREFILL [1.0], CPU_DECODE [0.7: at 0.5 the decode host's
# steps ran 1.5x colocated's and a fifth of the code trace's requests
# missed their TBT SLO, BENCHMARKS.md 2026-12-04], CPU_COLOCATED [half
# their sum], CG_PERIOD_US: the quota's period [10000; short, so that a
# throttled node pauses for milliseconds, not the default 100 ms period's
# tens of them, and runs like a slower CPU].
CPU_PREFILL=${CPU_PREFILL:-1.0}
CPU_DECODE=${CPU_DECODE:-0.7}
CPU_COLOCATED=${CPU_COLOCATED:-$(awk -v p="$CPU_PREFILL" -v d="$CPU_DECODE" 'BEGIN { print (p + d) / 2 }')}
CG_PERIOD_US=${CG_PERIOD_US:-10000}
NS_PREFIX=duetb
BR=duetbbr0
NET=10.78.0
declare -A IP=([router]=10 [p0]=21 [d0]=31 [d1]=32)
HOSTS="router p0 d0 d1"
HTTP_PORT=8080
CG_NAME=duet-bench
# shellcheck source=tests/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/../tests/netns.sh"

declare -A HOST_PID

cg_v2() { [ -f /sys/fs/cgroup/cgroup.controllers ]; }
cg_dir() { # HOST
	if cg_v2; then echo "/sys/fs/cgroup/$CG_NAME/$1"; else echo "/sys/fs/cgroup/cpu/$CG_NAME/$1"; fi
}

# HOST FRACTION: the host's cgroup may run FRACTION of one CPU's time.
cg_quota() {
	local d quota
	d=$(cg_dir "$1")
	quota=$(awk -v f="$2" -v p="$CG_PERIOD_US" 'BEGIN { printf "%d", f * p + 0.5 }')
	if cg_v2; then
		echo "$quota $CG_PERIOD_US" >"$d/cpu.max"
	else
		echo "$CG_PERIOD_US" >"$d/cpu.cfs_period_us" && echo "$quota" >"$d/cpu.cfs_quota_us"
	fi
}

cg_setup() {
	local top h
	if cg_v2; then
		top=/sys/fs/cgroup/$CG_NAME
		grep -qw cpu /sys/fs/cgroup/cgroup.controllers || { echo "cgroup v2 has no cpu controller" >&2; return 1; }
		echo +cpu >/sys/fs/cgroup/cgroup.subtree_control || return 1
		mkdir -p "$top" && echo +cpu >"$top/cgroup.subtree_control" || return 1
	else
		top=/sys/fs/cgroup/cpu/$CG_NAME
		[ -d /sys/fs/cgroup/cpu ] || { echo "no cpu cgroup controller mounted" >&2; return 1; }
		mkdir -p "$top" || return 1
	fi
	for h in p0 d0 d1; do mkdir -p "$top/$h" || return 1; done
}

cg_teardown() {
	local top h
	top=$(dirname "$(cg_dir p0)")
	for h in p0 d0 d1; do rmdir "$top/$h" 2>/dev/null; done
	rmdir "$top" 2>/dev/null
	return 0
}

hosts_cleanup() {
	set +e # (an EXIT trap: everything is tried)
	hosts_stop
	teardown_net
	cg_teardown
}

# NAME VALUE: VALUE is a share of one CPU's time, in (0, 1].
cpu_share() {
	awk -v v="$2" 'BEGIN { exit !(v ~ /^([0-9]+\.?[0-9]*|\.[0-9]+)$/ && v > 0 && v <= 1) }' ||
		{ echo "bench-cluster: $1=$2: not a share of one CPU in (0, 1]" >&2; return 1; }
}

# The hosts, their cgroups and the CURVE keys (once per benchmark).
hosts_init() {
	cpu_share CPU_PREFILL "$CPU_PREFILL" && cpu_share CPU_DECODE "$CPU_DECODE" &&
		cpu_share CPU_COLOCATED "$CPU_COLOCATED" || return 1
	# (the kernel takes periods of 1 ms to 1 s)
	if ! [[ "$CG_PERIOD_US" =~ ^[0-9]+$ ]] || [ "$CG_PERIOD_US" -lt 1000 ] || [ "$CG_PERIOD_US" -gt 1000000 ]; then
		echo "bench-cluster: CG_PERIOD_US=$CG_PERIOD_US: not microseconds in 1000-1000000" >&2
		return 1
	fi
	[ "$(id -u)" = 0 ] || { echo "bench-cluster: NETNS=1 needs root" >&2; return 1; }
	[ "$(nproc)" -ge 2 ] || { echo "bench-cluster: NETNS=1 needs 2 CPUs" >&2; return 1; }
	make_net || return 1
	cg_setup || return 1
	KEYS=$OUT/keys
	mkdir -p "$KEYS"
	rm -f "$KEYS"/*
	"$BUILD/duet" keygen -d "$KEYS" router p0 d0 d1 >/dev/null || return 1
	cat "$KEYS"/{p0,d0,d1}.pub >"$KEYS/nodes.allow"
	cp "$KEYS/p0.pub" "$KEYS/prefill.allow"
	echo "hosts: router on CPU $AUX_CPU; disaggregated: prefill host p0 CPU 0 at $CPU_PREFILL of its time, decode host d0 CPU 1 at $CPU_DECODE; colocated: d0 CPU 1 and d1 CPU 0 at $CPU_COLOCATED each (cgroup quota, period $CG_PERIOD_US us)"
}

# HOST CPU LOG, then the command: runs it in the host's cgroup (the
# router's host has none) and namespace, pinned to CPU; HOST_PID[HOST] is
# the command itself (each wrapper execs the next). The cgroup is joined
# first: ip netns exec mounts the namespace's own /sys, without cgroups.
host_run() {
	local h=$1 cpu=$2 log=$3 cg=
	shift 3
	[ "$h" = router ] || cg=$(cg_dir "$h")/cgroup.procs
	# shellcheck disable=SC2016 # the inner shell expands them
	sh -c '[ -z "$1" ] || echo $$ >"$1" || exit 1; shift; exec ip netns exec "$@"' \
		sh "$cg" "$(ns "$h")" taskset -c "$cpu" "$@" >"$log" 2>&1 &
	HOST_PID[$h]=$!
}

host_node() { # HOST ROLE(prefill|decode) CPU DIR
	local h=$1 role=$2 cpu=$3 dir=$4 chunk=$CHUNK
	[ "$role" = prefill ] && chunk=$PREFILL_CHUNK
	local args=(--model "$MODEL" --name "$h" --router "tcp://$NET.${IP[router]}:5555"
		--threads 1 --cpus "$cpu" --kv-mb 2048 --kv-prefault=true --max-batch-tokens="$chunk"
		--curve-key "$KEYS/$h.key" --curve-router-key "$KEYS/router.pub")
	if [ "$role" = decode ]; then
		args+=(--kv-endpoint "tcp://$NET.${IP[$h]}:5601" --curve-allow "$KEYS/prefill.allow")
	fi
	if [ "$UP_TRACE" = 1 ]; then args+=(--trace="$dir/$h.trace.json"); fi
	host_run "$h" "$cpu" "$dir/$h.log" "$BUILD/duet-$role" "${args[@]}"
}

# NAME(colocated|disaggregated) OBJ_TTFT_MS OBJ_TBT_MS: the router and the
# configuration's two nodes, up and registered.
hosts_start() {
	local cfg=$1 dir=$OUT/$1-run policy=length-aware
	mkdir -p "$dir"
	rm -f "$dir"/*.log
	local rargs=(--model "$MODEL" --control "tcp://$NET.${IP[router]}:5555"
		--http-addr "$NET.${IP[router]}" --http-port "$HTTP_PORT"
		--curve-key "$KEYS/router.key" --curve-allow "$KEYS/nodes.allow")
	if [ "$cfg" = colocated ]; then policy=colocated; fi
	rargs+=(--policy "$policy")
	if [ "$2" -gt 0 ]; then rargs+=(--slo-ttft-ms="$2"); fi
	if [ "$3" -gt 0 ]; then rargs+=(--slo-tbt-ms="$3"); fi
	if [ "$UP_TRACE" = 1 ]; then rargs+=(--trace="$dir/router.trace.json"); fi
	host_run router "$AUX_CPU" "$dir/router.log" "$BUILD/duet-router" "${rargs[@]}"
	if [ "$cfg" = colocated ]; then
		cg_quota d0 "$CPU_COLOCATED" && cg_quota d1 "$CPU_COLOCATED" || return 1
		host_node d0 decode 1 "$dir"
		host_node d1 decode 0 "$dir"
	else
		cg_quota p0 "$CPU_PREFILL" && cg_quota d0 "$CPU_DECODE" || return 1
		host_node p0 prefill 0 "$dir"
		host_node d0 decode 1 "$dir"
	fi
	local up
	for _ in $(seq 1 600); do
		up=$(curl -sS -m 2 "$URL/metrics" 2>/dev/null | grep -c '^duet_node_up{.*} 1$' || true)
		[ "$up" = 2 ] && return 0
		sleep 0.1
	done
	echo "bench-cluster: the $cfg hosts did not come up; logs in $dir" >&2
	tail -n 5 "$dir"/*.log >&2
	return 1
}

hosts_stop() {
	stop_pids "${HOST_PID[@]}"
	HOST_PID=()
}

URL=http://$NET.${IP[router]}:$HTTP_PORT
