#!/usr/bin/env bash
# Benchmark of kafka-shock-operator on the lab's kube-apiserver, as root (no agent runs):
#   1. baseline write cost: `kubectl apply` of 200 Pods (Running, Ready, over 2 hollow nodes:
#      Node objects no kubelet runs, kept Ready by this script renewing their Leases, so the
#      pods' status is the one written here) and of 1,000 KafkaFaults over them (modes All, One
#      and Percent);
#   2. operator cold start over them: time until every fault's status is rolled up for its
#      generation and every injection exists, its peak RSS (VmHWM) and CPU seconds, its
#      reconciles and errors;
#   3. peer: `kubectl apply --server-side` of the same number of injections (with the operator's
#      token, as the chart's admission policy requires), the raw cost of the writes the
#      operator had to make;
#   4. teardown: pods deleted, then the faults: time until every fault is gone (the operator
#      releases the injections of vanished pods itself).
# Runs as the chart's operator ServiceAccount. Cleans up what it made (the namespaces stay, for
# the next run).
# Usage: flock /tmp/kshock-lab.lock tests/bench/operator-bench.sh [FAULTS] [PODS]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
FAULTS=${1:-1000}
PODS=${2:-200}
GROUPS_=20 # pods are spread over this many label groups; each fault selects one group
NS=kshock-bench
PEER_NS=kshock-bench-peer
LAB=tests/lab/lab.sh
"$LAB" status >/dev/null 2>&1 || "$LAB" up >/dev/null
eval "$("$LAB" env)"
cargo build -q --release -p kafka-shock-operator
OPERATOR=${CARGO_TARGET_DIR:-target}/release/kafka-shock-operator
WORK=$(mktemp -d)
HOLLOW=(ksl-hollow-1 ksl-hollow-2)
operator_pid=
heartbeat_pid=
as_operator_cleanup() {
  kubectl get kafkafaultinjections -n "$1" -o name 2>/dev/null |
    xargs -r -P 8 -I{} kubectl patch {} -n "$1" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  kubectl delete kafkafaultinjections --all -n "$1" --wait=false >/dev/null 2>&1 || true
}
cleanup() {
  [[ -n $operator_pid ]] && kill -INT "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true
  [[ -n $heartbeat_pid ]] && kill "$heartbeat_pid" 2>/dev/null || true
  # Whatever is left (a failed run): drop the finalizers, then the objects. Injections only
  # the operator's account may change (the chart's admission policy).
  for ns in "$NS" "$PEER_NS"; do
    KUBECONFIG=${KSHOCK_OPERATOR_KUBECONFIG:-$KUBECONFIG} as_operator_cleanup "$ns"
    kubectl get kafkafaults -n "$ns" -o name 2>/dev/null |
      xargs -r -P 8 -I{} kubectl patch {} -n "$ns" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    kubectl delete --raw "/apis/kafkashock.io/v1alpha1/namespaces/$ns/kafkafaults" >/dev/null 2>&1 || true
    kubectl delete --raw "/api/v1/namespaces/$ns/pods?gracePeriodSeconds=0" >/dev/null 2>&1 || true
  done
  for node in "${HOLLOW[@]}"; do
    kubectl delete node "$node" --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete lease "$node" -n kube-node-lease --ignore-not-found >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

# The chart, and a kubeconfig with the operator ServiceAccount's token.
eval "$(tests/lab/lab.sh product up 2>/dev/null | sed 's/^/export /')"
for ns in "$NS" "$PEER_NS"; do kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null; done
# Hollow nodes: Ready Node objects whose Leases this script renews (as a kubelet would), so the
# node lifecycle controller keeps them Ready; tainted, so the scheduler puts nothing there.
hollow_heartbeat() {
  local node
  for node in "${HOLLOW[@]}"; do
    kubectl apply -f - >/dev/null <<YAML
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: $node, namespace: kube-node-lease}
spec: {holderIdentity: $node, leaseDurationSeconds: 40, renewTime: "$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"}
YAML
  done
}
for node in "${HOLLOW[@]}"; do
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata: {name: $node, labels: {kafkashock.io/hollow: "true"}}
spec: {taints: [{key: kafkashock.io/hollow, value: "true", effect: NoSchedule}]}
YAML
  heartbeat=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  kubectl patch node "$node" --subresource=status --type=merge -p "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\",\"message\":\"hollow node of operator-bench\",\"lastHeartbeatTime\":\"$heartbeat\",\"lastTransitionTime\":\"$heartbeat\"}]}}" >/dev/null
