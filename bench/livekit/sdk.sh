#!/usr/bin/env bash
# Lays out ./.lksdk: LiveKit's Go SDK (github.com/livekit/server-sdk-go/v2 at
# $VER) from the Go module proxy with lksdk.patch applied, which go.mod's
# replace points at. The patch adds one connect option, WithSettingEngine, that
# hands the caller each peer connection's pion SettingEngine: the SDK builds its
# own and offers no way to choose the network, the ports or loopback candidates,
# and lkbench's players need all three (a netshape Net, a pinned UDP port for
# tc, candidates on lo inside a network namespace). Nothing else changes.
#
#   ./sdk.sh      # once, before go build; again after a change of $VER or the patch
set -euo pipefail
cd "$(dirname "$0")"
VER=v2.19.0
stamp=.lksdk/.onair-patched-$VER-$(sha256sum lksdk.patch | cut -c1-12)
if [ -f "$stamp" ]; then
	exit 0
fi
export GOTOOLCHAIN=local
dir=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "github.com/livekit/server-sdk-go/v2@$VER" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
	echo "sdk.sh: could not download github.com/livekit/server-sdk-go/v2@$VER" >&2
	exit 1
fi
rm -rf .lksdk
cp -r "$dir" .lksdk
chmod -R u+w .lksdk
patch -s -p1 -d .lksdk <lksdk.patch
touch "$stamp"
