"""Produce one record at a time until the first one fails; print when that happened.

Usage: first_failure.py BOOTSTRAP TOPIC CLIENT_ID MAX_SECONDS
Prints {"first_failure_unix": seconds or null, "acked_before": n}. Used by inject-bench.sh
to time how long a fault takes from `inject` start to the first request it rejects.
"""
import json
import sys
import time

from kafka import KafkaProducer


def main() -> int:
    bootstrap, topic, client_id, max_seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks=1, retries=0,
                             linger_ms=0, request_timeout_ms=2000, max_block_ms=2000)
    deadline = time.time() + max_seconds
    acked, failed_at = 0, None
    while time.time() < deadline:
        try:
            producer.send(topic, b"x").get(timeout=3)
            acked += 1
        except Exception:  # the first failure of any kind is what is timed
            failed_at = time.time()
            break
    producer.close(timeout=1)
    print(json.dumps({"first_failure_unix": failed_at, "acked_before": acked}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
