"""Watch a namespace until the operator's steady state; print when it was reached.

Usage: steady_state.py API_URL NAMESPACE INJECTIONS|gone DEADLINE_SECONDS
API_URL is a `kubectl proxy` (plain HTTP, the proxy adds the credentials).
Prints "ready" once it has listed the namespace's KafkaFaults and KafkaFaultInjections and
watches both from there; then, once INJECTIONS injections exist and every fault's status is
rolled up for its generation (status.observedGeneration == metadata.generation) — or, with
"gone", once no fault and no injection is left — prints "steady UNIX_SECONDS FAULTS INJECTIONS"
with the time of the event that completed it, and exits 0. Exits 1 with what it saw after
DEADLINE_SECONDS (from its start) without it, or when a watch fails for good.

Why: operator-bench.sh used to poll with a kubectl and a python3 process every half second,
about 7 CPU seconds over a run, taken from the very machine whose API server the operator
waits on; the peer's side had no poller. One list and one watch per resource cost the API
server two long requests, and this process well under a second of CPU, on either side.
"""
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request

GROUP = "/apis/kafkashock.io/v1alpha1/namespaces/{ns}/{plural}"


def get(url):
    """One list; an API server that is busy (429) or failing (5xx) is asked again."""
    for _ in range(30):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code != 429 and error.code < 500:
                raise
            time.sleep(1)
    raise RuntimeError(f"{url}: still refused after 30 tries")


def follow(api, ns, plural, events):
    """Lists `plural`, then feeds every change to `events` as (plural, type, object); relists
    when the watch is closed or its resourceVersion is too old. ("SYNCED", ...) marks a list;
    ("FAILED", error) ends the run, so a thread that dies cannot leave the watcher waiting."""
    try:
        watch(api + GROUP.format(ns=ns, plural=plural), plural, events)
    except Exception as error:  # noqa: BLE001 - any failure of the thread ends the run
        events.put((plural, "FAILED", repr(error)))


def watch(path, plural, events):
    while True:
        listed = get(path)
        events.put((plural, "SYNCED", listed["items"]))
        version = listed["metadata"]["resourceVersion"]
        while version:
            url = f"{path}?watch=1&allowWatchBookmarks=true&resourceVersion={version}"
            try:
                with urllib.request.urlopen(url, timeout=600) as stream:
                    for line in stream:
                        event = json.loads(line)
                        if event["type"] == "ERROR":  # 410 Gone: the version is too old
                            version = None
                            break
                        version = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            events.put((plural, event["type"], event["object"]))
            except urllib.error.HTTPError:
                version = None  # refused (busy, or the version is gone): list again
            except OSError:
                continue  # closed by the API server: watch again from the last version


def main() -> int:
    api, ns, until, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    expected = 0 if until == "gone" else int(until)
    events = queue.Queue()
    for plural in ("kafkafaults", "kafkafaultinjections"):
        threading.Thread(target=follow, args=(api, ns, plural, events), daemon=True).start()
    faults, injections, synced = {}, set(), set()
    started, began = None, time.time()
    while True:
        if time.time() - began > deadline:
            rolled = sum(faults.values())
            print(f"steady_state: not {until} after {deadline:.0f} s: {rolled} of {len(faults)} faults rolled up, "
                  f"{len(injections)} injections", file=sys.stderr)
            return 1
        try:
            plural, kind, body = events.get(timeout=1)
        except queue.Empty:
            continue
        if kind == "FAILED":
            print(f"steady_state: watching {plural} failed: {body}", file=sys.stderr)
            return 1
        if kind == "SYNCED":
            synced.add(plural)
            if plural == "kafkafaults":
                faults = {i["metadata"]["name"]: rolled_up(i) for i in body}
            else:
                injections = {i["metadata"]["name"] for i in body}
            if started is None and len(synced) == 2:
                started = time.time()
                print("ready", flush=True)
        else:
            name = body["metadata"]["name"]
            if plural == "kafkafaults":
                if kind == "DELETED":
                    faults.pop(name, None)
                else:
                    faults[name] = rolled_up(body)
            elif kind == "DELETED":
                injections.discard(name)
            else:
                injections.add(name)
        if started and reached(until, faults, injections, expected):
            print(f"steady {time.time():.3f} {len(faults)} {len(injections)}", flush=True)
            return 0


def reached(until, faults, injections, expected) -> bool:
    if until == "gone":
        return not faults and not injections
    return len(injections) == expected and bool(faults) and all(faults.values())


def rolled_up(fault) -> bool:
    status = fault.get("status") or {}
    return status.get("observedGeneration") == fault["metadata"].get("generation")


if __name__ == "__main__":
    sys.exit(main())
