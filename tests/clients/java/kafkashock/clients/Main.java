// kafka-shock's test clients: real Kafka clients (KafkaProducer, KafkaConsumer, Admin from the
// lab's own Kafka jars) that the lab tests run in the client namespace, one operation per
// process, and whose stdout says in JSON lines which Kafka error each API got, by Kafka's name.
// A fault injected by the proxy is judged by what a real client saw, not by what kafka-shock
// thinks it sent. The operations and their report are described in tests/clients/README.md.
package kafkashock.clients;

import java.util.Arrays;
import java.util.Map;

public final class Main {
    /** One operation; it returns the fields of its `result` line ("error" among them). */
    interface Op {
        Map<String, Object> run() throws Exception;
    }

    private static final String USAGE = """
        usage: kafka-client OPERATION --bootstrap HOST:PORT [--client-id ID] [--timeout-ms MS] [--config KEY=VALUE]... [options]
          produce --topic T [--count N] [--acks all|1|0] [--retries R] [--idempotence true|false]
                  [--transactional-id ID [--abort true]] [--interval-ms MS] [--partition P] [--id-prefix P] [--report-sends false]
          consume --topic T[,T...] [--group G [--commit sync|none] [--group-protocol classic|consumer]] [--count N]
                  [--duration-ms MS] [--idle-ms MS] [--check-crcs true|false] [--isolation read_committed] [--report-records false]
          count   --topic T [--expect-prefix P --expect-count N] [--isolation read_committed] [--check-crcs true|false]
          api API [--topic T] [--partition P] [--group G] [--transactional-id ID] [--new-topic T] [--client C]
              [--expect ERROR [--grace-ms MS]]
        Output: JSON lines on stdout, the last one {"event":"result","op":...,"ok":...,"error":...}; see tests/clients/README.md.""";

    private Main() {}

    public static void main(String[] args) {
        if (args.length == 0 || args[0].equals("help") || args[0].equals("--help")) {
            System.err.println(USAGE);
            System.exit(args.length == 0 ? 2 : 0);
        }
        String name = args[0];
        Op op;
        long limitMs;
        try {
            Options options = Options.parse(Arrays.asList(args).subList(1, args.length));
            op = switch (name) {
                case "produce" -> new ProduceOp(options);
                case "consume" -> new ConsumeOp(options);
                case "count" -> new CountOp(options);
                case "api" -> new ApiOp(options);
                default -> throw new Options.UsageException("unknown operation " + name);
            };
            limitMs = limit(options);
            options.rejectUnread();
        } catch (Options.UsageException e) {
            System.err.println("kafka-client: " + e.getMessage() + "\n" + USAGE);
            System.exit(2);
            return;
        }
        Wire.install();
        watchdog(name, limitMs);
        Map<String, Object> result;
        try {
            result = op.run();
        } catch (Throwable t) {
            result = Failure.describe(t);
        }
        finish(name, result, 0);
    }

    /**
     * How long the operation may run at most before the watchdog ends it: its own timeouts bound
     * every client call; this bounds a client that ignores them.
     */
    private static long limit(Options options) {
        long timeout = options.peek("timeout-ms", 15_000);
        long duration = options.peek("duration-ms", 0);
        long paced = options.peek("count", 0) * options.peek("interval-ms", 0);
        return 2 * timeout + duration + paced + 30_000;
    }

    private static void watchdog(String name, long limitMs) {
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(limitMs);
            } catch (InterruptedException e) {
                return;
            }
            System.err.println("kafka-client: " + name + " still running after " + limitMs + " ms: ended");
            finish(name, Out.obj("error", "OP_TIMEOUT", "exception", "still running after " + limitMs + " ms"), 3);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
    }

    /** Prints the result line and ends the process at once: a client still retrying is not waited for. */
    private static synchronized void finish(String name, Map<String, Object> fields, int status) {
        Map<String, Object> line = Out.obj("op", name, "ok", "NONE".equals(fields.get("error")));
        line.putAll(fields);
        line.put("elapsed_ms", Out.elapsedMs());
        line.put("wire", Wire.get().summary());
        Out.emitLast("result", line);
        Runtime.getRuntime().halt(status);
    }
}
