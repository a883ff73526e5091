#!/usr/bin/env bash
# Benchmark of kafka-shock-operator on the lab's kube-apiserver, as root (no agent runs), in
# ROUNDS rounds; the operator's side and the peer's alternate (operator first in odd rounds):
#   operator: `kubectl apply` of PODS Pods (Running, Ready, over 2 hollow nodes: Node objects no
#     kubelet runs, kept Ready by this script renewing their Leases, so the pods' status is the
#     one written here) and of FAULTS KafkaFaults over them (modes All, One and Percent); then
#     a fresh operator process, built by this run: the time until every fault's status is
#     rolled up for its generation and every injection exists (steady state, seen by one watch
#     of the namespace, steady_state.py: a poller would take CPU from the API server); its CPU seconds
#     and peak RSS (/proc); the API requests it made, counted by the API server's audit log
#     (not by the operator); its reconciles (its /metrics); the API server's and etcd's CPU,
#     that CPU with the operator's spread over the cores (no schedule of it ends sooner), and
#     how busy the machine's cores were over the same span (/proc; for the peer too, as both
#     sides' work is mostly the API server's); then teardown: the pods deleted, then the faults,
#     until every fault is gone (the operator releases the injections of vanished pods itself);
#   peer: `kubectl apply --server-side` of the same injections (with the operator's token, as
#     the chart's admission policy requires): the raw cost of the writes the operator has to
#     make, without finalizers, statuses or Events.
# Then what each kind of request the operator makes costs the API server alone, one at a time
# (request_costs.py; its background work included, so no floor), times the operator's requests.
# Prints each round, then min/median/max; with BENCH_FIGURES set, records them there (run-all.sh).
# Runs as the chart's operator ServiceAccount. Cleans up what it made (the namespaces stay, for
# the next run).
# Usage: flock /tmp/kshock-lab.lock tests/bench/operator-bench.sh [ROUNDS] [FAULTS] [PODS]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
ROUNDS=${1:-3}
FAULTS=${2:-1000}
PODS=${3:-200}
GROUPS_=20 # pods are spread over this many label groups; each fault selects one group
NS=kshock-bench
PEER_NS=kshock-bench-peer
LAB=tests/lab/lab.sh
. tests/bench/lib.sh
refuse_strays
"$LAB" status >/dev/null 2>&1 || "$LAB" up >/dev/null
eval "$("$LAB" env)"
bench_build kafka-shock-operator
OPERATOR=$BIN/kafka-shock-operator
WORK=$(mktemp -d)
HOLLOW=(ksl-hollow-1 ksl-hollow-2)
operator_pid=
heartbeat_pid=
watcher_pid=
proxy_pids=()
as_operator_cleanup() {
  kubectl get kafkafaultinjections -n "$1" -o name 2>/dev/null |
    xargs -r -P 8 -I{} kubectl patch {} -n "$1" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
  kubectl delete kafkafaultinjections --all -n "$1" --wait=false >/dev/null 2>&1 || true
}
cleanup() {
  if [[ -n $operator_pid ]] && kill -0 "$operator_pid" 2>/dev/null; then
    # A failed round: the operator still runs, so it releases what it made once pods and faults go.
    kubectl delete --raw "/api/v1/namespaces/$NS/pods?gracePeriodSeconds=0" >/dev/null 2>&1 || true
    kubectl delete --raw "/apis/kafkashock.io/v1alpha1/namespaces/$NS/kafkafaults" >/dev/null 2>&1 || true
    local t0
    t0=$(date +%s)
    until [[ $(kubectl get kafkafaults -n "$NS" -o name 2>/dev/null | wc -l) -eq 0 ]] || (($(date +%s) - t0 > 90)); do sleep 1; done
    kill -INT "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true
  fi
  for pid in "$heartbeat_pid" "$watcher_pid" "${proxy_pids[@]}"; do
    [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
  done
  # Whatever is left (a failed run): drop the finalizers, then the objects. Injections only
  # the operator's account may change (the chart's admission policy).
  for ns in "$NS" "$PEER_NS"; do
    KUBECONFIG=${KSHOCK_OPERATOR_KUBECONFIG:-$KUBECONFIG} as_operator_cleanup "$ns"
    kubectl get kafkafaults -n "$ns" -o name 2>/dev/null |
      xargs -r -P 8 -I{} kubectl patch {} -n "$ns" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    kubectl delete --raw "/apis/kafkashock.io/v1alpha1/namespaces/$ns/kafkafaults" >/dev/null 2>&1 || true
    kubectl delete --raw "/api/v1/namespaces/$ns/pods?gracePeriodSeconds=0" >/dev/null 2>&1 || true
    kubectl delete --raw "/api/v1/namespaces/$ns/events" >/dev/null 2>&1 || true
  done
  for node in "${HOLLOW[@]}"; do
    kubectl delete node "$node" --ignore-not-found >/dev/null 2>&1 || true
    kubectl delete lease "$node" -n kube-node-lease --ignore-not-found >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
# A collection delete, repeated until it returns: on a busy API server one can outlast the
# request timeout (60 s) and be cut off with part of the collection left.
delete_all() { # PATH
  for _ in 1 2 3 4 5; do kubectl delete --raw "$1" >/dev/null 2>&1 && return 0; done
  echo "bench: could not delete $1" >&2
  return 1
}
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
# Plain-HTTP ways in for the bench's own Python clients: kubectl proxies on free local ports.
proxy_up() { # NAME [KUBECONFIG]: sets $proxy to the proxy's address
  KUBECONFIG=${2:-$KUBECONFIG} kubectl proxy --port=0 >"$WORK/proxy-$1.out" 2>&1 &
  proxy_pids+=($!)
  until proxy=$(sed -n 's/^Starting to serve on //p' "$WORK/proxy-$1.out") && [[ -n $proxy ]]; do
    kill -0 "${proxy_pids[-1]}" 2>/dev/null || { echo "bench: kubectl proxy failed:" >&2; cat "$WORK/proxy-$1.out" >&2; exit 1; }
    sleep 0.1
  done
}
proxy_up admin
PROXY=$proxy
AUDIT=$KSHOCK_LAB_STATE/kube/audit.log
[[ -f $AUDIT ]] || { echo "bench: no audit log $AUDIT (a lab started by an older lab.sh: take it down and up)" >&2; exit 1; }
OPERATOR_USER=$(KUBECONFIG=$KSHOCK_OPERATOR_KUBECONFIG kubectl auth whoami -o jsonpath='{.status.userInfo.username}')

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

# Steady state (or, with "gone", every fault and injection deleted) is seen by one process
# watching the namespace through a kubectl proxy (steady_state.py), not by polling: a poller's
# processes would take CPU from the API server the operator waits on.
watch_until() { # NAMESPACE INJECTIONS|gone: starts the watcher; returns once it has listed NAMESPACE
  python3 tests/bench/steady_state.py "http://$PROXY" "$1" "$2" 600 >"$WORK/watch.out" 2>"$WORK/watch.err" &
  watcher_pid=$!
  until grep -q '^ready' "$WORK/watch.out"; do
    kill -0 "$watcher_pid" 2>/dev/null || { echo "bench: the watcher failed:" >&2; cat "$WORK/watch.err" >&2; exit 1; }
    sleep 0.1
  done
}
watched_since() { # T0: sets $watched to the seconds from T0 to what the watcher waits for
  # (the operator, if running, must live meanwhile)
  while kill -0 "$watcher_pid" 2>/dev/null; do
    [[ -z $operator_pid ]] || kill -0 "$operator_pid" 2>/dev/null || { echo "operator died:" >&2; cat "$WORK/operator.log" >&2; exit 1; }
    sleep 0.2
  done
  wait "$watcher_pid" || { echo "bench:" "$(cat "$WORK/watch.err")" >&2; exit 1; }
  watcher_pid=
  watched=$(python3 -c "print(f'{$(awk '$1 == "steady" {print $2}' "$WORK/watch.out") - $1:.1f}')")
}
cpu_seconds() { awk -v ticks="$(cpu_ticks "$1")" -v tck="$(getconf CLK_TCK)" 'BEGIN {print ticks / tck}'; }
# The API server does the work both sides ask for: its CPU (/proc) tells what each request costs.
APISERVER_PID=$(cat "$KSHOCK_LAB_STATE/kube/apiserver.pid")
apiserver_cpu() { cpu_seconds "$APISERVER_PID"; }
# etcd stores every write; with the API server it is the control plane the operator waits on.
ETCD_PID=$(cat "$KSHOCK_LAB_STATE/kube/etcd.pid")
CORES=$(nproc)
# The machine's CPU counters, all cores: "busy total" in ticks (/proc/stat; idle and iowait are not busy).
machine_ticks() { awk '/^cpu / {total = 0; for (i = 2; i <= NF; i++) total += $i; print total - $5 - $6, total}' /proc/stat; }
busy_percent() { # "BUSY TOTAL" before, "BUSY TOTAL" after
  python3 -c "b0, t0, b1, t1 = map(int, '$1 $2'.split()); print(round(100 * (b1 - b0) / max(1, t1 - t0), 1))"
}
difference() { python3 -c "print(round($2 - $1, 2))"; }
peak_rss_mib() { awk '/VmHWM/ {print $2 / 1024}' "/proc/$1/status"; }
metric() { curl -s "http://$METRICS/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
audit_mark() { wc -l <"$AUDIT"; }
# The requests USER made after line FROM of the audit log: "TOTAL verb resource=N ...".
audit_requests() { # FROM USER
  tail -n +"$(($1 + 1))" "$AUDIT" | python3 -c '
import collections, json, sys
seen, by = set(), collections.Counter()
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:  # the line being written
        continue
    if e["user"]["username"] != sys.argv[1] or e["auditID"] in seen:
        continue
    seen.add(e["auditID"])
    r = e.get("objectRef") or {}
    by[e["verb"] + " " + r.get("resource", "-") + ("/" + r["subresource"] if r.get("subresource") else "")] += 1
print(len(seen), ", ".join(f"{k}={v}" for k, v in by.most_common()))' "$2"
}

operator_round() { # ROUND
  local t0 from steady before reconciles errors requests
  kubectl apply -f "$WORK/pods.json" >/dev/null
  local patchers=() part
  split -n l/8 "$WORK/statuses" "$WORK/status-part."
  for part in "$WORK"/status-part.*; do
    while read -r pod status; do
      kubectl patch pod "$pod" -n "$NS" --subresource=status --type=merge -p "$status" >/dev/null
    done <"$part" &
    patchers+=($!)
  done
  wait "${patchers[@]}" # these only: the hollow nodes' heartbeat loop runs until the end
  rm -f "$WORK"/status-part.*
  t0=$(now)
  kubectl apply -f "$WORK/faults.json" >/dev/null
  echo "round $1: kubectl apply of $FAULTS faults $(since "$t0")s" | tee -a "$WORK/log"

  METRICS=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  watch_until "$NS" "$expected"
  from=$(audit_mark)
  t0=$(now)
  local api0 etcd0 ticks0
  api0=$(apiserver_cpu)
  etcd0=$(cpu_seconds "$ETCD_PID")
  ticks0=$(machine_ticks)
  KUBECONFIG=$KSHOCK_OPERATOR_KUBECONFIG KAFKA_SHOCK_LOG=warn "$OPERATOR" --metrics-addr "$METRICS" 2>"$WORK/operator.log" &
  operator_pid=$!
  watched_since "$t0"
  steady=$watched
  difference "$api0" "$(apiserver_cpu)" >>"$WORK/apiserver"
  difference "$etcd0" "$(cpu_seconds "$ETCD_PID")" >>"$WORK/etcd"
  busy_percent "$ticks0" "$(machine_ticks)" >>"$WORK/busy"
  requests=$(audit_requests "$from" "$OPERATOR_USER")
  echo "$steady" >>"$WORK/steady"
  cpu_seconds "$operator_pid" >>"$WORK/cpu"
  # The CPU this round took from the API server, etcd and the operator, spread evenly over the
  # cores: no schedule of that work on this machine ends sooner.
  python3 -c "print(round(($(tail -1 "$WORK/apiserver") + $(tail -1 "$WORK/etcd") + $(tail -1 "$WORK/cpu")) / $CORES, 1))" >>"$WORK/work"
  peak_rss_mib "$operator_pid" >>"$WORK/rss"
  echo "${requests%% *}" >>"$WORK/requests"
  sleep 5 # settle: the status writes wake each fault once more
  reconciles=$(metric kafka_shock_operator_reconciles_total)
  errors=$(curl -s "http://$METRICS/metrics" | awk '/^kafka_shock_operator_reconcile_errors_total/ {sum += $2} END {print sum + 0}')
  echo "$reconciles" >>"$WORK/reconciles"
  echo "round $1: operator steady state after ${steady}s ($FAULTS faults rolled up, $expected injections):" \
    "CPU $(tail -1 "$WORK/cpu") s, peak RSS $(tail -1 "$WORK/rss") MiB, $reconciles reconciles (5 s later), $errors errors;" \
    "API requests $requests; API server CPU $(tail -1 "$WORK/apiserver") s, etcd $(tail -1 "$WORK/etcd") s" \
    "(with the operator's, $(tail -1 "$WORK/work") s of all $CORES cores); machine busy $(tail -1 "$WORK/busy") % of all cores" | tee -a "$WORK/log"
  if [[ $1 -eq 1 ]]; then
    before=$(cpu_seconds "$operator_pid")
    from=$(audit_mark)
    sleep 10
    echo "round 1: idle at steady state: $(python3 -c "print(round($(cpu_seconds "$operator_pid") - $before, 2))") CPU s in 10 s," \
      "$(python3 -c "print(int($(metric kafka_shock_operator_reconciles_total) - $reconciles))") reconciles," \
      "API requests $(audit_requests "$from" "$OPERATOR_USER")" | tee -a "$WORK/log"
    peers_file
  fi

  watch_until "$NS" gone
  from=$(audit_mark)
  t0=$(now)
  delete_all "/api/v1/namespaces/$NS/pods?gracePeriodSeconds=0"
  delete_all "/apis/kafkashock.io/v1alpha1/namespaces/$NS/kafkafaults"
  watched_since "$t0"
  echo "$watched" >>"$WORK/teardown"
  requests=$(audit_requests "$from" "$OPERATOR_USER")
  echo "${requests%% *}" >>"$WORK/teardown-requests"
  # The faults' Events too (the API server keeps them an hour): what a round made, it removes.
  delete_all "/api/v1/namespaces/$NS/events"
  echo "round $1: teardown (pods, then faults deleted) until every fault and injection is gone: $(tail -1 "$WORK/teardown")s;" \
    "API requests $requests;" \
    "operator totals: peak RSS $(peak_rss_mib "$operator_pid") MiB, CPU $(cpu_seconds "$operator_pid") s" | tee -a "$WORK/log"
  kill -INT "$operator_pid"
  wait "$operator_pid"
  operator_pid=
}

# The peer's objects: the operator's injections, as the operator wrote them, for another namespace.
peers_file() {
  local attempt
  for attempt in 1 2 3; do # a list this long can time out on a busy API server
    kubectl get kafkafaultinjections -n "$NS" -o json --chunk-size=200 >"$WORK/injections.json" && break
    [[ $attempt -lt 3 ]] || return 1
  done
  python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
peers = [{"apiVersion": i["apiVersion"], "kind": i["kind"],
          "metadata": {"name": i["metadata"]["name"], "namespace": sys.argv[1], "labels": i["metadata"]["labels"]},
          "spec": i["spec"]} for i in items]
json.dump({"apiVersion": "v1", "kind": "List", "items": peers}, sys.stdout)' "$PEER_NS" <"$WORK/injections.json" >"$WORK/peers.json"
}

peer_round() { # ROUND
  local t0 from api0 ticks0
  from=$(audit_mark)
  api0=$(apiserver_cpu)
  ticks0=$(machine_ticks)
  t0=$(now)
  # As the operator's account: the chart's admission policy refuses injections from anyone else.
  KUBECONFIG=$KSHOCK_OPERATOR_KUBECONFIG kubectl apply --server-side --field-manager=bench -f "$WORK/peers.json" >/dev/null
  since "$t0" >>"$WORK/peer"
  difference "$api0" "$(apiserver_cpu)" >>"$WORK/peer-apiserver"
  busy_percent "$ticks0" "$(machine_ticks)" >>"$WORK/peer-busy"
  echo "round $1: peer kubectl apply --server-side of $expected injections: $(tail -1 "$WORK/peer")s;" \
    "API requests $(audit_requests "$from" "$OPERATOR_USER"); API server CPU $(tail -1 "$WORK/peer-apiserver") s;" \
    "machine busy $(tail -1 "$WORK/peer-busy") % of all cores" | tee -a "$WORK/log"
  # The next side starts on a quiet API server: not while these deletions still run.
  watch_until "$PEER_NS" gone
  KUBECONFIG=$KSHOCK_OPERATOR_KUBECONFIG kubectl delete kafkafaultinjections --all -n "$PEER_NS" --wait=false >/dev/null
  watched_since "$(now)"
}

echo "== operator: $FAULTS faults over $PODS pods -> $expected injections; peer: kubectl apply --server-side of them; $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then operator_round "$round"; peer_round "$round"
  else peer_round "$round"; operator_round "$round"; fi
done
# What each kind of request costs the API server alone (request_costs.py), times how many of it
# the operator makes, over all cores: how dear a request is here this run, not a floor.
proxy_up operator "$KSHOCK_OPERATOR_KUBECONFIG"
python3 tests/bench/request_costs.py "http://$PROXY" "http://$proxy" "$PEER_NS" "$((expected < 300 ? expected : 300))" "$APISERVER_PID" "$WORK/peers.json" >"$WORK/costs"
cost() { awk -v k="$1" '$1 == k {print $2}' "$WORK/costs"; }
python3 -c "print(round(($expected * $(cost injection) + $FAULTS * ($(cost finalizer) + $(cost status) + $(cost event))) / 1000 / $CORES, 1))" >"$WORK/costed"
steady_median=$(col_median "$WORK/steady" 1)
peer_median=$(col_median "$WORK/peer" 1)
ratio=$(python3 -c "print(round($steady_median / $peer_median, 2))")
echo "== min / median / max over $ROUNDS rounds"
echo "operator steady state:        $(mmm "$WORK/steady" 1) s"
echo "peer kubectl apply --server-side: $(mmm "$WORK/peer" 1) s; operator/peer (medians) ${ratio}x"
echo "operator CPU: $(mmm "$WORK/cpu" 1) s; peak RSS $(mmm "$WORK/rss" 1) MiB;" \
  "API requests $(mmm "$WORK/requests" 1); reconciles $(mmm "$WORK/reconciles" 1)"
echo "API server CPU: operator $(mmm "$WORK/apiserver" 1) s, peer $(mmm "$WORK/peer-apiserver" 1) s;" \
  "etcd CPU: operator $(mmm "$WORK/etcd" 1) s; API server, etcd and operator CPU over $CORES cores: $(mmm "$WORK/work" 1) s;" \
  "machine busy: operator $(mmm "$WORK/busy" 1) %, peer $(mmm "$WORK/peer-busy" 1) % of all cores"
echo "teardown: $(mmm "$WORK/teardown" 1) s; API requests $(mmm "$WORK/teardown-requests" 1)"
echo "API server CPU per request alone: injection apply $(cost injection) ms, fault finalizer $(cost finalizer) ms," \
  "fault status $(cost status) ms, Event $(cost event) ms: for the operator's $expected + 3 x $FAULTS requests," \
  "$(cat "$WORK/costed") s over $CORES cores"
echo "goal: steady state <= 20 s: $(met "$steady_median <= 20"); <= 1.2x the peer: $(met "$ratio <= 1.2")"
figure operator "steady state, $FAULTS faults over $PODS pods (fresh operator)" s "$WORK/steady" 1 \
  "kubectl apply --server-side of the $expected injections" "$WORK/peer" 1 "<= 20 s and <= 1.2x the peer (${ratio}x)" \
  "$(met "$steady_median <= 20 && $ratio <= 1.2")"
figure operator "operator CPU to steady state" s "$WORK/cpu" 1
figure operator "operator peak RSS" MiB "$WORK/rss" 1
figure operator "API requests to steady state (audit log)" requests "$WORK/requests" 1
figure operator "API server CPU to steady state (/proc)" s "$WORK/apiserver" 1 \
  "API server CPU for the peer's apply" "$WORK/peer-apiserver" 1
figure operator "etcd CPU to steady state (/proc)" s "$WORK/etcd" 1
figure operator "API server, etcd and operator CPU to steady state, spread evenly over the $CORES cores (no schedule of that work ends sooner)" s "$WORK/work" 1
figure operator "machine busy to steady state, all cores (/proc/stat)" % "$WORK/busy" 1 \
  "machine busy during the peer's apply" "$WORK/peer-busy" 1
figure operator "teardown: pods then faults deleted, to every fault and injection gone" s "$WORK/teardown" 1
figure operator "API requests during teardown (audit log)" requests "$WORK/teardown-requests" 1
figure operator "API server CPU for the operator's requests, each kind costed alone, one at a time (injection apply $(cost injection) ms, fault finalizer $(cost finalizer) ms, fault status $(cost status) ms, Event $(cost event) ms), spread over $CORES cores" s "$WORK/costed" 1
