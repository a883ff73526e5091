# Shared settings and helpers of the lab. Sourced by lab.sh; every name the lab creates on the
# host starts with "ksl" (links, namespaces, cgroups) or lives below $LAB_STATE, so that `down`
# can find and remove all of it, even after a crash.

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$LAB_DIR/../.." && pwd)
KSHOCK_CACHE=${KSHOCK_CACHE:-$HOME/.cache/kafka-shock}
LAB_STATE=${KSHOCK_LAB_STATE:-/run/kafka-shock-lab}

# Pinned versions: every build below is cached under $KSHOCK_CACHE keyed by these.
KAFKA_VERSION=4.1.1
K8S_VERSION=v1.34.4
HELM_VERSION=v3.19.0
CNI_PLUGINS_VERSION=v1.9.1
KAFKA_PYTHON_VERSION=3.0.12
DEBIAN_SUITE=bookworm

KAFKA_LIBS=$KSHOCK_CACHE/kafka-$KAFKA_VERSION/libs
K8S_BIN=$KSHOCK_CACHE/k8s-$K8S_VERSION/bin
HELM_BIN=$KSHOCK_CACHE/helm-$HELM_VERSION/bin
CNI_BIN=$KSHOCK_CACHE/cni-plugins-$CNI_PLUGINS_VERSION/bin
PY_VENV=$KSHOCK_CACHE/venv-kafka-python-$KAFKA_PYTHON_VERSION
IMAGES_CACHE=$KSHOCK_CACHE/images

# Lab network: one bridge carrying the pod network, the nodes' addresses and a client namespace.
BRIDGE=${KSHOCK_LAB_BRIDGE:-ksl-br0}
NET_PREFIX=10.77.0
NET6_PREFIX=fd00:77::
HOST_IP=$NET_PREFIX.1
CLIENT_NS=ksl-client
CLIENT_IP=$NET_PREFIX.100
KAFKA_PORT=9092
CONTROLLER_PORT=9093
# Pods other than brokers get addresses from this range; brokers keep fixed ones below it.
POD_RANGE_START=20
POD_RANGE_END=99
SERVICE_CIDR=10.96.0.0/16
# The three-broker lab only: brokers replicate on a listener of their own (as Strimzi's do),
# and one broker also has a TLS listener with a self-signed keypair the lab makes.
REPLICATION_PORT=9091
TLS_PORT=9094
TLS_BROKER=0
TLS_PASSWORD=kafka-shock-lab

# Lab Kubernetes: the control plane on the host's lab address, two kubelets (each with its own
# containerd) registered as real nodes.
ETCD_CLIENT_PORT=${KSHOCK_LAB_ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_CLIENT_PORT + 10))
APISERVER_PORT=${KSHOCK_LAB_APISERVER_PORT:-16443}
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248
LAB_NODES=(ksl-node-1 ksl-node-2)
POD_NAMESPACE=kafka
BROKER_SET=kafka-broker
KAFKA_CLUSTER=lab

# Images the lab builds and imports into each node's containerd (no registry is involved).
PAUSE_IMAGE=localhost/kafka-shock/pause:lab
KAFKA_IMAGE=localhost/kafka-shock/kafka:$KAFKA_VERSION

broker_ns() { echo "ksl-broker-$1"; }
broker_pod() { echo "$BROKER_SET-$1"; }
broker_ip() { echo "$NET_PREFIX.$((10 + $1))"; }
broker_ip6() { echo "$NET6_PREFIX$((10 + $1))"; }
# Node N of LAB_NODES (0-based) has the address .2+N on the bridge.
node_ip() { echo "$NET_PREFIX.$((2 + $1))"; }
node_dir() { echo "$LAB_STATE/nodes/$1"; }

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

# Runs one named step with its output in a log file; on failure the message names the step
# and shows the end of its log, so "registry unreachable" is told apart from a broken build.
# Says how long a step took when it did any work (over a second).
step() {
  local name=$1; shift
  local logfile=$KSHOCK_CACHE/logs/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | cut -c1-120).log
  local started=$SECONDS
  mkdir -p "$KSHOCK_CACHE/logs"
  log "$name ..."
  if ! "$@" >"$logfile" 2>&1; then
    printf 'lab: error: step "%s" failed (log: %s):\n' "$name" "$logfile" >&2
    tail -n 15 "$logfile" | sed 's/^/    /' >&2
    exit 1
  fi
  ((SECONDS - started < 2)) || log "  ... done in $((SECONDS - started)) s"
}

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root: the lab creates network namespaces, a bridge, veth pairs and runs kubelets (try: sudo $0 $*)"
}

# Fails clearly when a TCP port the lab needs on the host is already taken by someone else.
require_free_port() {
  local port=$1 what=$2
  if ss -Hltn "sport = :$port" | grep -q .; then
    die "port $port ($what) is already in use on this host: $(ss -Hltnp "sport = :$port" | awk '{print $NF}' | head -1); stop it or set KSHOCK_LAB_${3}_PORT"
  fi
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Starts a daemon of the lab in a session of its own, its output in $2 and its pid in $1.
start_daemon() {
  local pidfile=$1 logfile=$2
  shift 2
  pid_alive "$pidfile" && return 0
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

# Waits until a command succeeds, up to $1 seconds.
wait_for() {
  local timeout=$1; shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# A short, stable digest of files and strings: the cache key of what is built from them.
content_key() {
  local item
  for item in "$@"; do
    if [[ -f $item ]]; then sha256sum <"$item"; else echo "$item"; fi
  done | sha256sum | cut -c1-16
}
