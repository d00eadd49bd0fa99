"""The one DNS client: questions to a named server (detection echoes, the doctor, verifying a
local zone) and, below, DNS UPDATE signed with TSIG. Every call has a timeout; a truncated UDP
answer is asked again over TCP. Errors are dnspython's (`dns.exception.DNSException`) or
`OSError`; callers turn them into their own messages.

dnspython's message and query modules cost start-up time, so callers that may not need DNS
import this module lazily.
"""

from __future__ import annotations

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype


def question(
    name: str, rdtype: str, rdclass: str = "IN", recurse: bool = True
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, rdclass)
    if not recurse:
        query.flags &= ~dns.flags.RD
    return query


def query(
    server: str, port: int, name: str, rdtype: str, timeout: float, recurse: bool = True
) -> dns.message.Message:
    """Ask `server` (blocking): UDP, then TCP when the answer was truncated."""
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
