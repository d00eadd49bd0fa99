"""The one DNS client: questions to a named server (detection echoes, the doctor, verifying a
local zone), and DNS UPDATE signed with TSIG (the `rfc2136` zone backend and provider both send
through `send_update`). Every call has a timeout; a truncated UDP answer is asked again over TCP.

Errors: `question`/`query`/`query_async` raise dnspython's (`dns.exception.DNSException`) or
`OSError`, and callers word them; `send_update` raises UpdateFailure, saying whether retrying can
help; `verify` raises ZoneApplyError naming each difference (only zone backends verify); reading
a TSIG key raises SecretUnavailable naming the key and the fix. The `read_*` functions read the
keys every DNS UPDATE target has (server, zone, TSIG) from its configuration table.

dnspython's message, query and update modules (~25 ms, ~2 MiB) are imported by the functions
that send or receive, not with this module: a zone file backend needs only the names and the
record sets (`show_records`) unless it verifies, and callers that may not need DNS at all still
import this module lazily.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig

from ddnsagent.address import IPAddress, split_host_port
from ddnsagent.errors import ConfigError, SecretUnavailable, UpdateFailure, ZoneApplyError
from ddnsagent.resolvconf import RESOLV_CONF, nameservers
from ddnsagent.secrets import Secret, check_private_file, register
from ddnsagent.table import Table

if TYPE_CHECKING:
    import dns.message
    import dns.update

# BIND's and Knot's spelling → dnspython's algorithm name (hmac-md5 has an old long form).
ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
RRTYPE = {4: "A", 6: "AAAA"}
VERIFY_WAIT = 5.0  # seconds a server gets to show the new answers (BIND reloads asynchronously)
_VERIFY_POLL = 0.25

RecordSets = Mapping[str, Mapping[int, Sequence[IPAddress]]]  # absolute owner → family → set


# ---------------------------------------------------------------------------------------------
# Questions


def question(
    name: str, rdtype: str, rdclass: str = "IN", recurse: bool = True
) -> dns.message.Message:
    import dns.message  # see the module's docstring

    query = dns.message.make_query(name, rdtype, rdclass)
    if not recurse:
        query.flags &= ~dns.flags.RD
    return query


def query(
    server: str, port: int, name: str, rdtype: str, timeout: float, recurse: bool = True
) -> dns.message.Message:
    """Ask `server` (blocking): UDP, then TCP when the answer was truncated."""
    import dns.query  # see the module's docstring

    answer, _ = dns.query.udp_with_fallback(
        question(name, rdtype, recurse=recurse), server, timeout, port
    )
    return answer


async def query_async(
    server: str,
    port: int,
    name: str,
    rdtype: str,
    timeout: float,
    rdclass: str = "IN",
    recurse: bool = True,
) -> dns.message.Message:
    """Ask `server` from the event loop: UDP, then TCP when the answer was truncated."""
    import dns.asyncquery  # see the module's docstring

    answer, _ = await dns.asyncquery.udp_with_fallback(
        question(name, rdtype, rdclass, recurse), server, timeout, port
    )
    return answer


def rdata_texts(answer: dns.message.Message, name: str, rdtype: str) -> list[str]:
    """The answer section's records of `rdtype` for `name`, as text."""
    want = dns.rdatatype.from_text(rdtype)
    owner = dns.name.from_text(name)
    return [
        rr.to_text()
        for rrset in answer.answer
        if rrset.rdtype == want and rrset.name == owner
        for rr in rrset
    ]


# ---------------------------------------------------------------------------------------------
# TSIG


_COMMENT_OR_STRING = re.compile(r'"[^"]*"|/\*.*?\*/|//[^\n]*|#[^\n]*', re.S)


@dataclass(frozen=True)
class KeyEntry:
    name: str
    algorithm: str
    secret: str  # base64, as written


def parse_key_file(text: str) -> list[KeyEntry]:
    """The `key "name" { algorithm …; secret "…"; };` statements of a BIND key file (what
    tsig-keygen, rndc-confgen and ddns-confgen write)."""
    # Comments go, quoted strings stay whole: a base64 secret may hold "//".
    text = _COMMENT_OR_STRING.sub(lambda m: m[0] if m[0].startswith('"') else " ", text)
    entries = []
    for match in re.finditer(r'\bkey\s+("[^"]*"|[^\s{;]+)\s*\{(.*?)\}\s*;', text, flags=re.S):
        name = match.group(1).strip('"')
        fields: dict[str, str] = {}
        for statement in match.group(2).split(";"):
            words = statement.split(None, 1)
            if len(words) == 2:
                fields[words[0].lower()] = words[1].strip().strip('"')
        entries.append(
            KeyEntry(name, fields.get("algorithm", "hmac-md5").lower(), fields.get("secret", ""))
        )
    return entries


