"""Turns Postfix mail-log lines into the few events that say how our submission relay treats us.

A relay that rate-limits or refuses our WAN address is the trigger for reconnecting PPPoE, so a
forged signal would let anyone who can send us mail bounce our connection. Everything here is
therefore read only from fields Postfix itself writes: the service name, the queue id, the fixed
``relay=/delay=/delays=/dsn=/status=`` tail of a delivery record and the start of the reason in
its trailing parentheses. Recipient addresses are attacker-controlled (a bounce goes to a forged
sender, and quoted local parts may hold spaces, ``>``, ``said:``), so a line whose field structure
could be read in more than one way gives no event at all.

Pure functions on strings: no I/O, and no input makes them raise.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

__all__ = [
    "DEFAULT_RATE_PATTERNS",
    "DELIVERY_SERVICES",
    "POSTFIX_RECORD_LIMIT",
    "EventKind",
    "QueuedFailure",
    "RelayEvent",
    "compile_rate_patterns",
    "parse_journal_json",
    "parse_line",
    "parse_queue_json",
    "relay_address",
    "why_no_event",
]

#: Postfix services whose ``QID: to=<…>, relay=…, status=…`` records are read. ``relay`` is the
#: smtp(8) client under the name the stock master.cf gives the relay transport.
DELIVERY_SERVICES = frozenset({"smtp", "relay", "error", "qmgr"})

#: Postfix cuts every log record to this many bytes (MSG_SYSLOG_RECLEN, MSG_LOGGER_RECLEN). A
#: record that long may have lost its real tail, leaving one spelled inside a long recipient
#: address as the only one in sight, so it is not read at all.
POSTFIX_RECORD_LIMIT = 2000
# Longer lines are not looked at: nothing in them could be read anyway.
_MAX_LINE_CHARS = 65536
# journald spells non-UTF-8 text as a JSON array of byte values: up to four characters a byte.
_MAX_JOURNAL_CHARS = 4 * _MAX_LINE_CHARS + 4096
# Postfix's own systemd units: postfix.service, and Debian's postfix@-.service and
# postfix@INSTANCE.service. A record whose _SYSTEMD_UNIT names one came from a process in that
# unit's cgroup; only root creates system units, and a user's own services carry
# _SYSTEMD_UNIT=user@UID.service.
_POSTFIX_UNIT = re.compile(r"postfix(?:@[A-Za-z0-9_.:\\-]{1,128})?\.service", re.ASCII)
SUBMISSION_PORT = 587
# The program that writes each service's records, as journald's _COMM names it.
_COMMAND = {"smtp": "smtp", "relay": "smtp", "error": "error", "qmgr": "qmgr", "bounce": "bounce"}

_A = re.ASCII


class EventKind(enum.StrEnum):
    RATE_LIMITED = "rate_limited"
    """The relay refused us for sending too much; ``limited_ip`` is the address it named."""
    CONNECT_FAILED = "connect_failed"
    """No SMTP conversation with the relay: timed out, refused, lost connection."""
    RELAY_DENIED = "relay_denied"
    """The relay answered "Relay access denied" (454 or 554) or "Client host rejected: Access
    denied": it no longer recognises our address."""
    TLS_FAILED = "tls_failed"
    """"Cannot start TLS: handshake failure": the relay offered STARTTLS, the handshake failed."""
    TLS_NOT_OFFERED = "tls_not_offered"
    """"TLS is required, but was not offered by host …": our smtp_tls_security_level demands
    TLS and the relay did not announce STARTTLS."""
    SASL_FAILED = "sasl_failed"
    """"SASL authentication failed; server … said: 535 …": the relay refused our login."""
    SENT = "sent"
    """A message went out through the relay: the relay accepts us again."""
    BOUNCE_GENERATED = "bounce_generated"
    """We created a non-delivery notice (backscatter when the sender was forged)."""


