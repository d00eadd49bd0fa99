"""Position-aware scanning of RFC 1035 master files (BIND/Knot zone files).

dnspython parses a zone into data and forgets the text; to edit a zone without disturbing the
operator's comments and layout we need to know *where* each entry sits.  :func:`scan` makes one
pass over the text and returns, for the owner names we watch, every entry with its character
span and tokens.  All other entries are tokenized just enough to follow the owner inheritance
(blank owner fields), ``$ORIGIN`` changes and parentheses, and then forgotten, so the scan stays
linear and cheap on zones with a hundred thousand records.

Tokenization follows dnspython's reader, which is what validates the result: tokens are split on
space, tab and CR; ``;`` starts a comment; ``"`` starts a quoted string (one line at most) only at
the start of a token; a backslash escapes the next character; ``(``/``)`` let an entry span lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import dns.exception
import dns.name

from ddnsagent.errors import ZoneSyntaxError

# One lexeme of a line: whitespace, comment, parenthesis, quoted string or word.
_LEXEME = re.compile(r'[ \t\r]+|;.*|[()]|"(?:[^"\\]|\\.)*"|(?:[^ \t\r;()"\\]|\\.)+')
# Lines without these characters split correctly with str.split(): no quotes, escapes or
# parentheses, and no character str.split() counts as whitespace while dnspython does not.
_NEEDS_LEXER = re.compile(
    '["\\\\()\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]'
)
# Names whose canonical text is just their lower-cased spelling (no escapes, no empty labels).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_*/-]+(?:\.[A-Za-z0-9_*/-]+)*\.?")
_CLASSES = frozenset({"IN", "CH", "CHAOS", "HS", "HESIOD", "CS", "NONE", "ANY"})
_GENERIC_TYPES = {"TYPE1": "A", "TYPE5": "CNAME", "TYPE6": "SOA", "TYPE28": "AAAA"}


def name_key(name: dns.name.Name) -> str:
    """Canonical text of an absolute name, used to compare owners without building Names."""
    return name.canonicalize().to_text()


def spell_name(name: dns.name.Name, origin: dns.name.Name) -> str:
    """How to write ``name`` as an owner field where ``origin`` is the current origin."""
    if name == origin:
        return "@"
    if name.is_subdomain(origin):
        return name.relativize(origin).to_text()
    return name.to_text()


def lex_line(line: str) -> list[tuple[int, int]]:
    """Spans of the words, quoted strings and parentheses of one line (without its newline).

    Raises ``ValueError`` with the column of an unterminated quoted string or a trailing
    backslash, which dnspython would also reject.
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    for match in _LEXEME.finditer(line):
        start, end = match.span()
        if start != pos:
            raise ValueError(pos)
        pos = end
        first = line[start]
        if first == ";":
            return spans
        if first not in " \t\r":
            spans.append((start, end))
    if pos != len(line):
        raise ValueError(pos)
    return spans


@dataclass(slots=True, eq=False)
class Entry:
    """One resource record entry of a watched owner, as written in the text."""

    start: int  # offset of the first character of the entry's first line
    end: int  # offset just past the entry's last line, its newline included
    line: int  # 1-based number of the first line
    tokens: list[str]  # words and quoted strings, without parentheses and comments
    explicit_owner: bool  # False when the owner field is blank and inherited
    owner: str  # canonical text of the owner name
    origin: dns.name.Name  # $ORIGIN in effect for this entry
    ttl_index: int | None
    class_index: int | None
    type_index: int
    rrtype: str  # upper-case mnemonic; TYPE1/TYPE5/TYPE6/TYPE28 mapped to A/CNAME/SOA/AAAA
    # The RR entry that follows, when it belongs to a watched owner, and whether it inherits
    # this entry's owner; needed to delete an entry without re-parenting its continuations.
    next: Entry | None = None
    next_inherits: bool = False

    @property
    def rdata(self) -> list[str]:
        return self.tokens[self.type_index + 1 :]

    @property
    def is_in_class(self) -> bool:
        return self.class_index is None or self.tokens[self.class_index].upper() == "IN"


