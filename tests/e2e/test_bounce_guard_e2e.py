"""The bounce guard on real Postfix: backscatter past `bounce_limit` goes on hold while ordinary
mail keeps going through the relay, the relay's own limit is never reached, and `bounces
release` delivers every held bounce — each message counted, none lost.

Home's Postfix routes null-sender mail through its own transport with a rate delay, as the
README's "Bounce guard" asks (`sender_dependent_default_transport_maps` looked up with
`empty_address_default_transport_maps_lookup_key`, `<>`; `bounce-relay_destination_rate_delay`),
so that bounces wait in the active queue where `postsuper -h` finds them. Backscatter is made
the way a spammer makes it: mail to unknown local users with forged remote senders; local(8)
bounces each to its sender, through the relay.

The daemon runs as root here (as the root oneshot would), with `bounce_hold` running
`ddnsagent bounces hold` directly instead of `systemctl start ddnsagent-bounce-hold.service`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MASTER_ID, PASSWORD, running_daemon
from tests.e2e.netlab import HOME_ADDRESS, HOME_IFNAME, ISP_ADDRESS, Lab
from tests.e2e.postfix_home import HOSTNAME, MASTER_CF, HomePostfix
from tests.e2e.relay_isp import RelayISP

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 2  # [relay] bounce_limit
RATE_DELAY = 6  # seconds between two bounces leaving home (bounce-relay transport)
RELAY_LIMIT = 9  # the relay's MAIL FROMs per address: more than the guard lets through


class GuardedPostfix(HomePostfix):
    """Home's Postfix with the README's bounce transport: bounces wait their turn."""

    def write_config(self) -> None:
        super().write_config()
        master = self.config_dir / "master.cf"
        master.write_text(MASTER_CF + "bounce-relay unix - - n - - smtp\n")


@pytest.fixture
def relay(lab: Lab, e2e_workdir: Path) -> Iterator[RelayISP]:
    workdir = e2e_workdir / "isp"
    workdir.mkdir()
    with RelayISP(lab.isp, workdir, accounts={MASTER_ID: PASSWORD}, limit=RELAY_LIMIT) as r:
        yield r


@pytest.fixture
def home_postfix(
    lab: Lab, e2e_workdir: Path, request: pytest.FixtureRequest
) -> Iterator[HomePostfix]:
    workdir = e2e_workdir / "home"
    workdir.mkdir(mode=0o755)
    settings = {
        "mydestination": HOSTNAME,
        # a domain whose mail is deferred: ordinary mail that waits in the queue
        "transport_maps": "inline:{slow.example=retry:slow}",
    }
    if getattr(request, "param", "with bounce transport") == "with bounce transport":
        settings["sender_dependent_default_transport_maps"] = "inline:{<>=bounce-relay:}"
        settings["bounce-relay_destination_rate_delay"] = f"{RATE_DELAY}s"
    with GuardedPostfix(lab.home, workdir, settings=settings) as postfix:
        yield postfix


def write_config(workdir: Path, relay: RelayISP, postfix: HomePostfix) -> Path:
    path = workdir / "ddnsagent.toml"
    queue = ["postqueue", "-c", str(postfix.config_dir), "-j"]
    hold = [sys.executable, "-m", "ddnsagent", "bounces", "hold", "--config", str(path)]
    path.write_text(
        f"""
