"""The watch stream (``GET /v1/watch``) as an iterator of events that survives reconnects.

Every event carries a revision; all events of one revision arrive together, in order. The
subscription remembers the last revision it delivered completely (the revision before the
one it is in, or a bookmark's) and how many events of the current one it delivered, so after
a dropped connection it asks for everything after the complete one and skips what it already
gave: each event once, in order, also across the nodes of a cluster.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect


@dataclass(frozen=True)
class Event:
    """One change: its revision, its topic (``devices/sw1``) and what happened."""

    revision: int
    topic: str
    event: dict

    @property
    def kind(self) -> Optional[str]:
        return self.event.get("kind")


class Compacted(Exception):
    """The resume point is older than the server's history: re-read state, then watch from
    ``compact_revision``."""

    def __init__(self, compact_revision: int, message: str):
        super().__init__(message)
        self.compact_revision = compact_revision


class Subscription:
    """Events whose topic starts with ``prefix``, after ``from_revision`` (default: from now).

    Iterate it, or call ``next_event(timeout)``. ``close()`` ends it.
    """

    def __init__(
        self,
        bases: list[str],
        prefix: str,
        from_revision: Optional[int],
        token: Optional[str],
        reconnect_for: float = 15.0,
    ):
        self._bases = bases
        self._at = 0
        self._prefix = prefix
        self._token = token
        self._reconnect_for = reconnect_for
        # Resume point: every event up to `_complete` was delivered, and `_delivered` events
        # of revision `_current`.
        self._complete = from_revision
        self._current: Optional[int] = None
        self._delivered = 0
        self._skip = 0
        self._ws = None
        self._connect()

    # The socket URL of base `i`, resuming after the last complete revision.
    def _url(self, i: int) -> str:
        base = self._bases[i]
        scheme, rest = base.split("://", 1)
        ws = {"http": "ws", "https": "wss"}.get(scheme, scheme)
        query = {"prefix": self._prefix}
        if self._complete is not None:
            query["from_revision"] = str(self._complete)
        return f"{ws}://{rest}/v1/watch?{urlencode(query)}"

    def _connect(self) -> None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        deadline = time.monotonic() + self._reconnect_for
        pause = 0.05
        last: Exception = RuntimeError("no server to watch")
        while True:
            for _ in range(len(self._bases)):
                try:
                    # Entered as the context manager it is, left in close().
                    self._ws = connect(
                        self._url(self._at), additional_headers=headers, open_timeout=5
                    ).__enter__()
                    # Events of the revision in progress that were delivered come again.
                    self._skip = self._delivered if self._current is not None else 0
                    return
                except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
                    last = e
                    self._at = (self._at + 1) % len(self._bases)
            if time.monotonic() >= deadline:
                raise ConnectionError(f"cannot watch {self._bases}: {last}") from last
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _take(self, ev: Event) -> Optional[Event]:
        if self._current is not None and ev.revision == self._current:
            if self._skip > 0:
                self._skip -= 1
                return None
            self._delivered += 1
            return ev
        if self._current is not None:
            self._complete = self._current
        self._current, self._delivered, self._skip = ev.revision, 1, 0
        return ev

    def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, or None when ``timeout`` seconds pass without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if left == 0.0:
                return None
            try:
                raw = self._ws.recv(timeout=left)
            except TimeoutError:
                return None
            except ConnectionClosed:
                self._connect()
                continue
            msg: dict[str, Any] = json.loads(raw)
            kind = msg.get("type")
            if kind == "event":
                ev = self._take(Event(msg["revision"], msg["topic"], msg.get("event") or {}))
                if ev is not None:
                    return ev
            elif kind == "bookmark":
                rev = msg["revision"]
                if self._current is None or rev >= self._current:
                    self._complete, self._current, self._delivered = rev, None, 0
            elif kind == "error":
                err = msg.get("error") or {}
                if err.get("code") == "compacted":
                    raise Compacted(err.get("compact_revision", 0), err.get("message", ""))
                # `lagging` and the like: resume where this subscription is.
                self._ws.close()
                self._connect()

    def __iter__(self) -> Iterator[Event]:
        while True:
            ev = self.next_event()
            if ev is not None:
                yield ev

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
