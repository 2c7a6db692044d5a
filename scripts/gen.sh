#!/usr/bin/env bash
# Regenerates the Go code and the OpenAPI document from proto/. The protoc
# plugins are the versions pinned by the tool directives in go.mod; protoc is
# Debian's protobuf-compiler (3.21.12 on bookworm).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN="$bin" go install tool
export PATH="$bin:$PATH"

protos=$(cd proto && find onair -name '*.proto' | sort)
# Generated files go first, so that one whose source is gone (a service whose
# last HTTP route was removed has no .pb.gw.go) does not linger.
find proto/onair \( -name '*.pb.go' -o -name '*.pb.gw.go' \) -delete
gw=grpc_api_configuration=gateway.yaml
(
  cd proto
  protoc -I . \
    --go_out=. --go_opt=paths=source_relative \
    --go-grpc_out=. --go-grpc_opt=paths=source_relative \
    --grpc-gateway_out=. --grpc-gateway_opt=paths=source_relative,$gw,generate_unbound_methods=false \
    --openapiv2_out=../gateway/openapi --openapiv2_opt=$gw,allow_merge=true,merge_file_name=onair,remove_internal_comments=true \
    $protos
)
