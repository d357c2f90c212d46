"""MediaEval submissions: official order and shape, validation thresholds, checks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from musetag.cli import main
from musetag.errors import EvaluationError
from musetag.evaluate import fit_thresholds, mediaeval_table
from musetag.evaluate.submission import MEDIAEVAL_TAGS, make_submission, submission_from_run, validate_submission


@pytest.mark.shared
def test_official_tag_order_matches_the_split_file():
    tags = shared_path("mtg-jamendo", "tags", "moodtheme_split.txt").read_text().split()
    assert list(MEDIAEVAL_TAGS) == tags


def _fake(rng, n=4231):
    y = rng.random((n, 56)) < 0.05
    y[:2] = True
    return y, np.clip(y * 0.3 + rng.random((n, 56)) * 0.7, 0, 1)


def test_from_a_run_folder_with_shuffled_tag_order(tmp_path, rng):
    vy, vp = _fake(rng, 300)
    ty, tp = _fake(rng)
    perm = rng.permutation(56)
    tags = [MEDIAEVAL_TAGS[i].split("---")[1] for i in perm]  # prefix-less names are accepted
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    np.save(run / "predictions/test.npy", tp[:, perm])
    np.save(run / "predictions/validation.npy", vp[:, perm])
    np.save(run / "predictions/validation_targets.npy", vy[:, perm])
    (run / "summary.json").write_text(json.dumps({"tags": tags}))
    out = submission_from_run(run, tmp_path / "sub")
    pred, dec = np.load(out / "predictions.npy"), np.load(out / "decisions.npy")
    assert pred.shape == dec.shape == (4231, 56) and pred.dtype == np.float64 and dec.dtype == bool
    np.testing.assert_array_equal(pred, tp)  # back in the official order
    np.testing.assert_array_equal(dec, tp > fit_thresholds(vp, vy))  # thresholds from validation
    assert (out / "thresholds.txt").read_text().startswith("mood/theme---action\t")


def test_refuses_bad_submissions(tmp_path, rng):
    _, tp = _fake(rng)
    with pytest.raises(EvaluationError, match="4231 x 56"):
        make_submission(tp[:100], tmp_path, thresholds=np.full(56, 0.5))
    with pytest.raises(EvaluationError, match="exactly one source"):
        make_submission(tp, tmp_path)
    with pytest.raises(EvaluationError, match="not the 56 MediaEval"):
        make_submission(tp, tmp_path, thresholds=np.full(56, 0.5), tags=["x"] * 56)
    with pytest.raises(EvaluationError, match="all False"):
        make_submission(tp, tmp_path, thresholds=np.full(56, 2.0))
    with pytest.raises(EvaluationError, match="boolean"):
        validate_submission(tp, tp)
    with pytest.raises(EvaluationError, match="not a finished run"):
        submission_from_run(tmp_path, tmp_path / "s")


@pytest.mark.shared
def test_cli_on_bour_average_scores_like_the_official_table(tmp_path, capsys):
    bour = shared_path("bour2021-predictions")
    gt = shared_path("mtg-jamendo", "mediaeval-results", "groundtruth.npy")
    names = [f"{a}-{m}-i{i}-{loss}" for a, m in (("convs", "m96"), ("filters", "m128"))
             for i in (128, 224) for loss in ("bce", "focal", "wbce")]
    val = np.mean([np.load(bour / "validation" / f"{n}.npy").astype(np.float64) for n in names], axis=0)
    np.save(tmp_path / "val.npy", val)
    rc = main(["submission", str(bour / "submitted/3-average/predictions.npy"), "--thresholds-from",
               str(tmp_path / "val.npy"), str(bour / "validation/targets.npy"), "--out", str(tmp_path / "sub"),
               "--groundtruth", str(gt)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "ROC-AUC-macro\t0.774789" in out and "PR-AUC-macro\t0.150872" in out
    dec = np.load(tmp_path / "sub" / "decisions.npy")
    table = mediaeval_table(np.load(gt), np.load(tmp_path / "sub/predictions.npy"), dec)
    assert 0 < table["F-score-macro"] < 1
    # the same --out again (or any folder holding files): refused, nothing replaced (it overwrote silently)
    before = (tmp_path / "sub" / "predictions.npy").read_bytes()
    (tmp_path / "sub" / "notes.txt").write_text("mine")
    rc = main(["submission", str(bour / "submitted/1-convs/predictions.npy"), "--thresholds-from",
               str(tmp_path / "val.npy"), str(bour / "validation/targets.npy"), "--out", str(tmp_path / "sub")])
    assert rc == 2 and "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "sub" / "predictions.npy").read_bytes() == before
