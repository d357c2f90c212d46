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
    # more folds than rows was an IndexError deep in the per-tag CV (`ensemble --folds 100` on 8 tracks)
    with pytest.raises(EvaluationError, match="100 folds for 8 validation rows.*at most 8"):
        _folds(8, 100)


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
    # a tag list one name short: refused before anything is fitted or written (it wrote its outputs, then failed)
    (tmp_path / "short.txt").write_text("".join(f"t{i}\n" for i in range(ty.shape[1] - 1)))
    rc = main(["ensemble", "--runs", *runs, "--method", "mean", "--out", str(tmp_path / "ens2"), "--tags",
               str(tmp_path / "short.txt")])
    assert rc == 2 and f"{ty.shape[1] - 1} tag names for {ty.shape[1]} columns" in capsys.readouterr().err
    assert not (tmp_path / "ens2").exists()


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
    # the figure it reports is the one `musetag score` gives for the file it wrote (it was scored in
    # float64 and saved in float32: 0.151365 printed, 0.151270 from test.npy)
    from musetag.evaluate.metrics import mediaeval_table

    gt = np.load(shared_path("mtg-jamendo", "mediaeval-results", "groundtruth.npy"))
    table = mediaeval_table(gt, np.load(tmp_path / "test.npy"))
    assert line.split()[-1] == f"{meta['test_score']:.6f}" == f"{table['PR-AUC-macro']:.6f}"


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


# ---- issue 19: top-k, calibrated per-tag selection, --metric, micro metrics, names, messages ----------------
def test_topk_takes_the_k_best_models_with_k_from_cross_validation(rng):
    vy, vp, ty, tp = _models(rng, n=600, quality=(2.0, 1.9, 0.05, 0.05, 0.05))
    r = ensemble(vp, vy, test=tp, test_targets=ty, method="topk", progress=False)
    w = np.asarray(r.weights)
    k = r.params["k"]
    assert k == len(r.params["chosen"]) and set(r.params["chosen"]) <= {0, 1} and k in (1, 2)
    np.testing.assert_allclose(w[r.params["chosen"]], 1 / k)
    assert w.sum() == pytest.approx(1)
    assert r.params["cv_by_k"][str(k)] == max(r.params["cv_by_k"].values())
    fixed = ensemble(vp, vy, method="topk", k=3, progress=False)
    assert fixed.params["k"] == 3 and np.count_nonzero(fixed.weights) == 3
    with pytest.raises(EvaluationError):
        ensemble(vp, vy, method="topk", k=9, progress=False)


def test_auto_reports_micro_metrics_and_optimises_the_chosen_metric(rng):
    vy, vp, ty, tp = _models(rng)
    r = ensemble(vp, vy, test=tp, test_targets=ty, method="auto", progress=False, metric="roc_auc_macro")
    assert "topk" in r.candidates and r.metric == "roc_auc_macro"
    for row in r.candidates.values():
        for key in ("validation_roc_auc_micro", "validation_pr_auc_micro", "test_roc_auc_micro",
                    "test_pr_auc_micro", "test_roc_auc_macro"):
            assert 0 <= row[key] <= 1
    assert r.cv_score == max(c["cv"] for c in r.candidates.values())
    with pytest.raises(EvaluationError, match="unknown metric"):
        ensemble(vp, vy, method="mean", progress=False, metric="accuracy")


