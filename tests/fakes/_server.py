"""The loopback HTTP(S) server that every provider emulator is built on.

Provider and detection code must be tested over real HTTP, against something that answers the
way the provider does, failures included, without a packet leaving the machine. This module owns
the parts that are the same for every provider: binding to loopback only, TLS, recording what
the client sent, and the knobs that make a server misbehave. A subclass only implements
`handle()`, the protocol itself, as a pure function of the recorded request and its own state.

Misbehaviour knobs (plain attributes, set them at any time, also while the server runs):

- `delay`: seconds to wait before answering (capped at `MAX_DELAY`; `stop()` cuts it short).
- `status`, `body`: answer this status and/or body instead of the protocol's answer.
- `huge_body`: stream this many bytes (see `HUGE_BODY`) instead of the answer;
  `huge_body_declared=False` omits Content-Length and ends the body by closing the connection.
- `garbage`: `"body"` answers 200 with binary junk; `"protocol"` answers bytes that are not HTTP.
- `hang_up`: close the connection without any answer.
- `pretend_peer`: act as if the TCP peer had this address (tests can only connect from loopback,
  but MyDNS, echo services and dyndns2 without `myip` all learn the address from the peer).

Every knob that replaces the answer (`status`, `body`, `huge_body`, `garbage`, `hang_up`)
short-circuits the protocol: the request is recorded but the provider's state does not change,
as when a broken front end answers before the request reaches the service.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

MAX_DELAY = 30.0
HUGE_BODY = 10 * 1024 * 1024
MAX_HUGE_BODY = 64 * 1024 * 1024
MAX_REQUEST_BODY = 1024 * 1024
CONNECTION_TIMEOUT = 10.0
_CHUNK = 64 * 1024
_HUGE_PATTERN = b"0123456789abcdef" * (_CHUNK // 16)
# Not UTF-8 and not text: NUL, lone continuation bytes, an overlong encoding, every byte value.
GARBAGE_BODY = b"\x00\xff\xfe\x80\xc0\xaf" + bytes(range(256)) * 4
GARBAGE_PROTOCOL = b"\x16\x03\x01\x00\xffNOT HTTP AT ALL\x00\r\n\r\n"


@dataclass(frozen=True)
class RecordedRequest:
    """What one request carried, as the server saw it.

    `query` keeps the first value of each parameter (repeats are reported as violations);
    header names are lower-cased; `client` is the real TCP peer, before `pretend_peer`;
    `time` is `time.monotonic()` when the request line arrived.
    """

    method: str
    path: str
    query: dict[str, str]
    raw_query: str
    headers: dict[str, str]
    client: tuple[str, int]
    user: str | None
    password: str | None
    time: float
    body: bytes = b""
    tls: bool = False
    auth_malformed: bool = False

    @property
    def client_host(self) -> str:
        return self.client[0]

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    """What `handle()` wants sent back."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def text(status: int, body: str, **kwargs: Any) -> Response:
    return Response(status, body.encode("utf-8"), **kwargs)


def not_found() -> Response:
    return text(404, "Not Found\n")


def method_not_allowed(*allowed: str) -> Response:
    return text(405, "Method Not Allowed\n", headers={"Allow": ", ".join(allowed)})


def parse_basic_auth(value: str | None) -> tuple[str, str] | None:
    """`(user, password)` from an `Authorization: Basic` value; None if absent or malformed."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = raw.decode("latin-1")
    user, colon, password = decoded.partition(":")
    if not colon:
        return None
    return user, password


def _require_loopback(host: str) -> None:
    """Refuse to listen anywhere but loopback: these servers exist for tests only."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"fake servers bind to a loopback address literal, not {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"fake servers bind to loopback only, not {host}")


