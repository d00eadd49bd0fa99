"""The bounce guard without Postfix: what a `postqueue -j` line is (pure), what is held and
released, the episode and its notice, root's hold and the release through stub postqueue /
postconf / postsuper programs that record what they were given, and the daemon's side.

`postqueue -j` lines are written as Postfix 3.7's showq prints them (postqueue(1), "JSON OBJECT
FORMAT"): the null sender shows as `empty_address_recipient`, MAILER-DAEMON by default
(src/showq/showq.c, showq_report: `if (*start == 0) start = var_empty_addr`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from ddnsagent import config
from ddnsagent.errors import ConfigError
from ddnsagent.relay import guard, guardview
from ddnsagent.relay.guard import Episode, PostfixView, QueuedBounce
from ddnsagent.relay.watch import RelayWatch
from ddnsagent.store import Guard, Store
from ddnsagent.sync import Agent
from tests.conftest import write_config

VIEW = PostfixView(frozenset({"home.example.net", "example.net"}), "MAILER-DAEMON")


def qline(
    queue_id: str,
    queue_name: str = "active",
    sender: str = "MAILER-DAEMON",
    recipients: tuple[str, ...] = ("victim@forged.example",),
    arrival: int | None = None,
) -> str:
    return json.dumps(
        {
            "queue_name": queue_name,
            "queue_id": queue_id,
            "arrival_time": arrival if arrival is not None else int(time.time()) - 30,
            "message_size": 2192,
            "forced_expire": False,
            "sender": sender,
            "recipients": [{"address": r} for r in recipients],
        }
    )


# -- pure ------------------------------------------------------------------------------------


def test_a_relay_bound_bounce_is_recognised() -> None:
    b = guard.parse_bounce(qline("1AD74224EAB"), VIEW)
    assert b == QueuedBounce("1AD74224EAB", "active", b.arrival, ("victim@forged.example",))  # type: ignore[union-attr]
    assert b is not None and b.domains == ("forged.example",)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (qline("1AD74224EAB", sender="alice@home.example.net"), "a real sender"),
        (qline("1AD74224EAB", sender="mailer-daemon@forged.example"), "someone else's daemon"),
        (qline("1AD74224EAB", recipients=("postmaster@home.example.net",)), "delivered here"),
        (qline("1AD74224EAB", recipients=("a@x.example", "b@EXAMPLE.NET.")), "one of them here"),
        (qline("1AD74224EAB", recipients=("nobody",)), "no domain: local"),
        (qline("1AD74224EAB", recipients=()), "no recipient"),
        (qline("../../etc/x"), "not a queue id"),
        (qline("-d"), "not a queue id: an option"),
        (qline("0A0²"), "not a queue id: not ASCII"),
        (qline("ALL"[:0] or ""), "empty id"),
        ('{"queue_id": 5}', "malformed"),
        ("[1, 2]", "not an object"),
        ("not json", "not json"),
        ("[" * 100_000, "too deep"),
    ],
)
def test_anything_else_is_not_a_bounce_to_hold(line: str, why: str) -> None:
    assert guard.parse_bounce(line, VIEW) is None, why


def test_the_null_sender_name_is_postfixs_setting() -> None:
    view = PostfixView(VIEW.local_domains, "bounce-sender")
    assert guard.parse_bounce(qline("1A", sender="bounce-sender"), view) is not None
    assert guard.parse_bounce(qline("1A", sender=""), view) is not None


def test_only_waiting_bounces_are_held_once_each_oldest_first_and_bounded() -> None:
    bounces = [
        QueuedBounce("C", "deferred", 30.0, ("a@x.example",)),
        QueuedBounce("A", "active", 10.0, ("a@x.example",)),
        QueuedBounce("A", "active", 10.0, ("a@x.example",)),  # listed twice while it moved
        QueuedBounce("H", "hold", 5.0, ("a@x.example",)),
        QueuedBounce("B", "incoming", 20.0, ("a@x.example",)),
        QueuedBounce("M", "maildrop", 1.0, ("a@x.example",)),
    ]
    assert [b.queue_id for b in guard.to_hold(bounces)] == ["A", "B", "C"]
    assert [b.queue_id for b in guard.to_hold(bounces, limit=2)] == ["A", "B"]
    assert [b.queue_id for b in guard.held(bounces)] == ["H"]


def test_release_chooses_held_bounces_only() -> None:
    bounces = [
        QueuedBounce("H1", "hold", 1.0, ("a@x.example",)),
        QueuedBounce("H2", "hold", 2.0, ("a@y.example",)),
        QueuedBounce("W1", "deferred", 3.0, ("a@y.example",)),
    ]
    assert guard.choose_release(bounces, [], every=True) == (["H1", "H2"], {})
    chosen, refused = guard.choose_release(bounces, ["H2", "H2", "W1", "OTHERHELD"], every=False)
    assert chosen == ["H2"]
    assert set(refused) == {"W1", "OTHERHELD"}
    assert "not on hold" in refused["W1"]
    assert "postsuper -H OTHERHELD" in refused["OTHERHELD"]  # someone else's: named, not done


def test_the_episode_starts_once_holds_on_each_bounce_and_ends_after_an_hour() -> None:
    e = Episode(limit=3)
    assert e.observe(3, 100.0, True) is None  # at the limit: not past it
    assert e.observe(4, 101.0, True) == "start"
    assert e.since == 101.0
    assert e.observe(5, 102.0, True) == "hold"
    assert e.observe(5, 103.0, False) is None  # no new bounce: nothing to hold
    assert e.observe(3, 200.0, True) is None  # under the limit: nothing held, still one episode
    assert e.observe(4, 300.0, True) == "hold"  # past it again: no second notice
    assert e.observe(2, 300.0 + 3599, False) is None
    assert e.observe(2, 300.0 + 3600, False) == "end"
    assert e.observe(4, 5000.0, True) == "start"  # a new episode: a new notice
    assert Episode(limit=0).observe(10_000, 1.0, True) is None  # off
    resumed = Episode(limit=3)
    resumed.resume(since=50.0, last=60.0)
    assert resumed.observe(4, 70.0, True) == "hold"  # its notice was given before the restart


def test_the_notice_names_the_domains_the_cause_and_the_check() -> None:
    held = [
        QueuedBounce(f"{i}", "hold", float(i), (f"v@{d}",))
        for i, d in enumerate(["b.example", "a.example", "b.example", "c.example", "d.example"])
    ]
    assert guard.top_domains(held) == ["b.example", "a.example", "c.example"]
    text = guard.notice(40, 30, held)
    for part in (
        "40 bounces",
        "limit 30",
        "5 held",
        "b.example, a.example, c.example",
        "wildcard MX",
        "reject_unknown_recipient_domain",
        "ddnsagent doctor",
        "never deleted",
        "bounces release",
    ):
        assert part in text, part


def test_config_dir_comes_from_the_queue_command() -> None:
    assert guard.config_dir(["postqueue", "-c", "/etc/postfix-out", "-j"]) == (
        "-c",
        "/etc/postfix-out",
    )
    assert guard.config_dir(["postqueue", "-j"]) == ()


def test_status_view() -> None:
    shown = guardview.status_json(30, None)
    assert shown == {
        "limit": 30,
        "enabled": True,
        "active": False,
        "since": None,
        "held": 0,
        "top_domains": [],
        "notice": None,
        "problem": None,
        "time": None,
    }
    assert guardview.status_lines(shown) == [
        "bounce guard: watching (holds bounces past 30 an hour)"
    ]
    record = Guard(since=1000.0, time=1001.0, held=4, domains=["x.example"], notice="N")
    lines = guardview.status_lines(guardview.status_json(30, record))
    assert lines[0].startswith("bounce guard: ON since")
    assert "4 bounces on hold (top recipient domains: x.example)" in lines[1]
    assert lines[2] == "  N"
    assert guardview.status_lines(guardview.status_json(0, None)) == [
        "bounce guard: off ([relay] bounce_limit = 0)"
    ]


# -- root's side, through stub programs -------------------------------------------------------


@pytest.fixture
def postfix_stubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """postconf, postqueue and postsuper on PATH: each records its argv (and stdin) in
    `calls`; postqueue prints `queue.json`; postconf answers like `postconf -x -h` does."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    for name, body in {
        # myhostname, mydestination, the two virtual domain lists, empty_address_recipient
        "postconf": "printf 'home.example.net\\nhome.example.net, localhost\\n\\n\\n"
        "MAILER-DAEMON\\n'",
        "postqueue": f'[ "$1" = "-c" ] && shift 2; [ "$1" = "-j" ] && cat {tmp_path}/queue.json',
        "postsuper": f"cat >> {tmp_path}/stdin",
    }.items():
        stub = bindir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n{body}\nexit 0\n')
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    (tmp_path / "queue.json").write_text(
        "\n".join(
            [
                qline("0A0422", "active"),  # a bounce waiting for the relay: held
                qline("0B0422", "deferred", recipients=("x@forged2.example",)),  # held
                qline("0C0422", "hold"),  # held already
                qline("0D0422", "deferred", sender="alice@home.example.net"),  # ordinary mail
                qline("0E0422", "active", recipients=("root@home.example.net",)),  # local
                qline("0F0422", "active", sender="MAILER-DAEMON@forged.example"),  # not ours
            ]
        )
        + "\n"
    )
    return tmp_path


