"""Ensembles: each method's known behaviour on synthetic models, fitting on validation only, and
the shared Bour 2021 outputs (24 models) against the published hand-picked 3-average."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from musetag.cli import main
from musetag.errors import EvaluationError
from musetag.evaluate import average_precision_per_tag
from musetag.evaluate.ensemble import METHODS, _folds, combine, ensemble

PUBLISHED_3_AVERAGE = 0.150872  # bour2021-predictions/submitted/3-average/results.tsv


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _models(rng, n=400, k=6, quality=(2.0, 0.2, 0.2, 0.2)):
    """Validation/test outputs of models whose signal strength is ``quality``."""
    def split(n):
        y = rng.random((n, k)) < 0.15
        y[:2] = True
        preds = [_sigmoid(q * (y * 2 - 1) + rng.normal(size=(n, k))) for q in quality]
        return y, preds
    vy, vp = split(n)
    ty, tp = split(n)
    return vy, vp, ty, tp


def test_uniform_combinations_have_their_formulas(rng):
    vy, vp, ty, tp = _models(rng)
    stack = np.stack(vp)
    r = ensemble(vp, vy, method="mean", progress=False)
    np.testing.assert_allclose(r.validation_predictions, stack.mean(0))
    r = ensemble(vp, vy, method="logit_mean", progress=False)
    logit = np.log(np.clip(stack, 1e-7, 1 - 1e-7) / (1 - np.clip(stack, 1e-7, 1 - 1e-7)))
    np.testing.assert_allclose(r.validation_predictions, _sigmoid(logit.mean(0)), rtol=1e-6)
    r = ensemble(vp, vy, method="rank_mean", progress=False)
    from scipy.stats import rankdata
    np.testing.assert_allclose(r.validation_predictions, (rankdata(stack, axis=1) / stack.shape[1]).mean(0))


def test_greedy_and_weights_find_the_good_model(rng):
    vy, vp, ty, tp = _models(rng)
    for method in ("greedy", "weights"):
        r = ensemble(vp, vy, test=tp, test_targets=ty, method=method, progress=False, bags=1, init=1)
        w = np.asarray(r.weights)
        assert w.argmax() == 0, method
        assert w[0] > 1.5 / len(w), method  # more than uniform
        mean = ensemble(vp, vy, test=tp, test_targets=ty, method="mean", progress=False)
        assert r.validation_score > mean.validation_score
        assert r.test_score > mean.test_score


def test_greedy_selects_with_replacement_and_bags(rng):
    vy, vp, _, _ = _models(rng, quality=(2.0, 1.5, 0.1, 0.1))
    r = ensemble(vp, vy, method="greedy", progress=False, bags=3, fraction=0.75, steps=6, init=1, seed=3)
    assert r.params["bags"] == 3
    w = np.asarray(r.weights)
    assert w[:2].sum() > 0.6 and abs(w.sum() - 1) < 1e-6


def test_per_tag_picks_each_tags_expert(rng):
    n, k = 600, 4
    y = rng.random((n, k)) < 0.2
    y[:2] = True
    # model j is good on tag j only
    preds = []
    for j in range(k):
        q = np.full(k, 0.05)
        q[j] = 3.0
        preds.append(_sigmoid(q * (y * 2 - 1) + rng.normal(size=(n, k))))
    r = ensemble(preds, y, method="per_tag", progress=False, shrinkage=1.0)
    w = np.asarray(r.weights)  # (models, tags)
    assert w.shape == (k, k)
    np.testing.assert_array_equal(w.argmax(axis=0), np.arange(k))
    cv = ensemble(preds, y, method="per_tag", progress=False)  # shrinkage chosen by CV
    assert cv.params["shrinkage"] >= 0.5
    assert set(cv.params["cv_by_shrinkage"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}


def test_fitting_never_sees_test_targets(rng):
    vy, vp, ty, tp = _models(rng)
    a = ensemble(vp, vy, test=tp, test_targets=ty, method="auto", progress=False)
    b = ensemble(vp, vy, test=tp, test_targets=~ty, method="auto", progress=False)
    assert a.method == b.method and a.weights == b.weights
    np.testing.assert_array_equal(a.test_predictions, b.test_predictions)
    assert set(a.candidates) == set(METHODS)
    assert a.cv_score == max(c["cv"] for c in a.candidates.values())


def test_folds_are_contiguous_or_keep_groups_together():
    folds = _folds(10, 2)
    assert folds[0][1].tolist() == [0, 1, 2, 3, 4] and folds[1][1].tolist() == [5, 6, 7, 8, 9]
    groups = np.array(["a", "b", "a", "c", "b", "d", "c", "d", "a", "e"])
    for train, held in _folds(10, 3, groups):
        assert not set(groups[train]) & set(groups[held])
    with pytest.raises(EvaluationError, match="groups"):
        _folds(4, 3, ["a", "a", "b", "b"])


def test_bad_inputs(rng):
    vy, vp, ty, tp = _models(rng)
    with pytest.raises(EvaluationError, match="same tracks"):
        ensemble([vp[0], vp[1][:-1]], vy, method="mean")
    with pytest.raises(EvaluationError, match="unknown ensemble method"):
        ensemble(vp, vy, method="median")
    with pytest.raises(EvaluationError, match="test prediction files"):
        ensemble(vp, vy, test=tp[:2], method="mean")
    bad = vp[0].copy()
    bad[3, 2] = np.nan
    with pytest.raises(EvaluationError, match="NaN"):
        ensemble([bad, vp[1]], vy, method="mean")


def test_combine_per_tag_weights(rng):
    stack = rng.random((3, 5, 2))
    w = np.array([[1, 0], [0, 1], [0, 0]], dtype=float)
    out = combine(stack, w)
    np.testing.assert_allclose(out[:, 0], stack[0, :, 0])
    np.testing.assert_allclose(out[:, 1], stack[1, :, 1])


def test_cli_with_run_folders(tmp_path, rng, capsys):
    vy, vp, ty, tp = _models(rng)
    runs = []
    for i in range(3):
        run = tmp_path / f"run{i}" / "predictions"
        run.mkdir(parents=True)
        np.save(run / "validation.npy", vp[i])
        np.save(run / "test.npy", tp[i])
        np.save(run / "validation_targets.npy", vy)
        np.save(run / "test_targets.npy", ty)
        runs.append(str(run.parent))
    out = tmp_path / "ens"
    rc = main(["ensemble", "--runs", *runs, "--method", "greedy", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "validation PR-AUC-macro" in text and "test PR-AUC-macro" in text
    meta = json.loads((out / "ensemble.json").read_text())
    assert meta["names"] == ["run0", "run1", "run2"] and meta["method"] == "greedy"
    test = np.load(out / "test.npy")
    assert test.shape == ty.shape
    assert (out / "results.tsv").read_text().startswith("ROC-AUC-macro\t")
    score = float(np.nanmean(average_precision_per_tag(ty, test)))
    assert f"test PR-AUC-macro {score:.6f}" in text


def _bour_args():
    bour = shared_path("bour2021-predictions")
    gt = shared_path("mtg-jamendo", "mediaeval-results", "groundtruth.npy")
    names = sorted(p.stem for p in (bour / "test").glob("*.npy"))
    assert len(names) == 24
    # the glob of validation/*.npy also catches targets.npy: the command leaves it out
    return (["--validation", *sorted(str(p) for p in (bour / "validation").glob("*.npy")),
             "--test", *[str(bour / "test" / f"{n}.npy") for n in names],
             "--validation-targets", str(bour / "validation" / "targets.npy"), "--test-targets", str(gt)])


@pytest.mark.shared
def test_bour_per_tag_ensemble_beats_the_published_average(tmp_path, capsys):
    rc = main(["ensemble", *_bour_args(), "--method", "per_tag", "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert rc == 0
    line = next(ln for ln in text.splitlines() if ln.startswith("test PR-AUC-macro"))
    assert float(line.split()[-1]) > PUBLISHED_3_AVERAGE
    meta = json.loads((tmp_path / "ensemble.json").read_text())
    assert len(meta["names"]) == 24 and "targets" not in meta["names"]


@pytest.mark.shared
def test_bour_mean_of_the_published_twelve_reproduces_3_average():
    """The published 3-average is the mean of two 6-model means: our mean of the same 12 models."""
    bour = shared_path("bour2021-predictions")
    names = [f"{a}-{m}-i{i}-{loss}" for a, m in (("convs", "m96"), ("filters", "m128"))
             for i in (128, 224) for loss in ("bce", "focal", "wbce")]
    vt = np.load(bour / "validation" / "targets.npy")
    r = ensemble([np.load(bour / "validation" / f"{n}.npy") for n in names], vt,
                 test=[np.load(bour / "test" / f"{n}.npy") for n in names],
                 test_targets=np.load(shared_path("mtg-jamendo", "mediaeval-results", "groundtruth.npy")),
                 method="mean", progress=False)
    assert f"{r.test_score:.6f}" == f"{PUBLISHED_3_AVERAGE:.6f}"
    np.testing.assert_allclose(r.test_predictions, np.load(bour / "submitted/3-average/predictions.npy"), atol=2e-7)


@pytest.mark.slow
@pytest.mark.shared
def test_bour_auto_beats_the_published_average(tmp_path, capsys):
    rc = main(["ensemble", *_bour_args(), "--method", "auto", "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert rc == 0
    line = next(ln for ln in text.splitlines() if ln.startswith("test PR-AUC-macro"))
    assert float(line.split()[-1]) > PUBLISHED_3_AVERAGE


def test_per_tag_tag_without_positives_keeps_uniform_weights(rng):
    vy, vp, _, _ = _models(rng)
    vy[:, 3] = False
    r = ensemble(vp, vy, method="per_tag", shrinkage=1.0, progress=False)
    np.testing.assert_allclose(np.asarray(r.weights)[:, 3], 1 / len(vp))
    assert np.isfinite(r.validation_score)
