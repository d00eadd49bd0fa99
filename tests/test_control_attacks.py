"""The control socket attacked for real: a running `ddnsagent run` (a subprocess), the dyndns2
emulator as its provider, and clients that lie, flood, stall or connect as another user.

Each test performs the attack and then checks the victim: nothing sent to the provider, nothing
stored in the state, the daemon still syncing and answering, its log short and free of
tracebacks. Each also shows that the same path does act on a request it must accept, so a test
that passes cannot be one that never reached the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ddnsagent import control
from tests.conftest import (
    DYN_HOST,
    FIRST,
    child_env,
    dyndns2_provider,
    wait_until,
    write_config,
)
from tests.fakes import Dyndns2Server, EchoServer
from tests.test_daemon import DaemonProcess, sent_to_dyn, synced

OTHER_UID = 54321  # a throwaway uid that exists nowhere
FLOOD = 1100
PUBLIC = "1.2.3.4"  # any global unicast address; it only travels to the loopback emulator

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setuid to another uid)")


def config(tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, sock: Path, accept: str) -> Path:
    state_dir = tmp_path / "state"
    text = (
        "[agent]\n"
        f'state_dir = "{state_dir}"\n'
        f'control_socket = "{sock}"\n'
        'interval = "30s"\njitter = "0s"\nretries = 1\nretry_delay = "0s"\nlock_timeout = "10s"\n'
        "[detect]\n"
        f'ipv4 = ["web:{echo.echo_url}"]\n'
        f'quorum = 1\naccept = "{accept}"\ntimeout = "5s"\n\n' + dyndns2_provider(dyn.update_url)
    )
    return write_config(tmp_path, text)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[Path, Path], DaemonProcess]]:
    """Start daemons whose control socket listens; every one is killed at the end."""
    started: list[DaemonProcess] = []

    def go(cfg: Path, sock: Path) -> DaemonProcess:
        d = DaemonProcess(cfg, tmp_path / f"daemon-{len(started)}.log", child_env())
        started.append(d)
        wait_until(lambda: "ddnsagent running" in d.log() or not d.alive(), "the daemon to start")
        wait_until(lambda: sock.exists() or not d.alive(), "the control socket")
        assert d.alive(), f"daemon exited at start:\n{d.log()}"
        return d

    try:
        yield go
    finally:
        for d in started:
            d.kill()


def ask(path: Path, line: bytes, timeout: float = 20.0) -> dict[str, Any] | None:
    """Send `line` as it is and read one answer line (None: closed without one). Bounded."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(line)
        data = b""
        for _ in range(10_000):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if data.endswith(b"\n"):
                break
    if not data:
        return None
    answer: dict[str, Any] = json.loads(data)
    return answer


def ask_json(path: Path, request: object) -> dict[str, Any]:
    answer = ask(path, json.dumps(request).encode() + b"\n")
    assert answer is not None, "the daemon closed the connection without an answer"
    return answer


def refused(answer: dict[str, Any], *words: str) -> bool:
    error = str(answer.get("error", ""))
    return answer.get("ok") is False and all(w in error for w in words)


def detected_in_state(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "state" / "state.json"
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text()).get("detected", {})
    return data


def no_traceback(d: DaemonProcess) -> None:
    assert "Traceback" not in d.log(), d.log()


# -- addresses through the socket pass the accept policy and the family checks ----------------


