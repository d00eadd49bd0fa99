"""A resolver that echoes the querier's address, like OpenDNS's myip.opendns.com.

It answers only the configured name and type; anything else gets NXDOMAIN or an empty answer,
so a client that asks the wrong question fails here as it would against the real service.
"""

from __future__ import annotations

import socket
import threading
from typing import Self

import dns.message
import dns.rcode
import dns.rrset


class DnsEchoServer:
    def __init__(self, qname: str = "myip.opendns.com.", host: str = "127.0.0.1") -> None:
        self.qname = qname if qname.endswith(".") else qname + "."
        self.host = host
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.answers: list[str] | None = None  # None: echo the client's address
        self.rcode = dns.rcode.NOERROR
        self.silent = False  # never answer: the client must time out
        self.queries: list[tuple[str, str, str]] = []  # (qname, rdtype, client address)
        self._sock = socket.socket(self.family, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def source(self) -> str:
        where = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"dns:{self.qname.rstrip('.')}@{where}:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                continue
            question = query.question[0]
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((question.name.to_text(), rdtype, peer[0]))
            if self.silent:
                continue
            reply = dns.message.make_response(query)
            if question.name.to_text().lower() != self.qname.lower():
                reply.set_rcode(dns.rcode.NXDOMAIN)
            else:
                reply.set_rcode(self.rcode)
                wanted = "A" if self.family == socket.AF_INET else "AAAA"
                if rdtype == wanted and self.rcode == dns.rcode.NOERROR:
                    values = self.answers if self.answers is not None else [peer[0]]
                    if values:
                        reply.answer.append(
                            dns.rrset.from_text(question.name, 0, "IN", rdtype, *values)
                        )
            self._sock.sendto(reply.to_wire(), peer)