def test_per_tag_calibration_keeps_rankings_and_restores_the_micro_scale(rng):
    """Per tag, the expert is a model on another scale (like weighted-BCE ~0.37 vs BCE ~0.03)."""
    n, k = 800, 4
    y = rng.random((n, k)) < 0.1
    y[:2] = True
    preds = []
    for j in range(k):
        q = np.full(k, 0.3)
        q[j] = 2.5
        logits = q * (y * 2 - 1) + rng.normal(size=(n, k)) + (2.5 if j % 2 else -3.0)  # two calibrations
        preds.append(_sigmoid(logits))
    half = slice(0, n // 2), slice(n // 2, n)
    val, test = [p[half[0]] for p in preds], [p[half[1]] for p in preds]
    plain = ensemble(val, y[half[0]], test=test, test_targets=y[half[1]], method="per_tag", shrinkage=1.0,
                     calibrate=False, progress=False)
    calib = ensemble(val, y[half[0]], test=test, test_targets=y[half[1]], method="per_tag", shrinkage=1.0,
                     progress=False)
    from musetag.evaluate.ensemble import _micro

    # per-tag rankings (so macro AP) unchanged; micro ROC-AUC no longer wrecked by the mixed scales
    np.testing.assert_array_equal(np.argsort(plain.test_predictions, axis=0, kind="stable"),
                                  np.argsort(calib.test_predictions, axis=0, kind="stable"))
    assert calib.test_score == pytest.approx(plain.test_score, abs=1e-12)
    assert _micro(y[half[1]], calib.test_predictions)[0] > _micro(y[half[1]], plain.test_predictions)[0] + 0.05
    assert "calibration" in calib.params


def test_duplicate_model_names_become_relative_paths(tmp_path, rng, capsys):
    vy, vp, _, _ = _models(rng)
    files = []
    for i, folder in enumerate(("runA", "runB", "runB/sub")):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / folder / "validation.npy", vp[i])
        files.append(str(tmp_path / folder / "validation.npy"))
    np.save(tmp_path / "vt.npy", vy)
    assert main(["ensemble", "--validation", *files, files[0], "--validation-targets", str(tmp_path / "vt.npy"),
                 "--method", "mean", "--out", str(tmp_path / "out")]) == 0
    names = json.loads((tmp_path / "out" / "ensemble.json").read_text())["names"]
    assert names == ["runA/validation", "runB/validation", "runB/sub/validation", "runA/validation#2"]


def test_messages_transposed_input_and_which_compare_system(tmp_path, rng, capsys):
    vy, vp, _, _ = _models(rng)
    np.save(tmp_path / "gt.npy", vy)
    np.save(tmp_path / "a.npy", vp[0])
    np.save(tmp_path / "t.npy", vp[1].T)
    assert main(["score", str(tmp_path / "t.npy"), "-g", str(tmp_path / "gt.npy")]) == 2
    assert "transpose" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "t.npy"), "-g", str(tmp_path / "gt.npy"),
                 "-n", "5"]) == 2
    err = capsys.readouterr().err
    assert "system B predictions" in err and "transpose" in err
    assert main(["ensemble", "--validation", str(tmp_path / "a.npy"), str(tmp_path / "t.npy"),
                 "--validation-targets", str(tmp_path / "gt.npy"), "--method", "mean", "--out",
                 str(tmp_path / "o")]) == 2
    assert "transposed" in capsys.readouterr().err


def test_boolean_predictions_warn_once_in_one_line(tmp_path, rng, capsys):
    vy, vp, _, _ = _models(rng)
    np.save(tmp_path / "gt.npy", vy)
    np.save(tmp_path / "b.npy", vp[0] > 0.5)
    assert main(["score", str(tmp_path / "b.npy"), "-g", str(tmp_path / "gt.npy")]) == 0
    err = capsys.readouterr().err
    assert err.count("is boolean") == 1 and err.count("\n") == 1 and "warnings.warn" not in err


def test_cli_explains_the_cv_column(tmp_path, rng, capsys):
    vy, vp, ty, tp = _models(rng)
    args = []
    for split, preds in (("validation", vp), ("test", tp)):
        paths = []
        for i, p in enumerate(preds):
            np.save(tmp_path / f"{split}{i}.npy", p)
            paths.append(str(tmp_path / f"{split}{i}.npy"))
        args += [f"--{split}", *paths]
    np.save(tmp_path / "vt.npy", vy)
    np.save(tmp_path / "tt.npy", ty)
    assert main(["ensemble", *args, "--validation-targets", str(tmp_path / "vt.npy"), "--test-targets",
                 str(tmp_path / "tt.npy"), "--out", str(tmp_path / "o"), "--metric", "pr_auc_micro"]) == 0
    out = capsys.readouterr().out
    assert "CV: pr_auc_micro held out in 5-fold cross-validation" in out
    cv_line = next(ln for ln in out.splitlines() if "(5-fold CV inside validation)" in ln)
    assert "not comparable" in cv_line and "~80 tracks" in cv_line  # 400 validation rows / 5 folds
    assert "[in-sample: fitted and scored on all 400 validation tracks]" in out
    assert "topk" in out and "test ROC-m" in out


