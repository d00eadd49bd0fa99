"""The address history (issue 14 part 4): addresses changed through real syncs against the
local fakes (a web echo, a strict dyndns2 server, a zone file), from a hook script and from the
reconnect procedure; the bound; `history` with --since, --family, --at and --json; wrong entries
dropped with one warning; syncs of several processes at once under the state lock."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ddnsagent import config as config_mod
from ddnsagent import history, safefile
from ddnsagent import store as store_mod
from ddnsagent.relay.reconnect import reconnect
from ddnsagent.relay.watch import RelayWatch
from ddnsagent.store import (
    FILENAME,
    HISTORY_FILENAME,
    HISTORY_LIMIT,
    AgentState,
    Detected,
    LogPosition,
    Store,
)
from ddnsagent.sync import Agent, SyncOptions
from tests.conftest import (
    DYN_HOST,
    DYN_PASSWORD,
    DYN_USER,
    FIRST,
    child_env,
    config_text,
    ddnsagent,
    dyndns2_provider,
    sync,
    write_config,
)
from tests.fakes import Dyndns2Server, EchoServer
from tests.relay.conftest import incident_line, runs, sent_line, wait
from tests.relay.conftest import world as world  # the relay watchdog's world, reused

SECOND = "198.51.100.23"
ZONE = """$TTL 300
@ IN SOA ns.example.net. hostmaster.example.net. ( 2024010101 3600 600 86400 300 )
@ IN NS ns.example.net.
ns IN A 192.0.2.1
"""
ADDRESS_KEYS = {
    "family",
    "address",
    "first_seen",
    "last_seen",
    "until",
    "current",
    "source",
    "detail",
    "sent",
}
EVENT_KEYS = {"time", "kind", "action", "reason", "old", "new", "family"}


def shown(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """`history --json ARGS` of a child process, parsed; it must succeed without a word."""
    run = ddnsagent("history", "--json", "--config", config, *args, env=env)
    assert run.returncode == 0 and run.stderr == "", run.stdout + run.stderr
    return json.loads(run.stdout)


def iso(t: float) -> str:
    """`t` as the local date-time a user would type, to the microsecond."""
    return datetime.fromtimestamp(t).isoformat(sep=" ")


@pytest.fixture
def dyn_config(tmp_path: Path, echo: EchoServer) -> Any:
    with Dyndns2Server({DYN_USER: DYN_PASSWORD}, {DYN_HOST: None}) as dyn:
        zone = tmp_path / "db.example.net"
        zone.write_text(ZONE)
        providers = dyndns2_provider(dyn.update_url) + (
            f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{zone}"\n'
            'origin = "example.net"\nnames = ["@"]\ncheck = []\n'
        )
        agent = f'control_socket = "{tmp_path / "control.sock"}"\n'
        text = config_text(tmp_path / "state", echo.echo_url, providers, agent=agent)
        yield write_config(tmp_path, text), echo, dyn


# -- recorded through real syncs ----------------------------------------------------------------


def test_changes_through_real_syncs_keep_source_targets_and_times(dyn_config: Any) -> None:
    config, echo, dyn = dyn_config
    store = Store.of(config_mod.load(config).agent)
    assert sync(config).exit_code == 0
    assert sync(config).exit_code == 0  # the same address again: no entry, no sends
    held_first = time.time()
    file = store.directory / HISTORY_FILENAME
    before, was = file.read_bytes(), file.stat()
    time.sleep(1.1)  # whole seconds in the history: the next sighting is a later one
    assert sync(config).exit_code == 0
    # A re-detection writes nothing into the history: its file is not even rewritten.
    assert file.read_bytes() == before and (file.stat().st_ino, file.stat().st_mtime_ns) == (
        was.st_ino,
        was.st_mtime_ns,
    )
    assert "history" not in json.loads((store.directory / FILENAME).read_text())
    echo.answer = SECOND + "\n"
    report = sync(config)
    assert report.changed == [4]
    assert dyn.record(DYN_HOST).ipv4 == SECOND

    out = shown(config)
    assert out["schema"] == 1 and out["limit"] == HISTORY_LIMIT and out["events"] == []
    old, new = out["addresses"]
    assert {*old} == {*new} == ADDRESS_KEYS
    url = f"web:{echo.echo_url}"
    assert (old["address"], old["source"], old["detail"]) == (FIRST, "web", url)
    assert (new["address"], new["source"], new["detail"]) == (SECOND, "web", url)
    assert (
        {s["target"] for s in old["sent"]}
        == {s["target"] for s in new["sent"]}
        == {
            "dyn",
            "zone:local",
        }
    )
    # Seen by the third sync, a second after the first; replaced when the fourth saw SECOND.
    assert old["first_seen"] < held_first < old["last_seen"] <= old["until"]
    assert old["until"] == new["first_seen"] and not old["current"]
    assert new["current"] and new["until"] is None
    for entry in (old, new):
        assert all(
            entry["first_seen"] <= s["time"] <= entry["first_seen"] + 5 for s in entry["sent"]
        )

    # "Which address did we have then?": FIRST, seen before and after that moment.
    at = shown(config, "--at", iso(held_first))
    assert at["held"]["ipv4"]["address"] == FIRST and at["held"]["ipv4"]["confirmed"] is True
    assert "ipv6" in at["held"] and at["held"]["ipv6"] is None
    text = ddnsagent("history", "--at", iso(held_first), "--config", config)
    assert text.returncode == 0 and f"ipv4 at {iso(held_first)[:19]}: {FIRST}" in text.stdout

    table = ddnsagent("history", "--config", config)
    assert table.returncode == 0 and table.stderr == ""
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "(local)", "KIND", "WHAT"]
    kinds = [line.split()[2] for line in lines[1:]]
    assert kinds == ["ipv4", "sent", "sent", "ipv4", "sent", "sent"], table.stdout
    assert f"{FIRST}  from web ({url})" in lines[1] and f"{SECOND} accepted by dyn" in table.stdout

    status = json.loads(ddnsagent("status", "--json", "--config", config).stdout)
    assert status["history"]["addresses"] == 2 and status["history"]["limit"] == HISTORY_LIMIT
    assert status["history"]["oldest"] == old["first_seen"]
    plain = ddnsagent("status", "--config", config).stdout
    assert "history: 2 addresses since" in plain


def test_a_dry_run_records_nothing(dyn_config: Any) -> None:
    config, _echo, _dyn = dyn_config
    sync(config, dry_run=True)
    assert shown(config)["addresses"] == []
    assert ddnsagent("history", "--config", config).stdout == "no address history yet\n"


def test_an_address_from_a_hook_script_says_so(dyn_config: Any, tmp_path: Path) -> None:
    config, _echo, dyn = dyn_config
    env = child_env(PPP_IFACE="ppp0", PPP_LOCAL=SECOND)  # as Debian's ip-up.d wrapper hands it
    run = ddnsagent("hook", "ip-up", "--config", config, env=env)
    assert run.returncode == 0 and "synced (no daemon running)" in run.stdout, run.stderr
    assert dyn.record(DYN_HOST).ipv4 == SECOND
    (entry,) = shown(config)["addresses"]
    assert (entry["address"], entry["source"], entry["detail"]) == (SECOND, "hook", "hook pppd")
    assert {s["target"] for s in entry["sent"]} == {"dyn", "zone:local"}
    # notify-now --address by hand is "given"
    run = ddnsagent("notify-now", "--local", "--address", FIRST, "--config", config)
    assert run.returncode == 0, run.stderr
    given = shown(config)["addresses"][-1]
    assert (given["source"], given["detail"]) == ("given", "notify-now --address")


def test_a_reconnect_and_the_relay_incidents_share_the_time_line(world: Any) -> None:
    """The watchdog's scenario: a refusal naming our address, confirmed by the queue, a
    reconnect to a new address, the re-sent update, the relay accepting mail again."""
    cfg, dyn, maillog, tmp = world

    async def scenario() -> None:
        agent = Agent(cfg)
        await agent.sync(SyncOptions())
        watch = RelayWatch(agent)
        task = asyncio.ensure_future(watch.run())
        await asyncio.sleep(0.3)  # the follower starts at the end of the log
        with maillog.open("a") as f:
            f.write(incident_line("198.51.100.7"))
        await wait(lambda: runs(tmp, "flushes") == 1)
        with maillog.open("a") as f:
            f.write(sent_line())
        await wait(lambda: Store.of(cfg.agent).load().relay.last_recovery is not None)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert dyn.record("home.example.net").ipv4 == "198.51.100.8"
    state = Store.of(cfg.agent).load()
    old, new = state.history.addresses
    assert (old.address, old.source) == ("198.51.100.7", "command")
    assert (new.address, new.source) == ("198.51.100.8", "reconnect")
    assert set(old.sent) == set(new.sent) == {"dd"}
    kinds = [(e.kind, e.action) for e in state.history.events]
    assert kinds == [("relay", "reconnect"), ("reconnect", "ok"), ("recovery", "recovered")]
    signal, done, recovered = state.history.events
    assert "too much mail from 198.51.100.7" in signal.reason
    assert (done.old, done.new, done.family) == ("198.51.100.7", "198.51.100.8", 4)
    assert recovered.reason.startswith("after ")
    assert signal.time <= done.time and new.first <= done.time

    out = history.periods(state)
    assert out[0].until == new.first
    table = ddnsagent("history", "--config", cfg.file)
    lines = table.stdout.splitlines()[1:]
    order = [line.split()[2] for line in lines]
    assert order.index("relay") < order.index("reconnect") < order.index("recovery")
    assert order[0] == "ipv4" and order.count("ipv4") == 2
    assert "ok 198.51.100.7 -> 198.51.100.8" in table.stdout
    # --family 6: reconnects renew IPv4 and are left out; the relay's signals concern both.
    six = shown(cfg.file, "--family", "6")
    assert six["addresses"] == []
    assert [e["kind"] for e in six["events"]] == ["relay", "recovery"]
    assert all({*e} == EVENT_KEYS for e in shown(cfg.file)["events"])


def test_the_address_a_reconnect_brought_is_its_even_when_pppds_hook_saw_it_first(
    world: Any,
) -> None:
    """pppd runs ip-up.d during the reconnect: its hook syncs the new address before the
    procedure's own sync does. The entry still says it came from the reconnect."""
    cfg, dyn, _maillog, tmp = world
    hook = tmp / "ppp-reconnect"
    hook.write_text(
        f"#!/bin/sh\necho 198.51.100.8 > {tmp}/wan\n"
        f"PPP_IFACE=ppp0 PPP_LOCAL=198.51.100.8 {sys.executable} -m ddnsagent "
        f"hook ip-up --config {cfg.file}\n"
    )
    hook.chmod(0o755)
    asyncio.run(Agent(cfg).sync(SyncOptions()))
    outcome = asyncio.run(reconnect(Agent(cfg), "test"))
    assert outcome.done and outcome.new == "198.51.100.8", outcome.message
    state = Store.of(cfg.agent).load()
    new = state.history.addresses[-1]
    assert (new.address, new.source, new.detail) == ("198.51.100.8", "reconnect", "hook pppd")
    assert dyn.record("home.example.net").ipv4 == "198.51.100.8"
    (event,) = state.history.events
    assert (event.kind, event.action, event.reason) == ("reconnect", "ok", "test")


