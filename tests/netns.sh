# shellcheck shell=bash
# Hosts on one machine: a network namespace each, joined by veth links to
# a bridge in the caller's namespace. Sourced by tests/cluster_netns.sh
# (make test-cluster) and bench/bench_cluster.sh (NETNS=1); needs root
# and iproute2.
#
# The caller sets, before calling any function:
#   NS_PREFIX  namespace names are NS_PREFIX-HOST (a host's link to the
#              bridge is dv-HOST in the caller's namespace)
#   BR         the bridge's name          NET  the /24's first three octets
#   IP         associative array: HOST -> last octet of its address
#   HOSTS      the hosts, space-separated
# The bridge itself is NET.1.

ns() { echo "$NS_PREFIX-$1"; }
in_ns() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }

# Every host's namespace and link, and the bridge (leftovers of an
# interrupted run too; quiet when there are none).
teardown_net() {
	local h
	for h in $HOSTS; do
		ip netns del "$(ns "$h")" 2>/dev/null
		ip link del "dv-$h" 2>/dev/null
	done
	ip link del "$BR" 2>/dev/null
	return 0
}

make_bridge() {
	ip link add "$BR" type bridge || return 1
	ip addr add "$NET.1/24" dev "$BR" || return 1
	ip link set "$BR" up
}

make_host() { # HOST: its namespace, and a veth from it to the bridge
	local h=$1
	ip netns add "$(ns "$h")" || return 1
	ip link add "dv-$h" type veth peer name eth0 netns "$(ns "$h")" || return 1
	ip link set "dv-$h" master "$BR" up
	in_ns "$h" ip addr add "$NET.${IP[$h]}/24" dev eth0
	in_ns "$h" ip link set eth0 up
	in_ns "$h" ip link set lo up
}

# PID...: SIGTERM to each, then SIGKILL to any still running 10 s later;
# reaped. Never fails (a process already gone is no error: callers run
# under set -e).
stop_pids() {
	local p
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "$@"; do
		for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	return 0
}

# The bridge and every host of HOSTS, after removing leftovers.
make_net() {
	teardown_net
	make_bridge || return 1
	local h
	for h in $HOSTS; do make_host "$h" || return 1; done
}