@pytest.mark.shared
def test_bour_topk_and_calibrated_per_tag_are_auto_candidates(tmp_path, capsys):
    """On the 24 shared Bour models (recorded in bench/results/ensemble.md): top-k lands next to the
    plain mean (k close to 24: validation barely ranks these models), and calibrated per-tag keeps
    its test PR-AUC-macro while its micro metrics come back to the mean's level."""
    rc = main(["ensemble", *_bour_args(), "--method", "per_tag", "--out", str(tmp_path / "pt")])
    assert rc == 0
    rc = main(["ensemble", *_bour_args(), "--method", "topk", "--out", str(tmp_path / "tk")])
    assert rc == 0
    from musetag.evaluate import mediaeval_table

    gt = np.load(shared_path("mtg-jamendo", "mediaeval-results", "groundtruth.npy"))
    mean = np.mean([np.load(p) for p in _bour_args()[_bour_args().index("--test") + 1:][:24]], axis=0)
    t_mean = mediaeval_table(gt, mean)
    t_pt = mediaeval_table(gt, np.load(tmp_path / "pt" / "test.npy"))
    t_tk = mediaeval_table(gt, np.load(tmp_path / "tk" / "test.npy"))
    assert t_pt["PR-AUC-macro"] > PUBLISHED_3_AVERAGE
    assert t_pt["ROC-AUC-micro"] > t_mean["ROC-AUC-micro"] - 0.01  # 0.700 before calibration
    assert abs(t_tk["PR-AUC-macro"] - t_mean["PR-AUC-macro"]) < 0.003
    meta = json.loads((tmp_path / "tk" / "ensemble.json").read_text())
    assert meta["method"] == "topk" and 1 <= meta["params"]["k"] <= 24


def test_thresholds_carry_tag_names_from_beside_the_predictions_or_say_once(tmp_path, rng, capsys, caplog):
    vy, vp, ty, tp = _models(rng)
    names = [f"mood---t{i}" for i in range(vy.shape[1])]
    args = []
    for split, preds in (("validation", vp), ("test", tp)):
        (tmp_path / split).mkdir()
        args.append(f"--{split}")
        for i, p in enumerate(preds):
            np.save(tmp_path / split / f"m{i}.npy", p)
            args.append(str(tmp_path / split / f"m{i}.npy"))
    np.save(tmp_path / "vt.npy", vy)
    np.save(tmp_path / "tt.npy", ty)
    base = ["ensemble", *args, "--validation-targets", str(tmp_path / "vt.npy"), "--test-targets",
            str(tmp_path / "tt.npy"), "--method", "mean"]
    assert main([*base, "--out", str(tmp_path / "o1")]) == 0
    notes = [r for r in caplog.records if "tag names unknown" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0].getMessage()
    assert [ln.split("\t")[0] for ln in (tmp_path / "o1" / "thresholds.txt").read_text().splitlines()] == \
        [str(i) for i in range(len(names))]
    caplog.clear()
    (tmp_path / "validation" / "tags.txt").write_text("\n".join(names) + "\n")
    assert main([*base, "--out", str(tmp_path / "o2")]) == 0
    assert not [r for r in caplog.records if "tag names unknown" in r.getMessage()]
    assert [ln.split("\t")[0] for ln in (tmp_path / "o2" / "thresholds.txt").read_text().splitlines()] == names
    assert json.loads((tmp_path / "o2" / "ensemble.json").read_text())["tags"] == names
    # score: several runs without names, per-tag output asked for: one line for the whole command
    (tmp_path / "validation" / "tags.txt").unlink()
    capsys.readouterr()
    assert main(["score", *args[1:3], "-g", str(tmp_path / "vt.npy"), "--per-tag"]) == 0
    assert capsys.readouterr().err.count("tag names unknown") == 1


def test_pairing_warning_knows_a_training_runs_file_names():
    """`ensemble --validation run/predictions/validation.npy --test run/predictions/test.npy` warned that the
    names differ for the very pair `train` writes; a real mix-up is still warned about."""
    from pathlib import Path

    from musetag.commands.ensemble import _same_model

    run, other = Path("runs/a/predictions"), Path("runs/b/predictions")
    assert _same_model(run / "validation.npy", run / "test.npy")
    assert _same_model(run / "swa-validation.npy", run / "swa-test.npy")
    assert _same_model(Path("val/model1.npy"), Path("test/model1.npy"))
    assert not _same_model(run / "validation.npy", other / "test.npy")
    assert not _same_model(run / "swa-validation.npy", run / "test.npy")
    assert not _same_model(Path("val/model1.npy"), Path("test/model2.npy"))


