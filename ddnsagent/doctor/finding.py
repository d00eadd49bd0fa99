"""What every check returns: a `Finding`, one thing looked at and how it stands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")


@dataclass(frozen=True)
class Finding:
    check: str  # "resolv.conf", "wildcard", "mx", "postfix", "relay" or "nat"
    status: Status
    subject: str  # what was looked at: a file, "example.net. at 127.0.0.1", a parameter
    message: str
    fix: str | None = None
