// `consume`: a KafkaConsumer reads a topic as an application does, in a group (subscribe, a
// rebalance listener, a synchronous commit after each poll) or alone (every partition assigned).
// It reports each record (key, value, partition, offset), each rebalance callback (a rejoin shows
// as revoked + assigned), each exception poll or commit threw by its Kafka error name, and at the
// end how many values it read more than once and its fetch throttle metrics.
package kafkashock.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;

final class ConsumeOp implements Main.Op {
    private final Clients clients;
    private final List<String> topics;
    private final String group;
    private final boolean commit;
    private final long until;
    private final long durationMs;
    private final long idleMs;
    private final long maxPollErrors;
    private final long pollMs;
    private final boolean reportRecords;
    private final Map<String, Object> config = new HashMap<>();

    private final Map<String, Integer> seen = new HashMap<>();
    private final Map<String, Integer> pollErrors = new TreeMap<>();
    private final Map<String, Integer> commitErrors = new TreeMap<>();
    private long records;
    private long commits;
    private int assignments;

    ConsumeOp(Options options) {
        clients = new Clients(options, "consume");
        topics = List.of(options.required("topic").split(","));
        group = options.str("group", null);
        boolean commitSync = options.choice("commit", "sync", "none").equals("sync");
        commit = group != null && commitSync;
        until = options.number("count", 0);
        durationMs = options.number("duration-ms", clients.timeoutMs);
        idleMs = options.number("idle-ms", 0);
        maxPollErrors = options.number("max-poll-errors", 3);
        pollMs = options.number("poll-ms", 200);
        reportRecords = options.flag("report-records", true);
        config.put("check.crcs", options.flag("check-crcs", true));
        config.put("isolation.level", options.choice("isolation", "read_uncommitted", "read_committed"));
        config.put("group.protocol", options.choice("group-protocol", "classic", "consumer"));
        if (group != null) config.put("group.id", group);
    }

    @Override
    public Map<String, Object> run() {
        Map<String, Object> result = Out.obj("topics", topics, "group", group);
        try (KafkaConsumer<String, String> consumer = clients.consumer(config)) {
            if (group != null) consumer.subscribe(topics, listener());
            else consumer.assign(allPartitions(consumer));
            loop(consumer);
            result.put("metrics", Clients.metrics(consumer.metrics(), "consumer-fetch-manager-metrics",
                "fetch-throttle-time-avg", "fetch-throttle-time-max", "records-consumed-total"));
        }
        long unique = seen.size();
        result.putAll(Out.obj(
            "records", records, "unique", unique, "reread", records - unique,
            "repeated", CountOp.repeated(seen, 20),
            "assignments", assignments, "commits", commits,
            "commit_errors", commitErrors, "poll_errors", pollErrors));
        String error = !pollErrors.isEmpty() ? pollErrors.keySet().iterator().next()
            : !commitErrors.isEmpty() ? commitErrors.keySet().iterator().next() : "NONE";
        result.put("error", error);
        return result;
    }

    private List<TopicPartition> allPartitions(KafkaConsumer<String, String> consumer) {
        List<TopicPartition> partitions = new ArrayList<>();
        for (String topic : topics) {
            for (PartitionInfo info : consumer.partitionsFor(topic)) {
                partitions.add(new TopicPartition(topic, info.partition()));
            }
        }
        emitRebalance("assigned", partitions);
        assignments++;
        return partitions;
    }

    private void loop(KafkaConsumer<String, String> consumer) {
        long started = Out.elapsedMs();
        long lastRecord = started;
        long errors = 0;
        while (Out.elapsedMs() - started < durationMs) {
            if (until > 0 && seen.size() >= until) return;
            if (idleMs > 0 && assignments > 0 && Out.elapsedMs() - lastRecord >= idleMs) return;
            ConsumerRecords<String, String> batch;
            try {
                batch = consumer.poll(Duration.ofMillis(pollMs));
            } catch (RuntimeException e) {
                report("poll_error", pollErrors, e);
                if (++errors >= maxPollErrors) return;
                continue;
            }
            for (ConsumerRecord<String, String> record : batch) {
                records++;
                seen.merge(record.value(), 1, Integer::sum);
                lastRecord = Out.elapsedMs();
                if (reportRecords) {
                    Out.emit("record", Out.obj("topic", record.topic(), "partition", record.partition(),
                        "offset", record.offset(), "key", record.key(), "value", record.value()));
                }
            }
            if (commit && !batch.isEmpty()) commitSync(consumer);
        }
    }

    private void commitSync(KafkaConsumer<String, String> consumer) {
        try {
            consumer.commitSync(Duration.ofMillis(clients.timeoutMs));
            commits++;
        } catch (RuntimeException e) {
            report("commit_error", commitErrors, e);
        }
    }

    private static void report(String event, Map<String, Integer> counts, RuntimeException e) {
        Map<String, Object> failure = Failure.describe(e);
        counts.merge((String) failure.get("error"), 1, Integer::sum);
        Out.emit(event, failure);
    }

    private ConsumerRebalanceListener listener() {
        return new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                emitRebalance("revoked", partitions);
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                assignments++;
                emitRebalance("assigned", partitions);
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> partitions) {
                emitRebalance("lost", partitions);
            }
        };
    }

    private static void emitRebalance(String kind, Collection<TopicPartition> partitions) {
        List<String> names = new ArrayList<>();
        for (TopicPartition partition : partitions) names.add(partition.toString());
        Out.emit("rebalance", Out.obj("kind", kind, "partitions", names));
    }
}