def calls(where: Path) -> list[str]:
    return (where / "calls").read_text().splitlines()


def test_root_holds_only_relay_bound_bounces_it_found_itself(postfix_stubs: Path) -> None:
    queue = ["postqueue", "-c", "/etc/postfix-out", "-j"]
    done = asyncio.run(guard.hold_now(queue))
    assert done.problem is None
    assert done.acted == ["0A0422", "0B0422"]
    assert (postfix_stubs / "stdin").read_text() == "0A0422\n0B0422\n"
    assert "postsuper -c /etc/postfix-out -h -" in calls(postfix_stubs)
    assert "postconf -c /etc/postfix-out -x -h myhostname mydestination" in "\n".join(
        calls(postfix_stubs)
    )


def test_nothing_to_hold_runs_no_postsuper(postfix_stubs: Path) -> None:
    (postfix_stubs / "queue.json").write_text(qline("0D0422", "deferred", sender="a@b.example"))
    done = asyncio.run(guard.hold_now(["postqueue", "-j"]))
    assert done.acted == [] and done.problem is None
    assert not any(c.startswith("postsuper") for c in calls(postfix_stubs))


def test_an_unreadable_queue_holds_nothing(postfix_stubs: Path) -> None:
    done = asyncio.run(guard.hold_now([str(postfix_stubs / "missing-postqueue"), "-j"]))
    assert done.problem is not None and "cannot be read" in done.problem
    assert not (postfix_stubs / "stdin").exists()


