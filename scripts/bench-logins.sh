#!/usr/bin/env bash
# Runs onair bench logins against a fresh `onair cluster` of the given
# binary: every process of the cluster is measured (CPU from /proc), etcd
# revisions per cycle from its members. The A/B comparisons in the notes
# run it for two binaries in turn, in one sitting.
#
#   scripts/bench-logins.sh BIN [bench logins flags, e.g. --workers 64 --duration 15s --rate 300]
#
# The cluster listens on 127.0.0.1 from BASE_PORT (default 26000; keep it
# below the ephemeral range) and keeps its data in a temporary directory,
# removed afterwards. PPROF_BASE_PORT, when set, is passed on as
# --pprof-base-port (profiles of the members and replicas).
set -euo pipefail
BIN=$1; shift
BASE=${BASE_PORT:-26000}
D=$(mktemp -d)
extra=()
[[ -n "${PPROF_BASE_PORT:-}" ]] && extra+=(--pprof-base-port "$PPROF_BASE_PORT")
"$BIN" cluster --data-dir "$D/cluster" --base-port "$BASE" --http-addr 127.0.0.1:$((BASE + 40)) \
  --allow-local-callbacks "${extra[@]}" >"$D/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 300); do grep -q '^CLUSTER ' "$D/log" && break; sleep 0.3; done
line=$(grep '^CLUSTER ' "$D/log" | head -1 | cut -d' ' -f2-)
[[ -n "$line" ]] || { cat "$D/log" >&2; exit 1; }
read -r rooms pids etcd app secret admin auth < <(python3 -c '
import json, sys
c = json.loads(sys.argv[1])
ps = c["processes"]
print(",".join(p["grpc_addr"] for p in ps if p["role"] == "room"),
      ",".join(str(p["pid"]) for p in ps),
      ",".join(c["etcd_endpoints"]), c["app_id"], c["server_secret"], c["admin_key"],
      next(p["grpc_addr"] for p in ps if p["role"] == "auth"))' "$line")
"$BIN" bench logins --server "$rooms" --app-id "$app" --app-secret "$secret" --etcd-endpoints "$etcd" \
  --server-pid "$pids" --auth-server "$auth" --admin-key "$admin" "$@" 2>&1
