# syntax=docker/dockerfile:1
# The kafka-shock operator image: the release binary, run as a non-root user; it writes nothing
# to its root filesystem, which the chart mounts read-only. images/build.sh builds the binary
# and this file with Docker or buildah:
#
#   images/build.sh                       # ghcr.io/kafka-shock/operator:<chart appVersion>
#
# The build context holds only the binary, which needs glibc and nothing else: BASE may be as
# small as the lab's (Debian's libc6 and libgcc-s1, unpacked by mmdebstrap).
ARG BASE=docker.io/library/debian:bookworm-slim
FROM ${BASE}
COPY kafka-shock-operator /usr/local/bin/kafka-shock-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kafka-shock-operator"]
CMD ["--metrics-addr=:8080"]