def test_a_loopback_address_through_the_socket_is_refused_and_nothing_is_sent(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start: Callable[..., DaemonProcess]
) -> None:
    sock = tmp_path / "run" / "control.sock"
    d = start(config(tmp_path, echo, dyn, sock, accept="global"), sock)
    synced(echo, 0, tmp_path / "state")  # the first sync: the echo's 203.0.113.7 is refused too
    assert dyn.requests == []

    for address, why in [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("169.254.9.9", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
    ]:
        answer = ask_json(sock, {"cmd": "sync", "reason": "hook", "addresses": {"4": address}})
        assert refused(answer, address, why, "accept"), answer
    assert dyn.requests == []
    assert all(e.get("address") != "127.0.0.1" for e in detected_in_state(tmp_path).values())

    # The same request with an address the policy accepts is sent: the path itself works.
    answer = ask_json(sock, {"cmd": "sync", "reason": "hook", "addresses": {"4": PUBLIC}})
    assert answer["ok"] is True, answer
    assert sent_to_dyn(dyn) == [PUBLIC]
    assert dyn.record(DYN_HOST).ipv4 == PUBLIC
    no_traceback(d)


def test_bad_families_and_types_are_refused_and_not_stored(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start: Callable[..., DaemonProcess]
) -> None:
    sock = tmp_path / "run" / "control.sock"
    d = start(config(tmp_path, echo, dyn, sock, accept="any"), sock)
    wait_until(lambda: dyn.requests, "the first update")
    synced(echo, 0, tmp_path / "state")
    assert sent_to_dyn(dyn) == [FIRST]
    before = detected_in_state(tmp_path)
    lines = len(d.log().splitlines())

    attacks: list[tuple[object, tuple[str, ...]]] = [
        ({"cmd": "sync", "addresses": {"5": "198.51.100.5"}}, ("family", "'5'")),
        ({"cmd": "sync", "addresses": {"6": "198.51.100.6"}}, ("not an IPv6 address",)),
        ({"cmd": "sync", "addresses": {"4": "2001:db8::4"}}, ("not an IPv4 address",)),
        ({"cmd": "sync", "addresses": {"4": "198.51.100.300"}}, ("not an IP address",)),
        ({"cmd": "sync", "addresses": {"4": ["198.51.100.7"]}}, ("as a string",)),
        ({"cmd": "sync", "addresses": ["198.51.100.8"]}, ("must be an object",)),
        ({"cmd": "sync", "addresses": {"4": "198.51.100.9"}, "evil": 1}, ("unknown field", "evil")),
        ({"cmd": "sync", "force": "yes"}, ("'force'", "true or false")),
        ({"cmd": "sync", "reason": "x" * 500}, ("'reason'",)),
        ({"cmd": "sync", "reason": "hook\nERROR forged"}, ("control characters",)),
        ({"cmd": "reconnect", "ignore_cooldown": 1}, ("'ignore_cooldown'",)),
        ({"cmd": "reconnect", "addresses": {"4": "198.51.100.10"}}, ("unknown field",)),
        ({"cmd": "shutdown"}, ("unknown command", "shutdown")),
        ({"addresses": {"4": "198.51.100.11"}}, ("unknown command",)),
    ]
    for request, words in attacks:
        answer = ask_json(sock, request)
        assert refused(answer, *words), (request, answer)
    for raw in [b"[1, 2\n", b"[]\n", b"\xff\xfe\n", b"[" * 4000 + b"\n", b'"sync"\n']:
        answer = ask(sock, raw)
        assert answer is not None and refused(answer, "bad request"), (raw[:20], answer)

    assert sent_to_dyn(dyn) == [FIRST], "a refused request reached the provider"
    assert detected_in_state(tmp_path) == before, "a refused request changed the state"
    added = d.log().splitlines()[lines:]
    assert len(added) <= 3, added  # one warning, then counted for the minute's summary
    assert not any("forged" in line for line in added), added
    no_traceback(d)

    # A well-formed request on the same socket is obeyed.
    answer = ask_json(sock, {"cmd": "sync", "reason": "hook", "addresses": {"4": "198.51.100.12"}})
    assert answer["ok"] is True, answer
    assert sent_to_dyn(dyn) == [FIRST, "198.51.100.12"]


# -- size, time and number of clients ----------------------------------------------------------


def test_a_200_kb_request_line_gets_one_clear_refusal(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start: Callable[..., DaemonProcess]
) -> None:
    sock = tmp_path / "run" / "control.sock"
    d = start(config(tmp_path, echo, dyn, sock, accept="any"), sock)
    synced(echo, 0, tmp_path / "state")
    lines = len(d.log().splitlines())
    huge = b'{"cmd": "sync", "reason": "' + b"A" * 200_000 + b'"}\n'
    answer = ask(sock, huge)
    assert answer is not None and refused(answer, "longer than 4096 bytes"), answer
    added = d.log().splitlines()[lines:]
    assert len(added) == 1 and "longer than 4096 bytes" in added[0], added
    assert "AAAA" not in d.log()
    no_traceback(d)
    assert d.alive()
    assert ask_json(sock, {"cmd": "sync", "reason": "after"})["ok"] is True


def test_1100_idle_connections_neither_stop_the_syncs_nor_flood_the_log(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start: Callable[..., DaemonProcess]
) -> None:
    sock = tmp_path / "run" / "control.sock"
    d = start(config(tmp_path, echo, dyn, sock, accept="any"), sock)
    wait_until(lambda: dyn.requests, "the first update")
    synced(echo, 0, tmp_path / "state")
    lines = len(d.log().splitlines())

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FLOOD + 256
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        for _ in range(FLOOD):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            idle.append(s)
            s.setblocking(False)
            while True:  # a full listen backlog answers EAGAIN: wait for the daemon to accept
                try:
                    s.connect(str(sock))  # and never send a byte
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, "the daemon stopped accepting"
                    time.sleep(0.005)

        # The flood is still open: a new address arrives and SIGUSR1 asks for a sync.
        echo.answer = "198.51.100.44\n"
        before = len(echo.requests)
        d.send(signal.SIGUSR1)
        synced(echo, before, tmp_path / "state")
        wait_until(lambda: "198.51.100.44" in sent_to_dyn(dyn), "the sync during the flood")
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    # A real client is answered afterwards (the idle slots are free once their peers are gone).
    answer = asyncio.run(
        control.request(sock, {"cmd": "sync", "reason": "hook", "addresses": None}, 10)
    )
    assert answer is not None and answer["ok"] is True, answer
    assert d.alive()
    no_traceback(d)
    added = d.log().splitlines()[lines:]
    assert len(added) <= 8, added
    assert sum("connections open already" in line for line in added) == 1, added


def test_refusals_are_summed_up_once_per_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rate limit itself, with a short period: a flood of 200 clients over a cap of 2 gives
    one warning and one summary line with the count, not 200 lines."""
    path = tmp_path / "c.sock"

    async def handler(request: dict[str, object]) -> dict[str, object]:
        await asyncio.sleep(0.5)
        return {"ok": True}

    async def scenario() -> list[dict[str, Any] | None]:
        server = await control.serve(path, handler, max_clients=2, warn_every=0.6)
        try:
            held = [asyncio.ensure_future(control.request(path, {"cmd": "sync"}, 5)) for _ in "ab"]
            await asyncio.sleep(0.1)
            for _ in range(200):
                _r, w = await asyncio.open_unix_connection(str(path))
                w.close()
            await asyncio.sleep(1.0)  # the period ends: the summary
            return list(await asyncio.gather(*held))
        finally:
            server.close()

    with caplog.at_level(logging.WARNING, logger="ddnsagent.control"):
        answers = asyncio.run(scenario())
    assert answers == [{"ok": True}, {"ok": True}]
    messages = [r.getMessage() for r in caplog.records if r.name == "ddnsagent.control"]
    assert len(messages) == 2, messages
    assert "connections open already" in messages[0]
    assert messages[1].startswith("control socket: 199 more connections closed"), messages


# -- who may connect --------------------------------------------------------------------------


def as_other_user(sock: Path, address: str) -> str:
    """Connect and ask for a sync from a forked child that has set its gid and uid to OTHER_UID;
    what it got back ("EACCES", "CLOSED" or the answer line). Bounded in time."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing but system calls, then _exit
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect(str(sock))
            except PermissionError:
                out = b"EACCES"
            else:
                request = {"cmd": "sync", "reason": "x", "addresses": {"4": address}}
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    s.sendall(json.dumps(request).encode() + b"\n")  # it may be refused already
                out = s.recv(65536).strip() or b"CLOSED"
            os.write(write_end, out)
        except BaseException as exc:  # told to the parent, which fails the test
            os.write(write_end, f"ERROR {exc!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the other user's client hung")
        time.sleep(0.02)
    with os.fdopen(read_end, "rb") as pipe:
        got = pipe.read(65536).decode()
    assert os.waitstatus_to_exitcode(status) == 0, f"the other user's client failed: {got}"
    return got


@needs_root
def test_another_uid_cannot_drive_the_daemon_even_when_the_socket_mode_is_loosened(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, start: Callable[..., DaemonProcess]
) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="ddnsagent-ctl-"))  # reachable by OTHER_UID
    try:
        run_dir.chmod(0o711)
        sock = run_dir / "control.sock"
        d = start(config(tmp_path, echo, dyn, sock, accept="any"), sock)
        wait_until(lambda: dyn.requests, "the first update")
        synced(echo, 0, tmp_path / "state")
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        assert oct(run_dir.stat().st_mode & 0o777) == "0o711"

        # The file mode keeps the other user out at connect().
        assert as_other_user(sock, "198.51.100.66") == "EACCES"
        # Someone loosens it by hand: the kernel-attested peer uid still keeps them out.
        sock.chmod(0o666)
        answer = json.loads(as_other_user(sock, "198.51.100.66"))
        assert answer == {"ok": False, "error": "not allowed"}
        assert f"uid {OTHER_UID} refused" in d.log()
        assert "198.51.100.66" not in sent_to_dyn(dyn)
        assert all(
            e.get("address") != "198.51.100.66" for e in detected_in_state(tmp_path).values()
        )

        # Root is obeyed on the same socket.
        answer = ask_json(sock, {"cmd": "sync", "reason": "x", "addresses": {"4": "198.51.100.66"}})
        assert answer["ok"] is True, answer
        assert sent_to_dyn(dyn)[-1] == "198.51.100.66"
        no_traceback(d)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def test_a_socket_directory_others_may_write_is_refused(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    """In a world-writable directory another user could replace the socket or squat its name:
    the daemon runs without a socket (hooks sync on their own) and says why."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    sock = shared / "control.sock"
    log = tmp_path / "d.log"
    d = DaemonProcess(config(tmp_path, echo, dyn, sock, accept="any"), log, child_env())
    try:
        wait_until(lambda: "ddnsagent running" in d.log() or not d.alive(), "the daemon to start")
        wait_until(lambda: "no control socket" in d.log() or not d.alive(), "the refusal")
        assert d.alive(), d.log()
        assert "may be written by other users" in d.log()
        assert not sock.exists()
        no_traceback(d)
    finally:
        d.kill()


def test_a_file_at_the_socket_path_is_not_removed(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    """A mistyped control_socket that names a real file must not make the daemon delete it."""
    victim = tmp_path / "run" / "precious"
    victim.parent.mkdir(mode=0o700)
    victim.write_text("keep me\n")
    d = DaemonProcess(
        config(tmp_path, echo, dyn, victim, accept="any"), tmp_path / "d.log", child_env()
    )
    try:
        wait_until(lambda: "no control socket" in d.log() or not d.alive(), "the refusal")
        assert d.alive(), d.log()
        assert "is not a socket" in d.log()
        assert victim.read_text() == "keep me\n"
        no_traceback(d)
    finally:
        d.kill()


def test_unit_parse_request_accepts_what_the_cli_sends() -> None:
    """The hook's and `reconnect`'s own payloads (cli.py) stay valid."""
    ok = control.parse_request(
        {"cmd": "sync", "reason": "hook pppd", "addresses": {"4": PUBLIC}}, "global", [4, 6]
    )
    assert isinstance(ok, control.SyncRequest) and str(ok.addresses[4]) == PUBLIC  # type: ignore[index]
    none = control.parse_request(
        {"cmd": "sync", "reason": "hook", "addresses": None}, "global", [4]
    )
    assert none == control.SyncRequest("hook", False, None)
    # A family the configuration does not detect is left out, neither stored nor sent.
    v6_only = control.parse_request({"cmd": "sync", "addresses": {"6": "2600::1"}}, "global", [4])
    assert v6_only == control.SyncRequest("hook", False, None)
    again = control.parse_request({"cmd": "reconnect", "ignore_cooldown": True}, "global", [4])
    assert again == control.ReconnectRequest(True)
    with pytest.raises(control.BadRequest):
        control.parse_request({"cmd": "sync", "addresses": {"4": "127.0.0.1"}}, "global", [4])
    assert control.parse_request({"cmd": "sync", "addresses": {"4": "127.0.0.1"}}, "any", [4])