def test_an_unchanged_reconnect_is_on_the_time_line_too(world: Any) -> None:
    cfg, _dyn, _maillog, tmp = world
    (tmp / "ppp-reconnect").write_text("#!/bin/sh\nexit 3\n")
    object.__setattr__(cfg.reconnect, "wait_for_address", 1.0)
    asyncio.run(Agent(cfg).sync(SyncOptions()))
    asyncio.run(reconnect(Agent(cfg), "test"))
    state = Store.of(cfg.agent).load()
    (event,) = state.history.events
    assert (event.action, event.old) == ("unchanged", "198.51.100.7")
    assert len(state.history.addresses) == 1 and state.history.addresses[0].source == "command"


# -- the bound and the state file ---------------------------------------------------------------


def _fill(state: AgentState, count: int, start: float, family: int = 4) -> None:
    """`count` address changes an hour apart from `start`, as syncs would have noted them."""
    for i in range(count):
        now = start + i * 3600
        address = f"203.0.113.{i % 250 + 1}" if i % 2 else f"198.51.100.{i % 250 + 1}"
        history.note_detection(state, family, address, "interface", "interface:ppp0", now)
        state.detected[family] = Detected(address, now, "interface:ppp0", now + 3000)
        history.note_sent(state, family, address, "dd", now + 1)
        history.note_sent(state, family, address, "zone:local", now + 2)


