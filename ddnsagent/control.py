"""The local control channel: a unix socket through which hook scripts and `ddnsagent reconnect`
ask a running daemon to act, and wait for the result.

One JSON line in, one JSON line out. Who may connect: the socket is created with mode 0600 in a
directory that only its owner (and root) may write, and every client's uid is checked with
SO_PEERCRED — root and the daemon's own uid only — so a looser mode set later by hand does not
open the daemon to other users. What a client may ask is checked as strictly as what detection
finds (`parse_request`): known commands and fields only, typed values, addresses through the
configured `accept` policy and the family they are given for.

The listener is bounded: a request line of at most `MAX_REQUEST` bytes, read within
`READ_TIMEOUT` seconds, at most `MAX_CLIENTS` connections at once (the next one is closed at
once). Refusals are one log line each, and at most one per kind and minute; the rest are counted
and summed up in one line, so a flood of clients cannot flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddnsagent.address import IPAddress, refusal
from ddnsagent.ctlclient import BadAnswer
from ddnsagent.ctlclient import default_socket_path as default_socket_path  # the daemon's
from ddnsagent.errors import DdnsagentError

log = logging.getLogger(__name__)

MAX_REQUEST = 4 * 1024  # bytes in one request line, newline included
READ_TIMEOUT = 5.0  # seconds a client has to send its request line
WRITE_TIMEOUT = 5.0  # seconds a client has to take its answer
MAX_CLIENTS = 16  # connections served at once; more are closed at once
WARN_EVERY = 60.0  # seconds: one warning per kind, then one summary line per period
MAX_REASON = 64  # characters of a sync's `reason`

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class BadRequest(DdnsagentError):
    """A control request that is refused: names the field, what is wrong and what would do."""


# -- what a client may ask ------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncRequest:
    reason: str = "hook"
    force: bool = False
    addresses: dict[int, IPAddress] | None = None  # None: detect as usual
    dry_run: bool = False  # `notify-now --dry-run` through the daemon: show, send and save nothing
    # notify-now: the configuration file as the client sees it (ctlclient.config_stamp); the
    # daemon answers `stale_config` instead of syncing when it loaded another version
    config_stamp: str | None = None


@dataclass(frozen=True)
class ReconnectRequest:
    ignore_cooldown: bool = False


Request = SyncRequest | ReconnectRequest

FIELDS = {
    "sync": {"cmd", "reason", "force", "dry_run", "addresses", "config_stamp"},
    "reconnect": {"cmd", "ignore_cooldown"},
}


def _shown(value: object) -> str:
    """A client's value in a message: repr (control characters escaped), cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _flag(request: dict[str, Any], key: str) -> bool:
    value = request.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{key!r} must be true or false, not {_shown(value)}")
    return value


def parse_request(request: dict[str, Any], accept: str, families: list[int]) -> Request:
    """The typed request, or BadRequest saying why not.

    `addresses` ({"4": "…", "6": "…"}) pass the same checks as a detected address: the family key
    is "4" or "6", the value an address of that family, and `accept` (the [detect] policy) does
    not refuse it. A family the configuration does not detect is left out, as a hook that reports
    every address of an interface may name one: it is neither stored nor sent.
    """
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or cmd not in FIELDS:
        known = " or ".join(repr(c) for c in FIELDS)
        raise BadRequest(f"unknown command {_shown(cmd)}; known: {known}")
    unknown = sorted(str(k) for k in request if k not in FIELDS[cmd])
    if unknown:
        names = ", ".join(_shown(k) for k in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        allowed = ", ".join(sorted(FIELDS[cmd]))
        raise BadRequest(f"unknown field(s) {names} for {cmd!r}; allowed: {allowed}")
    if cmd == "reconnect":
        return ReconnectRequest(_flag(request, "ignore_cooldown"))
    reason = request.get("reason", "hook")
    if not isinstance(reason, str) or not reason or len(reason) > MAX_REASON:
        raise BadRequest(f"'reason' must be a string of 1 to {MAX_REASON} characters")
    if not reason.isprintable():
        raise BadRequest(f"'reason' {_shown(reason)} has control characters")
    stamp = request.get("config_stamp")
    if stamp is not None and (
        not isinstance(stamp, str) or len(stamp) > 80 or not stamp.isprintable()
    ):
        raise BadRequest("'config_stamp' must be a short printable string")
    return SyncRequest(
        reason,
        _flag(request, "force"),
        _addresses(request, accept, families),
        _flag(request, "dry_run"),
        stamp,
    )


def _addresses(
    request: dict[str, Any], accept: str, families: list[int]
) -> dict[int, IPAddress] | None:
    given = request.get("addresses")
    if given is None:
        return None
    if not isinstance(given, dict):
        raise BadRequest(
            f'\'addresses\' must be an object such as {{"4": "…"}}, not {_shown(given)}'
        )
    found: dict[int, IPAddress] = {}
    for key, text in given.items():
        if key not in ("4", "6"):
            raise BadRequest(f'addresses: family {_shown(key)} is neither "4" nor "6"')
        family = int(key)
        if not isinstance(text, str) or len(text) > 64:
            raise BadRequest(f"addresses[{key!r}] must be an IPv{family} address as a string")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise BadRequest(f"addresses[{key!r}]: {_shown(text)} is not an IP address") from None
        if address.version != family:
            raise BadRequest(f"addresses[{key!r}]: {address} is not an IPv{family} address")
        why = refusal(address, accept)
        if why is not None:
            raise BadRequest(
                f"addresses[{key!r}]: {address} is {why}; refused by [detect] accept = {accept!r}"
            )
        if family in families:
            found[family] = address
    return found or None


# -- the listener -------------------------------------------------------------------------------


_LABELS = {
    "busy": "connections closed: too many at once",
    "uid": "connections refused: not root or the daemon's user",
    "slow": "clients that sent no request in time",
    "refused": "requests refused",
}


class _Warnings:
    """At most one warning per kind and period: the first is logged, the rest counted, and the
    count is logged in one line at the end of the period (which then starts again)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._held: dict[str, int] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        if kind in self._held:
            self._held[kind] += 1
            return
        log.warning(message, *args)
        self._open(kind)

    def _open(self, kind: str) -> None:
        self._held[kind] = 0
        asyncio.get_running_loop().call_later(self.every, self._close, kind)

    def _close(self, kind: str) -> None:
        count = self._held.pop(kind, 0)
        if count:
            log.warning(
                "control socket: %d more %s in the last %d s", count, _LABELS[kind], self.every
            )
            self._open(kind)


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The client's uid as the kernel recorded it at connect() (SO_PEERCRED); None where the
    platform has no such option."""
    option = getattr(socket, "SO_PEERCRED", None)
    sock = writer.get_extra_info("socket")
    if option is None or sock is None:
        return None
    size = struct.calcsize("3i")
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, size))
    return int(uid)