def test_release_at_a_pace_one_by_one(postfix_stubs: Path) -> None:
    (postfix_stubs / "queue.json").write_text(
        "\n".join(
            [
                qline("0C0422", "hold"),
                qline("0C0423", "hold"),
                qline("0D0422", "hold", sender="a@b.example"),
            ]
        )
        + "\n"
    )
    said: list[str] = []
    started = time.monotonic()
    done = asyncio.run(guard.release(["postqueue", "-j"], [], True, 0.3, said.append))
    assert time.monotonic() - started >= 0.3
    assert done.acted == ["0C0422", "0C0423"] and said == ["0C0422", "0C0423"]
    supers = [c for c in calls(postfix_stubs) if c.startswith("postsuper")]
    # one call per message, requeued from the hold queue only
    assert supers == ["postsuper -r - hold", "postsuper -r - hold"]
    assert (postfix_stubs / "stdin").read_text() == "0C0422\n0C0423\n"  # never 0D0422


# -- the configuration and the state -----------------------------------------------------------


def relay_config(tmp_path: Path, extra: str) -> Any:
    path = write_config(
        tmp_path,
        f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = ["command:/bin/true"]\n'
        f'[relay]\nlog = "{tmp_path}/mail.log"\nhost = "relay.example.net"\n{extra}',
    )
    return config.load(path)