def test_the_501st_address_drops_the_oldest(dyn_config: Any) -> None:
    config, echo, _dyn = dyn_config
    store = Store.of(config_mod.load(config).agent)
    start = time.time() - 600 * 3600
    with store.edit() as state:
        _fill(state, HISTORY_LIMIT, start)
        for i in range(HISTORY_LIMIT + 1):
            history.note_event(state, "relay", "reconnect", f"incident {i}", start + i)
    oldest = store.load().history.addresses[0]
    assert oldest.first == int(start) and len(store.load().history.addresses) == HISTORY_LIMIT
    echo.answer = SECOND + "\n"
    assert sync(config).changed == [4]  # the 501st, through a real sync
    kept = store.load().history
    assert len(kept.addresses) == HISTORY_LIMIT
    assert kept.addresses[0].first == int(start) + 3600  # the oldest went
    assert kept.addresses[-1].address == SECOND and kept.addresses[-1].source == "web"
    assert kept.addresses[-2].last == int(start + (HISTORY_LIMIT - 1) * 3600 + 3000)
    assert len(kept.events) == HISTORY_LIMIT and kept.events[0].reason == "incident 1"
    saved = json.loads((store.directory / HISTORY_FILENAME).read_text())  # as written
    assert len(saved["addresses"]) == len(saved["events"]) == HISTORY_LIMIT
    table = ddnsagent("history", "--config", config).stdout
    assert f"(the last {HISTORY_LIMIT} addresses are kept; older ones are gone)" in table
    # The sizes README states: 500 addresses with two targets each, 500 incidents, in their
    # own file; state.json, which every sync and position save rewrites, stays small.
    size = (store.directory / HISTORY_FILENAME).stat().st_size
    assert size < 256 * 1024, size
    assert (store.directory / FILENAME).stat().st_size < 4096


