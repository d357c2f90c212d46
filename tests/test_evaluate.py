"""Evaluation: the official MediaEval tables reproduced from the published files, fast per-tag
metrics equal to scikit-learn, thresholds, multiclass, aggregation and every bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from conftest import shared_path
from musetag.cli import main
from musetag.errors import EvaluationError
from musetag.evaluate import (
    EvaluationWarning,
    aggregate_segments,
    apply_thresholds,
    average_precision_per_tag,
    evaluate,
    fit_thresholds,
    format_table,
    load_thresholds,
    mediaeval_table,
    multiclass_metrics,
    read_table,
    roc_auc_per_tag,
    save_thresholds,
)

RESULTS = "mtg-jamendo/mediaeval-results"


def _official(name):
    return read_table(shared_path(RESULTS, f"{name}_results.tsv"))


# ------------------------------------------------------------------ golden numbers (published files)
@pytest.mark.shared
def test_vggish_baseline_table_reproduced_to_six_decimals():
    gt = np.load(shared_path(RESULTS, "groundtruth.npy"))
    pred = np.load(shared_path(RESULTS, "baseline_vggish_predictions.npy"))
    dec = np.load(shared_path(RESULTS, "baseline_vggish_decisions.npy"))
    table = mediaeval_table(gt, pred, dec)
    expected = shared_path(RESULTS, "baseline_vggish_results.tsv").read_text()
    assert format_table(table) == expected  # every row, same order, same text
    assert f"{table['ROC-AUC-macro']:.6f}" == "0.725821"
    assert f"{table['PR-AUC-macro']:.6f}" == "0.107734"


@pytest.mark.shared
def test_vggish_shipped_thresholds_give_shipped_decisions():
    pred = np.load(shared_path(RESULTS, "baseline_vggish_predictions.npy"))
    dec = np.load(shared_path(RESULTS, "baseline_vggish_decisions.npy"))
    tags, th = load_thresholds(shared_path(RESULTS, "baseline_vggish_thresholds.txt"))
    assert len(tags) == 56 and tags[0] == "mood/theme---action"
    np.testing.assert_array_equal(apply_thresholds(pred, th), dec)


@pytest.mark.shared
def test_a_thresholds_file_in_another_tag_order_is_matched_by_name(tmp_path, capsys):
    """The organisers' thresholds with their lines reversed (each line still 'tag<TAB>value') were applied by
    position: precision-macro 0.077 instead of the published 0.138, and `submission` wrote wrong decisions as
    "a valid submission"."""
    lines = shared_path(RESULTS, "baseline_vggish_thresholds.txt").read_text().splitlines()
    (tmp_path / "rev.txt").write_text("\n".join(reversed(lines)) + "\n")
    pred, gt = str(shared_path(RESULTS, "baseline_vggish_predictions.npy")), str(shared_path(RESULTS, "groundtruth.npy"))
    published = _official("baseline_vggish")["precision-macro"]
    for extra in ([], ["--tags", str(shared_path("mtg-jamendo", "tags", "moodtheme_split.txt"))]):
        assert main(["score", pred, "-g", gt, "--thresholds", str(tmp_path / "rev.txt"), *extra]) == 0
        assert f"precision-macro\t{published:.6f}" in capsys.readouterr().out
    assert main(["submission", pred, "--thresholds", str(tmp_path / "rev.txt"), "--out", str(tmp_path / "sub")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "sub" / "decisions.npy"),
                                  np.load(shared_path(RESULTS, "baseline_vggish_decisions.npy")))
    # names that are not the columns', and a NaN threshold: errors naming the file and what to fix
    (tmp_path / "other.txt").write_text("\n".join(lines[:-1] + ["mood/theme---nope\t0.5"]) + "\n")
    tags = str(shared_path("mtg-jamendo", "tags", "moodtheme_split.txt"))
    assert main(["score", pred, "-g", gt, "--thresholds", str(tmp_path / "other.txt"), "--tags", tags]) == 2
    err = capsys.readouterr().err
    assert "other.txt: its tag names do not match" in err and "no threshold for: " in err and "not a column: nope" in err
    assert main(["score", pred, "-g", gt, "--thresholds", str(tmp_path / "other.txt")]) == 0  # unnamed columns:
    assert "other.txt: applied by position" in capsys.readouterr().err  # by position, and said so
    (tmp_path / "nan.txt").write_text("\n".join(["mood/theme---action\tnan"] + lines[1:]) + "\n")
    assert main(["submission", pred, "--thresholds", str(tmp_path / "nan.txt"), "--out", str(tmp_path / "s2")]) == 2
    assert "nan.txt:1: the threshold of 'mood/theme---action' is NaN" in capsys.readouterr().err


@pytest.mark.shared
@pytest.mark.parametrize("run", ["1-convs", "2-filters", "3-average"])
def test_bour_submitted_tables_reproduced(run):
    gt = np.load(shared_path(RESULTS, "groundtruth.npy"))
    folder = shared_path("bour2021-predictions", "submitted", run)
    table = mediaeval_table(gt, np.load(folder / "predictions.npy"), np.load(folder / "decisions.npy"))
    assert format_table(table) == (folder / "results.tsv").read_text()


@pytest.mark.shared
def test_random_baseline_table_reproduced():
    gt = np.load(shared_path(RESULTS, "groundtruth.npy"))
    table = mediaeval_table(gt, np.load(shared_path(RESULTS, "baseline_random_predictions.npy")),
                            np.load(shared_path(RESULTS, "baseline_random_decisions.npy")))
    expected = _official("baseline_random")
    assert {k: round(v, 6) for k, v in table.items()} == pytest.approx(expected, abs=5e-7)


@pytest.mark.shared
def test_popular_baseline_table_reproduced_from_its_decisions():
    """The organisers scored the most-popular baseline with its decisions as the scores too."""
    gt = np.load(shared_path(RESULTS, "groundtruth.npy"))
    dec = np.load(shared_path(RESULTS, "baseline_popular_decisions.npy"))
    table = mediaeval_table(gt, dec.astype(np.float64), dec)
    assert format_table(table) == shared_path(RESULTS, "baseline_popular_results.tsv").read_text()


@pytest.mark.shared
def test_score_cli_writes_the_official_file(tmp_path, capsys):
    folder = shared_path(RESULTS)
    out = tmp_path / "results.tsv"
    rc = main(["score", str(folder / "baseline_vggish_predictions.npy"), "--groundtruth",
               str(folder / "groundtruth.npy"), "--decisions", str(folder / "baseline_vggish_decisions.npy"),
               "--out", str(out)])
    assert rc == 0
    assert out.read_text() == (folder / "baseline_vggish_results.tsv").read_text()
    assert "PR-AUC-macro\t0.107734" in capsys.readouterr().out


@pytest.mark.shared
def test_score_cli_thresholds_from_validation(tmp_path, capsys):
    """Bour's single model: thresholds tuned on its validation outputs, applied to test."""
    bour = shared_path("bour2021-predictions")
    gt = shared_path(RESULTS, "groundtruth.npy")
    out = tmp_path / "r.tsv"
    rc = main(["score", str(bour / "test/convs-m96-i128-bce.npy"), "-g", str(gt), "--thresholds-from",
               str(bour / "validation/convs-m96-i128-bce.npy"), str(bour / "validation/targets.npy"),
               "--out", str(out), "--save-decisions", str(tmp_path / "d.npy")])
    assert rc == 0
    table = read_table(out)
    assert list(table)[:5] == ["ROC-AUC-macro", "PR-AUC-macro", "precision-macro", "recall-macro", "F-score-macro"]
    # decisions written equal thresholding the test scores with the validation thresholds
    th = fit_thresholds(np.load(bour / "validation/convs-m96-i128-bce.npy"), np.load(bour / "validation/targets.npy"))
    dec = np.load(tmp_path / "d.npy")
    np.testing.assert_array_equal(dec, np.load(bour / "test/convs-m96-i128-bce.npy") > th)
    assert (tmp_path / "r_thresholds.txt").exists()


