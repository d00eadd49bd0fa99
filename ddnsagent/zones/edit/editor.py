"""Point the A/AAAA records of a few names in a zone file at new addresses.

The operator owns the zone file: its comments, layout and every record we do not manage must
come back exactly as written.  So instead of parsing the zone into objects and printing it again,
:func:`edit_zone` finds the few tokens that must change (the address of each managed A/AAAA
record and the SOA serial) and replaces them in place; lines are added only when a managed name
needs more records than it has, and removed only when it has more than it needs.  The editing is
done on strings (included files are only read, to check them); the result is checked with
dnspython before it is handed back, and :func:`ddnsagent.zones.edit.atomic.replace`
puts it on disk.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.version
import dns.zone

from ddnsagent.address import IPAddress
from ddnsagent.errors import ZoneEditError, ZoneSyntaxError
from ddnsagent.zones.edit import masterfile
from ddnsagent.zones.edit.includes import IncludeReader
from ddnsagent.zones.edit.masterfile import Entry, Scan, spell_name
from ddnsagent.zones.edit.serial import SERIAL_POLICIES, SerialPolicy, next_serial

Validation = Literal["full", "scan", "none"]
_VALIDATIONS: tuple[str, ...] = get_args(Validation)
_RRTYPE = {4: "A", 6: "AAAA"}
_MAX_TTL = 2**31 - 1
_MAX_INCLUDE_DEPTH = 8
# All $INCLUDE files of a zone together; far above any hand-kept include, low enough that a
# device or a runaway file ends in a refusal, not in MemoryError.
MAX_INCLUDED_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ZoneEdit:
    """The edited zone text and what was done to it.

    ``text`` equals the input when ``changed`` is false.  ``old_serial`` is ``None`` when this
    file holds no usable SOA serial (then nothing could have been changed); ``new_serial`` equals
    ``old_serial`` when nothing changed.  ``changes`` describes each edit; ``warnings`` lists what
    was noticed but not done, such as managed records inside ``$INCLUDE`` files.
    """

    text: str
    changed: bool
    old_serial: int | None
    new_serial: int | None
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def edit_zone(
    text: str,
    origin: str | dns.name.Name,
    names: Iterable[str],
    addresses: Mapping[int, Sequence[IPAddress]],
    *,
    ttl: int | None = None,
    serial: SerialPolicy = "date",
    today: datetime.date,
    now: int,
    include_dir: str | os.PathLike[str] | IncludeReader | None = None,
    validate: Validation = "full",
) -> ZoneEdit:
    """Make each of ``names`` hold exactly ``addresses[4]`` / ``addresses[6]`` in ``text``.

    ``names`` are relative to ``origin`` unless they end with a dot; ``"@"`` is the origin.  A
    family missing from ``addresses`` is left alone; an empty list removes that family's records.
    Existing records that already hold a wanted address are not touched; the others get their
    address token rewritten, and surplus records are removed.  Missing records are inserted right
    after the name's last record of that family (or of any type), or appended at the end of the
    file when the name has none; they get ``ttl`` (when ``None``: the TTL written on the address
    record they follow, else none, i.e. the zone default).  TTLs of existing records are kept.

    When anything changed, the SOA serial is advanced by ``serial`` (see
    :func:`ddnsagent.zones.edit.serial.next_serial`, which uses ``today`` and ``now``, a Unix time).

    ``validate``: ``"full"`` loads the result with dnspython and checks that the managed names
    hold exactly the wanted addresses; ``"scan"`` checks the same by re-scanning the result (much
    faster on big zones, but does not check other records); ``"none"`` skips the check.
    On a 100,000-record zone the edit takes about 0.15 s, ``"scan"`` adds as much again, and
    ``"full"`` about 6 s (dnspython's parser).

    ``$INCLUDE`` files are read only when ``include_dir`` is given (a directory, or an
    :class:`~ddnsagent.zones.edit.includes.IncludeReader` for it), and only files directly in
    it (relative names are resolved against it, as BIND does with its ``directory``), through
    the rules of :mod:`ddnsagent.zones.edit.includes`: no links, regular files, a trusted
    owner, a size cap, and no message quoting their content.  They are never edited; managed
    records found in them are reported in ``warnings`` and make validation fail, and so does an
    included file that cannot be read or is refused.  dnspython never opens them: ``"full"``
    loads the zone without its $INCLUDE lines and counts the included A/AAAA records found by
    the scan.  Without ``include_dir`` the result is validated with ``"scan"`` at most.

    Raises :class:`ZoneEditError` (or its subclass ``ZoneSyntaxError``) when the zone cannot be
    edited safely; the input should then be left as it is.
    """
    zone_origin = _absolute_origin(origin)
    managed = _managed_names(names, zone_origin)
    wanted = _wanted_addresses(addresses)
    if ttl is not None and not 0 <= ttl <= _MAX_TTL:
        raise ValueError(f"ttl {ttl} is outside 0..{_MAX_TTL}")
    if serial not in SERIAL_POLICIES:
        raise ValueError(f"unknown serial policy {serial!r}; use one of {SERIAL_POLICIES}")
    if validate not in _VALIDATIONS:
        raise ValueError(f"unknown validation {validate!r}; use one of {_VALIDATIONS}")
    watched = frozenset(key for _, key in managed)

    scan = masterfile.scan(text, zone_origin, watched)
    planner = _Planner(text, scan, ttl)
    for name, key in managed:
        for family, want in wanted.items():
            planner.plan(name, key, family, want)
    planner.keep_owners()
    changed = bool(planner.edits)

    old_serial, serial_span, no_serial_reason = _find_serial(text, scan)
    new_serial = old_serial
    if changed:
        if old_serial is None or serial_span is None:
            raise ZoneEditError(f"cannot advance the SOA serial: {no_serial_reason}")
        new_serial = next_serial(old_serial, serial, today=today, now=now)
        planner.edits.append(_Edit(serial_span[0], serial_span[1], str(new_serial)))
        planner.changes.append(
            f"SOA serial {old_serial} -> {new_serial} (line {scan.soa[0].line}, policy {serial})"
        )
    new_text = _apply(text, planner.edits)

    warnings = planner.warnings
    if scan.generate_lines:
        lines = ", ".join(str(n) for n in scan.generate_lines)
        warnings.append(f"$GENERATE on line(s) {lines} is not examined for managed names")
    included = _Included()
    if scan.includes:
        if include_dir is None:
            warnings.append(
                "the zone has $INCLUDE and no include_dir was given: included files were not "
                "checked for managed records, nor loaded by dnspython"
            )
            if validate == "full":
                validate = "scan"
        else:
            reader = (
                include_dir
                if isinstance(include_dir, IncludeReader)
                else IncludeReader(include_dir, limit=MAX_INCLUDED_BYTES)
            )
            try:
                _read_includes(scan, reader, zone_origin, watched, included)
            finally:
                if reader is not include_dir:
                    reader.close()
            for path, entry in included.records:
                warnings.append(
                    f"{path}:{entry.line}: a managed {entry.rrtype} record of {entry.owner} is in "
                    "an $INCLUDE file and was not edited"
                )
            warnings.extend(included.problems)
            if included.problems and validate != "none":
                raise ZoneEditError(
                    "cannot check the $INCLUDE files: " + "; ".join(included.problems)
                )

    expected = {(name, family): set(want) for name, _ in managed for family, want in wanted.items()}
    if validate == "full" and _OLD_DNSPYTHON and not _parses(text, scan, zone_origin):
        # dnspython before 2.4 (Debian 12 ships 2.3) does not parse every zone BIND reads: a
        # class before the TTL (`www IN 600 A …`), CRLF line ends. A zone whose text it cannot
        # parse even unedited is checked by the rescan instead (and by the zone's check
        # command); a zone it parses but finds wrong (no NS, …) is still refused.
        validate = "scan"
    if validate == "full":
        _validate_with_dnspython(
            text, planner.edits, scan, zone_origin, included.records, expected, new_serial
        )
    elif validate == "scan":
        _validate_by_rescan(new_text, zone_origin, watched, included.records, expected, new_serial)

    return ZoneEdit(
        text=new_text,
        changed=changed,
        old_serial=old_serial,
        new_serial=new_serial,
        changes=planner.changes,
        warnings=warnings,
    )


@dataclass(slots=True)
class _Edit:
    """Replace ``text[start:end]``; a zero-width edit inserts."""

    start: int
    end: int
    text: str


class _Planner:
    """Collects the edits that bring the managed names to their wanted addresses."""

    def __init__(self, text: str, scan: Scan, ttl: int | None) -> None:
        self.text = text
        self.scan = scan
        self.ttl = ttl
        self.edits: list[_Edit] = []
        self.changes: list[str] = []
        self.warnings: list[str] = []
        self.deleted: set[Entry] = set()

    def plan(self, name: dns.name.Name, key: str, family: int, want: list[IPAddress]) -> None:
        rrtype = _RRTYPE[family]
        entries = self.scan.watched.get(key, [])
        same = [e for e in entries if e.rrtype == rrtype and e.is_in_class]
        missing = list(want)
        stale: list[Entry] = []
        for entry in same:
            address = _address_of(entry, family)
            if address is not None and address in missing:
                missing.remove(address)
            else:
                stale.append(entry)
        # Rewrite rather than remove the entries whose removal would hand their owner to
        # the blank-owner lines after them; sorted() is stable, so file order breaks ties.
        n_rewrite = min(len(stale), len(missing))
        by_preference = sorted(stale, key=self._removable)
        rewrite = set(by_preference[:n_rewrite])
        rewritten = [e for e in stale if e in rewrite]
        for entry, address in zip(rewritten, missing, strict=False):
            self._rewrite(entry, name, address)
        for entry in by_preference[n_rewrite:]:
            self._remove(entry, name)
        if len(missing) > n_rewrite:
            if any(e.rrtype == "CNAME" for e in entries):
                raise ZoneEditError(
                    f"cannot add {rrtype} records to {name}: it has a CNAME record "
                    f"(line {next(e.line for e in entries if e.rrtype == 'CNAME')})"
                )
            anchor = same[-1] if same else (entries[-1] if entries else None)
            for address in missing[n_rewrite:]:
                self._insert(anchor, name, rrtype, address)

    def _removable(self, entry: Entry) -> bool:
        return not (entry.explicit_owner and entry.next_inherits)

    def _rewrite(self, entry: Entry, name: dns.name.Name, address: IPAddress) -> None:
        spans = masterfile.token_spans(self.text, entry)[entry.type_index + 1 :]
        if not spans:
            raise ZoneEditError(f"line {entry.line}: {entry.rrtype} record of {name} is empty")
        start, end = spans[0][0], spans[-1][1]
        between = self.text[start:end]
        if len(spans) > 1 and any(c in between for c in "\n()"):
            raise ZoneEditError(
                f"line {entry.line}: cannot rewrite the {entry.rrtype} record of {name} in "
                "this form; write its address as one token on one line"
            )
        written = str(address)
        if entry.rdata[0] == "\\#":  # keep RFC 3597 generic form: TYPE1 \# 4 c0000201
            written = f"\\# {len(address.packed)} {address.packed.hex()}"
        self.edits.append(_Edit(start, end, written))
        self.changes.append(
            f"{name} {entry.rrtype} {' '.join(entry.rdata)} -> {address} (line {entry.line})"
        )

    def _remove(self, entry: Entry, name: dns.name.Name) -> None:
        self.edits.append(_Edit(entry.start, entry.end, ""))
        self.deleted.add(entry)
        self.changes.append(
            f"{name} {entry.rrtype} {' '.join(entry.rdata)} removed (line {entry.line})"
        )

    def _insert(
        self, anchor: Entry | None, name: dns.name.Name, rrtype: str, address: IPAddress
    ) -> None:
        ttl_text = None if self.ttl is None else str(self.ttl)
        if anchor is not None:
            position = anchor.end
            owner = anchor.tokens[0] if anchor.explicit_owner else spell_name(name, anchor.origin)
            if ttl_text is None and anchor.rrtype in ("A", "AAAA") and anchor.ttl_index is not None:
                ttl_text = anchor.tokens[anchor.ttl_index]
            where = f"after line {anchor.line}"
        else:
            position = len(self.text)
            owner = spell_name(name, self.scan.end_origin)
            where = "at the end of the file"
        fields = [owner, *([ttl_text] if ttl_text is not None else []), "IN", rrtype, str(address)]
        line = "\t".join(fields)
        newline = self.scan.newline
        if position == len(self.text) and self.text and not self.text.endswith("\n"):
            line = newline + line
        else:
            line += newline
        self.edits.append(_Edit(position, position, line))
        self.changes.append(f"{name} {rrtype} {address} added {where}")
        first_ttl = self.scan.first_ttl_directive
        if ttl_text is not None and (first_ttl is None or first_ttl > position):
            self.warnings.append(
                f"no $TTL precedes the {rrtype} record added for {name}: later records that "
                f"omit their TTL now inherit {ttl_text} from it"
            )

    def keep_owners(self) -> None:
        """Write out the owner of a blank-owner line whose owner came from a removed line."""
        done: set[Entry] = set()
        for removed in sorted(self.deleted, key=lambda e: e.start):
            if not removed.explicit_owner:
                continue
            entry = removed
            while entry.next_inherits and entry.next is not None:
                entry = entry.next
                if entry in self.deleted:
                    continue
                if entry not in done:
                    done.add(entry)
                    owner = spell_name(dns.name.from_text(entry.owner), entry.origin)
                    self.edits.append(_Edit(entry.start, entry.start, owner))
                    self.changes.append(
                        f"line {entry.line}: owner {owner} written out because it was "
                        f"inherited from removed line {removed.line}"
                    )
                break


def _absolute_origin(origin: str | dns.name.Name) -> dns.name.Name:
    if isinstance(origin, dns.name.Name):
        if not origin.is_absolute():
            raise ValueError(f"origin {origin} must be absolute")
        return origin
    try:
        return dns.name.from_text(origin)
    except dns.exception.DNSException as exc:
        raise ValueError(f"bad origin {origin!r}: {exc}") from None


def _managed_names(names: Iterable[str], origin: dns.name.Name) -> list[tuple[dns.name.Name, str]]:
    managed: dict[str, dns.name.Name] = {}
    for text in names:
        try:
            name = dns.name.from_text(text, origin)
        except dns.exception.DNSException as exc:
            raise ValueError(f"bad managed name {text!r}: {exc}") from None
        if not name.is_subdomain(origin):
            raise ValueError(f"managed name {name} is not inside the zone {origin}")
        managed.setdefault(masterfile.name_key(name), name)
    return [(name, key) for key, name in managed.items()]


def _wanted_addresses(addresses: Mapping[int, Sequence[IPAddress]]) -> dict[int, list[IPAddress]]:
    wanted: dict[int, list[IPAddress]] = {}
    for family in sorted(addresses):
        if family not in _RRTYPE:
            raise ValueError(f"address family must be 4 or 6, not {family!r}")
        unique: dict[IPAddress, None] = {}
        for address in addresses[family]:
            if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise TypeError(f"{address!r} is not an ipaddress address")
            if address.version != family:
                raise ValueError(f"{address} is not an IPv{family} address")
            unique[address] = None
        wanted[family] = list(unique)
    return wanted


def _address_of(entry: Entry, family: int) -> IPAddress | None:
    """The address an A/AAAA entry holds, or ``None`` if it does not parse (it gets rewritten)."""
    rdtype = dns.rdatatype.A if family == 4 else dns.rdatatype.AAAA
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, " ".join(entry.rdata))
        return ipaddress.ip_address(rdata.address)  # type: ignore[attr-defined]
    except (dns.exception.DNSException, ValueError):
        return None


def _find_serial(text: str, scan: Scan) -> tuple[int | None, tuple[int, int] | None, str]:
    """The SOA serial, the span of its digits, and why there is none if so."""
    if not scan.soa:
        return None, None, "no SOA record for the zone origin in this file"
    if len(scan.soa) > 1:
        lines = ", ".join(str(e.line) for e in scan.soa)
        return None, None, f"several SOA records (lines {lines})"
    soa = scan.soa[0]
    spans = masterfile.token_spans(text, soa)[soa.type_index + 1 :]
    if len(spans) < 3:
        return None, None, f"SOA record on line {soa.line} has no serial"
    start, end = spans[2]
    digits = text[start:end]
    if not (digits.isascii() and digits.isdigit()):
        return None, None, f"SOA serial {digits!r} on line {soa.line} is not a number"
    value = int(digits)
    if value >= 2**32:
        return None, None, f"SOA serial {value} on line {soa.line} is larger than 32 bits"
    return value, (start, end), ""


def _apply(text: str, edits: list[_Edit]) -> str:
    """Apply non-overlapping edits.

    At one offset, insertions go first (a line added after an entry precedes a removal of the
    entry that follows it) and keep the order they were made in (added lines before an owner
    written out on the next line).
    """
    parts: list[str] = []
    position = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        if edit.start < position:  # pragma: no cover - would be a planning bug
            raise AssertionError(f"overlapping edits at offset {edit.start}")
        parts.append(text[position : edit.start])
        parts.append(edit.text)
        position = edit.end
    parts.append(text[position:])
    return "".join(parts)


@dataclass(slots=True)
class _Included:
    """What the $INCLUDE files (read only for checking) hold for the managed names."""

    records: list[tuple[str, Entry]] = field(default_factory=list)  # (file, A/AAAA entry)
    problems: list[str] = field(default_factory=list)  # files that could not be examined


def _read_includes(
    scan: Scan,
    reader: IncludeReader,
    zone_origin: dns.name.Name,
    watched: frozenset[str],
    found: _Included,
    depth: int = 0,
    parent: str | None = None,
) -> _Included:
    """Scan the $INCLUDE files of ``scan`` recursively, through ``reader`` (confined to its
    directory). Problems name the file and line, never what an included file holds."""
    for include in scan.includes:
        where = f"$INCLUDE on line {include.line}" + (f" of {parent}" if parent else "")
        if depth >= _MAX_INCLUDE_DEPTH:
            found.problems.append(f"{where}: $INCLUDE nested too deeply")
            continue
        try:
            name = reader.resolve(include.filename, where)
            text = reader.read(name, where)
        except ZoneEditError as exc:
            found.problems.append(str(exc))
            continue
        shown = str(reader.path / name)
        try:
            sub = masterfile.scan(
                text,
                include.origin,
                watched,
                last_owner=include.last_owner,
                zone_origin=zone_origin,
                filename=shown,
            )
        except ZoneSyntaxError as exc:
            # The scanner quotes the offending token; an included file's content is not shown.
            found.problems.append(
                f"{where}: {shown}:{exc.line}: not a valid master file line (the content of "
                "included files is not shown)"
            )
            continue
        reader.spans[name] = [(i.filename, i.span) for i in sub.includes]
        for entries in sub.watched.values():
            found.records.extend(
                (shown, e) for e in entries if e.rrtype in ("A", "AAAA") and e.is_in_class
            )
        _read_includes(sub, reader, zone_origin, watched, found, depth + 1, shown)
    return found


def _without_includes(text: str, edits: list[_Edit], scan: Scan) -> str:
    """The edited text with each $INCLUDE directive blanked (its newlines kept, so line numbers
    stay): dnspython must never open a file itself. It would follow any path, links, FIFOs and
    devices, and quote what it read in its errors. Included files are examined by
    `_read_includes` instead, and the check command gets copies."""
    blanks = [_Edit(i.start, i.end, "\n" * text.count("\n", i.start, i.end)) for i in scan.includes]
    return _apply(text, [*edits, *blanks])


def _load(text: str, origin: dns.name.Name) -> dns.zone.Zone:
    return dns.zone.from_text(
        text, origin, relativize=False, check_origin=True, allow_include=False
    )


_LOAD_ERRORS = (dns.exception.DNSException, KeyError, OSError, ValueError, UnicodeDecodeError)
_OLD_DNSPYTHON = (dns.version.MAJOR, dns.version.MINOR) < (2, 4)


def _parses(text: str, scan: Scan, origin: dns.name.Name) -> bool:
    """Whether dnspython parses the zone as it is (before any edit): False only for a syntax
    error; a zone that parses but does not load (no NS, …) counts as parsed."""
    try:
        _load(_without_includes(text, [], scan), origin)
    except dns.exception.SyntaxError:
        return False
    except _LOAD_ERRORS:
        return True
    return True


def _validate_with_dnspython(
    text: str,
    edits: list[_Edit],
    scan: Scan,
    origin: dns.name.Name,
    included: list[tuple[str, Entry]],
    expected: dict[tuple[dns.name.Name, int], set[IPAddress]],
    new_serial: int | None,
) -> None:
    try:
        zone = _load(_without_includes(text, edits, scan), origin)
    except _LOAD_ERRORS as exc:
        detail = f"the edited zone does not load: {exc}"
        if edits:
            try:
                _load(_without_includes(text, [], scan), origin)
            except _LOAD_ERRORS:
                detail += " (the zone did not load before the edit either)"
        raise ZoneEditError(detail) from exc
    for (name, family), want in expected.items():
        rdtype = dns.rdatatype.A if family == 4 else dns.rdatatype.AAAA
        rdataset = zone.get_rdataset(name, rdtype)
        got: set[IPAddress | str] = set()
        if rdataset is not None:
            got = {ipaddress.ip_address(rd.address) for rd in rdataset}
        _compare(name, family, got, _included_values(included, name, family), want)
    if new_serial is not None:
        soa = zone.get_rdataset(origin, dns.rdatatype.SOA)
        if soa is None or soa[0].serial != new_serial:
            raise ZoneEditError(f"the edited zone does not have SOA serial {new_serial}")


def _validate_by_rescan(
    text: str,
    origin: dns.name.Name,
    watched: frozenset[str],
    included: list[tuple[str, Entry]],
    expected: dict[tuple[dns.name.Name, int], set[IPAddress]],
    new_serial: int | None,
) -> None:
    rescan = masterfile.scan(text, origin, watched)
    entries = [e for es in rescan.watched.values() for e in es]
    for (name, family), want in expected.items():
        key = masterfile.name_key(name)
        got: set[IPAddress | str] = set()
        for entry in entries:
            if entry.owner == key and entry.rrtype == _RRTYPE[family] and entry.is_in_class:
                address = _address_of(entry, family)
                got.add(address if address is not None else " ".join(entry.rdata))
        _compare(name, family, got, _included_values(included, name, family), want)
    if new_serial is not None:
        serial, _, reason = _find_serial(text, rescan)
        if serial != new_serial:
            raise ZoneEditError(f"the edited zone does not have SOA serial {new_serial}: {reason}")


def _included_values(
    included: list[tuple[str, Entry]], name: dns.name.Name, family: int
) -> set[IPAddress | str]:
    """What the $INCLUDE files hold for `name` and `family` (compared, never quoted)."""
    key = masterfile.name_key(name)
    values: set[IPAddress | str] = set()
    for _, entry in included:
        if entry.owner == key and entry.rrtype == _RRTYPE[family] and entry.is_in_class:
            address = _address_of(entry, family)
            values.add(address if address is not None else " ".join(entry.rdata))
    return values


def _compare(
    name: dns.name.Name,
    family: int,
    got: set[IPAddress | str],
    from_includes: set[IPAddress | str],
    want: set[IPAddress],
) -> None:
    if got | from_includes != want:
        shown = ", ".join(sorted(str(a) for a in got)) or "nothing"
        wanted = ", ".join(sorted(str(a) for a in want)) or "nothing"
        hint = ""
        if from_includes:
            # An included file's content is never quoted: it may be one only root can read.
            shown += f" and {len(from_includes)} record(s) from $INCLUDE files"
            hint = " (records in $INCLUDE files are not edited; see the warnings)"
        raise ZoneEditError(
            f"after the edit {name} {_RRTYPE[family]} would hold {shown} instead of {wanted}{hint}"
        )
