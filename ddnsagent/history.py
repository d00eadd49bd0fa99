"""The address history: which address the agent held when, where it came from, which targets
got it, and the relay's incidents and reconnects on the same time line.

For the mail admin who must answer "which address did we have at 03:12 on the 23rd?" (an abuse
report, a DNSBL listing) and for DNSBL look-ups of past addresses. Two halves:

- recording (`note_*`), called under the state lock by the sync (a new address, a target that
  accepted it), the reconnect and the relay watch (incidents): plain changes to the typed
  records of store.py, which bounds, validates and saves them;
- reading (`main`), for `ddnsagent history`: the entries as a table or JSON, filtered by
  family and time, or the address held at one moment.

On floor 2 beside the other plugins of the state: it needs only the store's records, and the
sync (4), the reconnect and the watch (5) and the command line (7) above it call it. It imports
nothing heavy: `history` and `status` stay as lean as `status` always was.

Times are kept to the second: enough to tell which address was held when.

Writing: an entry changes only when the address does, a target first accepts it, or the relay
has an incident. A sync that only re-detects the same address adds nothing here: the current
entry's "last seen" is the detected record's `checked`, which the sync writes anyway. The
history lives in a file of its own (store.HISTORY_FILENAME), read on first use of
`state.history`: `note_detection` first asks `state.history_latest`, which state.json answers,
so such a sync neither reads nor writes the history's 240 KB. The notes are idempotent (noting
the same thing again changes nothing), so a save that a kill cut between the two files, redone
by the next sync or the watch reading the same log lines again, adds nothing twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from ddnsagent.store import (
    HISTORY_LIMIT,
    AddressEntry,
    AgentState,
    History,
    HistoryEvent,
    history_event_json,
)

SCHEMA = 1  # `history --json`: bumped only for changes that break readers (see README)
SAME_SECOND = 20  # latest events compared with a new one: a line read again is among them
TEXT_LIMIT = 300  # characters of an incident's reason kept (a log line's words)
DETECTED_KINDS = ("interface", "web", "dns", "command")  # detect/settings.py's source kinds
GIVEN = "given on the command line"  # sync.py's detection source for a handed-over address
DATE_FORMS = (
    "YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] or YYYY-MM-DDTHH:MM[:SS], local time unless followed by "
    "an offset such as +09:00 or Z"
)


# -- recording (under the state lock) -----------------------------------------------------------


def origin(reason: str, given: bool, source: str | None) -> tuple[str, str | None]:
    """How a sync's address came: (kind, detail).

    A sync of the reconnect procedure: "reconnect". An address handed over instead of detected:
    "hook" when a hook script gave it (the sync's reason is "hook pppd" and so on), else "given"
    (`notify-now --address`). A detected one: the kind of its source (interface, web, dns,
    command), the source itself as the detail."""
    if reason == "reconnect":
        return "reconnect", source
    if given:
        if reason.startswith("hook"):
            return "hook", reason
        return "given", "notify-now --address" if reason == "command" else reason
    kind = (source or "").split(":", 1)[0]
    return (kind if kind in DETECTED_KINDS else "detected"), source


def note_detection(
    state: AgentState, family: int, address: str, kind: str, detail: str | None, now: float
) -> bool:
    """A sync detected `address`: a new entry when it is not the family's latest one. Call it
    before the sync replaces `state.detected[family]`, whose `checked` closes the entry before.
    True when an entry was added."""
    if state.history_latest(family) == address:
        return False  # the usual sync: answered by state.json, the history's file left unread
    entries = state.history.addresses
    latest = _latest(entries, family)
    if latest is not None and latest.address == address:
        return False
    now = int(now)
    before = state.detected.get(family)
    if before is not None:
        seen = int(before.checked if before.checked is not None else before.since)
        if latest is not None and latest.address == before.address:
            latest.last = max(latest.last, seen)  # the address it replaces was seen until then
        elif latest is None:  # a state from before the history: its address opens it
            kind_before, _ = origin("", before.source == GIVEN, before.source)
            entries.append(
                AddressEntry(
                    family, before.address, int(before.since), seen, kind_before, before.source
                )
            )
            if before.address == address:
                _trim(entries)
                return True
    entries.append(AddressEntry(family, address, now, now, kind, detail))
    _trim(entries)
    return True


def note_sent(state: AgentState, family: int, address: str, target: str, when: float) -> None:
    """`target` accepted `address`: the first time is kept (a keepalive is not news)."""
    for entry in reversed(state.history.addresses):
        if entry.family == family and entry.address == address:
            entry.sent.setdefault(target, int(when))
            return


def note_event(
    state: AgentState,
    kind: str,
    action: str,
    reason: str,
    when: float,
    *,
    old: str | None = None,
    new: str | None = None,
    family: int | None = None,
) -> None:
    """A relay incident, a recovery or a reconnect, on the time line; one already there (the
    same second, kind, words and addresses: the watch read the same log line again after a
    restart) is not noted twice."""
    text = "".join(c if c.isprintable() else "?" for c in reason[:TEXT_LIMIT])
    events = state.history.events
    event = HistoryEvent(int(when), kind, action, text, old, new, family)
    if any(e == event for e in events[-SAME_SECOND:] if e.time == event.time):
        return
    events.append(event)
    if len(events) > 1 and events[-2].time > events[-1].time:  # a note that waited for the lock
        events.sort(key=lambda e: e.time)
    _trim(events)


def note_reconnect(state: AgentState, family: int, new: str, started: float) -> None:
    """The reconnect brought `new`: its entry says so, whichever sync saw it first (pppd's hook,
    the netlink watcher or the reconnect's own), when it was first seen after `started`."""
    latest = _latest(state.history.addresses, family)
    if latest is not None and latest.address == new and latest.first >= int(started):
        latest.source = "reconnect"


def _latest(entries: list[AddressEntry], family: int) -> AddressEntry | None:
    for entry in reversed(entries):
        if entry.family == family:
            return entry
    return None


def _trim(items: list[Any]) -> None:
    del items[:-HISTORY_LIMIT]


# -- reading ------------------------------------------------------------------------------------


def parse_when(text: str) -> float:
    """A command-line date or date-time as Unix seconds; ValueError naming the accepted forms.
    A date alone is its midnight; without an offset the time is local."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date or date-time; use {DATE_FORMS}") from None
    return moment.timestamp()  # naive: local time, as the user reads the clock


@dataclass
class Held:
    """One entry as `history` shows it: with when it stopped being ours, if it did."""

    entry: AddressEntry
    last_seen: float
    until: float | None  # the next address of its family was first seen then
    current: bool


def periods(state: AgentState) -> list[Held]:
    """Every address entry, oldest first, with its end and its last sighting. The current
    address's last sighting is the detected record's `checked`, newer than the entry."""
    out: list[Held] = []
    following: dict[int, float] = {}
    for entry in reversed(state.history.addresses):
        until = following.get(entry.family)
        last = entry.last
        current = False
        if until is None:
            d = state.detected.get(entry.family)
            if d is not None and d.address == entry.address:
                current = True
                last = max(last, d.checked if d.checked is not None else d.since)
        out.append(Held(entry, last, until, current))
        following[entry.family] = entry.first
    out.reverse()
    return out


def held_at(state: AgentState, family: int, when: float) -> Held | None:
    """The address of `family` held at `when`: the last one first seen at or before it."""
    found = None
    for held in periods(state):
        if held.entry.family == family and held.entry.first <= when:
            found = held
    return found


def main(
    state: AgentState,
    out: TextIO,
    *,
    as_json: bool,
    family: int | None,
    since: float | None,
    at: float | None,
) -> int:
    """`ddnsagent history`: the table, the JSON, or with `at` the address held then."""
    families = (family,) if family is not None else (4, 6)
    if at is not None:
        return _print_at(state, out, as_json, families, at)
    shown = [
        h
        for h in periods(state)
        if h.entry.family in families
        and (since is None or (h.until if h.until is not None else time.time()) >= since)
    ]
    events = [
        e
        for e in state.history.events
        if (e.family is None or e.family in families) and (since is None or e.time >= since)
    ]
    if as_json:
        json.dump(
            {
                "schema": SCHEMA,
                "limit": HISTORY_LIMIT,
                "addresses": [_held_json(h) for h in shown],
                "events": [history_event_json(e) for e in events],
            },
            out,
            indent=2,
        )
        print(file=out)
        return 0
    rows = _rows(shown, events, since)
    if not rows:
        print("no address history yet" if since is None else "nothing in that time", file=out)
        return 0
    print(f"{'TIME (local)':<19}  {'KIND':<9}  WHAT", file=out)
    for when, kind, text in rows:
        print(f"{_ts(when)}  {kind:<9}  {text}", file=out)
    if len(state.history.addresses) >= HISTORY_LIMIT:
        print(f"(the last {HISTORY_LIMIT} addresses are kept; older ones are gone)", file=out)
    return 0


def _rows(
    shown: list[Held], events: list[HistoryEvent], since: float | None
) -> list[tuple[float, str, str]]:
    """One row per address, per target that got it, per event; sorted by time (stable)."""
    rows: list[tuple[float, str, str]] = []
    for h in shown:
        e = h.entry
        text = f"{e.address}  from {_from(e)}; last seen {_ts(h.last_seen)}"
        text += ", current" if h.current else ""
        text += f", replaced by {_ts(h.until)}" if h.until is not None else ""
        rows.append((e.first, f"ipv{e.family}", text))
        for target, when in sorted(e.sent.items(), key=lambda kv: kv[1]):
            if since is None or when >= since:
                rows.append((when, "sent", f"{e.address} accepted by {target}"))
    for ev in events:
        rows.append((ev.time, ev.kind, _event_text(ev)))
    rows.sort(key=lambda r: r[0])
    return rows


def _from(e: AddressEntry) -> str:
    if e.detail and e.detail != e.source:
        return f"{e.source} ({e.detail})"
    return e.source


def _event_text(ev: HistoryEvent) -> str:
    text = ev.action
    if ev.old is not None or ev.new is not None:
        text += f" {ev.old or '?'} -> {ev.new or '?'}"
    return f"{text}: {ev.reason}" if ev.reason else text


def _print_at(
    state: AgentState, out: TextIO, as_json: bool, families: tuple[int, ...], at: float
) -> int:
    found = {f: held_at(state, f, at) for f in families}
    if as_json:
        held = {
            f"ipv{f}": (None if h is None else {**_held_json(h), "confirmed": _confirmed(h, at)})
            for f, h in found.items()
        }
        json.dump({"schema": SCHEMA, "at": at, "held": held}, out, indent=2)
        print(file=out)
        return 0
    lines = []
    for f, h in found.items():
        firsts = [a.first for a in state.history.addresses if a.family == f]
        if h is not None:
            lines.append(f"ipv{f} at {_ts(at)}: {_held_text(state, h, at)}")
        elif firsts:
            lines.append(f"ipv{f} at {_ts(at)}: unknown (its history starts {_ts(min(firsts))})")
        elif len(families) == 1:
            lines.append(f"ipv{f} at {_ts(at)}: unknown (no IPv{f} address in the history)")
    for line in lines or ["no address history yet"]:
        print(line, file=out)
    return 0


def _held_text(state: AgentState, h: Held, at: float) -> str:
    e = h.entry
    text = f"{e.address} (from {_from(e)}, first seen {_ts(e.first)}"
    if _confirmed(h, at):
        return text + f", seen again {_ts(h.last_seen)})"
    if h.until is not None:
        return text + (
            f"; last seen {_ts(h.last_seen)}, and {_next_address(state, h)} first seen "
            f"{_ts(h.until)}: the change came in between, so this is not certain)"
        )
    return text + f"; last seen {_ts(h.last_seen)}, nothing detected since: not certain)"


def _confirmed(h: Held, at: float) -> bool:
    """Seen at or before `at` and again at or after it, with no other address in between."""
    return h.entry.first <= at <= h.last_seen


def _next_address(state: AgentState, h: Held) -> str:
    for entry in state.history.addresses:
        if entry.family == h.entry.family and entry.first == h.until:
            return entry.address
    return "the next address"


def _held_json(h: Held) -> dict[str, Any]:
    e = h.entry
    return {
        "family": e.family,
        "address": e.address,
        "first_seen": e.first,
        "last_seen": h.last_seen,
        "until": h.until,
        "current": h.current,
        "source": e.source,
        "detail": e.detail,
        "sent": [{"target": t, "time": w} for t, w in sorted(e.sent.items(), key=lambda kv: kv[1])],
    }


def status_json(history: History) -> dict[str, Any]:
    """`status --json`'s `history` key: how much is kept, since when."""
    return {
        "addresses": len(history.addresses),
        "events": len(history.events),
        "oldest": min((a.first for a in history.addresses), default=None),
        "limit": HISTORY_LIMIT,
    }


def status_line(history: History) -> str | None:
    """`status`'s line about the history; None while it is empty."""
    if not history.addresses:
        return None
    oldest = min(a.first for a in history.addresses)
    n = len(history.addresses)
    return f"history: {n} address{'es' if n != 1 else ''} since {_ts(oldest)} (`ddnsagent history`)"


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
