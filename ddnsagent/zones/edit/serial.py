"""SOA serial policies.

Secondaries compare serials with RFC 1982 serial-number arithmetic: a new serial is "greater" when
``0 < (new - old) mod 2**32 < 2**31``.  Every policy here returns a value that is greater in that
sense.  This is checked, and ``ZoneEditError`` raised if a policy would ever jump by 2**31 or more;
today's ``YYYYMMDD00`` and Unix times are below 2**31, so a jump that large cannot happen yet.

Wraparound: a result past 4294967295 is reduced modulo 2**32, so 4294967295 + 1 becomes 0, which
RFC 1982 counts as greater.  Policies that use ``max(...)`` then keep counting from there; a date
or Unix-time serial only comes back once the counter has caught up numerically.
"""

from __future__ import annotations

import datetime
from typing import Literal, get_args

from ddnsagent.errors import ZoneEditError

SerialPolicy = Literal["date", "increment", "unixtime"]
SERIAL_POLICIES: tuple[str, ...] = get_args(SerialPolicy)
SERIAL_MODULUS = 2**32
_HALF = 2**31


def next_serial(old: int, policy: SerialPolicy, *, today: datetime.date, now: int) -> int:
    """The serial to write after ``old`` under ``policy``.

    - ``"date"``: ``YYYYMMDDnn``; on the same day ``nn`` counts up, and when ``old`` is already
      at or past today's ``YYYYMMDD99`` the serial simply becomes ``old + 1``.  Both cases are
      ``max(YYYYMMDD00, old + 1)``.
    - ``"increment"``: ``old + 1``.
    - ``"unixtime"``: ``max(now, old + 1)``, so two edits in one second still increase.
    """
    if not 0 <= old < SERIAL_MODULUS:
        raise ZoneEditError(f"SOA serial {old} is outside 0..{SERIAL_MODULUS - 1}")
    if policy == "date":
        candidate = max(today.year * 1_000_000 + today.month * 10_000 + today.day * 100, old + 1)
    elif policy == "increment":
        candidate = old + 1
    elif policy == "unixtime":
        candidate = max(now, old + 1)
    else:
        raise ValueError(f"unknown serial policy {policy!r}; use one of {SERIAL_POLICIES}")
    new = candidate % SERIAL_MODULUS
    if not 0 < (new - old) % SERIAL_MODULUS < _HALF:
        raise ZoneEditError(
            f"serial policy {policy!r} would move the SOA serial from {old} to {new}, a jump of "
            "2**31 or more that secondaries read as a decrease; set the serial by hand"
        )
    return new
