# What the lab's Kubernetes changes on the host, recorded before `up` changes it and undone by
# `down`, also after a crash: kernel settings the kubelet, kube-proxy and the CNI bridge plugin
# write, directories they create outside $LAB_STATE, mounts (the kubelet's shared root, pod
# volumes, containers' root filesystems, network namespaces), cgroups, and KUBE-* iptables chains.

HOST_RECORD=$LAB_STATE/host-before

# Kernel settings: the kubelet's (vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
# kernel.panic_on_oops, kernel.keys.*), the bridge plugin's and kube-proxy's (forwarding,
# route_localnet, conntrack).
HOST_SYSCTLS=(
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv6.conf.default.forwarding
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait net.netfilter.nf_conntrack_tcp_be_liberal
)
# Directories outside $LAB_STATE that the kubelet (legacy log links), libcni (result cache)
# and the containerd shims (sockets) create at fixed places.
HOST_DIRS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /run/containerd)

# Records the host as it is, once, before anything of the lab's Kubernetes runs.
host_record() {
  [[ -f $HOST_RECORD ]] && return 0
  local key dir
  {
    for key in "${HOST_SYSCTLS[@]}"; do
      [[ -e /proc/sys/${key//.//} ]] && echo "sysctl $key $(sysctl -n "$key")"
    done
    for dir in "${HOST_DIRS[@]}"; do [[ -e $dir ]] || echo "absent $dir"; done
    host_has_kube_chains || echo "absent-kube-chains"
  } >"$HOST_RECORD.tmp"
  mv "$HOST_RECORD.tmp" "$HOST_RECORD"
}

# Puts back what host_record saw: settings changed since, directories that were not there.
host_restore() {
  [[ -f $HOST_RECORD ]] || return 0
  local kind key value
  while read -r kind key value; do
    case $kind in
      sysctl)
        if [[ $(sysctl -n "$key" 2>/dev/null) != "$value" ]]; then
          sysctl -q -w "$key=$value" >/dev/null || log "could not restore $key=$value"
        fi ;;
      absent)
        # Never below a mount: that would remove what the mount shows.
        if [[ -z $(host_mounts_below "$key") ]]; then rm -rf "$key"; else log "$key holds mounts: left"; fi ;;
    esac
  done <"$HOST_RECORD"
}

# Every mount point below $1, deepest first.
host_mounts_below() {
  awk -v prefix="$1/" '{ if (index($5 "/", prefix) == 1) print $5 }' /proc/self/mountinfo | sort -r -u
}

# Unmounts everything below $LAB_STATE (lazily when busy); fails if anything stays mounted.
host_unmount_lab() {
  local mount
  for mount in $(host_mounts_below "$LAB_STATE"); do
    umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
  done
  [[ -z $(host_mounts_below "$LAB_STATE") ]]
}

# The kubelets' cgroup roots (/<node>/...), deepest first, in every hierarchy.
host_remove_cgroups() {
  local hierarchy node
  for hierarchy in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts); do
    for node in "${LAB_NODES[@]}"; do
      [[ -d $hierarchy/$node ]] && find "$hierarchy/$node" -depth -type d -exec rmdir {} + 2>/dev/null
    done
  done
  for hierarchy in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts); do
    for node in "${LAB_NODES[@]}"; do
      [[ ! -d $hierarchy/$node ]] || { log "cgroup $hierarchy/$node could not be removed"; return 1; }
    done
  done
}

# The processes in the kubelets' cgroups: every container of every lab pod.
host_cgroup_pids() {
  local hierarchy node
  for hierarchy in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts); do
    for node in "${LAB_NODES[@]}"; do
      [[ -d $hierarchy/$node ]] && find "$hierarchy/$node" -name cgroup.procs -exec cat {} + 2>/dev/null
    done
  done
}

# Whether any KUBE-* chain exists in the host's iptables or ip6tables.
host_has_kube_chains() {
  local tool
  for tool in iptables-save ip6tables-save; do
    "$tool" 2>/dev/null | grep -q '^:KUBE-' && return 0
  done
  return 1
}

# Removes the KUBE-* chains of kube-proxy (its own cleanup) and of the kubelets, in both
# families: first the rules that jump to them, then the chains. Only when the lab recorded the
# host without any (preflight refuses a host that has some): never another Kubernetes' chains.
host_remove_kube_chains() {
  grep -q '^absent-kube-chains' "$HOST_RECORD" 2>/dev/null || return 0
  [[ -x $K8S_BIN/kube-proxy ]] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1
  local tool table rule chain
  for tool in iptables ip6tables; do
    for table in filter nat mangle raw; do
      "$tool-save" -t "$table" 2>/dev/null | grep -q '^:KUBE-' || continue
      "$tool-save" -t "$table" | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' |
        while read -r rule; do
          # shellcheck disable=SC2086
          eval "$tool -t $table -D ${rule#-A }" 2>/dev/null || true
        done
      for chain in $("$tool-save" -t "$table" | sed -n 's/^:\(KUBE-[^ ]*\).*/\1/p'); do
        "$tool" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$tool-save" -t "$table" | sed -n 's/^:\(KUBE-[^ ]*\).*/\1/p'); do
        "$tool" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
  ! host_has_kube_chains || { log "KUBE-* chains remain in the host's iptables"; return 1; }
}