def test_settings_defaults_and_mistakes(tmp_path: Path) -> None:
    relay = relay_config(tmp_path, "").relay
    assert relay.bounce_limit == 30
    assert relay.bounce_hold == ("systemctl", "start", "ddnsagent-bounce-hold.service")
    with pytest.raises(ConfigError, match="bounce_limit"):
        relay_config(tmp_path, "bounce_limit = -1\n")
    with pytest.raises(ConfigError, match="bounce_hold"):
        relay_config(tmp_path, "bounce_hold = []\n")


def test_the_guard_record_survives_the_store_and_a_wrong_one_is_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    with store.edit() as state:
        state.guard = Guard(since=5.0, time=6.0, held=3, domains=["a.example"], notice="n")
    assert store.load().guard == Guard(5.0, 6.0, 3, ["a.example"], "n", None)
    data = json.loads((tmp_path / "state" / "state.json").read_text())
    data["guard"]["held"] = "many"
    (tmp_path / "state" / "state.json").write_text(json.dumps(data))
    assert store.load().guard is None


# -- the daemon's side --------------------------------------------------------------------------


def bounce_line(n: int) -> str:
    stamp = time.strftime("%b %d %H:%M:%S")
    return (
        f"{stamp} myhost postfix/bounce[2{n}]: 0A0{n}2224E9D: sender non-delivery "
        f"notification: 1A6{n}3224EA5\n"
    )


class Events:
    def __init__(self) -> None:
        self.notices: list[str] = []

    def relay_signal(self, kind: str) -> None:
        pass

    def bounce_guard(self, text: str) -> None:
        self.notices.append(text)


def test_past_the_limit_the_daemon_asks_root_to_hold_and_says_so_once(
    world: Any, postfix_stubs: Path
) -> None:
    cfg, _dyn, maillog, tmp = world
    cfg = with_hold(cfg, tmp, "[ $# -eq 0 ]\n", bounce_limit=2, queue=("postqueue", "-j"))
    events = Events()

    async def scenario() -> None:
        watch = RelayWatch(Agent(cfg), events=events)
        task = asyncio.ensure_future(watch.run())
        await asyncio.sleep(0.3)
        with maillog.open("a") as f:
            f.write(bounce_line(1) + bounce_line(2))  # at the limit: nothing
        await asyncio.sleep(2.5)
        assert not (tmp / "holds").exists()
        with maillog.open("a") as f:
            f.write(bounce_line(3))  # past it: hold, and the notice
        await _wait(lambda: len(events.notices) == 1)
        with maillog.open("a") as f:
            f.write(bounce_line(4) + bounce_line(5))  # each new bounce: hold again
        await _wait(lambda: _lines(tmp / "holds") >= 2)
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert 2 <= _lines(tmp / "holds") <= 3  # the running hold covered one of them
    assert len(events.notices) == 1  # one notice per episode
    assert "1 held now" in events.notices[0] and "forged.example" in events.notices[0]
    record = Store(cfg.agent.state_dir).load().guard
    assert record is not None and record.since is not None
    assert record.held == 1 and record.domains == ["forged.example"]


def with_hold(cfg: Any, tmp: Path, then: str = "", **relay: Any) -> Any:
    """`cfg` with `relay`'s [relay] settings and bounce_hold a script that notes each run in
    tmp/holds, then runs `then`."""
    hold = tmp / "hold"
    hold.write_text(f"#!/bin/sh\necho run >> {tmp}/holds\n{then}")
    hold.chmod(0o755)
    changed = dataclasses.replace(cfg.relay, bounce_hold=(str(hold),), **relay)
    return dataclasses.replace(cfg, relay=changed)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def _wait(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.05)


# -- the command line ----------------------------------------------------------------------------


def cli_config(tmp_path: Path, relay: bool = True) -> Path:
    text = f'[agent]\nstate_dir = "{tmp_path}/state"\n[detect]\nipv4 = ["command:/bin/true"]\n'
    if relay:
        text += (
            f'[relay]\nlog = "{tmp_path}/mail.log"\nhost = "relay.example.net"\n'
            'queue = ["postqueue", "-j"]\nbounce_limit = 5\n'
        )
    return write_config(tmp_path, text)


