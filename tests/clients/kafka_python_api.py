"""Make kafka-python send one Kafka API and report the error that API got, as kafka-python saw it.

Usage: kafka_python_api.py BOOTSTRAP API [--topic T] [--partition P] [--group G]
           [--transactional-id ID] [--new-topic T] [--timeout-ms MS] [--expect ERROR [--grace-ms MS]]

The second real client next to the Java toolkit (tests/clients/java): the same operations, the
same report, as one JSON object on stdout:
  {"api", "error", "surfaced", "exception", "api_requests", "api_errors", "requests", "responses"}
`error` is the Kafka error name (as Kafka's Java client spells it) of what the call raised
(`surfaced: "exception"`), else NONE. `api_errors` counts the errors the API's responses
carried, read from kafka-python's own DEBUG log of each decoded response. With `--expect ERROR`
the operation ends once a response of the API carried ERROR and the call had `--grace-ms` to
raise it; if it did not, `error` is ERROR with `surfaced: "response"`. kafka-python does not
know Kafka's transaction version 2, so unlike the Java producer it still sends
AddPartitionsToTxn and AddOffsetsToTxn.
"""
import argparse
import json
import logging
import os
import re
import sys
import threading
import time
from collections import Counter

import kafka.errors as Errors
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

# kafka-python's names where Kafka's Java client (org.apache.kafka.common.protocol.Errors) has
# renamed an error since; every other code has the same name in both.
RENAMED = {-1: "UNKNOWN_SERVER_ERROR", 6: "NOT_LEADER_OR_FOLLOWER", 10: "MESSAGE_TOO_LARGE",
           17: "INVALID_TOPIC_EXCEPTION", 39: "INVALID_REPLICA_ASSIGNMENT"}
ERROR_CODE = re.compile(r"\b\w*error_code=(-?\d+)")
STARTED = time.monotonic()


def error_name(code):
    if code in RENAMED:
        return RENAMED[code]
    known = Errors.kafka_errors.get(code)
    return known.message if known else "UNKNOWN(%d)" % code


def raised_name(error):
    """The Kafka error name of an exception kafka-python raised (also of the broker error a
    CommitFailedError wraps), else its class name."""
    for candidate in (error, *error.args):
        if isinstance(candidate, Errors.BrokerResponseError) and candidate.errno:
            return error_name(candidate.errno)
    return type(error).__name__


def api_of(message):
    """Kafka's API name from a kafka-python request or response class ("ProduceResponse")."""
    name = re.sub(r"_v\d+$", "", type(message).__name__)
    return re.sub(r"(Request|Response)$", "", name)


