"""Worker processes for per-file work (decoding, features, tagging), shared by every stage.

:func:`ordered_map` runs a function over files in forked worker processes and yields the results
in input order, holding only a bounded number in flight. Processes, not threads: the decoders' Python
glue (PyAV hands over one MP3 frame at a time) holds the GIL often enough that two threads reach
only ~1.35x one on two cores, against ~1.7x for two processes (``bench/features.py``). Fork, where
the platform has it, so workers inherit the imported modules (torch takes seconds to import) and
start in milliseconds; elsewhere spawn.

A worker that dies (a native decoder crashing on a damaged file) takes the files in flight with
it: they are retried in a fresh pool, the one that was running first alone, so only a file that
crashes on its own is reported (:data:`CRASHED`), and the others still get their results.

Ctrl-C reaches the whole process group: workers ignore it (each printed a KeyboardInterrupt traceback and
died mid-reply, which could leave the pool's shutdown waiting forever); the parent, interrupted, stops them.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["CRASHED", "die_with_parent", "forks", "ordered_map"]

#: the outcome of an item whose worker process died while handling it alone
CRASHED = object()


def die_with_parent() -> None:
    """Linux: have the kernel end this worker when its parent dies (a ``kill -9`` of ``musetag tag``
    would otherwise leave idle workers behind). Elsewhere a no-op."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def forks() -> bool:
    """Whether workers start by fork here (they then inherit the parent's objects, nothing pickled)."""
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


def _context():
    import multiprocessing as mp

    return mp.get_context("fork" if forks() else "spawn")


def _start_worker(initializer, *initargs) -> None:
    """A worker's start: Ctrl-C is the parent's to handle, then the caller's initializer."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def _stop(pool) -> None:
    """End ``pool`` now (the run was interrupted or abandoned): nothing more is started, its workers are
    terminated rather than waited for."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.join(5)


def ordered_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    in_worker: Callable[[Any], bool] = lambda item: True,
    ordered: bool = True,
) -> Iterator[tuple[Any, Any, bool]]:
    """``(item, outcome, ran_in_worker)`` for each item, in input order (``ordered=False``: as they finish, so one
    long item does not hold the others' results back while the workers run out of work).

    Items for which ``in_worker(item)`` is true run as ``fn(item)`` in one of ``workers`` processes
    (``initializer(*initargs)`` runs once in each); ``outcome`` is what ``fn`` returned, the exception
    it raised, or :data:`CRASHED`. Other items (e.g. file objects, which do not cross processes) are
    yielded with ``outcome=None`` and ``ran_in_worker=False`` for the caller to handle itself, in
    their place. At most ``2 * workers + 1`` items are in flight, so results never pile up in memory.
    """
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = _context()

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker, initargs=(initializer, *initargs))

    source = iter(items)
    pool = new_pool()
    window: deque = deque()  # (item, future or None, attempts), in input order
    backlog: deque = deque()  # (item, attempts) to submit again before new items
    ahead = 2 * workers + 1
    end = object()

    def submit(item, attempts: int = 0) -> None:
        if not in_worker(item):
            window.append((item, None, attempts))
            return
        try:
            future = pool.submit(fn, item)
        except BrokenProcessPool as exc:  # a worker died since the last result: this item never ran, and is
            future = Future()  # sent again, with the others in flight, when the loop reaches the break
            future.set_exception(exc)
        window.append((item, future, attempts))

    def refill() -> None:
        while len(window) < ahead:
            if backlog:
                submit(*backlog.popleft())
                continue
            nxt = next(source, end)
            if nxt is end:
                return
            submit(nxt)

    def take():
        """The next entry to hand back: the first in input order, or (unordered) the first one done."""
        if ordered:
            return window.popleft()
        while True:
            for entry in window:
                if entry[1] is None or entry[1].done():
                    window.remove(entry)
                    return entry
            wait([f for _, f, _ in window], return_when=FIRST_COMPLETED)

    try:
        refill()
        while window:
            item, future, attempts = take()
            if future is None:
                yield item, None, False
                refill()
                continue
            try:
                outcome = future.result()
            except BrokenProcessPool:
                # every item in flight died with the worker: start a fresh pool, run this one alone
                # first, then the others; only an item that crashes alone is to blame
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
                backlog.extendleft(reversed([(i, a) for i, _, a in window]))
                window.clear()
                if attempts == 0:
                    submit(item, 1)
                    continue
                outcome = CRASHED
            except Exception as exc:  # noqa: BLE001 - the caller turns it into the item's error
                outcome = exc
            refill()
            yield item, outcome, True
    except BaseException:  # Ctrl-C, or the caller stopped early (GeneratorExit): no waiting for work in flight
        _stop(pool)
        raise
    pool.shutdown(wait=True, cancel_futures=True)


def is_path(item: Any) -> bool:
    """Whether ``item`` names a file (it can be handed to another process)."""
    return isinstance(item, (str, os.PathLike))
