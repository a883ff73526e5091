#!/usr/bin/env bash
# kafka-shock's local lab: a real Kubernetes cluster on this host (etcd, kube-apiserver,
# controller-manager, scheduler, two kubelets with containerd, kube-proxy, a CNI bridge), real
# Apache Kafka brokers as pods of a StatefulSet, and real Kafka clients in a namespace of their own.
#
#   lab.sh build                 install and build everything into the cache (packages, binaries, images)
#   lab.sh up [--brokers 1|3]    start the lab (idempotent); prints the environment to use it
#                                (3 brokers: replication listener :9091, TLS listener :9094 on broker 0)
#   lab.sh down                  remove every process, pod, mount, namespace, link, rule and setting the lab made
#   lab.sh status                say what is running; exit 1 when the lab is not up
#   lab.sh env                   print the lab's environment (eval "$(lab.sh env)")
#   lab.sh topic NAME [PARTITIONS] [REPLICAS]
#   lab.sh client CMD [ARGS...]  run a command in the client namespace (kcat, kafka-class, python)
#   lab.sh restart-broker ID     delete broker ID's pod; the StatefulSet recreates it (new UID, new netns)
#   lab.sh netns                 (re)name each broker pod's network namespace ksl-broker-N
#   lab.sh product deploy BIN_DIR [--set K=V...]  build the images from the binaries in BIN_DIR and run
#                                the chart as pods (with these chart values)
#   lab.sh product up [HELM_ARGS] install the chart without workloads (e.g. --set allowedPorts={9092});
#                                print its accounts' kubeconfigs
#   lab.sh product start BIN_DIR run the operator and one agent per node from BIN_DIR as host processes
#   lab.sh product stop          stop those processes (SIGTERM: agents remove their rules)
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
source "$LIB/images.sh"
source "$LIB/host.sh"
source "$LIB/net.sh"
source "$LIB/kube.sh"
source "$LIB/node.sh"
source "$LIB/kafka.sh"
source "$LIB/product.sh"

lab_path() { echo "$LAB_DIR/bin:$K8S_BIN:$HELM_BIN:$PY_VENV/bin:$PATH"; }

write_env() {
  local count=$1 id addrs="" nss=""
  for ((id = 0; id < count; id++)); do
    addrs+="${addrs:+,}$(broker_ip "$id"):$KAFKA_PORT"
    nss+="${nss:+,}$(broker_ns "$id")"
  done
  cat >"$LAB_STATE/env.tmp" <<ENV
KSHOCK_LAB_STATE=$LAB_STATE
KSHOCK_LAB_BROKERS=$count
KSHOCK_LAB_BOOTSTRAP=$addrs
KSHOCK_LAB_BROKER_NETNS=$nss
KSHOCK_LAB_CLIENT_NETNS=$CLIENT_NS
KSHOCK_LAB_CLIENT_IP=$CLIENT_IP
KSHOCK_LAB_HOST_IP=$HOST_IP
KSHOCK_LAB_NODES=$(IFS=,; echo "${LAB_NODES[*]}")
KSHOCK_LAB_POD_NAMESPACE=$POD_NAMESPACE
KSHOCK_LAB_PAUSE_IMAGE=$PAUSE_IMAGE
KSHOCK_LAB_APISERVER=$APISERVER_URL
KSHOCK_LAB_CONTROLLER_PORT=$CONTROLLER_PORT
KUBECONFIG=$KUBECONFIG
PATH=$(lab_path)
ENV
  if ((count == 3)); then
    cat >>"$LAB_STATE/env.tmp" <<ENV
KSHOCK_LAB_REPLICATION_PORT=$REPLICATION_PORT
KSHOCK_LAB_TLS_BOOTSTRAP=$(broker_ip "$TLS_BROKER"):$TLS_PORT
KSHOCK_LAB_TLS_CERT=$LAB_STATE/tls/broker.pem
ENV
  fi
  mv "$LAB_STATE/env.tmp" "$LAB_STATE/env" # whole, for whoever reads it meanwhile
}

running_brokers() { [[ -f $LAB_STATE/env ]] && sed -n 's/^KSHOCK_LAB_BROKERS=//p' "$LAB_STATE/env"; }

