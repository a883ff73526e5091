#!/usr/bin/env bash
# Builds kafka-shock's two container images from this repository: the node agent (the
# `kafka-shock` binary with iptables and nsenter) and the operator (`kafka-shock-operator`,
# non-root, for a read-only root filesystem). The binaries are built on the host with cargo
# (release profile) and copied into images made from agent.Dockerfile and operator.Dockerfile,
# with Docker or buildah, which read the same files.
#
#   images/build.sh                                  # cargo build --release, then docker build
#   images/build.sh --engine buildah                 # the same with buildah
#   images/build.sh --bin-dir target/release --tag dev --registry registry.example/kafka-shock
#   images/build.sh --output-dir out/                # also write out/agent.tar, out/operator.tar
#
# Options:
#   --engine docker|buildah   the image builder (default: docker)
#   --bin-dir DIR             take kafka-shock and kafka-shock-operator from DIR, build nothing
#   --registry PREFIX         image names PREFIX/agent and PREFIX/operator (default: ghcr.io/kafka-shock,
#                             as the Helm chart expects)
#   --tag TAG                 the tag (default: the chart's appVersion)
#   --agent-base IMAGE        the agent's base image (default: debian:bookworm-slim; iptables is
#                             installed unless the base has it)
#   --operator-base IMAGE     the operator's base image (default: debian:bookworm-slim)
#   --output-dir DIR          also save each image as an archive (OCI with buildah, docker-archive
#                             with Docker) that `ctr images import` or `docker load` reads
#
# The binaries link against the host's glibc: build on Debian bookworm (the bases' release) or a
# system with an older glibc. Prints one line per image: "NAME ARCHIVE" (ARCHIVE is "-" without
# --output-dir).
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)

die() { printf 'images/build.sh: error: %s\n' "$*" >&2; exit 1; }

engine=docker bin_dir="" registry=ghcr.io/kafka-shock tag="" output_dir=""
agent_base=docker.io/library/debian:bookworm-slim operator_base=docker.io/library/debian:bookworm-slim
while (($#)); do
  case $1 in
    --engine) engine=${2:?--engine needs docker or buildah}; shift 2 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --registry) registry=${2:?--registry needs a prefix}; shift 2 ;;
    --tag) tag=${2:?--tag needs a tag}; shift 2 ;;
    --agent-base) agent_base=${2:?--agent-base needs an image}; shift 2 ;;
    --operator-base) operator_base=${2:?--operator-base needs an image}; shift 2 ;;
    --output-dir) output_dir=${2:?--output-dir needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,29s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ $engine == docker || $engine == buildah ]] || die "--engine must be docker or buildah, not $engine"
command -v "$engine" >/dev/null || die "$engine is not installed"
[[ -n $tag ]] || tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/kafka-shock/Chart.yaml")

if [[ -z $bin_dir ]]; then
  cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" \
    -p kafka-shock-agent -p kafka-shock-operator --bins >&2
  bin_dir=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
for binary in kafka-shock kafka-shock-operator; do
  [[ -x $bin_dir/$binary ]] || die "no $binary in $bin_dir (cargo build --release -p kafka-shock-agent -p kafka-shock-operator)"
done
[[ -z $output_dir ]] || mkdir -p "$output_dir"

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

# build COMPONENT BINARY BASE: one image from images/COMPONENT.Dockerfile, its context holding
# only the binary.
build() {
  local component=$1 binary=$2 base=$3 image=$registry/$1:$tag archive=-
  rm -rf "${context:?}"/* && cp "$bin_dir/$binary" "$context/"
  "$engine" build -q -f "$ROOT/images/$component.Dockerfile" --build-arg "BASE=$base" -t "$image" "$context" >&2
  if [[ -n $output_dir ]]; then
    archive=$output_dir/$component.tar
    rm -f "$archive"
    if [[ $engine == buildah ]]; then
      buildah push -q "$image" "oci-archive:$archive:$image" >&2
    else
      docker save -o "$archive" "$image"
    fi
  fi
  echo "$image $archive"
}

build agent kafka-shock "$agent_base"
build operator kafka-shock-operator "$operator_base"
