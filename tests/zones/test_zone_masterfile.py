"""The position-aware scanner agrees with dnspython's tokenizer and name rules."""

from __future__ import annotations

import dns.exception
import dns.name
import dns.tokenizer
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ddnsagent.errors import ZoneSyntaxError
from ddnsagent.zones.edit.masterfile import lex_line, scan, token_spans, unquote

ORIGIN = dns.name.from_text("example.net.")


def dnspython_tokens(line: str) -> list[str] | None:
    """The tokens dnspython reads from one line, or None when it rejects the line."""
    tokenizer = dns.tokenizer.Tokenizer(line)
    tokens: list[str] = []
    try:
        while True:
            token = tokenizer.get()
            if token.is_eol_or_eof():
                return tokens
            tokens.append(token.value)
    except dns.exception.DNSException:
        return None


def our_tokens(line: str) -> list[str] | None:
    try:
        spans = lex_line(line)
    except ValueError:
        return None
    depth = 0
    tokens = []
    for start, end in spans:
        token = line[start:end]
        if token in "()":
            depth += 1 if token == "(" else -1
            if depth < 0:
                return None  # dnspython rejects a ')' without '('
        else:
            tokens.append(unquote(token) if token.startswith('"') else token)
    return None if depth else tokens


@given(st.text(alphabet='ab1 \t;()"\\\x0c\u00a0', max_size=30))
@example('a"b c"d')
@example('"x;y" ; z')
@example('a\\;b "c\\"d" (e) f')
@example('"unterminated')
@example("trailing\\")
def test_lexer_matches_dnspython(line: str) -> None:
    assert our_tokens(line) == dnspython_tokens(line)


@given(
    st.lists(
        # Any escaped character but CR: the scanner refuses a bare CR outright (safe), where
        # dnspython would take an escaped one.
        st.from_regex(
            r"[A-Za-z0-9_-]{1,8}|\*|[a-z]\\[0-9]{3}[a-z]|\\@x|a\\[^\r\n]b", fullmatch=True
        ),
        min_size=1,
        max_size=3,
    ),
    st.booleans(),
)
def test_owner_keys_match_dnspython_names(labels: list[str], absolute: bool) -> None:
    spelled = ".".join(labels) + ("." if absolute else "")
    try:
        expected = dns.name.from_text(spelled, ORIGIN).canonicalize().to_text()
    except dns.exception.DNSException:
        return
    result = scan(f"{spelled} IN A 192.0.2.1\n", ORIGIN, {expected})
    assert [e.owner for e in result.watched.get(expected, [])] == [expected]


def test_entries_spans_and_inheritance() -> None:
    text = (
        "$ORIGIN example.net.\n"
        "www ( IN\n"
        "  A 192.0.2.1 ) ; two lines\n"
        "   ; comment only\n"
        '\tTXT "a ( b" ; blank owner\n'
        "$ORIGIN lab.example.net.\n"
        "\tAAAA 2001:db8::1\n"  # still www.example.net.: $ORIGIN does not reset the owner
        "www A 192.0.2.2\n"  # www.lab.example.net.
    )
    result = scan(text, ORIGIN, {"www.example.net.", "www.lab.example.net."})
    entries = result.watched["www.example.net."]
    assert [(e.line, e.rrtype, e.rdata) for e in entries] == [
        (2, "A", ["192.0.2.1"]),
        (5, "TXT", ['"a ( b"']),
        (7, "AAAA", ["2001:db8::1"]),
    ]
    first = entries[0]
    assert text[first.start : first.end] == "www ( IN\n  A 192.0.2.1 ) ; two lines\n"
    assert [text[s:e] for s, e in token_spans(text, first)] == ["www", "IN", "A", "192.0.2.1"]
    assert first.next is entries[1] and first.next_inherits
    assert result.watched["www.lab.example.net."][0].line == 8
    assert result.end_origin == dns.name.from_text("lab.example.net.")


def test_include_keeps_the_parent_state() -> None:
    text = '$INCLUDE "hosts.inc" sub ; comment\n\tA 192.0.2.1\n'
    result = scan(text, ORIGIN, {"example.net."})
    (include,) = result.includes
    assert include.filename == "hosts.inc"
    assert include.origin == dns.name.from_text("sub.example.net.")
    assert include.span is not None and text[include.span[0] : include.span[1]] == '"hosts.inc"'
    # The blank owner after $INCLUDE inherits the owner from before it (here: the origin).
    assert result.watched["example.net."][0].rdata == ["192.0.2.1"]


@pytest.mark.parametrize("text", ["$ORIGIN\n", "$INCLUDE\n", "$ORIGIN bad..name\n"])
def test_bad_directives(text: str) -> None:
    with pytest.raises(ZoneSyntaxError):
        scan(text, ORIGIN, set())
