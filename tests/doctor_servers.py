"""Real servers on loopback for the doctor's tests: BIND's named with given zones, and a TCP
listener that greets like an SMTP server (or does not).

Both bind to 127.0.0.1 on a free high port, wait (bounded) until they answer, and stop in
`__exit__` whatever happened.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import dns.exception
import dns.message
import dns.query

NAMED = shutil.which("named") or ("/usr/sbin/named" if Path("/usr/sbin/named").exists() else None)
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (as free as it can be known)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port on 127.0.0.1")


def closed_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (connections are refused)."""
    return free_port()


class NamedServer:
    """named on 127.0.0.1:`port`, authoritative for `zones` (origin → zone-file text), with
    recursion off, so it never asks anything outside."""

    def __init__(self, workdir: Path, zones: dict[str, str]) -> None:
        if NAMED is None:
            raise RuntimeError("named not found (Debian package bind9)")
        self.workdir = workdir
        self.zones = zones
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "named.log"

    def _write_config(self) -> Path:
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        statements = []
        for origin, text in self.zones.items():
            name = origin.rstrip(".")
            (d / f"{name}.zone").write_text(text, encoding="utf-8")
            statements.append(f'zone "{name}" {{ type primary; file "{d}/{name}.zone"; }};')
        conf = d / "named.conf"
        conf.write_text(
            "options {\n"
            f'  directory "{d}";\n'
            f'  pid-file "{d}/named.pid";\n'
            f'  session-keyfile "{d}/session.key";\n'
            f'  managed-keys-directory "{d}";\n'
            f"  listen-on port {self.port} {{ 127.0.0.1; }};\n"
            "  listen-on-v6 { none; };\n"
            "  recursion no;\n"
            "  dnssec-validation no;\n"
            "  notify no;\n"
            "  allow-transfer { none; };\n"
            "};\n"
            "controls { };\n" + "\n".join(statements) + "\n",
            encoding="utf-8",
        )
        return conf

    def __enter__(self) -> Self:
        try:
            for _ in range(3):  # the port may be taken between choosing and binding
                self.port = free_port()
                conf = self._write_config()
                with self.log.open("wb") as log:
                    self.process = subprocess.Popen(
                        [str(NAMED), "-g", "-4", "-c", str(conf)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                if self._wait_ready():
                    return self
                self._stop()
            raise RuntimeError(f"named did not start; its log:\n{self._log_tail()}")
        except BaseException:
            self._stop()
            raise

    def _wait_ready(self) -> bool:
        first = next(iter(self.zones)).rstrip(".") + "."
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            query = dns.message.make_query(first, "SOA")
            with contextlib.suppress(dns.exception.DNSException, OSError):
                reply = dns.query.udp(query, "127.0.0.1", timeout=0.2, port=self.port)
                if reply.answer:
                    return True
            time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class Greeter:
    """A TCP listener on 127.0.0.1 that sends `greeting` (bytes; None: nothing) to each client
    and reads until it hangs up or `hold` seconds pass; `__exit__` waits for that."""

    def __init__(self, greeting: bytes | None, hold: float = 2.0) -> None:
        self.greeting = greeting
        self.hold = hold
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.received: list[bytes] = []
        self.port = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.sock.listen(4)
        self.sock.settimeout(0.1)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.1)
                if self.greeting is not None:
                    conn.sendall(self.greeting)
                # read until the client hangs up (or `hold` passes), even when told to stop:
                # the test asserts on what the client sent last (its QUIT)
                deadline = time.monotonic() + self.hold
                while time.monotonic() < deadline:
                    try:
                        data = conn.recv(512)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    self.received.append(data)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.sock.close()
