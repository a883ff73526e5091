# The lab's Apache Kafka: KRaft brokers (broker and controller in one process) running as pods
# of a StatefulSet, from the lab's Kafka image, labelled as Strimzi labels its broker pods. Each
# broker's configuration is generated here, in one place, into a ConfigMap (one file per pod);
# its data lives on the host below $LAB_STATE, so a recreated pod starts from it, as from a
# persistent volume.

KAFKA_CLUSTER_ID=S2Fma2FTaG9ja0xhYjAwMA # base64url("KafkaShockLab000")
BROKER_HEAP=${KSHOCK_LAB_BROKER_HEAP:--Xmx512m -Xms256m}
KAFKA_CLASS=$LAB_DIR/bin/kafka-class
KAFKA_DATA=$LAB_STATE/kafka
KAFKA_UID=1001

# Broker $1's listeners as `listeners|advertised.listeners|protocol map|inter-broker listener`:
# the client and controller listeners; with three brokers also the replication listener, and
# on broker $TLS_BROKER a TLS listener.
kafka_listeners() {
  local id=$1 count=$2 ip
  ip=$(broker_ip "$id")
  local listeners="PLAINTEXT://:$KAFKA_PORT" advertised="PLAINTEXT://$ip:$KAFKA_PORT"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" inter=PLAINTEXT
  if ((count == 3)); then
    listeners+=",REPLICATION://:$REPLICATION_PORT" advertised+=",REPLICATION://$ip:$REPLICATION_PORT"
    protocols+=",REPLICATION:PLAINTEXT" inter=REPLICATION
    if ((id == TLS_BROKER)); then
      listeners+=",TLS://:$TLS_PORT" advertised+=",TLS://$ip:$TLS_PORT" protocols+=",TLS:SSL"
    fi
  fi
  echo "$listeners,CONTROLLER://:$CONTROLLER_PORT|$advertised,CONTROLLER://$ip:$CONTROLLER_PORT|$protocols|$inter"
}

# The TLS listener's self-signed keypair (PKCS12) and its certificate in PEM for clients to
# trust, made once per lab with the JDK's keytool; the broker pod mounts the keystore from the
# Secret $BROKER_SET-tls.
kafka_tls_keypair() {
  local dir=$LAB_STATE/tls ip
  ip=$(broker_ip "$TLS_BROKER")
  if [[ ! -s $dir/broker.p12 || ! -s $dir/broker.pem ]]; then
    mkdir -p "$dir"
    rm -f "$dir/broker.p12" "$dir/broker.pem"
    step "make the TLS listener's self-signed keypair" keytool -genkeypair -alias broker \
      -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=$ip" -ext "SAN=IP:$ip" \
      -keystore "$dir/broker.p12" -storetype PKCS12 -storepass "$TLS_PASSWORD" -keypass "$TLS_PASSWORD"
    step "export the TLS listener's certificate" keytool -exportcert -rfc -alias broker \
      -keystore "$dir/broker.p12" -storetype PKCS12 -storepass "$TLS_PASSWORD" -file "$dir/broker.pem"
  fi
  kubectl -n "$POD_NAMESPACE" create secret generic "$BROKER_SET-tls" --from-file="$dir/broker.p12" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}