# Everything that could stop `up` halfway is checked before anything is created.
preflight() {
  [[ -f $LAB_STATE/env ]] && return 0 # our own lab holds the ports and the bridge
  if [[ -n $(ls -A "$LAB_STATE" 2>/dev/null) ]]; then
    die "$LAB_STATE holds a lab left half made (an interrupted up, or a crash): run 'lab.sh down' first"
  fi
  require_free_port "$APISERVER_PORT" "kube-apiserver" APISERVER
  require_free_port "$ETCD_CLIENT_PORT" "etcd client" ETCD
  require_free_port "$ETCD_PEER_PORT" "etcd peer" ETCD
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "bridge $BRIDGE already exists and was not made by this lab; remove it (ip link delete $BRIDGE) or set KSHOCK_LAB_BRIDGE"
  fi
  if ip -4 route show "$NET_PREFIX.0/24" | grep -q .; then
    die "the lab subnet $NET_PREFIX.0/24 is already in use on this host: $(ip -4 route show "$NET_PREFIX.0/24" | head -1)"
  fi
  local port
  for port in "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" 10256 10249; do
    ss -Hltn "sport = :$port" | grep -q . &&
      die "port $port (a kubelet's or kube-proxy's) is already in use on this host: does it run Kubernetes? $(ss -Hltnp "sport = :$port" | awk '{print $NF}' | head -1)"
  done
  local free_mib
  free_mib=$(df -Pm "$(dirname "$LAB_STATE")" | awk 'NR == 2 {print $4}')
  ((free_mib >= 2048)) ||
    die "only $free_mib MiB free for $LAB_STATE: the lab's containers and images need about 2 GiB"
  if host_has_kube_chains; then
    die "the host's iptables hold KUBE-* chains: Kubernetes networking runs here, or a lab crashed ('lab.sh down' removes a lab's)"
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
  local started=$SECONDS
  mkdir -p "$LAB_STATE"
  trap undo_failed_up EXIT
  host_record
  net_up_bridge
  net_up_namespace "$CLIENT_NS" "$CLIENT_IP" "${NET6_PREFIX}100"
  log "starting Kubernetes $K8S_VERSION: control plane, nodes ${LAB_NODES[*]}"
  kube_up
  nodes_up
  log "starting $count Kafka broker(s) $KAFKA_VERSION as pods"
  kafka_up "$count"
  write_env "$count"
  trap - EXIT
  log "up in $((SECONDS - started)) s: bootstrap $(sed -n 's/^KSHOCK_LAB_BOOTSTRAP=//p' "$LAB_STATE/env"), KUBECONFIG=$KUBECONFIG"
}