class FakeServer:
    """Base of the emulators: a threaded HTTP(S) server on loopback, in a daemon thread.

    Use as a context manager, or call `start()` and `stop()`. The port is ephemeral; read
    `url` (scheme, host and port, no trailing slash) once started.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        _require_loopback(host)
        self.host = host
        self.ssl_context = ssl_context
        self.delay: float = 0.0
        self.status: int | None = None
        self.body: bytes | str | None = None
        self.huge_body: int = 0
        self.huge_body_declared: bool = True
        self.garbage: Literal["body", "protocol"] | None = None
        self.hang_up: bool = False
        self.pretend_peer: str | None = None
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._violations: list[str] = []
        self._errors: list[str] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the protocol, implemented by subclasses ---------------------------------------------

    def handle(self, request: RecordedRequest) -> Response:
        """The provider's answer to `request`; called only when no knob replaces it."""
        raise NotImplementedError

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._httpd = _HTTPServer((self.host, 0), self, family)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests read -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def violations(self) -> list[str]:
        """Ways the client departed from the provider's documented rules, in arrival order."""
        with self._lock:
            return list(self._violations)

    @property
    def errors(self) -> list[str]:
        """Exceptions raised by `handle()` (each answered 500): bugs in the fake itself."""
        with self._lock:
            return list(self._errors)

    def clear(self) -> None:
        """Forget recorded requests, violations and errors (provider state is kept)."""
        with self._lock:
            self._requests.clear()
            self._violations.clear()
            self._errors.clear()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least `count` requests arrived; False if `timeout` ran out first."""
        deadline = time.monotonic() + min(timeout, MAX_DELAY)
        with self._arrived:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._arrived.wait(remaining)
            return True

    def peer(self, request: RecordedRequest) -> str:
        """The address the provider believes the client has."""
        return self.pretend_peer if self.pretend_peer is not None else request.client_host

    # -- for subclasses and the handler ----------------------------------------------------------

    def violation(self, message: str) -> None:
        with self._lock:
            self._violations.append(message)

    def _record(self, request: RecordedRequest) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def _track(self, connection: socket.socket, present: bool) -> None:
        with self._lock:
            if present:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _pause(self) -> None:
        delay = min(max(self.delay, 0.0), MAX_DELAY)
        if delay:
            self._stopping.wait(delay)

    def _answer(self, request: RecordedRequest) -> tuple[Response, int]:
        """The response and, when a huge body is wanted, how many bytes of it to stream."""
        if self.garbage == "body":
            return Response(self.status or 200, GARBAGE_BODY, "text/plain"), 0
        if self.huge_body > 0:
            return Response(self.status or 200, b"", "text/plain"), min(
                self.huge_body, MAX_HUGE_BODY
            )
        if self.status is not None or self.body is not None:
            body = self.body.encode("utf-8") if isinstance(self.body, str) else self.body
            return Response(self.status or 200, body or b""), 0
        try:
            return self.handle(request), 0
        except Exception as error:
            with self._lock:
                self._errors.append(f"{type(error).__name__}: {error}")
            return Response(500, b"fake server error\n"), 0


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], fake: FakeServer, family: int) -> None:
        self.address_family = family
        self.fake = fake
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn); nothing here needs it.
        TCPServer.server_bind(self)
        self.server_name = self.fake.host
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection: socket.socket = request
        self.fake._track(connection, True)
        try:
            connection.settimeout(CONNECTION_TIMEOUT)
            context = self.fake.ssl_context
            if context is not None:
                try:
                    tls = context.wrap_socket(connection, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                self.fake._track(connection, False)
                connection = tls
                self.fake._track(connection, True)
            _Handler(connection, client_address, self)
        finally:
            self.fake._track(connection, False)
            if connection is not request:
                with contextlib.suppress(OSError):
                    connection.close()


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT
    server_version = "ddnsagent-fake"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log on stderr; tests read `requests` instead."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        fake = self.server.fake
        request = self._recorded(fake)
        if fake.hang_up:
            self.close_connection = True
            return
        fake._pause()
        if fake.garbage == "protocol":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.write(GARBAGE_PROTOCOL)
            return
        response, stream = fake._answer(request)
        self._send(response, stream, head=request.method == "HEAD")

    def _recorded(self, fake: FakeServer) -> RecordedRequest:
        parts = urlsplit(self.path)
        params = parse_qs(parts.query, keep_blank_values=True)
        for name, values in params.items():
            if len(values) > 1:
                fake.violation(f"parameter {name!r} given {len(values)} times")
        authorization = self.headers.get("Authorization")
        credentials = parse_basic_auth(authorization)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query={name: values[0] for name, values in params.items()},
            raw_query=parts.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            client=(str(self.client_address[0]), int(self.client_address[1])),
            user=credentials[0] if credentials else None,
            password=credentials[1] if credentials else None,
            time=time.monotonic(),
            body=self._read_body(),
            tls=isinstance(self.connection, ssl.SSLSocket),
            auth_malformed=authorization is not None and credentials is None,
        )
        fake._record(request)
        return request

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
            return b""
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            return b""
        if size < 0 or size > MAX_REQUEST_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(size)

    def _send(self, response: Response, stream: int, *, head: bool) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if stream and not self.server.fake.huge_body_declared:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(stream or len(response.body)))
            self.end_headers()
            if head:
                return
            if stream:
                self._stream(stream)
            else:
                self.wfile.write(response.body)
        except OSError:  # the client went away mid-answer, as clients capping a body do
            self.close_connection = True

    def _stream(self, size: int) -> None:
        stopping = self.server.fake._stopping
        sent = 0
        while sent < size and not stopping.is_set():
            chunk = _HUGE_PATTERN[: min(_CHUNK, size - sent)]
            self.wfile.write(chunk)
            sent += len(chunk)
