"""A small dyndns2 `/nic/update` server for the benchmarks: stdlib only, one file, runnable
anywhere (`python3 dyndns2_server.py --host 203.0.113.1 --log requests.jsonl` inside a network
namespace, or on 127.0.0.1).

It answers like a real service — Basic auth required, `good IP` / `nochg IP` per hostname in
request order, `numhost` past `--max-hosts` names (20 is the protocol's limit; 0 lifts it) —
and appends one JSON line per request to `--log`, written and flushed before the answer is
sent, with the arrival time on the wall clock (`t`) and on CLOCK_MONOTONIC (`mono`, which the
benchmark shares with it across network namespaces). Hostnames are accepted on first sight
(the benchmark's configurations invent them), so `good` means "the address changed" and
`nochg` "it was already so".

It also answers MyDNS.JP's IP notification, `GET /login.html` (Basic auth with the MasterID as
user name, no parameters, the address taken from the connection; `login_status = 1.` and "Login
and IP address notify OK." in a 200 page on success, `login_status = 0.` on a bad login — as
tests/fakes/mydns.py documents from MyDNS.JP's usage page and captured answers), so that the
benchmark's seed configuration (a mydns provider) has a server to talk to. Its log line names the
MasterID in `hosts` and the connection's address in `myip`.

It serves at most `--max-seconds` and then exits by itself.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class State:
    def __init__(self, user: str, password: str, max_hosts: int, log_path: str) -> None:
        self.credentials = (user, password)
        self.max_hosts = max_hosts
        self.records: dict[str, str] = {}
        self.lock = threading.Lock()
        self.log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def write(self, entry: dict[str, object]) -> None:
        with self.lock:
            self.log.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self.log.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections
    # A real server sends the header and the body without waiting: without TCP_NODELAY the body
    # would wait for the ACK of the header, which a keep-alive client delays by up to 40 ms.
    disable_nagle_algorithm = True
    server_version = "bench-dyndns2/1"
    state: State

    def log_message(self, format: str, *args: object) -> None:
        pass  # the JSON log is the record; stderr stays quiet

    def do_GET(self) -> None:
        wall, mono = time.time(), time.monotonic()
        parts = urlsplit(self.path)
        if parts.path == "/login.html":
            self._mydns(wall, mono)
            return
        if parts.path != "/nic/update":
            self._answer(404, "not found\n")
            return
        user = self._user()
        if user is None:
            self._answer(401, "badauth\n", {"WWW-Authenticate": 'Basic realm="bench"'})
            return
        query = parse_qs(parts.query, keep_blank_values=True)
        names = [n for n in query.get("hostname", [""])[0].split(",") if n]
        myip = query.get("myip", [""])[0] or self.client_address[0]
        entry: dict[str, object] = {
            "t": wall,
            "mono": mono,
            "n": len(names),
            "hosts": names,
            "myip": myip,
            "agent": self.headers.get("User-Agent", ""),
        }
        if not names:
            lines = ["notfqdn"]
        elif self.state.max_hosts and len(names) > self.state.max_hosts:
            lines = ["numhost"]
        else:
            with self.state.lock:
                lines = []
                for name in names:
                    key = name.lower()
                    old = self.state.records.get(key)
                    self.state.records[key] = myip
                    lines.append(f"{'nochg' if old == myip else 'good'} {myip}")
        entry["answer"] = lines[0].split()[0] if len(set(lines)) == 1 else "mixed"
        self.state.write(entry)
        self._answer(200, "".join(line + "\n" for line in lines))

    def _mydns(self, wall: float, mono: float) -> None:
        """MyDNS.JP's notify: the answer's wording follows tests/fakes/mydns.py (see there)."""
        # Any MasterID with the benchmark's password logs in: each configuration has its own.
        user = self._user(any_user=True)
        if user is None and "Authorization" not in self.headers:
            self._answer(
                401, "401\n", {"WWW-Authenticate": 'Basic realm="Enter MasterID and Password."'}
            )
            return
        ok = user is not None
        self.state.write(
            {
                "t": wall,
                "mono": mono,
                "n": 1,
                "hosts": [user or ""],
                "myip": self.client_address[0],
                "agent": self.headers.get("User-Agent", ""),
                "answer": "notified" if ok else "badauth",
            }
        )
        page = ("Login and IP address notify OK.<BR>\n" if ok else "") + (
            f"login_status = {int(ok)}.<BR>\n"
        )
        self._answer(200, f"<html><body>\n{page}</body></html>\n")

    def do_POST(self) -> None:
        self._answer(405, "badagent\n")

    def _user(self, any_user: bool = False) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        if any_user and user and password == self.state.credentials[1]:
            return user
        return user if (user, password) == self.state.credentials else None

    def _answer(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._headers_buffer.append(b"\r\n" + data)  # type: ignore[attr-defined]  # one write
        self.flush_headers()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--log", required=True, help="JSON lines, one per request")
    p.add_argument("--ready", help="file to write the port to once listening")
    p.add_argument("--user", default="bench")
    p.add_argument("--password", default="bench-secret")
    p.add_argument("--max-hosts", type=int, default=20, help="0: no limit")
    p.add_argument("--max-seconds", type=float, default=3600.0)
    args = p.parse_args()

    Handler.state = State(args.user, args.password, args.max_hosts, args.log)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    if args.ready:
        tmp = args.ready + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(server.server_address[1]))
        os.replace(tmp, args.ready)
    stopper = threading.Timer(args.max_seconds, server.shutdown)
    stopper.daemon = True
    stopper.start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.5)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
