"""The state's one owner: what the agent remembers between runs, as typed records, in one file.

The state is one versioned JSON file, replaced atomically (temp file, fsync, rename, fsync of the
directory): a reader sees the old or the new file, never a torn one. The address history, most of
the bytes once it is full, lives beside it in a file of its own (see "the history's file" below):
read only by those who use it, written only when it changed. A file that still fails to
parse (disk trouble, a hand edit) is moved aside and the agent starts over as on a first run —
the worst case is one extra update, never a dead agent. Inside a sound file each entry is checked
on its own: one of the wrong type is dropped with a warning and the rest is kept, so no reader
ever trips over it. Writers (the daemon, `notify-now`, hook scripts, `reset`) go through
`Store.edit()`, which holds an exclusive lock beside the file, so they queue instead of racing.

The directory belongs to the service user and root works in it too, so every file in it is
opened the way safefile.py opens files in a hostile directory (see "the file" below): a link,
a FIFO, a hard link or a foreign owner is refused with an UnsafeFile naming it.

The JSON keys are written here and nowhere else.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ddnsagent import safefile
from ddnsagent.errors import DdnsagentError, FileTooLarge, StateLockTimeout, UnsafeFile
from ddnsagent.safefile import Directory

log = logging.getLogger(__name__)

VERSION = 1
FILENAME = "state.json"
SHOWN = 20  # dropped entries named in the warning; a file full of them says "and N more"

# -- the records ---------------------------------------------------------------------------------
# Plain dataclasses: frozen ones cost twice the import time, and every process loads these.


@dataclass
class Sent:
    """The address a target last accepted, and when."""

    address: str
    time: float
    # Why the service's answer did not confirm the address it recorded (MyDNS's page without
    # REMOTE ADDRESS); None when it did, or when the service never says.
    unconfirmed: str | None = None


@dataclass
class Backoff:
    """A family of a target that failed: how often in a row, and when to try again."""

    failures: int
    retry_after: float
    last_error: str


@dataclass
class Stopped:
    """A target that a service refused for good; it stays stopped until the user acts."""

    reason: str
    fix: str
    since: float


@dataclass
class Target:
    """Everything kept for one provider (by name). The fingerprints notice a changed
    configuration or secret, which lifts a stop."""

    sent: dict[int, Sent] = field(default_factory=dict)
    backoff: dict[int, Backoff] = field(default_factory=dict)
    stopped: Stopped | None = None
    config_fp: str | None = None
    secret_fp: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys of a newer version, kept as they are
    # Names a service refused one by one in a batch (dyndns2 `nohost` on one line): stopped
    # alone, the target's other names go on. Lifted like the target's stop.
    stopped_names: dict[str, Stopped] = field(default_factory=dict)


@dataclass
class Detected:
    """The address last detected for a family, since when, and the one before it."""

    address: str
    since: float
    source: str | None = None
    checked: float | None = None
    previous: str | None = None


@dataclass
class ZoneRecord:
    """The last apply of one local zone; a failure keeps what the success before it applied."""

    result: str | None = None  # "ok" or "failed"
    addresses: dict[int, str] | None = None
    fingerprint: str | None = None
    time: float | None = None
    message: str | None = None
    error: str | None = None


@dataclass
class RelaySignal:
    """The last mail-log signal the watchdog acted on."""

    time: float
    action: str
    reason: str


@dataclass
class ReconnectRecord:
    """The last reconnect and what it came to ("ok" or "unchanged")."""

    time: float
    reason: str
    old: str | None
    new: str | None
    result: str
    message: str


@dataclass
class Recovery:
    """When the relay accepted mail again, and how long that took after the signal."""

    time: float
    seconds: float


@dataclass
class LogPosition:
    """Where the mail-log follower stopped reading (the file, its identity and the offset)."""

    path: str
    device: int
    inode: int
    offset: int


@dataclass
class Relay:
    """What the relay watchdog keeps: reconnect attempts (for the cooldown and the daily cap),
    the last signal, reconnect and recovery, the log position and the bounce count."""

    attempts: list[float] = field(default_factory=list)
    unchanged: int = 0
    last_signal: RelaySignal | None = None
    last_reconnect: ReconnectRecord | None = None
    last_recovery: Recovery | None = None
    position: LogPosition | None = None
    bounce_rate: int = 0
    # The last mail the relay refused for good (a 5xx, status=bounced): `doctor` points to
    # soft_bounce. `action` is the kind of refusal, `reason` the log line's words.
    last_bounced: RelaySignal | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# The address history (`ddnsagent history`, issue 14 part 4): kept in HISTORY_FILENAME, bounded.
HISTORY_LIMIT = 500  # address entries kept, and as many time-line events; the oldest go first
HISTORY_FILENAME = "history.json"


@dataclass
class AddressEntry:
    """One address held: from when it was first detected until the next one of its family.

    `last` is when a sync last saw it; for the current address it is written when the address
    changes (the detected record's `checked` says it in between, so a sync that only re-detects
    it adds nothing to the history). `source` is how it came (interface, web, dns, command,
    hook, given, reconnect), `detail` the detection source or the caller; `sent` maps each
    target (a provider's name, or `zone:NAME`) to when it first accepted the address."""

    family: int
    address: str
    first: float
    last: float
    source: str
    detail: str | None = None
    sent: dict[str, float] = field(default_factory=dict)


@dataclass
class HistoryEvent:
    """A relay incident, recovery or reconnect on the same time line as the addresses."""

    time: float
    kind: str  # "relay", "recovery" or "reconnect"
    action: str
    reason: str
    old: str | None = None
    new: str | None = None
    family: int | None = None


@dataclass
class History:
    """The last HISTORY_LIMIT addresses and events, each list oldest first."""

    addresses: list[AddressEntry] = field(default_factory=list)
    events: list[HistoryEvent] = field(default_factory=list)


@dataclass
class HistoryIndex:
    """What state.json says of the history's file, so that a sync that finds the same address
    again need not read 240 KB to learn it is not news: the latest address of each family in
    it, and which file that was (inode, size, modification time in ns; None: no file). It is
    believed only while the file is still that one: a crash between the two files' saves, or a
    hand edit, makes the next one who asks read the file itself."""

    latest: dict[int, str] = field(default_factory=dict)
    file: tuple[int, int, int] | None = None


class _HistorySlot:
    """An AgentState's history: None until first used, then read from its file by `source`
    (the store's, under the edit's lock). `saved` is the file's content as read or last
    written, so a save writes the file only when the history changed."""

    __slots__ = ("believed", "index", "saved", "source", "value")

    def __init__(self) -> None:
        self.value: History | None = None
        self.source: Callable[[], History] | None = None
        self.saved: bytes | None = None
        self.index: HistoryIndex | None = None
        self.believed = False  # the index describes the file as it is


@dataclass
class HeartbeatRecord:
    """The last heartbeat ping (`[heartbeat]`): when, which kind (start, up, fail), whether the
    service accepted it and its answer; the last accepted one, and since when none is."""

    time: float
    kind: str
    ok: bool
    result: str
    preset: str | None = None
    last_ok: float | None = None
    failing_since: float | None = None


def note_heartbeat(
    state: AgentState, at: float, kind: str, ok: bool, result: str, preset: str | None
) -> None:
    """Record one ping in `state`; one older than what is kept changes nothing."""
    before = state.heartbeat
    if before is not None and before.time > at:
        return
    last_ok = at if ok else (before.last_ok if before else None)
    failing_since = None
    if not ok:
        failing_since = before.failing_since if before and before.failing_since else at
    state.heartbeat = HeartbeatRecord(at, kind, ok, result[:500], preset, last_ok, failing_since)


@dataclass
class DnsblFinding:
    """What one blocklist said of our address, when it was not "not listed"."""

    zone: str
    name: str
    verdict: str  # "listed", "policy", "refused" or "error" (ddnsagent.dnsbl.lists.VERDICTS)
    codes: list[str]
    text: str
    lookup: str | None = None
    fix: str | None = None


@dataclass
class DnsblCheck:
    """The last DNSBL check of a family's address, and what it led to."""

    address: str
    time: float
    verdict: str
    zones: list[str] = field(default_factory=list)  # the zones asked
    findings: list[DnsblFinding] = field(default_factory=list)
    action: str | None = None  # the reconnect it led to, or why none


@dataclass
class Dnsbl:
    """The DNSBL check: the last check per family, and the listed addresses it acted on — it
    reconnected away from them, or declined to because a DNSBL reconnect had just brought them.
    The check never reconnects for one of those again, so it never loops."""

    checks: dict[int, DnsblCheck] = field(default_factory=dict)
    acted_on: list[str] = field(default_factory=list)


@dataclass
class NatCheck:
    """The last comparison of an interface source with the echoes, for one family (see
    detect/nat.py): when it was tried, when it last came to a verdict, the verdict ("agree",
    "cgnat", "private", "elsewhere"; "unknown" before the first) and the pair it was about.
    `since` is when this verdict and pair were first seen: the episode said once."""

    tried: float
    result: str = "unknown"
    checked: float | None = None
    interface: str | None = None
    local: str | None = None  # the interface's addresses, comma-separated
    echo: str | None = None
    since: float | None = None


@dataclass
class Guard:
    """The bounce guard's episode (relay/guard.py): since when bounces go on hold (None: not
    now), how many were held at the last look and their top recipient domains, the episode's
    one notice, and why the last hold failed (None: it worked)."""

    since: float | None = None
    time: float = 0.0  # the last change
    held: int = 0
    domains: list[str] = field(default_factory=list)
    notice: str = ""
    problem: str | None = None


@dataclass
class AgentState:
    """The whole state; `salt` keys the fingerprints, so they say nothing outside this file."""

    salt: str = field(default_factory=lambda: os.urandom(16).hex())
    detected: dict[int, Detected] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    zones: dict[str, ZoneRecord] = field(default_factory=dict)
    relay: Relay = field(default_factory=Relay)
    guard: Guard | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    heartbeat: HeartbeatRecord | None = None
    dnsbl: Dnsbl = field(default_factory=Dnsbl)
    nat: dict[int, NatCheck] = field(default_factory=dict)  # by family
    _history: _HistorySlot = field(
        default_factory=_HistorySlot, init=False, repr=False, compare=False
    )

    def target(self, name: str) -> Target:
        """The target's record, created empty on first use."""
        return self.targets.setdefault(name, Target())

    @property
    def history(self) -> History:
        """The address history, read from its own file on first use (under the lock in an
        edit); changes to it are saved with the rest of the state."""
        slot = self._history
        if slot.value is None:
            source, slot.source = slot.source, None
            slot.value = source() if source is not None else History()
        return slot.value

    def history_latest(self, family: int) -> str | None:
        """The latest address of `family` in the history; from state.json's index while that
        still describes the file, so a sync that finds the same address reads nothing more."""
        slot = self._history
        if slot.value is None and slot.believed and slot.index is not None:
            return slot.index.latest.get(family)
        return _latest_addresses(self.history).get(family)


def _latest_addresses(h: History) -> dict[int, str]:
    latest: dict[int, str] = {}
    for entry in h.addresses:  # oldest first: the last one of a family wins
        latest[entry.family] = entry.address
    return latest


# -- from and to JSON ----------------------------------------------------------------------------


Spec = Mapping[str, tuple[type, ...]]
_NUMBER: tuple[type, ...] = (int, float)
_OPT_NUMBER: tuple[type, ...] = (int, float, type(None))
_OPT_STR: tuple[type, ...] = (str, type(None))


class _Checker:
    """Reads one loaded JSON document; every entry of the wrong shape is noted and left out."""

    def __init__(self) -> None:
        self.dropped: list[str] = []

    def drop(self, where: str, why: str) -> None:
        self.dropped.append(f"{where} ({why})")

    def table(self, raw: Any, where: str) -> dict[str, Any] | None:
        if isinstance(raw, dict):
            return raw
        self.drop(where, f"not an object but {type(raw).__name__}")
        return None

    def families(self, raw: Any, where: str) -> Iterator[tuple[int, Any, str]]:
        """The (family, value, where) of an object keyed "4"/"6"; other keys are dropped."""
        for key, value in (self.table(raw, where) or {}).items():
            if key in ("4", "6"):
                yield int(key), value, f"{where}.{key}"
            else:
                self.drop(f"{where}.{key}", "not an address family")

    def record(self, raw: Any, where: str, spec: Spec) -> dict[str, Any] | None:
        """The fields of `spec` from `raw` (None for an absent optional one); None if any is
        missing or of the wrong type. A type tuple containing NoneType marks an optional field."""
        obj = self.table(raw, where)
        if obj is None:
            return None
        out: dict[str, Any] = {}
        for key, types in spec.items():
            value = obj.get(key)
            if value is None and type(None) in types:
                out[key] = None
                continue
            if not _is(value, types):
                shown = "missing" if key not in obj else f"{type(value).__name__} {value!r:.40}"
                self.drop(where, f"{key}: {shown}")
                return None
            out[key] = value
        return out


# A time beyond this (the year 5138) is a wrong value that would crash time formatting; an
# integer (a count, a file offset or inode) beyond 64 bits is not one a system gives.
_MAX_TIME = 1e11
_MAX_INT = 1 << 64


def _is(value: Any, types: tuple[type, ...]) -> bool:
    """`value` is of `types`; a number also finite and in range. A float field takes an int."""
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int | float):
        return math.isfinite(value) and abs(value) < _MAX_TIME
    if isinstance(value, int):
        return int in types and abs(value) < _MAX_INT
    return isinstance(value, types)