def _read_key_file(path: Path, name: str | None, key: str) -> KeyEntry:
    try:
        check_private_file(path, f"{path} holds a TSIG secret ({key})")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretUnavailable(f"{key}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SecretUnavailable(f"{key}: {path} is not UTF-8 text") from None
    except ConfigError as exc:
        raise SecretUnavailable(str(exc)) from None
    entries = parse_key_file(text)
    for entry in entries:
        register(entry.secret)
    if name is not None:
        entries = [e for e in entries if _same_name(e.name, name)]
    if len(entries) != 1:
        found = "no" if not entries else f"{len(entries)}"
        which = f' named "{name}"' if name else ""
        raise SecretUnavailable(
            f'{key}: {path} has {found} key statement(s){which}; expected one like key "NAME" '
            '{ algorithm hmac-sha256; secret "…"; }; (tsig-keygen NAME writes one)'
            + ("" if name or not entries else "; set tsig_name to choose")
        )
    return entries[0]


def _same_name(a: str, b: str) -> bool:
    try:
        return dns.name.from_text(a) == dns.name.from_text(b)
    except dns.exception.DNSException:
        return a.lower() == b.lower()


def read_tsig(t: Table) -> dict[str, Any]:
    """tsig_key_file, or tsig_name + tsig_algorithm + tsig_secret|_file|_env; or no TSIG."""
    fields: dict[str, Any] = {
        "tsig_name": None,
        "tsig_algorithm": None,
        "tsig_secret": None,
        "tsig_key_file": None,
    }
    secret_keys = [k for k in ("tsig_secret", "tsig_secret_file", "tsig_secret_env") if t.has(k)]
    if t.has("tsig_name"):
        fields["tsig_name"] = _key_name(t)
    if t.has("tsig_key_file"):
        for other in [*secret_keys, *(["tsig_algorithm"] if t.has("tsig_algorithm") else [])]:
            raise t.error(other, f"conflicts with {t.key('tsig_key_file')}", "keep only one")
        path = Path(t.string("tsig_key_file"))
        if not path.is_absolute():
            path = t.file.parent / path
        check_private_file(path, f"{path} holds a TSIG secret ({t.key('tsig_key_file')})")
        name, label = fields["tsig_name"], t.key("tsig_key_file")
        fields["tsig_key_file"] = str(path)
        fields["tsig_secret"] = Secret(
            f"key file {path}", label, lambda: _read_key_file(path, name, label).secret
        )
        return fields
    algorithm = t.string("tsig_algorithm", "hmac-sha256", choices=ALGORITHMS).lower()
    if not secret_keys:
        if t.has("tsig_name") or t.has("tsig_algorithm"):
            raise t.error(
                "tsig_name",
                "is set but no secret is",
                'add tsig_secret_file = "/etc/ddnsagent/NAME.tsig" (mode 0600), '
                "tsig_secret_env or tsig_secret — or use tsig_key_file",
            )
        return fields  # unsigned updates: the server allows them by address
    if fields["tsig_name"] is None:
        raise t.error(
            "tsig_name", "is required with tsig_secret", "write the key's name, e.g. ddns-key"
        )
    fields["tsig_algorithm"] = algorithm
    fields["tsig_secret"] = t.secret("tsig_secret")
    return fields


def _key_name(t: Table) -> str:
    name = t.string("tsig_name").strip()
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException:
        name = ""
    if not name:
        raise t.error("tsig_name", "is not a key name", "write the key's name, e.g. ddns-key")
    return name


def tsig_key(settings: Any) -> dns.tsig.Key | None:
    """The key to sign with, read now; raises SecretUnavailable naming the key and the fix."""
    secret: Secret | None = settings.tsig_secret
    if secret is None:
        return None
    if settings.tsig_key_file is not None:
        label = secret.key
        entry = _read_key_file(Path(settings.tsig_key_file), settings.tsig_name, label)
        name, algorithm, value = entry.name, entry.algorithm, entry.secret
        if algorithm not in ALGORITHMS:
            raise SecretUnavailable(
                f"{label}: algorithm {algorithm!r} is not supported; "
                f"use one of {', '.join(ALGORITHMS)}"
            )
    else:
        name, algorithm, value = settings.tsig_name, settings.tsig_algorithm, secret.reveal()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise SecretUnavailable(f"{secret.key}: the TSIG secret is not base64 text")
    return dns.tsig.Key(name, raw, ALGORITHMS[algorithm])


# ---------------------------------------------------------------------------------------------
# Sending an update


def build_update(
    zone: str, records: RecordSets, ttl: int, key: dns.tsig.Key | None
) -> dns.update.UpdateMessage:
    """One message replacing each given set; an empty set deletes that type at the name."""
    import dns.update  # see the module's docstring

    update = dns.update.UpdateMessage(zone)
    for owner, families in records.items():
        for family, addresses in sorted(families.items()):
            rrtype = RRTYPE[family]
            if addresses:
                update.replace(owner, ttl, rrtype, *(str(a) for a in addresses))
            else:
                update.delete(owner, rrtype)
    if key is not None:
        update.use_tsig(key)
    return update


def send_update(
    server: tuple[str, int],
    zone: str,
    records: RecordSets,
    ttl: int,
    key: dns.tsig.Key | None,
    timeout: float,
) -> None:
    """Send the update over TCP and judge the answer; raises UpdateFailure."""
    import dns.message  # see the module's docstring
    import dns.query

    update = build_update(zone, records, ttl, key)
    where = f"{show_server(server)} (zone {zone})"
    key_name = key.name.to_text(omit_final_dot=True) if key is not None else None
    try:
        response = dns.query.tcp(update, server[0], timeout=timeout, port=server[1])
    except dns.exception.Timeout:
        raise UpdateFailure(
            f"no answer from {where} within {timeout:g}s", "check that the server runs", False
        ) from None
    except dns.tsig.PeerBadKey:
        raise UpdateFailure(
            f"{where} does not know the TSIG key {key_name!r} (BADKEY)",
            "use the key name and algorithm of the server's key statement",
            True,
        ) from None
    except dns.tsig.PeerBadSignature:
        raise UpdateFailure(
            f"{where} rejected the signature of key {key_name!r} (BADSIG)",
            "the TSIG secret differs from the server's: copy the key again",
            True,
        ) from None
    except dns.tsig.PeerBadTime:
        raise UpdateFailure(
            f"{where} says our clock is off (BADTIME)",
            "synchronise this machine's clock (TSIG allows 5 minutes)",
            False,
        ) from None
    except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.message.UnknownTSIGKey) as exc:
        raise UpdateFailure(
            f"{where}: TSIG failure: {exc}", "check the TSIG key on both sides", True
        ) from None
    except dns.exception.FormError as exc:
        if key is None or "TSIG" not in str(exc):
            raise UpdateFailure(
                f"{where} sent a malformed answer: {exc}", "see the server's log", False
            ) from None
        # Servers answer unsigned when they do not serve the zone or cannot use the key.
        raise UpdateFailure(
            f"{where} answered without a TSIG signature: it does not serve zone {zone}, or "
            f"cannot use key {key_name!r}",
            "check `zone`, and the key name, algorithm and secret on both sides",
            True,
        ) from None
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UpdateFailure(
            f"cannot reach {where}: {detail or type(exc).__name__}",
            "check that the server runs and listens on that address",
            False,
        ) from None
    judge(response.rcode(), where, key_name)