def _check_directory(directory: Path) -> None:
    """The socket's directory: a real directory that only root or we may write. Otherwise
    another user could replace the socket, or squat its name before we bind."""
    st = os.lstat(directory)
    problem = None
    if not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory (a symbolic link?)"
    elif st.st_uid not in (0, os.geteuid()):
        problem = f"belongs to uid {st.st_uid}, not to root or to us"
    elif st.st_mode & 0o022:
        problem = "may be written by other users"
    if problem:
        raise OSError(
            errno.EPERM,
            f"{directory} {problem}; set [agent] control_socket in a directory that only root "
            "and the service user can write, such as /run/ddnsagent",
        )


def _remove_old_socket(path: Path) -> None:
    """A socket left by a killed daemon goes; anything else at that name stays and is reported."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(
            errno.EEXIST,
            f"{path} exists and is not a socket; remove it or choose another control_socket",
        )
    path.unlink()


async def serve(
    path: Path,
    handler: Handler,
    *,
    max_clients: int = MAX_CLIENTS,
    read_timeout: float = READ_TIMEOUT,
    warn_every: float = WARN_EVERY,
) -> asyncio.AbstractServer:
    """Listen at `path` and answer each request line with `handler`'s reply. Raises OSError
    (with a message that says what to change) when the socket cannot be made safely."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_directory(path.parent)
    _remove_old_socket(path)
    allowed = {0, os.geteuid()}
    warnings = _Warnings(warn_every)
    active = 0

    async def answer(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> bool:
        """Whether the reply was taken in time."""
        writer.write(json.dumps(reply).encode() + b"\n")
        try:
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        uid = _peer_uid(writer)
        if uid is not None and uid not in allowed:
            warnings.warn("uid", "control socket: connection from uid %d refused", uid)
            return await answer(writer, {"ok": False, "error": "not allowed"})
        try:
            line = await asyncio.wait_for(reader.readline(), read_timeout)
        except TimeoutError:
            warnings.warn("slow", "control socket: no request within %g s; closed", read_timeout)
            return True
        except ValueError:  # the line is longer than the reader's limit
            problem = f"request longer than {MAX_REQUEST} bytes; refused"
            warnings.warn("refused", "control socket: %s", problem)
            return await answer(writer, {"ok": False, "error": problem})
        if not line:
            return True  # connected and left
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict):
            problem = "bad request: not one JSON object on one line"
            warnings.warn("refused", "control socket: %s", problem)
            return await answer(writer, {"ok": False, "error": problem})
        try:
            reply = await handler(request)
        except BadRequest as exc:
            warnings.warn("refused", "control socket: request refused: %s", exc)
            reply = {"ok": False, "error": f"bad request: {exc}"}
        except DdnsagentError as exc:
            log.error("control request failed: %s", exc)
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.error("control request failed unexpectedly: %s: %s", type(exc).__name__, exc)
            log.debug("control request failed", exc_info=True)
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
        return await answer(writer, reply)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active
        if active >= max_clients:
            warnings.warn(
                "busy", "control socket: %d connections open already; one more closed", active
            )
            writer.transport.abort()
            return
        active += 1
        taken = False
        try:
            taken = await serve_one(reader, writer)
        except ConnectionError:
            pass
        finally:
            active -= 1
            if taken:
                writer.close()
            else:
                writer.transport.abort()  # a client that does not read must not keep the socket
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server


async def request(path: Path, payload: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """The daemon's answer; None when no daemon listens. Raises TimeoutError when it is slow,
    BadAnswer when what answered is not a daemon's reply."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=4 * 1024 * 1024), timeout
        )
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    try:
        writer.write(json.dumps(payload).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except ValueError:
        line = b"-"  # longer than the limit: not an answer of ours
    except ConnectionError:
        line = b""  # closed without an answer (a daemon that is stopping, or too busy)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not line:
        return None
    try:
        answer = json.loads(line)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise BadAnswer(f"the answer on {path} is not a ddnsagent daemon's reply")
    return answer
