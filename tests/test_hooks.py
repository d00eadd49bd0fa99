"""Hook scripts: what pppd, NetworkManager and networkd-dispatcher tell us, and the control
channel to a running daemon."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from ddnsagent import control
from ddnsagent.hooks import from_environment
from tests.conftest import DYN_HOST, child_env, config_text, dyndns2_provider, write_config
from tests.fakes import Dyndns2Server, EchoServer


def test_debian_ppp_ip_up_d() -> None:
    env = {"PPP_IFACE": "ppp0", "PPP_LOCAL": "203.0.113.5", "PPP_REMOTE": "198.51.100.1"}
    e = from_environment(env, [])
    assert (e.caller, e.interface, [str(a) for a in e.addresses]) == (
        "pppd",
        "ppp0",
        ["203.0.113.5"],
    )


def test_pppd_ip_up_itself() -> None:
    e = from_environment({"IFNAME": "ppp1", "IPLOCAL": "203.0.113.6"}, [])
    assert e.interface == "ppp1" and str(e.addresses[0]) == "203.0.113.6"


def test_pppd_positional_arguments() -> None:
    env = {"PPP_IFACE": "ppp0"}
    e = from_environment(env, ["ppp0", "/dev/ttyS0", "115200", "203.0.113.9", "198.51.100.1"])
    assert str(e.addresses[0]) == "203.0.113.9"


def test_networkmanager_dispatcher() -> None:
    env = {
        "DEVICE_IP_IFACE": "enp1s0",
        "IP4_NUM_ADDRESSES": "2",
        "IP4_ADDRESS_1": "203.0.113.12/24 203.0.113.1",
        "IP4_ADDRESS_0": "203.0.113.11/24 203.0.113.1",
        "IP6_ADDRESS_0": "2001:db8::11/64 ::",
    }
    e = from_environment(env, ["enp1s0", "up"])
    assert e.caller == "NetworkManager" and e.relevant
    assert [str(a) for a in e.addresses] == ["203.0.113.11", "203.0.113.12", "2001:db8::11"]
    assert not from_environment(env, ["enp1s0", "down"]).relevant


def test_networkd_dispatcher() -> None:
    env = {
        "IFACE": "wan0",
        "STATE": "routable",
        "IP_ADDRS": "203.0.113.20",
        "IP6_ADDRS": "2001:db8::20",
    }
    e = from_environment(env, [])
    assert e.caller == "networkd-dispatcher" and e.relevant
    assert [str(a) for a in e.addresses] == ["203.0.113.20", "2001:db8::20"]
    assert not from_environment({**env, "STATE": "degraded"}, []).relevant


def test_unknown_caller_and_garbage() -> None:
    assert from_environment({}, []).addresses == []
    e = from_environment({"PPP_IFACE": "ppp0", "PPP_LOCAL": "not-an-ip"}, [])
    assert e.addresses == []


def test_control_channel_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "control.sock"
    seen: list[dict[str, object]] = []

    async def handler(request: dict[str, object]) -> dict[str, object]:
        seen.append(request)
        await asyncio.sleep(0.05)
        return {"ok": True, "echo": request.get("cmd")}

    async def scenario() -> None:
        server = await control.serve(path, handler)
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        try:
            answer = await control.request(path, {"cmd": "sync"}, 5)
            assert answer == {"ok": True, "echo": "sync"}
        finally:
            server.close()
            await server.wait_closed()
        path.unlink()
        assert await control.request(path, {"cmd": "sync"}, 1) is None

    asyncio.run(scenario())
    assert seen == [{"cmd": "sync"}]


def test_control_channel_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"

    async def handler(request: dict[str, object]) -> dict[str, object]:
        raise AssertionError("must not be called")

    async def scenario() -> dict[str, object]:
        server = await control.serve(path, handler)
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(b"[1, 2\n")
            await writer.drain()
            import json

            answer: dict[str, object] = json.loads(await reader.readline())
            writer.close()
            return answer
        finally:
            server.close()

    answer = asyncio.run(scenario())
    assert answer["ok"] is False and "bad request" in str(answer["error"])


@pytest.mark.parametrize("timeout", [0.5])
def test_reconnect_command_timeout_kills_the_process_group(tmp_path: Path, timeout: float) -> None:
    """A reconnect helper that hangs (and leaves a child) is killed as a group."""
    import os

    from ddnsagent import process

    pidfile = tmp_path / "child.pid"
    script = tmp_path / "hang"
    script.write_text(f"#!/bin/sh\necho starting\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    script.chmod(0o755)
    result = asyncio.run(process.run_async((str(script),), timeout))
    assert result.returncode is None and result.timed_out and "starting" in result.output
    child = int(pidfile.read_text())
    import time

    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the reconnect command's child survived the timeout")


def test_reconnect_command_failure_reported(tmp_path: Path) -> None:
    from ddnsagent import process

    result = asyncio.run(process.run_async(("sh", "-c", "echo no link >&2; exit 4"), 5))
    assert result.returncode == 4 and "no link" in result.output
    missing = asyncio.run(process.run_async((str(tmp_path / "nope"),), 5))
    assert missing.returncode is None and "could not be started" in missing.problem


def test_control_channel_closes_a_client_that_trickles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that sends a byte now and then never holds a slot beyond the read timeout."""
    import contextlib
    import logging
    import time

    path = tmp_path / "c.sock"

    async def handler(request: dict[str, object]) -> dict[str, object]:
        raise AssertionError("must not be called")

    async def scenario() -> float:
        server = await control.serve(path, handler, read_timeout=0.5)
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
            started = time.monotonic()
            for _ in range(40):  # 4 s at most
                if reader.at_eof() or writer.is_closing():
                    break  # the daemon closed the connection, without an answer
                with contextlib.suppress(ConnectionError):
                    writer.write(b" ")
                    await writer.drain()
                await asyncio.sleep(0.1)
            writer.close()
            return time.monotonic() - started
        finally:
            server.close()

    with caplog.at_level(logging.WARNING, logger="ddnsagent.control"):
        took = asyncio.run(scenario())
    assert took < 2.0
    assert [r.getMessage() for r in caplog.records if r.name == "ddnsagent.control"] == [
        "control socket: no request within 0.5 s; closed"
    ]


