// `api NAME`: makes a real Kafka client send the Kafka API NAME (and what must come before it),
// and reports the error that API got, as the client saw it. `error` is the Kafka error name of
// what the call threw (`surfaced: "exception"`), else NONE; `api_errors` counts the errors the
// API's responses carried, also those the client handled itself (retried, rejoined, logged) and
// those a healthy cluster sends (MEMBER_ID_REQUIRED on a first JoinGroup, NOT_COORDINATOR while
// a coordinator loads). With `--expect ERROR` the operation ends once the API got ERROR and the
// client had `--grace-ms` to throw it; if it did not, `error` is ERROR with `surfaced:
// "response"`: an error the client retries internally costs the grace, not the timeout. An API
// the client never sent is reported as NOT_SENT.
package kafkashock.clients;

import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TimeoutException;

final class ApiOp implements Main.Op {
    /** What the client does to send the API. */
    private interface Body {
        void run() throws Exception;
    }

    /** The APIs this operation sends, by Kafka's names, with the clients each can use (default first). */
    static final Map<String, List<String>> APIS = Map.ofEntries(
        Map.entry("Produce", List.of("producer")),
        Map.entry("Fetch", List.of("consumer")),
        Map.entry("ListOffsets", List.of("consumer", "admin")),
        Map.entry("Metadata", List.of("consumer", "producer")),
        Map.entry("OffsetCommit", List.of("consumer")),
        Map.entry("OffsetFetch", List.of("consumer", "admin")),
        Map.entry("FindCoordinator", List.of("consumer", "admin")),
        Map.entry("JoinGroup", List.of("consumer")),
        Map.entry("SyncGroup", List.of("consumer")),
        Map.entry("Heartbeat", List.of("consumer")),
        Map.entry("LeaveGroup", List.of("consumer")),
        Map.entry("DescribeGroups", List.of("admin")),
        Map.entry("CreateTopics", List.of("admin")),
        Map.entry("DeleteTopics", List.of("admin")),
        Map.entry("InitProducerId", List.of("transactional", "idempotent")),
        Map.entry("AddPartitionsToTxn", List.of("transactional")),
        Map.entry("AddOffsetsToTxn", List.of("transactional")),
        Map.entry("EndTxn", List.of("transactional")),
        Map.entry("TxnOffsetCommit", List.of("transactional")),
        Map.entry("ConsumerGroupHeartbeat", List.of("consumer")));

    private final Clients clients;
    private final String api;
    private final String client;
    private final String topic;
    private final TopicPartition partition;
    private final String group;
    private final String transactionalId;
    private final String newTopic;
    private final long graceMs;
    private final String expect;

    ApiOp(Options options) {
        if (options.positional.size() != 1 || !APIS.containsKey(options.positional.get(0))) {
            throw new Options.UsageException("api takes one API name, one of " + new TreeSet<>(APIS.keySet()));
        }
        api = options.positional.get(0);
        clients = new Clients(options, "api-" + api);
        client = options.choice("client", APIS.get(api).toArray(String[]::new));
        topic = options.str("topic", "kshock-api");
        partition = new TopicPartition(topic, (int) options.number("partition", 0));
        // Fresh by default: a member that never left (its LeaveGroup failed, or the process was
        // ended early) keeps its group rebalancing until its session times out.
        String fresh = "kshock-api-" + api + "-" + ProcessHandle.current().pid();
        group = options.str("group", fresh);
        transactionalId = options.str("transactional-id", fresh);
        newTopic = options.str("new-topic", "kshock-api-" + api.toLowerCase() + "-" + System.currentTimeMillis());
        graceMs = options.number("grace-ms", 2_000);
        expect = options.str("expect", null);
    }

    @Override
    public Map<String, Object> run() throws InterruptedException {
        Wire wire = Wire.get();
        AtomicReference<Throwable> thrown = new AtomicReference<>();
        Thread worker = new Thread(() -> {
            try {
                body().run();
            } catch (Throwable t) {
                thrown.set(t);
            }
        }, "api-" + api);
        worker.setDaemon(true);
        worker.start();
        long deadline = Out.elapsedMs() + clients.timeoutMs + 5_000;
        boolean timedOut = false;
        while (worker.isAlive() && !expectedSeen(wire)) {
            if (Out.elapsedMs() > deadline) {
                timedOut = true;
                break;
            }
            worker.join(50);
        }
        return result(wire, thrown.get(), timedOut);
    }

