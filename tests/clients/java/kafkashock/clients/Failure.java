// Names what a Kafka client threw by Kafka's own error names (NOT_LEADER_OR_FOLLOWER, ...), via
// the client library's table (Errors.forException), through the wrappers futures and clients
// add (ExecutionException, KafkaException causes). A failure that carries no Kafka error is
// named by its exception class (CommitFailedException, IllegalStateException): never a Kafka
// name, so a test asserting one cannot pass by accident.
package kafkashock.clients;

import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.common.errors.UnknownServerException;
import org.apache.kafka.common.protocol.Errors;

final class Failure {
    private static final Pattern WORD = Pattern.compile("\\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\\b");

    private Failure() {}

    /** The Kafka error name of `thrown`, or its class's simple name when it carries none. */
    static String name(Throwable thrown) {
        for (Throwable t = thrown; t != null; t = t.getCause()) {
            // The consumer's own exception for the broker's OFFSET_OUT_OF_RANGE (no reset policy).
            if (t instanceof org.apache.kafka.clients.consumer.OffsetOutOfRangeException) return "OFFSET_OUT_OF_RANGE";
            Errors error = Errors.forException(t);
            if (error != Errors.UNKNOWN_SERVER_ERROR || t instanceof UnknownServerException) {
                return error.name();
            }
            if (t.getCause() == t) break;
        }
        return unwrap(thrown).getClass().getSimpleName();
    }

    /** `error` and `exception` ("class: message") fields for a report line. */
    static Map<String, Object> describe(Throwable thrown) {
        Throwable t = unwrap(thrown);
        return Out.obj("error", name(thrown), "exception", t.getClass().getName() + ": " + t.getMessage());
    }

    /** The Kafka error names written in a log line ("... Error: NOT_LEADER_OR_FOLLOWER"). */
    static Set<String> namesIn(String text) {
        Set<String> names = new TreeSet<>();
        Matcher words = WORD.matcher(text);
        while (words.find()) {
            String word = words.group();
            if (isErrorName(word)) names.add(word);
        }
        return names;
    }

    private static boolean isErrorName(String word) {
        try {
            return Errors.valueOf(word) != Errors.NONE;
        } catch (IllegalArgumentException e) {
            return false;
        }
    }

    private static Throwable unwrap(Throwable t) {
        while ((t instanceof ExecutionException || t instanceof CompletionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }
}
