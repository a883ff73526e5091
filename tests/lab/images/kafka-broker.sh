#!/bin/sh
# The lab's Kafka broker container: runs the broker with the configuration the lab generated for
# this pod (/etc/kafka/<pod name>.properties), formatting its storage first when it is new.
set -eu
config=/etc/kafka/${POD_NAME:?POD_NAME names the pod}.properties
[ -f "$config" ] || { echo "kafka-broker: no configuration for pod $POD_NAME ($config)" >&2; exit 1; }
# shellcheck disable=SC2086
set -- ${KAFKA_HEAP_OPTS} -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties -cp '/opt/kafka/libs/*'
data=$(sed -n 's/^log\.dirs=//p' "$config")
if [ ! -f "$data/meta.properties" ]; then
  java "$@" kafka.tools.StorageTool format -t "${KAFKA_CLUSTER_ID:?}" -c "$config" --ignore-formatted
fi
# The JVM becomes the container's PID 1: the kubelet's SIGTERM starts a controlled shutdown. A
# broker out of heap exits (rather than living on with dead network threads, answering no one),
# and the kubelet restarts its container.
exec java "$@" -XX:+ExitOnOutOfMemoryError kafka.Kafka "$config"
