"""Pretrained embeddings as cached features, probes on them, and backbone + probe packages.

Known answers: the cached vectors are ``musetag embed``'s (the Embedder); the linear probe's fit is
scikit-learn's LogisticRegression for the same C; a package's scores are the probe's formula
(standardise, affine, softmax) applied with numpy to the embedding of the file.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import pretrained_package, shared_path

BACKBONE = "mtg-jamendo-baseline"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clips(per_genre: int = 3) -> list[tuple[str, str, str]]:
    root = shared_path("gtzan3")  # skips when the shared data is absent
    rows = []
    for genre in ("classical", "jazz", "rock"):
        files = sorted((root / "audio" / genre).glob("*.mp3"))[:per_genre]
        rows += [(str(f), genre, split) for f, split in zip(files, ("train", "validation", "test", "train"))]
    return rows


def _dataset(folder, preset: str, rows, *, cache: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "tags", "split"])
        w.writerows(rows)
    text = f'reader = "csv"\ntask = "multiclass"\npreset = "{preset}"\n'
    if cache:
        text += 'cache = "cache"\n'
    (folder / "ds.toml").write_text(text + '[paths]\nmanifest = "m.csv"\n')
    return folder / "ds.toml"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A 9-clip gtzan3 dataset (one train/validation/test clip per genre) cached as baseline embeddings."""
    pretrained_package(BACKBONE)
    from musetag.data.cache import prepare

    toml = _dataset(tmp_path_factory.mktemp("probe-ds"), f"embed:{BACKBONE}@layers=features", _clips())
    result = prepare(toml, progress=False)
    return toml, result


def test_cached_embeddings_are_musetag_embed_vectors_with_train_split_stats(prepared):
    from musetag.data.cache import FeatureCache
    from musetag.inference.embed import load_embedder

    toml, result = prepared
    assert not result.failures
    cache = FeatureCache(result.out_dir)
    embedder = load_embedder(BACKBONE)
    vectors = {}
    for i, track in enumerate(cache.tracks):
        array = cache.load(i, mmap=False)
        assert array.shape == (64, 1) and array.dtype == np.float32
        vectors[track["id"]] = (array[:, 0], track["split"])
    for i in (0, 4):  # two tracks through the embedder itself: identical numbers
        track = cache.tracks[i]
        np.testing.assert_array_equal(vectors[track["id"]][0], embedder.embed(track["audio_path"]))
    train = np.stack([v for v, split in vectors.values() if split == "train"])
    stats = json.loads((result.out_dir / "stats.json").read_text())
    assert stats["split"] == "train" and stats["tracks"] == 3
    np.testing.assert_allclose(stats["band_mean"], train.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats["band_std"], train.std(0), rtol=1e-5, atol=1e-5)


def test_a_plus_b_concatenates_backbones_in_order(tmp_path):
    pretrained_package(BACKBONE)
    from musetag.data.cache import FeatureCache, prepare
    from musetag.inference.embed import load_embedder

    rows = _clips(1)[:1]
    spec = f"{BACKBONE}@layers=features+mtg-jamendo-baseline-whole@layers=features"  # each the penultimate mean
    result = prepare(_dataset(tmp_path, f"embed:{spec}", rows), progress=False)
    cache = FeatureCache(result.out_dir)
    a, b = load_embedder(BACKBONE), load_embedder("mtg-jamendo-baseline-whole")
    for i, track in enumerate(cache.tracks):
        expected = np.concatenate([a.embed(track["audio_path"]), b.embed(track["audio_path"])])
        np.testing.assert_array_equal(cache.load(i, mmap=False)[:, 0], expected)


def test_embed_preset_errors_name_the_fix(tmp_path):
    from musetag.data import load_dataset_config
    from musetag.errors import ConfigError

    rows = [("x.mp3", "a", "train")]
    with pytest.raises(ConfigError, match="neither a pretrained model.*nor an existing model package"):
        load_dataset_config(_dataset(tmp_path / "a", "embed:no-such-model", rows)).feature_config()
    toml = _dataset(tmp_path / "b", f"embed:{BACKBONE}", rows)
    toml.write_text(toml.read_text() + "[features]\nn_mels = 64\n")
    with pytest.raises(ConfigError, match="remove the \\[features\\] table"):
        load_dataset_config(toml).feature_config()


def _blobs(rng, n=90, dim=12, classes=3):
    centres = rng.normal(0, 1.5, (classes, dim))
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.normal(0, 1.0, (n, dim))) * rng.uniform(0.5, 20, dim) + rng.normal(0, 5, dim)
    return x.astype(np.float32), y


@pytest.mark.parametrize("c", [0.05, 1.0])
def test_linear_probe_is_sklearn_logistic_regression(rng, c):
    from sklearn.linear_model import LogisticRegression

    from musetag.training.probe import build_probe, fit, predict

    x, y = _blobs(rng)
    model = fit(build_probe("probe_linear", {}, 3, x, 0), x, y, "multiclass", c)
    x = x.astype(np.float64)  # scikit-learn fits in the input's precision
    z = (x - x.mean(0)) / x.std(0)
    ref = LogisticRegression(C=c, tol=1e-10, max_iter=10000).fit(z, y)
    x_new, _ = _blobs(np.random.default_rng(7))
    expected = ref.predict_proba((x_new - x.mean(0)) / x.std(0))
    np.testing.assert_allclose(predict(model, x_new, "multiclass"), expected, atol=5e-5)