class Wire(logging.Handler):
    """kafka-python's DEBUG log of each request sent and response decoded, counted per API."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.guard = threading.Lock()
        self.sent, self.received = Counter(), Counter()
        self.errors = {}
        self.first_error = {}

    def emit(self, record):
        if not isinstance(record.args, tuple) or not record.args:
            return
        message = record.args[-1]
        if " Request %d" in record.msg:
            with self.guard:
                self.sent[api_of(message)] += 1
        elif " Response %d" in record.msg:
            api = api_of(message)
            names = {error_name(int(code)) for code in ERROR_CODE.findall(repr(message)) if int(code) != 0}
            with self.guard:
                self.received[api] += 1
                for name in names:
                    self.errors.setdefault(api, Counter())[name] += 1
                    self.first_error.setdefault((api, name), time.monotonic())


WIRE = Wire()


def install_wire():
    logger = logging.getLogger("kafka.net.connection")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(WIRE)
    logger.propagate = False


class Operations:
    """One method per API: the client calls that send it."""

    def __init__(self, args):
        self.args = args
        self.tp = TopicPartition(args.topic, args.partition)
        self.common = dict(bootstrap_servers=args.bootstrap, client_id=args.client_id,
                           request_timeout_ms=max(1000, args.timeout_ms // 2))

    def producer(self, **config):
        return KafkaProducer(**dict(self.common, max_block_ms=self.args.timeout_ms, **config))

    def consumer(self, **config):
        defaults = dict(self.common, enable_auto_commit=False, auto_offset_reset="earliest")
        return KafkaConsumer(**dict(defaults, **config))

    def admin(self):
        return KafkaAdminClient(**self.common)

    def Produce(self):
        producer = self.producer(acks="all", retries=0, enable_idempotence=False)
        producer.send(self.tp.topic, b"Produce", partition=self.tp.partition).get(self.args.timeout_ms / 1000)
        producer.close(1)

    def Metadata(self):
        producer = self.producer()
        producer.partitions_for(self.tp.topic)
        producer.close(1)

    def Fetch(self):
        consumer = self.consumer(auto_offset_reset="none", fetch_max_wait_ms=100)
        consumer.assign([self.tp])
        consumer.seek(self.tp, 0)
        while WIRE.received["Fetch"] == 0:
            consumer.poll(100)
        consumer.poll(100)
        consumer.poll(100)
        consumer.close()

    def ListOffsets(self):
        consumer = self.consumer()
        consumer.end_offsets([self.tp], timeout_ms=self.args.timeout_ms)
        consumer.close()

    def group_consumer(self):
        return self.consumer(group_id=self.args.group, heartbeat_interval_ms=300)

    def OffsetFetch(self):
        consumer = self.group_consumer()
        consumer.committed(self.tp, timeout_ms=self.args.timeout_ms)
        consumer.close()

    FindCoordinator = OffsetFetch

    def OffsetCommit(self):
        consumer = self.group_consumer()
        consumer.assign([self.tp])
        consumer.commit({self.tp: OffsetAndMetadata(0, "", -1)}, timeout_ms=self.args.timeout_ms)
        consumer.close()

    def join(self, heartbeats=0, leave=False):
        consumer = self.group_consumer()
        consumer.subscribe([self.tp.topic])
        # The subscribed topic's partitions before the first join: a leader that joins
        # before a metadata update has seen them rebalances again at the next update, and
        # kafka-python 3.0 can lose that second assignment for good (no assignment, no
        # heartbeat) when a short poll times out while its SyncGroup is in flight.
        consumer.partitions_for_topic(self.tp.topic)
        while not consumer.assignment() or WIRE.received["Heartbeat"] < heartbeats:
            consumer.poll(100)
        if leave:
            consumer.close(autocommit=False)

    def JoinGroup(self):
        self.join()

    SyncGroup = JoinGroup

    def Heartbeat(self):
        self.join(heartbeats=2)

    def LeaveGroup(self):
        self.join(leave=True)

    def DescribeGroups(self):
        admin = self.admin()
        admin.alter_group_offsets(self.args.group, {self.tp: OffsetAndMetadata(0, "", -1)})
        admin.describe_groups([self.args.group])
        admin.close()

    def CreateTopics(self):
        admin = self.admin()
        admin.create_topics({self.args.new_topic: {"num_partitions": 1, "replication_factor": 1}})
        admin.close()

    def DeleteTopics(self):
        admin = self.admin()
        admin.create_topics({self.args.new_topic: {"num_partitions": 1, "replication_factor": 1}})
        admin.delete_topics([self.args.new_topic])
        admin.close()

    def InitProducerId(self):
        producer = self.producer(transactional_id=self.args.transactional_id)
        producer.init_transactions()
        producer.close(1)

    def transaction(self):
        """A record, the group's offsets, a commit: AddPartitionsToTxn, AddOffsetsToTxn,
        TxnOffsetCommit, EndTxn (transaction version 1, as kafka-python speaks it)."""
        producer = self.producer(transactional_id=self.args.transactional_id)
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(self.tp.topic, b"txn", partition=self.tp.partition).get(self.args.timeout_ms / 1000)
        producer.send_offsets_to_transaction({self.tp: OffsetAndMetadata(0, "", -1)}, self.args.group)
        producer.commit_transaction()
        producer.close(1)

    AddPartitionsToTxn = AddOffsetsToTxn = TxnOffsetCommit = EndTxn = transaction


APIS = [name for name in vars(Operations) if name[0].isupper()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap")
    parser.add_argument("api", choices=sorted(APIS))
    parser.add_argument("--topic", default="kshock-api")
    parser.add_argument("--partition", type=int, default=0)
    parser.add_argument("--group")
    parser.add_argument("--transactional-id")
    parser.add_argument("--new-topic")
    parser.add_argument("--client-id")
    parser.add_argument("--timeout-ms", type=int, default=15000)
    parser.add_argument("--expect")
    parser.add_argument("--grace-ms", type=int, default=2000)
    args = parser.parse_args()
    # Fresh by default: a member that never left (its LeaveGroup failed, or the process was
    # cut short) keeps its group rebalancing until its session times out.
    args.group = args.group or "kshock-py-%s-%d" % (args.api, os.getpid())
    args.transactional_id = args.transactional_id or "kshock-py-%s-%d" % (args.api, os.getpid())
    args.new_topic = args.new_topic or "kshock-py-%s-%d" % (args.api.lower(), time.time() * 1000)
    args.client_id = args.client_id or "kshock-py-" + args.api
    install_wire()

    raised = []

    def body():
        try:
            getattr(Operations(args), args.api)()
        except Exception as error:  # reported by its Kafka name, whatever it is
            raised.append(error)

    worker = threading.Thread(target=body, daemon=True)
    worker.start()
    deadline = time.monotonic() + args.timeout_ms / 1000 + 5
    timed_out = False
    while worker.is_alive():
        with WIRE.guard:
            first = WIRE.first_error.get((args.api, args.expect))
        if first is not None and time.monotonic() - first >= args.grace_ms / 1000:
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        worker.join(0.05)
    print(json.dumps(report(args, raised[0] if raised else None, timed_out)))
    sys.stdout.flush()
    # A client still retrying in its own threads is not waited for.
    os._exit(0)


def report(args, raised, timed_out):
    with WIRE.guard:
        api_errors = dict(WIRE.errors.get(args.api, {}))
        result = {"api": args.api, "client": "kafka-python", "expect": args.expect,
                  "api_requests": WIRE.sent[args.api], "api_errors": api_errors,
                  "requests": dict(WIRE.sent), "responses": dict(WIRE.received),
                  "errors": {api: dict(counts) for api, counts in WIRE.errors.items()}}
    timeout = isinstance(raised, (Errors.KafkaTimeoutError, Errors.RequestTimedOutError))
    if raised is not None and not (timeout and args.expect in api_errors):
        result.update(error=raised_name(raised), surfaced="exception",
                      exception="%s: %s" % (type(raised).__name__, raised))
    elif args.expect in api_errors:
        result.update(error=args.expect, surfaced="response")
    elif timed_out:
        result.update(error="OP_TIMEOUT")
    elif result["api_requests"] == 0:
        result.update(error="NOT_SENT")
    else:
        result.update(error="NONE")
    result["ok"] = result["error"] == "NONE"
    result["elapsed_ms"] = int((time.monotonic() - STARTED) * 1000)
    return result


if __name__ == "__main__":
    main()
