"""`log = "journal"`: the watchdog reads journalctl's JSON output. A stand-in journalctl on
PATH plays journald's part, so the path from its output to a reconnect decision is real."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from ddnsagent import config
from ddnsagent.relay.watch import RelayWatch
from ddnsagent.sync import Agent
from tests.conftest import write_config

RELAY = "auth.gate-on.net"


def journal_entry(message: str, identifier: str = "postfix/smtp") -> str:
    return json.dumps(
        {
            "MESSAGE": message,
            "SYSLOG_IDENTIFIER": identifier,
            "_PID": "29536",
            "_COMM": identifier.rsplit("/", 1)[-1],
            "__REALTIME_TIMESTAMP": str(int(time.time() * 1_000_000)),
        }
    )


def test_journal_source_feeds_the_decider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    refusal = (
        "03866F775: to=<someone@example.org>, relay=auth.gate-on.net[210.197.72.170]:587, "
        "delay=25031, delays=24999/28/0.09/5, dsn=4.0.0, status=deferred (host "
        "auth.gate-on.net[210.197.72.170] said: 450 Error: too much mail from 203.0.113.7 "
        "(in reply to MAIL FROM command))"
    )
    bounce = "5A1B2C3D4E: sender non-delivery notification: 6F7A8B9C0D"
    lines = [journal_entry(refusal), journal_entry(bounce, "postfix/bounce")]
    (tmp_path / "entries").write_text("\n".join(lines) + "\n")
    fake = bindir / "journalctl"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat {tmp_path}/entries\nsleep 30\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    path = write_config(
        tmp_path,
        f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = []\n'
        f'[relay]\nlog = "journal"\nhost = "{RELAY}"\nflush = []\n',
    )
    cfg = config.load(path)
    decisions: list[str] = []

    async def scenario() -> None:
        watch = RelayWatch(Agent(cfg))
        watch._spawn = lambda coro: (decisions.append("acted"), coro.close())  # type: ignore[method-assign]
        original = watch.decider.observe

        def observe(event, current, now=None):  # type: ignore[no-untyped-def]
            decision = original(event, "203.0.113.7", now)
            if decision is not None:
                decisions.append(decision.action)
            return decision

        watch.decider.observe = observe  # type: ignore[method-assign]
        task = asyncio.ensure_future(watch.run())
        deadline = time.monotonic() + 10
        while not decisions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert watch.decider.bounce_rate(time.time()) == 1

    asyncio.run(scenario())
    assert decisions[:2] == ["reconnect", "acted"]
    args = (tmp_path / "args").read_text()
    assert "--output=json" in args and "-t postfix/smtp" in args and "-t postfix/bounce" in args