@dataclass(slots=True)
class Include:
    """A ``$INCLUDE`` directive; the included file is not part of the scanned text."""

    filename: str
    origin: dns.name.Name  # origin inside the included file
    last_owner: str | None  # owner a blank owner field at the top of the file inherits
    line: int
    span: tuple[int, int] | None  # absolute span of the filename token, if on the first line
    start: int = 0  # span of the whole directive, its newline included
    end: int = 0


@dataclass(slots=True)
class Scan:
    watched: dict[str, list[Entry]] = field(default_factory=dict)
    soa: list[Entry] = field(default_factory=list)  # SOA entries owned by the zone origin
    includes: list[Include] = field(default_factory=list)
    generate_lines: list[int] = field(default_factory=list)
    end_origin: dns.name.Name = dns.name.root  # $ORIGIN in effect at the end of the text
    first_ttl_directive: int | None = None  # offset of the first $TTL directive
    newline: str = "\n"


def token_spans(text: str, entry: Entry) -> list[tuple[int, int]]:
    """Absolute spans of ``entry.tokens`` in ``text``, for replacing one token in place."""
    spans: list[tuple[int, int]] = []
    base = entry.start
    for line in text[entry.start : entry.end].split("\n"):
        for start, end in lex_line(line):
            if line[start] not in "()":
                spans.append((base + start, base + end))
        base += len(line) + 1
    if len(spans) != len(entry.tokens):  # pragma: no cover - the scan used the same lexer
        raise AssertionError(f"line {entry.line}: token positions disagree with the scan")
    return spans


def unquote(token: str) -> str:
    """A directive argument without its quotes (escapes are kept, as dnspython does)."""
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        return token[1:-1]
    return token


def _fields(tokens: list[str], first: int, line: int) -> tuple[int | None, int | None, int]:
    """Indexes of the TTL, class and type fields, which may come as TTL CLASS or CLASS TTL."""
    ttl_index = class_index = None
    i = first
    while i < len(tokens):
        token = tokens[i]
        if ttl_index is None and "0" <= token[0] <= "9":
            ttl_index = i
        elif class_index is None and (
            token.upper() in _CLASSES or (token[:5].upper() == "CLASS" and token[5:].isdecimal())
        ):
            class_index = i
        else:
            return ttl_index, class_index, i
        i += 1
    raise ZoneSyntaxError(line, "record has no type")


def _type_of(token: str) -> str:
    upper = token.upper()
    return _GENERIC_TYPES.get(upper, upper)


