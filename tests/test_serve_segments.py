"""`POST /v1/tag?segments=true` and several served models (in-process app, forked decoders)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from test_package import TAGS, make_package, tiny_model

pytest.importorskip("fastapi")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

SR = 22050


def clip(seconds: float) -> bytes:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * SR)) / SR
    audio = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_segments_and_two_models(tmp_path, monkeypatch):
    import multiprocessing as mp

    from fastapi.testclient import TestClient

    import musetag.serve.decoders as serve_decoders
    from musetag.serve.app import create_app
    from musetag.inference import Tagger

    monkeypatch.setattr(serve_decoders, "_context", lambda: mp.get_context("fork"))
    first = make_package(tmp_path / "moods", frames=64, hop=64)
    other_tags = ["rock", "pop", "jazz"]
    second = make_package(tmp_path / "genres.zip", frames=128, hop=64, aggregation="max", tags=other_tags,
                          model=tiny_model(3, seed=2))
    data = clip(5.0)
    app = create_app([first, second], max_concurrency=1)
    with TestClient(app) as client:
        models = client.get("/v1/models").json()
        assert models["default"] == "moods" and [m["id"] for m in models["models"]] == ["moods", "genres"]
        assert [m["n_tags"] for m in models["models"]] == [6, 3]
        assert client.get("/v1/tags", params={"model": "genres"}).json()["tags"] == other_tags
        health = client.get("/healthz").json()
        assert health["models"] == ["moods", "genres"]
        # two front ends, two decoder pools: every decoder idle is counted (it said 1 of 2), each model's queue shown
        assert health["decoders"] == health["idle_decoders"] == 2
        assert set(health["queues"]) == {"moods", "genres"} and health["queues"]["moods"] == health["queue"]

        plain = client.post("/v1/tag", content=data, headers={"X-Filename": "c.wav"}).json()
        assert plain["model"] == "moods" and "segments" not in plain

        for mid, pkg, tags, how in (("moods", first, TAGS, "mean"), ("genres", second, other_tags, "max")):
            r = client.post("/v1/tag", params={"segments": "true", "model": mid, "top_k": 2}, content=data,
                            headers={"X-Filename": "c.wav"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model"] == mid and body["tags"] == tags
            segs = body["segments"]
            assert len(segs) == body["n_segments"]
            start = np.array([s["start"] for s in segs])
            end = np.array([s["end"] for s in segs])
            scores = np.array([s["scores"] for s in segs])
            assert start[0] == 0 and end[-1] == pytest.approx(body["duration"], abs=1e-3)
            assert np.all(start[1:] <= end[:-1])  # no gaps
            file_scores = np.array([body["scores"][t] for t in tags])
            agg = scores.mean(axis=0) if how == "mean" else scores.max(axis=0)
            np.testing.assert_allclose(agg, file_scores, atol=2e-6)
            # the same windows and scores as the Python API
            api = Tagger.from_package(pkg, segments=True).tag(data)
            np.testing.assert_allclose(start, api.segments.start, atol=1e-3)
            np.testing.assert_allclose(scores, api.segments.scores, atol=1e-5)

        gone = client.post("/v1/tag", params={"model": "nope"}, content=data)
        assert gone.status_code == 404 and gone.json()["error"] == "unknown_model"
        assert "moods, genres" in gone.json()["message"]
        assert client.get("/v1/tags", params={"model": "nope"}).status_code == 404
