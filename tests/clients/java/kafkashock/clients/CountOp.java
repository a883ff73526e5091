// `count`: an isolated reader (no group, nothing committed) reads a topic from its beginning to
// the end offsets it saw at start (the last stable offset with read_committed), and says how many
// records it holds, which values are there more than once, and, given the ids a `produce` sent,
// which are missing: "every record is in the topic exactly once" as one report line.
package kafkashock.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;

final class CountOp implements Main.Op {
    private static final int LISTED = 50;

    private final Clients clients;
    private final String topic;
    private final String expectPrefix;
    private final long expectCount;
    private final Map<String, Object> config = new HashMap<>();

    CountOp(Options options) {
        clients = new Clients(options, "count");
        topic = options.required("topic");
        expectPrefix = options.str("expect-prefix", null);
        expectCount = options.number("expect-count", 0);
        if ((expectPrefix == null) != (expectCount == 0)) {
            throw new Options.UsageException("--expect-prefix and --expect-count go together");
        }
        config.put("isolation.level", options.choice("isolation", "read_uncommitted", "read_committed"));
        config.put("check.crcs", options.flag("check-crcs", true));
    }

    @Override
    public Map<String, Object> run() {
        Map<String, Integer> seen = new HashMap<>();
        long records = 0;
        Map<String, Object> ends = new TreeMap<>();
        try (KafkaConsumer<String, String> consumer = clients.consumer(config)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic)) {
                partitions.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
            end.forEach((partition, offset) -> ends.put(partition.toString(), offset));
            long deadline = Out.elapsedMs() + clients.timeoutMs;
            while (!reached(consumer, end)) {
                if (Out.elapsedMs() > deadline) {
                    return Out.obj("topic", topic, "error", "OP_TIMEOUT", "records", records,
                        "exception", "the end offsets " + ends + " were not reached in " + clients.timeoutMs + " ms");
                }
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    if (record.offset() >= end.get(new TopicPartition(record.topic(), record.partition()))) continue;
                    records++;
                    seen.merge(record.value(), 1, Integer::sum);
                }
            }
        }
        Map<String, Integer> repeated = repeated(seen, LISTED);
        List<String> missing = new ArrayList<>();
        long missingCount = 0;
        for (long n = 0; n < expectCount; n++) {
            String id = expectPrefix + "-" + n;
            if (!seen.containsKey(id) && ++missingCount <= LISTED) missing.add(id);
        }
        long duplicates = records - seen.size();
        return Out.obj("topic", topic, "error", "NONE", "end_offsets", ends, "records", records,
            "unique", seen.size(), "duplicates", duplicates, "repeated", repeated,
            "missing_count", missingCount, "missing", missing);
    }

    private static boolean reached(KafkaConsumer<String, String> consumer, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> entry : end.entrySet()) {
            if (consumer.position(entry.getKey()) < entry.getValue()) return false;
        }
        return true;
    }

    /** Values read more than once (value to times read), at most `limit` of them. */
    static Map<String, Integer> repeated(Map<String, Integer> seen, int limit) {
        Map<String, Integer> repeated = new TreeMap<>();
        for (Map.Entry<String, Integer> entry : seen.entrySet()) {
            if (entry.getValue() > 1 && repeated.size() < limit) repeated.put(entry.getKey(), entry.getValue());
        }
        return repeated;
    }
}
