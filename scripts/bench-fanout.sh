#!/usr/bin/env bash
# Runs onair bench fanout against a fresh `onair dev` of the given binary,
# its CPU and memory read from /proc of that process: the A/B comparisons
# in the notes run it for two binaries in turn, in one sitting.
#
#   scripts/bench-fanout.sh BIN PLAYERS [bench fanout flags, e.g. --simulcast --layer high]
#
# Everything listens on 127.0.0.1 (gRPC 19090, HTTP 18080); the dev data
# goes to a temporary directory, removed afterwards.
set -euo pipefail
BIN=$1; N=$2; shift 2
APP=1234567; SECRET=0123456789abcdef0123456789abcdef
D=$(mktemp -d)
"$BIN" dev --data-dir "$D" --app-id $APP --app-secret $SECRET --grpc-addr 127.0.0.1:19090 --http-addr 127.0.0.1:18080 >"$D/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.2; done
TOK=$("$BIN" token --app-id $APP --app-secret $SECRET --user-id bench --room-id r --publish)
"$BIN" bench fanout --whip http://127.0.0.1:18080/whip/$APP/r/s1 --whep http://127.0.0.1:18080/whep/$APP/s1 \
  --token "$TOK" --players "$N" --duration 20s --server-pid $PID "$@" 2>&1
