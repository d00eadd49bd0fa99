"""The one check of a DNS name as the services take it: labels of letters, digits and inner
hyphens, at most 63 characters each and 253 in all.

Services differ in two ways, which the callers choose: whether a label may hold `_` (Cloudflare
records and ACME challenge names may; dynamic hostnames may not), and whether upper case is
accepted as written (callers that fold the name to lower case first do not need it).
"""

from __future__ import annotations

import re

MAX_NAME = 253

_LABELS = {
    (False, False): re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)"),
    (True, False): re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)"),
    (False, True): re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE),
    (True, True): re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)", re.IGNORECASE),
}


def is_label(text: str, *, underscore: bool = False, any_case: bool = False) -> bool:
    """One label, e.g. the `myhome` of myhome.duckdns.org."""
    return _LABELS[(underscore, any_case)].fullmatch(text) is not None


def is_name(
    text: str,
    *,
    underscore: bool = False,
    any_case: bool = False,
    wildcard: bool = False,
    min_labels: int = 2,
) -> bool:
    """A dotted name of at least `min_labels` labels, without the final dot; with `wildcard`, a
    leading `*.` is allowed (and not counted as a label)."""
    if len(text) > MAX_NAME:
        return False
    labels = text.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    return len(labels) >= min_labels and all(
        is_label(x, underscore=underscore, any_case=any_case) for x in labels
    )
