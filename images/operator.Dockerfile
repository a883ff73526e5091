# syntax=docker/dockerfile:1
# The kafka-shock operator image. Build from the repository root (the whole Cargo workspace is
# the build context):
#
#   docker build -f charts/kafka-shock/docker/operator.Dockerfile -t ghcr.io/kafka-shock/operator:0.1.0 .
#
# Not built in this repository's CI: the lab has no container engine (no Docker, no kubelet),
# so the chart is checked against the real kube-apiserver without running these images.

# Builder on Debian bookworm, the same glibc as the runtime stage below.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kafka-shock-operator \
    && install -D -m 0755 target/release/kafka-shock-operator /out/kafka-shock-operator

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/kafka-shock-operator /usr/local/bin/kafka-shock-operator
# The chart runs it as this non-root user with a read-only root filesystem.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kafka-shock-operator"]
CMD ["--metrics-addr=:8080"]
