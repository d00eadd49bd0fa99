"""The ISP's side of the incident: MyDNS's notify page and its submission relay, in one process
that runs inside the lab's isp namespace.

MyDNS relays mail on port 587 only for addresses recently notified through `GET /login.html`,
and, like Postfix's anvil rate limit (whose wording it uses), refuses a client that made too many
mail transactions: `450 Error: too much mail from <ip>` at MAIL FROM. This process plays both:

- **notify** — `tests.fakes.mydns.MyDNSServer` (the strict emulator the provider tests use),
  bound to `198.51.100.1:8080` instead of loopback. A successful login marks the connection's
  source address as notified.
- **relay** — an aiosmtpd server on `198.51.100.1:587`. RCPT from an address never notified gets
  `554 5.7.1 <rcpt>: Relay access denied`. Every MAIL FROM a client address makes is counted, as
  anvil counts message delivery requests; once `limit` were accepted, the next get
  `450 Error: too much mail from <ip>`. Counts never expire (tests are shorter than anvil's
  minute) unless reset through the control socket. No AUTH, no TLS: Postfix's smtp client speaks
  plain ESMTP to it.

What happened is written to the work directory as JSON lines, one object a line, flushed at once:
`deliveries.jsonl` (each accepted message: Message-ID, client address, envelope) and
`events.jsonl` (every notification and every refusal, in order). Live state and a few knobs are
reached through `control.sock`, a Unix socket in the work directory — a file, so the test process
can use it from the host's namespace. `RelayISP` is the test side: it starts the process with
`ip netns exec`, waits until it listens and wraps the control socket.

Run as a script: `python -m tests.e2e.relay_isp --workdir DIR [--limit N] [--address A]`, with
accounts (MasterID → password) as a JSON object in `$RELAY_ISP_ACCOUNTS` (kept out of argv).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from tests.e2e.netlab import ISP_ADDRESS, Namespace
from tests.fakes._server import RecordedRequest, Response, _HTTPServer
from tests.fakes.mydns import MyDNSServer

__all__ = [
    "ACCOUNTS_ENV",
    "HTTP_PORT",
    "SMTP_PORT",
    "Delivery",
    "RelayISP",
    "RelayPolicy",
    "main",
    "notify_from",
]

HTTP_PORT = 8080
SMTP_PORT = 587
ACCOUNTS_ENV = "RELAY_ISP_ACCOUNTS"
READY_FILE = "ready.json"
CONTROL_SOCKET = "control.sock"
DELIVERIES_FILE = "deliveries.jsonl"
EVENTS_FILE = "events.jsonl"
STDERR_FILE = "relay-isp.stderr"
START_TIMEOUT = 15.0
CONTROL_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
REPO = Path(__file__).resolve().parents[2]
# Knobs of the MyDNS emulator the control socket may set (see tests/fakes/_server.py).
MYDNS_KNOBS = frozenset({"delay", "status", "body", "hang_up", "notify_fails", "bad_login_status"})


# -- the relay's rules, shared by both sides ------------------------------------------------------


class RelayPolicy:
    """Who may relay, and how much. Pure state: no I/O, one event loop thread uses it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.notified: dict[str, float] = {}  # address → time of its last notification
        self.mail_count: Counter[str] = Counter()

    def notify(self, address: str, when: float) -> None:
        self.notified[address] = when

    def mail_from(self, client: str) -> str | None:
        """The refusal for a MAIL FROM by `client`, or None (and the transaction is counted)."""
        if self.mail_count[client] >= self.limit:
            return f"450 Error: too much mail from {client}"
        self.mail_count[client] += 1
        return None

    def rcpt_to(self, client: str, recipient: str) -> str | None:
        """The refusal for a RCPT TO from `client`, or None."""
        if client not in self.notified:
            return f"554 5.7.1 <{recipient}>: Relay access denied"
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "notified": dict(self.notified),
            "mail_count": dict(self.mail_count),
        }


# -- the process inside the isp namespace ---------------------------------------------------------


