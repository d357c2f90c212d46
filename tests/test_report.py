"""Reports: a run folder and prediction files give a self-contained page, PNGs and JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_path
from musetag.cli import main
from musetag.evaluate.report import make_report


def _run_folder(tmp_path, rng, task="multilabel"):
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    if task == "multilabel":
        tags = [f"mood/theme---tag{i:02d}" for i in range(12)]
        for split, n in (("validation", 120), ("test", 150)):
            y = rng.random((n, 12)) < 0.2
            y[:2] = True
            np.save(run / f"predictions/{split}.npy", np.clip(y * 0.4 + rng.random((n, 12)) * 0.6, 0, 1))
            np.save(run / f"predictions/{split}_targets.npy", y)
    else:
        tags = ["classical", "jazz", "rock"]
        for split, n in (("validation", 60), ("test", 90)):
            y = rng.integers(0, 3, n)
            p = np.eye(3)[y] * 1.5 + rng.random((n, 3))
            np.save(run / f"predictions/{split}.npy", p / p.sum(1, keepdims=True))
            np.save(run / f"predictions/{split}_targets.npy", y)
    (run / "summary.json").write_text(json.dumps({"tags": tags, "task": task}))
    with open(run / "metrics.jsonl", "w") as fh:
        for e in range(5):
            fh.write(json.dumps({"epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1),
                                 "val_pr_auc_macro": 0.1 + 0.02 * e, "val_scored_tags": 12, "lr": 0.1 * 0.5 ** e,
                                 "best": True}) + "\n")
    return run


def test_run_folder_report_multilabel(tmp_path, rng):
    page = make_report(_run_folder(tmp_path, rng), tmp_path / "rep")
    out = page.parent
    for name in ("training_curves.png", "per_tag_pr_auc.png", "pr_curves.png", "score_distributions.png"):
        assert (out / name).stat().st_size > 5000, name
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 4  # self-contained
    data = json.loads((out / "report.json").read_text())
    assert set(data["test"]) >= {"PR-AUC-macro", "F-score-macro"} and len(data["per_tag"]) == 12
    assert "validation_pr_auc" in data["per_tag"][0] and "threshold" in data["per_tag"][0]
    assert len(data["history"]) == 5


def test_training_curves_plot_scores_not_counts(tmp_path):
    from musetag.evaluate.report import plot_training_curves
    import matplotlib.pyplot as plt

    history = [{"epoch": e, "train_loss": 1.0, "val_pr_auc_macro": 0.1, "val_scored_tags": 56, "lr": 0.1}
               for e in range(3)]
    captured = {}
    orig = plt.Figure.savefig

    def spy(fig, *a, **k):
        captured["labels"] = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
        return orig(fig, *a, **k)

    plt.Figure.savefig = spy
    try:
        plot_training_curves(history, tmp_path / "c.png")
    finally:
        plt.Figure.savefig = orig
    assert "val_pr_auc_macro" in captured["labels"] and "val_scored_tags" not in captured["labels"]


def test_run_folder_report_multiclass_has_confusion_matrix(tmp_path, rng):
    page = make_report(_run_folder(tmp_path, rng, "multiclass"), tmp_path / "rep")
    data = json.loads((page.parent / "report.json").read_text())
    assert np.asarray(data["confusion_matrix"]).shape == (3, 3)
    assert {"accuracy", "balanced_accuracy", "f1_macro"} <= set(data["test"])
    assert (page.parent / "confusion_matrix.png").exists()


@pytest.mark.shared
def test_cli_report_on_bour_predictions(tmp_path):
    bour = shared_path("bour2021-predictions")
    gt = shared_path("mtg-jamendo", "mediaeval-results", "groundtruth.npy")
    tags = shared_path("mtg-jamendo", "tags", "moodtheme_split.txt")
    rc = main(["report", str(bour / "test/convs-m96-i224-wbce.npy"), "-g", str(gt), "--validation",
               str(bour / "validation/convs-m96-i224-wbce.npy"), str(bour / "validation/targets.npy"),
               "--tags", str(tags), "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "report.json").read_text())
    from sklearn.metrics import average_precision_score
    expected = average_precision_score(np.load(gt), np.load(bour / "test/convs-m96-i224-wbce.npy"), average="macro")
    assert data["test"]["PR-AUC-macro"] == pytest.approx(expected, abs=1e-12)
    assert len(data["per_tag"]) == 56 and (tmp_path / "per_tag_pr_auc.png").exists()
    assert "deep" in (tmp_path / "index.html").read_text()


def test_a_damaged_summary_is_named_and_no_folder_is_left(tmp_path, rng, capsys):
    """A summary.json cut by a kill was a JSONDecodeError traceback, and the refused report left its --out folder."""
    run = _run_folder(tmp_path, rng)
    (run / "summary.json").write_text('{"run_dir": ')
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'summary.json'} is damaged" in err and "Traceback" not in err
    assert not out.exists()
    # inputs refused by a section's checks (a transposed ground truth, NaN scores) left an empty --out too
    pred, gt = rng.random((30, 4)), (rng.random((30, 4)) > 0.5).astype(np.float32)
    np.save(tmp_path / "p.npy", pred)
    np.save(tmp_path / "gt_t.npy", gt.T)
    np.save(tmp_path / "nan.npy", np.where(pred > 0.9, np.nan, pred))
    np.save(tmp_path / "gt.npy", gt)
    for p_file, g_file in (("p.npy", "gt_t.npy"), ("nan.npy", "gt.npy")):
        assert main(["report", str(tmp_path / p_file), "-g", str(tmp_path / g_file), "--out", str(out)]) == 2
        assert not out.exists(), p_file
    kept = tmp_path / "kept"  # a folder that was there before is left as it was
    kept.mkdir()
    (kept / "mine.txt").write_text("x")
    assert main(["report", str(tmp_path / "p.npy"), "-g", str(tmp_path / "gt_t.npy"), "--out", str(kept)]) == 2
    assert [f.name for f in kept.iterdir()] == ["mine.txt"]


def test_summary_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """Runs write summary.json through a temporary file and a rename: a write that fails leaves the old file."""
    from musetag.outputs import write_text_atomic

    path = tmp_path / "summary.json"
    write_text_atomic(path, '{"a": 1}')

    import os

    real_fdopen = os.fdopen

    class FullDisk:  # writes a few bytes, then the disk is full
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:5])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(path, '{"a": 2, "b": 3}')
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
