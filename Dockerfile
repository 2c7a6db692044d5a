# syntax=docker/dockerfile:1
#
# One image for every OnAir role: the container's first argument picks it
# (`auth`, `room`, `stream`, `media`, `gateway`, `dev`, `token`).
#
#   docker build -t ghcr.io/onair-dev/onair:dev .
#   docker run --rm ghcr.io/onair-dev/onair:dev gateway -h

# Must be at least the go directive of go.mod: the golang images set
# GOTOOLCHAIN=local, so an older toolchain refuses to build.
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o /onair ./cmd/onair

# No shell, no package manager; CA certificates and tzdata only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /onair /onair
# The distroless "nonroot" user, given by number so that Kubernetes can
# verify runAsNonRoot (it refuses a non-numeric USER such as "nonroot").
USER 65532:65532
# 8080 gateway HTTP, 9090 gRPC, 8081 /metrics and /healthz of the services,
# 7882/udp the media edge's WebRTC (ICE UDP mux).
EXPOSE 8080 8081 9090 7882/udp
ENTRYPOINT ["/onair"]
