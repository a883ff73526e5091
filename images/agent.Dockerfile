# syntax=docker/dockerfile:1
# The kafka-shock node agent image (also the `kafka-shock` CLI): the release binary with
# iptables (both the nft and the legacy backend: the agent uses whichever the node uses),
# nsenter (util-linux), ss (iproute2: the Proxy handover closes connections with it) and
# libpcap (live capture). images/build.sh builds the binary and this file with Docker or buildah:
#
#   images/build.sh                       # ghcr.io/kafka-shock/agent:<chart appVersion>
#
# The build context holds only the binary. BASE is any Debian-like image; a base that already
# has the tools (the lab's, made by mmdebstrap from Debian packages) skips the install.
ARG BASE=docker.io/library/debian:bookworm-slim
FROM ${BASE}
RUN if ! command -v iptables-nft-restore >/dev/null || ! command -v iptables-legacy-restore >/dev/null \
      || ! command -v nsenter >/dev/null || ! command -v ss >/dev/null \
      || ! ls /usr/lib/*/libpcap.so.0.8 >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends iptables util-linux iproute2 libpcap0.8 \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY kafka-shock /usr/local/bin/kafka-shock
# Runs as root: the chart grants NET_ADMIN, NET_RAW, SYS_ADMIN and SYS_PTRACE (or privileged).
EXPOSE 9090
# The chart sets the full command: kafka-shock agent --node-name=$(NODE_NAME) --metrics-addr=:9090
ENTRYPOINT ["/usr/local/bin/kafka-shock"]
CMD ["--help"]
