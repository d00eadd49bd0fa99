"""Check 5, `relay`: does the submission relay accept a TCP connection and greet? A relay that
refuses our address often just stops answering it, or says why in its greeting."""

from __future__ import annotations

import contextlib
import socket

from ddnsagent.config import Config
from ddnsagent.doctor.finding import Finding
from ddnsagent.doctor.options import Options
from ddnsagent.relay.logparse import relay_address


def check_relay(cfg: Config, options: Options) -> list[Finding]:
    written = options.relay_host or (cfg.relay.host if cfg.relay is not None else None)
    if written is None:
        return [Finding("relay", "skip", "relay", "no [relay] section; nothing to connect to")]
    host, port = relay_address(written, options.relay_port)
    return [probe_relay(host, port, options.connect_timeout)]


def probe_relay(host: str, port: int, timeout: float) -> Finding:
    """Connect, read the greeting, say QUIT. Sends no mail and no credentials."""
    subject = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        return Finding(
            "relay",
            "fail",
            subject,
            f"cannot resolve {host}: {exc.strerror}",
            "the local resolver must also answer for outside names (recursion or forwarders)",
        )
    except TimeoutError:
        return Finding(
            "relay",
            "fail",
            subject,
            f"connection timed out after {timeout:g}s; a relay that refuses an address often "
            "just stops answering it",
            "if the mail log shows `too much mail from <your address>`, stop the bounces (the "
            "checks above), then get a new address (`ddnsagent reconnect`)",
        )
    except OSError as exc:
        return Finding(
            "relay",
            "fail",
            subject,
            f"cannot connect: {exc.strerror or exc}",
            "check [relay] host and the port (submission is 587)",
        )
    with sock:
        try:
            greeting = sock.recv(512).decode("ascii", "replace").splitlines()
        except TimeoutError:
            greeting = None
        except OSError as exc:
            return Finding("relay", "warn", subject, f"connected, then: {exc.strerror or exc}")
        first = greeting[0].strip() if greeting else ""
        with contextlib.suppress(OSError):
            sock.sendall(b"QUIT\r\n")
    if greeting is None:
        return Finding("relay", "warn", subject, f"connected, but no greeting within {timeout:g}s")
    if first.startswith("220"):
        return Finding("relay", "pass", subject, f"answers: {first}")
    return Finding(
        "relay",
        "fail",
        subject,
        f"connected, but it greets with {first or 'nothing'!r}",
        "if it names your address or too much mail, stop the bounces and get a new address "
        "(`ddnsagent reconnect`)",
    )