def test_a_state_without_history_loads_and_its_address_opens_the_history(
    dyn_config: Any,
) -> None:
    """A state an earlier version wrote has no history: it loads without a warning, and the
    address it knew becomes the first entry, first seen when that state says."""
    config, echo, _dyn = dyn_config
    sync(config)
    path = Store.of(config_mod.load(config).agent).directory / FILENAME
    data = json.loads(path.read_text())
    since = data["detected"]["4"]["since"] - 86400
    data["detected"]["4"]["since"] = since
    del data["history_index"]
    path.write_text(json.dumps(data))
    (path.parent / HISTORY_FILENAME).unlink()
    status = ddnsagent("status", "--json", "--config", config)
    assert status.returncode == 0 and status.stderr == ""
    assert json.loads(status.stdout)["history"]["addresses"] == 0
    sync(config)  # the same address: the history opens with it
    (entry,) = shown(config)["addresses"]
    assert entry["address"] == FIRST and entry["first_seen"] == int(since)
    assert entry["source"] == "web" and entry["current"]
    echo.answer = SECOND + "\n"
    sync(config)
    assert [a["address"] for a in shown(config)["addresses"]] == [FIRST, SECOND]


def test_wrong_entries_are_dropped_with_one_warning_and_the_rest_kept(dyn_config: Any) -> None:
    config, echo, _dyn = dyn_config
    sync(config)
    echo.answer = SECOND + "\n"
    sync(config)
    path = Store.of(config_mod.load(config).agent).directory / HISTORY_FILENAME
    data = json.loads(path.read_text())
    good = data["addresses"][1]
    data["addresses"][0]["first"] = "yesterday"
    data["addresses"].append({**good, "family": 5})
    data["addresses"].append({**good, "address": 7})
    data["addresses"][1]["sent"]["dyn"] = "soon"
    data["events"] = [
        {"time": "noon", "kind": "relay", "action": "x", "reason": "y"},
        {"time": 1, "kind": "relay", "action": "reconnect", "reason": "kept"},
    ]
    path.write_text(json.dumps(data))
    run = ddnsagent("history", "--json", "--config", config)
    assert run.returncode == 0 and "Traceback" not in run.stderr
    (warning,) = run.stderr.strip().splitlines()  # one warning names every dropped entry
    for where in (
        "history.addresses[0] (first: str",
        "history.addresses[1].sent.dyn",
        "history.addresses[2] (family: 5 is not 4 or 6)",
        "history.addresses[3] (address: int",
        "history.events[0] (time: str",
    ):
        assert where in warning, warning
    out = json.loads(run.stdout)
    (entry,) = out["addresses"]
    assert entry["address"] == SECOND and [s["target"] for s in entry["sent"]] == ["zone:local"]
    assert [e["reason"] for e in out["events"]] == ["kept"]
    history_not_a_list = {**data, "addresses": {}, "events": 3}
    path.write_text(json.dumps(history_not_a_list))
    run = ddnsagent("history", "--config", config)
    assert run.returncode == 0 and "history.addresses (not a list" in run.stderr
    assert "history.events (not a list" in run.stderr


