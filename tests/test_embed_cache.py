"""The per-backbone embedding cache: a composite preset is assembled from each backbone's per-file arrays.

Known answers by counting: after ``prepare`` of ``embed:a``, ``prepare`` of ``embed:a+b`` runs only ``b``'s
embedder (once per file), and a later ``embed:b`` or ``embed:b+a`` runs nothing; the assembled vectors
equal the backbones' own vectors from the Embedder (``musetag embed``'s numbers), concatenated in order.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from conftest import pretrained_package
from test_probe import _clips, _dataset

A, B = "mtg-jamendo-baseline", "mtg-jamendo-baseline-whole"
#: the pooled penultimate layer alone (what ``musetag embed NAME`` writes), not a dataset's default layers
PLAIN = "@layers=features"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def counted(monkeypatch):
    """Which backbone embedded which file, by wrapping the loader prepare uses."""
    import musetag.data.embed_features as ef

    calls: Counter = Counter()
    real = ef.load_backbone

    def load(part, **kwargs):
        embedder = real(part, **kwargs)
        embed = embedder.embed

        def counting(source, *args, **kw):
            calls[(part.replace("@windows=fit", ""), str(source))] += 1  # NAME@layers=features: loaded as NAME
            return embed(source, *args, **kw)

        embedder.embed = counting
        return embedder

    monkeypatch.setattr(ef, "load_backbone", load)
    return calls


def prepare_vectors(toml, preset):
    """``prepare`` of the dataset TOML with ``preset = "embed:PRESET"``: ``({audio path: vector}, result)``."""
    from musetag.data.cache import FeatureCache, prepare

    toml.write_text(toml.read_text().replace(toml.read_text().split("\n")[2], f'preset = "embed:{preset}"'))
    result = prepare(toml, progress=False)
    assert not result.failures
    cache = FeatureCache(result.out_dir)
    return {t["audio_path"]: cache.load(i, mmap=False)[:, 0] for i, t in enumerate(cache.tracks)}, result


def _prepare(toml, preset):
    return prepare_vectors(toml, preset)[0]


def test_a_composite_preset_computes_only_the_backbones_not_yet_cached(tmp_path, counted):
    pretrained_package(A), pretrained_package(B)
    from musetag.inference.embed import load_embedder

    rows = _clips(1)
    files = [r[0] for r in rows]
    toml = _dataset(tmp_path, f"embed:{A}", rows, cache=False)  # default caches: one shared array store
    alone = _prepare(toml, f"{A}{PLAIN}")
    assert counted == Counter({(A, f): 1 for f in files})

    counted.clear()
    both = _prepare(toml, f"{A}{PLAIN}+{B}{PLAIN}")
    assert counted == Counter({(B, f): 1 for f in files})  # A was read from the store, B computed once per file
    b = load_embedder(B)
    for f in files:
        np.testing.assert_array_equal(both[f], np.concatenate([alone[f], b.embed(f)]))
    a = load_embedder(A)
    np.testing.assert_array_equal(alone[files[0]], a.embed(files[0]))

    counted.clear()
    b_alone = _prepare(toml, f"{B}{PLAIN}")
    swapped = _prepare(toml, f"{B}{PLAIN}+{A}{PLAIN}")
    assert not counted  # both backbones' arrays are in the store: nothing is embedded again
    for f in files:
        np.testing.assert_array_equal(b_alone[f], both[f][len(alone[f]):])
        np.testing.assert_array_equal(swapped[f], np.concatenate([b_alone[f], alone[f]]))

    counted.clear()  # the same backbone cut by another window rule is another array
    upstream = _prepare(toml, f"{B}@layers=features,windows=upstream")
    assert counted == Counter({(f"{B}@windows=upstream", f): 1 for f in files})
    for f in files:  # a 30 s clip: the upstream rule's two 29.1 s chunks, the fitted rule's one
        np.testing.assert_array_equal(upstream[f], load_embedder(B, windows="upstream").embed(f))
        assert not np.array_equal(upstream[f], b_alone[f])


def test_a_backbone_with_scores_read_from_the_store_has_its_layout(tmp_path, counted):
    """``embed:A:scores`` after ``embed:A:scores+B``: its cache is the folder the composite filled, so nothing is
    computed, and it has its vector's layout: the features mean, then one column per tag (it had no
    layout.json, so probe-auto recorded the whole vector as one ``features`` row, scores included)."""
    pretrained_package(A), pretrained_package(B)
    from musetag.data.embed_features import cache_layout
    from musetag.inference.loading import load_model

    rows = _clips(1)
    toml = _dataset(tmp_path, f"embed:{A}", rows, cache=False)
    both, result = prepare_vectors(toml, f"{A}:scores+{B}{PLAIN}")
    n_tags = len(load_model(A, load_weights=False).tags)
    layout = cache_layout(result.out_dir)
    width = len(next(iter(both.values())))
    assert [(r["layer"], r["length"]) for r in layout] == [("features", 64), ("scores", n_tags), ("features", width - 64 - n_tags)]
    assert [r["offset"] for r in layout] == [0, 64, 64 + n_tags]
    counted.clear()
    alone, result = prepare_vectors(toml, f"{A}:scores")
    assert not counted
    assert [(r["layer"], r["stat"], r["offset"], r["length"]) for r in cache_layout(result.out_dir)] == [
        ("features", "mean", 0, 64), ("scores", "mean", 64, n_tags)]
    for f, v in alone.items():
        np.testing.assert_array_equal(v, both[f][:64 + n_tags])


def test_probe_auto_records_the_scores_of_a_cache_without_layout():
    """A cache prepared before layouts were written: probe-auto's recorded layout still splits ``NAME:scores``
    into the features mean and the tag scores (it was one ``features`` row of the whole width)."""
    from types import SimpleNamespace

    from musetag.inference.loading import load_model
    from musetag.training.probe_auto import union_layout

    pretrained_package(A)
    n_tags = len(load_model(A, load_weights=False).tags)
    arrays = SimpleNamespace(blocks={"x": {"train": np.zeros((2, 10))}, f"{A}:scores": {"train": np.zeros((2, 64 + n_tags))}},
                             layouts={"x": [{"backbone": "x", "layer": "l1", "stat": "mean", "offset": 0, "length": 10}]})
    rows = union_layout(arrays, ["x", f"{A}:scores"])
    assert [(r["backbone"], r["layer"], r["offset"], r["length"]) for r in rows] == [
        ("x", "l1", 0, 10), (f"{A}:scores", "features", 10, 64), (f"{A}:scores", "scores", 74, n_tags)]
