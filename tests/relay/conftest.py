"""The relay watchdog's world without Postfix (tests/relay/test_watchdog.py describes it): the
`world` fixture and the lines and queue listings the tests write."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from ddnsagent import config
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


def refusal_reason(ip: str) -> str:
    return (
        f"host {RELAY}[198.51.100.1] said: 450 Error: too much mail from {ip} "
        "(in reply to MAIL FROM command)"
    )


def queued(*reasons: str, queue_name: str = "deferred") -> str:
    """`postqueue -j` output: one queue file per reason, as Postfix 3.7 prints it."""
    return "".join(
        json.dumps(
            {
                "queue_name": queue_name,
                "queue_id": f"{0x1A2B3C4D5E + i:X}",
                "arrival_time": int(time.time()) - 60,
                "message_size": 286,
                "forced_expire": False,
                "sender": "alice@home.example.net",
                "recipients": [{"address": "someone@example.org", "delay_reason": reason}],
            }
        )
        + "\n"
        for i, reason in enumerate(reasons)
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
    # The queue holds what the incident lines claim: mail the relay refused for our address.
    (tmp_path / "queue.json").write_text(queued(refusal_reason("198.51.100.7")))
    postqueue = tmp_path / "postqueue"
    postqueue.write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path}/queue-runs\ncat {tmp_path}/queue.json\n'
    )
    postqueue.chmod(0o755)
    with Dyndns2Server({"me": "pw-relay-1"}, {"home.example.net": None}) as dyn:
        path = write_config(
            tmp_path,
            f'[agent]\nstate_dir = "{tmp_path}/state"\nretries = 1\n'
            f'[detect]\nipv4 = ["command:{whatismyip}"]\naccept = "any"\n'
            f'[[provider]]\nname = "dd"\ntype = "dyndns2"\nserver = "{dyn.update_url}"\n'
            'hostnames = ["home.example.net"]\nusername = "me"\npassword = "pw-relay-1"\n'
            f'[relay]\nlog = "{maillog}"\nhost = "{RELAY}"\nflush = ["{flush}"]\n'
            f'settle = "0s"\nqueue = ["{postqueue}", "-j"]\n'
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
