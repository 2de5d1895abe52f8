"""uvicorn's HTTP protocol with a header timeout: a socket that opens and never finishes its request
headers (slowloris) is closed, as is one that starts a second request on a keep-alive connection and
stalls. uvicorn itself only times out idle keep-alive sockets.

Built on httptools' parser where it is installed (uvicorn[standard]: several times less per request and
per streamed chunk than the pure-Python h11), else on h11.
"""

from __future__ import annotations

import asyncio
import importlib.util

from uvicorn.protocols.http.h11_impl import H11Protocol


class _HeaderClock:
    """The timer both protocols share; each says when it is waiting for request headers."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def _awaiting_headers(self) -> bool:
        raise NotImplementedError

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        if self._awaiting_headers() and not self.transport.is_closing():
            self.transport.close()


class H11HeaderTimeout(_HeaderClock, H11Protocol):
    def _awaiting_headers(self) -> bool:
        import h11

        return self.conn.their_state is h11.IDLE  # no complete request head since the timer started

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._awaiting_headers():
            self._arm()  # the first byte of a next request starts its header clock
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._disarm()  # idle now: uvicorn's keep-alive timeout takes over until the next byte
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def _httptools_protocol():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsHeaderTimeout(_HeaderClock, HttpToolsProtocol):
        _waiting = True  # for the head of a request

        def _awaiting_headers(self) -> bool:
            return self._waiting

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self._waiting:
                self._arm()
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._waiting = False
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self._disarm()
            self._waiting = True
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HttpToolsHeaderTimeout


def with_header_timeout(seconds: float, parser: str = "auto") -> type:
    """The protocol class for uvicorn's `http=`: httptools where installed (or asked), else h11."""
    use_httptools = parser == "httptools" or (parser == "auto" and importlib.util.find_spec("httptools"))
    base = _httptools_protocol() if use_httptools else H11HeaderTimeout
    return type(f"{base.__name__}{int(seconds * 1000)}ms", (base,), {"header_timeout_s": seconds})
