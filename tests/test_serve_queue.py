"""The service's bounded wait queue (musetag.serve.queue): unit behaviour on an event loop, then real
concurrent clients against a real ``musetag serve`` process on 127.0.0.1."""
from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from musetag.errors import ConfigError
from musetag.serve.queue import QueueFull, QueueTimeout, WaitQueue

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


# -- the queue itself ---------------------------------------------------------------------------
def test_waiters_are_served_first_come_first_served():
    async def main():
        queue = WaitQueue(workers=1, max_waiting=3, timeout=5)
        order: list[int] = []
        gate = asyncio.Event()

        async def job(i: int):
            async with queue.slot():
                order.append(i)
                if i == 0:
                    await gate.wait()  # hold the only slot until all others wait

        tasks = [asyncio.create_task(job(0))]
        await asyncio.sleep(0)
        for i in (1, 2, 3):
            tasks.append(asyncio.create_task(job(i)))
            await asyncio.sleep(0)
        assert queue.active == 1 and queue.waiting == 3
        with pytest.raises(QueueFull) as full:  # the fourth waiter does not fit
            await queue.acquire()
        assert full.value.retry_after >= 1
        gate.set()
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2, 3]
        assert queue.active == 0 and queue.waiting == 0 and queue.served == 4 and queue.refused_full == 1

    asyncio.run(main())


def test_a_wait_past_the_timeout_is_refused_and_frees_its_place():
    async def main():
        queue = WaitQueue(workers=1, max_waiting=1, timeout=0.05)
        await queue.acquire()  # the only slot, never released during the wait
        with pytest.raises(QueueTimeout) as late:
            await queue.acquire()
        assert late.value.retry_after >= 1 and "0.05 s" in str(late.value)
        assert queue.waiting == 0 and queue.refused_timeout == 1
        queue.release_slot()
        assert queue.active == 0
        await asyncio.wait_for(queue.acquire(), 1)  # free again: taken at once
        assert queue.active == 1

    asyncio.run(main())


def test_a_cancelled_waiter_gives_its_turn_to_the_next():
    async def main():
        queue = WaitQueue(workers=1, max_waiting=2, timeout=5)
        await queue.acquire()
        gone = asyncio.create_task(queue.acquire())
        await asyncio.sleep(0)
        nxt = asyncio.create_task(queue.acquire())
        await asyncio.sleep(0)
        gone.cancel()  # the client went away while waiting
        await asyncio.sleep(0)
        queue.release_slot()
        await asyncio.wait_for(nxt, 1)
        assert gone.cancelled() and queue.active == 1 and queue.waiting == 0

    asyncio.run(main())


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="--queue must be"):
        WaitQueue(1, -1, 1)
    with pytest.raises(ConfigError, match="--queue-timeout must be positive"):
        WaitQueue(1, 0, 0)


# -- real clients against a real server -------------------------------------------------------------
def _concurrent_posts(url: str, data: bytes, n: int) -> list[httpx.Response]:
    barrier = threading.Barrier(n)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def call():
        with httpx.Client(timeout=180) as client:
            barrier.wait()
            r = client.post(url + "/v1/tag", content=data, headers={"X-Filename": "tone.wav"})
        with lock:
            answers.append(r)

    in_threads(call, n, 240)
    return answers


def in_threads(target, n: int, timeout: float) -> None:
    """``target`` run by ``n`` threads at once; returns when all have finished (or ``timeout`` passed)."""
    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from test_package import TAGS, make_package

    root = tmp_path_factory.mktemp("queue")
    return make_package(root / "pkg", frames=64, hop=64, thresholds=[0.5] * len(TAGS))


def test_eight_clients_are_all_answered_with_the_default_queue(package, tmp_path):
    from test_serve import Server, wav_bytes

    server = Server(package, tmp_path / "serve.log")  # the defaults: 2 decoders and the default queue
    try:
        server.wait()
        answers = _concurrent_posts(server.url, wav_bytes(40.0, sr=16000), 8)
        assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
        queue = httpx.get(server.url + "/healthz").json()["queue"]
        assert queue["workers"] == 2 and queue["served"] == 8 and queue["refused_full"] == 0
    finally:
        server.stop()