@pytest.mark.parametrize("reply", [b"\xff\xfe not json\n", b"[1, 2]\n", b"{" * 3000 + b"\n"])
def test_control_client_refuses_an_answer_that_is_not_a_daemons(
    tmp_path: Path, reply: bytes
) -> None:
    """Root's hook talks to whatever listens at the path; a stranger's garbage is one clear
    error (a DdnsagentError, which the command line prints in one line), not a traceback."""
    path = tmp_path / "c.sock"

    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(reply)
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_unix_server(fake, path=str(path))
        try:
            await control.request(path, {"cmd": "sync"}, 5)
        finally:
            server.close()

    with pytest.raises(control.BadAnswer, match="not a ddnsagent daemon's reply"):
        asyncio.run(scenario())


# -- the shipped scripts, run as their callers run them --------------------------------------------

REPO = Path(__file__).resolve().parent.parent
HOOKED = "203.0.113.9"


@pytest.mark.parametrize(
    ("script", "args", "env"),
    [
        # run-parts gives ip-up.d scripts pppd's six arguments and PPP_* variables
        (
            "ppp/0ddnsagent",
            ["ppp0", "/dev/ttyS0", "115200", HOOKED, "198.51.100.1", ""],
            {"PPP_IFACE": "ppp0"},
        ),
        (
            "NetworkManager/50-ddnsagent",
            ["enp1s0", "up"],
            {
                "DEVICE_IP_IFACE": "enp1s0",
                "IP4_NUM_ADDRESSES": "1",
                "IP4_ADDRESS_0": f"{HOOKED}/24 ::",
            },
        ),
        (
            "networkd-dispatcher/50-ddnsagent",
            [],
            {"IFACE": "wan0", "STATE": "routable", "IP_ADDRS": HOOKED},
        ),
    ],
)
def test_the_shipped_hook_scripts_reach_the_agent(
    tmp_path: Path,
    echo: EchoServer,
    dyn: Dyndns2Server,
    script: str,
    args: list[str],
    env: dict[str, str],
) -> None:
    """Each script under packaging/, run as its caller runs it, gets the address it was given
    sent (no daemon runs, so the hook syncs itself). The scripts end in `|| true`, so what
    ddnsagent itself answered is kept by a stand-in `ddnsagent` on PATH."""
    config = write_config(
        tmp_path,
        config_text(
            tmp_path / "state",
            echo.echo_url,
            dyndns2_provider(dyn.update_url),
            agent=f'control_socket = "{tmp_path / "control.sock"}"',
        ),
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "ddnsagent"
    shim.write_text(
        f'#!/bin/sh\n"{sys.executable}" -m ddnsagent "$@"\necho $? > "{tmp_path / "rc"}"\n'
    )
    shim.chmod(0o755)
    run_env = child_env(DDNSAGENT_CONFIG=str(config), **env)
    run_env["PATH"] = f"{bin_dir}:{run_env['PATH']}"
    done = subprocess.run(
        ["/bin/sh", str(REPO / "packaging" / script), *args],
        env=run_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rc").read_text().strip() == "0", done.stdout + done.stderr
    assert f"({HOOKED})" in done.stdout or f", {HOOKED})" in done.stdout, done.stdout
    assert dyn.record(DYN_HOST).ipv4 == HOOKED
