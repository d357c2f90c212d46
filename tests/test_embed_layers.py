"""Embeddings from pooled statistics of intermediate layers (``NAME@layers=...,pool=...``).

Known answers: statistics of frames written out by hand (numpy's mean, population std and max over the
frames of all windows); each tap's frames rebuilt by running the network's own submodules one by one
(not through the hooks under test); ``prepare``, ``musetag embed`` and a backbone + probe package give
the same numbers, and choosing other layers or statistics after ``prepare`` embeds nothing again
(counted).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import pretrained_package
from test_embed_cache import counted, prepare_vectors  # noqa: F401 - counted is a fixture
from test_probe import _clips, _dataset

A = "mtg-jamendo-baseline"  # the VGG-ish baseline: five conv taps + features, cheap on the CPU
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_track_statistics_are_over_all_frames_of_all_windows():
    from musetag.models.taps import _partial, stats_layout, stats_of

    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(1, 3, 5)), rng.normal(size=(1, 3, 2))  # two windows, 3 channels, 5 and 2 frames
    partials = [np.concatenate([_partial(torch.from_numpy(w)).numpy() for w in (w1, w2)])]
    frames = np.concatenate([w1[0], w2[0]], axis=1)  # (3, 7)
    expected = np.concatenate([frames.mean(1), frames.std(1), frames.max(1)]).astype(np.float32)
    np.testing.assert_allclose(stats_of(partials), expected, rtol=1e-6)
    assert [(r["layer"], r["stat"], r["offset"]) for r in stats_layout(["x"], [3])] == [
        ("x", "mean", 0), ("x", "std", 3), ("x", "max", 6)]


def test_one_forward_pass_collects_every_tap():
    from musetag.models import create_model
    from musetag.models.taps import tap_names, window_partials

    torch.manual_seed(0)
    model = create_model("vggish_baseline", n_classes=3).eval()
    x = torch.randn(2, 1, 96, 640)
    with torch.inference_mode():
        features, partials = window_partials(model, x)
        h, by_hand = model.input_bn(x), []
        for block in model.features:  # conv, pool, conv, ... : the conv outputs are the taps
            h = block(h)
            if not isinstance(block, torch.nn.MaxPool2d):
                by_hand.append(h.mean(dim=2).double())  # (B, C, T): averaged over frequency
        np.testing.assert_allclose(features.numpy(), model.forward_features(x).numpy(), rtol=1e-6)
    assert tap_names(model) == ["conv1", "conv2", "conv3", "conv4", "conv5", "features"]
    for frames, p in zip(by_hand + [features.double().unsqueeze(-1)], partials):
        c = frames.shape[1]
        np.testing.assert_allclose(p[:, :c].numpy(), frames.sum(2).numpy(), rtol=1e-5)
        np.testing.assert_allclose(p[:, c : 2 * c].numpy(), (frames**2).sum(2).numpy(), rtol=1e-5)
        np.testing.assert_allclose(p[:, 2 * c : 3 * c].numpy(), frames.amax(2).numpy(), rtol=1e-6)
        assert (p[:, -1] == frames.shape[2]).all()


@pytest.mark.parametrize("name", ["won_fcn", "won_musicnn", "won_crnn"])
def test_every_won2020_tap_exists_and_is_reached(name):
    from musetag.models import create_model
    from musetag.models.taps import tap_names, window_partials

    model = create_model(name, n_classes=2).eval()
    spec = model.default_input
    with torch.inference_mode():
        _, partials = window_partials(model, spec.example(batch=1, length=spec.min_length))
    assert len(partials) == len(tap_names(model)) >= 5


def test_the_option_grammar_takes_lists_and_names_the_fix():
    from musetag.errors import ConfigError
    from musetag.inference.embed_spec import join_options, part_layers, split_options

    a = split_options("jamendo-fcn@layers=4,5,6;pool=meanstd")
    b = split_options("jamendo-fcn@layers=4,5,6,pool=mean,std")
    assert part_layers("x@layers=4,5,6;pool=meanstd") == part_layers("x@layers=4,5,6,pool=mean,std") == (
        ["4", "5", "6"], ["mean", "std"])
    assert a[1]["layers"] == b[1]["layers"] == "4,5,6"
    written = join_options("jamendo-fcn", {"windows": "fit", **b[1]})
    assert written == "jamendo-fcn@layers=4,5,6,pool=mean,std,windows=fit"
    assert split_options(written) == ("jamendo-fcn", {"layers": "4,5,6", "pool": "mean,std", "windows": "fit"})
    assert part_layers("x@windows=fit") is None and part_layers("x@layers=-2")[1] == ["mean"]
    assert part_layers("x@layers=features") is None and part_layers("x@layers=-1,pool=mean") is None  # the plain mean
    assert part_layers("x@layers=-1,pool=std") == (["-1"], ["std"])
    for bad, says in [("x@pool=mean", "goes with layers"), ("x@layers=1,pool=median", "median"),
                      ("x@layers=1,pool=mean,mean", "twice"), ("x@depth=3", "unknown option"),
                      ("x@windows=fit,windows=upstream", "windows= is given twice"),
                      ("x@layers=-1,pool=mean,layers=-2", "layers= is given twice")]:
        with pytest.raises(ConfigError, match=says):
            part_layers(bad)


def test_every_tap_with_some_statistics(tmp_path, counted):
    """``layers=all`` is the whole stats array (every tap; mean, std, max); ``layers=all,pool=mean`` the mean of every
    tap: prepare and embed alike, from the same stored arrays (pool was ignored: the whole array, 3x as wide)."""
    pretrained_package(A)
    from musetag.data.embed_features import cache_layout
    from musetag.inference.embed import load_embedder
    from musetag.inference.embed_spec import part_layers
    from musetag.models.taps import select

    assert part_layers("x@layers=all") == (["all"], ["mean", "std", "max"])
    assert part_layers("x@layers=all,pool=mean") == (["all"], ["mean"])
    files = [r[0] for r in _clips(1)]
    toml = _dataset(tmp_path, f"embed:{A}", _clips(1), cache=False)
    whole, result = prepare_vectors(toml, f"{A}@layers=all")
    full = cache_layout(result.out_dir)
    taps = list(dict.fromkeys(r["layer"] for r in full))
    counted.clear()
    means, result = prepare_vectors(toml, f"{A}@layers=all,pool=mean")
    assert not counted  # out of the stored stats arrays
    assert [(r["layer"], r["stat"]) for r in cache_layout(result.out_dir)] == [(t, "mean") for t in taps]
    embedder = load_embedder(f"{A}@layers=all,pool=mean")
    for f in files:
        expected = select(whole[f], full, taps, ["mean"])
        assert means[f].shape == expected.shape and 3 * len(means[f]) == len(whole[f])
        np.testing.assert_array_equal(means[f], expected)
        np.testing.assert_array_equal(embedder.embed(f), expected)
        np.testing.assert_array_equal(load_embedder(f"{A}@layers=all").embed(f), whole[f])


def test_layer_choices_resolve_names_and_indices():
    from musetag.errors import ConfigError
    from musetag.models.taps import resolve_layers

    names = ["conv1", "conv2", "features"]
    assert resolve_layers(["1", "-1", "conv2"], names) == ["conv1", "features", "conv2"]
    with pytest.raises(ConfigError, match="1=conv1, 2=conv2, 3=features"):
        resolve_layers(["4"], names)


def test_prepare_and_embed_give_the_same_layer_statistics_and_other_choices_recompute_nothing(tmp_path, counted):
    pretrained_package(A)
    from musetag.inference.embed import load_embedder
    from musetag.inference.embeddings_file import read_embeddings
    from musetag.data.embed_features import cache_layout
    from musetag.tag.embed_files import embed_files

    files = [r[0] for r in _clips(1)]
    toml = _dataset(tmp_path, f"embed:{A}", _clips(1), cache=False)
    spec = f"{A}@layers=-2,-1,pool=mean,std"
    chosen, result = prepare_vectors(toml, spec)
    assert sum(counted.values()) == len(files)  # one stats array per file: every tap in one pass
    layout = cache_layout(result.out_dir)
    embedder = load_embedder(spec)
    assert embedder.layers == ["conv5", "features"] and embedder.dim == 4 * 64
    for f in files:
        np.testing.assert_array_equal(chosen[f], embedder.embed(f))

    counted.clear()
    other, _ = prepare_vectors(toml, f"{A}@layers=conv1,features,pool=max")
    assert not counted  # other layers and statistics come out of the stored stats arrays
    explicit, _ = prepare_vectors(toml, f"{A}@layers=features")  # the forward_features mean, computed the old way
    assert sum(counted.values()) == len(files)
    counted.clear()
    same, _ = prepare_vectors(toml, f"{A}@layers=-1,pool=mean")
    assert not counted  # the same per-file arrays as layers=features
    plain = load_embedder(A)  # no layers: the penultimate mean
    for f in files:
        assert other[f].shape == (128,)
        np.testing.assert_array_equal(explicit[f], plain.embed(f))
        np.testing.assert_array_equal(same[f], explicit[f])
        np.testing.assert_allclose(chosen[f][128:192], explicit[f], rtol=1e-6, atol=1e-7)  # features' mean

    out = tmp_path / "e.npy"
    embed_files(spec, files, out, workers=0, progress=False)
    table = read_embeddings(out)
    for p, v in zip(table.paths, table.vectors):
        np.testing.assert_array_equal(v, chosen[p])
    assert [(r["layer"], r["stat"], r["offset"], r["length"]) for r in table.layout] == [
        ("conv5", "mean", 0, 64), ("conv5", "std", 64, 64), ("features", "mean", 128, 64), ("features", "std", 192, 64)]
    assert [(r["backbone"], r["layer"], r["stat"], r["offset"]) for r in layout] == [
        (spec + ",windows=fit", "conv5", "mean", 0), (spec + ",windows=fit", "conv5", "std", 64),
        (spec + ",windows=fit", "features", "mean", 128), (spec + ",windows=fit", "features", "std", 192)]


def test_a_probe_package_on_layer_statistics_tags_as_its_embeddings_were_made(tmp_path):
    pretrained_package(A)
    import musetag
    from musetag.data.cache import FeatureCache, prepare
    from musetag.data.embed_features import cache_layout
    from musetag.inference import Tagger
    from musetag.inference.embed import load_embedder
    from musetag.models.weights import load_checkpoint
    from musetag.tag.package_from_run import create_package

    spec = f"{A}@layers=conv4,-1,pool=mean,std,max"
    result = prepare(_dataset(tmp_path / "ds", f"embed:{spec}", _clips()), progress=False)
    cache = FeatureCache(result.out_dir)
    cached = {t["audio_path"]: cache.load(i, mmap=False)[:, 0].astype(np.float64) for i, t in enumerate(cache.tracks)}
    assert cache_layout(result.out_dir)[0] == {"backbone": f"{spec},windows=fit", "layer": "conv4", "stat": "mean",
                                               "offset": 0, "length": 128}
    run = tmp_path / "run"
    musetag.train("probe-linear", data=tmp_path / "ds" / "ds.toml", out=run, sets=["progress=false", "probe.grid=[1.0]"])
    pkg = create_package(run, tmp_path / "pkg")
    args = json.loads((pkg / "musetag.json").read_text())["model"]["args"]["backbones"][0]
    assert args["layers"] == ["conv4", "features"] and args["pool"] == ["mean", "std", "max"]
    assert sum(r["length"] for r in args["layout"]) == 3 * (128 + 64)
    sd = {k: v.double().numpy() for k, v in load_checkpoint(run / "checkpoints" / "best.pt")["state_dict"].items()}
    tagger = Tagger.from_package(pkg, segments=True)
    probe_sees = load_embedder(pkg)
    for audio in list(cached)[:2]:
        np.testing.assert_allclose(probe_sees.embed(audio), cached[audio], rtol=1e-6, atol=1e-6)
        logits = ((cached[audio] - sd["mean"]) / sd["std"]) @ sd["classifier.weight"].T + sd["classifier.bias"]
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        result = tagger.tag(audio)
        np.testing.assert_allclose(result.scores_array, expected, atol=1e-5)
        assert result.segments is not None and len(result.segments) >= 1


def test_probe_auto_records_the_layout_of_the_chosen_embedding():
    from musetag.training.probe_auto import Arrays, union_layout

    z = np.zeros((2, 1), np.float32)
    blocks = {"a@layers=-2,-1": {"train": np.zeros((2, 6), np.float32)}, "b": {"train": np.zeros((2, 4), np.float32)}}
    layouts = {"a@layers=-2,-1": [{"backbone": "a", "layer": "l4", "stat": "mean", "offset": 0, "length": 2},
                                  {"backbone": "a", "layer": "features", "stat": "mean", "offset": 2, "length": 4}],
               "b": None}  # a cache prepared before layouts existed: one row
    arrays = Arrays("multilabel", [], {}, {"train": z}, None, blocks, None, layouts)
    assert [(r["backbone"], r["layer"], r["offset"], r["length"]) for r in union_layout(arrays, ["b", "a@layers=-2,-1"])] == [
        ("b", "features", 0, 4), ("a", "l4", 4, 2), ("a", "features", 6, 4)]


def test_a_datasets_embed_name_is_the_mean_of_the_last_three_layers_under_its_own_key(tmp_path, counted):
    """The default of a dataset's ``embed:NAME`` (catalogue backbone, no ``layers=``, no ``:scores``) is
    ``@layers=-3,-2,-1``, recorded in the resolved preset: a cache of the old default (the penultimate mean,
    ``@layers=features``) is refused, never read as the new vectors, and the numbers are ``musetag embed``'s."""
    package = pretrained_package(A)
    from musetag.data.embed_features import dataset_embedding_config, embedding_feature_config
    from musetag.data.store import feature_key
    from musetag.errors import DatasetError
    from musetag.inference.embed import load_embedder
    from musetag.inference.embed_spec import DEFAULT_LAYERS

    assert DEFAULT_LAYERS == "-3,-2,-1"
    new = dataset_embedding_config(A)
    assert new.embed == f"{A}@layers=-3,-2,-1,windows=fit" == dataset_embedding_config(new.embed).embed  # idempotent
    assert dataset_embedding_config(f"{A}@layers=-3,-2,-1").embed == new.embed  # written out: the same cache
    old = embedding_feature_config(A)  # what `embed:NAME` recorded before: no layers, the forward_features mean
    assert old.embed == f"{A}@windows=fit"
    explicit = dataset_embedding_config(f"{A}@layers=features")
    assert len({feature_key(new), feature_key(old), feature_key(explicit)}) == 3
    assert dataset_embedding_config(f"{A}:scores").embed == f"{A}:scores@windows=fit"  # scores: no layers
    assert dataset_embedding_config(str(package)).embed == f"{package}@windows=fit"  # a package path: no default

    from musetag.data.cache import prepare

    rows = _clips(1)[:2]
    files = [r[0] for r in rows]
    toml = _dataset(tmp_path, f"embed:{A}", rows)  # cache = "cache": one folder, as a user's TOML names it
    plain, first = prepare_vectors(toml, f"{A}@layers=features")  # a cache of what embed:NAME was before
    counted.clear()
    default, result = prepare_vectors(toml, A)
    assert result.out_dir != first.out_dir  # that folder holds other features: the new vectors go beside it
    assert sum(counted.values()) == len(files)  # one stats pass per file
    with pytest.raises(DatasetError, match="prepared with different settings"):
        prepare(toml, first.out_dir, progress=False)  # named explicitly: refused, never read as the new default
    counted.clear()
    written, again = prepare_vectors(toml, f"{A}@layers=-3,-2,-1")
    assert not counted and again.out_dir == result.out_dir  # the same resolved preset: the same cache
    embedder = load_embedder(f"{A}@layers=-3,-2,-1")
    assert embedder.layers == ["conv4", "conv5", "features"]
    for f in files:
        assert default[f].shape == (128 + 64 + 64,)
        np.testing.assert_array_equal(default[f], embedder.embed(f))
        np.testing.assert_array_equal(written[f], default[f])
        np.testing.assert_allclose(default[f][-64:], plain[f], rtol=1e-6, atol=1e-7)  # features' mean is the old vector
