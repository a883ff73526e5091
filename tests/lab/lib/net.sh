# The lab network: one bridge on the host carrying the pod network (the CNI bridge plugin joins
# every pod to it), the nodes' addresses and a client namespace. Each broker pod's network
# namespace is also given a name (`ip netns attach ksl-broker-N`), so `kafka-shock --netns` and
# `ip netns exec` reach it as they reach any named namespace.

FORWARD_RULE=(FORWARD -i "$BRIDGE" -o "$BRIDGE" -m comment --comment kafka-shock-lab -j ACCEPT)

net_up_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
  local index
  ip link add "$BRIDGE" type bridge
  ip addr add "$HOST_IP/24" dev "$BRIDGE"
  # Each lab node (kubelet) has an address of its own, as nodes of a cluster do.
  for index in "${!LAB_NODES[@]}"; do ip addr add "$(node_ip "$index")/24" dev "$BRIDGE"; done
  ip -6 addr add "${NET6_PREFIX}1/64" dev "$BRIDGE" nodad
  ip link set "$BRIDGE" up
  echo "$BRIDGE" >"$LAB_STATE/bridge"
  # Bridged traffic crosses the host's FORWARD chain when br_netfilter is loaded; make sure a
  # DROP policy there cannot cut the lab off.
  iptables -C "${FORWARD_RULE[@]}" 2>/dev/null || iptables -I "${FORWARD_RULE[@]}"
}

# Creates namespace $1 with address $2 (and IPv6 $3) on the bridge: the clients' namespace.
net_up_namespace() {
  local ns=$1 ip4=$2 ip6=$3 veth=${1#ksl-}
  veth=ksl-${veth:0:10}
  ip netns list | grep -qw "^$ns" && return 0
  ip netns add "$ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip link set "$veth" master "$BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$ip4/24" dev eth0
  ip -n "$ns" -6 addr add "$ip6/64" dev eth0 nodad
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$HOST_IP"
}

# Names broker $1's pod network namespace ksl-broker-$1, replacing a name left on the namespace
# of an earlier pod of that broker (a recreated pod has a new one).
net_attach_broker() {
  local id=$1 ns pid uid
  ns=$(broker_ns "$id")
  uid=$(kubectl -n "$POD_NAMESPACE" get pod "$(broker_pod "$id")" -o jsonpath='{.metadata.uid}') || return 1
  pid=$(pod_pid "$uid") || { log "no process of pod $(broker_pod "$id") (UID $uid) on this host"; return 1; }
  if [[ -e /run/netns/$ns ]]; then
    [[ $(stat -L -c %i "/run/netns/$ns") == $(stat -L -c %i "/proc/$pid/ns/net") ]] && return 0
    ip netns delete "$ns"
  fi
  ip netns attach "$ns" "$pid"
}

net_down() {
  local ns link
  for ns in $(ip netns list | awk '$1 ~ /^ksl-/ {print $1}'); do
    ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$ns"
  done
  # The pods' veths go with their namespaces; any left behind on the lab bridge is the lab's.
  for link in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{split($2, name, "@"); print name[1]}'); do
    ip link delete "$link" 2>/dev/null || true
  done
  ip -o link show | awk -F': ' '{split($2, name, "@")} name[1] ~ /^ksl-/ {print name[1]}' | while read -r link; do
    ip link delete "$link" 2>/dev/null || true
  done
  ip link delete "$BRIDGE" 2>/dev/null || true
  while iptables -C "${FORWARD_RULE[@]}" 2>/dev/null; do iptables -D "${FORWARD_RULE[@]}"; done
  rm -f "$LAB_STATE/bridge"
}