def _parse(data: dict[str, Any], check: _Checker) -> AgentState:
    state = AgentState(extra={k: v for k, v in data.items() if k not in _TOP_KEYS})
    for family, raw, where in check.families(data.get("detected", {}), "detected"):
        f = check.record(
            raw,
            where,
            {
                "address": (str,),
                "since": _NUMBER,
                "source": _OPT_STR,
                "checked": _OPT_NUMBER,
                "previous": _OPT_STR,
            },
        )
        if f is not None:
            state.detected[family] = Detected(**f)
    for name, raw in (check.table(data.get("targets", {}), "targets") or {}).items():
        target = _parse_target(raw, f"targets.{name}", check)
        if target is not None:
            state.targets[name] = target
    for name, raw in (check.table(data.get("zones", {}), "zones") or {}).items():
        zone = _parse_zone(raw, f"zones.{name}", check)
        if zone is not None:
            state.zones[name] = zone
    if "relay" in data:
        state.relay = _parse_relay(data["relay"], check)
    if data.get("heartbeat") is not None:
        state.heartbeat = _parse_heartbeat(data["heartbeat"], check)
    if "history" in data:  # written before the history had its own file: moved there
        state._history.value = _parse_history(data["history"], check)
    if data.get("history_index") is not None:
        state._history.index = _parse_history_index(data["history_index"], check)
    if "dnsbl" in data:
        state.dnsbl = _parse_dnsbl(data["dnsbl"], check)
    if "nat" in data:
        state.nat = _parse_nat(data["nat"], check)
    if data.get("guard") is not None:
        state.guard = _parse_guard(data["guard"], check)
    salt = data.get("salt")
    try:
        if not isinstance(salt, str) or len(bytes.fromhex(salt)) < 16:
            raise ValueError
        state.salt = salt
    except ValueError:
        # Only the fingerprints depend on the salt: renew it and forget them, so that the new
        # salt is not mistaken for a configuration change (which would lift stops).
        for target in state.targets.values():
            target.config_fp = target.secret_fp = None
    return state


