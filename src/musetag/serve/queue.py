"""A bounded waiting queue in front of a fixed number of workers (the service's decoders).

A request takes one of ``workers`` slots at once when one is free; otherwise it waits its turn
(first come, first served) among at most ``max_waiting`` others. It is refused only when the queue
is already full (:class:`QueueFull`) or when it has waited ``timeout`` seconds without a slot
(:class:`QueueTimeout`); both carry ``retry_after``, an estimate in whole seconds of when a slot frees
up (the queue ahead times the recent mean time a slot is held, over the workers). Not tied to the
tagging routes: any route set of this server stack can put its work behind one.

Runs on one asyncio event loop (uvicorn's): no locks needed.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from musetag.errors import ConfigError


class QueueRefused(Exception):
    """The request gets no slot; answer 503 with ``Retry-After: retry_after``."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(QueueRefused):
    pass


class QueueTimeout(QueueRefused):
    pass


class ClientGone(Exception):
    """The client closed its connection while the request waited: its slot passes on, nothing is done for it."""


class WaitQueue:
    """``workers`` slots and a first-come-first-served queue of at most ``max_waiting`` requests,
    each waiting at most ``timeout`` seconds. Use ``async with queue.slot(): ...``."""

    def __init__(self, workers: int, max_waiting: int, timeout: float) -> None:
        if workers < 1:
            raise ConfigError(f"a wait queue needs at least one worker, got {workers}")
        if max_waiting < 0:
            raise ConfigError(f"--queue must be 0 or more (requests waiting for a decoder), got {max_waiting}")
        if not timeout > 0:
            raise ConfigError(f"--queue-timeout must be positive (seconds a request may wait), got {timeout}")
        self.workers, self.max_waiting, self.timeout = int(workers), int(max_waiting), float(timeout)
        self.active = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._mean_hold = 1.0  # seconds a slot is held, moving average (the first estimate: 1 s)
        self.served = self.refused_full = self.refused_timeout = self.abandoned = 0

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def retry_after(self) -> int:
        """Whole seconds until a slot is likely free for a request arriving now (at least 1)."""
        ahead = self.waiting + max(self.active - self.workers + 1, 1)
        return max(1, math.ceil(ahead * self._mean_hold / self.workers))

    async def acquire(self) -> None:
        if self.active < self.workers and not self.waiting:
            self.active += 1
            return
        if self.waiting >= self.max_waiting:
            self.refused_full += 1
            raise QueueFull(f"all {self.workers} workers are busy and {self.waiting} requests are waiting "
                            f"(the queue holds {self.max_waiting})", self.retry_after())
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self.timeout)
        except asyncio.TimeoutError:
            if turn.done() and not turn.cancelled():
                return  # the slot was handed over just as the wait ran out: keep it
            turn.cancel()
            self.refused_timeout += 1
            raise QueueTimeout(f"no worker became free within {self.timeout:g} s", self.retry_after()) from None
        except asyncio.CancelledError:  # the client went away while waiting
            if turn.done() and not turn.cancelled():
                self.release_slot()
            else:
                turn.cancel()
            raise
        finally:
            try:
                self._waiters.remove(turn)
            except ValueError:
                pass

    def release_slot(self, held_s: float | None = None) -> None:
        """Give the slot to the first live waiter, else free it."""
        if held_s is not None:
            self._mean_hold = 0.8 * self._mean_hold + 0.2 * held_s
            self.served += 1
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes on: active stays the same
                return
        self.active -= 1

    @asynccontextmanager
    async def slot(self, gone: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[None]:
        """One slot for the block. ``gone``: asked once the slot is granted; when it says the client has left
        (Starlette does not cancel a handler whose client disconnects), the slot passes on at once and
        :class:`ClientGone` is raised instead of running the block."""
        await self.acquire()
        if gone is not None and await gone():
            self.abandoned += 1
            self.release_slot()
            raise ClientGone()
        started = time.monotonic()
        try:
            yield
        finally:
            self.release_slot(time.monotonic() - started)

    def describe(self) -> dict[str, float | int]:
        return {"workers": self.workers, "busy": self.active, "waiting": self.waiting, "max_waiting": self.max_waiting,
                "timeout_s": self.timeout, "served": self.served, "refused_full": self.refused_full,
                "refused_timeout": self.refused_timeout, "abandoned": self.abandoned}