[agent]
state_dir = "{workdir}/state"
control_socket = "{workdir}/control.sock"
interval = "1h"
jitter = "0s"
retries = 1
[detect]
ipv4 = ["interface:{HOME_IFNAME}"]
accept = "any"
[[provider]]
name = "home"
type = "mydns"
master_id = "{MASTER_ID}"
password = "{PASSWORD}"
url_ipv4 = "{relay.notify_url}"
insecure_http = true
[relay]
log = "{postfix.maillog}"
host = "[{ISP_ADDRESS}]:587"
queue = {json.dumps(queue)}
flush = ["postqueue", "-c", "{postfix.config_dir}", "-f"]
bounce_warn = 0
bounce_limit = {LIMIT}
bounce_hold = {json.dumps(hold)}
"""
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def daemon(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix, e2e_workdir: Path
) -> Iterator[Path]:
    workdir = e2e_workdir / "agent"
    workdir.mkdir()
    with running_daemon(lab, relay, workdir, write_config(workdir, relay, home_postfix)):
        yield workdir


def ddnsagent(workdir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "ddnsagent", *args, "--config", str(workdir / "ddnsagent.toml")]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )


def backscatter(postfix: HomePostfix, tag: str, count: int) -> list[str]:
    """`count` messages to unknown local users, each from a different forged remote sender;
    the senders, whom the bounces go to."""
    senders = [f"victim-{tag}{i}@forged{i % 3}.example" for i in range(count)]
    for i, sender in enumerate(senders):
        postfix.submit(f"nobody-{tag}{i}@{HOSTNAME}", sender=sender, subject=f"spam {tag}{i}")
    return senders


def bounces_at_relay(relay: RelayISP) -> list[str]:
    return [r for d in relay.deliveries() if d.mail_from in ("", "<>") for r in d.rcpt_tos]


def queue_by_name(postfix: HomePostfix) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in postfix.queue():
        out.setdefault(m["queue_name"], []).append(m)
    return out


def wait_for(condition: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(0.2)


def test_backscatter_past_the_limit_is_held_and_released(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix, daemon: Path
) -> None:
    # The attack first: forged bounce lines in the log push the count past the limit, and a
    # non-bounce message waits in the queue (deferred). The hold runs and holds nothing.
    waiting = home_postfix.submit("carol@slow.example", subject="ordinary, deferred")
    home_postfix.wait_queue(
        lambda q: any(m["queue_name"] == "deferred" for m in q), "deferred mail", 30
    )
    stamp = time.strftime("%b %d %H:%M:%S")
    with home_postfix.maillog.open("a") as log:
        for i in range(LIMIT + 2):
            log.write(
                f"{stamp} home postfix/bounce[4{i}]: 0A0{i}2224E9D: sender non-delivery "
                f"notification: 1A6{i}3224EA5\n"
            )
    wait_for(
        lambda: "bounce guard:" in (daemon / "daemon.log").read_text(), "the guard's notice", 30
    )
    queue = queue_by_name(home_postfix)
    assert "hold" not in queue, queue  # the ordinary deferred message was not held
    assert [m["sender"] for m in queue["deferred"]] == [f"alice@{HOSTNAME}"]
    del waiting

    # Real backscatter, with ordinary mail beside it.
    senders = backscatter(home_postfix, "a", 8)
    ordinary = home_postfix.submit_many(3)
    # The ordinary mail goes out through the relay at once; bounces past the limit go on hold.
    wait_for(
        lambda: len({d.message_id for d in relay.deliveries()} & set(ordinary)) == 3,
        "ordinary mail delivered",
        60,
    )
    wait_for(
        lambda: (
            len(bounces_at_relay(relay)) + len(queue_by_name(home_postfix).get("hold", []))
            == len(senders)
        ),
        "every bounce delivered or on hold",
        60,
    )
    time.sleep(RATE_DELAY + 2)  # nothing more leaves while they are held
    held = queue_by_name(home_postfix)["hold"]
    through = bounces_at_relay(relay)
    print(f"{len(through)} bounces reached the relay before the hold, {len(held)} held")
    assert all(m["sender"] == "MAILER-DAEMON" for m in held)
    assert len(through) <= 2, through  # the first at once, at most one more before the hold
    assert len(held) >= len(senders) - 2
    events = relay.events()
    assert not [e for e in events if e["event"] == "mail_refused"], "the relay's limit was reached"
    assert relay.state()["mail_count"][HOME_ADDRESS] < RELAY_LIMIT

    # status shows the episode, with the top recipient domains of the held bounces.
    status = json.loads(ddnsagent(daemon, "status", "--json").stdout)["bounce_guard"]
    assert status["active"] and status["limit"] == LIMIT
    assert status["held"] >= 1
    assert set(status["top_domains"]) <= {"forged0.example", "forged1.example", "forged2.example"}
    assert "doctor" in status["notice"]
    listed = json.loads(ddnsagent(daemon, "bounces", "list", "--json").stdout)
    assert sorted(b["queue_id"] for b in listed["held"]) == sorted(m["queue_id"] for m in held)

    # Naming a message that is not a held bounce releases nothing.
    deferred_id = queue_by_name(home_postfix)["deferred"][0]["queue_id"]
    refused = ddnsagent(daemon, "bounces", "release", deferred_id, "--json")
    assert json.loads(refused.stdout)["refused"].keys() == {deferred_id}, refused.stderr
    # Release: everything held goes, at the admin's pace, and arrives.
    relay.reset_counts()  # an hour later, as far as the relay is concerned
    done = ddnsagent(daemon, "bounces", "release", "--all", "--pace", "0.5s", "--json")
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["done"]) == sorted(m["queue_id"] for m in held)
    try:
        wait_for(
            lambda: len(bounces_at_relay(relay)) == len(senders),
            "every bounce delivered after the release",
            RATE_DELAY * (len(held) + 2) + 30,
        )
    finally:
        print(done.stdout, "".join(home_postfix.maillog_lines()[-40:]), home_postfix.queue())
    assert Counter(bounces_at_relay(relay)) == Counter(senders)  # each once, none lost
    assert Counter(d.message_id for d in relay.deliveries() if d.mail_from not in ("", "<>")) == (
        Counter(ordinary)
    )
    queue = queue_by_name(home_postfix)
    assert "hold" not in queue and [m["sender"] for m in queue.get("deferred", [])] == [
        f"alice@{HOSTNAME}"
    ]


@pytest.mark.parametrize("home_postfix", ["without bounce transport"], indirect=True)
def test_without_the_bounce_transport_bounces_leave_before_any_hold(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix, daemon: Path
) -> None:
    """What the README says the guard does not guarantee: without a transport that makes
    bounces wait, Postfix hands them to the relay within milliseconds, before the daemon has
    even read the log line. The guard still notices and says so, but most are gone already."""
    senders = backscatter(home_postfix, "b", 6)
    wait_for(
        lambda: "bounce guard:" in (daemon / "daemon.log").read_text(), "the guard's notice", 30
    )
    wait_for(
        lambda: (
            len(bounces_at_relay(relay)) + len(queue_by_name(home_postfix).get("hold", []))
            == len(senders)
        ),
        "every bounce sent or held",
        30,
    )
    through = bounces_at_relay(relay)
    print(f"{len(through)} of {len(senders)} bounces reached the relay without the transport")
    assert len(through) > LIMIT + 2  # not kept back (with the transport: at most 2 leave)
    assert set(through) <= set(senders) and len(set(through)) == len(through)
