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
