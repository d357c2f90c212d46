"""`musetag score A.npy B.npy ... --groundtruth GT`: many runs in one process (issue 19)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from conftest import shared_path
from musetag.cli import main
from musetag.evaluate import mediaeval_table, read_table


def _combined(path) -> dict[str, dict[str, float]]:
    delimiter = "," if str(path).endswith(".csv") else "\t"
    with open(path, newline="", encoding="utf-8") as f:
        return {row.pop("run"): {k: float(v) for k, v in row.items()} for row in csv.DictReader(f, delimiter=delimiter)}


def test_combined_table_equals_each_run_scored_alone(tmp_path, rng, capsys):
    gt = rng.random((80, 6)) < 0.3
    gt[0] = True
    np.save(tmp_path / "gt.npy", gt)
    runs = []
    for i in range(3):
        path = tmp_path / f"run{i}.npy"
        np.save(path, rng.random((80, 6)) + gt * 0.2 * i)
        runs.append(str(path))
    assert main(["score", *runs, "-g", str(tmp_path / "gt.npy"), "--out", str(tmp_path / "all.csv")]) == 0
    printed = capsys.readouterr().out
    table = _combined(tmp_path / "all.csv")
    assert list(table) == runs
    for run in runs:
        assert f"# {run}" in printed
        assert main(["score", run, "-g", str(tmp_path / "gt.npy"), "--out", str(tmp_path / "one.tsv")]) == 0
        assert table[run] == read_table(tmp_path / "one.tsv")
    # TSV when the name does not end in .csv
    assert main(["score", *runs, "-g", str(tmp_path / "gt.npy"), "--out", str(tmp_path / "all.tsv")]) == 0
    assert _combined(tmp_path / "all.tsv") == table


def test_single_run_options_are_refused_with_several_runs(tmp_path, rng, capsys):
    np.save(tmp_path / "gt.npy", rng.random((20, 3)) < 0.5)
    np.save(tmp_path / "a.npy", rng.random((20, 3)))
    code = main(["score", str(tmp_path / "a.npy"), str(tmp_path / "a.npy"), "-g", str(tmp_path / "gt.npy"),
                 "--bootstrap", "10"])
    assert code == 2
    assert "--bootstrap" in capsys.readouterr().err
    # one missing run among others: named once, the others scored (it read "predictions X file not found: X")
    missing = str(tmp_path / "missing.npy")
    assert main(["score", str(tmp_path / "a.npy"), missing, "-g", str(tmp_path / "gt.npy")]) == 3
    err = capsys.readouterr().err
    assert f"musetag score: error: predictions file not found: {missing}\n" in err, err


def test_the_24_bour_runs_scored_at_once_equal_each_alone(tmp_path):
    test_dir = shared_path("bour2021-predictions", "test")
    gt_path = shared_path("mtg-jamendo", "mediaeval-results", "groundtruth.npy")
    runs = sorted(str(p) for p in test_dir.glob("*.npy"))
    if len(runs) != 24:
        pytest.skip(f"expected the 24 Bour models, found {len(runs)}")
    out = tmp_path / "bour.csv"
    assert main(["score", *runs, "--groundtruth", str(gt_path), "--out", str(out)]) == 0
    table = _combined(out)
    assert list(table) == runs
    gt = np.load(gt_path)
    for run in runs:
        alone = mediaeval_table(gt, np.load(run))
        assert table[run] == {k: round(v, 6) for k, v in alone.items()}
