"""The relay watch writes the mail log's position (and the bounce count `status` shows) to the
state only when what it would write changed: a quiet log rewrites state.json never, however
many save periods pass; a moved position, a new bounce and a bounce ageing out of the hour are
saved. The world is tests/relay/conftest.py's; the save period is shortened."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from ddnsagent.relay import decide, watch
from ddnsagent.relay.watch import RelayWatch
from ddnsagent.store import Store
from ddnsagent.sync import Agent
from tests.relay.conftest import wait

PERIOD = 0.2  # the shortened SAVE_POSITION_EVERY
QUIET = 8 * PERIOD  # several save periods


def bounce_line(qid: str = "5A1B2C3D4E") -> str:
    stamp = time.strftime("%b %d %H:%M:%S")
    return (
        f"{stamp} myhost postfix/bounce[1234]: {qid}: sender non-delivery notification: "
        "6B2C3D4E5F\n"
    )


def stat(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every Store.edit_async (the watch's only way to write the state), counted."""
    monkeypatch.setattr(watch, "SAVE_POSITION_EVERY", PERIOD)
    monkeypatch.setattr(watch, "POLL_EVERY", 0.05)
    seen: list[float] = []
    real = Store.edit_async

    def counting(self: Store, *args: Any, **kwargs: Any) -> Any:
        seen.append(time.monotonic())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "edit_async", counting)
    return seen


def test_a_quiet_log_is_not_saved_again_and_a_moved_one_is(world, writes) -> None:  # type: ignore[no-untyped-def]
    cfg, _dyn, maillog, _tmp = world
    state_file = Path(cfg.agent.state_dir) / "state.json"

    def position() -> Any:
        return Store.of(cfg.agent).load().relay.position

    async def scenario() -> None:
        task = asyncio.ensure_future(RelayWatch(Agent(cfg)).run())
        await wait(lambda: position() is not None)  # the first position: saved
        assert len(writes) == 1
        before = stat(state_file)
        await asyncio.sleep(QUIET)
        assert len(writes) == 1, "a quiet log wrote the state"
        assert stat(state_file) == before
        # a moved position is saved, once
        with maillog.open("a") as f:
            f.write("Dec  1 02:00:00 myhost kernel: nothing for the watch\n")
        size = maillog.stat().st_size
        await wait(lambda: position().offset == size)
        await asyncio.sleep(QUIET)
        assert len(writes) == 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert len(writes) == 2  # nothing new to write when it stops

    asyncio.run(scenario())
    # a restart with the same log: what the state holds is what it would write
    count = len(writes)
    before = stat(state_file)

    async def restarted() -> None:
        task = asyncio.ensure_future(RelayWatch(Agent(cfg)).run())
        await asyncio.sleep(QUIET)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(restarted())
    assert len(writes) == count and stat(state_file) == before


def test_the_bounce_count_is_saved_when_it_changes_even_by_ageing(
    world,  # type: ignore[no-untyped-def]
    writes: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`status` shows the count of the last hour: a bounce that ages out of it changes what
    would be written, with the position unchanged, so it is saved."""
    cfg, _dyn, maillog, _tmp = world

    def relay() -> Any:
        return Store.of(cfg.agent).load().relay

    async def scenario() -> None:
        task = asyncio.ensure_future(RelayWatch(Agent(cfg)).run())
        await wait(lambda: relay().position is not None)
        with maillog.open("a") as f:
            f.write(bounce_line())
        size = maillog.stat().st_size
        await wait(lambda: relay().position.offset == size and relay().bounce_rate == 1)
        counted = len(writes)
        # Shorten the hour only now, so that the bounce is saved as counted first however slow
        # the machine (its syslog stamp has whole seconds), then ages out at once.
        monkeypatch.setattr(decide, "HOUR", 0.5)
        await wait(lambda: relay().bounce_rate == 0, timeout=5.0)  # aged out: saved
        assert relay().position.offset == size
        assert len(writes) == counted + 1
        await asyncio.sleep(QUIET)
        assert len(writes) == counted + 1  # and then nothing more
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