def test_syncs_of_several_processes_at_once_lose_no_entry(dyn_config: Any) -> None:
    """Four `notify-now --local` with four addresses at once: they queue on the state lock, so
    the history holds the four changes in the order they got the lock, none lost."""
    config, _echo, dyn = dyn_config
    addresses = [f"203.0.113.{n}" for n in (10, 11, 12, 13)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ddnsagent",
                "notify-now",
                "--local",
                "--address",
                a,
                "--config",
                str(config),
            ],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in addresses
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, out + err
    entries = shown(config)["addresses"]
    assert sorted(e["address"] for e in entries) == addresses
    assert all([s["target"] for s in e["sent"]].count("dyn") == 1 for e in entries)
    for before, after in itertools.pairwise(entries):
        assert before["until"] == after["first_seen"] >= before["first_seen"]
    assert [e["current"] for e in entries] == [False, False, False, True]
    assert dyn.record(DYN_HOST).ipv4 == entries[-1]["address"]
    assert len(dyn.requests) == 4


# -- reading: --since, --family, --at, the forms of a date --------------------------------------

TOKYO = child_env(TZ="Asia/Tokyo")


def _jst(text: str) -> float:
    """A Tokyo wall-clock time (UTC+9, no daylight saving) as Unix seconds."""
    return datetime.fromisoformat(text + "+09:00").timestamp()


@pytest.fixture
def timeline(dyn_config: Any) -> Path:
    """On the 22nd and 23rd (Tokyo time): A, then B from 03:10:00 on the 23rd (A last seen at
    03:05:00), an IPv6 address all along, and a relay incident at 03:09:30."""
    config, _echo, _dyn = dyn_config
    store = Store.of(config_mod.load(config).agent)
    with store.edit() as state:
        for family, address, first, checked in (
            (6, "2001:db8::7", "2026-11-22T09:00:00", "2026-11-23T04:00:00"),
            (4, "198.51.100.40", "2026-11-21T09:00:00", "2026-11-22T09:55:00"),
            (4, "203.0.113.41", "2026-11-22T10:00:00", "2026-11-23T03:05:00"),
            (4, "203.0.113.42", "2026-11-23T03:10:00", "2026-11-23T04:00:00"),
        ):
            history.note_detection(
                state, family, address, "interface", "interface:ppp0", _jst(first)
            )
            state.detected[family] = Detected(address, _jst(first), "interface:ppp0", _jst(checked))
            history.note_sent(state, family, address, "dd", _jst(first) + 2)
        history.note_event(
            state, "relay", "reconnect", "too much mail", _jst("2026-11-23T03:09:30")
        )
        history.note_event(state, "relay", "reconnect", "earlier", _jst("2026-11-21T12:00:00"))
    return config


def test_at_names_the_address_held_then_in_local_time_or_with_an_offset(timeline: Path) -> None:
    for moment in (
        "2026-11-23 03:12",
        "2026-11-23T03:12:00",
        "2026-11-23T03:12:00+09:00",
        "2026-11-22T18:12:00Z",
        "2026-11-22T19:12:00+01:00",
    ):
        held = shown(timeline, "--at", moment, "--family", "4", env=TOKYO)["held"]
        assert list(held) == ["ipv4"], moment
        assert held["ipv4"]["address"] == "203.0.113.42", moment
        assert held["ipv4"]["confirmed"] is True
    # Between A's last sighting and B's first: A, said not to be certain.
    gap = shown(timeline, "--at", "2026-11-23 03:07", env=TOKYO)["held"]
    assert gap["ipv4"]["address"] == "203.0.113.41" and gap["ipv4"]["confirmed"] is False
    assert gap["ipv6"]["address"] == "2001:db8::7" and gap["ipv6"]["confirmed"] is True
    text = ddnsagent("history", "--config", timeline, "--at", "2026-11-23 03:07", env=TOKYO)
    assert "ipv4 at 2026-11-23 03:07:00: 203.0.113.41" in text.stdout
    assert "203.0.113.42 first seen 2026-11-23 03:10:00" in text.stdout
    assert "not certain" in text.stdout
    # A date alone is its midnight; before the history there is nothing to say.
    midnight = shown(timeline, "--at", "2026-11-23", env=TOKYO)["held"]
    assert midnight["ipv4"]["address"] == "203.0.113.41"
    early = ddnsagent("history", "--config", timeline, "--at", "2026-11-20", env=TOKYO)
    assert "ipv4 at 2026-11-20 00:00:00: unknown (its history starts 2026-11-21 09:00:00)" in (
        early.stdout
    )
    assert shown(timeline, "--at", "2026-11-20", env=TOKYO)["held"] == {"ipv4": None, "ipv6": None}


