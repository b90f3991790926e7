#!/usr/bin/env bash
# Regenerates the Go code for the canary.v1 API from proto/canary/v1/*.proto.
#
# Usage: proto/gen.sh            (from anywhere inside the repo)
#
# The generators are pinned and installed with `go install` into proto/.bin
# (git-ignored), so the only prerequisites are Go and the Go module proxy.
# Building buf takes a few minutes the first time; later runs reuse the binaries.
# The script lints first (buf lint, STANDARD) and then regenerates; the
# generated *.pb.go and *.pb.gw.go files and the OpenAPI description
# (docs/api/canary.swagger.json) are committed.
#
# google/api/{annotations,http}.proto are vendored unchanged from
# googleapis/googleapis (commit f8291d2b89f0017ab078a4c7378069bae5686f6f,
# Apache-2.0), and protoc-gen-openapiv2/options/*.proto from the
# grpc-gateway module (v2.34.0, BSD-3-Clause), so that the build needs no
# schema registry; buf lint ignores them.
set -euo pipefail

BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
GRPC_GATEWAY_VERSION=v2.34.0

cd "$(dirname "$0")"
BIN="$PWD/.bin"
mkdir -p "$BIN"

# install NAME PKG VERSION: go install PKG@VERSION unless BIN already has that version.
install() {
  local name=$1 pkg=$2 version=$3
  local stamp="$BIN/.$name.version"
  if [[ -x "$BIN/$name" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
    return
  fi
  echo "gen.sh: installing $pkg@$version" >&2
  GOBIN="$BIN" GOFLAGS=-mod=mod go install "$pkg@$version"
  echo "$version" >"$stamp"
}

install buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
install protoc-gen-grpc-gateway github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway "$GRPC_GATEWAY_VERSION"
install protoc-gen-openapiv2 github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2 "$GRPC_GATEWAY_VERSION"

export PATH="$BIN:$PATH"
buf lint
# google/api and protoc-gen-openapiv2 hold vendored imports (the HTTP and
# OpenAPI annotations): not generated here, their Go packages exist.
buf generate --path canary
echo "gen.sh: generated $(find canary -name '*.pb*.go' | sort | tr '\n' ' ')" >&2
