# The lab network: a bridge on the host and one network namespace ("pod") per broker plus a
# client namespace, each joined to the bridge by a veth pair, with IPv4 and IPv6 addresses.

FORWARD_RULE=(FORWARD -i "$BRIDGE" -o "$BRIDGE" -m comment --comment kafka-shock-lab -j ACCEPT)

net_up_bridge() {
  ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
  ip link add "$BRIDGE" type bridge
  ip addr add "$HOST_IP/24" dev "$BRIDGE"
  ip -6 addr add "${NET6_PREFIX}1/64" dev "$BRIDGE" nodad
  ip link set "$BRIDGE" up
  echo "$BRIDGE" >"$LAB_STATE/bridge"
  # Bridged traffic crosses the host's FORWARD chain when br_netfilter is loaded; make sure a
  # DROP policy there cannot cut the lab off.
  iptables -C "${FORWARD_RULE[@]}" 2>/dev/null || iptables -I "${FORWARD_RULE[@]}"
}

# Creates namespace $1 with address $2 (and IPv6 $3) on the bridge.
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

net_down() {
  local ns
  for ns in $(ip netns list | awk '$1 ~ /^ksl-/ {print $1}'); do
    ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$ns"
  done
  ip -o link show | awk -F': ' '{split($2, name, "@")} name[1] ~ /^ksl-/ {print name[1]}' | while read -r link; do
    ip link delete "$link" 2>/dev/null || true
  done
  ip link delete "$BRIDGE" 2>/dev/null || true
  while iptables -C "${FORWARD_RULE[@]}" 2>/dev/null; do iptables -D "${FORWARD_RULE[@]}"; done
  rm -f "$LAB_STATE/bridge"
}
