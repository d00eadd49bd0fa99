"""`log = "journal"`: the watchdog reads journalctl's JSON output. A stand-in journalctl on
PATH plays journald's part, so the path from its output to a reconnect decision is real.

journald attests who sent a record in fields the sender cannot set (_UID, _SYSTEMD_UNIT); only
those count. `logger -t postfix/smtp` or a process renamed to "smtp" (prctl) sets
SYSLOG_IDENTIFIER and _COMM, nothing more.
"""

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
POSTFIX_UID = "4242"  # [relay] postfix_user in these tests
POSTFIX_UNIT = {"_SYSTEMD_UNIT": "postfix@-.service", "_UID": "0"}
REFUSAL = (
    "03866F775: to=<someone@example.org>, relay=auth.gate-on.net[210.197.72.170]:587, "
    "delay=25031, delays=24999/28/0.09/5, dsn=4.0.0, status=deferred (host "
    "auth.gate-on.net[210.197.72.170] said: 450 Error: too much mail from 203.0.113.7 "
    "(in reply to MAIL FROM command))"
)
BOUNCE = "5A1B2C3D4E: sender non-delivery notification: 6F7A8B9C0D"


def journal_entry(
    message: str, identifier: str = "postfix/smtp", origin: dict[str, str] | None = None
) -> str:
    return json.dumps(
        {
            "MESSAGE": message,
            "SYSLOG_IDENTIFIER": identifier,
            "_PID": "29536",
            "_COMM": identifier.rsplit("/", 1)[-1],
            "__REALTIME_TIMESTAMP": str(int(time.time() * 1_000_000)),
            **(origin if origin is not None else {"_UID": POSTFIX_UID}),
        }
    )


def run_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[str]
) -> tuple[list[str], int]:
    """Feed `lines` through the stand-in journalctl; the decisions taken and the bounce rate."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "entries").write_text("\n".join(lines) + "\n")
    fake = bindir / "journalctl"
    fake.write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat {tmp_path}/entries\n'
        f"touch {tmp_path}/done\nsleep 30\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    path = write_config(
        tmp_path,
        f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = []\n'
        f'[relay]\nlog = "journal"\nhost = "{RELAY}"\nflush = []\n'
        f'postfix_user = "{POSTFIX_UID}"\n',
    )
    cfg = config.load(path)
    decisions: list[str] = []
    rate: list[int] = []

    async def scenario() -> None:
        watch = RelayWatch(Agent(cfg))
        watch._spawn = lambda coro: (decisions.append("acted"), coro.close())  # type: ignore[method-assign]
        original = watch.decider.observe

        def observe(event, current, now=None, **kw):  # type: ignore[no-untyped-def]
            decision = original(event, "203.0.113.7", now, **kw)
            if decision is not None:
                decisions.append(decision.action)
            return decision

        watch.decider.observe = observe  # type: ignore[method-assign]
        task = asyncio.ensure_future(watch.run())
        deadline = time.monotonic() + 10
        while not (tmp_path / "done").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the records written before "done" are read by now
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        rate.append(watch.decider.bounce_rate(time.time()))

    asyncio.run(scenario())
    args = (tmp_path / "args").read_text()
    assert "--output=json" in args and "-t postfix/smtp" in args and "-t postfix/bounce" in args
    return decisions, rate[0]


@pytest.mark.parametrize(
    "origin",
    [{"_UID": POSTFIX_UID}, POSTFIX_UNIT, {"_SYSTEMD_UNIT": "postfix.service", "_UID": "0"}],
    ids=["postfix-uid", "postfix@-unit", "postfix-unit"],
)
def test_journal_records_from_postfix_feed_the_decider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: dict[str, str]
) -> None:
    lines = [journal_entry(REFUSAL, origin=origin), journal_entry(BOUNCE, "postfix/bounce", origin)]
    decisions, bounces = run_journal(tmp_path, monkeypatch, lines)
    assert decisions[:2] == ["reconnect", "acted"]
    assert bounces == 1


@pytest.mark.parametrize(
    "origin",
    [
        {"_UID": "12345"},  # a local user whose process calls itself smtp (prctl)
        {"_UID": "12345", "_SYSTEMD_UNIT": "user@12345.service"},
        {"_UID": "12345", "_SYSTEMD_UNIT": "session-3.scope"},
        {"_UID": "12345", "_SYSTEMD_USER_UNIT": "postfix@-.service"},  # the user's own service
        {"_UID": "12345", "_SYSTEMD_UNIT": "postfix@-.service.evil"},
        {"_UID": " 4242"},
        {"_UID": ["4", "2"]},
        {},  # nothing attests the sender at all
    ],
)
def test_journal_records_from_anyone_else_do_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: dict[str, str]
) -> None:
    """Issue 11, attack 3 in journald mode: `_COMM=smtp` and SYSLOG_IDENTIFIER=postfix/smtp from
    uid 12345, a refusal naming our address and a bounce: no decision, no bounce counted."""
    lines = [journal_entry(REFUSAL, origin=origin)] * 3
    lines.append(journal_entry(BOUNCE, "postfix/bounce", origin))
    decisions, bounces = run_journal(tmp_path, monkeypatch, lines)
    assert decisions == []
    assert bounces == 0