class _Journal:
    """Append-only JSON-lines files, each record flushed at once (another process reads them)."""

    def __init__(self, workdir: Path) -> None:
        self._files: dict[str, IO[str]] = {
            name: open(workdir / name, "a", encoding="utf-8")  # noqa: SIM115
            for name in (DELIVERIES_FILE, EVENTS_FILE)
        }
        self._lock = threading.Lock()  # the MyDNS server writes from its own threads

    def write(self, name: str, record: Mapping[str, Any]) -> None:
        line = json.dumps({"time": time.time(), **record}, sort_keys=True) + "\n"
        with self._lock:
            self._files[name].write(line)
            self._files[name].flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()


class _NotifyServer(MyDNSServer):
    """MyDNS's notify page on the ISP's address and its fixed port.

    `MyDNSServer` refuses non-loopback hosts in `__init__` and binds an ephemeral port in
    `start()`; this process lives in a namespace whose only other host is the lab's home, so
    it is built on loopback and then pointed at the ISP address and MyDNS's port.
    """

    def __init__(
        self,
        accounts: Mapping[str, str],
        host: str,
        port: int,
        on_notify: Callable[[str, str], None],
    ) -> None:
        super().__init__(accounts)
        self.host = host
        self._fixed_port = port
        self._on_notify = on_notify
        self._serial = threading.Lock()

    def start(self) -> Self:
        self._httpd = _HTTPServer((self.host, self._fixed_port), self, socket.AF_INET)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mydns-notify",
            daemon=True,
        )
        self._thread.start()
        return self

    def handle(self, request: RecordedRequest) -> Response:
        with self._serial:
            before = len(self.notifications)
            response = super().handle(request)
            after = self.notifications
        if len(after) > before:
            self._on_notify(after[-1].master_id, after[-1].address)
        return response


@dataclass
class _Relay:
    """aiosmtpd handler: the relay's rules applied to each SMTP command."""

    policy: RelayPolicy
    journal: _Journal

    def _event(self, event: str, **fields: Any) -> None:
        self.journal.write(EVENTS_FILE, {"event": event, **fields})

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        client = session.peer[0]
        refusal = self.policy.mail_from(client)
        if refusal is not None:
            self._event("mail_refused", client=client, reply=refusal, mail_from=address)
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        client = session.peer[0]
        refusal = self.policy.rcpt_to(client, address)
        if refusal is not None:
            self._event("rcpt_refused", client=client, reply=refusal, rcpt=address)
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        client = session.peer[0]
        content = envelope.original_content or b""
        headers = BytesHeaderParser().parsebytes(content)
        queue_id = secrets.token_hex(5).upper()
        record = {
            "client": client,
            "message_id": (headers.get("Message-ID") or "").strip(),
            "subject": str(headers.get("Subject") or ""),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "size": len(content),
            "queue_id": queue_id,
        }
        self.journal.write(DELIVERIES_FILE, record)
        self._event("delivered", **record)
        return f"250 2.0.0 Ok: queued as {queue_id}"