_TOP_KEYS = (
    "version",
    "salt",
    "detected",
    "targets",
    "zones",
    "relay",
    "heartbeat",
    "history",
    "dnsbl",
    "nat",
    "guard",
    "history_index",
)
_TARGET_KEYS = ("sent", "backoff", "stopped", "config_fp", "secret_fp", "stopped_names")


def _parse_target(raw: Any, where: str, check: _Checker) -> Target | None:
    obj = check.table(raw, where)
    if obj is None:
        return None
    target = Target(extra={k: v for k, v in obj.items() if k not in _TARGET_KEYS})
    for family, entry, at in check.families(obj.get("sent", {}), f"{where}.sent"):
        spec = {"address": (str,), "time": _NUMBER, "unconfirmed": (str, type(None))}
        f = check.record(entry, at, spec)
        if f is not None:
            target.sent[family] = Sent(**f)
    for family, entry, at in check.families(obj.get("backoff", {}), f"{where}.backoff"):
        spec = {"failures": (int,), "retry_after": _NUMBER, "last_error": (str,)}
        f = check.record(entry, at, spec)
        if f is not None:
            target.backoff[family] = Backoff(**f)
    if obj.get("stopped") is not None:
        spec = {"reason": (str,), "fix": (str,), "since": _NUMBER}
        f = check.record(obj["stopped"], f"{where}.stopped", spec)
        if f is not None:
            target.stopped = Stopped(**f)
    for key in ("config_fp", "secret_fp"):
        value = obj.get(key)
        if isinstance(value, str):
            setattr(target, key, value)
        elif value is not None:
            check.drop(f"{where}.{key}", f"not a string but {type(value).__name__}")
    names = check.table(obj.get("stopped_names", {}), f"{where}.stopped_names") or {}
    for host, entry in names.items():
        spec = {"reason": (str,), "fix": (str,), "since": _NUMBER}
        f = check.record(entry, f"{where}.stopped_names.{host}", spec)
        if f is not None:
            target.stopped_names[host] = Stopped(**f)
    return target


def _parse_zone(raw: Any, where: str, check: _Checker) -> ZoneRecord | None:
    spec = {
        "result": _OPT_STR,
        "fingerprint": _OPT_STR,
        "time": _OPT_NUMBER,
        "message": _OPT_STR,
        "error": _OPT_STR,
    }
    f = check.record(raw, where, spec)
    if f is None:
        return None
    addresses = None
    if raw.get("addresses") is not None:
        addresses = {}
        for family, value, at in check.families(raw["addresses"], f"{where}.addresses"):
            if isinstance(value, str):
                addresses[family] = value
            else:
                check.drop(at, f"not a string but {type(value).__name__}")
    return ZoneRecord(addresses=addresses, **f)


_RELAY_KEYS = (
    "attempts",
    "unchanged",
    "last_signal",
    "last_reconnect",
    "last_recovery",
    "position",
    "bounce_rate",
    "last_bounced",
)