# ------------------------------------------------------------------ fast metrics == scikit-learn
def test_vectorised_ap_and_auc_equal_sklearn_with_ties(rng):
    y = rng.random((400, 7)) < 0.1
    y[0, :] = True
    s = np.round(rng.random((400, 7)) + y * 0.3, 1)  # coarse values: many ties
    ap = average_precision_per_tag(y, s)
    auc = roc_auc_per_tag(y, s)
    np.testing.assert_allclose(ap, skm.average_precision_score(y, s, average=None), rtol=0, atol=1e-12)
    np.testing.assert_allclose(auc, skm.roc_auc_score(y, s, average=None), rtol=0, atol=1e-12)
    assert np.isnan(average_precision_per_tag(np.zeros((5, 1), bool), rng.random((5, 1))))[0]


@pytest.mark.shared
def test_vectorised_ap_equals_sklearn_on_real_outputs():
    y = np.load(shared_path("bour2021-predictions", "validation", "targets.npy"))
    s = np.load(shared_path("bour2021-predictions", "validation", "filters-m96-i224-bce.npy"))
    np.testing.assert_allclose(average_precision_per_tag(y, s), skm.average_precision_score(y, s, average=None),
                               atol=1e-12)


def test_known_answer_ap():
    # ranking: pos, neg, pos -> AP = (1/1 + 2/3) / 2
    assert average_precision_per_tag(np.array([1, 0, 1], bool), np.array([0.9, 0.8, 0.7])) == pytest.approx(5 / 6)


