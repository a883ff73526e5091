# The lab's Apache Kafka: KRaft brokers (broker+controller in one process), each in its own
# network namespace, run from the jars fetched by Maven with the machine's Java.

KAFKA_CLUSTER_ID=S2Fma2FTaG9ja0xhYjAwMA # base64url("KafkaShockLab000")
BROKER_HEAP=${KSHOCK_LAB_BROKER_HEAP:--Xmx512m -Xms256m}
KAFKA_CLASS=$LAB_DIR/bin/kafka-class

kafka_write_config() {
  local id=$1 count=$2 dir=$LAB_STATE/broker-$1 voters="" i
  for ((i = 0; i < count; i++)); do voters+="${voters:+,}$i@$(broker_ip "$i"):$CONTROLLER_PORT"; done
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://:$KAFKA_PORT,CONTROLLER://:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$(broker_ip "$id"):$KAFKA_PORT,CONTROLLER://$(broker_ip "$id"):$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=$((count < 3 ? 1 : 3))
transaction.state.log.replication.factor=$((count < 3 ? 1 : 3))
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=$((count < 3 ? 1 : 3))
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
# Request buffers are taken from a pool of this many bytes (Kafka's default is unbounded): junk
# declaring large sizes on many connections, as the hostile-traffic tests send, then waits for
# memory instead of exhausting the heap.
queued.max.request.bytes=134217728
PROPS
}

kafka_start_broker() {
  local id=$1 count=$2 ns dir=$LAB_STATE/broker-$1
  ns=$(broker_ns "$id")
  pid_alive "$dir/pid" && return 0
  kafka_write_config "$id" "$count"
  if [[ ! -f $dir/data/meta.properties ]]; then
    step "format the storage of broker $id" \
      "$KAFKA_CLASS" kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" -c "$dir/server.properties" --ignore-formatted
  fi
  # A broker out of heap exits (rather than living on with dead network threads, answering no
  # one), so the lab's status sees it DEAD and the next `up` starts it again.
  KAFKA_HEAP_OPTS=$BROKER_HEAP KAFKA_OPTS="-Dkafka.logs.dir=$dir -XX:+ExitOnOutOfMemoryError" KAFKA_LOG4J_CONFIG=$LAB_DIR/kafka/log4j2.properties \
    ip netns exec "$ns" setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$dir/pid" \
    "$KAFKA_CLASS" kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 </dev/null &
  wait_for 10 test -s "$dir/pid" || die "broker $id did not start (log: $dir/broker.log)"
}

# A broker is ready once it answers a Metadata request listing every broker of the lab.
kafka_brokers_ready() {
  local count=$1
  [[ $(ip netns exec "$CLIENT_NS" kcat -b "$(broker_ip 0):$KAFKA_PORT" -L -m 3 2>/dev/null | grep -c 'broker [0-9]* at') -ge $count ]]
}

kafka_up() {
  local count=$1 id
  for ((id = 0; id < count; id++)); do kafka_start_broker "$id" "$count"; done
  wait_for 90 kafka_brokers_ready "$count" ||
    die "Kafka did not become ready in 90 s (logs: $LAB_STATE/broker-*/broker.log)"
}

# Creates a topic from the client namespace with Kafka's own TopicCommand.
kafka_create_topic() {
  local topic=$1 partitions=${2:-1} replicas=${3:-1}
  ip netns exec "$CLIENT_NS" "$KAFKA_CLASS" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$(broker_ip 0):$KAFKA_PORT" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor "$replicas"
}
