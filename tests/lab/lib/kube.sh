# The lab's Kubernetes API: a real etcd and kube-apiserver on loopback, with certificates, a
# token for the admin, service-account keys and RBAC, plus Node and Pod objects describing the
# lab's brokers so that an operator sees real pods. No kubelet or controller-manager runs: the
# lab itself writes the pods' status.

KUBE_DIR=$LAB_STATE/kube
export KUBECONFIG=$KUBE_DIR/kubeconfig

kube_certs() {
  [[ -f $KUBE_DIR/apiserver.crt ]] && return 0
  mkdir -p "$KUBE_DIR"
  (
    cd "$KUBE_DIR" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=kafka-shock-lab-ca" \
      -keyout ca.key -out ca.crt &&
      openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr &&
      printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' >apiserver.ext &&
      openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile apiserver.ext -out apiserver.crt &&
      openssl genrsa -out sa.key 2048 &&
      openssl rsa -in sa.key -pubout -out sa.pub &&
      printf '%s,kafka-shock-lab-admin,lab-admin,"system:masters"\n' "$(openssl rand -hex 24)" >tokens.csv
  ) >"$KUBE_DIR/certs.log" 2>&1 || die "could not create the lab certificates (log: $KUBE_DIR/certs.log)"
  chmod 600 "$KUBE_DIR"/*.key "$KUBE_DIR/tokens.csv"
}

kube_token() { cut -d, -f1 "$KUBE_DIR/tokens.csv"; }

kube_write_kubeconfig() {
  cat >"$KUBECONFIG" <<CFG
apiVersion: v1
kind: Config
clusters:
- name: kafka-shock-lab
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$KUBE_DIR/ca.crt")
users:
- name: lab-admin
  user:
    token: $(kube_token)
contexts:
- name: kafka-shock-lab
  context: {cluster: kafka-shock-lab, user: lab-admin}
current-context: kafka-shock-lab
CFG
  chmod 600 "$KUBECONFIG"
}

kube_start_etcd() {
  pid_alive "$KUBE_DIR/etcd.pid" && return 0
  setsid "$K8S_BIN/etcd" --name lab --data-dir "$KUBE_DIR/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "lab=http://127.0.0.1:$ETCD_PEER_PORT" \
    >"$KUBE_DIR/etcd.log" 2>&1 </dev/null &
  echo $! >"$KUBE_DIR/etcd.pid"
  wait_for 30 curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health" ||
    die "etcd did not become healthy (log: $KUBE_DIR/etcd.log)"
}

# The audit policy: every request of a ServiceAccount (the operator's, the agents') at level
# Metadata, nobody else's, once per request. A bench counts the requests a daemon made in
# $KUBE_DIR/audit.log (by user), independently of the daemon's own counters.
kube_audit_policy() {
  cat >"$KUBE_DIR/audit-policy.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
YAML
}

kube_start_apiserver() {
  pid_alive "$KUBE_DIR/apiserver.pid" && return 0
  kube_audit_policy
  setsid "$K8S_BIN/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --tls-cert-file="$KUBE_DIR/apiserver.crt" --tls-private-key-file="$KUBE_DIR/apiserver.key" \
    --client-ca-file="$KUBE_DIR/ca.crt" --token-auth-file="$KUBE_DIR/tokens.csv" \
    --anonymous-auth=false --authorization-mode=RBAC \
    --service-account-key-file="$KUBE_DIR/sa.pub" \
    --service-account-signing-key-file="$KUBE_DIR/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.96.0.0/16 \
    --disable-admission-plugins=ServiceAccount --allow-privileged=true \
    --audit-policy-file="$KUBE_DIR/audit-policy.yaml" --audit-log-path="$KUBE_DIR/audit.log" \
    --audit-log-maxsize=200 --audit-log-maxbackup=1 \
    >"$KUBE_DIR/apiserver.log" 2>&1 </dev/null &
  echo $! >"$KUBE_DIR/apiserver.pid"
  wait_for 90 curl -sf --cacert "$KUBE_DIR/ca.crt" -H "Authorization: Bearer $(kube_token)" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" ||
    die "kube-apiserver did not become ready in 90 s (log: $KUBE_DIR/apiserver.log)"
}

kubectl() { "$K8S_BIN/kubectl" "$@"; }

kube_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

kube_register_nodes() {
  local node now
  now=$(kube_now)
  for node in "${LAB_NODES[@]}"; do
    kubectl apply -f - <<YAML >/dev/null
apiVersion: v1
kind: Node
metadata:
  name: $node
  labels: {kubernetes.io/hostname: $node, kubernetes.io/os: linux, kafkashock.io/lab: "true"}
YAML
    kubectl patch node "$node" --subresource=status --type=merge -p "{\"status\":{
      \"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\",\"message\":\"lab node\",\"lastHeartbeatTime\":\"$now\",\"lastTransitionTime\":\"$now\"}],
      \"addresses\":[{\"type\":\"InternalIP\",\"address\":\"$HOST_IP\"},{\"type\":\"Hostname\",\"address\":\"$node\"}]}}" >/dev/null
  done
}

# One Running, Ready pod per broker, on its lab node, with the broker's namespace address.
kube_register_broker_pods() {
  local count=$1 id
  kubectl create namespace "$POD_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  for ((id = 0; id < count; id++)); do kube_register_broker_pod "$id"; done
}

# The Pod object of broker $1, Running and Ready (no kubelet writes its status here).
kube_register_broker_pod() {
  local id=$1 now
  now=$(kube_now)
  kubectl apply -f - <<YAML >/dev/null
apiVersion: v1
kind: Pod
metadata:
  name: kafka-broker-$id
  namespace: $POD_NAMESPACE
  labels:
    app.kubernetes.io/name: kafka
    strimzi.io/cluster: lab
    strimzi.io/broker-role: "true"
    kafkashock.io/broker-id: "$id"
spec:
  nodeName: $(broker_node "$id")
  containers:
  - name: kafka
    image: apache/kafka:$KAFKA_VERSION
    ports: [{name: kafka, containerPort: $KAFKA_PORT}]
YAML
  kubectl -n "$POD_NAMESPACE" patch pod "kafka-broker-$id" --subresource=status --type=merge -p "{\"status\":{
    \"phase\":\"Running\",\"hostIP\":\"$HOST_IP\",\"podIP\":\"$(broker_ip "$id")\",
    \"podIPs\":[{\"ip\":\"$(broker_ip "$id")\"},{\"ip\":\"$(broker_ip6 "$id")\"}],\"startTime\":\"$now\",
    \"conditions\":[
      {\"type\":\"PodScheduled\",\"status\":\"True\",\"lastTransitionTime\":\"$now\"},
      {\"type\":\"Initialized\",\"status\":\"True\",\"lastTransitionTime\":\"$now\"},
      {\"type\":\"ContainersReady\",\"status\":\"True\",\"lastTransitionTime\":\"$now\"},
      {\"type\":\"Ready\",\"status\":\"True\",\"lastTransitionTime\":\"$now\"}],
    \"containerStatuses\":[{\"name\":\"kafka\",\"ready\":true,\"started\":true,\"restartCount\":0,
      \"image\":\"apache/kafka:$KAFKA_VERSION\",\"imageID\":\"\",\"state\":{\"running\":{\"startedAt\":\"$now\"}}}]}}" >/dev/null
}

kube_up() {
  local count=$1
  kube_certs
  kube_write_kubeconfig
  kube_start_etcd
  kube_start_apiserver
  log "registering the lab's Node and Pod objects"
  kube_register_nodes
  kube_register_broker_pods "$count"
}
