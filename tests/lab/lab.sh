#!/usr/bin/env bash
# kafka-shock's local lab: real Apache Kafka brokers in network namespaces on a bridge, a real
# kube-apiserver and etcd on loopback describing them as pods, and real Kafka clients.
#
#   lab.sh build                 install and build everything into the cache (no root needed for Go/Maven)
#   lab.sh up [--brokers 1|3]    start the lab (idempotent); prints the environment to use it
#                                (3 brokers: replication listener :9091, TLS listener :9094 on broker 0)
#   lab.sh down                  remove every process, namespace, link and rule the lab made
#   lab.sh status                say what is running; exit 1 when the lab is not up
#   lab.sh env                   print the lab's environment (eval "$(lab.sh env)")
#   lab.sh topic NAME [PARTITIONS] [REPLICAS]
#   lab.sh client CMD [ARGS...]  run a command in the client namespace (kcat, kafka-class, python)
#   lab.sh restart-broker ID     recreate broker ID's pod: new network namespace, new Pod UID
#   lab.sh product up [HELM_ARGS] install the chart (e.g. --set allowedPorts={9092}); print kubeconfigs of the operator's and agent's accounts
#   lab.sh product start BIN_DIR run the operator and one agent per node from BIN_DIR (their own tokens)
#   lab.sh product stop          stop them (SIGTERM: agents remove their rules)
set -euo pipefail
shopt -s nullglob
# The lab's daemons outlive this script: they must not inherit its caller's descriptors (a
# `flock` around a test run, a pipe a harness waits to see closed). Bash keeps the script on
# 255; everything else above stderr goes.
for fd_path in /proc/$$/fd/*; do
  fd=${fd_path##*/}
  if ((fd > 2 && fd < 255)); then eval "exec $fd>&-"; fi
done
unset fd_path fd
LIB=$(dirname "$(readlink -f "$0")")/lib
source "$LIB/common.sh"
source "$LIB/build.sh"
source "$LIB/net.sh"
source "$LIB/kafka.sh"
source "$LIB/kube.sh"
source "$LIB/product.sh"

lab_path() { echo "$LAB_DIR/bin:$K8S_BIN:$HELM_BIN:$PY_VENV/bin:$PATH"; }

write_env() {
  local count=$1 id addrs="" nss=""
  for ((id = 0; id < count; id++)); do
    addrs+="${addrs:+,}$(broker_ip "$id"):$KAFKA_PORT"
    nss+="${nss:+,}$(broker_ns "$id")"
  done
  cat >"$LAB_STATE/env" <<ENV
KSHOCK_LAB_STATE=$LAB_STATE
KSHOCK_LAB_BROKERS=$count
KSHOCK_LAB_BOOTSTRAP=$addrs
KSHOCK_LAB_BROKER_NETNS=$nss
KSHOCK_LAB_CLIENT_NETNS=$CLIENT_NS
KSHOCK_LAB_CLIENT_IP=$CLIENT_IP
KSHOCK_LAB_HOST_IP=$HOST_IP
KSHOCK_LAB_NODES=$(IFS=,; echo "${LAB_NODES[*]}")
KSHOCK_LAB_POD_NAMESPACE=$POD_NAMESPACE
KSHOCK_LAB_APISERVER=https://127.0.0.1:$APISERVER_PORT
KSHOCK_LAB_CONTROLLER_PORT=$CONTROLLER_PORT
KUBECONFIG=$KUBECONFIG
PATH=$(lab_path)
ENV
  if ((count == 3)); then
    cat >>"$LAB_STATE/env" <<ENV
KSHOCK_LAB_REPLICATION_PORT=$REPLICATION_PORT
KSHOCK_LAB_TLS_BOOTSTRAP=$(broker_ip "$TLS_BROKER"):$TLS_PORT
KSHOCK_LAB_TLS_CERT=$LAB_STATE/tls/broker.pem
ENV
  fi
}

