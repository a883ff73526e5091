# Shared settings and helpers of the lab. Sourced by lab.sh; every name the lab creates on the
# host starts with "ksl" so that `down` can find and remove all of it, even after a crash.

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KSHOCK_CACHE=${KSHOCK_CACHE:-$HOME/.cache/kafka-shock}
LAB_STATE=${KSHOCK_LAB_STATE:-/run/kafka-shock-lab}

# Pinned versions: every build below is cached under $KSHOCK_CACHE keyed by these.
KAFKA_VERSION=4.1.1
K8S_VERSION=v1.34.4
HELM_VERSION=v3.19.0
KAFKA_PYTHON_VERSION=3.0.12

KAFKA_LIBS=$KSHOCK_CACHE/kafka-$KAFKA_VERSION/libs
K8S_BIN=$KSHOCK_CACHE/k8s-$K8S_VERSION/bin
HELM_BIN=$KSHOCK_CACHE/helm-$HELM_VERSION/bin
PY_VENV=$KSHOCK_CACHE/venv-kafka-python-$KAFKA_PYTHON_VERSION

# Lab network: one bridge, one namespace per broker "pod" and one for clients.
BRIDGE=${KSHOCK_LAB_BRIDGE:-ksl-br0}
NET_PREFIX=10.77.0
NET6_PREFIX=fd00:77::
HOST_IP=$NET_PREFIX.1
CLIENT_NS=ksl-client
CLIENT_IP=$NET_PREFIX.100
KAFKA_PORT=9092
CONTROLLER_PORT=9093
# The three-broker lab only: brokers replicate on a listener of their own (as Strimzi's do),
# and one broker also has a TLS listener with a self-signed keypair the lab makes.
REPLICATION_PORT=9091
TLS_PORT=9094
TLS_BROKER=0
TLS_PASSWORD=kafka-shock-lab

# Lab Kubernetes, on loopback only.
ETCD_CLIENT_PORT=${KSHOCK_LAB_ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_CLIENT_PORT + 10))
APISERVER_PORT=${KSHOCK_LAB_APISERVER_PORT:-16443}
LAB_NODES=(ksl-node-1 ksl-node-2)
POD_NAMESPACE=kafka

broker_ns() { echo "ksl-broker-$1"; }
broker_ip() { echo "$NET_PREFIX.$((10 + $1))"; }
broker_ip6() { echo "$NET6_PREFIX$((10 + $1))"; }
# Brokers alternate between the two lab nodes, so per-node agents each have work.
broker_node() { echo "${LAB_NODES[$(($1 % 2))]}"; }

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

# Runs one named step with its output in a log file; on failure the message names the step
# and shows the end of its log, so "registry unreachable" is told apart from a broken build.
step() {
  local name=$1; shift
  local logfile=$KSHOCK_CACHE/logs/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-').log
  mkdir -p "$KSHOCK_CACHE/logs"
  log "$name ..."
  if ! "$@" >"$logfile" 2>&1; then
    printf 'lab: error: step "%s" failed (log: %s):\n' "$name" "$logfile" >&2
    tail -n 15 "$logfile" | sed 's/^/    /' >&2
    exit 1
  fi
}

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root: the lab creates network namespaces, a bridge and veth pairs (try: sudo $0 $*)"
}

# Fails clearly when a TCP port the lab needs on the host is already taken by someone else.
require_free_port() {
  local port=$1 what=$2
  if ss -Hltn "sport = :$port" | grep -q .; then
    die "port $port ($what) is already in use on this host: $(ss -Hltnp "sport = :$port" | awk '{print $NF}' | head -1); stop it or set KSHOCK_LAB_${3}_PORT"
  fi
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Waits until a command succeeds, up to $1 seconds.
wait_for() {
  local timeout=$1; shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}
