# kafka-shock itself on the lab, as a cluster admin installs it: the chart (CRDs, ServiceAccounts,
# least-privilege RBAC) with Helm, and for each component a kubeconfig holding a token of its
# own ServiceAccount (TokenRequest), so the operator and the agents run on the lab host exactly
# with the rights the chart grants them. No kubelet runs here, so the chart's Deployment and
# DaemonSet stay unscheduled; the processes are started from the built binaries instead.

PRODUCT_RELEASE=${KSHOCK_LAB_RELEASE:-kshock-lab}
PRODUCT_NAMESPACE=${KSHOCK_LAB_RELEASE_NAMESPACE:-kafka-shock-lab}
PRODUCT_DIR=$LAB_STATE/product
CHART_DIR=$LAB_DIR/../../charts/kafka-shock

# The release's ServiceAccount of a component ("operator" or "agent"): the chart names it
# <release>-<chart>-<component> unless the release name holds the chart name.
product_service_account() {
  local component=$1
  case $PRODUCT_RELEASE in
    *kafka-shock*) echo "$PRODUCT_RELEASE-$component" ;;
    *) echo "$PRODUCT_RELEASE-kafka-shock-$component" ;;
  esac
}

# Writes $PRODUCT_DIR/<component>.kubeconfig with a fresh token of the component's account.
product_kubeconfig() {
  local component=$1 account token
  account=$(product_service_account "$component")
  token=$(kubectl create token "$account" -n "$PRODUCT_NAMESPACE" --duration=24h) ||
    die "no token for ServiceAccount $PRODUCT_NAMESPACE/$account (is the chart installed?)"
  cat >"$PRODUCT_DIR/$component.kubeconfig" <<CFG
apiVersion: v1
kind: Config
clusters:
- name: kafka-shock-lab
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$KUBE_DIR/ca.crt")
users:
- name: $account
  user:
    token: $token
contexts:
- name: $component
  context: {cluster: kafka-shock-lab, user: $account}
current-context: $component
CFG
  chmod 600 "$PRODUCT_DIR/$component.kubeconfig"
}

# Installs (or upgrades) the chart and writes both kubeconfigs; idempotent. Extra arguments go
# to helm (e.g. --set allowedPorts={9092}); without them, the chart's defaults are installed.
product_up() {
  [[ -f $LAB_STATE/env ]] || die "the lab is not up: run 'lab.sh up' first"
  [[ -f $CHART_DIR/Chart.yaml ]] || die "no kafka-shock chart at $CHART_DIR"
  mkdir -p "$PRODUCT_DIR"
  step "install the kafka-shock chart (release $PRODUCT_RELEASE in namespace $PRODUCT_NAMESPACE)" \
    "$HELM_BIN/helm" upgrade --install "$PRODUCT_RELEASE" "$CHART_DIR" \
    -n "$PRODUCT_NAMESPACE" --create-namespace --wait=false --kubeconfig "$KUBECONFIG" "$@"
  # Helm installs crds/ only with a release's first install and never upgrades them: apply them
  # as a user upgrading does, so a reused lab gets the CRDs of this checkout (or gets back one
  # that a test removed).
  step "apply the chart's CRDs" kubectl apply --server-side --force-conflicts \
    -f "$CHART_DIR/crds/kafkafaults.yaml" -f "$CHART_DIR/crds/kafkafaultinjections.yaml"
  step "wait for the CRDs" kubectl wait --for=condition=Established --timeout=60s \
    crd/kafkafaults.kafkashock.io crd/kafkafaultinjections.kafkashock.io
  product_kubeconfig operator
  product_kubeconfig agent
  cat <<ENV
KSHOCK_OPERATOR_KUBECONFIG=$PRODUCT_DIR/operator.kubeconfig
KSHOCK_AGENT_KUBECONFIG=$PRODUCT_DIR/agent.kubeconfig
ENV
}

# Ports of the lab's operator and agents' /metrics and /healthz.
PRODUCT_OPERATOR_PORT=18080
PRODUCT_AGENT_PORT=19090

# Starts one daemon of the product with a component's kubeconfig, unless it runs; waits until
# its /healthz answers.
product_daemon() {
  local name=$1 kubeconfig=$2 port=$3
  shift 3
  pid_alive "$PRODUCT_DIR/$name.pid" && return 0
  KUBECONFIG=$kubeconfig setsid "$@" >"$PRODUCT_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$PRODUCT_DIR/$name.pid"
  wait_for 30 curl -sf "http://127.0.0.1:$port/healthz" -o /dev/null ||
    die "$name did not become healthy in 30 s (log: $PRODUCT_DIR/$name.log)"
  log "$name is up (metrics on 127.0.0.1:$port, log $PRODUCT_DIR/$name.log)"
}

# The operator and one agent per lab node, from the binaries in $1, with their accounts' tokens.
product_start() {
  local bin=${1:?product start needs the directory holding kafka-shock and kafka-shock-operator}
  local port=$PRODUCT_AGENT_PORT node
  [[ -x $bin/kafka-shock && -x $bin/kafka-shock-operator ]] ||
    die "product start: no kafka-shock and kafka-shock-operator in $bin (cargo build them first)"
  product_up >/dev/null
  product_daemon operator "$PRODUCT_DIR/operator.kubeconfig" "$PRODUCT_OPERATOR_PORT" \
    "$bin/kafka-shock-operator" --metrics-addr "127.0.0.1:$PRODUCT_OPERATOR_PORT"
  for node in "${LAB_NODES[@]}"; do
    product_daemon "agent-$node" "$PRODUCT_DIR/agent.kubeconfig" "$port" \
      "$bin/kafka-shock" agent --node-name "$node" --metrics-addr "127.0.0.1:$port"
    port=$((port + 1))
  done
}

# Stops the daemons as Kubernetes would (SIGTERM, then SIGKILL after a grace period): agents
# take their rules out on the way.
product_stop() {
  local pidfile pid
  for pidfile in "$PRODUCT_DIR"/*.pid; do
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    wait_for 20 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}