@dataclass(frozen=True, slots=True)
class RelayEvent:
    """One signal from the mail log, with the Postfix fields it was read from."""

    kind: EventKind
    timestamp: datetime | None
    """Aware for RFC 3339 and journald; naive local wall time for classic syslog stamps
    (or in ``now``'s zone when ``now`` is aware); ``None`` when the stamp is not a valid date."""
    queue_id: str
    service: str
    """The Postfix service: ``smtp``, ``relay``, ``error``, ``qmgr`` or ``bounce``."""
    syslog_name: str
    """The full program name, e.g. ``postfix-out/smtp`` for a second instance."""
    hostname: str | None = None
    pid: int | None = None
    relay_name: str | None = None
    """Host name of the relay from the reason (or from ``relay=`` when the reason has none)."""
    relay_ip: str | None = None
    relay_port: int | None = None
    recipient: str | None = None
    """The ``to=<…>`` address as logged: sender-controlled text, for display only."""
    delay: float | None = None
    dsn: str | None = None
    status: str | None = None
    reason: str = ""
    """Text inside the trailing parentheses; for a bounce, the notification kind."""
    reply: str | None = None
    """The relay's SMTP reply, code and text, without "(in reply to … command)"."""
    limited_ip: str | None = None
    """RATE_LIMITED: the client the relay says sent too much — our WAN address as it saw it;
    RELAY_DENIED: the client a "Client host rejected" names (``<name[address]>``), if any."""
    notice_queue_id: str | None = None
    """BOUNCE_GENERATED: queue id of the notification message."""
    echo: bool = False
    """The reason starts "delivery temporarily suspended:": qmgr (Postfix < 3.0: postfix/qmgr,
    later postfix/error) repeats a failure it cached for the destination, with delays=…/0/0 —
    no connection was tried for this record."""


def compile_rate_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """Compile configured rate-limit patterns (case-insensitive); raises ``re.error`` on a bad one.

    A pattern is matched at the start of the relay's reply, e.g. ``450 4.7.1 Error: too much mail
    from 192.0.2.1``; a group named ``ip`` marks the address the relay names. Start with the reply
    code and keep the text before the phrase free of ``<``, so that an address the relay echoes
    back cannot supply the phrase.
    """
    return tuple(re.compile(p, re.IGNORECASE | _A) for p in patterns)


_IP_GROUP = r"\[?(?P<ip>[0-9A-Fa-f:.]{2,45})\]?"
# Code, optional enhanced status code, then a short prefix without address delimiters (Postfix's
# anvil puts "mail.example.net Error: " there).
_RATE_PREFIX = r"4\d\d[ -](?:4\.\d{1,3}\.\d{1,3} )?[^<>\"()\[\]]{0,80}?\b"

DEFAULT_RATE_PATTERNS: tuple[re.Pattern[str], ...] = compile_rate_patterns(
    [
        _RATE_PREFIX + r"too much mail from " + _IP_GROUP,
        _RATE_PREFIX
        + r"too many (?:connections|recipients|messages|new TLS sessions|requests|errors)"
        + r" from "
        + _IP_GROUP,
    ]
)

# --- the syslog header ----------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

# "Dec 24 04:28:53", "Aug  8 16:46:13" (syslog) and "Aug 02 10:00:01" (postlogd).
_CLASSIC_STAMP = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) "
    r"(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)(?:\.(?P<frac>\d{1,9}))? ",
    _A,
)
# "2024-03-22T08:00:03.000+09:00" (rsyslog high precision and most RFC 3339 writers).
_ISO_STAMP = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[T ](?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
    r"(?:[.,](?P<frac>\d{1,9}))?(?P<tz>[Zz]|[+-]\d\d:?\d\d)? ",
    _A,
)
_HEADER_REST = re.compile(
    r"(?P<host>[^\s\[\]]{1,255}) (?P<ident>[^\s\[\]:]{1,128})(?:\[(?P<pid>\d{1,10})\])?: ",
    _A,
)
# postfix/smtp, postfix-out/smtp (multi-instance). No deeper paths: smtpd's
# "postfix/submission/smtpd" and the like are never delivery records.
_SYSLOG_NAME = re.compile(r"postfix(?:-[A-Za-z0-9_.]{1,64})?/(?P<service>[a-z]{1,16})", _A)

# --- the delivery record ----------------------------------------------------------------------

