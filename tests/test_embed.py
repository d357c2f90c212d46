"""`musetag embed` and `musetag similar` on generated audio with a small random model package."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from musetag.cli import main
from musetag.errors import ConfigError

SR = 16000


def _features():
    from musetag.features import get_preset

    cfg = get_preset("fusion64").to_dict()
    cfg.update(sample_rate=SR, mono=True, n_fft=512, hop_length=256)
    return cfg


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    import torch

    from musetag.models import create_model
    from musetag.inference.package import save_package

    torch.manual_seed(0)
    model = create_model("simplecnn", n_classes=3)
    out = tmp_path_factory.mktemp("pkg") / "model"
    return save_package(
        out, model_name="simplecnn", model_args=model.musetag_config["args"], state_dict=model.state_dict(),
        features=_features(), tags=["happy", "sad", "calm"], task="multilabel",
        segment={"frames": 32, "hop": 16, "aggregation": "mean"},
    )


def _tone(freq, seconds=1.5, noise=0.0, seed=0):
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise * rng.normal(size=t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    (root / "low").mkdir()
    (root / "high").mkdir()
    for i in range(3):
        sf.write(root / "low" / f"low{i}.wav", _tone(110 * (1 + 0.02 * i), seed=i), SR)
        sf.write(root / "high" / f"high{i}.flac", _tone(3000 * (1 + 0.02 * i), noise=0.05, seed=i), SR)
    (root / "high" / "broken.mp3").write_bytes(b"this is not audio")
    return root


def test_embedding_is_the_mean_of_the_tagger_segments_features(package, music):
    import torch

    from musetag.inference.embed import load_embedder

    embedder = load_embedder(package)
    path = music / "low" / "low0.wav"
    vec = embedder.embed(path)
    assert vec.shape == (embedder.model.num_features,) and vec.dtype == np.float32
    segments, _ = embedder.front.segments(path)
    assert len(segments) > 1  # 1.5 s at 62.5 frames/s in windows of 32 hop 16
    with torch.no_grad():
        expected = embedder.model.forward_features(torch.from_numpy(segments)).mean(0).numpy()
    np.testing.assert_allclose(vec, expected, rtol=1e-5, atol=1e-6)


def test_streamed_long_files_give_the_whole_file_embedding(package, tmp_path):
    from musetag.inference.embed import load_embedder

    path = tmp_path / "long.wav"
    sf.write(path, _tone(440, seconds=9.0, noise=0.05, seed=7), SR)
    whole = load_embedder(package).tag(path)
    streamed = load_embedder(package, stream_seconds=2.0, block_seconds=1.3).tag(path)
    assert streamed.n_segments == whole.n_segments > 10
    np.testing.assert_allclose(streamed.scores_array, whole.scores_array, atol=1e-5)


def test_worker_processes_give_the_same_embeddings(package, music, tmp_path):
    """With --workers the (forked) workers run the network: they must return the same mean of
    forward_features vectors, never the tagger's probabilities."""
    from musetag.inference.embed import load_embedder
    from musetag.inference.embeddings_file import read_embeddings

    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"emb{workers}.npy"
        assert main(["embed", str(package), str(music), "-r", "--out", str(out), "--workers", str(workers),
                     "--no-progress"]) == 3  # broken.mp3 fails
        runs[workers] = read_embeddings(out)
    assert runs[2].paths == runs[0].paths and len(runs[0]) == 6
    np.testing.assert_allclose(runs[2].vectors, runs[0].vectors, atol=1e-6)
    embedder = load_embedder(package)
    first = runs[0].paths[0]
    np.testing.assert_allclose(runs[2].vectors[0], embedder.embed(first), atol=1e-6)


