"""Issue 12 items 3 and 4 through the running watch: failures a new address does not cure (TLS,
SASL) are said once per episode, shown in `status` and notified; a refusal naming our IPv6
address re-notifies the IPv6 providers only, and reconnects nothing by default."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ddnsagent import config
from ddnsagent.outputs.apprise_sender import Message
from ddnsagent.outputs.notify import Notifier
from ddnsagent.relay.watch import RelayWatch
from ddnsagent.store import Store
from ddnsagent.sync import Agent, SyncOptions
from tests.conftest import write_config
from tests.fakes import Dyndns2Server
from tests.relay.conftest import RELAY, runs, sent_line, wait

AT = f"{RELAY}[198.51.100.1]"


def record(reason: str, qid: str = "1A2B3C4D5E", service: str = "smtp", pid: int = 4242) -> str:
    stamp = time.strftime("%b %d %H:%M:%S")
    relay = "none" if service == "error" else f"{AT}:587"
    return (
        f"{stamp} myhost postfix/{service}[{pid}]: {qid}: to=<someone@example.org>, "
        f"relay={relay}, delay=1, delays=0.1/0/0.5/0, dsn=4.7.0, status=deferred ({reason})\n"
    )


SASL = f"SASL authentication failed; server {AT} said: 535 5.7.8 Authentication failed"
TLS_NOT_OFFERED = f"TLS is required, but was not offered by host {AT}"


class Events:
    """The daemon's side, as RelayWatch sees it, passing relay problems to a real Notifier."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.notifier = Notifier(sender=self, host="box")  # type: ignore[arg-type]

    def submit(self, message: Message) -> bool:  # the AppriseSender's one method used
        self.sent.append(message)
        return True

    def relay_signal(self, kind: str) -> None:
        pass

    def relay_problem(self, kind: str, check: str, line: str) -> None:
        self.notifier.relay_problem(kind, check, line)


