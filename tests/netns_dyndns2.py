"""A dyndns2 emulator for tests that run inside a network namespace: started with
`ip netns exec NS python -m tests.netns_dyndns2 STATEFILE`, it prints its port, then writes
every received update (host, myip, monotonic-free wall time) to STATEFILE as JSON lines.
It exits when its stdin closes, so it cannot outlive the test."""

from __future__ import annotations

import json
import sys
import threading
import time

from tests.fakes import Dyndns2Server


def main() -> None:
    out = sys.argv[1]
    server = Dyndns2Server({"me": "pw-netns-1"}, {"home.example.net": None})
    server.start()
    print(server.port, flush=True)
    written = 0
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    deadline = time.time() + 600
    while not done.is_set() and time.time() < deadline:
        requests = server.requests
        with open(out, "a", encoding="utf-8") as f:
            for r in requests[written:]:
                f.write(json.dumps({"myip": r.query.get("myip"), "time": time.time()}) + "\n")
        written = len(requests)
        time.sleep(0.01)
    server.stop()


if __name__ == "__main__":
    main()