running_brokers() { [[ -f $LAB_STATE/env ]] && sed -n 's/^KSHOCK_LAB_BROKERS=//p' "$LAB_STATE/env"; }

# Everything that could stop `up` halfway is checked before anything is created.
preflight() {
  [[ -f $LAB_STATE/env ]] && return 0 # our own lab holds the ports and the bridge
  require_free_port "$APISERVER_PORT" "kube-apiserver" APISERVER
  require_free_port "$ETCD_CLIENT_PORT" "etcd client" ETCD
  require_free_port "$ETCD_PEER_PORT" "etcd peer" ETCD
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "bridge $BRIDGE already exists and was not made by this lab; remove it (ip link delete $BRIDGE) or set KSHOCK_LAB_BRIDGE"
  fi
  if ip -4 route show "$NET_PREFIX.0/24" | grep -q .; then
    die "the lab subnet $NET_PREFIX.0/24 is already in use on this host: $(ip -4 route show "$NET_PREFIX.0/24" | head -1)"
  fi
}

cmd_up() {
  local count=1
  while (($#)); do
    case $1 in
      --brokers) count=${2:?--brokers needs a number}; shift 2 ;;
      *) die "up: unknown option $1" ;;
    esac
  done
  [[ $count == 1 || $count == 3 ]] || die "up: --brokers must be 1 or 3, not $count"
  require_root up
  local running; running=$(running_brokers || true)
  if [[ -n $running && $running != "$count" ]]; then
    die "the lab is already up with $running broker(s); run 'lab.sh down' first to change to $count"
  fi
  preflight
  build_all
  local started=$SECONDS id
  mkdir -p "$LAB_STATE"
  trap undo_failed_up EXIT
  net_up_bridge
  net_up_namespace "$CLIENT_NS" "$CLIENT_IP" "${NET6_PREFIX}100"
  for ((id = 0; id < count; id++)); do
    net_up_namespace "$(broker_ns "$id")" "$(broker_ip "$id")" "$(broker_ip6 "$id")"
  done
  log "starting $count Kafka broker(s) $KAFKA_VERSION and the Kubernetes API $K8S_VERSION"
  kube_up "$count"
  kafka_up "$count"
  write_env "$count"
  trap - EXIT
  log "up in $((SECONDS - started)) s: bootstrap $(sed -n 's/^KSHOCK_LAB_BOOTSTRAP=//p' "$LAB_STATE/env"), KUBECONFIG=$KUBECONFIG"
}

# Every process of the lab: from its pid files, its namespaces, and (for a crash that lost
# the pid files) from command lines only the lab's processes have.
lab_pids() {
  local pidfile ns
  for pidfile in "$LAB_STATE"/broker-*/pid "$KUBE_DIR"/*.pid "$PRODUCT_DIR"/*.pid; do cat "$pidfile"; done
  for ns in $(ip netns list | awk '$1 ~ /^ksl-/ {print $1}'); do ip netns pids "$ns"; done
  pgrep -f -- "^$K8S_BIN/(etcd|kube-apiserver) " || true
  pgrep -f -- "kafka\.Kafka $LAB_STATE/" || true
}

# True once none of the given pids exists any more, zombies included.
all_gone() {
  local pid
  for pid in "$@"; do [[ ! -e /proc/$pid ]] || return 1; done
}

# A failed `up` leaves nothing half-made: its logs are kept in the cache, the rest is removed.
undo_failed_up() {
  local kept=$KSHOCK_CACHE/logs/failed-up
  rm -rf "$kept" && mkdir -p "$kept"
  find "$LAB_STATE" -name '*.log' -exec cp --parents {} "$kept" \; 2>/dev/null || true
  log "up failed: removing what it started (logs kept in $kept)"
  cmd_down
}

cmd_down() {
  require_root down
  product_stop
  local pids
  pids=$(lab_pids | sort -u)
  # shellcheck disable=SC2086
  if [[ -n $pids ]]; then
    kill -9 $pids 2>/dev/null || true
    wait_for 15 all_gone $pids || die "lab processes survived SIGKILL: $pids"
  fi
  rm -rf "$KUBE_DIR" "$LAB_STATE"/broker-*
  net_down
  rm -rf "$LAB_STATE"
  log "down: no lab namespace, link, rule or process remains"
}

cmd_status() {
  [[ -f $LAB_STATE/env ]] || { echo "lab: down"; return 1; }
  local bad=0 pidfile
  echo "lab: up with $(running_brokers) broker(s)"
  for pidfile in "$LAB_STATE"/broker-*/pid "$KUBE_DIR/etcd.pid" "$KUBE_DIR/apiserver.pid"; do
    if pid_alive "$pidfile"; then echo "  running: ${pidfile#"$LAB_STATE"/} (pid $(cat "$pidfile"))"
    else echo "  DEAD:    ${pidfile#"$LAB_STATE"/}"; bad=1; fi
  done
  echo "  namespaces: $(ip netns list | awk '$1 ~ /^ksl-/ {printf "%s ", $1}')"
  return $bad
}

