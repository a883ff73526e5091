// What the Kafka client itself sent and received, per Kafka API, read from the client's own log:
// its NetworkClient logs every request it sends and every response it decodes at DEBUG, with the
// response's fields (errorCode=..., throttleTimeMs=...). A log4j2 appender installed at start
// turns those lines into counters and `response` events, and the client's warnings and group
// and transaction messages into `log` events. This is the client's view, not a sniffer's: a
// retriable error the client handles internally still shows here, for the API that got it.
package kafkashock.clients;

import java.io.Serializable;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.common.protocol.ApiKeys;
import org.apache.kafka.common.protocol.Errors;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.Layout;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.appender.AbstractAppender;
import org.apache.logging.log4j.core.config.Configuration;
import org.apache.logging.log4j.core.config.LoggerConfig;
import org.apache.logging.log4j.core.config.Property;

final class Wire extends AbstractAppender {
    private static final String NETWORK_CLIENT = "org.apache.kafka.clients.NetworkClient";
    private static final Pattern SENT = Pattern.compile("Sending (\\w+) request with header");
    private static final Pattern RECEIVED = Pattern.compile(
        "Received (\\w+) response from node (\\S+) for request with header RequestHeader\\(apiKey=\\w+, "
            + "apiVersion=(\\d+), clientId=.*?, correlationId=(-?\\d+), headerVersion=\\d+\\): (.*)",
        Pattern.DOTALL);
    private static final Pattern ERROR_CODE = Pattern.compile("\\b\\w*[eE]rrorCode=(-?\\d+)");
    private static final Pattern THROTTLE = Pattern.compile("\\bthrottleTimeMs=(\\d+)");
    private static final Wire INSTANCE = new Wire();

    private final Map<String, Integer> sent = new TreeMap<>();
    private final Map<String, Integer> received = new TreeMap<>();
    /** Per API: error name to the number of responses carrying it. */
    private final Map<String, Map<String, Integer>> errors = new TreeMap<>();
    private final Map<String, Integer> maxThrottleMs = new TreeMap<>();
    /** Per API: the longest time between two requests sent, and when the last was sent. */
    private final Map<String, Long> maxGapMs = new TreeMap<>();
    private final Map<String, Long> lastSentMs = new TreeMap<>();
    /** Per API and error name: when a response first carried it. */
    private final Map<String, Long> firstErrorMs = new TreeMap<>();

    private Wire() {
        super("kafka-shock-wire", null, (Layout<? extends Serializable>) null, true, Property.EMPTY_ARRAY);
    }

    static Wire get() {
        return INSTANCE;
    }

    /**
     * Routes the client library's log to this appender: warnings of every Kafka class, group and
     * transaction messages (INFO) of the consumer and producer internals, and the NetworkClient's
     * DEBUG lines, which are parsed and not printed.
     */
    static void install() {
        LoggerContext context = (LoggerContext) LogManager.getContext(false);
        Configuration config = context.getConfiguration();
        INSTANCE.start();
        config.addAppender(INSTANCE);
        route(config, "org.apache.kafka", Level.WARN);
        route(config, "org.apache.kafka.clients.consumer.internals", Level.INFO);
        route(config, "org.apache.kafka.clients.producer.internals", Level.INFO);
        route(config, NETWORK_CLIENT, Level.DEBUG);
        context.updateLoggers();
    }

    private static void route(Configuration config, String name, Level level) {
        LoggerConfig logger = LoggerConfig.newBuilder()
            .withLoggerName(name)
            .withLevel(level)
            .withAdditivity(false)
            .withConfig(config)
            .build();
        logger.addAppender(INSTANCE, null, null);
        config.addLogger(name, logger);
    }