    /** Whether the expected error came in a response, and the client had its grace to throw it. */
    private boolean expectedSeen(Wire wire) {
        long first = expect == null ? -1 : wire.firstErrorMs(api, expect);
        return first >= 0 && Out.elapsedMs() - first >= graceMs;
    }

    private Map<String, Object> result(Wire wire, Throwable thrown, boolean timedOut) {
        Map<String, Integer> errors = wire.errors(api);
        Map<String, Object> result = Out.obj("api", api, "client", client, "expect", expect,
            "api_requests", wire.sent(api), "api_errors", errors);
        boolean expectedCame = expect != null && errors.containsKey(expect);
        boolean retriedUntilTimeout = thrown instanceof TimeoutException
            || thrown != null && thrown.getCause() instanceof TimeoutException;
        if (thrown != null && !(retriedUntilTimeout && expectedCame)) {
            result.putAll(Failure.describe(thrown));
            result.put("surfaced", "exception");
        } else if (expectedCame) {
            result.put("error", expect);
            result.put("surfaced", "response");
            if (thrown != null) result.put("exception", thrown.toString());
        } else if (timedOut) {
            result.put("error", "OP_TIMEOUT");
        } else if (wire.sent(api) == 0) {
            result.put("error", "NOT_SENT");
        } else {
            result.put("error", "NONE");
        }
        return result;
    }

    private Body body() {
        return switch (api) {
            case "Produce" -> this::produce;
            case "Fetch" -> this::fetch;
            case "ListOffsets" -> client.equals("admin") ? this::adminListOffsets : this::listOffsets;
            case "Metadata" -> client.equals("producer") ? this::producerMetadata : this::metadata;
            case "OffsetCommit" -> this::offsetCommit;
            case "OffsetFetch", "FindCoordinator" -> client.equals("admin") ? this::adminOffsetFetch : this::offsetFetch;
            case "JoinGroup", "SyncGroup" -> () -> join(Map.of(), false);
            case "Heartbeat" -> this::heartbeat;
            case "LeaveGroup" -> () -> join(Map.of(), true);
            case "ConsumerGroupHeartbeat" -> () -> join(Map.of("group.protocol", "consumer"), false);
            case "DescribeGroups" -> this::describeGroups;
            case "CreateTopics" -> this::createTopics;
            case "DeleteTopics" -> this::deleteTopics;
            case "InitProducerId" -> client.equals("idempotent") ? this::idempotentProduce : this::initTransactions;
            default -> this::transaction;
        };
    }

    private void produce() throws Exception {
        try (KafkaProducer<String, String> producer = clients.producer(
                Map.of("acks", "all", "retries", 0, "enable.idempotence", false))) {
            producer.send(new ProducerRecord<>(topic, partition.partition(), api, api)).get();
        }
    }

    private KafkaConsumer<String, String> loneConsumer() {
        return clients.consumer(Map.of("auto.offset.reset", "none", "fetch.max.wait.ms", 100));
    }

    private KafkaConsumer<String, String> groupConsumer(Map<String, Object> extra) {
        Map<String, Object> config = new HashMap<>(Map.of("group.id", group, "heartbeat.interval.ms", 300));
        config.putAll(extra);
        if ("consumer".equals(config.get("group.protocol"))) config.remove("heartbeat.interval.ms");
        return clients.consumer(config);
    }

    /** From offset 0 on the partition, so the consumer sends no ListOffsets before its Fetch. */
    private void fetch() {
        try (KafkaConsumer<String, String> consumer = loneConsumer()) {
            consumer.assign(List.of(partition));
            consumer.seek(partition, 0);
            while (Wire.get().received("Fetch") == 0) consumer.poll(Duration.ofMillis(100));
            // The polls that hand the response to the application are where its error is thrown.
            consumer.poll(Duration.ofMillis(100));
            consumer.poll(Duration.ofMillis(100));
        }
    }

    private void listOffsets() {
        try (KafkaConsumer<String, String> consumer = loneConsumer()) {
            consumer.endOffsets(List.of(partition), Duration.ofMillis(clients.timeoutMs));
        }
    }

