"""The HTTP service, started the way users start it (``musetag serve`` on a loopback port)."""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from test_package import TAGS, make_package

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

MAX_MB = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_in_pieces(port: int, head: str, piece: int = 4096) -> bytes:
    """Send a request head (``Connection: close``) to 127.0.0.1:``port`` in small pieces, as a loaded machine
    delivers a long one, and return the whole answer."""
    import socket

    data = head.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(data), piece):
            sock.sendall(data[start:start + piece])
            time.sleep(0.01)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def wav_bytes(seconds: float, sr: int = 22050, freq: float = 330.0, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    subtype = "PCM_16" if fmt == "WAV" else None
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


class Server:
    """``musetag serve`` in its own process group, stopped (with its decoders) at the end."""

    def __init__(self, package, log: Path, *args: str) -> None:
        # one package, several (a list: served side by side), or "" for the default pretrained model
        models = [str(p) for p in package] if isinstance(package, (list, tuple)) else [str(package)] if str(package) else []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "musetag", "serve", *models, "--port", str(self.port),
             *args],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.log_path = log

    def wait(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"musetag serve exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"musetag serve did not become ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    pkg = make_package(root / "pkg", frames=64, hop=64, thresholds=[0.5] * len(TAGS))
    from musetag.inference.package import load_package
    from musetag.inference.runners import prepare_onnx

    prepare_onnx(load_package(pkg))  # as `musetag package` and `musetag pull` do: the server finds the graph
    srv = Server(pkg, root / "serve.log", "--max-upload-mb", str(MAX_MB), "--max-concurrency", "1", "--decode-timeout", "60")
    srv.package = pkg
    try:
        srv.wait()
        yield srv
    finally:
        srv.stop()


def test_health_tags_page_and_docs(server):
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "ok" and health["model"] == "simplecnn"
    tags = httpx.get(server.url + "/v1/tags").json()
    assert tags["tags"] == TAGS and tags["task"] == "multilabel" and tags["thresholds"] == [0.5] * 6
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<input id="file" type="file"' in page.text and "/static/app.js" in page.text
    assert httpx.get(server.url + "/static/app.js").status_code == 200
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/tag" in spec["paths"] and "/v1/tags" in spec["paths"]
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200
    # the documentation pages work offline: Swagger UI comes from this server, not from a CDN
    assert "/docs-static/swagger-ui-bundle.js" in docs.text and "cdn." not in docs.text
    bundle = httpx.get(server.url + "/docs-static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text[:2000]
    redoc = httpx.get(server.url + "/redoc")
    assert redoc.status_code == 200 and "/docs-static/redoc.standalone.js" in redoc.text


def _tree_pids(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                pass
    return seen


def _loads_torch(pid: int) -> list[int]:
    """The processes of ``pid``'s tree (server, forkserver, decoders) that have libtorch mapped."""
    found = []
    for p in _tree_pids(pid):
        try:
            if "libtorch" in Path(f"/proc/{p}/maps").read_text():
                found.append(p)
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from Linux /proc")
def test_default_backend_serves_without_torch_and_gives_the_torch_scores(server, tmp_path):
    """`musetag serve` picks its backend as `musetag tag` does (auto: onnxruntime + numpy features for a
    plain model on the CPU): neither the server nor its decoders load torch, and the scores are
    `--backend torch`'s to 1e-5."""
    pytest.importorskip("onnxruntime")
    data = wav_bytes(6.0)
    assert len(_tree_pids(server.proc.pid)) >= 3  # server, forkserver, decoder
    assert _loads_torch(server.proc.pid) == []
    auto = httpx.post(server.url + "/v1/tag", content=data, timeout=60)
    assert auto.status_code == 200, auto.text
    slow = Server(server.package, tmp_path / "torch.log", "--backend", "torch", "--max-concurrency", "1")
    try:
        slow.wait()
        assert _loads_torch(slow.proc.pid)
        ref = httpx.post(slow.url + "/v1/tag", content=data, timeout=60)
    finally:
        slow.stop()
    assert ref.status_code == 200, ref.text
    got, want = auto.json()["scores"], ref.json()["scores"]
    assert list(got) == list(want) == TAGS
    np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=0, atol=1e-5)


def test_upload_multipart_and_raw_body(server):
    data = wav_bytes(6.0)
    r = httpx.post(server.url + "/v1/tag?top_k=3", files={"file": ("tone.wav", data, "audio/wav")}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["filename"] == "tone.wav" and body["duration"] == pytest.approx(6.0, abs=0.01)
    assert list(body["scores"]) == TAGS
    tops = [t["score"] for t in body["top_tags"]]
    assert len(tops) == 3 and tops == sorted(tops, reverse=True)
    raw = httpx.post(server.url + "/v1/tag", content=data, headers={"Content-Type": "audio/wav"}, timeout=60)
    assert raw.status_code == 200
    np.testing.assert_allclose(list(raw.json()["scores"].values()), list(body["scores"].values()), atol=1e-6)


@pytest.mark.shared
def test_real_song(server, shared_data):
    """A real 3.6 MB song is over this server's 2 MB limit: 413 naming the limit and the option."""
    song = sorted(shared_data("jamendo-songs", "mp3").glob("*.mp3"))[0]
    data = song.read_bytes()
    assert len(data) > MAX_MB * 1024 * 1024
    r = httpx.post(server.url + "/v1/tag", files={"file": (song.name, data, "audio/mpeg")}, timeout=60)
    assert r.status_code == 413 and r.json()["error"] == "upload_too_large"
    assert f"{MAX_MB} MB" in r.json()["message"] and "--max-upload-mb" in r.json()["message"]


def test_bad_uploads_get_4xx_json(server):
    url = server.url + "/v1/tag"
    cases = {
        "garbage": httpx.post(url, content=b"\x00\x01garbage" * 100, timeout=60),
        "text": httpx.post(url, files={"file": ("notes.mp3", b"just some words\n", "audio/mpeg")}, timeout=60),
        "truncated": httpx.post(
            url, files={"file": ("cut.mp3", wav_bytes(20.0, fmt="MP3")[:6000], "audio/mpeg")}, timeout=60
        ),
        "empty": httpx.post(url, content=b"", timeout=60),
        "empty_file": httpx.post(url, files={"file": ("e.wav", b"", "audio/wav")}, timeout=60),
        "no_file": httpx.post(
            url,
            content=b'--zz\r\nContent-Disposition: form-data; name="comment"\r\n\r\nhello\r\n--zz--\r\n',
            headers={"Content-Type": "multipart/form-data; boundary=zz"},
            timeout=60,
        ),
        "bad_multipart": httpx.post(
            url, content=b"--zz\r\nnot a part", headers={"Content-Type": "multipart/form-data; boundary=zz"}, timeout=60
        ),
        "bad_top_k": httpx.post(url + "?top_k=many", content=wav_bytes(1.0), timeout=60),
        # two files: one used to be scored silently (the last of the field 'file', else the first of any field)
        "two_files": httpx.post(url, files=[("file", ("a.wav", wav_bytes(1.0), "audio/wav")),
                                            ("file", ("b.wav", wav_bytes(1.0), "audio/wav"))], timeout=60),
        "oversized": httpx.post(url, content=os.urandom(MAX_MB * 1024 * 1024 + 10), timeout=60),
        "oversized_multipart": httpx.post(
            url, files={"file": ("big.wav", os.urandom(MAX_MB * 1024 * 1024 + 10), "audio/wav")}, timeout=60
        ),
    }
    expect = {
        "garbage": (422, "undecodable_audio"), "text": (422, "undecodable_audio"),
        "truncated": (422, "undecodable_audio"), "empty": (400, "empty_upload"), "empty_file": (400, "empty_upload"),
        "no_file": (400, "missing_file"), "bad_multipart": (400, "bad_multipart"), "bad_top_k": (400, "bad_request"),
        "oversized": (413, "upload_too_large"), "oversized_multipart": (413, "upload_too_large"),
        "two_files": (400, "several_files"),
    }
    for name, response in cases.items():
        assert (response.status_code, response.json().get("error")) == expect[name], (name, response.text)
        assert response.json()["message"]
    assert "notes.mp3" in cases["text"].json()["message"] and "text file" in cases["text"].json()["message"]
    assert "cut.mp3" in cases["truncated"].json()["message"] and "truncated" in cases["truncated"].json()["message"]
    assert "top_k" in cases["bad_top_k"].json()["message"]
    assert "2 files ('a.wav', 'b.wav')" in cases["two_files"].json()["message"]
    # and the service is still fine
    assert httpx.get(server.url + "/healthz").json()["idle_decoders"] == 1


def test_concurrent_requests_wait_their_turn(server):
    """Five clients at once on one decoder: they queue (default --queue) and all get their answer, no 503."""
    data = wav_bytes(60.0, sr=16000)  # under the upload limit, long enough to keep the decoder busy
    barrier = threading.Barrier(5)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def call():
        with httpx.Client(timeout=120) as client:
            barrier.wait()
            r = client.post(server.url + "/v1/tag", content=data, headers={"X-Filename": "long.wav"})
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert sorted(r.status_code for r in answers) == [200] * 5, [r.text for r in answers]
    assert all(r.json()["filename"] == "long.wav" for r in answers)
    queue = httpx.get(server.url + "/healthz").json()["queue"]
    assert queue["workers"] == 1 and queue["busy"] == 0 and queue["waiting"] == 0
    assert queue["refused_full"] == 0 and queue["refused_timeout"] == 0
    assert httpx.post(server.url + "/v1/tag", content=wav_bytes(1.0), timeout=60).status_code == 200


def test_decode_timeout_stops_the_work_and_recovers(tmp_path, monkeypatch):
    """In-process app: a decode past the limit is answered 422 and its decoder is replaced."""
    import multiprocessing as mp

    from fastapi.testclient import TestClient

    import musetag.serve.decoders as serve_decoders
    from musetag.serve.app import create_app

    # decoders forked from this (already importing) process: the forkserver start-up that
    # `musetag serve` pays once is covered by the tests above
    monkeypatch.setattr(serve_decoders, "_context", lambda: mp.get_context("fork"))

    pkg = make_package(tmp_path / "pkg")
    app = create_app(pkg, decode_timeout=0.001, max_concurrency=1)
    with TestClient(app) as client:
        r = client.post("/v1/tag", content=wav_bytes(30.0), headers={"X-Filename": "slow.wav"})
        assert r.status_code == 422 and r.json()["error"] == "decode_timeout", r.text
        assert "slow.wav" in r.json()["message"] and "--decode-timeout" in r.json()["message"]
        assert client.get("/healthz").json()["idle_decoders"] == 1
        app.state.settings["decode_timeout"] = 120.0  # the replacement decoder works
        r = client.post("/v1/tag", content=wav_bytes(3.0), headers={"X-Filename": "ok.wav"})
        assert r.status_code == 200 and r.json()["duration"] == pytest.approx(3.0, abs=0.01)
        # a UTF-8 name in the header (as curl sends it) comes back as sent, not as Latin-1 mojibake
        r = client.post("/v1/tag", content=wav_bytes(3.0), headers={"X-Filename": "Séculaire.wav".encode()})
        assert r.status_code == 200 and r.json()["filename"] == "Séculaire.wav", r.json()["filename"]
