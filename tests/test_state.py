"""The state survives what happens to real machines: corrupt files, kill -9, concurrent syncs."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ddnsagent import config as config_mod
from ddnsagent.outcome import SyncReport
from ddnsagent.store import FILENAME, Sent, StateLock, Store, Target
from ddnsagent.sync import Agent, SyncOptions
from tests.conftest import (
    DYN_ENV,
    FIRST,
    child_env,
    config_text,
    ddnsagent,
    dyndns2_provider,
    mydns_provider,
    sync,
    wait_until,
    write_config,
)
from tests.fakes import Dyndns2Server, EchoServer, MyDNSServer


def actions(report: SyncReport) -> dict[str, str]:
    return {t.name: t.action for t in report.targets}


def asides(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob(f"{FILENAME}.corrupt-*"))


# -- a state file that cannot be used -----------------------------------------------------------


def _edit(change: Callable[[dict[str, object]], object]) -> Callable[[bytes], bytes]:
    def edit(good: bytes) -> bytes:
        data = json.loads(good)
        change(data)
        return json.dumps(data).encode()

    return edit


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "garbage": lambda good: b"\x00\xff\xfe not JSON at all \x80\xc0",
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "wrong version": _edit(lambda d: d.update(version=99)),
    "no version": _edit(lambda d: d.pop("version")),
    "not an object": lambda good: b'["version", 1]\n',
    "deeply nested": lambda good: b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_corrupt_state_file_is_moved_aside_and_the_agent_starts_over(
    kind: str,
    tmp_path: Path,
    echo: EchoServer,
    mydns: MyDNSServer,
    dyn: Dyndns2Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state_dir = tmp_path / "state"
    providers = mydns_provider(mydns.notify_url) + dyndns2_provider(dyn.update_url)
    config = write_config(tmp_path, config_text(state_dir, echo.echo_url, providers))
    assert actions(sync(config)) == {"home": "sent", "dyn": "sent"}
    assert actions(sync(config)) == {"home": "unchanged", "dyn": "unchanged"}
    state_file = state_dir / FILENAME
    bad = CORRUPTIONS[kind](state_file.read_bytes())
    state_file.write_bytes(bad)

    with caplog.at_level(logging.WARNING, logger="ddnsagent.store"):
        report = sync(config)
    assert actions(report) == {"home": "sent", "dyn": "sent"}  # as on a first run
    assert all(t.message.startswith("first update") for t in report.targets)
    assert len(mydns.notifications) == 2 and len(dyn.requests) == 2
    (aside,) = asides(state_dir)
    assert aside.read_bytes() == bad  # kept for a post-mortem, unchanged
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{state_file} was unreadable" in warning and str(aside) in warning
    fresh = json.loads(state_file.read_text())
    assert fresh["version"] == 1
    assert fresh["targets"]["dyn"]["sent"]["4"]["address"] == FIRST


def test_notify_now_says_that_it_moved_a_corrupt_state_aside(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    (state_dir / FILENAME).write_bytes(b"{not json")
    config = write_config(
        tmp_path, config_text(state_dir, echo.echo_url, dyndns2_provider(dyn.update_url))
    )
    run = ddnsagent("notify-now", "--config", config)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "was unreadable" in run.stderr and "moved aside" in run.stderr
    assert "Traceback" not in run.stderr
    assert len(asides(state_dir)) == 1 and len(dyn.requests) == 1
    assert ddnsagent("notify-now", "--config", config).returncode == 0
    assert len(asides(state_dir)) == 1 and len(dyn.requests) == 1  # the new state is sound


def test_two_corrupt_files_in_one_second_are_both_kept(tmp_path: Path) -> None:
    for n, junk in enumerate((b"first junk", b"second junk")):
        tmp_path.joinpath(FILENAME).write_bytes(junk)
        Store(tmp_path).load()
        assert sorted(p.read_bytes() for p in asides(tmp_path)) == sorted(
            [b"first junk", b"second junk"][: n + 1]
        )


def test_a_bad_salt_is_renewed_without_lifting_a_stop(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    state_dir = tmp_path / "state"
    config = write_config(
        tmp_path, config_text(state_dir, echo.echo_url, dyndns2_provider(dyn.update_url))
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(DYN_ENV, "wrong")
        agent = Agent(config_mod.load(config))
        assert actions(asyncio.run(agent.sync(SyncOptions()))) == {"dyn": "stopped"}
    data = json.loads((state_dir / FILENAME).read_text())
    data["salt"] = "not hex"
    (state_dir / FILENAME).write_text(json.dumps(data))
    assert actions(sync(config)) == {"dyn": "stopped"}
    assert len(dyn.requests) == 1
    assert asides(state_dir) == []


def test_save_leaves_one_private_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    with store.edit() as state:
        state.target("x").sent[4] = Sent(FIRST, 1.0)
    assert sorted(os.listdir(tmp_path / "state")) == ["lock", FILENAME]
    assert (tmp_path / "state" / FILENAME).stat().st_mode & 0o777 == 0o600
    assert Store(tmp_path / "state").load() == state


# -- entries of the wrong type inside a sound file ----------------------------------------------


def _wrong_types(data: dict[str, Any]) -> None:
    """What a hand edit or a bug of some other version could leave behind, one of each."""
    data["targets"]["home"]["sent"] = "x"
    data["targets"]["home"]["backoff"] = []
    data["targets"]["dyn"]["backoff"] = {
        "4": {"failures": 1, "retry_after": "soon", "last_error": "x"},
        "6": {"failures": 10**30, "retry_after": float("inf"), "last_error": "x"},
    }
    data["targets"]["ghost"] = 5
    data["detected"]["6"] = {"address": "2001:db8::1", "since": "garbage"}
    data["detected"]["x"] = "not an object"
    data["zones"] = {"z": "bad"}
    data["relay"] = {
        "attempts": "many",
        "unchanged": "two",
        "bounce_rate": None,
        "last_signal": [1],
        "last_reconnect": {"time": "noon"},
        "last_recovery": 5,
        "position": {"path": 1},
    }


def test_wrong_typed_entries_are_dropped_with_one_warning_and_the_rest_kept(
    tmp_path: Path, echo: EchoServer, mydns: MyDNSServer, dyn: Dyndns2Server
) -> None:
    state_dir = tmp_path / "state"
    providers = mydns_provider(mydns.notify_url) + dyndns2_provider(dyn.update_url)
    text = config_text(state_dir, echo.echo_url, providers)
    config = write_config(tmp_path, text + '[reconnect]\ncommand = ["/bin/true"]\n')
    assert ddnsagent("notify-now", "--config", config).returncode == 0
    state_file = state_dir / FILENAME
    data = json.loads(state_file.read_text())
    _wrong_types(data)
    state_file.write_text(json.dumps(data))

    status = ddnsagent("status", "--json", "--config", config)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Traceback" not in status.stderr
    (warning,) = status.stderr.strip().splitlines()  # one warning names every dropped entry
    for where in (
        "targets.home.sent",
        "targets.home.backoff",
        "targets.dyn.backoff.4",
        "targets.dyn.backoff.6",
        "targets.ghost",
        "detected.6",
        "detected.x",
        "zones.z",
        "relay.attempts",
        "relay.unchanged",
        "relay.bounce_rate",
        "relay.last_signal",
        "relay.last_reconnect",
        "relay.last_recovery",
        "relay.position",
    ):
        assert where in warning, where
    shown = json.loads(status.stdout)
    assert list(shown["detected"]) == ["ipv4"] and shown["detected"]["ipv4"]["address"] == FIRST
    targets = {t["name"]: t for t in shown["targets"]}
    assert targets["home"]["sent"] == {} and targets["home"]["backoff"] == {}
    assert targets["dyn"]["sent"]["ipv4"]["address"] == FIRST and targets["dyn"]["backoff"] == {}
    assert shown["relay"] == {
        "last_signal": None,
        "last_reconnect": None,
        "last_recovery": None,
        "reconnects_24h": 0,
        "unchanged_reconnects": 0,
        "bounces_last_hour": 0,
        "cooldown": None,
        # issue 13: what would happen next (a [reconnect] section, no [relay])
        "reconnects_left": 4,
        "reconnect_at": None,
        "next": "`ddnsagent reconnect` would reconnect at once (no [relay] section watches the "
        "mail log); 4 of 4 reconnects left in 24 h",
    }
    text_status = ddnsagent("status", "--config", config)
    assert text_status.returncode == 0 and "Traceback" not in text_status.stderr
    assert f"dyn [dyndns2]: sent ipv4 {FIRST}" in text_status.stdout
    assert "home [mydns]: nothing sent yet" in text_status.stdout

    run = ddnsagent("notify-now", "--json", "--config", config)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    report = {t["name"]: t for t in json.loads(run.stdout)["targets"]}
    assert report["home"]["action"] == "sent" and report["home"]["message"].startswith("first")
    assert report["dyn"]["action"] == "unchanged"  # its good entries were kept
    assert len(mydns.notifications) == 2 and len(dyn.requests) == 1
    assert asides(state_dir) == []
    # The sync saved the state without them: the next reader has nothing to warn about.
    again = ddnsagent("status", "--config", config)
    assert again.returncode == 0 and again.stderr == ""
    assert "ghost" not in json.loads(state_file.read_text())["targets"]


def test_edit_saves_on_success_and_leaves_the_file_untouched_when_the_body_raises(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path, 5)
    with store.edit() as state:
        state.target("x").sent[4] = Sent(FIRST, 1.0)
    saved = (tmp_path / FILENAME).read_bytes()
    assert Store(tmp_path).load().targets["x"].sent == {4: Sent(FIRST, 1.0)}

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.edit() as state:
        state.target("x").sent[4] = Sent("203.0.113.99", 2.0)
        state.targets["y"] = Target()
        raise Boom
    assert (tmp_path / FILENAME).read_bytes() == saved
    with store.edit(save=False) as state:  # a dry run
        state.targets.clear()
    assert (tmp_path / FILENAME).read_bytes() == saved
    # The lock is free again after either ending.
    lock = StateLock(tmp_path, 0)
    lock.acquire()
    lock.release()


def test_async_edit_waits_for_the_lock_and_saves(tmp_path: Path) -> None:
    store = Store(tmp_path, 5)
    held = StateLock(tmp_path, 1)
    held.acquire()

    async def edit() -> None:
        async with store.edit_async() as state:
            state.target("x").sent[6] = Sent("2001:db8::7", 3.0)

    async def main() -> None:
        task = asyncio.ensure_future(edit())
        await asyncio.sleep(0.3)
        assert not task.done() and not (tmp_path / FILENAME).exists()
        held.release()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert Store(tmp_path).load().targets["x"].sent[6].address == "2001:db8::7"


# -- kill -9 in the middle of syncs ---------------------------------------------------------------

# Forced syncs in a loop, each with the next address of a cycle of 254, so that consecutive
# syncs differ; each is announced before it starts. Bounded in count and time should the parent
# not kill it.
CHILD = """
import asyncio, ipaddress, sys, time
from pathlib import Path
import tenacity  # else the first sync imports it
from ddnsagent import config
from ddnsagent.sync import Agent, SyncOptions