def judge(rcode: int, where: str, key_name: str | None) -> None:
    """The meaning of an update's answer code; pure, so it is tested without a server."""
    if rcode == dns.rcode.NOERROR:
        return
    name = dns.rcode.to_text(dns.rcode.Rcode.make(rcode))
    signed = f"signed with key {key_name!r}" if key_name else "unsigned"
    if key_name:
        policy = (
            f"let key {key_name!r} update these names: BIND `update-policy {{ grant {key_name} "
            f"zonesub ANY; }};`, Knot an acl with `action: update` and `key: {key_name}`"
        )
    else:
        policy = "sign the update with a TSIG key the server's update policy grants"
    if rcode == dns.rcode.REFUSED:
        raise UpdateFailure(f"{where} refused the update ({signed}; REFUSED)", policy, True)
    if rcode == dns.rcode.NOTAUTH:
        raise UpdateFailure(
            f"{where} answered NOTAUTH to the update ({signed}): it is not authoritative for "
            "the zone, or does not accept the key",
            f"check `zone` and the TSIG key; {policy}",
            True,
        )
    if rcode == dns.rcode.NOTZONE:
        raise UpdateFailure(
            f"{where} answered NOTZONE: a name is outside the zone",
            "check `zone` and the names",
            True,
        )
    if rcode == dns.rcode.SERVFAIL:
        raise UpdateFailure(f"{where} answered SERVFAIL", "see the server's log", False)
    raise UpdateFailure(f"{where} answered {name}", "see the server's log", True)


# ---------------------------------------------------------------------------------------------
# Asking a server what it answers


