"""uvicorn's h11 protocol with a header timeout: a socket that opens and never finishes its request
headers (slowloris) is closed, as is one that starts a second request on a keep-alive connection and
stalls. uvicorn itself only times out idle keep-alive sockets."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def with_header_timeout(seconds: float) -> type[H11Protocol]:
    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            self._disarm()  # idle now: uvicorn's keep-alive timeout takes over until the next byte
            super().on_response_complete()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self.conn.their_state is h11.IDLE:
                self._arm()  # the first byte of a next request starts its header clock
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            # IDLE: the peer has not completed a request's headers since the timer was armed
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol
