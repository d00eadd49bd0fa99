"""A submission relay that refuses every login, for the SASL case of the relay log test.

aiosmtpd announces AUTH (PLAIN, LOGIN) without TLS here and answers every attempt with its
`535 5.7.8 Authentication credentials invalid` (aiosmtpd's smtp.py, `auth_require_tls=False`),
which is what a relay says to a wrong password. Run inside the lab's isp namespace:
`python -m tests.e2e.sasl_relay ADDRESS PORT SECONDS`; it serves for SECONDS, then exits.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult


class _Handler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Ok"


def _refuse(*_args: Any) -> AuthResult:
    return AuthResult(success=False, handled=False)


async def _serve(address: str, port: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            _Handler(),
            authenticator=_refuse,
            auth_require_tls=False,
            hostname="relay.isp.example",
        ),
        address,
        port,
    )
    async with server:
        await asyncio.sleep(seconds)


def main(argv: list[str]) -> int:
    address, port, seconds = argv[0], int(argv[1]), float(argv[2])
    asyncio.run(_serve(address, port, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