done
hollow_heartbeat
(while sleep 10; do hollow_heartbeat; done) &
heartbeat_pid=$!
NODES=("${HOLLOW[@]}")

# The objects: pods spread over label groups and nodes; faults each selecting one group.
python3 - "$WORK" "$PODS" "$FAULTS" "$GROUPS_" "$NS" "${NODES[@]}" >"$WORK/expected" <<'PY'
import json, math, sys
work, pods, faults, groups, ns, nodes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6:]
in_group = [len(range(g, pods, groups)) for g in range(groups)]
pod_docs, statuses, fault_docs, injections = [], [], [], 0
for p in range(pods):
    ip = f"10.200.{p // 250}.{p % 250 + 1}"
    pod_docs.append({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"bench-pod-{p}", "namespace": ns,
                     "labels": {"app": "bench-kafka", "bench-group": f"g{p % groups}"}},
        "spec": {"nodeName": nodes[p % len(nodes)], "containers": [{"name": "kafka", "image": "apache/kafka"}]}})
    statuses.append(f"bench-pod-{p} " + json.dumps({"status": {"phase": "Running", "podIP": ip,
        "podIPs": [{"ip": ip}], "conditions": [{"type": "Ready", "status": "True"}]}}, separators=(",", ":")))
for f in range(faults):
    group, pods_there = f % groups, in_group[f % groups]
    spec = {"selector": {"matchLabels": {"bench-group": f"g{group}"}},
            "match": {"apiKeys": ["Produce"], "clientId": {"exact": f"bench-{f}"}},
            "action": {"type": "Reject"}}
    if f % 3 == 0:
        injections += pods_there
    elif f % 3 == 1:
        spec["mode"] = "One"
        injections += min(1, pods_there)
    else:
        spec["mode"], spec["value"] = "Percent", 30
        injections += math.ceil(pods_there * 30 / 100)
    fault_docs.append({"apiVersion": "kafkashock.io/v1alpha1", "kind": "KafkaFault",
        "metadata": {"name": f"bench-{f}", "namespace": ns}, "spec": spec})
json.dump({"apiVersion": "v1", "kind": "List", "items": pod_docs}, open(f"{work}/pods.json", "w"))
json.dump({"apiVersion": "v1", "kind": "List", "items": fault_docs}, open(f"{work}/faults.json", "w"))
open(f"{work}/statuses", "w").write("\n".join(statuses) + "\n")
print(injections)
PY
expected=$(cat "$WORK/expected")

