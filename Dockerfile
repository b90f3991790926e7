# syntax=docker/dockerfile:1
#
# canaryd and canaryctl in a minimal image: static binaries on distroless,
# running as an unprivileged user, the embedded store on a volume.
#
#   docker build -t canaryd .
#   docker run -d --name canaryd -p 7070:7070 -p 7071:7071 -v canaryd-data:/var/lib/canaryd canaryd
#   docker exec canaryd canaryctl run list          # canaryctl is in the image too
#
# Health: the runtime image has no shell, so there is no HEALTHCHECK here.
# Orchestrators should probe canaryd itself: the gRPC health service
# (grpc.health.v1, service "" or "canary.v1.CanaryService") on port 7070 —
# e.g. a Kubernetes `grpc:` probe on port 7070 — or HTTP GET /healthz on
# port 7071 (200 while the store is healthy, 503 otherwise). /metrics on
# 7071 serves the Prometheus metrics.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so that they stay cached while the sources change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/ ./cmd/canaryd ./cmd/canaryctl
# The volume's mount point, owned by the nonroot user (65532) of the
# runtime image, so that a new named volume starts with that owner.
RUN mkdir -p /out/var/lib/canaryd && chown 65532:65532 /out/var/lib/canaryd

# canaryctl alone, its entrypoint: `docker build --target canaryctl -t canaryctl .`,
# then `docker run --rm -e CANARY_ADDR=canaryd:7070 canaryctl gate RUN --wait 30m`.
# As a Kubernetes Job (an Argo Rollouts job metric) either image works
# without a shell: command ["/usr/local/bin/canaryctl"], args ["gate", ...]
# (docs/pipelines.md).
FROM gcr.io/distroless/static-debian12:nonroot AS canaryctl
COPY --from=build /out/canaryctl /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/canaryctl"]
CMD ["--help"]

# The default target: canaryd, with canaryctl beside it.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="canaryd" \
      org.opencontainers.image.description="Canary analysis service: PROMOTE, HOLD or ROLLBACK from the metrics of a baseline and a canary" \
      org.opencontainers.image.source="https://github.com/canaryd/canaryd"
COPY --from=build /out/canaryd /out/canaryctl /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/var/lib/canaryd /var/lib/canaryd
USER 65532:65532
# The embedded store (one file). Keep it on a volume: what canaryd
# acknowledged survives a crash of the container only if the file does.
VOLUME /var/lib/canaryd
# gRPC (API, grpc.health.v1, reflection) and HTTP (/metrics, /healthz).
EXPOSE 7070 7071
# The store is on the volume. Arguments given to `docker run IMAGE ...`
# replace CMD and keep --store; a later --store overrides it. The shutdown
# timeout stays below `docker stop`'s default 10 s grace period, so that
# SIGTERM drains the calls and closes the store before a SIGKILL.
# canaryctl in the image talks to localhost:7070 by default.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/canaryd", "--store", "/var/lib/canaryd/canaryd.db"]
CMD ["--grpc-addr", ":7070", "--http-addr", ":7071", "--shutdown-timeout", "8s"]