def test_a_file_given_twice_is_warned_and_test_targets_in_the_test_list_are_left_out(tmp_path, rng, capsys, caplog):
    """The same file twice counted as two models without a word; --test holding the test targets (a glob of
    test/*.npy) failed with "1 validation files but 2 test files" while the validation side was cleaned."""
    vy, vp, ty, tp = _models(rng)
    for i in range(2):
        np.save(tmp_path / f"v{i}.npy", vp[i])
        np.save(tmp_path / f"t{i}.npy", tp[i])
    np.save(tmp_path / "vt.npy", vy)
    np.save(tmp_path / "tt.npy", ty)
    with caplog.at_level("WARNING"):
        rc = main(["ensemble", "--validation", str(tmp_path / "v0.npy"), str(tmp_path / "v0.npy"), str(tmp_path / "v1.npy"),
                   "--test", str(tmp_path / "t0.npy"), str(tmp_path / "t0.npy"), str(tmp_path / "t1.npy"),
                   "--validation-targets", str(tmp_path / "vt.npy"), "-m", "mean", "--out", str(tmp_path / "e1")])
    assert rc == 0 and "v0 is given 2 times: it counts as 2 models" in caplog.text.replace(str(tmp_path) + "/", "")
    rc = main(["ensemble", "--validation", str(tmp_path / "v0.npy"), str(tmp_path / "v1.npy"), str(tmp_path / "vt.npy"),
               "--test", str(tmp_path / "t0.npy"), str(tmp_path / "t1.npy"), str(tmp_path / "tt.npy"),
               "--validation-targets", str(tmp_path / "vt.npy"), "--test-targets", str(tmp_path / "tt.npy"),
               "-m", "mean", "--out", str(tmp_path / "e2")])
    assert rc == 0 and np.load(tmp_path / "e2" / "test.npy").shape == ty.shape


# ---- exploratory-test defects: stale outputs, results.tsv precision, logits, messages ----------------------
def _split_files(tmp_path, vp, tp, vy, ty):
    """vp/tp saved as validation/m{i}.npy and test/m{i}.npy; returns (validation paths, test paths, vt, tt)."""
    paths = {}
    for split, preds in (("validation", vp), ("test", tp)):
        (tmp_path / split).mkdir(exist_ok=True)
        paths[split] = []
        for i, p in enumerate(preds):
            np.save(tmp_path / split / f"m{i}.npy", p)
            paths[split].append(str(tmp_path / split / f"m{i}.npy"))
    np.save(tmp_path / "vt.npy", vy)
    np.save(tmp_path / "tt.npy", ty)
    return paths["validation"], paths["test"], str(tmp_path / "vt.npy"), str(tmp_path / "tt.npy")


