# The lab's Kubernetes control plane: a real etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler on the host's lab address, with a CA of the lab's own, a client certificate per
# component (the kubelets authenticate as system:node:<name> and are authorized by the Node
# authorizer), a token for the admin, service-account keys and RBAC.

KUBE_DIR=$LAB_STATE/kube
export KUBECONFIG=$KUBE_DIR/kubeconfig
APISERVER_URL=https://$HOST_IP:$APISERVER_PORT

# A certificate signed by the lab CA: name, subject, optional subjectAltName. EC keys: fast.
kube_cert() {
  local name=$1 subject=$2 san=${3:-}
  [[ -f $KUBE_DIR/$name.crt ]] && return 0
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
    -keyout "$KUBE_DIR/$name.key" -out "$KUBE_DIR/$name.csr" || return 1
  printf '%s\n' "basicConstraints=CA:FALSE" ${san:+"subjectAltName=$san"} >"$KUBE_DIR/$name.ext"
  openssl x509 -req -in "$KUBE_DIR/$name.csr" -CA "$KUBE_DIR/ca.crt" -CAkey "$KUBE_DIR/ca.key" \
    -CAcreateserial -days 3650 -extfile "$KUBE_DIR/$name.ext" -out "$KUBE_DIR/$name.crt" || return 1
  chmod 600 "$KUBE_DIR/$name.key"
}

kube_certs() {
  mkdir -p "$KUBE_DIR"
  (
    set -e
    cd "$KUBE_DIR"
    if [[ ! -f ca.crt ]]; then
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=kafka-shock-lab-ca" -keyout ca.key -out ca.crt
      openssl genrsa -out sa.key 2048
      openssl rsa -in sa.key -pubout -out sa.pub
      printf '%s,kafka-shock-lab-admin,lab-admin,"system:masters"\n' "$(openssl rand -hex 24)" >tokens.csv
    fi
    kube_cert apiserver "/CN=kube-apiserver" \
      "IP:$HOST_IP,IP:127.0.0.1,IP:${SERVICE_CIDR%.0/*}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    kube_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    kube_cert controller-manager "/CN=system:kube-controller-manager"
    kube_cert scheduler "/CN=system:kube-scheduler"
    kube_cert kube-proxy "/CN=system:kube-proxy"
    local index node
    for index in "${!LAB_NODES[@]}"; do
      node=${LAB_NODES[$index]}
      kube_cert "kubelet-$node" "/O=system:nodes/CN=system:node:$node"
      kube_cert "kubelet-$node-serving" "/CN=$node" "IP:$(node_ip "$index"),DNS:$node"
    done
  ) >"$KUBE_DIR/certs.log" 2>&1 || die "could not create the lab certificates (log: $KUBE_DIR/certs.log)"
  chmod 600 "$KUBE_DIR"/*.key "$KUBE_DIR/tokens.csv"
}

kube_token() { cut -d, -f1 "$KUBE_DIR/tokens.csv"; }

# Writes kubeconfig $1 for the lab's API server with user $2: a token (token:VALUE) or a client
# certificate of the lab CA (cert:NAME).
kube_write_kubeconfig() {
  local file=$1 user=$2 credentials
  case $user in
    token:*) credentials="token: ${user#token:}" ;;
    cert:*) credentials="client-certificate: $KUBE_DIR/${user#cert:}.crt
    client-key: $KUBE_DIR/${user#cert:}.key" ;;
  esac
  cat >"$file" <<CFG
apiVersion: v1
kind: Config
clusters:
- name: kafka-shock-lab
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$KUBE_DIR/ca.crt")
users:
- name: lab-user
  user:
    $credentials
contexts:
- name: kafka-shock-lab
  context: {cluster: kafka-shock-lab, user: lab-user}
current-context: kafka-shock-lab
CFG
  chmod 600 "$file"
}

kube_start_etcd() {
  start_daemon "$KUBE_DIR/etcd.pid" "$KUBE_DIR/etcd.log" \
    "$K8S_BIN/etcd" --name lab --data-dir "$KUBE_DIR/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "lab=http://127.0.0.1:$ETCD_PEER_PORT"
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

# Listens on the lab bridge's host address only: reachable from the host and the pods (the
# `kubernetes` Service's endpoint), not from other machines.
kube_start_apiserver() {
  kube_audit_policy
  start_daemon "$KUBE_DIR/apiserver.pid" "$KUBE_DIR/apiserver.log" \
    "$K8S_BIN/kube-apiserver" \
    --bind-address="$HOST_IP" --advertise-address="$HOST_IP" --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --tls-cert-file="$KUBE_DIR/apiserver.crt" --tls-private-key-file="$KUBE_DIR/apiserver.key" \
    --client-ca-file="$KUBE_DIR/ca.crt" --token-auth-file="$KUBE_DIR/tokens.csv" \
    --anonymous-auth=false --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$KUBE_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$KUBE_DIR/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$KUBE_DIR/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="$KUBE_DIR/sa.pub" \
    --service-account-signing-key-file="$KUBE_DIR/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --audit-policy-file="$KUBE_DIR/audit-policy.yaml" --audit-log-path="$KUBE_DIR/audit.log" \
    --audit-log-maxsize=200 --audit-log-maxbackup=1
  wait_for 90 curl -sf --cacert "$KUBE_DIR/ca.crt" -H "Authorization: Bearer $(kube_token)" \
    "$APISERVER_URL/readyz" ||
    die "kube-apiserver did not become ready in 90 s (log: $KUBE_DIR/apiserver.log)"
}

# The controllers a cluster runs (namespaces, ServiceAccounts and their CA, Deployments,
# DaemonSets, StatefulSets, EndpointSlices, node lifecycle, garbage collection) and the
# scheduler. One instance each, so no leader election.
kube_start_controllers() {
  kube_write_kubeconfig "$KUBE_DIR/controller-manager.kubeconfig" cert:controller-manager
  kube_write_kubeconfig "$KUBE_DIR/scheduler.kubeconfig" cert:scheduler
  start_daemon "$KUBE_DIR/controller-manager.pid" "$KUBE_DIR/controller-manager.log" \
    "$K8S_BIN/kube-controller-manager" --kubeconfig="$KUBE_DIR/controller-manager.kubeconfig" \
    --leader-elect=false --secure-port=0 --use-service-account-credentials=true \
    --service-account-private-key-file="$KUBE_DIR/sa.key" --root-ca-file="$KUBE_DIR/ca.crt" \
    --cluster-signing-cert-file="$KUBE_DIR/ca.crt" --cluster-signing-key-file="$KUBE_DIR/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false
  start_daemon "$KUBE_DIR/scheduler.pid" "$KUBE_DIR/scheduler.log" \
    "$K8S_BIN/kube-scheduler" --kubeconfig="$KUBE_DIR/scheduler.kubeconfig" \
    --leader-elect=false --secure-port=0
}

kubectl() { "$K8S_BIN/kubectl" "$@"; }

kube_up() {
  kube_certs
  kube_write_kubeconfig "$KUBECONFIG" "token:$(kube_token)"
  kube_start_etcd
  kube_start_apiserver
  kube_start_controllers
}
