# Installs and builds everything the lab runs, from package registries only, into $KSHOCK_CACHE.
# Each piece is keyed by its pinned version and built once; a finished piece is never rebuilt.

DEBIAN_PACKAGES=(iptables kcat iproute2 openssl tcpdump curl procps libpcap-dev)

install_debian_packages() {
  local missing=()
  command -v iptables-restore >/dev/null || missing+=(iptables)
  command -v kcat >/dev/null || missing+=(kcat)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v tcpdump >/dev/null || missing+=(tcpdump)
  command -v curl >/dev/null || missing+=(curl)
  command -v pkill >/dev/null || missing+=(procps)
  # libpcap's headers and library: the agent's live capture links against it.
  [[ -e /usr/include/pcap/pcap.h ]] || missing+=(libpcap-dev)
  ((${#missing[@]})) || return 0
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

fetch_kafka_jars() {
  [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] && return 0
  local tmp=$KAFKA_LIBS.tmp
  rm -rf "$tmp"
  mvn -B -q ${KSHOCK_MVN_ARGS:-} -f "$LAB_DIR/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" &&
    rm -rf "$KAFKA_LIBS" && mv "$tmp" "$KAFKA_LIBS"
}

# kube-apiserver, kubectl and etcd from the wrapper module in k8s/; the ldflags make /version
# report the real release instead of v0.0.0-master.
build_kubernetes() {
  [[ -x $K8S_BIN/kube-apiserver && -x $K8S_BIN/kubectl && -x $K8S_BIN/etcd ]] && return 0
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local pkg=k8s.io/component-base/version cgo=k8s.io/client-go/pkg/version
  local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=2026-01-01T00:00:00Z"
  ldflags+=" -X $cgo.gitVersion=$K8S_VERSION -X $cgo.gitMajor=1 -X $cgo.gitMinor=$minor"
  mkdir -p "$K8S_BIN"
  (
    cd "$LAB_DIR/k8s" &&
      go build -trimpath -ldflags "$ldflags" -o "$K8S_BIN/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver &&
      go build -trimpath -ldflags "$ldflags" -o "$K8S_BIN/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl &&
      go build -trimpath -ldflags "$ldflags" -o "$K8S_BIN/etcd.tmp" ./etcd
  ) || return 1
  for bin in kube-apiserver kubectl etcd; do mv "$K8S_BIN/$bin.tmp" "$K8S_BIN/$bin"; done
}

build_helm() {
  [[ -x $HELM_BIN/helm ]] && return 0
  mkdir -p "$HELM_BIN"
  GOBIN=$HELM_BIN go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

install_python_client() {
  [[ -f $PY_VENV/.complete ]] && return 0
  rm -rf "$PY_VENV"
  python3 -m venv "$PY_VENV" &&
    "$PY_VENV/bin/pip" install -q "kafka-python==$KAFKA_PYTHON_VERSION" &&
    touch "$PY_VENV/.complete"
}

build_all() {
  step "install Debian packages (${DEBIAN_PACKAGES[*]})" install_debian_packages
  step "fetch Kafka $KAFKA_VERSION jars from Maven Central" fetch_kafka_jars
  step "build kube-apiserver, kubectl and etcd $K8S_VERSION from the Go module proxy" build_kubernetes
  step "build helm $HELM_VERSION from the Go module proxy" build_helm
  step "install kafka-python $KAFKA_PYTHON_VERSION from PyPI" install_python_client
  step "compile the Java test clients (tests/clients/java)" "$LAB_DIR/../clients/java/build.sh"
}
