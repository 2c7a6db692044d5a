#!/usr/bin/env bash
# Runs lkbench against a fresh livekit-server, both inside a network namespace
# whose only interface is lo (so nothing can leave loopback, and netshape may
# put tc on that lo): a new one (unshare -n), or the caller's when it is
# already in such a namespace (scripts/bench-shaped.sh; then every module
# must already be in the module cache: run this once outside first).
# Arguments go to lkbench:
#
#   bench/livekit/run.sh                                # clean link
#   bench/livekit/run.sh --shape 1mbit,rtt=40ms
#
# Needs root (unshare -n, tc) and the server from
# shared/peers/livekit/build.sh (LK_SERVER overrides its path). The server's
# log goes to $LK_LOG (default: a temporary file, named at the end).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lo_only() { [ "$(awk -F: 'NR > 2 { gsub(/ /, "", $1); print $1 }' /proc/self/net/dev)" = lo ]; }
if [ -z "${LKBENCH_BIN:-}" ]; then
	"$here/sdk.sh"
	out=$(mktemp -d)
	(cd "$here" && GOTOOLCHAIN=local go build -o "$out/lkbench" ./cmd/lkbench)
	export LKBENCH_BIN=$out/lkbench LK_LOG=${LK_LOG:-$out/livekit.log}
	if ! lo_only; then
		# Built outside: the module proxy is not reachable inside.
		exec unshare -n "$0" "$@"
	fi
fi
lo_only || { echo "run.sh: not in a network namespace whose only interface is lo" >&2; exit 1; }
LK=${LK_SERVER:-$HOME/.cache/onair-peers/livekit-server}
ip link set lo up
"$LK" --dev --bind 127.0.0.1 --config "$here/livekit.yaml" >"$LK_LOG" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; echo "livekit-server log: $LK_LOG" >&2' EXIT
for _ in $(seq 100); do
	if (exec 3<>/dev/tcp/127.0.0.1/7880) 2>/dev/null; then
		break
	fi
	sleep 0.1
done
"$LKBENCH_BIN" "$@"
