"""Access control (musetag.serve.auth): ``--api-key`` / ``MUSETAG_API_KEY`` guard every /v1/* request
of a real ``musetag serve`` process; /healthz and the page stay open; a non-loopback host without a key
is refused at start-up unless --allow-anonymous."""
from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from musetag.errors import ConfigError
from musetag.serve.auth import bearer_matches, check_bind, is_loopback, resolve_api_key

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "s3cret-Key_123"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server whose key comes from the environment (MUSETAG_API_KEY)."""
    import os

    from test_package import TAGS, make_package
    from test_serve import Server

    root = tmp_path_factory.mktemp("auth")
    pkg = make_package(root / "pkg", frames=64, hop=64, thresholds=[0.5] * len(TAGS))
    before = os.environ.get("MUSETAG_API_KEY")
    os.environ["MUSETAG_API_KEY"] = KEY  # the started process inherits it
    try:
        server = Server(pkg, root / "serve.log", "--max-concurrency", "1")
    finally:
        if before is None:
            del os.environ["MUSETAG_API_KEY"]
        else:
            os.environ["MUSETAG_API_KEY"] = before
    try:
        server.wait()
        yield server
    finally:
        server.stop()


def test_v1_needs_the_key_and_healthz_stays_open(keyed):
    from test_serve import wav_bytes

    health = httpx.get(keyed.url + "/healthz")
    assert health.status_code == 200 and health.json()["auth"] is True
    assert httpx.get(keyed.url + "/").status_code == 200  # the page, which then asks for the key
    assert httpx.get(keyed.url + "/static/app.js").status_code == 200
    data = wav_bytes(2.0)
    for headers, what in (({}, "no Authorization header"), ({"Authorization": "Bearer wrong"}, "a wrong API key"),
                          ({"Authorization": f"Basic {KEY}"}, "without the Bearer scheme"),
                          ({"Authorization": KEY}, "without the Bearer scheme"),
                          ({"Authorization": f"Bearer {KEY}x"}, "a wrong API key")):
        for r in (httpx.get(keyed.url + "/v1/tags", headers=headers),
                  httpx.get(keyed.url + "/v1/models", headers=headers),
                  httpx.post(keyed.url + "/v1/tag", content=data, headers=headers, timeout=60)):
            assert r.status_code == 401, (headers, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert r.json()["error"] == "unauthorized" and what in r.json()["message"]
            assert "Authorization: Bearer KEY" in r.json()["message"]
            assert r.text.startswith('{"error":"unauthorized","message":')  # compact, as the other error bodies
    good = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(keyed.url + "/v1/tags", headers=good).status_code == 200
    r = httpx.post(keyed.url + "/v1/tag", content=data, headers={**good, "X-Filename": "t.wav"}, timeout=60)
    assert r.status_code == 200 and r.json()["filename"] == "t.wav"
    assert httpx.post(keyed.url + "/v1/tag", content=data, headers={"authorization": f"bearer {KEY}"},
                      timeout=60).status_code == 200  # header and scheme names are case-insensitive
    # a long request head in pieces reaches the app (h11's 16 KiB default reset it), with or without the key
    from test_serve import send_in_pieces

    for auth, status in ((f"Authorization: Bearer {KEY}\r\n", b"200"), ("", b"401")):
        answer = send_in_pieces(keyed.port, f"GET /v1/tags?q={'y' * 60_000} HTTP/1.1\r\nHost: x\r\n{auth}"
                                      "Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:300]


def test_an_open_server_says_so(tmp_path, monkeypatch):
    import multiprocessing as mp

    from fastapi.testclient import TestClient

    import musetag.serve.decoders as serve_decoders
    from musetag.serve.app import create_app
    from test_package import make_package

    monkeypatch.setattr(serve_decoders, "_context", lambda: mp.get_context("fork"))
    monkeypatch.setenv("MUSETAG_API_KEY", KEY)  # create_app does not read the environment: serve() does
    app = create_app(make_package(tmp_path / "pkg"), max_concurrency=1)
    with TestClient(app) as client:
        assert client.get("/healthz").json()["auth"] is False
        assert client.get("/v1/tags").status_code == 200


def test_non_loopback_host_without_a_key_is_refused_at_start_up(tmp_path):
    for host in ("127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
        check_bind(host, None, False)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert not is_loopback(host), host
        with pytest.raises(ConfigError, match="--api-key KEY.*--allow-anonymous"):
            check_bind(host, None, False)
        check_bind(host, KEY, False)
        check_bind(host, None, True)
    # the command refuses before loading anything or binding (the model does not even exist)
    env = {k: v for k, v in __import__("os").environ.items() if k != "MUSETAG_API_KEY"}
    out = subprocess.run([sys.executable, "-m", "musetag", "serve", str(tmp_path / "nope"), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "refusing to listen on 0.0.0.0 without an API key" in out.stderr, out.stderr


def test_a_port_in_use_is_one_line_before_anything_loads(tmp_path):
    """uvicorn said "[Errno 98] address already in use" after the models had loaded and exited 3, which in musetag
    means "some files failed"; serve and label now say so first, exit 2."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        for argv in (["serve", str(tmp_path / "nope")], ["label", str(tmp_path / "music"), "--tags", "a,b", "--out",
                                                           str(tmp_path / "proj")]):
            (tmp_path / "music").mkdir(exist_ok=True)
            out = subprocess.run([sys.executable, "-m", "musetag", *argv, "--port", str(port)], capture_output=True,
                                 text=True, timeout=120)
            assert out.returncode == 2, out.stderr
            assert f"port {port} on 127.0.0.1 is in use" in out.stderr and "--port" in out.stderr, out.stderr
            assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_key_checks():
    assert resolve_api_key(None, {}) is None
    assert resolve_api_key(None, {"MUSETAG_API_KEY": KEY}) == KEY
    assert resolve_api_key("given", {"MUSETAG_API_KEY": KEY}) == "given"
    for bad in ("", "  ", "two words", "tab\tkey"):
        with pytest.raises(ConfigError, match="API key"):
            resolve_api_key(bad, {})
    assert bearer_matches(f"Bearer {KEY}", KEY) and bearer_matches(f"bearer  {KEY}", KEY)
    assert not bearer_matches(None, KEY) and not bearer_matches(KEY, KEY) and not bearer_matches("Bearer ", KEY)
    assert not bearer_matches("Bearer é", KEY)  # non-ASCII compared as bytes, no TypeError


def test_a_non_ascii_key_is_refused_at_start_up(tmp_path):
    """`--api-key clé` was accepted, and then matched only clients that send Latin-1 bytes (browsers), not UTF-8 ones
    (curl from a UTF-8 terminal); `ключ` no client could send at all."""
    for bad in ("clé", "key\x7f", "ключ"):
        with pytest.raises(ConfigError, match="printable ASCII"):
            resolve_api_key(bad, {})
        with pytest.raises(ConfigError, match="printable ASCII"):
            resolve_api_key(None, {"MUSETAG_API_KEY": bad})
    env = {k: v for k, v in __import__("os").environ.items() if k != "MUSETAG_API_KEY"}
    for argv in (["serve", str(tmp_path / "nope")], ["label", str(tmp_path), "--tags", "a", "--out", str(tmp_path / "p")]):
        out = subprocess.run([sys.executable, "-m", "musetag", *argv, "--api-key", "clé"], capture_output=True,
                             text=True, timeout=120, env=env)
        assert out.returncode == 2 and "the API key must be printable ASCII" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