# server.properties of broker $1 in a cluster of $2 brokers.
kafka_broker_config() {
  local id=$1 count=$2 voters="" i listeners advertised protocols inter
  for ((i = 0; i < count; i++)); do voters+="${voters:+,}$i@$(broker_ip "$i"):$CONTROLLER_PORT"; done
  IFS='|' read -r listeners advertised protocols inter <<<"$(kafka_listeners "$id" "$count")"
  cat <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
inter.broker.listener.name=$inter
log.dirs=/var/lib/kafka/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=$((count < 3 ? 1 : 3))
transaction.state.log.replication.factor=$((count < 3 ? 1 : 3))
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=$((count < 3 ? 1 : 3))
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
replica.lag.time.max.ms=$((count < 3 ? 30000 : 10000))
# Request buffers are taken from a pool of this many bytes (Kafka's default is unbounded): junk
# declaring large sizes on many connections, as the hostile-traffic tests send, then waits for
# memory instead of exhausting the heap.
queued.max.request.bytes=134217728
PROPS
  if [[ $listeners == *TLS://* ]]; then
    cat <<PROPS
listener.name.tls.ssl.keystore.location=/etc/kafka-tls/broker.p12
listener.name.tls.ssl.keystore.type=PKCS12
listener.name.tls.ssl.keystore.password=$TLS_PASSWORD
listener.name.tls.ssl.key.password=$TLS_PASSWORD
PROPS
  fi
}

# The StatefulSet, its headless Service and the brokers' ConfigMap, for $1 brokers.
kafka_manifests() {
  local count=$1 id
  cat <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: $BROKER_SET-config, namespace: $POD_NAMESPACE}
data:
YAML
  for ((id = 0; id < count; id++)); do
    echo "  $(broker_pod "$id").properties: |"
    kafka_broker_config "$id" "$count" | sed 's/^/    /'
  done
  cat <<YAML
---
apiVersion: v1
kind: Service
metadata: {name: $BROKER_SET, namespace: $POD_NAMESPACE}
spec:
  clusterIP: None
  selector: {strimzi.io/cluster: $KAFKA_CLUSTER, strimzi.io/pool-name: brokers}
  ports: [{name: kafka, port: $KAFKA_PORT}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: $BROKER_SET, namespace: $POD_NAMESPACE}
spec:
  serviceName: $BROKER_SET
  replicas: $count
  podManagementPolicy: Parallel
  selector:
    matchLabels: {strimzi.io/cluster: $KAFKA_CLUSTER, strimzi.io/pool-name: brokers}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: kafka
        strimzi.io/cluster: $KAFKA_CLUSTER
        strimzi.io/kind: Kafka
        strimzi.io/name: $KAFKA_CLUSTER-kafka
        strimzi.io/pool-name: brokers
        strimzi.io/broker-role: "true"
        strimzi.io/controller-role: "true"
    spec:
      enableServiceLinks: false
      terminationGracePeriodSeconds: 20
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: ScheduleAnyway
        labelSelector:
          matchLabels: {strimzi.io/cluster: $KAFKA_CLUSTER, strimzi.io/pool-name: brokers}
      securityContext: {runAsUser: $KAFKA_UID, runAsGroup: $KAFKA_UID}
      containers:
      - name: kafka
        image: $KAFKA_IMAGE
        imagePullPolicy: IfNotPresent
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: KAFKA_CLUSTER_ID, value: $KAFKA_CLUSTER_ID}
        - {name: KAFKA_HEAP_OPTS, value: "$BROKER_HEAP"}
        ports:
        - {name: kafka, containerPort: $KAFKA_PORT}
        - {name: controller, containerPort: $CONTROLLER_PORT}
        - {name: replication, containerPort: $REPLICATION_PORT}
        - {name: tls, containerPort: $TLS_PORT}
        readinessProbe:
          tcpSocket: {port: kafka}
          periodSeconds: 2
        resources:
          requests: {cpu: 100m, memory: 512Mi}
        volumeMounts:
        - {name: config, mountPath: /etc/kafka}
        - {name: data, mountPath: /var/lib/kafka/data, subPathExpr: \$(POD_NAME)}
        - {name: tls, mountPath: /etc/kafka-tls, readOnly: true}
      volumes:
      - name: config
        configMap: {name: $BROKER_SET-config}
      - name: tls
        secret: {secretName: $BROKER_SET-tls, optional: true}
      - name: data
        hostPath: {path: $KAFKA_DATA, type: Directory}
YAML
}

# The data directories the brokers' pods mount (the broker runs as $KAFKA_UID).
kafka_make_data_dirs() {
  local count=$1 id
  for ((id = 0; id < count; id++)); do
    mkdir -p "$KAFKA_DATA/$(broker_pod "$id")"
    chown "$KAFKA_UID:$KAFKA_UID" "$KAFKA_DATA/$(broker_pod "$id")"
  done
}

# A broker is ready once it answers a Metadata request listing every broker of the lab.
kafka_brokers_ready() {
  local count=$1
  [[ $(ip netns exec "$CLIENT_NS" kcat -b "$(broker_ip 0):$KAFKA_PORT" -L -m 3 2>/dev/null | grep -c 'broker [0-9]* at') -ge $count ]]
}

# Waits until the broker pods are Ready (as the operator selects them) and the brokers answer,
# then names their namespaces (ksl-broker-N).
kafka_wait_ready() {
  local count=$1 id
  wait_for 120 kubectl -n "$POD_NAMESPACE" wait --for=condition=Ready pod \
    -l "strimzi.io/cluster=$KAFKA_CLUSTER,strimzi.io/pool-name=brokers" --timeout=5s &&
    wait_for 120 kafka_brokers_ready "$count" ||
    die "Kafka did not become ready in 120 s (kubectl -n $POD_NAMESPACE logs $(broker_pod 0); kubectl -n $POD_NAMESPACE get pods)"
  for ((id = 0; id < count; id++)); do
    net_attach_broker "$id" || die "could not name the network namespace of broker $id"
  done
}

kafka_up() {
  local count=$1
  kubectl create namespace "$POD_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kafka_make_data_dirs "$count"
  ((count != 3)) || kafka_tls_keypair
  kafka_manifests "$count" | kubectl apply -f - >/dev/null
  kafka_wait_ready "$count"
}

# Creates a topic from the client namespace with Kafka's own TopicCommand.
kafka_create_topic() {
  local topic=$1 partitions=${2:-1} replicas=${3:-1}
  ip netns exec "$CLIENT_NS" "$KAFKA_CLASS" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$(broker_ip 0):$KAFKA_PORT" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor "$replicas"
}