# Short ids are hex; long ids (enable_long_queue_ids) are a base-52 time, 'z', a base-51 inode.
_QID = (
    r"(?:[0-9A-F]{6,24}"
    r"|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,24}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]{1,16})"
)
_DELIVERY_HEAD = re.compile(rf"(?P<qid>{_QID}): to=<", _A)
_TAIL_START = ">, relay="
_ORIG_TO = ">, orig_to=<"
_TAIL = re.compile(
    r">, relay=(?P<relay>[^,\s]{1,300})"
    r"(?:, conn_use=\d{1,9})?"
    r", delay=(?P<delay>\d{1,12}(?:\.\d{1,9})?)"
    r", delays=[0-9.]{1,16}(?:/[0-9.]{1,16}){3}"
    r", dsn=(?P<dsn>\d\.\d{1,3}\.\d{1,3})"
    r", status=(?P<status>[a-z]{1,20})"
    r"(?: \((?P<reason>.*)\))?",
    _A,
)
_BOUNCE = re.compile(
    rf"(?P<qid>{_QID}): sender non-delivery notification: (?P<nqid>{_QID})",
    _A,
)

_NAME_ADDR = r"(?P<name>[^\s\[\]]{1,255})\[(?P<ip>[^\s\[\]]{1,64})\]"
_SUSPENDED = "delivery temporarily suspended: "
# "said:" is always followed by the command it answered; a refused greeting answers none.
_HOST_REPLY = re.compile(
    rf"host {_NAME_ADDR} (?:said: (?P<said>.+) \(in reply to [A-Za-z][A-Za-z /-]{{0,40}} command\)"
    r"|refused to talk to me: (?P<refused>.+))",
    _A,
)
# The error is the OS's text ("Connection timed out") or a greeting the server refused us with.
_CONNECT = re.compile(
    rf"connect to {_NAME_ADDR}(?::(?P<port>\d{{1,5}}))?: "
    r"(?P<error>[A-Za-z][A-Za-z ,'-]{0,80}|server refused to talk to me: .+)",
    _A,
)
_LOST = re.compile(
    rf"(?:lost connection|conversation) with {_NAME_ADDR}(?: timed out)? while [^()]+", _A
)
_SERVER_REFUSED = "server refused to talk to me: "
# "Relay access denied" comes from reject_unauth_destination (554, relay_domains_reject_code) and
# from defer_unauth_destination (454 4.7.1), which ends the default smtpd_relay_restrictions
# since Postfix 2.10 (postconf(5): smtpd_relay_restrictions, defer_unauth_destination; seen from
# Postfix 3.7 in tests/e2e/test_relay_logs_e2e.py). "Client host rejected: Access denied" is an
# access(5) REJECT/DEFER on the client (check_client_access), 4xx or 5xx, naming it as
# <name[address]>.
_RELAY_DENIED = re.compile(
    r"[45]\d\d[ -](?:[45]\.7\.1 )?(?:.*[:;] ?)?"
    r"(?:Relay access denied|Client host rejected: Access denied)\.?",
    _A | re.I,
)
_CLIENT_NAMED = re.compile(
    r"[45]\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3} )?<[^\s<>\[\]]{1,255}\[(?P<ip>[0-9A-Fa-f:.]{2,45})\]>: "
    r"Client host rejected: ",
    _A | re.I,
)
# Failures of the session the relay's address cannot cure (smtp_proto.c and smtp_sasl_glue.c
# wordings, seen from Postfix 3.7 in tests/e2e/test_relay_logs_e2e.py). The handshake failure
# names no host: the record's relay= field says whom it was with.
_TLS_FAILED = "Cannot start TLS: handshake failure"
_TLS_NOT_OFFERED = re.compile(rf"TLS is required, but was not offered by host {_NAME_ADDR}", _A)
_SASL_FAILED = re.compile(
    rf"SASL authentication failed; server {_NAME_ADDR} said: (?P<said>[45]\d\d[ -].*)", _A
)
# "lost connection with … while sending end of data" (and the body, and DATA) happens after
# the relay accepted us: a delivery problem, not a refused connection.
_DATA_PHASE = (" while sending message body", " while sending end of data", " while sending DATA")
_MIN_MASKED = 8
_RELAY_FIELD = re.compile(rf"{_NAME_ADDR}(?::(?P<port>\d{{1,5}}))?", _A)


@dataclass(frozen=True, slots=True)
class _Header:
    timestamp: datetime | None
    hostname: str | None
    syslog_name: str
    pid: int | None


@dataclass(frozen=True, slots=True)
class _Relay:
    """The configured relay host, reduced to what the log can show of it."""

    name: str
    ip: str | None