def _parse_relay(raw: Any, check: _Checker) -> Relay:
    obj = check.table(raw, "relay") or {}
    relay = Relay(extra={k: v for k, v in obj.items() if k not in _RELAY_KEYS})
    attempts = obj.get("attempts", [])
    if isinstance(attempts, list):
        relay.attempts = [t for t in attempts if _is(t, _NUMBER)]
        if len(relay.attempts) != len(attempts):
            check.drop("relay.attempts", "entries that are not times")
    else:
        check.drop("relay.attempts", f"not a list but {type(attempts).__name__}")
    for key in ("unchanged", "bounce_rate"):
        value = obj.get(key, 0)
        if _is(value, (int,)):
            setattr(relay, key, value)
        else:
            check.drop(f"relay.{key}", f"not a count but {type(value).__name__} {value!r:.40}")
    if obj.get("last_signal") is not None:
        spec = {"time": _NUMBER, "action": (str,), "reason": (str,)}
        f = check.record(obj["last_signal"], "relay.last_signal", spec)
        relay.last_signal = RelaySignal(**f) if f is not None else None
    if obj.get("last_bounced") is not None:
        spec = {"time": _NUMBER, "action": (str,), "reason": (str,)}
        f = check.record(obj["last_bounced"], "relay.last_bounced", spec)
        relay.last_bounced = RelaySignal(**f) if f is not None else None
    if obj.get("last_reconnect") is not None:
        spec = {
            "time": _NUMBER,
            "reason": (str,),
            "old": _OPT_STR,
            "new": _OPT_STR,
            "result": (str,),
            "message": (str,),
        }
        f = check.record(obj["last_reconnect"], "relay.last_reconnect", spec)
        relay.last_reconnect = ReconnectRecord(**f) if f is not None else None
    if obj.get("last_recovery") is not None:
        spec = {"time": _NUMBER, "seconds": _NUMBER}
        f = check.record(obj["last_recovery"], "relay.last_recovery", spec)
        relay.last_recovery = Recovery(**f) if f is not None else None
    if obj.get("position") is not None:
        spec = {"path": (str,), "device": (int,), "inode": (int,), "offset": (int,)}
        f = check.record(obj["position"], "relay.position", spec)
        if f is not None and min(f["device"], f["inode"], f["offset"]) < 0:
            check.drop("relay.position", "a negative number")
            f = None
        relay.position = LogPosition(**f) if f is not None else None
    return relay


def _parse_heartbeat(raw: Any, check: _Checker) -> HeartbeatRecord | None:
    spec = {
        "time": _NUMBER,
        "kind": (str,),
        "ok": (bool,),
        "result": (str,),
        "preset": _OPT_STR,
        "last_ok": _OPT_NUMBER,
        "failing_since": _OPT_NUMBER,
    }
    f = check.record(raw, "heartbeat", spec)
    return HeartbeatRecord(**f) if f is not None else None


def _heartbeat_json(h: HeartbeatRecord) -> dict[str, Any]:
    return _without_none(
        {
            "time": h.time,
            "kind": h.kind,
            "ok": h.ok,
            "result": h.result,
            "preset": h.preset,
            "last_ok": h.last_ok,
            "failing_since": h.failing_since,
        }
    )


def _parse_nat(raw: Any, check: _Checker) -> dict[int, NatCheck]:
    spec = {
        "tried": _NUMBER,
        "result": (str,),
        "checked": _OPT_NUMBER,
        "interface": _OPT_STR,
        "local": _OPT_STR,
        "echo": _OPT_STR,
        "since": _OPT_NUMBER,
    }
    out = {}
    for family, entry, where in check.families(raw, "nat"):
        f = check.record(entry, where, spec)
        if f is not None:
            out[family] = NatCheck(**f)
    return out


def _nat_json(n: NatCheck) -> dict[str, Any]:
    return _without_none(
        {
            "tried": n.tried,
            "result": n.result,
            "checked": n.checked,
            "interface": n.interface,
            "local": n.local,
            "echo": n.echo,
            "since": n.since,
        }
    )


_ADDRESS_SPEC: Spec = {
    "family": (int,),
    "address": (str,),
    "first": _NUMBER,
    "last": _NUMBER,
    "source": (str,),
    "detail": _OPT_STR,
}
_EVENT_SPEC: Spec = {
    "time": _NUMBER,
    "kind": (str,),
    "action": (str,),
    "reason": (str,),
    "old": _OPT_STR,
    "new": _OPT_STR,
    "family": (int, type(None)),
}


def _parse_history(raw: Any, check: _Checker) -> History:
    """The address history; each wrong entry dropped alone, the lists cut to HISTORY_LIMIT."""
    obj = check.table(raw, "history") or {}
    history = History()
    for i, entry in enumerate(_history_list(obj, "addresses", check)):
        where = f"history.addresses[{i}]"
        f = check.record(entry, where, _ADDRESS_SPEC)
        if f is None:
            continue
        if f["family"] not in (4, 6):
            check.drop(where, f"family: {f['family']!r:.20} is not 4 or 6")
            continue
        sent: dict[str, float] = {}
        for name, when in (check.table(entry.get("sent", {}), f"{where}.sent") or {}).items():
            if _is(when, _NUMBER):
                sent[name] = when
            else:
                check.drop(f"{where}.sent.{name}", f"not a time but {type(when).__name__}")
        history.addresses.append(AddressEntry(sent=sent, **f))
    for i, entry in enumerate(_history_list(obj, "events", check)):
        f = check.record(entry, f"history.events[{i}]", _EVENT_SPEC)
        if f is not None:
            history.events.append(HistoryEvent(**f))
    # Oldest first (a hand edit may have mixed them up), and no more than the bound.
    history.addresses.sort(key=lambda a: a.first)
    history.events.sort(key=lambda e: e.time)
    del history.addresses[:-HISTORY_LIMIT]
    del history.events[:-HISTORY_LIMIT]
    return history


def _history_list(obj: dict[str, Any], key: str, check: _Checker) -> list[Any]:
    value = obj.get(key, [])
    if isinstance(value, list):
        return value
    check.drop(f"history.{key}", f"not a list but {type(value).__name__}")
    return []


