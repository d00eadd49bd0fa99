"""The watchdog's procedure end to end without Postfix: a log file the test writes, a queue
listing (`[relay] queue`) that prints the JSON the test writes, a reconnect command that changes
what the `command:` source reports, a strict dyndns2 server, a flush command that leaves a
mark."""

from __future__ import annotations

import asyncio
import time

from ddnsagent.relay.reconnect import reconnect
from ddnsagent.relay.watch import RelayWatch
from ddnsagent.schedule import refusal_to_reconnect
from ddnsagent.store import Store
from ddnsagent.sync import Agent, SyncOptions
from tests.conftest import stop
from tests.relay.conftest import RELAY, incident_line, runs, sent_line, wait


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
    assert runs(tmp, "queue-runs") == 1  # the queue confirmed the first refusal
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
        stop(proc, 10)


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
