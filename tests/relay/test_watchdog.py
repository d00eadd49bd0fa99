"""The watchdog's procedure end to end without Postfix: a log file the test writes, a reconnect
command that changes what the `command:` source reports, a strict dyndns2 server, a flush
command that leaves a mark."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ddnsagent import config
from ddnsagent.relay.reconnect import reconnect
from ddnsagent.relay.watch import RelayWatch
from ddnsagent.schedule import refusal_to_reconnect
from ddnsagent.store import Store
from ddnsagent.sync import Agent, SyncOptions
from tests.conftest import write_config
from tests.fakes import Dyndns2Server

RELAY = "relay.example.net"


def incident_line(ip: str, qid: str = "03866F775") -> str:
    stamp = time.strftime("%b %d %H:%M:%S")
    return (
        f"{stamp} myhost postfix/smtp[29536]: {qid}: to=<someone@example.org>, "
        f"relay={RELAY}[198.51.100.1]:587, delay=25, delays=20/0/0.09/5, dsn=4.0.0, "
        f"status=deferred (host {RELAY}[198.51.100.1] said: 450 Error: too much mail from "
        f"{ip} (in reply to MAIL FROM command))\n"
    )


def sent_line(qid: str = "4XyZbC2mQpz7sdM") -> str:
    stamp = time.strftime("%b %d %H:%M:%S")
    return (
        f"{stamp} myhost postfix/smtp[12348]: {qid}: to=<a@example.org>, "
        f"relay={RELAY}[198.51.100.1]:587, delay=1.2, delays=0.1/0/0.6/0.5, dsn=2.0.0, "
        "status=sent (250 2.0.0 Ok: queued as 4XyZbD0000z1abc)\n"
    )


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    wan = tmp_path / "wan"
    wan.write_text("198.51.100.7\n")
    whatismyip = tmp_path / "whatismyip"
    whatismyip.write_text(f"#!/bin/sh\ncat {wan}\n")
    whatismyip.chmod(0o755)
    reconnect_cmd = tmp_path / "ppp-reconnect"
    reconnect_cmd.write_text(
        f"#!/bin/sh\necho reconnecting\necho 198.51.100.8 > {wan}\necho run >> {tmp_path}/runs\n"
    )
    reconnect_cmd.chmod(0o755)
    flush = tmp_path / "flush"
    flush.write_text(f"#!/bin/sh\necho flushed >> {tmp_path}/flushes\n")
    flush.chmod(0o755)
    maillog = tmp_path / "mail.log"
    maillog.write_text("")
    with Dyndns2Server({"me": "pw-relay-1"}, {"home.example.net": None}) as dyn:
        path = write_config(
            tmp_path,
            f'[agent]\nstate_dir = "{tmp_path}/state"\nretries = 1\n'
            f'[detect]\nipv4 = ["command:{whatismyip}"]\naccept = "any"\n'
            f'[[provider]]\nname = "dd"\ntype = "dyndns2"\nserver = "{dyn.update_url}"\n'
            'hostnames = ["home.example.net"]\nusername = "me"\npassword = "pw-relay-1"\n'
            f'[relay]\nlog = "{maillog}"\nhost = "{RELAY}"\nflush = ["{flush}"]\n'
            'settle = "0s"\n'
            f'[reconnect]\ncommand = ["{reconnect_cmd}"]\ntimeout = "10s"\n'
            'wait_for_address = "10s"\ncooldown = "30m"\nmax_per_day = 4\n',
        )
        yield config.load(path), dyn, maillog, tmp_path


def runs(tmp_path: Path, name: str) -> int:
    f = tmp_path / name
    return len(f.read_text().splitlines()) if f.exists() else 0


async def wait(condition, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_refusal_of_our_address_reconnects_renotifies_flushes_and_recovers(world) -> None:  # type: ignore[no-untyped-def]
    cfg, dyn, maillog, tmp = world

    async def scenario() -> None:
        agent = Agent(cfg)
        await agent.sync(SyncOptions())
        assert dyn.record("home.example.net").ipv4 == "198.51.100.7"
        watch = RelayWatch(agent)
        task = asyncio.ensure_future(watch.run())
        await asyncio.sleep(0.3)  # the follower starts at the end of the log
        with maillog.open("a") as f:
            f.write(incident_line("198.51.100.7"))
        await wait(lambda: runs(tmp, "flushes") == 1)
        assert runs(tmp, "runs") == 1
        assert dyn.record("home.example.net").ipv4 == "198.51.100.8"
        # More refusals naming the old address arrive from queued retries: ignored.
        with maillog.open("a") as f:
            f.write(incident_line("198.51.100.7", "1A2B3C4D5E"))
            f.write(sent_line())
        await wait(lambda: Store(cfg.agent.state_dir).load().relay.last_recovery is not None)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    relay = Store(cfg.agent.state_dir).load().relay
    assert relay.last_reconnect is not None and relay.last_recovery is not None
    assert relay.last_reconnect.result == "ok"
    assert relay.last_reconnect.old == "198.51.100.7"
    assert relay.last_reconnect.new == "198.51.100.8"
    assert relay.last_recovery.seconds >= 0
    assert runs(tmp, "runs") == 1
    assert dyn.record("home.example.net").attempts == 2


def test_cooldown_and_daily_cap_survive_restarts(world) -> None:  # type: ignore[no-untyped-def]
    cfg, _dyn, _maillog, tmp = world
    first = asyncio.run(reconnect(Agent(cfg), "test"))
    assert first.done and first.new == "198.51.100.8"
    # A new process (new Agent) within the cooldown: refused, and the command not run.
    second = asyncio.run(reconnect(Agent(cfg), "test"))
    assert not second.done and "cooldown" in second.message
    assert runs(tmp, "runs") == 1
    forced = asyncio.run(reconnect(Agent(cfg), "test", ignore_cooldown=True))
    assert forced.done
    assert runs(tmp, "runs") == 2
    relay = Store(cfg.agent.state_dir).load().relay
    now = time.time()
    relay.attempts = [now - 86000 + i for i in range(4)]
    assert cfg.reconnect is not None
    assert "max_per_day" in (refusal_to_reconnect(relay, cfg.reconnect, now) or "")


def test_unchanged_address_is_reported_and_counted(world) -> None:  # type: ignore[no-untyped-def]
    cfg, _dyn, _maillog, tmp = world
    (tmp / "ppp-reconnect").write_text(f"#!/bin/sh\necho run >> {tmp}/runs\nexit 3\n")
    object.__setattr__(cfg.reconnect, "wait_for_address", 1.0)
    outcome = asyncio.run(reconnect(Agent(cfg), "test"))
    assert outcome.done and "did not change" in outcome.message and "status 3" in outcome.message
    relay = Store(cfg.agent.state_dir).load().relay
    assert relay.last_reconnect is not None and relay.last_reconnect.result == "unchanged"
    assert relay.unchanged == 1
    assert runs(tmp, "flushes") == 0


def test_crafted_recipient_does_not_reconnect(world) -> None:  # type: ignore[no-untyped-def]
    cfg, _dyn, maillog, tmp = world

    async def scenario() -> None:
        agent = Agent(cfg)
        await agent.sync(SyncOptions())
        task = asyncio.ensure_future(RelayWatch(agent).run())
        await asyncio.sleep(0.3)
        stamp = time.strftime("%b %d %H:%M:%S")
        with maillog.open("a") as f:
            f.write(
                f'{stamp} myhost postfix/smtp[1]: 03866F775: to=<"x said: 450 Error: too much '
                f'mail from 198.51.100.7 (y"@example.org>, relay={RELAY}[198.51.100.1]:587, '
                "delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (250 ok)\n"
            )
        await asyncio.sleep(3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert runs(tmp, "runs") == 0


def test_reload_that_moves_the_mail_log_follows_the_new_one(world) -> None:  # type: ignore[no-untyped-def]
    """SIGHUP with a changed [relay] restarts the log reader on the new file."""
    import signal
    import subprocess
    import sys

    cfg, _dyn, maillog, tmp = world
    text = cfg.file.read_text()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddnsagent", "run", "--config", str(cfg.file)],
        stdout=(tmp / "daemon.log").open("w"),
        stderr=subprocess.STDOUT,
        env={**__import__("os").environ, "RUNTIME_DIRECTORY": str(tmp / "run")},
    )
    try:
        deadline = time.monotonic() + 15
        while "dd: IPv4" not in (tmp / "daemon.log").read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        moved = tmp / "mail-new.log"
        moved.write_text("")
        cfg.file.write_text(text.replace(f'log = "{maillog}"', f'log = "{moved}"'))
        proc.send_signal(signal.SIGHUP)
        time.sleep(3)  # the new reader starts at the end of the new file
        with moved.open("a") as f:
            f.write(incident_line("198.51.100.7"))
        deadline = time.monotonic() + 20
        while runs(tmp, "flushes") < 1:
            assert time.monotonic() < deadline, (tmp / "daemon.log").read_text()
            time.sleep(0.1)
        assert runs(tmp, "runs") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_lines_the_follower_had_to_drop_are_reported_once(world, caplog) -> None:  # type: ignore[no-untyped-def]
    """A line too long to read is dropped; the watch says so (a refusal in it is not seen)."""
    cfg, _dyn, maillog, _tmp = world
    caplog.set_level("WARNING", logger="ddnsagent.relay.watch")

    async def scenario() -> None:
        task = asyncio.ensure_future(RelayWatch(Agent(cfg)).run())
        await asyncio.sleep(0.3)  # the follower starts at the end of the log
        with maillog.open("a") as f:
            f.write("x" * 20000 + "\n")
            f.write(sent_line())
        await wait(lambda: "over-long" in caplog.text)
        await asyncio.sleep(2.5)  # one more poll: nothing new lost, nothing new said
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if "over-long" in r.getMessage()]
    assert len(warnings) == 1 and "dropped 1 over-long lines" in warnings[0]
