"""`musetag embed --with-scores`, ``preset = "embed:NAME:scores"`` and probes on such vectors.

Known answers come from other paths: the feature part is the plain embedding (``Embedder`` without
scores), the score part is the tagger's ``tag()`` scores of the same file, the cache is the
``--with-scores`` file, and a backbone + probe package's scores are the probe's formula computed
with numpy on [plain embedding, tagger scores].
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import pretrained_package
from musetag.cli import main
from musetag.errors import ConfigError, DatasetError
from test_probe import BACKBONE, _clips, _dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SR = 16000
TAGS = ["happy", "sad", "calm"]


def _package(folder, aggregation="mean", task="multilabel"):
    import torch

    from musetag.features import get_preset
    from musetag.models import create_model
    from musetag.inference.package import save_package

    cfg = get_preset("fusion64").to_dict()
    cfg.update(sample_rate=SR, mono=True, n_fft=512, hop_length=256)
    torch.manual_seed(0)
    model = create_model("simplecnn", n_classes=3)
    return save_package(folder, model_name="simplecnn", model_args=model.musetag_config["args"],
                        state_dict=model.state_dict(), features=cfg, tags=TAGS, task=task,
                        segment={"frames": 32, "hop": 16, "aggregation": aggregation})


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return _package(tmp_path_factory.mktemp("pkg") / "model", "mean_logits")


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    rng = np.random.default_rng(0)
    for i in range(4):
        t = np.arange(int((1.5 + 0.5 * i) * SR)) / SR
        x = 0.3 * np.sin(2 * np.pi * 200 * (1 + i) * t) + 0.05 * i * rng.normal(size=t.size)
        sf.write(root / f"t{i}.wav", x.astype(np.float32), SR)
    (root / "broken.mp3").write_bytes(b"not audio")
    return root


@pytest.mark.parametrize("aggregation,task", [("mean", "multilabel"), ("mean_logits", "multilabel"),
                                              ("max", "multilabel"), ("mean", "multiclass")])
def test_vector_is_the_plain_embedding_then_the_tagger_scores(tmp_path, music, aggregation, task):
    from musetag.inference import Tagger
    from musetag.inference.embed import load_embedder

    pkg = _package(tmp_path / "m", aggregation, task)
    with_scores, plain, tagger = load_embedder(pkg, scores=True), load_embedder(pkg), Tagger.from_package(pkg)
    assert with_scores.dim == plain.dim + 3 and with_scores.score_tags == TAGS
    for f in ("t0.wav", "t3.wav"):
        v = with_scores.embed(music / f)
        assert v.shape == (plain.dim + 3,) and v.dtype == np.float32
        np.testing.assert_array_equal(v[: plain.dim], plain.embed(music / f))
        np.testing.assert_allclose(v[plain.dim :], tagger.tag(music / f).scores_array, rtol=0, atol=1e-7)


def test_streamed_long_files_give_the_tagger_streamed_scores(package, tmp_path):
    from musetag.inference import Tagger
    from musetag.inference.embed import load_embedder

    path = tmp_path / "long.wav"
    t = np.arange(9 * SR) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t * (1 + t / 20))).astype(np.float32), SR)
    v = load_embedder(package, scores=True, stream_seconds=2.0, block_seconds=1.0).embed(path)
    plain = load_embedder(package, stream_seconds=2.0, block_seconds=1.0)
    tagged = Tagger.from_package(package, stream_seconds=2.0, block_seconds=1.0).tag(path)
    np.testing.assert_array_equal(v[: plain.dim], plain.embed(path))
    np.testing.assert_allclose(v[plain.dim :], tagged.scores_array, rtol=0, atol=1e-7)


def test_a_model_that_overrides_forward_is_run_for_its_own_logits():
    import torch

    from musetag.models import create_model
    from musetag.models.base import features_and_logits, has_base_forward

    torch.manual_seed(0)
    model = create_model("simplecnn", n_classes=3).eval()

    class Doubled(type(model)):
        def forward(self, x):
            return 2.0 * self.forward_head(self.forward_features(x)) + 1.0

    x = torch.randn(2, 1, 64, 32)
    assert has_base_forward(model)
    model.__class__ = Doubled  # the same weights, a forward of its own
    assert not has_base_forward(model)
    with torch.no_grad():
        features, logits = features_and_logits(model, x)
        torch.testing.assert_close(logits, 2.0 * model.classifier(model.forward_features(x)) + 1.0)
        torch.testing.assert_close(features, model.forward_features(x))


def test_command_writes_scores_with_their_metadata_and_plain_runs_are_unchanged(package, music, tmp_path):
    from musetag.inference.embed import load_embedder
    from musetag.inference.embeddings_file import read_embeddings

    assert main(["embed", str(package), str(music), "--out", str(tmp_path / "plain.npy"), "--workers", "0"]) == 3
    assert main(["embed", str(package), str(music), "--out", str(tmp_path / "s.parquet"), "--with-scores",
                 "--workers", "2"]) == 3  # broken.mp3 fails, the others are written
    plain, scored = read_embeddings(tmp_path / "plain.npy"), read_embeddings(tmp_path / "s.parquet")
    assert not {"scores", "feature_dim", "score_tags"} & set(plain.meta)
    dim = plain.dim
    assert scored.meta["scores"] is True and scored.meta["feature_dim"] == dim and scored.meta["score_tags"] == TAGS
    assert scored.meta["score_aggregation"] == "mean_logits" and scored.meta["dim"] == dim + 3
    assert scored.paths == plain.paths and len(plain) == 4
    np.testing.assert_array_equal(scored.vectors[:, :dim], plain.vectors)  # workers run one thread: same sums
    embedder = load_embedder(package, scores=True)
    for path, row in zip(scored.paths, scored.vectors):
        np.testing.assert_allclose(row, embedder.embed(path), rtol=1e-5, atol=1e-6)
    assert "broken.mp3" in (tmp_path / "s.errors.csv").read_text()
    # similarity search over a scored index embeds an outside query with scores too: it finds its twin
    from musetag.tag.similarity import SimilarityIndex, find_similar

    twin = tmp_path / "twin.wav"
    twin.write_bytes((music / "t2.wav").read_bytes())
    matches = find_similar(SimilarityIndex.load(tmp_path / "s.parquet"), twin, k=1)
    assert matches[0].path == str(music / "t2.wav") and matches[0].score == pytest.approx(1.0, abs=1e-5)


def test_resume_refuses_the_other_setting_and_merge_joins_scored_shards(package, music, tmp_path):
    from musetag.inference.embeddings_file import read_embeddings
    from musetag.tag.embed_files import embed_files
    from musetag.tag.merge import merge_outputs

    out = tmp_path / "e.npy"
    embed_files(package, [music], out, progress=False)
    with pytest.raises(ConfigError, match=r"e\.npy holds embeddings without tag scores; run again without "
                                          r"--with-scores.*--restart"):
        embed_files(package, [music], out, scores=True, progress=False)
    partial = tmp_path / "p.npy.partial"  # an interrupted run with scores left its owner file
    partial.mkdir()
    sha = read_embeddings(out).meta["model_sha256"]
    (partial / "model.json").write_text(json.dumps({"model_sha256": sha, "scores": True}))
    with pytest.raises(ConfigError, match="p.npy.partial holds embeddings with tag scores.*run again with --with-scores"):
        embed_files(package, [music], tmp_path / "p.npy", progress=False)
    assert (partial / "model.json").exists()  # nothing lost

    parts = []
    for i in (1, 2):
        parts.append(tmp_path / f"part{i}.npy")
        embed_files(package, [music], parts[-1], shard=f"{i}/2", scores=True, progress=False)
    whole = tmp_path / "whole.npy"
    embed_files(package, [music], whole, scores=True, progress=False)
    assert main(["merge", *map(str, parts), "--out", str(tmp_path / "merged.npy")]) == 0
    merged, single = read_embeddings(tmp_path / "merged.npy"), read_embeddings(whole)
    assert merged.paths == single.paths and merged.meta["score_tags"] == TAGS and merged.meta["scores"] is True
    np.testing.assert_allclose(merged.vectors, single.vectors, rtol=1e-6, atol=1e-7)
    embed_files(package, [music], tmp_path / "plain2.npy", shard="2/2", progress=False)
    with pytest.raises(DatasetError, match="--with-scores and the other without"):
        merge_outputs([parts[0], tmp_path / "plain2.npy"], tmp_path / "bad.npy")


def test_ray_engine_and_a_mismatched_embedder_are_refused(package, music, tmp_path, capsys):
    from musetag.inference.embed import load_embedder
    from musetag.tag.embed_files import embed_files

    assert main(["embed", str(package), str(music), "--out", str(tmp_path / "r.npy"), "--with-scores",
                 "--engine", "ray"]) == 2
    assert "--with-scores runs with the local engine only; drop --engine ray" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="built with scores=False was given with scores=True"):
        embed_files(load_embedder(package), [music], tmp_path / "m.npy", scores=True, progress=False)
    assert not (tmp_path / "m.npy").exists()


def test_onnx_uses_both_graph_outputs_and_refuses_a_graph_without_logits(package, music, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    from musetag.inference.embed import load_embedder
    from musetag.inference.export import export_model

    graph, _ = export_model(package, "onnx", tmp_path / "m.onnx")
    torch_vec = load_embedder(package, scores=True).embed(music / "t1.wav")
    onnx_vec = load_embedder(package, scores=True, backend="onnx", onnx_path=graph).embed(music / "t1.wav")
    np.testing.assert_allclose(onnx_vec, torch_vec, atol=1e-4)
    proto = onnx.load(str(graph))
    keep = [o for o in proto.graph.output if o.name == "embedding"]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)
    onnx.save(proto, str(tmp_path / "emb_only.onnx"))
    load_embedder(package, backend="onnx", onnx_path=tmp_path / "emb_only.onnx")  # plain embedding: fine
    with pytest.raises(ConfigError, match="not both 'embedding' and 'logits'.*export it again"):
        load_embedder(package, scores=True, backend="onnx", onnx_path=tmp_path / "emb_only.onnx")


def test_preset_suffix_parsing_and_its_errors(tmp_path):
    pretrained_package(BACKBONE)
    from musetag.data import load_dataset_config
    from musetag.inference.embed_spec import parse_part
    from musetag.data.store import feature_key

    rows = [("x.mp3", "a", "train")]

    def config(preset, name):
        return load_dataset_config(_dataset(tmp_path / name, preset, rows)).feature_config()

    scored = config(f"embed:{BACKBONE}:scores+mtg-jamendo-baseline-whole", "a")
    # each backbone is recorded with its window rule (musetag.inference.embed_spec)
    # (and a catalogue backbone without layers= or :scores with the dataset default, DEFAULT_LAYERS)
    assert scored.embed == f"{BACKBONE}:scores@windows=fit+mtg-jamendo-baseline-whole@layers=-3,-2,-1,windows=fit"
    assert feature_key(scored) != feature_key(config(f"embed:{BACKBONE}+mtg-jamendo-baseline-whole", "b"))
    assert parse_part(f"{BACKBONE}:scores") == (BACKBONE, True) and parse_part(BACKBONE) == (BACKBONE, False)
    assert parse_part(f"{BACKBONE}:scores@windows=fit") == (BACKBONE, True)
    odd = tmp_path / "pkg:scores"  # a package folder whose name ends in :scores is taken whole
    odd.mkdir()
    assert parse_part(str(odd)) == (str(odd), False)
    with pytest.raises(ConfigError, match=rf"c/ds.toml: preset embed:{BACKBONE}:score: unknown backbone suffix "
                                          rf"':score'.*write embed:{BACKBONE}:scores"):
        config(f"embed:{BACKBONE}:score", "c")
    with pytest.raises(ConfigError, match="neither a pretrained model"):
        config("embed:no-such-model:scores", "d")


@pytest.fixture(scope="module")
def prepared_scores(tmp_path_factory):
    pretrained_package(BACKBONE)
    from musetag.data.cache import prepare

    toml = _dataset(tmp_path_factory.mktemp("scores-ds"), f"embed:{BACKBONE}:scores", _clips())
    return toml, prepare(toml, progress=False)


def test_cache_holds_the_with_scores_vectors(prepared_scores, tmp_path):
    from musetag.data.cache import FeatureCache
    from musetag.inference import Tagger
    from musetag.inference.embed import load_embedder
    from musetag.inference.embeddings_file import read_embeddings
    from musetag.tag.embed_files import embed_files

    _, result = prepared_scores
    assert not result.failures
    cache = FeatureCache(result.out_dir)
    picks = [cache.tracks[i]["audio_path"] for i in (0, 4)]
    embed_files(BACKBONE, picks, tmp_path / "e.npy", scores=True, progress=False)
    table = read_embeddings(tmp_path / "e.npy")
    assert table.meta["feature_dim"] == 64 and len(table.meta["score_tags"]) == 56
    by_path = dict(zip(table.paths, table.vectors))
    plain = load_embedder(BACKBONE)
    tagger = Tagger.from_package(pretrained_package(BACKBONE))
    for i in (0, 4):
        array = cache.load(i, mmap=False)
        audio = cache.tracks[i]["audio_path"]
        assert array.shape == (64 + 56, 1) and array.dtype == np.float32
        np.testing.assert_array_equal(array[:, 0], by_path[audio])
        np.testing.assert_array_equal(array[:64, 0], plain.embed(audio))
        np.testing.assert_allclose(array[64:, 0], tagger.tag(audio).scores_array, rtol=0, atol=1e-7)


def test_probe_on_scores_packages_to_the_probe_formula(prepared_scores, tmp_path):
    import musetag
    from musetag.inference import Tagger
    from musetag.inference.embed import load_embedder
    from musetag.models.weights import load_checkpoint
    from musetag.tag.package_from_run import create_package

    toml, _ = prepared_scores
    run = tmp_path / "run"
    musetag.train("probe-linear", data=toml, out=run, sets=["progress=false", "probe.grid=[1.0]"])
    pkg = create_package(run, tmp_path / "pkg")
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    sd = {k: v.double().numpy() for k, v in ckpt["state_dict"].items()}
    assert sd["mean"].shape == (64 + 56,)
    audio = str(_clips()[2][0])
    tag_scores = Tagger.from_package(pretrained_package(BACKBONE)).tag(audio).scores_array
    e = np.concatenate([load_embedder(BACKBONE).embed(audio), tag_scores]).astype(np.float64)
    logits = ((e - sd["mean"]) / sd["std"]) @ sd["classifier.weight"].T + sd["classifier.bias"]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    got = Tagger.from_package(pkg).tag(audio)
    assert got.tags == ckpt["tags"]
    np.testing.assert_allclose(got.scores_array, expected, atol=1e-5)
    # the package embeds with scores too: [its backbone embedding, the probe's scores]
    v = load_embedder(pkg, scores=True).embed(audio)
    np.testing.assert_allclose(v, np.concatenate([e[:64], expected]), atol=1e-5)
    # per-window scores (tag --segments): the probe on each window's [embedding, own probabilities]; the
    # baseline's rule is one centred excerpt, so the one window's scores are the track's
    timed = Tagger.from_package(pkg, segments=True).tag(audio)
    assert timed.segments.scores.shape == (1, 3)
    np.testing.assert_allclose(timed.segments.scores[0], expected, atol=1e-5)
