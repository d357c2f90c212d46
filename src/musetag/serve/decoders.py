"""The service's decoder processes: killable workers that decode an upload and compute its
features, so a decode that runs past its timeout really stops (its process is replaced) and a
decoder that crashes is replaced too. :class:`DecoderPool` hands an idle one to each request. A pool
whose model runs on onnxruntime computes its features with the numpy engine, so its processes never
import torch (``engine="numpy"``: the same features, see ``tests/test_onnx_path.py``).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import threading

from musetag.errors import ConfigError, MusetagError

log = logging.getLogger("musetag.serve.app")

ENGINES = ("torch", "numpy")


def _decoder_main(conn, features: dict, segment: dict, engine: str = "torch") -> None:
    from musetag._allocator import trim_heap, tune_allocator
    from musetag.inference.frontend import FrontEnd
    from musetag.inference.tagger import error_message
    from musetag.workers import die_with_parent

    die_with_parent()
    tune_allocator(policy="server")
    if engine == "torch":
        import torch

        torch.set_num_threads(1)

    front = FrontEnd(features, segment, engine=engine)
    conn.send(("ready", None, None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        name, data = msg
        try:
            segs, duration = front.segments(data)
            conn.send(("ok", segs, (duration, front.last_warnings, list(front.last_starts))))
        except MusetagError as exc:
            text = str(exc)
            generic = f"<{len(data)} bytes of uploaded audio>"
            if name != "upload" and generic in text:
                text = text.replace(generic, f"{name} ({len(data)} bytes)")
            conn.send(("error", text, None))
        except Exception as exc:  # noqa: BLE001 - reported to the client as an undecodable upload
            conn.send(("error", error_message(name, exc), None))
        msg = data = segs = None  # noqa: F841 - drop the references before trimming
        trim_heap()  # the song's samples and features go back to the system, not kept for the next one


class DecodeTimeout(Exception):
    pass


class DecoderCrashed(Exception):
    pass


def _context():
    """forkserver where available: decoders (and replacements for killed ones) fork from a clean
    server process that has imported the heavy modules once; never from the threaded app process."""
    if "forkserver" in mp.get_all_start_methods():
        return mp.get_context("forkserver")
    return mp.get_context("spawn")


class _Decoder:
    def __init__(self, features: dict, segment: dict, engine: str = "torch") -> None:
        ctx = _context()
        if ctx.get_start_method() == "forkserver":  # what the forkserver imports once (torch for its engine only)
            heavy = ["torch"] if engine == "torch" else []
            ctx.set_forkserver_preload([*heavy, "musetag.features", "musetag.audio", "musetag.inference.tagger"])
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_decoder_main, args=(child, features, segment, engine), daemon=True)
        self.process.start()
        child.close()
        self.ready = False

    def wait_ready(self, timeout: float = 300.0) -> None:
        if self.ready:
            return
        if not self.conn.poll(timeout):
            raise RuntimeError("decoder process did not start")
        self.conn.recv()
        self.ready = True

    def run(self, name: str, data: bytes, timeout: float):
        self.wait_ready()
        try:
            self.conn.send((name, data))
            if not self.conn.poll(timeout):
                raise DecodeTimeout
            return self.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            raise DecoderCrashed from exc

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.join(5)
        except Exception:  # noqa: BLE001
            pass
        self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except Exception:  # noqa: BLE001
            pass
        self.process.join(2)
        if self.process.is_alive():
            self.kill()


class DecoderPool:
    """``size`` decoder processes computing features with ``engine`` (``torch`` or ``numpy``);
    ``try_acquire`` never waits (the service's wait queue, :mod:`musetag.serve.queue`, holds one slot
    per decoder in front of it)."""

    def __init__(self, features: dict, segment: dict, size: int, engine: str = "torch") -> None:
        if engine not in ENGINES:
            raise ConfigError(f"decoder engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.features, self.segment, self.size, self.engine = features, segment, size, engine
        self._lock = threading.Lock()
        self._idle: list[_Decoder] = [_Decoder(features, segment, engine) for _ in range(size)]
        self._all = list(self._idle)

    def wait_ready(self) -> None:
        for dec in list(self._all):
            dec.wait_ready()

    def try_acquire(self) -> _Decoder | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def release(self, dec: _Decoder, *, broken: bool = False) -> None:
        if broken:
            dec.kill()
            fresh = _Decoder(self.features, self.segment, self.engine)
            with self._lock:
                self._all = [d for d in self._all if d is not dec] + [fresh]
            dec = fresh
        with self._lock:
            self._idle.append(dec)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        for dec in self._all:
            dec.close()
