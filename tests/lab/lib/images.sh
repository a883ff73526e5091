# The lab's container images, made without any registry: root filesystems from Debian packages
# (mmdebstrap), turned into images with buildah from Dockerfiles, saved as OCI archives in the
# cache and imported into each node's containerd by `up`. The product's own images are built by
# images/build.sh (the script users run) on top of the lab's Debian bases.

BUILDAH_DIR=$KSHOCK_CACHE/buildah
IMAGE_RECIPES=$LAB_DIR/images

# buildah keeps its images in the cache (vfs: no overlay mounts to clean up), and runs the
# Dockerfiles' RUN steps with chroot isolation (no runc, no network namespace of its own).
images_buildah_env() {
  mkdir -p "$BUILDAH_DIR"
  cat >"$BUILDAH_DIR/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$BUILDAH_DIR/storage"
runroot = "$BUILDAH_DIR/run"
CONF
  export CONTAINERS_STORAGE_CONF=$BUILDAH_DIR/storage.conf BUILDAH_ISOLATION=chroot
}

# The Debian root filesystems: name, mmdebstrap variant, packages. "extract" unpacks the
# packages only (no shell, no dpkg): enough for a binary that needs glibc alone.
IMAGE_ROOTFS=(
  "agent-base essential iptables,iproute2,libpcap0.8"
  "operator-base extract libc6,libgcc-s1,base-files,netbase"
  "kafka-base essential openjdk-17-jre-headless"
)

# The image name of a Debian base, tagged with the digest of its recipe.
images_base_ref() {
  local name=$1 entry
  for entry in "${IMAGE_ROOTFS[@]}"; do
    [[ ${entry%% *} == "$name" ]] || continue
    echo "localhost/kafka-shock/$name:$(content_key "$entry" "$DEBIAN_SUITE")"
    return 0
  done
  die "no Debian base image named $name"
}

