# The lab's Kafka broker image: Debian's Java runtime (a base made by mmdebstrap, passed as
# BASE) plus the Kafka jars the lab fetched from Maven Central. The broker's configuration is not
# in the image: the lab generates it (tests/lab/lib/kafka.sh) into a ConfigMap, one file per pod.
ARG BASE
FROM ${BASE}
COPY libs/ /opt/kafka/libs/
COPY log4j2.properties kafka-broker.sh /opt/kafka/
USER 1001:1001
ENV KAFKA_HEAP_OPTS="-Xmx512m -Xms256m"
ENTRYPOINT ["/opt/kafka/kafka-broker.sh"]
