# Installs and builds everything the lab runs, from package registries only, into $KSHOCK_CACHE.
# Each piece is keyed by its pinned version (or the digest of its recipe) and built once; a
# finished piece is never rebuilt.

DEBIAN_PACKAGES=(iptables kcat iproute2 openssl tcpdump curl procps libpcap-dev containerd runc buildah mmdebstrap gcc libc6-dev)

install_debian_packages() {
  local missing=()
  command -v iptables-restore >/dev/null || missing+=(iptables)
  command -v kcat >/dev/null || missing+=(kcat)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v tcpdump >/dev/null || missing+=(tcpdump)
  command -v curl >/dev/null || missing+=(curl)
  command -v pkill >/dev/null || missing+=(procps)
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  command -v gcc >/dev/null || missing+=(gcc)
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a || -n $(find /usr/lib -name libc.a -print -quit 2>/dev/null) ]] || missing+=(libc6-dev)
  # libpcap's headers and library: the agent's live capture links against it.
  [[ -e /usr/include/pcap/pcap.h ]] || missing+=(libpcap-dev)
  ((${#missing[@]})) || return 0
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

fetch_kafka_jars() {
  [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] && return 0
  local tmp=$KAFKA_LIBS.tmp
  rm -rf "$tmp"
  mvn -B -q ${KSHOCK_MVN_ARGS:-} -f "$LAB_DIR/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" &&
    rm -rf "$KAFKA_LIBS" && mv "$tmp" "$KAFKA_LIBS"
}

# Builds commands of k8s.io/kubernetes from the wrapper module in k8s/ into $K8S_BIN (each
# argument is "name=package"); the ldflags make /version and the kubelet report the real release
# instead of v0.0.0-master.
build_k8s_commands() {
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local pkg=k8s.io/component-base/version cgo=k8s.io/client-go/pkg/version command
  local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=2026-01-01T00:00:00Z"
  ldflags+=" -X $cgo.gitVersion=$K8S_VERSION -X $cgo.gitMajor=1 -X $cgo.gitMinor=$minor"
  mkdir -p "$K8S_BIN"
  for command in "$@"; do
    [[ -x $K8S_BIN/${command%%=*} ]] && continue
    (cd "$LAB_DIR/k8s" && go build -trimpath -ldflags "$ldflags" -o "$K8S_BIN/${command%%=*}.tmp" "${command#*=}") || return 1
    mv "$K8S_BIN/${command%%=*}.tmp" "$K8S_BIN/${command%%=*}"
  done
}

# The control plane's API side: kube-apiserver, kubectl and etcd.
build_kubernetes() {
  build_k8s_commands kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
    kubectl=k8s.io/kubernetes/cmd/kubectl etcd=./etcd
}

# What makes the lab a real cluster: the kubelet, the scheduler, the controller-manager and
# kube-proxy, from the same module graph, version and ldflags as the apiserver.
build_kubernetes_node() {
  build_k8s_commands kubelet=k8s.io/kubernetes/cmd/kubelet \
    kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
    kube-proxy=k8s.io/kubernetes/cmd/kube-proxy
}

build_helm() {
  [[ -x $HELM_BIN/helm ]] && return 0
  mkdir -p "$HELM_BIN"
  GOBIN=$HELM_BIN go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# The pod network's CNI plugins: bridge, loopback, and the host-local and static IPAMs that
# the lab's ksl-ipam chooses between.
CNI_PLUGINS=(main/bridge main/loopback ipam/host-local ipam/static)

build_cni_plugins() {
  local plugin missing=()
  for plugin in "${CNI_PLUGINS[@]}"; do
    [[ -x $CNI_BIN/${plugin#*/} ]] || missing+=("github.com/containernetworking/plugins/plugins/$plugin@$CNI_PLUGINS_VERSION")
  done
  ((${#missing[@]})) || return 0
  mkdir -p "$CNI_BIN"
  GOBIN=$CNI_BIN go install "${missing[@]}"
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
  step "build kubelet, kube-scheduler, kube-controller-manager and kube-proxy $K8S_VERSION from the Go module proxy" build_kubernetes_node
  step "build helm $HELM_VERSION from the Go module proxy" build_helm
  step "build the CNI plugins $CNI_PLUGINS_VERSION (${CNI_PLUGINS[*]#*/}) from the Go module proxy" build_cni_plugins
  step "install kafka-python $KAFKA_PYTHON_VERSION from PyPI" install_python_client
  step "compile the Java test clients (tests/clients/java)" "$LAB_DIR/../clients/java/build.sh"
  images_build_lab
}
