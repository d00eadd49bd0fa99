"""Local, strict emulators of the providers' HTTP APIs, for the test-suite.

Each one listens on loopback only, on an ephemeral port, optionally over TLS, records every
request, answers as the provider documents (errors included), and has knobs to misbehave.
"""

from ._server import (
    HUGE_BODY,
    MAX_DELAY,
    FakeServer,
    RecordedRequest,
    Response,
    parse_basic_auth,
)
from .dyndns2 import Dyndns2Server, Host, agent_problem, is_fqdn
from .echo import EchoServer, checkip_html, json_answer
from .mydns import OK_SENTENCE, REALM, MyDNSServer, Notification

__all__ = [
    "HUGE_BODY",
    "MAX_DELAY",
    "OK_SENTENCE",
    "REALM",
    "Dyndns2Server",
    "EchoServer",
    "FakeServer",
    "Host",
    "MyDNSServer",
    "Notification",
    "RecordedRequest",
    "Response",
    "agent_problem",
    "checkip_html",
    "is_fqdn",
    "json_answer",
    "parse_basic_auth",
]
