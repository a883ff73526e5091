"""Send COUNT records with kafka-python and count how many the broker acknowledged.

Usage: produce_count.py BOOTSTRAP TOPIC CLIENT_ID COUNT TIMEOUT_MS
Prints one JSON object: {"sent": N, "acked": K, "errors": {"ErrorName": n, ...}}. Each record
gets one try (retries=0) within TIMEOUT_MS, so a fault shows up as failures, not as a stall.
"""
import json
import sys
from collections import Counter

from kafka import KafkaProducer


def main() -> int:
    bootstrap, topic, client_id = sys.argv[1], sys.argv[2], sys.argv[3]
    count, timeout_ms = int(sys.argv[4]), int(sys.argv[5])
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks=1,
        retries=0,
        linger_ms=0,
        request_timeout_ms=timeout_ms,
        max_block_ms=timeout_ms,
        reconnect_backoff_ms=50,
        reconnect_backoff_max_ms=500,
    )
    errors = Counter()
    acked = 0
    for i in range(count):
        try:
            producer.send(topic, f"{client_id}-{i}".encode()).get(timeout=timeout_ms / 1000 + 1)
            acked += 1
        except Exception as error:  # every failure is counted by its kind, none stops the run
            errors[type(error).__name__] += 1
    producer.close(timeout=1)
    print(json.dumps({"sent": count, "acked": acked, "errors": dict(errors)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