def test_multilabel_linear_probe_is_one_logistic_regression_per_tag(rng):
    from sklearn.linear_model import LogisticRegression

    from musetag.training.probe import build_probe, fit, predict

    x, cls = _blobs(rng, n=80)
    y = np.stack([cls == 0, cls != 1, (cls == 2) | (x[:, 0] > np.median(x[:, 0]))], 1).astype(np.float32)
    model = fit(build_probe("probe_linear", {}, 3, x, 0), x, y, "multilabel", 0.3)
    x = x.astype(np.float64)
    z = (x - x.mean(0)) / x.std(0)
    expected = np.stack([LogisticRegression(C=0.3, tol=1e-10, max_iter=10000).fit(z, y[:, k]).predict_proba(z)[:, 1]
                         for k in range(3)], 1)
    np.testing.assert_allclose(predict(model, x, "multilabel"), expected, atol=5e-5)


def test_regularisation_is_chosen_on_validation(rng):
    from sklearn.linear_model import LogisticRegression

    from musetag.training.probe import select

    x, y = _blobs(rng, n=150, dim=30)
    x[:, 10:] = rng.normal(0, 1, (150, 20))
    x = x.astype(np.float64)  # noise dimensions: strong C overfits the 30 training tracks
    tr, va = slice(0, 30), slice(30, 150)
    grid = [0.001, 0.1, 10.0]
    _, chosen, rows = select("probe_linear", {}, "multiclass", 3, x[tr], y[tr], x[va], y[va], grid=grid)
    mean, std = x[tr].mean(0), x[tr].std(0)
    accs = []
    for c in grid:
        ref = LogisticRegression(C=c, tol=1e-10, max_iter=10000).fit((x[tr] - mean) / std, y[tr])
        accs.append(ref.score((x[va] - mean) / std, y[va]))
    assert [r["accuracy"] for r in rows] == pytest.approx(accs, abs=1 / 120 + 1e-9)
    assert max(accs) - accs[grid.index(chosen)] <= 1 / 120 + 1e-9


def test_probe_run_packages_backbone_and_probe_and_tags_audio(prepared, tmp_path):
    import musetag
    from musetag.inference import Tagger
    from musetag.inference.embed import load_embedder
    from musetag.models.weights import load_checkpoint
    from musetag.tag.package_from_run import create_package

    toml, _ = prepared
    run = tmp_path / "run"
    result = musetag.train("probe-linear", data=toml, out=run, sets=["progress=false", "probe.grid=[0.1, 1.0]"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["probe"]["C"] in (0.1, 1.0) and [r["C"] for r in summary["probe"]["grid"]] == [0.1, 1.0]
    assert result.test["accuracy"] == summary["test"]["accuracy"]
    assert summary["best_epoch"] == summary["epochs_run"] == 1  # epochs count from 1 everywhere (it said 0)
    tags_txt = (run / "predictions" / "tags.txt").read_text().split()  # what `musetag score` names tags from
    assert tags_txt == summary["tags"] and len(tags_txt) == np.load(run / "predictions" / "test.npy").shape[1]
    assert np.load(run / "predictions" / "test.npy").shape == (3, 3)

    pkg = create_package(run, tmp_path / "pkg")
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    sd = {k: v.double().numpy() for k, v in ckpt["state_dict"].items()}
    audio = str(_clips()[2][0])
    e = load_embedder(BACKBONE).embed(audio).astype(np.float64)
    logits = ((e - sd["mean"]) / sd["std"]) @ sd["classifier.weight"].T + sd["classifier.bias"]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    scores = Tagger.from_package(pkg).tag(audio)
    assert scores.tags == ckpt["tags"]
    np.testing.assert_allclose(scores.scores_array, expected, atol=1e-5)
    # per-window scores (tag --segments): the same formula on each window's own embedding
    tagger = Tagger.from_package(pkg, segments=True)
    timed = tagger.tag(audio)
    np.testing.assert_allclose(timed.scores_array, expected, atol=1e-5)
    import torch

    windows, _ = tagger.front.segments(audio)
    with torch.inference_mode():
        w = load_embedder(BACKBONE).model.forward_features(torch.from_numpy(windows)).double().numpy()
    w_logits = ((w - sd["mean"]) / sd["std"]) @ sd["classifier.weight"].T + sd["classifier.bias"]
    w_expected = np.exp(w_logits - w_logits.max(1, keepdims=True))
    w_expected /= w_expected.sum(1, keepdims=True)
    assert timed.segments.scores.shape == (len(windows), 3)
    np.testing.assert_allclose(timed.segments.scores, w_expected, atol=1e-5)
    # one ONNX graph per window cannot average embeddings before the probe: refused with the fix
    from musetag.errors import ConfigError

    with pytest.raises(ConfigError, match="torch backend only; drop --backend onnx"):
        Tagger.from_package(pkg, backend="onnx")


def test_probe_needs_an_embedding_dataset_and_vice_versa(tmp_path):
    import musetag
    from musetag.errors import ConfigError

    rows = [("x.mp3", "a", "train")]
    with pytest.raises(ConfigError, match="learns from track embeddings"):
        musetag.train("probe-linear", data=_dataset(tmp_path / "a", "jamendo96", rows), out=tmp_path / "r1")
    with pytest.raises(ConfigError, match="train a probe on it"):
        musetag.train("demo", data=_dataset(tmp_path / "b", f"embed:{BACKBONE}", rows), out=tmp_path / "r2")
