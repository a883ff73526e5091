"""Hostile traffic for a proxied broker port: the frames the sniffer and the Inline enforcer
are tested with (a 2 GiB size claim, a negative size, frames of random bytes, raw noise), then
200 parallel connections that each declare a 1 MiB request and send only part of it, held open
for a while so the proxy must keep them all at once.

    python hostile_proxy_flood.py BOOTSTRAP [--connections N] [--seconds S]

Prints {"event": "holding", ...} once the connections are open (a test then checks that other
clients still work), and a last JSON line with what it did when it has closed them.
"""

import argparse
import json
import os
import socket
import struct
import sys
import time


def throw(host, port, payload):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(payload), 1000):
            s.sendall(payload[i:i + 1000])
        s.close()
        return 1
    except OSError:
        return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    host, port = args.bootstrap.split(",")[0].rsplit(":", 1)
    port = int(port)
    thrown = 0
    thrown += throw(host, port, struct.pack(">i", 0x7FFFFFF0) + os.urandom(200000))
    thrown += throw(host, port, struct.pack(">i", 64) + os.urandom(64) * 50)
    thrown += throw(host, port, struct.pack(">i", -5) + os.urandom(50000))
    thrown += throw(host, port, os.urandom(500000))
    # A frame that claims Produce v9 with a header of noise.
    thrown += throw(host, port, struct.pack(">ihhi", 100, 0, 9, 1) + os.urandom(92))
    held = []
    for _ in range(args.connections):
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(struct.pack(">ihhi", 1 << 20, 0, 9, 1) + os.urandom(2000))
            held.append(s)
        except OSError:
            pass
    print(json.dumps({"event": "holding", "connections": len(held)}), flush=True)
    time.sleep(args.seconds)
    for s in held:
        s.close()
    print(json.dumps({"event": "result", "thrown": thrown, "connections": len(held)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
