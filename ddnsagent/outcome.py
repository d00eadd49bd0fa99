"""What a sync, a detection or a reconnect came to: plain records that the orchestrator fills
and the observers (report, metrics, notifications, systemd status, the control channel) read.
They know nothing of how the work is done, so observers never import the orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ddnsagent.address import IPAddress
from ddnsagent.exitcodes import EXIT_FOR, EXIT_OK, EXIT_RETRY


@dataclass
class Detection:
    family: int
    address: IPAddress | None = None
    source: str | None = None
    notes: list[str] = field(default_factory=list)  # one line per source that did not answer
    conflict: bool = False


@dataclass
class TargetReport:
    name: str
    type: str
    family: int
    address: str | None
    action: str  # a key of EXIT_FOR
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class SyncReport:
    reason: str
    detections: dict[int, Detection] = field(default_factory=dict)
    targets: list[TargetReport] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)  # families whose address changed

    @property
    def exit_code(self) -> int:
        codes = [EXIT_FOR[t.action] for t in self.targets]
        for d in self.detections.values():
            if d.address is None:
                codes.append(EXIT_RETRY)
        return max(codes, default=EXIT_OK)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "exit_code": self.exit_code,
            "detected": {
                f"ipv{f}": {
                    "address": str(d.address) if d.address else None,
                    "source": d.source,
                    "notes": d.notes,
                    "conflict": d.conflict,
                }
                for f, d in sorted(self.detections.items())
            },
            "targets": [t.as_dict() for t in self.targets],
            "changed": [f"ipv{f}" for f in self.changed],
        }


@dataclass
class ReconnectOutcome:
    """What a reconnect came to."""

    done: bool  # the procedure ran (the address may still not have changed)
    message: str
    old: str | None = None
    new: str | None = None