# Faults rolled up for their generation, and injections present, in namespace $1.
progress() {
  local rolled injections
  rolled=$(kubectl get kafkafaults -n "$1" -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
print(sum(1 for f in items if (f.get("status") or {}).get("observedGeneration") == f["metadata"]["generation"]))')
  injections=$(kubectl get kafkafaultinjections -n "$1" -o name | wc -l)
  echo "$rolled $injections"
}
cpu_seconds() { awk -v tck="$(getconf CLK_TCK)" '{print ($14 + $15) / tck}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/VmHWM/ {print $2 / 1024}' "/proc/$1/status"; }
metric() { curl -s "http://$METRICS/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

echo "== 1. baseline: kubectl apply of $PODS pods and $FAULTS faults"
t0=$(now)
kubectl apply -f "$WORK/pods.json" >/dev/null
pods_apply=$(since "$t0")
t0=$(now)
split -n l/8 "$WORK/statuses" "$WORK/status-part."
patchers=()
for part in "$WORK"/status-part.*; do
  while read -r pod status; do
    kubectl patch pod "$pod" -n "$NS" --subresource=status --type=merge -p "$status" >/dev/null
  done <"$part" &
  patchers+=($!)
done
wait "${patchers[@]}" # not the hollow nodes' heartbeat
pods_status=$(since "$t0")
t0=$(now)
kubectl apply -f "$WORK/faults.json" >/dev/null
faults_apply=$(since "$t0")
echo "kubectl apply: $PODS pods ${pods_apply}s (+ their status, 8 in parallel, ${pods_status}s); $FAULTS faults ${faults_apply}s"

echo "== 2. operator cold start: $FAULTS faults -> $expected injections"
METRICS=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
t0=$(now)
KUBECONFIG=$KSHOCK_OPERATOR_KUBECONFIG KAFKA_SHOCK_LOG=warn "$OPERATOR" --metrics-addr "$METRICS" 2>"$WORK/operator.log" &
operator_pid=$!
while true; do
  read -r rolled injections <<<"$(progress "$NS")"
  [[ $rolled -eq $FAULTS && $injections -eq $expected ]] && break
  kill -0 "$operator_pid" 2>/dev/null || { echo "operator died:" >&2; cat "$WORK/operator.log" >&2; exit 1; }
  if python3 -c "import sys; sys.exit(0 if $(now) - $t0 > 600 else 1)"; then
    echo "bench: no steady state after 600 s ($rolled of $FAULTS faults rolled up, $injections of $expected injections)" >&2
    exit 1
  fi
  sleep 1
done
steady=$(since "$t0")
sleep 5 # settle: the status writes wake each fault once more
reconciles=$(metric kafka_shock_operator_reconciles_total)
errors=$(curl -s "http://$METRICS/metrics" | awk '/^kafka_shock_operator_reconcile_errors_total/ {sum += $2} END {print sum + 0}')
echo "steady state after ${steady}s: $FAULTS faults rolled up, $expected injections;" \
  "peak RSS $(peak_rss_mib "$operator_pid") MiB, CPU $(cpu_seconds "$operator_pid") s," \
  "$reconciles reconciles, $errors errors"
before=$(cpu_seconds "$operator_pid")
sleep 10
echo "idle at steady state: $(python3 -c "print(round($(cpu_seconds "$operator_pid") - $before, 2))") CPU s in 10 s," \
  "$(python3 -c "print(int($(metric kafka_shock_operator_reconciles_total) - $reconciles))") reconciles"

echo "== 3. peer: kubectl apply --server-side of $expected injections (the same objects)"
kubectl get kafkafaultinjections -n "$NS" -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
peers = [{"apiVersion": i["apiVersion"], "kind": i["kind"],
          "metadata": {"name": i["metadata"]["name"], "namespace": sys.argv[1], "labels": i["metadata"]["labels"]},
          "spec": i["spec"]} for i in items]
json.dump({"apiVersion": "v1", "kind": "List", "items": peers}, sys.stdout)' "$PEER_NS" >"$WORK/peers.json"
t0=$(now)
# As the operator's account: the chart's admission policy refuses injections from anyone else.
KUBECONFIG=$KSHOCK_OPERATOR_KUBECONFIG kubectl apply --server-side --field-manager=bench -f "$WORK/peers.json" >/dev/null
echo "kubectl apply --server-side: $expected injections in $(since "$t0")s (operator: ${steady}s for them plus $FAULTS finalizers, statuses and Events)"
KUBECONFIG=$KSHOCK_OPERATOR_KUBECONFIG kubectl delete kafkafaultinjections --all -n "$PEER_NS" --wait=false >/dev/null

echo "== 4. teardown: pods deleted, then the faults"
t0=$(now)
kubectl delete --raw "/api/v1/namespaces/$NS/pods?gracePeriodSeconds=0" >/dev/null
kubectl delete --raw "/apis/kafkashock.io/v1alpha1/namespaces/$NS/kafkafaults" >/dev/null
until [[ $(kubectl get kafkafaults -n "$NS" -o name | wc -l) -eq 0 ]]; do
  python3 -c "import sys; sys.exit(0 if $(now) - $t0 > 600 else 1)" && { echo "bench: faults still there after 600 s" >&2; exit 1; }
  sleep 1
done
echo "every fault gone $(since "$t0")s after the delete; injections left: $(kubectl get kafkafaultinjections -n "$NS" -o name | wc -l)"
echo "operator totals: peak RSS $(peak_rss_mib "$operator_pid") MiB, CPU $(cpu_seconds "$operator_pid") s"
kill -INT "$operator_pid"
t0=$(now)
wait "$operator_pid"
echo "graceful stop on SIGINT in $(since "$t0")s (exit 0)"
operator_pid=
