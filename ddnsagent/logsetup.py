"""Logging for humans and journald, with every known secret masked — ours and third parties'.

The mask sits in the handler's formatter, after the message is fully rendered, so it also covers
httpx/httpcore debug records and exception text we never wrote ourselves.
"""

from __future__ import annotations

import logging
import re
import sys

from ddnsagent.secrets import redact

_AUTH_HEADER = re.compile(
    r"(?i)(authorization['\"]?\s*[:=,]\s*\(?['\"b]*)(basic|bearer)\s+[^\s'\"),]+"
)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        text = _AUTH_HEADER.sub(r"\1\2 ***", text)
        return redact(text)


def setup(level: str = "info", stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    journal = "JOURNAL_STREAM" in __import__("os").environ
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if journal
        else ("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.setFormatter(RedactingFormatter(fmt, "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.getLogger().setLevel(numeric)
    # Third-party libraries speak at our debug level only.
    quiet = logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpcore", "apscheduler", "asyncio", "apprise", "urllib3", "tldextract"):
        logging.getLogger(name).setLevel(quiet)