    private void adminListOffsets() throws Exception {
        try (Admin admin = clients.admin()) {
            admin.listOffsets(Map.of(partition, OffsetSpec.latest())).all().get();
        }
    }

    private void metadata() {
        try (KafkaConsumer<String, String> consumer = loneConsumer()) {
            consumer.partitionsFor(topic, Duration.ofMillis(clients.timeoutMs));
        }
    }

    private void producerMetadata() {
        try (KafkaProducer<String, String> producer = clients.producer(Map.of())) {
            producer.partitionsFor(topic);
        }
    }

    /** A group member without a subscription: FindCoordinator, then the OffsetCommit alone. */
    private void offsetCommit() {
        try (KafkaConsumer<String, String> consumer = groupConsumer(Map.of())) {
            consumer.assign(List.of(partition));
            consumer.commitSync(Map.of(partition, new OffsetAndMetadata(0)), Duration.ofMillis(clients.timeoutMs));
        }
    }

    private void offsetFetch() {
        try (KafkaConsumer<String, String> consumer = groupConsumer(Map.of())) {
            consumer.committed(Set.of(partition), Duration.ofMillis(clients.timeoutMs));
        }
    }

    private void adminOffsetFetch() throws Exception {
        try (Admin admin = clients.admin()) {
            admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        }
    }

    /** Subscribes and polls until the group assigned partitions; then leaves it, if asked. */
    private void join(Map<String, Object> extra, boolean leave) {
        KafkaConsumer<String, String> consumer = groupConsumer(extra);
        try {
            consumer.subscribe(List.of(topic));
            while (consumer.assignment().isEmpty()) consumer.poll(Duration.ofMillis(100));
        } finally {
            consumer.close(CloseOptions.timeout(Duration.ofMillis(clients.timeoutMs)));
        }
        if (leave && Wire.get().received("LeaveGroup") == 0) {
            throw new IllegalStateException("the consumer closed without a LeaveGroup response");
        }
    }

    /** Joins, then polls until two heartbeats were answered (every 300 ms). */
    private void heartbeat() {
        try (KafkaConsumer<String, String> consumer = groupConsumer(Map.of())) {
            consumer.subscribe(List.of(topic));
            while (consumer.assignment().isEmpty() || Wire.get().received("Heartbeat") < 2) {
                consumer.poll(Duration.ofMillis(100));
            }
        }
    }

    /** Gives the group committed offsets (so it exists, empty), then describes it. */
    private void describeGroups() throws Exception {
        try (Admin admin = clients.admin()) {
            admin.alterConsumerGroupOffsets(group, Map.of(partition, new OffsetAndMetadata(0))).all().get();
            admin.describeClassicGroups(List.of(group)).all().get();
        }
    }

    private void createTopics() throws Exception {
        try (Admin admin = clients.admin()) {
            admin.createTopics(List.of(new NewTopic(newTopic, 1, (short) 1))).all().get();
        }
    }

    private void deleteTopics() throws Exception {
        try (Admin admin = clients.admin()) {
            admin.createTopics(List.of(new NewTopic(newTopic, 1, (short) 1))).all().get();
            admin.deleteTopics(List.of(newTopic)).all().get();
        }
    }

    private void idempotentProduce() throws Exception {
        try (KafkaProducer<String, String> producer = clients.producer(
                Map.of("acks", "all", "enable.idempotence", true))) {
            producer.send(new ProducerRecord<>(topic, partition.partition(), api, api)).get();
        }
    }

    private KafkaProducer<String, String> transactional() {
        return clients.producer(Map.of("transactional.id", transactionalId));
    }

    private void initTransactions() {
        try (KafkaProducer<String, String> producer = transactional()) {
            producer.initTransactions();
        }
    }

    /**
     * One transaction: a record, the group's offsets (AddOffsetsToTxn and TxnOffsetCommit), then
     * commit (EndTxn). Brokers with transaction version 2 let the client skip AddPartitionsToTxn
     * and AddOffsetsToTxn: the report then says NOT_SENT.
     */
    private void transaction() throws Exception {
        try (KafkaProducer<String, String> producer = transactional()) {
            producer.initTransactions();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, partition.partition(), api, api)).get();
            producer.sendOffsetsToTransaction(Map.of(partition, new OffsetAndMetadata(0)), new ConsumerGroupMetadata(group));
            producer.commitTransaction();
        }
    }
}