# mmdebstrap's root filesystem of base $1 as a buildah image (once per recipe).
images_build_base() {
  local name=$1 variant=$2 packages=$3 ref tar container
  ref=$(images_base_ref "$name")
  buildah inspect --type image "$ref" >/dev/null 2>&1 && return 0
  tar=$IMAGES_CACHE/rootfs/$name-${ref##*:}.tar
  mkdir -p "$IMAGES_CACHE/rootfs"
  if [[ ! -s $tar ]]; then
    mmdebstrap --mode=root --variant="$variant" --include="$packages" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --essential-hook='mkdir -p "$1/usr/share/man/man1"' \
      --format=tar "$DEBIAN_SUITE" "$tar.tmp" && mv "$tar.tmp" "$tar" || return 1
  fi
  container=$(buildah from scratch) &&
    buildah add "$container" "$tar" / >/dev/null &&
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --label org.opencontainers.image.description="Debian $DEBIAN_SUITE ($variant: $packages)" "$container" &&
    buildah commit -q --rm "$container" "$ref" >/dev/null
}

# Builds image $1 from Dockerfile $2 in context $3 (then build args) and writes its OCI archive
# to $IMAGES_CACHE/oci/<key>.tar, unless an archive of the same inputs exists.
images_archive() {
  local ref=$1 dockerfile=$2 context=$3 key
  shift 3
  key=$(content_key "$ref" "$dockerfile" "$@" \
    "$(cd "$context" && find . -type f | sort | xargs -r sha256sum | sha256sum)")
  local archive=$IMAGES_CACHE/oci/${ref//[\/:]/_}-$key.tar
  if [[ ! -s $archive ]]; then
    mkdir -p "$IMAGES_CACHE/oci"
    buildah bud -q --layers=false -f "$dockerfile" -t "$ref" "$@" "$context" >/dev/null &&
      rm -f "$archive.tmp" &&
      buildah push -q "$ref" "oci-archive:$archive.tmp:$ref" &&
      mv "$archive.tmp" "$archive" || return 1
    # The archive is what the lab imports; vfs keeps a full copy of every layer, so the built
    # image goes (the Debian bases stay, for the next builds on them).
    buildah rmi "$ref" >/dev/null
  fi
  echo "$archive"
}

# The pause image: a static binary the lab compiles, the sandbox of every pod.
images_build_pause() {
  local context=$IMAGES_CACHE/context/pause
  rm -rf "$context" && mkdir -p "$context"
  gcc -static -Os -s -o "$context/pause" "$IMAGE_RECIPES/pause.c" || return 1
  images_archive "$PAUSE_IMAGE" "$IMAGE_RECIPES/pause.Dockerfile" "$context" >"$IMAGES_CACHE/pause.archive"
}

# The Kafka broker image: Debian's Java runtime plus the jars the lab fetched from Maven.
images_build_kafka() {
  local context=$IMAGES_CACHE/context/kafka
  rm -rf "$context" && mkdir -p "$context"
  cp -r "$KAFKA_LIBS" "$context/libs" &&
    cp "$LAB_DIR/kafka/log4j2.properties" "$IMAGE_RECIPES/kafka-broker.sh" "$context/" || return 1
  images_archive "$KAFKA_IMAGE" "$IMAGE_RECIPES/kafka.Dockerfile" "$context" \
    --build-arg "BASE=$(images_base_ref kafka-base)" >"$IMAGES_CACHE/kafka.archive"
}

images_build_bases() {
  local entry
  for entry in "${IMAGE_ROOTFS[@]}"; do
    # shellcheck disable=SC2086
    images_build_base $entry || return 1
  done
}

images_build_lab() {
  images_buildah_env
  step "build the Debian base images with mmdebstrap (${IMAGE_ROOTFS[*]%% *})" images_build_bases
  step "build the pause image (gcc -static)" images_build_pause
  step "build the Kafka broker image $KAFKA_IMAGE" images_build_kafka
}

# Builds the product's agent and operator images from the binaries in $1 (a release or a debug
# build: their debug information is stripped first, most of a debug build's size) with
# images/build.sh on the lab's Debian bases; prints "IMAGE ARCHIVE" per image.
images_build_product() {
  local bin_dir key out binary
  images_buildah_env
  bin_dir=$PRODUCT_DIR/bin
  mkdir -p "$bin_dir"
  for binary in kafka-shock kafka-shock-operator; do
    strip --strip-debug -o "$bin_dir/$binary.tmp" "$1/$binary" && mv "$bin_dir/$binary.tmp" "$bin_dir/$binary" || return 1
  done
  key=$(content_key "$bin_dir/kafka-shock" "$bin_dir/kafka-shock-operator" \
    "$REPO_DIR/images/agent.Dockerfile" "$REPO_DIR/images/operator.Dockerfile" \
    "$(images_base_ref agent-base)" "$(images_base_ref operator-base)")
  out=$IMAGES_CACHE/product/$key
  # Images of earlier binaries are of no more use.
  find "$IMAGES_CACHE/product" -mindepth 1 -maxdepth 1 -not -name "$key" -exec rm -rf {} + 2>/dev/null || true
  if [[ ! -f $out/images ]]; then
    rm -rf "$out" && mkdir -p "$out"
    "$REPO_DIR/images/build.sh" --engine buildah --bin-dir "$bin_dir" --output-dir "$out" \
      --agent-base "$(images_base_ref agent-base)" --operator-base "$(images_base_ref operator-base)" \
      >"$out/images.tmp" || return 1
    mv "$out/images.tmp" "$out/images"
    # The archives are what the lab imports (see images_archive).
    awk '{print $1}' "$out/images" | xargs -r buildah rmi >/dev/null
  fi
  cat "$out/images"
}

# The manifest digest of the one image in OCI archive $1, as containerd lists it.
images_manifest_digest() {
  tar -xOf "$1" index.json | grep -o '"digest":"sha256:[0-9a-f]*"' | head -1 | grep -o 'sha256:[0-9a-f]*'
}

# Its image id (config digest), which a pod's status reports as the container's imageID.
images_id() {
  local manifest
  manifest=$(images_manifest_digest "$1") || return 1
  tar -xOf "$1" "blobs/sha256/${manifest#sha256:}" | grep -o '"config":{[^}]*}' | grep -o 'sha256:[0-9a-f]*'
}

# Imports OCI archives into node $1's containerd (unpacked, so pods start at once), unless it
# holds that image already.
images_import_into() {
  local node=$1 archive ref
  for archive in "${@:2}"; do
    ref=$(tar -xOf "$archive" index.json | grep -o '"org.opencontainers.image.ref.name":"[^"]*"' | cut -d'"' -f4)
    [[ -n $ref && $(node_ctr "$node" images ls "name==$ref" | awk 'NR == 2 {print $3}') == "$(images_manifest_digest "$archive")" ]] &&
      continue
    node_ctr "$node" images import "$archive" || return 1
  done
}
