# The lab's pause image (containerd's sandbox_image): one static binary, built from pause.c by
# tests/lab/lab.sh build.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
