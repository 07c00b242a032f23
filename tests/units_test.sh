#!/bin/bash
# make install into a temporary root, then what can be checked without
# booting: systemd-analyze verify of every unit, the hardening's exposure
# score, the man pages, --version, and make uninstall. (tests/systemd_boot.sh
# runs the units under a real systemd.) Prints "ok - NAME" / "not ok - NAME"
# per check (counted by run.sh). Usage: units_test.sh BUILD_DIR
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build}
MAX_EXPOSURE=2.0 # systemd-analyze security: 0 (locked down) .. 10 (none)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
R=$TMP/root
UNITS="duet-router.service duet-prefill@0.service duet-decode@0.service"
CHECK_DIR=$TMP
. tests/checks.sh

check "make install DESTDIR PREFIX" make -s install DESTDIR="$R" PREFIX=/usr/local BUILD="$BUILD"
# verify resolves dependencies (sysinit.target, ...) inside the root: give
# it systemd's own units (in /usr/lib, apart from duet's in /usr/local/lib).
mkdir -p "$R/usr/lib/systemd" "$R/srv/duet"
cp -a /usr/lib/systemd/system "$R/usr/lib/systemd/" 2>/dev/null || cp -a /lib/systemd/system "$R/usr/lib/systemd/"
check "units installed with the binary paths filled in" bash -c "
	grep -q '^ExecStart=/usr/local/bin/duet-prefill ' '$R/usr/local/lib/systemd/system/duet-prefill@.service' &&
	! grep -r '@BINDIR@' '$R/usr/local/lib/systemd/system/'"
for u in $UNITS duet.target; do
	check "systemd-analyze verify $u" systemd-analyze verify --man=no --root="$R" "$u"
done
exposure() { # unit: its overall exposure is at most MAX_EXPOSURE
	local s
	s=$(systemd-analyze security --offline=true --root="$R" "$1" 2>&1 |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	echo "$1: exposure $s"
	[ -n "$s" ] && awk -v s="$s" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'
}
for u in $UNITS; do
	check "systemd-analyze security $u: exposure <= $MAX_EXPOSURE" exposure "$u"
done
check "the instance name picks the configuration" bash -c "
	SYSTEMD_LOG_LEVEL=err systemd-analyze verify --man=no --root='$R' duet-decode@7.service &&
	grep -q 'LoadCredential=config:/etc/duet/decode-%i.conf' '$R/usr/local/lib/systemd/system/duet-decode@.service'"
check "example configurations in /etc/duet and the docs" bash -c "
	for f in router.conf prefill-0.conf decode-0.conf; do
		[ -s '$R/etc/duet/'\$f ] && [ -s '$R/usr/local/share/doc/duet/examples/'\$f ] || exit 1
	done"
check "man pages render, one per program and duet command" bash -c "
	for p in duet duet-prefill duet-decode duet-router duet-generate duet-replay duet-up; do
		man -l '$R/usr/local/share/man/man1/'\$p.1 2>/dev/null | grep -q '^SYNOPSIS' || { echo \$p; exit 1; }
	done
	man -l '$R/usr/local/share/man/man1/duet-decode.1' | grep -q -- '--kv-endpoint'"
check "--version of every installed program" bash -c "
	v=\$(sed -n 's/^#define DUET_VERSION \"\(.*\)\"/\1/p' common/base/version.h)
	for p in duet duet-prefill duet-decode duet-router; do
		[ \"\$('$R/usr/local/bin/'\$p --version)\" = \"\$p \$v\" ] || exit 1
	done"
echo "edited" >>"$R/etc/duet/router.conf"
check "a second make install keeps edited configurations" bash -c "
	make -s install DESTDIR='$R' PREFIX=/usr/local BUILD='$BUILD' && tail -1 '$R/etc/duet/router.conf' | grep -qx edited"
check "make uninstall removes all but the configurations" bash -c "
	make -s uninstall DESTDIR='$R' PREFIX=/usr/local BUILD='$BUILD' >/dev/null || exit 1
	left=\$(find '$R/usr/local' '$R/etc' -type f ! -path '$R/etc/duet/*')
	[ -z \"\$left\" ] || { echo \"left: \$left\"; exit 1; }
	[ -s '$R/etc/duet/router.conf' ]"
exit $((failures > 0))
