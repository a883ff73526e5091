// `produce`: a KafkaProducer sends COUNT records, each value a unique id ("<prefix>-<n>") that
// `count` later finds once, twice or never. It reports each send's outcome (partition and offset,
// or the Kafka error it failed with), and at the end what the producer met on the way: the
// errors of its Produce responses (retried or not), its Metadata refreshes, and its own metrics
// (record-retry-total, record-error-total, produce-throttle-time-max).
package kafkashock.clients;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;

final class ProduceOp implements Main.Op {
    private final Clients clients;
    private final String topic;
    private final long count;
    private final long intervalMs;
    private final Integer partition;
    private final String prefix;
    private final String transactionalId;
    private final boolean abort;
    private final boolean reportSends;
    private final Map<String, Object> config = new HashMap<>();

    private final AtomicInteger acked = new AtomicInteger();
    private final Map<String, Integer> failures = new TreeMap<>();

    ProduceOp(Options options) {
        clients = new Clients(options, "produce");
        topic = options.required("topic");
        count = options.number("count", 100);
        intervalMs = options.number("interval-ms", 0);
        long chosen = options.number("partition", -1);
        partition = chosen < 0 ? null : (int) chosen;
        prefix = options.str("id-prefix", clients.clientId);
        reportSends = options.flag("report-sends", true);
        config.put("acks", options.choice("acks", "all", "1", "0"));
        String retries = options.str("retries", null);
        if (retries != null) config.put("retries", retries);
        String idempotence = options.str("idempotence", null);
        if (idempotence != null) config.put("enable.idempotence", idempotence);
        transactionalId = options.str("transactional-id", null);
        if (transactionalId != null) config.put("transactional.id", transactionalId);
        abort = options.flag("abort", false);
    }

    @Override
    public Map<String, Object> run() {
        Map<String, Object> result = Out.obj("topic", topic);
        Throwable failed = null;
        KafkaProducer<String, String> producer = clients.producer(config);
        try {
            if (transactionalId != null) {
                producer.initTransactions();
                producer.beginTransaction();
            }
            for (long n = 0; n < count; n++) {
                send(producer, prefix + "-" + n);
                if (intervalMs > 0) Thread.sleep(intervalMs);
            }
            producer.flush();
            if (transactionalId != null) {
                if (abort) producer.abortTransaction();
                else producer.commitTransaction();
            }
        } catch (Exception e) {
            failed = e;
        } finally {
            result.put("metrics", Clients.metrics(producer.metrics(), "producer-metrics",
                "record-send-total", "record-retry-total", "record-error-total",
                "produce-throttle-time-avg", "produce-throttle-time-max"));
            producer.close(Duration.ofMillis(clients.timeoutMs));
        }
        Wire wire = Wire.get();
        synchronized (failures) {
            result.putAll(Out.obj("sent", count, "acked", acked.get(), "failed", failures.values().stream().mapToInt(i -> i).sum(),
                "send_errors", new TreeMap<>(failures)));
        }
        result.put("produce_errors", wire.errors("Produce"));
        result.put("metadata_responses", wire.received("Metadata"));
        if (failed != null) {
            result.putAll(Failure.describe(failed));
        } else {
            synchronized (failures) {
                result.put("error", failures.isEmpty() ? "NONE" : failures.keySet().iterator().next());
            }
        }
        return result;
    }

    private void send(KafkaProducer<String, String> producer, String id) {
        producer.send(new ProducerRecord<>(topic, partition, id, id), (metadata, exception) -> {
            if (exception == null) {
                acked.incrementAndGet();
                if (reportSends) {
                    Out.emit("send", Out.obj("id", id, "partition", metadata.partition(), "offset", metadata.offset()));
                }
            } else {
                Map<String, Object> failure = Failure.describe(exception);
                synchronized (failures) {
                    failures.merge((String) failure.get("error"), 1, Integer::sum);
                }
                Map<String, Object> line = Out.obj("id", id);
                line.putAll(failure);
                Out.emit("send", line);
            }
        });
    }
}