def scan(
    text: str,
    origin: dns.name.Name,
    watched: set[str] | frozenset[str],
    *,
    last_owner: str | None = None,
    zone_origin: dns.name.Name | None = None,
    filename: str = "<zone>",
) -> Scan:
    """Scan ``text`` once, keeping the entries whose owner key is in ``watched``.

    ``origin`` is the initial $ORIGIN.  ``zone_origin`` (default: ``origin``) is the name whose
    SOA entries are reported.  ``last_owner`` is what a blank owner on the first entry inherits
    (default: the origin, as in dnspython); the included-file scan passes the parent's.
    """
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        raise ZoneSyntaxError(
            text[: text.index("\r")].count("\n") + 1, "bare carriage return", filename
        )
    result = Scan(newline="\r\n" if "\r\n" in text else "\n")
    zone_key = name_key(zone_origin if zone_origin is not None else origin)
    origin_key = name_key(origin)
    suffix = "." if origin_key == "." else "." + origin_key
    last_key: str | None = origin_key if last_owner is None else last_owner
    previous: Entry | None = None  # previous RR entry, if it was kept

    def key_of(token: str, line: int) -> str:
        if token == "@":
            return origin_key
        if _PLAIN_NAME.fullmatch(token):
            lower = token.lower()
            return lower if lower[-1] == "." else lower + suffix
        try:
            return name_key(dns.name.from_text(token, origin))
        except dns.exception.DNSException as exc:
            raise ZoneSyntaxError(line, f"bad name {token!r}: {exc}", filename) from None

    depth = 0
    tokens: list[str] = []
    entry_start = entry_line = 0
    explicit = False
    pos = 0
    for number, line in enumerate(text.split("\n"), 1):
        start = pos
        pos += len(line) + 1
        if _NEEDS_LEXER.search(line) is None:
            comment = line.find(";")
            line_tokens = (line if comment < 0 else line[:comment]).split()
            new_depth = depth
        else:
            try:
                spans = lex_line(line)
            except ValueError as exc:
                raise ZoneSyntaxError(
                    number,
                    f"unterminated quoted string or escape at column {exc.args[0] + 1}",
                    filename,
                ) from None
            line_tokens = []
            new_depth = depth
            for s, e in spans:
                token = line[s:e]
                if token == "(":
                    new_depth += 1
                elif token == ")":
                    new_depth -= 1
                    if new_depth < 0:
                        raise ZoneSyntaxError(number, "unbalanced ')'", filename)
                else:
                    line_tokens.append(token)
        if depth == 0:
            if not line_tokens and new_depth == 0:
                continue  # blank or comment-only line
            tokens = line_tokens
            entry_start = start
            entry_line = number
            explicit = line[:1] not in (" ", "\t")
        else:
            tokens += line_tokens
        depth = new_depth
        if depth:
            continue
        if not tokens:
            raise ZoneSyntaxError(entry_line, "empty parentheses", filename)

        # A complete entry: a directive or a resource record.
        if explicit and tokens[0][0] == "$":
            directive = tokens[0].upper()
            if len(tokens) < 2 and directive in ("$ORIGIN", "$INCLUDE", "$TTL"):
                raise ZoneSyntaxError(entry_line, f"{directive} needs an argument", filename)
            if directive == "$ORIGIN":
                try:
                    origin = dns.name.from_text(unquote(tokens[1]), origin)
                except dns.exception.DNSException as exc:
                    raise ZoneSyntaxError(entry_line, f"bad $ORIGIN: {exc}", filename) from None
                origin_key = name_key(origin)
                suffix = "." if origin_key == "." else "." + origin_key
            elif directive == "$TTL":
                if result.first_ttl_directive is None:
                    result.first_ttl_directive = entry_start
            elif directive == "$INCLUDE":
                include_origin = origin
                if len(tokens) > 2:
                    try:
                        include_origin = dns.name.from_text(unquote(tokens[2]), origin)
                    except dns.exception.DNSException as exc:
                        raise ZoneSyntaxError(
                            entry_line, f"bad $INCLUDE origin: {exc}", filename
                        ) from None
                first_line = text[entry_start : pos - 1].split("\n")[0]
                words = [sp for sp in lex_line(first_line) if first_line[sp[0]] not in "()"]
                span = (
                    (entry_start + words[1][0], entry_start + words[1][1])
                    if len(words) > 1
                    else None
                )
                result.includes.append(
                    Include(
                        unquote(tokens[1]),
                        include_origin,
                        last_key,
                        entry_line,
                        span,
                        entry_start,
                        min(pos, len(text)),
                    )
                )
            elif directive == "$GENERATE":
                # The generated names are not followed; dnspython sets the inherited owner to
                # the last one, so entries with a blank owner after this are not attributed.
                result.generate_lines.append(entry_line)
                last_key = None
            continue

        if explicit:
            key: str | None = key_of(tokens[0], entry_line)
            first_field = 1
        else:
            key = last_key
            first_field = 0
        last_key = key
        entry: Entry | None = None
        if key is not None and (key in watched or key == zone_key):
            ttl_index, class_index, type_index = _fields(tokens, first_field, entry_line)
            entry = Entry(
                start=entry_start,
                end=min(pos, len(text)),
                line=entry_line,
                tokens=tokens,
                explicit_owner=explicit,
                owner=key,
                origin=origin,
                ttl_index=ttl_index,
                class_index=class_index,
                type_index=type_index,
                rrtype=_type_of(tokens[type_index]),
            )
            if key in watched:
                result.watched.setdefault(key, []).append(entry)
            if key == zone_key and entry.rrtype == "SOA":
                result.soa.append(entry)
        if previous is not None:
            previous.next = entry
            previous.next_inherits = not explicit
        previous = entry
    if depth:
        raise ZoneSyntaxError(entry_line, "unbalanced '(' (not closed by the end)", filename)
    result.end_origin = origin
    return result
