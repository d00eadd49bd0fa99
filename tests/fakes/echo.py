"""A local "what is my IP" echo service, for address-detection tests.

Real echo services answer a GET with the caller's address in one of a few shapes: a bare line
(`203.0.113.7\\n`), an HTML page (checkip.dyndns.org's `Current IP Address: …`), or JSON
(`{"ip": "…"}`). Detection must survive the bad cases too: HTML where text was expected,
several addresses, a private or otherwise useless address, a huge or garbled body, slowness,
and error statuses. The answer is a plain string the test sets, so each case is one assignment:

    echo.answer = "10.0.0.1\\n"                      # a private address
    echo.answer = "203.0.113.7\\n198.51.100.9\\n"      # several addresses
    echo.answer = checkip_html("203.0.113.7")        # HTML
    echo.echo_client = True                          # the caller's own address (or pretend_peer)
    echo.delay, echo.status, echo.huge_body, echo.garbage = ...   # see FakeServer
"""

from __future__ import annotations

import json
import ssl

from ._server import FakeServer, RecordedRequest, Response, method_not_allowed, not_found, text

DEFAULT_ANSWER = "203.0.113.7\n"


def checkip_html(address: str) -> str:
    """The page shape of checkip.dyndns.org."""
    return (
        "<html><head><title>Current IP Check</title></head>"
        f"<body>Current IP Address: {address}</body></html>\r\n"
    )


def json_answer(address: str) -> str:
    """The shape of JSON echo services (`{"ip": "…"}`)."""
    return json.dumps({"ip": address})


class EchoServer(FakeServer):
    """Answers `GET path` with `answer`, or with the caller's address when `echo_client` is set."""

    def __init__(
        self,
        answer: str = DEFAULT_ANSWER,
        *,
        echo_client: bool = False,
        path: str = "/",
        content_type: str = "text/plain; charset=utf-8",
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, ssl_context=ssl_context)
        self.answer = answer
        self.echo_client = echo_client
        self.path = path
        self.content_type = content_type

    @property
    def echo_url(self) -> str:
        return self.url + self.path

    def handle(self, request: RecordedRequest) -> Response:
        if request.path != self.path:
            return not_found()
        if request.method != "GET":
            return method_not_allowed("GET")
        body = self.peer(request) + "\n" if self.echo_client else self.answer
        return text(200, body, content_type=self.content_type)