def _parse_history_index(raw: Any, check: _Checker) -> HistoryIndex | None:
    obj = check.table(raw, "history_index")
    if obj is None:
        return None
    index = HistoryIndex()
    for family, value, where in check.families(obj.get("latest", {}), "history_index.latest"):
        if isinstance(value, str):
            index.latest[family] = value
        else:
            check.drop(where, f"not a string but {type(value).__name__}")
    file = obj.get("file")
    if isinstance(file, list) and len(file) == 3 and all(_is(n, (int,)) for n in file):
        index.file = (file[0], file[1], file[2])
    elif file is not None:
        check.drop("history_index.file", f"not [inode, size, mtime] but {file!r:.40}")
        return None
    return index


def _history_index_json(index: HistoryIndex) -> dict[str, Any]:
    return {
        "latest": {str(f): a for f, a in sorted(index.latest.items())},
        "file": list(index.file) if index.file is not None else None,
    }


MAX_ACTED_ON = 50  # listed addresses the DNSBL check remembers having acted on


def _parse_dnsbl(raw: Any, check: _Checker) -> Dnsbl:
    obj = check.table(raw, "dnsbl") or {}
    out = Dnsbl()
    for family, entry, where in check.families(obj.get("checks", {}), "dnsbl.checks"):
        spec = {
            "address": (str,),
            "time": _NUMBER,
            "verdict": (str,),
            "zones": (list,),
            "findings": (list,),
            "action": _OPT_STR,
        }
        f = check.record(entry, where, spec)
        if f is None:
            continue
        zones = [z for z in f["zones"] if isinstance(z, str)]
        findings = []
        for i, item in enumerate(f["findings"]):
            spec = {
                "zone": (str,),
                "name": (str,),
                "verdict": (str,),
                "codes": (list,),
                "text": (str,),
                "lookup": _OPT_STR,
                "fix": _OPT_STR,
            }
            g = check.record(item, f"{where}.findings[{i}]", spec)
            if g is not None:
                g["codes"] = [c for c in g["codes"] if isinstance(c, str)]
                findings.append(DnsblFinding(**g))
        out.checks[family] = DnsblCheck(
            f["address"], f["time"], f["verdict"], zones, findings, f["action"]
        )
    done = obj.get("acted_on", [])
    if isinstance(done, list):
        out.acted_on = [a for a in done if isinstance(a, str)][-MAX_ACTED_ON:]
    else:
        check.drop("dnsbl.acted_on", f"not a list but {type(done).__name__}")
    return out


def _dnsbl_json(d: Dnsbl) -> dict[str, Any]:
    return {
        "checks": {str(f): dnsbl_check_json(c) for f, c in sorted(d.checks.items())},
        "acted_on": d.acted_on[-MAX_ACTED_ON:],
    }


def dnsbl_check_json(c: DnsblCheck) -> dict[str, Any]:
    """One check's keys, as state.json keeps them (`status --json` and `dnsbl --json` too)."""
    return {
        "address": c.address,
        "time": c.time,
        "verdict": c.verdict,
        "zones": list(c.zones),
        "findings": [
            {
                "zone": x.zone,
                "name": x.name,
                "verdict": x.verdict,
                "codes": list(x.codes),
                "text": x.text,
                "lookup": x.lookup,
                "fix": x.fix,
            }
            for x in c.findings
        ],
        "action": c.action,
    }


def _parse_guard(raw: Any, check: _Checker) -> Guard | None:
    spec = {
        "since": _OPT_NUMBER,
        "time": _NUMBER,
        "held": (int,),
        "domains": (list,),
        "notice": (str,),
        "problem": _OPT_STR,
    }
    f = check.record(raw, "guard", spec)
    if f is None:
        return None
    domains = [d for d in f["domains"] if isinstance(d, str)]
    if len(domains) != len(f["domains"]):
        check.drop("guard.domains", "entries that are not names")
    return Guard(**{**f, "domains": domains[:10], "held": max(f["held"], 0)})


def _guard_json(g: Guard) -> dict[str, Any]:
    return {
        "since": g.since,
        "time": g.time,
        "held": g.held,
        "domains": list(g.domains),
        "notice": g.notice,
        "problem": g.problem,
    }


