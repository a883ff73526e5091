// Command-line options of one operation: `--name value` pairs, repeatable `--config key=value`
// client settings, and positional words. An option the operation never read is refused, so a
// typo in a test fails loudly instead of silently running with a default.
package kafkashock.clients;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

final class Options {
    /** A command line that cannot be run; exit status 2. */
    static final class UsageException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    final List<String> positional = new ArrayList<>();
    /** Kafka client settings from `--config key=value`, applied over the operation's own. */
    final Properties config = new Properties();
    private final Map<String, String> values = new LinkedHashMap<>();
    private final Set<String> read = new HashSet<>();

    static Options parse(List<String> args) {
        Options options = new Options();
        for (int i = 0; i < args.size(); i++) {
            String arg = args.get(i);
            if (!arg.startsWith("--")) {
                options.positional.add(arg);
                continue;
            }
            if (i + 1 >= args.size()) throw new UsageException(arg + " needs a value");
            String name = arg.substring(2);
            String value = args.get(++i);
            if (name.equals("config")) {
                int eq = value.indexOf('=');
                if (eq <= 0) throw new UsageException("--config takes key=value, not " + value);
                options.config.setProperty(value.substring(0, eq), value.substring(eq + 1));
            } else if (options.values.put(name, value) != null) {
                throw new UsageException("--" + name + " is given twice");
            }
        }
        return options;
    }

    String str(String name, String otherwise) {
        read.add(name);
        return values.getOrDefault(name, otherwise);
    }

    String required(String name) {
        String value = str(name, null);
        if (value == null) throw new UsageException("--" + name + " is required");
        return value;
    }

    long number(String name, long otherwise) {
        String value = str(name, null);
        if (value == null) return otherwise;
        try {
            return Long.parseLong(value);
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " takes a whole number, not " + value);
        }
    }

    /** A number option's value without counting it as read by the operation. */
    long peek(String name, long otherwise) {
        String value = values.get(name);
        try {
            return value == null ? otherwise : Long.parseLong(value);
        } catch (NumberFormatException e) {
            return otherwise;
        }
    }

    boolean flag(String name, boolean otherwise) {
        String value = str(name, null);
        if (value == null) return otherwise;
        return switch (value) {
            case "true" -> true;
            case "false" -> false;
            default -> throw new UsageException("--" + name + " takes true or false, not " + value);
        };
    }

    /** One of `choices`, the first being the default. */
    String choice(String name, String... choices) {
        String value = str(name, choices[0]);
        if (!List.of(choices).contains(value)) {
            throw new UsageException("--" + name + " takes one of " + List.of(choices) + ", not " + value);
        }
        return value;
    }

    /** Refuses the options no one read (call once the operation has read its own). */
    void rejectUnread() {
        List<String> unknown = new ArrayList<>();
        for (String name : values.keySet()) {
            if (!read.contains(name)) unknown.add("--" + name);
        }
        if (!unknown.isEmpty()) throw new UsageException("unknown option(s) for this operation: " + unknown);
    }
}