def test_embed_command_with_the_onnx_backend(package, music, tmp_path):
    """`musetag export` then `musetag embed --backend onnx`: the graph's embedding output gives the
    PyTorch embeddings; without --backend embed runs torch, the numbers `musetag prepare` stores."""
    pytest.importorskip("onnxruntime")
    from musetag.inference.embed import load_embedder
    from musetag.inference.embeddings_file import read_embeddings

    assert main(["export", str(package), "--format", "onnx"]) == 0  # MODEL/model.onnx, found by embed
    tables = {}
    for backend in ("torch", "onnx", None):
        out = tmp_path / f"{backend}.npy"
        chosen = ["--backend", backend] if backend else []
        assert main(["embed", str(package), str(music), "-r", "--out", str(out), "--workers", "0", "--no-progress",
                     *chosen]) == 3  # broken.mp3 fails
        tables[backend] = read_embeddings(out)
    assert tables["onnx"].paths == tables["torch"].paths == tables[None].paths and len(tables["torch"]) == 6
    assert tables["onnx"].meta["dim"] == tables["torch"].meta["dim"] == tables["torch"].vectors.shape[1]
    assert tables[None].meta["dim"] == tables["torch"].meta["dim"]
    # fusion64's numpy and torch FFTs round differently in the quietest bins: 1e-4 on these vectors (relative where
    # they are large: 1.1e-4 on a value of 2.25 with another CPU's floating-point kernels)
    np.testing.assert_allclose(tables["onnx"].vectors, tables["torch"].vectors, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(tables[None].vectors, tables["torch"].vectors)
    auto = load_embedder(package, backend="auto")
    assert auto.backend == "onnx" and auto.model is None and auto.dim == tables["torch"].vectors.shape[1]


@pytest.mark.parametrize("ext", [".npy", ".parquet"])
def test_embed_command_records_errors_and_resumes(package, music, tmp_path, ext, capsys):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    from musetag.inference.embeddings_file import read_embeddings, side_files

    out = tmp_path / f"emb{ext}"
    args = ["embed", str(package), str(music), "-r", "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(args) == 3  # broken.mp3 fails: some failed
    table = read_embeddings(out)
    assert len(table) == 6 and table.paths == sorted(table.paths)
    assert table.meta["model"] == "simplecnn" and table.meta["dim"] == table.vectors.shape[1]
    errors = side_files(out)["errors"].read_text()
    assert "broken.mp3" in errors
    assert "6 embedded" in capsys.readouterr().err
    # a second run does nothing new and leaves the same file; the error kept from the first still counts
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "0 embedded" in err and "7 already done, 1 of them failed earlier" in err
    again = read_embeddings(out)
    assert again.paths == table.paths and np.array_equal(again.vectors, table.vectors)


def test_an_interrupted_run_resumes_from_its_partial_chunks(package, music, tmp_path):
    from musetag.inference.embed import load_embedder
    from musetag.inference.embeddings_file import read_embeddings, side_files
    from musetag.tag.embed_files import embed_files

    out = tmp_path / "emb.npy"
    embedder = load_embedder(package)
    calls = {"n": 0}
    original = embedder.score_segments

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # a kill after three files
        return original(*a, **k)

    embedder.score_segments = dying
    with pytest.raises(KeyboardInterrupt):
        embed_files(embedder, [music], out, recursive=True, flush_every=1, progress=False)
    assert not out.exists() and len(list(side_files(out)["partial"].glob("chunk-*.npz"))) == 3
    embedder.score_segments = original
    report = embed_files(embedder, [music], out, recursive=True, progress=False)
    assert report.skipped == 4  # three saved tracks and the broken file (listed first, sorted)
    assert report.ok == 3
    assert len(read_embeddings(out)) == 6 and not side_files(out)["partial"].exists()


def test_sharded_embedding_merges_to_the_single_run(package, music, tmp_path):
    from musetag.inference.embeddings_file import read_embeddings
    from musetag.tag.embed_files import embed_files

    embed_files(package, [music], tmp_path / "all.npy", recursive=True, progress=False)
    parts = []
    for i in (1, 2, 3):
        part = tmp_path / f"part{i}.npy"
        embed_files(package, [music], part, recursive=True, shard=f"{i}/3", progress=False)
        parts.append(part)
    sizes = [len(read_embeddings(p)) for p in parts]
    assert sum(sizes) == 6
    assert main(["merge", *map(str, parts), "--out", str(tmp_path / "merged.npy")]) == 0
    merged, single = read_embeddings(tmp_path / "merged.npy"), read_embeddings(tmp_path / "all.npy")
    assert merged.paths == single.paths
    np.testing.assert_allclose(merged.vectors, single.vectors, rtol=1e-5, atol=1e-6)
    assert "broken.mp3" in (tmp_path / "merged.errors.csv").read_text()


def test_similar_command_finds_tracks_that_sound_alike(package, music, tmp_path, capsys, monkeypatch):
    out = tmp_path / "emb.npy"
    assert main(["embed", str(package), str(music), "-r", "--out", str(out), "--workers", "0", "--no-progress"]) == 3  # broken.mp3 fails
    capsys.readouterr()
    query = tmp_path / "query.wav"
    sf.write(query, _tone(112), SR)  # a new low tone: its neighbours are the low tones
    assert main(["similar", str(out), str(query), "--k", "3", "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [m["rank"] for m in found["matches"]] == [1, 2, 3]
    assert all("/low/" in m["path"] for m in found["matches"])
    # a track of the index as the query: itself excluded
    indexed = str(music / "high" / "high0.flac")
    assert main(["similar", str(out), indexed, "--k", "2", "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [m["path"] for m in found["matches"]] and indexed not in [m["path"] for m in found["matches"]]
    assert all("/high/" in m["path"] for m in found["matches"])
    # the same track spelled relative to the current folder is recognised (not embedded again)
    monkeypatch.chdir(music)
    assert main(["similar", str(out), "high/high0.flac", "--k", "2", "--format", "json"]) == 0
    assert indexed not in [m["path"] for m in json.loads(capsys.readouterr().out)["matches"]]
    # the index saved with --save-index loads the same
    assert main(["similar", str(out), str(query), "--k", "3", "--save-index", str(tmp_path / "idx")]) == 0
    table_out = capsys.readouterr().out
    assert "low" in table_out
    assert main(["similar", str(tmp_path / "idx"), str(query), "--k", "3", "--format", "json"]) == 0
    assert all("/low/" in m["path"] for m in json.loads(capsys.readouterr().out)["matches"])


def test_mood_search_from_tag_scores(package, music, tmp_path, capsys):
    scores = tmp_path / "tags.csv"
    assert main(["tag", str(package), str(music), "-r", "--out", str(scores), "--workers", "0", "--no-progress"]) == 3  # broken.mp3 fails
    capsys.readouterr()
    assert main(["similar", str(scores), "--tags", "happy,-sad", "--k", "2", "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)["matches"]
    assert len(found) == 2
    query = music / "low" / "low1.wav"
    assert main(["similar", str(scores), str(query), "--mood", "--k", "2", "--model", str(package),
                 "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)["matches"]
    assert str(query) not in [m["path"] for m in found]
    with pytest.raises(ConfigError):
        from musetag.tag.similarity import MoodIndex

        MoodIndex.from_file(scores).search_tags("joyful")


@pytest.mark.parametrize("ext", [".csv", ".jsonl"])
def test_sharded_tagging_merges_to_the_single_run(package, music, tmp_path, ext):
    from musetag.tag.writers import read_results

    base = ["tag", str(package), str(music), "-r", "--workers", "0", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / f"all{ext}")]) == 3  # broken.mp3 fails
    parts = [tmp_path / f"part{i}{ext}" for i in (1, 2)]
    for i, part in enumerate(parts, 1):
        assert main([*base, "--shard", f"{i}/2", "--out", str(part)]) in (0, 3)  # 3 for the shard with broken.mp3
    sizes = [len(read_results(p)) for p in parts]
    assert sum(sizes) == 7 and all(sizes)  # six tones and the broken file, each in exactly one shard
    assert main(["merge", *map(str, parts), "--out", str(tmp_path / f"merged{ext}")]) == 0
    single = sorted(read_results(tmp_path / f"all{ext}"), key=lambda r: r["path"])
    merged = read_results(tmp_path / f"merged{ext}")
    assert [r["path"] for r in merged] == [r["path"] for r in single]
    assert merged == single


def test_torchrun_ranks_write_their_own_parts(package, music, tmp_path, monkeypatch):
    from musetag.tag.writers import read_results

    for rank in (0, 1):  # what torchrun --nproc_per_node=2 sets in each process
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main(["tag", str(package), str(music), "-r", "--workers", "0", "--no-progress",
                     "--out", str(tmp_path / "tags.csv")]) in (0, 3)  # 3: the rank with broken.mp3
    parts = sorted(tmp_path.glob("tags.rank-*-of-2.csv"))
    assert [p.name for p in parts] == ["tags.rank-0-of-2.csv", "tags.rank-1-of-2.csv"]
    assert sum(len(read_results(p)) for p in parts) == 7


@pytest.mark.slow
def test_http_service_answers_similar_uploads(package, music, tmp_path):
    import io

    from fastapi.testclient import TestClient

    from musetag.tag.embed_files import embed_files
    from musetag.serve.app import create_app

    embed_files(package, [music], tmp_path / "emb.npy", recursive=True, progress=False)
    buf = io.BytesIO()
    sf.write(buf, _tone(108), SR, format="WAV")
    with TestClient(create_app(package, similar_index=tmp_path / "emb.npy", max_concurrency=1)) as client:
        r = client.post("/v1/similar?k=3", files={"file": ("query.wav", buf.getvalue(), "audio/wav")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["filename"] == "query.wav" and body["index"]["tracks"] == 6
        assert [m["rank"] for m in body["matches"]] == [1, 2, 3]
        assert all("/low/" in m["path"] for m in body["matches"])
        r = client.post("/v1/similar", content=b"not audio at all", headers={"X-Filename": "junk.mp3"})
        assert r.status_code == 422 and r.json()["error"] == "undecodable_audio"


def test_http_similar_without_an_index_says_how_to_enable_it(package):
    from fastapi.testclient import TestClient

    from musetag.serve.app import create_app

    client = TestClient(create_app(package, max_concurrency=1))  # no lifespan: no decoders needed for this
    r = client.post("/v1/similar", content=b"RIFF")
    assert r.status_code == 404 and r.json()["error"] == "no_index" and "--similar-index" in r.json()["message"]
    with pytest.raises(ConfigError, match="another model"):
        from musetag.inference.embeddings_file import write_embeddings

        bad = package.parent / "other.npy"
        write_embeddings(bad, ["x.wav"], np.ones((1, 64), np.float32), {"model_sha256": "0" * 64})
        create_app(package, similar_index=bad)


def test_http_mood_search_over_a_tag_score_table(package, tmp_path):
    """GET /v1/moods ranks the tracks of a `musetag tag` score table by mood, as MoodIndex does."""
    from fastapi.testclient import TestClient

    from musetag.serve.app import create_app

    table = tmp_path / "scores.csv"
    table.write_text(
        "path,status,mood/theme---happy,mood/theme---sad,mood/theme---calm\n"
        "cheerful.mp3,ok,0.9,0.1,0.3\n"
        "gloomy.mp3,ok,0.1,0.8,0.6\n"
        "serene.mp3,ok,0.4,0.2,0.9\n"
        "broken.mp3,error: not audio,,,\n"
    )
    client = TestClient(create_app(package, mood_index=table, max_concurrency=1))
    r = client.get("/v1/moods", params={"tags": "happy", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tracks"] == 3 and body["tags"] == 3  # the failed row is not in the index
    assert [m["path"] for m in body["matches"]] == ["cheerful.mp3", "serene.mp3", "gloomy.mp3"]
    # calm but not sad: z-scores calm (-1.22, 0, 1.22) minus sad (-0.86, 1.40, -0.54): serene first
    r = client.get("/v1/moods", params={"tags": "calm,-sad", "k": 1})
    assert [m["path"] for m in r.json()["matches"]] == ["serene.mp3"] and r.json()["query"] == {"calm": 1.0, "sad": -1.0}
    r = client.get("/v1/moods", params={"tags": "angry"})
    assert r.status_code == 400 and r.json()["error"] == "unknown_tag" and "happy" in r.json()["message"]
    r = client.get("/v1/moods", params={"tags": "happy:lots"})
    assert r.status_code == 400 and r.json()["error"] == "bad_query"
    assert r.json()["message"].startswith("tags='happy:lots': weight 'lots'"), r.json()  # the query, not --tags
    for query, says in ((",", "tags is empty: give tags such as tags=happy,energetic"),
                        ("happy:0", "(tags=happy:0); give at least one non-zero weight, for example tags=happy")):
        r = client.get("/v1/moods", params={"tags": query})
        assert r.status_code == 400 and says in r.json()["message"] and "--tags" not in r.json()["message"], r.json()
    r = client.get("/v1/moods")  # tags is required: the service's 4xx JSON error names it
    assert r.status_code == 400 and "tags" in r.json()["message"]

    bare = TestClient(create_app(package, max_concurrency=1))
    r = bare.get("/v1/moods", params={"tags": "happy"})
    assert r.status_code == 404 and "--mood-index" in r.json()["message"]


def test_serve_refuses_a_missing_mood_index_before_listening(package, tmp_path, capsys):
    assert main(["serve", str(package), "--mood-index", str(tmp_path / "nope.csv"), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "nope.csv" in err and "musetag tag" in err


def test_an_embed_shard_with_no_file_has_nothing_to_do_and_succeeds(package, tmp_path, capsys):
    """As `musetag tag` (tests/test_tag_cli.py): a --shard part that gets none of the files exited 4
    ("nothing embedded"), so an array job marked that task failed; its empty output still merges."""
    from musetag.tag.shard import collect_shard_files

    folder = tmp_path / "clips"
    folder.mkdir()
    sf.write(folder / "one.wav", _tone(220), SR)
    empty, full = sorted((1, 2), key=lambda i: bool(collect_shard_files([str(folder)], f"{i}/2")))
    parts = [tmp_path / f"part{i}.npy" for i in (empty, full)]
    for i, part in zip((empty, full), parts):
        capsys.readouterr()
        assert main(["embed", str(package), str(folder), "--shard", f"{i}/2", "--out", str(part), "--workers", "0",
                     "--no-progress"]) == 0
    assert main(["embed", str(package), str(folder), "--shard", f"{empty}/2", "--out", str(parts[0]),
                 "--workers", "0", "--no-progress"]) == 0
    assert f"none of the 1 audio file(s) falls in shard {empty}/2" in capsys.readouterr().err
    assert main(["merge", *map(str, parts), "--out", str(tmp_path / "merged.npy")]) == 0
    (tmp_path / "none").mkdir()  # a folder without audio is still "nothing embedded", exit 4
    assert main(["embed", str(package), str(tmp_path / "none"), "--shard", "1/2", "--out",
                 str(tmp_path / "n.npy"), "--workers", "0", "--no-progress"]) == 4


@pytest.mark.parametrize("command,ext", [("tag", ".csv"), ("tag", ".jsonl"), ("tag", ".json"), ("embed", ".npy")])
def test_a_run_resumed_from_another_folder_skips_what_is_done(package, music, tmp_path, monkeypatch, command, ext):
    """Relative paths in an output are relative to the folder of the run that started it: resumed from another
    folder, the files done are still recognised (no second row), and the new rows name their files absolute."""
    import shutil

    from musetag.inference.embeddings_file import read_embeddings
    from musetag.tag.writers import read_results

    root = tmp_path / "home"
    shutil.copytree(music / "low", root / "music" / "low")
    out = tmp_path / f"out{ext}"
    base = [command, str(package), "--out", str(out), "--workers", "0", "--no-progress"]
    monkeypatch.chdir(root)
    assert main([*base, "music/low/low0.wav"]) == 0  # started from home/, relative
    monkeypatch.chdir(root / "music")
    assert main([*base, "low/low0.wav", "low/low1.wav"]) == 0  # resumed from home/music/
    if command == "tag":
        paths = [r["path"] for r in read_results(out, ["happy", "sad", "calm"])]
    else:
        paths = read_embeddings(out).paths
    assert sorted(paths) == sorted(["music/low/low0.wav", str(root / "music" / "low" / "low1.wav")])
    monkeypatch.chdir(tmp_path)  # a third run from elsewhere again: nothing new
    assert main([*base, str(root / "music" / "low")]) == 0
    if command == "tag":
        assert len(read_results(out, ["happy", "sad", "calm"])) == 3
    else:
        assert len(read_embeddings(out).paths) == 3


def test_a_merge_of_parts_made_in_different_folders_claims_no_folder(package, music, tmp_path, monkeypatch):
    from musetag.tag.run_record import read_run_record

    parts = []
    for i, where in enumerate([music, music / "low"]):
        monkeypatch.chdir(where)
        parts.append(tmp_path / f"part{i}.csv")
        assert main(["tag", str(package), str(music / "low" / f"low{i}.wav"), "--out", str(parts[-1]),
                     "--workers", "0", "--no-progress"]) == 0
        assert read_run_record(parts[-1])["cwd"] == str(where)
    assert main(["merge", *map(str, parts), "--out", str(tmp_path / "all.csv")]) == 0
    assert "cwd" not in read_run_record(tmp_path / "all.csv")
    assert main(["merge", str(parts[0]), "--out", str(tmp_path / "one.csv")]) == 0
    assert read_run_record(tmp_path / "one.csv")["cwd"] == str(music)


@pytest.mark.parametrize("command,ext", [("tag", ".csv"), ("embed", ".npy")])
def test_a_moved_project_folder_resumes_without_a_second_row(package, music, tmp_path, monkeypatch, command, ext):
    """A project folder moved (or copied) after its output was started: the same relative names lead to the same
    files from the new place, so nothing is done twice, and the rows stay relative."""
    import shutil

    from musetag.inference.embeddings_file import read_embeddings
    from musetag.tag.writers import read_results

    shutil.copytree(music / "low", tmp_path / "p1" / "audio")
    base = [command, str(package), "--out", f"out{ext}", "--workers", "0", "--no-progress"]
    monkeypatch.chdir(tmp_path / "p1")
    assert main([*base, "audio/low0.wav"]) == 0
    (tmp_path / "p1").rename(tmp_path / "p2")
    monkeypatch.chdir(tmp_path / "p2")
    assert main([*base, "audio"]) == 0
    if command == "tag":
        paths = [r["path"] for r in read_results(tmp_path / "p2" / f"out{ext}", ["happy", "sad", "calm"])]
    else:
        paths = read_embeddings(tmp_path / "p2" / f"out{ext}").paths
    assert sorted(paths) == ["audio/low0.wav", "audio/low1.wav", "audio/low2.wav"]
    shutil.copytree(tmp_path / "p2", tmp_path / "p3")  # a copy beside the original: the same files again
    monkeypatch.chdir(tmp_path / "p3")
    assert main([*base, "audio"]) == 0
    if command == "tag":
        assert len(read_results(tmp_path / "p3" / f"out{ext}", ["happy", "sad", "calm"])) == 3
    else:
        assert len(read_embeddings(tmp_path / "p3" / f"out{ext}").paths) == 3