def _without_none(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def to_json(state: AgentState) -> dict[str, Any]:
    """state.json's content for `state` (the same version and keys as ever, but the history:
    in its own file since the first save of this version, with an index here)."""
    out: dict[str, Any] = {
        **state.extra,
        "version": VERSION,
        "salt": state.salt,
        "detected": {
            str(f): _without_none(
                {
                    "address": d.address,
                    "since": d.since,
                    "source": d.source,
                    "checked": d.checked,
                    "previous": d.previous,
                }
            )
            for f, d in sorted(state.detected.items())
        },
        "targets": {name: _target_json(t) for name, t in state.targets.items()},
    }
    if state.zones:
        out["zones"] = {name: _zone_json(z) for name, z in state.zones.items()}
    relay = _relay_json(state.relay)
    if relay:
        out["relay"] = relay
    if state.heartbeat is not None:
        out["heartbeat"] = _heartbeat_json(state.heartbeat)
    if state._history.index is not None:  # the history itself: in HISTORY_FILENAME
        out["history_index"] = _history_index_json(state._history.index)
    if state.dnsbl.checks or state.dnsbl.acted_on:
        out["dnsbl"] = _dnsbl_json(state.dnsbl)
    if state.nat:
        out["nat"] = {str(f): _nat_json(n) for f, n in sorted(state.nat.items())}
    if state.guard is not None:
        out["guard"] = _guard_json(state.guard)
    return out


def _sent_json(s: Sent) -> dict[str, Any]:
    out: dict[str, Any] = {"address": s.address, "time": s.time}
    if s.unconfirmed is not None:
        out["unconfirmed"] = s.unconfirmed
    return out


def _target_json(t: Target) -> dict[str, Any]:
    out: dict[str, Any] = {
        **t.extra,
        "sent": {str(f): _sent_json(s) for f, s in sorted(t.sent.items())},
        "backoff": {
            str(f): {
                "failures": b.failures,
                "retry_after": b.retry_after,
                "last_error": b.last_error,
            }
            for f, b in sorted(t.backoff.items())
        },
    }
    if t.stopped is not None:
        s = t.stopped
        out["stopped"] = {"reason": s.reason, "fix": s.fix, "since": s.since}
    if t.config_fp is not None:
        out["config_fp"] = t.config_fp
    if t.secret_fp is not None:
        out["secret_fp"] = t.secret_fp
    if t.stopped_names:
        out["stopped_names"] = {
            host: {"reason": s.reason, "fix": s.fix, "since": s.since}
            for host, s in sorted(t.stopped_names.items())
        }
    return out


def _zone_json(z: ZoneRecord) -> dict[str, Any]:
    addresses = None
    if z.addresses is not None:
        addresses = {str(f): a for f, a in sorted(z.addresses.items())}
    return _without_none(
        {
            "result": z.result,
            "addresses": addresses,
            "fingerprint": z.fingerprint,
            "time": z.time,
            "message": z.message,
            "error": z.error,
        }
    )


def _relay_json(r: Relay) -> dict[str, Any]:
    """Only what is set: an agent without a relay watch keeps no relay section."""
    out: dict[str, Any] = dict(r.extra)
    if r.attempts:
        out["attempts"] = list(r.attempts)
    if r.unchanged:
        out["unchanged"] = r.unchanged
    if r.bounce_rate:
        out["bounce_rate"] = r.bounce_rate
    if r.last_signal is not None:
        out["last_signal"] = _signal_json(r.last_signal)
    if r.last_reconnect is not None:
        out["last_reconnect"] = _reconnect_json(r.last_reconnect)
    if r.last_recovery is not None:
        out["last_recovery"] = _recovery_json(r.last_recovery)
    if r.last_bounced is not None:
        out["last_bounced"] = _signal_json(r.last_bounced)
    if r.position is not None:
        p = r.position
        out["position"] = {"device": p.device, "inode": p.inode, "offset": p.offset, "path": p.path}
    return out


def _history_json(h: History) -> dict[str, Any]:
    """Only the fields that are set: 500 entries make a file of some 240 KB."""
    addresses = []
    for a in h.addresses:
        entry: dict[str, Any] = {
            "family": a.family,
            "address": a.address,
            "first": a.first,
            "last": a.last,
            "source": a.source,
        }
        if a.detail is not None:
            entry["detail"] = a.detail
        if a.sent:
            entry["sent"] = dict(a.sent)
        addresses.append(entry)
    events = [_without_none(history_event_json(e)) for e in h.events]
    return {"addresses": addresses, "events": events}


def history_event_json(e: HistoryEvent) -> dict[str, Any]:
    """An event's keys, every one (`history --json` shows them all; the file leaves out None)."""
    return {
        "time": e.time,
        "kind": e.kind,
        "action": e.action,
        "reason": e.reason,
        "old": e.old,
        "new": e.new,
        "family": e.family,
    }


def _signal_json(s: RelaySignal) -> dict[str, Any]:
    return {"time": s.time, "action": s.action, "reason": s.reason}


def _reconnect_json(r: ReconnectRecord) -> dict[str, Any]:
    return {
        "time": r.time,
        "reason": r.reason,
        "old": r.old,
        "new": r.new,
        "result": r.result,
        "message": r.message,
    }


def _recovery_json(r: Recovery) -> dict[str, Any]:
    return {"time": r.time, "seconds": r.seconds}


# -- the file ------------------------------------------------------------------------------------
#
# Who owns what in the state directory (/var/lib/ddnsagent, made by systemd's StateDirectory=):
# the directory and everything in it belong to the service user. Root (pppd's hook, `reconnect`,
# `notify-now` by hand) works in it too, so it treats the directory as hostile: the path to it
# must be one only root can have steered (safefile.Directory.on_trusted_path), and every file is
# opened by name in the opened directory, never following a link, only when it is a regular file
# with one link belonging to root or to the directory's owner. What root creates there is given
# to the directory's owner, so the service can go on using it.

STATE_LIMIT = 16 << 20  # the state is a few KB; a file this large is not one we wrote
HISTORY_FILE_LIMIT = 8 << 20  # a full history is some 240 KB; one this large is moved aside


class StoreSettings(Protocol):
    """What the store needs of `[agent]`."""

    @property
    def state_dir(self) -> Path: ...

    @property
    def lock_timeout(self) -> float: ...


def open_directory(directory: Path, *, create: bool) -> Directory | None:
    """The state directory, opened; None when it does not exist and `create` is False.

    As root: every directory on the way must be root's alone, and the state directory itself
    may belong to anyone (the service user) but must not be a link. As anyone else: it must not
    be a link and must belong to us or to root. In both cases it must be writable by its owner
    only, or others could plant files in it."""
    euid = os.geteuid()
    try:
        if euid == 0:
            opened = Directory.on_trusted_path(directory, writers={0}, create=create)
        else:
            if not create and not os.path.lexists(directory):
                return None
            if create:
                directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            opened = Directory(directory, owners={0, euid}, create=create)
    except FileNotFoundError:
        if not create:
            return None
        raise DdnsagentError(
            f"cannot create the state directory {directory}: a parent is missing — "
            "set [agent] state_dir to a writable directory"
        ) from None
    except UnsafeFile as exc:
        raise UnsafeFile(f"state directory: {exc}") from None
    except OSError as exc:
        raise DdnsagentError(
            f"cannot {'create' if create else 'open'} the state directory {directory}: "
            f"{exc.strerror} — set [agent] state_dir to a writable directory"
        ) from None
    mode = stat.S_IMODE(os.fstat(opened.fd).st_mode)
    if mode & 0o022:
        opened.close()
        raise UnsafeFile(
            f"the state directory {directory} is writable by group or others (mode {mode:04o}), "
            f"so they could plant files in it — run: chmod 700 {directory}"
        )
    return opened


def _trusted(d: Directory) -> set[int]:
    """Who may own a file in the state directory: root, its owner, and we who write there."""
    return {0, d.uid, os.geteuid()}


def _refused(exc: UnsafeFile) -> UnsafeFile:
    return UnsafeFile(
        f"{exc} — ddnsagent never makes links, FIFOs or hard links in its state directory, and "
        "all its files there belong to the directory's owner: find out who made this, then "
        "remove it"
    )


def open_lock_file(directory: Path, name: str) -> int:
    """A descriptor of the lock file `name` in the state directory (made when missing), for
    flock(). Refuses a link, a FIFO, a hard link or a foreign owner; never truncates."""
    d = open_directory(directory, create=True)
    assert d is not None
    with d:
        try:
            fd = d.open(name, os.O_RDWR | os.O_CREAT, 0o600, owners=_trusted(d))
        except UnsafeFile as exc:
            raise _refused(exc) from None
        except OSError as exc:
            raise DdnsagentError(
                f"cannot open the lock {d.where(name)}: {exc.strerror} — "
                "set [agent] state_dir to a writable directory"
            ) from None
        _give_to_owner(fd, d)
        return fd


def _give_to_owner(fd: int, d: Directory) -> None:
    """Root (a hook, `notify-now` by hand) writing into the service's own state directory must
    leave files the service can still use: they take the directory's owner."""
    if os.geteuid() != 0 or d.uid == 0:
        return
    with contextlib.suppress(OSError):
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (d.uid, d.gid):
            os.fchown(fd, d.uid, d.gid)


class Store:
    """The state file and its lock. `load()` for readers; `edit()` / `edit_async()` for writers."""

    def __init__(self, directory: Path, lock_timeout: float = 120.0) -> None:
        self.directory = directory
        self.path = directory / FILENAME
        self.lock_timeout = lock_timeout
        self._editing: AgentState | None = None
        self._dir: Directory | None = None

    @classmethod
    def of(cls, agent: StoreSettings) -> Store:
        """The one way to open the store: from the `[agent]` settings."""
        return cls(agent.state_dir, agent.lock_timeout)

    def load(self) -> AgentState:
        """A snapshot for readers (status, metrics); takes no lock, since saves are atomic."""
        d = open_directory(self.directory, create=False)
        if d is None:
            return AgentState()
        with d:
            return self._load(d)

    def _load(self, d: Directory) -> AgentState:
        state = self._load_state(d)
        self._attach_history(d, state)
        return state

    def _load_state(self, d: Directory) -> AgentState:
        try:
            raw = d.read(FILENAME, STATE_LIMIT, owners=_trusted(d))
        except FileNotFoundError:
            return AgentState()
        except UnsafeFile as exc:
            raise _refused(exc) from None
        except OSError as exc:
            raise DdnsagentError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError(f"not a JSON object but {type(data).__name__}")
            if data.get("version") != VERSION:
                raise ValueError(f"unknown version {data.get('version')!r:.40}")
        except (ValueError, RecursionError) as exc:
            aside = self._aside_name(d, FILENAME)
            with contextlib.suppress(OSError):
                os.replace(FILENAME, aside, src_dir_fd=d.fd, dst_dir_fd=d.fd)
            log.warning(
                "state file %s was unreadable (%s); moved aside to %s and starting fresh",
                self.path,
                str(exc)[:100] or type(exc).__name__,
                d.where(aside),
            )
            return AgentState()
        check = _Checker()
        state = _parse(data, check)
        if check.dropped:
            shown = "; ".join(check.dropped[:SHOWN])
            more = f" and {len(check.dropped) - SHOWN} more" if len(check.dropped) > SHOWN else ""
            log.warning(
                "state file %s: left out entries of the wrong type, kept the rest: %s%s",
                self.path,
                shown,
                more,
            )
        return state

    @contextlib.contextmanager
    def edit(self, *, save: bool = True) -> Iterator[AgentState]:
        """Lock, load, yield the state to change, save (unless `save` is False, a dry run).

        When the body raises, nothing more is saved; what `checkpoint()` saved stays.
        """
        lock = StateLock(self.directory, self.lock_timeout)
        lock.acquire()
        try:
            with self._editing_state(save) as state:
                yield state
        finally:
            lock.release()

    @contextlib.asynccontextmanager
    async def edit_async(self, *, save: bool = True) -> AsyncIterator[AgentState]:
        """`edit()` for the event loop: the wait for the lock happens in a thread."""
        lock = StateLock(self.directory, self.lock_timeout)
        import asyncio  # not at the top: status and hooks read the state without a loop

        await asyncio.to_thread(lock.acquire)
        try:
            with self._editing_state(save) as state:
                yield state
        finally:
            lock.release()

    @contextlib.contextmanager
    def _editing_state(self, save: bool) -> Iterator[AgentState]:
        d = open_directory(self.directory, create=True)
        assert d is not None
        with d:
            self._remove_leftovers(d)
            state = self._load(d)
            self._editing, self._dir = state, d
            try:
                yield state
                if save:
                    self._write(d, state)
            finally:
                self._editing = self._dir = None

    def checkpoint(self) -> None:
        """Save the state being edited now, so an outcome survives a kill later in the edit."""
        if self._editing is None or self._dir is None:
            raise RuntimeError("checkpoint() outside edit()")
        self._write(self._dir, self._editing)

    def _remove_leftovers(self, d: Directory) -> None:
        """Temporary files of a save that a kill interrupted; only under the lock, where no
        other save can be under way. Anything else with such a name is reported, not touched."""
        for kept in (FILENAME, HISTORY_FILENAME):
            for name in d.remove_stale_temps(kept):
                log.info("removed %s, left behind by an interrupted save", d.where(name))
        prefixes, suffix = (f".{FILENAME}.", f".{HISTORY_FILENAME}."), safefile.TEMP_SUFFIX
        for name in os.listdir(d.fd)[:10_000]:
            if name.startswith(prefixes) and name.endswith(suffix):
                with contextlib.suppress(OSError):
                    st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        continue
                    log.warning(
                        "%s is %s where ddnsagent keeps temporary files; not opened, left alone — "
                        "find out who made it, then remove it",
                        d.where(name),
                        "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file",
                    )

    def _aside_name(self, d: Directory, name: str) -> str:
        """A name no earlier corrupt file has, so a second one in a second keeps the first."""
        base = f"{name}.corrupt-{int(time.time())}"
        for n in range(1000):
            aside = base if n == 0 else f"{base}.{n}"
            if not d.exists(aside):
                return aside
        return f"{base}.{os.getpid()}"

    def _write(self, d: Directory, state: AgentState) -> None:
        """Replace the files atomically; only ever called under the lock. On any failure (a full
        disk) each file keeps what it held and the temporary file is gone.

        The history first, and only when it was read and changed; then state.json, with the
        index of the history just written. A kill between the two leaves the new history and
        the old state.json, whose index no longer describes the file: the next sync reads the
        history itself, finds the address it brings already noted, and notes nothing twice
        (history.py's notes are idempotent). The other order could lose an entry."""
        slot = state._history
        if slot.value is not None:
            payload = _history_payload(slot.value)
            if payload != slot.saved:
                self._replace(d, HISTORY_FILENAME, payload, "the address history")
                slot.saved = payload
            slot.index = HistoryIndex(_latest_addresses(slot.value), _history_file(d))
            slot.believed = True
        payload = json.dumps(to_json(state), indent=1, sort_keys=True).encode() + b"\n"
        self._replace(d, FILENAME, payload, "the state")

    def _replace(self, d: Directory, name: str, payload: bytes, what: str) -> None:
        try:
            d.replace(name, payload, 0o600, owner=(d.uid, d.gid))
        except OSError as exc:
            raise DdnsagentError(
                f"cannot save {what} in {d.where(name)}: {exc.strerror} — it still holds what it "
                f"held before this run; free space on the file system of {self.directory}"
                if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                else f"cannot save {what} in {d.where(name)}: {exc.strerror} — it still holds "
                "what it held before this run"
            ) from None

    # -- the history's file ----------------------------------------------------------------------
    # HISTORY_FILENAME beside state.json, under the same lock and the same rules (opened by name
    # from the opened directory, no links, trusted owners, size cap, atomic replace given to the
    # directory's owner). Read on first use of `state.history`; a sync that finds the same
    # address again asks only state.json's index (AgentState.history_latest), so it neither
    # reads nor writes the history.

    def _attach_history(self, d: Directory, state: AgentState) -> None:
        slot = state._history
        found = _history_file(d)
        if slot.value is not None:  # a history key in state.json (before its own file)
            if found is None:
                slot.saved = None  # the next save moves it into its file
                return
            slot.value = None  # the file was written, state.json not yet: the file wins
        slot.believed = slot.index is not None and slot.index.file == found
        slot.source = lambda: self._read_history(state)

    def _read_history(self, state: AgentState) -> History:
        if self._editing is state and self._dir is not None:
            return self._history_from(self._dir, state._history, locked=True)
        d = open_directory(self.directory, create=False)  # a reader's, after load()
        if d is None:
            return History()
        with d:
            return self._history_from(d, state._history, locked=False)

    def _history_from(self, d: Directory, slot: _HistorySlot, *, locked: bool) -> History:
        """The history in its file. One that cannot be read is moved aside with one warning
        (under the lock; a reader only says so) and the history starts anew: never a failed
        sync for it. A link, a FIFO or a foreign owner is refused as in state.json."""
        where = d.where(HISTORY_FILENAME)
        try:
            try:
                raw = d.read(HISTORY_FILENAME, HISTORY_FILE_LIMIT, owners=_trusted(d))
            except FileTooLarge as exc:  # not refused: moved aside like any unreadable history
                raise ValueError(
                    f"more than {exc.limit} bytes, more than a history ever takes"
                ) from None
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError(f"not a JSON object but {type(data).__name__}")
            if data.get("version") != VERSION:
                raise ValueError(f"unknown version {data.get('version')!r:.40}")
        except FileNotFoundError:
            slot.saved = _EMPTY_HISTORY
            return History()
        except UnsafeFile as exc:
            raise _refused(exc) from None
        except (OSError, ValueError, RecursionError) as exc:
            why = (exc.strerror if isinstance(exc, OSError) else str(exc)[:100]) or "?"
            if not locked:
                log.warning(
                    "the address history %s is unreadable (%s); shown empty — the next sync "
                    "that notes an entry moves it aside",
                    where,
                    why,
                )
                return History()
            aside = self._aside_name(d, HISTORY_FILENAME)
            with contextlib.suppress(OSError):
                os.replace(HISTORY_FILENAME, aside, src_dir_fd=d.fd, dst_dir_fd=d.fd)
            log.warning(
                "the address history %s was unreadable (%s); moved aside to %s and started "
                "anew (syncs go on)",
                where,
                why,
                d.where(aside),
            )
            slot.saved = None if d.exists(HISTORY_FILENAME) else _EMPTY_HISTORY
            return History()
        check = _Checker()
        history = _parse_history(data, check)
        if check.dropped:
            shown = "; ".join(check.dropped[:SHOWN])
            more = f" and {len(check.dropped) - SHOWN} more" if len(check.dropped) > SHOWN else ""
            log.warning(
                "address history %s: left out entries of the wrong type, kept the rest: %s%s",
                where,
                shown,
                more,
            )
        slot.saved = raw
        return history


def _history_payload(h: History) -> bytes:
    data = {"version": VERSION, **_history_json(h)}
    return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"


_EMPTY_HISTORY = _history_payload(History())  # what a missing file holds: nothing to write


def _history_file(d: Directory) -> tuple[int, int, int] | None:
    """Which history file is there now (inode, size, mtime in ns), without opening it; None
    when there is none. Every save makes a new inode, so a file this names is the one read."""
    try:
        st = os.stat(HISTORY_FILENAME, dir_fd=d.fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class StateLock:
    """The exclusive lock beside the state; waits up to `timeout` for another process."""

    # Set while this process shuts down, so that a thread waiting for the lock lets it exit now
    # instead of holding the exit back for up to `timeout` (the daemon on SIGTERM).
    _give_up = threading.Event()

    def __init__(self, directory: Path, timeout: float) -> None:
        self.directory = directory
        self.timeout = timeout
        self._fd: int | None = None

    @classmethod
    def give_up_waiting(cls, give_up: bool = True) -> None:
        """End every wait for the lock in this process now (and refuse new ones); False re-arms."""
        if give_up:
            cls._give_up.set()
        else:
            cls._give_up.clear()

    def acquire(self) -> None:
        path = self.directory / "lock"
        fd = open_lock_file(self.directory, "lock")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if self._give_up.is_set():
                    os.close(fd)
                    raise StateLockTimeout(f"stopped waiting for {path}: shutting down") from None
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StateLockTimeout(
                        f"another ddnsagent process (the daemon, or a notify-now) held {path} "
                        f"for over {self.timeout:g}s; try again later, or raise "
                        "[agent] lock_timeout if its syncs are that slow"
                    ) from None
                time.sleep(0.05)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
