"""The client side of the control socket, blocking and lean: one JSON line out, one JSON line
back, within a deadline. It imports neither asyncio nor httpx, so a command that only asks the
running daemon (`notify-now` with a daemon up) starts in a few milliseconds. The daemon's side,
and the rules a request must pass there, are in `control.py`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ddnsagent.errors import DdnsagentError

MAX_ANSWER = 4 * 1024 * 1024  # bytes in one answer line; more is not a daemon's reply


class BadAnswer(DdnsagentError):
    """What answered on the control socket is not a ddnsagent daemon's reply."""


class NoAnswer(DdnsagentError):
    """The daemon took the request but gave no answer within the deadline."""


def default_socket_path() -> Path:
    """$RUNTIME_DIRECTORY (systemd), /run/ddnsagent for root, else the user runtime dir."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / "control.sock"
    if os.geteuid() == 0:
        return Path("/run/ddnsagent/control.sock")
    import platformdirs  # lazy: only where no runtime directory is given

    return Path(platformdirs.user_runtime_dir("ddnsagent")) / "control.sock"


def ask(path: Path, payload: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """The daemon's answer to `payload`; None when no daemon listens at `path` (no socket file,
    a stale one left by a killed daemon, something that is not a socket) or it closed the
    connection without answering (stopping, or too many clients). Raises NoAnswer when no
    answer came within `timeout` seconds, BadAnswer when what answered is not a daemon."""
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(max(timeout, 0.001))
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return None
        except OSError as exc:
            if isinstance(exc, TimeoutError):
                raise NoAnswer(f"the daemon at {path} did not accept within {timeout:g}s") from None
            return None  # ENOTSOCK, EPROTOTYPE, EACCES…: no daemon of ours to ask there
        try:
            sock.sendall(json.dumps(payload).encode() + b"\n")
            line = _read_line(sock, deadline)
        except TimeoutError:
            raise NoAnswer(f"no answer from the daemon within {timeout:g}s") from None
        except (ConnectionError, BrokenPipeError):
            return None  # closed without an answer
    finally:
        sock.close()
    if line is None:
        return None
    try:
        answer = json.loads(line)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise BadAnswer(f"the answer on {path} is not a ddnsagent daemon's reply")
    return answer


def _read_line(sock: socket.socket, deadline: float) -> bytes | None:
    """One line (without the newline) read before `deadline`; None when the peer closed first.
    Raises TimeoutError at the deadline, BadAnswer when the line is longer than MAX_ANSWER."""
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return None
        end = chunk.find(b"\n")
        if end >= 0:
            chunks.append(chunk[:end])
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER:
            raise BadAnswer("the answer on the control socket is too long for a daemon's reply")


def config_stamp(path: Path) -> str | None:
    """What identifies one version of the configuration file (inode, size, modification time):
    a daemon that loaded another version must not answer for it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