def run(cfg: config.Config, maillog: Path, lines: list[str], events: Any = None) -> None:
    async def scenario() -> None:
        agent = Agent(cfg)
        await agent.sync(SyncOptions())
        task = asyncio.ensure_future(RelayWatch(agent, events).run())
        await asyncio.sleep(0.3)
        with maillog.open("a") as f:
            f.writelines(lines)
        await asyncio.sleep(3.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_sasl_refusal_warns_once_notifies_and_shows_in_status(  # type: ignore[no-untyped-def]
    world, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, _dyn, maillog, tmp = world
    events = Events()
    echo = record(f"delivery temporarily suspended: {SASL}", "1A2B3C4D5F", "error", 4343)
    with caplog.at_level(logging.WARNING):
        run(cfg, maillog, [record(SASL), echo, record(SASL, "1A2B3C4D60")], events)
    said = [r.getMessage() for r in caplog.records if "smtp_sasl_password_maps" in r.getMessage()]
    assert len(said) == 1 and "a new address does not help" in said[0]
    assert [m.kind for m in events.sent] == ["relay"]
    assert (
        "sasl failed" in events.sent[0].title and "smtp_sasl_password_maps" in events.sent[0].body
    )
    assert runs(tmp, "runs") == 0 and runs(tmp, "queue-runs") == 0  # nothing to reconnect for
    signal = Store.of(cfg.agent).load().relay.last_signal
    assert signal is not None and signal.action == "sasl_failed"
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddnsagent",
            "status",
            "--json",
            "--config",
            str(tmp / "config.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    shown = json.loads(status.stdout)["relay"]["last_signal"]
    assert shown["action"] == "sasl_failed" and "smtp_sasl_password_maps" in shown["reason"]
    text = subprocess.run(
        [sys.executable, "-m", "ddnsagent", "status", "--config", str(tmp / "config.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    assert "sasl_failed: the relay refused our login" in text


def test_a_new_episode_warns_again(world, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    cfg, _dyn, maillog, _tmp = world
    lines = [record(TLS_NOT_OFFERED), sent_line(), record(TLS_NOT_OFFERED, "1A2B3C4D61")]
    with caplog.at_level(logging.WARNING):
        run(cfg, maillog, lines)
    said = [r for r in caplog.records if "did not offer STARTTLS" in r.getMessage()]
    assert len(said) == 2


V4, V6 = "198.51.100.7", "2001:db8::7"


@pytest.fixture
def dual(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A dual-stack agent: one dyndns2 provider for both families, addresses from commands."""
    for family, address in ((4, V4), (6, V6)):
        script = tmp_path / f"ip{family}"
        script.write_text(f"#!/bin/sh\necho {address}\n")
        script.chmod(0o755)
    maillog = tmp_path / "mail.log"
    maillog.write_text("")
    postqueue = tmp_path / "postqueue"
    postqueue.write_text(f"#!/bin/sh\necho run >> {tmp_path}/queue-runs\n")
    postqueue.chmod(0o755)
    reconnect = tmp_path / "ppp-reconnect"
    reconnect.write_text(f"#!/bin/sh\necho run >> {tmp_path}/runs\n")
    reconnect.chmod(0o755)

    def build(extra: str = "") -> config.Config:
        path = write_config(
            tmp_path,
            f'[agent]\nstate_dir = "{tmp_path}/state"\nretries = 1\n'
            f'[detect]\nipv4 = ["command:{tmp_path}/ip4"]\nipv6 = ["command:{tmp_path}/ip6"]\n'
            'accept = "any"\n'
            f'[[provider]]\nname = "dd"\ntype = "dyndns2"\nserver = "{dyn.update_url}"\n'
            'hostnames = ["home.example.net"]\nusername = "me"\npassword = "pw-relay-1"\n'
            "ipv6 = true\n"
            f'[relay]\nlog = "{maillog}"\nhost = "{RELAY}"\nflush = []\nsettle = "0s"\n'
            f'queue = ["{postqueue}", "-j"]\n{extra}'
            f'[reconnect]\ncommand = ["{reconnect}"]\ntimeout = "5s"\nwait_for_address = "1s"\n',
        )
        return config.load(path)

    with Dyndns2Server({"me": "pw-relay-1"}, {"home.example.net": None}) as dyn:
        yield build, maillog, tmp_path


def refusal(address: str) -> str:
    return record(
        f"host {AT} said: 450 4.7.1 Error: too much mail from {address} (in reply to MAIL FROM"
        " command)"
    )


def sent_times(cfg: config.Config) -> dict[int, float]:
    target = Store.of(cfg.agent).load().targets["dd"]
    return {family: sent.time for family, sent in target.sent.items()}


def test_ipv6_refusal_renotifies_ipv6_only_and_does_not_reconnect(dual) -> None:  # type: ignore[no-untyped-def]
    build, maillog, tmp = dual
    cfg = build()
    assert cfg.relay is not None and cfg.relay.reconnect_on_ipv6 is False

    async def scenario() -> tuple[dict[int, float], dict[int, float]]:
        agent = Agent(cfg)
        await agent.sync(SyncOptions())
        before = sent_times(cfg)
        task = asyncio.ensure_future(RelayWatch(agent).run())
        await asyncio.sleep(0.3)
        with maillog.open("a") as f:
            f.write(refusal(V6))
        await wait(lambda: sent_times(cfg).get(6) != before.get(6), timeout=15)
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return before, sent_times(cfg)

    before, after = asyncio.run(scenario())
    assert set(before) == {4, 6}
    assert after[4] == before[4] and after[6] > before[6]
    assert runs(tmp, "runs") == 0 and runs(tmp, "queue-runs") == 0
    signal = Store.of(cfg.agent).load().relay.last_signal
    assert signal is not None and signal.action == "renotify-ipv6" and V6 in signal.reason


def test_ipv6_refusal_reconnects_when_opted_in(dual) -> None:  # type: ignore[no-untyped-def]
    """The opt-in sends the IPv6 refusal down the reconnect path: the queue is asked first."""
    build, maillog, tmp = dual
    cfg = build("reconnect_on_ipv6 = true\n")

    async def scenario() -> None:
        agent = Agent(cfg)
        await agent.sync(SyncOptions())
        task = asyncio.ensure_future(RelayWatch(agent).run())
        await asyncio.sleep(0.3)
        with maillog.open("a") as f:
            f.write(refusal(V6))
        await wait(lambda: runs(tmp, "queue-runs") >= 1, timeout=15)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert runs(tmp, "queue-runs") >= 1  # asked to confirm a reconnect (by default: never)
    assert runs(tmp, "runs") == 0  # the empty queue confirms nothing


def test_refusal_naming_neither_address_is_ignored(dual) -> None:  # type: ignore[no-untyped-def]
    build, maillog, tmp = dual
    cfg = build()
    run(cfg, maillog, [refusal("2001:db8::99"), refusal("198.51.100.99")])
    assert Store.of(cfg.agent).load().relay.last_signal is None
    assert runs(tmp, "runs") == 0 and runs(tmp, "queue-runs") == 0


def test_a_hard_bounce_from_the_relay_is_kept_for_the_doctor(world) -> None:  # type: ignore[no-untyped-def]
    cfg, _dyn, maillog, _tmp = world
    stamp = time.strftime("%b %d %H:%M:%S")
    bounced = (
        f"{stamp} myhost postfix/smtp[9856]: 3B2A9821F1: to=<me@example.com>, relay={AT}:587,"
        " delay=1.7, delays=0.8/0.02/0.74/0.1, dsn=5.7.1, status=bounced (host"
        f" {AT} said: 554 5.7.1 <me@example.com>: Relay access denied (in reply to RCPT TO"
        " command))\n"
    )
    deferred = bounced.replace("dsn=5.7.1, status=bounced", "dsn=4.7.1, status=deferred")
    run(cfg, maillog, [deferred])
    assert Store.of(cfg.agent).load().relay.last_bounced is None  # a 4xx keeps the mail
    run(cfg, maillog, [bounced])
    kept = Store.of(cfg.agent).load().relay.last_bounced
    assert kept is not None and kept.action == "relay_denied"
    assert "554 5.7.1" in kept.reason and "3B2A9821F1" in kept.reason
