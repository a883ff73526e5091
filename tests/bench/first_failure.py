"""Produce one record at a time until the broker's connection is reset; print when that happened.

Usage: first_failure.py BOOTSTRAP TOPIC CLIENT_ID MAX_SECONDS
Prints {"first_failure_unix": seconds or null, "error": name or null, "acked_before": n}.
Used by inject-bench.sh to time how long a Reject fault takes from `inject` start to the first
request it resets, as the client saw it.

Only the error a reset gives kafka-python counts: the request in flight fails with
KafkaConnectionError (the socket was reset under it; retries=0, so it is not retried). Any other
failure (a timeout, a broker error) is not what a Reject does: it is printed and the run exits 1,
so the bench fails rather than time the wrong thing. Records acked before the reset are the
positive control: the fault was not there from the start.
"""
import json
import sys
import time

from kafka import KafkaProducer
from kafka.errors import KafkaConnectionError


def main() -> int:
    bootstrap, topic, client_id, max_seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks=1, retries=0,
                             linger_ms=0, request_timeout_ms=2000, max_block_ms=2000)
    deadline = time.time() + max_seconds
    acked, failed_at, error, unexpected = 0, None, None, None
    while time.time() < deadline:
        try:
            producer.send(topic, b"x").get(timeout=3)
            acked += 1
        except KafkaConnectionError as reset:
            failed_at, error = time.time(), type(reset).__name__
            break
        except Exception as other:  # noqa: BLE001 - reported by name, and the run fails
            unexpected = f"{type(other).__name__}: {other}"
            break
    producer.close(timeout=1)
    print(json.dumps({"first_failure_unix": failed_at, "error": error, "acked_before": acked,
                      "unexpected": unexpected}))
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
