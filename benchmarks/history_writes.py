"""What a full address history costs the state's writes: bytes written per sync and per relay
watch position save, and how long a locked edit takes.

    .venv/bin/python benchmarks/history_writes.py [--runs N] [--dir DIR] [--json]

A state directory (a fresh temporary one, or --dir on the disk you care about) is filled with
a full history — HISTORY_LIMIT address changes with two targets each, and as many relay
incidents with a log line's words — through the store's own edit, as the sync and the watch
would have written it. Then, N times each:

- a sync that finds the same address again: `note_detection` and the detected record's
  `checked`, in one `Store.edit()` — what the daemon does every `interval` (5 min);
- a relay watch position save: `relay.position` in one `Store.edit()` — every 30 s while the
  watch follows a log file;
- a relay incident noted (`note_event`): an edit that changes the history, for comparison.

Bytes written are this process's `wchar` (/proc/self/io: every byte handed to write()),
so they count whatever files a save writes, whichever they are. Times are wall-clock medians of
the whole edit: lock, read, check, write, fsync. Per day: 288 syncs, 2,880 position saves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddnsagent import history
from ddnsagent.store import HISTORY_LIMIT, AgentState, Detected, LogPosition, Store

SYNCS_A_DAY = 24 * 3600 // 300
SAVES_A_DAY = 24 * 3600 // 30
REASON = (
    "host relay.example.net[198.51.100.1] said: 450 4.7.1 <user@example.org>: Recipient "
    "address rejected: too much mail from 203.0.113.{n} (in reply to RCPT TO command)"
)


def wchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def fill(store: Store, start: float) -> str:
    """A full history; returns the current address."""
    address = ""
    with store.edit() as state:
        for i in range(HISTORY_LIMIT):
            now = start + i * 3600
            address = f"203.0.113.{i % 250 + 1}" if i % 2 else f"198.51.100.{i % 250 + 1}"
            history.note_detection(state, 4, address, "interface", "interface:ppp0", now)
            state.detected[4] = Detected(address, now, "interface:ppp0", now + 3000)
            history.note_sent(state, 4, address, "home", now + 1)
            history.note_sent(state, 4, address, "zone:local", now + 2)
            history.note_event(state, "relay", "reconnect", REASON.format(n=i % 250), now + 5)
    return address


def measure(runs: int, edit: Callable[[AgentState, int], None], store: Store) -> dict[str, float]:
    """Median time and mean bytes written of `runs` edits doing `edit`."""
    times, written = [], []
    for i in range(runs):
        before, t0 = wchar(), time.perf_counter()
        with store.edit() as state:
            edit(state, i)
        times.append(time.perf_counter() - t0)
        written.append(wchar() - before)
    return {"ms": statistics.median(times) * 1000, "bytes": statistics.mean(written)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--dir", type=Path, help="a state directory to use (made when missing)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ddnsagent-histbench-") as tmp:
        directory = args.dir or Path(tmp) / "state"
        store = Store(directory)
        now = time.time()
        current = fill(store, now - HISTORY_LIMIT * 3600)

        def sync(state: AgentState, i: int) -> None:
            history.note_detection(state, 4, current, "interface", "interface:ppp0", now + i)
            d = state.detected[4]
            state.detected[4] = Detected(d.address, d.since, d.source, now + i, d.previous)

        def position(state: AgentState, i: int) -> None:
            state.relay.position = LogPosition("/var/log/mail.log", 2049, 131, 4096 + i)

        def incident(state: AgentState, i: int) -> None:
            history.note_event(state, "relay", "reconnect", REASON.format(n=i), now + i)

        empty = Store(Path(tmp) / "empty")
        with empty.edit() as state:
            state.detected[4] = Detected(current, now, "interface:ppp0", now)
        out: dict[str, Any] = {
            "files": {p.name: p.stat().st_size for p in sorted(directory.iterdir())},
            "sync": measure(args.runs, sync, store),
            "position": measure(args.runs, position, store),
            "incident": measure(args.runs, incident, store),
            "no_history_sync": measure(args.runs, sync, empty),
        }
    out["mb_a_day_syncs"] = out["sync"]["bytes"] * SYNCS_A_DAY / 1e6
    out["mb_a_day_positions"] = out["position"]["bytes"] * SAVES_A_DAY / 1e6
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    print("files: " + ", ".join(f"{k} {v / 1024:.1f} KB" for k, v in out["files"].items()))
    for key, what in (
        ("sync", "sync, same address (full history)"),
        ("position", "relay watch position save (full history)"),
        ("incident", "relay incident noted (full history)"),
        ("no_history_sync", "sync, same address (no history)"),
    ):
        m = out[key]
        print(f"{what:<42} {m['bytes'] / 1024:8.1f} KB written  {m['ms']:6.1f} ms a locked edit")
    print(
        f"a day: {out['mb_a_day_syncs']:.1f} MB from {SYNCS_A_DAY} syncs, "
        f"{out['mb_a_day_positions']:.1f} MB from {SAVES_A_DAY} position saves"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
