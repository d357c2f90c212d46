"""probe-auto: grouped folds, the batched CV fit, block scaling, nested CV, the averaged probe.

Known answers: the batched linear fit is scikit-learn's LogisticRegression (multilabel: one per tag)
and Ridge(alpha = 1 / C) (regression) on the fold's standardised inputs; grouped folds never split a
group; the averaged probe's output is the mean of its members' probabilities computed with numpy.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _multilabel(rng, n=80, dim=6, tags=3):
    x = rng.standard_normal((n, dim))
    w = rng.standard_normal((dim, tags))
    y = (x @ w + 0.5 * rng.standard_normal((n, tags)) > 0.3).astype(np.float32)
    return x.astype(np.float32), y


def test_batched_linear_fit_is_sklearn_logistic_regression_per_fold_and_c(rng):
    from sklearn.linear_model import LogisticRegression

    from musetag.training.probe_cv import _standardised, batched_fit

    x, y = _multilabel(rng)
    masks = np.zeros((2, len(y)), bool)
    masks[0, :60] = True
    masks[1, 20:] = True
    cs = [0.1, 1.0]
    z = np.stack([_standardised(x, m, [x.shape[1]]) for m in masks]).astype(np.float32)
    logits = batched_fit("linear", "multilabel", y.shape[1], z, y, masks, cs, seed=0, hidden=8, max_iter=500)
    for p, (m, c) in enumerate(zip(masks, cs)):
        for t in range(y.shape[1]):
            ref = LogisticRegression(C=c, tol=1e-10, max_iter=5000).fit(z[p][m], y[m, t]).decision_function(z[p])
            np.testing.assert_allclose(logits[p, :, t], ref, atol=2e-3)


def test_batched_linear_regression_is_sklearn_ridge(rng):
    from sklearn.linear_model import Ridge

    from musetag.training.probe_cv import _standardised, batched_fit

    x = rng.standard_normal((50, 5)).astype(np.float32)
    y = (x @ rng.standard_normal((5, 2)) + 0.3 * rng.standard_normal((50, 2))).astype(np.float32)
    mask = np.ones((1, 50), bool)
    z = _standardised(x, mask[0], [5])[None].astype(np.float32)
    out = batched_fit("linear", "regression", 2, z, y, mask, [0.5], seed=0, hidden=8, max_iter=500)[0]
    ref = Ridge(alpha=1 / 0.5).fit(z[0], y).predict(z[0])
    np.testing.assert_allclose(out, ref, atol=1e-3)


def test_grouped_folds_keep_each_group_in_one_fold_and_cover_every_track(rng):
    from musetag.training.probe_cv import make_folds

    _, y = _multilabel(rng, n=60)
    groups = [f"a{i // 3}" for i in range(60)]
    folds = make_folds("multilabel", y, groups, 5, seed=0)
    held = np.concatenate([te for _, te in folds])
    assert sorted(held.tolist()) == list(range(60))
    for tr, te in folds:
        assert not {groups[i] for i in tr} & {groups[i] for i in te}
    from musetag.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^mine.toml: only 3 groups .*select.folds=N"):  # named the file
        make_folds("multilabel", y, [f"a{i % 3}" for i in range(60)], 5, seed=0, where="mine.toml")


def test_rare_tags_are_flagged_for_the_choice():
    from musetag.training.probe_cv import rare_outputs

    y = np.zeros((20, 3), np.float32)
    y[:10, 0] = 1  # 10 positives
    y[:4, 1] = 1  # 4 < 5 folds
    y[:, 2] = 1  # no negative
    assert rare_outputs("multilabel", y, 5).tolist() == [False, True, True]
    assert rare_outputs("multiclass", np.array([0] * 10 + [1] * 3), 5).tolist() == [False, True]


def test_block_scaling_gives_each_backbone_the_same_total_variance(rng):
    from musetag.training.probe_cv import _standardised, block_scales

    assert block_scales([64]) == [1.0]
    x = np.concatenate([rng.standard_normal((40, 8)) * 5, rng.standard_normal((40, 32))], axis=1)
    z = _standardised(x, np.ones(40, bool), [8, 32])
    assert z[:, :8].var(0).sum() == pytest.approx(z[:, 8:].var(0).sum(), rel=1e-6)
    assert z.var(0).sum() == pytest.approx(40, rel=1e-6)  # the total is unchanged


def test_probe_average_is_the_mean_of_its_members_probabilities(rng):
    import torch

    from musetag.models import create_model

    members = [{"name": "probe_linear", "args": {}, "columns": [[0, 3]]},
               {"name": "probe_mlp", "args": {"hidden": 4}, "columns": [[3, 5], [0, 1]]}]
    model = create_model("probe_average", n_classes=2, members=members, task="multilabel").eval()
    x = torch.as_tensor(rng.standard_normal((6, 5)), dtype=torch.float32)
    with torch.no_grad():
        a = torch.sigmoid(model.members[0](x[:, :3]))
        b = torch.sigmoid(model.members[1](torch.cat([x[:, 3:5], x[:, :1]], 1)))
        got = torch.sigmoid(model(x))
    np.testing.assert_allclose(got.numpy(), ((a + b) / 2).numpy(), atol=1e-5)
    rebuilt = create_model("probe_average", **model.musetag_config["args"])
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt(x).numpy(), model(x).numpy(), atol=1e-6)


def test_nested_cv_scores_top_m_on_held_out_folds_only(rng):
    from musetag.training.probe_cv import Candidate, make_folds, nested

    _, y = _multilabel(rng, n=60)
    folds = make_folds("multilabel", y, None, 3, seed=0)
    good = Candidate(("a",), "linear", [1.0], oof=[y + 0.1 * rng.random(y.shape)], pooled=[0.9])
    bad = Candidate(("b",), "linear", [1.0], oof=[5 * rng.random(y.shape)], pooled=[0.5])
    info = nested([bad, good], y, "multilabel", folds, np.ones(3, bool), sizes=(1, 2))
    assert info["m"] == [1, 2]
    assert info["score"][0] == pytest.approx(1.0)  # the good candidate is ranked first on every inner set
    assert info["score"][1] < info["score"][0]  # averaging with noise hurts: nested CV says so


def _fill_cache(cache, backbone, paths, rng):
    """Cached embeddings of ``paths`` for ``backbone`` as a `prepare` would store them (random vectors of the
    backbone's width: the run's choice does not matter here, the package's arithmetic does)."""
    import json

    from musetag.data.cache import _feature_key
    from musetag.data.cache_arrays import CACHE_VERSION
    from musetag.data.embed_features import dataset_embedding_config, load_backbone
    from musetag.data.store import arrays_dir, audio_key

    config = dataset_embedding_config(backbone)  # what probe-auto's `embed:NAME` resolves to (its default layers)
    dim = int(load_backbone(config.embed).dim)
    settings = json.loads(json.dumps(_feature_key(config), default=str))
    arrays = arrays_dir(cache / "features", settings, "float32", CACHE_VERSION)
    arrays.mkdir(parents=True, exist_ok=True)
    for p in paths:
        np.save(arrays / audio_key(p), rng.standard_normal((dim, 1)).astype(np.float32))


def _jazz_dataset(tmp_path, splits, tag_of, group_of):
    """20 gtzan3 jazz clips in ``tmp_path/m.csv`` (row i: ``tag_of(i)``, ``splits[i]``, ``group_of(i)``) and a
    multilabel ``embed:jamendo-crnn`` dataset ``tmp_path/ds.toml`` over them; returns the clips."""
    import csv

    from conftest import shared_path

    files = sorted((shared_path("gtzan3") / "audio" / "jazz").glob("*.mp3"))[:20]
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "tags", "split", "group"])
        for i, (f, s) in enumerate(zip(files, splits)):
            w.writerow([f, tag_of(i), s, group_of(i)])
    (tmp_path / "ds.toml").write_text('reader = "csv"\ntask = "multilabel"\npreset = "embed:jamendo-crnn"\n'
                                      '[paths]\nmanifest = "m.csv"\n')
    return files


