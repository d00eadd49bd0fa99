"""Prometheus metrics: what the daemon did, as counters and gauges, rendered in the text
exposition format (version 0.0.4).

The format is written by hand: the few metrics here do not justify a client library in a daemon
that should stay small. `Metrics` is updated by the daemon on its event loop and rendered when
scraped, so no lock is needed. How the text leaves the process is ddnsagent.outputs.exporter's job.
"""

from __future__ import annotations

import asyncio
import logging
import math
import platform
import time
from collections.abc import Callable, Mapping

from ddnsagent import __version__
from ddnsagent.outcome import ReconnectOutcome, SyncReport

log = logging.getLogger(__name__)

RECONNECT_RESULTS = ("ok", "unchanged", "skipped")


def reconnect_result(outcome: ReconnectOutcome) -> str:
    """The `result` label for a reconnect."""
    if not outcome.done:
        return "skipped"  # cooldown, daily cap, another reconnect running
    if outcome.new is not None and outcome.new != outcome.old:
        return "ok"
    return "unchanged"


class Metrics:
    """Counters and gauges the daemon updates; `render()` is what a scrape returns."""

    def __init__(self, version: str = __version__, clock: Callable[[], float] = time.time) -> None:
        self.version = version
        self.clock = clock
        self.updates: dict[tuple[str, str, str], int] = {}
        self.reconnects: dict[str, int] = dict.fromkeys(RECONNECT_RESULTS, 0)
        self.signals: dict[str, int] = {}
        self.bounces_last_hour: int | Callable[[], int] | None = None
        self.addresses: dict[str, str] = {}  # "ipv4" → address
        self.last_change: dict[str, float] = {}  # "ipv4" → UNIX time
        self.last_sync: float | None = None
        self._changed: asyncio.Event | None = None

    # -- what the daemon reports

    def observe_sync(self, report: SyncReport) -> None:
        """One per target and family per sync, labelled with its action (sent, unchanged, …)."""
        now = self.clock()
        self.last_sync = now
        for target in report.targets:
            key = (target.name, f"ipv{target.family}", target.action)
            self.updates[key] = self.updates.get(key, 0) + 1
        for family, detection in report.detections.items():
            if detection.address is None:
                continue  # keep the last address known; the failure shows in updates_total
            label = f"ipv{family}"
            self.addresses[label] = str(detection.address)
            if family in report.changed or label not in self.last_change:
                self.last_change[label] = now
        self._touch()

    def observe_reconnect(self, result: str) -> None:
        """`result`: see reconnect_result()."""
        self.reconnects[result] = self.reconnects.get(result, 0) + 1
        self._touch()

    def observe_signal(self, kind: str) -> None:
        """One relay event read from the mail log (relay.logparse.EventKind values)."""
        self.signals[kind] = self.signals.get(kind, 0) + 1
        self._touch()

    def set_bounce_rate(self, n: int | Callable[[], int]) -> None:
        """The bounce count, or a function that counts at scrape time (so the gauge falls as
        the hour passes even when no mail-log event arrives)."""
        if n != self.bounces_last_hour:
            self.bounces_last_hour = n
            self._touch()

    def seed_addresses(self, known: Mapping[int, tuple[str, float]]) -> None:
        """Addresses and the time each was first seen ({family: (address, since)}, from the
        state), so that a restart does not reset `last_change` to the restart's time."""
        for family, (address, since) in known.items():
            label = f"ipv{family}"
            self.addresses[label] = address
            self.last_change[label] = since
        self._touch()

    # -- the exposition format

    def render(self, now: float | None = None, *, up: bool = True) -> str:
        """The exposition text; `up=False` for the last textfile written before the exit."""
        now = self.clock() if now is None else now
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {_escape_help(help_text)}")
            out.append(f"# TYPE {name} {kind}")

        def sample(name: str, value: float, **labels: str) -> None:
            out.append(f"{name}{_labels(labels)} {_number(value)}")

        family("ddnsagent_up", "gauge", "1 while the daemon runs, 0 once it has stopped.")
        sample("ddnsagent_up", 1 if up else 0)
        family("ddnsagent_build_info", "gauge", "The running version, as labels; always 1.")
        sample("ddnsagent_build_info", 1, version=self.version, python=platform.python_version())
        family(
            "ddnsagent_updates_total",
            "counter",
            "Outcomes per provider and address family, one per sync "
            "(sent, unchanged, failed, waiting, stopped, no-address, config).",
        )
        for (provider, fam, outcome), n in sorted(self.updates.items()):
            sample("ddnsagent_updates_total", n, provider=provider, family=fam, outcome=outcome)
        family("ddnsagent_last_sync_timestamp_seconds", "gauge", "When the last sync ended (UNIX).")
        if self.last_sync is not None:
            sample("ddnsagent_last_sync_timestamp_seconds", self.last_sync)
        family("ddnsagent_address_info", "gauge", "The WAN address last detected; always 1.")
        for fam, address in sorted(self.addresses.items()):
            sample("ddnsagent_address_info", 1, family=fam, address=address)
        family(
            "ddnsagent_last_change_timestamp_seconds",
            "gauge",
            "When the WAN address of this family was first seen (UNIX time).",
        )
        for fam, when in sorted(self.last_change.items()):
            sample("ddnsagent_last_change_timestamp_seconds", when, family=fam)
        family(
            "ddnsagent_seconds_since_last_change",
            "gauge",
            "Seconds since the WAN address of this family changed, at the time of the scrape.",
        )
        for fam, when in sorted(self.last_change.items()):
            sample("ddnsagent_seconds_since_last_change", max(now - when, 0.0), family=fam)
        family(
            "ddnsagent_reconnects_total",
            "counter",
            "Reconnects for a new WAN address: ok (new address), unchanged, skipped (cooldown, "
            "daily cap, already running).",
        )
        for result, n in sorted(self.reconnects.items()):
            sample("ddnsagent_reconnects_total", n, result=result)
        family("ddnsagent_relay_signals_total", "counter", "Relay events read from the mail log.")
        for kind, n in sorted(self.signals.items()):
            sample("ddnsagent_relay_signals_total", n, kind=kind)
        family(
            "ddnsagent_bounces_last_hour",
            "gauge",
            "Bounces this server generated in the last hour (backscatter uses up the relay's "
            "per-address limit).",
        )
        bounces = self.bounces_last_hour
        if callable(bounces):
            try:
                bounces = bounces()
            except Exception:
                log.exception("cannot count the bounces of the last hour")
                bounces = None
        if bounces is not None:
            sample("ddnsagent_bounces_last_hour", bounces)
        return "\n".join(out) + "\n"

    # -- change notification, for the textfile writer

    def _touch(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_changed(self, timeout: float) -> bool:
        """Wait until something is observed, at most `timeout` seconds; True if it was."""
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._changed.clear()
        return True


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed are the characters the format escapes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
