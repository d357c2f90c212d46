"""Bootstrap intervals and the paired bootstrap test."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_path
from musetag.cli import main
from musetag.errors import EvaluationError
from musetag.evaluate.stats import bootstrap_ci, paired_bootstrap


def _data(rng, n=300, k=5, signal=1.0):
    y = rng.random((n, k)) < 0.2
    y[:3] = True
    return y, y * signal + rng.normal(size=(n, k))


def test_bootstrap_interval_contains_value_and_narrows_with_more_tracks(rng):
    y, s = _data(rng, n=200)
    ci = bootstrap_ci(y, s, n_resamples=60, seed=1)
    for row in ci.values():
        assert row["low"] < row["value"] < row["high"]
    y2, s2 = _data(rng, n=2000)
    ci2 = bootstrap_ci(y2, s2, n_resamples=60, seed=1)
    width = lambda c: c["ROC-AUC-macro"]["high"] - c["ROC-AUC-macro"]["low"]  # noqa: E731
    assert width(ci2) < width(ci)
    basic = bootstrap_ci(y, s, n_resamples=60, seed=1, method="basic")["PR-AUC-macro"]
    assert basic["low"] == pytest.approx(2 * basic["value"] - ci["PR-AUC-macro"]["high"])


def test_paired_bootstrap_detects_a_real_difference_and_not_a_fake_one(rng):
    y, good = _data(rng, n=600, signal=1.5)
    bad = y * 0.3 + rng.normal(size=y.shape)
    r = paired_bootstrap(y, good, bad, n_resamples=100, seed=0)
    assert r["difference"] > 0 and r["p_value"] < 0.05 and r["low"] > 0
    reverse = paired_bootstrap(y, bad, good, n_resamples=100, seed=0)
    assert reverse["p_value"] > 0.9 and reverse["p_value_two_sided"] < 0.05
    same = paired_bootstrap(y, good, good + 1e-9 * rng.normal(size=y.shape), n_resamples=50)
    assert same["p_value"] > 0.05


def test_bad_inputs(rng):
    y, s = _data(rng)
    with pytest.raises(EvaluationError, match="shape"):
        paired_bootstrap(y, s, s[:-1])
    with pytest.raises(EvaluationError, match="unknown metric"):
        bootstrap_ci(y, s, metrics=("accuracy",))


@pytest.mark.shared
def test_compare_cli_on_bour_submissions(capsys):
    gt = shared_path("mtg-jamendo", "mediaeval-results", "groundtruth.npy")
    sub = shared_path("bour2021-predictions", "submitted")
    rc = main(["compare", str(sub / "3-average/predictions.npy"), str(sub / "1-convs/predictions.npy"),
               "-g", str(gt), "-n", "30"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "A PR-AUC-macro\t0.150872" in out and "B PR-AUC-macro\t0.146867" in out
    assert "p-value" in out


@pytest.mark.shared
def test_score_cli_bootstrap(capsys):
    res = shared_path("mtg-jamendo", "mediaeval-results")
    rc = main(["score", str(res / "baseline_vggish_predictions.npy"), "-g", str(res / "groundtruth.npy"),
               "--bootstrap", "20"])
    out = capsys.readouterr().out
    assert rc == 0 and "ROC-AUC-macro\t0.725821\t95% CI [" in out


# the loop over materialised resamples that the count-based scoring replaced (issue 19), kept as the reference
def _old_paired_bootstrap(gt, a, b, n_resamples, seed, metric, confidence=0.95):
    from musetag.evaluate.stats import METRICS, _macro, _resamples

    fn = METRICS[metric]
    diffs = np.empty(n_resamples)
    for i, idx in enumerate(_resamples(len(gt), n_resamples, seed)):
        y = gt[idx]
        both = fn(np.concatenate([y, y], axis=1), np.concatenate([a[idx], b[idx]], axis=1))
        k = y.shape[1]
        diffs[i] = np.nanmean(both[:k]) - np.nanmean(both[k:])
    diffs = diffs[np.isfinite(diffs)]
    alpha = (1 - confidence) / 2
    return {"a": _macro(fn, gt, a), "b": _macro(fn, gt, b),
            "low": float(np.quantile(diffs, alpha)), "high": float(np.quantile(diffs, 1 - alpha)),
            "p_value": float((np.sum(diffs <= 0) + 1) / (len(diffs) + 1)),
            "p_value_two_sided": float(min(1.0, 2 * min(np.sum(diffs <= 0) + 1, np.sum(diffs >= 0) + 1)
                                           / (len(diffs) + 1)))}


def _old_bootstrap_samples(gt, pred, n_resamples, seed, metric):
    from musetag.evaluate.stats import METRICS, _macro, _resamples

    return np.array([_macro(METRICS[metric], gt[idx], pred[idx]) for idx in _resamples(len(gt), n_resamples, seed)])


@pytest.mark.parametrize("metric", ["PR-AUC-macro", "ROC-AUC-macro"])
@pytest.mark.parametrize("levels", [0, 4])  # 4: heavy ties between different tracks
def test_count_based_resampling_equals_scoring_the_resampled_matrices(rng, metric, levels):
    n, k = 250, 6
    gt = rng.random((n, k)) < 0.1
    gt[:, 2] = False
    gt[7, 2] = True  # a rare tag: missing from many resamples (NaN there, left out of the mean)
    a = rng.random((n, k)) + 0.3 * gt
    b = rng.random((n, k)) + 0.25 * gt
    if levels:
        a, b = np.round(a * levels) / levels, np.round(b * levels) / levels
    new = paired_bootstrap(gt, a, b, n_resamples=300, seed=5, metric=metric)
    old = _old_paired_bootstrap(gt, a, b, 300, 5, metric)
    assert new["p_value"] == old["p_value"] and new["p_value_two_sided"] == old["p_value_two_sided"]
    for key in ("a", "b", "low", "high"):
        assert new[key] == pytest.approx(old[key], abs=1e-12)
    ci = bootstrap_ci(gt, a, n_resamples=120, seed=2, metrics=(metric,))[metric]
    samples = _old_bootstrap_samples(gt, a, 120, 2, metric)
    assert ci["low"] == pytest.approx(np.quantile(samples, 0.025), abs=1e-12)
    assert ci["high"] == pytest.approx(np.quantile(samples, 0.975), abs=1e-12)
    assert ci["mean"] == pytest.approx(samples.mean(), abs=1e-12)


def test_identical_systems_give_no_difference():
    rng = np.random.default_rng(1)
    gt = rng.random((100, 4)) < 0.2
    gt[0] = True
    a = rng.random((100, 4))
    r = paired_bootstrap(gt, a, a.copy(), n_resamples=50, seed=0)
    assert r["difference"] == 0 and r["low"] == 0 and r["high"] == 0 and r["p_value_two_sided"] == 1.0


def test_negative_resample_counts_are_argument_errors(tmp_path, rng, capsys):
    """A negative count was a numpy traceback (``negative dimensions are not allowed``)."""
    y, s = _data(rng, n=40)
    np.save(tmp_path / "y.npy", y.astype(np.float32))
    np.save(tmp_path / "p.npy", s.astype(np.float32))
    for fn in (lambda: bootstrap_ci(y, s, n_resamples=-5), lambda: paired_bootstrap(y, s, s, n_resamples=-1)):
        with pytest.raises(EvaluationError, match="n_resamples must be at least 1"):
            fn()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # argparse's usage error
        main(["score", str(tmp_path / "p.npy"), "-g", str(tmp_path / "y.npy"), "--bootstrap", "-5"])
    assert exc.value.code == 2
    assert "-5 is negative" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "p.npy"), str(tmp_path / "p.npy"), "-g", str(tmp_path / "y.npy"),
                 "--resamples", "-1"]) == 2
    assert "--resamples must be at least 1" in capsys.readouterr().err  # the flag, not the library's argument


def test_an_interval_from_few_resamples_is_flagged(tmp_path, rng, capsys):
    """`compare -n 1` printed a "95% CI" that did not contain the estimate, without a word."""
    y, s = _data(rng, n=40)
    np.save(tmp_path / "y.npy", y.astype(np.float32))
    np.save(tmp_path / "p.npy", s.astype(np.float32))
    np.save(tmp_path / "q.npy", (s + rng.normal(size=s.shape)).astype(np.float32))
    args = [str(tmp_path / "p.npy"), str(tmp_path / "q.npy"), "-g", str(tmp_path / "y.npy")]
    assert main(["compare", *args, "-n", "1"]) == 0
    assert "a 95% interval from 1 resample(s) is not reliable" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "p.npy"), "-g", str(tmp_path / "y.npy"), "--bootstrap", "5"]) == 0
    assert "from 5 resample(s) is not reliable" in capsys.readouterr().err
    assert main(["compare", *args, "-n", "200"]) == 0
    assert "not reliable" not in capsys.readouterr().err