# ------------------------------------------------------------------ thresholds
def test_thresholds_maximise_f1_and_use_strict_greater(rng):
    y = np.array([[1], [1], [0], [1], [0], [0]], bool)
    s = np.array([[0.9], [0.8], [0.7], [0.6], [0.2], [0.1]])
    th = fit_thresholds(s, y)
    # best F1 is predicting the top 4 (P=3/4, R=1, F=6/7) -> threshold 0.6 from the PR curve
    assert th[0] == pytest.approx(0.6)
    # official rule: decisions are strictly greater than the threshold
    np.testing.assert_array_equal(apply_thresholds(s, th)[:, 0], s[:, 0] > 0.6)
    # logits against thresholds tuned on probabilities: refused (submission and ensemble accepted them, F-score
    # micro 0.055 instead of 0.154 on the Bour predictions)
    with pytest.raises(EvaluationError, match="range from -3 to 5.*thresholds are probabilities"):
        apply_thresholds(np.array([[-3.0], [5.0]]), th)
    # thresholds tuned on logits apply to logits
    np.testing.assert_array_equal(apply_thresholds(np.array([[-3.0], [5.0]]), [-1.0]), [[False], [True]])


def test_thresholds_round_trip(tmp_path):
    th = np.array([0.1, 0.25, 1 / 3])
    p = save_thresholds(th, tmp_path / "t.txt", ["a", "b", "c"])
    tags, back = load_thresholds(p)
    assert tags == ["a", "b", "c"]
    np.testing.assert_array_equal(back, th)


