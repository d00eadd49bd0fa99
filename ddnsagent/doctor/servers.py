"""The DNS servers the doctor asks (zone server, resolver, public resolvers) and one question
to one of them, answered as plain values the judging functions read."""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.rcode
import dns.rdatatype

from ddnsagent import dnsclient
from ddnsagent.address import split_host_port


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    role: str  # "zone server", "resolver" or "public resolver"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 53 else f"{host}:{self.port}"


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """`1.1.1.1`, `127.0.0.1:5353`, `::1`, `[::1]:5353`; the host must be an IP address."""
    return split_host_port(text, default_port)


@dataclass(frozen=True)
class Answer:
    rcode: str  # "NOERROR", "NXDOMAIN", "REFUSED", …; "" when nothing came back
    records: tuple[str, ...] = ()  # "A 192.0.2.1", "MX 10 mail.example.net."
    error: str | None = None  # why nothing came back

    @property
    def exists(self) -> bool:
        return self.rcode == "NOERROR"

    def shown(self) -> str:
        return "; ".join(self.records)


class Asker:
    """Sends single DNS questions; a server that once did not answer is not asked again, so a
    dead server costs one timeout, not one per question."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.silent: dict[tuple[str, int], str] = {}

    def ask(self, server: Server, name: str, rdtype: str) -> Answer:
        key = (server.host, server.port)
        if key in self.silent:
            return Answer("", error=self.silent[key])
        try:
            reply = dnsclient.query(server.host, server.port, name, rdtype, self.timeout)
        except dns.exception.Timeout:
            self.silent[key] = f"no answer within {self.timeout:g}s"
            return Answer("", error=self.silent[key])
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            self.silent[key] = f"no answer: {exc or 'not an address to ask'}"
            return Answer("", error=self.silent[key])
        # every record of the answer section, CNAMEs on the way included: a wildcard CNAME
        # makes the probe exist as much as a wildcard A does
        records = [
            f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}"
            for rrset in reply.answer
            for rdata in rrset
        ]
        return Answer(dns.rcode.to_text(reply.rcode()), tuple(sorted(records)))