    @Override
    public void append(LogEvent event) {
        String message = event.getMessage().getFormattedMessage();
        if (event.getLevel().isLessSpecificThan(Level.DEBUG)) {
            if (NETWORK_CLIENT.equals(event.getLoggerName())) wireLine(message);
            return;
        }
        Throwable thrown = event.getThrown();
        String text = thrown == null ? message : message + " (" + thrown + ")";
        String logger = event.getLoggerName();
        Out.emit("log", Out.obj(
            "level", event.getLevel().name(),
            "logger", logger.substring(logger.lastIndexOf('.') + 1),
            "message", text,
            "errors", Failure.namesIn(text)));
        if (event.getLevel().isMoreSpecificThan(Level.WARN)) {
            System.err.println("[" + event.getLevel() + "] " + text);
        }
    }

    private void wireLine(String message) {
        Matcher sending = SENT.matcher(message);
        if (sending.find()) {
            requestSent(apiName(sending.group(1)));
            return;
        }
        Matcher receiving = RECEIVED.matcher(message);
        if (receiving.find()) {
            responseReceived(apiName(receiving.group(1)), receiving.group(2),
                Integer.parseInt(receiving.group(3)), Integer.parseInt(receiving.group(4)), receiving.group(5));
        }
    }

    private synchronized void requestSent(String api) {
        long now = Out.elapsedMs();
        sent.merge(api, 1, Integer::sum);
        Long last = lastSentMs.put(api, now);
        if (last != null) maxGapMs.merge(api, now - last, Math::max);
    }

    private void responseReceived(String api, String node, int version, int correlationId, String body) {
        Set<String> names = new TreeSet<>();
        Matcher codes = ERROR_CODE.matcher(body);
        while (codes.find()) {
            short code = Short.parseShort(codes.group(1));
            if (code != 0) names.add(errorName(code));
        }
        Matcher throttle = THROTTLE.matcher(body);
        int throttleMs = throttle.find() ? Integer.parseInt(throttle.group(1)) : 0;
        synchronized (this) {
            received.merge(api, 1, Integer::sum);
            for (String name : names) errors.computeIfAbsent(api, k -> new TreeMap<>()).merge(name, 1, Integer::sum);
            for (String name : names) firstErrorMs.putIfAbsent(api + " " + name, Out.elapsedMs());
            if (throttleMs > 0) maxThrottleMs.merge(api, throttleMs, Math::max);
        }
        if (!names.isEmpty() || throttleMs > 0) {
            Out.emit("response", Out.obj("api", api, "version", version, "node", node,
                "correlation_id", correlationId, "errors", names, "throttle_ms", throttleMs));
        }
    }

    private static String errorName(short code) {
        for (Errors error : Errors.values()) {
            if (error.code() == code) return error.name();
        }
        return "UNKNOWN(" + code + ")";
    }

    /** Kafka's name of an API ("Produce") from the client's enum constant ("PRODUCE"). */
    private static String apiName(String constant) {
        try {
            return ApiKeys.valueOf(constant).name;
        } catch (IllegalArgumentException e) {
            return constant;
        }
    }

    synchronized int sent(String api) {
        return sent.getOrDefault(api, 0);
    }

    synchronized int received(String api) {
        return received.getOrDefault(api, 0);
    }

    /** The errors the responses of `api` carried: name to number of responses. */
    synchronized Map<String, Integer> errors(String api) {
        return new TreeMap<>(errors.getOrDefault(api, Map.of()));
    }

    /** When a response of `api` first carried `error` (ms since start), or -1. */
    synchronized long firstErrorMs(String api, String error) {
        return firstErrorMs.getOrDefault(api + " " + error, -1L);
    }

    /** Everything counted, for a `result` line. */
    synchronized Map<String, Object> summary() {
        Map<String, Object> errorCopy = new TreeMap<>();
        errors.forEach((api, byName) -> errorCopy.put(api, new TreeMap<>(byName)));
        return Out.obj(
            "requests", new TreeMap<>(sent),
            "responses", new TreeMap<>(received),
            "errors", errorCopy,
            "max_throttle_ms", new TreeMap<>(maxThrottleMs),
            "max_gap_ms", new TreeMap<>(maxGapMs));
    }
}
