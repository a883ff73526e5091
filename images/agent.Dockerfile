# syntax=docker/dockerfile:1
# The kafka-shock node agent image (also the `kafka-shock` CLI). Build from the repository root
# (the whole Cargo workspace is the build context):
#
#   docker build -f charts/kafka-shock/docker/agent.Dockerfile -t ghcr.io/kafka-shock/agent:0.1.0 .
#
# Not built in this repository's CI: the lab has no container engine (no Docker, no kubelet),
# so the chart is checked against the real kube-apiserver without running these images.

# Builder on Debian bookworm, the same glibc as the runtime stage below.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kafka-shock-agent \
    && install -D -m 0755 target/release/kafka-shock /out/kafka-shock

FROM debian:bookworm-slim
# iptables (iptables-restore/-save, legacy and nft backends) and iproute2 for enforcement;
# nsenter comes with util-linux, which the base image already has.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates iptables iproute2 util-linux \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/kafka-shock /usr/local/bin/kafka-shock
# Runs as root: the chart grants NET_ADMIN, NET_RAW, SYS_ADMIN and SYS_PTRACE (or privileged).
EXPOSE 9090
# The chart sets the full command: kafka-shock agent --node-name=$(NODE_NAME) --metrics-addr=:9090
ENTRYPOINT ["/usr/local/bin/kafka-shock"]
CMD ["--help"]