def test_since_and_family_filter_the_time_line(timeline: Path) -> None:
    out = shown(timeline, "--since", "2026-11-23", env=TOKYO)
    # The address held at midnight is shown (its time runs into the period), the older not.
    assert [a["address"] for a in out["addresses"]] == [
        "2001:db8::7",
        "203.0.113.41",
        "203.0.113.42",
    ]
    assert [e["reason"] for e in out["events"]] == ["too much mail"]
    four = shown(timeline, "--since", "2026-11-23 03:08", "--family", "4", env=TOKYO)
    assert [a["address"] for a in four["addresses"]] == ["203.0.113.41", "203.0.113.42"]
    six = shown(timeline, "--family", "6", env=TOKYO)
    assert [a["address"] for a in six["addresses"]] == ["2001:db8::7"]
    table = ddnsagent("history", "--since", "2026-11-23 03:08", "--config", timeline, env=TOKYO)
    rows = table.stdout.splitlines()[1:]
    assert [r.split()[1:3] for r in rows] == [
        ["09:00:00", "ipv6"],  # held since the 22nd
        ["10:00:00", "ipv4"],  # held since the 22nd, replaced at 03:10
        ["03:09:30", "relay"],
        ["03:10:00", "ipv4"],
        ["03:10:02", "sent"],
    ], table.stdout
    assert "203.0.113.41  from interface (interface:ppp0); last seen 2026-11-23 03:05:00" in (
        table.stdout
    )
    assert "replaced by 2026-11-23 03:10:00" in table.stdout
    late = ddnsagent("history", "--since", "2030-01-01", "--family", "6", "--config", timeline)
    assert late.returncode == 0 and late.stdout == "nothing in that time\n"
    bad_family = ddnsagent("history", "--family", "5", "--config", timeline)
    assert bad_family.returncode == 2 and "invalid choice: 5" in bad_family.stderr


@pytest.mark.parametrize("value", ["yesterday", "23/11/2026", "2026-11-31", "03:12", ""])
@pytest.mark.parametrize("option", ["--since", "--at"])
def test_a_bad_date_names_the_value_and_the_forms(timeline: Path, option: str, value: str) -> None:
    run = ddnsagent("history", option, value, "--config", timeline)
    assert run.returncode == 2 and run.stdout == ""
    assert "Traceback" not in run.stderr
    assert f"{option} {value!r} is not a date or date-time; use YYYY-MM-DD" in run.stderr
    assert "+09:00" in run.stderr


def test_history_takes_no_lock_and_reads_a_missing_state(tmp_path: Path, echo: EchoServer) -> None:
    text = config_text(tmp_path / "state", echo.echo_url, "")
    config = write_config(tmp_path, text)
    run = ddnsagent("history", "--config", config)
    assert run.returncode == 0 and run.stdout == "no address history yet\n"
    assert not (tmp_path / "state").exists()  # reading made nothing
    assert os.listdir(tmp_path) == ["config.toml"]


# -- the history's own file: written only when it changed, moved out of state.json, a corrupt
# -- file moved aside, a kill between the two files' saves -----------------------------------


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The history file's reads (the store reads it through Directory.read) from now on."""
    reads: list[str] = []
    real = safefile.Directory.read

    def counted(d: Any, name: str, limit: int, *, owners: Any = None) -> bytes:
        if name == HISTORY_FILENAME:
            reads.append(name)
        return real(d, name, limit, owners=owners)

    monkeypatch.setattr(safefile.Directory, "read", counted)
    return reads


