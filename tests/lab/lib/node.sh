# The lab's nodes: per node a containerd (Debian's, with runc) and a kubelet registered as a
# real Node, each with a root, state, socket, ports, address and cgroup root of its own below
# $LAB_STATE; one kube-proxy for the host (both nodes share its kernel); the CNI bridge network
# both containerds use. Pods get addresses on the lab bridge from one host-local store; broker
# pods keep fixed ones (no cluster DNS here, and KRaft voters are addressed by IP).

CNI_DIR=$LAB_STATE/cni
CNI_NETWORK=ksl-pods

# A node's containerd client: `node_ctr NODE images ls`.
node_ctr() {
  ctr --address "$(node_dir "$1")/containerd.sock" --namespace k8s.io "${@:2}"
}

# The pid of a process of the pod with UID $1, from the kubelet's cgroup paths (.../pod<UID>/...).
pod_pid() {
  local file
  file=$(grep -l -m1 "/pod$1/" /proc/[0-9]*/cgroup 2>/dev/null | head -1)
  [[ -n $file ]] || return 1
  file=${file#/proc/}
  echo "${file%%/*}"
}

# The CNI configuration: the bridge plugin on the lab bridge, addresses from ksl-ipam (host-local
# for most pods, a fixed address for a pod named in $CNI_DIR/pinned).
node_write_cni() {
  local first=$NET_PREFIX.$POD_RANGE_START last=$NET_PREFIX.$POD_RANGE_END plugin id
  mkdir -p "$CNI_DIR/bin" "$CNI_DIR/net.d" "$CNI_DIR/pinned" "$CNI_DIR/ipam" "$CNI_DIR/cache"
  for plugin in "$CNI_BIN"/*; do ln -sf "$plugin" "$CNI_DIR/bin/"; done
  ln -sf "$LAB_DIR/cni/ksl-ipam" "$CNI_DIR/bin/ksl-ipam"
  for ((id = 0; id < 3; id++)); do
    echo "IP=$(broker_ip "$id")/24,$(broker_ip6 "$id")/64;GATEWAY=$HOST_IP,${NET6_PREFIX}1" \
      >"$CNI_DIR/pinned/${POD_NAMESPACE}_$(broker_pod "$id")"
  done
  cat >"$CNI_DIR/net.d/10-$CNI_NETWORK.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [{
    "type": "bridge",
    "bridge": "$BRIDGE",
    "isGateway": true,
    "isDefaultGateway": true,
    "hairpinMode": true,
    "ipMasq": false,
    "ipam": {
      "type": "ksl-ipam",
      "dataDir": "$CNI_DIR/ipam",
      "ranges": [
        [{"subnet": "$NET_PREFIX.0/24", "rangeStart": "$first", "rangeEnd": "$last", "gateway": "$HOST_IP"}],
        [{"subnet": "${NET6_PREFIX}/64", "rangeStart": "$NET6_PREFIX$POD_RANGE_START", "rangeEnd": "$NET6_PREFIX$POD_RANGE_END", "gateway": "${NET6_PREFIX}1"}]
      ]
    }
  }]
}
JSON
}

# containerd's configuration for node $1: everything below the node's directory, cgroupfs,
# no AppArmor, the lab's pause image, the lab's CNI network. restrict_oom_score_adj: the host's
# capability bounding set may lack CAP_SYS_RESOURCE, without which runc cannot lower
# oom_score_adj (`can't get final child's PID from pipe: EOF`).
node_write_containerd_config() {
  local dir=$1
  cat >"$dir/containerd.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$dir/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_DIR/bin"
    conf_dir = "$CNI_DIR/net.d"
    max_conf_num = 1
TOML
}

# The kubelet's configuration for node $1 (index $2): cgroupfs under a cgroup root of its own,
# its own address and ports, x509 client auth (the apiserver's client certificate) and webhook
# authorization, logs below the node's directory. Image garbage collection is off: the lab's
# images come from no registry, so a collected image could not come back. Only memory evicts:
# the lab shares its disk with whatever else the host does, and a kubelet that sees disk
# pressure taints its node, so nothing new would be scheduled (naming one signal leaves the
# others at zero).
node_write_kubelet_config() {
  local node=$1 index=$2 dir
  dir=$(node_dir "$node")
  cat >"$dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ip "$index")
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: $(node_ip "$index")
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $KUBE_DIR/kubelet-$node-serving.crt
tlsPrivateKeyFile: $KUBE_DIR/kubelet-$node-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $KUBE_DIR/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$dir/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$node
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
podLogsDir: $dir/pod-logs
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi}
containerLogMaxSize: 10Mi
YAML
}

# The cgroup root a kubelet runs its pods under, in every hierarchy (cgroup v1) or the unified one.
node_make_cgroup_root() {
  local node=$1 hierarchy
  for hierarchy in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts); do
    mkdir -p "$hierarchy/$node"
  done
}

node_start_containerd() {
  local node=$1 dir
  dir=$(node_dir "$node")
  mkdir -p "$dir/kubelet" "$dir/pod-logs"
  node_write_containerd_config "$dir"
  start_daemon "$dir/containerd.pid" "$dir/containerd.log" containerd --config "$dir/containerd.toml"
  wait_for 30 ctr --address "$dir/containerd.sock" version ||
    die "containerd of $node did not start (log: $dir/containerd.log)"
}

# The pause and Kafka images into every node's containerd, the nodes in parallel.
nodes_import_lab_images() {
  local node pids=() pid
  for node in "${LAB_NODES[@]}"; do
    images_import_into "$node" "$(cat "$IMAGES_CACHE/pause.archive")" "$(cat "$IMAGES_CACHE/kafka.archive")" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || return 1; done
}

node_start_kubelet() {
  local node=$1 index=$2 dir
  dir=$(node_dir "$node")
  node_write_kubelet_config "$node" "$index"
  node_make_cgroup_root "$node"
  kube_write_kubeconfig "$dir/kubelet.kubeconfig" "cert:kubelet-$node"
  start_daemon "$dir/kubelet.pid" "$dir/kubelet.log" \
    "$K8S_BIN/kubelet" --config="$dir/kubelet.yaml" --kubeconfig="$dir/kubelet.kubeconfig" \
    --root-dir="$dir/kubelet" --hostname-override="$node" --node-ip="$(node_ip "$index")" \
    --node-labels=kafkashock.io/lab=true
}

node_ready() {
  [[ $(kubectl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# One kube-proxy (iptables mode) for the host: Services (the API's `kubernetes` Service for the
# pods, the product's metrics Services) work as in a cluster. A running one is left alone:
# kube-proxy watches its config file and exits when it is written, even with the same content
# (an `up` on a running lab would otherwise stop it).
node_start_kube_proxy() {
  local dir=$LAB_STATE/kube-proxy
  pid_alive "$dir/kube-proxy.pid" && return 0
  mkdir -p "$dir"
  kube_write_kubeconfig "$dir/kubeconfig" cert:kube-proxy
  cat >"$dir/config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kubeconfig}
hostnameOverride: ${LAB_NODES[0]}
mode: iptables
clusterCIDR: $NET_PREFIX.0/24
healthzBindAddress: $HOST_IP:10256
metricsBindAddress: $HOST_IP:10249
nodePortAddresses: [$NET_PREFIX.0/24]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start_daemon "$dir/kube-proxy.pid" "$dir/kube-proxy.log" "$K8S_BIN/kube-proxy" --config="$dir/config.yaml"
}

nodes_up() {
  local index
  node_write_cni
  for index in "${!LAB_NODES[@]}"; do node_start_containerd "${LAB_NODES[$index]}"; done
  step "import the lab's images (pause, Kafka) into each node's containerd" nodes_import_lab_images
  for index in "${!LAB_NODES[@]}"; do node_start_kubelet "${LAB_NODES[$index]}" "$index"; done
  for index in "${!LAB_NODES[@]}"; do
    wait_for 60 node_ready "${LAB_NODES[$index]}" ||
      die "node ${LAB_NODES[$index]} did not become Ready in 60 s (log: $(node_dir "${LAB_NODES[$index]}")/kubelet.log)"
  done
  node_start_kube_proxy
  wait_for 30 curl -sf "http://$HOST_IP:10256/healthz" ||
    die "kube-proxy did not become healthy (log: $LAB_STATE/kube-proxy/kube-proxy.log)"
}