# ------------------------------------------------------------------ bad inputs
def test_tag_without_positives_is_excluded_with_a_warning_naming_it(rng):
    y = rng.random((50, 3)) < 0.3
    y[:, 1] = False
    s = rng.random((50, 3))
    with pytest.warns(EvaluationWarning, match="no positive.*calm"):
        result = evaluate(s, y, tags=["happy", "calm", "sad"])
    assert result["excluded_tags"] == ["calm"]
    expected = skm.average_precision_score(y[:, [0, 2]], s[:, [0, 2]], average="macro")
    assert result["table"]["PR-AUC-macro"] == pytest.approx(expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_predictions_is_a_clear_error(rng, bad):
    s = rng.random((20, 3))
    s[4, 1] = bad
    y = rng.random((20, 3)) < 0.5
    with pytest.raises(EvaluationError, match="(NaN|infinite).*rows: \\[4\\]"):
        evaluate(s, y)


def test_row_and_column_mismatch_errors(rng):
    y = rng.random((20, 3)) < 0.5
    with pytest.raises(EvaluationError, match="rows.*same tracks"):
        evaluate(rng.random((19, 3)), y)
    with pytest.raises(EvaluationError, match="columns.*same tags"):
        evaluate(rng.random((20, 4)), y)
    with pytest.raises(EvaluationError, match="tag names"):
        evaluate(rng.random((20, 3)), y, tags=["a", "b"])


def test_boolean_predictions_warn_and_float_decisions_error(rng):
    y = rng.random((30, 2)) < 0.5
    y[0] = True
    with pytest.warns(EvaluationWarning, match="boolean"):
        evaluate(rng.random((30, 2)) > 0.5, y)
    with pytest.raises(EvaluationError, match="decisions must be boolean"):
        evaluate(rng.random((30, 2)), y, decisions=rng.random((30, 2)))
    with pytest.raises(EvaluationError, match="other than 0 and 1"):
        evaluate(rng.random((30, 2)), rng.random((30, 2)))


def test_score_cli_bad_file_exits_2_with_message(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.zeros((3, 2)))
    rc = main(["score", str(tmp_path / "p.npy"), "--groundtruth", str(tmp_path / "missing.npy")])
    assert rc == 2
    assert "missing.npy" in capsys.readouterr().err


def test_load_array_says_what_is_wrong_with_a_file(tmp_path):
    """A text file passed as predictions was reported with numpy's "pickled data ... allow_pickle" advice."""
    from musetag.evaluate import load_array

    (tmp_path / "notes.npy").write_text("hello\n")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(EvaluationError, match=r"notes.npy is not a NumPy .npy file \(it starts with b'hello") as exc:
        load_array(tmp_path / "notes.npy", "predictions")
    assert "pickle" not in str(exc.value)
    with pytest.raises(EvaluationError, match="empty.npy is not a NumPy .npy file .it is empty"):
        load_array(tmp_path / "empty.npy")
    np.save(tmp_path / "ok.npy", np.eye(2))
    np.testing.assert_array_equal(load_array(tmp_path / "ok.npy"), np.eye(2))


def test_score_cli_refuses_an_unwritable_output_before_the_work(tmp_path, capsys, rng):
    """`score ... --out FILE/x.csv` printed the whole table, then failed on the output."""
    y = (rng.random((20, 2)) < 0.5).astype(np.float32)
    y[0], y[1] = 1, 0
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "p.npy", rng.random((20, 2)).astype(np.float32))
    (tmp_path / "file").write_text("x")
    for flag in ("--out", "--json"):
        rc = main(["score", str(tmp_path / "p.npy"), "-g", str(tmp_path / "y.npy"), flag, str(tmp_path / "file" / "x.tsv")])
        captured = capsys.readouterr()
        assert rc == 2 and f"{flag} {tmp_path / 'file' / 'x.tsv'}" in captured.err and "is a file" in captured.err
        assert "PR-AUC" not in captured.out  # nothing computed first


def test_score_cli_many_runs_keeps_the_good_ones(tmp_path, capsys, rng):
    """One bad run among several (NaN scores, the wrong number of rows) was an error that dropped the table
    of the runs already scored and never scored the ones after it."""
    import csv

    y = (rng.random((30, 3)) < 0.4).astype(np.float32)
    y[0], y[1] = 1, 0
    np.save(tmp_path / "gt.npy", y)
    good = [tmp_path / "a.npy", tmp_path / "d.npy"]
    for path in good:
        np.save(path, rng.random((30, 3)).astype(np.float32))
    np.save(tmp_path / "nan.npy", np.full((30, 3), np.nan, np.float32))
    np.save(tmp_path / "short.npy", rng.random((3, 3)).astype(np.float32))
    runs = [good[0], tmp_path / "nan.npy", tmp_path / "short.npy", good[1]]
    rc = main(["score", *map(str, runs), "-g", str(tmp_path / "gt.npy"), "--out", str(tmp_path / "table.csv")])
    err = capsys.readouterr().err
    assert rc == 3
    assert f"{tmp_path / 'nan.npy'}" in err and "NaN" in err and f"{tmp_path / 'short.npy'}" in err
    with open(tmp_path / "table.csv", newline="") as fh:
        assert [r["run"] for r in csv.DictReader(fh)] == [str(p) for p in good]
    rc = main(["score", str(tmp_path / "nan.npy"), str(tmp_path / "short.npy"), "-g", str(tmp_path / "gt.npy")])
    assert rc == 2 and "none of the 2 prediction file(s) could be scored" in capsys.readouterr().err


