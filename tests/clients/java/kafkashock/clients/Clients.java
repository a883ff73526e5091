// The real Kafka clients an operation uses (KafkaProducer, KafkaConsumer, Admin), configured
// alike: the bootstrap servers and client id of the command line, the operation's timeout on
// every blocking call, then the operation's own settings, then `--config key=value` last, so a
// test can set any client setting it needs.
package kafkashock.clients;

import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

final class Clients {
    final String bootstrap;
    final String clientId;
    /** Bounds every blocking client call of the operation. */
    final long timeoutMs;
    private final Properties overrides;

    Clients(Options options, String op) {
        bootstrap = options.required("bootstrap");
        clientId = options.str("client-id", "kshock-" + op);
        timeoutMs = options.number("timeout-ms", 15_000);
        if (timeoutMs < 1_000) throw new Options.UsageException("--timeout-ms must be at least 1000");
        overrides = options.config;
    }

    private long requestTimeoutMs() {
        return Math.min(30_000, timeoutMs / 2);
    }

    /** Settings in order of precedence: these clients' defaults, the operation's, `--config`. */
    private Properties with(Map<String, Object> defaults, Map<String, Object> own) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("client.id", clientId);
        defaults.forEach((key, value) -> props.put(key, String.valueOf(value)));
        own.forEach((key, value) -> props.put(key, String.valueOf(value)));
        props.putAll(overrides);
        return props;
    }

    KafkaProducer<String, String> producer(Map<String, Object> own) {
        return new KafkaProducer<>(with(Map.of(
            "key.serializer", StringSerializer.class.getName(),
            "value.serializer", StringSerializer.class.getName(),
            "max.block.ms", timeoutMs,
            "request.timeout.ms", requestTimeoutMs(),
            "delivery.timeout.ms", timeoutMs,
            "linger.ms", 0), own));
    }

    KafkaConsumer<String, String> consumer(Map<String, Object> own) {
        return new KafkaConsumer<>(with(Map.of(
            "key.deserializer", StringDeserializer.class.getName(),
            "value.deserializer", StringDeserializer.class.getName(),
            "default.api.timeout.ms", timeoutMs,
            "request.timeout.ms", requestTimeoutMs(),
            "enable.auto.commit", false,
            "auto.offset.reset", "earliest"), own));
    }

    Admin admin() {
        return Admin.create(with(Map.of(
            "default.api.timeout.ms", timeoutMs,
            "request.timeout.ms", requestTimeoutMs()), Map.of()));
    }

    /** The named metrics of a client (name to value), e.g. "record-retry-total". */
    static Map<String, Object> metrics(Map<MetricName, ? extends Metric> all, String group, String... names) {
        Map<String, Object> picked = new TreeMap<>();
        for (Map.Entry<MetricName, ? extends Metric> entry : all.entrySet()) {
            MetricName name = entry.getKey();
            if (name.group().equals(group) && !name.tags().containsKey("topic")
                && List.of(names).contains(name.name())) {
                picked.put(name.name(), entry.getValue().metricValue());
            }
        }
        return picked;
    }
}