# Broker $1's pod recreated, as a StatefulSet does after a node drain: its network namespace
# (and every rule in it) is gone and made anew, the broker restarts on the same data, and its
# Pod object is replaced, so it gets a new UID.
cmd_restart_broker() {
  require_root restart-broker
  [[ -f $LAB_STATE/env ]] || die "the lab is not up: run 'lab.sh up' first"
  local id=${1:?restart-broker needs a broker id} count ns dir veth
  count=$(running_brokers)
  [[ $id =~ ^[0-9]+$ ]] && ((id < count)) || die "restart-broker: no broker $id (the lab has $count)"
  ns=$(broker_ns "$id") dir=$LAB_STATE/broker-$id veth=ksl-${ns#ksl-}
  veth=${veth:0:14}
  ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
  wait_for 15 bash -c "! ip netns pids $ns | grep -q ." || die "broker $id survived SIGKILL"
  rm -f "$dir/pid"
  ip netns delete "$ns"
  wait_for 10 bash -c "! ip link show $veth >/dev/null 2>&1" || ip link delete "$veth" 2>/dev/null || true
  net_up_namespace "$ns" "$(broker_ip "$id")" "$(broker_ip6 "$id")"
  kubectl -n "$POD_NAMESPACE" delete pod "kafka-broker-$id" --grace-period=0 --force --ignore-not-found >/dev/null 2>&1
  kube_register_broker_pod "$id"
  kafka_start_broker "$id" "$count"
  wait_for 90 kafka_brokers_ready "$count" || die "broker $id did not come back in 90 s (log: $dir/broker.log)"
  log "broker $id restarted in a new network namespace; pod kafka-broker-$id has a new UID"
}

cmd_client() {
  [[ -f $LAB_STATE/env ]] || die "the lab is not up: run 'lab.sh up' first"
  (($#)) || die "client: which command?"
  exec ip netns exec "$CLIENT_NS" env PATH="$(lab_path)" "$@"
}

cmd=${1:-}; shift || true
case $cmd in
  build) build_all ;;
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) [[ -f $LAB_STATE/env ]] || die "the lab is not up"; sed 's/^/export /' "$LAB_STATE/env" ;;
  topic) [[ -f $LAB_STATE/env ]] || die "the lab is not up"; kafka_create_topic "$@" ;;
  client) cmd_client "$@" ;;
  restart-broker) cmd_restart_broker "$@" ;;
  product)
    case ${1:-} in
      up) product_up "${@:2}" ;;
      start) product_start "${@:2}" ;;
      stop) product_stop ;;
      *) die "product: up [HELM_ARGS] | start BIN_DIR | stop" ;;
    esac ;;
  *) sed -n '2,14s/^# \{0,1\}//p' "$0"; [[ -z $cmd ]] || die "unknown command: $cmd" ;;
esac