def test_out_keeps_only_this_runs_outputs_and_names_what_it_wrote(tmp_path, rng, capsys, caplog):
    """A second run into the same --out left the first run's test.npy, results.tsv and thresholds.txt beside
    its own files, and the summary claimed a test.npy it never wrote."""
    vy, vp, ty, tp = _models(rng)
    val, test, vt, tt = _split_files(tmp_path, vp, tp, vy, ty)
    out = tmp_path / "stale"
    assert main(["ensemble", "--validation", *val, "--test", *test, "--validation-targets", vt, "--test-targets", tt,
                 "--method", "mean", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"validation.npy", "test.npy", "ensemble.json", "results.tsv",
                                               "thresholds.txt"}
    assert "test.npy" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    with caplog.at_level("WARNING"):
        assert main(["ensemble", "--validation", *val, "--validation-targets", vt, "--method", "greedy",
                     "--out", str(out)]) == 0
    err = capsys.readouterr().err
    wrote = next(ln for ln in err.splitlines() if ln.startswith("wrote"))
    assert "test.npy" not in wrote and "results.tsv" not in wrote and "validation.npy" in wrote
    assert {p.name for p in out.iterdir()} == {"validation.npy", "ensemble.json", "notes.txt"}
    assert "removed test.npy, results.tsv, thresholds.txt" in caplog.text  # says what it took away
    assert main(["ensemble", "--validation", *val, "--validation-targets", vt, "--method", "mean",
                 "--out", str(tmp_path / "notest")]) == 0
    assert "test.npy" not in capsys.readouterr().err
    # files of those names in a folder no ensemble wrote (no ensemble.json) are somebody else's: kept
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thresholds.txt").write_text("mood/theme---action\t0.5\n")
    np.save(mine / "test.npy", np.zeros((2, 2)))
    assert main(["ensemble", "--validation", *val, "--validation-targets", vt, "--method", "mean",
                 "--out", str(mine)]) == 0
    assert {p.name for p in mine.iterdir()} == {"thresholds.txt", "test.npy", "validation.npy", "ensemble.json"}


def test_results_tsv_is_scored_on_the_saved_predictions(tmp_path, rng, capsys):
    """results.tsv was scored on the float64 combination, test.npy/ensemble.json on the float32 one: scores
    that differ by less than float32 resolution ranked in results.tsv and tied in test.npy."""
    from musetag.evaluate import evaluate
    from musetag.evaluate.metrics import read_table

    vy, _, ty, _ = _models(rng)
    signal = lambda y: 0.3 + 1e-9 * (y + rng.random(y.shape))  # noqa: E731 - distinct in float64 only
    vp, tp = [signal(vy) for _ in range(2)], [signal(ty) for _ in range(2)]
    val, test, vt, tt = _split_files(tmp_path, vp, tp, vy, ty)
    assert main(["ensemble", "--validation", *val, "--test", *test, "--validation-targets", vt, "--test-targets", tt,
                 "--method", "mean", "--out", str(tmp_path / "o")]) == 0
    printed = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("test PR-AUC-macro"))
    saved = evaluate(np.load(tmp_path / "o" / "test.npy"), ty,
                     thresholds_from=(np.load(tmp_path / "o" / "validation.npy"), vy))["table"]
    table = read_table(tmp_path / "o" / "results.tsv")
    assert table == pytest.approx({k: round(v, 6) for k, v in saved.items()}, abs=1e-9)
    assert printed.split()[-1] == f"{table['PR-AUC-macro']:.6f}"


def test_scores_outside_0_1_are_warned_with_the_file(tmp_path, rng, caplog):
    """A model given as logits next to probability models was clipped (logit_mean) or averaged (mean)
    without a word."""
    vy, vp, ty, tp = _models(rng)
    vp[1] = np.log(vp[1] / (1 - vp[1]))
    val, _, vt, _ = _split_files(tmp_path, vp, tp, vy, ty)
    for method in ("mean", "logit_mean"):
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert main(["ensemble", "--validation", *val, "--validation-targets", vt, "--method", method,
                         "--out", str(tmp_path / method)]) == 0
        notes = [r.getMessage() for r in caplog.records if "outside [0, 1] (logits?)" in r.getMessage()]
        assert len(notes) == 1 and val[1] in notes[0] and val[0] not in notes[0], method


def test_messages_name_the_test_file_refuse_fractional_targets_and_permuted_test_files(tmp_path, rng, capsys):
    vy, vp, ty, tp = _models(rng)
    val, test, vt, tt = _split_files(tmp_path, vp, tp, vy, ty)
    base = ["--validation-targets", vt, "--method", "mean", "--out", str(tmp_path / "o")]
    # a wrong-shaped test file: its own path, not the paired validation file's name
    np.save(tmp_path / "bad.npy", tp[1][:, :3])
    assert main(["ensemble", "--validation", *val[:2], "--test", test[0], str(tmp_path / "bad.npy"), *base]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "bad.npy") in err and "predictions of m1" not in err
    # fractional targets: ensemble has no --task
    np.save(tmp_path / "frac.npy", vy * 0.5)
    assert main(["ensemble", "--validation", *val, "--validation-targets", str(tmp_path / "frac.npy"),
                 "--method", "mean", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--task" not in err and "0/1" in err and str(tmp_path / "frac.npy") in err
    # test files in another order than the validation files, same names: refused, both orders named
    swapped = [test[1], test[0], *test[2:]]
    assert main(["ensemble", "--validation", *val, "--test", *swapped, *base]) == 2
    err = capsys.readouterr().err
    assert "m0, m1, m2, m3" in err and "m1, m0, m2, m3" in err
    assert not (tmp_path / "o").exists()