# ------------------------------------------------------------------ multiclass and aggregation
def test_multiclass_metrics_known_answer():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    r = multiclass_metrics(y, p, classes=["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert r["f1_macro"] == pytest.approx(skm.f1_score(y, p, average="macro"))


def test_evaluate_multiclass_from_scores():
    y = np.array([0, 1, 2, 2])
    s = np.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.1
    r = evaluate(s, y, task="multiclass", tags=["rock", "jazz", "classical"])
    assert r["accuracy"] == 0.75 and r["classes"] == ["rock", "jazz", "classical"]
    assert 0 < r["roc_auc_macro"] <= 1


def test_segment_aggregation_mean_and_majority_vote():
    ids = np.array(["t1", "t1", "t1", "t2", "t2"])
    out = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    tracks, mean = aggregate_segments(out, ids)
    assert tracks.tolist() == ["t1", "t2"]
    np.testing.assert_allclose(mean, [[0.4, 0.6], [0.5, 0.5]])
    tracks, votes = aggregate_segments(out, ids, task="multiclass")
    # t1: two votes for class 1; t2: one vote each, tie broken by mean probability (0.5 vs 0.5 -> first)
    assert votes.argmax(axis=1).tolist() == [1, 0]
    np.testing.assert_allclose(votes[0], [1 / 3, 2 / 3], atol=1e-6)
    # a majority that the mean of probabilities would overturn
    out2 = np.array([[0.55, 0.45], [0.55, 0.45], [0.0, 1.0]])
    _, mean2 = aggregate_segments(out2, [7, 7, 7])
    _, vote2 = aggregate_segments(out2, [7, 7, 7], task="multiclass")
    assert mean2.argmax() == 1 and vote2.argmax() == 0


def test_thresholds_from_in_evaluate(rng):
    y = rng.random((100, 4)) < 0.3
    s = np.clip(y * 0.4 + rng.random((100, 4)) * 0.6, 0, 1)
    r = evaluate(s, y, thresholds_from=(s, y))
    assert len(r["thresholds"]) == 4
    assert set(r["table"]) >= {"precision-macro", "F-score-micro"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(s, y)


def test_score_cli_multiclass(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]))
    np.save(tmp_path / "y.npy", np.array([0, 1, 1, 1]))
    (tmp_path / "c.txt").write_text("jazz\nrock\n")
    rc = main(["score", str(tmp_path / "p.npy"), "-g", str(tmp_path / "y.npy"), "--task", "multiclass",
               "--tags", str(tmp_path / "c.txt")])
    out = capsys.readouterr().out
    assert rc == 0 and "accuracy\t0.750000" in out and "balanced_accuracy\t0.833333" in out
    assert "jazz      1      0" in out and "rock      1      2" in out


def test_official_table_is_bit_identical_to_sklearn_without_importing_it():
    """mediaeval_table repeats sklearn's roc_auc_score/average_precision_score arithmetic in numpy (issue
    19: importing sklearn cost `musetag score` seconds); the values must be equal, not close."""
    from scipy.stats import rankdata

    from musetag.evaluate.metrics import mediaeval_table, midranks

    rng = np.random.default_rng(7)
    for trial in range(60):
        n, k = int(rng.integers(3, 300)), int(rng.integers(1, 6))
        gt = rng.random((n, k)) < rng.uniform(0.02, 0.6)
        gt[0], gt[1] = True, False
        p = rng.random((n, k))
        levels = int(rng.choice([0, 3, 10, 100]))
        if levels:  # ties
            p = np.round(p * levels) / levels
        if trial % 5 == 0:
            p = p.astype(np.float32).astype(np.float64)
        table = mediaeval_table(gt, p)
        for avg in ("macro", "micro"):
            assert table[f"ROC-AUC-{avg}"] == skm.roc_auc_score(gt, p, average=avg)
            assert table[f"PR-AUC-{avg}"] == skm.average_precision_score(gt, p, average=avg)
        assert np.array_equal(midranks(p), rankdata(p, axis=0))


def test_a_transposed_file_is_named_whichever_side_it_is_on(rng):
    """A transposed ground truth was reported as "predictions looks transposed", asking to transpose the good file."""
    from musetag.evaluate.metrics import check_same_shape

    pred, gt = rng.random((40, 6)), (rng.random((40, 6)) > 0.5)
    with pytest.raises(EvaluationError, match=r"\(ground truth looks transposed: it has 6 rows and 40 columns"):
        check_same_shape(pred, gt.T, "predictions", "ground truth")
    with pytest.raises(EvaluationError, match=r"\(predictions looks transposed: it has 6 rows and 40 columns"):
        check_same_shape(pred.T, gt, "predictions", "ground truth")
