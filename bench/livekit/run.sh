#!/usr/bin/env bash
# Runs lkbench against a fresh livekit-server, both inside a new network
# namespace whose only interface is lo (so nothing can leave loopback, and
# netshape may put tc on that lo). Arguments go to lkbench:
#
#   bench/livekit/run.sh                                # clean link
#   bench/livekit/run.sh --shape 1mbit,rtt=40ms
#
# Needs root (unshare -n, tc) and the server from
# shared/peers/livekit/build.sh (LK_SERVER overrides its path). The server's
# log goes to $LK_LOG (default: a temporary file, printed at the end).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${LKBENCH_IN_NS:-}" ]; then
	# Build outside the namespace: the module proxy is not reachable inside.
	"$here/sdk.sh"
	out=$(mktemp -d)
	(cd "$here" && GOTOOLCHAIN=local go build -o "$out/lkbench" ./cmd/lkbench)
	exec env LKBENCH_IN_NS=1 LKBENCH_BIN="$out/lkbench" LK_LOG="${LK_LOG:-$out/livekit.log}" unshare -n "$0" "$@"
fi
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
