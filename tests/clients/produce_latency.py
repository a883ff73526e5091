"""Send COUNT records with kafka-python, one at a time, and time each acknowledgement.

Usage: produce_latency.py BOOTSTRAP TOPIC CLIENT_ID COUNT [TIMEOUT_MS]
acks=1 and one request in flight, so each send is one Produce request whose latency the
client itself measures. Prints one JSON object:
{"sent": N, "acked": K, "latencies_ms": [...], "p50_ms": x, "p99_ms": y, "errors": {...}}.
A record whose send fails is counted by its error, never retried.
"""
import json
import sys
import time
from collections import Counter

from kafka import KafkaProducer


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    bootstrap, topic, client_id = sys.argv[1], sys.argv[2], sys.argv[3]
    count = int(sys.argv[4])
    timeout_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 10000
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks=1,
        retries=0,
        linger_ms=0,
        max_in_flight_requests_per_connection=1,
        request_timeout_ms=timeout_ms,
        max_block_ms=timeout_ms,
    )
    # Metadata first, so the first timed send is a Produce alone.
    producer.partitions_for(topic)
    errors = Counter()
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        try:
            producer.send(topic, f"{client_id}-{i}".encode()).get(timeout=timeout_ms / 1000 + 1)
            latencies.append((time.perf_counter() - started) * 1000.0)
        except Exception as error:  # every failure is counted by its kind, none stops the run
            errors[type(error).__name__] += 1
    producer.close(timeout=1)
    print(json.dumps({
        "sent": count,
        "acked": len(latencies),
        "latencies_ms": [round(x, 3) for x in latencies],
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "errors": dict(errors),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