def test_a_full_queue_answers_503_with_retry_after(package, tmp_path):
    from test_serve import Server, wav_bytes

    server = Server(package, tmp_path / "serve.log", "--max-concurrency", "1", "--queue", "1")
    try:
        server.wait()
        answers = _concurrent_posts(server.url, wav_bytes(120.0, sr=16000), 6)
        codes = sorted(r.status_code for r in answers)
        assert len(codes) == 6 and set(codes) == {200, 503}, codes
        assert codes.count(200) >= 2  # the one decoding and the one waiting
        for r in answers:
            if r.status_code == 503:
                assert r.json()["error"] == "busy" and "--queue" in r.json()["message"]
                assert int(r.headers["Retry-After"]) >= 1
        assert httpx.get(server.url + "/healthz").json()["queue"]["refused_full"] == codes.count(503)
    finally:
        server.stop()


def test_a_request_waiting_past_the_queue_timeout_gets_503(package, monkeypatch):
    """In-process app: the one decoder is held, so the waiting request runs out of --queue-timeout."""
    import multiprocessing as mp

    from fastapi.testclient import TestClient

    import musetag.serve.decoders as serve_decoders
    from musetag.serve.app import create_app
    from test_serve import wav_bytes

    monkeypatch.setattr(serve_decoders, "_context", lambda: mp.get_context("fork"))
    app = create_app(package, max_concurrency=1, queue=4, queue_timeout=0.2)
    with TestClient(app) as client:
        state = app.state.serve
        queue = state.queue_for(state.model_pool[state.ids[0]])
        queue.active = 1  # as if a long decode held the only decoder
        r = client.post("/v1/tag", content=wav_bytes(1.0))
        assert r.status_code == 503 and r.json()["error"] == "queue_timeout", r.text
        assert "--queue-timeout" in r.json()["message"] and int(r.headers["Retry-After"]) >= 1
        queue.active = 0
        assert client.post("/v1/tag", content=wav_bytes(1.0)).status_code == 200


def test_a_waiter_whose_client_left_is_not_served():
    """Starlette does not cancel a handler whose client disconnects: the slot is granted, then ``gone`` says the
    client has left, so the slot passes on and nothing runs for it."""
    from musetag.serve.queue import ClientGone

    async def main():
        queue = WaitQueue(workers=1, max_waiting=3, timeout=5)
        ran: list[str] = []

        async def left():
            return True

        async def here():
            return False

        with pytest.raises(ClientGone):
            async with queue.slot(gone=left):
                ran.append("left")
        async with queue.slot(gone=here):
            ran.append("here")
        assert ran == ["here"] and queue.abandoned == 1 and queue.served == 1 and queue.active == 0

    asyncio.run(main())


def test_requests_given_up_while_waiting_are_not_decoded(package, tmp_path):
    """Three clients give up (0.2 s timeouts) behind a long upload: they were all decoded anyway, and a live
    request waited behind that dead work. Now they are dropped when their turn comes."""
    import time

    from test_serve import Server, wav_bytes

    server = Server(package, tmp_path / "serve.log", "--max-concurrency", "1", "--queue", "5", "--max-upload-mb", "120")
    try:
        server.wait()
        long = threading.Thread(target=lambda: httpx.post(server.url + "/v1/tag", content=wav_bytes(3000.0, sr=16000),
                                                          headers={"X-Filename": "long.wav"}, timeout=300))
        long.start()
        deadline = time.monotonic() + 120
        while httpx.get(server.url + "/healthz").json()["queue"]["busy"] < 1:  # the long one is decoding (~2 s)
            assert time.monotonic() < deadline
            time.sleep(0.02)
        gave_up: list[bool] = []

        def impatient():
            try:
                httpx.post(server.url + "/v1/tag", content=wav_bytes(2.0), timeout=0.2)
                gave_up.append(False)
            except httpx.TimeoutException:
                gave_up.append(True)

        in_threads(impatient, 3, 60)
        queue = httpx.get(server.url + "/healthz").json()["queue"]
        assert gave_up == [True] * 3 and queue["busy"] == 1 and queue["waiting"] == 3  # they left while it decoded
        long.join(300)
        health = httpx.get(server.url + "/healthz").json()
        assert health["queue"]["abandoned"] == 3 and health["queue"]["served"] == 1, health["queue"]
        assert httpx.post(server.url + "/v1/tag", content=wav_bytes(2.0), timeout=60).status_code == 200
    finally:
        server.stop()
