"""Produce N messages to a topic and read them back with kafka-python, a client no one here wrote.

Usage: kafka_python_roundtrip.py BOOTSTRAP TOPIC COUNT
Prints one JSON object: {"produced": N, "consumed": [values...]}; exits 1 if they differ.
"""
import json
import sys

from kafka import KafkaConsumer, KafkaProducer


def main() -> int:
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sent = [f"py-{i}" for i in range(count)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="kafka-python-smoke", acks="all")
    for value in sent:
        producer.send(topic, value.encode()).get(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        client_id="kafka-python-smoke",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15000,
    )
    received = []
    for message in consumer:
        received.append(message.value.decode())
        if len(received) == count:
            break
    consumer.close()
    print(json.dumps({"produced": count, "consumed": received}))
    return 0 if received == sent else 1


if __name__ == "__main__":
    sys.exit(main())