def parse_line(
    line: str,
    relay_host: str,
    patterns: Sequence[re.Pattern[str]] = DEFAULT_RATE_PATTERNS,
    *,
    now: datetime | None = None,
) -> RelayEvent | None:
    """Read one mail-log line (classic syslog, postlogd or RFC 3339 stamp); ``None`` if no signal.

    ``relay_host`` is the submission relay as in Postfix's ``relayhost`` (``[name]:587`` is fine);
    ``now`` supplies the year a classic syslog stamp lacks (default: the local clock).
    """
    if not isinstance(line, str) or len(line) > _MAX_LINE_CHARS:
        return None
    line = line.removesuffix("\n").removesuffix("\r")
    parsed = _parse_header(line, now)
    if parsed is None:
        return None
    header, message_start = parsed
    return _parse_message(header, line[message_start:], _relay(relay_host), patterns)


def parse_journal_json(
    line: str,
    relay_host: str,
    patterns: Sequence[re.Pattern[str]] = DEFAULT_RATE_PATTERNS,
    *,
    postfix_uids: Collection[int] = (),
) -> RelayEvent | None:
    """Read one ``journalctl -o json`` record; ``None`` if it carries no signal.

    Only records Postfix itself sent count: _SYSTEMD_UNIT names Postfix's unit (``postfix.service``,
    ``postfix@….service``) or _UID is one of ``postfix_uids``. journald sets these fields from the
    sender's cgroup and credentials, so no other local user can claim them; SYSLOG_IDENTIFIER and
    _COMM (``prctl(PR_SET_NAME)``) are the sender's to choose and never suffice.

    Uses MESSAGE (a string, or an array of bytes for non-UTF-8 text), SYSLOG_IDENTIFIER, _PID,
    _HOSTNAME and __REALTIME_TIMESTAMP (microseconds since the epoch, giving an aware UTC time).
    When the record has _COMM, it must name the Postfix program behind SYSLOG_IDENTIFIER.
    """
    if not isinstance(line, str) or len(line) > _MAX_JOURNAL_CHARS:
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not _from_postfix(record, postfix_uids):
        return None
    message = _journal_text(record.get("MESSAGE"))
    syslog_name = _journal_text(record.get("SYSLOG_IDENTIFIER"))
    if message is None or syslog_name is None or len(message) > _MAX_LINE_CHARS:
        return None
    # _COMM is set by journald from the sending process, so `logger -t postfix/smtp` cannot
    # pass for the smtp client. (The relay transport runs the smtp binary.)
    comm = record.get("_COMM")
    service = _SYSLOG_NAME.fullmatch(syslog_name)
    if comm is not None and (service is None or _journal_text(comm) != _COMMAND.get(service[1])):
        return None
    pid_text = _journal_text(record.get("_PID")) or _journal_text(record.get("SYSLOG_PID"))
    pid = int(pid_text) if pid_text and pid_text.isascii() and pid_text.isdigit() else None
    if pid is not None and pid > 0xFFFFFFFF:
        pid = None
    header = _Header(
        timestamp=_journal_time(_journal_text(record.get("__REALTIME_TIMESTAMP"))),
        hostname=_journal_text(record.get("_HOSTNAME")),
        syslog_name=syslog_name,
        pid=pid,
    )
    return _parse_message(header, message, _relay(relay_host), patterns)


