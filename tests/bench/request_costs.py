"""What one request of each kind the operator makes costs the API server, alone.

Usage: request_costs.py ADMIN_API OPERATOR_API NAMESPACE COUNT APISERVER_PID INJECTIONS_JSON
ADMIN_API and OPERATOR_API are `kubectl proxy`s (plain HTTP) as the lab's admin and as the
operator's ServiceAccount (the chart's admission policy lets only that account write
injections). In NAMESPACE, one kind at a time, one request at a time, COUNT requests of each
kind the operator makes to reach steady state, and the API server's CPU for them
(/proc/APISERVER_PID/stat):
  injection   server-side apply of a KafkaFaultInjection (the first COUNT of INJECTIONS_JSON)
  finalizer   JSON patch adding a finalizer to a KafkaFault
  status      merge patch of a KafkaFault's status
  event       create of an Event about a KafkaFault
Prints "KIND MILLISECONDS_PER_REQUEST" per kind; deletes what it made.

Why: the operator's steady state is mostly the API server's CPU for the requests it needs;
these costs, times the requests, say how dear they are on this machine in this run. Measured
alone they include the API server's background work, so they are no floor.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

GROUP = "/apis/kafkashock.io/v1alpha1/namespaces/{ns}/"


def request(api, method, path, body=None, content="application/json"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method, headers={"Content-Type": content})
    with urllib.request.urlopen(req, timeout=60) as response:
        return response.read()


def cpu_seconds(pid) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    admin, operator, ns, count, pid, injections_file = sys.argv[1:7]
    count, base = int(count), GROUP.format(ns=ns)
    injections = json.load(open(injections_file))["items"][:count]
    if len(injections) < count:
        print(f"request_costs: {injections_file} has {len(injections)} injections, not {count}", file=sys.stderr)
        return 1
    faults = [f"cost-{i}" for i in range(count)]

    def timed(kind, each):
        before = cpu_seconds(pid)
        for i in range(count):
            each(i)
        print(f"{kind} {1000 * (cpu_seconds(pid) - before) / count:.2f}", flush=True)

    for name in faults:
        request(admin, "POST", base + "kafkafaults", {
            "apiVersion": "kafkashock.io/v1alpha1", "kind": "KafkaFault", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "none"}}, "match": {"apiKeys": ["Produce"]},
                     "action": {"type": "Reject"}}})
    try:
        timed("injection", lambda i: request(
            operator, "PATCH",
            f"{base}kafkafaultinjections/{injections[i]['metadata']['name']}?fieldManager=bench&force=true",
            dict(injections[i], metadata={k: v for k, v in injections[i]["metadata"].items() if k != "namespace"}),
            "application/apply-patch+yaml"))
        timed("finalizer", lambda i: request(
            admin, "PATCH", f"{base}kafkafaults/{faults[i]}",
            [{"op": "add", "path": "/metadata/finalizers", "value": ["kafkashock.io/bench"]}],
            "application/json-patch+json"))
        timed("status", lambda i: request(
            admin, "PATCH", f"{base}kafkafaults/{faults[i]}/status",
            {"status": {"phase": "Pending", "observedGeneration": 1}}, "application/merge-patch+json"))
        timed("event", lambda i: request(admin, "POST", f"/api/v1/namespaces/{ns}/events", {
            "metadata": {"name": f"{faults[i]}.{time.time_ns():x}"},
            "involvedObject": {"apiVersion": "kafkashock.io/v1alpha1", "kind": "KafkaFault",
                               "name": faults[i], "namespace": ns},
            "reason": "Selected", "type": "Normal", "message": "Selected 5 of 10 pods: bench-pod-0, bench-pod-20"}))
    finally:
        for injection in injections:
            quietly(operator, "DELETE", f"{base}kafkafaultinjections/{injection['metadata']['name']}")
        for name in faults:
            quietly(admin, "PATCH", f"{base}kafkafaults/{name}", {"metadata": {"finalizers": None}},
                    "application/merge-patch+json")
            quietly(admin, "DELETE", f"{base}kafkafaults/{name}")
    return 0


def quietly(*args):
    """Cleanup: what was never made is not there to delete."""
    try:
        request(*args)
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise


if __name__ == "__main__":
    sys.exit(main())
