// The clients' report: one JSON object per line on stdout, each with its "event" and the
// milliseconds since the process started ("t_ms"), so a test reads what a real Kafka client saw
// without parsing human text. Hand-written because the report needs strings, numbers, booleans,
// lists and maps only, and the clients should not depend on a JSON library's version.
package kafkashock.clients;

import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.Map;

final class Out {
    private static final long STARTED = System.nanoTime();
    /** Set once the last line is out; guarded by System.out. */
    private static boolean closed;

    private Out() {}

    /** Milliseconds since the process started. */
    static long elapsedMs() {
        return (System.nanoTime() - STARTED) / 1_000_000;
    }

    /** A map keeping its keys' order, from alternating keys and values. */
    static Map<String, Object> obj(Object... keysAndValues) {
        Map<String, Object> map = new LinkedHashMap<>();
        for (int i = 0; i + 1 < keysAndValues.length; i += 2) {
            map.put((String) keysAndValues[i], keysAndValues[i + 1]);
        }
        return map;
    }

    /** Prints one event line; lines of concurrent threads never interleave. */
    static void emit(String event, Map<String, ?> fields) {
        print(event, fields, false);
    }

    /** Prints the last line: what other threads emit afterwards is dropped. */
    static void emitLast(String event, Map<String, ?> fields) {
        print(event, fields, true);
    }

    private static void print(String event, Map<String, ?> fields, boolean last) {
        Map<String, Object> line = obj("event", event, "t_ms", elapsedMs());
        line.putAll(fields);
        String text = json(line);
        synchronized (System.out) {
            if (closed) return;
            closed = last;
            System.out.println(text);
            System.out.flush();
        }
    }

    static String json(Object value) {
        StringBuilder out = new StringBuilder();
        write(out, value);
        return out.toString();
    }

    private static void write(StringBuilder out, Object value) {
        if (value == null) {
            out.append("null");
        } else if (value instanceof Boolean || value instanceof Integer || value instanceof Long) {
            out.append(value);
        } else if (value instanceof Number number) {
            double d = number.doubleValue();
            out.append(Double.isFinite(d) ? String.valueOf(d) : "null");
        } else if (value instanceof Map<?, ?> map) {
            out.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> entry : map.entrySet()) {
                if (!first) out.append(',');
                first = false;
                string(out, String.valueOf(entry.getKey()));
                out.append(':');
                write(out, entry.getValue());
            }
            out.append('}');
        } else if (value instanceof Collection<?> list) {
            out.append('[');
            boolean first = true;
            for (Object item : list) {
                if (!first) out.append(',');
                first = false;
                write(out, item);
            }
            out.append(']');
        } else {
            string(out, value.toString());
        }
    }

    private static void string(StringBuilder out, String text) {
        out.append('"');
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                    else out.append(c);
                }
            }
        }
        out.append('"');
    }
}
