#!/usr/bin/env bash
# Builds lkbench and runs it (it starts and stops its own livekit-server,
# shared/peers/livekit/build.sh's, with livekit.yaml) inside a network
# namespace whose only interface is lo, so nothing can leave loopback and
# netshape may put tc on that lo: a new one (unshare -n), or the caller's when
# it is already in such a namespace (scripts/bench-shaped.sh, with
# LIVEKIT_BENCH=bench/livekit/run.sh; then every module must already be in
# the module cache: run this once outside first). Arguments go to lkbench:
#
#   bench/livekit/run.sh                                # clean link
#   bench/livekit/run.sh --shape 1mbit,rtt=40ms
#
# Needs root (unshare -n, tc).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lo_only() { [ "$(awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' /proc/self/net/dev)" = lo ]; }
if [ -z "${LKBENCH_BIN:-}" ]; then
	"$here/sdk.sh"
	out=$(mktemp -d)
	(cd "$here" && GOTOOLCHAIN=local go build -o "$out/lkbench" .)
	export LKBENCH_BIN=$out/lkbench
	if ! lo_only; then
		# Built outside: the module proxy is not reachable inside.
		exec unshare -n "$0" "$@"
	fi
fi
lo_only || { echo "run.sh: not in a network namespace whose only interface is lo" >&2; exit 1; }
ip link set lo up
exec "$LKBENCH_BIN" "$@"
