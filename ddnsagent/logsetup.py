"""Logging for humans and journald, with every known secret masked — ours and third parties'.

The mask sits in the handler's formatter, after the message is fully rendered, so it also covers
httpx/httpcore debug records and exception text we never wrote ourselves.

Read by a human in a terminal or a file, each line carries its date and time; read by journald
(stderr is the stream `$JOURNAL_STREAM` names), a line carries no time of ours — the journal
stamps each one — but the syslog priority prefix `<N>` journald turns into the entry's priority.
`log_level` sets our own detail; the libraries' chatter (httpx, httpcore, apscheduler, tzlocal…)
stays at warnings unless `debug_libraries` lets their debug records through. Python warnings
(platformdirs' RuntimeDirWarning, deprecations) become one log line, without a source line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import Any, TextIO

from ddnsagent.secrets import redact

_AUTH_HEADER = re.compile(
    r"(?i)(authorization['\"]?\s*[:=,]\s*\(?['\"b]*)(basic|bearer)\s+[^\s'\"),]+"
)

#: The libraries whose loggers speak only at warnings unless `debug_libraries` is on. Records
#: of any other logger outside ours are held to warnings by the handler's filter as well.
LIBRARIES = (
    "httpx",
    "httpcore",
    "h11",
    "h2",
    "hpack",
    "apscheduler",
    "tzlocal",
    "asyncio",
    "apprise",
    "urllib3",
    "requests",
    "charset_normalizer",
    "tldextract",
    "filelock",
    "lexicon",
    "markdown",
)
OURS = "ddnsagent"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

# sd-daemon(3): a line that starts with "<N>" is logged by journald with syslog priority N.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        text = _AUTH_HEADER.sub(r"\1\2 ***", text)
        return redact(text)


class JournalFormatter(RedactingFormatter):
    """No time of ours (journald stamps each entry); each line opens with its priority, so a
    multi-line record (a traceback) keeps it on every line."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


class _LibraryFilter(logging.Filter):
    """Lets records of other loggers than ours through only at warnings and above, unless
    `debug_libraries` is on: `log_level = "debug"` raises our detail, not theirs."""

    def __init__(self) -> None:
        super().__init__()
        self.libraries = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.libraries or record.levelno >= logging.WARNING:
            return True
        return record.name == OURS or record.name.startswith(OURS + ".")


_filter = _LibraryFilter()


def under_journald(stream: object) -> bool:
    """Whether `stream` is the journal: systemd sets $JOURNAL_STREAM to "DEVICE:INODE" of the
    stream it connected to the journal (systemd.exec(5), "Environment Variables Set or
    Propagated by the Service Manager"); a program started from that service with its stderr
    redirected inherits the variable, so the numbers must match the stream itself."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        info = os.fstat(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False  # no file descriptor (a buffer in tests), or a closed one
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def setup(level: str = "info", stream: object = None, *, libraries: bool = False) -> None:
    """Log to `stream` (stderr) at `level`; `libraries`: the `[agent] debug_libraries` key."""
    out: Any = stream or sys.stderr
    handler = logging.StreamHandler(out)
    if under_journald(out):
        handler.setFormatter(JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", DATE_FORMAT)
        )
    handler.addFilter(_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    warnings.showwarning = _show_warning
    set_level(level, libraries)


def set_level(level: str, libraries: bool = False) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    _filter.libraries = libraries
    # The libraries' own loggers: at debug only when asked for (and then whatever our level),
    # else at warnings, so they do not even build the records the filter would drop.
    quiet = logging.DEBUG if libraries else logging.WARNING
    logging.getLogger().setLevel(numeric)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(quiet)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """`warnings.showwarning` replaced: one log line naming the warning and whose it is, never
    Python's "file:line: Category: message" with the source line below it."""
    del filename, lineno, file, line  # the place in a library's source helps no reader
    owner = (category.__module__ or "").partition(".")[0]
    whose = (
        f"{category.__name__} from {owner}" if owner not in ("", "builtins") else category.__name__
    )
    logging.getLogger(OURS).warning("%s (%s)", message, whose)


def _priority(levelno: int) -> int:
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _PRIORITY[threshold]
    return _PRIORITY[logging.DEBUG]
