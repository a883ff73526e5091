# kafka-shock itself on the lab, as a cluster admin installs it: the Helm chart (CRDs,
# ServiceAccounts, least-privilege RBAC, the operator Deployment and the agent DaemonSet).
#
# - `product deploy BIN_DIR` builds the agent and operator images from the release binaries in
#   BIN_DIR (images/build.sh, on the lab's Debian bases), imports them into every node's
#   containerd under the names the chart expects, and installs the chart: the kubelets run the
#   operator and one agent per node as pods. The end-to-end tests and the demo use this.
# - `product up` installs the chart without its workloads (no operator replica, no DaemonSet)
#   and writes, per component, a kubeconfig holding a token of its own ServiceAccount; `product
#   start BIN_DIR` then runs the operator and one agent per node as host processes with them.
#   The operator's controller tests and the benchmarks use this: they start, stop and measure
#   the processes themselves.

PRODUCT_RELEASE=${KSHOCK_LAB_RELEASE:-kshock-lab}
PRODUCT_NAMESPACE=${KSHOCK_LAB_RELEASE_NAMESPACE:-kafka-shock-lab}
PRODUCT_DIR=$LAB_STATE/product
CHART_DIR=$REPO_DIR/charts/kafka-shock

# The release's name of a component's objects ("operator" or "agent"): the chart names them
# <release>-<chart>-<component> unless the release name holds the chart name.
product_object_name() {
  local component=$1
  case $PRODUCT_RELEASE in
    *kafka-shock*) echo "$PRODUCT_RELEASE-$component" ;;
    *) echo "$PRODUCT_RELEASE-kafka-shock-$component" ;;
  esac
}

# Writes $PRODUCT_DIR/<component>.kubeconfig with a fresh token of the component's account.
product_kubeconfig() {
  local component=$1 account token
  account=$(product_object_name "$component")
  token=$(kubectl create token "$account" -n "$PRODUCT_NAMESPACE" --duration=24h) ||
    die "no token for ServiceAccount $PRODUCT_NAMESPACE/$account (is the chart installed?)"
  kube_write_kubeconfig "$PRODUCT_DIR/$component.kubeconfig" "token:$token"
}

# helm upgrade --install of the chart with extra helm arguments (e.g. --set allowedPorts={9092});
# idempotent. Without them, the chart's defaults are installed. Helm installs crds/ only with a
# release's first install: CRDs removed since are put back.
product_helm() {
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
}

product_print_kubeconfigs() {
  cat <<ENV
KSHOCK_OPERATOR_KUBECONFIG=$PRODUCT_DIR/operator.kubeconfig
KSHOCK_AGENT_KUBECONFIG=$PRODUCT_DIR/agent.kubeconfig
ENV
}

# The chart's CRDs, accounts and RBAC, without its workloads (with extra helm arguments);
# prints the kubeconfigs.
product_up() {
  # The DaemonSet stays (tests read the flags the chart gives the agent) but selects no node.
  product_helm --set operator.replicas=0 --set-string agent.nodeSelector.kshock-lab-agents=none "$@"
  product_print_kubeconfigs
}

# Builds and imports the product's images from the release binaries in $1, then runs the chart
# as pods (with the helm arguments after $1, e.g. --set agent.lease=6s; a deploy without them
# puts the chart's defaults back) and waits until the operator and every agent are ready;
# prints the kubeconfigs and each component's image and its id.
product_deploy() {
  local bin=${1:?product deploy needs the directory holding kafka-shock and kafka-shock-operator}
  local helm_args=("${@:2}")
  bin=$(cd "$bin" && pwd) || die "product deploy: no directory $1"
  [[ -x $bin/kafka-shock && -x $bin/kafka-shock-operator ]] ||
    die "product deploy: no kafka-shock and kafka-shock-operator in $bin (cargo build -p kafka-shock-agent -p kafka-shock-operator, --release or not)"
  [[ -f $LAB_STATE/env ]] || die "the lab is not up: run 'lab.sh up' first"
  mkdir -p "$PRODUCT_DIR"
  step "build the agent and operator images from $bin (images/build.sh)" \
    images_build_product "$bin" >/dev/null
  local image archive component node id sets=() ids=""
  while read -r image archive; do
    component=${image##*/}; component=${component%%:*}
    for node in "${LAB_NODES[@]}"; do
      step "import $image into $node's containerd" images_import_into "$node" "$archive"
    done
    id=$(images_id "$archive")
    # A new image under the same tag rolls the pods: their template names the image's id.
    sets+=(--set-string "$component.podAnnotations.kafkashock\.io/image-id=$id")
    ids+="KSHOCK_${component^^}_IMAGE=$image"$'\n'"KSHOCK_${component^^}_IMAGE_ID=$id"$'\n'
  done < <(images_build_product "$bin")
  product_helm --set agent.enabled=true --set operator.replicas=1 "${sets[@]}" "${helm_args[@]}"
  step "wait for the operator Deployment and the agent DaemonSet to be ready" \
    kubectl -n "$PRODUCT_NAMESPACE" rollout status --timeout=120s \
    "deployment/$(product_object_name operator)" "daemonset/$(product_object_name agent)"
  product_print_kubeconfigs
  printf '%s' "$ids" | tee "$PRODUCT_DIR/images.env"
}

# Ports of the lab's operator and agents' /metrics and /healthz when they run as processes.
PRODUCT_OPERATOR_PORT=18080
PRODUCT_AGENT_PORT=19090

# Starts one daemon of the product with a component's kubeconfig, unless it runs; waits until
# its /healthz answers.
product_daemon() {
  local name=$1 kubeconfig=$2 port=$3
  shift 3
  KUBECONFIG=$kubeconfig start_daemon "$PRODUCT_DIR/$name.pid" "$PRODUCT_DIR/$name.log" "$@"
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