def test_a_plain_sync_and_a_position_save_neither_read_nor_write_the_history(
    dyn_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write rate the history cost: with a full history, the sync that finds the same
    address again and the relay watch's position save write state.json alone, a few hundred
    bytes, and leave the history's file unread."""
    config, _echo, _dyn = dyn_config
    store = Store.of(config_mod.load(config).agent)
    with store.edit() as state:
        _fill(state, HISTORY_LIMIT - 1, time.time() - HISTORY_LIMIT * 3600)
        for i in range(HISTORY_LIMIT):
            history.note_event(state, "relay", "reconnect", f"incident {i} " + "x" * 150, i)
    assert sync(config).changed == [4]  # FIRST: the 500th address, a change
    file = store.directory / HISTORY_FILENAME
    was = file.stat()
    assert was.st_size > 150_000
    reads = _reads(monkeypatch)
    for _ in range(3):
        assert sync(config).exit_code == 0
    with store.edit() as state:  # what RelayWatch._save_position does every 30 s
        state.relay.position = LogPosition("/var/log/mail.log", 1, 2, 3)
    assert reads == []
    now = file.stat()
    assert (now.st_ino, now.st_mtime_ns, now.st_size) == (was.st_ino, was.st_mtime_ns, was.st_size)
    assert (store.directory / FILENAME).stat().st_size < 4096
    # Those who need it read it: a note, `status`, `history`. Read and not changed (a
    # keepalive's note: the first acceptance is kept), it is not rewritten either.
    with store.edit() as state:
        history.note_sent(state, 4, FIRST, "dyn", time.time())
    assert reads == [HISTORY_FILENAME]
    now = file.stat()
    assert (now.st_ino, now.st_mtime_ns) == (was.st_ino, was.st_mtime_ns)
    with store.edit() as state:
        history.note_event(state, "relay", "reconnect", "one more", time.time())
    assert reads == [HISTORY_FILENAME] * 2
    assert file.stat().st_ino != was.st_ino
    plain = ddnsagent("status", "--config", config)
    assert f"history: {HISTORY_LIMIT} addresses since" in plain.stdout, plain.stderr
    assert shown(config)["events"][-1]["reason"] == "one more"


def steady(out: dict[str, Any]) -> dict[str, Any]:
    """`history --json` but the current address's last sighting, which every sync moves."""
    return {**out, "addresses": [{**a, "last_seen": None} for a in out["addresses"]]}


def test_a_history_in_state_json_moves_to_its_own_file_without_loss(dyn_config: Any) -> None:
    """state.json as the merged code wrote it (a `history` key): read as it is, and moved to
    the history's file by the next edit — any edit, even one that does not note anything."""
    config, echo, _dyn = dyn_config
    sync(config)
    echo.answer = SECOND + "\n"
    sync(config)
    store = Store.of(config_mod.load(config).agent)
    with store.edit() as state:
        history.note_event(state, "relay", "reconnect", "kept", time.time())
    expected = shown(config)
    path, file = store.directory / FILENAME, store.directory / HISTORY_FILENAME
    kept = json.loads(file.read_text())
    del kept["version"]
    data = json.loads(path.read_text())
    del data["history_index"]
    data["history"] = kept
    path.write_text(json.dumps(data))
    file.unlink()

    assert shown(config) == expected  # a reader reads the key and moves nothing
    assert not file.exists()
    with store.edit() as state:  # what RelayWatch._save_position does
        state.relay.position = LogPosition("/var/log/mail.log", 1, 2, 3)
    assert "history" not in json.loads(path.read_text())
    assert {**json.loads(file.read_text()), "version": None} == {**kept, "version": None}
    assert shown(config) == expected
    assert sync(config).exit_code == 0  # a sync: the current address's last sighting moves
    assert steady(shown(config)) == steady(expected)

    # Killed between the two saves of the move: the key and the file. The file wins, and the
    # key goes with the next save.
    data = json.loads(path.read_text())
    data["history"] = {"addresses": [], "events": []}
    path.write_text(json.dumps(data))
    assert steady(shown(config)) == steady(expected)
    assert sync(config).exit_code == 0
    assert "history" not in json.loads(path.read_text())
    assert steady(shown(config)) == steady(expected)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"version": 99, "addresses": []}', b"\0" * 300],
    ids=["not-json", "not-an-object", "unknown-version", "too-large"],
)
def test_a_corrupt_history_is_moved_aside_with_one_warning_and_syncs_go_on(
    dyn_config: Any,
    content: bytes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, echo, dyn = dyn_config
    sync(config)
    store = Store.of(config_mod.load(config).agent)
    file = store.directory / HISTORY_FILENAME
    file.write_bytes(content)
    if content.startswith(b"\0"):
        monkeypatch.setattr(store_mod, "HISTORY_FILE_LIMIT", 200)
    else:  # a reader says so and moves nothing (it holds no lock)
        run = ddnsagent("history", "--config", config)
        assert run.returncode == 0 and "Traceback" not in run.stderr
        assert run.stdout == "no address history yet\n"
        (line,) = run.stderr.strip().splitlines()
        assert f"the address history {file} is unreadable" in line, line
        assert file.read_bytes() == content

    echo.answer = SECOND + "\n"
    caplog.set_level("WARNING")
    assert sync(config).exit_code == 0  # the change of address is noted and sent
    assert dyn.record(DYN_HOST).ipv4 == SECOND
    said = [r.getMessage() for r in caplog.records if "address history" in r.getMessage()]
    (warning,) = said
    assert f"the address history {file} was unreadable" in warning and "moved aside" in warning
    (aside,) = store.directory.glob(f"{HISTORY_FILENAME}.corrupt-*")
    assert aside.read_bytes() == content and str(aside) in warning
    # The history starts anew: the address state.json knew, then this sync's.
    assert [a["address"] for a in shown(config)["addresses"]] == [FIRST, SECOND]


KILLER = """
import os, runpy, signal, sys
from ddnsagent import safefile

real = safefile.Directory.replace
point = sys.argv.pop(1)
wrote = []


def replace(self, name, data, mode=0o600, *, owner=None):
    if name == "history.json" and point == "in-history":  # its temp written, not renamed
        fd = os.open(self.temp_name(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600,
                     dir_fd=self.fd)
        os.write(fd, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    if name == "state.json" and wrote:  # the history saved, state.json not yet
        os.kill(os.getpid(), signal.SIGKILL)
    real(self, name, data, mode, owner=owner)
    if name == "history.json":
        wrote.append(name)


safefile.Directory.replace = replace
sys.argv[0] = "ddnsagent"
runpy.run_module("ddnsagent", run_name="__main__")
"""


@pytest.mark.parametrize("point", ["in-history", "between"])
def test_a_kill_while_saving_leaves_both_files_whole_and_loses_nothing(
    dyn_config: Any, point: str
) -> None:
    """A writer killed (SIGKILL) while it saves a change of address: inside the history's
    save, or between the history's save and state.json's. Both files stay whole; the next sync
    notes the address once, the one before keeps its entry."""
    config, echo, dyn = dyn_config
    sync(config)
    store = Store.of(config_mod.load(config).agent)
    path, file = store.directory / FILENAME, store.directory / HISTORY_FILENAME
    state_before = path.read_bytes()
    history_before = file.read_bytes()
    echo.answer = SECOND + "\n"
    run = subprocess.run(
        [sys.executable, "-c", KILLER, point, "notify-now", "--local", "--config", str(config)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == -9, run.stdout + run.stderr
    assert path.read_bytes() == state_before  # state.json: the old one, whole
    saved = json.loads(file.read_text())  # the history: whole, the old or the new one
    if point == "in-history":
        assert file.read_bytes() == history_before
        assert list(store.directory.glob(f".{HISTORY_FILENAME}.*.tmp"))  # the half-written temp
    else:
        assert [a["address"] for a in saved["addresses"]] == [FIRST, SECOND]
    # A reader in between sees a consistent time line.
    assert shown(config)["addresses"][0]["address"] == FIRST

    assert sync(config).exit_code == 0
    out = shown(config)
    assert [a["address"] for a in out["addresses"]] == [FIRST, SECOND]
    old, new = out["addresses"]
    assert old["until"] == new["first_seen"] and new["current"]
    assert [s["target"] for s in new["sent"]].count("dyn") == 1
    assert dyn.record(DYN_HOST).ipv4 == SECOND
    assert not list(store.directory.glob(".*.tmp"))  # the leftover removed under the lock
    assert json.loads(path.read_text())["detected"]["4"]["address"] == SECOND


def test_an_event_read_again_is_not_noted_twice() -> None:
    state = AgentState()
    for _ in range(2):  # the watch read the same log line again after a restart
        history.note_event(state, "relay", "reconnect", "450 too much mail", 1000.4)
    history.note_event(state, "relay", "reconnect", "450 too much mail", 1001)  # a later one
    history.note_event(state, "recovery", "recovered", "450 too much mail", 1001)
    assert [(e.time, e.kind) for e in state.history.events] == [
        (1000, "relay"),
        (1001, "relay"),
        (1001, "recovery"),
    ]