def test_probe_auto_run_packages_into_one_tagger_of_audio(tmp_path, rng):
    import json

    import musetag
    from conftest import pretrained_package
    from musetag.inference import Tagger
    from musetag.data.embed_features import load_backbone
    from musetag.models.weights import load_checkpoint
    from musetag.tag.package_from_run import create_package

    backbones = ["jamendo-crnn", "msd-crnn"]  # one front end: a pair of them makes one package
    for b in backbones:
        pretrained_package(b)
    files = _jazz_dataset(tmp_path, ["train"] * 12 + ["validation"] * 4 + ["test"] * 4,
                          lambda i: "calm" if i % 2 else "dark", lambda i: f"artist{i // 2}")
    for b in backbones:
        _fill_cache(tmp_path / "cache" / b, b, [str(f) for f in files], rng)
    run = tmp_path / "run"
    musetag.train("probe-auto", data=tmp_path / "ds.toml", out=run,
                  sets=["progress=false", f"data.cache_dir={tmp_path / 'cache'}", f"select.backbones={backbones}",
                        "select.folds=3", "select.grid=[0.1, 1.0]", "select.mlp_grid=[1.0]", "select.hidden=8",
                        "select.bootstrap=50"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == 1  # epochs count from 1 everywhere (it said 0)
    sel = summary["select"]
    assert [c["candidate"] for c in sel["candidates"]].count("jamendo-crnn+msd-crnn / linear") == 1
    assert len(sel["candidates"]) == 6 and sel["grouped"] and sel["folds"] == 3
    assert sel["skipped_for_choice"] == []
    assert set(sel["test_interval"]) == {"PR-AUC-macro", "ROC-AUC-macro"}
    assert sel["chosen"] and sel["nested"]["chosen_m"] == len(sel["chosen"])

    pkg = create_package(run, tmp_path / "pkg")
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    from musetag.models import create_model

    model = create_model(ckpt["model"]["name"], **ckpt["model"]["args"])
    model.load_state_dict(ckpt["state_dict"])
    import soundfile as sf

    from musetag.audio import load_audio

    clip, sr = load_audio(files[-1], sample_rate=16000, mono=True)
    audio = str(tmp_path / "short.wav")  # 4 s: one window per backbone keeps the test quick
    sf.write(audio, np.asarray(clip).reshape(-1)[16000 * 5:16000 * 9], sr)
    parts = ckpt["features"]["embed"].split("+")
    vec = np.concatenate([load_backbone(p).embed(audio) for p in parts]).astype(np.float32)
    import torch

    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(torch.as_tensor(vec)[None])).numpy()[0]
    np.testing.assert_allclose(Tagger.from_package(pkg).tag(audio).scores_array, expected, atol=1e-5)


def test_every_tag_rarer_than_the_folds_is_a_clear_error(tmp_path, rng):
    """Nine tags with two positives each and 3 folds: sklearn's "n_splits=3 cannot be greater than the number of
    members in each class" escaped as a traceback; now the error names the tags, their counts and the fix."""
    import musetag
    from conftest import pretrained_package
    from musetag.errors import ConfigError

    pretrained_package("jamendo-crnn")
    files = _jazz_dataset(tmp_path, ["train"] * 12 + ["validation"] * 6 + ["test"] * 2,
                          lambda i: "abcdefghi"[i // 2] if i < 18 else "a", lambda i: f"artist{i}")
    _fill_cache(tmp_path / "cache" / "jamendo-crnn", "jamendo-crnn", [str(f) for f in files], rng)
    with pytest.raises(ConfigError, match=r"every tag has fewer positives \(or negatives\) than folds \(3\).*a: 2, b: 2"
                                          r".*lower select.folds"):
        musetag.train("probe-auto", data=tmp_path / "ds.toml", out=tmp_path / "run",
                      sets=["progress=false", f"data.cache_dir={tmp_path / 'cache'}", "select.backbones=['jamendo-crnn']",
                            "select.folds=3"])


def test_without_a_group_column_folds_are_stratified_with_one_warning(caplog):
    import logging

    from musetag.data.manifest import TrackRecord
    from musetag.training.probe_auto import fold_groups

    grouped = [TrackRecord(id=str(i), group=f"a{i // 2}") for i in range(4)]
    assert fold_groups(grouped, "mine.toml", 5) == ["a0", "a0", "a1", "a1"]
    with caplog.at_level(logging.WARNING):
        assert fold_groups([TrackRecord(id="x"), TrackRecord(id="y")], "mine.toml", 5) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "mine.toml: no group column" in warnings[0].getMessage()
    # some empty cells: each such track is its own group, the others stay grouped (all grouping was dropped,
    # with the warning "no group column")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        groups = fold_groups([TrackRecord(id="x"), *grouped, TrackRecord(id="z")], "mine.toml", 5)
    assert groups[1:5] == ["a0", "a0", "a1", "a1"] and len({groups[0], groups[5]} - set(groups[1:5])) == 2
    message = caplog.records[-1].getMessage()
    assert "mine.toml: 2 of 6 train+validation tracks have an empty group (e.g. x, z)" in message


def test_a_regression_probe_package_tags_audio_with_values(tmp_path, rng):
    import csv
    import json

    import soundfile as sf
    import torch

    import musetag
    from conftest import pretrained_package, shared_path
    from musetag.audio import load_audio
    from musetag.models import create_model
    from musetag.inference import Tagger
    from musetag.data.embed_features import load_backbone
    from musetag.models.weights import load_checkpoint
    from musetag.tag.package_from_run import create_package

    backbone = "jamendo-crnn"
    pretrained_package(backbone)
    files = sorted((shared_path("gtzan3") / "audio" / "rock").glob("*.mp3"))[:16]
    splits = ["train"] * 10 + ["validation"] * 3 + ["test"] * 3
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "tags", "split", "group", "valence", "arousal"])
        for i, (f, s) in enumerate(zip(files, splits)):
            w.writerow([f, "", s, f"artist{i // 2}", i / 16, 1 - i / 32])
    (tmp_path / "ds.toml").write_text('reader = "csv"\ntask = "regression"\ntargets = ["valence", "arousal"]\n'
                                      f'preset = "embed:{backbone}"\n[paths]\nmanifest = "m.csv"\n')
    _fill_cache(tmp_path / "cache" / backbone, backbone, [str(f) for f in files], rng)
    run = tmp_path / "run"
    musetag.train("probe-auto", data=tmp_path / "ds.toml", out=run,
                  sets=["progress=false", f"data.cache_dir={tmp_path / 'cache'}", f"select.backbones=['{backbone}']",
                        "select.folds=3", "select.grid=[1.0]", "select.mlp_grid=[1.0]", "select.hidden=8",
                        "select.bootstrap=20"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric"] == "r2_mean" and "pearson_r_mean" in summary["select"]["test_interval"]
    pkg = create_package(run, tmp_path / "pkg")
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    model = create_model(ckpt["model"]["name"], **ckpt["model"]["args"])
    model.load_state_dict(ckpt["state_dict"])
    clip, sr = load_audio(files[-1], sample_rate=16000, mono=True)
    audio = str(tmp_path / "short.wav")
    sf.write(audio, np.asarray(clip).reshape(-1)[16000 * 5:16000 * 9], sr)
    vec = load_backbone(ckpt["features"]["embed"]).embed(audio).astype(np.float32)  # the layers it was trained on
    with torch.no_grad():
        expected = model.eval()(torch.as_tensor(vec)[None]).numpy()[0]
    result = Tagger.from_package(pkg).tag(audio)
    assert result.tags == ["valence", "arousal"] and result.decisions == []
    np.testing.assert_allclose(result.scores_array, expected, atol=1e-5)


def _arrays(rng, n=60, tags=4, widths=(6, 9, 5)):
    from musetag.training.probe_auto import Arrays

    z = rng.standard_normal((n, 3))
    y = (z @ rng.standard_normal((3, tags)) + 0.5 * rng.standard_normal((n, tags)) > 0.4).astype(np.float32)
    blocks = {}
    for i, w in enumerate(widths):
        x = (z @ rng.standard_normal((3, w)) + (0.5 + i) * rng.standard_normal((n, w))).astype(np.float32)
        blocks[f"b{i}"] = {"train": x[:45], "validation": x[45:], "test": x[:0]}
    return Arrays("multilabel", [f"t{i}" for i in range(tags)],
                  {"train": [str(i) for i in range(45)], "validation": [str(i) for i in range(45, n)], "test": []},
                  {"train": y[:45], "validation": y[45:], "test": y[:0]}, [f"a{i // 3}" for i in range(n)], blocks, None)


def test_candidates_fitted_side_by_side_equal_the_serial_search_bit_for_bit(rng, caplog):
    """Two threads (each fit on one torch thread) give the same candidates, in the same order, with the same
    out-of-fold predictions as one; the log counts candidate i/N with the elapsed time."""
    import logging
    from types import SimpleNamespace

    import torch

    from musetag.training.config import SelectSection
    from musetag.training.probe_auto import search
    from musetag.training.probe_cv import make_folds, rare_outputs

    arrays = _arrays(rng)
    y = np.concatenate([arrays.y["train"], arrays.y["validation"]])
    folds = make_folds("multilabel", y, arrays.groups, 3, 0)
    keep = ~rare_outputs("multilabel", y, 3)
    sel = SelectSection(backbones=list(arrays.blocks), folds=3, pair_top=2, hidden=8, max_iter=30, grid=[0.1, 1.0],
                        mlp_grid=[1.0], packable=False)
    cfg = SimpleNamespace(seed=0, select=sel)
    threads = torch.get_num_threads()
    with caplog.at_level(logging.INFO, logger="musetag.training.probe_auto"):
        serial = search(cfg, arrays, list(arrays.blocks), folds, keep, workers=1)
    side = search(cfg, arrays, list(arrays.blocks), folds, keep, workers=2)
    assert torch.get_num_threads() == threads  # restored
    assert [c.name for c in serial] == [c.name for c in side] == [
        "b0 / linear", "b0 / mlp", "b1 / linear", "b1 / mlp", "b2 / linear", "b2 / mlp"] + _serial_pairs(serial)
    for a, b in zip(serial, side):
        assert a.pooled == b.pooled and a.per_fold == b.per_fold
        for pa, pb in zip(a.oof, b.oof):
            assert np.array_equal(pa, pb)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[candidate")]
    assert len(lines) == 8 and lines[0].startswith("[candidate 1/8]") and lines[-1].startswith("[candidate 8/8]")
    assert all("s elapsed" in line for line in lines)


def _serial_pairs(cands) -> list[str]:
    """The pair stage's names: the two best single blocks (by their best head), both heads."""
    best = {}
    for c in cands[:6]:
        best[c.blocks[0]] = max(best.get(c.blocks[0], -np.inf), c.score)
    a, b = sorted(best, key=lambda k: -best[k])[:2]
    return [f"{a}+{b} / linear", f"{a}+{b} / mlp"]


def test_the_choice_scores_pr_auc_macro_alone_as_the_full_score_does(rng):
    """metric_on's multilabel figure is score()'s PR-AUC-macro (the official per-tag arithmetic) on the kept tags,
    ties, tags without a positive and float64 means of float32 outputs included."""
    from musetag.training.probe_cv import metric_on
    from musetag.training.scoring import score

    for trial in range(20):
        n, k = int(rng.integers(6, 120)), int(rng.integers(2, 12))
        y = (rng.random((n, k)) < 0.25).astype(np.float32)
        y[:, 0] = 0  # no positive: not scored
        p = rng.random((n, k)).astype(np.float32)
        if trial % 2:
            p = np.round(p * 4) / 4  # ties
        if trial % 3 == 2:
            p = p.astype(np.float64)
        keep = np.ones(k, bool)
        keep[-1] = False
        ref = score(p[:, keep], y[:, keep], "multilabel")["pr_auc_macro"]
        got = metric_on(p, y, "multilabel", keep)
        assert (np.isnan(ref) and np.isnan(got)) or got == pytest.approx(ref, abs=1e-12)


def test_a_grid_whose_edge_wins_is_extended_past_it_and_no_further_than_needed(rng):
    """Few noisy tracks in many dimensions want strong regularisation: from the grid [1, 10] the best C is 1, its
    edge, so 0.1 and then 0.01 are fitted (one grid ratio each); the extended values score as the same C values
    given in the grid do. A grid whose best lies inside, or extend = 0, is left as given."""
    from musetag.training.probe_cv import Candidate, cross_validate, make_folds

    n, dim = 60, 40
    x = rng.standard_normal((n, dim)).astype(np.float32)
    y = (x[:, :1] + 1.5 * rng.standard_normal((n, 2)) > 0).astype(np.float32)
    folds = make_folds("multilabel", y, None, 3, seed=0)
    keep = np.ones(2, bool)
    kw = dict(seed=0, hidden=8, max_iter=2000)

    def cv(grid, extend):
        return cross_validate(Candidate(("a",), "linear", list(grid)), "multilabel", 2, x, y, [dim], folds, keep,
                              extend=extend, **kw)

    full = cv([1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0], 0)
    assert full.best not in (4, 5)  # the data want a C below 1: the premise of this test
    grown = cv([1.0, 10.0], 2)
    assert grown.grid == pytest.approx([0.01, 0.1, 1.0, 10.0])
    assert len(grown.oof) == len(grown.pooled) == len(grown.per_fold) == 4
    np.testing.assert_allclose(grown.pooled[:2], full.pooled[2:4], atol=2e-3)  # the extended values
    # the given ones too, more loosely: all of a call's fits share one L-BFGS run (batched_fit), and the weakest C,
    # slowest to converge, stops at a point that depends on what else is in the batch (measured 4e-3 apart on
    # another CPU's floating-point sums)
    np.testing.assert_allclose(grown.pooled[2:], full.pooled[4:], atol=1e-2)
    assert grown.row()["grid"][0]["C"] == pytest.approx(0.01)  # the table shows the extended grid
    assert cv([1.0, 10.0], 0).grid == [1.0, 10.0]
    inside = cv([full.grid[full.best] / 10, full.grid[full.best], full.grid[full.best] * 10], 2)
    assert len(inside.grid) == 3 and inside.best == 1
    assert cv([1.0], 2).grid == [1.0]  # one value: no direction to go


def test_select_layers_applies_one_layer_rule_to_every_backbone(tmp_path):
    """``select.layers`` (a larger search): every backbone written without options gets ``@layers=RULE``; one with
    its own options or ``:scores`` is kept; a bad rule is refused naming the fix. The run embeds, chooses and
    records those vectors (here every tap's mean: one ``mean`` row per tap of jamendo-crnn)."""
    import csv
    import json

    import musetag
    from conftest import pretrained_package, shared_path
    from musetag.errors import ConfigError
    from musetag.training.probe_auto import with_layers

    assert with_layers(["a", "b@layers=features", "c:scores"], "all") == ["a@layers=all", "b@layers=features", "c:scores"]
    assert with_layers(["a"], "") == ["a"]
    with pytest.raises(ConfigError, match="select.layers = 'all,pool=median'.*median"):
        with_layers(["a"], "all,pool=median")

    backbone = "jamendo-crnn"
    pretrained_package(backbone)
    files = sorted((shared_path("gtzan3") / "audio" / "rock").glob("*.mp3"))[:8] + \
        sorted((shared_path("gtzan3") / "audio" / "classical").glob("*.mp3"))[:8]
    splits = (["train"] * 5 + ["validation"] * 2 + ["test"]) * 2
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "tags", "split", "group"])
        for i, (f, s) in enumerate(zip(files, splits)):
            w.writerow([f, "rock" if i < 8 else "classical", s, f"artist{i}"])
    (tmp_path / "ds.toml").write_text(f'reader = "csv"\ntask = "multiclass"\npreset = "embed:{backbone}"\n'
                                      '[paths]\nmanifest = "m.csv"\n')
    run = tmp_path / "run"
    result = musetag.train("probe-auto", data=tmp_path / "ds.toml", out=run,
                  sets=["progress=false", f"data.cache_dir={tmp_path / 'cache'}", f"select.backbones=['{backbone}']",
                        "select.layers='all,pool=mean'", "select.folds=3", "select.grid=[1.0]", "select.mlp_grid=[1.0]",
                        "select.hidden=8", "select.bootstrap=0"])
    summary = json.loads((run / "summary.json").read_text())
    assert result.best_epoch == summary["best_epoch"] == 1  # what `musetag train` prints said 0
    chosen = summary["select"]
    assert chosen["embedding"].startswith(f"{backbone}@layers=all,pool=mean")
    taps = [r["layer"] for r in chosen["layout"]]
    assert {r["stat"] for r in chosen["layout"]} == {"mean"} and len(taps) == len(set(taps)) == 6  # layer1..5, features


@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
def test_probe_auto_runs_without_a_validation_split_and_its_run_reports(tmp_path, rng, task):
    """Train and test only, a common layout: refused with "no tracks in split 'validation'", although the choice
    cross-validates on train+validation pooled; the run's empty validation predictions then broke `report`
    (and scoring them broke a multiclass run)."""
    import json

    import musetag
    from conftest import pretrained_package
    from musetag.evaluate.report import make_report

    pretrained_package("jamendo-crnn")
    files = _jazz_dataset(tmp_path, ["train"] * 16 + ["test"] * 4, lambda i: "calm" if i % 2 else "dark",
                          lambda i: f"artist{i // 2}")
    toml = tmp_path / "ds.toml"
    toml.write_text(toml.read_text().replace('task = "multilabel"', f'task = "{task}"'))
    _fill_cache(tmp_path / "cache" / "jamendo-crnn", "jamendo-crnn", [str(f) for f in files], rng)
    run = tmp_path / "run"
    musetag.train("probe-auto", data=tmp_path / "ds.toml", out=run,
                  sets=["progress=false", f"data.cache_dir={tmp_path / 'cache'}", "select.backbones=['jamendo-crnn']",
                        "select.folds=3", "select.grid=[0.1, 1.0]", "select.mlp_grid=[1.0]", "select.hidden=8",
                        "select.bootstrap=20"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_tracks"] == {"train": 16, "validation": 0, "test": 4} and summary["select"]["chosen"]
    assert np.load(run / "predictions" / "test.npy").shape == (4, 2)
    assert make_report(run, tmp_path / "report").is_file()


def test_an_unknown_backbone_in_select_backbones_is_named_there_before_anything_is_embedded(tmp_path):
    """It was blamed on the dataset TOML ("ds.toml: preset embed:jamendo-musicn: ..."), whose own preset was
    fine, and found only after the backbones before it had been embedded."""
    import musetag
    from musetag.errors import ConfigError

    _jazz_dataset(tmp_path, ["train"] * 16 + ["test"] * 4, lambda i: "calm", lambda i: f"artist{i}")
    with pytest.raises(ConfigError, match=r"^select.backbones: 'jamendo-musicn' \(from --set .*ds.toml is not at "
                                          r"fault\): 'jamendo-musicn' is neither a pretrained model"):
        musetag.train("probe-auto", data=tmp_path / "ds.toml", out=tmp_path / "run",
                      sets=["progress=false", f"data.cache_dir={tmp_path / 'cache'}",
                            "select.backbones=['jamendo-crnn', 'jamendo-musicn']"])
    assert not (tmp_path / "cache").exists()
