"""Printing a sync for a human (one line per fact) or as JSON for scripts."""

from __future__ import annotations

import json
from typing import TextIO

from ddnsagent.outcome import SyncReport
from ddnsagent.secrets import redact

MARK = {
    "sent": "ok",
    "unchanged": "ok",
    "dry-run": "--",
    "no-address": "!!",
    "failed": "!!",
    "waiting": "..",
    "config": "!!",
    "stopped": "XX",
}


def print_sync(report: SyncReport, out: TextIO, as_json: bool) -> None:
    """Everything printed passes the secret mask, like the logs: a provider's message may quote
    an answer that echoes a token."""
    if as_json:
        out.write(redact(json.dumps(report.as_dict(), indent=2)) + "\n")
        return
    out = _Masked(out)  # type: ignore[assignment]
    for family, d in sorted(report.detections.items()):
        for note in d.notes:
            out.write(f"   IPv{family} {note}\n")
        if d.address is not None:
            out.write(f"ok IPv{family} address {d.address} (from {d.source})\n")
        else:
            out.write(f"!! IPv{family} address not found; nothing will be sent for IPv{family}\n")
    for t in report.targets:
        what = f"IPv{t.family}" if t.family else "local zone"
        out.write(f"{MARK[t.action]} {t.name} [{t.type}] {what}: {t.action}: {t.message}\n")
        if t.fix:
            out.write(f"   fix: {t.fix}\n")
    if not report.targets and not report.detections:
        out.write("nothing configured to detect or send\n")


class _Masked:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write(redact(text))