def test_status_carries_the_guard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ddnsagent import cli

    path = cli_config(tmp_path)
    with Store(tmp_path / "state").edit() as state:
        state.guard = Guard(since=1000.0, time=1001.0, held=2, domains=["f.example"], notice="N")
    assert cli.main(["status", "--json", "--config", str(path)]) == 0
    shown = json.loads(capsys.readouterr().out)["bounce_guard"]
    assert shown["active"] and shown["limit"] == 5 and shown["held"] == 2
    assert shown["top_domains"] == ["f.example"] and shown["notice"] == "N"
    assert cli.main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "bounce guard: ON since" in out and "2 bounces on hold" in out
    bare = cli_config(tmp_path, relay=False)
    assert cli.main(["status", "--json", "--config", str(bare)]) == 0
    assert json.loads(capsys.readouterr().out)["bounce_guard"] is None


def test_bounces_list_and_release_from_the_command_line(
    tmp_path: Path, postfix_stubs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ddnsagent import cli

    path = cli_config(tmp_path)
    assert cli.main(["bounces", "list", "--json", "--config", str(path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [b["queue_id"] for b in listed["held"]] == ["0C0422"]
    assert sorted(b["queue_id"] for b in listed["waiting"]) == ["0A0422", "0B0422"]
    assert cli.main(["bounces", "list", "--config", str(path)]) == 0
    assert "1 bounces on hold, 2 waiting" in capsys.readouterr().out
    if os.geteuid() != 0:
        assert cli.main(["bounces", "release", "--all", "--config", str(path)]) == 2
        assert "needs root" in capsys.readouterr().err
        return
    # a bad queue id, a bad pace: refused before anything runs
    assert cli.main(["bounces", "release", "../x", "--config", str(path)]) == 2
    assert "not a Postfix queue id" in capsys.readouterr().err
    assert cli.main(["bounces", "release", "--all", "--pace", "soon", "--config", str(path)]) == 2
    assert "--pace 'soon'" in capsys.readouterr().err
    assert not (postfix_stubs / "stdin").exists()
    # an ordinary message named: refused, nothing done (exit 2)
    assert cli.main(["bounces", "release", "0D0422", "--config", str(path)]) == 2
    assert "not released: 0D0422" in capsys.readouterr().out
    assert not (postfix_stubs / "stdin").exists()
    assert cli.main(["bounces", "release", "--all", "--pace", "0", "--config", str(path)]) == 0
    assert (postfix_stubs / "stdin").read_text() == "0C0422\n"
    assert "released 1 bounces" in capsys.readouterr().out
    assert cli.main(["bounces", "hold", "--json", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["done"] == ["0A0422", "0B0422"]


def test_a_restart_inside_an_episode_does_not_notify_again(world: Any, postfix_stubs: Path) -> None:
    cfg, _dyn, maillog, tmp = world
    cfg = with_hold(cfg, tmp, bounce_limit=1)
    with Store(cfg.agent.state_dir).edit() as state:
        state.guard = Guard(since=time.time() - 60, time=time.time() - 60, notice="said")
    events = Events()

    async def scenario() -> None:
        watch = RelayWatch(Agent(cfg), events=events)
        task = asyncio.ensure_future(watch.run())
        await asyncio.sleep(0.3)
        with maillog.open("a") as f:
            f.write(bounce_line(1) + bounce_line(2))
        await _wait(lambda: _lines(tmp / "holds") >= 1)
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert events.notices == []  # held, but the episode's notice was given before the restart


def test_without_postfixs_domains_root_holds_nothing(postfix_stubs: Path) -> None:
    """A local bounce would look bound for the relay if postconf could not say what is local."""
    (postfix_stubs / "bin" / "postconf").write_text("#!/bin/sh\necho 'fatal: no' >&2\nexit 1\n")
    done = asyncio.run(guard.hold_now(["postqueue", "-j"]))
    assert done.acted == [] and done.problem is not None
    assert "domains are unknown" in done.problem
    assert not (postfix_stubs / "stdin").exists()


def test_json_and_config_before_the_command(
    tmp_path: Path, postfix_stubs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ddnsagent import cli

    path = cli_config(tmp_path)
    assert cli.main(["--json", "--config", str(path), "bounces", "list"]) == 0
    assert [b["queue_id"] for b in json.loads(capsys.readouterr().out)["held"]] == ["0C0422"]