class _Service:
    """Everything the process runs: the notify page, the relay, the control socket."""

    def __init__(self, workdir: Path, address: str, limit: int, accounts: Mapping[str, str]):
        self.workdir = workdir
        self.address = address
        self.policy = RelayPolicy(limit)
        self.journal = _Journal(workdir)
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.notify = _NotifyServer(accounts, address, HTTP_PORT, self._notified_from_thread)

    def _notified_from_thread(self, master_id: str, address: str) -> None:
        # Recorded here, in the HTTP thread, so the file has it before the page is answered;
        # the policy itself is only touched in the event loop.
        when = time.time()
        self.journal.write(
            EVENTS_FILE, {"event": "notified", "master_id": master_id, "address": address}
        )
        done = threading.Event()

        def apply() -> None:
            self.policy.notify(address, when)
            done.set()

        self.loop.call_soon_threadsafe(apply)
        done.wait(CONTROL_TIMEOUT)

    async def run(self) -> None:
        # Imported here: the test side of this module must load (and skip) without aiosmtpd.
        from aiosmtpd.smtp import SMTP

        def smtp() -> SMTP:
            return SMTP(
                _Relay(self.policy, self.journal),
                hostname="relay.mydns.example",
                ident="ESMTP relay (ddnsagent test ISP)",
                timeout=60,
                loop=self.loop,
            )

        self.notify.start()
        smtp_server = await self.loop.create_server(smtp, self.address, SMTP_PORT)
        control_path = self.workdir / CONTROL_SOCKET
        with contextlib.suppress(FileNotFoundError):
            control_path.unlink()
        control = await asyncio.start_unix_server(self._control, path=str(control_path))
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        ready = {
            "pid": os.getpid(),
            "smtp": f"{self.address}:{SMTP_PORT}",
            "notify_url": f"http://{self.address}:{HTTP_PORT}/login.html",
        }
        temp = self.workdir / (READY_FILE + ".tmp")
        temp.write_text(json.dumps(ready))
        temp.replace(self.workdir / READY_FILE)
        try:
            await self.stopping.wait()
        finally:
            control.close()
            smtp_server.close()
            self.notify.stop()
            self.journal.close()

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), CONTROL_TIMEOUT)
            try:
                answer = self._command(json.loads(line))
            except (ValueError, KeyError, TypeError) as error:
                answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    def _command(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "state":
            return {
                "ok": True,
                **self.policy.snapshot(),
                "mydns_violations": self.notify.violations,
                "mydns_errors": self.notify.errors,
                "mydns_requests": len(self.notify.requests),
            }
        if op == "set_limit":
            self.policy.limit = int(request["limit"])
        elif op == "reset_counts":
            address = request.get("address")
            if address is None:
                self.policy.mail_count.clear()
            else:
                self.policy.mail_count.pop(address, None)
        elif op == "forget":
            self.policy.notified.pop(request["address"], None)
        elif op == "notify":  # as if `address` had logged in, without a request
            self.policy.notify(request["address"], time.time())
            record = {"event": "notified", "master_id": None, "address": request["address"]}
            self.journal.write(EVENTS_FILE, record)
        elif op == "mydns":
            for name, value in request["knobs"].items():
                if name not in MYDNS_KNOBS:
                    raise KeyError(f"unknown MyDNS knob {name!r}")
                setattr(self.notify, name, value)
        elif op == "quit":
            self.stopping.set()
        else:
            raise KeyError(f"unknown op {op!r}")
        return {"ok": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--address", default=ISP_ADDRESS)
    parser.add_argument("--limit", type=int, default=5, help="MAIL FROMs accepted per address")
    args = parser.parse_args(argv)
    accounts = json.loads(os.environ.get(ACCOUNTS_ENV, "{}"))

    async def serve() -> None:
        await _Service(args.workdir, args.address, args.limit, accounts).run()

    asyncio.run(serve())
    return 0


# -- the test side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One message the relay accepted."""

    message_id: str
    client: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    time: float


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: a line still being written is left for the next read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


class RelayISP:
    """The relay process, started inside `ns`; use as a context manager or `start()`/`stop()`.

    `accounts` maps MyDNS MasterIDs to passwords. `limit` is how many MAIL FROMs one address may
    make before `450 Error: too much mail from`. `workdir` must exist and be short enough for a
    Unix socket path (under ~90 bytes).
    """

    def __init__(
        self,
        ns: Namespace,
        workdir: Path,
        *,
        accounts: Mapping[str, str],
        limit: int = 5,
        address: str = ISP_ADDRESS,
    ) -> None:
        self.ns = ns
        self.workdir = workdir
        self.accounts = dict(accounts)
        self.limit = limit
        self.address = address
        self.process: subprocess.Popen[bytes] | None = None
        if len(str(workdir / CONTROL_SOCKET)) > 100:
            raise ValueError(f"{workdir} is too long a path for a Unix socket inside it")

    @property
    def notify_url(self) -> str:
        return f"http://{self.address}:{HTTP_PORT}/login.html"

    @property
    def deliveries_path(self) -> Path:
        return self.workdir / DELIVERIES_FILE

    @property
    def events_path(self) -> Path:
        return self.workdir / EVENTS_FILE

    def start(self) -> Self:
        if self.process is not None:
            raise RuntimeError("relay already started")
        (self.workdir / READY_FILE).unlink(missing_ok=True)
        env = {
            **os.environ,
            ACCOUNTS_ENV: json.dumps(self.accounts),
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
        }
        argv = [sys.executable, "-m", "tests.e2e.relay_isp", "--workdir", str(self.workdir)]
        argv += ["--address", self.address, "--limit", str(self.limit)]
        with open(self.workdir / STDERR_FILE, "ab") as stderr:
            self.process = self.ns.popen(
                argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.workdir / READY_FILE).exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited with {self.process.returncode}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"relay not ready after {START_TIMEOUT:g}s:\n{self.stderr()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after `STOP_TIMEOUT`). Never raises."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stderr(self) -> str:
        try:
            return (self.workdir / STDERR_FILE).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- control ---------------------------------------------------------------------------------

    def control(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one command to the process; its answer. Raises on a refused command."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(CONTROL_TIMEOUT)
            s.connect(str(self.workdir / CONTROL_SOCKET))
            s.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        answer: dict[str, Any] = json.loads(data)
        if not answer.get("ok"):
            raise RuntimeError(f"relay refused {op}: {answer.get('error')}")
        return answer

    def state(self) -> dict[str, Any]:
        """`limit`, `notified` (address → time), `mail_count` (address → MAIL FROMs accepted),
        and what the MyDNS emulator noticed (`mydns_violations`, `mydns_errors`)."""
        return self.control("state")

    def set_limit(self, limit: int) -> None:
        self.control("set_limit", limit=limit)

    def reset_counts(self, address: str | None = None) -> None:
        self.control("reset_counts", address=address)

    def forget(self, address: str) -> None:
        """Make the relay forget a notification (its RCPTs get `Relay access denied` again)."""
        self.control("forget", address=address)

    def mark_notified(self, address: str) -> None:
        """As if `address` had notified MyDNS, without an HTTP request."""
        self.control("notify", address=address)

    def mydns(self, **knobs: Any) -> None:
        """Set misbehaviour knobs of the MyDNS emulator (`MYDNS_KNOBS`)."""
        self.control("mydns", knobs=knobs)

    # -- records ---------------------------------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        return [
            Delivery(
                message_id=r["message_id"],
                client=r["client"],
                mail_from=r["mail_from"],
                rcpt_tos=tuple(r["rcpt_tos"]),
                subject=r["subject"],
                time=r["time"],
            )
            for r in _read_jsonl(self.deliveries_path)
        ]

    def events(self) -> list[dict[str, Any]]:
        """Every notification, refusal and delivery, in order (see the module docstring)."""
        return _read_jsonl(self.events_path)

    def notified(self) -> list[str]:
        """Addresses notified so far, in order, repeats kept."""
        return [e["address"] for e in self.events() if e["event"] == "notified"]

    def wait_deliveries(self, count: int, timeout: float) -> list[Delivery]:
        """Wait until at least `count` messages were delivered; all of them. Raises on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.deliveries()
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(found)} deliveries after {timeout:g}s, expected {count}: {found}"
                )
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"relay died:\n{self.stderr()}")
            time.sleep(0.1)


# What a MyDNS client does, run from inside a namespace: the password travels in the environment.
_NOTIFY_CODE = """
import base64, os, sys, urllib.request
token = base64.b64encode(f"{sys.argv[2]}:{os.environ['NOTIFY_PASSWORD']}".encode()).decode()
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Basic " + token})
with urllib.request.urlopen(request, timeout=float(sys.argv[3])) as answer:
    sys.stdout.write(answer.read().decode())
"""


def notify_from(
    ns: Namespace, url: str, master_id: str, password: str, timeout: float = 10.0
) -> str:
    """`GET url` with Basic auth from inside `ns`, as a MyDNS client does; the page. Raises if
    the request fails or MyDNS did not say `login_status = 1.`."""
    done = ns.run(
        [sys.executable, "-c", _NOTIFY_CODE, url, master_id, str(timeout)],
        env={**os.environ, "NOTIFY_PASSWORD": password},
        timeout=timeout + 10,
        check=False,
    )
    if done.returncode != 0 or "login_status = 1." not in done.stdout:
        raise AssertionError(f"notify from {ns.name} failed: {done.stderr.strip()}{done.stdout}")
    return done.stdout


if __name__ == "__main__":
    sys.exit(main())
