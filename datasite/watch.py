"""Waking clients that wait for a code request to change state (long polling).

A notebook waiting for its run used to poll the site every few hundred milliseconds.
Instead it asks ``GET /requests/{id}/next?state=...`` and the site answers as soon as
the request leaves that state. The reviewer and the runner call :meth:`StateWatch.changed`
after each commit that moves a request; the waiting route re-reads the request from the
database, so a change committed by another server process is still seen within
:data:`RECHECK_SECONDS`.

>>> import asyncio
>>> async def demo() -> bool:
...     watch = StateWatch()
...     ticket = watch.ticket(7)
...     asyncio.get_running_loop().call_later(0.01, watch.changed, 7)
...     return await watch.wait(ticket, timeout=5)
>>> asyncio.run(demo())
True
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

#: Longest a waiter sleeps before reading the database again.
RECHECK_SECONDS = 1.0


@dataclass(eq=False)
class Ticket:
    """One waiter's registration; register before reading, so no change is missed."""

    request_id: int
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)


class StateWatch:
    """Thread-safe: ``changed`` is called from worker threads, waiters live on the loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, set[Ticket]] = {}

    def ticket(self, request_id: int) -> Ticket:
        ticket = Ticket(request_id, asyncio.get_running_loop())
        with self._lock:
            self._waiting.setdefault(request_id, set()).add(ticket)
        return ticket

    def changed(self, request_id: int) -> None:
        """Wake everyone waiting on ``request_id`` (call after the commit)."""
        with self._lock:
            tickets = self._waiting.pop(request_id, set())
        for ticket in tickets:
            try:
                ticket.loop.call_soon_threadsafe(ticket.event.set)
            except RuntimeError:  # the waiter's loop has closed: nobody to wake
                pass

    async def wait(self, ticket: Ticket, timeout: float) -> bool:
        """Sleep until ``ticket`` is woken (True) or ``timeout`` passes (False)."""
        try:
            await asyncio.wait_for(ticket.event.wait(), min(timeout, RECHECK_SECONDS))
            return True
        except TimeoutError:
            return False
        finally:
            self.discard(ticket)

    def discard(self, ticket: Ticket) -> None:
        with self._lock:
            waiting = self._waiting.get(ticket.request_id)
            if waiting is not None:
                waiting.discard(ticket)
                if not waiting:
                    del self._waiting[ticket.request_id]