def why_no_event(
    line: str,
    relay_host: str,
    patterns: Sequence[re.Pattern[str]] = DEFAULT_RATE_PATTERNS,
    *,
    now: datetime | None = None,
) -> str:
    """Why `parse_line` finds no signal in `line`, in words for `ddnsagent relay explain`:
    the first of the parser's own steps the line does not pass. Pure; never raises."""
    if not isinstance(line, str) or len(line) > _MAX_LINE_CHARS:
        return f"longer than {_MAX_LINE_CHARS} characters: not looked at"
    line = line.removesuffix("\n").removesuffix("\r")
    parsed = _parse_header(line, now)
    if parsed is None:
        return (
            "no syslog header the parser knows (MON DD HH:MM:SS or an RFC 3339 time, then "
            "HOST PROGRAM[PID]:)"
        )
    header, start = parsed
    message = line[start:]
    if len(message.encode("utf-8", errors="surrogatepass")) >= POSTFIX_RECORD_LIMIT:
        return f"{POSTFIX_RECORD_LIMIT} bytes or longer: Postfix may have cut its real tail off"
    name = _SYSLOG_NAME.fullmatch(header.syslog_name)
    if name is None:
        return f"written by {header.syslog_name!r}, not by a Postfix program (postfix/NAME)"
    service = name["service"]
    if service == "bounce":
        return "a postfix/bounce line other than 'sender non-delivery notification'"
    if service not in DELIVERY_SERVICES:
        return (
            f"postfix/{service} writes no delivery records; only smtp, relay, error and qmgr "
            "tell how the relay treats us (smtpd's rejects concern mail coming in)"
        )
    relay = _relay(relay_host)
    if relay is None:
        return f"the relay host {relay_host!r} is not a host name or address"
    record = _split_record(message)
    if record is None:
        return (
            "not a delivery record Postfix writes (QUEUEID: to=<…>, relay=…, delay=…, "
            "delays=…, dsn=…, status=… (reason)), or one a recipient address could imitate"
        )
    if record.reason is None:
        return "the delivery record has no reason in parentheses"
    if record.relay != "none":
        field = _RELAY_FIELD.fullmatch(record.relay)
        if field is None or not _is_relay(relay, field["name"], field["ip"]):
            return f"relay={record.relay} is not the relay ({relay.name})"
    if record.status == "sent":
        return f"status=sent from postfix/{service}, not through the relay's smtp client"
    return (
        f"status={record.status}: the reason names another host than the relay ({relay.name}), "
        "or is none the watchdog acts on (a refusal, an unanswered connection, TLS or SASL)"
    )


# --- header and timestamps ------------------------------------------------------------------


def _parse_header(line: str, now: datetime | None) -> tuple[_Header, int] | None:
    """The header fields and where the message starts."""
    timestamp: datetime | None
    if m := _CLASSIC_STAMP.match(line):
        month = _MONTHS.get(m["mon"])
        if month is None:
            return None
        timestamp = _classic_time(month, m, now)
    elif m := _ISO_STAMP.match(line):
        timestamp = _iso_time(m)
    else:
        return None
    rest = _HEADER_REST.match(line, m.end())
    if rest is None:
        return None
    pid = int(rest["pid"]) if rest["pid"] else None
    return _Header(timestamp, rest["host"], rest["ident"], pid), rest.end()


def _micros(frac: str | None) -> int:
    return int((frac or "0")[:6].ljust(6, "0"))


def _classic_time(month: int, m: re.Match[str], now: datetime | None) -> datetime | None:
    """Give a year-less stamp the year that puts it at most a day after ``now``, else earlier."""
    ref = now if now is not None else datetime.now()
    try:
        limit = ref + timedelta(days=1)
    except OverflowError:
        limit = ref
    for year in (ref.year + 1, ref.year, ref.year - 1):
        try:
            stamp = datetime(
                year,
                month,
                int(m["day"]),
                int(m["h"]),
                int(m["m"]),
                int(m["s"]),
                _micros(m["frac"]),
                tzinfo=ref.tzinfo,
            )
        except ValueError:
            continue
        if stamp <= limit:
            return stamp
    return None