# Every process of the lab: from its pid files, its cgroups (the pods' containers), its
# namespaces, and (for a crash that lost the pid files) from command lines only the lab's
# processes have.
lab_pids() {
  local pidfile ns
  for pidfile in "$KUBE_DIR"/*.pid "$LAB_STATE"/nodes/*/*.pid "$LAB_STATE"/kube-proxy/*.pid "$PRODUCT_DIR"/*.pid; do
    cat "$pidfile"
  done
  host_cgroup_pids
  for ns in $(ip netns list | awk '$1 ~ /^ksl-/ {print $1}'); do ip netns pids "$ns"; done
  pgrep -f -- "^$K8S_BIN/(etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy) " || true
  pgrep -f -- "^containerd --config $LAB_STATE/" || true
  pgrep -f -- "containerd-shim-runc-v2 .*-address $LAB_STATE/" || true
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
  find "$LAB_STATE" -name '*.log' -not -path '*/containerd/*' -exec cp --parents {} "$kept" \; 2>/dev/null || true
  kubectl get pods -A -o wide >"$kept/pods.txt" 2>&1 || true
  kubectl describe nodes >"$kept/nodes.txt" 2>&1 || true
  kubectl get events -A --sort-by=.lastTimestamp >"$kept/events.txt" 2>&1 || true
  log "up failed: removing what it started (logs kept in $kept)"
  cmd_down
}

cmd_down() {
  require_root down
  product_stop
  local pids
  # Twice: a kubelet or containerd killed in the first round cannot start a container after it.
  for _ in 1 2; do
    pids=$(lab_pids | sort -u)
    # shellcheck disable=SC2086
    if [[ -n $pids ]]; then
      kill -9 $pids 2>/dev/null || true
      wait_for 15 all_gone $pids || die "lab processes survived SIGKILL: $pids"
    fi
  done
  net_down
  host_unmount_lab || die "could not unmount: $(host_mounts_below "$LAB_STATE" | tr '\n' ' '); nothing below $LAB_STATE was removed"
  host_remove_cgroups || die "the kubelets' cgroups could not be removed"
  host_remove_kube_chains || die "the KUBE-* iptables chains could not be removed"
  host_restore
  rm -rf "$LAB_STATE"
  log "down: no lab process, pod, mount, namespace, link, rule or setting remains"
}

cmd_status() {
  [[ -f $LAB_STATE/env ]] || { echo "lab: down"; return 1; }
  local bad=0 pidfile node
  echo "lab: up with $(running_brokers) broker(s)"
  for pidfile in "$KUBE_DIR"/{etcd,apiserver,controller-manager,scheduler}.pid "$LAB_STATE"/nodes/*/{containerd,kubelet}.pid "$LAB_STATE/kube-proxy/kube-proxy.pid"; do
    if pid_alive "$pidfile"; then echo "  running: ${pidfile#"$LAB_STATE"/} (pid $(cat "$pidfile"))"
    else echo "  DEAD:    ${pidfile#"$LAB_STATE"/}"; bad=1; fi
  done
  for node in "${LAB_NODES[@]}"; do
    if node_ready "$node"; then echo "  node $node: Ready"; else echo "  node $node: NOT READY"; bad=1; fi
  done
  echo "  namespaces: $(ip netns list | awk '$1 ~ /^ksl-/ {printf "%s ", $1}')"
  return $bad
}

broker_uid() { kubectl -n "$POD_NAMESPACE" get pod "$(broker_pod "$1")" -o jsonpath='{.metadata.uid}' 2>/dev/null; }
broker_recreated() { local uid; uid=$(broker_uid "$1") && [[ -n $uid && $uid != "$2" ]]; }

# Broker $1's pod recreated, as after a node drain or `kubectl delete pod`: the StatefulSet makes
# a new pod (new UID, new network namespace, every rule gone), which starts from the broker's
# data and keeps its address; its namespace gets the name ksl-broker-$1 again.
cmd_restart_broker() {
  require_root restart-broker
  [[ -f $LAB_STATE/env ]] || die "the lab is not up: run 'lab.sh up' first"
  local id=${1:?restart-broker needs a broker id} count old
  count=$(running_brokers)
  [[ $id =~ ^[0-9]+$ ]] && ((id < count)) || die "restart-broker: no broker $id (the lab has $count)"
  old=$(broker_uid "$id")
  kubectl -n "$POD_NAMESPACE" delete pod "$(broker_pod "$id")" --wait=true >/dev/null
  wait_for 60 broker_recreated "$id" "$old" || die "the StatefulSet did not recreate $(broker_pod "$id") in 60 s"
  kubectl -n "$POD_NAMESPACE" wait --for=condition=Ready "pod/$(broker_pod "$id")" --timeout=120s >/dev/null ||
    die "$(broker_pod "$id") did not become Ready in 120 s"
  kafka_wait_ready "$count"
  log "broker $id restarted in a new pod (UID $(broker_uid "$id"))"
}

# After pods were recreated by someone else (a test's `kubectl delete pod`, a drain): names
# each broker's current network namespace again.
cmd_netns() {
  require_root netns
  [[ -f $LAB_STATE/env ]] || die "the lab is not up: run 'lab.sh up' first"
  kafka_wait_ready "$(running_brokers)"
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
  netns) cmd_netns ;;
  product)
    case ${1:-} in
      deploy) product_deploy "${@:2}" ;;
      up) product_up "${@:2}" ;;
      start) product_start "${@:2}" ;;
      stop) product_stop ;;
      *) die "product: deploy BIN_DIR [--set K=V...] | up [HELM_ARGS] | start BIN_DIR | stop" ;;
    esac ;;
  *) sed -n '2,21s/^# \{0,1\}//p' "$0"; [[ -z $cmd ]] || die "unknown command: $cmd" ;;
esac