def answers(
    server: tuple[str, int], owner: str, family: int, timeout: float
) -> tuple[set[IPAddress], int | None]:
    """The A or AAAA addresses `server` gives for `owner`, and their TTL; raises
    ZoneApplyError when it does not answer NOERROR/NXDOMAIN."""
    try:
        response = query(server[0], server[1], owner, RRTYPE[family], timeout, recurse=False)
    except dns.exception.Timeout:
        raise ZoneApplyError(f"{show_server(server)} did not answer within {timeout:g}s") from None
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        raise ZoneApplyError(f"cannot ask {show_server(server)}: {exc}") from None
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise ZoneApplyError(
            f"{show_server(server)} answers {dns.rcode.to_text(rcode)} for {owner} {RRTYPE[family]}"
        )
    name = dns.name.from_text(owner)
    rdtype = dns.rdatatype.from_text(RRTYPE[family])
    found: set[IPAddress] = set()
    ttl = None
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == rdtype:
            found.update(ipaddress.ip_address(rd.address) for rd in rrset)
            ttl = rrset.ttl
    return found, ttl


def differences(
    server: tuple[str, int],
    records: RecordSets,
    timeout: float,
    ttl: int | None = None,
) -> list[str]:
    """What `server` answers differently from `records` (and `ttl`, when given)."""
    out = []
    for owner, families in records.items():
        for family, want in sorted(families.items()):
            got, got_ttl = answers(server, owner, family, timeout)
            if got != set(want):
                shown = ", ".join(sorted(map(str, got))) or "nothing"
                wanted = ", ".join(sorted(map(str, want))) or "nothing"
                out.append(f"{owner} {RRTYPE[family]} is {shown}, not {wanted}")
            elif ttl is not None and got and got_ttl != ttl:
                out.append(f"{owner} {RRTYPE[family]} has TTL {got_ttl}, not {ttl}")
    return out


def verify(
    server: tuple[str, int],
    records: RecordSets,
    *,
    wait: float | None = None,
    timeout: float = 2.0,
) -> None:
    """Ask `server` until it answers `records` exactly, for at most about `wait` seconds
    (default VERIFY_WAIT: a reload is asynchronous); raises ZoneApplyError naming each
    difference."""
    if wait is None:
        wait = VERIFY_WAIT
    deadline = time.monotonic() + wait
    attempts = max(1, int(wait / _VERIFY_POLL) + 1)
    problem = ""
    for _ in range(attempts):
        try:
            diff = differences(server, records, min(timeout, max(wait, 0.5)))
        except ZoneApplyError as exc:
            problem = str(exc)
        else:
            if not diff:
                return
            problem = "; ".join(diff)
        if time.monotonic() >= deadline:
            break
        time.sleep(_VERIFY_POLL)
    raise ZoneApplyError(f"verify at {show_server(server)} failed after {wait:g}s: {problem}")


def show_server(server: tuple[str, int]) -> str:
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def show_records(records: RecordSets) -> str:
    return ", ".join(
        f"{owner} {RRTYPE[f]} {' '.join(map(str, a)) or '(none)'}"
        for owner, families in records.items()
        for f, a in sorted(families.items())
    )


# ---------------------------------------------------------------------------------------------
# The configuration keys of an UPDATE target


def read_server(t: Table, key: str, default_port: int = 53) -> tuple[str, int]:
    """ "127.0.0.1:53", "[::1]:5353" or a bare address."""
    text = t.string(key).strip()
    try:
        return split_host_port(text, default_port)
    except ValueError as exc:
        reason = str(exc).removeprefix(f"{text!r}: ")
        raise t.error(
            key, f"{text!r} is not an IP address with an optional :port", reason
        ) from None


def read_zone_name(t: Table, default: str) -> str:
    """The `zone` key as an absolute, lower-case name."""
    text = t.string("zone", default).strip()
    try:
        return dns.name.from_text(text).to_text().lower()
    except dns.exception.DNSException:
        raise t.error(
            "zone", f"found {text!r}", 'write the zone\'s name, e.g. "example.net"'
        ) from None


# ---------------------------------------------------------------------------------------------
# Blocklist (DNSBL) questions


def system_nameservers(path: Path = RESOLV_CONF) -> list[tuple[str, int]]:
    """The resolvers the C library asks, from resolv.conf, in order (port 53); 127.0.0.1
    when the file names none or cannot be read (glibc's own fallback)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return [(host, 53) for host in nameservers(text)] or [("127.0.0.1", 53)]


def a_records(server: tuple[str, int], name: str, timeout: float) -> tuple[str, list[str]]:
    """Ask `server` (a recursive resolver) for the A records of `name`, blocking: the answer's
    code ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", …) and the addresses. Raises
    TimeoutError when no answer came within `timeout`, OSError for any other failure (the
    server unreachable, a malformed answer), each saying which server."""
    try:
        answer = query(server[0], server[1], name, "A", timeout)
    except dns.exception.Timeout:
        raise TimeoutError(f"no answer from {show_server(server)} within {timeout:g}s") from None
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OSError(f"cannot ask {show_server(server)}: {detail or type(exc).__name__}") from None
    code = dns.rcode.to_text(answer.rcode())
    return code, rdata_texts(answer, name, "A") if code == "NOERROR" else []