agent = Agent(config.load(Path(sys.argv[1])))
start = int(sys.argv[2])

async def loop():
    print("ready", flush=True)
    deadline = time.monotonic() + 20
    for i in range(start, start + 5000):
        if time.monotonic() > deadline:
            break
        address = ipaddress.ip_address(f"203.0.113.{i % 254 + 1}")
        print("sync", address, flush=True)
        await agent.sync(SyncOptions(reason="test", force=True, addresses={4: address}))

asyncio.run(loop())
"""

KILLS = 25
BALLAST = 5_000


def run_then_kill(config: Path, start: int, out: Path, after: float) -> int:
    """Start the syncing child, SIGKILL it `after` seconds into its loop; its exit code."""
    with open(out, "wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(config), str(start)],
            stdout=sink,
            stderr=sink,
            env=child_env(),
        )
    try:
        wait_until(lambda: b"ready" in out.read_bytes() or child.poll() is not None, "ready")
        time.sleep(after)
        child.send_signal(signal.SIGKILL)
        return child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def test_kill_9_at_any_moment_leaves_a_sound_state(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "state"
    config = write_config(
        tmp_path, config_text(state_dir, echo.echo_url, dyndns2_provider(dyn.update_url))
    )
    sync(config, force=True, addresses={4: ipaddress.ip_address(FIRST)})
    # Ballast that the agent carries along (a target it does not know, with a key of no version
    # it knows), so that each save takes long enough for a writer that is not atomic to be
    # caught in the middle.
    with Store(state_dir).edit() as state:
        junk = {f"k{n}": "x" * 16 for n in range(BALLAST)}
        state.targets["ballast"] = Target(extra={"junk": junk})
    salt = state.salt
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    saved = FIRST
    busy = 0  # kills that came after a child had finished a sync
    for i in range(KILLS):
        where = f"kill {i + 1} (seed {seed})"
        out = tmp_path / f"child-{i}.out"
        code = run_then_kill(config, len(dyn.requests), out, rng.uniform(0.05, 0.4))
        assert code == -signal.SIGKILL, f"{where}: the child ended by itself:\n{out.read_text()}"
        # the child's own "sync ADDRESS" lines (its log lines share the file)
        begun = re.findall(r"^sync (203\.0\.113\.\d+)$", out.read_text(), re.M)
        busy += len(begun) >= 2

        assert asides(state_dir) == [], f"{where}: the state was torn"
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ddnsagent.store"):
            loaded = Store(state_dir).load()
        assert caplog.records == [], where
        assert loaded.salt == salt, f"{where}: the state was started over"
        recorded = loaded.targets["dyn"].sent[4]
        # A sync begins only after the one before it has saved its outcome, so the state holds
        # the last sync's address or, if the kill came before that save, the one before.
        assert recorded.address in ([saved, *begun])[-2:], where
        assert recorded.address in [r.query.get("myip") for r in dyn.requests], where
        assert recorded.time <= time.time()
        assert len(loaded.targets["ballast"].extra["junk"]) == BALLAST, where
        saved = recorded.address
    # Not vacuous: many syncs ran, and many kills came after a child's first save.
    assert len(dyn.requests) > KILLS and busy >= KILLS // 4, (len(dyn.requests), busy)
    assert dyn.violations == []


# -- the lock between processes -----------------------------------------------------------------


def test_notify_now_waits_for_the_lock_then_proceeds(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    state_dir = tmp_path / "state"
    config = write_config(
        tmp_path, config_text(state_dir, echo.echo_url, dyndns2_provider(dyn.update_url))
    )
    held = StateLock(state_dir, 1)
    held.acquire()
    child = subprocess.Popen(
        [sys.executable, "-m", "ddnsagent", "notify-now", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        try:
            time.sleep(1.0)
            assert child.poll() is None, "notify-now did not wait for the lock"
            assert echo.requests == [] and dyn.requests == []
        finally:
            held.release()
        out, err = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == 0, out + err
    assert len(dyn.requests) == 1


def test_lock_timeout_ends_notify_now_with_a_clear_message(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    state_dir = tmp_path / "state"
    text = config_text(
        state_dir, echo.echo_url, dyndns2_provider(dyn.update_url), lock_timeout="500ms"
    )
    config = write_config(tmp_path, text)
    held = StateLock(state_dir, 1)
    held.acquire()
    try:
        started = time.monotonic()
        run = ddnsagent("notify-now", "--config", config, timeout=15)
        took = time.monotonic() - started
    finally:
        held.release()
    assert run.returncode == 1, run.stdout + run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("ddnsagent: error: another ddnsagent process")
    assert f"{state_dir / 'lock'} for over 0.5s" in line and "lock_timeout" in line
    assert took >= 0.5
    assert dyn.requests == [] and echo.requests == []


def test_root_writes_keep_the_service_owner(tmp_path: Path) -> None:
    """A root-run hook writing into the service's state directory leaves files it can read."""
    if os.geteuid() != 0:
        pytest.skip("needs root to own files as another user")
    directory = tmp_path / "state"
    directory.mkdir()
    os.chown(directory, 65534, 65534)
    with Store(directory, 5).edit() as state:
        state.target("x")
    for name in ("state.json", "lock"):
        st = (directory / name).stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534), name


def test_state_directory_from_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ddnsagent.config import default_state_dir

    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/a:{tmp_path}/b")
    assert default_state_dir() == tmp_path / "a"
