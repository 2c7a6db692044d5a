#!/usr/bin/env bash
# What a viewer sees on shaped links (issue 20, "What it must show"): runs
# `onair bench fanout` once per link condition, three players each, against
# `onair dev`, all inside a network namespace of its own (`unshare -n`; needs
# root), and prints one table: a row per condition with what its players saw
# (the "all" row of each run's viewer table; see bench/viewer).
#
# usage: scripts/bench-shaped.sh [--warmup 10s] [--duration 60s] [--players 3]
#                                [--simulcast] [--layer auto] [--only REGEX]
#                                [--livekit] [--keep-logs] [--condition COND]...
#
# The conditions (netshape's link syntax; see `onair bench fanout -h`):
#   clean; 1mbit,rtt=40ms; 350kbit,rtt=40ms; loss=5%,rtt=100ms; and a cap
#   that drops from 3 Mbit/s to 700 kbit/s a third into the window and comes
#   back at two thirds (3mbit->700kbit@20s->3mbit@40s for a 60 s window).
# --condition COND (repeatable) runs COND instead of these, e.g. a fixed
# 3mbit link where the top layer (with audio ~93 % of it) sits at the margin.
#
# --livekit also runs each condition against LiveKit with the bench/livekit
# module (a separate Go module; it builds and starts its own LiveKit server),
# called as
#   (cd bench/livekit && go run . --shape COND --players N --warmup W --duration D --pli-after 500ms [--simulcast])
# (--pli-after 500ms: its players ask for a keyframe when their picture is
# stuck, as OnAir's do, viewer.KeyframeWait; the publishers of both answer)
# which must print the same viewer table (viewer.WriteTable, with an "all"
# row). Set LIVEKIT_BENCH to run another command with those arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

warmup=10s duration=60s players=3 simulcast= layer= only= livekit= keep=
custom=()
while [ $# -gt 0 ]; do
  case $1 in
    --warmup) warmup=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --players) players=$2; shift 2 ;;
    --simulcast) simulcast=--simulcast; shift ;;
    --layer) layer=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --livekit) livekit=1; shift ;;
    --keep-logs) keep=1; shift ;;
    --condition) custom+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Into a network namespace of our own: tc shapes only its loopback.
if [ -z "${ONAIR_SHAPED_NETNS:-}" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench-shaped.sh needs root: it creates a network namespace (unshare -n) and shapes its lo with tc" >&2
    exit 1
  fi
  args=(--warmup "$warmup" --duration "$duration" --players "$players")
  [ -n "$simulcast" ] && args+=(--simulcast)
  [ -n "$layer" ] && args+=(--layer "$layer")
  [ -n "$only" ] && args+=(--only "$only")
  [ -n "$livekit" ] && args+=(--livekit)
  [ -n "$keep" ] && args+=(--keep-logs)
  for c in ${custom[@]+"${custom[@]}"}; do args+=(--condition "$c"); done
  exec unshare -n env ONAIR_SHAPED_NETNS=1 "$0" "${args[@]}"
fi
ip link set lo up

work=$(mktemp -d)
dev_pid=
cleanup() {
  [ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  if [ -n "$keep" ]; then echo "logs in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

bin=${ONAIR_BIN:-}
if [ -z "$bin" ]; then
  bin=$work/onair
  go build -o "$bin" ./cmd/onair
fi

# A cap that drops a third into the window and comes back at two thirds.
secs() { # a Go duration in whole seconds (s, m, ms)
  case $1 in
    *ms) echo $(( ${1%ms} / 1000 )) ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}
d=$(secs "$duration")
conditions=(
  "clean"
  "1mbit,rtt=40ms"
  "350kbit,rtt=40ms"
  "loss=5%,rtt=100ms"
  "3mbit->700kbit@$((d / 3))s->3mbit@$((2 * d / 3))s"
)
[ ${#custom[@]} -gt 0 ] && conditions=("${custom[@]}")

http=127.0.0.1:8080
"$bin" dev --data-dir "$work/dev" --http-addr "$http" --grpc-addr 127.0.0.1:9090 \
  --media-udp-port 50000 --log-level warn >"$work/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 100); do
  curl -sf "http://$http/readyz" >/dev/null 2>&1 && break
  kill -0 "$dev_pid" 2>/dev/null || { cat "$work/dev.log" >&2; exit 1; }
  sleep 0.2
done
app_id=$(jq -r .app_id "$work/dev/dev-app.json")
secret=$(jq -r .server_secret "$work/dev/dev-app.json")
token=$("$bin" token --app-id "$app_id" --app-secret "$secret" --user-id bench | awk '{print $NF}' | tail -1)

rows=$work/rows
: >"$rows"
n=0
for cond in "${conditions[@]}"; do
  if [ -n "$only" ] && ! [[ $cond =~ $only ]]; then continue; fi
  n=$((n + 1))
  stream=shaped$n
  echo "== OnAir: $cond" >&2
  out=$work/onair-$n.txt
  "$bin" bench fanout --whip "http://$http/whip/$app_id/bench/$stream" --whep "http://$http/whep/$app_id/$stream" \
    --token "$token" --players "$players" --late 0 --warmup "$warmup" --duration "$duration" \
    --shape "$cond" --pli $simulcast ${layer:+--layer "$layer"} --server-pid "$dev_pid" >"$out" 2>"$work/onair-$n.err" ||
    { cat "$out" "$work/onair-$n.err" >&2; exit 1; }
  cat "$out" >&2
  awk -v s=OnAir '$1 == "all" { $1 = s; print }' "$out" >>"$rows"

  if [ -n "$livekit" ]; then
    echo "== LiveKit: $cond" >&2
    out=$work/livekit-$n.txt
    lk=(--shape "$cond" --players "$players" --warmup "$warmup" --duration "$duration" --pli-after 500ms $simulcast)
    if [ -n "${LIVEKIT_BENCH:-}" ]; then
      $LIVEKIT_BENCH "${lk[@]}" >"$out"
    else
      (cd bench/livekit && go run . "${lk[@]}") >"$out"
    fi
    cat "$out" >&2
    awk -v s=LiveKit '$1 == "all" { $1 = s; print }' "$out" >>"$rows"
  fi
done

echo
echo "$players players per link, $duration after $warmup warm-up$([ -n "$simulcast" ] && echo ", simulcast")"
{
  echo "server link fps freezes frozen frozen% kbit/s layer layer-at first-stable lost"
  cat "$rows"
} | column -t