def _iso_time(m: re.Match[str]) -> datetime | None:
    tz: timezone | None = None
    if raw := m["tz"]:
        if raw in ("Z", "z"):
            tz = UTC
        else:
            digits = raw[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            try:
                tz = timezone(-offset if raw[0] == "-" else offset)
            except ValueError:
                return None
    try:
        return datetime(
            int(m["y"]),
            int(m["mo"]),
            int(m["d"]),
            int(m["h"]),
            int(m["m"]),
            int(m["s"]),
            _micros(m["frac"]),
            tzinfo=tz,
        )
    except ValueError:
        return None


def _from_postfix(record: dict[str, object], postfix_uids: Collection[int]) -> bool:
    """Whether journald attests that Postfix sent the record (its unit, or its user)."""
    unit = record.get("_SYSTEMD_UNIT")
    if isinstance(unit, str) and _POSTFIX_UNIT.fullmatch(unit):
        return True
    uid = record.get("_UID")
    return (
        isinstance(uid, str)
        and uid.isascii()
        and uid.isdigit()
        and len(uid) <= 10
        and int(uid) in postfix_uids
    )


def _journal_text(value: object) -> str | None:
    """A journald JSON field as text: a string, or an array of byte values."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    ):
        return bytes(value).decode("utf-8", errors="replace")
    return None


def _journal_time(micros: str | None) -> datetime | None:
    if not micros or not micros.isascii() or not micros.isdigit() or len(micros) > 18:
        return None
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
    except OverflowError:
        return None


# --- the relay host ---------------------------------------------------------------------------


def relay_address(host: str, port: int | None = None) -> tuple[str, int]:
    """Postfix's relayhost syntax: `[host]:port`, `[ipv6:ADDRESS]:port`, `host:port` or
    `host`; `port` overrides what is written. Not address.split_host_port: the host here is
    usually a name, and brackets (Postfix's "no MX lookup") may enclose one."""
    written = SUBMISSION_PORT
    text = host.strip()
    if text.startswith("["):
        text, _, rest = text[1:].partition("]")
        if text[:5].lower() == "ipv6:":
            text = text[5:]
        if rest.startswith(":") and rest[1:].isdigit():
            written = int(rest[1:])
    elif text.count(":") == 1:
        name, _, p = text.partition(":")
        if p.isdigit():
            text, written = name, int(p)
    return text, port if port is not None else written


def _relay(relay_host: str) -> _Relay | None:
    return _relay_from_text(relay_host) if isinstance(relay_host, str) else None


@functools.lru_cache(maxsize=16)
def _relay_from_text(relay_host: str) -> _Relay | None:
    """``auth.example.net``, ``[auth.example.net]:587``, ``[192.0.2.1]``, ``[ipv6:2001:db8::1]``."""
    host = relay_host.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
        if host.lower().startswith("ipv6:"):
            host = host[5:]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    host = host.rstrip(".").lower()
    if not host or any(c.isspace() or c in "[]" for c in host):
        return None
    return _Relay(name=host, ip=_ip(host))


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _is_relay(relay: _Relay, name: str, ip: str) -> bool:
    if name.rstrip(".").lower() == relay.name:
        return True
    return relay.ip is not None and _ip(ip) == relay.ip


# --- the message ------------------------------------------------------------------------------


def _parse_message(
    header: _Header,
    message: str,
    relay: _Relay | None,
    patterns: Sequence[re.Pattern[str]],
) -> RelayEvent | None:
    if "\n" in message or "\r" in message:
        return None
    if len(message.encode("utf-8", errors="surrogatepass")) >= POSTFIX_RECORD_LIMIT:
        return None
    name = _SYSLOG_NAME.fullmatch(header.syslog_name)
    if name is None:
        return None
    service = name["service"]
    if service == "bounce":
        return _bounce(header, service, message)
    if service in DELIVERY_SERVICES and relay is not None:
        return _delivery(header, service, message, relay, patterns)
    return None


def _bounce(header: _Header, service: str, message: str) -> RelayEvent | None:
    m = _BOUNCE.fullmatch(message)
    if m is None:
        return None
    return RelayEvent(
        kind=EventKind.BOUNCE_GENERATED,
        timestamp=header.timestamp,
        queue_id=m["qid"],
        service=service,
        syslog_name=header.syslog_name,
        hostname=header.hostname,
        pid=header.pid,
        reason="sender non-delivery notification",
        notice_queue_id=m["nqid"],
    )


@dataclass(frozen=True, slots=True)
class _Record:
    """The Postfix-written fields of one delivery record."""

    queue_id: str
    recipients: tuple[str, ...]  # to=, then orig_to= when present
    relay: str
    delay: float
    dsn: str
    status: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class _Signal:
    kind: EventKind
    name: str
    ip: str
    reply: str | None = None
    limited_ip: str | None = None
    port: int | None = None
    unanswered: bool = False  # no TCP connection at all: timed out, refused, unreachable
    hostless: bool = False  # the reason names no host: the record's relay= field must


def _split_record(message: str) -> _Record | None:
    """Find the one place where the recipient ends and Postfix's own fields begin.

    Each ``>, relay=`` is tried as that place; it counts if everything after it has exactly the
    shape Postfix writes, up to a reason that closes at the end of the line. The true boundary
    always fits, so a second fit means an address (or an echoed reply) imitating the fields: the
    record is then ambiguous and is dropped rather than guessed at.
    """
    head = _DELIVERY_HEAD.match(message)
    if head is None:
        return None
    start = head.end()
    found: re.Match[str] | None = None
    pos = message.find(_TAIL_START, start)
    while pos != -1:
        if tail := _TAIL.fullmatch(message, pos):
            if found is not None:
                return None
            found = tail
        pos = message.find(_TAIL_START, pos + 1)
    if found is None:
        return None
    reason = found["reason"]
    if reason is not None and not _balanced(reason):
        return None  # cut short inside the reason, or text after it: not a record to trust
    to, sep, orig_to = message[start : found.start()].partition(_ORIG_TO)
    if _ORIG_TO in orig_to:
        return None
    return _Record(
        queue_id=head["qid"],
        recipients=(to, orig_to) if sep else (to,),
        relay=found["relay"],
        delay=float(found["delay"]),
        dsn=found["dsn"],
        status=found["status"],
        reason=reason,
    )


def _balanced(text: str) -> bool:
    """Whether the parentheses in ``text`` close in order, so the reason ends at the line's end."""
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _delivery(
    header: _Header,
    service: str,
    message: str,
    relay: _Relay,
    patterns: Sequence[re.Pattern[str]],
) -> RelayEvent | None:
    record = _split_record(message)
    if record is None or record.reason is None:
        return None
    field: re.Match[str] | None = None
    if record.relay != "none":
        field = _RELAY_FIELD.fullmatch(record.relay)
        if field is None or not _is_relay(relay, field["name"], field["ip"]):
            return None

    signal: _Signal | None
    if record.status == "sent":
        if field is None or service not in ("smtp", "relay"):
            return None
        signal = _Signal(EventKind.SENT, field["name"], field["ip"])
    else:
        signal = _failure(record.reason, record.recipients, relay, patterns)
    if signal is not None and signal.hostless:
        if field is None:
            return None  # an echo with relay=none: whose handshake it was is not said
        signal = dataclasses.replace(signal, name=field["name"], ip=field["ip"])
    if signal is None:
        return None
    if field is not None and (field["name"].lower(), field["ip"]) != (
        signal.name.lower(),
        signal.ip,
    ):
        return None  # the reason names another host than relay=: not a record Postfix writes

    return RelayEvent(
        kind=signal.kind,
        timestamp=header.timestamp,
        queue_id=record.queue_id,
        service=service,
        syslog_name=header.syslog_name,
        hostname=header.hostname,
        pid=header.pid,
        relay_name=signal.name,
        relay_ip=signal.ip,
        relay_port=int(field["port"]) if field is not None and field["port"] else signal.port,
        recipient=record.recipients[0],
        delay=record.delay,
        dsn=record.dsn,
        status=record.status,
        reason=record.reason,
        reply=signal.reply,
        limited_ip=signal.limited_ip,
        echo=record.reason.startswith(_SUSPENDED),
    )


def _failure(
    reason: str,
    recipients: tuple[str, ...],
    relay: _Relay,
    patterns: Sequence[re.Pattern[str]],
) -> _Signal | None:
    """Classify a deferral or bounce reason by its Postfix-written opening only."""
    reason = reason.removeprefix(_SUSPENDED)

    if m := _HOST_REPLY.fullmatch(reason):
        if not _is_relay(relay, m["name"], m["ip"]):
            return None
        reply = m["said"] if m["said"] is not None else m["refused"]
        return _classify_reply(m["name"], m["ip"], reply, recipients, patterns, None)

    if m := _CONNECT.fullmatch(reason):
        if not _is_relay(relay, m["name"], m["ip"]):
            return None
        error = m["error"]
        port = int(m["port"]) if m["port"] else None
        if error.startswith(_SERVER_REFUSED):
            reply = error.removeprefix(_SERVER_REFUSED)
            otherwise = EventKind.CONNECT_FAILED
            signal = _classify_reply(m["name"], m["ip"], reply, recipients, patterns, otherwise)
            return dataclasses.replace(signal, port=port) if signal else None
        return _Signal(EventKind.CONNECT_FAILED, m["name"], m["ip"], port=port, unanswered=True)

    if (m := _LOST.fullmatch(reason)) and _is_relay(relay, m["name"], m["ip"]):
        if any(phase in reason for phase in _DATA_PHASE):
            return None
        return _Signal(EventKind.CONNECT_FAILED, m["name"], m["ip"])

    if reason == _TLS_FAILED:
        return _Signal(EventKind.TLS_FAILED, "", "", hostless=True)
    if (m := _TLS_NOT_OFFERED.fullmatch(reason)) and _is_relay(relay, m["name"], m["ip"]):
        return _Signal(EventKind.TLS_NOT_OFFERED, m["name"], m["ip"])
    if (m := _SASL_FAILED.fullmatch(reason)) and _is_relay(relay, m["name"], m["ip"]):
        return _Signal(EventKind.SASL_FAILED, m["name"], m["ip"], m["said"])
    return None


def _classify_reply(
    name: str,
    ip: str,
    reply: str,
    recipients: tuple[str, ...],
    patterns: Sequence[re.Pattern[str]],
    otherwise: EventKind | None,
) -> _Signal | None:
    # The relay may quote the recipient back; that text is the sender's, not the relay's. Bare
    # echoes too, unless the address is too short to spell anything (and would garble the rest).
    text = reply
    for address in recipients:
        text = text.replace(f"<{address}>", "<>")
        if len(address) >= _MIN_MASKED:
            text = text.replace(address, "<>")
    for pattern in patterns:
        if m := pattern.match(text):
            named = m.groupdict().get("ip")
            limited_ip = _ip(named.strip("[].")) if named else None
            return _Signal(EventKind.RATE_LIMITED, name, ip, reply, limited_ip)
    if _RELAY_DENIED.fullmatch(text):
        named = _CLIENT_NAMED.match(text)
        client = _ip(named["ip"]) if named else None
        return _Signal(EventKind.RELAY_DENIED, name, ip, reply, client)
    if otherwise is not None:
        return _Signal(otherwise, name, ip, reply)
    return None


# --- the queue --------------------------------------------------------------------------------

# Recipients of one queue file looked at; a message to the relay is deferred for all of them alike.
_MAX_QUEUE_RECIPIENTS = 100


@dataclass(frozen=True, slots=True)
class QueuedFailure:
    """A recipient Postfix holds in its queue because of the relay, as `postqueue -j` reports
    it: the delay_reason is what Postfix recorded in the queue's defer log, which no other local
    user can write (a log line is only a claim that such a recipient exists)."""

    kind: EventKind
    queue_id: str
    queue_name: str
    relay_name: str
    relay_ip: str
    relay_port: int | None
    reason: str
    limited_ip: str | None = None
    """RATE_LIMITED: the address the relay named."""
    unanswered: bool = False
    """The TCP connection itself failed (timed out, refused, unreachable)."""


def parse_queue_json(
    line: str,
    relay_host: str,
    patterns: Sequence[re.Pattern[str]] = DEFAULT_RATE_PATTERNS,
) -> list[QueuedFailure]:
    """One line of `postqueue -j` (one JSON object per queue file, see postqueue(1)): each
    recipient whose delay_reason says the relay refused us or could not be reached.

    The reason is classified exactly as a log record's is (the relay's reply, anchored to
    ``host NAME[IP] said:`` or ``connect to NAME[IP]:PORT:``, with echoed recipient addresses
    masked). Anything unexpected gives an empty list; no input makes it raise.
    """
    relay = _relay(relay_host)
    if relay is None or not isinstance(line, str) or len(line) > _MAX_JOURNAL_CHARS:
        return []
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return []
    if not isinstance(record, dict):
        return []
    queue_id, queue_name = record.get("queue_id"), record.get("queue_name")
    recipients = record.get("recipients")
    if not (
        isinstance(queue_id, str) and isinstance(queue_name, str) and isinstance(recipients, list)
    ):
        return []
    found = []
    for recipient in recipients[:_MAX_QUEUE_RECIPIENTS]:
        if not isinstance(recipient, dict):
            continue
        address, reason = recipient.get("address"), recipient.get("delay_reason")
        if not isinstance(address, str) or not isinstance(reason, str):
            continue
        if len(reason) > _MAX_LINE_CHARS or "\n" in reason or "\r" in reason:
            continue
        signal = _failure(reason, (address,), relay, patterns)
        if signal is None or signal.hostless:
            continue
        found.append(
            QueuedFailure(
                kind=signal.kind,
                queue_id=queue_id[:64],
                queue_name=queue_name[:32],
                relay_name=signal.name,
                relay_ip=signal.ip,
                relay_port=signal.port,
                reason=reason,
                limited_ip=signal.limited_ip,
                unanswered=signal.unanswered,
            )
        )
    return found
